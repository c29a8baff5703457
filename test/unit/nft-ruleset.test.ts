// The nftables backend's translation of resolved frontends, its
// transactions and its reading of `nft -j list`. The generated text is
// also checked by the kernel itself (`nft -c` in a throwaway network
// namespace), so it must run as root.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Destination, EndpointSet, FrontendKind, ResolvedFrontend, ServicePortState } from '../../src/model/contract.js';
import { parseListing, viewsFromListing } from '../../src/backends/nftables/listing.js';
import { fullTransaction, partialTransaction } from '../../src/backends/nftables/transactions.js';
import {
  type PortRules,
  affinitySetName,
  emptyTransaction,
  endpointChainName,
  externalChainName,
  firewallChainName,
  fixedChains,
  policyChainName,
  portRules,
  renderTransaction,
  TABLE_FAMILIES,
  trafficCounterName,
} from '../../src/backends/nftables/ruleset.js';
import { requireCommand, requireRoot } from '../lib/preconditions.js';
import { resolvedFrontend } from '../lib/frontends.js';

const CIDR = '10.244.0.0/16';
const OPTS = { family: 'IPv4' as const, localTraffic: { by: 'cidr' as const, cidr: CIDR } };
const V4 = TABLE_FAMILIES.IPv4;
const V6 = TABLE_FAMILIES.IPv6;
const MARK = '0x4000';
const LOCAL_EP: Destination = { ip: '10.244.0.11', port: 8080 };
const REMOTE_EP: Destination = { ip: '10.244.1.21', port: 8080 };
const cluster: EndpointSet = { policy: 'cluster', destinations: [LOCAL_EP, REMOTE_EP], onThisNode: [LOCAL_EP] };
const local: EndpointSet = { policy: 'local', destinations: [LOCAL_EP], onThisNode: [LOCAL_EP] };

function frontend(kind: FrontendKind, ip: string, port: number, fields: Partial<ResolvedFrontend> = {}): ResolvedFrontend {
  return resolvedFrontend(kind, ip, port, { internal: cluster, external: cluster, noEndpoints: 'drop', ...fields });
}

function servicePort(name: string, frontends: ResolvedFrontend[]): ServicePortState {
  return { key: `ns1/${name}:p80`, namespace: 'ns1', name, portName: 'p80', protocol: frontends[0]!.protocol, frontends, lbAlgorithm: 'random', settings: {} };
}

/** A LoadBalancer service with externalTrafficPolicy: Local, source ranges and ClientIP affinity. */
function localLoadBalancer(): ServicePortState {
  const shared = { internal: cluster, affinity: { timeoutSeconds: 600 } };
  const external = { ...shared, external: local, masquerade: 'node' as const };
  return servicePort('lb', [
    frontend('ClusterIP', '10.96.0.20', 80, shared),
    frontend('ExternalIP', '192.0.2.10', 80, external),
    frontend('LoadBalancerIP', '198.51.100.7', 80, { ...external, sourceRanges: ['203.0.113.0/24'] }),
    frontend('NodePort', '172.18.0.2', 30080, external),
  ]);
}

const table = (ports: ServicePortState[]): Map<string, PortRules> => new Map(ports.map((sp) => [sp.key, portRules(sp, OPTS)]));
const NO_KERNEL_OBJECTS = { chains: new Set<string>(), sets: new Map<string, number>(), counters: new Set<string>() };

/** Has the kernel check the text, in a network namespace of its own: nothing is applied. */
function nftCheck(text: string): void {
  requireRoot();
  requireCommand('nft', 'apt-get install nftables');
  requireCommand('unshare', 'apt-get install util-linux');
  execFileSync('unshare', ['--net', 'nft', '-c', '-f', '-'], { input: text, stdio: ['pipe', 'pipe', 'pipe'] });
}

