// The ipvs backend on a kernel with IPVS: what only IPVS has: ipvsadm's
// view, per-service schedulers, graceful endpoint removal, and cleanup that
// spares foreign virtual servers (the conformance scenarios run beside, in
// ipvs-core.vm-test.ts and ipvs-service-api.vm-test.ts). Runs in the VM
// (make test-vm); the host kernel has no IPVS, so the file is named
// *.vm-test.ts to stay out of the host's test glob.
import fs from 'node:fs';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { unsupportedReason } from '../../src/backends/capabilities.js';
import { holdWhile, type ScenarioContext, withContext } from '../conformance/context.js';
import { VIP, endpoints, ipOf, pods } from '../conformance/scenarios.js';
import { variant } from '../conformance/variants.js';
import type { ServiceSpec } from '../lib/manifests.js';
import { requireCommand } from '../lib/preconditions.js';
import { NODES, podIpv6 } from '../lib/sandbox.js';
import { slow } from '../lib/slowdown.js';

const ipvs = variant('ipvs');
const NODE_IP = NODES['node-a'].ip;
const EXTERNAL_IP = '203.0.113.10';
const LB_IP = '198.51.100.10';
const OUTSIDE_RANGE = '198.18.0.0/24';
const NODE_RANGE = '172.18.0.0/24';

