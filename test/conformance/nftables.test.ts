// The conformance scenarios against the nftables backend, plus what only
// it promises: its own table, kube-proxy's nftables design, and partial
// syncs that send only what changed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { endpointChainName, policyChainName } from '../../src/backends/nftables/ruleset.js';
import { withContext } from './context.js';
import { programmedPort } from '../lib/programmed-port.js';
import { assertSmall, changedServicePort, endpointChangeAmong1000Services } from './partial-sync.js';
import { VIP, endpoints, pods } from './scenarios.js';
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
      const sp = programmedPort({ ...changedServicePort, key: 'default/web:http', name: 'web', frontend: { ip: VIP, port: 80, protocol: 'TCP' } });
      const svc = policyChainName(sp, 'cluster');
      const [ep1, ep2] = sp.destinations.map((d) => endpointChainName(sp, d));
      assert.match(svc, /^service-[A-Z2-7]{8}-default\/web\/tcp\/http$/);
      assert.ok(table.includes(`elements = { ${VIP} . tcp . 80 comment "ClusterIP default/web:http" : goto ${svc} }`), table);
      assert.ok(table.includes(`numgen random mod 2 vmap { 0 : goto ${ep1}, 1 : goto ${ep2} }`), table);
      assert.ok(table.includes(`ip daddr ${VIP} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade`), table);
      assert.ok(table.includes('meta l4proto tcp dnat to 10.244.0.11:8080'), table);
      assert.ok(table.includes('masquerade fully-random'), table);
      const iptablesNat = await ctx.sandbox.inNode('iptables-nft-save', '-t', 'nat');
      assert.doesNotMatch(iptablesNat, /KUBE-/, 'the nftables backend writes no iptables rules');
    }));

  it('with 1,000 services, an endpoint change sends only the touched chain and elements to nft', () =>
    endpointChangeAmong1000Services('nftables', 'nft', (initial, change) => {
      assert.ok((initial.match(/^flush chain ip kube-lb service-[A-Z2-7]{8}-/gm) ?? []).length === 1000, 'the first sync wrote every service chain');
      assert.equal(change.length, 1, `one nft transaction for the change; got ${change.length}`);
      const payload = change[0]!;
      const newEndpoint = changedServicePort.destinations[1]!;
      const written = [...payload.matchAll(/^flush chain ip kube-lb (\S+)/gm)].map((m) => m[1]).sort();
      assert.deepEqual(written, [endpointChainName(changedServicePort, newEndpoint), policyChainName(changedServicePort, 'cluster')].sort());
      assert.doesNotMatch(payload, /element|delete chain/, 'the service map is untouched');
      assertSmall(payload, 3000, 'the change');
    }));
});
