// The ebpf backend translating the model's choice of algorithm: a service
// port with Maglev gets a table per map service, which follows its
// endpoints, goes when it turns random, is rewritten by a restart with
// another table size, and is cleaned of stray chunks at start.
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DesiredState, EndpointSet, LbAlgorithm, ServicePortState } from '../../src/model/contract.js';
import { EbpfBackend } from '../../src/backends/ebpf/ebpf-backend.js';
import { DEFAULT_MAP_SIZES, MAPS, removePins } from '../../src/backends/ebpf/datapath.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../../src/backends/ebpf/maglev.js';
import { layouts, writeMaglevKey } from '../../src/backends/ebpf/encoding.js';
import { maglevChunks, ServiceMap } from '../../src/backends/ebpf/service-map.js';
import { native } from '../../src/native/index.js';
import { requireRoot } from '../lib/preconditions.js';
import { createTestCgroup, removeTestCgroup } from '../lib/test-cgroup.js';
import { captureLogger } from '../unit/fixtures.js';

const lib = native();

/** A NodePort service port on 10.96.0.1:80 and 192.0.2.1:30080 with `backends` endpoints: three map services (ClusterIP; NodePort internal and external). */
function servicePort(lbAlgorithm: LbAlgorithm, backends: number): ServicePortState {
  const set: EndpointSet = { policy: 'cluster', destinations: Array.from({ length: backends }, (_, i) => ({ ip: `10.244.0.${i + 1}`, port: 8080 })), onThisNode: [] };
  const common = { family: 'IPv4', protocol: 'TCP', internal: set, external: set, sourceRanges: [] as string[], noEndpoints: 'reject', affinity: null } as const;
  return {
    key: 'default/web:http',
    namespace: 'default',
    name: 'web',
    portName: 'http',
    protocol: 'TCP',
    lbAlgorithm,
    settings: {},
    frontends: [
      { ...common, kind: 'ClusterIP', ip: '10.96.0.1', port: 80, masquerade: 'off-cluster' },
      { ...common, kind: 'NodePort', ip: '192.0.2.1', port: 30080, masquerade: 'all' },
    ],
  };
}

const desired = (port: ServicePortState): DesiredState => new Map([[port.key, port]]);

describe('ebpf backend: Maglev tables', () => {
  let pinRoot: string;
  let cgroup: string;
  let backend: EbpfBackend | undefined;

  async function start(maglevTableSize = DEFAULT_MAGLEV_TABLE_SIZE): Promise<EbpfBackend> {
    await backend?.close();
    backend = await EbpfBackend.run({ pinPath: pinRoot, cgroupRoot: cgroup, log: captureLogger().log, podTraffic: { by: 'prefix', prefix: `klmg${process.pid}` }, devices: [], xdp: 'off', mapSizes: DEFAULT_MAP_SIZES, socketLb: 'host', maglevTableSize });
    return backend;
  }

  /** Reads the pinned maps as a restarted kube-lb would. */
  function pinned<T>(read: (svcMap: ServiceMap, maglevFd: number) => T): T {
    const svc = lib.objGet(path.join(pinRoot, MAPS.svc));
    const maglev = lib.objGet(path.join(pinRoot, MAPS.maglev));
    try {
      return read(new ServiceMap(lib, svc, maglev), maglev);
    } finally {
      lib.closeFd(svc);
      lib.closeFd(maglev);
    }
  }
  const chunks = (): number => pinned((_, fd) => lib.mapDump(fd).count);
  const tableSizes = (): number[] => pinned((svcMap) => [...svcMap.readAll().services.values()].map((s) => s.meta.maglevTableSize).sort());

  beforeEach(() => {
    requireRoot();
    pinRoot = `/sys/fs/bpf/kube-lb-maglev-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    cgroup = createTestCgroup('kube-lb-maglev');
  });

  afterEach(async () => {
    await backend?.close();
    backend = undefined;
    removePins(pinRoot);
    removeTestCgroup(cgroup);
  });

  it('writes a table per map service for maglev, none for random, and follows the change either way', async () => {
    const b = await start();
    await b.sync(desired(servicePort('maglev', 3)), null);
    assert.equal(chunks(), 3 * maglevChunks(DEFAULT_MAGLEV_TABLE_SIZE));
    assert.deepEqual(tableSizes(), Array(3).fill(DEFAULT_MAGLEV_TABLE_SIZE));
    await b.sync(desired(servicePort('random', 3)), new Set(['default/web:http']));
    assert.deepEqual([chunks(), tableSizes()], [0, [0, 0, 0]]);
    await b.sync(desired(servicePort('maglev', 4)), new Set(['default/web:http']));
    assert.equal(chunks(), 3 * maglevChunks(DEFAULT_MAGLEV_TABLE_SIZE));
    await b.sync(desired(servicePort('maglev', 0)), new Set(['default/web:http']));
    assert.equal(chunks(), 0, 'no endpoints, no table');
    await b.sync(new Map(), new Set(['default/web:http']));
    assert.deepEqual([chunks(), tableSizes()], [0, []]);
  });

  it('a restart with another table size rewrites the tables; one after a write cut short deletes the chunks of no table', async () => {
    await (await start()).sync(desired(servicePort('maglev', 3)), null);
    await (await start(251)).sync(desired(servicePort('maglev', 3)), null);
    assert.deepEqual([chunks(), tableSizes()], [3 * maglevChunks(251), [251, 251, 251]]);

    await backend!.sync(desired(servicePort('random', 3)), null);
    // As a crash between a table's chunks and its slot 0 leaves them.
    pinned((_, fd) => {
      const key = Buffer.alloc(layouts.lb_maglev_key.size);
      writeMaglevKey(key, 0, { ip: '10.96.0.1', port: 80, protocol: 'TCP' }, 'internal', 0, 'IPv4');
      lib.mapUpdate(fd, key, Buffer.alloc(layouts.lb_maglev_chunk.size));
    });
    const restarted = await start(251);
    assert.equal(chunks(), 1, 'read at start, not yet deleted');
    await restarted.sync(desired(servicePort('random', 3)), null);
    assert.equal(chunks(), 0);
  });
});
