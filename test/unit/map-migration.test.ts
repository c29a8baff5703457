// The copy logic of pinned-map migration (src/backends/ebpf/migrate.ts):
// which fields carry over, which keys can, and what a pin must match.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { BtfStruct, MapDef, MapInfo } from '../../src/native/index.js';
import { convertRecords, copyPlan, differences, keyIncompatibility } from '../../src/backends/ebpf/migrate.js';

const struct = (size: number, ...members: [string, number, number][]): BtfStruct => ({
  size,
  members: members.map(([name, offset, fieldSize]) => ({ name, offset, size: fieldSize })),
});

// lb_iface_value before and after it recorded the network namespace.
const ifaceV1 = struct(8, ['flags', 0, 4], ['snat_addr', 4, 4]);
const ifaceV2 = struct(24, ['flags', 0, 4], ['snat_addr', 4, 4], ['netns_cookie', 8, 8], ['netns_ino', 16, 4], ['pad', 20, 4]);

describe('copyPlan', () => {
  it('carries fields of the same name and size, and starts new ones at zero', () => {
    const plan = copyPlan(ifaceV1, ifaceV2);
    assert.deepEqual(plan.copies, [
      { name: 'flags', from: 0, to: 0, size: 4 },
      { name: 'snat_addr', from: 4, to: 4, size: 4 },
    ]);
    assert.deepEqual(plan.added, ['netns_cookie', 'netns_ino']);
    assert.deepEqual([plan.resized, plan.dropped], [[], []]);
  });

  it('follows a field that moved, zeroes one whose size changed, reports dropped ones, and ignores padding', () => {
    const from = struct(12, ['a', 0, 4], ['b', 4, 2], ['pad', 6, 2], ['gone', 8, 4]);
    const to = struct(12, ['b', 0, 4], ['pad', 4, 4], ['a', 8, 4]);
    const plan = copyPlan(from, to);
    assert.deepEqual(plan.copies, [{ name: 'a', from: 0, to: 8, size: 4 }]);
    assert.deepEqual([plan.added, plan.resized], [[], ['b']]);
    assert.deepEqual(plan.dropped, ['gone']);
  });

  it('treats a scalar (an unnamed member covering it) like a field', () => {
    const u32 = struct(4, ['', 0, 4]);
    assert.deepEqual(copyPlan(u32, u32).copies, [{ name: '', from: 0, to: 0, size: 4 }]);
    assert.deepEqual(copyPlan(u32, struct(8, ['', 0, 8])).resized, ['']);
  });
});

describe('keyIncompatibility', () => {
  it('accepts a key whose fields all survive, wherever they sit', () => {
    const from = struct(8, ['ip', 0, 4], ['port', 4, 2], ['pad', 6, 2]);
    const to = struct(8, ['port', 0, 2], ['pad', 2, 2], ['ip', 4, 4]);
    assert.equal(keyIncompatibility(copyPlan(from, to)), null);
  });

  it('accepts a key that gained a field: at zero it keeps the old keys apart', () => {
    const from = struct(8, ['ip', 0, 4], ['port', 4, 2], ['pad', 6, 2]);
    const plan = copyPlan(from, struct(8, ['ip', 0, 4], ['port', 4, 2], ['scope', 6, 1], ['pad', 7, 1]));
    assert.equal(keyIncompatibility(plan), null);
    assert.deepEqual(plan.added, ['scope']);
  });

  it('refuses a key that lost or resized a field: two old keys could become one', () => {
    const from = struct(8, ['ip', 0, 4], ['port', 4, 2], ['pad', 6, 2]);
    assert.equal(keyIncompatibility(copyPlan(from, struct(4, ['ip', 0, 4]))), 'the key lost or resized fields (port)');
    assert.equal(keyIncompatibility(copyPlan(from, struct(8, ['ip', 0, 4], ['port', 4, 4]))), 'the key lost or resized fields (port)');
  });
});

describe('convertRecords', () => {
  it('rewrites every record into the new layout', () => {
    const old = Buffer.alloc(8);
    old.writeUInt32LE(0x1, 0);
    old.writeUInt32LE(0x5, 4);
    const out = convertRecords(old, 1, copyPlan(struct(4, ['flags', 0, 4]), ifaceV2));
    assert.equal(out.length, 24);
    assert.deepEqual([out.readUInt32LE(0), out.readUInt32LE(4), out.readBigUInt64LE(8), out.readUInt32LE(16)], [1, 0, 0n, 0]);
    const two = convertRecords(Buffer.concat([old, old]), 2, copyPlan(ifaceV1, ifaceV2));
    assert.equal(two.length, 48);
    assert.deepEqual([two.readUInt32LE(24), two.readUInt32LE(28), two.readBigUInt64LE(32)], [1, 5, 0n]);
  });

  it('moves fields to their new offsets', () => {
    const from = struct(8, ['a', 0, 4], ['b', 4, 4]);
    const to = struct(8, ['b', 0, 4], ['a', 4, 4]);
    const old = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([...convertRecords(old, 1, copyPlan(from, to))], [5, 6, 7, 8, 1, 2, 3, 4]);
  });
});

