// The kube_lb_svc map: reading it back, and writing service changes in an
// order that never lets a lookup see a half-written service.
import { type Destination, type Frontend, type FrontendKind, type NoEndpointsVerdict, frontendKey } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';
import { decodeSvcKey, decodeSvcValue, layouts, writeSvcBackend, writeSvcCount, writeSvcKey } from './encoding.js';
import { planSlots } from './slots.js';

/** A service as the map holds it: its backends in slot order. */
export interface ServiceEntry {
  kind: FrontendKind;
  noEndpoints: NoEndpointsVerdict;
  frontend: Frontend;
  slots: Destination[];
}

/** One frontend's change; null on a side means absent. */
export interface ServiceChange {
  kind: FrontendKind;
  noEndpoints: NoEndpointsVerdict;
  frontend: Frontend;
  /** What slot 0 records now; null when absent. */
  currentKind: FrontendKind | null;
  currentNoEndpoints: NoEndpointsVerdict | null;
  current: readonly Destination[] | null;
  wanted: readonly Destination[] | null;
}

/** The change that writes a frontend absent from the map: for tests, benchmarks and tools that fill the map directly. */
export function addition(frontend: Frontend, wanted: readonly Destination[], kind: FrontendKind = 'ClusterIP', noEndpoints: NoEndpointsVerdict = 'reject'): ServiceChange {
  return { kind, noEndpoints, frontend, currentKind: null, currentNoEndpoints: null, current: null, wanted };
}

const KEY_SIZE = layouts.lb_svc_key.size;
const VALUE_SIZE = layouts.lb_svc_value.size;

/**
 * Map records laid end to end in buffers sized up front, ready for one
 * batch call: a sync writes every entry in place instead of allocating
 * one small buffer per entry.
 */
class Batch {
  private readonly keys: Buffer;
  private readonly values: Buffer;
  private count = 0;

  constructor(capacity: number, withValues: boolean) {
    this.keys = Buffer.alloc(capacity * KEY_SIZE);
    this.values = Buffer.alloc(withValues ? capacity * VALUE_SIZE : 0);
  }

  key(frontend: Frontend, slot: number): void {
    writeSvcKey(this.keys, this.count++ * KEY_SIZE, frontend, slot);
  }

  backend(frontend: Frontend, slot: number, d: Destination): void {
    writeSvcBackend(this.values, this.count * VALUE_SIZE, d);
    this.key(frontend, slot);
  }

  serviceCount(frontend: Frontend, count: number, kind: FrontendKind, noEndpoints: NoEndpointsVerdict): void {
    writeSvcCount(this.values, this.count * VALUE_SIZE, count, kind, noEndpoints);
    this.key(frontend, 0);
  }

  update(lib: NativeAddon, fd: number): void {
    if (this.count === 0) return;
    try {
      lib.mapUpdateBatch(fd, this.keys.subarray(0, this.count * KEY_SIZE), this.values.subarray(0, this.count * VALUE_SIZE), this.count);
    } catch (err) {
      // The kernel says E2BIG when a hash map has no room left.
      if ((err as NodeJS.ErrnoException).code === 'E2BIG') {
        throw new Error(`kube_lb_svc is full: it holds at most ${lib.mapInfo(fd).maxEntries} entries (one per service port plus one per backend)`);
      }
      throw err;
    }
  }

  delete(lib: NativeAddon, fd: number): void {
    if (this.count > 0) lib.mapDeleteBatch(fd, this.keys.subarray(0, this.count * KEY_SIZE), this.count);
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
    const counts = new Map<string, { frontend: Frontend; count: number; kind: FrontendKind; noEndpoints: NoEndpointsVerdict }>();
    const backends = new Map<string, Destination>();
    for (let i = 0; i < count; i++) {
      const { frontend, slot } = decodeSvcKey(keys, i * layouts.lb_svc_key.size);
      const value = decodeSvcValue(values, i * layouts.lb_svc_value.size);
      const fk = frontendKey(frontend);
      if (slot === 0) counts.set(fk, { frontend, count: value.count, kind: value.kind, noEndpoints: value.noEndpoints });
      else backends.set(`${fk}#${slot}`, value.backend);
    }
    const result = new Map<string, ServiceEntry>();
    for (const [fk, { frontend, count: n, kind, noEndpoints }] of counts) {
      const slots: Destination[] = [];
      for (let slot = 1; slot <= n; slot++) {
        const b = backends.get(`${fk}#${slot}`);
        if (!b) throw new Error(`service map is inconsistent: ${fk} counts ${n} backends but slot ${slot} is missing`);
        slots.push(b);
      }
      result.set(fk, { kind, noEndpoints, frontend, slots });
    }
    return result;
  }

  /**
   * Applies changes in three ordered batches: backend slots first, then each
   * service's count (its slot 0), then the slots and services that go away.
   * Returns the new slot table of every frontend that still exists.
   */
  apply(changes: readonly ServiceChange[]): Map<string, Destination[]> {
    const plans = changes.map((change) => ({ change, plan: planSlots(change.current ?? [], change.wanted ?? []) }));
    const slotWrites = new Batch(plans.reduce((n, { plan }) => n + plan.writes.length, 0), true);
    const countWrites = new Batch(changes.length, true);
    const removedServices = new Batch(changes.length, false);
    const slotDeletes = new Batch(plans.reduce((n, { plan }) => n + plan.deletes.length, 0), false);
    const tables = new Map<string, Destination[]>();

    for (const { change, plan } of plans) {
      const { kind, noEndpoints, frontend, current, currentKind, currentNoEndpoints, wanted } = change;
      if (wanted === null) {
        // Remove the service before its slots, so no lookup finds it half gone.
        if (current !== null) removedServices.key(frontend, 0);
      } else {
        for (const slot of plan.writes) slotWrites.backend(frontend, slot, plan.slots[slot - 1]!);
        const slotZeroChanged = current === null || current.length !== plan.slots.length || currentKind !== kind || currentNoEndpoints !== noEndpoints;
        if (slotZeroChanged) countWrites.serviceCount(frontend, plan.slots.length, kind, noEndpoints);
        tables.set(frontendKey(frontend), plan.slots);
      }
      for (const slot of plan.deletes) slotDeletes.key(frontend, slot);
    }

    slotWrites.update(this.lib, this.fd);
    countWrites.update(this.lib, this.fd);
    removedServices.delete(this.lib, this.fd);
    slotDeletes.delete(this.lib, this.fd);
    return tables;
  }
}
