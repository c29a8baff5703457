// Pinned maps across upgrades. libbpf refuses a pin whose definition
// differs from the object's ("couldn't reuse pinned map"), so before the
// load every such pin is moved aside, the load creates the new map, and the
// entries are copied over field by field, by name, from the BTF the old map
// was created with. A crash midway leaves the aside pin, and the next start
// copies from it again.
import fs from 'node:fs';
import path from 'node:path';
import type { BpfObject, BtfStruct, MapDef, MapInfo, NativeAddon } from '../../native/index.js';
import type { Logger } from '../../log.js';

const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_PERCPU_HASH = 5;
const BPF_MAP_TYPE_LRU_HASH = 9;
/** Maps whose entries can be copied from one to another: either kind of hash, or per-CPU hash to per-CPU hash. */
const HASH_KINDS = new Set([BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH]);
const copyable = (from: number, to: number): boolean => (HASH_KINDS.has(from) && HASH_KINDS.has(to)) || (from === BPF_MAP_TYPE_PERCPU_HASH && to === from);
/** A per-CPU map holds one value per possible CPU, each 8-byte aligned. */
const perCpuSlot = (size: number): number => Math.ceil(size / 8) * 8;

/** Where a pin waits while its entries move to the new map (bpffs allows no "." in names). */
export function asidePin(pin: string): string {
  return `${pin}_migrating`;
}

/** One field's bytes, from where the old layout has them to where the new one wants them. */
export interface FieldCopy {
  name: string;
  from: number;
  to: number;
  size: number;
  /** An IPv4 address that became an lb_addr_t (4 bytes to 16): written IPv4-mapped, all zeros (none) staying so. */
  mapped?: true;
}

/**
 * Addresses grew from IPv4's 4 bytes to lb_addr_t's 16, which holds an
 * IPv4 address IPv4-mapped (structs.h): a field of one size that became
 * the other is such an address, and carries over mapped.
 */
const IPV4_SIZE = 4;
const ADDR_SIZE = 16;

export interface CopyPlan {
  fromSize: number;
  toSize: number;
  copies: FieldCopy[];
  /** New fields: they start at zero, which the layout's author makes mean what the old version did. */
  added: string[];
  /** Fields whose size changed: they start at zero too. */
  resized: string[];
  /** Old fields the new layout has no more. */
  dropped: string[];
}

const isPad = (name: string): boolean => name.startsWith('pad');

/** Fields with the same name and size carry over; padding is neither copied nor reported. */
export function copyPlan(from: BtfStruct, to: BtfStruct): CopyPlan {
  const copies: FieldCopy[] = [];
  const added: string[] = [];
  const resized: string[] = [];
  for (const m of to.members.filter((m) => !isPad(m.name))) {
    const old = from.members.find((o) => o.name === m.name);
    if (!old) added.push(m.name);
    else if (old.size === IPV4_SIZE && m.size === ADDR_SIZE) copies.push({ name: m.name, from: old.offset, to: m.offset, size: m.size, mapped: true });
    else if (old.size !== m.size) resized.push(m.name);
    else copies.push({ name: m.name, from: old.offset, to: m.offset, size: m.size });
  }
  const dropped = from.members.filter((o) => !isPad(o.name) && !to.members.some((m) => m.name === o.name)).map((o) => o.name);
  return { fromSize: from.size, toSize: to.size, copies, added, resized, dropped };
}

/**
 * Why an old key cannot become a new one, or null if it can: a key is an
 * identity, so every field must survive whole, or two old keys could
 * become one. A field added at zero keeps them apart.
 */
export function keyIncompatibility(plan: CopyPlan): string | null {
  const lost = [...plan.dropped, ...plan.resized];
  return lost.length === 0 ? null : `the key lost or resized fields (${lost.join(', ')})`;
}

/** Rewrites count records laid end to end from the plan's old layout into its new one. */
export function convertRecords(records: Buffer, count: number, plan: CopyPlan): Buffer {
  const out = Buffer.alloc(count * plan.toSize);
  for (let i = 0; i < count; i++) {
    for (const c of plan.copies) {
      const from = i * plan.fromSize + c.from;
      const to = i * plan.toSize + c.to;
      if (!c.mapped) {
        records.copy(out, to, from, from + c.size);
      } else if (records.readUInt32BE(from) !== 0) {
        out.writeUInt16BE(0xffff, to + ADDR_SIZE - IPV4_SIZE - 2);
        records.copy(out, to + ADDR_SIZE - IPV4_SIZE, from, from + IPV4_SIZE);
      }
    }
  }
  return out;
}

/** A layout taken as it is: for a map created without BTF, whose sizes alone are known. */
function opaque(size: number): BtfStruct {
  return { size, members: [{ name: `(${size} bytes, no BTF)`, offset: 0, size }] };
}

function sameLayout(a: BtfStruct, b: BtfStruct): boolean {
  const named = (s: BtfStruct): string => JSON.stringify(s.members.filter((m) => !isPad(m.name)));
  return a.size === b.size && named(a) === named(b);
}

type Layouts = { key: BtfStruct; value: BtfStruct } | null;

/** What differs between a pinned map and the object's definition; empty when libbpf can reuse the pin as it is. */
export function differences(def: MapDef, info: MapInfo, layouts: Layouts): string[] {
  const why: string[] = [];
  if (info.type !== def.type) why.push(`map type ${info.type} is now ${def.type}`);
  if (info.keySize !== def.keySize) why.push(`key size ${info.keySize} is now ${def.keySize}`);
  if (info.valueSize !== def.valueSize) why.push(`value size ${info.valueSize} is now ${def.valueSize}`);
  if (info.maxEntries !== def.maxEntries) why.push(`max_entries ${info.maxEntries} is now ${def.maxEntries}`);
  if (info.flags !== def.flags) why.push(`map flags 0x${info.flags.toString(16)} are now 0x${def.flags.toString(16)}`);
  // Same sizes, other fields: libbpf would reuse the pin and misread it.
  if (why.length === 0 && layouts && def.key && def.value) {
    if (!sameLayout(layouts.key, def.key)) why.push('the key layout changed');
    if (!sameLayout(layouts.value, def.value)) why.push('the value layout changed');
  }
  return why;
}