function web(eps = endpoints(['web-1', 'web-2']), annotations?: Record<string, string>): ServiceSpec {
  return {
    name: 'web',
    clusterIP: VIP,
    ports: [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
      { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
    ],
    endpoints: eps,
    ...(annotations && { annotations }),
  };
}

/** Each rule line is in its table's save output. */
function assertRules(expected: readonly (readonly [saved: string, line: string])[]): void {
  for (const [saved, line] of expected) assert.ok(saved.split('\n').includes(line), `missing: ${line}\n${saved}`);
}

/** `ipvsadm -Ln` in the node, as lines with runs of spaces squeezed. */
async function ipvsadm(ctx: ScenarioContext, ...args: string[]): Promise<string[]> {
  requireCommand('ipvsadm', 'apt-get install ipvsadm');
  const out = await ctx.sandbox.inNode('ipvsadm', '-Ln', ...args);
  return out.split('\n').map((l) => l.trim().replace(/\s+/g, ' ')).filter((l) => l !== '');
}

describe('ipvs: IPVS state, schedulers, draining and cleanup', () => {
  it("ipvsadm, ipset and iptables show kube-proxy's layout for every kind of frontend; kube-ipvs0's addresses answer only on service ports; --ipvs-strict-arp", () =>
    withContext(ipvs, pods, async (ctx) => {
      ctx.writeServices('web.yaml', [
        {
          // web-4 runs on node-b: a real server, but not in KUBE-LOOP-BACK, which lists this node's endpoints only.
          ...web(endpoints(['web-1', 'web-4'], ['web-3'])),
          type: 'LoadBalancer',
          ports: [
            { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 },
            { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP', nodePort: 30053 },
          ],
          externalIPs: [EXTERNAL_IP],
          loadBalancerIngress: [LB_IP],
          // The node's own network is in the ranges: the load-balancer IP goes in KUBE-LOAD-BALANCER-SOURCE-IP for its traffic.
          loadBalancerSourceRanges: [OUTSIDE_RANGE, NODE_RANGE],
          sessionAffinityTimeoutSeconds: 600,
        },
      ]);
      await ctx.startKubeLb(process.env, ['--ipvs-strict-arp=true']);
      for (const [sysctl, value] of [['arp_ignore', '1'], ['arp_announce', '2']]) {
        assert.equal((await ctx.sandbox.inNode('cat', `/proc/sys/net/ipv4/conf/all/${sysctl}`)).trim(), value, `--ipvs-strict-arp sets ${sysctl}`);
      }
      // Virtual server -> its real servers, sorted: ipvsadm lists them in hash order.
      const servers: Record<string, string[]> = {};
      let current: string[] = [];
      for (const line of await ipvsadm(ctx)) {
        if (/^(TCP|UDP) /.test(line)) servers[line] = current = [];
        else if (line.startsWith('-> ') && !line.startsWith('-> RemoteAddress')) current.push(line);
      }
      for (const realServers of Object.values(servers)) realServers.sort();
      const tcp = ['-> 10.244.0.11:8080 Masq 1 0 0', '-> 10.244.128.14:8080 Masq 1 0 0'];
      const udp = ['-> 10.244.0.11:5353 Masq 1 0 0', '-> 10.244.128.14:5353 Masq 1 0 0'];
      const expected: Record<string, string[]> = {};
      for (const [ip, http, dns] of [[VIP, 80, 53], [EXTERNAL_IP, 80, 53], [LB_IP, 80, 53], [NODE_IP, 30080, 30053]] as const) {
        // sessionAffinity: ClientIP is IPVS persistence with the affinity's timeout.
        expected[`TCP ${ip}:${http} rr persistent 600`] = tcp;
        expected[`UDP ${ip}:${dns} rr persistent 600`] = udp;
      }
      assert.deepEqual(servers, expected);

      const addresses = await ctx.sandbox.inNode('ip', '-4', '-o', 'addr', 'show', 'dev', 'kube-ipvs0');
      assert.deepEqual([...addresses.matchAll(/inet (\S+)/g)].map((m) => m[1]).sort(), [`${LB_IP}/32`, `${VIP}/32`, `${EXTERNAL_IP}/32`].sort(), 'ClusterIP, external and load-balancer IPs on kube-ipvs0; NodePorts stay on the node address');

      const sets: Record<string, string[]> = {};
      // Every set of kube-lb's is kube-proxy's, changed in place (no twin is swapped in). The IPv6 (KUBE-6-) sets are the dual-stack row's.
      const isLayoutSet = (set: string): boolean => set.startsWith('KUBE-') && !set.startsWith('KUBE-6-');
      for (const line of (await ctx.sandbox.inNode('ipset', 'save')).split('\n')) {
        const [verb, set, entry] = line.split(' ');
        if (verb === 'create' && isLayoutSet(set!)) sets[set!] = [];
        if (verb === 'add' && isLayoutSet(set!)) sets[set!]!.push(entry!);
      }
      for (const entries of Object.values(sets)) entries.sort();
      assert.deepEqual(sets, {
        'KUBE-CLUSTER-IP': [`${VIP},tcp:80`, `${VIP},udp:53`],
        'KUBE-EXTERNAL-IP': [`${EXTERNAL_IP},tcp:80`, `${EXTERNAL_IP},udp:53`],
        'KUBE-EXTERNAL-IP-LOCAL': [],
        'KUBE-LOAD-BALANCER': [`${LB_IP},tcp:80`, `${LB_IP},udp:53`],
        'KUBE-LOAD-BALANCER-LOCAL': [],
        'KUBE-LOAD-BALANCER-FW': [`${LB_IP},tcp:80`, `${LB_IP},udp:53`],
        'KUBE-LOAD-BALANCER-SOURCE-CIDR': [`${LB_IP},tcp:80,${NODE_RANGE}`, `${LB_IP},tcp:80,${OUTSIDE_RANGE}`, `${LB_IP},udp:53,${NODE_RANGE}`, `${LB_IP},udp:53,${OUTSIDE_RANGE}`],
        'KUBE-LOAD-BALANCER-SOURCE-IP': [`${LB_IP},tcp:80,${LB_IP}`, `${LB_IP},udp:53,${LB_IP}`],
        'KUBE-NODE-PORT-TCP': ['30080'],
        'KUBE-NODE-PORT-UDP': ['30053'],
        'KUBE-NODE-PORT-LOCAL-TCP': [],
        'KUBE-NODE-PORT-LOCAL-UDP': [],
        'KUBE-NODE-PORT-SCTP-HASH': [],
        'KUBE-NODE-PORT-LOCAL-SCTP-HASH': [],
        'KUBE-LOOP-BACK': ['10.244.0.11,tcp:8080,10.244.0.11', '10.244.0.11,udp:5353,10.244.0.11'],
        'KUBE-IPVS-IPS': [LB_IP, VIP, EXTERNAL_IP].sort(),
      });

      const nat = await ctx.sandbox.inNode('iptables-save', '-t', 'nat');
      const filter = await ctx.sandbox.inNode('iptables-save', '-t', 'filter');
      assertRules([
        [nat, '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
        [nat, '-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT'],
        [nat, '-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ'],
        [nat, '-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER'],
        [filter, '-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER'],
        [filter, '-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT --reject-with icmp-port-unreachable'],
      ]);
      const firewall = filter.split('\n').filter((l) => l.startsWith('-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst ') && l.endsWith('-j DROP'));
      assert.equal(firewall.length, 1, `one rule drops sources outside loadBalancerSourceRanges:\n${filter}`);
      for (const set of ['KUBE-LOAD-BALANCER-SOURCE-CIDR', 'KUBE-LOAD-BALANCER-SOURCE-IP']) assert.match(firewall[0]!, new RegExp(`! --match-set ${set} dst,dst,src`));

      // kube-lb's health server listens on every node address: through the node address it answers, through kube-ipvs0's it is refused.
      await ctx.curl({ pod: 'client' }, `http://${NODE_IP}:10256/healthz`);
      for (const ip of [VIP, EXTERNAL_IP]) {
        const refused = await ctx.curl({ pod: 'client' }, `http://${ip}:10256/healthz`).then(() => 'answered', (err: Error) => err.message);
        assert.match(refused, /Failed to connect|Connection refused|Couldn't connect/, `${ip}:10256 is not a service port`);
      }
    }));

  const noIpv6 = unsupportedReason('ipvs', 'ipv6');
  it("dual-stack: ipvsadm, ipset and ip6tables show kube-proxy's IPv6 layout beside the IPv4 one (KUBE-6- sets, the same chains in ip6tables, /128 nodad addresses on kube-ipvs0)", { skip: noIpv6 === undefined ? false : `unsupported by ipvs per src/backends/capabilities.ts: ${noIpv6}` }, () =>
    withContext(ipvs, pods, async (ctx) => {
      ctx.useDualStack();
      const VIP6 = 'fd00:96::10';
      const NODE_IP6 = NODES['node-a'].ip6;
      const eps = endpoints(['web-1', 'web-2']);
      ctx.writeServices('web.yaml', [
        {
          ...web([...eps, ...eps.map((e) => ({ ...e, ip: podIpv6(e.ip) }))]),
          clusterIPs: [VIP, VIP6],
          type: 'NodePort',
          ports: [
            { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 },
            { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP', nodePort: 30053 },
          ],
        },
      ]);
      await ctx.startKubeLb();
      const lines = await ipvsadm(ctx);
      const [w1, w2] = ['web-1', 'web-2'].map((pod) => podIpv6(ipOf(pod)));
      for (const [ip, http, dns] of [[VIP6, 80, 53], [NODE_IP6, 30080, 30053]] as const) {
        const tcp = lines.indexOf(`TCP [${ip}]:${http} rr`);
        assert.ok(tcp >= 0, `TCP [${ip}]:${http}:\n${lines.join('\n')}`);
        assert.deepEqual(lines.slice(tcp + 1, tcp + 3).sort(), [`-> [${w1}]:8080 Masq 1 0 0`, `-> [${w2}]:8080 Masq 1 0 0`].sort());
        assert.ok(lines.includes(`UDP [${ip}]:${dns} rr`), `UDP [${ip}]:${dns}:\n${lines.join('\n')}`);
      }
      assert.ok(lines.includes(`TCP ${VIP}:80 rr`), 'the IPv4 cluster IP is served beside');

      const addresses = await ctx.sandbox.inNode('ip', '-6', '-o', 'addr', 'show', 'dev', 'kube-ipvs0');
      assert.match(addresses, new RegExp(`inet6 ${VIP6}/128 scope global nodad`), addresses);

      const saved = await ctx.sandbox.inNode('ipset', 'save');
      for (const line of [
        'create KUBE-6-CLUSTER-IP hash:ip,port family inet6',
        `add KUBE-6-CLUSTER-IP ${VIP6},tcp:80`,
        `add KUBE-6-CLUSTER-IP ${VIP6},udp:53`,
        'add KUBE-6-NODE-PORT-TCP 30080',
        `add KUBE-6-IPVS-IPS ${VIP6}`,
        `add KUBE-6-LOOP-BACK ${w1},tcp:8080,${w1}`,
        `add KUBE-CLUSTER-IP ${VIP},tcp:80`,
      ]) {
        assert.ok(saved.split('\n').some((l) => l.startsWith(line)), `ipset: missing ${line}\n${saved}`);
      }
      assert.ok(!saved.includes(`KUBE-CLUSTER-IP ${VIP6}`), 'no IPv6 address in an IPv4 set');

      const nat = await ctx.sandbox.inNode('ip6tables-save', '-t', 'nat');
      const filter = await ctx.sandbox.inNode('ip6tables-save', '-t', 'filter');
      assertRules([
        [nat, '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
        [nat, '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'],
        [nat, '-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT'],
        [nat, '-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-6-NODE-PORT-TCP dst -j KUBE-MARK-MASQ'],
        [nat, '-A KUBE-POSTROUTING -m set --match-set KUBE-6-LOOP-BACK dst,dst,src -j MASQUERADE'],
        [filter, '-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER'],
        [filter, '-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-6-IPVS-IPS dst -j REJECT --reject-with icmp6-port-unreachable'],
      ]);

      // kube-lb's health server listens on every address: through kube-ipvs0's IPv6 one it is refused.
      const refused = await ctx.curl({ pod: 'client' }, `http://[${VIP6}]:10256/healthz`).then(() => 'answered', (err: Error) => err.message);
      assert.match(refused, /Failed to connect|Connection refused|Couldn't connect/, `[${VIP6}]:10256 is not a service port`);

      await ctx.stopKubeLb();
      await ctx.kubeLb('cleanup');
      await ipvs.assertNothingLeft(ctx.sandbox);
      assert.doesNotMatch(await ctx.sandbox.inNode('ipset', 'list', '-n'), /^KUBE-6-/m, 'no IPv6 set left');
    }));

  it('a per-service scheduler: with sh, one client stays on one backend; an unknown one falls back to rr with a log line', () =>
    withContext(ipvs, pods, async (ctx) => {
      ctx.writeServices('web.yaml', [web(endpoints(['web-1', 'web-2', 'web-3']), { 'kube-lb.io/ipvs-scheduler': 'sh' })]);
      ctx.writeServices('other.yaml', [{ ...web(endpoints(['web-1', 'web-2'])), name: 'other', clusterIP: '10.96.0.20', annotations: { 'kube-lb.io/ipvs-scheduler': 'fastest' } }]);
      await ctx.startKubeLb();
      const lines = await ipvsadm(ctx);
      assert.ok(lines.includes('TCP 10.96.0.10:80 sh'), lines.join('\n'));
      assert.ok(lines.includes('TCP 10.96.0.20:80 rr'), lines.join('\n'));
      const sticky = await ctx.client('client', 'tcp', VIP, 80, 30);
      assert.equal(sticky.failures, 0, JSON.stringify(sticky.errors));
      assert.equal(Object.keys(sticky.answers).length, 1, `sh sends one client to one backend: ${JSON.stringify(sticky.answers)}`);
      const spread = await ctx.client('client', 'tcp', '10.96.0.20', 80, 20);
      assert.deepEqual(Object.keys(spread.answers).sort(), ['web-1', 'web-2'], 'rr spreads');
      assert.match(ctx.kubeLbLogs, /"scheduler":"fastest".*unknown IPVS scheduler rejected/);
    }));

  it('a removed endpoint drains: weight 0, its open connection keeps working, new connections avoid it', () =>
    withContext(ipvs, pods, async (ctx) => {
      ctx.writeServices('web.yaml', [web(endpoints(['web-1']))]);
      await ctx.startKubeLb();
      // Held until the endpoint has drained and new connections have gone elsewhere.
      const result = await holdWhile(
        (until) => ctx.client('client', 'hold', VIP, 80, slow(60_000), { until }),
        async () => {
          await ctx.waitUntil('the held connection is counted', 10_000, async () => (await ipvsadm(ctx)).includes('-> 10.244.0.11:8080 Masq 1 1 0'));
          ctx.writeServices('web.yaml', [web(endpoints(['web-2']))]);
          await ctx.waitUntil('web-1 drains with weight 0', 10_000, async () => (await ipvsadm(ctx)).includes('-> 10.244.0.11:8080 Masq 0 1 0'));
          const fresh = await ctx.client('client', 'tcp', VIP, 80, 10);
          assert.deepEqual(Object.keys(fresh.answers), ['web-2'], `new connections: ${JSON.stringify(fresh.answers)}`);
        },
      );
      assert.equal(result.failures, 0, `the draining connection broke: ${JSON.stringify(result.errors)}`);
      assert.deepEqual(Object.keys(result.answers), ['web-1']);
      // UDP has no connection end to wait for: its real server went at once.
      const udp = (await ipvsadm(ctx)).join('\n');
      assert.doesNotMatch(udp, /10\.244\.0\.11:5353/);
    }));

  it('--ipvs-drain-timeout: a draining real server whose connection stays open is deleted once the timeout is over, not before', () =>
    withContext(ipvs, pods, async (ctx) => {
      const drainMs = slow(2000);
      ctx.writeServices('web.yaml', [web(endpoints(['web-1']))]);
      await ctx.startKubeLb(process.env, [`--ipvs-drain-timeout=${drainMs}ms`]);
      // Held past the timeout: the connection is still open when its real server goes.
      // What the connection sees once its real server is gone is IPVS's (expire_nodest_conn), not asserted here.
      await holdWhile(
        (until) => ctx.client('client', 'hold', VIP, 80, slow(60_000), { until }),
        async () => {
          await ctx.waitUntil('the held connection is counted', 10_000, async () => (await ipvsadm(ctx)).includes('-> 10.244.0.11:8080 Masq 1 1 0'));
          const removedAt = performance.now();
          ctx.writeServices('web.yaml', [web(endpoints(['web-2']))]);
          await ctx.waitUntil('web-1 drains with weight 0', 10_000, async () => (await ipvsadm(ctx)).includes('-> 10.244.0.11:8080 Masq 0 1 0'));
          await ctx.waitUntil('web-1 is deleted after its drain timeout', 2000 + 10_000, async () => !(await ipvsadm(ctx)).some((l) => l.startsWith('-> 10.244.0.11:8080 ')));
          const elapsed = performance.now() - removedAt;
          assert.ok(elapsed >= drainMs, `deleted ${elapsed.toFixed(0)} ms after the endpoint went, before the ${drainMs} ms drain timeout`);
          await ctx.waitForLog('kube-lb logs the deletion, timed out', /"destination":"10\.244\.0\.11:8080","connections":1,"timedOut":true,"msg":"drained real server deleted"/);
        },
      );
    }));

  it('kube_lb_service_connections_total, _packets_total and _bytes_total count what IPVS counted for each real server, named by service and endpoint', () =>
    withContext(ipvs, pods, async (ctx) => {
      ctx.writeServices('web.yaml', [web()]);
      await ctx.startKubeLb(process.env, ['--metrics-endpoint-labels=true']);
      const connections = 10;
      const sent = await ctx.client('client', 'tcp', VIP, 80, connections);
      assert.equal(sent.failures, 0, JSON.stringify(sent.errors));
      // Each connection is at least a SYN, its SYN-ACK, an ACK and the answer (the pod's name and a newline), each with 40 bytes of IP and TCP headers at least.
      const least = { connections: () => 1, packets: () => 4, bytes: (pod: string) => 4 * 40 + `${pod}\n`.length };
      // A scrape answers from the last read of the kernel and starts the next when it is stale: the counts show within a few scrapes.
      const shortfall = async (): Promise<string[]> => {
        const body = await ctx.sandbox.inNode('curl', '-sS', '--noproxy', '*', '--max-time', '30', 'http://127.0.0.1:10249/metrics');
        return (['connections', 'packets', 'bytes'] as const).flatMap((counted) =>
          ['web-1', 'web-2'].flatMap((pod) => {
            const m = new RegExp(`^kube_lb_service_${counted}_total\\{namespace="default",service="web",port="http",endpoint="${ipOf(pod).replace(/\./g, '\\.')}:8080"\\} (\\d+)$`, 'm').exec(body);
            const value = Number(m?.[1] ?? -1);
            const answered = sent.answers[pod] ?? 0;
            return value >= answered * least[counted](pod) ? [] : [`${pod} answered ${answered} connections, ${counted} counted ${value}`];
          }),
        );
      };
      let missing: string[] = [];
      await ctx.waitUntil('every connection is counted', 20_000, async () => (missing = await shortfall()).length === 0).catch((err: Error) => {
        throw new Error(`${missing.join('; ')}\n${err.message}`);
      });
    }));

  it('a virtual server IPVS refuses fails the sync (counted, logged, retried) while the others serve, and is programmed once the kernel can', () =>
    withContext(ipvs, pods, async (ctx) => {
      // The kernel loads a scheduler's module on first use; this one, no other test uses, cannot load until the file goes.
      const blocker = '/etc/modprobe.d/kube-lb-test-no-nq.conf';
      fs.writeFileSync(blocker, 'install ip_vs_nq /bin/false\n');
      try {
        ctx.writeServices('web.yaml', [web(endpoints(['web-1']))]);
        ctx.writeServices('other.yaml', [{ ...web(endpoints(['web-2'])), name: 'other', clusterIP: '10.96.0.20', annotations: { 'kube-lb.io/ipvs-scheduler': 'nq' } }]);
        await ctx.startKubeLb(process.env, [], { until: /"msg":"sync failed/ });
        const failedLine = ctx.kubeLbLogs.split('\n').find((l) => l.includes('"msg":"sync failed')) ?? '';
        assert.match(failedLine, /default\/other:http .*add IPVS service TCP 10\.96\.0\.20:80 \(scheduler nq, persistence 0 s\)/, 'the failed sync names the refused virtual server as the kernel refused it');
        const served = await ctx.client('client', 'tcp', VIP, 80, 5);
        assert.deepEqual(Object.keys(served.answers), ['web-1'], `the other service serves: ${JSON.stringify(served)}`);
        const metrics = await ctx.sandbox.inNode('curl', '-sS', '--noproxy', '*', '--max-time', '30', 'http://127.0.0.1:10249/metrics');
        const errors = Number(/^kube_lb_sync_errors_total\{[^}]*\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
        assert.ok(errors >= 1, `kube_lb_sync_errors_total counts the failed sync:\n${metrics}`);
      } finally {
        fs.rmSync(blocker, { force: true });
      }
      await ctx.waitUntil('the retried sync programs the refused virtual server', 30_000, async () => (await ipvsadm(ctx)).includes('TCP 10.96.0.20:80 nq'));
      const other = await ctx.client('client', 'tcp', '10.96.0.20', 80, 5);
      assert.deepEqual(Object.keys(other.answers), ['web-2'], JSON.stringify(other));
    }));

  it('cleanup removes what it can and reports what it could not; then it removes the rest, sparing a foreign virtual server', () =>
    withContext(ipvs, pods, async (ctx) => {
      await ctx.sandbox.inNode('ipvsadm', '-A', '-t', '192.0.2.1:80', '-s', 'wlc');
      ctx.writeServices('web.yaml', [web(endpoints(['web-1']))]);
      await ctx.startKubeLb();
      assert.ok((await ipvsadm(ctx)).includes('TCP 10.96.0.10:80 rr'));
      await ctx.stopKubeLb();
      // A rule of someone else's that names kube-lb's set keeps the kernel from destroying it.
      const foreign = ['-w', '-t', 'filter', '-I', 'INPUT', '-m', 'set', '--match-set', 'KUBE-CLUSTER-IP', 'dst,dst', '-j', 'ACCEPT'];
      await ctx.sandbox.inNode('iptables', ...foreign);
      try {
        const failure = await ctx.kubeLb('cleanup').then(() => null, (err: Error) => err.message);
        assert.ok(failure !== null, 'cleanup fails while a set it must remove is in use');
        assert.match(failure, /KUBE-CLUSTER-IP/, 'the error names the set left behind');
        assert.deepEqual((await ipvsadm(ctx)).filter((l) => /^(TCP|UDP|SCTP) /.test(l)), ['TCP 192.0.2.1:80 wlc'], 'the virtual servers are gone all the same');
      } finally {
        await ctx.sandbox.inNode('iptables', ...foreign.map((a) => (a === '-I' ? '-D' : a)));
      }
      await ctx.kubeLb('cleanup');
      await ipvs.assertNothingLeft(ctx.sandbox);
      const left = await ipvsadm(ctx);
      assert.deepEqual(left.filter((l) => /^(TCP|UDP|SCTP) /.test(l)), ['TCP 192.0.2.1:80 wlc'], 'only the foreign virtual server remains');
    }));

  it("--ipvs-tcp-timeout, --ipvs-tcpfin-timeout and --ipvs-udp-timeout set IPVS's timeouts; a full sync spares a virtual server in --ipvs-exclude-cidrs", () =>
    withContext(ipvs, pods, async (ctx) => {
      ctx.writeServices('web.yaml', [web(endpoints(['web-1']))]);
      const flags = ['--ipvs-tcp-timeout=600s', '--ipvs-tcpfin-timeout=60s', '--ipvs-udp-timeout=30s', '--ipvs-exclude-cidrs=192.0.2.0/24', '--sync-period=2s'];
      await ctx.startKubeLb(process.env, flags);
      assert.ok((await ipvsadm(ctx, '--timeout')).includes('Timeout (tcp tcpfin udp): 600 60 30'), (await ipvsadm(ctx, '--timeout')).join('\n'));
      // A virtual server on one of kube-ipvs0's addresses is kube-lb's, unless it is in an excluded range
      // (outside the service range, which the variant's check after cleanup wants empty). The virtual
      // server comes first: a full sync between the two steps would otherwise unbind the address, which
      // no service has, and leave a virtual server that is no longer kube-lb's.
      for (const ip of ['192.0.2.99', '10.96.98.1']) {
        await ctx.sandbox.inNode('ipvsadm', '-A', '-t', `${ip}:80`, '-s', 'wlc');
        await ctx.sandbox.inNode('ip', 'addr', 'add', `${ip}/32`, 'dev', 'kube-ipvs0');
      }
      await ctx.waitUntil('a full sync removes the stray virtual server outside the excluded range', 30_000, async () => !(await ipvsadm(ctx)).includes('TCP 10.96.98.1:80 wlc'));
      assert.ok((await ipvsadm(ctx)).includes('TCP 192.0.2.99:80 wlc'), 'the one in --ipvs-exclude-cidrs stays');
      const served = await ctx.client('client', 'tcp', VIP, 80, 3);
      assert.deepEqual(Object.keys(served.answers), ['web-1'], JSON.stringify(served));
    }));
});
