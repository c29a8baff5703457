// The ebpf datapath's part in `kube-lb run --takeover` (docs/takeover.md).
// Taking over from a datapath the stack's conntrack translates for
// (kube-proxy's rules, kube-lb's netfilter backends), the established flows
// stay with the stack: kube_lb_adopt leaves every TCP packet that is not a
// SYN and of no flow of kube-lb's to the stack until the stack's flows have
// ended, and the flows conntrack lists are recorded as LB_CT_F_STACK
// entries, which the programs leave alone too (UDP ones included) and which
// say when the last has ended.
// Handing over to another backend, kube-lb's own flows stay with its
// programs: the services go, so new flows pass to the stack, and the
// programs stay until the last flow they translate has ended.
import fs from 'node:fs';
import { type Destination, type Frontend, frontendKey } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';
import type { MapFds } from './datapath.js';
import { decodeCtValue, decodeFlowKey, encodeCtValue, encodeFlowKey, type Flow, layouts, LB_CT_F_CLOSING, LB_CT_F_STACK } from './encoding.js';

/** A flow the stack's conntrack translates: its first packet's tuple, and the endpoint the reply comes from. */
export interface StackFlow {
  flow: Flow;
  backend: Destination;
  /** A FIN or RST was seen: the next SYN on the tuple is a new connection. */
  closing: boolean;
}

/** lb_ct_value.last_seen's clock: CLOCK_MONOTONIC in seconds, as bpf_ktime_get_coarse_ns. */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n);
}

/** Turns kube_lb_adopt on or off. */
export function setAdopting(lib: NativeAddon, adoptMap: number, on: boolean): void {
  const value = Buffer.alloc(4);
  value.writeUInt32LE(on ? 1 : 0);
  lib.mapUpdate(adoptMap, Buffer.alloc(4), value);
}

/** Records the stack's flows to `frontends` as LB_CT_F_STACK entries, but none that kube-lb translates already. Returns how many it recorded. */
export function recordStackFlows(lib: NativeAddon, maps: MapFds, flows: readonly StackFlow[], frontends: readonly Frontend[]): number {
  const served = new Set(frontends.map(frontendKey));
  const now = monotonicSeconds();
  let recorded = 0;
  for (const { flow, backend, closing } of flows) {
    if (!served.has(frontendKey({ ip: flow.daddr, port: flow.dport, protocol: flow.protocol }))) continue;
    const key = encodeFlowKey(flow);
    if (lib.mapLookup(maps.ct, key) !== null) continue;
    const flags = LB_CT_F_STACK | (closing ? LB_CT_F_CLOSING : 0);
    lib.mapUpdate(maps.ct, key, encodeCtValue({ backend, flags, lastSeen: now, natSport: 0, natSaddr: null }, flow.family));
    recorded++;
  }
  return recorded;
}

/** Deletes every entry of kube_lb_svc: new flows pass to the stack, established ones keep their conntrack entries. Returns how many entries. */
export function removeServices(lib: NativeAddon, maps: MapFds): number {
  const { keys, count } = lib.mapDump(maps.svc);
  const size = layouts.lb_svc_key.size;
  for (let i = 0; i < count; i++) lib.mapDelete(maps.svc, keys.subarray(i * size, (i + 1) * size));
  return count;
}

/** A UDP flow idle this long is over, as LB_UDP_TIMEOUT_S says. */
const UDP_TIMEOUT_S = 30;
/** A closed TCP connection's last ACKs and retransmitted FINs come within this. */
const CLOSING_GRACE_S = 10;
const TCP_ESTABLISHED_TIMEOUT = '/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established';
/** kube-proxy's --conntrack-tcp-timeout-established, where the kernel has no conntrack to say. */
const DEFAULT_TCP_ESTABLISHED_TIMEOUT_S = 86_400;

/**
 * The live flows of kube_lb_ct: those kube-lb's programs translate, or with
 * `stack` those they leave to the stack's conntrack (LB_CT_F_STACK). A TCP
 * connection is live until closed (and CLOSING_GRACE_S after) or idle longer
 * than conntrack keeps an established one, a UDP flow until idle past its
 * timeout.
 */
export function liveFlows(lib: NativeAddon, maps: MapFds, stack: boolean): number {
  const established = fs.existsSync(TCP_ESTABLISHED_TIMEOUT) ? Number(fs.readFileSync(TCP_ESTABLISHED_TIMEOUT, 'utf8')) : DEFAULT_TCP_ESTABLISHED_TIMEOUT_S;
  const { keys, values, count } = lib.mapDump(maps.ct);
  const now = monotonicSeconds();
  let live = 0;
  for (let i = 0; i < count; i++) {
    const ct = decodeCtValue(values, i * layouts.lb_ct_value.size);
    if (Boolean(ct.flags & LB_CT_F_STACK) !== stack) continue;
    const tcp = decodeFlowKey(keys, i * layouts.lb_flow_key.size).protocol === 'TCP';
    const timeout = !tcp ? UDP_TIMEOUT_S : ct.flags & LB_CT_F_CLOSING ? CLOSING_GRACE_S : established;
    if (now - ct.lastSeen <= timeout) live++;
  }
  return live;
}
