// The whole Service API on the model alone: what each frontend of a
// service port sends where, as kube-proxy decides it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ResolvedFrontend, ServicePortState } from '../../src/model/contract.js';
import type { ProxyModel } from '../../src/model/model.js';
import { parseCidr } from '../../src/net/ip.js';
import { parseObject, type RawObject } from '../../src/model/objects.js';
import { captureLogger, rawNode, rawService, rawSlice, type RawEndpoint, testModel } from './fixtures.js';

const NODE_IP = '192.168.1.11';
const httpPort = [{ name: 'http', port: 8080 }];
const node = rawNode('node-a', 'zone-a', NODE_IP);

function on(nodeName: string, ip: string, conditions: RawEndpoint['conditions'] = { ready: true }, zone?: string): RawEndpoint {
  return { addresses: [ip], conditions, nodeName, ...(zone !== undefined && { zone }) };
}

function load(model: ProxyModel, ...objects: RawObject[]): ProxyModel {
  for (const raw of objects) model.upsert(parseObject(raw));
  return model;
}

function portOf(model: ProxyModel, key = 'default/web:http'): ServicePortState {
  const state = model.desiredState().get(key);
  assert.ok(state, `no state for ${key}; have ${[...model.desiredState().keys()].join(', ')}`);
  return state;
}

/** Each frontend as "KIND ip:port" with its internal and external destinations' IPs. */
function summary(model: ProxyModel, key = 'default/web:http'): Record<string, { internal: string[]; external: string[] }> {
  return Object.fromEntries(
    portOf(model, key).frontends.map((f) => [`${f.kind} ${f.ip}:${f.port}`, { internal: f.internal.destinations.map((d) => d.ip), external: f.external.destinations.map((d) => d.ip) }]),
  );
}

function frontend(model: ProxyModel, kind: ResolvedFrontend['kind'], key = 'default/web:http'): ResolvedFrontend {
  const f = portOf(model, key).frontends.find((x) => x.kind === kind);
  assert.ok(f, `no ${kind} frontend`);
  return f;
}

const endpoints = [on('node-a', '10.244.0.11'), on('node-b', '10.244.1.11')];

