// The conformance scenarios: one table, backend-neutral. Each scenario
// builds a routed two-node cluster (kube-lb on node-a, remote endpoints on
// node-b), feeds kube-lb kubectl-shaped YAML and checks real TCP and UDP
// traffic from real clients. suite.ts runs the table against
// every backend variant; a scenario says which capabilities it needs, and
// src/backends/capabilities.ts says which a backend has.
import fs from 'node:fs';
import assert from 'node:assert/strict';
import { type Capability, unsupportedReason } from '../../src/backends/capabilities.js';
import { destinationKey, frontendKey } from '../../src/model/contract.js';
import os from 'node:os';
import path from 'node:path';
import type { NamedView } from '../../src/inspect-view.js';
import { type EndpointSpec, type ServiceSpec, writeManifest } from '../lib/manifests.js';
import { type ClientResult, NODES } from '../lib/sandbox.js';
import { holdWhile, KUBE_LB_NODE, type PodSpec, type ScenarioContext } from './context.js';
import { slow } from '../lib/slowdown.js';
import { outOfWindowSegment } from '../lib/out-of-window.js';
import { sharedPortConnections } from '../lib/shared-port.js';

export interface Scenario {
  name: string;
  needs: Capability[];
  pods: PodSpec[];
  run(ctx: ScenarioContext): Promise<void>;
}

export const VIP = '10.96.0.10';
export const pods: PodSpec[] = [
  { name: 'client', ip: '10.244.0.2', serves: false },
  { name: 'web-1', ip: '10.244.0.11' },
  { name: 'web-2', ip: '10.244.0.12' },
  { name: 'web-3', ip: '10.244.0.13' },
  { name: 'web-4', ip: '10.244.128.14', node: 'node-b' },
  { name: 'web-5', ip: '10.244.128.15', node: 'node-b' },
];
const podSpec = (name: string): PodSpec => {
  const pod = pods.find((p) => p.name === name);
  if (!pod) throw new Error(`no pod ${name} in the scenarios' pods`);
  return pod;
};
export const ipOf = (name: string): string => podSpec(name).ip;
/** A pod's address in the context's family. */
export const podAddress = (ctx: Pick<ScenarioContext, 'address'>, name: string): string => ctx.address(ipOf(name));

