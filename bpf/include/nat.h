/* Address and port rewriting with incremental checksum updates (ctx.h). */
#ifndef KUBE_LB_NAT_H
#define KUBE_LB_NAT_H

#include <stddef.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include "drops.h"
#include "parse.h"

#define NAT_SRC_ADDR 0
#define NAT_DST_ADDR 1

/* which: NAT_SRC_ADDR or NAT_DST_ADDR. IPv4 rewrites the header checksum
 * and the L4 one (whose pseudo-header covers the addresses); IPv6 has no
 * header checksum, and its pseudo-header covers all 16 bytes, rewritten
 * a word at a time. */
static __always_inline int nat_addr(lb_ctx *ctx, const struct packet *pkt,
				    int which, const lb_addr_t from_addr, const lb_addr_t to_addr)
{
	int udp = pkt->flow.proto == IPPROTO_UDP;
	__be32 from, to;
	int i;

	if (addr_eq(from_addr, to_addr))
		return 0;
	if (!pkt->ipv6) {
		from = addr_get4(from_addr);
		to = addr_get4(to_addr);
		if (ctx_l4_csum_replace(ctx, pkt->csum_off, from, to, sizeof(to), udp, 1) < 0 ||
		    ctx_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check), from, to, sizeof(to)) < 0)
			return -1;
		return ctx_store_bytes(ctx, ETH_HLEN + (which == NAT_SRC_ADDR ? offsetof(struct iphdr, saddr)
									     : offsetof(struct iphdr, daddr)),
				       &to, sizeof(to));
	}
	for (i = 0; i < 4; i++) {
		from = addr_word(from_addr, i);
		to = addr_word(to_addr, i);
		if (from != to && ctx_l4_csum_replace(ctx, pkt->csum_off, from, to, sizeof(to), udp, 1) < 0)
			return -1;
	}
	return ctx_store_bytes(ctx, ETH_HLEN + (which == NAT_SRC_ADDR ? offsetof(struct ipv6hdr, saddr)
								     : offsetof(struct ipv6hdr, daddr)),
			       to_addr, sizeof(lb_addr_t));
}

/* port_off: 0 for the source port, 2 for the destination port; ports in
 * host order, as the maps hold them. */
static __always_inline int nat_port(lb_ctx *ctx, const struct packet *pkt,
				    __u32 port_off, __u16 from_port, __u16 to_port)
{
	__be16 from = bpf_htons(from_port), to = bpf_htons(to_port);

	if (from == to)
		return 0;
	if (ctx_l4_csum_replace(ctx, pkt->csum_off, from, to, sizeof(to), pkt->flow.proto == IPPROTO_UDP, 0) < 0)
		return -1;
	return ctx_store_bytes(ctx, pkt->l4_off + port_off, &to, sizeof(to));
}

#define NAT_SRC_PORT 0
#define NAT_DST_PORT 2

/* Sends a packet that arrived from a pod straight back into that pod.
 * The stack never sees it, so rp_filter and the martian-source check do
 * not apply; the MAC addresses swap so the pod accepts the frame. */
static __always_inline int bounce_to_sender(lb_ctx *ctx)
{
	struct ethhdr eth;

	if (ctx_load_bytes(ctx, 0, &eth, sizeof(eth)) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	if (ctx_store_bytes(ctx, offsetof(struct ethhdr, h_dest), eth.h_source, ETH_ALEN) < 0 ||
	    ctx_store_bytes(ctx, offsetof(struct ethhdr, h_source), eth.h_dest, ETH_ALEN) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return ctx_send(ctx, ctx_ifindex(ctx));
}

#endif
