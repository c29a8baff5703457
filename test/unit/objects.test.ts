import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidObjectError, objectRef, parseObject, type EndpointSlice, type Node, type RawObject, type Service } from '../../src/model/objects.js';
import { rawNode, rawService, rawSlice, readyEndpoint } from './fixtures.js';

/** Asserts that parsing fails with exactly this message. */
function rejects(raw: unknown, message: string): void {
  assert.throws(() => parseObject(raw), (err: unknown) => {
    assert.ok(err instanceof InvalidObjectError, `expected InvalidObjectError, got ${String(err)}`);
    assert.equal(err.message, message);
    return true;
  });
}

function endpoints(count: number) {
  return Array.from({ length: count }, (_, i) => readyEndpoint(`10.1.${i >> 8}.${i & 255}`));
}

describe('Service', () => {
  test('applies API defaults', () => {
    const raw = rawService('web', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] });
    delete (raw.metadata as Record<string, unknown>).namespace;
    delete (raw.spec as Record<string, unknown>).type;
    const service = parseObject(raw) as Service;
    assert.equal(service.namespace, 'default');
    assert.equal(service.type, 'ClusterIP');
    assert.deepEqual(service.clusterIPs, ['10.96.0.10']);
    assert.deepEqual(service.ports, [{ name: '', protocol: 'TCP', port: 80, targetPort: 80, nodePort: null }]);
    assert.equal(service.sessionAffinity, 'None');
    assert.equal(service.sessionAffinityTimeoutSeconds, null);
    assert.equal(service.internalTrafficPolicy, 'Cluster');
    assert.equal(service.externalTrafficPolicy, 'Cluster');
    assert.equal(service.headless, false);
  });

  test('keeps the fields later features need', () => {
    const service = parseObject({
      ...rawService('web', {
        type: 'LoadBalancer',
        clusterIPs: ['10.96.0.10', 'fd00::10'],
        ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns-udp', nodePort: 30053 }],
        sessionAffinity: 'ClientIP',
        externalTrafficPolicy: 'Local',
        internalTrafficPolicy: 'Local',
        externalIPs: ['192.0.2.7'],
        healthCheckNodePort: 32000,
      }),
      status: { loadBalancer: { ingress: [{ ip: '198.51.100.1' }, { hostname: 'lb.example.com' }] } },
    }) as Service;
    assert.deepEqual(service.clusterIPs, ['10.96.0.10', 'fd00::10']);
    assert.deepEqual(service.ports, [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 'dns-udp', nodePort: 30053 }]);
    assert.equal(service.sessionAffinityTimeoutSeconds, 10800);
    assert.equal(service.externalTrafficPolicy, 'Local');
    assert.equal(service.internalTrafficPolicy, 'Local');
    assert.deepEqual(service.externalIPs, ['192.0.2.7']);
    assert.deepEqual(service.loadBalancerIPs, ['198.51.100.1']);
    assert.equal(service.healthCheckNodePort, 32000);
  });

  test('clusterIP None is headless, not an error', () => {
    const service = parseObject(rawService('db', { clusterIP: 'None', ports: [] })) as Service;
    assert.equal(service.headless, true);
    assert.deepEqual(service.clusterIPs, []);
  });

  test('a bad IP names the object, the field and the value', () => {
    rejects(rawService('web', { clusterIP: '10.96.0.300' }), 'Service default/web: spec.clusterIP: not an IP address: "10.96.0.300"');
    rejects(rawService('web', { clusterIP: '010.96.0.1' }), 'Service default/web: spec.clusterIP: not an IP address: "010.96.0.1"');
    rejects(rawService('web', { externalIPs: ['example.com'] }), 'Service default/web: spec.externalIPs[0]: not an IP address: "example.com"');
  });

  test('clusterIPs must agree with clusterIP', () => {
    rejects(
      rawService('web', { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.11'] }),
      'Service default/web: spec.clusterIPs: first entry "10.96.0.11" must equal spec.clusterIP "10.96.0.10"',
    );
  });

  test('a port out of range is rejected', () => {
    rejects(rawService('web', { ports: [{ name: 'http', port: 70000 }] }), 'Service default/web: spec.ports[0].port: 70000 is out of range 1-65535');
    rejects(rawService('web', { ports: [{ name: 'http', port: 0 }] }), 'Service default/web: spec.ports[0].port: 0 is out of range 1-65535');
    rejects(rawService('web', { ports: [{ name: 'http', port: 80, targetPort: 65536 }] }), 'Service default/web: spec.ports[0].targetPort: 65536 is out of range 1-65535');
    rejects(rawService('web', { ports: [{ name: 'http', port: '80' as unknown as number }] }), 'Service default/web: spec.ports[0].port: must be an integer, got "80"');
  });

  test('missing fields are named', () => {
    rejects(rawService('web', { ports: [{ name: 'http' } as never] }), 'Service default/web: spec.ports[0].port: required');
    rejects(rawService('web', { ports: [] }), 'Service default/web: spec.ports: required: at least one port');
    rejects({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'shop' }, spec: {} }, 'Service shop/<unnamed>: metadata.name: required');
    rejects({ apiVersion: 'v1', kind: 'Service' }, 'Service default/<unnamed>: metadata: required');
  });

  test('an unknown protocol or type is rejected', () => {
    rejects(rawService('web', { ports: [{ name: 'http', port: 80, protocol: 'HTTP' }] }), 'Service default/web: spec.ports[0].protocol: must be one of TCP, UDP, SCTP, got "HTTP"');
    rejects(rawService('web', { type: 'Ingress' }), 'Service default/web: spec.type: must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got "Ingress"');
  });

  test('ports must be named when there are several, and distinct', () => {
    rejects(rawService('web', { ports: [{ port: 80 }, { name: 'b', port: 81 }] }), 'Service default/web: spec.ports[0].name: required when the service has more than one port');
    rejects(rawService('web', { ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }] }), 'Service default/web: spec.ports[1].name: duplicate port name "a"');
    rejects(rawService('web', { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80 }] }), 'Service default/web: spec.ports[1]: duplicate port 80/TCP');
    assert.doesNotThrow(() => parseObject(rawService('dns', { ports: [{ name: 'a', port: 53 }, { name: 'b', port: 53, protocol: 'UDP' }] })));
  });

  test('labels and annotations must map strings to strings', () => {
    rejects(
      { ...rawService('web'), metadata: { name: 'web', labels: { enabled: true } } },
      'Service default/web: metadata.labels["enabled"]: must be a string, got true',
    );
  });
});

