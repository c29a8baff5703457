/* Connection tracking of translated flows. A forward entry keeps a flow on
 * its backend; a reverse entry lets replies be translated back. Entries
 * live in LRU maps and end the way Linux conntrack ends them: a TCP SYN
 * after a FIN or RST starts a new connection, a UDP flow idle past its
 * timeout is over, and a packet of a direct (untranslated) flow proves a
 * reverse entry with the same tuple stale. */
#ifndef KUBE_LB_CONNTRACK_H
#define KUBE_LB_CONNTRACK_H

#include <bpf/bpf_core_read.h>
#include "maps.h"
#include "parse.h"

/* The coarse clock is the cheaper read, from kernel 5.11; older kernels
 * read the same monotonic clock precisely. libbpf resolves the test at
 * load time against the kernel's BTF, and the verifier skips the branch
 * not taken, unknown helper and all. */
static __always_inline __u32 ct_now(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_ktime_get_coarse_ns))
		return bpf_ktime_get_coarse_ns() / 1000000000;
	return bpf_ktime_get_ns() / 1000000000;
}

/* The hairpin address of a packet's family (LB_HAIRPIN_ADDR*). */
static __always_inline void hairpin_addr(lb_addr_t a, int ipv6)
{
	if (!ipv6) {
		addr_set4(a, bpf_htonl(LB_HAIRPIN_ADDR));
		return;
	}
	addr_set_word(a, 0, bpf_htonl(LB_HAIRPIN_ADDR6_W0));
	addr_set_word(a, 1, 0);
	addr_set_word(a, 2, 0);
	addr_set_word(a, 3, bpf_htonl(LB_HAIRPIN_ADDR6_W3));
}

static __always_inline int is_hairpin_addr(const lb_addr_t a)
{
	lb_addr_t hairpin;

	hairpin_addr(hairpin, !addr_is4(a));
	return addr_eq(a, hairpin);
}

/* The client port as the backend sees it. */
static __always_inline __u16 ct_backend_sport(const struct lb_flow_key *flow, const struct lb_ct_value *ct)
{
	return ct->nat_sport ? ct->nat_sport : flow->sport;
}

/* The client's own port, for a reply whose destination is the port the
 * backend saw. */
static __always_inline __u16 rnat_client_port(const struct lb_flow_key *reply, const struct lb_rnat_value *rnat)
{
	return rnat->client_port ? rnat->client_port : reply->dport;
}

/* The client address as the backend sees it. */
static __always_inline void ct_backend_saddr(const struct lb_flow_key *flow, const struct lb_ct_value *ct,
					     lb_addr_t saddr)
{
	if (ct->flags & LB_CT_F_HAIRPIN)
		hairpin_addr(saddr, !addr_is4(flow->saddr));
	else if (!addr_is_zero(ct->nat_saddr))
		addr_copy(saddr, ct->nat_saddr);
	else
		addr_copy(saddr, flow->saddr);
}

/* The reply tuple of a translated flow, as the backend sends it. */
static __always_inline void reply_flow(const struct lb_flow_key *flow, const struct lb_ct_value *ct,
				       struct lb_flow_key *reply)
{
	__builtin_memset(reply, 0, sizeof(*reply));
	addr_copy(reply->saddr, ct->backend_addr);
	ct_backend_saddr(flow, ct, reply->daddr);
	reply->sport = ct->backend_port;
	reply->dport = ct_backend_sport(flow, ct);
	reply->proto = flow->proto;
}

/* The forward entry of the flow a reverse entry belongs to. */
static __always_inline void forward_flow(const struct lb_flow_key *reply, const struct lb_rnat_value *rnat,
					 struct lb_flow_key *flow)
{
	__builtin_memset(flow, 0, sizeof(*flow));
	addr_copy(flow->saddr, rnat->client_addr);
	addr_copy(flow->daddr, rnat->vip);
	flow->sport = rnat_client_port(reply, rnat);
	flow->dport = rnat->vport;
	flow->proto = reply->proto;
}

