// What a person at the command line sees: a usage error is one sentence on
// stderr and exit code 2, before anything starts; the running proxy writes
// JSON lines, each key once; kube-proxy's /proxyMode answers on the metrics
// port. kube-lb runs as users run it (bin/kube-lb), in the sandbox's node
// namespace, so a flag wrongly accepted cannot touch the machine's own
// rules; the sandbox's cleanup then checks nothing was left.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { binPath } from '../lib/paths.js';
import { slow } from '../lib/slowdown.js';
import { type ScenarioContext, withContext } from './context.js';
import { variant } from './variants.js';

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/kube-lb in node-a's namespace with its output piped, as a shell does. */
async function kubeLbCommand(ctx: ScenarioContext, args: string[]): Promise<Outcome> {
  // A command that wrongly starts the proxy runs until this bound ends it.
  const options = { timeout: slow(30_000), killSignal: 'SIGTERM' as const };
  try {
    const { stdout, stderr } = await promisify(execFile)('nsenter', [`--net=/run/netns/${ctx.sandbox.nodeNs}`, binPath, ...args], options);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const { code, stdout, stderr } = err as { code: number | string; stdout: string; stderr: string };
    return { code: typeof code === 'number' ? code : null, stdout, stderr };
  }
}

/**
 * Keys that appear more than once in one object of a JSON text. JSON.parse
 * keeps the last of repeated keys, so the text itself is read.
 */
function repeatedKeys(json: string): string[] {
  const repeated: string[] = [];
  // One set of keys per open object; arrays hold none.
  const open: (Set<string> | null)[] = [];
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '{') open.push(new Set());
    else if (c === '[') open.push(null);
    else if (c === '}' || c === ']') open.pop();
    else if (c === '"') {
      const start = i;
      for (i++; json[i] !== '"'; i++) if (json[i] === '\\') i++;
      const keys = open.at(-1);
      if (keys && /^\s*:/.test(json.slice(i + 1))) {
        const key = JSON.parse(json.slice(start, i + 1)) as string;
        if (keys.has(key)) repeated.push(key);
        keys.add(key);
      }
    }
  }
  return repeated;
}

