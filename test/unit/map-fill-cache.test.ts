// When the map fill cache walks the maps: only while read, one walk at a
// time, never serving counts kept through a pause or a failure. The walks
// themselves run against real maps in test/native/map-fill.test.ts.
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import type { NativeAddon } from '../../src/native/index.js';
import { FILL_IDLE_MS, FILL_REFRESH_MS, MapFillCache } from '../../src/backends/ebpf/map-stats.js';

const FDS = [
  { map: 'kube_lb_svc', fd: 1 },
  { map: 'kube_lb_ct', fd: 2 },
  { map: 'kube_lb_rnat', fd: 3 },
  { map: 'kube_lb_ifaces', fd: 4 },
];

/** A stand-in for the addon whose counts finish when the test says so. */
function fakeLib() {
  const pending: { fd: number; resolve: (n: number) => void; reject: (err: Error) => void }[] = [];
  const lib = {
    mapInfo: (fd: number) => ({ maxEntries: fd * 100 }),
    mapCount: (fd: number) => new Promise<number>((resolve, reject) => pending.push({ fd, resolve, reject })),
  } as unknown as NativeAddon;
  /** Finishes the count under way, with fd * 10 + add entries, or an error. */
  async function finish(add = 0, err?: Error): Promise<number> {
    const next = pending.shift();
    assert.ok(next, 'no count under way');
    if (err) next.reject(err);
    else next.resolve(next.fd * 10 + add);
    await new Promise((r) => setImmediate(r));
    return next.fd;
  }
  /** Finishes a whole walk of the four maps. */
  async function walk(add = 0): Promise<void> {
    for (let i = 0; i < 4; i++) await finish(add);
  }
  return { lib, pending, finish, walk };
}

const entries = (cache: MapFillCache) => cache.read().map((f) => f.entries);

describe('map fill cache', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setInterval', 'Date'] }));
  afterEach(() => mock.timers.reset());

  it('walks only once read, one map at a time, and answers at once from the last walk', async () => {
    const { lib, pending, walk, finish } = fakeLib();
    const cache = new MapFillCache(lib, FDS, () => assert.fail('no error expected'));
    mock.timers.tick(10 * FILL_REFRESH_MS);
    assert.equal(pending.length, 0, 'nothing walks before a read');

    assert.deepEqual(cache.read(), [
      { map: 'kube_lb_svc', entries: null, maxEntries: 100 },
      { map: 'kube_lb_ct', entries: null, maxEntries: 200 },
      { map: 'kube_lb_rnat', entries: null, maxEntries: 300 },
      { map: 'kube_lb_ifaces', entries: null, maxEntries: 400 },
    ]);
    assert.equal(pending.length, 1, 'one map at a time');
    await finish();
    assert.deepEqual(entries(cache), [10, null, null, null]);
    for (let i = 0; i < 3; i++) await finish();
    assert.deepEqual(entries(cache), [10, 20, 30, 40]);

    // The next walk starts a period later.
    mock.timers.tick(FILL_REFRESH_MS - 1);
    assert.equal(pending.length, 0);
    mock.timers.tick(1);
    assert.equal(pending.length, 1);
    await walk(1);
    assert.deepEqual(entries(cache), [11, 21, 31, 41]);
    await cache.close();
  });

  it('never starts a walk while one is under way', async () => {
    const { lib, pending, walk } = fakeLib();
    const cache = new MapFillCache(lib, FDS, () => {});
    cache.read();
    for (let i = 0; i < 5; i++) {
      mock.timers.tick(FILL_REFRESH_MS);
      cache.read();
    }
    assert.equal(pending.length, 1);
    await walk();
    assert.equal(pending.length, 0, 'the ticks during the walk left nothing to do');
    mock.timers.tick(FILL_REFRESH_MS);
    assert.equal(pending.length, 1);
    await walk();
    await cache.close();
  });

  it('stops walking once nothing reads, and forgets the counts until it walks again', async () => {
    const { lib, pending, walk } = fakeLib();
    const cache = new MapFillCache(lib, FDS, () => {});
    cache.read();
    await walk();
    let walks = 1;
    for (let t = FILL_REFRESH_MS; t < FILL_IDLE_MS; t += FILL_REFRESH_MS) {
      mock.timers.tick(FILL_REFRESH_MS);
      await walk();
      walks++;
    }
    mock.timers.tick(FILL_REFRESH_MS);
    mock.timers.tick(10 * FILL_REFRESH_MS);
    assert.equal(pending.length, 0, `stopped after ${walks} walks`);

    assert.deepEqual(entries(cache), [null, null, null, null], 'counts from before the pause are not served');
    assert.equal(pending.length, 1, 'the read walks again at once');
    await walk();
    assert.deepEqual(entries(cache), [10, 20, 30, 40]);
    await cache.close();
  });

  it('reports a failed count and serves no count for that map until one succeeds', async () => {
    const { lib, finish, walk } = fakeLib();
    const errors: string[] = [];
    const cache = new MapFillCache(lib, FDS, (map, err) => errors.push(`${map}: ${err.message}`));
    cache.read();
    await walk();
    mock.timers.tick(FILL_REFRESH_MS);
    await finish();
    await finish(0, new Error('bpf_map_lookup_batch map fd 2: Bad address'));
    await finish();
    await finish();
    assert.deepEqual(errors, ['kube_lb_ct: bpf_map_lookup_batch map fd 2: Bad address']);
    assert.deepEqual(entries(cache), [10, null, 30, 40]);
    mock.timers.tick(FILL_REFRESH_MS);
    await walk();
    assert.deepEqual(entries(cache), [10, 20, 30, 40]);
    await cache.close();
  });

  it('closes after the count under way, and counts nothing more', async () => {
    const { lib, pending, finish } = fakeLib();
    const cache = new MapFillCache(lib, FDS, () => {});
    cache.read();
    let closed = false;
    const closing = cache.close().then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(closed, false, 'waits for the count under way');
    await finish();
    await closing;
    assert.equal(pending.length, 0, 'the other maps are not counted');
    mock.timers.tick(10 * FILL_REFRESH_MS);
    assert.deepEqual(entries(cache), [null, null, null, null]);
    assert.equal(pending.length, 0, 'a read after close walks nothing');
  });
});