/* Whether a forward entry describes an earlier flow than this packet's. */
static __always_inline int ct_is_over(const struct lb_ct_value *ct, const struct packet *pkt, __u32 now)
{
	if (pkt->flow.proto == IPPROTO_TCP)
		return is_tcp_syn(pkt) && (ct->flags & LB_CT_F_CLOSING);
	return now - ct->last_seen > LB_UDP_TIMEOUT_S;
}

/* Whether a flow may still send packets: not closed (TCP), not idle past
 * its timeout (UDP). */
static __always_inline int ct_is_live(const struct lb_ct_value *ct, __u8 proto, __u32 now)
{
	if (proto == IPPROTO_TCP)
		return !(ct->flags & LB_CT_F_CLOSING);
	return now - ct->last_seen <= LB_UDP_TIMEOUT_S;
}

/* Whether a backend-side tuple carries a live flow other than `flow`: two
 * frontends that pick one backend for one client port would otherwise
 * share a tuple, and the backend could not tell their packets apart. */
static __always_inline int reply_taken(const struct lb_flow_key *reply, const struct lb_flow_key *flow, __u32 now)
{
	struct lb_rnat_value *rnat = bpf_map_lookup_elem(&kube_lb_rnat, reply);
	struct lb_flow_key owner;
	struct lb_ct_value *ct;

	if (!rnat)
		return 0;
	forward_flow(reply, rnat, &owner);
	if (addr_eq(owner.daddr, flow->daddr) && owner.dport == flow->dport && addr_eq(owner.saddr, flow->saddr) &&
	    owner.sport == flow->sport)
		return 0;
	ct = bpf_map_lookup_elem(&kube_lb_ct, &owner);
	return ct && addr_eq(ct->backend_addr, reply->saddr) && ct->backend_port == reply->sport &&
	       ct_is_live(ct, flow->proto, now);
}

/* Gives a new flow its client port at the backend (ct->nat_sport): the
 * client's own (0 when not SNATed, the same number when SNATed) unless
 * another live flow holds that tuple there, else a random one, from the
 * SNAT range for a SNATed flow. Keeping the client's port keeps a reused
 * client port on its old tuple, whose TCP timestamps the backend's
 * TIME_WAIT accepts. Fails when a few random ports are all taken too. */
static __always_inline int ct_pick_nat_sport(const struct lb_flow_key *flow, struct lb_ct_value *ct, __u32 now)
{
	__u32 min = !addr_is_zero(ct->nat_saddr) ? LB_SNAT_PORT_MIN : LB_NAT_PORT_MIN;
	struct lb_flow_key reply;
	int i;

	ct->nat_sport = !addr_is_zero(ct->nat_saddr) ? flow->sport : 0;
	reply_flow(flow, ct, &reply);
	if (!reply_taken(&reply, flow, now))
		return 0;
	for (i = 0; i < LB_NAT_PORT_PROBES; i++) {
		ct->nat_sport = min + bpf_get_prandom_u32() % (65536 - min);
		reply.dport = ct->nat_sport;
		if (!reply_taken(&reply, flow, now))
			return 0;
	}
	return -1;
}

/* Writes the reverse entry of a flow. */
static __always_inline void rnat_write(const struct lb_flow_key *flow, const struct lb_ct_value *ct)
{
	struct lb_flow_key reply;
	struct lb_rnat_value rnat = {
		.vport = flow->dport,
		.flags = ct->flags & (LB_CT_F_HAIRPIN | LB_CT_F_WORLD),
		.client_port = ct->nat_sport ? flow->sport : 0,
	};

	addr_copy(rnat.vip, flow->daddr);
	addr_copy(rnat.client_addr, flow->saddr);
	reply_flow(flow, ct, &reply);
	bpf_map_update_elem(&kube_lb_rnat, &reply, &rnat, BPF_ANY);
}

enum ct_create_result {
	CT_CREATED,
	CT_NO_NAT_PORT,
	CT_NOT_RECORDED,
};

