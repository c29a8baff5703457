// The conformance scenarios against the nftables backend, plus what only
// it promises: its own table, kube-proxy's nftables design, and partial
// syncs that send only what changed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { affinitySetName, endpointChainName, externalChainName, firewallChainName, policyChainName } from '../../src/backends/nftables/ruleset.js';
import type { ServiceSpec } from '../lib/manifests.js';
import { EXTERNAL_CLIENT_IPS, NODES } from '../lib/sandbox.js';
import { slow } from '../lib/slowdown.js';
import { withContext } from './context.js';
import { clusterIpPort } from '../lib/frontends.js';
import { assertSmall, changedServicePort, endpointChangeAmong1000Services } from './partial-sync.js';
import { VIP, endpoints, ipOf, pods } from './scenarios.js';
import { runConformance } from './suite.js';
import { variant } from './variants.js';

runConformance('nftables');

describe("nftables: kube-proxy's design and partial syncs", () => {
  it('a sample service is a map element, a numgen vmap over endpoint chains, and DNAT; no iptables needed', () =>
    withContext(variant('nftables'), pods, async (ctx) => {
      ctx.writeServices('web.yaml', [
        { name: 'web', clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: endpoints(['web-1', 'web-2']) },
      ]);
      await ctx.startKubeLb();
      const table = await ctx.sandbox.inNode('nft', 'list', 'table', 'ip', 'kube-lb');
      const sp = clusterIpPort({ ...changedServicePort, key: 'default/web:http', name: 'web', frontend: { ip: VIP, port: 80, protocol: 'TCP' } });
      const svc = policyChainName(sp, 'cluster');
      const [ep1, ep2] = sp.destinations.map((d) => endpointChainName(sp, d));
      assert.match(svc, /^service-[A-Z2-7]{8}-default\/web\/tcp\/http$/);
      assert.ok(table.includes(`elements = { ${VIP} . tcp . 80 comment "ClusterIP default/web:http" : goto ${svc} }`), table);
      assert.ok(table.includes(`numgen random mod 2 vmap { 0 : goto ${ep1}, 1 : goto ${ep2} }`), table);
      assert.ok(table.includes(`ip daddr ${VIP} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade`), table);
      assert.ok(table.includes(`meta l4proto tcp counter name "${ep1}" dnat to 10.244.0.11:8080`), table);
      assert.ok(table.includes('masquerade fully-random'), table);
      const iptablesNat = await ctx.sandbox.inNode('iptables-nft-save', '-t', 'nat');
      assert.doesNotMatch(iptablesNat, /KUBE-/, 'the nftables backend writes no iptables rules');
    }));

  it('a Local load balancer with source ranges and affinity: every map, its external, local, firewall chains and affinity sets, kept across a restart', () =>
    withContext(variant('nftables'), pods, async (ctx) => {
      const [EXTERNAL_IP, LB_IP, NODE_IP] = ['203.0.113.20', '198.51.100.20', NODES['node-a'].ip];
      const client = EXTERNAL_CLIENT_IPS[0];
      ctx.writeServices('lb.yaml', [
        {
          name: 'lb',
          clusterIP: VIP,
          type: 'LoadBalancer',
          ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 }],
          externalIPs: [EXTERNAL_IP],
          loadBalancerIngress: [LB_IP],
          loadBalancerSourceRanges: [`${client}/32`],
          externalTrafficPolicy: 'Local',
          healthCheckNodePort: 32100,
          sessionAffinityTimeoutSeconds: 600,
          endpoints: endpoints(['web-1', 'web-2', 'web-4']),
        },
      ]);
      await ctx.startKubeLb();
      const table = await ctx.sandbox.inNode('nft', 'list', 'table', 'ip', 'kube-lb');
      const sp = clusterIpPort({ key: 'default/lb:http', namespace: 'default', name: 'lb', portName: 'http', frontend: { ip: VIP, port: 80, protocol: 'TCP' }, destinations: [] });
      const [svc, loc, ext, fw] = [policyChainName(sp, 'cluster'), policyChainName(sp, 'local'), externalChainName(sp), firewallChainName(sp)];
      const [web1, web2] = ['web-1', 'web-2'].map((p) => ({ ip: ipOf(p), port: 8080 }));
      for (const expected of [
        `${VIP} . tcp . 80 comment "ClusterIP default/lb:http" : goto ${svc}`,
        `${EXTERNAL_IP} . tcp . 80 comment "ExternalIP default/lb:http" : goto ${ext}`,
        `${LB_IP} . tcp . 80 comment "LoadBalancerIP default/lb:http" : goto ${ext}`,
        `${NODE_IP} . tcp . 30080 comment "NodePort default/lb:http" : goto ${ext}`,
        `${LB_IP} . tcp . 80 comment "LoadBalancerIP default/lb:http" : goto ${fw}`,
        `chain ${ext} {\n\t\tip saddr 10.244.0.0/16 goto ${svc}\n\t\tfib saddr type local jump mark-for-masquerade\n\t\tfib saddr type local goto ${svc}\n\t\tgoto ${loc}\n`,
        `chain ${loc} {\n\t\tip saddr @${affinitySetName(sp, web1)} goto ${endpointChainName(sp, web1)}\n\t\tip saddr @${affinitySetName(sp, web2)} goto ${endpointChainName(sp, web2)}\n\t\tnumgen random mod 2`,
        `update @${affinitySetName(sp, web1)} { ip saddr }`,
        `set ${affinitySetName(sp, web1)} {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 10m\n`,
      ]) {
        assert.ok(table.includes(expected), `missing ${JSON.stringify(expected)} in:\n${table}`);
      }
      assert.match(table, new RegExp(`chain ${fw.replace(/[/.]/g, '\\$&')} \\{\\n\\t\\tip saddr != ${client} drop\\n`), table);

      const view = JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as { kind: string; frontend: { ip: string }; destinations: { ip: string }[] }[];
      const seen = view.map((v) => `${v.kind} ${v.frontend.ip} ${v.destinations.map((d) => d.ip).join(',')}`);
      const local = `${ipOf('web-1')},${ipOf('web-2')}`;
      assert.deepEqual(seen.sort(), [`ClusterIP ${VIP} ${local},${ipOf('web-4')}`, `ExternalIP ${EXTERNAL_IP} ${local}`, `LoadBalancerIP ${LB_IP} ${local}`, `NodePort ${NODE_IP} ${local}`].sort());

      const stuck = async (): Promise<string[]> => Object.keys((await ctx.externalClient('tcp', LB_IP, 80, 20)).answers);
      const before = await stuck();
      assert.equal(before.length, 1, `one client, one endpoint: ${JSON.stringify(before)}`);
      await ctx.stopKubeLb();
      await ctx.startKubeLb();
      const kept = await ctx.sandbox.inNode('nft', 'list', 'set', 'ip', 'kube-lb', affinitySetName(sp, { ip: ipOf(before[0]!), port: 8080 }));
      assert.match(kept, new RegExp(`elements = \\{ ${client.replace(/\./g, '\\.')} (timeout|expires)`), `a restart's full sync keeps the affinity sets and their entries:\n${kept}`);
      assert.deepEqual(await stuck(), before, 'the client still sticks to its endpoint');
    }));

  it('stale UDP flows are flushed for every frontend kind: a held flow to a NodePort or a load-balancer IP moves off a removed endpoint', () =>
    withContext(variant('nftables'), pods, async (ctx) => {
      const service = (ready: string[]): ServiceSpec => ({
        name: 'dns',
        clusterIP: VIP,
        type: 'LoadBalancer',
        ports: [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP', nodePort: 30053 }],
        loadBalancerIngress: ['198.51.100.21'],
        endpoints: endpoints(ready),
      });
      ctx.writeServices('dns.yaml', [service(['web-4'])]);
      await ctx.startKubeLb();
      let current = 'web-4';
      for (const [ip, port, next] of [[NODES['node-a'].ip, 30053, 'web-1'], ['198.51.100.21', 53, 'web-5']] as const) {
        const flow = ctx.externalClient('udp-hold', ip, port, slow(4000));
        await new Promise((r) => setTimeout(r, slow(1000)));
        ctx.writeServices('dns.yaml', [service([next])]);
        const { order = [] } = await flow;
        assert.equal(order[0], current, `${ip}:${port}: the flow starts on ${current}: ${order.join(' ')}`);
        const last = order.slice(-15);
        assert.ok(last.length === 15 && last.every((who) => who === next), `${ip}:${port}: the flow ends on ${next}: ${order.join(' ')}`);
        current = next;
      }
    }));

  it('with 1,000 services, an endpoint change sends only the touched chain and elements to nft', () =>
    endpointChangeAmong1000Services('nftables', 'nft', (initial, change) => {
      assert.ok((initial.match(/^flush chain ip kube-lb service-[A-Z2-7]{8}-/gm) ?? []).length === 1000, 'the first sync wrote every service chain');
      assert.equal(change.length, 1, `one nft transaction for the change; got ${change.length}`);
      const payload = change[0]!;
      const newEndpoint = changedServicePort.destinations[1]!;
      const written = [...payload.matchAll(/^flush chain ip kube-lb (\S+)/gm)].map((m) => m[1]).sort();
      assert.deepEqual(written, [endpointChainName(changedServicePort, newEndpoint), policyChainName(changedServicePort, 'cluster')].sort());
      // The dispatch maps are untouched; the new endpoint gets its traffic counter's element.
      const { frontend } = changedServicePort;
      const elements = [...payload.matchAll(/^(\S+ element ip kube-lb \S+ \{ [^}]*?) comment/gm)].map((m) => m[1]);
      assert.deepEqual(elements, [`add element ip kube-lb traffic { ${frontend.ip} . tcp . ${frontend.port} . ${newEndpoint.ip} . ${newEndpoint.port}`]);
      assert.doesNotMatch(payload, /delete chain/, 'no chain is removed');
      assertSmall(payload, 4000, 'the change');
    }));
});
