/* A packet's flow: found in conntrack, or started with a backend, and the
 * rewrite its backend must see. Shared by the TC and XDP programs. */
#ifndef KUBE_LB_FLOW_H
#define KUBE_LB_FLOW_H

#include "conntrack.h"
#include "ctx.h"
#include "drops.h"
#include "forward.h"
#include "lb.h"
#include "nat.h"
#include "reject.h"
#include "stats.h"

/* What a packet belongs to: its flow's conntrack entry, or a new one with a
 * backend picked in scope (LB_SCOPE_*). Returns NULL when the packet goes
 * no further here (a reply of a flow from outside, sent on its way; a
 * refusal; a drop), with *verdict set, or with *verdict -1 when it is
 * addressed to no service. */
static __always_inline struct lb_ct_value *flow_entry(lb_ctx *ctx, const struct packet *pkt, __u8 scope,
						      struct lb_ct_value *new_ct, int *verdict)
{
	struct lb_svc_value *backend;
	struct lb_iface_value *uplink;
	struct lb_rnat_value *rnat;
	struct lb_ct_value *ct;
	enum no_backend none;
	__u32 now = ct_now();
	lb_addr_t snat_addr = {};
	__u16 svc_flags = 0;
	__u32 ifindex;

	ct = bpf_map_lookup_elem(&kube_lb_ct, &pkt->flow);
	if (ct && !ct_is_over(ct, pkt, now)) {
		if (ct->flags & LB_CT_F_STACK) {
			ct_refresh_stack(pkt, ct, now);
			*verdict = -1;
			return NULL;
		}
		ct_refresh(pkt, ct, now);
		return ct;
	}
	/* A reply of a flow from outside goes back before any service lookup:
	 * the client port it is addressed to may equal a frontend's port. */
	rnat = bpf_map_lookup_elem(&kube_lb_rnat, &pkt->flow);
	if (rnat && (rnat->flags & LB_CT_F_WORLD)) {
		*verdict = world_reply(ctx, pkt, rnat);
		return NULL;
	}
	if (pkt->flow.proto == IPPROTO_TCP && !is_tcp_syn(pkt) && adopting()) {
		*verdict = -1;
		return NULL;
	}
	backend = pick_backend(&pkt->flow, scope, now, &none, &svc_flags);
	if (!backend) {
		switch (none) {
		case NO_BACKEND_REJECT:
			*verdict = reject_unreachable(ctx, pkt);
			break;
		case NO_BACKEND_DROP:
			*verdict = drop(LB_DROP_NO_ENDPOINTS);
			break;
		case NO_BACKEND_SOURCE_REFUSED:
			*verdict = drop(LB_DROP_SOURCE_RANGE);
			break;
		default:
			*verdict = -1;
		}
		return NULL;
	}
	if ((svc_flags & LB_SVC_F_SNAT) && !is_node_addr(ctx, backend->backend_addr)) {
		ifindex = ctx_ifindex(ctx);
		uplink = bpf_map_lookup_elem(&kube_lb_ifaces, &ifindex);
		if (uplink)
			addr_copy(snat_addr, pkt->ipv6 ? uplink->snat_addr6 : uplink->snat_addr);
		if (addr_is_zero(snat_addr)) {
			*verdict = drop(LB_DROP_NO_SNAT_ADDR);
			return NULL;
		}
	}
	switch (ct_create(pkt, backend, scope == LB_SCOPE_EXTERNAL, snat_addr, now, new_ct)) {
	case CT_CREATED: {
		struct lb_backend_key key;

		forward_backend_key(&key, &pkt->flow, new_ct);
		count_connection(&key);
		return new_ct;
	}
	case CT_NO_NAT_PORT:
		*verdict = drop(LB_DROP_NO_NAT_PORT);
		return NULL;
	default:
		*verdict = drop(LB_DROP_CONNTRACK_FULL);
		return NULL;
	}
}

/* Rewrites a packet of a flow the way its backend must see it. */
static __always_inline int to_backend(lb_ctx *ctx, const struct packet *pkt, const struct lb_ct_value *ct)
{
	lb_addr_t saddr;

	if (nat_addr(ctx, pkt, NAT_DST_ADDR, pkt->flow.daddr, ct->backend_addr) < 0 ||
	    nat_port(ctx, pkt, NAT_DST_PORT, pkt->flow.dport, ct->backend_port) < 0 ||
	    nat_port(ctx, pkt, NAT_SRC_PORT, pkt->flow.sport, ct_backend_sport(&pkt->flow, ct)) < 0)
		return -1;
	if (!(ct->flags & LB_CT_F_HAIRPIN) && addr_is_zero(ct->nat_saddr))
		return 0;
	/* Hairpinned or SNATed: the backend sees another client address. */
	ct_backend_saddr(&pkt->flow, ct, saddr);
	return nat_addr(ctx, pkt, NAT_SRC_ADDR, pkt->flow.saddr, saddr);
}

/* A packet from outside the node, on an uplink: a new or established flow
 * to an external frontend goes to its backend, a reply of one back to its
 * client, and anything else on its way. */
static __always_inline int from_world(lb_ctx *ctx)
{
	struct lb_ct_value new_ct, *ct;
	struct bpf_fib_lookup fib;
	struct packet pkt;
	lb_addr_t saddr;
	long fib_ret;
	int verdict;

	if (parse_packet(ctx, &pkt) < 0)
		return CTX_PASS;
#ifdef LB_XDP
	/* IPv6 is TC's so far: XDP's IPv6 path has no test yet (docs/ebpf-datapath.md). */
	if (pkt.ipv6)
		return CTX_PASS;
#endif
	ct = flow_entry(ctx, &pkt, LB_SCOPE_EXTERNAL, &new_ct, &verdict);
	if (!ct)
		return verdict != -1 ? verdict : CTX_PASS;
	ct_backend_saddr(&pkt.flow, ct, saddr);
	if (!route(ctx, saddr, ct->backend_addr, pkt.flow.proto, &fib, &fib_ret, &verdict)) {
#ifdef LB_XDP
		return verdict;
#else
		/* A host-network endpoint of this node: the stack delivers the
		 * translated packet, and lb_to_world translates the replies. */
		if (fib_ret != BPF_FIB_LKUP_RET_NOT_FWDED)
			return verdict;
#endif
	}
	if (to_backend(ctx, &pkt, ct) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	count_forward_packet(ctx, &pkt, ct);
	return fib_ret == BPF_FIB_LKUP_RET_NOT_FWDED ? CTX_PASS : send_to_next_hop(ctx, &pkt, &fib, fib_ret);
}

#endif
