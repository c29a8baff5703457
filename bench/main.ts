// `make bench` / `kube-lb bench`: every backend side by side, on this
// kernel, in one run; writes bench/results/<date>-<kernel>.{md,json} and
// SVG charts.
//   node dist/bench/main.js [--quick] [--vm] [--variants ebpf,iptables-nft,...] [--services N,...] [--runs N] [--only pps,...] [--out DIR] [--help]
// --variants may name ebpf-socket-lb, not run by default: ebpf with the
// client pod translated at connect (--bpf-socket-lb=all).
// --vm: running in the test VM (make bench-vm), where ipvs joins the others
// and the report says to compare ratios only. --services replaces the mode's
// service counts, e.g. for a 50,000-service run of the backends that load it;
// --runs the mode's number of interleaved runs.
// --only runs only the named measurements (SECTIONS in report.ts); the
// report says which were not run.
// --apiserver runs only the API-server mode (bench/apiserver-scale.ts): kube-lb
// on ebpf watching the test API server at --services (by default 1,000 and
// 10,000); its report goes to --out (by default bench/results/apiserver).
import os from 'node:os';
import { parseArgs } from 'node:util';
import { parseArgsUsageError } from '../src/flags.js';
import { measurePerPacket } from './per-packet.js';
import { connRate, controlPlane, DIRECT, packetRate, throughput } from './measure.js';
import { type BenchPlan, HOST_VARIANTS, IPVS_VARIANT, type KernelGaps, type Results, type Section, SECTIONS, SOCKET_LB_VARIANT, XDP_VARIANT, packetRateVariants, writeReport } from './report.js';
import { type Entry, FROM, noNodePortReason, noNodeReason, type Variant } from './bench-node.js';
import { type ApiServerScale, apiServerScale, writeApiServerReport } from './apiserver-scale.js';
import { packetRateRefusal } from './flood-program.js';
import { native } from '../src/native/index.js';
import { ebpfKernelRefusal } from '../src/backends/ebpf/netns.js';
import { xdpRefusal } from '../src/backends/ebpf/kernel-features.js';

const USAGE = `usage: kube-lb bench [--apiserver] [--quick] [--vm] [--variants ebpf,iptables-nft,...] [--services N,...] [--runs N] [--only ${SECTIONS.join(',')}] [--out DIR]`;

/** A usage error: one sentence on stderr and exit code 2, as kube-lb says its own. */
function usageError(message: string): never {
  process.stderr.write(`kube-lb bench: ${message}\n`);
  process.exit(2);
}

const OPTIONS = {
  apiserver: { type: 'boolean', default: false },
  quick: { type: 'boolean', default: false },
  vm: { type: 'boolean', default: false },
  variants: { type: 'string' },
  services: { type: 'string' },
  runs: { type: 'string' },
  only: { type: 'string' },
  out: { type: 'string' },
  help: { type: 'boolean', default: false },
} as const;

const { values } = (() => {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (err) {
    return usageError(parseArgsUsageError(err as NodeJS.ErrnoException, OPTIONS).message);
  }
})();
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

const byDefault = values.vm ? [...HOST_VARIANTS, IPVS_VARIANT] : HOST_VARIANTS;
const known = [...byDefault, SOCKET_LB_VARIANT];
const requested: Variant[] = values.variants
  ? values.variants.split(',').map((name) => {
      const v = known.find((h) => h.name === name);
      if (!v) usageError(`--variants: unknown variant ${name}; known: ${known.map((h) => h.name).join(', ')}`);
      return v;
    })
  : byDefault;

// What this kernel cannot run, with the reasons kube-lb itself refuses
// with: those variants are left out, and the report says why.
const lib = native();
const ebpfRefusal = ebpfKernelRefusal(lib);
const packetsRefusal = values.apiserver ? undefined : packetRateRefusal();
const kernelRefusal = (v: Variant): string | undefined => (v.backend !== 'ebpf' ? undefined : (ebpfRefusal ?? (v === XDP_VARIANT ? xdpRefusal(lib) : undefined)));
const gaps: KernelGaps = {
  notRun: Object.fromEntries(
    [...requested, ...(requested.some((v) => v.name === 'ebpf') ? [XDP_VARIANT] : [])].flatMap((v) => {
      const why = kernelRefusal(v);
      return why === undefined ? [] : [[v.name, why]];
    }),
  ),
  notMeasured: {
    // The per-packet cost is the ebpf programs'.
    ...(ebpfRefusal !== undefined && { 'per-packet': ebpfRefusal }),
    ...(packetsRefusal !== undefined && { pps: packetsRefusal }),
  },
};
const variants = requested.filter((v) => gaps.notRun[v.name] === undefined);