describe('EndpointSlice', () => {
  test('conditions follow the API: absent ready and serving mean true, absent terminating means false', () => {
    const slice = parseObject(
      rawSlice('web-abc12', 'web', [{ name: 'http', port: 8080 }], [
        { addresses: ['10.1.0.1'] },
        { addresses: ['10.1.0.2'], conditions: { ready: false } },
        { addresses: ['10.1.0.3'], conditions: { ready: false, serving: true, terminating: true } },
      ]),
    ) as EndpointSlice;
    const conditions = slice.endpoints.map(({ ready, serving, terminating }) => ({ ready, serving, terminating }));
    assert.deepEqual(conditions, [
      { ready: true, serving: true, terminating: false },
      { ready: false, serving: true, terminating: false },
      { ready: false, serving: true, terminating: true },
    ]);
  });

  test('keeps ports, node, zone and hints; defaults protocol to TCP and port name to ""', () => {
    const raw = rawSlice('web-abc12', 'web', [{ port: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }], []);
    raw.endpoints = [{ addresses: ['10.1.0.1'], nodeName: 'worker-1', zone: 'zone-a', hints: { forZones: [{ name: 'zone-a' }] } }];
    const slice = parseObject(raw) as EndpointSlice;
    assert.equal(slice.serviceName, 'web');
    assert.deepEqual(slice.ports, [{ name: '', port: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }]);
    assert.equal(slice.endpoints[0]!.nodeName, 'worker-1');
    assert.equal(slice.endpoints[0]!.zone, 'zone-a');
    assert.deepEqual(slice.endpoints[0]!.hints, { forZones: ['zone-a'], forNodes: [] });
  });

  test('a bad endpoint address is rejected', () => {
    rejects(
      rawSlice('web-abc12', 'web', [{ name: 'http', port: 8080 }], [readyEndpoint('10.1.0.1'), readyEndpoint('fd00::1')]),
      'EndpointSlice default/web-abc12: endpoints[1].addresses[0]: not an IPv4 address: "fd00::1"',
    );
    rejects(rawSlice('web-abc12', 'web', [], [{ addresses: [] }]), 'EndpointSlice default/web-abc12: endpoints[0].addresses: required: at least one address');
  });

  test('a slice port out of range is rejected', () => {
    rejects(rawSlice('web-abc12', 'web', [{ name: 'http', port: 65536 }], []), 'EndpointSlice default/web-abc12: ports[0].port: 65536 is out of range 1-65535');
  });

  test('the service-name label and addressType are required', () => {
    const unlabeled = rawSlice('web-abc12', 'web', [], []);
    (unlabeled.metadata as Record<string, unknown>).labels = {};
    rejects(unlabeled, 'EndpointSlice default/web-abc12: metadata.labels["kubernetes.io/service-name"]: required');
    const untyped = rawSlice('web-abc12', 'web', [], []);
    delete untyped.addressType;
    rejects(untyped, 'EndpointSlice default/web-abc12: addressType: required: one of IPv4, IPv6, FQDN');
  });

  test('a slice with 10,000 endpoints is rejected; 1,000 is the limit', () => {
    rejects(
      rawSlice('web-abc12', 'web', [{ name: 'http', port: 8080 }], endpoints(10_000)),
      'EndpointSlice default/web-abc12: endpoints: too many items: 10000 (at most 1000)',
    );
    const slice = parseObject(rawSlice('web-abc12', 'web', [{ name: 'http', port: 8080 }], endpoints(1000))) as EndpointSlice;
    assert.equal(slice.endpoints.length, 1000);
  });

  test('IPv6 slices are read, their addresses checked against the type; FQDN slices are ignored with a reason, not rejected', () => {
    const raw = (addressType: string, address: string): RawObject => ({ ...rawSlice('web-v6', 'web', [{ name: 'http', port: 8080 }], [{ addresses: [address] }]), addressType });
    const v6 = parseObject(raw('IPv6', 'fd00::1')) as EndpointSlice;
    assert.equal(v6.ignoredReason, null);
    assert.deepEqual(v6.endpoints.map((e) => e.addresses), [['fd00::1']]);
    const spelled = parseObject(raw('IPv6', 'FD00:0:0::1')) as EndpointSlice;
    assert.deepEqual(spelled.endpoints.map((e) => e.addresses), [['fd00::1']], 'one spelling per address');
    assert.throws(() => parseObject(raw('IPv6', '10.0.0.1')), /endpoints\[0\]\.addresses\[0\]: not an IPv6 address: "10\.0\.0\.1"/);
    assert.throws(() => parseObject(raw('IPv4', 'fd00::1')), /not an IPv4 address: "fd00::1"/);
    const fqdn = parseObject(raw('FQDN', 'db.example.com')) as EndpointSlice;
    assert.equal(fqdn.ignoredReason, 'addressType FQDN is not supported (IPv4 and IPv6 only), as in kube-proxy');
    assert.deepEqual(fqdn.endpoints, []);
  });
});

