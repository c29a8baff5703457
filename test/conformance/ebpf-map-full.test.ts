// A full kube_lb_svc never wedges the node (issue 11): with a small
// --bpf-lb-map-max, a service that does not fit is refused by name and
// counted, everything else keeps converging, deleting a service lets it in,
// and a restart over slots a failed batch left behind becomes ready.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FrontendView } from '../../src/backends/backend.js';
import type { ServiceSpec } from '../lib/manifests.js';
import { orphanSlots, svcEntries, writeSvcEntries } from '../lib/svc-map.js';
import { type ScenarioContext, withContext } from './context.js';
import { variant } from './variants.js';

const MAP_MAX = 64;
const pods = [
  { name: 'client', ip: '10.244.0.2', serves: false },
  { name: 'web-1', ip: '10.244.0.11' },
  { name: 'web-2', ip: '10.244.0.12' },
];

/** One port, 80 to 8080: kube_lb_svc holds 1 + endpoints entries for it. */
function service(name: string, clusterIP: string, endpointIps: string[]): ServiceSpec {
  return {
    name,
    clusterIP,
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
    endpoints: endpointIps.map((ip) => ({ ip, ready: true })),
  };
}

const web = ['10.244.0.11', '10.244.0.12'];
// Endpoints nobody serves: they only take room.
const many = Array.from({ length: 58 }, (_, i) => `10.244.1.${i + 1}`);

async function programmed(ctx: ScenarioContext): Promise<string[]> {
  const views = JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as FrontendView[];
  return views.map((v) => v.frontend.ip);
}

async function answers(ctx: ScenarioContext, ip: string): Promise<boolean> {
  const r = await ctx.client('client', 'tcp', ip, 80, 4);
  return r.failures === 0;
}

async function httpGet(ctx: ScenarioContext, url: string): Promise<{ code: string; body: string }> {
  const out = await ctx.sandbox.inNode('curl', '-sS', '--noproxy', '*', '--max-time', '10', '-w', '\n%{http_code}', url);
  const at = out.lastIndexOf('\n');
  return { code: out.slice(at + 1), body: out.slice(0, at) };
}

function metric(body: string, name: string): number | undefined {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(body);
  return m ? Number(m[1]) : undefined;
}

describe('ebpf backend: a full service map', () => {
  it('refuses what does not fit by name, keeps converging, and lets it in once there is room', () =>
    withContext(variant('ebpf'), pods, async (ctx) => {
      const args = [`--bpf-lb-map-max=${MAP_MAX}`];
      // 3 + 59 entries fit in 64; c-web's 3 do not.
      ctx.writeServices('a.yaml', [service('a-web', '10.96.0.10', web)]);
      ctx.writeServices('b.yaml', [service('b-big', '10.96.0.20', many)]);
      ctx.writeServices('c.yaml', [service('c-web', '10.96.0.30', web)]);
      await ctx.startKubeLb(process.env, args);

      assert.ok(await answers(ctx, '10.96.0.10'), 'a-web serves');
      assert.deepEqual(await programmed(ctx), ['10.96.0.10', '10.96.0.20'], 'c-web is not in the map');
      const refusedLines = (): string[] => ctx.kubeLbLogs.split('\n').filter((l) => l.includes('"level":40') && l.includes('default/c-web'));
      assert.equal(refusedLines().length, 1, `one warning names c-web:\n${ctx.kubeLbLogs.slice(-3000)}`);
      assert.match(refusedLines()[0]!, /--bpf-lb-map-max/);

      // Another service that fits still converges, and the refusal is not logged again.
      ctx.writeServices('d.yaml', [service('d-web', '10.96.0.40', ['10.244.0.11'])]);
      await ctx.waitUntil('d-web serves', 20_000, () => answers(ctx, '10.96.0.40'));
      assert.equal(refusedLines().length, 1, 'c-web is named once, not at every sync');

      const metrics = await httpGet(ctx, 'http://127.0.0.1:10249/metrics');
      assert.equal(metrics.code, '200');
      assert.equal(metric(metrics.body, 'kube_lb_service_ports_refused'), 1, 'the refused service port is counted');
      assert.ok((metric(metrics.body, 'kube_lb_sync_errors_total') ?? 0) >= 1, 'a sync that refused counts as failed');
      assert.match((await httpGet(ctx, 'http://127.0.0.1:10256/healthz')).code, /^(200|503)$/, '/healthz answers');

      // Deleting the big service makes room: c-web gets in.
      ctx.removeFile('b.yaml');
      await ctx.waitUntil('c-web serves', 20_000, () => answers(ctx, '10.96.0.30'));
      assert.deepEqual(await programmed(ctx), ['10.96.0.10', '10.96.0.30', '10.96.0.40']);
      await ctx.waitUntil('the refusal metric drops to 0', 20_000, async () => {
        return metric((await httpGet(ctx, 'http://127.0.0.1:10249/metrics')).body, 'kube_lb_service_ports_refused') === 0;
      });
    }));

  it('a restart over slots left behind by a failed batch becomes ready and removes them', () =>
    withContext(variant('ebpf'), pods, async (ctx) => {
      const args = [`--bpf-lb-map-max=${MAP_MAX}`];
      ctx.writeServices('a.yaml', [service('a-web', '10.96.0.10', web)]);
      await ctx.startKubeLb(process.env, args);
      await ctx.stopKubeLb();
      // The map is full of orphans, and the next start has a service to add.
      writeSvcEntries(ctx.sandbox.pinPath, orphanSlots(1, MAP_MAX - 3));
      ctx.writeServices('e.yaml', [service('e-web', '10.96.0.50', web)]);
      await ctx.startKubeLb(process.env, args);
      await ctx.waitUntil('e-web serves', 20_000, () => answers(ctx, '10.96.0.50'));
      assert.deepEqual(await programmed(ctx), ['10.96.0.10', '10.96.0.50']);
      assert.equal(svcEntries(ctx.sandbox.pinPath), 6, 'only the two services remain in kube_lb_svc');
    }));
});
