// The iptables backend's rule text and its reading of iptables-save, without
// a kernel, in the style of kube-proxy's own proxier tests: sample service
// ports of each frontend kind in, the exact iptables-restore text out.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Destination, EndpointSet, FrontendKind, ResolvedFrontend, ServicePortState } from '../../src/model/contract.js';
import {
  assembleTables,
  type FamilyRulesOptions,
  endpointChainName,
  externalChainName,
  firewallChainName,
  policyChainName,
  portRules,
  probability,
  serviceChainName,
} from '../../src/backends/iptables/rules.js';
import { viewsFromSave } from '../../src/backends/iptables/save.js';
import { emptyUpdate, parseSave, renderRestore, sameRules, tokenize } from '../../src/backends/netfilter/iptables-text.js';
import { resolvedFrontend } from '../lib/frontends.js';
import type { LocalTraffic } from '../../src/config/local-traffic.js';

const LOCAL: LocalTraffic = { by: 'cidr', cidr: '10.0.0.0/8' };
const V4 = (local: LocalTraffic | null): FamilyRulesOptions => ({ family: 'IPv4', local });
const local1: Destination = { ip: '10.180.0.1', port: 80 };
const remote1: Destination = { ip: '10.180.1.1', port: 80 };
const set = (policy: EndpointSet['policy'], ...destinations: Destination[]): EndpointSet => ({ policy, destinations, onThisNode: [] });

function frontend(kind: FrontendKind, ip: string, port: number, over: Partial<ResolvedFrontend> = {}): ResolvedFrontend {
  return resolvedFrontend(kind, ip, port, { internal: set('cluster'), ...over });
}

function servicePort(frontends: ResolvedFrontend[], over: Partial<ServicePortState> = {}): ServicePortState {
  return { key: 'ns1/svc1:p80', namespace: 'ns1', name: 'svc1', portName: 'p80', protocol: frontends[0]!.protocol, frontends, lbAlgorithm: 'random', settings: {}, ...over };
}

/** The whole first-sync payload for `ports`, as the backend sends it. */
function restoreText(...ports: ServicePortState[]): string {
  const t = assembleTables('IPv4', ports.map((sp) => portRules(sp, V4(LOCAL))), '0x4000', true);
  const write = (chains: Map<string, string[]>) => ({ ...emptyUpdate(), write: chains });
  return renderRestore({ filter: write(t.filter), nat: write(t.nat) });
}

/** The lines of `text` for one table, without the fixed chains every sync writes. */
function tableLines(text: string, table: 'filter' | 'nat'): string[] {
  const section = text.split('COMMIT\n').find((s) => s.startsWith(`*${table}\n`))!;
  const fixed = /KUBE-(MARK-MASQ|POSTROUTING|FORWARD)\b/;
  return section.split('\n').slice(1).filter((l) => l !== '' && !fixed.test(l.split(' ').slice(0, 2).join(' ')));
}

