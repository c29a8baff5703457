// The rows that come from outside the node (and the counters row, whose
// NodePort traffic comes from outside), against the ebpf backend with
// XDP in the driver on node-a's uplink (--bpf-xdp=native), plus what only
// XDP promises: frames for endpoints on other nodes leave from the driver,
// the mode follows the flag across restarts, an XDP program of someone
// else's is left alone, and cleanup takes kube-lb's off.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ScenarioContext } from './context.js';
import { withContext } from './context.js';
import { endpoints, pods, VIP } from './scenarios.js';
import { runConformance } from './suite.js';
import { variant } from './variants.js';
import { NODES, XDP_PASS_OBJECT } from '../lib/sandbox.js';

runConformance('ebpf-xdp', [
  'NodePort, external IP and load-balancer IP from outside reach endpoints on both nodes, masqueraded',
  'a real HTTP server and client: curl through a NodePort reaches nginx on both nodes',
  'externalTrafficPolicy Local: outside traffic reaches local endpoints with its source kept; the health check node port counts them',
  'loadBalancerSourceRanges: only sources inside the ranges reach the load-balancer IP',
  'a NodePort without endpoints refuses connections from outside rather than let them time out',
  'kube-lb.io/lb-algorithm: maglev: each client port, from a pod or from outside, reaches the endpoint the Maglev table names, before and after an endpoint goes',
  'connections through a ClusterIP and a NodePort are counted under the service and, on request, each endpoint on /metrics, across full resyncs and a restart',
]);

const NODE_IP = NODES['node-a'].ip;
const NODE_PORT = 30080;
/** One endpoint, on node-b: node-a's XDP sends the flows back out of the uplink. */
const remoteOnly = {
  name: 'web',
  clusterIP: VIP,
  type: 'NodePort' as const,
  ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' as const, nodePort: NODE_PORT }],
  endpoints: endpoints(['web-4']),
};

/** The XDP program on node-a's eth0 and its mode, as ip shows it: "xdp" (native), "xdpgeneric", or none. */
async function uplinkXdp(ctx: ScenarioContext): Promise<{ mode: string; name: string } | null> {
  const [link] = JSON.parse(await ctx.sandbox.inNode('ip', '-d', '-j', 'link', 'show', 'eth0')) as { xdp?: { mode: number; prog?: { name: string } } }[];
  if (!link?.xdp?.prog) return null;
  // XDP_ATTACHED_DRV is 1, XDP_ATTACHED_SKB 2.
  return { mode: link.xdp.mode === 1 ? 'native' : link.xdp.mode === 2 ? 'generic' : String(link.xdp.mode), name: link.xdp.prog.name };
}

/** Frames node-a's eth0 sent back out from its XDP program (XDP_TX), as the veth counts them. */
async function framesSentByXdp(ctx: ScenarioContext): Promise<number> {
  const stats = await ctx.sandbox.inNode('ethtool', '-S', 'eth0');
  return [...stats.matchAll(/rx_queue_\d+_xdp_tx: (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}

async function answered(ctx: ScenarioContext, what: string): Promise<void> {
  const r = await ctx.externalClient('tcp', NODE_IP, NODE_PORT, 10);
  assert.deepEqual(Object.keys(r.answers), ['web-4'], `${what}: ${JSON.stringify(r)}`);
}

describe('ebpf-xdp: what only XDP promises', () => {
  it('flows to an endpoint on another node leave from the driver; the mode follows --bpf-xdp across restarts, off takes it away, cleanup too', () =>
    withContext(variant('ebpf-xdp'), pods, async (ctx) => {
      ctx.writeServices('web.yaml', [remoteOnly]);
      await ctx.startKubeLb();
      assert.deepEqual(await uplinkXdp(ctx), { mode: 'native', name: 'lb_world_xdp' });
      const before = await framesSentByXdp(ctx);
      await answered(ctx, 'native XDP');
      // Each connection's request and reply frames both go back out of eth0 from XDP.
      assert.ok((await framesSentByXdp(ctx)) - before >= 20, 'the flows were sent back out by XDP, not by TC');

      for (const mode of ['generic', 'off'] as const) {
        await ctx.stopKubeLb();
        await ctx.startKubeLb(process.env, [`--bpf-xdp=${mode}`]);
        assert.deepEqual(await uplinkXdp(ctx), mode === 'off' ? null : { mode, name: 'lb_world_xdp' }, `after a restart with --bpf-xdp=${mode}`);
        await answered(ctx, `--bpf-xdp=${mode}`);
      }
      await ctx.stopKubeLb();
      await ctx.startKubeLb();
      await ctx.stopKubeLb();
      await ctx.kubeLb('cleanup', '--backend=ebpf', ...variant('ebpf-xdp').flags(ctx.sandbox));
      assert.equal(await uplinkXdp(ctx), null, 'cleanup took the XDP program off');
    }));

  it("another XDP program on the uplink is left alone, named in a warning, and TC serves the uplink; cleanup leaves it there", () =>
    withContext(variant('ebpf-xdp'), pods, async (ctx) => {
      await ctx.sandbox.inNode('ip', 'link', 'set', 'dev', 'eth0', 'xdpdrv', 'obj', XDP_PASS_OBJECT, 'sec', 'xdp');
      ctx.writeServices('web.yaml', [remoteOnly]);
      await ctx.startKubeLb();
      assert.match(ctx.kubeLbLogs, /"program":"xdp_pass".*another XDP program runs on the uplink/);
      assert.deepEqual(await uplinkXdp(ctx), { mode: 'native', name: 'xdp_pass' });
      await answered(ctx, 'at TC, beside the other XDP program');
      await ctx.stopKubeLb();
      await ctx.kubeLb('cleanup', '--backend=ebpf', ...variant('ebpf-xdp').flags(ctx.sandbox));
      assert.deepEqual(await uplinkXdp(ctx), { mode: 'native', name: 'xdp_pass' }, 'cleanup left the other program');
      await ctx.sandbox.inNode('ip', 'link', 'set', 'dev', 'eth0', 'xdpdrv', 'off');
    }));
});