/** A template tag for a regular expression whose text is a pattern and whose values (addresses, with their dots) match literally. */
export const pattern =
  (flags = '') =>
  (strings: TemplateStringsArray, ...values: string[]): RegExp =>
    new RegExp(strings.raw.reduce((source, part, i) => source + values[i - 1]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&') + part), flags);

/** The pods' endpoints with their node and zone, as the EndpointSlice controller writes them. */
export function endpoints(ready: string[], notReady: string[] = []): EndpointSpec[] {
  const endpoint = (name: string, isReady: boolean): EndpointSpec => {
    const node = NODES[podSpec(name).node ?? 'node-a'];
    return { ip: ipOf(name), ready: isReady, nodeName: node.name, zone: node.zone };
  };
  return [...ready.map((n) => endpoint(n, true)), ...notReady.map((n) => endpoint(n, false))];
}

function webService(eps: EndpointSpec[], name = 'web', clusterIP = VIP): ServiceSpec {
  return {
    name,
    clusterIP,
    ports: [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
      { name: 'admin', port: 81, targetPort: 8081, protocol: 'TCP' },
      { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
    ],
    endpoints: eps,
  };
}

export function assertAnsweredBy(result: ClientResult, expected: string[], what: string): void {
  assert.equal(result.failures, 0, `${what}: failures ${JSON.stringify(result.errors)}`);
  assert.deepEqual(Object.keys(result.answers).sort(), [...expected].sort(), `${what}: answered by ${JSON.stringify(result.answers)}`);
}

/** Whether every one of `count` TCP connections was answered, and only by `expected`. */
async function servedBy(ctx: ScenarioContext, expected: string[], count = 20, port = 80): Promise<boolean> {
  const r = await ctx.client('client', 'tcp', VIP, port, count);
  return r.failures === 0 && Object.keys(r.answers).sort().join() === [...expected].sort().join();
}

/** The service counters on /metrics, by what they count. */
const SERVICE_METRICS = { connections: 'kube_lb_service_connections_total', packets: 'kube_lb_service_packets_total', bytes: 'kube_lb_service_bytes_total' } as const;
type Counted = keyof typeof SERVICE_METRICS;

/** Each series of a service counter for default/web, by its labels after namespace and service; null when the metric is not exported. */
async function webSeries(ctx: ScenarioContext, counted: Counted): Promise<Map<string, number> | null> {
  const body = await ctx.sandbox.inNode('curl', '-sS', '--noproxy', '*', '--max-time', '10', 'http://127.0.0.1:10249/metrics');
  const metric = SERVICE_METRICS[counted];
  if (!new RegExp(`^# TYPE ${metric} counter$`, 'm').test(body)) return null;
  const series = new Map<string, number>();
  for (const m of body.matchAll(new RegExp(`^${metric}\\{namespace="default",service="web",([^}]*)\\} (\\S+)$`, 'gm'))) series.set(m[1]!, Number(m[2]));
  return series;
}

/** The service counters the backend exports, as webSeries reads them: connections always, packets and bytes where it counts them. */
async function webCounters(ctx: ScenarioContext, traffic: boolean): Promise<Record<Counted, Map<string, number>>> {
  const read = async (counted: Counted): Promise<Map<string, number>> => {
    const series = await webSeries(ctx, counted);
    assert.equal(series !== null, counted === 'connections' || traffic, `${ctx.variant.backend} ${series === null ? 'does not export' : 'exports'} ${SERVICE_METRICS[counted]}`);
    return series ?? new Map();
  };
  return { connections: await read('connections'), packets: await read('packets'), bytes: await read('bytes') };
}

export const scenarios: Scenario[] = [
  {
    name: 'TCP and UDP on several ports spread over ready endpoints only',
    needs: ['tcp', 'udp', 'several-ports', 'endpoint-updates'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1', 'web-2', 'web-4'], ['web-3', 'web-5']))]);
      await ctx.startKubeLb();
      const ready = ['web-1', 'web-2', 'web-4'];
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 60), ready, 'TCP port 80');
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 81, 60), ready, 'TCP port 81');
      assertAnsweredBy(await ctx.client('client', 'udp', VIP, 53, 60), ready, 'UDP port 53');
    },
  },
  {
    name: 'endpoints added, made not ready and removed reach the datapath without waiting for a resync',
    needs: ['tcp', 'udp', 'endpoint-updates'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1']))]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 10), ['web-1'], 'one endpoint');

      const steps: [string, EndpointSpec[], string[]][] = [
        ['added', endpoints(['web-1', 'web-2', 'web-4']), ['web-1', 'web-2', 'web-4']],
        ['made not ready', endpoints(['web-1', 'web-4'], ['web-2']), ['web-1', 'web-4']],
        ['removed', endpoints(['web-4']), ['web-4']],
      ];
      for (const [what, eps, expected] of steps) {
        // Let the sync loop's minimum interval pass, so each step's change triggers a sync of its own.
        await new Promise((r) => setTimeout(r, 1100));
        ctx.writeServices('web.yaml', [webService(eps)]);
        // 5 s is far below the 30 s resync, so the change itself must trigger
        // the sync, and it leaves room for a loaded machine; make bench measures
        // how fast a change propagates. A poll made before the sync lands can
        // miss a leaving endpoint by chance; 32 connections make that negligible.
        await ctx.waitUntil(`endpoints ${what}`, 5000, () => servedBy(ctx, expected, 32));
      }
      assertAnsweredBy(await ctx.client('client', 'udp', VIP, 53, 20), ['web-4'], 'UDP after the changes');
    },
  },
  {
    name: 'a TCP client that tried a cluster IP before its service was programmed gets through from the same source port once it is',
    needs: ['tcp', 'endpoint-updates'],
    pods,
    async run(ctx) {
      // A retransmitted SYN, or a new connection reusing the port, has the
      // first attempt's tuple: conntrack must not keep it untranslated.
      const sourcePort = 40123;
      await ctx.startKubeLb();
      const early = await ctx.client('client', 'tcp', VIP, 80, 1, { sourcePort });
      assert.equal(early.failures, 1, `answered before the service existed: ${JSON.stringify(early.answers)}`);
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1']))]);
      // Room for a loaded machine: this checks the retried port, not how fast the service arrives.
      await ctx.waitUntil('service programmed', 15_000, () => servedBy(ctx, ['web-1'], 3));
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 1, { sourcePort }), ['web-1'], `from source port ${sourcePort}, which tried before`);
    },
  },
  {
    name: 'a long-lived UDP flow moves to the new endpoint when its endpoint is removed',
    needs: ['udp', 'udp-flows-follow-endpoints'],
    pods,
    async run(ctx) {
      /** Holds a UDP flow on `from` and replaces `from` by `to` while it runs. */
      const moveFlow = async (from: string, to: string): Promise<void> => {
        const flow = ctx.client('client', 'udp-hold', VIP, 53, slow(4000));
        await new Promise((r) => setTimeout(r, slow(1000)));
        ctx.writeServices('web.yaml', [webService(endpoints([to]))]);
        const { order = [] } = await flow;
        assert.equal(order[0], from, `the flow starts on ${from}: ${order.join(' ')}`);
        // 4 s at one datagram per 50 ms; the change lands well before the last second.
        const last = order.slice(-15);
        assert.ok(last.length === 15 && last.every((who) => who === to), `the flow ends on ${to}: ${order.join(' ')}`);
      };
      ctx.writeServices('web.yaml', [webService(endpoints(['web-4']))]);
      await ctx.startKubeLb();
      await moveFlow('web-4', 'web-1');
      await moveFlow('web-1', 'web-5');
    },
  },
  {
    name: 'a service with no ready endpoint gets no traffic, and deleting a service stops it',
    needs: ['tcp', 'udp', 'no-endpoints', 'service-deletion'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1', 'web-4']))]);
      ctx.writeServices('idle.yaml', [webService(endpoints([], ['web-2', 'web-5']), 'idle', '10.96.0.20')]);
      await ctx.startKubeLb();
      const idle = await ctx.client('client', 'tcp', '10.96.0.20', 80, 3);
      assert.equal(idle.failures, 3, `no-endpoint service answered: ${JSON.stringify(idle.answers)}`);
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 30), ['web-1', 'web-4'], 'before deletion');
      ctx.removeFile('web.yaml');
      // One attempt each: where nothing answers, each waits out its timeout, many times longer under emulation.
      await ctx.waitUntil('service deleted', 5000, async () => (await ctx.client('client', 'tcp', VIP, 80, 1)).failures === 1);
      const udp = await ctx.client('client', 'udp', VIP, 53, 1);
      assert.equal(udp.failures, 1, `deleted UDP service answered: ${JSON.stringify(udp.answers)}`);
    },
  },
  {
    name: 'hairpin: a pod reaching its own service through itself gets its answers',
    needs: ['tcp', 'udp', 'hairpin'],
    pods,
    async run(ctx) {
      // Beside a remote endpoint, so each client's connections both hairpin and leave the node.
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1', 'web-4']))]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.client('web-1', 'tcp', VIP, 80, 30), ['web-1', 'web-4'], 'hairpin TCP');
      assertAnsweredBy(await ctx.client('web-1', 'udp', VIP, 53, 30), ['web-1', 'web-4'], 'hairpin UDP');
    },
  },
  {
    name: 'one client port connected to two services that share an endpoint: each connection keeps its own answers',
    needs: ['tcp', 'shared-client-port'],
    pods,
    async run(ctx) {
      const TWIN_VIP = '10.96.0.20';
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1'])), webService(endpoints(['web-1']), 'twin', TWIN_VIP)]);
      await ctx.startKubeLb();
      const result = await sharedPortConnections(ctx.sandbox, 'client', [ctx.address(VIP), ctx.address(TWIN_VIP)], 80, 5);
      assert.equal(result.error, undefined, `the connections from port ${result.port} broke: ${JSON.stringify(result)}`);
      const expected = Array(6).fill('web-1');
      assert.deepEqual(result.answers, [expected, expected], 'a greeting and five answers on each connection');
    },
  },
  {
    name: '2,000 services are all programmed and every one answers',
    needs: ['tcp', 'scale-2000'],
    pods,
    async run(ctx) {
      const services: ServiceSpec[] = [];
      for (let i = 0; i < 2000; i++) {
        const clusterIP = `10.96.${10 + Math.floor(i / 250)}.${(i % 250) + 1}`;
        services.push(webService(endpoints([`web-${(i % 3) + 1}`]), `svc-${i}`, clusterIP));
      }
      ctx.writeServices('many.yaml', services);
      await ctx.startKubeLb();
      // No bound on how fast: this row checks that everything gets programmed,
      // with room for a loaded 2-core machine; make bench measures the speed.
      const last = services.at(-1)!;
      await ctx.waitUntil('the last of 2,000 services answers', 60_000, async () => (await ctx.client('client', 'tcp', last.clusterIP, 80, 1)).failures === 0);
      const all = await ctx.client('client', 'tcp', services.map((s) => s.clusterIP).join(','), 80, 1);
      assert.equal(all.failures, 0, `${all.failures} of 2,000 services did not answer: ${JSON.stringify(all.errors)}`);
      assert.deepEqual(all.answers, { 'web-1': 667, 'web-2': 667, 'web-3': 666 }, 'each service answers from its one endpoint');
      for (const i of [0, 777, 1999]) {
        const s = services[i]!;
        assertAnsweredBy(await ctx.client('client', 'tcp', s.clusterIP, 80, 2), [`web-${(i % 3) + 1}`], `service ${s.name}`);
      }
    },
  },
  {
    name: 'a held TCP connection survives a kube-lb restart',
    needs: ['tcp', 'restart-without-disruption'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1', 'web-4']))]);
      await ctx.startKubeLb();
      const result = await holdWhile(
        (until) => ctx.client('client', 'hold', VIP, 80, slow(60_000), { until }),
        async () => {
          await new Promise((r) => setTimeout(r, slow(1000)));
          await ctx.stopKubeLb();
          await new Promise((r) => setTimeout(r, 500));
          await ctx.startKubeLb();
          // Lines through the restarted kube-lb's datapath too.
          await new Promise((r) => setTimeout(r, slow(1000)));
        },
      );
      assert.equal(result.failures, 0, `held connection broke: ${JSON.stringify(result.errors)}`);
      const answered = Object.values(result.answers).reduce((a, b) => a + b, 0);
      // One greeting on connect, then one answer per line sent.
      assert.equal(answered, result.sent! + 1, `answers ${answered} for ${result.sent} lines`);
      assert.equal(Object.keys(result.answers).length, 1, 'the connection stayed on one backend');
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 30), ['web-1', 'web-4'], 'new connections after restart');
    },
  },
  {
    name: 'hostile names are data: invalid ones are rejected by name, the rest keep working',
    needs: ['tcp', 'hostile-names'],
    pods,
    async run(ctx) {
      const longName = 'a'.repeat(63);
      const hostile = 'x"; $(touch /tmp/kube-lb-pwned)\n-A';
      ctx.writeServices('hostile.yaml', [
        webService(endpoints(['web-1']), longName),
        webService(endpoints(['web-2']), hostile, '10.96.0.30'),
        webService(endpoints(['web-4']), 'plain', '10.96.0.31'),
      ]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 5), ['web-1'], '63-character name');
      assertAnsweredBy(await ctx.client('client', 'tcp', '10.96.0.31', 80, 5), ['web-4'], 'the service beside the hostile one');
      const rejected = ctx.kubeLbLogs.split('\n').filter((l) => l.includes('"kind":"Service"') && l.includes('touch /tmp/kube-lb-pwned'));
      assert.equal(rejected.length, 1, `one log line names the rejected service; logs:\n${ctx.kubeLbLogs.slice(-2000)}`);
      assert.match(rejected[0]!, /"reason":"[^"]+/);
      assert.equal((await ctx.client('client', 'tcp', '10.96.0.30', 80, 1)).failures, 1, 'the rejected service gets no traffic');
      assert.equal(fs.existsSync('/tmp/kube-lb-pwned'), false, 'a name was run as a command');
    },
  },
  {
    name: 'inspect shows what the manifests say, read back from the kernel, as JSON and text',
    needs: ['tcp', 'udp', 'inspect'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1', 'web-4'], ['web-3', 'web-5']))]);
      await ctx.startKubeLb();
      const view = JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as unknown;
      const vip = ctx.address(VIP);
      const to = (port: number): { ip: string; port: number }[] => ['web-1', 'web-4'].map((pod) => ({ ip: podAddress(ctx, pod), port }));
      assert.deepEqual(view, [
        { kind: 'ClusterIP', frontend: { ip: vip, port: 53, protocol: 'UDP' }, destinations: to(5353) },
        { kind: 'ClusterIP', frontend: { ip: vip, port: 80, protocol: 'TCP' }, destinations: to(8080) },
        { kind: 'ClusterIP', frontend: { ip: vip, port: 81, protocol: 'TCP' }, destinations: to(8081) },
      ]);
      assert.match(await ctx.kubeLb('inspect'), pattern()`${destinationKey({ ip: vip, port: 80 })}/TCP\s+${destinationKey({ ip: podAddress(ctx, 'web-1'), port: 8080 })}, ${destinationKey({ ip: podAddress(ctx, 'web-4'), port: 8080 })}\n`);
    },
  },
  {
    name: 'inspect names what it shows from the manifests, as kubectl get -o wide would, and --service shows one service',
    needs: ['tcp', 'udp', 'inspect', 'internal-traffic-policy-local', 'session-affinity'],
    pods,
    async run(ctx) {
      const web = webService(endpoints(['web-1', 'web-4']));
      const sticky: ServiceSpec = {
        namespace: 'shop',
        name: 'sticky',
        clusterIP: '10.96.0.20',
        ports: [{ name: '', port: 80, targetPort: 8080, protocol: 'TCP' }],
        endpoints: endpoints(['web-2', 'web-5']),
        internalTrafficPolicy: 'Local',
        sessionAffinityTimeoutSeconds: 600,
      };
      ctx.writeServices('web.yaml', [web, sticky]);
      await ctx.startKubeLb();
      const [vip, stickyIp, web1, web2, web4] = [VIP, sticky.clusterIP, ipOf('web-1'), ipOf('web-2'), ipOf('web-4')].map((ip) => ctx.address(ip));
      // The kernel holds addresses only: names come from the manifests, as run reads them.
      const inspect = async (manifests: string, ...args: string[]): Promise<string> =>
        ctx.kubeLb('inspect', `--manifests=${manifests}`, `--hostname-override=${KUBE_LB_NODE}`, ...args);
      const summary = (json: string) =>
        (JSON.parse(json) as NamedView[]).map((v) => ({
          service: v.service,
          kind: v.kind,
          frontend: frontendKey(v.frontend),
          policy: v.policy,
          affinity: v.affinity,
          backends: v.destinations.map((d) => `${destinationKey(d)} ${d.node}`),
        }));
      const webView = (port: string, frontend: string, target: number) => ({
        service: { namespace: 'default', name: 'web', port },
        kind: 'ClusterIP',
        frontend,
        policy: 'Cluster',
        affinity: null,
        backends: [`${destinationKey({ ip: web1, port: target })} node-a`, `${destinationKey({ ip: web4, port: target })} node-b`],
      });
      const stickyView = {
        service: { namespace: 'shop', name: 'sticky', port: '' },
        kind: 'ClusterIP',
        frontend: frontendKey({ ip: stickyIp, port: 80, protocol: 'TCP' }),
        policy: 'Local',
        affinity: { timeoutSeconds: 600 },
        backends: [`${destinationKey({ ip: web2, port: 8080 })} node-a`],
      };
      assert.deepEqual(summary(await inspect(ctx.manifestsDir, '-o', 'json')), [
        webView('dns', frontendKey({ ip: vip, port: 53, protocol: 'UDP' }), 5353),
        webView('http', frontendKey({ ip: vip, port: 80, protocol: 'TCP' }), 8080),
        webView('admin', frontendKey({ ip: vip, port: 81, protocol: 'TCP' }), 8081),
        stickyView,
      ]);
      assert.deepEqual(summary(await inspect(ctx.manifestsDir, '-o', 'json', '--service=shop/sticky')), [stickyView]);
      const text = await inspect(ctx.manifestsDir);
      assert.match(text, /^NAMESPACE +NAME +PORT +KIND +FRONTEND +POLICY +AFFINITY +BACKENDS\n/);
      assert.match(text, pattern('m')`^default +web +http +ClusterIP +${destinationKey({ ip: vip, port: 80 })}/TCP +Cluster +None +${destinationKey({ ip: web1, port: 8080 })} \(node-a\), ${destinationKey({ ip: web4, port: 8080 })} \(node-b\)$`);
      assert.match(text, pattern('m')`^shop +sticky +<unset> +ClusterIP +${destinationKey({ ip: stickyIp, port: 80 })}/TCP +Local +ClientIP/600s +${destinationKey({ ip: web2, port: 8080 })} \(node-a\)$`);
      // A frontend in the kernel that the source does not have (here: a directory without it) is shown, unnamed.
      const without = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-inspect-'));
      try {
        writeManifest(without, 'web.yaml', ctx.served([web]));
        assert.match(await inspect(without), pattern('m')`^<none> +<none> +<none> +ClusterIP +${destinationKey({ ip: stickyIp, port: 80 })}/TCP +<none> +<none> +${destinationKey({ ip: web2, port: 8080 })}$`);
      } finally {
        fs.rmSync(without, { recursive: true, force: true });
      }
    },
  },
  {
    name: "an endpoint's out-of-window segment does not reset its connection",
    needs: ['tcp', 'drop-invalid'],
    pods,
    async run(ctx) {
      // One endpoint, on kube-lb's node, so the segment is forwarded there.
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1']))]);
      await ctx.startKubeLb();
      const result = await outOfWindowSegment(ctx.sandbox, outOfWindow(ctx));
      assert.deepEqual(result.after, { answer: 'web-1' }, 'the connection after the segment');
      assert.notEqual(result.clientAnswer, 'rst', 'the segment reached the client un-NATed, and the client reset the connection');
    },
  },
  {
    name: "with --conntrack-tcp-be-liberal, conntrack de-NATs an endpoint's out-of-window segment, and its connection keeps working",
    needs: ['tcp', 'drop-invalid'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1']))]);
      await ctx.startKubeLb(process.env, ['--conntrack-tcp-be-liberal=true']);
      assert.equal((await ctx.sandbox.inNode('sysctl', '-n', 'net.netfilter.nf_conntrack_tcp_be_liberal')).trim(), '1');
      const result = await outOfWindowSegment(ctx.sandbox, outOfWindow(ctx));
      assert.deepEqual(result.after, { answer: 'web-1' }, 'the connection after the segment');
      // Tracked, the segment is not INVALID and nothing drops it: the client gets it from the service's address.
      assert.equal(result.clientAnswer, 'ack', 'how the client answered the segment');
    },
  },
  {
    name: 'cleanup removes only what kube-lb created: foreign iptables rules and nft tables stay',
    needs: ['tcp', 'cleanup-keeps-foreign-state'],
    pods,
    async run(ctx) {
      await addForeignState(ctx);
      const before = await foreignState(ctx);
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1', 'web-4']))]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 30), ['web-1', 'web-4'], 'beside foreign rules');
      await ctx.stopKubeLb();
      await ctx.kubeLb('cleanup');
      await ctx.variant.assertNothingLeft(ctx.sandbox);
      assert.deepEqual(await foreignState(ctx), before, 'foreign state after cleanup');
      // A second cleanup finds nothing of kube-lb's and still succeeds.
      await ctx.kubeLb('cleanup');
      assert.deepEqual(await foreignState(ctx), before, 'foreign state after a second cleanup');
    },
  },
  {
    name: 'connections through a ClusterIP and a NodePort are counted under the service and, on request, each endpoint on /metrics, across full resyncs and a restart',
    // Packets and bytes are asserted too where the backend counts them (traffic-counters), and asserted absent elsewhere.
    needs: ['tcp', 'nodeport', 'connection-counters'],
    pods,
    async run(ctx) {
      const [connections, nodePort] = [10, 30080];
      // Whether packets and bytes are counted too; where they are not, their metrics must be absent.
      const traffic = unsupportedReason(ctx.variant.backend, 'traffic-counters') === undefined;
      // Full resyncs often enough that several happen while the counts are watched.
      const args = ['--sync-period=2s'];
      const labelled = [...args, '--metrics-endpoint-labels=true'];
      ctx.writeServices('web.yaml', [{ ...webService(endpoints(['web-1', 'web-2'])), type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort }] }]);
      await ctx.startKubeLb(process.env, labelled);
      const before = await webCounters(ctx, traffic);
      const inside = await ctx.client('client', 'tcp', VIP, 80, connections);
      const outside = await ctx.externalClient('tcp', NODES['node-a'].ip, nodePort, connections);
      assert.equal(inside.failures + outside.failures, 0, `every connection answered: ${JSON.stringify([inside.errors, outside.errors])}`);
      // Full resyncs rewrite every chain: the counts must outlive two of them.
      const fullSyncs = (): number => ctx.kubeLbLogs.match(/"full":true[^\n]*"msg":"synced"/g)?.length ?? 0;
      const syncsBefore = fullSyncs();
      await ctx.waitUntil('two full resyncs after the connections', 20_000, async () => fullSyncs() >= syncsBefore + 2);

      // Each connection is at least a SYN, its SYN-ACK, an ACK and the
      // answer, the pod's name and a newline: four packets, each with 40
      // bytes of IP and TCP headers at least.
      const least: Record<Counted, (pod: string) => number> = { connections: () => 1, packets: () => 4, bytes: (pod) => 4 * 40 + `${pod}\n`.length };
      // A scrape answers from the last read and starts the next when it is stale: the counts show within a few scrapes.
      const endpointOf = (pod: string): string => destinationKey({ ip: podAddress(ctx, pod), port: 8080 });
      const endpointLabels = (pod: string): string => `port="http",endpoint="${endpointOf(pod)}"`;
      const shortfall = (now: Record<Counted, Map<string, number>>): string[] =>
        (traffic ? (['connections', 'packets', 'bytes'] as const) : (['connections'] as const)).flatMap((counted) =>
          ['web-1', 'web-2'].flatMap((pod) => {
            const answered = (inside.answers[pod] ?? 0) + (outside.answers[pod] ?? 0);
            const grew = (now[counted].get(endpointLabels(pod)) ?? 0) - (before[counted].get(endpointLabels(pod)) ?? 0);
            return grew >= answered * least[counted](pod) ? [] : [`${pod} answered ${answered} connections; its ${counted} count grew by ${grew}`];
          }),
        );
      let after = await webCounters(ctx, traffic);
      await ctx.waitUntil('every connection is counted', 20_000, async () => shortfall((after = await webCounters(ctx, traffic))).length === 0).catch((err: Error) => {
        throw new Error(`${shortfall(after).join('; ')}: ${JSON.stringify(Object.entries(after).map(([k, v]) => [k, [...v]]))}\n${err.message}`);
      });
      const total = (counted: Counted): number => [...after[counted].values()].reduce((a, b) => a + b, 0);
      assert.ok(total('connections') >= 2 * connections, `the service's endpoints counted ${total('connections')} connections, at least ${2 * connections} expected`);
      // inspect -o wide shows the same counts on the ClusterIP's row.
      const wide = await ctx.kubeLb('inspect', '-o', 'wide');
      const row = wide.split('\n').find((l) => l.includes(frontendKey({ ip: ctx.address(VIP), port: 80, protocol: 'TCP' }))) ?? '';
      for (const pod of ['web-1', 'web-2']) {
        const shown = new RegExp(`${endpointOf(pod).replace(/[.[\]]/g, '\\$&')} conns=(\\d+)(?: pkts=(\\d+) bytes=(\\d+))?`).exec(row);
        assert.ok(Number(shown?.[1] ?? -1) >= (inside.answers[pod] ?? 0), `inspect -o wide counts ${pod}'s connections:\n${wide}`);
        // An endpoint random choice gave no connection has counted nothing, and may show 0 bytes.
        const answered = inside.answers[pod] ?? 0;
        if (traffic) assert.ok(Number(shown?.[2] ?? -1) >= 4 * answered && Number(shown?.[3] ?? -1) >= (answered > 0 ? 1 : 0), `inspect -o wide counts ${pod}'s packets and bytes:\n${wide}`);
        else assert.equal(shown?.[2], undefined, `inspect -o wide shows no packets where the kernel does not count them:\n${wide}`);
      }

      await ctx.stopKubeLb();
      // The default: one series per service port.
      await ctx.startKubeLb(process.env, args);
      const folded = await webCounters(ctx, traffic);
      for (const counted of traffic ? (['connections', 'packets', 'bytes'] as const) : (['connections'] as const)) {
        assert.deepEqual([...folded[counted].keys()], ['port="http"'], `one ${counted} series for the service port, without endpoint labels`);
        assert.ok(folded[counted].get('port="http"')! >= total(counted), `the ${counted} counts survive a restart: ${folded[counted].get('port="http"')} after, ${total(counted)} before`);
      }
    },
  },
];
/** A client's connection through the ClusterIP to web-1, its one endpoint, on kube-lb's node. */
/** The out-of-window rows' connection: from the client pod through the VIP to web-1, in the context's family. */
const outOfWindow = (ctx: ScenarioContext) => ({ client: 'client', clientIp: podAddress(ctx, 'client'), endpoint: 'web-1', target: ctx.address(VIP), port: 80, endpointPort: 8080 });