describe('frontend kinds', () => {
  test('a LoadBalancer service: ClusterIP, external IPs, load-balancer IPs and a NodePort on the primary node IP', () => {
    const service = rawService('web', { type: 'LoadBalancer', externalIPs: ['203.0.113.5'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] });
    // An ingress the load balancer proxies (ipMode Proxy) and a hostname-only one bring no frontend.
    service.status = { loadBalancer: { ingress: [{ ip: '198.51.100.7' }, { ip: '198.51.100.8', ipMode: 'Proxy' }, { hostname: 'lb.example.com' }] } };
    const model = load(testModel(), node, service, rawSlice('web-1', 'web', httpPort, endpoints));
    const both = { internal: ['10.244.0.11', '10.244.1.11'], external: ['10.244.0.11', '10.244.1.11'] };
    assert.deepEqual(summary(model), {
      'ClusterIP 10.96.0.10:80': both,
      'ExternalIP 203.0.113.5:80': both,
      'LoadBalancerIP 198.51.100.7:80': both,
      [`NodePort ${NODE_IP}:30080`]: both,
    });
    for (const f of portOf(model).frontends) {
      assert.equal(f.masquerade, f.kind === 'ClusterIP' ? 'off-cluster' : 'all', `${f.kind}: externalTrafficPolicy Cluster masquerades every source`);
      assert.equal(f.internal, f.external, `${f.kind}: one set serves both`);
      assert.equal(f.family, 'IPv4');
      assert.equal(f.affinity, null);
    }
  });

  test('NodePorts follow --nodeport-addresses: CIDRs pick node addresses; 127.0.0.1 only where allowed', () => {
    const service = rawService('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] });
    const twoAddresses = { ...node, status: { addresses: [{ type: 'InternalIP', address: NODE_IP }, { type: 'ExternalIP', address: '203.0.113.9' }] } };
    const nodePorts = (model: ProxyModel): string[] => portOf(model).frontends.filter((f) => f.kind === 'NodePort').map((f) => f.ip);
    assert.deepEqual(nodePorts(load(testModel(), twoAddresses, service)), [NODE_IP], 'primary: the InternalIP');
    assert.deepEqual(nodePorts(load(testModel({ nodePortAddresses: [parseCidr('203.0.113.0/24')] }), twoAddresses, service)), ['203.0.113.9']);
    const all = [parseCidr('0.0.0.0/0')];
    assert.deepEqual(nodePorts(load(testModel({ nodePortAddresses: all }), twoAddresses, service)), [NODE_IP, '203.0.113.9']);
    assert.deepEqual(nodePorts(load(testModel({ nodePortAddresses: all, localhostNodePorts: true }), twoAddresses, service)), [NODE_IP, '203.0.113.9', '127.0.0.1']);
    assert.deepEqual(nodePorts(load(testModel({ localhostNodePorts: true }), twoAddresses, service)), [NODE_IP], 'primary never includes loopback');
    assert.deepEqual(nodePorts(load(testModel(), service)), [], 'no Node object, no node address');
  });

  test('a change of the node addresses moves the NodePorts and marks the service changed', () => {
    const model = load(testModel(), node, rawService('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }));
    model.desiredState();
    model.changes.take();
    model.upsert(parseObject(rawNode('node-a', 'zone-a', '192.168.1.99')));
    assert.deepEqual(frontend(model, 'NodePort').ip, '192.168.1.99');
    assert.deepEqual([...model.changes.take().changedKeys], ['default/web:http']);
  });

  test('an external IP equal to the ClusterIP is served once, as the ClusterIP', () => {
    const model = load(testModel(), rawService('web', { externalIPs: ['10.96.0.10'] }));
    assert.deepEqual(portOf(model).frontends.map((f) => f.kind), ['ClusterIP']);
  });
});

describe('traffic policies', () => {
  const lb = (extra: RawObject): RawObject =>
    rawService('web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }], healthCheckNodePort: 32000, ...extra });

  test('externalTrafficPolicy Local: outside traffic only to local endpoints, unmasqueraded; in-cluster traffic to all', () => {
    const model = load(testModel(), node, lb({ externalTrafficPolicy: 'Local', externalIPs: ['203.0.113.5'] }), rawSlice('web-1', 'web', httpPort, endpoints));
    const all = ['10.244.0.11', '10.244.1.11'];
    assert.deepEqual(summary(model), {
      'ClusterIP 10.96.0.10:80': { internal: all, external: all },
      'ExternalIP 203.0.113.5:80': { internal: all, external: ['10.244.0.11'] },
      [`NodePort ${NODE_IP}:30080`]: { internal: all, external: ['10.244.0.11'] },
    });
    assert.equal(frontend(model, 'NodePort').masquerade, 'node');
    assert.equal(frontend(model, 'NodePort').external.policy, 'local');
    assert.equal(frontend(model, 'ClusterIP').masquerade, 'off-cluster');
    assert.deepEqual([...model.healthChecks()], [[32000, { namespace: 'default', name: 'web', localEndpoints: 1 }]]);
  });

  test('externalTrafficPolicy Local without local endpoints: outside traffic is dropped, the health check says 0', () => {
    const model = load(testModel(), node, lb({ externalTrafficPolicy: 'Local' }), rawSlice('web-1', 'web', httpPort, [on('node-b', '10.244.1.11')]));
    const np = frontend(model, 'NodePort');
    assert.deepEqual(np.external.destinations, []);
    assert.equal(np.noEndpoints, 'drop');
    assert.deepEqual(np.internal.destinations.map((d) => d.ip), ['10.244.1.11']);
    assert.equal(model.healthChecks().get(32000)?.localEndpoints, 0);
  });

  test('externalTrafficPolicy Cluster serves no health check', () => {
    const model = load(testModel(), node, lb({}), rawSlice('web-1', 'web', httpPort, endpoints));
    assert.equal(model.healthChecks().size, 0);
  });

  test('internalTrafficPolicy Local: the ClusterIP sends only to local endpoints, and drops when there are none', () => {
    const local = load(testModel(), node, rawService('web', { internalTrafficPolicy: 'Local' }), rawSlice('web-1', 'web', httpPort, endpoints));
    assert.deepEqual(summary(local), { 'ClusterIP 10.96.0.10:80': { internal: ['10.244.0.11'], external: ['10.244.0.11'] } });
    const none = load(testModel(), node, rawService('web', { internalTrafficPolicy: 'Local' }), rawSlice('web-1', 'web', httpPort, [on('node-b', '10.244.1.11')]));
    assert.deepEqual(frontend(none, 'ClusterIP').internal.destinations, []);
    assert.equal(frontend(none, 'ClusterIP').noEndpoints, 'drop');
  });

  test('no usable endpoint anywhere: reject', () => {
    const model = load(testModel(), node, lb({}), rawSlice('web-1', 'web', httpPort, [on('node-b', '10.244.1.11', { ready: false })]));
    for (const f of portOf(model).frontends) assert.equal(f.noEndpoints, 'reject', f.kind);
    const empty = load(testModel(), rawService('web'));
    assert.equal(frontend(empty, 'ClusterIP').noEndpoints, 'reject');
  });

  test('terminating endpoints serve when nothing ready is left, for each policy', () => {
    const terminating = { ready: false, serving: true, terminating: true };
    const model = load(
      testModel(),
      node,
      lb({ externalTrafficPolicy: 'Local' }),
      rawSlice('web-1', 'web', httpPort, [on('node-a', '10.244.0.11', terminating), on('node-b', '10.244.1.11', terminating), on('node-b', '10.244.1.12', { ready: false, serving: false, terminating: true })]),
    );
    const np = frontend(model, 'NodePort');
    assert.deepEqual(np.internal.destinations.map((d) => d.ip), ['10.244.0.11', '10.244.1.11']);
    assert.deepEqual(np.external.destinations.map((d) => d.ip), ['10.244.0.11']);
    assert.equal(model.healthChecks().get(32000)?.localEndpoints, 0, 'terminating endpoints do not count for the load balancer');
  });
});

describe('topology', () => {
  const hinted = (ip: string, nodeName: string, zones: string[]): RawEndpoint => ({ ...on(nodeName, ip), hints: { forZones: zones.map((name) => ({ name })) } });

  test('zone hints keep traffic in this zone; hints missing on one endpoint are all ignored', () => {
    const model = load(testModel(), node, rawService('web'), rawSlice('web-1', 'web', httpPort, [hinted('10.244.0.11', 'node-a', ['zone-a']), hinted('10.244.1.11', 'node-b', ['zone-b'])]));
    assert.deepEqual(summary(model)['ClusterIP 10.96.0.10:80']!.internal, ['10.244.0.11']);
    load(model, rawSlice('web-1', 'web', httpPort, [hinted('10.244.0.11', 'node-a', ['zone-a']), on('node-b', '10.244.1.11')]));
    assert.deepEqual(summary(model)['ClusterIP 10.96.0.10:80']!.internal, ['10.244.0.11', '10.244.1.11']);
  });

  test('trafficDistribution derives hints where no controller wrote them (manifests mode)', () => {
    const slice = rawSlice('web-1', 'web', httpPort, [on('node-a', '10.244.0.11', { ready: true }, 'zone-a'), on('node-b', '10.244.1.11', { ready: true }, 'zone-b'), on('node-c', '10.244.2.11', { ready: true }, 'zone-a')]);
    const close = rawService('web', { trafficDistribution: 'PreferClose' });
    assert.deepEqual(summary(load(testModel({ deriveTopologyHints: true }), node, close, slice))['ClusterIP 10.96.0.10:80']!.internal, ['10.244.0.11', '10.244.2.11']);
    assert.deepEqual(summary(load(testModel({ deriveTopologyHints: false }), node, close, slice))['ClusterIP 10.96.0.10:80']!.internal, ['10.244.0.11', '10.244.1.11', '10.244.2.11'], 'the API server mode trusts the controller');
    const sameNode = rawService('web', { trafficDistribution: 'PreferSameNode' });
    assert.deepEqual(summary(load(testModel({ deriveTopologyHints: true }), node, sameNode, slice))['ClusterIP 10.96.0.10:80']!.internal, ['10.244.0.11']);
  });
});

describe('affinity and source ranges', () => {
  test('sessionAffinity ClientIP carries its timeout to every frontend', () => {
    const model = load(testModel(), node, rawService('web', { type: 'NodePort', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, ports: [{ name: 'http', port: 80, nodePort: 30080 }] }));
    for (const f of portOf(model).frontends) assert.deepEqual(f.affinity, { timeoutSeconds: 60 }, f.kind);
    const defaulted = load(testModel(), rawService('web', { sessionAffinity: 'ClientIP' }));
    assert.deepEqual(frontend(defaulted, 'ClusterIP').affinity, { timeoutSeconds: 10800 });
  });

  test('loadBalancerSourceRanges apply to load-balancer IPs only; a range holding the node adds the VIPs themselves', () => {
    const lb = (ranges: string[]): RawObject => ({
      ...rawService('web', { type: 'LoadBalancer', loadBalancerSourceRanges: ranges, ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
      status: { loadBalancer: { ingress: [{ ip: '198.51.100.7' }] } },
    });
    const model = load(testModel(), node, lb(['203.0.113.0/24']));
    assert.deepEqual(frontend(model, 'LoadBalancerIP').sourceRanges, ['203.0.113.0/24']);
    assert.deepEqual(frontend(model, 'NodePort').sourceRanges, []);
    assert.deepEqual(frontend(model, 'ClusterIP').sourceRanges, []);
    const withNode = load(testModel(), node, lb(['203.0.113.0/24', '192.168.0.0/16']));
    assert.deepEqual(frontend(withNode, 'LoadBalancerIP').sourceRanges, ['203.0.113.0/24', '192.168.0.0/16', '198.51.100.7/32']);
  });

  test('a source range that does not parse rejects the service, naming the field', () => {
    assert.throws(() => parseObject(rawService('web', { loadBalancerSourceRanges: ['10.0.0.0/33'] })), /spec\.loadBalancerSourceRanges\[0\]: not a CIDR/);
    assert.throws(() => parseObject(rawService('web', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } } })), /timeoutSeconds: 86401 is out of range/);
  });
});

describe('services kube-lb leaves alone', () => {
  test('headless, ExternalName and another proxy\'s services produce nothing, with their endpoints', () => {
    const other = rawService('other', { clusterIP: '10.96.0.12' });
    (other.metadata as Record<string, unknown>).labels = { 'service.kubernetes.io/service-proxy-name': 'other-proxy' };
    const model = load(
      testModel(),
      rawService('headless', { clusterIP: 'None' }),
      rawSlice('headless-1', 'headless', httpPort, endpoints),
      rawService('db', { type: 'ExternalName', clusterIP: undefined, externalName: 'db.example.com', ports: [] }),
      other,
      rawSlice('other-1', 'other', httpPort, endpoints),
    );
    assert.deepEqual([...model.desiredState().keys()], []);
  });

  test('SCTP ports are left out when the backend cannot translate them, with a warning naming the service', () => {
    const { log, lines } = captureLogger();
    const model = load(testModel({ log }), rawService('web', { ports: [{ name: 'http', port: 80 }, { name: 'sig', port: 9, protocol: 'SCTP' }] }));
    assert.deepEqual([...model.desiredState().keys()], ['default/web:http']);
    assert.ok(lines.some((l) => l.level === 40 && l.name === 'web' && l.port === 'sig' && /SCTP/.test(String(l.reason))), JSON.stringify(lines));
  });
});

describe('cluster IPs the API server would not have allocated', () => {
  test('reserved addresses, pod addresses and addresses outside the service range are refused, with a warning naming the service', () => {
    const { log, lines } = captureLogger();
    const model = load(
      testModel({ log, clusterCidrs: [parseCidr('10.244.0.0/16')], serviceClusterIPRanges: [parseCidr('10.96.0.0/12')] }),
      ...['0.0.0.0', '127.0.0.1', '169.254.1.1', '224.0.0.1', '255.255.255.255', '10.244.0.12', '8.8.8.8'].map((ip, i) => rawService(`bad-${i}`, { clusterIP: ip })),
      rawService('good', { clusterIP: '10.96.0.10' }),
    );
    assert.deepEqual([...model.desiredState().keys()], ['default/good:http']);
    const warnings = lines.filter((l) => l.level === 40 && l.msg === 'not serving');
    assert.equal(warnings.length, 7);
    assert.match(String(warnings.find((l) => l.name === 'bad-5')?.reason), /cluster IP 10\.244\.0\.12 is in the pods' range 10\.244\.0\.0\/16/);
    assert.match(String(warnings.find((l) => l.name === 'bad-6')?.reason), /outside --service-cluster-ip-range 10\.96\.0\.0\/12/);
  });

  test('without the ranges, only reserved addresses are refused', () => {
    const model = load(testModel(), rawService('public', { clusterIP: '8.8.8.8' }), rawService('loop', { clusterIP: '127.0.0.1' }));
    assert.deepEqual([...model.desiredState().keys()], ['default/public:http']);
  });
});

describe('two services claiming one frontend', () => {
  const created = (raw: RawObject, at: string): RawObject => ({ ...raw, metadata: { ...(raw.metadata as RawObject), creationTimestamp: at } });

  test('the older keeps the frontend, the newer is refused once in the log; deleting the older hands it over', () => {
    const { log, lines } = captureLogger();
    const older = created(rawService('a', { type: 'NodePort', clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }, 'other'), '2026-01-01T00:00:00Z');
    const newer = created(rawService('b', { type: 'NodePort', clusterIP: '10.96.0.2', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), '2026-02-01T00:00:00Z');
    const model = load(testModel({ log }), node, newer, older);
    assert.deepEqual(portOf(model, 'other/a:http').frontends.map((f) => f.kind), ['ClusterIP', 'NodePort']);
    assert.deepEqual(portOf(model, 'default/b:http').frontends.map((f) => f.kind), ['ClusterIP'], 'the newer keeps what is not contested');
    const refusals = (): unknown[] => lines.filter((l) => l.msg === 'refused a frontend another service owns');
    assert.equal(refusals().length, 1);
    assert.match(JSON.stringify(refusals()[0]), /"name":"b".*other\/a/);
    model.upsert(parseObject(newer));
    model.desiredState();
    assert.equal(refusals().length, 1, 'not logged again');

    model.changes.take();
    model.delete('Service', 'other', 'a');
    assert.deepEqual(portOf(model, 'default/b:http').frontends.map((f) => f.kind), ['ClusterIP', 'NodePort']);
    assert.deepEqual([...model.changes.take().changedKeys].sort(), ['default/b:http', 'other/a:http']);
  });

  test('a ClusterIP taken by a service in another namespace stays with the older one', () => {
    const model = load(
      testModel(),
      created(rawService('web'), '2026-01-01T00:00:00Z'),
      created(rawService('thief', {}, 'intruder'), '2026-03-01T00:00:00Z'),
    );
    assert.ok(model.desiredState().has('default/web:http'));
    assert.equal(model.desiredState().has('intruder/thief:http'), false, 'a port left with no frontend is not served');
  });
});
