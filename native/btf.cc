// Struct layouts read from the BTF of a compiled BPF object, so the JS side
// can check its encoders against the C definitions instead of trusting them.
#include <bpf/btf.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace {

using BtfPtr = std::unique_ptr<btf, decltype(&btf__free)>;

Napi::Object StructLayout(Napi::Env env, const btf* types, const std::string& path, const std::string& name) {
  std::string object = "struct " + name + " in " + path;
  int id = btf__find_by_name_kind(types, name.c_str(), BTF_KIND_STRUCT);
  Check(env, id, "btf__find_by_name_kind", object);
  const btf_type* type = btf__type_by_id(types, id);
  const btf_member* members = btf_members(type);
  Napi::Array layout = Napi::Array::New(env, btf_vlen(type));
  for (uint32_t i = 0; i < btf_vlen(type); i++) {
    std::string member_name = btf__name_by_offset(types, members[i].name_off);
    // A bitfield has no byte offset and size to report.
    if (btf_member_bitfield_size(type, i) != 0) {
      ThrowErrno(env, EINVAL, "btfStructs", object + " bitfield member " + member_name);
    }
    int64_t size = btf__resolve_size(types, members[i].type);
    if (size < 0) ThrowErrno(env, static_cast<int>(-size), "btf__resolve_size", object + " " + member_name);
    Napi::Object member = Napi::Object::New(env);
    member.Set("name", Napi::String::New(env, member_name));
    member.Set("offset", Napi::Number::New(env, btf_member_bit_offset(type, i) / 8));
    member.Set("size", Napi::Number::New(env, size));
    layout.Set(i, member);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("size", Napi::Number::New(env, type->size));
  result.Set("members", layout);
  return result;
}

Napi::Value BtfStructs(const Napi::CallbackInfo& info) {
  Args args(info, "btfStructs");
  std::string path = args.String(0, "objectPath");
  std::vector<std::string> names = args.Strings(1, "names");
  BtfPtr types(btf__parse_elf(path.c_str(), nullptr), btf__free);
  if (!types) {
    int err = errno;
    ThrowErrno(info.Env(), err, "btf__parse_elf", path);
  }
  Napi::Object result = Napi::Object::New(info.Env());
  for (const std::string& name : names) result.Set(name, StructLayout(info.Env(), types.get(), path, name));
  return result;
}

}  // namespace

void ExportBtf(Napi::Env env, Napi::Object exports) { Export(env, exports, "btfStructs", BtfStructs); }