describe('addresses widened to lb_addr_t', () => {
  // lb_ct_value before and after addresses took 16 bytes (structs.h).
  const ctV4 = struct(20, ['backend_addr', 0, 4], ['backend_port', 4, 2], ['flags', 6, 2], ['last_seen', 8, 4], ['nat_sport', 12, 2], ['pad', 14, 2], ['nat_saddr', 16, 4]);
  const ctV6 = struct(44, ['backend_addr', 0, 16], ['backend_port', 16, 2], ['flags', 18, 2], ['last_seen', 20, 4], ['nat_sport', 24, 2], ['pad', 26, 2], ['nat_saddr', 28, 16]);
  const flowV4 = struct(16, ['saddr', 0, 4], ['daddr', 4, 4], ['sport', 8, 2], ['dport', 10, 2], ['proto', 12, 1], ['pad', 13, 3]);
  const flowV6 = struct(40, ['saddr', 0, 16], ['daddr', 16, 16], ['sport', 32, 2], ['dport', 34, 2], ['proto', 36, 1], ['pad', 37, 3]);
  const mapped = (a: number[]): number[] => [...Array<number>(10).fill(0), 0xff, 0xff, ...a];

  it('keeps a key whose IPv4 addresses grew: mapping keeps the old keys apart', () => {
    const plan = copyPlan(flowV4, flowV6);
    assert.equal(keyIncompatibility(plan), null);
    assert.deepEqual([plan.resized, plan.added, plan.dropped], [[], [], []]);
  });

  it('writes them IPv4-mapped, and an address of none (zero) as none', () => {
    const old = Buffer.alloc(20);
    Buffer.from([10, 244, 0, 9]).copy(old, 0);
    old.writeUInt16LE(8080, 4);
    old.writeUInt32LE(1234, 8);
    const out = convertRecords(old, 1, copyPlan(ctV4, ctV6));
    assert.deepEqual([...out.subarray(0, 16)], mapped([10, 244, 0, 9]));
    assert.deepEqual([out.readUInt16LE(16), out.readUInt32LE(20)], [8080, 1234]);
    assert.deepEqual([...out.subarray(28, 44)], Array<number>(16).fill(0), 'no SNAT address stays none');
    Buffer.from([172, 18, 0, 2]).copy(old, 16);
    assert.deepEqual([...convertRecords(old, 1, copyPlan(ctV4, ctV6)).subarray(28, 44)], mapped([172, 18, 0, 2]));
  });
});

describe('differences', () => {
  const def: MapDef = { name: 'kube_lb_ifaces', type: 1, keySize: 4, valueSize: 24, maxEntries: 4096, flags: 0, pinned: true, key: struct(4, ['', 0, 4]), value: ifaceV2 };
  const info = (over: Partial<MapInfo>): MapInfo => ({ id: 1, type: 1, name: 'kube_lb_ifaces', keySize: 4, valueSize: 24, maxEntries: 4096, flags: 0, ...over });
  const same = { key: def.key!, value: ifaceV2 };

  it('finds none where libbpf reuses the pin as it is', () => {
    assert.deepEqual(differences(def, info({}), same), []);
    assert.deepEqual(differences(def, info({}), null), [], 'a pin without BTF is judged by its sizes');
  });

  it('names each difference libbpf would refuse: sizes, type, max_entries, flags', () => {
    assert.deepEqual(differences(def, info({ valueSize: 8 }), { key: def.key!, value: ifaceV1 }), ['value size 8 is now 24']);
    assert.deepEqual(differences(def, info({ maxEntries: 1024 }), same), ['max_entries 1024 is now 4096']);
    assert.deepEqual(differences(def, info({ type: 9, flags: 1 }), same), ['map type 9 is now 1', 'map flags 0x1 are now 0x0']);
  });

  it('finds a layout change that keeps every size, which libbpf would not', () => {
    const swapped = struct(24, ['snat_addr', 0, 4], ['flags', 4, 4], ['netns_cookie', 8, 8], ['netns_ino', 16, 4], ['pad', 20, 4]);
    assert.deepEqual(differences(def, info({}), { key: def.key!, value: swapped }), ['the value layout changed']);
  });
});