describe('Node', () => {
  test('reads name, zone and addresses', () => {
    const node = parseObject(rawNode('worker-1', 'zone-a', '192.168.1.11')) as Node;
    assert.deepEqual(node, {
      kind: 'Node',
      namespace: '',
      name: 'worker-1',
      labels: { 'topology.kubernetes.io/zone': 'zone-a' },
      zone: 'zone-a',
      addresses: [{ type: 'InternalIP', address: '192.168.1.11' }, { type: 'Hostname', address: 'worker-1' }],
      podCIDRs: [],
    });
  });

  test('reads spec.podCIDRs, else spec.podCIDR', () => {
    const raw = rawNode('worker-1', 'zone-a', '192.168.1.11');
    assert.deepEqual((parseObject({ ...raw, spec: { podCIDR: '10.244.1.0/24' } }) as Node).podCIDRs, ['10.244.1.0/24']);
    assert.deepEqual((parseObject({ ...raw, spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:1::/64'] } }) as Node).podCIDRs, ['10.244.1.0/24', 'fd00:1::/64']);
    rejects({ ...raw, spec: { podCIDRs: ['10.244.1.0'] } }, 'Node worker-1: spec.podCIDRs[0]: not a CIDR such as 10.0.0.0/8: "10.244.1.0"');
  });

  test('a bad InternalIP names the node', () => {
    rejects(rawNode('worker-1', 'zone-a', '192.168.1.300'), 'Node worker-1: status.addresses[0].address: not an IP address: "192.168.1.300"');
  });
});

describe('names', () => {
  test('hostile names are data: rejected with a quoted, single-line message', () => {
    const forged = 'web\n{"level":60,"msg":"forged"}';
    assert.throws(() => parseObject(rawService(forged)), (err: unknown) => {
      assert.ok(err instanceof InvalidObjectError);
      assert.ok(!err.message.includes('\n'), err.message);
      assert.ok(err.message.startsWith('Service default/"web\\n{\\"level\\":60'), err.message);
      assert.match(err.reason, /^metadata\.name: .* is not a DNS-1035 label/);
      return true;
    });
    rejects(rawService('../../etc/passwd'), 'Service default/"../../etc/passwd": metadata.name: "../../etc/passwd" is not a DNS-1035 label (lowercase letters, digits and "-", starting with a letter, ending with a letter or digit), at most 63 characters');
    rejects(rawService('web', {}, 'kube-system; rm -rf /'), 'Service "kube-system; rm -rf /"/web: metadata.namespace: "kube-system; rm -rf /" is not a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit), at most 63 characters');
  });

  test('a very long name is cut short in the message', () => {
    const long = 'a'.repeat(100_000);
    assert.throws(() => parseObject(rawService(long)), (err: unknown) => {
      assert.ok(err instanceof InvalidObjectError);
      assert.ok(err.message.length < 400, `message is ${err.message.length} characters`);
      return true;
    });
  });

  test('label and annotation values are kept verbatim, even keys like __proto__', () => {
    const raw = rawService('web');
    (raw.metadata as Record<string, unknown>).annotations = JSON.parse('{"note": "$(rm -rf /); <script>", "__proto__": "x"}');
    const service = parseObject(raw) as Service;
    assert.equal(service.annotations.note, '$(rm -rf /); <script>');
    assert.equal(Object.getOwnPropertyDescriptor(service.annotations, '__proto__')?.value, 'x');
    assert.equal(Object.getPrototypeOf(service.annotations), Object.prototype);
  });
});

describe('object kinds', () => {
  test('objectRef defaults the namespace and leaves Nodes cluster-scoped', () => {
    assert.deepEqual(objectRef({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' } }), { kind: 'Service', namespace: 'default', name: 'web' });
    assert.deepEqual(objectRef(rawNode('worker-1', 'zone-a', '192.168.1.11')), { kind: 'Node', namespace: '', name: 'worker-1' });
  });

  test('unsupported kinds and API versions are rejected by name', () => {
    const expected = '(expected v1 Service, discovery.k8s.io/v1 EndpointSlice, v1 Node)';
    rejects({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } }, `Deployment web: unsupported apiVersion "apps/v1" and kind "Deployment" ${expected}`);
    rejects(
      { apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice', metadata: { name: 'web-abc12' } },
      `EndpointSlice web-abc12: unsupported apiVersion "discovery.k8s.io/v1beta1" and kind "EndpointSlice" ${expected}`,
    );
    rejects('just a string', `object <unnamed>: unsupported apiVersion undefined and kind undefined ${expected}`);
  });
});
