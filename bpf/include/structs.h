/* Map keys and values shared with the control plane.
 *
 * The TypeScript encoders in src/backends/ebpf/encoding.ts mirror these
 * layouts; a unit test checks sizes and offsets against the BTF of the built
 * object, so change both sides together.
 *
 * Made to be read with `bpftool map dump`: addresses are byte arrays in
 * packet order, and ports are in host byte order, so they print as 80.
 *
 * One layout serves both address families: an address is 16 bytes, an
 * IPv6 address as it is and an IPv4 one IPv4-mapped (::ffff:10.96.0.10,
 * RFC 4291 2.5.5.2), so that one set of maps and one datapath serve both
 * and no key of one family can equal a key of the other. An address of all
 * zeros means "none" where a field allows it. */
#ifndef KUBE_LB_STRUCTS_H
#define KUBE_LB_STRUCTS_H

#include <linux/types.h>
#include "consts.h"

typedef __u8 lb_addr_t[16] __attribute__((aligned(4)));

/* One service frontend (address, port, protocol) in one scope, and a slot
 * number. Slot 0 holds the service itself (backend count, flags); slots
 * 1..count hold one backend each, so a random pick is one extra hash
 * lookup, never a loop. A frontend has one service per scope: pods reach
 * its internal endpoint set, outside clients (on an uplink) its external
 * one. */
struct lb_svc_key {
	lb_addr_t vip;
	__u16 port;
	__u8 proto;
	__u8 scope;	      /* LB_SCOPE_* */
	__u16 slot;
	__u16 pad2;
};

struct lb_svc_value {
	__u16 count;	      /* slot 0: number of backend slots in use */
	__u16 flags;	      /* slot 0: LB_SVC_F_* */
	lb_addr_t backend_addr; /* slots >= 1 */
	__u16 backend_port;   /* slots >= 1 */
	__u16 maglev_size;    /* slot 0 with LB_SVC_F_MAGLEV: entries of its
			       * Maglev table (a prime) */
	__u32 affinity_timeout; /* slot 0: seconds a client keeps its backend
				 * after its last new flow; 0: no affinity */
};

/* One chunk of a service's Maglev table: the service's lb_svc_key with
 * slot 0, and which LB_MAGLEV_CHUNK entries of the table. Entry i of the
 * table is slots[i % LB_MAGLEV_CHUNK] of chunk i / LB_MAGLEV_CHUNK. */
struct lb_maglev_key {
	lb_addr_t vip;
	__u16 port;
	__u8 proto;
	__u8 scope;	      /* LB_SCOPE_* */
	__u16 chunk;
	__u16 pad;
};

/* The backend slot (1..count of kube_lb_svc) each entry names. */
struct lb_maglev_chunk {
	__u16 slots[LB_MAGLEV_CHUNK];
};

/* Session affinity: a client of a service (in one scope) and the backend
 * it was last given. */
struct lb_affinity_key {
	lb_addr_t client;
	lb_addr_t vip;
	__u16 port;
	__u8 proto;
	__u8 scope;
};

struct lb_affinity_value {
	lb_addr_t backend_addr;
	__u16 backend_port;
	__u16 slot;	      /* where the backend was: it counts while it is still there */
	__u32 last_seen;      /* seconds of CLOCK_MONOTONIC (coarse) of the last new flow */
};

/* loadBalancerSourceRanges: a frontend and a source prefix allowed to reach
 * it, as an LPM trie key (prefixlen counts the frontend's 160 bits too; an
 * IPv4 prefix of n bits is one of 96 + n bits of its mapped addresses). */
struct lb_source_range_key {
	__u32 prefixlen;
	lb_addr_t vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
	lb_addr_t saddr;
};

/* A flow as seen in a packet: the key of both conntrack maps. */
struct lb_flow_key {
	lb_addr_t saddr;
	lb_addr_t daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Forward conntrack: client -> frontend tuple to the chosen backend. */
struct lb_ct_value {
	lb_addr_t backend_addr;
	__u16 backend_port;
	__u16 flags;	      /* LB_CT_F_* */
	__u32 last_seen;      /* seconds of CLOCK_MONOTONIC (coarse) */
	__u16 nat_sport;      /* the client port the backend sees, when the
			       * client's own one was taken there or the
			       * flow is SNATed; 0: kept */
	__u16 pad;
	lb_addr_t nat_saddr;  /* SNAT: the node address the backend sees as
			       * the client; 0: the client's own */
};

/* Reverse NAT: backend -> client (or hairpin address) tuple to what the
 * client expects to see as its peer. */
struct lb_rnat_value {
	lb_addr_t vip;
	__u16 vport;
	__u16 flags;	      /* LB_CT_F_* */
	lb_addr_t client_addr; /* hairpin: the client's real address */
	__u16 client_port;    /* the client's own port, when the flow's was
			       * rewritten (lb_ct_value.nat_sport); 0: kept */
	__u16 pad;
};

/* Interfaces kube-lb attached to, so cleanup finds them after a restart.
 * An ifindex means something in one network namespace only, so the
 * namespace is recorded too; cleanup elsewhere leaves the entry alone. */
struct lb_iface_value {
	__u32 flags;	      /* LB_IFACE_F_* */
	lb_addr_t snat_addr;  /* uplinks: the address flows SNATed there get */
	__u32 pad0;
	__u64 netns_cookie;   /* SO_NETNS_COOKIE, never reused; 0: not recorded */
	__u32 netns_ino;      /* the namespace's inode, as in net:[ino]: for messages */
	__u32 pad;
	lb_addr_t snat_addr6; /* uplinks: the same for IPv6 flows */
};

/* Socket-level load balancing of the node's own processes: a socket
 * connected (or sending) to a frontend, and the backend it was given, to
 * the frontend its process must see as the peer (recvmsg, getpeername). */
struct lb_sock_key {
	__u64 cookie;	      /* the socket's cookie */
	lb_addr_t backend_addr;
	__u16 backend_port;
	__u8 proto;
	__u8 pad;
	__u32 pad2;
};

struct lb_sock_value {
	lb_addr_t vip;
	__u16 vport;
	__u16 pad;
};

/* One backend of one kube_lb_svc service: a frontend in a scope and the
 * backend's address, the key of its traffic counters. */
struct lb_backend_key {
	lb_addr_t vip;
	__u16 port;
	__u8 proto;
	__u8 scope;	      /* LB_SCOPE_* */
	lb_addr_t backend_addr;
	__u16 backend_port;
	__u16 pad;
};

/* What a backend's translated flows carried, on one CPU. */
struct lb_backend_stats {
	__u64 connections;    /* flows given this backend */
	__u64 packets;	      /* translated packets, both directions */
	__u64 bytes;	      /* their IP bytes (headers included) */
};

/* Written by the control plane only: which sockets the cgroup programs
 * serve (the hooks see every namespace's), and as whom. */
struct lb_sock_config {
	__u64 netns_cookie;   /* kube-lb's network namespace; 0: serve none */
	lb_addr_t node_addr;  /* the node as an IPv4 client, for an unbound
			       * socket (session affinity, source ranges) */
	__u32 flags;	      /* LB_SOCK_F_* */
	__u32 pad;
	lb_addr_t node_addr6; /* the same as an IPv6 client */
};

#endif
