// The conformance scenarios against the ebpf backend, plus what only the
// ebpf backend has: bpftool-readable maps, inspect, and tc cleanup.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type PodSpec, type ScenarioContext, withContext as withVariantContext } from './context.js';
import { runConformance } from './suite.js';
import { variant } from './variants.js';
import { requireCommand } from '../lib/preconditions.js';
import { DROP_REASONS } from '../../src/backends/ebpf/encoding.js';

const exec = promisify(execFile);

/** The processes whose parent is `pid`, with their command names. */
function childrenOf(pid: number): { pid: number; comm: string }[] {
  const children = [];
  for (const entry of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    const stat = processStat(Number(entry));
    if (stat?.ppid === pid) children.push({ pid: Number(entry), comm: stat.comm });
  }
  return children;
}

/** A process's name, parent and state from /proc, or null once it is gone. */
function processStat(pid: number): { comm: string; state: string; ppid: number } | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The name is in parentheses and may itself hold spaces or parentheses.
  const [state, ppid] = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { comm: text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')), state: state!, ppid: Number(ppid) };
}

const withContext = (pods: PodSpec[], body: (ctx: ScenarioContext) => Promise<void>): Promise<void> => withVariantContext(variant('ebpf'), pods, body);

runConformance('ebpf');

describe('ebpf backend: bpftool and tc cleanup', () => {
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
      assert.deepEqual(Object.keys(svc[0]!.formatted.key), ['vip', 'port', 'proto', 'scope', 'slot', 'pad2']);
      assert.deepEqual(Object.keys(svc[0]!.formatted.value), ['count', 'flags', 'backend_addr', 'backend_port', 'pad', 'affinity_timeout']);
      const ct = (await exec('bpftool', ['map', 'dump', 'pinned', `${ctx.sandbox.pinPath}/kube_lb_ct`])).stdout;
      assert.match(ct, /"backend_addr":/);
    }));

  it('refused and dropped packets are counted by reason in kube_lb_bpf_drops_total', () =>
    withContext(pods, async (ctx) => {
      requireCommand('curl', 'apt-get install curl');
      const idle = { ...web, name: 'idle', clusterIP: '10.96.0.11', endpoints: [{ ip: '10.244.0.12', ready: false }] };
      ctx.writeServices('web.yaml', [web, idle]);
      await ctx.startKubeLb();
      const refused = await ctx.client('client', 'tcp', idle.clusterIP, 80, 3);
      assert.equal(refused.failures, 3, JSON.stringify(refused));
      const { stdout } = await ctx.sandbox.execInNode('curl', ['-sS', 'http://127.0.0.1:10249/metrics']);
      const drops = new Map([...stdout.matchAll(/^kube_lb_bpf_drops_total\{reason="(\w+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
      assert.deepEqual([...drops.keys()], [...DROP_REASONS], `every reason is exported:\n${stdout}`);
      // A refused SYN is retried by nobody, but the client may send more than one per attempt.
      assert.ok(drops.get('no_endpoints')! >= 3, `no_endpoints counts the refused connections: ${JSON.stringify([...drops])}`);
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
      // Programs are global: other kube-lb instances on the machine load the same ones, so
      // only those attached in this sandbox's node namespace are this test's.
      const attached = (JSON.parse(await sandbox.inNode('bpftool', '-j', 'net', 'show')) as { tc?: { name?: string; id?: number }[] }[])
        .flatMap((n) => n.tc ?? [])
        .filter((p) => /^lb_(from|to)_pod\b/.test(p.name ?? ''))
        .map((p) => String(p.id));
      const before = [...new Set(attached)];
      const progIds = async (): Promise<string[]> =>
        (JSON.parse((await exec('bpftool', ['-j', 'prog', 'show'])).stdout) as { id: number }[]).map((p) => String(p.id));
      assert.ok(before.length >= 2, `programs loaded and attached: ${JSON.stringify(before)}`);
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

  it('cleanup finishes from whatever an interrupted cleanup left behind', () =>
    withContext(pods, async (ctx) => {
      const { sandbox } = ctx;
      ctx.writeServices('web.yaml', [web]);
      // The pods' host-side interfaces and the node's uplink.
      const attachedTo = [...pods.map((p) => sandbox.pod(p.name).hostIf), 'eth0'].sort();
      const clsacts = async (): Promise<string[]> =>
        (JSON.parse(await sandbox.inNode('tc', '-j', 'qdisc', 'show')) as { dev: string; kind: string }[])
          .filter((q) => q.kind === 'clsact')
          .map((q) => q.dev)
          .sort();
      const unpin = (...names: string[]) => async (): Promise<void> => {
        for (const name of names) fs.unlinkSync(path.join(sandbox.pinPath, name));
      };
      // What cleanup does, cut short at each step: some pins gone, or an
      // interface already done with.
      const interruptions: [string, () => Promise<void>][] = [
        ['kube_lb_ct unpinned', unpin('kube_lb_ct')],
        ['every pin but kube_lb_ifaces gone', async () => unpin(...fs.readdirSync(sandbox.pinPath).filter((pin) => pin !== 'kube_lb_ifaces'))()],
        [
          'one interface already detached and its clsact removed',
          async () => {
            await sandbox.inNode('tc', 'qdisc', 'del', 'dev', attachedTo[0]!, 'clsact');
          },
        ],
      ];
      for (const [what, interrupt] of interruptions) {
        await ctx.startKubeLb();
        await ctx.stopKubeLb();
        assert.deepEqual(await clsacts(), attachedTo, `${what}: attached before`);
        await interrupt();
        await ctx.kubeLb('inspect');
        await ctx.kubeLb('cleanup');
        assert.deepEqual(await clsacts(), [], `${what}: no clsact qdisc left`);
        assert.equal(fs.existsSync(sandbox.pinPath), false, `${what}: no pin left`);
        await ctx.kubeLb('cleanup');
      }
    }));

  it('the link watcher child dies with kube-lb, even on kill -9', () =>
    withContext(pods, async (ctx) => {
      ctx.writeServices('web.yaml', [web]);
      await ctx.startKubeLb();
      const watchers = childrenOf(ctx.kubeLbPid).filter((c) => c.comm === 'ip');
      assert.equal(watchers.length, 1, `one ip monitor child: ${JSON.stringify(childrenOf(ctx.kubeLbPid))}`);
      await ctx.killKubeLb();
      const deadline = Date.now() + 5000;
      // A zombie is dead; only its parent's reaper is missing.
      const alive = (): boolean => ![null, 'Z', 'X'].includes(processStat(watchers[0]!.pid)?.state ?? null);
      while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(alive(), false, `ip monitor (pid ${watchers[0]!.pid}) outlived kube-lb`);
    }));
});