describe('iptables rules', () => {
  it("names chains like kube-proxy (vectors from kube-proxy's own tests)", () => {
    const sp = servicePort([frontend('ClusterIP', '172.30.0.41', 80)]);
    assert.equal(serviceChainName(sp), 'KUBE-SVC-XPGD46QRK7WJZT7O');
    assert.equal(policyChainName(sp, 'local'), 'KUBE-SVL-XPGD46QRK7WJZT7O');
    assert.equal(externalChainName(sp), 'KUBE-EXT-XPGD46QRK7WJZT7O');
    assert.equal(firewallChainName(sp), 'KUBE-FW-XPGD46QRK7WJZT7O');
    assert.equal(endpointChainName(sp, local1, 'IPv4'), 'KUBE-SEP-SXIVWICOYRO3J4NJ');
  });

  it('prints probabilities with 10 decimals', () => {
    assert.deepEqual([4, 3, 2].map(probability), ['0.2500000000', '0.3333333333', '0.5000000000']);
  });

  it('a cluster IP: KUBE-SERVICES to KUBE-SVC, masquerading from outside the cluster, 1/n spread, hairpin and DNAT per endpoint', () => {
    const endpoints = [1, 2, 3].map((i) => ({ ip: `10.180.0.${i}`, port: 8080 }));
    const text = restoreText(servicePort([frontend('ClusterIP', '172.30.0.41', 80, { internal: set('cluster', ...endpoints) })]));
    assert.deepEqual(tableLines(text, 'filter'), [':KUBE-SERVICES - [0:0]', ':KUBE-EXTERNAL-SERVICES - [0:0]', ':KUBE-PROXY-FIREWALL - [0:0]']);
    assert.deepEqual(tableLines(text, 'nat'), [
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-NODEPORTS - [0:0]',
      ':KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]',
      ':KUBE-SEP-CPWPCALSNDDLLDLJ - [0:0]',
      ':KUBE-SEP-VLCBLZ3INDL6LVTP - [0:0]',
      ':KUBE-SEP-NAZVJRW4ZXJURRRS - [0:0]',
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41/32 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41/32 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:8080" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-CPWPCALSNDDLLDLJ',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-VLCBLZ3INDL6LVTP',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:8080" -j KUBE-SEP-NAZVJRW4ZXJURRRS',
      '-A KUBE-SEP-CPWPCALSNDDLLDLJ -m comment --comment "ns1/svc1:p80" -s 10.180.0.1/32 -j KUBE-MARK-MASQ',
      '-A KUBE-SEP-CPWPCALSNDDLLDLJ -m comment --comment "ns1/svc1:p80" -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:8080',
      '-A KUBE-SEP-VLCBLZ3INDL6LVTP -m comment --comment "ns1/svc1:p80" -s 10.180.0.2/32 -j KUBE-MARK-MASQ',
      '-A KUBE-SEP-VLCBLZ3INDL6LVTP -m comment --comment "ns1/svc1:p80" -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:8080',
      '-A KUBE-SEP-NAZVJRW4ZXJURRRS -m comment --comment "ns1/svc1:p80" -s 10.180.0.3/32 -j KUBE-MARK-MASQ',
      '-A KUBE-SEP-NAZVJRW4ZXJURRRS -m comment --comment "ns1/svc1:p80" -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:8080',
    ]);
  });

  it('without a cluster CIDR, a cluster IP masquerades only hairpin traffic', () => {
    const rules = portRules(servicePort([frontend('ClusterIP', '172.30.0.41', 80, { internal: set('cluster', local1) })]), V4(null));
    assert.deepEqual(rules.chains.get('KUBE-SVC-XPGD46QRK7WJZT7O'), ['-m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ']);
  });

  it('local traffic by bridge or interface prefix matches the input interface, as kube-proxy detects it', () => {
    const cluster = set('cluster', local1);
    const sp = servicePort([
      frontend('ClusterIP', '172.30.0.41', 80, { internal: cluster, masquerade: 'off-cluster' }),
      frontend('NodePort', '192.168.0.2', 3001, { internal: cluster, external: set('local', local1), masquerade: 'node' }),
    ]);
    for (const [local, match] of [
      [{ by: 'bridge', bridge: 'cni0' }, 'cni0'],
      [{ by: 'prefix', prefix: 'cali' }, 'cali+'],
    ] as const) {
      const rules = portRules(sp, V4(local));
      assert.match(rules.chains.get('KUBE-SVC-XPGD46QRK7WJZT7O')![0]!, new RegExp(`--dport 80 ! -i ${match.replace('+', '\\+')} -j KUBE-MARK-MASQ$`));
      assert.match(rules.chains.get('KUBE-EXT-XPGD46QRK7WJZT7O')![0]!, new RegExp(`external destinations" -i ${match.replace('+', '\\+')} -j KUBE-SVC-XPGD46QRK7WJZT7O$`));
    }
  });

  it('the fixed chains: mark, masquerade and the INVALID drop', () => {
    const t = assembleTables('IPv4', [], '0x4000', true);
    assert.deepEqual(t.nat.get('KUBE-MARK-MASQ'), ['-j MARK --or-mark 0x4000']);
    assert.deepEqual(t.nat.get('KUBE-POSTROUTING'), [
      '-m mark ! --mark 0x4000/0x4000 -j RETURN',
      '-j MARK --xor-mark 0x4000',
      '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]);
    assert.deepEqual(t.filter.get('KUBE-FORWARD'), ['-m conntrack --ctstate INVALID -j DROP']);
    assert.deepEqual(assembleTables('IPv4', [], '0x4000', false).filter.get('KUBE-FORWARD'), [], 'nothing to drop under --conntrack-tcp-be-liberal');
    assert.equal(t.localhostNodePorts, false);
  });

  it('an external IP and a NodePort with policy cluster: KUBE-EXT masquerades every source, then the cluster set; KUBE-NODEPORTS last', () => {
    const cluster = set('cluster', local1, remote1);
    const text = restoreText(servicePort([
      frontend('ClusterIP', '172.30.0.41', 80, { internal: cluster }),
      frontend('ExternalIP', '192.168.99.11', 80, { internal: cluster }),
      frontend('NodePort', '192.168.0.2', 3001, { internal: cluster }),
      frontend('NodePort', '192.168.1.2', 3001, { internal: cluster }),
    ]));
    const nat = tableLines(text, 'nat').filter((l) => /^-A KUBE-(SERVICES|NODEPORTS|EXT-)/.test(l));
    assert.deepEqual(nat, [
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41/32 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.11/32 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 192.168.0.2/32 -j KUBE-NODEPORTS',
      '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 192.168.1.2/32 -j KUBE-NODEPORTS',
      '-A KUBE-NODEPORTS -m comment --comment "ns1/svc1:p80 nodePort" -m tcp -p tcp -d 192.168.0.2/32 --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-A KUBE-NODEPORTS -m comment --comment "ns1/svc1:p80 nodePort" -m tcp -p tcp -d 192.168.1.2/32 --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ',
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O',
    ]);
    assert.ok(!text.includes('KUBE-SVL-'), 'no local set in use');
  });

  it('a load balancer with policy local, source ranges and affinity: the whole restore text', () => {
    const cluster = set('cluster', local1, remote1);
    const local = set('local', local1);
    const common = { internal: cluster, external: local, masquerade: 'node' as const, noEndpoints: 'drop' as const, affinity: { timeoutSeconds: 10800 } };
    const text = restoreText(servicePort([
      frontend('ClusterIP', '172.30.0.41', 80, { ...common, external: cluster, masquerade: 'off-cluster' as const }),
      frontend('LoadBalancerIP', '1.2.3.4', 80, { ...common, sourceRanges: ['203.0.113.0/25'] }),
      frontend('NodePort', '192.168.0.2', 3001, common),
    ]));
    assert.deepEqual(tableLines(text, 'filter'), [
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-EXTERNAL-SERVICES - [0:0]',
      ':KUBE-PROXY-FIREWALL - [0:0]',
      '-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by KUBE-FW-XPGD46QRK7WJZT7O" -m tcp -p tcp -d 1.2.3.4/32 --dport 80 -j DROP',
    ]);
    assert.deepEqual(tableLines(text, 'nat'), [
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-NODEPORTS - [0:0]',
      ':KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]',
      ':KUBE-FW-XPGD46QRK7WJZT7O - [0:0]',
      ':KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]',
      ':KUBE-SVL-XPGD46QRK7WJZT7O - [0:0]',
      ':KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]',
      ':KUBE-SEP-TOIS5JUHRKSSXDL7 - [0:0]',
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41/32 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4/32 --dport 80 -j KUBE-FW-XPGD46QRK7WJZT7O',
      '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 192.168.0.2/32 -j KUBE-NODEPORTS',
      '-A KUBE-NODEPORTS -m comment --comment "ns1/svc1:p80 nodePort" -m tcp -p tcp -d 192.168.0.2/32 --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O',
      '-A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-XPGD46QRK7WJZT7O',
      '-A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41/32 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --rcheck --seconds 10800 --reap -j KUBE-SEP-SXIVWICOYRO3J4NJ',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.1.1:80" -m recent --name KUBE-SEP-TOIS5JUHRKSSXDL7 --rcheck --seconds 10800 --reap -j KUBE-SEP-TOIS5JUHRKSSXDL7',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.1.1:80" -j KUBE-SEP-TOIS5JUHRKSSXDL7',
      '-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --rcheck --seconds 10800 --reap -j KUBE-SEP-SXIVWICOYRO3J4NJ',
      '-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ',
      '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment "ns1/svc1:p80" -s 10.180.0.1/32 -j KUBE-MARK-MASQ',
      '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment "ns1/svc1:p80" -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80',
      '-A KUBE-SEP-TOIS5JUHRKSSXDL7 -m comment --comment "ns1/svc1:p80" -s 10.180.1.1/32 -j KUBE-MARK-MASQ',
      '-A KUBE-SEP-TOIS5JUHRKSSXDL7 -m comment --comment "ns1/svc1:p80" -m recent --name KUBE-SEP-TOIS5JUHRKSSXDL7 --set -m tcp -p tcp -j DNAT --to-destination 10.180.1.1:80',
    ]);
  });

  it('no endpoints anywhere: REJECT in filter for every frontend, and nothing in nat', () => {
    const none = { protocol: 'UDP' as const, internal: set('cluster') };
    const text = restoreText(servicePort([
      frontend('ClusterIP', '172.30.0.42', 53, none),
      frontend('ExternalIP', '192.168.99.11', 53, none),
      frontend('LoadBalancerIP', '1.2.3.4', 53, { ...none, sourceRanges: ['203.0.113.0/25'] }),
      frontend('NodePort', '192.168.0.2', 3053, none),
    ]));
    assert.deepEqual(tableLines(text, 'filter').filter((l) => l.startsWith('-A')), [
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP has no endpoints" -m udp -p udp -d 172.30.0.42/32 --dport 53 -j REJECT',
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 external IP has no endpoints" -m udp -p udp -d 192.168.99.11/32 --dport 53 -j REJECT',
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP has no endpoints" -m udp -p udp -d 1.2.3.4/32 --dport 53 -j REJECT',
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 nodePort has no endpoints" -m udp -p udp -d 192.168.0.2/32 --dport 3053 -j REJECT',
    ]);
    assert.deepEqual(tableLines(text, 'nat'), [':KUBE-SERVICES - [0:0]', ':KUBE-NODEPORTS - [0:0]']);
  });

  it('policy local without local endpoints: pods and the node still reach the cluster set through KUBE-EXT, everyone else is dropped', () => {
    const cluster = set('cluster', remote1);
    const common = { internal: cluster, external: set('local'), masquerade: 'node' as const, noEndpoints: 'drop' as const };
    const text = restoreText(servicePort([frontend('ClusterIP', '172.30.0.41', 80, { internal: cluster }), frontend('NodePort', '192.168.0.2', 3001, common)]));
    assert.deepEqual(tableLines(text, 'filter').filter((l) => l.startsWith('-A')), [
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 nodePort has no local endpoints" -m tcp -p tcp -d 192.168.0.2/32 --dport 3001 -j DROP',
    ]);
    assert.deepEqual(tableLines(text, 'nat').filter((l) => l.startsWith('-A KUBE-EXT-')), [
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
      '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O',
    ]);
  });

  it('an internal set without endpoints drops cluster IP traffic in filter KUBE-SERVICES', () => {
    const text = restoreText(servicePort([frontend('ClusterIP', '172.30.0.41', 80, { internal: set('local'), noEndpoints: 'drop' })]));
    assert.deepEqual(tableLines(text, 'filter').filter((l) => l.startsWith('-A')), [
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP has no local endpoints" -m tcp -p tcp -d 172.30.0.41/32 --dport 80 -j DROP',
    ]);
  });

  it('a NodePort on 127.0.0.1 asks for route_localnet and guards it as kube-proxy does', () => {
    const cluster = set('cluster', local1);
    const t = assembleTables('IPv4', [portRules(servicePort([frontend('ClusterIP', '172.30.0.41', 80, { internal: cluster }), frontend('NodePort', '127.0.0.1', 3001, { internal: cluster })]), V4(LOCAL))], '0x4000', true);
    assert.equal(t.localhostNodePorts, true);
    assert.deepEqual(t.filter.get('KUBE-PROXY-FIREWALL'), [
      '-m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    ]);
    assert.deepEqual(t.nat.get('KUBE-SERVICES')!.at(-1), '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 127.0.0.1/32 -j KUBE-NODEPORTS');
  });

  it("refuses frontends of one port that disagree on what kube-proxy's layout keeps once per port", () => {
    const a = frontend('ExternalIP', '192.168.99.11', 80, { internal: set('cluster', local1) });
    const b = frontend('NodePort', '192.168.0.2', 3001, { internal: set('cluster', local1) });
    assert.throws(() => portRules(servicePort([a, b]), V4(LOCAL)), /service port "ns1\/svc1:p80": its frontends differ in endpoint sets or masquerading/);
    const c = frontend('ClusterIP', '172.30.0.41', 80, { affinity: { timeoutSeconds: 60 } });
    assert.throws(() => portRules(servicePort([c, frontend('ExternalIP', '192.168.99.11', 80)]), V4(LOCAL)), /differ in session affinity/);
    const d = frontend('ClusterIP', '172.30.0.41', 80, { internal: set('cluster', local1) });
    const e = frontend('ExternalIP', '192.168.99.11', 80, { internal: set('cluster', remote1) });
    assert.throws(() => portRules(servicePort([d, e]), V4(LOCAL)), /two endpoint sets of policy cluster/);
  });

  it('refuses text that could break out of a rule, naming the service port', () => {
    const sp = servicePort([frontend('ClusterIP', '172.30.0.41', 80, { internal: set('cluster', local1) })], { name: 'x"; -A INPUT -j DROP', key: 'ns1/x:p80' });
    assert.throws(() => portRules(sp, V4(null)), /service port "ns1\/x:p80": .* cannot be used in a rule/);
  });

  it('renders one --noflush transaction: declarations, deletions, rules, inserts, removals', () => {
    const text = renderRestore({
      nat: {
        write: new Map([['KUBE-SVC-A', ['-j KUBE-SEP-B']], ['KUBE-SEP-B', ['-s 10.0.0.1/32 -j KUBE-MARK-MASQ', '-j DNAT --to-destination 10.0.0.1:80']]]),
        remove: ['KUBE-SEP-OLD'],
        insert: [{ chain: 'PREROUTING', rule: '-j KUBE-SERVICES' }],
        delete: [],
        counters: new Map([['KUBE-SEP-B', [undefined, '[7:420]']]]),
      },
      filter: emptyUpdate(),
    });
    assert.equal(
      text,
      '*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-B - [0:0]\n:KUBE-SEP-OLD - [0:0]\n-A KUBE-SVC-A -j KUBE-SEP-B\n-A KUBE-SEP-B -s 10.0.0.1/32 -j KUBE-MARK-MASQ\n[7:420] -A KUBE-SEP-B -j DNAT --to-destination 10.0.0.1:80\n-I PREROUTING -j KUBE-SERVICES\n-X KUBE-SEP-OLD\nCOMMIT\n',
      'counters carried over a rewrite precede their rule',
    );
    assert.equal(renderRestore({}), '');
  });
});

describe('iptables-save reading', () => {
  it('splits quoted words', () => {
    assert.deepEqual(tokenize('-A X -m comment --comment "a b \\"c\\"" -j Y'), ['-A', 'X', '-m', 'comment', '--comment', 'a b "c"', '-j', 'Y']);
  });

  it('reads every frontend kind back, with where its external traffic goes', () => {
    const cluster = set('cluster', local1, remote1);
    const local = set('local', local1);
    const etpLocal = { internal: cluster, external: local, masquerade: 'node' as const, noEndpoints: 'drop' as const };
    const idle = set('cluster');
    const noLocal = { internal: cluster, external: set('local'), masquerade: 'node' as const, noEndpoints: 'drop' as const };
    const text = restoreText(
      servicePort([
        frontend('ClusterIP', '172.30.0.41', 80, { internal: cluster }),
        frontend('ExternalIP', '192.168.99.11', 80, etpLocal),
        frontend('LoadBalancerIP', '1.2.3.4', 80, { ...etpLocal, sourceRanges: ['203.0.113.0/25'] }),
        frontend('NodePort', '192.168.0.2', 3001, etpLocal),
      ]),
      servicePort([frontend('ClusterIP', '172.30.0.42', 53, { protocol: 'UDP', internal: idle }), frontend('NodePort', '192.168.0.2', 3053, { protocol: 'UDP', internal: idle })], { key: 'ns1/idle:dns', name: 'idle', portName: 'dns' }),
      servicePort(
        [frontend('ClusterIP', '172.30.0.43', 80, { internal: cluster }), frontend('LoadBalancerIP', '1.2.3.5', 80, noLocal)],
        { key: 'ns1/nolocal:p80', name: 'nolocal' },
      ),
    );
    // iptables-save prints each table with its -A lines; the restore text has the same shape.
    const views = viewsFromSave(parseSave(text, 'nat'), parseSave(text, 'filter'));
    assert.deepEqual(views, [
      { kind: 'ClusterIP', frontend: { ip: '172.30.0.41', port: 80, protocol: 'TCP' }, destinations: [local1, remote1] },
      { kind: 'ExternalIP', frontend: { ip: '192.168.99.11', port: 80, protocol: 'TCP' }, destinations: [local1] },
      { kind: 'LoadBalancerIP', frontend: { ip: '1.2.3.4', port: 80, protocol: 'TCP' }, destinations: [local1] },
      { kind: 'ClusterIP', frontend: { ip: '172.30.0.43', port: 80, protocol: 'TCP' }, destinations: [local1, remote1] },
      { kind: 'LoadBalancerIP', frontend: { ip: '1.2.3.5', port: 80, protocol: 'TCP' }, destinations: [] },
      { kind: 'NodePort', frontend: { ip: '192.168.0.2', port: 3001, protocol: 'TCP' }, destinations: [local1] },
      { kind: 'ClusterIP', frontend: { ip: '172.30.0.42', port: 53, protocol: 'UDP' }, destinations: [] },
      { kind: 'NodePort', frontend: { ip: '192.168.0.2', port: 3053, protocol: 'UDP' }, destinations: [] },
    ]);
  });

  it("a dual-stack port: each family's tables get its own frontends, with /128, bracketed endpoints and kube-proxy's endpoint chain names, and read back", () => {
    const v6a: Destination = { ip: 'fd00:10:244::11', port: 8080 };
    const v6b: Destination = { ip: 'fd00:10:244:128::14', port: 8080 };
    const v6 = set('cluster', v6a, v6b);
    const sp = servicePort([
      frontend('ClusterIP', '172.30.0.41', 80, { internal: set('cluster', local1) }),
      frontend('ClusterIP', 'fd00:96::10', 80, { internal: v6 }),
      frontend('NodePort', 'fd00:18::2', 30080, { internal: v6 }),
    ]);
    const rules = portRules(sp, { family: 'IPv6', local: { by: 'cidr', cidr: 'fd00:10:244::/48' } });
    assert.deepEqual(rules.services, ['-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d fd00:96::10/128 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O']);
    assert.deepEqual(rules.nodePortIPs, ['fd00:18::2']);
    // kube-proxy hashes the endpoint as Go's net.JoinHostPort writes it.
    const sep = endpointChainName(sp, v6a, 'IPv6');
    assert.notEqual(sep, endpointChainName(sp, v6a, 'IPv4'));
    assert.deepEqual(rules.chains.get(sep), [
      '-m comment --comment "ns1/svc1:p80" -s fd00:10:244::11/128 -j KUBE-MARK-MASQ',
      '-m comment --comment "ns1/svc1:p80" -m tcp -p tcp -j DNAT --to-destination [fd00:10:244::11]:8080',
    ]);
    const t = assembleTables('IPv6', [rules], '0x4000', true);
    assert.equal(t.nat.get('KUBE-SERVICES')!.at(-1), '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d fd00:18::2/128 -j KUBE-NODEPORTS');
    const write = (chains: Map<string, string[]>) => ({ ...emptyUpdate(), write: chains });
    const text = renderRestore({ filter: write(t.filter), nat: write(t.nat) });
    assert.doesNotMatch(text, /172\.30\.0\.41|10\.180\.0\.1/, 'no IPv4 frontend or endpoint in the IPv6 tables');
    assert.deepEqual(viewsFromSave(parseSave(text, 'nat'), parseSave(text, 'filter')), [
      { kind: 'ClusterIP', frontend: { ip: 'fd00:96::10', port: 80, protocol: 'TCP' }, destinations: [v6a, v6b] },
      { kind: 'NodePort', frontend: { ip: 'fd00:18::2', port: 30080, protocol: 'TCP' }, destinations: [v6a, v6b] },
    ]);
  });

  it('reads the option order iptables-save prints', () => {
    const save = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-1 - [0:0]
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -m comment --comment "default/web:http -> 10.244.0.11:8080" -j KUBE-SEP-1
-A KUBE-SEP-1 -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.0.11:8080
COMMIT
`;
    const filter = `*filter
:KUBE-EXTERNAL-SERVICES - [0:0]
-A KUBE-EXTERNAL-SERVICES -d 192.168.0.2/32 -p udp -m comment --comment "default/idle:dns nodePort has no endpoints" -m udp --dport 3053 -j REJECT --reject-with icmp-port-unreachable
COMMIT
`;
    assert.deepEqual(viewsFromSave(parseSave(save, 'nat'), parseSave(filter, 'filter')), [
      { kind: 'ClusterIP', frontend: { ip: '10.96.0.10', port: 80, protocol: 'TCP' }, destinations: [{ ip: '10.244.0.11', port: 8080 }] },
      { kind: 'NodePort', frontend: { ip: '192.168.0.2', port: 3053, protocol: 'UDP' }, destinations: [] },
    ]);
  });
});

describe('sameRules: a chain as iptables-save prints it against the rules kube-lb writes', () => {
  const saved = parseSave(
    ['*nat', ':KUBE-SEP-X - [0:0]', '[3:180] -A KUBE-SEP-X -s fd00::11/128 -m comment --comment "ns/web:http" -j KUBE-MARK-MASQ', '[0:0] -A KUBE-SEP-X -p tcp -m comment --comment "ns/web:http" -m tcp -j DNAT --to-destination [fd00::11]:8080', 'COMMIT'].join('\n'),
    'nat',
  ).chains.get('KUBE-SEP-X')!;
  const written = ['-m comment --comment "ns/web:http" -s fd00::11/128 -j KUBE-MARK-MASQ', '-m comment --comment "ns/web:http" -m tcp -p tcp -j DNAT --to-destination [fd00::11]:8080'];
  it('the same rules with their options in another order', () => assert.ok(sameRules(saved, written)));
  it('another endpoint, a rule more or less, rules in another order', () => {
    assert.ok(!sameRules(saved, [written[0]!, written[1]!.replace('8080', '8081')]));
    assert.ok(!sameRules(saved, [written[1]!]));
    assert.ok(!sameRules(saved, [written[1]!, written[0]!]));
  });
  it('never with a negation, whose place in the rule matters', () => {
    const negated = parseSave(['*nat', ':C - [0:0]', '-A C ! -s 10.0.0.0/8 -d 10.96.0.1/32 -j KUBE-MARK-MASQ', 'COMMIT'].join('\n'), 'nat').chains.get('C')!;
    assert.ok(!sameRules(negated, ['! -s 10.0.0.0/8 -d 10.96.0.1/32 -j KUBE-MARK-MASQ']));
  });
});
