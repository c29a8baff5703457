/* Refusing a new flow to a frontend without endpoints the way kube-proxy's
 * REJECT does: an ICMP (ICMPv6) port unreachable from the frontend's
 * address, for TCP and UDP alike, so the client fails at once instead of
 * retrying into silence. The packet itself becomes the answer and goes
 * straight back out of the interface it came in on. */
#ifndef KUBE_LB_REJECT_H
#define KUBE_LB_REJECT_H

#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "drops.h"
#include "nat.h"
#include "parse.h"

/* The ICMP error's quote: the offending IP header and the first 8 bytes
 * after it (RFC 792; RFC 4443 allows more, which the client does not
 * need). Packets with IP options or IPv6 extension headers are dropped
 * instead. */
#define REJECT_QUOTE_LEN (sizeof(struct iphdr) + 8)
#define REJECT_QUOTE6_LEN (sizeof(struct ipv6hdr) + 8)

/* linux/icmp.h and linux/icmpv6.h pull in libc headers a BPF build lacks. */
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PORT_UNREACH 4

/* The same four fields in ICMP and ICMPv6. */
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

struct unreachable6 {
	struct ipv6hdr ip;
	struct icmp_unreach_hdr icmp;
	__u8 quote[REJECT_QUOTE6_LEN];
};
_Static_assert(sizeof(struct unreachable6) ==
		       sizeof(struct ipv6hdr) + sizeof(struct icmp_unreach_hdr) + REJECT_QUOTE6_LEN,
	       "the answer is sent as laid out, without padding");

/* What the ICMPv6 checksum covers besides the message (RFC 8200 8.1). */
struct icmp6_pseudo_hdr {
	struct in6_addr saddr;
	struct in6_addr daddr;
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

/* Makes the packet the answer (its first len bytes after Ethernet are r)
 * and bounces it. */
static __always_inline int send_unreachable(lb_ctx *ctx, const void *r, __u32 len)
{
	if (ctx_change_tail(ctx, ETH_HLEN + len) < 0 || ctx_store_bytes(ctx, ETH_HLEN, r, len) < 0)
		return drop(LB_DROP_REJECT_FAILED);
	count_drop(LB_DROP_NO_ENDPOINTS);
	return bounce_to_sender(ctx);
}

static __always_inline int reject_unreachable4(lb_ctx *ctx, const struct packet *pkt)
{
	struct unreachable r = {};
	__s64 sum;

	if (pkt->l4_off != ETH_HLEN + sizeof(struct iphdr) ||
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
	return send_unreachable(ctx, &r, sizeof(r));
}

static __always_inline int reject_unreachable6(lb_ctx *ctx, const struct packet *pkt)
{
	struct icmp6_pseudo_hdr pseudo = {};
	struct unreachable6 r = {};
	__s64 sum;

	if (pkt->l4_off != ETH_HLEN + sizeof(struct ipv6hdr) ||
	    ctx_load_bytes(ctx, ETH_HLEN, r.quote, sizeof(r.quote)) < 0)
		return drop(LB_DROP_NO_ENDPOINTS);

	r.ip.version = 6;
	r.ip.payload_len = bpf_htons(sizeof(r) - sizeof(r.ip));
	r.ip.nexthdr = IPPROTO_ICMPV6;
	r.ip.hop_limit = 64;
	__builtin_memcpy(&r.ip.saddr, pkt->flow.daddr, sizeof(r.ip.saddr));
	__builtin_memcpy(&r.ip.daddr, pkt->flow.saddr, sizeof(r.ip.daddr));
	r.icmp.type = ICMPV6_DEST_UNREACH;
	r.icmp.code = ICMPV6_PORT_UNREACH;

	pseudo.saddr = r.ip.saddr;
	pseudo.daddr = r.ip.daddr;
	pseudo.len = bpf_htonl(sizeof(r) - sizeof(r.ip));
	pseudo.nexthdr = IPPROTO_ICMPV6;
	sum = bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
	if (sum < 0)
		return drop(LB_DROP_REJECT_FAILED);
	sum = bpf_csum_diff(0, 0, (__be32 *)&r.icmp, sizeof(r.icmp) + sizeof(r.quote), sum);
	if (sum < 0)
		return drop(LB_DROP_REJECT_FAILED);
	r.icmp.checksum = csum_fold(sum);
	return send_unreachable(ctx, &r, sizeof(r));
}

static __always_inline int reject_unreachable(lb_ctx *ctx, const struct packet *pkt)
{
	return pkt->ipv6 ? reject_unreachable6(ctx, pkt) : reject_unreachable4(ctx, pkt);
}

#endif
