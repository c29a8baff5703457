/* The packet-rate benchmark's generator (bench/flood.ts): run with
 * BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES, it sends frames out of
 * an interface from the kernel's XDP path, so that they reach node-a's
 * uplink as a NIC hands frames to its driver: before any skb exists.
 * Each run writes the frame's headers afresh (the pages come back from the
 * path with whatever it wrote) with the next source port, so the frames
 * are many flows. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define FLOOD_HEADERS 42 /* Ethernet, IPv4 without options, UDP */

struct flood_config {
	__u32 ifindex;	     /* where the frames go */
	__u16 sport_first;
	__u16 sport_count;
	__u8 headers[FLOOD_HEADERS]; /* the UDP checksum 0: none */
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct flood_config);
	__uint(max_entries, 1);
} flood_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} flood_sent SEC(".maps");

SEC("xdp")
int flood(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct flood_config *cfg;
	__u32 key = 0, *sent;
	__u16 sport;

	cfg = bpf_map_lookup_elem(&flood_config, &key);
	sent = bpf_map_lookup_elem(&flood_sent, &key);
	if (!cfg || !sent || !cfg->sport_count || data + FLOOD_HEADERS > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, cfg->headers, FLOOD_HEADERS);
	sport = __builtin_bswap16(cfg->sport_first + *sent % cfg->sport_count);
	__builtin_memcpy(data + 34, &sport, sizeof(sport));
	*sent += 1;
	return bpf_redirect(cfg->ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
