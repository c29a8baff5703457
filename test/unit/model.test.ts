import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ServicePortState } from '../../src/model/contract.js';
import { ProxyModel } from '../../src/model/model.js';
import { parseObject, type RawObject } from '../../src/model/objects.js';
import { captureLogger, rawNode, rawService, rawSlice, readyEndpoint, testModel } from './fixtures.js';

function modelWith(...objects: RawObject[]): ProxyModel {
  const model = testModel();
  for (const raw of objects) model.upsert(parseObject(raw));
  return model;
}

function portState(model: ProxyModel, key: string): ServicePortState {
  const state = model.desiredState().get(key);
  assert.ok(state, `no state for ${key}; have ${[...model.desiredState().keys()].join(', ')}`);
  return state;
}

function destinationsOf(model: ProxyModel, key: string): string[] {
  return portState(model, key).frontends[0]!.internal.destinations.map((d) => `${d.ip}:${d.port}`);
}

const httpPort = [{ name: 'http', port: 8080 }];

describe('endpoint selection', () => {
  test('only ready endpoints receive traffic; absent ready counts as ready', () => {
    const model = modelWith(
      rawService('web'),
      rawSlice('web-1', 'web', httpPort, [
        readyEndpoint('10.1.0.1'),
        { addresses: ['10.1.0.2'], conditions: { ready: false } },
        { addresses: ['10.1.0.3'], conditions: { ready: false, serving: true, terminating: true } },
        { addresses: ['10.1.0.4'] },
      ]),
    );
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['10.1.0.1:8080', '10.1.0.4:8080']);
  });

  test('endpoints of all slices of the service are merged', () => {
    const model = modelWith(
      rawService('web'),
      rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]),
      rawSlice('web-2', 'web', httpPort, [readyEndpoint('10.1.0.2')]),
      rawSlice('other-1', 'other', httpPort, [readyEndpoint('10.1.0.3')]),
    );
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['10.1.0.1:8080', '10.1.0.2:8080']);
  });

  test('slices in another namespace do not count', () => {
    const model = modelWith(rawService('web'), rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1')], 'shop'));
    assert.deepEqual(destinationsOf(model, 'default/web:http'), []);
  });

  test('slice ports match by name and protocol, and give the destination port', () => {
    const model = modelWith(
      rawService('web', { ports: [{ name: 'http', port: 80, targetPort: 'web' }] }),
      rawSlice('web-1', 'web', [{ name: 'http', port: 8080 }], [readyEndpoint('10.1.0.1')]),
      rawSlice('web-2', 'web', [{ name: 'metrics', port: 9090 }], [readyEndpoint('10.1.0.2')]),
      rawSlice('web-3', 'web', [{ name: 'http', port: 8081, protocol: 'UDP' }], [readyEndpoint('10.1.0.3')]),
      rawSlice('web-4', 'web', [{ name: 'http' }], [readyEndpoint('10.1.0.4')]),
    );
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['10.1.0.1:8080']);
  });

  test('one named port may map to different target ports on different endpoints', () => {
    const model = modelWith(
      rawService('web', { ports: [{ name: 'http', port: 80, targetPort: 'web' }] }),
      rawSlice('web-1', 'web', [{ name: 'http', port: 8080 }], [readyEndpoint('10.1.0.1')]),
      rawSlice('web-2', 'web', [{ name: 'http', port: 8443 }], [readyEndpoint('10.1.0.2')]),
    );
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['10.1.0.1:8080', '10.1.0.2:8443']);
  });

  test('an unnamed single port matches the unnamed slice port', () => {
    const model = modelWith(rawService('web', { ports: [{ port: 80 }] }), rawSlice('web-1', 'web', [{ port: 8080 }], [readyEndpoint('10.1.0.1')]));
    const state = portState(model, 'default/web:');
    assert.equal(state.portName, '');
    assert.deepEqual(destinationsOf(model, 'default/web:'), ['10.1.0.1:8080']);
  });

  test('a multi-port service yields one state per port', () => {
    const model = modelWith(
      rawService('dns', {
        clusterIP: '10.96.0.10',
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
        ],
      }),
      rawSlice('dns-1', 'dns', [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 5353 }], [readyEndpoint('10.1.0.1')]),
    );
    assert.deepEqual(
      [...model.desiredState().values()].map(({ key, namespace, name, portName, frontends: [f] }) => ({ key, namespace, name, portName, frontend: { ip: f!.ip, port: f!.port, protocol: f!.protocol } })),
      [
        { key: 'default/dns:dns', namespace: 'default', name: 'dns', portName: 'dns', frontend: { ip: '10.96.0.10', port: 53, protocol: 'UDP' } },
        { key: 'default/dns:dns-tcp', namespace: 'default', name: 'dns', portName: 'dns-tcp', frontend: { ip: '10.96.0.10', port: 53, protocol: 'TCP' } },
      ],
    );
    assert.deepEqual(destinationsOf(model, 'default/dns:dns'), ['10.1.0.1:5353']);
    assert.deepEqual(destinationsOf(model, 'default/dns:dns-tcp'), ['10.1.0.1:5353']);
  });

  test('destinations are deduplicated and sorted numerically by IP, then port', () => {
    const model = modelWith(
      rawService('web'),
      rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.10'), readyEndpoint('10.1.0.9'), readyEndpoint('9.1.0.1')]),
      rawSlice('web-2', 'web', httpPort, [readyEndpoint('10.1.0.9'), readyEndpoint('10.1.0.10')]),
      rawSlice('web-3', 'web', [{ name: 'http', port: 80 }], [readyEndpoint('10.1.0.9')]),
    );
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['9.1.0.1:8080', '10.1.0.9:80', '10.1.0.9:8080', '10.1.0.10:8080']);
  });

  test('IPv6 slices are left out by a backend that serves IPv4 only', () => {
    const model = modelWith(rawService('web'), { ...rawSlice('web-v6', 'web', httpPort, [{ addresses: ['fd00::1'] }]), addressType: 'IPv6' });
    assert.deepEqual(destinationsOf(model, 'default/web:http'), []);
  });
});

