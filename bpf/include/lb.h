/* Service lookup and backend selection: two hash lookups, whatever the
 * number of services or endpoints. */
#ifndef KUBE_LB_LB_H
#define KUBE_LB_LB_H

#include "maps.h"
#include "parse.h"

/* What to do with a new flow to a frontend that has no endpoint. */
enum no_backend {
	NOT_A_SERVICE,
	NO_BACKEND_REJECT,
	NO_BACKEND_DROP,
};

/* Picks a backend for a new flow to a service in scope (LB_SCOPE_*), or
 * returns NULL and says why in *none. *svc_flags gets the service's
 * LB_SVC_F_* flags. */
static __always_inline struct lb_svc_value *pick_backend(const struct lb_flow_key *flow, __u8 scope,
							 enum no_backend *none, __u16 *svc_flags)
{
	struct lb_svc_key key = {
		.port = flow->dport,
		.proto = flow->proto,
		.scope = scope,
	};
	struct lb_svc_value *svc, *backend;

	addr_set(key.vip, addr_get(flow->daddr));
	*none = NOT_A_SERVICE;
	svc = bpf_map_lookup_elem(&kube_lb_svc, &key);
	if (!svc)
		return NULL;
	*svc_flags = svc->flags;
	if (svc->count == 0) {
		*none = (svc->flags & LB_SVC_F_DROP_NO_ENDPOINTS) ? NO_BACKEND_DROP : NO_BACKEND_REJECT;
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
		*none = NO_BACKEND_DROP;
	return backend;
}

#endif
