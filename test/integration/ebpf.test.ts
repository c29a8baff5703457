// The integration scenarios against the ebpf backend, plus what only the
// ebpf backend has: bpftool-readable maps, inspect, and cleanup.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { scenarios } from './scenarios.js';
import { ScenarioContext } from './context.js';
import { requireCommand } from '../lib/preconditions.js';

const exec = promisify(execFile);

async function withContext(pods: Parameters<typeof ScenarioContext.create>[1], body: (ctx: ScenarioContext) => Promise<void>): Promise<void> {
  const ctx = await ScenarioContext.create('ebpf', pods);
  try {
    await body(ctx);
  } finally {
    await ctx.destroy();
  }
}

describe('ebpf backend: integration scenarios', () => {
  for (const scenario of scenarios) {
    it(scenario.name, () => withContext(scenario.pods, (ctx) => scenario.run(ctx)));
  }
});

describe('ebpf backend: inspect, bpftool and cleanup', () => {
  const pods = [
    { name: 'client', ip: '10.244.0.2', serves: false },
    { name: 'web-1', ip: '10.244.0.11' },
    { name: 'web-2', ip: '10.244.0.12' },
  ];
  const web = {
    name: 'web',
    clusterIP: '10.96.0.10',
    ports: [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' as const },
      { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' as const },
    ],
    endpoints: [
      { ip: '10.244.0.11', ready: true },
      { ip: '10.244.0.12', ready: false },
    ],
  };

  it('inspect shows what the manifests say, read from the pinned maps', () =>
    withContext(pods, async (ctx) => {
      ctx.writeServices('web.yaml', [web]);
      await ctx.startKubeLb();
      const view = JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as { frontend: unknown; destinations: unknown }[];
      assert.deepEqual(view, [
        { frontend: { ip: '10.96.0.10', port: 53, protocol: 'UDP' }, destinations: [{ ip: '10.244.0.11', port: 5353 }] },
        { frontend: { ip: '10.96.0.10', port: 80, protocol: 'TCP' }, destinations: [{ ip: '10.244.0.11', port: 8080 }] },
      ]);
      const text = await ctx.kubeLb('inspect');
      assert.match(text, /10\.96\.0\.10:80\/TCP\s.*10\.244\.0\.11:8080/);
    }));

  it('bpftool map dump prints named fields', () =>
    withContext(pods, async (ctx) => {
      requireCommand('bpftool', 'apt-get install bpftool');
      ctx.writeServices('web.yaml', [web]);
      await ctx.startKubeLb();
      await ctx.client('client', 'tcp', '10.96.0.10', 80, 1);
      const svc = JSON.parse((await exec('bpftool', ['-j', 'map', 'dump', 'pinned', `${ctx.sandbox.pinPath}/kube_lb_svc`])).stdout) as {
        formatted: { key: Record<string, number>; value: Record<string, number> };
      }[];
      assert.ok(svc.length >= 4, 'two services and their slots');
      assert.deepEqual(Object.keys(svc[0]!.formatted.key), ['vip', 'port', 'proto', 'pad', 'slot', 'pad2']);
      assert.deepEqual(Object.keys(svc[0]!.formatted.value), ['count', 'flags', 'backend_addr', 'backend_port', 'pad']);
      const ct = (await exec('bpftool', ['map', 'dump', 'pinned', `${ctx.sandbox.pinPath}/kube_lb_ct`])).stdout;
      assert.match(ct, /"backend_addr":/);
    }));

  it('cleanup removes programs, filters, qdiscs and pins, and leaves foreign tc state alone', () =>
    withContext(pods, async (ctx) => {
      const { sandbox } = ctx;
      const foreignIf = sandbox.pod('web-2').hostIf;
      // A foreign clsact with a filter of its own on one pod interface.
      await sandbox.inNode('tc', 'qdisc', 'add', 'dev', foreignIf, 'clsact');
      await sandbox.inNode('tc', 'filter', 'add', 'dev', foreignIf, 'ingress', 'prio', '7', 'u32', 'match', 'u32', '0', '0', 'flowid', '1:1');
      ctx.writeServices('web.yaml', [web]);
      await ctx.startKubeLb();
      const progIds = async (): Promise<string[]> =>
        (JSON.parse((await exec('bpftool', ['-j', 'prog', 'show'])).stdout) as { id: number; name?: string }[])
          .filter((p) => p.name === 'lb_from_pod' || p.name === 'lb_to_pod')
          .map((p) => String(p.id));
      const before = await progIds();
      assert.ok(before.length >= 2, 'programs loaded');
      await ctx.stopKubeLb();

      await ctx.kubeLb('cleanup');
      const qdiscs = JSON.parse(await sandbox.inNode('tc', '-j', 'qdisc', 'show')) as { dev: string; kind: string }[];
      const clsacts = qdiscs.filter((q) => q.kind === 'clsact').map((q) => q.dev);
      assert.deepEqual(clsacts, [foreignIf], 'only the foreign clsact remains');
      const foreign = JSON.parse(await sandbox.inNode('tc', '-j', 'filter', 'show', 'dev', foreignIf, 'ingress')) as { kind?: string }[];
      assert.ok(foreign.some((f) => f.kind === 'u32'), 'the foreign filter remains');
      const egress = JSON.parse(await sandbox.inNode('tc', '-j', 'filter', 'show', 'dev', foreignIf, 'egress')) as unknown[];
      assert.equal(egress.length, 0, 'no kube-lb filter remains on the foreign clsact');
      const after = await progIds();
      assert.deepEqual(after.filter((id) => before.includes(id)), [], 'kube-lb programs are unloaded');
      // A second cleanup finds nothing and still succeeds.
      await ctx.kubeLb('cleanup');
    }));
});
