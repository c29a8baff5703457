// What only the iptables backend promises, for either iptables flavour:
// kube-proxy's chain layout on the real iptables-save output, and partial
// syncs that send only the touched chains to iptables-restore.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { programmedPort } from '../lib/programmed-port.js';
import { endpointChainName, serviceChainName } from '../../src/backends/iptables/rules.js';
import { ToolCapture } from './capture.js';
import { withContext } from './context.js';
import { assertSmall, changedServicePort, declared, endpointChangeAmong1000Services } from './partial-sync.js';
import { VIP, endpoints, ipOf, pods } from './scenarios.js';
import { variant } from './variants.js';

const web = programmedPort({
  key: 'default/web:http',
  namespace: 'default',
  name: 'web',
  portName: 'http',
  frontend: { ip: VIP, port: 80, protocol: 'TCP' },
  destinations: ['web-1', 'web-2', 'web-3'].map((p) => ({ ip: ipOf(p), port: 8080 })),
});

/** A chain's rules from iptables-save output, without the "-A CHAIN " prefix. */
function rulesOf(saved: string, chain: string): string[] {
  return saved
    .split('\n')
    .filter((l) => l.startsWith(`-A ${chain} `))
    .map((l) => l.slice(`-A ${chain} `.length));
}

export function iptablesChecks(mode: 'nft' | 'legacy'): void {
  const name = `iptables-${mode}`;
  describe(`${name}: kube-proxy's layout and partial syncs`, () => {
    it("a sample service's chains follow kube-proxy: names, jump order, probabilities, masquerading, REJECT", async () => {
      const capture = ToolCapture.create(`${name}-restore`);
      try {
        await withContext(variant(name), pods, async (ctx) => {
          ctx.writeServices('web.yaml', [
            { name: 'web', clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: endpoints(['web-1', 'web-2', 'web-3']) },
            { name: 'idle', clusterIP: '10.96.0.20', ports: [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }], endpoints: [] },
          ]);
          await ctx.startKubeLb(capture.env());
          const nat = await ctx.sandbox.inNode(`${name}-save`, '-t', 'nat');
          const filter = await ctx.sandbox.inNode(`${name}-save`, '-t', 'filter');
          const svc = serviceChainName(web);
          const seps = web.destinations.map((d) => endpointChainName(web, d));

          for (const chain of ['PREROUTING', 'OUTPUT']) {
            assert.deepEqual(rulesOf(nat, chain), ['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'], `nat ${chain}`);
          }
          assert.deepEqual(rulesOf(nat, 'POSTROUTING'), ['-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING']);
          assert.deepEqual(rulesOf(nat, 'KUBE-SERVICES'), [`-d ${VIP}/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j ${svc}`]);
          assert.deepEqual(rulesOf(nat, 'KUBE-NODEPORTS'), [], 'no NodePorts');

          // KUBE-SVC: masquerade from outside the cluster CIDR, then 1/3, 1/2 and the rest.
          const svcRules = rulesOf(nat, svc);
          assert.equal(svcRules[0], `! -s 10.244.0.0/16 -d ${VIP}/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ`);
          const picks = svcRules.slice(1).map((r) => ({ probability: /--probability (\S+)/.exec(r)?.[1], target: /-j (\S+)$/.exec(r)?.[1] }));
          assert.deepEqual(picks.map((p) => p.target), seps, 'one jump per endpoint, in endpoint order');
          // The kernel keeps a 32-bit fraction: iptables-save prints 0.33333333349 for 0.3333333333.
          assert.ok(Math.abs(Number(picks[0]!.probability) - 1 / 3) < 1e-9, `first probability ${picks[0]!.probability}`);
          assert.ok(Math.abs(Number(picks[1]!.probability) - 1 / 2) < 1e-9, `second probability ${picks[1]!.probability}`);
          assert.equal(picks[2]!.probability, undefined, 'no statistic match on the last endpoint');
          const sent = capture.payloads().join('');
          assert.match(sent, / -m statistic --mode random --probability 0\.3333333333 -j /, 'probabilities are sent with 10 decimals');
          assert.match(sent, / -m statistic --mode random --probability 0\.5000000000 -j /);

          web.destinations.forEach((d, i) => {
            assert.deepEqual(rulesOf(nat, seps[i]!), [
              `-s ${d.ip}/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ`,
              `-p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination ${d.ip}:${d.port}`,
            ]);
          });
          assert.deepEqual(rulesOf(nat, 'KUBE-MARK-MASQ'), ['-j MARK --set-xmark 0x4000/0x4000']);
          assert.deepEqual(rulesOf(nat, 'KUBE-POSTROUTING'), [
            '-m mark ! --mark 0x4000/0x4000 -j RETURN',
            '-j MARK --set-xmark 0x4000/0x0',
            '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
          ]);
          // kube-proxy's jumps in filter, in its order (plus KUBE-EXTERNAL-SERVICES from OUTPUT, for the node's own connections).
          const firewall = '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL';
          const external = '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES';
          const services = '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES';
          assert.deepEqual(rulesOf(filter, 'INPUT'), [firewall, external], 'filter INPUT');
          assert.deepEqual(rulesOf(filter, 'FORWARD'), [firewall, services, external], 'filter FORWARD');
          assert.deepEqual(rulesOf(filter, 'OUTPUT'), [firewall, services, external], 'filter OUTPUT');
          // A restarted kube-lb finds its jumps in place and adds none.
          await ctx.stopKubeLb();
          await ctx.startKubeLb();
          const natAgain = await ctx.sandbox.inNode(`${name}-save`, '-t', 'nat');
          for (const chain of ['PREROUTING', 'OUTPUT', 'POSTROUTING']) assert.equal(rulesOf(natAgain, chain).length, 1, `one jump in ${chain} after a restart`);
          const filterAgain = await ctx.sandbox.inNode(`${name}-save`, '-t', 'filter');
          for (const chain of ['INPUT', 'FORWARD', 'OUTPUT']) assert.deepEqual(rulesOf(filterAgain, chain), rulesOf(filter, chain), `the same jumps in ${chain} after a restart`);
          assert.deepEqual(rulesOf(filter, 'KUBE-SERVICES'), ['-d 10.96.0.20/32 -p udp -m comment --comment "default/idle:dns cluster IP has no endpoints" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable']);
        });
      } finally {
        capture.remove();
      }
    });

    it('with 1,000 services, an endpoint change sends only the touched chains to iptables-restore', () =>
      endpointChangeAmong1000Services(name, `${name}-restore`, (initial, change) => {
        assert.ok(declared(initial, /^:(KUBE-SVC-\S+)/gm).length === 1000, 'the first sync wrote every service chain');
        assert.equal(change.length, 1, `one iptables-restore for the change; got ${change.length}`);
        const payload = change[0]!;
        const newEndpoint = changedServicePort.destinations[1]!;
        assert.deepEqual(declared(payload, /^:(\S+)/gm), [endpointChainName(changedServicePort, newEndpoint), serviceChainName(changedServicePort)].sort());
        assert.deepEqual(declared(payload, /^\*(\S+)/gm), ['nat'], 'only the nat table');
        assert.deepEqual(declared(payload, /^-X (\S+)/gm), [], 'nothing removed');
        assertSmall(payload, 2000, 'the change');
      }));
  });
}