describe('frontends', () => {
  test('ClusterIP, NodePort and LoadBalancer services are served on their ClusterIP', () => {
    for (const type of ['ClusterIP', 'NodePort', 'LoadBalancer']) {
      const model = modelWith(rawService('web', { type, clusterIP: '10.96.0.7' }));
      const [f] = portState(model, 'default/web:http').frontends;
      assert.deepEqual({ kind: f!.kind, ip: f!.ip, port: f!.port, protocol: f!.protocol }, { kind: 'ClusterIP', ip: '10.96.0.7', port: 80, protocol: 'TCP' }, type);
    }
  });

  test('headless, ExternalName and unallocated services produce nothing', () => {
    const model = modelWith(
      rawService('headless', { clusterIP: 'None' }),
      rawSlice('headless-1', 'headless', httpPort, [readyEndpoint('10.1.0.1')]),
      rawService('external', { type: 'ExternalName', clusterIP: undefined, externalName: 'db.example.com', ports: [] }),
      rawService('pending', { clusterIP: undefined }),
    );
    assert.equal(model.desiredState().size, 0);
  });

  test('a dual-stack service is served on its IPv4 ClusterIP', () => {
    const model = modelWith(rawService('web', { clusterIP: 'fd00::7', clusterIPs: ['fd00::7', '10.96.0.7'] }));
    assert.deepEqual(portState(model, 'default/web:http').frontends.map((f) => f.ip), ['10.96.0.7']);
  });

  test('only the Node of this node counts', () => {
    const model = modelWith(rawService('web'));
    const before = model.desiredState().get('default/web:http');
    assert.equal(model.upsert(parseObject(rawNode('worker-1', 'zone-a', '192.168.1.11'))), false);
    assert.equal(model.desiredState().get('default/web:http'), before);
  });
});

