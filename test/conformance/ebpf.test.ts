// The conformance scenarios against the ebpf backend, plus what only the
// ebpf backend has: bpftool-readable maps, inspect, tc cleanup, upgrades
// over maps an earlier kube-lb pinned, and the socket programs that several
// kube-lbs share the cgroup hooks with.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type PodSpec, type ScenarioContext, withContext as withVariantContext } from './context.js';
import { runConformance } from './suite.js';
import { variant } from './variants.js';
import { native } from '../../src/native/index.js';
import { recordedInterfaces } from '../../src/backends/ebpf/attach.js';
import { LB_IFACE_F_CREATED_HOOK } from '../../src/backends/ebpf/encoding.js';
import { addition } from '../../src/backends/ebpf/service-map.js';
import { attachedAtCgroupRoot, socketProgramsServing } from '../lib/socket-programs.js';
import { createTestCgroup, inCgroup, removeTestCgroup } from '../lib/test-cgroup.js';
import { type ClientResult, NODES } from '../lib/sandbox.js';
import { slow } from '../lib/slowdown.js';
import { objectAtCommit } from '../lib/bpf-objects.js';
import { idleConnection } from '../lib/idle-connection.js';
import { cliPath, testLibDir } from '../lib/paths.js';
import { requireCommand } from '../lib/preconditions.js';
import { DROP_REASONS } from '../../src/backends/ebpf/encoding.js';
import { PROGRAMS } from '../../src/backends/ebpf/datapath.js';

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

/**
 * The last commit of main whose maps have the layout the current one
 * replaces (IPv4 addresses of 4 bytes, before lb_addr_t took 16): the
 * upgrade test builds its BPF object. When a map layout changes again, set
 * this to the last commit before that change.
 */
const PREVIOUS_LAYOUT_COMMIT = 'a2885c784eeffe6f64e934df26e31f7a5974ffd8';

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

