// Maglev in the kernel under BPF_PROG_TEST_RUN: for many flows the program
// picks the backend the TypeScript reference (src/backends/ebpf/maglev.ts)
// predicts, through endpoint changes, under session affinity, and after a
// lost conntrack entry; the tables' chunks come and go with the services.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { native } from '../../src/native/index.js';
import { type LoadedDatapath, loadDatapath, removePins } from '../../src/backends/ebpf/datapath.js';
import { addition, maglevChunks, ServiceMap, type ServiceChange, svcKey } from '../../src/backends/ebpf/service-map.js';
import { encodeFlowKey, type Flow, layouts, writeMaglevKey } from '../../src/backends/ebpf/encoding.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, maglevPick, maglevTable } from '../../src/backends/ebpf/maglev.js';
import { type Destination, type Frontend, destinationKey } from '../../src/model/contract.js';
import { buildPacket, parsePacket } from '../lib/packets.js';
import { requireRoot } from '../lib/preconditions.js';

const TC_ACT_OK = 0;
const SIZE = DEFAULT_MAGLEV_TABLE_SIZE;

const lib = native();
const pinPath = `/sys/fs/bpf/kube-lb-test-maglev-${process.pid}`;
let dp: LoadedDatapath;
let svcMap: ServiceMap;

const backends = (n: number, from = 1): Destination[] => Array.from({ length: n }, (_, i) => ({ ip: `10.244.1.${from + i}`, port: 8080 }));
/** What buildPacket crafts. */
type TestFlow = Flow & { protocol: 'TCP' | 'UDP' };
type TestFrontend = Frontend & { protocol: 'TCP' | 'UDP' };
const tcpService: TestFrontend = { ip: '10.96.1.10', port: 80, protocol: 'TCP' };
const udpService: TestFrontend = { ip: '10.96.1.10', port: 53, protocol: 'UDP' };
const stickyService: TestFrontend = { ip: '10.96.1.11', port: 80, protocol: 'TCP' };
/** What each service's slots hold now, by svcKey, as apply returns it. */
let slotTables = new Map<string, Destination[]>();

function apply(changes: ServiceChange[]): void {
  for (const [key, slots] of svcMap.apply(changes)) slotTables.set(key, slots);
}

/** The change from what `frontend` holds now to `wanted`, with Maglev tables of `size` entries (0: random). */
function change(frontend: Frontend, wanted: Destination[] | null, size: number, currentSize: number, affinityTimeout = 0): ServiceChange {
  const meta = { ...addition(frontend, []).meta, affinityTimeout, maglevTableSize: size };
  return { frontend, scope: 'internal', family: 'IPv4', meta, currentMeta: { ...meta, maglevTableSize: currentSize }, current: slotTables.get(svcKey({ frontend, scope: 'internal' }))!, wanted };
}

/** Many flows: clients across a /16, ports across the ephemeral range. */
function flows(to: TestFrontend, count: number, seed = 0): TestFlow[] {
  return Array.from({ length: count }, (_, i) => {
    const n = i * 7919 + seed * 104729;
    return { family: 'IPv4', saddr: `10.244.${(n >> 8) & 255}.${n & 255}`, sport: 32768 + ((n * 31) % 28000), daddr: to.ip, dport: to.port, protocol: to.protocol };
  });
}

/** The backend the kernel gives a new flow. */
function kernelPick(flow: TestFlow): Destination {
  const frame = buildPacket({ saddr: flow.saddr, sport: flow.sport, daddr: flow.daddr, dport: flow.dport, protocol: flow.protocol });
  const { retval, data } = lib.progTestRun(dp.programs.fromPod, frame, 1);
  assert.equal(retval, TC_ACT_OK);
  const p = parsePacket(data);
  return { ip: p.daddr, port: p.dport };
}

function forgetFlow(flow: Flow): void {
  lib.mapDelete(dp.maps.ct, encodeFlowKey(flow));
}

/** Flows whose kernel pick differs from the reference's. */
function mismatches(all: TestFlow[], set: Destination[], size = SIZE): string[] {
  const table = maglevTable(set, size);
  return all
    .map((flow) => ({ flow, kernel: destinationKey(kernelPick(flow)), reference: destinationKey(maglevPick(table, flow)!) }))
    .filter(({ kernel, reference }) => kernel !== reference)
    .map(({ flow, kernel, reference }) => `${flow.saddr}:${flow.sport} got ${kernel}, reference ${reference}`);
}

const chunksHeld = (): number => lib.mapDump(dp.maps.maglev).count;

