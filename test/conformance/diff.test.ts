// `kube-lb diff`, run's dry run: with run's flags it prints what the next
// sync would add, change and remove, and exits as `kubectl diff` (0 when
// nothing differs, 1 when something does, 2 on a usage error, 3 on a
// failure). It must write nothing: the kernel's state is compared before
// and after, both before kube-lb ever ran (for ebpf: without pinned maps)
// and after it ran and stopped, leaving its datapath in place for the next
// start. ipvs is left out: the case passes in the VM (test/vm) but is slow
// there under emulation, and the ipvs backend's part of diff is its sync's
// list of virtual servers.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { MAPS } from '../../src/backends/ebpf/datapath.js';
import type { ServiceSpec } from '../lib/manifests.js';
import { binPath } from '../lib/paths.js';
import { slow } from '../lib/slowdown.js';
import { type ScenarioContext, withContext } from './context.js';
import { variant } from './variants.js';

const FILE = 'services.yaml';
const http = (port: number, nodePort?: number) => [{ name: 'http', port, targetPort: 8080, protocol: 'TCP' as const, ...(nodePort === undefined ? {} : { nodePort }) }];
const ready = (...ips: string[]) => ips.map((ip) => ({ ip, ready: true }));

const WEB: ServiceSpec = { name: 'web', clusterIP: '10.96.0.10', ports: http(80), endpoints: ready('10.244.0.11', '10.244.0.12') };
const OLD: ServiceSpec = { name: 'old', clusterIP: '10.96.0.30', ports: http(80), endpoints: ready('10.244.0.13') };
const NEW: ServiceSpec = { name: 'new', type: 'NodePort', clusterIP: '10.96.0.20', ports: http(80, 30080), endpoints: ready('10.244.0.14') };

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** bin/kube-lb diff with run's flags, in node-a's namespace, its output piped as a shell does. */
async function kubeLbDiff(ctx: ScenarioContext, extra: string[] = []): Promise<Outcome> {
  const [, ...flags] = ctx.kubeLbArgs();
  try {
    const { stdout, stderr } = await promisify(execFile)('nsenter', [`--net=/run/netns/${ctx.sandbox.nodeNs}`, binPath, 'diff', ...flags, ...extra], { timeout: slow(60_000) });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const { code, stdout, stderr } = err as { code: number | string; stdout: string; stderr: string };
    return { code: typeof code === 'number' ? code : null, stdout, stderr };
  }
}

/**
 * What any of the host's backends could have written in node-a: its links
 * and addresses, the nf_tables ruleset (nftables, iptables-nft), the
 * x_tables rules (iptables-legacy), and the sandbox's pinned BPF maps with
 * their entries.
 */
