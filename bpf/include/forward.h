/* Forwarding a translated packet straight to its next hop, for the flows
 * the stack must not see: a packet SNATed to the node's own address would
 * be a martian to it, and a reply from a local endpoint to an outside
 * client needs its frontend restored before it leaves. */
#ifndef KUBE_LB_FORWARD_H
#define KUBE_LB_FORWARD_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "conntrack.h"
#include "drops.h"
#include "nat.h"

#define AF_INET 2

/* Decrements the TTL, as a router does, keeping the IP checksum right. */
static __always_inline int decrement_ttl(struct __sk_buff *skb)
{
	__u32 off = ETH_HLEN + offsetof(struct iphdr, ttl);
	__u8 ttl;

	if (bpf_skb_load_bytes(skb, off, &ttl, 1) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	if (ttl <= 1)
		return drop(LB_DROP_TTL_EXCEEDED);
	/* The TTL is the high byte of its 16-bit checksum word. */
	if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), bpf_htons(ttl << 8),
				bpf_htons((ttl - 1) << 8), 2) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	ttl--;
	if (bpf_skb_store_bytes(skb, off, &ttl, 1, 0) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return TC_ACT_OK;
}

/* Sends a packet from saddr to daddr out of the interface the routing table
 * picks, with the next hop's MAC address (resolved by the kernel if it is
 * not known yet). */
static __always_inline int redirect_to_next_hop(struct __sk_buff *skb, __be32 saddr, __be32 daddr, __u8 proto)
{
	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.l4_protocol = proto,
		.ifindex = skb->ifindex, /* at ingress, the interface it came in on */
		.ipv4_src = saddr,
		.ipv4_dst = daddr,
	};
	long ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	int verdict;

	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return drop(LB_DROP_NO_ROUTE);
	verdict = decrement_ttl(skb);
	if (verdict != TC_ACT_OK)
		return verdict;
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib.dmac, ETH_ALEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib.smac, ETH_ALEN, 0) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return bpf_redirect(fib.ifindex, 0);
}

/* Rewrites a reply the way its client must see it: from the frontend, to
 * the client's own address and port (what a hairpin or SNAT changed). */
static __always_inline int reply_to_client(struct __sk_buff *skb, const struct packet *pkt, const struct lb_rnat_value *rnat)
{
	if (nat_addr(skb, pkt, NAT_SRC_ADDR, pkt->flow.saddr, rnat->vip) < 0 ||
	    nat_port(skb, pkt, NAT_SRC_PORT, pkt->flow.sport, rnat->vport) < 0 ||
	    nat_addr(skb, pkt, NAT_DST_ADDR, pkt->flow.daddr, rnat->client_addr) < 0 ||
	    nat_port(skb, pkt, NAT_DST_PORT, pkt->flow.dport, rnat_client_port(&pkt->flow, rnat)) < 0)
		return -1;
	return 0;
}

/* A reply of a flow from outside: rewritten for its client, out towards it. */
static __always_inline int world_reply(struct __sk_buff *skb, const struct packet *pkt, const struct lb_rnat_value *rnat)
{
	ct_note_reply(pkt, rnat);
	if (reply_to_client(skb, pkt, rnat) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return redirect_to_next_hop(skb, addr_get(rnat->vip), addr_get(rnat->client_addr), pkt->flow.proto);
}

#endif
