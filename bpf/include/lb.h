/* Service lookup and backend selection: a few hash lookups, whatever the
 * number of services or endpoints. */
#ifndef KUBE_LB_LB_H
#define KUBE_LB_LB_H

#include "maps.h"
#include "parse.h"

/* Why a new flow to a frontend gets no backend. */
enum no_backend {
	NOT_A_SERVICE,
	NO_BACKEND_REJECT,
	NO_BACKEND_DROP,
	NO_BACKEND_SOURCE_REFUSED,
};

/* Whether loadBalancerSourceRanges let the flow's source reach its frontend. */
static __always_inline int source_allowed(const struct lb_flow_key *flow)
{
	struct lb_source_range_key key = {
		.prefixlen = 160 + 128,
		.port = flow->dport,
		.proto = flow->proto,
	};

	addr_copy(key.vip, flow->daddr);
	addr_copy(key.saddr, flow->saddr);
	return bpf_map_lookup_elem(&kube_lb_source_ranges, &key) != NULL;
}

static __always_inline void affinity_key(const struct lb_flow_key *flow, __u8 scope, struct lb_affinity_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	addr_copy(key->client, flow->saddr);
	addr_copy(key->vip, flow->daddr);
	key->port = flow->dport;
	key->proto = flow->proto;
	key->scope = scope;
}

/* The client's backend under session affinity: the one it was given last,
 * while its timeout has not passed and the backend is still in its slot
 * (the control plane moves a backend only when it removes others). */
static __always_inline struct lb_svc_value *affinity_backend(const struct lb_affinity_key *akey, struct lb_svc_key *key,
							     __u32 timeout, __u32 now)
{
	struct lb_affinity_value *last = bpf_map_lookup_elem(&kube_lb_affinity, akey);
	struct lb_svc_value *backend;

	if (!last || now - last->last_seen > timeout)
		return NULL;
	key->slot = last->slot;
	backend = bpf_map_lookup_elem(&kube_lb_svc, key);
	if (!backend || !addr_eq(backend->backend_addr, last->backend_addr) ||
	    backend->backend_port != last->backend_port)
		return NULL;
	return backend;
}

static __always_inline __u32 rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

/* An address as one word of the Maglev hash: an IPv4 address itself, an
 * IPv6 one its four words XORed. */
static __always_inline __u32 maglev_addr_word(const lb_addr_t a)
{
	if (addr_is4(a))
		return addr_get4(a);
	return addr_word(a, 0) ^ addr_word(a, 1) ^ addr_word(a, 2) ^ addr_word(a, 3);
}

/* The flow's hash for Maglev: Linux's jhash_3words over the addresses
 * (maglev_addr_word) and ports as the flow key holds them, with the
 * protocol in the seed. maglevFlowHash in src/backends/ebpf/maglev.ts
 * computes the same. */
static __always_inline __u32 maglev_hash(const struct lb_flow_key *flow)
{
	__u32 a = maglev_addr_word(flow->saddr), b = maglev_addr_word(flow->daddr);
	__u32 c = flow->sport | ((__u32)flow->dport << 16);
	__u32 initval = LB_MAGLEV_HASH_SEED + flow->proto + 0xdeadbeef + (3 << 2);

	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

/* The slot the service's Maglev table gives the flow, or 0 when the table
 * is missing (the control plane writes it before it flags the service). */
static __always_inline __u16 maglev_slot(const struct lb_flow_key *flow, const struct lb_svc_key *svc, __u16 table_size)
{
	__u32 entry = maglev_hash(flow) % table_size;
	struct lb_maglev_key key = {
		.port = svc->port,
		.proto = svc->proto,
		.scope = svc->scope,
		.chunk = entry / LB_MAGLEV_CHUNK,
	};
	struct lb_maglev_chunk *chunk;

	addr_copy(key.vip, svc->vip);
	chunk = bpf_map_lookup_elem(&kube_lb_maglev, &key);
	return chunk ? chunk->slots[entry & (LB_MAGLEV_CHUNK - 1)] : 0;
}

/* Picks a backend for a new flow to a service in scope (LB_SCOPE_*), or
 * returns NULL and says why in *none. *svc_flags gets the service's
 * LB_SVC_F_* flags. */
static __always_inline struct lb_svc_value *pick_backend(const struct lb_flow_key *flow, __u8 scope, __u32 now,
							 enum no_backend *none, __u16 *svc_flags)
{
	struct lb_svc_key key = {
		.port = flow->dport,
		.proto = flow->proto,
		.scope = scope,
	};
	struct lb_affinity_value remembered = {};
	struct lb_svc_value *svc, *backend;
	struct lb_affinity_key akey;
	__u32 timeout;
	__u16 count;

	addr_copy(key.vip, flow->daddr);
	*none = NOT_A_SERVICE;
	svc = bpf_map_lookup_elem(&kube_lb_svc, &key);
	if (!svc)
		return NULL;
	*svc_flags = svc->flags;
	if ((svc->flags & LB_SVC_F_SOURCE_RANGES) && !source_allowed(flow)) {
		*none = NO_BACKEND_SOURCE_REFUSED;
		return NULL;
	}
	if (svc->count == 0) {
		*none = (svc->flags & LB_SVC_F_DROP_NO_ENDPOINTS) ? NO_BACKEND_DROP : NO_BACKEND_REJECT;
		return NULL;
	}
	count = svc->count;
	timeout = svc->affinity_timeout;
	if (timeout) {
		affinity_key(flow, scope, &akey);
		backend = affinity_backend(&akey, &key, timeout, now);
		if (backend)
			goto remember;
	}
	key.slot = 0;
	/* Without a source port (the socket programs pick at connect, before
	 * the socket has one) every connection of a client would hash alike,
	 * to one backend: those pick at random. */
	if ((svc->flags & LB_SVC_F_MAGLEV) && svc->maglev_size && flow->sport)
		key.slot = maglev_slot(flow, &key, svc->maglev_size);
	if (!key.slot)
		key.slot = (bpf_get_prandom_u32() % count) + 1;
	backend = bpf_map_lookup_elem(&kube_lb_svc, &key);
	if (!backend) {
		/* The control plane shrinks a service by lowering the count
		 * before deleting the last slot; a reader that saw the old
		 * count can miss that slot, and slot 1 is always valid. */
		key.slot = 1;
		backend = bpf_map_lookup_elem(&kube_lb_svc, &key);
	}
	if (!backend) {
		*none = NO_BACKEND_DROP;
		return NULL;
	}
remember:
	if (timeout) {
		addr_copy(remembered.backend_addr, backend->backend_addr);
		remembered.backend_port = backend->backend_port;
		remembered.slot = key.slot;
		remembered.last_seen = now;
		bpf_map_update_elem(&kube_lb_affinity, &akey, &remembered, BPF_ANY);
	}
	return backend;
}

#endif
