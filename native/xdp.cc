// XDP programs on an interface, in one of two modes: native (in the
// driver) or generic (on the skb, for drivers without XDP). An interface
// runs at most one program, in one mode.
#include <bpf/libbpf.h>
#include <linux/if_link.h>

#include <cerrno>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "opts.h"

namespace {

uint32_t ModeFlag(const Args& args, size_t i) {
  std::string mode = args.String(i, "mode");
  if (mode == "native") return XDP_FLAGS_DRV_MODE;
  if (mode == "generic") return XDP_FLAGS_SKB_MODE;
  args.Fail("mode", "'native' or 'generic'");
}

int Ifindex(const Args& args) { return static_cast<int>(args.Uint32(0, "ifindex", 1, INT_MAX)); }

// Attaching replaces the interface's program in that mode at once.
void XdpAttach(const Napi::CallbackInfo& info) {
  Args args(info, "xdpAttach");
  int ifindex = Ifindex(args);
  int prog_fd = args.Int(1, "progFd");
  uint32_t flags = ModeFlag(args, 2);
  Check(info.Env(), bpf_xdp_attach(ifindex, prog_fd, flags, nullptr), "bpf_xdp_attach", Numbered("ifindex", ifindex));
}

void XdpDetach(const Napi::CallbackInfo& info) {
  Args args(info, "xdpDetach");
  int ifindex = Ifindex(args);
  uint32_t flags = ModeFlag(args, 1);
  Check(info.Env(), bpf_xdp_detach(ifindex, flags, nullptr), "bpf_xdp_detach", Numbered("ifindex", ifindex));
}

// The programs on an interface by mode: {native, generic}, each an id or 0.
Napi::Value XdpQuery(const Napi::CallbackInfo& info) {
  Args args(info, "xdpQuery");
  int ifindex = Ifindex(args);
  auto opts = Opts<bpf_xdp_query_opts>();
  Check(info.Env(), bpf_xdp_query(ifindex, 0, &opts), "bpf_xdp_query", Numbered("ifindex", ifindex));
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("native", Napi::Number::New(info.Env(), opts.drv_prog_id));
  result.Set("generic", Napi::Number::New(info.Env(), opts.skb_prog_id));
  return result;
}

}  // namespace

void ExportXdp(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "xdpAttach", XdpAttach);
  Export(env, exports, "xdpDetach", XdpDetach);
  Export(env, exports, "xdpQuery", XdpQuery);
}
