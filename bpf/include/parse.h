/* Packet parsing: finds the TCP/UDP flow of an IPv4 or IPv6 packet, or
 * says the packet is not one kube-lb translates. Headers are copied out
 * (with bpf_skb_load_bytes or bpf_xdp_load_bytes) so that non-linear
 * packets parse the same as linear ones. */
#ifndef KUBE_LB_PARSE_H
#define KUBE_LB_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "ctx.h"
#include "structs.h"

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct packet {
	__u32 l4_off;	    /* offset of the TCP/UDP header */
	__u8 ipv6;	    /* the family: IPv6, else IPv4 */
	__u32 csum_off;	    /* offset of the L4 checksum */
	__u8 tcp_flags;	    /* TCP only: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	struct lb_flow_key flow; /* in map format: ports in host order */
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* The first packet of a TCP connection. */
static __always_inline int is_tcp_syn(const struct packet *pkt)
{
	return pkt->flow.proto == IPPROTO_TCP && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

static __always_inline int is_tcp_close(const struct packet *pkt)
{
	return pkt->flow.proto == IPPROTO_TCP && (pkt->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST));
}

/* Addresses (lb_addr_t), 16 bytes whatever the family, handled in
 * 32-bit words. */
static __always_inline __be32 addr_word(const lb_addr_t a, int i)
{
	__be32 w;

	__builtin_memcpy(&w, a + 4 * i, sizeof(w));
	return w;
}

static __always_inline void addr_set_word(lb_addr_t a, int i, __be32 w)
{
	__builtin_memcpy(a + 4 * i, &w, sizeof(w));
}

static __always_inline void addr_copy(lb_addr_t to, const lb_addr_t from)
{
	__builtin_memcpy(to, from, sizeof(lb_addr_t));
}

static __always_inline int addr_eq(const lb_addr_t a, const lb_addr_t b)
{
	return addr_word(a, 0) == addr_word(b, 0) && addr_word(a, 1) == addr_word(b, 1) &&
	       addr_word(a, 2) == addr_word(b, 2) && addr_word(a, 3) == addr_word(b, 3);
}

/* "None", where a field allows it. */
static __always_inline int addr_is_zero(const lb_addr_t a)
{
	return !(addr_word(a, 0) | addr_word(a, 1) | addr_word(a, 2) | addr_word(a, 3));
}

/* An IPv4 address, IPv4-mapped. */
static __always_inline void addr_set4(lb_addr_t a, __be32 v)
{
	addr_set_word(a, 0, 0);
	addr_set_word(a, 1, 0);
	addr_set_word(a, 2, bpf_htonl(0xffff));
	addr_set_word(a, 3, v);
}

/* The IPv4 address of an IPv4-mapped one. */
static __always_inline __be32 addr_get4(const lb_addr_t a)
{
	return addr_word(a, 3);
}

static __always_inline int addr_is4(const lb_addr_t a)
{
	return !(addr_word(a, 0) | addr_word(a, 1)) && addr_word(a, 2) == bpf_htonl(0xffff);
}

/* Extension headers skipped before giving up on an IPv6 packet: more than
 * any real packet carries, few enough for the verifier. */
#define LB_IPV6_EXT_MAX 8

/* Shared by the extension headers skipped (hop-by-hop, destination
 * options, routing): their first bytes. */
struct ipv6_ext_start {
	__u8 nexthdr;
	__u8 hdrlen;	    /* in 8-byte units, not counting the first 8 bytes */
	__u8 routing_type;  /* routing header only */
	__u8 segments_left; /* routing header only */
};

/* The IPv4 header: sets the flow's addresses and protocol, the L4 offset,
 * and *end, where the IP packet ends. */
static __always_inline int parse_ipv4(lb_ctx *ctx, struct packet *pkt, __u32 *end)
{
	struct iphdr ip;
	__u32 ip_len;

	if (ctx_load_bytes(ctx, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
		return -1;
	if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return -1;
	ip_len = ip.ihl * 4;
	if (bpf_ntohs(ip.tot_len) < ip_len)
		return -1;
	pkt->ipv6 = 0;
	pkt->l4_off = ETH_HLEN + ip_len;
	pkt->flow.proto = ip.protocol;
	addr_set4(pkt->flow.saddr, ip.saddr);
	addr_set4(pkt->flow.daddr, ip.daddr);
	*end = ETH_HLEN + bpf_ntohs(ip.tot_len);
	return 0;
}

/* The IPv6 header and the extension headers before TCP or UDP, as
 * parse_ipv4. A fragment header is given up on (as IPv4 fragments are),
 * and so are a routing header with segments left (the destination is not
 * the last one), a jumbogram, and anything unknown (AH, ESP). */
static __always_inline int parse_ipv6(lb_ctx *ctx, struct packet *pkt, __u32 *end)
{
	struct ipv6_ext_start ext;
	struct ipv6hdr ip6;
	__u32 off = ETH_HLEN + sizeof(ip6);
	__u8 next;
	int i;

	if (ctx_load_bytes(ctx, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
		return -1;
	if (ip6.version != 6 || !ip6.payload_len)
		return -1;
	next = ip6.nexthdr;
	for (i = 0; i < LB_IPV6_EXT_MAX; i++) {
		if (next == IPPROTO_TCP || next == IPPROTO_UDP)
			break;
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_DSTOPTS && next != IPPROTO_ROUTING)
			return -1;
		if (ctx_load_bytes(ctx, off, &ext, sizeof(ext)) < 0)
			return -1;
		if (next == IPPROTO_ROUTING && ext.segments_left)
			return -1;
		next = ext.nexthdr;
		off += (ext.hdrlen + 1) * 8;
	}
	pkt->ipv6 = 1;
	pkt->l4_off = off;
	pkt->flow.proto = next;
	__builtin_memcpy(pkt->flow.saddr, &ip6.saddr, sizeof(lb_addr_t));
	__builtin_memcpy(pkt->flow.daddr, &ip6.daddr, sizeof(lb_addr_t));
	*end = ETH_HLEN + sizeof(ip6) + bpf_ntohs(ip6.payload_len);
	return 0;
}

/* Returns 0 for an IPv4 or IPv6 TCP or UDP packet kube-lb may translate,
 * -1 for anything else: other protocols, fragments (only the first one
 * carries ports, so translating it alone would split the datagram), and
 * malformed or truncated headers. */
static __always_inline int parse_packet(lb_ctx *ctx, struct packet *pkt)
{
	struct ethhdr eth;
	__u32 len = ctx_len(ctx);
	__be16 ports[2];
	__u32 end;

	__builtin_memset(&pkt->flow, 0, sizeof(pkt->flow));
	if (ctx_load_bytes(ctx, 0, &eth, sizeof(eth)) < 0)
		return -1;
	if (eth.h_proto == bpf_htons(ETH_P_IP)) {
		if (parse_ipv4(ctx, pkt, &end) < 0)
			return -1;
	} else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
		if (parse_ipv6(ctx, pkt, &end) < 0)
			return -1;
	} else {
		return -1;
	}

	if (pkt->flow.proto == IPPROTO_TCP) {
		pkt->csum_off = pkt->l4_off + offsetof(struct tcphdr, check);
		if (pkt->l4_off + sizeof(struct tcphdr) > end)
			return -1;
	} else if (pkt->flow.proto == IPPROTO_UDP) {
		pkt->csum_off = pkt->l4_off + offsetof(struct udphdr, check);
		if (pkt->l4_off + sizeof(struct udphdr) > end)
			return -1;
	} else {
		return -1;
	}
	if (end > len)
		return -1;
	if (ctx_load_bytes(ctx, pkt->l4_off, ports, sizeof(ports)) < 0)
		return -1;
	pkt->tcp_flags = 0;
	if (pkt->flow.proto == IPPROTO_TCP &&
	    ctx_load_bytes(ctx, pkt->l4_off + 13, &pkt->tcp_flags, 1) < 0)
		return -1;

	pkt->flow.sport = bpf_ntohs(ports[0]);
	pkt->flow.dport = bpf_ntohs(ports[1]);
	return 0;
}

#endif
