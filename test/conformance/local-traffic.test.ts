// --detect-local-mode with the ebpf backend and no --pod-interface-name-prefix
// (but in its own mode): in each mode kube-lb finds the pods' interfaces, on
// veths of their own and on a bridge, attaches to them and to nothing else,
// serves a cluster IP to those pods, and picks up a pod added after it
// started; an interface that stops being a pod's loses the programs. A
// command line that says nothing of the pods is refused.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type PodSpec, type ScenarioContext, withContext } from './context.js';
import { VIP } from './scenarios.js';
import { variant } from './variants.js';
import type { NodeSandbox } from '../lib/sandbox.js';
import { binPath } from '../lib/paths.js';
import { slow } from '../lib/slowdown.js';

/** Two endpoints, one on a veth and one on the bridge, and a client of each kind; none in node-b's pod CIDR. */
const PODS: PodSpec[] = [
  { name: 'web-1', ip: '10.244.0.11' },
  { name: 'web-2', ip: '10.244.0.131', bridge: true },
  { name: 'veth-client', ip: '10.244.0.10', serves: false },
  { name: 'bridge-client', ip: '10.244.0.130', serves: false, bridge: true },
];

interface ModeCase {
  mode: string;
  args: (sandbox: NodeSandbox) => string[];
  /** The pods whose interfaces the mode takes for pod interfaces. */
  pods: string[];
  /** The pod added after start goes on the bridge. */
  lateOnBridge: boolean;
}

const MODES: ModeCase[] = [
  // kube-proxy's default mode, with nothing but the cluster CIDR.
  { mode: 'ClusterCIDR', args: () => ['--cluster-cidr=10.244.0.0/16'], pods: ['web-1', 'web-2', 'veth-client', 'bridge-client'], lateOnBridge: false },
  // node-a's spec.podCIDR (10.244.0.0/24) in the manifests' Node.
  { mode: 'NodeCIDR', args: () => ['--detect-local-mode=NodeCIDR'], pods: ['web-1', 'web-2', 'veth-client', 'bridge-client'], lateOnBridge: true },
  {
    mode: 'InterfaceNamePrefix',
    args: (sb) => ['--detect-local-mode=InterfaceNamePrefix', `--pod-interface-name-prefix=${sb.interfacePrefix}`],
    pods: ['web-1', 'veth-client'],
    lateOnBridge: false,
  },
  { mode: 'BridgeInterface', args: (sb) => ['--detect-local-mode=BridgeInterface', `--pod-bridge-interface=${sb.podBridge}`], pods: ['web-2', 'bridge-client'], lateOnBridge: true },
];

/** The interfaces kube-lb logged attaching its pod programs to. */
function podAttachments(ctx: ScenarioContext): Set<string> {
  const lines = ctx.kubeLbLogs.split('\n').filter((l) => l.includes('"msg":"attached"'));
  return new Set(lines.map((l) => JSON.parse(l) as { interface: string; role: string }).filter((l) => l.role === 'pod').map((l) => l.interface));
}

/** Both endpoints answer a pod's connections to the cluster IP, with no failure. */
async function assertServed(ctx: ScenarioContext, pod: string): Promise<void> {
  const result = await ctx.client(pod, 'tcp', VIP, 80, 20);
  assert.equal(result.failures, 0, `${pod}: failed connections to ${VIP}:80: ${result.errors.join('; ')}`);
  assert.deepEqual(Object.keys(result.answers).sort(), ['web-1', 'web-2'], `${pod}: endpoints that answered`);
}

const web = { name: 'web', clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' as const }] };

describe('--detect-local-mode (ebpf)', () => {
  for (const c of MODES) {
    it(`${c.mode}: attaches to the pods it finds and to nothing else, serves them a cluster IP, and picks up a pod added later`, () =>
      withContext(variant('ebpf'), PODS, async (ctx) => {
        const sb = ctx.sandbox;
        ctx.localTrafficArgs = c.args(sb);
        const endpoints = ['web-1', 'web-2'].map((n) => ({ ip: sb.pod(n).ip, ready: true, nodeName: 'node-a', zone: 'zone-a' }));
        ctx.writeServices('web.yaml', [{ ...web, endpoints }]);
        await ctx.startKubeLb();
        assert.deepEqual([...podAttachments(ctx)].sort(), c.pods.map((p) => sb.pod(p).hostIf).sort(), 'pod interfaces attached');
        for (const client of c.pods.filter((p) => p.endsWith('-client'))) await assertServed(ctx, client);

        const late = await sb.addPod('late', c.lateOnBridge ? '10.244.0.140' : '10.244.0.20', 'node-a', { bridge: c.lateOnBridge });
        await ctx.waitUntil(`kube-lb attaches to ${late.hostIf}, added after it started`, 10_000, async () => podAttachments(ctx).has(late.hostIf));
        await assertServed(ctx, 'late');
      }));
  }

  it("ClusterCIDR: an interface that stops being a pod's (its route goes) loses kube-lb's programs, and gets them back with its route", () =>
    withContext(variant('ebpf'), PODS.slice(0, 1), async (ctx) => {
      const sb = ctx.sandbox;
      ctx.localTrafficArgs = ['--cluster-cidr=10.244.0.0/16'];
      const { ip, hostIf } = sb.pod('web-1');
      await ctx.startKubeLb();
      const filters = async (): Promise<string> => (await sb.inNode('tc', 'filter', 'show', 'dev', hostIf, 'ingress')) + (await sb.inNode('tc', 'filter', 'show', 'dev', hostIf, 'egress'));
      assert.match(await filters(), /lb_from_pod[\s\S]*lb_to_pod/, `kube-lb's filters on ${hostIf}`);
      await sb.inNode('ip', 'route', 'del', `${ip}/32`, 'dev', hostIf);
      await ctx.waitUntil(`kube-lb's filters leave ${hostIf} once its route is gone`, 10_000, async () => !/lb_(from|to)_pod/.test(await filters()));
      await ctx.waitForLog('kube-lb logs the detach', /"msg":"detached: no longer a pod interface or an uplink"/);
      await sb.inNode('ip', 'route', 'add', `${ip}/32`, 'dev', hostIf);
      await ctx.waitUntil(`kube-lb attaches to ${hostIf} again once its route is back`, 10_000, async () => /lb_from_pod[\s\S]*lb_to_pod/.test(await filters()));
    }));

  it('refuses, as a usage error, a command line that tells nothing of the pod interfaces', () =>
    withContext(variant('ebpf'), [], async (ctx) => {
      ctx.localTrafficArgs = [];
      const args = ctx.kubeLbArgs();
      const outcome = await promisify(execFile)('nsenter', [`--net=/run/netns/${ctx.sandbox.nodeNs}`, binPath, ...args], { timeout: slow(30_000), killSignal: 'SIGTERM' }).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code: number | string; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
      );
      assert.equal(outcome.code, 2, `exit code of kube-lb ${args.join(' ')}; stderr:\n${outcome.stderr}`);
      assert.match(outcome.stderr, /^kube-lb: --backend=ebpf cannot tell the pod interfaces: give --cluster-cidr, or --detect-local-mode NodeCIDR, .*\n$/);
      assert.equal(outcome.stderr.split('\n').length, 2, 'one line on stderr');
    }));
});
