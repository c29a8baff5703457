/* Traffic per backend of each service (kube_lb_backend_stats): a flow
 * counts as a connection when its conntrack entry is created, and each of
 * its packets the programs translate, either way, counts with its IP
 * bytes. A packet XDP leaves to TC counts once, where it is translated.
 * The socket programs translate no packets: their connections count as
 * connections only. */
#ifndef KUBE_LB_STATS_H
#define KUBE_LB_STATS_H

#include <linux/if_ether.h>
#include "ctx.h"
#include "maps.h"
#include "parse.h"

static __always_inline __u8 scope_of(__u16 ct_flags)
{
	return (ct_flags & LB_CT_F_WORLD) ? LB_SCOPE_EXTERNAL : LB_SCOPE_INTERNAL;
}

static __always_inline void backend_key(struct lb_backend_key *key, const lb_addr_t vip, __u16 port, __u8 proto,
					__u8 scope, const lb_addr_t backend_addr, __u16 backend_port)
{
	__builtin_memset(key, 0, sizeof(*key));
	addr_copy(key->vip, vip);
	key->port = port;
	key->proto = proto;
	key->scope = scope;
	addr_copy(key->backend_addr, backend_addr);
	key->backend_port = backend_port;
}

/* The backend a flow's packet from its client goes to. */
static __always_inline void forward_backend_key(struct lb_backend_key *key, const struct lb_flow_key *flow,
						const struct lb_ct_value *ct)
{
	backend_key(key, flow->daddr, flow->dport, flow->proto, scope_of(ct->flags), ct->backend_addr,
		    ct->backend_port);
}

/* The backend a reply comes from. */
static __always_inline void reply_backend_key(struct lb_backend_key *key, const struct lb_flow_key *reply,
					      const struct lb_rnat_value *rnat)
{
	backend_key(key, rnat->vip, rnat->vport, reply->proto, scope_of(rnat->flags), reply->saddr,
		    reply->sport);
}

static __always_inline void count_connection(const struct lb_backend_key *key)
{
	struct lb_backend_stats *stats = bpf_map_lookup_elem(&kube_lb_backend_stats, key);

	if (stats)
		stats->connections += 1;
}

static __always_inline void count_packet(lb_ctx *ctx, const struct lb_backend_key *key)
{
	struct lb_backend_stats *stats = bpf_map_lookup_elem(&kube_lb_backend_stats, key);

	if (!stats)
		return;
	stats->packets += 1;
	stats->bytes += ctx_len(ctx) - ETH_HLEN;
}

static __always_inline void count_forward_packet(lb_ctx *ctx, const struct packet *pkt, const struct lb_ct_value *ct)
{
	struct lb_backend_key key;

	forward_backend_key(&key, &pkt->flow, ct);
	count_packet(ctx, &key);
}

static __always_inline void count_reply_packet(lb_ctx *ctx, const struct packet *pkt, const struct lb_rnat_value *rnat)
{
	struct lb_backend_key key;

	reply_backend_key(&key, &pkt->flow, rnat);
	count_packet(ctx, &key);
}

#endif
