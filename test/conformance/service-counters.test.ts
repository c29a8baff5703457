// kube_lb_service_connections_total: what the kernel counted per service
// port and endpoint, named from the model, on every backend that counts.
// Connections through a ClusterIP and a NodePort show under the service's
// labels and each endpoint's; the counts survive full resyncs and a restart,
// and --metrics-endpoint-labels=false folds the endpoints into one series.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NODES } from '../lib/sandbox.js';
import { slow } from '../lib/slowdown.js';
import { type ScenarioContext, withContext } from './context.js';
import { VIP, endpoints, ipOf, pods } from './scenarios.js';
import { variant } from './variants.js';

const METRIC = 'kube_lb_service_connections_total';
const CONNECTIONS = 10;
const NODE_PORT = 30080;
/** Full resyncs often enough that the test sees several. */
const ARGS = ['--sync-period=2s'];

/** Each series of the metric for service default/web, by its labels other than namespace and service. */
async function webSeries(ctx: ScenarioContext): Promise<Map<string, number>> {
  const body = await ctx.sandbox.inNode('curl', '-sS', '--noproxy', '*', '--max-time', '10', 'http://127.0.0.1:10249/metrics');
  const series = new Map<string, number>();
  for (const m of body.matchAll(new RegExp(`^${METRIC}\\{namespace="default",service="web",([^}]*)\\} (\\S+)$`, 'gm'))) series.set(m[1]!, Number(m[2]));
  assert.match(body, new RegExp(`^# TYPE ${METRIC} counter$`, 'm'), `the backend exports ${METRIC}`);
  return series;
}

const endpointLabels = (pod: string): string => `port="http",endpoint="${ipOf(pod)}:8080"`;

for (const name of ['iptables-nft', 'iptables-legacy', 'nftables']) {
  describe(`${name}: connection counters per service and endpoint`, () => {
    it('counts connections through a ClusterIP and a NodePort under the service and each endpoint, across full resyncs and a restart; endpoint labels can be turned off', () =>
      withContext(variant(name), pods, async (ctx) => {
        ctx.writeServices('web.yaml', [
          {
            name: 'web',
            clusterIP: VIP,
            type: 'NodePort',
            ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: NODE_PORT }],
            endpoints: endpoints(['web-1', 'web-2']),
          },
        ]);
        await ctx.startKubeLb(process.env, ARGS);
        const before = await webSeries(ctx);
        const inside = await ctx.client('client', 'tcp', VIP, 80, CONNECTIONS);
        const outside = await ctx.externalClient('tcp', NODES['node-a'].ip, NODE_PORT, CONNECTIONS);
        assert.equal(inside.failures + outside.failures, 0, `every connection answered: ${JSON.stringify([inside.errors, outside.errors])}`);
        // Two full resyncs rewrite every chain: the counts must outlive them.
        await new Promise((r) => setTimeout(r, slow(5000)));

        const after = await webSeries(ctx);
        for (const pod of ['web-1', 'web-2']) {
          const answered = (inside.answers[pod] ?? 0) + (outside.answers[pod] ?? 0);
          const grew = (after.get(endpointLabels(pod)) ?? 0) - (before.get(endpointLabels(pod)) ?? 0);
          assert.ok(grew >= answered, `${pod} answered ${answered} connections; its count grew by ${grew}: ${JSON.stringify([...after])}`);
        }
        const total = [...after.values()].reduce((a, b) => a + b, 0);
        assert.ok(total >= 2 * CONNECTIONS, `the service's endpoints counted ${total} connections, at least ${2 * CONNECTIONS} expected`);

        await ctx.stopKubeLb();
        await ctx.startKubeLb(process.env, [...ARGS, '--metrics-endpoint-labels=false']);
        const folded = await webSeries(ctx);
        assert.deepEqual([...folded.keys()], ['port="http"'], 'one series for the service port, without endpoint labels');
        assert.ok(folded.get('port="http"')! >= total, `the counts survive a restart: ${folded.get('port="http"')} after, ${total} before`);
      }));
  });
}
