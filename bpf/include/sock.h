/* Socket-level load balancing, at the cgroup hooks of connect, sendmsg,
 * recvmsg and getpeername: the socket is pointed at its backend before any
 * packet exists, so nothing is translated on the wire, and the process is
 * shown the frontend as its peer.
 *
 * Cgroup hooks see the sockets of every network namespace, and other
 * kube-lbs may serve other namespaces of this machine: only sockets of the
 * namespace in kube_lb_sockcfg are touched, and with
 * LB_SOCK_F_ALL_NAMESPACES (--bpf-socket-lb=all) those of every other
 * namespace too, pods'. A pod's translated packets then carry the
 * backend's address, and the TC programs let them pass as direct flows. */
#ifndef KUBE_LB_SOCK_H
#define KUBE_LB_SOCK_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "lb.h"
#include "conntrack.h"
#include "drops.h"
#include "stats.h"

#define LB_ECONNREFUSED 111

/* What a cgroup sock_addr program returns: 1 lets the call go on, 0 fails
 * it (with EPERM, or the errno set with bpf_set_retval). */
#define SOCK_PASS 1
#define SOCK_REFUSE 0

/* Translate pods' sockets too (--bpf-socket-lb=all). */
#define LB_SOCK_F_ALL_NAMESPACES 0x1

/* kube-lb's configuration when it serves the socket's namespace, else
 * NULL; *node says whether that is the node's own. */
static __always_inline struct lb_sock_config *served_config(struct bpf_sock_addr *ctx, int *node)
{
	__u32 zero = 0;
	struct lb_sock_config *config = bpf_map_lookup_elem(&kube_lb_sockcfg, &zero);

	if (!config || !config->netns_cookie)
		return NULL;
	*node = config->netns_cookie == bpf_get_netns_cookie(ctx);
	return *node || (config->flags & LB_SOCK_F_ALL_NAMESPACES) ? config : NULL;
}

/* Whether the internal-scope service of the flow's frontend decides by
 * the client's address: session affinity, loadBalancerSourceRanges. */
static __always_inline int needs_client_addr(const struct lb_flow_key *flow)
{
	struct lb_svc_key key = {
		.port = flow->dport,
		.proto = flow->proto,
		.scope = LB_SCOPE_INTERNAL,
	};
	struct lb_svc_value *svc;

	addr_copy(key.vip, flow->daddr);
	svc = bpf_map_lookup_elem(&kube_lb_svc, &key);
	return svc && (svc->affinity_timeout || (svc->flags & LB_SVC_F_SOURCE_RANGES));
}

static __always_inline int sock_proto(struct bpf_sock_addr *ctx)
{
	__u32 proto = ctx->protocol;

	return proto == IPPROTO_TCP || proto == IPPROTO_UDP ? proto : 0;
}

/* The socket's destination (user_ip4 or user_ip6), read and written a
 * word at a time, as the context allows. */
static __always_inline void sock_daddr(const struct bpf_sock_addr *ctx, int ipv6, lb_addr_t a)
{
	if (!ipv6) {
		addr_set4(a, ctx->user_ip4);
		return;
	}
	addr_set_word(a, 0, ctx->user_ip6[0]);
	addr_set_word(a, 1, ctx->user_ip6[1]);
	addr_set_word(a, 2, ctx->user_ip6[2]);
	addr_set_word(a, 3, ctx->user_ip6[3]);
}

static __always_inline void sock_set_daddr(struct bpf_sock_addr *ctx, int ipv6, const lb_addr_t a)
{
	if (!ipv6) {
		ctx->user_ip4 = addr_get4(a);
		return;
	}
	ctx->user_ip6[0] = addr_word(a, 0);
	ctx->user_ip6[1] = addr_word(a, 1);
	ctx->user_ip6[2] = addr_word(a, 2);
	ctx->user_ip6[3] = addr_word(a, 3);
}

/* Points the socket's destination (user_ip4 or user_ip6 as ipv6 says,
 * user_port) at a backend of the frontend it names, in the internal scope
 * (as kube-proxy treats pods' and the node's traffic, and as the TC path
 * does), and records the frontend for the replies. src is the address the
 * socket sends from, all zeros when the kernel has not chosen it: for the
 * node, its address of the family stands for it; a pod's is not known
 * here, so where the service decides by the client's address, the socket
 * is left to the TC path, which sees it. A connect counts as a connection
 * to the backend; an unconnected datagram does not. */
