// The TS encoders' layouts against the BTF of the built BPF object, so the
// C structs and their TypeScript mirrors cannot drift apart.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/index.js';
import { OBJECT_PATH } from '../../src/backends/ebpf/datapath.js';
import { possibleCpus } from '../../src/backends/ebpf/backend-stats.js';
import {
  decodeBackendKey,
  decodeCtValue,
  decodeFlowKey,
  decodeMaglevKey,
  decodeSvcKey,
  decodeSvcValue,
  decodeSourceRangeKey,
  encodeCtValue,
  encodeFlowKey,
  encodeSourceRangeKey,
  LB_MAGLEV_CHUNK,
  layouts,
  sumBackendStats,
  writeBackendKey,
  writeMaglevChunk,
  writeMaglevKey,
  writeSvcBackend,
  writeSvcCount,
  writeSvcKey,
} from '../../src/backends/ebpf/encoding.js';

describe('map encoders match the BTF of the built object', () => {
  const names = Object.keys(layouts);
  const btf = native().btfStructs(OBJECT_PATH, names);

  for (const [name, layout] of Object.entries(layouts)) {
    it(`struct ${name}`, () => {
      const struct = btf[name];
      assert.ok(struct, `struct ${name} in ${OBJECT_PATH}`);
      assert.equal(layout.size, struct.size, `size of ${name}`);
      for (const [field, { offset, size }] of Object.entries(layout.fields)) {
        const member = struct.members.find((m) => m.name === field);
        assert.ok(member, `${name}.${field} exists in BTF`);
        assert.deepEqual({ offset, size }, { offset: member.offset, size: member.size }, `${name}.${field}`);
      }
      // Every member the control plane does not write is padding.
      const unwritten = struct.members.filter((m) => !(m.name in layout.fields)).map((m) => m.name);
      assert.ok(unwritten.every((m) => m.startsWith('pad')), `${name} members the encoders ignore: ${unwritten.join(', ')}`);
    });
  }
});

/** The 12 bytes before an IPv4 address in its IPv4-mapped form. */
const MAPPED = [...Array<number>(10).fill(0), 0xff, 0xff];