const modePlan: BenchPlan = values.quick
  ? { mode: 'quick', vm: values.vm, sections: SECTIONS, runs: 1, serviceCounts: [10, 1000], perPacketCounts: [1, 100, 1000, 10_000, 100_000], perPacketFamilies: ['IPv4', 'IPv6'], perPacketSamples: 20_000, connSeconds: 2, throughputSeconds: 2, packetSeconds: 3, connEndpointsEach: {}, controlPlaneSkips: [] }
  : {
      mode: 'full',
      vm: values.vm,
      sections: SECTIONS,
      runs: 3,
      serviceCounts: [10, 1000, 10_000],
      perPacketCounts: [1, 100, 1000, 10_000, 100_000],
      perPacketFamilies: ['IPv4', 'IPv6'],
      perPacketSamples: 20_000,
      connSeconds: 4,
      throughputSeconds: 4,
      packetSeconds: 5,
      connEndpointsEach: { 10_000: 1 },
      controlPlaneSkips: [
        {
          services: 10_000,
          except: 'ebpf',
          reason:
            'In a trial of this mode, iptables-nft had not finished loading 10,000 services × 10 endpoints (110,000 chains) after 5 minutes, and the full mode has to finish in well under an hour; at 1,000 services every backend is measured.',
        },
      ],
    };

/** A positive whole number given to a flag, or a usage error naming it. */
function positiveCount(flag: string, n: string): number {
  const count = Number(n);
  if (!Number.isInteger(count) || count < 1) usageError(`--${flag}: ${n} is not a positive whole number`);
  return count;
}

const plan: BenchPlan = {
  ...modePlan,
  ...(values.runs && { runs: positiveCount('runs', values.runs) }),
  ...(values.services && {
    serviceCounts: values.services.split(',').map((n) => positiveCount('services', n)),
  }),
  ...(values.only && {
    sections: values.only.split(',').map((name) => {
      if (!SECTIONS.includes(name as Section)) usageError(`--only: unknown measurement ${name}; known: ${SECTIONS.join(', ')}`);
      return name as Section;
    }),
  }),
};
const runs = (section: Section): boolean => plan.sections.includes(section) && gaps.notMeasured[section] === undefined;

// Direct from outside is the NodePorts' baseline, direct from the node the
// host process's: each measured only when some backend's connections are.
const nodePortVariants = variants.filter((v) => noNodePortReason(v) === undefined);
const nodeVariants = variants.filter((v) => noNodeReason(v) === undefined);
const ppsVariants = packetRateVariants(nodePortVariants).filter((v) => gaps.notRun[v.name] === undefined);
const directEntries: Entry[] = [
  'cluster-ip',
  ...(nodePortVariants.length > 0 ? ['nodeport' as const] : []),
  ...(nodeVariants.length > 0 ? ['node' as const] : []),
];
/**
 * A variant's connection measurements: target last, the case the figures
 * compare, and target first from a pod, and from the node under ebpf,
 * whose target-first runs read the programs' run time. Fewer keep quick
 * mode short.
 */
const connMeasurements = (variant: Variant): { entry: Entry; target: 'first' | 'last' }[] => [
  { entry: 'cluster-ip', target: 'last' },
  { entry: 'cluster-ip', target: 'first' },
  ...(nodePortVariants.includes(variant) ? [{ entry: 'nodeport', target: 'last' } as const] : []),
  ...(nodeVariants.includes(variant) ? [{ entry: 'node', target: 'last' } as const] : []),
  ...(nodeVariants.includes(variant) && variant.backend === 'ebpf' ? [{ entry: 'node', target: 'first' } as const] : []),
];
const started = Date.now();
const loadAtStart = os.loadavg();
const results: Results = { perPacket: [], conn: [], controlPlane: [], throughput: [], packetRate: [], errors: [] };
const controlPlaneRuns = plan.serviceCounts.reduce(
  (n, services) => n + variants.filter((v) => !plan.controlPlaneSkips.some((s) => s.services === services && s.except !== v.name)).length,
  0,
);
const stepsPerRun =
  (runs('conn') ? plan.serviceCounts.length * (directEntries.length + variants.reduce((n, v) => n + connMeasurements(v).length, 0)) : 0) +
  (runs('control-plane') ? controlPlaneRuns : 0) +
  (runs('throughput') ? variants.length + 1 : 0) +
  (runs('pps') ? ppsVariants.length : 0);
const steps = plan.runs * stepsPerRun;
let step = 0;
const progress = (msg: string): void => {
  const elapsed = ((Date.now() - started) / 1000).toFixed(0).padStart(5);
  process.stderr.write(`[${elapsed} s] ${msg}\n`);
};

