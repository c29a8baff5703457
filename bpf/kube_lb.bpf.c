/* kube-lb's TC datapath for service traffic from pods.
 *
 * Both programs sit on every pod-facing interface of the node:
 *  - lb_from_pod (clsact ingress: packets leaving a pod) DNATs new and
 *    established flows addressed to a service to their backend, before
 *    the stack routes them, so routing sees the backend as destination
 *    and the pod's own address as source (rp_filter is satisfied);
 *  - lb_to_pod (clsact egress: packets entering a pod) restores the
 *    service address as the source of replies, after routing, so the
 *    stack never sees a service address as a source either.
 * Hairpin flows (a pod picked as the backend of its own request) never
 * enter the stack: both directions bounce straight back into the pod. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "include/consts.h"
#include "include/structs.h"
#include "include/maps.h"
#include "include/parse.h"
#include "include/nat.h"
#include "include/lb.h"
#include "include/conntrack.h"
#include "include/drops.h"
#include "include/reject.h"

/* A hairpinned pod answers LB_HAIRPIN_ADDR: give it back its service. */
static __always_inline int hairpin_reply(struct __sk_buff *skb, const struct packet *pkt)
{
	struct lb_rnat_value *rnat = bpf_map_lookup_elem(&kube_lb_rnat, &pkt->flow);

	if (!rnat || !(rnat->flags & LB_CT_F_HAIRPIN))
		return TC_ACT_OK;
	if (nat_addr(skb, pkt, NAT_SRC_ADDR, pkt->flow.saddr, rnat->vip) < 0 ||
	    nat_port(skb, pkt, NAT_SRC_PORT, pkt->flow.sport, rnat->vport) < 0 ||
	    nat_addr(skb, pkt, NAT_DST_ADDR, pkt->flow.daddr, rnat->client_addr) < 0 ||
	    nat_port(skb, pkt, NAT_DST_PORT, pkt->flow.dport, rnat_client_port(&pkt->flow, rnat)) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return bounce_to_sender(skb);
}

SEC("tc")
int lb_from_pod(struct __sk_buff *skb)
{
	struct packet pkt;
	struct lb_ct_value new_ct, *ct;
	struct lb_svc_value *backend;
	enum no_backend none;
	lb_addr_t hairpin;
	__u32 now;

	if (parse_packet(skb, &pkt) < 0)
		return TC_ACT_OK;
	if (is_hairpin_addr(pkt.flow.daddr))
		return hairpin_reply(skb, &pkt);

	now = ct_now();
	ct = bpf_map_lookup_elem(&kube_lb_ct, &pkt.flow);
	if (ct && !ct_is_over(ct, &pkt, now)) {
		ct_refresh(&pkt, ct, now);
	} else {
		backend = pick_backend(&pkt.flow, &none);
		if (!backend) {
			if (none == NO_BACKEND_REJECT)
				return reject_unreachable(skb, &pkt);
			if (none == NO_BACKEND_DROP)
				return drop(LB_DROP_NO_ENDPOINTS);
			ct_forget_reply_of(&pkt);
			return TC_ACT_OK;
		}
		switch (ct_create(&pkt, backend, now, &new_ct)) {
		case CT_CREATED:
			break;
		case CT_NO_NAT_PORT:
			return drop(LB_DROP_NO_NAT_PORT);
		default:
			return drop(LB_DROP_CONNTRACK_FULL);
		}
		ct = &new_ct;
	}

	if (nat_addr(skb, &pkt, NAT_DST_ADDR, pkt.flow.daddr, ct->backend_addr) < 0 ||
	    nat_port(skb, &pkt, NAT_DST_PORT, pkt.flow.dport, ct->backend_port) < 0 ||
	    nat_port(skb, &pkt, NAT_SRC_PORT, pkt.flow.sport, ct_backend_sport(&pkt.flow, ct)) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	if (!(ct->flags & LB_CT_F_HAIRPIN))
		return TC_ACT_OK;
	addr_set(hairpin, bpf_htonl(LB_HAIRPIN_ADDR));
	if (nat_addr(skb, &pkt, NAT_SRC_ADDR, pkt.flow.saddr, hairpin) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return bounce_to_sender(skb);
}

SEC("tc")
int lb_to_pod(struct __sk_buff *skb)
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
	if (nat_addr(skb, &pkt, NAT_SRC_ADDR, pkt.flow.saddr, rnat->vip) < 0 ||
	    nat_port(skb, &pkt, NAT_SRC_PORT, pkt.flow.sport, rnat->vport) < 0 ||
	    nat_port(skb, &pkt, NAT_DST_PORT, pkt.flow.dport, rnat_client_port(&pkt.flow, rnat)) < 0)
		return drop(LB_DROP_REWRITE_FAILED);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
