/* kube-lb's TC datapath.
 *
 * On every pod-facing interface of the node:
 *  - lb_from_pod (clsact ingress: packets leaving a pod) DNATs new and
 *    established flows addressed to a service to their backend, before
 *    the stack routes them, so routing sees the backend as destination
 *    and the pod's own address as source (rp_filter is satisfied);
 *  - lb_to_pod (clsact egress: packets entering a pod) restores the
 *    service address as the source of replies, after routing, so the
 *    stack never sees a service address as a source either.
 * Hairpin flows (a pod picked as the backend of its own request) never
 * enter the stack: both directions bounce straight back into the pod.
 *
 * On every uplink, lb_from_world (clsact ingress) translates flows from
 * outside the node to external frontends (NodePorts, external and
 * load-balancer IPs) with the frontend's external endpoints, SNATs them to
 * the uplink's address where the traffic policy says so, and forwards them
 * straight to the next hop. Replies of such flows, from a local endpoint
 * (lb_from_pod) or a remote one (lb_from_world), get their frontend back
 * and leave the same way, without the stack seeing them either. A flow to
 * a host-network endpoint of the node itself goes up the node's stack,
 * which answers it; lb_to_world (clsact egress) gives the replies their
 * frontend back. Where XDP
 * is on, lb_world_xdp (kube_lb_xdp.bpf.c) runs the same code before
 * it and leaves to it only what XDP cannot send.
 *
 * At the cgroup v2 root, lb_connect4, lb_sendmsg4, lb_recvmsg4 and
 * lb_getpeername4 (and their IPv6 twins, lb_connect6 ...) balance the
 * node's own sockets, and with --bpf-socket-lb=all pods' too (include/sock.h);
 * lb_udp_destroy ends connected UDP sockets whose backend is gone
 * (include/sock_destroy.h).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "include/flow.h"
#include "include/sock.h"
#include "include/sock_destroy.h"

/* A hairpinned pod answers LB_HAIRPIN_ADDR: give it back its service. */
static __always_inline int hairpin_reply(struct __sk_buff *skb, const struct packet *pkt)
{
	struct lb_rnat_value *rnat = bpf_map_lookup_elem(&kube_lb_rnat, &pkt->flow);

	if (!rnat || !(rnat->flags & LB_CT_F_HAIRPIN))
		return TC_ACT_OK;
	if (reply_to_client(skb, pkt, rnat) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	count_reply_packet(skb, pkt, rnat);
	return bounce_to_sender(skb);
}

SEC("tc")
int lb_from_pod(struct __sk_buff *skb)
{
	struct lb_ct_value new_ct, *ct;
	struct packet pkt;
	int verdict;

	if (parse_packet(skb, &pkt) < 0)
		return TC_ACT_OK;
	if (is_hairpin_addr(pkt.flow.daddr))
		return hairpin_reply(skb, &pkt);

	ct = flow_entry(skb, &pkt, LB_SCOPE_INTERNAL, &new_ct, &verdict);
	if (!ct) {
		if (verdict != -1)
			return verdict;
		ct_forget_reply_of(&pkt);
		return TC_ACT_OK;
	}
	if (to_backend(skb, &pkt, ct) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	count_forward_packet(skb, &pkt, ct);
	return (ct->flags & LB_CT_F_HAIRPIN) ? bounce_to_sender(skb) : TC_ACT_OK;
}

SEC("tc")
int lb_from_world(struct __sk_buff *skb)
{
	return from_world(skb);
}

/* A reply the node's stack routed, from an endpoint it delivered the
 * flow to: it gets its frontend back on its way out. */
static __always_inline int reply_leaving(struct __sk_buff *skb)
{
	struct packet pkt;
	struct lb_rnat_value *rnat;

	if (parse_packet(skb, &pkt) < 0)
		return TC_ACT_OK;
	rnat = bpf_map_lookup_elem(&kube_lb_rnat, &pkt.flow);
	/* Hairpin replies were translated on the way in. */
	if (!rnat || (rnat->flags & LB_CT_F_HAIRPIN))
		return TC_ACT_OK;
	ct_note_reply(&pkt, rnat);
	if (reply_to_client(skb, &pkt, rnat) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	count_reply_packet(skb, &pkt, rnat);
	return TC_ACT_OK;
}

SEC("tc")
int lb_to_pod(struct __sk_buff *skb)
{
	return reply_leaving(skb);
}

SEC("tc")
int lb_to_world(struct __sk_buff *skb)
{
	return reply_leaving(skb);
}

/* The address a socket sends from, all zeros while the kernel has not
 * chosen it. */
static __always_inline void sock_src4(__be32 src, lb_addr_t a)
{
	if (src)
		addr_set4(a, src);
	else
		__builtin_memset(a, 0, sizeof(lb_addr_t));
}

/* TCP and connected UDP. */
SEC("cgroup/connect4")
int lb_connect4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	lb_addr_t src;

	sock_src4(sk ? sk->src_ip4 : 0, src);
	return sock_to_backend(ctx, src, 1, 0);
}

SEC("cgroup/connect6")
int lb_connect6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	lb_addr_t src = {};

	if (sk) {
		addr_set_word(src, 0, sk->src_ip6[0]);
		addr_set_word(src, 1, sk->src_ip6[1]);
		addr_set_word(src, 2, sk->src_ip6[2]);
		addr_set_word(src, 3, sk->src_ip6[3]);
	}
	return sock_to_backend(ctx, src, 1, 1);
}

/* Unconnected UDP: each datagram gets a backend of its own. */
SEC("cgroup/sendmsg4")
int lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__be32 src = ctx->msg_src_ip4;
	lb_addr_t a;

	sock_src4(src || !sk ? src : sk->src_ip4, a);
	return sock_to_backend(ctx, a, 0, 0);
}