describe('address families', () => {
  const dualStack = (): RawObject[] => [
    rawService('web', { type: 'NodePort', clusterIP: '10.96.0.7', clusterIPs: ['10.96.0.7', 'fd00:96::7'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }),
    rawSlice('web-v4', 'web', httpPort, [{ ...readyEndpoint('10.244.0.5'), nodeName: 'node-a' }]),
    { ...rawSlice('web-v6', 'web', httpPort, [{ ...readyEndpoint('fd00:10:244::5'), nodeName: 'node-a' }]), addressType: 'IPv6' },
    {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-a' },
      status: { addresses: [{ type: 'InternalIP', address: '172.18.0.2' }, { type: 'InternalIP', address: 'fd00:18::2' }] },
    },
  ];

  test('a dual-stack service: each family\'s frontends reach only that family\'s endpoints, NodePorts on the node\'s address of each', () => {
    const model = testModel({ families: ['IPv4', 'IPv6'] });
    for (const raw of dualStack()) model.upsert(parseObject(raw));
    const shown = portState(model, 'default/web:http').frontends.map((f) => `${f.kind} ${f.family} ${f.ip}:${f.port} -> ${f.external.destinations.map((d) => d.ip).join()}`);
    assert.deepEqual(shown, [
      'ClusterIP IPv4 10.96.0.7:80 -> 10.244.0.5',
      'ClusterIP IPv6 fd00:96::7:80 -> fd00:10:244::5',
      'NodePort IPv4 172.18.0.2:30080 -> 10.244.0.5',
      'NodePort IPv6 fd00:18::2:30080 -> fd00:10:244::5',
    ]);
  });

  test("loadBalancerSourceRanges are split by family, as kube-proxy's proxier of each family sees them: a family without ranges, or with one of all its addresses, allows every source", () => {
    const withRanges = (ranges: string[]): RawObject[] => {
      const [service, ...rest] = dualStack();
      const spec = { ...(service!.spec as object), type: 'LoadBalancer', loadBalancerSourceRanges: ranges };
      return [{ ...service!, spec, status: { loadBalancer: { ingress: [{ ip: '198.51.100.7' }, { ip: '2001:db8::7' }] } } }, ...rest];
    };
    const rangesOf = (ranges: string[]): string[] => {
      const model = testModel({ families: ['IPv4', 'IPv6'] });
      for (const raw of withRanges(ranges)) model.upsert(parseObject(raw));
      return portState(model, 'default/web:http')
        .frontends.filter((f) => f.kind === 'LoadBalancerIP')
        .map((f) => `${f.ip}: ${f.sourceRanges.join(' ') || 'every source'}`);
    };
    assert.deepEqual(rangesOf(['203.0.113.0/24', '2001:db8:1::/48']), ['198.51.100.7: 203.0.113.0/24', '2001:db8::7: 2001:db8:1::/48']);
    assert.deepEqual(rangesOf(['203.0.113.0/24']), ['198.51.100.7: 203.0.113.0/24', '2001:db8::7: every source']);
    assert.deepEqual(rangesOf(['203.0.113.0/24', '::/0']), ['198.51.100.7: 203.0.113.0/24', '2001:db8::7: every source']);
    // The node's IPv6 address lies in the IPv6 range: only the IPv6 VIP is added for its loopback.
    assert.deepEqual(rangesOf(['203.0.113.0/24', 'fd00:18::/64']), ['198.51.100.7: 203.0.113.0/24', '2001:db8::7: fd00:18::/64 2001:db8::7/128']);
  });

  test('a family without endpoints rejects on its frontends, whatever the other family has', () => {
    const model = testModel({ families: ['IPv4', 'IPv6'] });
    for (const raw of dualStack().filter((o) => (o.metadata as { name: string }).name !== 'web-v6')) model.upsert(parseObject(raw));
    const verdicts = portState(model, 'default/web:http').frontends.filter((f) => f.kind === 'ClusterIP').map((f) => `${f.family} ${f.noEndpoints} ${f.internal.destinations.length}`);
    assert.deepEqual(verdicts, ['IPv4 drop 1', 'IPv6 reject 0']);
  });

  test('a backend serving IPv4 only: IPv6 addresses are left out with a warning, an IPv6-only service is refused with one', () => {
    const { log, lines } = captureLogger();
    const model = testModel({ log });
    for (const raw of dualStack()) model.upsert(parseObject(raw));
    model.upsert(parseObject(rawService('v6only', { clusterIP: 'fd00:96::8', clusterIPs: ['fd00:96::8'] })));
    assert.deepEqual(portState(model, 'default/web:http').frontends.map((f) => f.ip), ['10.96.0.7', '172.18.0.2']);
    assert.equal(model.desiredState().has('default/v6only:http'), false);
    const warned = lines.filter((l) => l.level === 40).map((l) => `${l.msg} ${l.name}: ${l.reason}`);
    assert.deepEqual(warned.sort(), [
      'not serving v6only: no cluster IP of a served family; fd00:96::8: this backend serves IPv4 only',
      'served otherwise than asked web: addresses left out, fd00:96::7: this backend serves IPv4 only',
    ]);
  });
});

describe('changes', () => {
  test('a slice arriving before its service is used once the service arrives', () => {
    const model = modelWith(rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]));
    assert.equal(model.desiredState().size, 0);
    model.upsert(parseObject(rawService('web')));
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['10.1.0.1:8080']);
  });

  test('deleting a slice removes its endpoints; deleting the service removes its ports', () => {
    const model = modelWith(
      rawService('web'),
      rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]),
      rawSlice('web-2', 'web', httpPort, [readyEndpoint('10.1.0.2')]),
    );
    assert.equal(model.delete('EndpointSlice', 'default', 'web-1'), true);
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['10.1.0.2:8080']);
    assert.equal(model.delete('Service', 'default', 'web'), true);
    assert.equal(model.desiredState().has('default/web:http'), false);
    assert.equal(model.delete('Service', 'default', 'web'), false);
    assert.equal(model.delete('Node', '', 'worker-9'), false);
  });

  test('a slice moved to another service leaves the old one', () => {
    const model = modelWith(rawService('web'), rawService('api', { clusterIP: '10.96.0.11' }), rawSlice('shared-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]));
    model.upsert(parseObject(rawSlice('shared-1', 'api', httpPort, [readyEndpoint('10.1.0.1')])));
    assert.deepEqual(destinationsOf(model, 'default/web:http'), []);
    assert.deepEqual(destinationsOf(model, 'default/api:http'), ['10.1.0.1:8080']);
  });

  test('an endpoint turning unready leaves the destinations', () => {
    const model = modelWith(rawService('web'), rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1'), readyEndpoint('10.1.0.2')]));
    model.upsert(parseObject(rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1'), { addresses: ['10.1.0.2'], conditions: { ready: false } }])));
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['10.1.0.1:8080']);
  });

  test('resolveChanges() lets the event loop run; what arrives meanwhile is in the same state and change set', async () => {
    const model = testModel();
    for (let i = 0; i < 20_000; i++) model.upsert(parseObject(rawService(`svc-${i}`, { clusterIP: `10.96.${i >> 8}.${i & 255}` })));
    let arrived = false;
    setImmediate(() => {
      arrived = true;
      model.upsert(parseObject(rawService('late', { clusterIP: '10.97.0.1' })));
    });
    await model.resolveChanges();
    assert.ok(arrived, 'the event loop did not run during resolveChanges()');
    assert.equal(model.desiredState().size, 20_001);
    const changes = model.changes.take();
    assert.equal(changes.changedKeys.size, 20_001);
    assert.ok(changes.changedKeys.has('default/late:http'));
  });
});

describe('caching', () => {
  test('the state is updated in place: unchanged services keep their entries, changed ones get new ones', () => {
    const model = modelWith(rawService('web'), rawService('api', { clusterIP: '10.96.0.11' }), rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.1')]));
    const state = model.desiredState();
    const api = state.get('default/api:http');
    const web = state.get('default/web:http')!;
    assert.equal(model.upsert(parseObject(rawService('web'))), false, 'an identical upsert is not a change');
    assert.equal(model.desiredState().get('default/web:http'), web);

    model.upsert(parseObject(rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.1.0.2')])));
    assert.equal(model.desiredState(), state, 'one map, brought up to date');
    assert.equal(state.get('default/api:http'), api, 'an unchanged service keeps its entry');
    assert.deepEqual(destinationsOf(model, 'default/web:http'), ['10.1.0.2:8080']);
    assert.deepEqual(web.frontends[0]!.internal.destinations, [{ ip: '10.1.0.1', port: 8080 }], 'an entry handed out is never modified');

    model.delete('Service', 'default', 'api');
    assert.equal(model.desiredState().has('default/api:http'), false);
  });

  test('100,000 service ports: one change is recomputed quickly', () => {
    const model = testModel();
    const serviceCount = 50_000;
    const ports = [
      { name: 'http', port: 80 },
      { name: 'https', port: 443 },
    ];
    const slicePorts = [
      { name: 'http', port: 8080 },
      { name: 'https', port: 8443 },
    ];
    for (let i = 0; i < serviceCount; i++) {
      const name = `svc-${i}`;
      model.upsert(parseObject(rawService(name, { clusterIP: `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, ports })));
      const endpoints = [0, 1, 2].map((j) => readyEndpoint(`10.200.${(i >> 8) & 255}.${(i + j) & 255}`));
      model.upsert(parseObject(rawSlice(`${name}-abcde`, name, slicePorts, endpoints)));
    }
    const full = timed(() => model.desiredState());
    assert.equal(full.result.size, 100_000);

    model.upsert(parseObject(rawSlice('svc-7-abcde', 'svc-7', slicePorts, [readyEndpoint('10.250.0.1')])));
    const incremental = timed(() => model.desiredState());
    assert.equal(incremental.result.size, 100_000);
    assert.deepEqual(incremental.result.get('default/svc-7:https')!.frontends[0]!.internal.destinations, [{ ip: '10.250.0.1', port: 8443 }]);
    // Only svc-7 is recomputed: a small share of the full computation, a bound
    // that scales with the machine (an absolute one failed under load).
    assert.ok(incremental.ms < full.ms / 20, `recomputing after one change took ${incremental.ms.toFixed(1)} ms (full: ${full.ms.toFixed(1)} ms)`);
  });
});

function timed<T>(fn: () => T): { result: T; ms: number } {
  const start = performance.now();
  const result = fn();
  return { result, ms: performance.now() - start };
}

describe('load-balancing algorithm', () => {
  const annotated = (name: string, clusterIP: string, algorithm: string): RawObject => {
    const raw = rawService(name, { clusterIP });
    (raw.metadata as Record<string, unknown>).annotations = { 'kube-lb.io/lb-algorithm': algorithm };
    return raw;
  };

  test('the annotation kube-lb.io/lb-algorithm chooses per service; --bpf-lb-algorithm is the default', () => {
    for (const fallback of ['random', 'maglev'] as const) {
      const model = testModel({ lbAlgorithm: fallback });
      for (const raw of [rawService('plain'), annotated('hashed', '10.96.0.11', 'maglev'), annotated('spread', '10.96.0.12', 'random')]) model.upsert(parseObject(raw));
      assert.deepEqual(
        ['plain', 'hashed', 'spread'].map((name) => portState(model, `default/${name}:http`).lbAlgorithm),
        [fallback, 'maglev', 'random'],
        `default ${fallback}`,
      );
    }
  });

  test('an unknown value is a warning naming the service, once while it lasts, and the default applies', () => {
    const { log, lines } = captureLogger();
    const model = testModel({ lbAlgorithm: 'random', log });
    model.upsert(parseObject(annotated('web', '10.96.0.11', 'Maglev')));
    model.upsert(parseObject(rawSlice('web-1', 'web', httpPort, [readyEndpoint('10.244.0.5')])));
    assert.equal(portState(model, 'default/web:http').lbAlgorithm, 'random');
    const warnings = lines.filter((l) => l.msg === 'served otherwise than asked');
    assert.equal(warnings.length, 1, 'not again when its endpoints change');
    assert.deepEqual([warnings[0]!.namespace, warnings[0]!.name], ['default', 'web']);
    assert.match(String(warnings[0]!.reason), /kube-lb\.io\/lb-algorithm="Maglev" names no algorithm \(random, maglev\); using random/);
  });
});
