// Cgroup programs (socket hooks) on a cgroup v2 directory, attached with
// BPF_F_ALLOW_MULTI so that other programs on the same hook stay, and found
// again by program id.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace {

struct Hook {
  const char* name;
  bpf_attach_type type;
};

constexpr Hook kHooks[] = {
    {"connect4", BPF_CGROUP_INET4_CONNECT},
    {"sendmsg4", BPF_CGROUP_UDP4_SENDMSG},
    {"recvmsg4", BPF_CGROUP_UDP4_RECVMSG},
    {"getpeername4", BPF_CGROUP_INET4_GETPEERNAME},
    {"connect6", BPF_CGROUP_INET6_CONNECT},
    {"sendmsg6", BPF_CGROUP_UDP6_SENDMSG},
    {"recvmsg6", BPF_CGROUP_UDP6_RECVMSG},
    {"getpeername6", BPF_CGROUP_INET6_GETPEERNAME},
};

bpf_attach_type HookArg(const Args& args, size_t i) {
  std::string name = args.String(i, "hook");
  for (const Hook& hook : kHooks) {
    if (name == hook.name) return hook.type;
  }
  args.Fail("hook", "'connect4', 'sendmsg4', 'recvmsg4', 'getpeername4' or their IPv6 twins ('connect6' ...)");
}

// The cgroup directory's fd, closed when it goes out of scope.
class CgroupFd {
 public:
  CgroupFd(Napi::Env env, const std::string& path) : fd_(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (fd_ < 0) ThrowErrno(env, errno, "open", "cgroup " + path);
  }
  ~CgroupFd() { close(fd_); }
  CgroupFd(const CgroupFd&) = delete;
  CgroupFd& operator=(const CgroupFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Napi::Value CgroupAttach(const Napi::CallbackInfo& info) {
  Args args(info, "cgroupAttach");
  std::string path = args.String(0, "cgroupPath");
  bpf_attach_type type = HookArg(args, 1);
  int prog_fd = args.Int(2, "progFd");
  CgroupFd cgroup(info.Env(), path);
  Check(info.Env(), bpf_prog_attach(prog_fd, cgroup.get(), type, BPF_F_ALLOW_MULTI), "bpf_prog_attach",
        Numbered("prog fd", prog_fd) + " to cgroup " + path + " " + args.String(1, "hook"));
  return info.Env().Undefined();
}

// Returns false when the program is gone or not attached there.
Napi::Value CgroupDetach(const Napi::CallbackInfo& info) {
  Args args(info, "cgroupDetach");
  std::string path = args.String(0, "cgroupPath");
  bpf_attach_type type = HookArg(args, 1);
  uint32_t id = args.Uint32(2, "progId", 1);
  std::string object = Numbered("prog id", id) + " from cgroup " + path + " " + args.String(1, "hook");
  CgroupFd cgroup(info.Env(), path);
  int prog_fd = bpf_prog_get_fd_by_id(id);
  if (prog_fd == -ENOENT) return Napi::Boolean::New(info.Env(), false);
  Check(info.Env(), prog_fd, "bpf_prog_get_fd_by_id", object);
  int ret = bpf_prog_detach2(prog_fd, cgroup.get(), type);
  close(prog_fd);
  if (ret == -ENOENT) return Napi::Boolean::New(info.Env(), false);
  Check(info.Env(), ret, "bpf_prog_detach2", object);
  return Napi::Boolean::New(info.Env(), true);
}

// The ids of the programs attached to the cgroup itself at the hook, in the order they run.
Napi::Value CgroupQuery(const Napi::CallbackInfo& info) {
  Args args(info, "cgroupQuery");
  std::string path = args.String(0, "cgroupPath");
  bpf_attach_type type = HookArg(args, 1);
  std::string object = "cgroup " + path + " " + args.String(1, "hook");
  CgroupFd cgroup(info.Env(), path);
  uint32_t count = 0;
  Check(info.Env(), bpf_prog_query(cgroup.get(), type, 0, nullptr, nullptr, &count), "bpf_prog_query", object);
  std::vector<uint32_t> ids(count);
  if (count > 0) Check(info.Env(), bpf_prog_query(cgroup.get(), type, 0, nullptr, ids.data(), &count), "bpf_prog_query", object);
  Napi::Array result = Napi::Array::New(info.Env(), count);
  for (uint32_t i = 0; i < count; i++) result.Set(i, Napi::Number::New(info.Env(), ids[i]));
  return result;
}

}  // namespace

void ExportCgroup(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "cgroupAttach", CgroupAttach);
  Export(env, exports, "cgroupDetach", CgroupDetach);
  Export(env, exports, "cgroupQuery", CgroupQuery);
}
