/* Constants shared with the control plane (src/backends/ebpf/encoding.ts). */
#ifndef KUBE_LB_CONSTS_H
#define KUBE_LB_CONSTS_H

/* Hairpin: a pod that reaches its own service is shown this source address,
 * because Linux drops packets whose source is one of its own addresses.
 * 169.254.7.1, link-local, never routed off the pod. */
#define LB_HAIRPIN_ADDR 0xa9fe0701
/* Its IPv6 twin: 100::7:1, of the discard-only prefix 100::/64 (RFC 6666),
 * never a real peer, and reached through the pod's default route as the
 * IPv4 one is (a link-local address would be resolved on the link, where
 * nothing answers). Its four 32-bit words, in host order. */
#define LB_HAIRPIN_ADDR6_W0 0x01000000
#define LB_HAIRPIN_ADDR6_W3 0x00070001

#define LB_CT_F_HAIRPIN 0x1
#define LB_CT_F_CLOSING 0x2 /* a FIN or RST was seen: the next SYN is a new connection */
#define LB_CT_F_WORLD 0x4   /* from outside the node, through an uplink: replies go back out one */
/* Started before kube-lb took the node over (kube-lb run --takeover): the
 * stack's conntrack translates it, as it did; kube-lb leaves it alone. */
#define LB_CT_F_STACK 0x8

/* A UDP flow idle this long is over, as nf_conntrack_udp_timeout says. */
#define LB_UDP_TIMEOUT_S 30

/* A flow whose client port is taken at its backend by another flow gets a
 * random port of at least LB_NAT_PORT_MIN there, after at most this many
 * tries. */
#define LB_NAT_PORT_MIN 1024
#define LB_NAT_PORT_PROBES 8

#define LB_IFACE_F_CREATED_HOOK 0x1 /* kube-lb created the clsact qdisc */
#define LB_IFACE_F_UPLINK 0x2	    /* an uplink (lb_from_world), not a pod interface */
#define LB_IFACE_F_XDP 0x4	    /* an uplink under lb_world_xdp: XDP may redirect frames to it */

/* A SNATed flow whose client port is taken at its backend gets a node port
 * from this range, above Linux's default ephemeral range so that no socket
 * of the node's own holds it. */
#define LB_SNAT_PORT_MIN 61000

/* Which traffic a kube_lb_svc service serves (lb_svc_key.scope). */
#define LB_SCOPE_INTERNAL 0 /* from pods, on pod interfaces */
#define LB_SCOPE_EXTERNAL 1 /* from outside the node, on uplinks */

/* What a frontend is to Kubernetes, in slot 0's flags (ClusterIP: none of
 * them). The programs do not read them; inspect and bpftool do. */
#define LB_SVC_F_EXTERNAL_IP 0x1
#define LB_SVC_F_LOADBALANCER 0x2
#define LB_SVC_F_NODEPORT 0x4
/* The model leaves this frontend without endpoints by a traffic policy:
 * new flows are dropped. Without it, a frontend with no endpoint refuses
 * them (reject.h). Read by the programs. */
#define LB_SVC_F_DROP_NO_ENDPOINTS 0x8
/* External scope: SNAT every flow to the uplink's address, so replies from
 * endpoints on other nodes come back through this node
 * (externalTrafficPolicy: Cluster). Read by the programs. */
#define LB_SVC_F_SNAT 0x10
/* Only sources in kube_lb_source_ranges may open flows (loadBalancerSourceRanges). */
#define LB_SVC_F_SOURCE_RANGES 0x20
/* New flows pick their slot from the service's Maglev table in
 * kube_lb_maglev, by a hash of the flow, instead of at random. Read by the
 * programs. */
#define LB_SVC_F_MAGLEV 0x40

/* A Maglev table is stored in chunks of this many entries (a power of two,
 * so that an entry's place in its chunk is a mask the verifier can bound). */
#define LB_MAGLEV_CHUNK 1024
/* The flow hash's seed (jhash's initval besides the protocol). */
#define LB_MAGLEV_HASH_SEED 0x6b6c6221

/* Why a packet was dropped: kube_lb_drops' index. The control plane names
 * them in the same order (DROP_REASONS in src/backends/ebpf/encoding.ts). */
enum lb_drop_reason {
	LB_DROP_NO_ENDPOINTS,	/* a new flow to a frontend without endpoints (also counts refusals) */
	LB_DROP_NO_NAT_PORT,	/* no free client port at the backend (ct_pick_nat_sport) */
	LB_DROP_CONNTRACK_FULL,	/* the flow could not be recorded */
	LB_DROP_REWRITE_FAILED,	/* a header rewrite or redirect failed */
	LB_DROP_REJECT_FAILED,	/* the refusal could not be built; the packet is dropped instead */
	LB_DROP_NO_ROUTE,	/* a translated packet has no route, or forwarding is off */
	LB_DROP_TTL_EXCEEDED,	/* a packet to forward has no hop left */
	LB_DROP_NO_SNAT_ADDR,	/* an uplink without an address to SNAT to */
	LB_DROP_SOURCE_RANGE,	/* a source outside a frontend's loadBalancerSourceRanges */
	LB_DROP__MAX,
};

/* The control plane sets the sizes of kube_lb_svc and of the conntrack maps
 * at load (--bpf-lb-map-max, --bpf-ct-map-max); these are what the object
 * declares, the flags' defaults. */
#define LB_SVC_MAX_ENTRIES 1048576
#define LB_CT_MAX_ENTRIES 262144
#define LB_IFACE_MAX_ENTRIES 4096
#define LB_AFFINITY_MAX_ENTRIES 65536
#define LB_SOURCE_RANGE_MAX_ENTRIES 65536
/* Chunks of Maglev tables: a table of --bpf-lb-maglev-table-size entries
 * takes that size / LB_MAGLEV_CHUNK chunks, rounded up. */
#define LB_MAGLEV_MAX_ENTRIES 65536
/* The node's own sockets connected to frontends: fewer than pods' flows. */
#define LB_SOCK_MAX_ENTRIES 65536

#endif
