// TC programs on the clsact qdisc of an interface, attached as direct-action
// filters identified by (ifindex, direction, handle, priority).
#include <bpf/libbpf.h>

#include <cerrno>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "opts.h"

namespace {

bpf_tc_hook Hook(int ifindex, int attach_point) {
  auto hook = Opts<bpf_tc_hook>();
  hook.ifindex = ifindex;
  hook.attach_point = static_cast<bpf_tc_attach_point>(attach_point);
  return hook;
}

// Both directions: creating or destroying the hook means the clsact qdisc.
bpf_tc_hook Clsact(int ifindex) { return Hook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS); }

struct Filter {
  bpf_tc_hook hook;
  bpf_tc_opts opts;
  std::string name;  // for error messages
};

// Parses (ifindex, point, ..., handle, priority): handle is at handle_index.
// Handle and priority must be given (0 would let the kernel pick them, and
// the filter could not be found again); priorities are 16-bit.
Filter FilterArgs(const Args& args, size_t handle_index) {
  int ifindex = static_cast<int>(args.Uint32(0, "ifindex", 1, INT_MAX));
  std::string point = args.String(1, "point");
  if (point != "ingress" && point != "egress") args.Fail("point", "'ingress' or 'egress'");
  Filter filter{Hook(ifindex, point == "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS), Opts<bpf_tc_opts>(),
                Numbered("ifindex", ifindex) + " " + point};
  filter.opts.handle = args.Uint32(handle_index, "handle", 1);
  filter.opts.priority = args.Uint32(handle_index + 1, "priority", 1, UINT16_MAX);
  return filter;
}

Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Args args(info, "tcAttach");
  Filter filter = FilterArgs(args, 3);
  filter.opts.prog_fd = args.Int(2, "progFd");
  // Replacing swaps the program atomically when the filter already exists.
  filter.opts.flags = BPF_TC_F_REPLACE;

  bpf_tc_hook clsact = Clsact(filter.hook.ifindex);
  int created = bpf_tc_hook_create(&clsact);
  if (created != -EEXIST) {
    Check(info.Env(), created, "bpf_tc_hook_create", Numbered("ifindex", clsact.ifindex));
  }
  Check(info.Env(), bpf_tc_attach(&filter.hook, &filter.opts), "bpf_tc_attach", filter.name);
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("hookCreated", Napi::Boolean::New(info.Env(), created == 0));
  return result;
}

// With the arguments checked, the kernel answers EINVAL when there is no
// clsact qdisc or no filter chain left (tc_get_tfilter, tc_del_tfilter), and
// ENOENT when the chain lacks this filter: either way, no such filter.
bool NoFilter(int ret) { return ret == -ENOENT || ret == -EINVAL; }

Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  Filter filter = FilterArgs(Args(info, "tcDetach"), 2);
  int ret = bpf_tc_detach(&filter.hook, &filter.opts);
  if (!NoFilter(ret)) Check(info.Env(), ret, "bpf_tc_detach", filter.name);
  return Napi::Boolean::New(info.Env(), ret == 0);
}

Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  Filter filter = FilterArgs(Args(info, "tcQuery"), 2);
  int ret = bpf_tc_query(&filter.hook, &filter.opts);
  if (NoFilter(ret)) return info.Env().Null();
  Check(info.Env(), ret, "bpf_tc_query", filter.name);
  return Napi::Number::New(info.Env(), filter.opts.prog_id);
}

void TcHookDestroy(const Napi::CallbackInfo& info) {
  int ifindex = Args(info, "tcHookDestroy").Int(0, "ifindex");
  bpf_tc_hook clsact = Clsact(ifindex);
  Check(info.Env(), bpf_tc_hook_destroy(&clsact), "bpf_tc_hook_destroy", Numbered("ifindex", ifindex));
}

}  // namespace

void ExportTc(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "tcAttach", TcAttach);
  Export(env, exports, "tcDetach", TcDetach);
  Export(env, exports, "tcQuery", TcQuery);
  Export(env, exports, "tcHookDestroy", TcHookDestroy);
}