if (values.apiserver) {
  const ebpf = known.find((v) => v.name === 'ebpf')!;
  const counts = values.services ? plan.serviceCounts : [1000, 10_000];
  const measured = new Map<number, ApiServerScale>();
  const failures: { services: number; reason: string }[] = [];
  let files: string[] = [];
  // The report is written after each count: a large one takes long, and may fail.
  for (const services of counts) {
    progress(`API server, ${services} services × 10 endpoints`);
    try {
      measured.set(services, await apiServerScale(ebpf, services, progress));
    } catch (err) {
      progress(`  failed: ${(err as Error).message}`);
      failures.push({ services, reason: (err as Error).message });
    }
    files = writeApiServerReport(values.out ?? 'bench/results/apiserver', measured, failures, {
      command: `kube-lb bench --apiserver${values.services ? ` --services ${values.services}` : ''}${values.out ? ` --out ${values.out}` : ''}`,
      startedAt: new Date(started),
      loadAtStart,
      durationS: (Date.now() - started) / 1000,
    });
  }
  progress(`done in ${((Date.now() - started) / 1000).toFixed(0)} s: ${files.join(', ')}`);
  process.exit(0);
}

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

progress(`kube-lb bench, ${plan.mode} mode (${plan.sections.filter(runs).join(', ')}): ${variants.map((v) => v.name).join(', ')} and direct`);
for (const [name, why] of [...Object.entries(gaps.notRun), ...Object.entries(gaps.notMeasured)]) if (why !== undefined) progress(`not run on this kernel: ${name}: ${why}`);
if (runs('per-packet')) results.perPacket = measurePerPacket(plan.perPacketFamilies, plan.perPacketCounts, plan.perPacketSamples, progress);

for (let run = 1; run <= plan.runs; run++) {
  for (const services of runs('conn') || runs('control-plane') ? plan.serviceCounts : []) {
    // Interleaved: every backend (and direct) once per run and N, each on a fresh node.
    for (const entry of runs('conn') ? directEntries : []) {
      const direct = await attempt(`connections direct${FROM[entry]}, run ${run}`, DIRECT.name, () => connRate(DIRECT, entry, 0, 0, 'last', plan.connSeconds * 1000));
      if (direct) results.conn.push({ variant: DIRECT.name, entry, services, target: 'last', run, ...direct });
    }
    for (const variant of variants) {
      for (const { entry, target } of runs('conn') ? connMeasurements(variant) : []) {
        const r = await attempt(`connections ${variant.name}${FROM[entry]}, ${services} services, target ${target}, run ${run}`, variant.name, () =>
          connRate(variant, entry, services, plan.connEndpointsEach[services] ?? 10, target, plan.connSeconds * 1000),
        );
        if (r) results.conn.push({ variant: variant.name, entry, services, target, run, ...r });
      }
      if (!runs('control-plane') || plan.controlPlaneSkips.some((s) => s.services === services && s.except !== variant.name)) continue;
      const cp = await attempt(`control plane ${variant.name}, ${services} services × 10 endpoints, run ${run}`, variant.name, () => controlPlane(variant, services));
      if (cp) results.controlPlane.push({ variant: variant.name, services, run, ...cp });
    }
  }
  for (const variant of runs('throughput') ? [DIRECT, ...variants] : []) {
    const t = await attempt(`iperf3 ${variant.name}, run ${run}`, variant.name, () => throughput(variant, plan.throughputSeconds));
    if (t) results.throughput.push({ variant: variant.name, run, ...t });
  }
  // Only the backends that serve NodePorts: the packets go to one.
  for (const variant of runs('pps') ? ppsVariants : []) {
    const p = await attempt(`packet rate ${variant.name}, run ${run}`, variant.name, () => packetRate(variant, plan.packetSeconds));
    if (p) results.packetRate.push({ variant: variant.name, run, ...p });
  }
}

// The flags besides --quick and --vm, as the report quotes the command: make bench-vm takes them in BENCH_ARGS.
const options = `${values.variants ? ` --variants ${values.variants}` : ''}${values.services ? ` --services ${values.services}` : ''}${values.runs ? ` --runs ${values.runs}` : ''}${values.only ? ` --only ${values.only}` : ''}${values.out ? ` --out ${values.out}` : ''}`;
const quick = values.quick ? ' --quick' : '';
const files = await writeReport(values.out ?? 'bench/results', plan, variants, gaps, results, {
  command: values.vm
    ? `KUBE_LB_VM_KERNEL=${process.env.KUBE_LB_VM_KERNEL ?? '6.1'} make bench-vm${options ? ` BENCH_ARGS='${options.trim()}'` : ''} (test/vm/run bin/kube-lb bench --vm${quick}${options})`
    : `kube-lb bench${quick}${options}`,
  startedAt: new Date(started),
  loadAtStart,
  durationS: (Date.now() - started) / 1000,
});
progress(`done in ${((Date.now() - started) / 1000).toFixed(0)} s: ${files.join(', ')}`);
