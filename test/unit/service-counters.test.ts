import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EndpointCounters } from '../../src/backends/backend.js';
import type { DesiredState, Frontend, ServicePortState } from '../../src/model/contract.js';
import { countViews, formatViews } from '../../src/inspect-view.js';
import { COUNTERS_MAX_AGE_MS, CountersCache, connectionSamples } from '../../src/observability/service-counters.js';

const VIP: Frontend = { ip: '10.96.0.10', port: 80, protocol: 'TCP' };
const NODE_PORT: Frontend = { ip: '192.168.0.10', port: 30080, protocol: 'TCP' };
const DNS: Frontend = { ip: '10.96.0.53', port: 53, protocol: 'UDP' };

/** Only what the join reads of a service port. */
function servicePort(namespace: string, name: string, portName: string, frontends: Frontend[]): ServicePortState {
  return { key: `${namespace}/${name}:${portName}`, namespace, name, portName, protocol: frontends[0]!.protocol, frontends, settings: {} } as unknown as ServicePortState;
}

const state: DesiredState = new Map(
  [servicePort('default', 'web', 'http', [VIP, NODE_PORT]), servicePort('kube-system', 'dns', '', [DNS])].map((sp) => [sp.key, sp]),
);

const counted: EndpointCounters[] = [
  // A netfilter endpoint chain: counted once for every frontend of its port.
  { frontends: [VIP, NODE_PORT], destination: { ip: '10.244.0.11', port: 8080 }, connections: 5 },
  { frontends: [NODE_PORT], destination: { ip: '10.244.0.12', port: 8080 }, connections: 3 },
  // A kernel that counts per frontend: the same endpoint again, through another frontend.
  { frontends: [NODE_PORT], destination: { ip: '10.244.0.11', port: 8080 }, connections: 1 },
  { frontends: [DNS], destination: { ip: '10.244.0.53', port: 5353 }, connections: 2 },
  // A service deleted since the last sync.
  { frontends: [{ ip: '10.96.0.99', port: 80, protocol: 'TCP' }], destination: { ip: '10.244.0.99', port: 80 }, connections: 99 },
];

describe('connection counters: the join of kernel counts to service names', () => {
  it('sums by service port and endpoint, names them from the state, and leaves out what the state does not hold', () => {
    assert.deepEqual(connectionSamples(state, counted, true), [
      { labels: { namespace: 'default', service: 'web', port: 'http', endpoint: '10.244.0.11:8080' }, counts: { connections: 6 } },
      { labels: { namespace: 'default', service: 'web', port: 'http', endpoint: '10.244.0.12:8080' }, counts: { connections: 3 } },
      { labels: { namespace: 'kube-system', service: 'dns', port: '', endpoint: '10.244.0.53:5353' }, counts: { connections: 2 } },
    ]);
  });

  it('without endpoint labels, one series per service port', () => {
    assert.deepEqual(connectionSamples(state, counted, false), [
      { labels: { namespace: 'default', service: 'web', port: 'http' }, counts: { connections: 9 } },
      { labels: { namespace: 'kube-system', service: 'dns', port: '' }, counts: { connections: 2 } },
    ]);
  });

  it('sums packets and bytes too where the kernel counts them', () => {
    const traffic: EndpointCounters[] = [
      { frontends: [VIP], destination: { ip: '10.244.0.11', port: 8080 }, connections: 5, packets: 40, bytes: 3000 },
      { frontends: [NODE_PORT], destination: { ip: '10.244.0.11', port: 8080 }, connections: 1, packets: 8, bytes: 600 },
    ];
    assert.deepEqual(connectionSamples(state, traffic, false), [{ labels: { namespace: 'default', service: 'web', port: 'http' }, counts: { connections: 6, packets: 48, bytes: 3600 } }]);
  });

  it("sums a read once for a scrape's metrics, and again for another state", () => {
    const read = counted.slice();
    const samples = connectionSamples(state, read, false);
    assert.equal(connectionSamples(state, read, false), samples);
    const renamed: DesiredState = new Map([...state].map(([k, sp]) => [k, { ...sp, name: `${sp.name}-2` }]));
    assert.deepEqual(
      connectionSamples(renamed, read, false).map((s) => s.labels.service),
      ['web-2', 'dns-2'],
    );
  });

  it('a scrape answers from the last read and a stale one starts the next; scrapes never read twice at once; after a failed read the next scrape waits for its own', async () => {
    let now = 0;
    let reads = 0;
    let fail = false;
    let release: () => void = () => {};
    const cache = new CountersCache(async () => {
      reads++;
      await new Promise<void>((resolve) => (release = resolve));
      if (fail) throw new Error('nft failed');
      return counted.slice(0, reads);
    }, () => now);
    const first = [cache.read(), cache.read()];
    release();
    assert.deepEqual(await Promise.all(first), [counted.slice(0, 1), counted.slice(0, 1)], 'the first scrapes wait for one read');
    now += COUNTERS_MAX_AGE_MS - 1;
    assert.deepEqual(await cache.read(), counted.slice(0, 1));
    assert.equal(reads, 1, 'a fresh read is served again');
    now += 1;
    assert.deepEqual(await cache.read(), counted.slice(0, 1), 'a stale read is served at once');
    assert.equal(reads, 2, 'and starts the next');
    assert.deepEqual(await cache.read(), counted.slice(0, 1), 'while it runs, the last read is served, and no other starts');
    assert.equal(reads, 2);
    release();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await cache.read(), counted.slice(0, 2), 'the new read once done');
    now += COUNTERS_MAX_AGE_MS;
    fail = true;
    await cache.read();
    release();
    await new Promise((r) => setImmediate(r));
    const waiting = cache.read();
    release();
    await assert.rejects(waiting, /nft failed/, 'after a failed read, the next scrape waits for its own and sees its failure');
    fail = false;
    const again = cache.read();
    release();
    assert.deepEqual(await again, counted.slice(0, 5));
  });
});

describe('inspect -o wide: the counts beside each endpoint', () => {
  it("shows an endpoint's count on every frontend its count covers, and none where the kernel counted nothing", () => {
    const views = countViews(
      [
        { kind: 'ClusterIP', frontend: VIP, destinations: [{ ip: '10.244.0.11', port: 8080 }, { ip: '10.244.0.12', port: 8080 }] },
        { kind: 'NodePort', frontend: NODE_PORT, destinations: [{ ip: '10.244.0.11', port: 8080 }] },
      ],
      counted,
    );
    assert.equal(
      formatViews(views, 'wide'),
      [
        'KIND       FRONTEND                BACKENDS',
        'ClusterIP  10.96.0.10:80/TCP       10.244.0.11:8080 conns=5, 10.244.0.12:8080',
        'NodePort   192.168.0.10:30080/TCP  10.244.0.11:8080 conns=6',
        '',
      ].join('\n'),
    );
  });

  it('shows packets and bytes where the kernel counts them', () => {
    const views = countViews(
      [{ kind: 'ClusterIP', frontend: VIP, destinations: [{ ip: '10.244.0.11', port: 8080 }] }],
      [{ frontends: [VIP], destination: { ip: '10.244.0.11', port: 8080 }, connections: 5, packets: 40, bytes: 3000 }],
    );
    assert.equal(formatViews(views, 'wide'), ['KIND       FRONTEND           BACKENDS', 'ClusterIP  10.96.0.10:80/TCP  10.244.0.11:8080 conns=5 pkts=40 bytes=3000', ''].join('\n'));
  });
});
