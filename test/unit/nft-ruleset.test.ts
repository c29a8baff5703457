// The nftables backend's transactions and its reading of `nft -j list`,
// without a kernel.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { programmedPort } from '../lib/programmed-port.js';
import { parseListing, viewsFromListing } from '../../src/backends/nftables/listing.js';
import { buildRuleset, endpointChainName, renderTransaction, serviceChainName } from '../../src/backends/nftables/ruleset.js';

const sp = programmedPort({
  key: 'ns1/svc1:p80',
  namespace: 'ns1',
  name: 'svc1',
  portName: 'p80',
  frontend: { ip: '172.30.0.41', port: 80, protocol: 'TCP' },
  destinations: [
    { ip: '10.180.0.1', port: 80 },
    { ip: '10.180.0.2', port: 80 },
  ],
});

describe('nftables ruleset', () => {
  it("names chains like kube-proxy's nftables proxier: hash prefix, then namespace/name/protocol/port", () => {
    assert.match(serviceChainName(sp), /^service-[A-Z2-7]{8}-ns1\/svc1\/tcp\/p80$/);
    assert.match(endpointChainName(sp, sp.destinations[0]!), /^endpoint-[A-Z2-7]{8}-ns1\/svc1\/tcp\/p80__10\.180\.0\.1\/80$/);
  });

  it('maps the frontend to a service chain that picks an endpoint chain with numgen', () => {
    const rs = buildRuleset([sp, programmedPort({ ...sp, key: 'ns1/idle:dns', name: 'idle', portName: 'dns', frontend: { ip: '172.30.0.42', port: 53, protocol: 'UDP' }, destinations: [] })], '0x4000', '10.0.0.0/8');
    assert.deepEqual([...rs.maps['service-ips'].values()], [{ key: '172.30.0.41 . tcp . 80', comment: 'ns1/svc1:p80', verdict: `goto ${serviceChainName(sp)}` }]);
    assert.deepEqual([...rs.maps['no-endpoint-services'].keys()], ['172.30.0.42 . udp . 53']);
    const [e1, e2] = sp.destinations.map((d) => endpointChainName(sp, d));
    assert.deepEqual(rs.chains.get(serviceChainName(sp)), [
      'ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade',
      `numgen random mod 2 vmap { 0 : goto ${e1} , 1 : goto ${e2} }`,
    ]);
    assert.deepEqual(rs.chains.get(e1!), ['ip saddr 10.180.0.1 jump mark-for-masquerade', 'meta l4proto tcp dnat to 10.180.0.1:80']);
  });

  it('sends a single endpoint with a plain goto: no anonymous set, the same choice', () => {
    const one = programmedPort({ ...sp, destinations: [sp.destinations[0]!] });
    assert.deepEqual(buildRuleset([one], '0x4000', undefined).chains.get(serviceChainName(one)), [`goto ${endpointChainName(one, one.destinations[0]!)}`]);
  });

  it('renders a transaction that deletes elements before removing the chains they point at', () => {
    const text = renderTransaction({
      write: new Map([['service-X', ['numgen random mod 1 vmap { 0 : goto endpoint-Y }']]]),
      flushMaps: [],
      deleteElements: [{ map: 'service-ips', key: '1.2.3.4 . tcp . 80' }],
      addElements: [],
      removeChains: ['endpoint-OLD'],
    });
    const lines = text.trim().split('\n');
    const at = (s: string): number => lines.findIndex((l) => l.startsWith(s));
    assert.ok(at('add table ip kube-lb') === 0);
    assert.ok(at('delete element ip kube-lb service-ips { 1.2.3.4 . tcp . 80 }') < at('flush chain ip kube-lb endpoint-OLD'));
    assert.ok(at('flush chain ip kube-lb endpoint-OLD') < at('delete chain ip kube-lb endpoint-OLD'));
  });

  it('reads the service map, the numgen vmap and the dnat back from nft JSON', () => {
    const svc = serviceChainName(sp);
    const [e1, e2] = sp.destinations.map((d) => endpointChainName(sp, d));
    const json = {
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'ip', name: 'kube-lb' } },
        {
          map: {
            name: 'service-ips',
            elem: [
              [{ elem: { val: { concat: ['172.30.0.41', 'tcp', 80] }, comment: 'ns1/svc1:p80' } }, { goto: { target: svc } }],
              [{ concat: ['172.30.0.43', 'tcp', 80] }, { goto: { target: 'service-ONE' } }],
            ],
          },
        },
        { map: { name: 'no-endpoint-services', elem: [[{ concat: ['172.30.0.42', 'udp', 53] }, { goto: { target: 'reject-chain' } }]] } },
        ...[svc, 'service-ONE', e1, e2].map((name) => ({ chain: { name } })),
        // A service chain with a single endpoint has a plain goto.
        { rule: { chain: 'service-ONE', expr: [{ goto: { target: e1 } }] } },
        { rule: { chain: svc, expr: [{ vmap: { key: { numgen: { mode: 'random', mod: 2 } }, data: { set: [[0, { goto: { target: e1 } }], [1, { goto: { target: e2 } }]] } } }] } },
        { rule: { chain: e1, expr: [{ match: {} }, { dnat: { addr: '10.180.0.1', port: 80 } }] } },
        { rule: { chain: e2, expr: [{ dnat: { addr: '10.180.0.2', port: 80 } }] } },
      ],
    };
    assert.deepEqual(viewsFromListing(parseListing(JSON.stringify(json))), [
      { kind: 'ClusterIP', frontend: { ip: '172.30.0.41', port: 80, protocol: 'TCP' }, destinations: sp.destinations },
      { kind: 'ClusterIP', frontend: { ip: '172.30.0.43', port: 80, protocol: 'TCP' }, destinations: [sp.destinations[0]] },
      { kind: 'ClusterIP', frontend: { ip: '172.30.0.42', port: 53, protocol: 'UDP' }, destinations: [] },
    ]);
  });
});
