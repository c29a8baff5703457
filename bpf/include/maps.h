/* The maps, pinned by name under the pin root so a restarted kube-lb and
 * bpftool both find them. */
#ifndef KUBE_LB_MAPS_H
#define KUBE_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"

/* Services and their backend slots (see struct lb_svc_key). Not
 * preallocated: memory follows the number of services. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_svc_key);
	__type(value, struct lb_svc_value);
	__uint(max_entries, LB_SVC_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_svc SEC(".maps");

/* Written by the control plane only: the Maglev tables of the services
 * flagged LB_SVC_F_MAGLEV, in chunks (struct lb_maglev_key). Not
 * preallocated: only those services take memory. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_maglev_key);
	__type(value, struct lb_maglev_chunk);
	__uint(max_entries, LB_MAGLEV_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_maglev SEC(".maps");

/* Client -> frontend flows and the backend each one was given. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow_key);
	__type(value, struct lb_ct_value);
	__uint(max_entries, LB_CT_MAX_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_ct SEC(".maps");

/* Backend -> client flows and the frontend the client must see. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow_key);
	__type(value, struct lb_rnat_value);
	__uint(max_entries, LB_CT_MAX_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_rnat SEC(".maps");

/* Written by the control plane only, at every start: nonzero while kube-lb
 * takes over from a datapath the stack's conntrack translates for (kube-lb
 * run --takeover), until that datapath's flows have ended. Meanwhile a TCP
 * packet of no flow of kube-lb's that is not a SYN belongs to one of them
 * and goes to the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_adopt SEC(".maps");

/* Written by the control plane only: ifindex -> struct lb_iface_value. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_iface_value);
	__uint(max_entries, LB_IFACE_MAX_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_ifaces SEC(".maps");

/* Session affinity: client and service -> its backend (struct lb_affinity_key). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_value);
	__uint(max_entries, LB_AFFINITY_MAX_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_affinity SEC(".maps");

/* Written by the control plane only: the sources allowed to reach frontends
 * flagged LB_SVC_F_SOURCE_RANGES. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lb_source_range_key);
	__type(value, __u8);
	__uint(max_entries, LB_SOURCE_RANGE_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_source_ranges SEC(".maps");

/* Dropped packets by reason (enum lb_drop_reason), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, LB_DROP__MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_drops SEC(".maps");

/* Traffic per backend of each service, per CPU. The control plane adds a
 * backend's entry, zeroed, before the backend's first slot and deletes it
 * with its last, so a backend's counts start at 0 and a backend that
 * comes back starts over; the programs only add to entries they find.
 * Sized with kube_lb_svc, whose backend slots it follows. Not
 * preallocated: memory follows the number of backends. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct lb_backend_key);
	__type(value, struct lb_backend_stats);
	__uint(max_entries, LB_SVC_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_backend_stats SEC(".maps");

/* The node's sockets translated by the cgroup programs: socket and backend
 * -> frontend (struct lb_sock_key). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_sock_key);
	__type(value, struct lb_sock_value);
	__uint(max_entries, LB_SOCK_MAX_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kube_lb_sock_rnat SEC(".maps");

/* Written by the control plane at every start, for the programs it loaded:
 * not pinned, so each loaded set of programs has its own, which tells
 * whose they are. A name the kernel keeps whole (15 characters), as the
 * control plane finds it by name. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_sock_config);
	__uint(max_entries, 1);
} kube_lb_sockcfg SEC(".maps");

#endif
