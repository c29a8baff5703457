/* Packet parsing: finds the IPv4 TCP/UDP flow of a packet, or says the
 * packet is not one kube-lb translates. Headers are copied out (with
 * bpf_skb_load_bytes or bpf_xdp_load_bytes) so that non-linear packets
 * parse the same as linear ones. */
#ifndef KUBE_LB_PARSE_H
#define KUBE_LB_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "ctx.h"
#include "structs.h"

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct packet {
	__u32 l4_off;	    /* offset of the TCP/UDP header */
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

static __always_inline __be32 addr_get(const lb_addr_t a)
{
	__be32 v;

	__builtin_memcpy(&v, a, sizeof(v));
	return v;
}

static __always_inline void addr_set(lb_addr_t a, __be32 v)
{
	__builtin_memcpy(a, &v, sizeof(v));
}

/* Returns 0 for an IPv4 TCP or UDP packet kube-lb may translate, -1 for
 * anything else: other protocols, fragments (only the first one carries
 * ports, so translating it alone would split the datagram), and malformed
 * or truncated headers. */
static __always_inline int parse_packet(lb_ctx *ctx, struct packet *pkt)
{
	struct ethhdr eth;
	struct iphdr ip;
	__u32 len = ctx_len(ctx);
	__be16 ports[2];
	__u32 ip_len;

	if (ctx_load_bytes(ctx, 0, &eth, sizeof(eth)) < 0 ||
	    eth.h_proto != bpf_htons(ETH_P_IP))
		return -1;
	if (ctx_load_bytes(ctx, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
		return -1;
	if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return -1;

	ip_len = ip.ihl * 4;
	pkt->l4_off = ETH_HLEN + ip_len;
	if (ip.protocol == IPPROTO_TCP) {
		pkt->csum_off = pkt->l4_off + offsetof(struct tcphdr, check);
		if (pkt->l4_off + sizeof(struct tcphdr) > len)
			return -1;
	} else if (ip.protocol == IPPROTO_UDP) {
		pkt->csum_off = pkt->l4_off + offsetof(struct udphdr, check);
		if (pkt->l4_off + sizeof(struct udphdr) > len)
			return -1;
	} else {
		return -1;
	}
	if (bpf_ntohs(ip.tot_len) < ip_len || ETH_HLEN + bpf_ntohs(ip.tot_len) > len)
		return -1;
	if (ctx_load_bytes(ctx, pkt->l4_off, ports, sizeof(ports)) < 0)
		return -1;
	pkt->tcp_flags = 0;
	if (ip.protocol == IPPROTO_TCP &&
	    ctx_load_bytes(ctx, pkt->l4_off + 13, &pkt->tcp_flags, 1) < 0)
		return -1;

	__builtin_memset(&pkt->flow, 0, sizeof(pkt->flow));
	addr_set(pkt->flow.saddr, ip.saddr);
	addr_set(pkt->flow.daddr, ip.daddr);
	pkt->flow.sport = bpf_ntohs(ports[0]);
	pkt->flow.dport = bpf_ntohs(ports[1]);
	pkt->flow.proto = ip.protocol;
	return 0;
}

#endif