interface Pending {
  def: MapDef;
  aside: string;
  why: string[];
}

/**
 * Before the load: moves aside every pin the object's definition no longer
 * matches, and finds those an interrupted migration left. Returns what
 * finishMigration() must copy once the load has created the new maps.
 */
export function prepareMigration(lib: NativeAddon, object: BpfObject, pinRoot: string): Pending[] {
  const pending: Pending[] = [];
  for (const def of object.maps().filter((d) => d.pinned)) {
    const pin = path.join(pinRoot, def.name);
    const aside = asidePin(pin);
    const resuming = fs.existsSync(aside);
    if (!fs.existsSync(pin)) {
      if (resuming) pending.push({ def, aside, why: ['an earlier migration was cut short'] });
      continue;
    }
    const why = describePin(lib, pin, (info, layouts) => differences(def, info, layouts));
    if (why.length === 0) {
      if (resuming) pending.push({ def, aside, why: ['an earlier migration was cut short'] });
      continue;
    }
    if (resuming) {
      throw new Error(
        `${pin} and ${aside} both hold maps of another layout than ${def.name} in this kube-lb (${why.join('; ')}): a migration was cut short and another version started since. ` +
          `Remove the one you can spare (rm ${pin} keeps the older entries), or run kube-lb cleanup --backend=ebpf --bpf-pin-path=${pinRoot}`,
      );
    }
    fs.renameSync(pin, aside);
    pending.push({ def, aside, why });
  }
  return pending;
}

function describePin<T>(lib: NativeAddon, pin: string, read: (info: MapInfo, layouts: Layouts) => T): T {
  let fd: number;
  try {
    fd = lib.objGet(pin);
  } catch (err) {
    throw new Error(`${pin} cannot be opened (${(err as Error).message}); it is not a map kube-lb can migrate: remove it, or run kube-lb cleanup --backend=ebpf`, { cause: err });
  }
  try {
    return read(lib.mapInfo(fd), lib.mapLayouts(fd));
  } finally {
    lib.closeFd(fd);
  }
}

export interface Migrated {
  map: string;
  why: string[];
  /** Entries the old map held, and how many the new one got. */
  found: number;
  carried: number;
  /** Fields that start at zero (new ones, of key or value, and resized ones), and those left behind. */
  zeroed?: string[];
  dropped?: string[];
  /** Set when nothing could be carried over, and why. */
  recreated?: string;
}

/** After the load: copies each pending map's entries into the new map, then removes the aside pin. */
export function finishMigration(lib: NativeAddon, object: BpfObject, pending: Pending[], log: Logger): Migrated[] {
  const done: Migrated[] = [];
  for (const { def, aside, why } of pending) {
    const oldFd = lib.objGet(aside);
    try {
      const result = { map: def.name, why, ...copyEntries(lib, oldFd, object.mapFd(def.name), def) };
      if (result.recreated !== undefined) {
        log.warn({ ...result }, `pinned map ${def.name} recreated empty: ${result.recreated}`);
      } else {
        log.info({ ...result }, `pinned map ${def.name} migrated: ${result.carried} of ${result.found} entries carried over`);
      }
      done.push(result);
    } finally {
      lib.closeFd(oldFd);
    }
    fs.unlinkSync(aside);
  }
  return done;
}

function copyEntries(lib: NativeAddon, oldFd: number, newFd: number, def: MapDef): Omit<Migrated, 'map' | 'why'> {
  const info = lib.mapInfo(oldFd);
  const layouts = lib.mapLayouts(oldFd);
  const { keys, values, count } = lib.mapDump(oldFd);
  const recreated = (reason: string): Omit<Migrated, 'map' | 'why'> => ({ found: count, carried: 0, recreated: reason });
  if (!copyable(info.type, def.type)) return recreated(`kube-lb carries entries between hash maps only (map type ${info.type} to ${def.type})`);
  // Without BTF on either side, only the sizes are known: equal sizes are taken to mean the same layout.
  const key = copyPlan(layouts?.key ?? opaque(info.keySize), def.key ?? opaque(def.keySize));
  const value = copyPlan(layouts?.value ?? opaque(info.valueSize), def.value ?? opaque(def.valueSize));
  const badKey = keyIncompatibility(key);
  if (badKey !== null) return recreated(badKey);
  if (value.copies.length === 0) return recreated('no field of the value carries over');
  // A smaller map takes as many as fit, beside whatever an interrupted migration copied already.
  const room = Math.max(0, def.maxEntries - lib.mapDump(newFd).count);
  const n = Math.min(count, room);
  if (info.type === BPF_MAP_TYPE_PERCPU_HASH) {
    // Each entry's value is one record per CPU, in slots of 8-byte multiples.
    const slots = { ...value, fromSize: perCpuSlot(value.fromSize), toSize: perCpuSlot(value.toSize) };
    const cpus = count === 0 ? 0 : values.length / count / slots.fromSize;
    lib.mapUpdateBatch(newFd, convertRecords(keys, n, key), convertRecords(values, n * cpus, slots), n);
  } else {
    lib.mapUpdateBatch(newFd, convertRecords(keys, n, key), convertRecords(values, n, value), n);
  }
  return { found: count, carried: n, zeroed: [...key.added, ...value.added, ...value.resized], dropped: value.dropped };
}
