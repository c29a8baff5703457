// kube_lb_backend_stats: what the datapath counted for each backend of each
// kube_lb_svc service (connections, packets, bytes; per CPU). The control
// plane adds a backend's entry, zeroed, before the backend's first slot is
// written and deletes it after its last slot is gone: a backend's counts
// start at 0, also when it comes back, and the programs only add to
// entries they find.
import fs from 'node:fs';
import type { Destination, Frontend, IPFamily } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';
import { type BackendStats, type Scope, decodeBackendKey, layouts, sumBackendStats, writeBackendKey } from './encoding.js';

const KEY_SIZE = layouts.lb_backend_key.size;
const STATS_SIZE = layouts.lb_backend_stats.size;

/** One backend of one kube_lb_svc service. */
export interface BackendId {
  frontend: Frontend;
  scope: Scope;
  family: IPFamily;
  destination: Destination;
}

export interface CountedBackend extends BackendId {
  stats: BackendStats;
}

/** The CPUs a per-CPU map holds a value for: those the kernel says are possible ("0-3", "0,2-5"). */
export function possibleCpus(list = fs.readFileSync('/sys/devices/system/cpu/possible', 'utf8')): number {
  return list
    .trim()
    .split(',')
    .reduce((n, range) => {
      const [first, last = first] = range.split('-').map(Number);
      return n + last! - first! + 1;
    }, 0);
}

const idKey = (id: BackendId): string => `${id.frontend.ip}:${id.frontend.port}/${id.frontend.protocol} ${id.scope} ${id.destination.ip}:${id.destination.port}`;

export class BackendStatsMap {
  constructor(
    private readonly lib: NativeAddon,
    private readonly fd: number,
  ) {}

  /** Zeroed entries for these backends, replacing any they had. */
  add(ids: readonly BackendId[]): void {
    if (ids.length === 0) return;
    const values = Buffer.alloc(ids.length * STATS_SIZE * possibleCpus());
    try {
      this.lib.mapUpdateBatch(this.fd, this.keys(ids), values, ids.length);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'E2BIG') {
        throw new Error(`kube_lb_backend_stats is full (it holds at most ${this.lib.mapInfo(this.fd).maxEntries} entries, as kube_lb_svc); it is read again before the next sync`, { cause: err });
      }
      throw err;
    }
  }

  remove(ids: readonly BackendId[]): void {
    if (ids.length > 0) this.lib.mapDeleteBatch(this.fd, this.keys(ids), ids.length);
  }

  readAll(): CountedBackend[] {
    const { keys, values, count } = this.lib.mapDump(this.fd);
    const cpus = count === 0 ? 0 : values.length / count / STATS_SIZE;
    return Array.from({ length: count }, (_, i) => ({ ...decodeBackendKey(keys, i * KEY_SIZE), stats: sumBackendStats(values, i * cpus * STATS_SIZE, cpus) }));
  }

  /**
   * Makes the entries those of `backends`: adds the missing ones (a map
   * pinned by a kube-lb that had no counters, or a write cut short) and
   * deletes those of no backend; the others keep their counts.
   */
  reconcile(backends: readonly BackendId[]): { added: number; removed: number } {
    const held = new Map(this.readAll().map((c) => [idKey(c), c]));
    const missing = backends.filter((b) => !held.delete(idKey(b)));
    this.remove([...held.values()]);
    this.add(missing);
    return { added: missing.length, removed: held.size };
  }

  private keys(ids: readonly BackendId[]): Buffer {
    const keys = Buffer.alloc(ids.length * KEY_SIZE);
    ids.forEach((id, i) => writeBackendKey(keys, i * KEY_SIZE, id.frontend, id.scope, id.destination, id.family));
    return keys;
  }
}
