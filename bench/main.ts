// `make bench` / `kube-lb bench`: every backend side by side, on this
// kernel, in one run; writes bench/results/<date>-<kernel>.{md,json} and
// SVG charts.
//   node dist/bench/main.js [--quick] [--variants ebpf,iptables-nft,...] [--out DIR]
import { parseArgs } from 'node:util';
import { measurePerPacket } from './per-packet.js';
import { connRate, controlPlane, DIRECT, throughput } from './measure.js';
import { type BenchPlan, HOST_VARIANTS, type Results, writeReport } from './report.js';
import type { Variant } from './bench-node.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    variants: { type: 'string' },
    out: { type: 'string', default: 'bench/results' },
  },
});

const variants: Variant[] = values.variants
  ? values.variants.split(',').map((name) => {
      const v = HOST_VARIANTS.find((h) => h.name === name);
      if (!v) throw new Error(`--variants: unknown variant ${name}; known: ${HOST_VARIANTS.map((h) => h.name).join(', ')}`);
      return v;
    })
  : HOST_VARIANTS;

const plan: BenchPlan = values.quick
  ? { mode: 'quick', runs: 1, serviceCounts: [10, 1000], perPacketCounts: [1, 100, 1000, 10_000, 100_000], perPacketSamples: 2000, connSeconds: 2, throughputSeconds: 2 }
  : { mode: 'full', runs: 3, serviceCounts: [10, 1000, 10_000], perPacketCounts: [1, 100, 1000, 10_000, 100_000], perPacketSamples: 20_000, connSeconds: 4, throughputSeconds: 4 };

const started = Date.now();
const results: Results = { perPacket: [], conn: [], controlPlane: [], throughput: [], errors: [] };
const steps = plan.runs * (plan.serviceCounts.length * (2 * variants.length + 1 + variants.length) + variants.length + 1);
let step = 0;
const progress = (msg: string): void => {
  const elapsed = ((Date.now() - started) / 1000).toFixed(0).padStart(5);
  process.stderr.write(`[${elapsed} s] ${msg}\n`);
};

/** Runs one measurement; a failure is recorded with its reason and the run goes on. */
async function attempt<T>(what: string, variant: string, fn: () => Promise<T>): Promise<T | null> {
  step++;
  progress(`(${step}/${steps}) ${what}`);
  try {
    return await fn();
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0]!;
    progress(`  failed: ${reason}`);
    results.errors.push({ what, variant, reason });
    return null;
  }
}

progress(`kube-lb bench, ${plan.mode} mode: ${variants.map((v) => v.name).join(', ')} and direct`);
results.perPacket = measurePerPacket(plan.perPacketCounts, plan.perPacketSamples, progress);

for (let run = 1; run <= plan.runs; run++) {
  for (const services of plan.serviceCounts) {
    // Interleaved: every backend (and direct) once per run and N, each on a fresh node.
    const direct = await attempt(`connections direct, run ${run}`, DIRECT.name, () => connRate(DIRECT, 0, 'last', plan.connSeconds * 1000));
    if (direct) results.conn.push({ variant: DIRECT.name, services, target: 'last', run, ...direct });
    for (const variant of variants) {
      for (const target of ['last', 'first'] as const) {
        const r = await attempt(`connections ${variant.name}, ${services} services, target ${target}, run ${run}`, variant.name, () =>
          connRate(variant, services, target, plan.connSeconds * 1000),
        );
        if (r) results.conn.push({ variant: variant.name, services, target, run, ...r });
      }
      const cp = await attempt(`control plane ${variant.name}, ${services} services × 10 endpoints, run ${run}`, variant.name, () => controlPlane(variant, services));
      if (cp) results.controlPlane.push({ variant: variant.name, services, run, ...cp });
    }
  }
  for (const variant of [DIRECT, ...variants]) {
    const t = await attempt(`iperf3 ${variant.name}, run ${run}`, variant.name, () => throughput(variant, plan.throughputSeconds));
    if (t) results.throughput.push({ variant: variant.name, run, ...t });
  }
}

const files = await writeReport(values.out, plan, variants, results, {
  command: `kube-lb bench${values.quick ? ' --quick' : ''}${values.variants ? ` --variants ${values.variants}` : ''}`,
  startedAt: new Date(started),
  durationS: (Date.now() - started) / 1000,
});
progress(`done in ${((Date.now() - started) / 1000).toFixed(0)} s: ${files.join(', ')}`);
