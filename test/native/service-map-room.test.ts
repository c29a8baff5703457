// The ebpf backend against a real, small kube_lb_svc: what does not fit is
// refused per service port before anything is written, the rest is applied,
// freed room lets refused ports in, orphans are deleted after a restart, and
// a kernel that still says full is recovered from. Needs root and bpffs.
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DesiredState, EndpointSet, Frontend, ServicePortState } from '../../src/model/contract.js';
import { EbpfBackend } from '../../src/backends/ebpf/ebpf-backend.js';
import { removePins } from '../../src/backends/ebpf/datapath.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../../src/backends/ebpf/maglev.js';
import { requireRoot } from '../lib/preconditions.js';
import { createTestCgroup, removeTestCgroup } from '../lib/test-cgroup.js';
import { orphanSlots, svcEntries, writeSvcEntries } from '../lib/svc-map.js';
import { type LogLine, captureLogger } from '../unit/fixtures.js';

const MAP_MAX = 16;
const mapSizes = { lb: MAP_MAX, ct: 64 };

/** A ClusterIP service port "default/NAME:http" on IP:80 with `backends` endpoints: 1 + backends entries. */
function servicePort(name: string, ip: string, backends: number): ServicePortState {
  const set: EndpointSet = { policy: 'cluster', destinations: Array.from({ length: backends }, (_, i) => ({ ip: `10.244.0.${i + 1}`, port: 8080 })), onThisNode: [] };
  return {
    key: `default/${name}:http`,
    namespace: 'default',
    name,
    portName: 'http',
    protocol: 'TCP',
    lbAlgorithm: 'random',
    settings: {},
    frontends: [{ kind: 'ClusterIP', family: 'IPv4', ip, port: 80, protocol: 'TCP', internal: set, external: set, masquerade: 'off-cluster', sourceRanges: [], noEndpoints: 'reject', affinity: null }],
  };
}

function desired(...ports: ServicePortState[]): DesiredState {
  return new Map(ports.map((p) => [p.key, p]));
}

