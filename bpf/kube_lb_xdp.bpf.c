/* kube-lb's XDP datapath: lb_world_xdp on uplinks, before any skb is
 * allocated (--bpf-xdp). It is lb_from_world's code (include/flow.h),
 * built for the XDP context (include/ctx.h): flows from outside to
 * external frontends, and their replies from endpoints on other nodes,
 * leave the node again straight from the driver. What XDP cannot send
 * itself (a flow for a local pod, a neighbour the kernel has yet to
 * resolve) goes on to lb_from_world at TC, unchanged, and finds there the
 * flow XDP recorded. The maps are the TC object's, pinned by name. */
#define LB_XDP
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "include/flow.h"

SEC("xdp")
int lb_world_xdp(struct xdp_md *ctx)
{
	return from_world(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
