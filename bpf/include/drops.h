/* Every packet the programs drop is counted under a named reason, in a
 * per-CPU array the control plane sums for kube_lb_bpf_drops_total. */
#ifndef KUBE_LB_DROPS_H
#define KUBE_LB_DROPS_H

#include "ctx.h"
#include "maps.h"

static __always_inline void count_drop(enum lb_drop_reason reason)
{
	__u32 key = reason;
	__u64 *count = bpf_map_lookup_elem(&kube_lb_drops, &key);

	if (count)
		*count += 1;
}

static __always_inline int drop(enum lb_drop_reason reason)
{
	count_drop(reason);
	return CTX_DROP;
}

#endif
