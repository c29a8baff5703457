// The kube_lb_svc map: reading it back, and writing service changes in an
// order that never lets a lookup see a half-written service.
import { type Destination, type Frontend, type IPFamily, destinationKey, frontendKey } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';
import {
  LB_MAGLEV_CHUNK,
  type Scope,
  type SvcMeta,
  decodeMaglevKey,
  decodeSvcKey,
  decodeSvcValue,
  layouts,
  writeMaglevChunk,
  writeMaglevKey,
  writeSvcBackend,
  writeSvcCount,
  writeSvcKey,
} from './encoding.js';
import { type BackendId, BackendStatsMap } from './backend-stats.js';
import { maglevTable } from './maglev.js';
import { planSlots } from './slots.js';

/** A kube_lb_svc service: one frontend in one scope. */
export interface SvcId {
  frontend: Frontend;
  scope: Scope;
  /** The frontend's family, and its backends'. */
  family: IPFamily;
}

/** Identifies a service in the map: "10.96.0.10:80/TCP", "172.18.0.2:30080/TCP external". */
export function svcKey(id: Pick<SvcId, 'frontend' | 'scope'>): string {
  return id.scope === 'internal' ? frontendKey(id.frontend) : `${frontendKey(id.frontend)} external`;
}

export function sameMeta(a: SvcMeta, b: SvcMeta): boolean {
  return (
    a.kind === b.kind &&
    a.noEndpoints === b.noEndpoints &&
    a.snat === b.snat &&
    a.sourceRanges === b.sourceRanges &&
    a.affinityTimeout === b.affinityTimeout &&
    a.maglevTableSize === b.maglevTableSize
  );
}

/** kube_lb_maglev entries a Maglev table of `size` entries takes; 0 for none. */
export function maglevChunks(size: number): number {
  return Math.ceil(size / LB_MAGLEV_CHUNK);
}

/** A service as the map holds it: its backends in slot order. */
export interface ServiceEntry extends SvcId {
  meta: SvcMeta;
  slots: Destination[];
}

/** One key of kube_lb_svc. */
export interface SlotKey extends SvcId {
  slot: number;
}

/** One key of kube_lb_maglev. */
export interface ChunkKey extends SvcId {
  chunk: number;
}

/** What kube_lb_svc holds. */
export interface MapContents {
  /** Every service, by svcKey. */
  services: Map<string, ServiceEntry>;
  /**
   * Entries no service accounts for, which a write cut short (a crash, a
   * full map) leaves: slots past a service's count, slots without a slot 0,
   * and every entry of a service whose count names a missing slot.
   */
  orphans: SlotKey[];
  /** Every entry, orphans included. */
  entries: number;
  /** kube_lb_maglev's chunks of no service flagged Maglev, or past its table's end. */
  orphanChunks: ChunkKey[];
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
export function addition(frontend: Frontend, wanted: readonly Destination[], meta: Partial<SvcMeta> = {}, scope: Scope = 'internal', family: IPFamily = 'IPv4'): ServiceChange {
  return { frontend, scope, family, meta: { kind: 'ClusterIP', noEndpoints: 'reject', snat: false, sourceRanges: false, affinityTimeout: 0, maglevTableSize: 0, ...meta }, currentMeta: null, current: null, wanted };
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
    writeSvcKey(this.keys, this.count++ * KEY_SIZE, id.frontend, id.scope, slot, id.family);
  }

  backend(id: SvcId, slot: number, d: Destination): void {
    writeSvcBackend(this.values, this.count * VALUE_SIZE, d, id.family);
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
      // The kernel says E2BIG when a hash map has no room left; kube-lb counts room before writing, so its count was wrong.
      if ((err as NodeJS.ErrnoException).code === 'E2BIG') {
        throw new Error(`kube_lb_svc is full (it holds at most ${lib.mapInfo(fd).maxEntries} entries), though kube-lb counted room: it reads the map again before the next sync`, { cause: err });
      }
      throw err;
    }
  }

  delete(lib: NativeAddon, fd: number): void {
    if (this.count > 0) lib.mapDeleteBatch(fd, this.keys.subarray(0, this.count * KEY_SIZE), this.count);
  }
}

const CHUNK_KEY_SIZE = layouts.lb_maglev_key.size;
const CHUNK_SIZE = layouts.lb_maglev_chunk.size;

/** kube_lb_maglev records for one batch call, as Batch is for kube_lb_svc. */
class ChunkBatch {
  private keys: Buffer[] = [];
  private values: Buffer[] = [];

