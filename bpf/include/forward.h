/* Forwarding a translated packet straight to its next hop, for the flows
 * the stack must not see: a packet SNATed to the node's own address would
 * be a martian to it, and a reply from a local endpoint to an outside
 * client needs its frontend restored before it leaves. The next hop is
 * found before the packet is rewritten, so that what XDP cannot send
 * itself goes on to TC unchanged. */
#ifndef KUBE_LB_FORWARD_H
#define KUBE_LB_FORWARD_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include "conntrack.h"
#include "drops.h"
#include "nat.h"
#include "stats.h"

#define AF_INET 2
#define AF_INET6 10

/* Decrements the TTL (IPv6: the hop limit), as a router does, keeping the
 * IPv4 header checksum right (IPv6 has none). Returns 0, or -1 with the
 * drop counted. */
static __always_inline int decrement_ttl(lb_ctx *ctx, int ipv6)
{
	__u32 off = ETH_HLEN + (ipv6 ? offsetof(struct ipv6hdr, hop_limit) : offsetof(struct iphdr, ttl));
	__u8 ttl;

	if (ctx_load_bytes(ctx, off, &ttl, 1) < 0) {
		count_drop(LB_DROP_REWRITE_FAILED);
		return -1;
	}
	if (ttl <= 1) {
		count_drop(LB_DROP_TTL_EXCEEDED);
		return -1;
	}
	/* The TTL is the high byte of its 16-bit checksum word. */
	if (!ipv6 && ctx_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check), bpf_htons(ttl << 8),
					 bpf_htons((ttl - 1) << 8), 2) < 0) {
		count_drop(LB_DROP_REWRITE_FAILED);
		return -1;
	}
	ttl--;
	if (ctx_store_bytes(ctx, off, &ttl, 1) < 0) {
		count_drop(LB_DROP_REWRITE_FAILED);
		return -1;
	}
	return 0;
}

/* Gives the frame the MAC addresses of the hop the FIB lookup found. */
static __always_inline int set_macs(lb_ctx *ctx, const struct bpf_fib_lookup *fib)
{
	if (ctx_store_bytes(ctx, offsetof(struct ethhdr, h_dest), fib->dmac, ETH_ALEN) < 0 ||
	    ctx_store_bytes(ctx, offsetof(struct ethhdr, h_source), fib->smac, ETH_ALEN) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return 0;
}

#ifdef LB_XDP

/* XDP sends a frame only where it surely goes: back out of the interface
 * it came in on, or to another uplink under kube-lb's XDP program (a
 * driver that runs XDP takes redirected frames). Frames for any other
 * interface, such as a local pod's, and for a neighbour the kernel has yet
 * to resolve, are TC's. */
static __always_inline int can_send(lb_ctx *ctx, const struct bpf_fib_lookup *fib, long fib_ret)
{
	__u32 ifindex = fib->ifindex;
	struct lb_iface_value *out;

	if (fib_ret != BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	if (ifindex == ctx_ifindex(ctx))
		return 1;
	out = bpf_map_lookup_elem(&kube_lb_ifaces, &ifindex);
	return out && (out->flags & LB_IFACE_F_XDP);
}

static __always_inline int send_to_hop(lb_ctx *ctx, const struct bpf_fib_lookup *fib, long fib_ret)
{
	if (set_macs(ctx, fib) < 0)
		return CTX_DROP;
	return ctx_send(ctx, fib->ifindex);
}

#else

/* TC sends anywhere, and lets the kernel resolve a neighbour not known yet. */
static __always_inline int can_send(lb_ctx *ctx, const struct bpf_fib_lookup *fib, long fib_ret)
{
	return 1;
}

static __always_inline int send_to_hop(lb_ctx *ctx, const struct bpf_fib_lookup *fib, long fib_ret)
{
	if (fib_ret == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib->ifindex, NULL, 0, 0);
	if (set_macs(ctx, fib) < 0)
		return CTX_DROP;
	return ctx_send(ctx, fib->ifindex);
}

#endif

/* Sets a FIB lookup's family and addresses (saddr: NULL for none). */
static __always_inline void fib_addrs(struct bpf_fib_lookup *fib, const lb_addr_t saddr, const lb_addr_t daddr)
{
	if (addr_is4(daddr)) {
		fib->family = AF_INET;
		fib->ipv4_src = saddr ? addr_get4(saddr) : 0;
		fib->ipv4_dst = addr_get4(daddr);
		return;
	}
	fib->family = AF_INET6;
	if (saddr)
		__builtin_memcpy(fib->ipv6_src, saddr, sizeof(fib->ipv6_src));
	__builtin_memcpy(fib->ipv6_dst, daddr, sizeof(fib->ipv6_dst));
}

/* Whether addr is one of the node's own, as seen from the interface the
 * packet came in on: the node's stack delivers packets to it, so a flow to
 * it is never SNATed (its source would be the node's own address too). */
static __always_inline int is_node_addr(lb_ctx *ctx, const lb_addr_t addr)
{
	struct bpf_fib_lookup fib = {};

	fib_addrs(&fib, NULL, addr);
	fib.ifindex = ctx_ifindex(ctx);
	return bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) == BPF_FIB_LKUP_RET_NOT_FWDED;
}

/* Finds where a packet from saddr to daddr goes next, out of the
 * interface the routing table picks. Returns 1 when this context can send
 * it there (send_to_next_hop), else 0 with *verdict set: a counted drop, or
 * CTX_PASS for XDP to leave the packet to TC, or for the node's stack to
 * deliver it to daddr, an address of the node (*fib_ret NOT_FWDED). */
static __always_inline int route(lb_ctx *ctx, const lb_addr_t saddr, const lb_addr_t daddr, __u8 proto,
				 struct bpf_fib_lookup *fib,
				 long *fib_ret, int *verdict)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib_addrs(fib, saddr, daddr);
	fib->l4_protocol = proto;
	fib->ifindex = ctx_ifindex(ctx); /* at ingress, the interface it came in on */
	*fib_ret = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (*fib_ret == BPF_FIB_LKUP_RET_NOT_FWDED) {
		/* One of the node's own addresses (a host-network endpoint):
		 * the node's stack delivers it. */
		*verdict = CTX_PASS;
		return 0;
	}
	if (*fib_ret != BPF_FIB_LKUP_RET_SUCCESS && *fib_ret != BPF_FIB_LKUP_RET_NO_NEIGH) {
		*verdict = drop(LB_DROP_NO_ROUTE);
		return 0;
	}
	if (!can_send(ctx, fib, *fib_ret)) {
		*verdict = CTX_PASS;
		return 0;
	}
	return 1;
}

