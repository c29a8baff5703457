/* Service lookup, backend selection and connection tracking. Every step is
 * a hash lookup: the cost does not grow with services or endpoints. */
#ifndef KUBE_LB_LB_H
#define KUBE_LB_LB_H

#include "maps.h"
#include "parse.h"

static __always_inline int is_hairpin_addr(const lb_addr_t a)
{
	return addr_get(a) == bpf_htonl(LB_HAIRPIN_ADDR);
}

/* Picks a backend for a new flow to a service, or returns NULL when the
 * packet is not addressed to a service. *no_backend is set for a service
 * that has no ready endpoint. */
static __always_inline struct lb_svc_value *pick_backend(const struct lb_flow_key *flow, int *no_backend)
{
	struct lb_svc_key key = {
		.port = flow->dport,
		.proto = flow->proto,
	};
	struct lb_svc_value *svc, *backend;

	addr_set(key.vip, addr_get(flow->daddr));
	*no_backend = 0;
	svc = bpf_map_lookup_elem(&kube_lb_svc, &key);
	if (!svc)
		return NULL;
	if (svc->count == 0) {
		*no_backend = 1;
		return NULL;
	}
	key.slot = (bpf_get_prandom_u32() % svc->count) + 1;
	backend = bpf_map_lookup_elem(&kube_lb_svc, &key);
	if (!backend) {
		/* The control plane shrinks a service by lowering the count
		 * before deleting the last slot; a reader that saw the old
		 * count can miss that slot, and slot 1 is always valid. */
		key.slot = 1;
		backend = bpf_map_lookup_elem(&kube_lb_svc, &key);
	}
	if (!backend)
		*no_backend = 1;
	return backend;
}

/* The reply tuple of a translated flow, as the backend sends it. */
static __always_inline void reply_flow(const struct lb_flow_key *flow, const struct lb_ct_value *ct,
				       struct lb_flow_key *reply)
{
	__builtin_memset(reply, 0, sizeof(*reply));
	addr_set(reply->saddr, addr_get(ct->backend_addr));
	addr_set(reply->daddr, (ct->flags & LB_CT_F_HAIRPIN) ? bpf_htonl(LB_HAIRPIN_ADDR) : addr_get(flow->saddr));
	reply->sport = ct->backend_port;
	reply->dport = flow->sport;
	reply->proto = flow->proto;
}

/* Makes sure the reverse-NAT entry of a flow exists. The two LRU maps
 * evict independently, so an established flow restores it when missing. */
static __always_inline void ensure_rnat(const struct lb_flow_key *flow, const struct lb_ct_value *ct)
{
	struct lb_flow_key reply;
	struct lb_rnat_value rnat = {
		.vport = flow->dport,
		.flags = ct->flags,
	};

	addr_set(rnat.vip, addr_get(flow->daddr));
	addr_set(rnat.client_addr, addr_get(flow->saddr));
	reply_flow(flow, ct, &reply);
	if (!bpf_map_lookup_elem(&kube_lb_rnat, &reply))
		bpf_map_update_elem(&kube_lb_rnat, &reply, &rnat, BPF_ANY);
}

/* Records a new flow: forward entry first, then its reverse. */
static __always_inline int ct_create(const struct lb_flow_key *flow, const struct lb_svc_value *backend,
				     struct lb_ct_value *ct)
{
	__be32 backend_addr = addr_get(backend->backend_addr);

	addr_set(ct->backend_addr, backend_addr);
	ct->backend_port = backend->backend_port;
	ct->flags = backend_addr == addr_get(flow->saddr) ? LB_CT_F_HAIRPIN : 0;
	if (bpf_map_update_elem(&kube_lb_ct, flow, ct, BPF_ANY) < 0)
		return -1;
	ensure_rnat(flow, ct);
	return 0;
}

#endif
