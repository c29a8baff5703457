// Flushing stale UDP flows (which ones is decided in ../stale-flows.ts)
// from the BPF conntrack maps. Only translated flows are recorded there: a
// packet to a frontend without endpoints is dropped, not tracked, so the
// untranslated flows stale-flows.ts names are not here.
import { destinationKey, frontendKey } from '../../model/contract.js';
import type { StaleFlows } from '../stale-flows.js';
import type { NativeAddon } from '../../native/index.js';
import type { MapFds } from './datapath.js';
import { decodeCtValue, decodeFlowKey, encodeFlowKey, layouts, LB_CT_F_HAIRPIN, hairpinAddr } from './encoding.js';

/** Deletes the forward and reverse entries of every flow to a gone endpoint. Returns how many flows. */
export function flushStaleFlows(lib: NativeAddon, maps: MapFds, staleFlows: readonly StaleFlows[]): number {
  const stale = new Map(staleFlows.filter((s) => s.gone.length > 0).map((s) => [frontendKey(s.frontend), new Set(s.gone.map(destinationKey))]));
  if (stale.size === 0) return 0;
  const { keys, values, count } = lib.mapDump(maps.ct);
  let flushed = 0;
  for (let i = 0; i < count; i++) {
    const flow = decodeFlowKey(keys, i * layouts.lb_flow_key.size);
    const ct = decodeCtValue(values, i * layouts.lb_ct_value.size);
    const gone = stale.get(frontendKey({ ip: flow.daddr, port: flow.dport, protocol: flow.protocol }));
    if (!gone?.has(destinationKey(ct.backend))) continue;
    lib.mapDelete(maps.ct, keys.subarray(i * layouts.lb_flow_key.size, (i + 1) * layouts.lb_flow_key.size));
    lib.mapDelete(
      maps.rnat,
      encodeFlowKey({
        family: flow.family,
        saddr: ct.backend.ip,
        sport: ct.backend.port,
        daddr: ct.flags & LB_CT_F_HAIRPIN ? hairpinAddr(flow.family) : (ct.natSaddr ?? flow.saddr),
        dport: ct.natSport || flow.sport,
        protocol: flow.protocol,
      }),
    );
    flushed++;
  }
  return flushed;
}
