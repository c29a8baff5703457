// Pinned objects and the fds that refer to them.
#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace {

Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  std::string path = Args(info, "objGet").String(0, "pinPath");
  int fd = Check(info.Env(), bpf_obj_get(path.c_str()), "bpf_obj_get", path);
  return Napi::Number::New(info.Env(), fd);
}

void ObjPin(const Napi::CallbackInfo& info) {
  Args args(info, "objPin");
  int fd = args.Int(0, "fd");
  std::string path = args.String(1, "pinPath");
  Check(info.Env(), bpf_obj_pin(fd, path.c_str()), "bpf_obj_pin", path);
}

// null when no map has that id (any more).
Napi::Value MapFdById(const Napi::CallbackInfo& info) {
  uint32_t id = Args(info, "mapFdById").Uint32(0, "id");
  int fd = bpf_map_get_fd_by_id(id);
  if (fd == -ENOENT) return info.Env().Null();
  Check(info.Env(), fd, "bpf_map_get_fd_by_id", Numbered("map id", id));
  return Napi::Number::New(info.Env(), fd);
}

void CloseFd(const Napi::CallbackInfo& info) {
  int fd = Args(info, "closeFd").Int(0, "fd");
  if (close(fd) != 0) {
    int err = errno;
    ThrowErrno(info.Env(), err, "close", Numbered("fd", fd));
  }
}

}  // namespace

void ExportFds(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "objGet", ObjGet);
  Export(env, exports, "objPin", ObjPin);
  Export(env, exports, "mapFdById", MapFdById);
  Export(env, exports, "closeFd", CloseFd);
}
