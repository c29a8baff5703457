// openObject() and the BpfObject it returns: a libbpf bpf_object whose maps
// declared with LIBBPF_PIN_BY_NAME are pinned under (or reused from) pinRoot.
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>

#include "args.h"
#include "btf.h"
#include "errors.h"
#include "exports.h"
#include "libbpf_log.h"
#include "opts.h"

namespace {

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Class(Napi::Env env) {
    return DefineClass(env, "BpfObject",
                       {
                           InstanceMethod<&BpfObject::SetMaxEntries>("setMaxEntries"),
                           InstanceMethod<&BpfObject::SetAutoload>("setAutoload"),
                           InstanceMethod<&BpfObject::Maps>("maps"),
                           InstanceMethod<&BpfObject::Load>("load"),
                           InstanceMethod<&BpfObject::MapFd>("mapFd"),
                           InstanceMethod<&BpfObject::ProgramFd>("programFd"),
                           InstanceMethod<&BpfObject::PinProgram>("pinProgram"),
                           InstanceMethod<&BpfObject::Close>("close"),
                       });
  }

  // Called by openObject() only, with the opened object and its path.
  explicit BpfObject(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    if (!info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "BpfObject: use openObject() to create one");
    }
    obj_ = info[0].As<Napi::External<bpf_object>>().Data();
    path_ = info[1].As<Napi::String>().Utf8Value();
  }

  ~BpfObject() override { bpf_object__close(obj_); }

 private:
  // Resizes a map before load(); libbpf refuses (EBUSY) once it is created.
  void SetMaxEntries(const Napi::CallbackInfo& info) {
    Args args(info, "setMaxEntries");
    std::string name = args.String(0, "name");
    uint32_t max_entries = args.Uint32(1, "maxEntries", 1);
    bpf_map* map = Find(info.Env(), bpf_object__find_map_by_name, "bpf_object__find_map_by_name", name);
    Check(info.Env(), bpf_map__set_max_entries(map, max_entries), "bpf_map__set_max_entries", name);
  }

  // Whether load() loads a program (all do unless told otherwise).
  void SetAutoload(const Napi::CallbackInfo& info) {
    Args args(info, "setAutoload");
    std::string name = args.String(0, "name");
    if (!info[1].IsBoolean()) args.Fail("autoload", "a boolean");
    bpf_program* prog =
        Find(info.Env(), bpf_object__find_program_by_name, "bpf_object__find_program_by_name", name);
    Check(info.Env(), bpf_program__set_autoload(prog, info[1].As<Napi::Boolean>().Value()),
          "bpf_program__set_autoload", name);
  }

  // What load() will create each map as: the object's definitions, with any
  // change made since open. Layouts come from the object's BTF, or are null.
  Napi::Value Maps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_object* obj = Live(env, "maps");
    const btf* types = bpf_object__btf(obj);
    Napi::Array result = Napi::Array::New(env);
    uint32_t i = 0;
    bpf_map* map;
    bpf_object__for_each_map(map, obj) {
      std::string name = bpf_map__name(map);
      Napi::Object def = Napi::Object::New(env);
      def.Set("name", Napi::String::New(env, name));
      def.Set("type", Napi::Number::New(env, bpf_map__type(map)));
      def.Set("keySize", Napi::Number::New(env, bpf_map__key_size(map)));
      def.Set("valueSize", Napi::Number::New(env, bpf_map__value_size(map)));
      def.Set("maxEntries", Napi::Number::New(env, bpf_map__max_entries(map)));
      def.Set("flags", Napi::Number::New(env, bpf_map__map_flags(map)));
      def.Set("pinned", Napi::Boolean::New(env, bpf_map__pin_path(map) != nullptr));
      uint32_t key_id = bpf_map__btf_key_type_id(map), value_id = bpf_map__btf_value_type_id(map);
      if (types && key_id != 0 && value_id != 0) {
        def.Set("key", TypeLayout(env, types, key_id, "key of " + name + " in " + path_));
        def.Set("value", TypeLayout(env, types, value_id, "value of " + name + " in " + path_));
      } else {
        def.Set("key", env.Null());
        def.Set("value", env.Null());
      }
      result.Set(i++, def);
    }
    return result;
  }

  void Load(const Napi::CallbackInfo& info) {
    libbpf_log::Clear();
    int ret = bpf_object__load(Live(info.Env(), "bpf_object__load"));
    CheckLogged(info.Env(), ret, "bpf_object__load", path_);
  }

  Napi::Value MapFd(const Napi::CallbackInfo& info) {
    std::string name = Args(info, "mapFd").String(0, "name");
    bpf_map* map = Find(info.Env(), bpf_object__find_map_by_name, "bpf_object__find_map_by_name", name);
    return LoadedFd(info.Env(), bpf_map__fd(map), "bpf_map__fd", name);
  }

  Napi::Value ProgramFd(const Napi::CallbackInfo& info) {
    std::string name = Args(info, "programFd").String(0, "name");
    bpf_program* prog =
        Find(info.Env(), bpf_object__find_program_by_name, "bpf_object__find_program_by_name", name);
    return LoadedFd(info.Env(), bpf_program__fd(prog), "bpf_program__fd", name);
  }

  void PinProgram(const Napi::CallbackInfo& info) {
    Args args(info, "pinProgram");
    std::string name = args.String(0, "name");
    std::string path = args.String(1, "path");
    bpf_program* prog =
        Find(info.Env(), bpf_object__find_program_by_name, "bpf_object__find_program_by_name", name);
    // bpf_program__pin() refuses to overwrite: replace whatever was there.
    if (unlink(path.c_str()) != 0) {
      int err = errno;
      if (err != ENOENT) ThrowErrno(info.Env(), err, "unlink", path);
    }
    libbpf_log::Clear();
    CheckLogged(info.Env(), bpf_program__pin(prog, path.c_str()), "bpf_program__pin", path);
  }

  void Close(const Napi::CallbackInfo&) {
    bpf_object__close(obj_);
    obj_ = nullptr;
  }

  bpf_object* Live(Napi::Env env, const char* op) const {
    if (!obj_) ThrowErrno(env, EBADF, op, path_ + " (closed)");
    return obj_;
  }

  template <typename T>
  T* Find(Napi::Env env, T* (*find)(const bpf_object*, const char*), const char* op,
          const std::string& name) const {
    T* found = find(Live(env, op), name.c_str());
    if (!found) ThrowErrno(env, ENOENT, op, name + " in " + path_);
    return found;
  }

  // A map's or program's fd is -1 until load() created it.
  Napi::Value LoadedFd(Napi::Env env, int fd, const char* op, const std::string& name) const {
    if (fd < 0) ThrowErrno(env, EBADF, op, name + " in " + path_ + " (not loaded)");
    return Napi::Number::New(env, fd);
  }

  // Like Check(), with libbpf's own account of the failure appended.
  static void CheckLogged(Napi::Env env, int ret, const char* op, const std::string& object) {
    if (ret < 0) ThrowErrno(env, -ret, op, object, libbpf_log::Tail());
  }

  bpf_object* obj_ = nullptr;
  std::string path_;
};

Napi::Value OpenObject(const Napi::CallbackInfo& info) {
  Args args(info, "openObject");
  std::string path = args.String(0, "objectPath");
  std::string pin_root = args.String(1, "pinRoot");
  auto opts = Opts<bpf_object_open_opts>();
  opts.pin_root_path = pin_root.c_str();
  libbpf_log::Clear();
  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  if (!obj) {
    int err = errno;
    ThrowErrno(info.Env(), err, "bpf_object__open_file", path, libbpf_log::Tail());
  }
  auto* ctor = info.Env().GetInstanceData<Napi::FunctionReference>();
  return ctor->New({Napi::External<bpf_object>::New(info.Env(), obj), Napi::String::New(info.Env(), path)});
}

}  // namespace

void ExportObject(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(BpfObject::Class(env))));
  Export(env, exports, "openObject", OpenObject);
}
