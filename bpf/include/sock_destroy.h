/* Ending connected UDP sockets whose backend was removed, as the TC path
 * flushes UDP flows to removed endpoints: a socket keeps the backend it
 * was given at connect, and UDP has no close to end it. The control plane
 * fills kube_lb_sock_gone with the frontend-and-backend pairs a sync
 * removed, then runs lb_udp_destroy (a socket iterator: it sees the
 * sockets of the network namespace it is run in), which destroys each
 * connected socket translated to one of them with the bpf_sock_destroy
 * kfunc (kernel 6.5 and later; the control plane does not load the
 * iterator where the kernel lacks it). The process gets ECONNABORTED and
 * connects again, to a live backend. Unconnected sockets are left alone:
 * each datagram they send gets a backend of its own. TCP connections end
 * on their own, as on the TC path, so terminating endpoints drain. */
#ifndef KUBE_LB_SOCK_DESTROY_H
#define KUBE_LB_SOCK_DESTROY_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"

#define LB_AF_INET 2
#define LB_AF_INET6 10
#define LB_TCP_ESTABLISHED 1 /* a connected UDP socket's state */
#define LB_SOCK_GONE_MAX_ENTRIES 65536

/* A frontend and a backend it no longer sends to. */
struct lb_sock_gone_key {
	lb_addr_t vip;
	lb_addr_t backend_addr;
	__u16 vport;
	__u16 backend_port;
	__u8 proto;
	__u8 pad[3];
};

/* Written by the control plane only, emptied after each run of the iterator. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_sock_gone_key);
	__type(value, __u8);
	__uint(max_entries, LB_SOCK_GONE_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kube_lb_sock_gone SEC(".maps");

/* The kernel's types, as far as the iterator reads them: CO-RE finds the
 * fields in the running kernel's layout. */
struct sock_common {
	__be32 skc_daddr;
	struct in6_addr skc_v6_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	volatile unsigned char skc_state;
} __attribute__((preserve_access_index));

struct seq_file;
struct udp_sock;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
} __attribute__((preserve_access_index));

extern int bpf_sock_destroy(struct sock_common *sk) __ksym __weak;

/* Whether a connected socket was translated to a backend that is gone. */
static __always_inline int sock_backend_gone(struct sock_common *sk, __u8 proto)
{
	struct lb_sock_gone_key gone = {};
	struct lb_sock_value *frontend;
	struct lb_sock_key key = {};

	if ((sk->skc_family != LB_AF_INET && sk->skc_family != LB_AF_INET6) || sk->skc_state != LB_TCP_ESTABLISHED)
		return 0;
	key.cookie = bpf_get_socket_cookie(sk);
	/* An IPv6 socket's peer is IPv6, or IPv4-mapped: as the map holds it. */
	if (sk->skc_family == LB_AF_INET)
		addr_set4(key.backend_addr, sk->skc_daddr);
	else if (bpf_core_field_exists(sk->skc_v6_daddr)) /* a kernel built without IPv6 has none */
		__builtin_memcpy(key.backend_addr, &sk->skc_v6_daddr, sizeof(lb_addr_t));
	else
		return 0;
	key.backend_port = bpf_ntohs(sk->skc_dport);
	key.proto = proto;
	frontend = bpf_map_lookup_elem(&kube_lb_sock_rnat, &key);
	if (!frontend)
		return 0;
	addr_copy(gone.vip, frontend->vip);
	gone.vport = frontend->vport;
	addr_copy(gone.backend_addr, key.backend_addr);
	gone.backend_port = key.backend_port;
	gone.proto = proto;
	return bpf_map_lookup_elem(&kube_lb_sock_gone, &gone) != NULL;
}

#endif
