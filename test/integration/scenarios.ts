// The integration scenarios: one table, backend-neutral. Each scenario
// builds a routed node, feeds kube-lb kubectl-shaped YAML and checks real
// TCP and UDP traffic from real clients. test/integration/*.test.ts run
// the table against a backend.
import assert from 'node:assert/strict';
import type { EndpointSpec, ServiceSpec } from '../lib/manifests.js';
import type { ClientResult } from '../lib/sandbox.js';
import type { PodSpec, ScenarioContext } from './context.js';

export interface Scenario {
  name: string;
  pods: PodSpec[];
  run(ctx: ScenarioContext): Promise<void>;
}

const VIP = '10.96.0.10';
const pods: PodSpec[] = [
  { name: 'client', ip: '10.244.0.2', serves: false },
  { name: 'web-1', ip: '10.244.0.11' },
  { name: 'web-2', ip: '10.244.0.12' },
  { name: 'web-3', ip: '10.244.0.13' },
];
const ipOf = (name: string): string => pods.find((p) => p.name === name)!.ip;

function endpoints(ready: string[], notReady: string[] = []): EndpointSpec[] {
  return [...ready.map((n) => ({ ip: ipOf(n), ready: true })), ...notReady.map((n) => ({ ip: ipOf(n), ready: false }))];
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

function assertAnsweredBy(result: ClientResult, expected: string[], what: string): void {
  assert.equal(result.failures, 0, `${what}: failures ${JSON.stringify(result.errors)}`);
  assert.deepEqual(Object.keys(result.answers).sort(), [...expected].sort(), `${what}: answered by ${JSON.stringify(result.answers)}`);
}

/** Whether every one of `count` TCP connections was answered, and only by `expected`. */
async function servedBy(ctx: ScenarioContext, expected: string[], count = 20, port = 80): Promise<boolean> {
  const r = await ctx.client('client', 'tcp', VIP, port, count);
  return r.failures === 0 && Object.keys(r.answers).sort().join() === [...expected].sort().join();
}

export const scenarios: Scenario[] = [
  {
    name: 'TCP and UDP on several ports spread over ready endpoints only',
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1', 'web-2'], ['web-3']))]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 40), ['web-1', 'web-2'], 'TCP port 80');
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 81, 40), ['web-1', 'web-2'], 'TCP port 81');
      assertAnsweredBy(await ctx.client('client', 'udp', VIP, 53, 40), ['web-1', 'web-2'], 'UDP port 53');
    },
  },
  {
    name: 'endpoints added, made not ready and removed reach the datapath within 1.5 s',
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1']))]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 10), ['web-1'], 'one endpoint');

      const steps: [string, EndpointSpec[], string[]][] = [
        ['added', endpoints(['web-1', 'web-2', 'web-3']), ['web-1', 'web-2', 'web-3']],
        ['made not ready', endpoints(['web-1', 'web-3'], ['web-2']), ['web-1', 'web-3']],
        ['removed', endpoints(['web-3']), ['web-3']],
      ];
      for (const [what, eps, expected] of steps) {
        // Let the sync loop's minimum interval pass, so each step measures one propagation.
        await new Promise((r) => setTimeout(r, 1100));
        ctx.writeServices('web.yaml', [webService(eps)]);
        const ms = await ctx.waitUntil(`endpoints ${what}`, 5000, () => servedBy(ctx, expected, expected.length * 8));
        assert.ok(ms < 1500, `endpoints ${what}: reached the datapath after ${Math.round(ms)} ms`);
      }
      assertAnsweredBy(await ctx.client('client', 'udp', VIP, 53, 20), ['web-3'], 'UDP after the changes');
    },
  },
  {
    name: 'a service with no ready endpoint gets no traffic, and deleting a service stops it',
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1']))]);
      ctx.writeServices('idle.yaml', [webService(endpoints([], ['web-2']), 'idle', '10.96.0.20')]);
      await ctx.startKubeLb();
      const idle = await ctx.client('client', 'tcp', '10.96.0.20', 80, 3);
      assert.equal(idle.failures, 3, `no-endpoint service answered: ${JSON.stringify(idle.answers)}`);
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 5), ['web-1'], 'before deletion');
      ctx.removeFile('web.yaml');
      await ctx.waitUntil('service deleted', 5000, async () => (await ctx.client('client', 'tcp', VIP, 80, 3)).failures === 3);
      const udp = await ctx.client('client', 'udp', VIP, 53, 3);
      assert.equal(udp.failures, 3, `deleted UDP service answered: ${JSON.stringify(udp.answers)}`);
    },
  },
  {
    name: 'hairpin: a pod reaching its own service through itself gets its answers',
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1']))]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.client('web-1', 'tcp', VIP, 80, 10), ['web-1'], 'hairpin TCP');
      assertAnsweredBy(await ctx.client('web-1', 'udp', VIP, 53, 10), ['web-1'], 'hairpin UDP');
    },
  },
  {
    name: '2,000 services are programmed within seconds',
    pods,
    async run(ctx) {
      const services: ServiceSpec[] = [];
      for (let i = 0; i < 2000; i++) {
        const clusterIP = `10.96.${10 + Math.floor(i / 250)}.${(i % 250) + 1}`;
        services.push(webService(endpoints([`web-${(i % 3) + 1}`]), `svc-${i}`, clusterIP));
      }
      ctx.writeServices('many.yaml', services);
      const start = performance.now();
      await ctx.startKubeLb();
      const last = services.at(-1)!;
      await ctx.waitUntil('the last of 2,000 services answers', 20_000, async () => (await ctx.client('client', 'tcp', last.clusterIP, 80, 1)).failures === 0);
      const ms = performance.now() - start;
      assert.ok(ms < 10_000, `2,000 services took ${Math.round(ms)} ms from start to the last one answering`);
      for (const i of [0, 777, 1999]) {
        const s = services[i]!;
        assertAnsweredBy(await ctx.client('client', 'tcp', s.clusterIP, 80, 2), [`web-${(i % 3) + 1}`], `service ${s.name}`);
      }
    },
  },
  {
    name: 'a held TCP connection survives a kube-lb restart',
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [webService(endpoints(['web-1', 'web-2']))]);
      await ctx.startKubeLb();
      const held = ctx.client('client', 'hold', VIP, 80, 5000);
      await new Promise((r) => setTimeout(r, 1000));
      await ctx.stopKubeLb();
      await new Promise((r) => setTimeout(r, 500));
      await ctx.startKubeLb();
      const result = await held;
      assert.equal(result.failures, 0, `held connection broke: ${JSON.stringify(result.errors)}`);
      const answered = Object.values(result.answers).reduce((a, b) => a + b, 0);
      // One greeting on connect, then one answer per line sent.
      assert.equal(answered, result.sent! + 1, `answers ${answered} for ${result.sent} lines`);
      assert.equal(Object.keys(result.answers).length, 1, 'the connection stayed on one backend');
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 20), ['web-1', 'web-2'], 'new connections after restart');
    },
  },
  {
    name: 'hostile names are data: invalid ones are rejected by name, the rest keep working',
    pods,
    async run(ctx) {
      const longName = 'a'.repeat(63);
      const hostile = 'x"; $(touch /tmp/kube-lb-pwned)\n-A';
      ctx.writeServices('hostile.yaml', [
        webService(endpoints(['web-1']), longName),
        webService(endpoints(['web-2']), hostile, '10.96.0.30'),
        webService(endpoints(['web-3']), 'plain', '10.96.0.31'),
      ]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP, 80, 5), ['web-1'], '63-character name');
      assertAnsweredBy(await ctx.client('client', 'tcp', '10.96.0.31', 80, 5), ['web-3'], 'the service beside the hostile one');
      const rejected = ctx.kubeLbLogs.split('\n').filter((l) => l.includes('"kind":"Service"') && l.includes('touch /tmp/kube-lb-pwned'));
      assert.equal(rejected.length, 1, `one log line names the rejected service; logs:\n${ctx.kubeLbLogs.slice(-2000)}`);
      assert.match(rejected[0]!, /"reason":"[^"]+/);
      assert.equal((await ctx.client('client', 'tcp', '10.96.0.30', 80, 2)).failures, 2, 'the rejected service gets no traffic');
    },
  },
];