  /** Every chunk of the table that `table` (slots by entry) is. */
  table(id: SvcId, table: Uint16Array): void {
    for (let chunk = 0; chunk < maglevChunks(table.length); chunk++) {
      const value = Buffer.alloc(CHUNK_SIZE);
      writeMaglevChunk(value, 0, table, chunk * LB_MAGLEV_CHUNK);
      this.key(id, chunk);
      this.values.push(value);
    }
  }

  key(id: SvcId, chunk: number): void {
    const key = Buffer.alloc(CHUNK_KEY_SIZE);
    writeMaglevKey(key, 0, id.frontend, id.scope, chunk, id.family);
    this.keys.push(key);
  }

  update(lib: NativeAddon, fd: number): void {
    if (this.keys.length === 0) return;
    try {
      lib.mapUpdateBatch(fd, Buffer.concat(this.keys), Buffer.concat(this.values), this.keys.length);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'E2BIG') {
        const max = lib.mapInfo(fd).maxEntries;
        throw new Error(
          `kube_lb_maglev is full: it holds at most ${max} chunks of ${LB_MAGLEV_CHUNK} entries, ${max * LB_MAGLEV_CHUNK} table entries in all; fewer services with Maglev, or a smaller --bpf-lb-maglev-table-size, fit`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  delete(lib: NativeAddon, fd: number): void {
    if (this.keys.length > 0) lib.mapDeleteBatch(fd, Buffer.concat(this.keys), this.keys.length);
  }
}

/** A service's Maglev table as slots of its slot table: the slot each entry names. */
export function maglevSlots(slots: readonly Destination[], size: number): Uint16Array {
  const slotOf = new Map(slots.map((d, i) => [destinationKey(d), i + 1]));
  return Uint16Array.from(maglevTable(slots, size), (d) => slotOf.get(destinationKey(d))!);
}

export class ServiceMap {
  /** statsFd: kube_lb_backend_stats, whose entries apply() keeps with the backends; absent, it is left alone (tools that fill kube_lb_svc directly). */
  constructor(
    private readonly lib: NativeAddon,
    private readonly fd: number,
    private readonly maglevFd: number,
    private readonly statsFd?: number,
  ) {}

  readAll(): MapContents {
    const { keys, values, count } = this.lib.mapDump(this.fd);
    const heads = new Map<string, { id: SvcId; count: number; meta: SvcMeta }>();
    const slotsOf = new Map<string, { id: SvcId; slots: Map<number, Destination> }>();
    for (let i = 0; i < count; i++) {
      const { frontend, scope, family, slot } = decodeSvcKey(keys, i * KEY_SIZE);
      const value = decodeSvcValue(values, i * VALUE_SIZE);
      const key = svcKey({ frontend, scope });
      if (slot === 0) {
        heads.set(key, { id: { frontend, scope, family }, count: value.count, meta: value.meta });
        continue;
      }
      let entry = slotsOf.get(key);
      if (!entry) slotsOf.set(key, (entry = { id: { frontend, scope, family }, slots: new Map() }));
      entry.slots.set(slot, value.backend);
    }
    const services = new Map<string, ServiceEntry>();
    const orphans: SlotKey[] = [];
    for (const [key, { id, count: n, meta }] of heads) {
      const slots = slotsOf.get(key)?.slots ?? new Map<number, Destination>();
      const table: Destination[] = [];
      for (let slot = 1; slot <= n && slots.has(slot); slot++) table.push(slots.get(slot)!);
      if (table.length < n) {
        orphans.push({ ...id, slot: 0 });
        continue;
      }
      services.set(key, { ...id, meta, slots: table });
      for (let slot = 1; slot <= n; slot++) slots.delete(slot);
    }
    for (const { id, slots } of slotsOf.values()) for (const slot of slots.keys()) orphans.push({ ...id, slot });
    return { services, orphans, entries: count, orphanChunks: this.orphanChunks(services) };
  }

  /** The chunks of kube_lb_maglev no service's table accounts for, which a write cut short leaves. */
  private orphanChunks(services: ReadonlyMap<string, ServiceEntry>): ChunkKey[] {
    const { keys, count } = this.lib.mapDump(this.maglevFd);
    const orphans: ChunkKey[] = [];
    for (let i = 0; i < count; i++) {
      const key = decodeMaglevKey(keys, i * CHUNK_KEY_SIZE);
      const service = services.get(svcKey(key));
      if (service === undefined || key.chunk >= maglevChunks(service.meta.maglevTableSize)) orphans.push(key);
    }
    return orphans;
  }

  /**
   * Applies changes in ordered batches: orphans and the services that go
   * away first (each service before its slots), so their room is free for
   * what follows; then the counters of added backends, then backend
   * slots, then Maglev tables, then each service's count (its slot 0),
   * then the slots past a count that shrank, then the Maglev chunks no
   * table needs any more and the counters of removed backends (those of
   * removed services go with their slots, first). Returns the
   * new slot table of every service that still exists, by svcKey.
   */
  apply(changes: readonly ServiceChange[], orphans: readonly SlotKey[] = [], orphanChunks: readonly ChunkKey[] = []): Map<string, Destination[]> {
    const plans = changes.map((change) => ({ change, plan: planSlots(change.current ?? [], change.wanted ?? []) }));
    const deletes = plans.reduce((n, { plan }) => n + plan.deletes.length, 0);
    const removedServices = new Batch(changes.length + orphans.length, false);
    const removedSlots = new Batch(deletes + orphans.length, false);
    const slotWrites = new Batch(plans.reduce((n, { plan }) => n + plan.writes.length, 0), true);
    const countWrites = new Batch(changes.length, true);
    const slotDeletes = new Batch(deletes, false);
    const chunkWrites = new ChunkBatch();
    const chunkDeletes = new ChunkBatch();
    const tables = new Map<string, Destination[]>();
    const statsAdded: BackendId[] = [];
    const statsRemoved: BackendId[] = [];
    // Those of services that go leave with their slots, before any are added: the map has room for what kube_lb_svc holds.
    const statsOfRemovedServices: BackendId[] = [];

    for (const orphan of orphans) (orphan.slot === 0 ? removedServices : removedSlots).key(orphan, orphan.slot);
    for (const chunk of orphanChunks) chunkDeletes.key(chunk, chunk.chunk);
    for (const { change, plan } of plans) {
      const { meta, current, currentMeta, wanted } = change;
      const backends = (ds: readonly Destination[] | null, without: readonly Destination[] | null): BackendId[] => {
        const left = new Set((without ?? []).map(destinationKey));
        return (ds ?? []).filter((d) => !left.has(destinationKey(d))).map((destination) => ({ frontend: change.frontend, scope: change.scope, family: change.family, destination }));
      };
      statsAdded.push(...backends(wanted, current));
      (wanted === null ? statsOfRemovedServices : statsRemoved).push(...backends(current, wanted));
      const chunksWanted = wanted === null || plan.slots.length === 0 ? 0 : maglevChunks(meta.maglevTableSize);
      for (let chunk = chunksWanted; chunk < maglevChunks(currentMeta?.maglevTableSize ?? 0); chunk++) chunkDeletes.key(change, chunk);
      if (chunksWanted > 0) chunkWrites.table(change, maglevSlots(plan.slots, meta.maglevTableSize));
      if (wanted === null) {
        if (current !== null) removedServices.key(change, 0);
        for (const slot of plan.deletes) removedSlots.key(change, slot);
        continue;
      }
      for (const slot of plan.writes) slotWrites.backend(change, slot, plan.slots[slot - 1]!);
      const slotZeroChanged = current === null || current.length !== plan.slots.length || currentMeta === null || !sameMeta(currentMeta, meta);
      if (slotZeroChanged) countWrites.serviceCount(change, plan.slots.length, meta);
      for (const slot of plan.deletes) slotDeletes.key(change, slot);
      tables.set(svcKey(change), plan.slots);
    }

    const stats = this.statsFd === undefined ? undefined : new BackendStatsMap(this.lib, this.statsFd);
    removedServices.delete(this.lib, this.fd);
    removedSlots.delete(this.lib, this.fd);
    stats?.remove(statsOfRemovedServices);
    stats?.add(statsAdded);
    slotWrites.update(this.lib, this.fd);
    // Between the slots and slot 0: a table is whole before slot 0 flags
    // its service, and names slots that hold its backends (or, for a
    // moment, backends that are going) until the slots past the new count
    // are deleted.
    chunkWrites.update(this.lib, this.maglevFd);
    countWrites.update(this.lib, this.fd);
    slotDeletes.delete(this.lib, this.fd);
    chunkDeletes.delete(this.lib, this.maglevFd);
    stats?.remove(statsRemoved);
    return tables;
  }
}
