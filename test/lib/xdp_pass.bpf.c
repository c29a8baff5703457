/* The sandbox's stand-in for a NIC's far end (test/lib/sandbox.ts): a veth
 * takes the frames its peer's XDP program sends back (XDP_TX) only when it
 * runs an XDP program itself. This one lets every frame through. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