static __always_inline int sock_to_backend(struct bpf_sock_addr *ctx, const lb_addr_t src, int connect, int ipv6)
{
	int node = 0;
	struct lb_sock_config *config = served_config(ctx, &node);
	struct lb_flow_key flow = {};
	struct lb_sock_key key = {};
	struct lb_sock_value frontend = {};
	struct lb_svc_value *backend;
	enum no_backend none;
	__u16 svc_flags = 0;
	__u8 proto;

	if (!config)
		return SOCK_PASS;
	proto = sock_proto(ctx);
	if (!proto)
		return SOCK_PASS;
	sock_daddr(ctx, ipv6, flow.daddr);
	flow.dport = bpf_ntohs((__u16)ctx->user_port);
	flow.proto = proto;
	if (addr_is_zero(src) && !node && needs_client_addr(&flow))
		return SOCK_PASS;
	if (!addr_is_zero(src))
		addr_copy(flow.saddr, src);
	else
		addr_copy(flow.saddr, ipv6 ? config->node_addr6 : config->node_addr);
	backend = pick_backend(&flow, LB_SCOPE_INTERNAL, ct_now(), &none, &svc_flags);
	if (!backend) {
		switch (none) {
		case NO_BACKEND_REJECT:
			/* As kube-proxy's REJECT: the caller fails at once with
			 * ECONNREFUSED; before kernel 5.18, which cannot set the
			 * errno, with EPERM (see conntrack.h for the test). */
			if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_set_retval))
				bpf_set_retval(-LB_ECONNREFUSED);
			count_drop(LB_DROP_NO_ENDPOINTS);
			return SOCK_REFUSE;
		case NO_BACKEND_DROP:
			/* A drop on the wire would leave the caller waiting;
			 * here it fails at once, with EPERM. */
			count_drop(LB_DROP_NO_ENDPOINTS);
			return SOCK_REFUSE;
		case NO_BACKEND_SOURCE_REFUSED:
			count_drop(LB_DROP_SOURCE_RANGE);
			return SOCK_REFUSE;
		default:
			return SOCK_PASS;
		}
	}
	key.cookie = bpf_get_socket_cookie(ctx);
	addr_copy(key.backend_addr, backend->backend_addr);
	key.backend_port = backend->backend_port;
	key.proto = proto;
	addr_copy(frontend.vip, flow.daddr);
	frontend.vport = flow.dport;
	/* Without the record, replies would show the backend: refuse rather. */
	if (bpf_map_update_elem(&kube_lb_sock_rnat, &key, &frontend, BPF_ANY) < 0) {
		count_drop(LB_DROP_CONNTRACK_FULL);
		return SOCK_REFUSE;
	}
	if (connect) {
		struct lb_backend_key stats_key;

		backend_key(&stats_key, flow.daddr, flow.dport, proto, LB_SCOPE_INTERNAL, backend->backend_addr,
			    backend->backend_port);
		count_connection(&stats_key);
	}
	sock_set_daddr(ctx, ipv6, backend->backend_addr);
	ctx->user_port = bpf_htons(backend->backend_port);
	return SOCK_PASS;
}

/* Shows the frontend instead of the backend as the peer (recvmsg's source, getpeername). */
static __always_inline int sock_show_frontend(struct bpf_sock_addr *ctx, int ipv6)
{
	struct lb_sock_value *frontend;
	struct lb_sock_key key = {};
	int node;

	if (!served_config(ctx, &node))
		return SOCK_PASS;
	key.proto = sock_proto(ctx);
	if (!key.proto)
		return SOCK_PASS;
	key.cookie = bpf_get_socket_cookie(ctx);
	sock_daddr(ctx, ipv6, key.backend_addr);
	key.backend_port = bpf_ntohs((__u16)ctx->user_port);
	frontend = bpf_map_lookup_elem(&kube_lb_sock_rnat, &key);
	if (!frontend)
		return SOCK_PASS;
	sock_set_daddr(ctx, ipv6, frontend->vip);
	ctx->user_port = bpf_htons(frontend->vport);
	return SOCK_PASS;
}

#endif
