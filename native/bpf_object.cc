// openObject() and the BpfObject it returns: a libbpf bpf_object whose maps
// declared with LIBBPF_PIN_BY_NAME are pinned under (or reused from) pinRoot.
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>

#include "args.h"
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
