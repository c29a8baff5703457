// The iptables backend's rule text and its reading of iptables-save, without
// a kernel: kube-proxy's chain names, probabilities, restore input.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ProgrammedPort } from '../../src/backends/netfilter/frontends.js';
import { type ClusterIpPortSpec, programmedPort } from '../lib/programmed-port.js';
import {
  endpointChainName,
  filterServicesRules,
  probability,
  renderRestore,
  serviceChainName,
  servicePortChains,
} from '../../src/backends/iptables/rules.js';
import { parseSave, tokenize, viewsFromSave } from '../../src/backends/iptables/save.js';

function servicePort(over: Partial<ClusterIpPortSpec> = {}): ProgrammedPort {
  return programmedPort({
    key: 'ns1/svc1:p80',
    namespace: 'ns1',
    name: 'svc1',
    portName: 'p80',
    frontend: { ip: '172.30.0.41', port: 80, protocol: 'TCP' },
    destinations: [],
    ...over,
  });
}

describe('iptables rules', () => {
  it("names chains like kube-proxy (vectors from kube-proxy's own tests)", () => {
    const sp = servicePort();
    assert.equal(serviceChainName(sp), 'KUBE-SVC-XPGD46QRK7WJZT7O');
    assert.equal(endpointChainName(sp, { ip: '10.180.0.1', port: 80 }), 'KUBE-SEP-SXIVWICOYRO3J4NJ');
  });

  it('prints probabilities with 10 decimals', () => {
    assert.deepEqual([4, 3, 2].map(probability), ['0.2500000000', '0.3333333333', '0.5000000000']);
  });

  it('spreads over endpoints with 1/n, 1/(n-1), ... and no match on the last; hairpin and DNAT per endpoint', () => {
    const sp = servicePort({ destinations: [1, 2, 3].map((i) => ({ ip: `10.180.0.${i}`, port: 8080 })) });
    const chains = servicePortChains(sp, '10.0.0.0/8');
    const svc = chains.get(serviceChainName(sp))!;
    assert.equal(svc[0], '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41/32 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ');
    assert.match(svc[1]!, /--probability 0\.3333333333 -j KUBE-SEP-/);
    assert.match(svc[2]!, /--probability 0\.5000000000 -j KUBE-SEP-/);
    assert.doesNotMatch(svc[3]!, /statistic/);
    const sep = chains.get(endpointChainName(sp, sp.destinations[0]!))!;
    assert.deepEqual(sep, [
      '-m comment --comment "ns1/svc1:p80" -s 10.180.0.1/32 -j KUBE-MARK-MASQ',
      '-m comment --comment "ns1/svc1:p80" -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:8080',
    ]);
    assert.equal(chains.size, 4);
  });

  it('writes no chains for a port without endpoints, and a REJECT in filter instead', () => {
    const sp = servicePort({ frontend: { ip: '172.30.0.42', port: 53, protocol: 'UDP' } });
    assert.equal(servicePortChains(sp, undefined).size, 0);
    assert.deepEqual(filterServicesRules([sp]), ['-m comment --comment "ns1/svc1:p80 has no endpoints" -m udp -p udp -d 172.30.0.42/32 --dport 53 -j REJECT']);
  });

  it('refuses text that could break out of a rule, naming the service port', () => {
    const sp = servicePort({ name: 'x"; -A INPUT -j DROP', key: 'ns1/x:p80' });
    assert.throws(() => servicePortChains(servicePort({ ...sp, destinations: [{ ip: '10.0.0.1', port: 1 }] }), undefined), /service port "ns1\/x:p80": .* cannot be used in a rule/);
  });

  it('renders one --noflush transaction: declarations, deletions, rules, inserts, removals', () => {
    const text = renderRestore({
      nat: { write: new Map([['KUBE-SVC-A', ['-j KUBE-SEP-B']]]), remove: ['KUBE-SEP-OLD'], insert: [{ chain: 'PREROUTING', rule: '-j KUBE-SERVICES' }], delete: [] },
      filter: { write: new Map(), remove: [], insert: [], delete: [] },
    });
    assert.equal(text, '*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-OLD - [0:0]\n-A KUBE-SVC-A -j KUBE-SEP-B\n-I PREROUTING -j KUBE-SERVICES\n-X KUBE-SEP-OLD\nCOMMIT\n');
    assert.equal(renderRestore({}), '');
  });
});

describe('iptables-save reading', () => {
  it('splits quoted words', () => {
    assert.deepEqual(tokenize('-A X -m comment --comment "a b \\"c\\"" -j Y'), ['-A', 'X', '-m', 'comment', '--comment', 'a b "c"', '-j', 'Y']);
  });

  it('turns KUBE-SERVICES, KUBE-SVC and KUBE-SEP chains back into frontends and destinations', () => {
    const save = `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-1
-A KUBE-SVC-A -j KUBE-SEP-2
-A KUBE-SEP-1 -s 10.244.0.11/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.0.11:8080
-A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.244.0.12:8080
COMMIT
`;
    const filter = `*filter
:KUBE-SERVICES - [0:0]
-A KUBE-SERVICES -d 10.96.0.20/32 -p udp -m comment --comment "default/idle:dns has no endpoints" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable
COMMIT
`;
    assert.deepEqual(viewsFromSave(parseSave(save, 'nat'), parseSave(filter, 'filter')), [
      { kind: 'ClusterIP', frontend: { ip: '10.96.0.10', port: 80, protocol: 'TCP' }, destinations: [{ ip: '10.244.0.11', port: 8080 }, { ip: '10.244.0.12', port: 8080 }] },
      { kind: 'ClusterIP', frontend: { ip: '10.96.0.20', port: 53, protocol: 'UDP' }, destinations: [] },
    ]);
  });
});