describe('nftables ruleset', () => {
  const lb = localLoadBalancer();
  const named = lb;
  const [ep1, ep2] = [LOCAL_EP, REMOTE_EP].map((d) => endpointChainName(named, d));
  const [aff1, aff2] = [LOCAL_EP, REMOTE_EP].map((d) => affinitySetName(named, d));
  const svc = policyChainName(named, 'cluster');
  const loc = policyChainName(named, 'local');
  const ext = externalChainName(named);
  const fw = firewallChainName(named);

  it("names chains like kube-proxy's nftables proxier: hash prefix, then namespace/name/protocol/port", () => {
    assert.match(svc, /^service-[A-Z2-7]{8}-ns1\/lb\/tcp\/p80$/);
    assert.match(loc, /^local-[A-Z2-7]{8}-ns1\/lb\/tcp\/p80$/);
    assert.match(ext, /^external-[A-Z2-7]{8}-ns1\/lb\/tcp\/p80$/);
    assert.match(fw, /^firewall-[A-Z2-7]{8}-ns1\/lb\/tcp\/p80$/);
    assert.match(ep1!, /^endpoint-[A-Z2-7]{8}-ns1\/lb\/tcp\/p80__10\.244\.0\.11\/8080$/);
    assert.match(aff1!, /^affinity-[A-Z2-7]{8}-ns1\/lb\/tcp\/p80__10\.244\.0\.11\/8080$/);
  });

  it('a Local load balancer: ClusterIP to its set, the rest through the external chain, the firewall before NAT, affinity sets', () => {
    const rules = portRules(lb, OPTS);
    const elements = (map: string): string[] => [...(rules.elements.get(map as never)?.values() ?? [])].map((e) => `${e.key} "${e.comment}" : ${e.verdict}`);
    assert.deepEqual(elements('service-ips'), [
      `10.96.0.20 . tcp . 80 "ClusterIP ns1/lb:p80" : goto ${svc}`,
      `192.0.2.10 . tcp . 80 "ExternalIP ns1/lb:p80" : goto ${ext}`,
      `198.51.100.7 . tcp . 80 "LoadBalancerIP ns1/lb:p80" : goto ${ext}`,
    ]);
    assert.deepEqual(elements('service-nodeports'), [`172.18.0.2 . tcp . 30080 "NodePort ns1/lb:p80" : goto ${ext}`]);
    assert.deepEqual(elements('firewall-ips'), [`198.51.100.7 . tcp . 80 "LoadBalancerIP ns1/lb:p80" : goto ${fw}`]);
    assert.deepEqual(elements('no-endpoint-services'), []);
    assert.deepEqual(elements('no-endpoint-nodeports'), []);
    assert.deepEqual(Object.fromEntries(rules.chains), {
      [svc]: [
        `ip daddr 10.96.0.20 tcp dport 80 ip saddr != ${CIDR} jump mark-for-masquerade`,
        `ip saddr @${aff1} goto ${ep1}`,
        `ip saddr @${aff2} goto ${ep2}`,
        `numgen random mod 2 vmap { 0 : goto ${ep1} , 1 : goto ${ep2} }`,
      ],
      [loc]: [`ip saddr @${aff1} goto ${ep1}`, `goto ${ep1}`],
      [ep1!]: ['ip saddr 10.244.0.11 jump mark-for-masquerade', `update @${aff1} { ip saddr }`, `meta l4proto tcp counter name ${ep1} dnat to 10.244.0.11:8080`],
      [ep2!]: ['ip saddr 10.244.1.21 jump mark-for-masquerade', `update @${aff2} { ip saddr }`, `meta l4proto tcp counter name ${ep2} dnat to 10.244.1.21:8080`],
      [ext]: [`ip saddr ${CIDR} goto ${svc}`, 'fib saddr type local jump mark-for-masquerade', `fib saddr type local goto ${svc}`, `goto ${loc}`],
      [fw]: ['ip saddr != { 203.0.113.0/24 } drop'],
    });
    assert.deepEqual(Object.fromEntries(rules.sets), { [aff1!]: 600, [aff2!]: 600 });
  });

  it('local traffic by bridge or interface prefix matches the input interface, as kube-proxy detects it', () => {
    for (const [localTraffic, name] of [
      [{ by: 'bridge', bridge: 'cni0' }, 'cni0'],
      [{ by: 'prefix', prefix: 'cali' }, 'cali*'],
    ] as const) {
      const rules = portRules(lb, { family: 'IPv4', localTraffic });
      assert.equal(rules.chains.get(svc)![0], `ip daddr 10.96.0.20 tcp dport 80 iifname != "${name}" jump mark-for-masquerade`);
      assert.equal(rules.chains.get(ext)![0], `iifname "${name}" goto ${svc}`);
    }
  });

  it('a Cluster NodePort masquerades every source, as kube-proxy does, and goes to the cluster set', () => {
    const np = servicePort('np', [frontend('ClusterIP', '10.96.0.21', 80), frontend('NodePort', '172.18.0.2', 30081)]);
    const rules = portRules(np, OPTS);
    assert.deepEqual(rules.chains.get(externalChainName(np)), ['jump mark-for-masquerade', `goto ${policyChainName(np, 'cluster')}`]);
    assert.equal(rules.sets.size, 0);
  });

  it('no endpoints at all: only reject elements, no chains; no local endpoint: external traffic dropped, pods and the node still served', () => {
    const none: EndpointSet = { policy: 'cluster', destinations: [], onThisNode: [] };
    const dead = servicePort('dead', [
      frontend('ClusterIP', '10.96.0.22', 53, { protocol: 'UDP', internal: none, external: none, noEndpoints: 'reject' }),
      frontend('NodePort', '172.18.0.2', 30053, { protocol: 'UDP', internal: none, external: none, noEndpoints: 'reject' }),
    ]);
    const deadRules = portRules(dead, OPTS);
    assert.equal(deadRules.chains.size, 0);
    assert.deepEqual([...deadRules.elements.get('no-endpoint-services')!.values()].map((e) => `${e.key} : ${e.verdict}`), ['10.96.0.22 . udp . 53 : goto reject-chain']);
    assert.deepEqual([...deadRules.elements.get('no-endpoint-nodeports')!.values()].map((e) => `${e.key} : ${e.verdict}`), ['172.18.0.2 . udp . 30053 : goto reject-chain']);

    const noLocal: EndpointSet = { policy: 'local', destinations: [], onThisNode: [] };
    const remote = servicePort('remote', [frontend('LoadBalancerIP', '198.51.100.8', 80, { external: noLocal, masquerade: 'node' as const })]);
    const r = remote;
    const rules = portRules(remote, OPTS);
    assert.deepEqual([...rules.elements.get('no-endpoint-services')!.values()].map((e) => `${e.key} : ${e.verdict}`), ['198.51.100.8 . tcp . 80 : drop']);
    assert.deepEqual([...rules.elements.get('service-ips')!.values()].map((e) => e.verdict), [`goto ${externalChainName(r)}`]);
    assert.deepEqual(rules.chains.get(externalChainName(r)), [
      `ip saddr ${CIDR} goto ${policyChainName(r, 'cluster')}`,
      'fib saddr type local jump mark-for-masquerade',
      `fib saddr type local goto ${policyChainName(r, 'cluster')}`,
    ]);
    assert.equal(rules.chains.has(policyChainName(r, 'local')), false);
  });

  it('internalTrafficPolicy Local shows only as a ClusterIP whose set is the local one', () => {
    const itp = servicePort('itp', [frontend('ClusterIP', '10.96.0.23', 80, { internal: local, external: local })]);
    const rules = portRules(itp, OPTS);
    assert.deepEqual([...rules.elements.get('service-ips')!.values()].map((e) => e.verdict), [`goto ${policyChainName(itp, 'local')}`]);
  });

  it('filter-forward drops what conntrack marks invalid, unless --conntrack-tcp-be-liberal makes conntrack track it', () => {
    assert.deepEqual(fixedChains(V4, MARK, true).get('filter-forward'), ['ct state invalid drop', 'ct state new jump endpoints-check']);
    assert.deepEqual(fixedChains(V4, MARK, false).get('filter-forward'), ['ct state new jump endpoints-check']);
  });

  it('the kernel accepts a full transaction with every kind of frontend, and a partial one that changes affinity, endpoints and ranges', () => {
    const none: EndpointSet = { policy: 'cluster', destinations: [], onThisNode: [] };
    const others = [
      servicePort('np', [frontend('ClusterIP', '10.96.0.21', 80), frontend('NodePort', '172.18.0.2', 30081)]),
      servicePort('dead', [frontend('ClusterIP', '10.96.0.22', 53, { protocol: 'UDP', internal: none, external: none, noEndpoints: 'reject' })]),
    ];
    const before = table([lb, ...others]);
    // The same load balancer with a shorter affinity, one endpoint gone and no source ranges.
    const one: EndpointSet = { policy: 'cluster', destinations: [LOCAL_EP], onThisNode: [LOCAL_EP] };
    const changed = servicePort(
      'lb',
      lb.frontends.map((f) => ({ ...f, internal: one, external: f.external === cluster ? one : f.external, affinity: { timeoutSeconds: 60 }, sourceRanges: [] })),
    );
    const after = table([changed, ...others]);
    const partial = partialTransaction(after, before);
    assert.deepEqual(partial.deleteSets.sort(), [aff1, aff2].sort(), 'the old timeout means a new set');
    assert.deepEqual([...partial.addSets], [[aff1, 60]]);
    assert.deepEqual(partial.removeChains.sort(), [ep2, fw].sort());
    assert.deepEqual(partial.deleteElements.filter((e) => e.map !== 'traffic'), [{ map: 'firewall-ips', key: '198.51.100.7 . tcp . 80' }]);
    // The endpoint that went leaves @traffic under every frontend, and its counters go with its chain.
    const leaving = partial.deleteElements.filter((e) => e.map === 'traffic').map((e) => e.key.split(' . '));
    assert.deepEqual(new Set(leaving.map((k) => `${k[3]}:${k[4]}`)), new Set(['10.244.1.21:8080']));
    assert.deepEqual(new Set(leaving.map((k) => k[0])), new Set(lb.frontends.map((f) => f.ip)));
    assert.deepEqual(partial.deleteCounters.sort(), [ep2, trafficCounterName(ep2)].sort());
    assert.deepEqual(partialTransaction(after, after), emptyTransaction(), 'nothing changed, nothing sent');
    // The partial transaction runs against the table the full one made, in one batch after it.
    nftCheck(renderTransaction(V4, fullTransaction(fixedChains(V4, MARK, true), before, NO_KERNEL_OBJECTS)) + renderTransaction(V4, partial));
  });

  it('a dual-stack port: each family\'s table gets its own frontends, with its own address matches, types and bracketed dnat, and the kernel accepts both', () => {
    const EP6: Destination = { ip: 'fd00:10:244::11', port: 8080 };
    const set6: EndpointSet = { policy: 'cluster', destinations: [EP6], onThisNode: [] };
    const dual = servicePort('dual', [
      frontend('ClusterIP', '10.96.0.30', 80, { affinity: { timeoutSeconds: 60 } }),
      frontend('ClusterIP', 'fd00:96::30', 80, { internal: set6, external: set6, affinity: { timeoutSeconds: 60 } }),
      frontend('NodePort', 'fd00:18::2', 30080, { internal: set6, external: set6 }),
    ]);
    const v6 = portRules(dual, { family: 'IPv6', localTraffic: { by: 'cidr', cidr: 'fd00:10:244::/48' } });
    assert.deepEqual([...v6.elements.get('service-ips')!.keys()], ['fd00:96::30 . tcp . 80']);
    assert.deepEqual([...v6.elements.get('service-nodeports')!.keys()], ['fd00:18::2 . tcp . 30080']);
    const ep = endpointChainName(dual, EP6);
    const aff = affinitySetName(dual, EP6);
    assert.deepEqual(v6.chains.get(policyChainName(dual, 'cluster')), [
      'ip6 daddr fd00:96::30 tcp dport 80 ip6 saddr != fd00:10:244::/48 jump mark-for-masquerade',
      `ip6 saddr @${aff} goto ${ep}`,
      `goto ${ep}`,
    ]);
    assert.deepEqual(v6.chains.get(ep), ['ip6 saddr fd00:10:244::11 jump mark-for-masquerade', `update @${aff} { ip6 saddr }`, `meta l4proto tcp counter name ${ep} dnat to [fd00:10:244::11]:8080`]);
    const v4 = portRules(dual, OPTS);
    assert.deepEqual([...v4.elements.get('service-ips')!.keys()], ['10.96.0.30 . tcp . 80']);
    assert.equal(v4.elements.get('service-nodeports')!.size, 0);
    const full = (fam: typeof V4, rules: PortRules): string => renderTransaction(fam, fullTransaction(fixedChains(fam, MARK, true), new Map([[dual.key, rules]]), NO_KERNEL_OBJECTS));
    const text6 = full(V6, v6);
    assert.match(text6, /^add table ip6 kube-lb/);
    assert.match(text6, /add map ip6 kube-lb traffic \{ type ipv6_addr \. inet_proto \. inet_service \. ipv6_addr \. inet_service : counter/);
    assert.match(text6, /add set ip6 kube-lb affinity-\S+ \{ type ipv6_addr ;/);
    nftCheck(full(V4, v4) + text6);
  });

  it('renders deletions in an order the kernel accepts: elements, then rules, then sets and chains', () => {
    const lines = renderTransaction(V4, {
      ...emptyTransaction(),
      write: new Map([['service-X', ['goto endpoint-Y']]]),
      deleteElements: [{ map: 'service-ips', key: '1.2.3.4 . tcp . 80' }],
      deleteSets: ['affinity-OLD'],
      removeChains: ['endpoint-OLD'],
      addCounters: ['endpoint-Y'],
      deleteCounters: ['endpoint-OLD'],
    })
      .trim()
      .split('\n');
    const at = (s: string): number => lines.findIndex((l) => l.startsWith(s));
    assert.equal(at('add table ip kube-lb'), 0);
    assert.ok(at('delete element ip kube-lb service-ips { 1.2.3.4 . tcp . 80 }') < at('flush chain ip kube-lb endpoint-OLD'));
    assert.ok(at('flush chain ip kube-lb endpoint-OLD') < at('delete set ip kube-lb affinity-OLD'));
    assert.ok(at('flush chain ip kube-lb endpoint-OLD') < at('delete chain ip kube-lb endpoint-OLD'));
    assert.ok(at('add counter ip kube-lb endpoint-Y') < at('add rule ip kube-lb service-X'), 'a counter exists before rules name it');
    assert.ok(at('delete chain ip kube-lb endpoint-OLD') < at('delete counter ip kube-lb endpoint-OLD'), 'a counter goes once no rule names it');
  });

  it('reads every frontend kind back from nft JSON, through the external, policy and endpoint chains', () => {
    const elem = (key: [string, string, number], comment: string, verdict: unknown): unknown => [{ elem: { val: { concat: key }, comment } }, verdict];
    const json = {
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'ip', name: 'kube-lb' } },
        {
          map: {
            name: 'service-ips',
            elem: [
              elem(['10.96.0.20', 'tcp', 80], 'ClusterIP ns1/lb:p80', { goto: { target: svc } }),
              elem(['198.51.100.7', 'tcp', 80], 'LoadBalancerIP ns1/lb:p80', { goto: { target: ext } }),
              elem(['198.51.100.8', 'tcp', 80], 'LoadBalancerIP ns1/remote:p80', { goto: { target: 'external-R' } }),
            ],
          },
        },
        { map: { name: 'service-nodeports', elem: [elem(['172.18.0.2', 'tcp', 30080], 'NodePort ns1/lb:p80', { goto: { target: ext } })] } },
        {
          map: {
            name: 'no-endpoint-services',
            elem: [elem(['10.96.0.22', 'udp', 53], 'ClusterIP ns1/dead:p80', { goto: { target: 'reject-chain' } }), elem(['198.51.100.8', 'tcp', 80], 'LoadBalancerIP ns1/remote:p80', { drop: null })],
          },
        },
        ...[svc, loc, ext, 'external-R', ep1, ep2].map((name) => ({ chain: { name } })),
        { rule: { chain: svc, expr: [{ match: { left: { payload: { field: 'saddr' } }, right: `@${aff1}` } }, { goto: { target: ep1 } }] } },
        { rule: { chain: svc, expr: [{ vmap: { key: { numgen: { mode: 'random', mod: 2 } }, data: { set: [[0, { goto: { target: ep1 } }], [1, { goto: { target: ep2 } }]] } } }] } },
        { rule: { chain: loc, expr: [{ goto: { target: ep1 } }] } },
        { rule: { chain: ext, expr: [{ match: {} }, { goto: { target: svc } }] } },
        { rule: { chain: ext, expr: [{ goto: { target: loc } }] } },
        { rule: { chain: 'external-R', expr: [{ match: {} }, { goto: { target: svc } }] } },
        { rule: { chain: ep1, expr: [{ match: {} }, { jump: { target: 'mark-for-masquerade' } }] } },
        { rule: { chain: ep1, expr: [{ match: {} }, { dnat: { addr: '10.244.0.11', port: 8080 } }] } },
        { rule: { chain: ep2, expr: [{ dnat: { addr: '10.244.1.21', port: 8080 } }] } },
      ],
    };
    assert.deepEqual(viewsFromListing(parseListing(JSON.stringify(json))), [
      { kind: 'ClusterIP', frontend: { ip: '10.96.0.20', port: 80, protocol: 'TCP' }, destinations: [LOCAL_EP, REMOTE_EP] },
      { kind: 'LoadBalancerIP', frontend: { ip: '198.51.100.7', port: 80, protocol: 'TCP' }, destinations: [LOCAL_EP] },
      // Pods and the node reach the cluster set, but traffic from outside has no local endpoint.
      { kind: 'LoadBalancerIP', frontend: { ip: '198.51.100.8', port: 80, protocol: 'TCP' }, destinations: [] },
      { kind: 'NodePort', frontend: { ip: '172.18.0.2', port: 30080, protocol: 'TCP' }, destinations: [LOCAL_EP] },
      { kind: 'ClusterIP', frontend: { ip: '10.96.0.22', port: 53, protocol: 'UDP' }, destinations: [] },
    ]);
  });
});
