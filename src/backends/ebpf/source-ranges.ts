// The kube_lb_source_ranges LPM trie: the sources allowed to reach each
// frontend with loadBalancerSourceRanges. A frontend's ranges are written
// before its flag is set and removed after it is cleared (ebpf-backend.ts
// orders the two), so no lookup refuses a source that is allowed.
import { type Frontend, type IPFamily, frontendKey } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';
import { decodeSourceRangeKey, encodeSourceRangeKey, layouts } from './encoding.js';

/** One frontend's ranges now and wanted; an empty list means none. */
export interface RangeChange {
  frontend: Frontend;
  family: IPFamily;
  current: readonly string[];
  wanted: readonly string[];
}

export class SourceRangeMap {
  constructor(
    private readonly lib: NativeAddon,
    private readonly fd: number,
  ) {}

  /** Every frontend's ranges, by frontendKey. */
  readAll(): Map<string, string[]> {
    const { keys, count } = this.lib.mapDump(this.fd);
    const result = new Map<string, string[]>();
    for (let i = 0; i < count; i++) {
      const { frontend, cidr } = decodeSourceRangeKey(keys, i * layouts.lb_source_range_key.size);
      const key = frontendKey(frontend);
      result.set(key, [...(result.get(key) ?? []), cidr]);
    }
    return result;
  }

  /** Writes the ranges the changes add. */
  add(changes: readonly RangeChange[]): void {
    const allowed = Buffer.from([1]);
    for (const { frontend, family, current, wanted } of changes) {
      for (const cidr of wanted) if (!current.includes(cidr)) this.lib.mapUpdate(this.fd, encodeSourceRangeKey(frontend, cidr, family), allowed);
    }
  }

  /** Deletes the ranges the changes remove. */
  remove(changes: readonly RangeChange[]): void {
    for (const { frontend, family, current, wanted } of changes) {
      for (const cidr of current) if (!wanted.includes(cidr)) this.lib.mapDelete(this.fd, encodeSourceRangeKey(frontend, cidr, family));
    }
  }
}