async function kernelState(ctx: ScenarioContext): Promise<string> {
  const { sandbox } = ctx;
  const parts = [
    await sandbox.inNode('ip', '-o', 'link', 'show'),
    // IPv4 only: IPv6 addresses lose their tentative flag on their own.
    await sandbox.inNode('ip', '-4', '-o', 'addr', 'show'),
    await sandbox.inNode('nft', 'list', 'ruleset'),
    // iptables-save's comment lines carry the time it ran.
    (await sandbox.inNode('iptables-legacy-save')).replace(/^#.*\n/gm, ''),
  ];
  if (!fs.existsSync(sandbox.pinPath)) parts.push('no pins');
  else {
    parts.push(fs.readdirSync(sandbox.pinPath).sort().join('\n'));
    for (const map of Object.values(MAPS)) {
      const pin = path.join(sandbox.pinPath, map);
      // Pinned maps belong to no network namespace; `ip netns exec` would hide bpffs.
      parts.push(fs.existsSync(pin) ? (await promisify(execFile)('bpftool', ['map', 'dump', 'pinned', pin], { maxBuffer: 64 << 20 })).stdout : `no ${map}`);
    }
  }
  return parts.join('\n----\n');
}

/** Runs diff, checks that the kernel did not change, and returns its outcome. */
async function diffWritingNothing(ctx: ScenarioContext): Promise<Outcome> {
  const before = await kernelState(ctx);
  const outcome = await kubeLbDiff(ctx);
  assert.ok(outcome.code === 0 || outcome.code === 1, `kube-lb diff exit code ${outcome.code}; stderr:\n${outcome.stderr}`);
  assert.equal(await kernelState(ctx), before, 'kube-lb diff changed the kernel state');
  return outcome;
}

const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');

function diffCase(name: string): void {
  it(`${name}: diff shows additions, changes and removals, writes nothing, and shows nothing once kube-lb has synced`, () =>
    withContext(variant(name), [], async (ctx) => {
      const usage = await kubeLbDiff(ctx, ['--sync-period=soon']);
      assert.equal(usage.code, 2, 'a usage error exits 2');
      assert.equal(usage.stdout, '', 'a usage error prints no difference');
      assert.match(usage.stderr, /^kube-lb: --sync-period=soon: not a duration[^\n]*\n$/, 'a usage error is one sentence on stderr');
      assert.equal((await kubeLbDiff(ctx, ['--manifests=/nonexistent'])).code, 3, 'a failure exits 3, not 1, which says that something differs');

      ctx.writeServices(FILE, [WEB, OLD]);
      const first = await diffWritingNothing(ctx);
      assert.equal(first.code, 1, 'nothing is programmed yet: everything differs');
      assert.deepEqual(lines(first.stdout), [
        '+ default/web http ClusterIP 10.96.0.10:80/TCP -> 10.244.0.11:8080, 10.244.0.12:8080',
        '+ default/old http ClusterIP 10.96.0.30:80/TCP -> 10.244.0.13:8080',
      ]);

      await ctx.startKubeLb();
      await ctx.stopKubeLb();
      assert.match(await ctx.kubeLb('inspect'), /10\.96\.0\.10:80\/TCP\s+10\.244\.0\.11:8080, 10\.244\.0\.12:8080\n/, 'the datapath stays in place after kube-lb stops');

      ctx.writeServices(FILE, [{ ...WEB, endpoints: ready('10.244.0.11') }, NEW]);
      const second = await diffWritingNothing(ctx);
      assert.equal(second.code, 1, `something differs; stdout:\n${second.stdout}`);
      const out = lines(second.stdout);
      const added = out.filter((l) => l.startsWith('+ '));
      assert.ok(added.includes('+ default/new http ClusterIP 10.96.0.20:80/TCP -> 10.244.0.14:8080'), `the new service's ClusterIP is added:\n${second.stdout}`);
      assert.ok(added.some((l) => / NodePort \S+:30080\/TCP -> /.test(l)), `its NodePort is added:\n${second.stdout}`);
      assert.ok(added.every((l) => l.startsWith('+ default/new http ') && l.endsWith(' -> 10.244.0.14:8080')), `only the new service is added:\n${second.stdout}`);
      assert.deepEqual(
        out.filter((l) => !l.startsWith('+ ')),
        ['~ default/web http ClusterIP 10.96.0.10:80/TCP: 10.244.0.11:8080, 10.244.0.12:8080 -> 10.244.0.11:8080', '- <none> <none> ClusterIP 10.96.0.30:80/TCP -> 10.244.0.13:8080'],
        'additions first, then the change, then the removal',
      );

      await ctx.startKubeLb();
      await ctx.stopKubeLb();
      const synced = await diffWritingNothing(ctx);
      assert.deepEqual({ code: synced.code, stdout: synced.stdout }, { code: 0, stdout: '' }, 'nothing differs once kube-lb has synced');
    }));
}

describe('kube-lb diff', () => {
  for (const name of ['ebpf', 'iptables-nft', 'iptables-legacy', 'nftables']) diffCase(name);
});