SEC("cgroup/sendmsg6")
int lb_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	lb_addr_t src;

	addr_set_word(src, 0, ctx->msg_src_ip6[0]);
	addr_set_word(src, 1, ctx->msg_src_ip6[1]);
	addr_set_word(src, 2, ctx->msg_src_ip6[2]);
	addr_set_word(src, 3, ctx->msg_src_ip6[3]);
	if (addr_is_zero(src) && sk) {
		addr_set_word(src, 0, sk->src_ip6[0]);
		addr_set_word(src, 1, sk->src_ip6[1]);
		addr_set_word(src, 2, sk->src_ip6[2]);
		addr_set_word(src, 3, sk->src_ip6[3]);
	}
	return sock_to_backend(ctx, src, 0, 1);
}

SEC("cgroup/recvmsg4")
int lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	return sock_show_frontend(ctx, 0);
}

SEC("cgroup/recvmsg6")
int lb_recvmsg6(struct bpf_sock_addr *ctx)
{
	return sock_show_frontend(ctx, 1);
}

SEC("cgroup/getpeername4")
int lb_getpeername4(struct bpf_sock_addr *ctx)
{
	return sock_show_frontend(ctx, 0);
}

SEC("cgroup/getpeername6")
int lb_getpeername6(struct bpf_sock_addr *ctx)
{
	return sock_show_frontend(ctx, 1);
}

/* Run by the control plane after a sync removed backends of UDP frontends. */
SEC("iter/udp")
int lb_udp_destroy(struct bpf_iter__udp *ctx)
{
	struct sock_common *sk = (struct sock_common *)ctx->udp_sk;
	char destroyed = 1;

	if (!sk || !sock_backend_gone(sk, IPPROTO_UDP))
		return 0;
	/* One byte read per socket destroyed: the control plane counts them. */
	if (bpf_sock_destroy(sk) == 0)
		bpf_seq_write(ctx->meta->seq, &destroyed, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
