// Flushing stale UDP flows. A UDP "connection" to a removed endpoint would
// otherwise stick to it for as long as the client keeps its source port,
// so, as kube-proxy does with conntrack, kube-lb deletes those flows.
// TCP flows are left to end on their own.
import { type Destination, type Frontend, frontendKey } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';
import type { MapFds } from './datapath.js';
import { decodeCtValue, decodeFlowKey, encodeFlowKey, layouts, LB_CT_F_HAIRPIN, LB_HAIRPIN_ADDR } from './encoding.js';

/** frontendKey -> "ip:port" of destinations whose flows must go. */
export type StaleDestinations = Map<string, Set<string>>;

export function addStale(stale: StaleDestinations, frontend: Frontend, gone: Iterable<Destination>): void {
  if (frontend.protocol !== 'UDP') return;
  const key = frontendKey(frontend);
  const set = stale.get(key) ?? new Set<string>();
  for (const d of gone) set.add(`${d.ip}:${d.port}`);
  if (set.size > 0) stale.set(key, set);
}

/** Deletes the forward and reverse entries of every flow to a stale destination. Returns how many flows. */
export function flushStaleFlows(lib: NativeAddon, maps: MapFds, stale: StaleDestinations): number {
  if (stale.size === 0) return 0;
  const { keys, values, count } = lib.mapDump(maps.ct);
  let flushed = 0;
  for (let i = 0; i < count; i++) {
    const flow = decodeFlowKey(keys, i * layouts.lb_flow_key.size);
    const ct = decodeCtValue(values, i * layouts.lb_ct_value.size);
    const gone = stale.get(frontendKey({ ip: flow.daddr, port: flow.dport, protocol: flow.protocol }));
    if (!gone?.has(`${ct.backend.ip}:${ct.backend.port}`)) continue;
    lib.mapDelete(maps.ct, keys.subarray(i * layouts.lb_flow_key.size, (i + 1) * layouts.lb_flow_key.size));
    lib.mapDelete(
      maps.rnat,
      encodeFlowKey({
        saddr: ct.backend.ip,
        sport: ct.backend.port,
        daddr: ct.flags & LB_CT_F_HAIRPIN ? LB_HAIRPIN_ADDR : flow.saddr,
        dport: flow.sport,
        protocol: flow.protocol,
      }),
    );
    flushed++;
  }
  return flushed;
}
