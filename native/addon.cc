// Entry point of kube_lb_native.node, a thin layer over libbpf whose JS API
// is declared in src/native/index.ts.
#include "exports.h"
#include "libbpf_log.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_log::Install();
  ExportObject(env, exports);
  ExportMaps(env, exports);
  ExportFds(env, exports);
  ExportProgs(env, exports);
  ExportTc(env, exports);
  ExportXdp(env, exports);
  ExportBtf(env, exports);
  ExportNetns(env, exports);
  ExportCgroup(env, exports);
  ExportIpvs(env, exports);
  ExportIpvsLink(env, exports);
  ExportIpset(env, exports);
  ExportIter(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(kube_lb_native, Init)
