/* Service lookup and backend selection: two hash lookups, whatever the
 * number of services or endpoints. */
#ifndef KUBE_LB_LB_H
#define KUBE_LB_LB_H

#include "maps.h"
#include "parse.h"

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

#endif
