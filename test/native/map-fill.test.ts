// /metrics and /healthz stay prompt with full BPF maps, while the map fill
// metrics follow the maps within a refresh period. Real maps: the ebpf
// backend's own, pinned in a throwaway pin root. Needs root and bpffs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { native } from '../../src/native/index.js';
import { EbpfBackend } from '../../src/backends/ebpf/ebpf-backend.js';
import { DEFAULT_MAP_SIZES, MAPS, closeMaps, openPinnedMaps } from '../../src/backends/ebpf/datapath.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../../src/backends/ebpf/maglev.js';
import { FILL_REFRESH_MS, filledMaps } from '../../src/backends/ebpf/map-stats.js';
import { ProxyTelemetry } from '../../src/observability/telemetry.js';
import { requireRoot } from '../lib/preconditions.js';
import { createTestCgroup, removeTestCgroup } from '../lib/test-cgroup.js';
import { slow } from '../lib/slowdown.js';
import { captureLogger } from '../unit/fixtures.js';

/**
 * Every scrape and health answer, whatever the maps hold. kube-lb answers from
 * memory, far within the issue's 100 ms; the bound leaves room for a loaded
 * 2-core machine, where scheduling alone delays answers, and stays well below
 * one synchronous walk of the full maps, which is what a scrape cost before.
 */
const ANSWER_BOUND_MS = slow(600);
const BATCH = 16_384;

const lib = native();
const pinRoot = `/sys/fs/bpf/kube-lb-mapfill-${process.pid}`;

/** Fills fd with count distinct keys (a counter in the first 4 bytes) and zero values. */
function fill(fd: number, count: number): void {
  const { keySize, valueSize } = lib.mapInfo(fd);
  const values = Buffer.alloc(BATCH * valueSize);
  for (let start = 0; start < count; start += BATCH) {
    const n = Math.min(BATCH, count - start);
    const keys = Buffer.alloc(n * keySize);
    for (let i = 0; i < n; i++) keys.writeUInt32LE(start + i + 1, i * keySize);
    lib.mapUpdateBatch(fd, keys, values.subarray(0, n * valueSize), n);
  }
}

/** kube_lb_bpf_map_entries by map, from a /metrics body. */
function entries(body: string): Map<string, number> {
  return new Map([...body.matchAll(/^kube_lb_bpf_map_entries\{map="([^"]+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

describe('map fill metrics with full maps', () => {
  let backend: EbpfBackend;
  let telemetry: ProxyTelemetry;
  let address: (server: string) => string;
  let cgroup: string | undefined;

  before(async () => {
    requireRoot();
    const { log, lines } = captureLogger();
    // No uplinks, and socket programs on a cgroup of its own: this runs in the host's own network namespace.
    cgroup = createTestCgroup('kube-lb-map-fill');
    backend = await EbpfBackend.run({ pinPath: pinRoot, cgroupRoot: cgroup, log, podTraffic: { by: 'prefix', prefix: `klmf${process.pid}` }, devices: [], xdp: 'off', mapSizes: DEFAULT_MAP_SIZES, socketLb: 'host', maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE });
    telemetry = await ProxyTelemetry.start({
      backend, nodeName: 'node1', syncPeriodMs: 30_000, healthzBindAddress: '127.0.0.1:0', metricsBindAddress: '127.0.0.1:0', metricsEndpointLabels: true, log,
    });
    address = (server) => lines.find((l) => typeof l[server] === 'string')![server] as string;
  });

  after(async () => {
    await telemetry?.close();
    await backend?.close();
    fs.rmSync(pinRoot, { recursive: true, force: true });
    if (cgroup) removeTestCgroup(cgroup);
  });

  /** One answer, timed from request to complete body. */
  async function timed(server: string, path: string): Promise<{ ms: number; status: number; body: string }> {
    const start = performance.now();
    const res = await fetch(`http://${address(server)}${path}`);
    const body = await res.text();
    return { ms: performance.now() - start, status: res.status, body };
  }

  it('answers within the bound while full maps are counted, and counts them within a refresh period plus one walk', async (t) => {
    const pinned = openPinnedMaps(lib, pinRoot)!;
    const fds = Object.fromEntries(filledMaps(pinned).map(({ map, fd }) => [map, fd]));
    try {
      // The first scrape starts the counting; the empty maps are counted at once.
      const start = Date.now();
      while (entries((await timed('metrics', '/metrics')).body).get(MAPS.ct) !== 0) {
        assert.ok(Date.now() - start < FILL_REFRESH_MS, 'the first counts never came');
        await new Promise((r) => setTimeout(r, 20));
      }

      for (const map of [MAPS.svc, MAPS.ct, MAPS.rnat]) fill(fds[map], lib.mapInfo(fds[map]).maxEntries);
      // An LRU map may evict some entries before it is full, so the truth is what the kernel holds.
      const truth = new Map(Object.entries(fds).map(([map, fd]) => [map, lib.mapDump(fd).count]));
      const walkStart = performance.now();
      for (const fd of Object.values(fds)) await lib.mapCount(fd);
      const walkMs = performance.now() - walkStart;
      const filled = Date.now();

      // Scrape and probe until the metrics agree with the kernel: that takes a
      // background walk of the full maps, which every answer must not wait for.
      let slowest = { ms: 0, what: '' };
      // The background walk runs beside this test's own scrapes, and on a loaded machine beside
      // everything else: it gets three times the walk measured here and a few seconds of scheduling.
      const deadline = filled + FILL_REFRESH_MS + slow(3 * walkMs + 5_000);
      for (;;) {
        const [metrics, health] = await Promise.all([timed('metrics', '/metrics'), timed('healthz', '/livez')]);
        assert.equal(metrics.status, 200);
        assert.equal(health.status, 200);
        for (const [what, ms] of [['/metrics', metrics.ms], ['/livez', health.ms]] as const) {
          if (ms > slowest.ms) slowest = { ms, what };
        }
        const counted = entries(metrics.body);
        if ([...truth].every(([map, n]) => counted.get(map) === n)) break;
        assert.ok(Date.now() < deadline, `counts ${JSON.stringify([...counted])} not ${JSON.stringify([...truth])} ${Date.now() - filled} ms after the fill, one walk taking ${Math.round(walkMs)} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(slowest.ms < ANSWER_BOUND_MS, `${slowest.what} took ${Math.round(slowest.ms)} ms, over ${ANSWER_BOUND_MS} ms`);
      t.diagnostic(` ${[...truth].map(([m, n]) => `${m}=${n}`).join(' ')}; one walk ${Math.round(walkMs)} ms; counted ${Date.now() - filled} ms after the fill; slowest answer ${slowest.ms.toFixed(1)} ms (${slowest.what})`);
    } finally {
      closeMaps(lib, pinned);
    }
  });
});
