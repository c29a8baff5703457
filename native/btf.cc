// Struct layouts read from BTF: the JS side checks its encoders against the
// C definitions, and compares a pinned map's layout with the object's.
#include <bpf/btf.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "args.h"
#include "btf.h"
#include "errors.h"
#include "exports.h"

namespace {

using BtfPtr = std::unique_ptr<btf, decltype(&btf__free)>;

}  // namespace

Napi::Object TypeLayout(Napi::Env env, const btf* types, uint32_t type_id, const std::string& what) {
  int id = btf__resolve_type(types, type_id);
  Check(env, id, "btf__resolve_type", what);
  const btf_type* type = btf__type_by_id(types, id);
  int64_t type_size = btf__resolve_size(types, id);
  if (type_size < 0) ThrowErrno(env, static_cast<int>(-type_size), "btf__resolve_size", what);
  Napi::Array layout = Napi::Array::New(env);
  if (!btf_is_struct(type)) {
    Napi::Object whole = Napi::Object::New(env);
    whole.Set("name", Napi::String::New(env, ""));
    whole.Set("offset", Napi::Number::New(env, 0));
    whole.Set("size", Napi::Number::New(env, type_size));
    layout.Set(0u, whole);
  }
  const btf_member* members = btf_is_struct(type) ? btf_members(type) : nullptr;
  for (uint32_t i = 0; members && i < btf_vlen(type); i++) {
    std::string member_name = btf__name_by_offset(types, members[i].name_off);
    // A bitfield has no byte offset and size to report.
    if (btf_member_bitfield_size(type, i) != 0) {
      ThrowErrno(env, EINVAL, "TypeLayout", what + " bitfield member " + member_name);
    }
    int64_t size = btf__resolve_size(types, members[i].type);
    if (size < 0) ThrowErrno(env, static_cast<int>(-size), "btf__resolve_size", what + " " + member_name);
    Napi::Object member = Napi::Object::New(env);
    member.Set("name", Napi::String::New(env, member_name));
    member.Set("offset", Napi::Number::New(env, btf_member_bit_offset(type, i) / 8));
    member.Set("size", Napi::Number::New(env, size));
    layout.Set(i, member);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("size", Napi::Number::New(env, type_size));
  result.Set("members", layout);
  return result;
}

namespace {

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
  for (const std::string& name : names) {
    std::string object = "struct " + name + " in " + path;
    int id = btf__find_by_name_kind(types.get(), name.c_str(), BTF_KIND_STRUCT);
    Check(info.Env(), id, "btf__find_by_name_kind", object);
    result.Set(name, TypeLayout(info.Env(), types.get(), id, object));
  }
  return result;
}

}  // namespace

void ExportBtf(Napi::Env env, Napi::Object exports) { Export(env, exports, "btfStructs", BtfStructs); }
