// The datapath's drop counters (kube_lb_drops): one per-CPU u64 per reason,
// summed here for kube_lb_bpf_drops_total.
import type { NativeAddon } from '../../native/index.js';
import { DROP_REASONS, type DropReason, sumPerCpu } from './encoding.js';

export type DropCounts = Record<DropReason, number>;

export function readDrops(lib: NativeAddon, fd: number): DropCounts {
  const { maxEntries } = lib.mapInfo(fd);
  if (maxEntries !== DROP_REASONS.length) {
    throw new Error(`kube_lb_drops has ${maxEntries} reasons, this kube-lb knows ${DROP_REASONS.length}: the map and the program come from different builds`);
  }
  const key = Buffer.alloc(4);
  const counts = {} as DropCounts;
  DROP_REASONS.forEach((reason, i) => {
    key.writeUInt32LE(i);
    counts[reason] = sumPerCpu(lib.mapLookup(fd, key)!);
  });
  return counts;
}
