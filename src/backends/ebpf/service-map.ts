// The kube_lb_svc map: reading it back, and writing service changes in an
// order that never lets a lookup see a half-written service.
import { type Destination, type Frontend, frontendKey } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';
import { type Scope, type SvcMeta, decodeSvcKey, decodeSvcValue, layouts, writeSvcBackend, writeSvcCount, writeSvcKey } from './encoding.js';
import { planSlots } from './slots.js';

/** A kube_lb_svc service: one frontend in one scope. */
export interface SvcId {
  frontend: Frontend;
  scope: Scope;
}

/** Identifies a service in the map: "10.96.0.10:80/TCP", "172.18.0.2:30080/TCP external". */
export function svcKey(id: SvcId): string {
  return id.scope === 'internal' ? frontendKey(id.frontend) : `${frontendKey(id.frontend)} external`;
}

export function sameMeta(a: SvcMeta, b: SvcMeta): boolean {
  return a.kind === b.kind && a.noEndpoints === b.noEndpoints && a.snat === b.snat && a.sourceRanges === b.sourceRanges && a.affinityTimeout === b.affinityTimeout;
}

/** A service as the map holds it: its backends in slot order. */
export interface ServiceEntry extends SvcId {
  meta: SvcMeta;
  slots: Destination[];
}

/** One service's change; null on a side means absent. */
export interface ServiceChange extends SvcId {
  meta: SvcMeta;
  /** What slot 0 records now; null when absent. */
  currentMeta: SvcMeta | null;
  current: readonly Destination[] | null;
  wanted: readonly Destination[] | null;
}

/** The change that writes a ClusterIP service absent from the map: for tests, benchmarks and tools that fill the map directly. */
export function addition(frontend: Frontend, wanted: readonly Destination[], meta: Partial<SvcMeta> = {}, scope: Scope = 'internal'): ServiceChange {
  return { frontend, scope, meta: { kind: 'ClusterIP', noEndpoints: 'reject', snat: false, sourceRanges: false, affinityTimeout: 0, ...meta }, currentMeta: null, current: null, wanted };
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

  key(id: SvcId, slot: number): void {
    writeSvcKey(this.keys, this.count++ * KEY_SIZE, id.frontend, id.scope, slot);
  }

  backend(id: SvcId, slot: number, d: Destination): void {
    writeSvcBackend(this.values, this.count * VALUE_SIZE, d);
    this.key(id, slot);
  }

  serviceCount(id: SvcId, count: number, meta: SvcMeta): void {
    writeSvcCount(this.values, this.count * VALUE_SIZE, count, meta);
    this.key(id, 0);
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

  /** Every service in the map, by svcKey. Slots past the count are ignored. */
  readAll(): Map<string, ServiceEntry> {
    const { keys, values, count } = this.lib.mapDump(this.fd);
    const services = new Map<string, { id: SvcId; count: number; meta: SvcMeta }>();
    const backends = new Map<string, Destination>();
    for (let i = 0; i < count; i++) {
      const { frontend, scope, slot } = decodeSvcKey(keys, i * layouts.lb_svc_key.size);
      const value = decodeSvcValue(values, i * layouts.lb_svc_value.size);
      const key = svcKey({ frontend, scope });
      if (slot === 0) services.set(key, { id: { frontend, scope }, count: value.count, meta: value.meta });
      else backends.set(`${key}#${slot}`, value.backend);
    }
    const result = new Map<string, ServiceEntry>();
    for (const [key, { id, count: n, meta }] of services) {
      const slots: Destination[] = [];
      for (let slot = 1; slot <= n; slot++) {
        const b = backends.get(`${key}#${slot}`);
        if (!b) throw new Error(`service map is inconsistent: ${key} counts ${n} backends but slot ${slot} is missing`);
        slots.push(b);
      }
      result.set(key, { ...id, meta, slots });
    }
    return result;
  }

  /**
   * Applies changes in three ordered batches: backend slots first, then each
   * service's count (its slot 0), then the slots and services that go away.
   * Returns the new slot table of every service that still exists, by svcKey.
   */
  apply(changes: readonly ServiceChange[]): Map<string, Destination[]> {
    const plans = changes.map((change) => ({ change, plan: planSlots(change.current ?? [], change.wanted ?? []) }));
    const slotWrites = new Batch(plans.reduce((n, { plan }) => n + plan.writes.length, 0), true);
    const countWrites = new Batch(changes.length, true);
    const removedServices = new Batch(changes.length, false);
    const slotDeletes = new Batch(plans.reduce((n, { plan }) => n + plan.deletes.length, 0), false);
    const tables = new Map<string, Destination[]>();

    for (const { change, plan } of plans) {
      const { meta, current, currentMeta, wanted } = change;
      if (wanted === null) {
        // Remove the service before its slots, so no lookup finds it half gone.
        if (current !== null) removedServices.key(change, 0);
      } else {
        for (const slot of plan.writes) slotWrites.backend(change, slot, plan.slots[slot - 1]!);
        const slotZeroChanged = current === null || current.length !== plan.slots.length || currentMeta === null || !sameMeta(currentMeta, meta);
        if (slotZeroChanged) countWrites.serviceCount(change, plan.slots.length, meta);
        tables.set(svcKey(change), plan.slots);
      }
      for (const slot of plan.deletes) slotDeletes.key(change, slot);
    }

    slotWrites.update(this.lib, this.fd);
    countWrites.update(this.lib, this.fd);
    removedServices.delete(this.lib, this.fd);
    slotDeletes.delete(this.lib, this.fd);
    return tables;
  }
}