describe('ebpf backend: bpftool and tc cleanup', () => {
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
      assert.deepEqual(Object.keys(svc[0]!.formatted.value), ['count', 'flags', 'backend_addr', 'backend_port', 'maglev_size', 'affinity_timeout']);
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

  it('an interface kube-lb cannot attach to fails the sync, named and counted, rather than a ready proxy that translates nothing', () =>
    withContext(pods, async (ctx) => {
      requireCommand('setpriv', 'apt-get install util-linux');
      ctx.writeServices('web.yaml', [web]);
      // Without CAP_NET_ADMIN the programs load but no TC hook takes them.
      await ctx.startKubeLb(process.env, [], { until: /"msg":"sync failed/, under: ['setpriv', '--bounding-set=-net_admin', '--'] });
      const failed = ctx.kubeLbLogs.split('\n').find((l) => l.includes('"msg":"sync failed')) ?? '';
      assert.match(failed, new RegExp(`programs are not attached to \\d+ interface\\(s\\): ${ctx.sandbox.interfacePrefix}`), 'the failed sync names the interfaces');
      assert.doesNotMatch(ctx.kubeLbLogs, /"msg":"ready"/, 'not ready while pods are not served');
      const { stdout } = await ctx.sandbox.execInNode('curl', ['-sS', 'http://127.0.0.1:10249/metrics']);
      const errors = Number(/^kube_lb_sync_errors_total\{[^}]*\} (\d+)$/m.exec(stdout)?.[1] ?? 0);
      assert.ok(errors >= 1, `kube_lb_sync_errors_total counts it:\n${stdout}`);
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

  it('cleanup in another network namespace leaves the interfaces recorded in this one, and their ifindexes there', () =>
    withContext(pods, async (ctx) => {
      const { sandbox } = ctx;
      ctx.writeServices('web.yaml', [web]);
      await ctx.startKubeLb();
      await ctx.stopKubeLb();
      // node-b gets interfaces with the ifindexes kube-lb recorded in node-a, each with a clsact qdisc of someone else's.
      const other = sandbox.nodeNamespaces['node-b'];
      const links = JSON.parse(await sandbox.inNode('ip', '-j', 'link', 'show')) as { ifindex: number; ifname: string }[];
      const podIfindexes = links.filter((l) => l.ifname.startsWith(sandbox.interfacePrefix)).map((l) => l.ifindex);
      assert.equal(podIfindexes.length, pods.length, 'one attached interface per pod');
      const strangers = podIfindexes.map((_, i) => `stranger${i}`);
      for (const [i, ifindex] of podIfindexes.entries()) {
        await sandbox.inNamespace(other, 'ip', 'link', 'add', strangers[i]!, 'index', String(ifindex), 'type', 'bridge');
        await sandbox.inNamespace(other, 'tc', 'qdisc', 'add', 'dev', strangers[i]!, 'clsact');
      }
      const clsactsThere = async (): Promise<string[]> =>
        (JSON.parse(await sandbox.inNamespace(other, 'tc', '-j', 'qdisc', 'show')) as { dev: string; kind: string }[])
          .filter((q) => q.kind === 'clsact')
          .map((q) => q.dev)
          .sort();

      const nodeNetns = `net:[${fs.statSync(`/run/netns/${sandbox.nodeNs}`).ino}]`;
      const lib = native();
      const fd = lib.objGet(path.join(sandbox.pinPath, 'kube_lb_ifaces'));
      const recorded = [...recordedInterfaces(lib, fd).keys()].sort((a, b) => a - b);
      lib.closeFd(fd);
      await assert.rejects(ctx.kubeLbIn(other, 'cleanup'), (err: Error & { stderr?: string }) => {
        assert.match(err.stderr ?? '', new RegExp(`in another network namespace \\(ifindex ${recorded.join(', ')} in ${nodeNetns.replace(/[[\]]/g, '\\$&')}`));
        assert.match(err.stderr ?? '', /Run `kube-lb cleanup --backend=ebpf --bpf-pin-path=\S+` in that namespace/);
        return true;
      });
      assert.deepEqual(await clsactsThere(), strangers.sort(), "the other namespace's qdiscs are left alone");
      assert.ok(fs.existsSync(path.join(sandbox.pinPath, 'kube_lb_ifaces')), 'the pins stay for the cleanup in node-a');
      // Nor does a kube-lb there take over the pin path.
      await assert.rejects(
        sandbox.execIn(other, process.execPath, [cliPath, ...ctx.kubeLbArgs()]),
        (err: Error & { stderr?: string }) => /Give this kube-lb its own --bpf-pin-path/.test(err.stderr ?? ''),
      );

      await ctx.kubeLb('cleanup');
      const clsactsHere = (JSON.parse(await sandbox.inNode('tc', '-j', 'qdisc', 'show')) as { kind: string }[]).filter((q) => q.kind === 'clsact');
      assert.deepEqual(clsactsHere, [], 'cleanup in node-a finishes the job');
      assert.deepEqual(await clsactsThere(), strangers.sort());
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

describe('ebpf backend: upgrade', () => {
  // Both endpoints ready: a flow the upgrade forgot could be sent to the other one, whose reset the client would see.
  const webBoth = { ...web, endpoints: web.endpoints.map((e) => ({ ...e, ready: true })) };

  it('a held connection survives a restart with other map sizes, its flow carried into the new maps', () =>
    withContext(pods, async (ctx) => {
      ctx.writeServices('web.yaml', [webBoth]);
      await ctx.startKubeLb();
      const held = await idleConnection(ctx.sandbox, 'client', web.clusterIP, 80);
      await ctx.stopKubeLb();
      await ctx.startKubeLb(process.env, ['--bpf-lb-map-max=4096', '--bpf-ct-map-max=4096']);
      const after = await held.use();
      assert.ok('answer' in after && /^web-[12]$/.test(after.answer), `the held connection after the restart: ${JSON.stringify(after)}; kube-lb logs:\n${ctx.kubeLbLogs.slice(-3000)}`);
      const migrated = ctx.kubeLbLogs
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { map?: string; why?: string[]; carried?: number; found?: number })
        .filter((l) => l.map !== undefined);
      assert.deepEqual(
        migrated.map((l) => [l.map, l.why]).sort(),
        [
          ['kube_lb_backend_stats', ['max_entries 1048576 is now 4096']],
          ['kube_lb_ct', ['max_entries 262144 is now 4096']],
          ['kube_lb_rnat', ['max_entries 262144 is now 4096']],
          ['kube_lb_svc', ['max_entries 1048576 is now 4096']],
        ],
      );
      for (const l of migrated) assert.ok(l.carried! > 0 && l.carried === l.found, `${l.map}: every entry carried over (${l.carried} of ${l.found})`);
    }));

  it("a held connection survives an upgrade from the previous commit's map layout", () =>
    withContext(pods, async (ctx) => {
      const { sandbox } = ctx;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-previous-'));
      try {
        // The previous kube-lb's datapath, as it left it when stopped for the upgrade.
        const object = objectAtCommit(PREVIOUS_LAYOUT_COMMIT, dir);
        const changes = [addition({ ip: web.clusterIP, port: 80, protocol: 'TCP' }, webBoth.endpoints.map((e) => ({ ip: e.ip, port: 8080 })))];
        await sandbox.execInNode(process.execPath, [path.join(testLibDir, 'previous-datapath.js'), object, sandbox.pinPath, sandbox.interfacePrefix, JSON.stringify(changes)]);
        const held = await idleConnection(sandbox, 'client', web.clusterIP, 80);

        ctx.writeServices('web.yaml', [webBoth]);
        await ctx.startKubeLb();
        const after = await held.use();
        assert.ok('answer' in after && /^web-[12]$/.test(after.answer), `the held connection after the upgrade: ${JSON.stringify(after)}; kube-lb logs:\n${ctx.kubeLbLogs.slice(-3000)}`);

        const migrated = ctx.kubeLbLogs
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { map?: string; msg: string; zeroed?: string[] })
          .filter((l) => l.map !== undefined);
        assert.deepEqual(
          migrated.map((l) => [l.msg, l.zeroed]),
          [
            // Every map with an address changed layout; its addresses carried over IPv4-mapped, nothing zeroed.
            ['pinned map kube_lb_svc migrated: 3 of 3 entries carried over', []],
            ['pinned map kube_lb_maglev migrated: 0 of 0 entries carried over', []],
            ['pinned map kube_lb_ct migrated: 1 of 1 entries carried over', []],
            ['pinned map kube_lb_rnat migrated: 1 of 1 entries carried over', []],
            // snat_addr6 is new: an interface recorded without one has none until kube-lb attaches to it again.
            ['pinned map kube_lb_ifaces migrated: 3 of 3 entries carried over', ['snat_addr6']],
            ['pinned map kube_lb_affinity migrated: 0 of 0 entries carried over', []],
            // An LPM trie's prefix lengths count the address bits, which grew: the first sync writes the ranges again.
            ['pinned map kube_lb_source_ranges recreated empty: kube-lb carries entries between hash maps only (map type 11 to 11)', undefined],
            ['pinned map kube_lb_backend_stats migrated: 0 of 0 entries carried over', []],
            ['pinned map kube_lb_sock_rnat migrated: 0 of 0 entries carried over', []],
          ],
          'every map with an address changed layout, and the log says what became of each',
        );
        assert.match(ctx.kubeLbLogs, /"ifindexes":\[[\d,]+\],"netns":"net:\[\d+\] \(netns cookie \d+\)","msg":"interfaces recorded without their network namespace \(by an older kube-lb on this pin path\) are taken to be in this one"/);
        const lib = native();
        const fd = lib.objGet(path.join(sandbox.pinPath, 'kube_lb_ifaces'));
        try {
          const netnsIno = fs.statSync(`/run/netns/${sandbox.nodeNs}`).ino;
          const records = recordedInterfaces(lib, fd);
          for (const r of records.values()) {
            assert.equal(r.netns.ino, netnsIno, "recorded in node-a's network namespace");
            assert.notEqual(r.netns.cookie, 0n);
          }
          const links = JSON.parse(await sandbox.inNode('ip', '-j', 'link', 'show')) as { ifindex: number; ifname: string }[];
          const podLinks = links.filter((l) => l.ifname.startsWith(sandbox.interfacePrefix));
          assert.equal(podLinks.length, pods.length);
          for (const l of podLinks) {
            assert.equal(records.get(l.ifindex)?.flags, LB_IFACE_F_CREATED_HOOK, `${l.ifname}: the flags carried over, so cleanup removes the clsact qdisc the previous kube-lb created`);
          }
        } finally {
          lib.closeFd(fd);
        }
        await ctx.stopKubeLb();
        await ctx.kubeLb('cleanup');
        const clsacts = (JSON.parse(await sandbox.inNode('tc', '-j', 'qdisc', 'show')) as { kind: string }[]).filter((q) => q.kind === 'clsact');
        assert.deepEqual(clsacts, [], 'cleanup removed the qdiscs the previous kube-lb created');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }));
});

describe("ebpf backend: the node's own sockets", () => {
  const webPods = [
    { name: 'web-1', ip: '10.244.0.11' },
    { name: 'web-2', ip: '10.244.0.12' },
  ];
  const only = (pod: string): typeof web => ({ ...web, endpoints: [{ ip: webPods.find((p) => p.name === pod)!.ip, ready: true }] });

  /** Whether a connected UDP socket held across a change of endpoint from `from` to `to` was destroyed and replaced, ending on `to`. */
  const assertMovedOff = (r: ClientResult, from: string, to: string, what: string): void => {
    const order = r.order ?? [];
    assert.equal(order[0], from, `${what}: the socket starts on ${from}: ${JSON.stringify(r)}`);
    // 4 s at one datagram per 50 ms; the change lands well before the last second.
    const last = order.slice(-15);
    assert.ok(last.length === 15 && last.every((who) => who === to), `${what}: the flow ends on ${to}: ${JSON.stringify(r)}`);
    // The kernel sets ECONNABORTED and disconnects the socket: a read reports the
    // error, and a send that comes first finds no peer (EDESTADDRREQ).
    assert.ok(
      (r.reconnects ?? 0) >= 1 && r.errors.some((e) => /ECONNABORTED|EDESTADDRREQ/.test(e)),
      `${what}: the kernel ended the socket (ECONNABORTED, or EDESTADDRREQ on a send): ${JSON.stringify(r)}`,
    );
  };

  /** Holds a connected UDP socket to the ClusterIP's port 53 while its endpoint moves from web-1 to web-2. */
  const holdAcrossMove = async (ctx: ScenarioContext, hold: () => Promise<ClientResult>): Promise<ClientResult> => {
    assert.ok(native().kernelHasFunction('bpf_sock_destroy'), 'this row needs a kernel with bpf_sock_destroy (6.5 and later)');
    const flow = hold();
    await new Promise((r) => setTimeout(r, slow(1000)));
    ctx.writeServices('web.yaml', [only('web-2')]);
    return flow;
  };

  it('a connected UDP socket of the node whose endpoint is removed is destroyed, and the one its process connects next reaches a live endpoint; unconnected sockets are left alone', () =>
    withContext(webPods, async (ctx) => {
      ctx.writeServices('web.yaml', [only('web-1')]);
      await ctx.startKubeLb();
      const unconnected = ctx.hostClient('udp-hold', web.clusterIP, 53, slow(4000));
      const r = await holdAcrossMove(ctx, () => ctx.hostClient('udp-connected', web.clusterIP, 53, slow(4000)));
      assertMovedOff(r, 'web-1', 'web-2', 'the connected socket');
      const { order = [], errors } = await unconnected;
      assert.deepEqual(errors, [], `the unconnected socket was not ended: ${JSON.stringify(errors)}`);
      assert.equal(order.at(-1), 'web-2', `the unconnected socket's datagrams each get a live endpoint: ${order.join(' ')}`);
      await ctx.waitForLog('kube-lb logs the destroyed sockets', /destroyed connected UDP sockets of removed endpoints/);
    }));

  it('--bpf-socket-lb=off: no cgroup program serves the node (a restart with off detaches those of the kube-lb before), its processes are not translated, and pods keep the TC path', () =>
    withContext(webPods, async (ctx) => {
      ctx.writeServices('web.yaml', [only('web-1')]);
      await ctx.startKubeLb();
      assert.equal((await socketProgramsServing(ctx.sandbox)).length, 8, 'the default attaches the eight hooks (four per family)');
      await ctx.stopKubeLb();
      await ctx.startKubeLb(process.env, ['--bpf-socket-lb=off']);
      assert.deepEqual(await socketProgramsServing(ctx.sandbox), [], 'no socket program serves the node');
      assert.deepEqual(
        fs.readdirSync(ctx.sandbox.pinPath).filter((pin) => pin.startsWith('lb_') && !(Object.values(PROGRAMS) as string[]).includes(pin)),
        [],
        'no socket program is pinned',
      );
      for (const [what, ip, port] of [['ClusterIP', web.clusterIP, 80]] as const) {
        const r = await ctx.hostClient('tcp', ip, port, 2);
        assert.deepEqual(r.answers, {}, `the node's TCP to the ${what} is not translated: ${JSON.stringify(r)}`);
      }
      const pod = await ctx.client('web-2', 'tcp', web.clusterIP, 80, 5);
      assert.deepEqual([pod.failures, pod.answers], [0, { 'web-1': 5 }], `a pod reaches the ClusterIP at TC: ${JSON.stringify(pod)}`);
    }));

  it("--bpf-socket-lb=all: pods' sockets are translated at connect too, and their packets pass TC as direct flows; the node's reach every frontend kind; peers show the frontend; a pod's connected UDP socket of a removed endpoint is destroyed; affinity holds", () =>
    withContext([...webPods, { name: 'client', ip: '10.244.0.13', serves: false }], async (ctx) => {
      requireCommand('bpftool', 'apt-get install bpftool');
      // The machine's root would have these programs translate every pod of the machine, other tests' too.
      const cgroup = createTestCgroup('kube-lb-socket-lb-all');
      try {
        const both = { ...web, endpoints: webPods.map((p) => ({ ip: p.ip, ready: true })) };
        ctx.writeServices('web.yaml', [only('web-1')]);
        ctx.writeServices('sticky.yaml', [{ ...both, name: 'sticky', clusterIP: '10.96.0.20', sessionAffinityTimeoutSeconds: 600 }]);
        const lbNodePort = 30080;
        ctx.writeServices('lb.yaml', [
          {
            ...both,
            name: 'lb',
            clusterIP: '10.96.0.30',
            type: 'LoadBalancer',
            ports: web.ports.map((p, i) => ({ ...p, nodePort: lbNodePort + i })),
            externalIPs: ['203.0.113.7'],
            loadBalancerIngress: ['198.51.100.7'],
          },
        ]);
        await ctx.startKubeLb(process.env, ['--bpf-socket-lb=all', `--cgroup-root=${cgroup}`]);
        const flowsAtTc = async (): Promise<number> => (JSON.parse((await exec('bpftool', ['-j', 'map', 'dump', 'pinned', path.join(ctx.sandbox.pinPath, 'kube_lb_ct')])).stdout) as unknown[]).length;

        for (const mode of ['tcp', 'udp'] as const) {
          const r = await ctx.client('client', mode, web.clusterIP, mode === 'tcp' ? 80 : 53, 10, { cgroup });
          assert.deepEqual([r.failures, r.answers], [0, { 'web-1': 10 }], `${mode} from a pod: ${JSON.stringify(r)}`);
        }
        assert.equal(await flowsAtTc(), 0, "the pod's flows were translated at their sockets: TC tracked none");
        const [sh, ...peerArgs] = inCgroup(cgroup, 'nsenter', [`--net=/run/netns/${ctx.sandbox.pod('client').ns}`, process.execPath, path.join(testLibDir, 'peer-client.js'), web.clusterIP, '80', '53']);
        const { stdout } = await exec(sh!, peerArgs);
        assert.deepEqual(JSON.parse(stdout), { tcp: { peer: `${web.clusterIP}:80`, answer: 'web-1' }, udp: { peer: `${web.clusterIP}:53`, answer: 'web-1' } }, 'a pod is shown the frontend as its peer');

        const lbFrontends = [['ClusterIP', '10.96.0.30', 80], ['NodePort', NODES['node-a'].ip, lbNodePort], ['external IP', '203.0.113.7', 80], ['load-balancer IP', '198.51.100.7', 80]] as const;
        for (const [what, ip, port] of lbFrontends) {
          const r = await ctx.hostClient('tcp', ip, port, 10, { cgroup });
          assert.equal(r.failures, 0, `TCP from the node to the ${what}: ${JSON.stringify(r)}`);
        }

        // Unbound sockets of a pod to a service with affinity are left to TC, which sees the pod's address.
        const sticky = await ctx.client('client', 'tcp', '10.96.0.20', 80, 20, { cgroup });
        assert.equal(sticky.failures, 0, JSON.stringify(sticky));
        assert.equal(Object.keys(sticky.answers).length, 1, `affinity from a pod: ${JSON.stringify(sticky.answers)}`);
        const stickyNode = await ctx.hostClient('tcp', '10.96.0.20', 80, 20, { cgroup });
        assert.equal(Object.keys(stickyNode.answers).length, 1, `affinity from the node: ${JSON.stringify(stickyNode.answers)}`);

        const r = await holdAcrossMove(ctx, () => ctx.client('client', 'udp-connected', web.clusterIP, 53, slow(4000), { cgroup }));
        assertMovedOff(r, 'web-1', 'web-2', "the pod's connected socket");
      } finally {
        await ctx.stopKubeLb();
        removeTestCgroup(cgroup);
      }
    }));

  it("the node's new connections are translated all through a restart: the programs stay attached while kube-lb is down, and the new ones are attached before the old ones go", () =>
    withContext(webPods, async (ctx) => {
      ctx.writeServices('web.yaml', [only('web-1')]);
      await ctx.startKubeLb();
      let restarting = true;
      const results: ClientResult[] = [];
      const connecting = (async () => {
        while (restarting) results.push(await ctx.hostClient('tcp', web.clusterIP, 80, 20));
      })();
      try {
        await ctx.stopKubeLb();
        await ctx.startKubeLb();
      } finally {
        restarting = false;
        await connecting;
      }
      const failed = results.filter((r) => r.failures > 0 || Object.keys(r.answers).join() !== 'web-1');
      assert.deepEqual(failed, [], `of ${results.length} rounds of 20 connections`);
      assert.ok(results.length >= 3, `rounds ran while kube-lb was down and starting: ${results.length}`);
    }));

  it("two kube-lbs in two network namespaces translate only their own node's sockets; a restart replaces only its own programs, and cleanup detaches only them", () =>
    withContext(webPods, (a) =>
      withContext(webPods, async (b) => {
        requireCommand('bpftool', 'apt-get install bpftool');
        // The same ClusterIP in both, served by web-1 in a's sandbox and web-2 in b's.
        a.writeServices('web.yaml', [only('web-1')]);
        b.writeServices('web.yaml', [only('web-2')]);
        await a.startKubeLb();
        const untranslated = await b.hostClient('tcp', web.clusterIP, 80, 1);
        assert.deepEqual(untranslated.answers, {}, `b's node, without a kube-lb of its own, is not translated by a's programs: ${JSON.stringify(untranslated)}`);
        await b.startKubeLb();
        for (const [ctx, pod] of [[a, 'web-1'], [b, 'web-2']] as const) {
          const r = await ctx.hostClient('tcp', web.clusterIP, 80, 10);
          assert.deepEqual([r.failures, r.answers], [0, { [pod]: 10 }], `the node of ${ctx.sandbox.nodeNs}: ${JSON.stringify(r)}`);
        }
        const aFirst = await socketProgramsServing(a.sandbox);
        const bPrograms = await socketProgramsServing(b.sandbox);
        assert.equal(aFirst.length, 8, `a's eight hooks: ${JSON.stringify(aFirst)}`);
        assert.equal(bPrograms.length, 8, `b's eight hooks: ${JSON.stringify(bPrograms)}`);

        await a.stopKubeLb();
        await a.startKubeLb();
        const aSecond = await socketProgramsServing(a.sandbox);
        assert.equal(aSecond.length, 8, `a restarted: eight programs, not sixteen: ${JSON.stringify(aSecond)}`);
        const root = (await attachedAtCgroupRoot()).map((p) => p.id);
        assert.deepEqual(aFirst.filter((id) => root.includes(id)), [], "a's earlier programs are detached");
        assert.deepEqual(bPrograms.filter((id) => !root.includes(id)), [], "b's programs stay through a's restart");

        await a.stopKubeLb();
        await a.kubeLb('cleanup');
        const left = (await attachedAtCgroupRoot()).map((p) => p.id);
        assert.deepEqual(aSecond.filter((id) => left.includes(id)), [], "a's cleanup detached a's programs");
        assert.deepEqual(bPrograms.filter((id) => !left.includes(id)), [], "b's programs stay through a's cleanup");
        const r = await b.hostClient('tcp', web.clusterIP, 80, 10);
        assert.deepEqual([r.failures, r.answers], [0, { 'web-2': 10 }], `b's node after a's cleanup: ${JSON.stringify(r)}`);
        await a.kubeLb('cleanup');
      }),
    ));
});