describe('Maglev in the datapath (BPF_PROG_TEST_RUN)', () => {
  before(() => {
    requireRoot();
    dp = loadDatapath(lib, pinPath, pino({ level: 'silent' }));
    svcMap = new ServiceMap(lib, dp.maps.svc, dp.maps.maglev);
    slotTables = new Map();
    apply([
      addition(tcpService, backends(10), { maglevTableSize: SIZE }),
      addition(udpService, backends(10), { maglevTableSize: SIZE }),
      addition(stickyService, backends(10), { maglevTableSize: SIZE, affinityTimeout: 10800 }),
    ]);
  });
  after(() => {
    dp?.object.close();
    removePins(pinPath);
  });

  it('gives every flow the backend the TypeScript reference predicts, for TCP and UDP', () => {
    assert.equal(chunksHeld(), 3 * maglevChunks(SIZE), 'one table per service');
    for (const svc of [tcpService, udpService]) {
      const all = flows(svc, 2000);
      assert.deepEqual(mismatches(all, backends(10)), [], `${svc.protocol}: kernel and reference agree`);
      const used = new Set(all.map((f) => destinationKey(kernelPick(f))));
      assert.equal(used.size, 10, `${svc.protocol}: every backend gets flows`);
    }
  });

  it('keeps a flow on its backend when its conntrack entry is lost', () => {
    const all = flows(tcpService, 200, 1);
    const first = all.map(kernelPick);
    for (const flow of all) forgetFlow(flow);
    assert.deepEqual(all.map(kernelPick), first);
  });

  it('follows the reference through an endpoint removed, added, and replaced, whatever slots the backends moved to', () => {
    const steps = [backends(9, 2), backends(11, 2), [...backends(5, 2), ...backends(5, 20)]];
    steps.forEach((set, i) => {
      apply([change(tcpService, set, SIZE, SIZE)]);
      assert.deepEqual(mismatches(flows(tcpService, 1000, 10 + i), set), [], `step ${i + 1}: ${set.length} backends`);
    });
    apply([change(tcpService, backends(10), SIZE, SIZE)]);
  });

  it('keeps session affinity on top: a client keeps its first backend, wherever Maglev would send its next flows', () => {
    const table = maglevTable(backends(10), SIZE);
    const client = '10.244.200.7';
    const flow = (sport: number): TestFlow => ({ family: 'IPv4', saddr: client, sport, daddr: stickyService.ip, dport: stickyService.port, protocol: 'TCP' });
    const first = kernelPick(flow(40000));
    assert.deepEqual(first, maglevPick(table, flow(40000)), 'the first flow: Maglev');
    const elsewhere = Array.from({ length: 200 }, (_, i) => flow(40001 + i)).filter((f) => destinationKey(maglevPick(table, f)!) !== destinationKey(first));
    assert.ok(elsewhere.length > 100, 'flows Maglev sends to other backends');
    for (const f of elsewhere) assert.deepEqual(kernelPick(f), first);
  });

  it('removes a table when its service goes random or goes away, and a random service picks among all backends', () => {
    apply([change(udpService, backends(10), 0, SIZE)]);
    assert.equal(chunksHeld(), 2 * maglevChunks(SIZE));
    const used = new Set(flows(udpService, 300, 3).map((f) => destinationKey(kernelPick(f))));
    assert.equal(used.size, 10);
    apply([change(stickyService, null, SIZE, SIZE, 10800)]);
    assert.equal(chunksHeld(), maglevChunks(SIZE));
  });

  it('writes a table of another size, and reads chunks of no table as orphans, which the next apply deletes', () => {
    apply([change(tcpService, backends(10), 251, SIZE)]);
    assert.equal(chunksHeld(), maglevChunks(251), 'the smaller table took fewer chunks');
    assert.deepEqual(mismatches(flows(tcpService, 500, 4), backends(10), 251), []);
    // As a crash between the chunks and slot 0 leaves them: a chunk of a service not flagged Maglev.
    const key = Buffer.alloc(layouts.lb_maglev_key.size);
    writeMaglevKey(key, 0, udpService, 'internal', 0, 'IPv4');
    lib.mapUpdate(dp.maps.maglev, key, Buffer.alloc(layouts.lb_maglev_chunk.size));
    const { orphanChunks } = svcMap.readAll();
    assert.deepEqual(orphanChunks, [{ frontend: udpService, scope: 'internal', family: 'IPv4', chunk: 0 }]);
    svcMap.apply([], [], orphanChunks);
    assert.equal(chunksHeld(), maglevChunks(251));
  });

  it('gives IPv6 flows the backend the reference predicts, from the same map', () => {
    const service6: TestFrontend = { ip: 'fd00:96:1::10', port: 80, protocol: 'TCP' };
    const set = Array.from({ length: 10 }, (_, i): Destination => ({ ip: `fd00:10:244:1::${(i + 1).toString(16)}`, port: 8080 }));
    const v6Change = (wanted: Destination[] | null, current: Destination[] | null): ServiceChange => {
      const meta = { ...addition(service6, []).meta, maglevTableSize: SIZE };
      return { frontend: service6, scope: 'internal', family: 'IPv6', meta, currentMeta: current ? meta : null, current, wanted };
    };
    apply([v6Change(set, null)]);
    const all = Array.from({ length: 1000 }, (_, i): TestFlow => {
      const n = i * 7919;
      return { family: 'IPv6', saddr: `fd00:10:244:${(n >> 8) & 255}::${(n & 255).toString(16)}`, sport: 32768 + ((n * 31) % 28000), daddr: service6.ip, dport: 80, protocol: 'TCP' };
    });
    assert.deepEqual(mismatches(all, set), []);
    assert.equal(new Set(all.map((f) => destinationKey(kernelPick(f)))).size, 10, 'every backend gets flows');
    apply([v6Change(null, slotTables.get(svcKey({ frontend: service6, scope: 'internal' }))!)]);
  });
});
