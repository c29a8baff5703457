// BPF iterators: running an iterator program (a socket iterator, for one)
// in a network namespace; and what the running kernel offers programs (a
// kfunc the iterator calls, the helpers others call where the kernel has
// them), read from its BTF.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace {

// Closes an fd when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// An iterator of the program, made in the network namespace at netns_path
// (empty: the calling thread's): socket iterators see the sockets of the
// namespace they are made in. Returns -errno on failure.
int CreateIter(int link_fd, const std::string& netns_path, std::string* failed) {
  if (netns_path.empty()) {
    *failed = "bpf_iter_create";
    return bpf_iter_create(link_fd);
  }
  Fd target(open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.get() < 0) {
    *failed = "open";
    return -errno;
  }
  Fd home(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (home.get() < 0) {
    *failed = "open /proc/thread-self/ns/net";
    return -errno;
  }
  if (setns(target.get(), CLONE_NEWNET) != 0) {
    *failed = "setns";
    return -errno;
  }
  int iter_fd = bpf_iter_create(link_fd);
  // This thread runs all of the control plane: it cannot go on elsewhere.
  if (setns(home.get(), CLONE_NEWNET) != 0) {
    perror("kube-lb: setns back to its own network namespace after making an iterator");
    abort();
  }
  *failed = "bpf_iter_create";
  return iter_fd;
}

// Runs an iterator program once in a network namespace (a path such as
// /proc/PID/ns/net; null: kube-lb's own); returns how many bytes it wrote.
Napi::Value IterRun(const Napi::CallbackInfo& info) {
  Args args(info, "iterRun");
  int prog_fd = args.Int(0, "progFd");
  std::string netns_path = info[1].IsNull() ? "" : args.String(1, "netnsPath");
  std::string object = Numbered("prog fd", prog_fd) + (netns_path.empty() ? "" : " in " + netns_path);
  Fd link(Check(info.Env(), bpf_link_create(prog_fd, 0, BPF_TRACE_ITER, nullptr), "bpf_link_create", object));
  std::string failed;
  Fd iter(CreateIter(link.get(), netns_path, &failed));
  if (iter.get() < 0) ThrowErrno(info.Env(), -iter.get(), failed, object);
  char buf[4096];
  double total = 0;
  for (;;) {
    ssize_t n = read(iter.get(), buf, sizeof(buf));
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowErrno(info.Env(), errno, "read", "iterator of " + object);
    total += static_cast<double>(n);
  }
  return Napi::Number::New(info.Env(), total);
}

using BtfPtr = std::unique_ptr<btf, decltype(&btf__free)>;

BtfPtr KernelBtf(Napi::Env env) {
  BtfPtr vmlinux(btf__load_vmlinux_btf(), btf__free);
  if (!vmlinux) ThrowErrno(env, errno, "btf__load_vmlinux_btf", "the kernel's BTF");
  return vmlinux;
}

// Whether the running kernel's BTF has a function (a kfunc) of that name.
Napi::Value KernelHasFunction(const Napi::CallbackInfo& info) {
  std::string name = Args(info, "kernelHasFunction").String(0, "name");
  BtfPtr vmlinux = KernelBtf(info.Env());
  return Napi::Boolean::New(info.Env(), btf__find_by_name_kind(vmlinux.get(), name.c_str(), BTF_KIND_FUNC) >= 0);
}

// Whether the running kernel has a BPF helper: its enum bpf_func_id names
// BPF_FUNC_<name>. The programs' CO-RE tests (bpf_core_enum_value_exists)
// read the same enum, so both sides agree on what the kernel has.
Napi::Value KernelHasHelper(const Napi::CallbackInfo& info) {
  std::string name = "BPF_FUNC_" + Args(info, "kernelHasHelper").String(0, "name");
  BtfPtr vmlinux = KernelBtf(info.Env());
  int id = btf__find_by_name_kind(vmlinux.get(), "bpf_func_id", BTF_KIND_ENUM);
  if (id < 0) return Napi::Boolean::New(info.Env(), false);
  const btf_type* type = btf__type_by_id(vmlinux.get(), id);
  const struct btf_enum* values = btf_enum(type);
  for (uint16_t i = 0; i < btf_vlen(type); i++) {
    if (name == btf__name_by_offset(vmlinux.get(), values[i].name_off)) return Napi::Boolean::New(info.Env(), true);
  }
  return Napi::Boolean::New(info.Env(), false);
}

}  // namespace

void ExportIter(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "iterRun", IterRun);
  Export(env, exports, "kernelHasFunction", KernelHasFunction);
  Export(env, exports, "kernelHasHelper", KernelHasHelper);
}