/* Records a new flow to a backend: forward entry, then its reverse. A
 * flow from a pod to itself is hairpinned; one from outside (LB_CT_F_WORLD)
 * is SNATed to snat_addr unless that is all zeros. */
static __always_inline enum ct_create_result ct_create(const struct packet *pkt, const struct lb_svc_value *backend,
						      __u16 world, const lb_addr_t snat_addr, __u32 now,
						      struct lb_ct_value *ct)
{
	addr_copy(ct->backend_addr, backend->backend_addr);
	ct->backend_port = backend->backend_port;
	ct->flags = world ? LB_CT_F_WORLD : addr_eq(backend->backend_addr, pkt->flow.saddr) ? LB_CT_F_HAIRPIN : 0;
	ct->last_seen = now;
	ct->pad = 0;
	addr_copy(ct->nat_saddr, snat_addr);
	if (ct_pick_nat_sport(&pkt->flow, ct, now) < 0)
		return CT_NO_NAT_PORT;
	if (bpf_map_update_elem(&kube_lb_ct, &pkt->flow, ct, BPF_ANY) < 0)
		return CT_NOT_RECORDED;
	rnat_write(&pkt->flow, ct);
	return CT_CREATED;
}

/* An established flow's packet: refresh it, note a close, and restore the
 * reverse entry if the LRU map evicted it (the two maps evict apart). */
static __always_inline void ct_refresh(const struct packet *pkt, struct lb_ct_value *ct, __u32 now)
{
	struct lb_flow_key reply;

	ct->last_seen = now;
	if (is_tcp_close(pkt))
		ct->flags |= LB_CT_F_CLOSING;
	reply_flow(&pkt->flow, ct, &reply);
	if (!bpf_map_lookup_elem(&kube_lb_rnat, &reply))
		rnat_write(&pkt->flow, ct);
}

/* A packet of a flow the stack translates (LB_CT_F_STACK): kept alive and
 * its close noted, so that the next SYN on the tuple is kube-lb's; no
 * reverse entry, since the stack translates the replies too. */
static __always_inline void ct_refresh_stack(const struct packet *pkt, struct lb_ct_value *ct, __u32 now)
{
	ct->last_seen = now;
	if (is_tcp_close(pkt))
		ct->flags |= LB_CT_F_CLOSING;
}

/* Whether kube-lb is taking over from a datapath of the stack's (kube_lb_adopt). */
static __always_inline int adopting(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&kube_lb_adopt, &zero);

	return on && *on;
}

/* A reply closes its connection: the next SYN on the tuple is new. */
static __always_inline void ct_note_reply(const struct packet *pkt, const struct lb_rnat_value *rnat)
{
	struct lb_flow_key flow;
	struct lb_ct_value *ct;

	if (!is_tcp_close(pkt))
		return;
	forward_flow(&pkt->flow, rnat, &flow);
	ct = bpf_map_lookup_elem(&kube_lb_ct, &flow);
	if (ct)
		ct->flags |= LB_CT_F_CLOSING;
}

/* A pod talks to an endpoint directly on a tuple that once carried a
 * service flow: the old reverse entry would rewrite this flow's replies.
 * UDP has no handshake, so every direct UDP packet checks; TCP checks on
 * the SYN, before any reply can come back. */
static __always_inline void ct_forget_reply_of(const struct packet *pkt)
{
	struct lb_flow_key reply;

	if (pkt->flow.proto != IPPROTO_UDP && !is_tcp_syn(pkt))
		return;
	__builtin_memset(&reply, 0, sizeof(reply));
	addr_copy(reply.saddr, pkt->flow.daddr);
	addr_copy(reply.daddr, pkt->flow.saddr);
	reply.sport = pkt->flow.dport;
	reply.dport = pkt->flow.sport;
	reply.proto = pkt->flow.proto;
	bpf_map_delete_elem(&kube_lb_rnat, &reply);
}

#endif
