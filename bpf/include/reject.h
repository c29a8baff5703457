/* Refusing a new flow to a frontend without endpoints the way kube-proxy's
 * REJECT does: an ICMP port unreachable from the frontend's address, for TCP
 * and UDP alike, so the client fails at once instead of retrying into
 * silence. The packet itself becomes the answer and goes straight back out
 * of the interface it came in on. */
#ifndef KUBE_LB_REJECT_H
#define KUBE_LB_REJECT_H

#include <linux/in.h>
#include <linux/ip.h>
#include "drops.h"
#include "nat.h"
#include "parse.h"

/* The ICMP error's quote: the offending IP header and the first 8 bytes
 * after it (RFC 792). Packets with IP options are dropped instead. */
#define REJECT_QUOTE_LEN (sizeof(struct iphdr) + 8)

/* linux/icmp.h pulls in libc headers a BPF build lacks. */
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3

struct icmp_unreach_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__u32 unused;
};

struct unreachable {
	struct iphdr ip;
	struct icmp_unreach_hdr icmp;
	__u8 quote[REJECT_QUOTE_LEN];
};
_Static_assert(sizeof(struct unreachable) == sizeof(struct iphdr) + sizeof(struct icmp_unreach_hdr) + REJECT_QUOTE_LEN,
	       "the answer is sent as laid out, without padding");

static __always_inline int reject_unreachable(lb_ctx *ctx, const struct packet *pkt)
{
	struct unreachable r = {};
	__s64 sum;

	/* IPv6 is refused by a drop so far (docs/ebpf-datapath.md). */
	if (pkt->ipv6 || pkt->l4_off != ETH_HLEN + sizeof(struct iphdr) ||
	    ctx_load_bytes(ctx, ETH_HLEN, r.quote, sizeof(r.quote)) < 0)
		return drop(LB_DROP_NO_ENDPOINTS);

	r.ip.version = 4;
	r.ip.ihl = 5;
	r.ip.tos = 0xc0; /* internetwork control, as Linux sends ICMP errors */
	r.ip.tot_len = bpf_htons(sizeof(r));
	r.ip.ttl = 64;
	r.ip.protocol = IPPROTO_ICMP;
	r.ip.saddr = addr_get4(pkt->flow.daddr);
	r.ip.daddr = addr_get4(pkt->flow.saddr);
	r.icmp.type = ICMP_DEST_UNREACH;
	r.icmp.code = ICMP_PORT_UNREACH;

	sum = bpf_csum_diff(0, 0, (__be32 *)&r.icmp, sizeof(r.icmp) + sizeof(r.quote), 0);
	if (sum < 0)
		return drop(LB_DROP_REJECT_FAILED);
	r.icmp.checksum = csum_fold(sum);
	sum = bpf_csum_diff(0, 0, (__be32 *)&r.ip, sizeof(r.ip), 0);
	if (sum < 0)
		return drop(LB_DROP_REJECT_FAILED);
	r.ip.check = csum_fold(sum);

	if (ctx_change_tail(ctx, ETH_HLEN + sizeof(r)) < 0 ||
	    ctx_store_bytes(ctx, ETH_HLEN, &r, sizeof(r)) < 0)
		return drop(LB_DROP_REJECT_FAILED);
	count_drop(LB_DROP_NO_ENDPOINTS);
	return bounce_to_sender(ctx);
}

#endif
