// How full each BPF map is, for the kube_lb_bpf_map_entries and
// kube_lb_bpf_map_max_entries metrics: a full conntrack or service map
// drops traffic silently, so its fill level is worth an alert.
import type { NativeAddon } from '../../native/index.js';
import type { MapFill } from '../backend.js';
import { MAPS, type MapFds } from './datapath.js';

/** Reads every map's capacity and counts its entries by walking it (linear in the entries, once per scrape). */
export function readMapFill(lib: NativeAddon, maps: MapFds): MapFill[] {
  return (Object.keys(MAPS) as (keyof typeof MAPS)[]).map((key) => ({
    map: MAPS[key],
    entries: lib.mapDump(maps[key]).count,
    maxEntries: lib.mapInfo(maps[key]).maxEntries,
  }));
}
