// What only the iptables backend promises, for either iptables flavour:
// kube-proxy's chain layout on the real iptables-save output, and partial
// syncs that send only the touched chains to iptables-restore.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clusterIpPort } from '../lib/frontends.js';
import { endpointChainName, externalChainName, firewallChainName, policyChainName, serviceChainName } from '../../src/backends/iptables/rules.js';
import { NODES } from '../lib/sandbox.js';
import { ToolCapture } from './capture.js';
import { withContext } from './context.js';
import { assertSmall, changedServicePort, declared, endpointChangeAmong1000Services } from './partial-sync.js';
import { VIP, endpoints, ipOf, pods } from './scenarios.js';
import { variant } from './variants.js';

const web = clusterIpPort({
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
          const seps = web.destinations.map((d) => endpointChainName(web, d, 'IPv4'));

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
          const forward = '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD';
          assert.deepEqual(rulesOf(filter, 'INPUT'), [firewall, external], 'filter INPUT');
          assert.deepEqual(rulesOf(filter, 'FORWARD'), [firewall, forward, services, external], 'filter FORWARD');
          assert.deepEqual(rulesOf(filter, 'KUBE-FORWARD'), ['-m conntrack --ctstate INVALID -j DROP']);
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

    it('a LoadBalancer with externalTrafficPolicy Local, source ranges and affinity: KUBE-FW, KUBE-EXT, KUBE-SVL, recent; inspect reads every kind back', async () => {
      await withContext(variant(name), pods, async (ctx) => {
        const nodeIP = NODES['node-a'].ip;
        ctx.writeServices('lb.yaml', [
          {
            name: 'lb',
            clusterIP: VIP,
            type: 'LoadBalancer',
            ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 }],
            externalIPs: ['203.0.113.10'],
            loadBalancerIngress: ['198.51.100.10'],
            loadBalancerSourceRanges: ['198.18.0.0/24'],
            externalTrafficPolicy: 'Local',
            healthCheckNodePort: 32100,
            sessionAffinityTimeoutSeconds: 600,
            endpoints: endpoints(['web-1', 'web-4']),
          },
        ]);
        await ctx.startKubeLb();
        const nat = await ctx.sandbox.inNode(`${name}-save`, '-t', 'nat');
        const filter = await ctx.sandbox.inNode(`${name}-save`, '-t', 'filter');
        const lb = clusterIpPort({ key: 'default/lb:http', namespace: 'default', name: 'lb', portName: 'http', frontend: { ip: VIP, port: 80, protocol: 'TCP' }, destinations: [] });
        const [svc, svl, ext, fw] = [serviceChainName(lb), policyChainName(lb, 'local'), externalChainName(lb), firewallChainName(lb)];
        const [local, remote] = [ipOf('web-1'), ipOf('web-4')].map((ip) => endpointChainName(lb, { ip, port: 8080 }, 'IPv4'));
        const comment = (text: string): string => `-m comment --comment "${text}"`;

        assert.deepEqual(rulesOf(nat, 'KUBE-SERVICES'), [
          `-d ${VIP}/32 -p tcp ${comment('default/lb:http cluster IP')} -m tcp --dport 80 -j ${svc}`,
          `-d 203.0.113.10/32 -p tcp ${comment('default/lb:http external IP')} -m tcp --dport 80 -j ${ext}`,
          `-d 198.51.100.10/32 -p tcp ${comment('default/lb:http loadbalancer IP')} -m tcp --dport 80 -j ${fw}`,
          `-d ${nodeIP}/32 ${comment('kubernetes service nodeports; NOTE: this must be the last rule in this chain')} -j KUBE-NODEPORTS`,
        ]);
        assert.deepEqual(rulesOf(nat, 'KUBE-NODEPORTS'), [`-d ${nodeIP}/32 -p tcp ${comment('default/lb:http nodePort')} -m tcp --dport 30080 -j ${ext}`]);
        assert.deepEqual(rulesOf(nat, fw), [
          `-s 198.18.0.0/24 ${comment('default/lb:http loadbalancer IP')} -j ${ext}`,
          comment('other traffic to default/lb:http will be dropped by KUBE-PROXY-FIREWALL'),
        ]);
        assert.deepEqual(rulesOf(nat, ext), [
          `-s 10.244.0.0/16 ${comment('pod traffic for default/lb:http external destinations')} -j ${svc}`,
          `${comment('masquerade LOCAL traffic for default/lb:http external destinations')} -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ`,
          `${comment('route LOCAL traffic for default/lb:http external destinations')} -m addrtype --src-type LOCAL -j ${svc}`,
          `-j ${svl}`,
        ]);
        const recent = (sep: string): string => `-m recent --rcheck --seconds 600 --reap --name ${sep} --mask 255.255.255.255 --rsource -j ${sep}`;
        assert.deepEqual(rulesOf(nat, svl), [
          `${comment(`default/lb:http -> ${ipOf('web-1')}:8080`)} ${recent(local!)}`,
          `${comment(`default/lb:http -> ${ipOf('web-1')}:8080`)} -j ${local}`,
        ]);
        const svcRules = rulesOf(nat, svc);
        assert.equal(svcRules.length, 5, `masquerade, two affinity checks, two picks: ${svcRules.join('\n')}`);
        assert.deepEqual(svcRules.slice(1, 3), [
          `${comment(`default/lb:http -> ${ipOf('web-1')}:8080`)} ${recent(local!)}`,
          `${comment(`default/lb:http -> ${ipOf('web-4')}:8080`)} ${recent(remote!)}`,
        ]);
        assert.deepEqual(rulesOf(nat, remote!)[1], `-p tcp ${comment('default/lb:http')} -m recent --set --name ${remote} --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination ${ipOf('web-4')}:8080`);
        assert.deepEqual(rulesOf(filter, 'KUBE-PROXY-FIREWALL'), [`-d 198.51.100.10/32 -p tcp ${comment(`default/lb:http traffic not accepted by ${fw}`)} -m tcp --dport 80 -j DROP`]);
        assert.deepEqual(rulesOf(filter, 'KUBE-EXTERNAL-SERVICES'), [], 'a local endpoint answers external traffic');

        const view = JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as unknown;
        const all = [ipOf('web-1'), ipOf('web-4')].map((ip) => ({ ip, port: 8080 }));
        const onlyLocal = [{ ip: ipOf('web-1'), port: 8080 }];
        assert.deepEqual(view, [
          { kind: 'ClusterIP', frontend: { ip: VIP, port: 80, protocol: 'TCP' }, destinations: all },
          { kind: 'NodePort', frontend: { ip: nodeIP, port: 30080, protocol: 'TCP' }, destinations: onlyLocal },
          { kind: 'LoadBalancerIP', frontend: { ip: '198.51.100.10', port: 80, protocol: 'TCP' }, destinations: onlyLocal },
          { kind: 'ExternalIP', frontend: { ip: '203.0.113.10', port: 80, protocol: 'TCP' }, destinations: onlyLocal },
        ]);
      });
    });

    it('with 1,000 services, an endpoint change sends only the touched chains to iptables-restore', () =>
      endpointChangeAmong1000Services(name, `${name}-restore`, (initial, change) => {
        assert.ok(declared(initial, /^:(KUBE-SVC-\S+)/gm).length === 1000, 'the first sync wrote every service chain');
        assert.equal(change.length, 1, `one iptables-restore for the change; got ${change.length}`);
        const payload = change[0]!;
        const newEndpoint = changedServicePort.destinations[1]!;
        assert.deepEqual(declared(payload, /^:(\S+)/gm), [endpointChainName(changedServicePort, newEndpoint, 'IPv4'), serviceChainName(changedServicePort)].sort());
        assert.deepEqual(declared(payload, /^\*(\S+)/gm), ['nat'], 'only the nat table');
        assert.deepEqual(declared(payload, /^-X (\S+)/gm), [], 'nothing removed');
        assertSmall(payload, 2000, 'the change');
      }));
  });
}