const IPTABLES_MODES = ['nft', 'legacy'];
const FOREIGN_NFT_TABLE = 'foreign-fw';

/** Rules of another program, in both iptables flavours and in nft, including a KUBE- chain kube-lb does not create (kubelet's KUBE-FIREWALL). */
async function addForeignState(ctx: ScenarioContext): Promise<void> {
  const { sandbox } = ctx;
  for (const mode of IPTABLES_MODES) {
    const iptables = (...args: string[]): Promise<string> => sandbox.inNode(`iptables-${mode}`, '-w', ...args);
    await iptables('-t', 'nat', '-N', 'FOREIGN-NAT');
    await iptables('-t', 'nat', '-A', 'FOREIGN-NAT', '-d', '192.0.2.1/32', '-j', 'RETURN');
    await iptables('-t', 'nat', '-A', 'PREROUTING', '-j', 'FOREIGN-NAT');
    await iptables('-t', 'nat', '-A', 'POSTROUTING', '-s', '192.0.2.2/32', '-j', 'RETURN');
    await iptables('-t', 'filter', '-N', 'KUBE-FIREWALL');
    await iptables('-t', 'filter', '-A', 'KUBE-FIREWALL', '-m', 'comment', '--comment', 'someone else', '-j', 'RETURN');
    await iptables('-t', 'filter', '-A', 'FORWARD', '-j', 'KUBE-FIREWALL');
    await iptables('-t', 'filter', '-A', 'FORWARD', '-s', '192.0.2.3/32', '-j', 'DROP');
  }
  const nft = fs.mkdtempSync('/tmp/kube-lb-foreign-');
  try {
    fs.writeFileSync(
      `${nft}/rules.nft`,
      `table ip ${FOREIGN_NFT_TABLE} {\n  chain input { type filter hook input priority 0; policy accept; ip saddr 192.0.2.4 drop; }\n}\n` +
        `table inet ${FOREIGN_NFT_TABLE} {\n  chain forward { type filter hook forward priority 0; policy accept; ip saddr 192.0.2.5 counter drop; }\n}\n`,
    );
    await sandbox.inNode('nft', '-f', `${nft}/rules.nft`);
  } finally {
    fs.rmSync(nft, { recursive: true, force: true });
  }
}

/** The foreign rules as the kernel lists them: rule lines and non-built-in chains per iptables flavour, and the foreign nft tables. */
async function foreignState(ctx: ScenarioContext): Promise<Record<string, string[]>> {
  const state: Record<string, string[]> = {};
  for (const mode of IPTABLES_MODES) {
    let table = '';
    state[`iptables-${mode}`] = (await ctx.sandbox.inNode(`iptables-${mode}-save`))
      .split('\n')
      .flatMap((line) => {
        if (line.startsWith('*')) table = line;
        // Built-in chains are listed once something used them; their rules are what count.
        const declaresBuiltIn = /^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) /.test(line);
        return line.startsWith('-A ') || (line.startsWith(':') && !declaresBuiltIn) ? [`${table} ${line}`] : [];
      })
      .sort();
  }
  for (const family of ['ip', 'inet']) {
    state[`nft ${family}`] = (await ctx.sandbox.inNode('nft', 'list', 'table', family, FOREIGN_NFT_TABLE)).split('\n');
  }
  return state;
}