describe('kube-lb at the command line', () => {
  it('the duplicate-key check sees a repeated key that JSON.parse hides', () => {
    assert.deepEqual(repeatedKeys('{"a":1,"b":{"a":"x\\":","c":[{"a":1},{"a":2}]},"a":2}'), ['a']);
    assert.deepEqual(repeatedKeys('{"hostname":"vm","hostname":"n1"}'), ['hostname']);
  });

  it('every usage error of every command is one sentence on stderr naming the flag, with exit code 2, and nothing starts', () =>
    withContext(variant('nftables'), [], async (ctx) => {
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-usage-'));
      const config = (name: string, text: string): string => {
        fs.writeFileSync(path.join(scratch, name), text);
        return `--config=${path.join(scratch, name)}`;
      };
      const run = ctx.kubeLbArgs();
      const cases: Array<[string[], RegExp]> = [
        [[...run, '--foo'], /^--foo: unknown flag/],
        [[...run, '-x'], /^-x: unknown flag/],
        [[...run, '--sync-period'], /^--sync-period: needs a value/],
        [[...run, '--help=yes'], /^--help: takes no value/],
        [[...run, 'now'], /^unknown command "run now"/],
        [['serve'], /^unknown command "serve"/],
        [[...run, '--backend=userspace'], /^--backend=userspace: unknown backend; choose one of ebpf, iptables, nftables, ipvs/],
        [[...run, '--sync-period=30'], /^--sync-period=30: not a duration/],
        [[...run, '--min-sync-period=-1s'], /^--min-sync-period=-1s: not a duration: must not be negative/],
        [[...run, '--log-level=loud'], /^--log-level=loud: choose one of /],
        [[...run, '--masquerade-bit=32'], /^--masquerade-bit=32: not an integer from 0 to 31/],
        [[...run, '--cluster-cidr=10.244.0.0'], /^--cluster-cidr=10\.244\.0\.0: not a CIDR/],
        [[...run, '--cluster-cidr=10.244.0.0/16,10.245.0.0/16'], /^--cluster-cidr=10\.244\.0\.0\/16,10\.245\.0\.0\/16: at most one CIDR per family/],
        [[...run, '--service-cluster-ip-range=10.96.0.0/33'], /^--service-cluster-ip-range=10\.96\.0\.0\/33: not a CIDR/],
        [[...run, '--nodeport-addresses=eth0'], /^--nodeport-addresses=eth0: not a CIDR/],
        [[...run, '--conntrack-tcp-be-liberal=yes'], /^--conntrack-tcp-be-liberal=yes: choose true or false/],
        [[...run, '--devices=eth0/1'], /^--devices=eth0\/1: "eth0\/1" is not an interface name/],
        [[...run, '--bpf-lb-map-max=0'], /^--bpf-lb-map-max=0: not a whole number/],
        [[...run, '--bpf-ct-map-max=lots'], /^--bpf-ct-map-max=lots: not a whole number/],
        [[...run, '--bpf-xdp=fast'], /^--bpf-xdp=fast: choose native, generic or off/],
        [[...run, '--healthz-bind-address=10256'], /^--healthz-bind-address=10256: not host:port/],
        [[...run, '--metrics-bind-address=localhost:99999'], /^--metrics-bind-address=localhost:99999: not host:port/],
        [[...run, '--metrics-endpoint-labels=off'], /^--metrics-endpoint-labels=off: choose true or false/],
        [[...run, '--backend=iptables', '--iptables-mode=auto'], /^--iptables-mode=auto: choose nft or legacy/],
        [[...run, '--backend=iptables', '--iptables-localhost-nodeports=1'], /^--iptables-localhost-nodeports=1: choose true or false/],
        [[...run, '--backend=ipvs', '--ipvs-scheduler=fastest'], /^--ipvs-scheduler=fastest: unknown IPVS scheduler/],
        [[...run, '--backend=ipvs', '--ipvs-tcp-timeout=1500ms'], /^--ipvs-tcp-timeout=1500ms: IPVS takes a whole number of seconds/],
        [[...run, '--backend=ipvs', '--ipvs-udp-timeout=-5s'], /^--ipvs-udp-timeout=-5s: not a duration: must not be negative/],
        [[...run, '--backend=ipvs', '--ipvs-exclude-cidrs=10.0.0.0/33'], /^--ipvs-exclude-cidrs=10\.0\.0\.0\/33: /],
        [[...run, '--detect-local-mode=PodCIDR'], /^--detect-local-mode=PodCIDR: choose ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix$/],
        [[...run, '--detect-local-mode=BridgeInterface'], /^--detect-local-mode=BridgeInterface needs --pod-bridge-interface/],
        [[...run, '--pod-bridge-interface=br/0'], /^--pod-bridge-interface=br\/0: not an interface name$/],
        [[...run.filter((a) => !a.startsWith('--cluster-cidr=')), '--pod-bridge-interface=cni0'], /^--pod-interface-name-prefix and --pod-bridge-interface each pick a --detect-local-mode/],
        [[...run, `--config=${path.join(scratch, 'absent.yaml')}`], /^--config .*absent\.yaml: ENOENT/],
        [[...run, config('other.yaml', 'kind: ConfigMap\n')], /^--config .*other\.yaml: not a kubeproxy\.config\.k8s\.io\/v1alpha1 KubeProxyConfiguration/],
        [[...run, config('bad-period.yaml', 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nsyncPeriod: 30\n')], /^--sync-period=30: not a duration/],
        [['inspect', '--backend=nftables', '-o', 'yaml'], /^-o yaml: choose text, wide or json/],
        [['inspect', '--backend=nftables', '-o'], /^--output: needs a value/],
        [['inspect', '--backend=nftables', `--manifests=${ctx.manifestsDir}`, '--service=web'], /^--service=web: give NAMESPACE\/NAME/],
        [['inspect', '--backend=nftables', '--service=default/web'], /^--service=default\/web: needs --manifests or --kubeconfig/],
        [['cleanup', '--backend=nope'], /^--backend=nope: unknown backend/],
        [['cleanup', '--backend=iptables', '--iptables-mode=auto'], /^--iptables-mode=auto: choose nft or legacy/],
        [['--cleanup', 'now'], /^unknown command "now"/],
        [['bench', '--frobnicate'], /^--frobnicate: unknown flag/],
        [['bench', '--out'], /^--out: needs a value/],
        [['bench', '--variants=userspace'], /^--variants: unknown variant userspace/],
        [['bench', '--services=0'], /^--services: 0 is not a positive whole number/],
        [['bench', '--runs=two'], /^--runs: two is not a positive whole number/],
        [['bench', '--only=latency'], /^--only: unknown measurement latency/],
      ];
      try {
        for (const [args, sentence] of cases) {
          const { code, stdout, stderr } = await kubeLbCommand(ctx, args);
          const what = `kube-lb ${args.join(' ')}`;
          assert.equal(code, 2, `${what}: exit code; stderr:\n${stderr}`);
          assert.equal(stdout, '', `${what}: stdout`);
          const lines = stderr.split('\n');
          assert.equal(lines.at(-1), '', `${what}: stderr ends its sentence with a newline`);
          assert.equal(lines.length, 2, `${what}: one line on stderr, got:\n${stderr}`);
          assert.match(lines[0]!.replace(/^kube-lb(?: bench)?: /, ''), sentence, what);
        }
      } finally {
        fs.rmSync(scratch, { recursive: true, force: true });
      }
    }));

  it('a running kube-lb logs JSON lines with each key once, and answers /proxyMode on the metrics port with its backend', () =>
    withContext(variant('nftables'), [], async (ctx) => {
      ctx.writeServices('web.yaml', [{ name: 'web', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: [{ ip: '10.244.0.11', ready: true }] }]);
      // The manifest source's child logger says it ignores this.
      fs.writeFileSync(path.join(ctx.manifestsDir, 'settings.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\n');
      // Debug level: the most lines.
      await ctx.startKubeLb(process.env, ['--log-level=debug']);
      // kube-proxy's default metrics address, where kube-proxy's own tooling asks.
      assert.equal(await ctx.curl('host', 'http://127.0.0.1:10249/proxyMode'), 'nftables');
      await ctx.stopKubeLb();
      const lines = ctx.kubeLbLogs.split('\n').filter((line) => line !== '');
      assert.ok(lines.length >= 4, `too few log lines to tell:\n${ctx.kubeLbLogs}`);
      for (const line of lines) {
        assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
        assert.deepEqual(repeatedKeys(line), [], `keys repeated in ${line}`);
      }
      assert.ok(lines.some((line) => line.includes('"source":"manifests"')), 'a line of the manifest source (a child logger) was checked');
    }));
});
