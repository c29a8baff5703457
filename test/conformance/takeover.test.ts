// kube-lb run --takeover under load: new connections in a loop and
// established ones held across the switch, from kube-proxy's iptables rules
// to the ebpf backend and from the ebpf backend to the nftables one
// (docs/takeover.md). Every request must be answered, every held
// connection must keep its endpoint, and the other's state must be gone.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { type ScenarioContext, KUBE_LB_NODE, withContext } from './context.js';
import { variant } from './variants.js';
import { VIP, endpoints, pods as scenarioPods } from './scenarios.js';
import { idleConnection, type IdleUse } from '../lib/idle-connection.js';
import { type ClientResult, waitForLine } from '../lib/sandbox.js';
import { cliPath } from '../lib/paths.js';
import { requireCommand } from '../lib/preconditions.js';
import { slow } from '../lib/slowdown.js';
import { socketProgramsServing } from '../lib/socket-programs.js';

const pods = scenarioPods.filter((p) => ['client', 'web-1', 'web-2'].includes(p.name));
const web = {
  name: 'web',
  clusterIP: VIP,
  ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' as const }],
  endpoints: endpoints(['web-1', 'web-2']),
};

/** kube-proxy's iptables rules for `web`, as its proxier writes them (pkg/proxy/iptables/proxier.go), for iptables-restore --noflush. */
const KUBE_PROXY_RULES = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-WEBHTTP0000000000 - [0:0]
:KUBE-SEP-WEB1HTTP000000000 - [0:0]
:KUBE-SEP-WEB2HTTP000000000 - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -d ${VIP}/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEBHTTP0000000000
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEBHTTP0000000000 ! -s 10.244.0.0/16 -d ${VIP}/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEBHTTP0000000000 -m comment --comment "default/web:http -> 10.244.0.11:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-WEB1HTTP000000000
-A KUBE-SVC-WEBHTTP0000000000 -m comment --comment "default/web:http -> 10.244.0.12:8080" -j KUBE-SEP-WEB2HTTP000000000
-A KUBE-SEP-WEB1HTTP000000000 -s 10.244.0.11/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB1HTTP000000000 -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.0.11:8080
-A KUBE-SEP-WEB2HTTP000000000 -s 10.244.0.12/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB2HTTP000000000 -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.0.12:8080
COMMIT
`;

/** A round of new connections, with when it ran (ms since the epoch, as in kube-lb's log lines). */
type Round = ClientResult & { from: number; to: number };

const ROUND_PAUSE_MS = 100;

/**
 * Each new connection's wait: past one SYN retransmission (1 s). Creating
 * the clsact hook on a pod interface drops what the node sends through it
 * meanwhile (docs/takeover.md), so a connection that meets it is answered
 * a second late; a failure here is a connection refused, reset or lost for good.
 */
const CONNECT_TIMEOUT_MS = 3000;

/** Rounds of 10 new connections from the client pod, one after another, until stop() is called; then their results. */
function requestLoop(ctx: ScenarioContext): { stop(): Promise<Round[]> } {
  let running = true;
  const results: Round[] = [];
  const loop = (async () => {
    while (running) {
      const from = Date.now();
      const result = await ctx.client('client', 'tcp', VIP, 80, 10, { timeoutMs: CONNECT_TIMEOUT_MS });
      results.push({ ...result, from, to: Date.now() });
      // Rounds need only span the switch; a pause between them leaves the cores to kube-lb.
      await new Promise((r) => setTimeout(r, ROUND_PAUSE_MS));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return results;
    },
  };
}

/**
 * What the switch did to the traffic: every new connection answered, every
 * held one kept (an idle connection moved to another endpoint would get a
 * reset, not an answer).
 */
async function assertNoFailure(ctx: ScenarioContext, rounds: Round[], hold: ClientResult, idle: IdleUse[], logs: string): Promise<void> {
  const failed = rounds.filter((r) => r.failures > 0);
  const answered = rounds.reduce((n, r) => n + Object.values(r.answers).reduce((a, b) => a + b, 0), 0);
  if (failed.length > 0) {
    // Whether packets were lost (segments sent again, packets the node dropped towards a pod) or the machine was slow; the rounds' times match the log's.
    const lost = [];
    for (const pod of ['client', 'web-1', 'web-2']) {
      const retransmits = (await ctx.sandbox.inNamespace(ctx.sandbox.pod(pod).ns, 'nstat', '-az', 'TcpRetransSegs', 'TcpExtTCPSynRetrans')).replace(/\s+0\.0/g, '').replace(/\s+/g, ' ').replace('#kernel ', '');
      const link = JSON.parse(await ctx.sandbox.inNode('ip', '-j', '-s', 'link', 'show', 'dev', ctx.sandbox.pod(pod).hostIf)) as { stats64: { tx: { dropped: number } } }[];
      lost.push(`${pod}: ${retransmits}, dropped towards it ${link[0]!.stats64.tx.dropped}`);
    }
    assert.deepEqual(failed, [], `new connections failed during the switch (${answered} answered in ${rounds.length} rounds); ${lost.join('; ')}; kube-lb logs:\n${logs.slice(-3000)}`);
  }
  assert.ok(rounds.length >= 3, `rounds of new connections ran across the switch: ${rounds.length}`);
  const holdAnswers = Object.values(hold.answers).reduce((a, b) => a + b, 0);
  assert.equal(hold.failures, 0, `the connection sending a line every 50 ms during the switch: ${JSON.stringify(hold)}`);
  assert.equal(Object.keys(hold.answers).length, 1, `one endpoint answered the held connection all along: ${JSON.stringify(hold.answers)}`);
  idle.forEach((use, i) => assert.ok('answer' in use && /^web-[12]$/.test(use.answer), `idle connection ${i + 1}, used after the switch: ${JSON.stringify(use)}`));
  assert.ok(holdAnswers >= (hold.sent ?? Infinity), `every line of the held connection was answered: ${holdAnswers} answers to ${hold.sent} lines; kube-lb logs:\n${logs.slice(0, 6000)}`);
}

describe('kube-lb run --takeover', () => {
  it("from kube-proxy's iptables rules to ebpf under load: no request fails, established connections keep their endpoint and are left to the stack's conntrack, kube-proxy's rules are gone", () =>
    withContext(variant('ebpf'), pods, async (ctx) => {
      requireCommand('iptables-restore', 'apt-get install iptables');
      requireCommand('conntrack', 'apt-get install conntrack');
      ctx.writeServices('web.yaml', [web]);
      const rules = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-takeover-')), 'kube-proxy.rules');
      fs.writeFileSync(rules, KUBE_PROXY_RULES);
      try {
        await ctx.sandbox.execInNode('iptables-restore', ['-w', '--noflush', rules]);
      } finally {
        fs.rmSync(path.dirname(rules), { recursive: true });
      }
      const before = await ctx.client('client', 'tcp', VIP, 80, 20);
      assert.equal(before.failures, 0, `kube-proxy's rules answer: ${JSON.stringify(before)}`);

      const idle = await Promise.all([1, 2, 3].map(() => idleConnection(ctx.sandbox, 'client', VIP, 80)));
      const hold = ctx.client('client', 'hold', VIP, 80, slow(12_000));
      const loop = requestLoop(ctx);
      let rounds: Round[];
      try {
        await ctx.startKubeLb(process.env, ['--takeover']);
        // New connections after the switch too, through kube-lb alone.
        await new Promise((r) => setTimeout(r, slow(1500)));
      } finally {
        rounds = await loop.stop();
      }
      const held = await hold;
      const used = await Promise.all(idle.map((c) => c.use()));
      await assertNoFailure(ctx, rounds, held, used, ctx.kubeLbLogs);

      const saved = await ctx.sandbox.inNode('iptables-save');
      assert.doesNotMatch(saved, /KUBE-(SERVICES|SVC-|SEP-|POSTROUTING|MARK-MASQ)/, `kube-proxy's rules remain after the takeover:\n${saved}`);
      const adopted = /"flows":(\d+),"msg":"took over: the stack's conntrack/.exec(ctx.kubeLbLogs);
      assert.ok(adopted && Number(adopted[1]) >= 4, `the held connections (and maybe more) were left to the stack's conntrack: ${adopted?.[0]}`);
      const after = await ctx.client('client', 'tcp', VIP, 80, 20);
      assert.deepEqual({ failures: after.failures, servers: Object.keys(after.answers).sort() }, { failures: 0, servers: ['web-1', 'web-2'] }, 'kube-lb alone answers');
      assert.match(await ctx.kubeLb('inspect'), new RegExp(`${VIP.replaceAll('.', '\\.')}:80/TCP`), "kube-lb's datapath holds the service");
      // The held connections are closed (use() ends them): what kept their NAT goes.
      await ctx.waitUntil('the table keeping conntrack for the removed rules goes once their flows have ended', 60_000, async () => /removed table ip kube-lb-takeover/.test(ctx.kubeLbLogs));
      assert.doesNotMatch(await ctx.sandbox.inNode('nft', 'list', 'tables'), /kube-lb-takeover/, 'table ip kube-lb-takeover is gone');
      // bpftool -j prints the value's bytes, in hex.
      const adopt = JSON.parse((await ctx.sandbox.execInNode('bpftool', ['-j', 'map', 'dump', 'pinned', `${ctx.sandbox.pinPath}/kube_lb_adopt`])).stdout) as { value: string[] }[];
      assert.deepEqual(adopt.map((e) => e.value.map(Number)), [[0, 0, 0, 0]], "kube_lb_adopt is off: every flow is kube-lb's");
    }));

  it('from the ebpf backend to nftables under load: no request fails, the ebpf programs keep their flows until these end, then they are removed', () =>
    withContext(variant('ebpf'), pods, async (ctx) => {
      requireCommand('nft', 'apt-get install nftables');
      ctx.writeServices('web.yaml', [web]);
      await ctx.startKubeLb();
      const idle = await Promise.all([1, 2, 3].map(() => idleConnection(ctx.sandbox, 'client', VIP, 80)));
      const hold = ctx.client('client', 'hold', VIP, 80, slow(12_000));
      const loop = requestLoop(ctx);
      let rounds: Round[];
      let nftables: KubeLb | undefined;
      try {
        // As a DaemonSet is replaced: the old kube-lb stops (its datapath stays), the new one starts.
        await ctx.stopKubeLb();
        nftables = await startKubeLb(ctx, ['--backend=nftables', `--bpf-pin-path=${ctx.sandbox.pinPath}`, '--takeover']);
        await new Promise((r) => setTimeout(r, slow(1500)));
      } finally {
        rounds = await loop.stop();
      }
      try {
        const held = await hold;
        const used = await Promise.all(idle.map((c) => c.use()));
        await assertNoFailure(ctx, rounds, held, used, nftables.logs());

        // Every flow of the ebpf datapath has ended: it goes.
        await ctx.waitUntil('the ebpf datapath is removed once its flows have ended', 60_000, async () => /the last flow of the ebpf datapath ended/.test(nftables!.logs()));
        assert.equal(fs.existsSync(ctx.sandbox.pinPath), false, 'the ebpf pins are gone');
        assert.deepEqual(await socketProgramsServing(ctx.sandbox), [], 'the socket programs are detached');
        const tc = await ctx.sandbox.inNode('tc', 'filter', 'show', 'dev', ctx.sandbox.pod('client').hostIf, 'ingress');
        assert.doesNotMatch(tc, /lb_from_pod/, `the TC programs are detached:\n${tc}`);
        const after = await ctx.client('client', 'tcp', VIP, 80, 20);
        assert.deepEqual({ failures: after.failures, servers: Object.keys(after.answers).sort() }, { failures: 0, servers: ['web-1', 'web-2'] }, 'nftables alone answers');
        assert.match(await ctx.sandbox.inNode('nft', 'list', 'table', 'ip', 'kube-lb'), new RegExp(VIP.replaceAll('.', '\\.')), "kube-lb's nftables table holds the service");
      } finally {
        await nftables.stop();
        await ctx.sandbox.execInNode(process.execPath, [cliPath, 'cleanup', '--backend=nftables']);
      }
    }));
});

interface KubeLb {
  logs(): string;
  stop(): Promise<void>;
}

/** Starts a kube-lb other than the context's own on node-a; resolves once it is ready. */
async function startKubeLb(ctx: ScenarioContext, args: string[]): Promise<KubeLb> {
  const child: ChildProcess = ctx.sandbox.spawnInNode(process.execPath, [
    cliPath,
    'run',
    ...args,
    `--manifests=${ctx.manifestsDir}`,
    `--hostname-override=${KUBE_LB_NODE}`,
    '--cluster-cidr=10.244.0.0/16',
    '--healthz-bind-address=',
    '--metrics-bind-address=',
  ]);
  let logs = '';
  child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  await waitForLine(child, /"msg":"ready"/, slow(60_000), 'kube-lb --takeover');
  return {
    logs: () => logs,
    async stop() {
      const code = await new Promise<number | null>((resolve) => {
        child.once('exit', (c) => resolve(c));
        child.kill('SIGTERM');
      });
      assert.equal(code, 0, `kube-lb exit code; logs:\n${logs.slice(-3000)}`);
    },
  };
}
