// Program introspection and BPF_PROG_TEST_RUN.
#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "opts.h"

namespace {

// Room for programs that grow the packet (encapsulation, for instance).
constexpr size_t kTestRunHeadroom = 256;

// Returns -errno on failure, like the libbpf call.
int QueryProgInfo(int fd, bpf_prog_info* prog) {
  *prog = {};
  uint32_t len = sizeof(*prog);
  return bpf_obj_get_info_by_fd(fd, prog, &len);
}

Napi::Object ProgInfoObject(Napi::Env env, const bpf_prog_info& prog) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", Napi::Number::New(env, prog.id));
  result.Set("name", Napi::String::New(env, prog.name));
  return result;
}

Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  int fd = Args(info, "progInfo").Int(0, "fd");
  bpf_prog_info prog;
  Check(info.Env(), QueryProgInfo(fd, &prog), "bpf_obj_get_info_by_fd", Numbered("prog fd", fd));
  return ProgInfoObject(info.Env(), prog);
}

// A new fd of the program with that id, or -1 when there is none.
int ProgFdById(Napi::Env env, uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd == -ENOENT) return -1;
  return Check(env, fd, "bpf_prog_get_fd_by_id", Numbered("prog id", id));
}

Napi::Value ProgInfoById(const Napi::CallbackInfo& info) {
  uint32_t id = Args(info, "progInfoById").Uint32(0, "id");
  std::string object = Numbered("prog id", id);
  int fd = ProgFdById(info.Env(), id);
  if (fd < 0) return info.Env().Null();
  bpf_prog_info prog;
  int ret = QueryProgInfo(fd, &prog);
  close(fd);
  Check(info.Env(), ret, "bpf_obj_get_info_by_fd", object);
  return ProgInfoObject(info.Env(), prog);
}

// The ids of the maps a program uses.
Napi::Value ProgMapIds(const Napi::CallbackInfo& info) {
  uint32_t id = Args(info, "progMapIds").Uint32(0, "id");
  std::string object = Numbered("prog id", id);
  int fd = ProgFdById(info.Env(), id);
  if (fd < 0) return info.Env().Null();
  bpf_prog_info prog;
  int ret = QueryProgInfo(fd, &prog);
  std::vector<uint32_t> ids(ret == 0 ? prog.nr_map_ids : 0);
  if (ret == 0 && !ids.empty()) {
    uint32_t count = prog.nr_map_ids;
    prog = {};
    prog.nr_map_ids = count;
    prog.map_ids = reinterpret_cast<uintptr_t>(ids.data());
    uint32_t len = sizeof(prog);
    ret = bpf_obj_get_info_by_fd(fd, &prog, &len);
  }
  close(fd);
  Check(info.Env(), ret, "bpf_obj_get_info_by_fd", object);
  Napi::Array result = Napi::Array::New(info.Env(), ids.size());
  for (size_t i = 0; i < ids.size(); i++) result.Set(i, Napi::Number::New(info.Env(), ids[i]));
  return result;
}

Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Args args(info, "progTestRun");
  int fd = args.Int(0, "progFd");
  Napi::Buffer<uint8_t> data = args.Buffer(1, "data");
  int repeat = static_cast<int>(args.Uint32(2, "repeat", 0, INT_MAX));
  std::vector<uint8_t> out(data.Length() + kTestRunHeadroom);
  auto opts = Opts<bpf_test_run_opts>();
  // The program's context as it starts (for XDP, a struct xdp_md naming its interface).
  if (!info[3].IsUndefined()) {
    Napi::Buffer<uint8_t> ctx = args.Buffer(3, "ctxIn");
    opts.ctx_in = ctx.Data();
    opts.ctx_size_in = ctx.Length();
  }
  opts.data_in = data.Data();
  opts.data_size_in = data.Length();
  opts.data_out = out.data();
  opts.data_size_out = out.size();
  opts.repeat = repeat;
  Check(info.Env(), bpf_prog_test_run_opts(fd, &opts), "bpf_prog_test_run_opts", Numbered("prog fd", fd));
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("retval", Napi::Number::New(info.Env(), opts.retval));
  result.Set("data", Napi::Buffer<uint8_t>::Copy(info.Env(), out.data(), opts.data_size_out));
  result.Set("durationNs", Napi::Number::New(info.Env(), opts.duration));
  return result;
}

// Runs an XDP program on `repeat` copies of a frame as if an interface had
// received them (BPF_F_TEST_XDP_LIVE_FRAMES): what it sends, it sends. Ends
// early when a signal is pending. EINVAL on a kernel without live frames.
void ProgTestRunLive(const Napi::CallbackInfo& info) {
  Args args(info, "progTestRunLive");
  int fd = args.Int(0, "progFd");
  Napi::Buffer<uint8_t> frame = args.Buffer(1, "frame");
  auto opts = Opts<bpf_test_run_opts>();
  opts.data_in = frame.Data();
  opts.data_size_in = frame.Length();
  opts.repeat = args.Uint32(2, "repeat", 1);
  opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
  // The kernel's default (NAPI's batch), named: a kernel older than live
  // frames (5.18) knows no batch size and refuses the call (EINVAL), where
  // it would ignore the flag and run the program as a plain test.
  opts.batch_size = 64;
  Check(info.Env(), bpf_prog_test_run_opts(fd, &opts), "bpf_prog_test_run_opts", Numbered("prog fd", fd));
}

}  // namespace

void ExportProgs(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "progInfo", ProgInfo);
  Export(env, exports, "progInfoById", ProgInfoById);
  Export(env, exports, "progMapIds", ProgMapIds);
  Export(env, exports, "progTestRun", ProgTestRun);
  Export(env, exports, "progTestRunLive", ProgTestRunLive);
}