describe('ebpf backend: room in kube_lb_svc', () => {
  let pinRoot: string;
  let backend: EbpfBackend | undefined;
  let lines: LogLine[];
  let cgroup: string;

  async function start(): Promise<EbpfBackend> {
    const logger = captureLogger();
    lines = logger.lines;
    // No uplinks, and socket programs on a cgroup of its own: this runs in the host's own network namespace.
    backend = await EbpfBackend.run({ pinPath: pinRoot, cgroupRoot: cgroup, log: logger.log, podTraffic: { by: 'prefix', prefix: `klrm${process.pid}` }, devices: [], xdp: 'off', mapSizes, socketLb: 'host', maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE });
    return backend;
  }

  async function restart(): Promise<EbpfBackend> {
    await backend!.close();
    return start();
  }

  /** Frontend IP -> backend count, read back from the kernel. */
  async function programmed(): Promise<Record<string, number>> {
    const views = await backend!.inspect();
    return Object.fromEntries(views.map((v) => [v.frontend.ip, v.destinations.length]).sort());
  }

  const warningsAbout = (name: string): LogLine[] => lines.filter((l) => l.level === 40 && l.service === `default/${name}`);

  beforeEach(() => {
    requireRoot();
    pinRoot = `/sys/fs/bpf/kube-lb-room-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    cgroup = createTestCgroup('kube-lb-room');
  });

  afterEach(async () => {
    await backend?.close();
    backend = undefined;
    removePins(pinRoot);
    removeTestCgroup(cgroup);
  });

  it('refuses a service port that does not fit, names it once, applies the rest, and lets it in once room is freed', async () => {
    const b = await start();
    const a = servicePort('a', '10.96.0.1', 3);
    const big = servicePort('big', '10.96.0.2', 7);
    const c = servicePort('c', '10.96.0.3', 5);
    // 4 + 8 entries fit in 16; c's 6 do not.
    let stats = await b.sync(desired(a, big, c), null);
    assert.equal(stats.servicePortsRefused, 1);
    assert.deepEqual(await programmed(), { '10.96.0.1': 3, '10.96.0.2': 7 });
    assert.equal(warningsAbout('c').length, 1);
    assert.match(warningsAbout('c')[0]!.msg, /--bpf-lb-map-max/);
    assert.deepEqual(
      [warningsAbout('c')[0]!.frontends, warningsAbout('c')[0]!.entriesNeeded, warningsAbout('c')[0]!.entriesFree, warningsAbout('c')[0]!.maxEntries],
      [['10.96.0.3:80/TCP'], 6, 4, MAP_MAX],
    );

    // A retry writes nothing and says nothing more.
    stats = await b.sync(desired(a, big, c), new Set());
    assert.deepEqual(stats, { frontendsWritten: 0, frontendsRemoved: 0, servicePortsRefused: 1 });
    stats = await b.sync(desired(a, big, c), null);
    assert.deepEqual(stats, { frontendsWritten: 0, frontendsRemoved: 0, servicePortsRefused: 1 });
    assert.equal(warningsAbout('c').length, 1);

    // A service that fits still gets in.
    const d = servicePort('d', '10.96.0.4', 2);
    stats = await b.sync(desired(a, big, c, d), new Set([d.key]));
    assert.equal(stats.servicePortsRefused, 1);
    assert.deepEqual(await programmed(), { '10.96.0.1': 3, '10.96.0.2': 7, '10.96.0.4': 2 });

    // Deleting the big service lets c in, in the same sync.
    stats = await b.sync(desired(a, c, d), new Set([big.key]));
    assert.deepEqual(stats, { frontendsWritten: 1, frontendsRemoved: 1, servicePortsRefused: 0 });
    assert.deepEqual(await programmed(), { '10.96.0.1': 3, '10.96.0.3': 5, '10.96.0.4': 2 });
    assert.ok(lines.some((l) => l.level === 30 && l.service === 'default/c' && /room .* again/.test(l.msg)), 'the refused port is named again once in');
    assert.equal(svcEntries(pinRoot), 4 + 6 + 3);
  });

  it('a service already programmed that outgrows the room keeps its last backends', async () => {
    const b = await start();
    const big = servicePort('big', '10.96.0.2', 10);
    await b.sync(desired(servicePort('a', '10.96.0.1', 3), big), null);
    let stats = await b.sync(desired(servicePort('a', '10.96.0.1', 5), big), new Set(['default/a:http']));
    assert.equal(stats.servicePortsRefused, 1);
    assert.deepEqual(await programmed(), { '10.96.0.1': 3, '10.96.0.2': 10 });
    assert.equal(warningsAbout('a').length, 1);
    // A change that needs no more room gets in.
    stats = await b.sync(desired(servicePort('a', '10.96.0.1', 1), big), new Set(['default/a:http']));
    assert.equal(stats.servicePortsRefused, 0);
    assert.deepEqual(await programmed(), { '10.96.0.1': 1, '10.96.0.2': 10 });
  });

  it('after a restart, entries of no service are deleted by the first sync, which then fits', async () => {
    let b = await start();
    const a = servicePort('a', '10.96.0.1', 2);
    await b.sync(desired(a), null);
    // What writes cut short leave: slots past a's count, slots without a
    // slot 0, and a service whose count names a missing slot. The map is full.
    const broken: Frontend = { ip: '10.96.9.8', port: 80, protocol: 'TCP' };
    writeSvcEntries(pinRoot, [
      ...orphanSlots(3, 4, a.frontends[0]!),
      ...orphanSlots(1, 8),
      { frontend: broken, slot: 0, count: 3 },
      { frontend: broken, slot: 1 },
      { frontend: broken, slot: 3 },
    ]);
    assert.equal(svcEntries(pinRoot), MAP_MAX);
    b = await restart();
    const e = servicePort('e', '10.96.0.5', 3);
    const stats = await b.sync(desired(a, e), null);
    assert.equal(stats.servicePortsRefused, 0);
    assert.deepEqual(await programmed(), { '10.96.0.1': 2, '10.96.0.5': 3 });
    assert.equal(svcEntries(pinRoot), 3 + 4);
  });

  it('a kernel that says full although the count said room fails the sync, and the next sync reads the map again and converges', async () => {
    const b = await start();
    const a = servicePort('a', '10.96.0.1', 2);
    await b.sync(desired(a), null);
    // Entries the backend does not know of: it counts 3 entries where the kernel holds 15.
    writeSvcEntries(pinRoot, orphanSlots(1, 12));
    const e = servicePort('e', '10.96.0.5', 3);
    await assert.rejects(b.sync(desired(a, e), new Set([e.key])), /kube_lb_svc is full .*reads the map again/);
    // The proxier follows a failed sync with a full one.
    const stats = await b.sync(desired(a, e), null);
    assert.equal(stats.servicePortsRefused, 0);
    assert.deepEqual(await programmed(), { '10.96.0.1': 2, '10.96.0.5': 3 });
    assert.equal(svcEntries(pinRoot), 3 + 4);
  });
});
