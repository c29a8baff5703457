// Health probes share kube-lb's event loop with everything else it does: a
// large manifest file read, ingested and synced in one go left them
// unanswered for seconds. kube-lb is probed all the while 10,000 documents
// load. One backend is enough: reading and ingesting are the same for all.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { type ServiceSpec, writeDocuments } from '../lib/manifests.js';
import { testLibDir } from '../lib/paths.js';
import { waitForLine } from '../lib/sandbox.js';
import { slow } from '../lib/slowdown.js';
import { withContext } from './context.js';
import { variant } from './variants.js';

/** A Service and its EndpointSlice each: 10,000 documents. */
const SERVICES = 5000;
/**
 * Every answer while the file loads. kube-lb answers between short slices of
 * work, far within the 100 ms on an idle machine; the bound leaves
 * room for a loaded 2-core machine, where every slice takes longer and
 * scheduling delays answers (three times the slowest answer seen there),
 * and stays below the time that reading the file in one go took even on a
 * fast machine.
 */
const ANSWER_BOUND_MS = slow(1000);

/** The service changes kube-lb's syncs have applied so far, by its "synced" log lines. */
function syncedServiceChanges(logs: string): number {
  return [...logs.matchAll(/"serviceChanges":(\d+)[^\n]*"msg":"synced"/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}

describe('kube-lb reading a large manifest file', () => {
  it(`answers every health probe within ${ANSWER_BOUND_MS} ms while ${2 * SERVICES} documents load, and serves them all`, (t) =>
    withContext(variant('nftables'), [], async (ctx) => {
      await ctx.startKubeLb(process.env, ['--healthz-bind-address=127.0.0.1:0']);
      const port = /"healthz":"127\.0\.0\.1:(\d+)"/.exec(ctx.kubeLbLogs)?.[1];
      assert.ok(port, `kube-lb did not log its healthz address; logs:\n${ctx.kubeLbLogs.slice(-2000)}`);
      const prober = ctx.sandbox.spawnInNode(process.execPath, [path.join(testLibDir, 'health-prober.js'), `http://127.0.0.1:${port}/livez`]);
      let report = '';
      prober.stdout!.on('data', (d: Buffer) => (report += d.toString()));
      await waitForLine(prober, /probing/, slow(10_000), 'health prober');

      const services: ServiceSpec[] = Array.from({ length: SERVICES }, (_, i) => ({
        name: `svc-${i}`,
        clusterIP: `10.96.${10 + Math.floor(i / 250)}.${(i % 250) + 1}`,
        ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
        endpoints: [{ ip: '10.244.0.11', ready: true }],
      }));
      writeDocuments(ctx.manifestsDir, 'many.yaml', services);
      // kube-lb's own log says when they are synced: inspecting 5,000 services over and over would load the machine the probes measure.
      await ctx.waitUntil(`all ${SERVICES} services synced`, 180_000, async () => syncedServiceChanges(ctx.kubeLbLogs) >= SERVICES);

      const exited = new Promise((resolve) => prober.once('exit', resolve));
      prober.kill('SIGTERM');
      await exited;
      const { answers, slowestMs, failures } = JSON.parse(report.split('\n').at(-2)!) as { answers: number; slowestMs: number; failures: string[] };
      t.diagnostic(`${answers} probes; the slowest took ${slowestMs.toFixed(1)} ms`);
      assert.deepEqual(failures, [], 'failed probes');
      assert.ok(answers > 0, 'no probe answered');
      assert.ok(slowestMs < ANSWER_BOUND_MS, `the slowest of ${answers} probes took ${Math.round(slowestMs)} ms, over ${ANSWER_BOUND_MS} ms`);
      assert.equal((JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as unknown[]).length, SERVICES, 'frontends in the datapath');
    }));
});