describe('map encoders round-trip', () => {
  it('service keys and values: addresses in packet order, ports in host order', () => {
    const frontend = { ip: '10.96.0.10', port: 443, protocol: 'UDP' as const };
    const key = Buffer.alloc(layouts.lb_svc_key.size + 3);
    writeSvcKey(key, 3, frontend, 'external', 3, 'IPv4');
    assert.deepEqual([...key.subarray(3, 23)], [...MAPPED, 10, 96, 0, 10, 0xbb, 0x01, 17, 1]);
    assert.deepEqual(decodeSvcKey(key, 3), { frontend, scope: 'external', family: 'IPv4', slot: 3 });
    const frontend6 = { ip: 'fd00:96::10', port: 443, protocol: 'UDP' as const };
    writeSvcKey(key, 3, frontend6, 'internal', 0, 'IPv6');
    assert.deepEqual([...key.subarray(3, 23)], [0xfd, 0, 0, 0x96, ...Array<number>(10).fill(0), 0, 0x10, 0xbb, 0x01, 17, 0]);
    assert.deepEqual(decodeSvcKey(key, 3), { frontend: frontend6, scope: 'internal', family: 'IPv6', slot: 0 });
    const value = Buffer.alloc(layouts.lb_svc_value.size);
    const nodePort = { kind: 'NodePort', noEndpoints: 'reject', snat: false, sourceRanges: false, affinityTimeout: 0, maglevTableSize: 0 } as const;
    writeSvcCount(value, 0, 7, nodePort);
    assert.deepEqual([decodeSvcValue(value).count, decodeSvcValue(value).meta], [7, nodePort]);
    assert.deepEqual([...value.subarray(0, 4)], [7, 0, 4, 0], 'LB_SVC_F_NODEPORT in the flags');
    const dropping = { kind: 'ClusterIP', noEndpoints: 'drop', snat: true, sourceRanges: true, affinityTimeout: 10800, maglevTableSize: 0 } as const;
    writeSvcCount(value, 0, 7, dropping);
    assert.deepEqual(decodeSvcValue(value).meta, dropping);
    assert.deepEqual([...value.subarray(0, 4)], [7, 0, 0x38, 0], 'LB_SVC_F_DROP_NO_ENDPOINTS, LB_SVC_F_SNAT and LB_SVC_F_SOURCE_RANGES in the flags');
    const maglev = { ...nodePort, maglevTableSize: 16381 };
    writeSvcCount(value, 0, 7, maglev);
    assert.deepEqual(decodeSvcValue(value).meta, maglev);
    assert.deepEqual([...value.subarray(2, 4), value.readUInt16LE(22)], [0x44, 0, 16381], 'LB_SVC_F_MAGLEV in the flags, the table size in maglev_size');
    writeSvcBackend(value, 0, { ip: '10.244.1.2', port: 8443 }, 'IPv4');
    assert.deepEqual(decodeSvcValue(value).backend, { ip: '10.244.1.2', port: 8443 });
    writeSvcBackend(value, 0, { ip: 'fd00:10:244:1::2', port: 8443 }, 'IPv6');
    assert.deepEqual(decodeSvcValue(value).backend, { ip: 'fd00:10:244:1::2', port: 8443 });
  });

  it('Maglev keys and chunks', () => {
    const frontend = { ip: '10.96.0.10', port: 443, protocol: 'TCP' as const };
    const key = Buffer.alloc(layouts.lb_maglev_key.size);
    writeMaglevKey(key, 0, frontend, 'external', 15, 'IPv4');
    assert.deepEqual([...key.subarray(0, 22)], [...MAPPED, 10, 96, 0, 10, 0xbb, 0x01, 6, 1, 15, 0]);
    assert.deepEqual(decodeMaglevKey(key), { frontend, scope: 'external', family: 'IPv4', chunk: 15 });
    const table = Uint16Array.from({ length: LB_MAGLEV_CHUNK + 3 }, (_, i) => (i % 7) + 1);
    const chunk = Buffer.alloc(layouts.lb_maglev_chunk.size, 0xff);
    writeMaglevChunk(chunk, 0, table, LB_MAGLEV_CHUNK);
    assert.deepEqual([chunk.readUInt16LE(0), chunk.readUInt16LE(2), chunk.readUInt16LE(4)], [...table.subarray(LB_MAGLEV_CHUNK)]);
    assert.deepEqual([chunk.readUInt16LE(6), chunk.readUInt16LE(layouts.lb_maglev_chunk.size - 2)], [0, 0], 'zeros past the table end');
  });

  it('backend counter keys, and their per-CPU values summed', () => {
    const frontend = { ip: '10.96.0.10', port: 443, protocol: 'TCP' as const };
    const key = Buffer.alloc(layouts.lb_backend_key.size);
    writeBackendKey(key, 0, frontend, 'external', { ip: '10.244.1.2', port: 8443 }, 'IPv4');
    assert.deepEqual([...key], [...MAPPED, 10, 96, 0, 10, 0xbb, 0x01, 6, 1, ...MAPPED, 10, 244, 1, 2, 0xfb, 0x20, 0, 0]);
    assert.deepEqual(decodeBackendKey(key), { frontend, scope: 'external', family: 'IPv4', destination: { ip: '10.244.1.2', port: 8443 } });
    const values = Buffer.alloc(2 * layouts.lb_backend_stats.size);
    [1n, 10n, 1000n, 2n, 20n, 2000n].forEach((v, i) => values.writeBigUInt64LE(v, i * 8));
    assert.deepEqual(sumBackendStats(values, 0, 2), { connections: 3, packets: 30, bytes: 3000 });
  });

  it('possible CPUs, as the kernel lists them', () => {
    assert.equal(possibleCpus('0-3\n'), 4);
    assert.equal(possibleCpus('0\n'), 1);
    assert.equal(possibleCpus('0,2-5\n'), 5);
  });

  it('flow keys of both families', () => {
    const flow = { family: 'IPv4' as const, saddr: '10.244.0.2', daddr: '10.96.0.10', sport: 40000, dport: 80, protocol: 'TCP' as const };
    assert.deepEqual(decodeFlowKey(encodeFlowKey(flow)), flow);
    const flow6 = { family: 'IPv6' as const, saddr: 'fd00:10:244::2', daddr: 'fd00:96::10', sport: 40000, dport: 80, protocol: 'UDP' as const };
    assert.deepEqual(decodeFlowKey(encodeFlowKey(flow6)), flow6);
  });

  it('conntrack values: no SNAT address is all zeros, not a mapped 0.0.0.0', () => {
    const ct = { backend: { ip: '10.244.0.9', port: 8080 }, flags: 0, lastSeen: 7, natSport: 0, natSaddr: null };
    const b = encodeCtValue(ct, 'IPv4');
    assert.deepEqual([...b.subarray(layouts.lb_ct_value.fields.nat_saddr.offset, layouts.lb_ct_value.size)], Array<number>(16).fill(0));
    assert.deepEqual(decodeCtValue(b), ct);
    const snat6 = { ...ct, backend: { ip: 'fd00:10:244::9', port: 8080 }, natSaddr: 'fd00:172:18::2' };
    assert.deepEqual(decodeCtValue(encodeCtValue(snat6, 'IPv6')), snat6);
  });

  it('source ranges: an IPv4 prefix counts the 96 bits of the mapping', () => {
    const frontend = { ip: '10.96.0.10', port: 80, protocol: 'TCP' as const };
    const key = encodeSourceRangeKey(frontend, '198.18.1.0/24', 'IPv4');
    assert.equal(key.readUInt32LE(0), 160 + 96 + 24);
    assert.deepEqual(decodeSourceRangeKey(key), { frontend, cidr: '198.18.1.0/24' });
    const frontend6 = { ip: 'fd00:96::10', port: 80, protocol: 'TCP' as const };
    const key6 = encodeSourceRangeKey(frontend6, '2001:db8:ff00::/40', 'IPv6');
    assert.equal(key6.readUInt32LE(0), 160 + 40);
    assert.deepEqual(decodeSourceRangeKey(key6), { frontend: frontend6, cidr: '2001:db8:ff00::/40' });
    assert.throws(() => encodeSourceRangeKey(frontend, '2001:db8::/32', 'IPv4'), /not of the frontend's family/);
  });

  it('rejects an address not of the family named', () => {
    assert.throws(() => writeSvcKey(Buffer.alloc(layouts.lb_svc_key.size), 0, { ip: 'fd00::1', port: 80, protocol: 'TCP' }, 'internal', 0, 'IPv4'), /not an IPv4 address/);
    assert.throws(() => writeSvcKey(Buffer.alloc(layouts.lb_svc_key.size), 0, { ip: '10.96.0.1', port: 80, protocol: 'TCP' }, 'internal', 0, 'IPv6'), /not an IPv6 address/);
  });
});
