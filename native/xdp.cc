// XDP programs on an interface. flags are the XDP_FLAGS_* of linux/if_link.h
// (mode and UPDATE_IF_NOEXIST).
#include <bpf/libbpf.h>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace {

void XdpAttach(const Napi::CallbackInfo& info) {
  Args args(info, "xdpAttach");
  int ifindex = args.Int(0, "ifindex");
  int prog_fd = args.Int(1, "progFd");
  uint32_t flags = args.Uint32(2, "flags");
  int ret = bpf_xdp_attach(ifindex, prog_fd, flags, nullptr);
  Check(info.Env(), ret, "bpf_xdp_attach", Numbered("ifindex", ifindex));
}

void XdpDetach(const Napi::CallbackInfo& info) {
  Args args(info, "xdpDetach");
  int ifindex = args.Int(0, "ifindex");
  uint32_t flags = args.Uint32(1, "flags");
  int ret = bpf_xdp_detach(ifindex, flags, nullptr);
  Check(info.Env(), ret, "bpf_xdp_detach", Numbered("ifindex", ifindex));
}

Napi::Value XdpQuery(const Napi::CallbackInfo& info) {
  Args args(info, "xdpQuery");
  int ifindex = args.Int(0, "ifindex");
  uint32_t flags = args.Uint32(1, "flags");
  uint32_t prog_id = 0;
  int ret = bpf_xdp_query_id(ifindex, flags, &prog_id);
  Check(info.Env(), ret, "bpf_xdp_query_id", Numbered("ifindex", ifindex));
  // Program ids start at 1: 0 means none is attached.
  return prog_id ? Napi::Number::New(info.Env(), prog_id) : info.Env().Null();
}

}  // namespace

void ExportXdp(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "xdpAttach", XdpAttach);
  Export(env, exports, "xdpDetach", XdpDetach);
  Export(env, exports, "xdpQuery", XdpQuery);
}
