// The kube_lb_svc map: reading it back, and writing service changes in an
// order that never lets a lookup see a half-written service.
import { type Destination, type Frontend, frontendKey } from '../backend.js';
import type { NativeAddon } from '../../native/index.js';
import { decodeSvcKey, decodeSvcValue, encodeSvcBackend, encodeSvcCount, encodeSvcKey, layouts } from './encoding.js';
import { planSlots } from './slots.js';

/** A service as the map holds it: its backends in slot order. */
export interface ServiceEntry {
  frontend: Frontend;
  slots: Destination[];
}

/** One frontend's change; null on a side means absent. */
export interface ServiceChange {
  frontend: Frontend;
  current: readonly Destination[] | null;
  wanted: readonly Destination[] | null;
}

/** Map records laid end to end, ready for one batch call. */
class Batch {
  private keys: Buffer[] = [];
  private values: Buffer[] = [];
  add(key: Buffer, value?: Buffer): void {
    this.keys.push(key);
    if (value) this.values.push(value);
  }
  get count(): number {
    return this.keys.length;
  }
  update(lib: NativeAddon, fd: number): void {
    if (this.count === 0) return;
    try {
      lib.mapUpdateBatch(fd, Buffer.concat(this.keys), Buffer.concat(this.values), this.count);
    } catch (err) {
      // The kernel says E2BIG when a hash map has no room left.
      if ((err as NodeJS.ErrnoException).code === 'E2BIG') {
        throw new Error(`kube_lb_svc is full: it holds at most ${lib.mapInfo(fd).maxEntries} entries (one per service port plus one per backend)`);
      }
      throw err;
    }
  }
  delete(lib: NativeAddon, fd: number): void {
    if (this.count > 0) lib.mapDeleteBatch(fd, Buffer.concat(this.keys), this.count);
  }
}

export class ServiceMap {
  constructor(
    private readonly lib: NativeAddon,
    private readonly fd: number,
  ) {}

  /** Every service in the map, by frontendKey. Slots past the count are ignored. */
  readAll(): Map<string, ServiceEntry> {
    const { keys, values, count } = this.lib.mapDump(this.fd);
    const counts = new Map<string, { frontend: Frontend; count: number }>();
    const backends = new Map<string, Destination>();
    for (let i = 0; i < count; i++) {
      const { frontend, slot } = decodeSvcKey(keys, i * layouts.lb_svc_key.size);
      const value = decodeSvcValue(values, i * layouts.lb_svc_value.size);
      const fk = frontendKey(frontend);
      if (slot === 0) counts.set(fk, { frontend, count: value.count });
      else backends.set(`${fk}#${slot}`, value.backend);
    }
    const result = new Map<string, ServiceEntry>();
    for (const [fk, { frontend, count: n }] of counts) {
      const slots: Destination[] = [];
      for (let slot = 1; slot <= n; slot++) {
        const b = backends.get(`${fk}#${slot}`);
        if (!b) throw new Error(`service map is inconsistent: ${fk} counts ${n} backends but slot ${slot} is missing`);
        slots.push(b);
      }
      result.set(fk, { frontend, slots });
    }
    return result;
  }

  /**
   * Applies changes in three ordered batches: backend slots first, then each
   * service's count (its slot 0), then the slots and services that go away.
   * Returns the new slot table of every frontend that still exists.
   */
  apply(changes: readonly ServiceChange[]): Map<string, Destination[]> {
    const slotWrites = new Batch();
    const countWrites = new Batch();
    const removedServices = new Batch();
    const slotDeletes = new Batch();
    const tables = new Map<string, Destination[]>();

    for (const { frontend, current, wanted } of changes) {
      const plan = planSlots(current ?? [], wanted ?? []);
      if (wanted === null) {
        // Remove the service before its slots, so no lookup finds it half gone.
        if (current !== null) removedServices.add(encodeSvcKey(frontend, 0));
      } else {
        for (const slot of plan.writes) slotWrites.add(encodeSvcKey(frontend, slot), encodeSvcBackend(plan.slots[slot - 1]!));
        if (current === null || current.length !== plan.slots.length) countWrites.add(encodeSvcKey(frontend, 0), encodeSvcCount(plan.slots.length));
        tables.set(frontendKey(frontend), plan.slots);
      }
      for (const slot of plan.deletes) slotDeletes.add(encodeSvcKey(frontend, slot));
    }

    slotWrites.update(this.lib, this.fd);
    countWrites.update(this.lib, this.fd);
    removedServices.delete(this.lib, this.fd);
    slotDeletes.delete(this.lib, this.fd);
    return tables;
  }
}