/* Sends a rewritten packet to the next hop route() found, one hop nearer
 * its end. */
static __always_inline int send_to_next_hop(lb_ctx *ctx, const struct packet *pkt, const struct bpf_fib_lookup *fib,
					    long fib_ret)
{
	if (decrement_ttl(ctx, pkt->ipv6) < 0)
		return CTX_DROP;
	return send_to_hop(ctx, fib, fib_ret);
}

/* Rewrites a reply the way its client must see it: from the frontend, to
 * the client's own address and port (what a hairpin or SNAT changed). */
static __always_inline int reply_to_client(lb_ctx *ctx, const struct packet *pkt, const struct lb_rnat_value *rnat)
{
	if (nat_addr(ctx, pkt, NAT_SRC_ADDR, pkt->flow.saddr, rnat->vip) < 0 ||
	    nat_port(ctx, pkt, NAT_SRC_PORT, pkt->flow.sport, rnat->vport) < 0 ||
	    nat_addr(ctx, pkt, NAT_DST_ADDR, pkt->flow.daddr, rnat->client_addr) < 0 ||
	    nat_port(ctx, pkt, NAT_DST_PORT, pkt->flow.dport, rnat_client_port(&pkt->flow, rnat)) < 0)
		return -1;
	return 0;
}

/* A reply of a flow from outside: rewritten for its client, out towards it. */
static __always_inline int world_reply(lb_ctx *ctx, const struct packet *pkt, const struct lb_rnat_value *rnat)
{
	struct bpf_fib_lookup fib;
	long fib_ret;
	int verdict;

	if (!route(ctx, rnat->vip, rnat->client_addr, pkt->flow.proto, &fib, &fib_ret, &verdict))
		return verdict;
	ct_note_reply(pkt, rnat);
	if (reply_to_client(ctx, pkt, rnat) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	count_reply_packet(ctx, pkt, rnat);
	return send_to_next_hop(ctx, pkt, &fib, fib_ret);
}

#endif
