/* The two contexts the packet code runs in: TC (struct __sk_buff) and XDP
 * (struct xdp_md). kube_lb_xdp.bpf.c defines LB_XDP before including the
 * headers; everything above this file is written once, against lb_ctx and
 * these helpers.
 *
 * TC rewrites checksums with the kernel's helpers, which also handle veth's
 * CHECKSUM_PARTIAL skbs, whose L4 field holds only the pseudo-header sum
 * (BPF_F_PSEUDO_HDR updates exactly that). XDP sees frames as they came off
 * the wire, with full checksums, and updates them by RFC 1624 arithmetic. */
#ifndef KUBE_LB_CTX_H
#define KUBE_LB_CTX_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* Folds a 32-bit one's-complement sum into the 16-bit checksum field. */
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

#ifdef LB_XDP

typedef struct xdp_md lb_ctx;

#define CTX_PASS XDP_PASS
#define CTX_DROP XDP_DROP

static __always_inline __u32 ctx_ifindex(const lb_ctx *ctx)
{
	return ctx->ingress_ifindex;
}

static __always_inline __u32 ctx_len(lb_ctx *ctx)
{
	return bpf_xdp_get_buff_len(ctx);
}

static __always_inline long ctx_load_bytes(lb_ctx *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_xdp_load_bytes(ctx, off, to, len);
}

static __always_inline long ctx_store_bytes(lb_ctx *ctx, __u32 off, const void *from, __u32 len)
{
	return bpf_xdp_store_bytes(ctx, off, (void *)from, len);
}

/* The checksum helpers (ctx_l3_csum_replace, ctx_l4_csum_replace) replace
 * `from` with `to` in the checksum at csum_off: a field of `size` bytes
 * (2: a port, or the TTL's word; 4: an address), in network order,
 * zero-extended; pseudo: the field is an address, part of the L4
 * pseudo-header. A UDP checksum of 0 means "none" and stays 0; one that
 * comes out 0 is sent as 0xffff.
 *
 * XDP's arithmetic works on the field zero-extended as given: the
 * one's-complement sum does not care where the zeros go. */
static __always_inline int xdp_csum_replace(lb_ctx *ctx, __u32 csum_off, __be32 from, __be32 to, int udp)
{
	__sum16 check;
	__s64 sum;

	if (ctx_load_bytes(ctx, csum_off, &check, sizeof(check)) < 0)
		return -1;
	if (udp && !check)
		return 0;
	sum = bpf_csum_diff(&from, sizeof(from), &to, sizeof(to), (__u16)~check);
	if (sum < 0)
		return -1;
	check = csum_fold(sum);
	if (udp && !check)
		check = 0xffff;
	return ctx_store_bytes(ctx, csum_off, &check, sizeof(check));
}

static __always_inline int ctx_l3_csum_replace(lb_ctx *ctx, __u32 csum_off, __be32 from, __be32 to, __u32 size)
{
	return xdp_csum_replace(ctx, csum_off, from, to, 0);
}

static __always_inline int ctx_l4_csum_replace(lb_ctx *ctx, __u32 csum_off, __be32 from, __be32 to, __u32 size,
					       int udp, int pseudo)
{
	return xdp_csum_replace(ctx, csum_off, from, to, udp);
}

/* Makes the packet len bytes long, cutting or growing its tail. */
static __always_inline long ctx_change_tail(lb_ctx *ctx, __u32 len)
{
	return bpf_xdp_adjust_tail(ctx, (int)len - (int)ctx_len(ctx));
}

/* Sends the frame out of ifindex: back out of the interface it came in on,
 * or redirected to another. */
static __always_inline int ctx_send(lb_ctx *ctx, __u32 ifindex)
{
	return ifindex == ctx->ingress_ifindex ? XDP_TX : bpf_redirect(ifindex, 0);
}

#else

typedef struct __sk_buff lb_ctx;

#define CTX_PASS TC_ACT_OK
#define CTX_DROP TC_ACT_SHOT

static __always_inline __u32 ctx_ifindex(const lb_ctx *ctx)
{
	return ctx->ifindex;
}

static __always_inline __u32 ctx_len(lb_ctx *ctx)
{
	return ctx->len;
}

static __always_inline long ctx_load_bytes(lb_ctx *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(ctx, off, to, len);
}

static __always_inline long ctx_store_bytes(lb_ctx *ctx, __u32 off, const void *from, __u32 len)
{
	return bpf_skb_store_bytes(ctx, off, from, len, 0);
}

static __always_inline int ctx_l3_csum_replace(lb_ctx *ctx, __u32 csum_off, __be32 from, __be32 to, __u32 size)
{
	return bpf_l3_csum_replace(ctx, csum_off, from, to, size);
}

static __always_inline int ctx_l4_csum_replace(lb_ctx *ctx, __u32 csum_off, __be32 from, __be32 to, __u32 size,
					       int udp, int pseudo)
{
	return bpf_l4_csum_replace(ctx, csum_off, from, to,
				   (udp ? BPF_F_MARK_MANGLED_0 : 0) | (pseudo ? BPF_F_PSEUDO_HDR : 0) | size);
}

static __always_inline long ctx_change_tail(lb_ctx *ctx, __u32 len)
{
	return bpf_skb_change_tail(ctx, len, 0);
}

static __always_inline int ctx_send(lb_ctx *ctx, __u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

#endif

#endif
