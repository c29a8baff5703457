/* Address and port rewriting with incremental checksum updates.
 *
 * The helpers keep checksums right for every skb state: full checksums,
 * and veth's CHECKSUM_PARTIAL, where the L4 field holds only the
 * pseudo-header sum (BPF_F_PSEUDO_HDR updates exactly that). A UDP
 * checksum of 0 means "none" and must stay 0 (BPF_F_MARK_MANGLED_0). */
#ifndef KUBE_LB_NAT_H
#define KUBE_LB_NAT_H

#include <stddef.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "drops.h"
#include "parse.h"

static __always_inline __u64 l4_csum_flags(const struct packet *pkt)
{
	return pkt->flow.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* addr_off: offsetof(struct iphdr, saddr) or offsetof(struct iphdr, daddr). */
static __always_inline int nat_addr(struct __sk_buff *skb, const struct packet *pkt,
				    __u32 addr_off, const lb_addr_t from_addr, const lb_addr_t to_addr)
{
	__be32 from = addr_get(from_addr), to = addr_get(to_addr);

	if (from == to)
		return 0;
	if (bpf_l4_csum_replace(skb, pkt->csum_off, from, to,
				l4_csum_flags(pkt) | BPF_F_PSEUDO_HDR | sizeof(to)) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), from, to,
				sizeof(to)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, ETH_HLEN + addr_off, &to, sizeof(to), 0);
}

/* port_off: 0 for the source port, 2 for the destination port; ports in
 * host order, as the maps hold them. */
static __always_inline int nat_port(struct __sk_buff *skb, const struct packet *pkt,
				    __u32 port_off, __u16 from_port, __u16 to_port)
{
	__be16 from = bpf_htons(from_port), to = bpf_htons(to_port);

	if (from == to)
		return 0;
	if (bpf_l4_csum_replace(skb, pkt->csum_off, from, to,
				l4_csum_flags(pkt) | sizeof(to)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, pkt->l4_off + port_off, &to, sizeof(to), 0);
}

#define NAT_SRC_ADDR offsetof(struct iphdr, saddr)
#define NAT_DST_ADDR offsetof(struct iphdr, daddr)
#define NAT_SRC_PORT 0
#define NAT_DST_PORT 2

/* Sends a packet that arrived from a pod straight back into that pod.
 * The stack never sees it, so rp_filter and the martian-source check do
 * not apply; the MAC addresses swap so the pod accepts the frame. */
static __always_inline int bounce_to_sender(struct __sk_buff *skb)
{
	struct ethhdr eth;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), eth.h_source, ETH_ALEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), eth.h_dest, ETH_ALEN, 0) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return bpf_redirect(skb->ifindex, 0);
}

#endif
