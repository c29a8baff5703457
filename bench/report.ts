// The benchmark report: JSON with every figure, Markdown for people, SVG charts.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Entry, FROM, noNodePortReason, noNodeReason, type Variant } from './bench-node.js';
import { CONNECTION_LIMIT_MS, type ConnRate, DIRECT, type ControlPlane, type PacketRate, type Throughput } from './measure.js';
import type { PerPacketResult } from './per-packet.js';
import { familiesOf, perPacketChart, perPacketFigures, perPacketTable } from './per-packet-report.js';
import type { IPFamily } from '../src/model/contract.js';
import { barChart } from './svg.js';
import { EXTERNAL_CLIENT_IPS } from '../test/lib/sandbox.js';

/** The backends as the host kernel runs them. */
export const HOST_VARIANTS: Variant[] = [
  { name: 'ebpf', backend: 'ebpf', args: [] },
  { name: 'iptables-nft', backend: 'iptables', args: ['--iptables-mode=nft'] },
  { name: 'iptables-legacy', backend: 'iptables', args: ['--iptables-mode=legacy'] },
  { name: 'nftables', backend: 'nftables', args: [] },
];

/** ebpf with the client pod's connections translated at connect (--bpf-socket-lb=all); chosen with --variants. */
export const SOCKET_LB_VARIANT: Variant = { name: 'ebpf-socket-lb', backend: 'ebpf', args: [], podSockets: true };

/**
 * ebpf with XDP in the driver on node-a's uplink (lb_world_xdp). XDP
 * changes only the path from outside to endpoints on other nodes, so it is
 * measured in the packet rate only, whenever ebpf is.
 */
export const XDP_VARIANT: Variant = { name: 'ebpf-xdp', backend: 'ebpf', args: ['--bpf-xdp=native'] };

/** How the packet-rate table names a variant: ebpf's NodePorts are served at TC, or with XDP. */
const packetRateLabel = (name: string): string => (name === 'ebpf' ? 'ebpf (TC)' : name === XDP_VARIANT.name ? 'ebpf (XDP)' : name);

/** The variants the packet rate measures: the routed reference, the NodePort backends, and XDP beside ebpf. */
export function packetRateVariants(nodePortVariants: Variant[]): Variant[] {
  return [DIRECT, ...nodePortVariants, ...(nodePortVariants.some((v) => v.name === 'ebpf') ? [XDP_VARIANT] : [])];
}

/** The measurements, as --only names them. */
export const SECTIONS = ['per-packet', 'conn', 'control-plane', 'throughput', 'pps'] as const;
export type Section = (typeof SECTIONS)[number];

/** ipvs needs a kernel with IPVS: the test VM's (make bench-vm). */
export const IPVS_VARIANT: Variant = { name: 'ipvs', backend: 'ipvs', args: [] };

export interface BenchPlan {
  mode: 'quick' | 'full';
  /** Inside the test VM under software emulation: only ratios between backends mean anything. */
  vm: boolean;
  /** The measurements this run makes (all unless --only). */
  sections: readonly Section[];
  runs: number;
  serviceCounts: number[];
  perPacketCounts: number[];
  /** The families the per-packet cost is measured for, each at every count. */
  perPacketFamilies: IPFamily[];
  perPacketSamples: number;
  connSeconds: number;
  throughputSeconds: number;
  /** How long each packet-rate measurement counts, after its warm-up. */
  packetSeconds: number;
  /** Endpoints of each non-target service in the connection runs, by N (10 unless listed). */
  connEndpointsEach: Record<number, number>;
  /** Control-plane loads not run, with the reason, for the report. */
  controlPlaneSkips: { services: number; except: string; reason: string }[];
}

/** What this kernel cannot run, each with why (kube-lb's own refusal where it refuses). */
export interface KernelGaps {
  /** Variants left out, by name. */
  notRun: Record<string, string>;
  /** Measurements not made. */
  notMeasured: Partial<Record<Section, string>>;
}

export interface Results {
  perPacket: PerPacketResult[];
  conn: (ConnRate & { variant: string; entry: Entry; services: number; target: 'first' | 'last'; run: number })[];
  controlPlane: (ControlPlane & { variant: string; services: number; run: number })[];
  throughput: (Throughput & { variant: string; run: number })[];
  packetRate: (PacketRate & { variant: string; run: number })[];
  errors: { what: string; variant: string; reason: string }[];
}

/** Per connection, medians of a variant's target-first runs: its TC programs' and socket programs' in-kernel run time, and the machine's busy CPU. */
interface ProgramShare {
  programNs: number;
  socketProgramNs: number;
  cpuNs: number;
}

/** A variant's programs' share of a connection's CPU, from its target-first runs from the entry's place, or null. */
function programShare(results: Results, variant: string, entry: Entry): ProgramShare | null {
  const runs = results.conn.filter((c) => c.variant === variant && c.entry === entry && c.programNsPerConn !== undefined && c.socketProgramNsPerConn !== undefined);
  const programNs = summarize(runs.map((c) => c.programNsPerConn!));
  const socketProgramNs = summarize(runs.map((c) => c.socketProgramNsPerConn!));
  const cpuNs = summarize(runs.map((c) => c.cpuNsPerConn));
  return programNs && socketProgramNs && cpuNs ? { programNs: programNs.median, socketProgramNs: socketProgramNs.median, cpuNs: cpuNs.median } : null;
}

/** `label`: the variant and where its connections start, as FROM names it. */
function programShareText(label: string, share: ProgramShare): string {
  const µs = (ns: number): string => (ns / 1000).toFixed(1);
  return `${label}: the TC programs ran ${µs(share.programNs)} µs and its socket programs (connect4 and the others at the cgroup) ${µs(share.socketProgramNs)} µs per connection in the target-first runs (their in-kernel run time, kernel.bpf_stats_enabled), of ${(share.cpuNs / 1000).toFixed(0)} µs of busy CPU per connection on the whole machine: ${((100 * (share.programNs + share.socketProgramNs)) / share.cpuNs).toFixed(1)}%.`;
}

/**
 * Per backend and entry: the connections lost, with their reasons, and those
 * that took over 1 s, with the SYNs the pods' TIME_WAIT refused beside them.
 */
function connectionTrouble(results: Results): string {
  const byVariant = new Map<string, (typeof results.conn)[number][]>();
  for (const c of results.conn) {
    const key = `${c.variant}${FROM[c.entry]}`;
    byVariant.set(key, [...(byVariant.get(key) ?? []), c]);
  }
  const perMeasurement = (counts: number[]): string => `${Math.min(...counts)}–${Math.max(...counts)} per measurement`;
  const lost = [...byVariant].map(([variant, runs]) => {
    const counts = runs.map((c) => c.failures);
    if (Math.max(...counts) === 0) return `${variant} none`;
    const reasons: Record<string, number> = {};
    for (const c of runs) for (const [reason, n] of Object.entries(c.failureReasons)) reasons[reason] = (reasons[reason] ?? 0) + n;
    const why = Object.entries(reasons).map(([reason, n]) => `${reason} ${n}`).join(', ');
    return `${variant} ${perMeasurement(counts)} (in all: ${why})`;
  });
  const slow = [...byVariant].map(([variant, runs]) => {
    const counts = runs.map((c) => c.overOneSecond);
    const paws = runs.reduce((sum, c) => sum + c.pawsRejectedSyns, 0);
    if (Math.max(...counts) === 0) return `${variant} none${paws > 0 ? ` (PAWS-refused SYNs: ${paws})` : ''}`;
    return `${variant} ${perMeasurement(counts)} (PAWS-refused SYNs in all: ${paws})`;
  });
  return `Lost connections (no answer within ${CONNECTION_LIMIT_MS / 1000} s): ${lost.join('; ')}. Connections that took over 1 s, with the SYNs the server pods' TIME_WAIT refused for an old timestamp (PAWS): ${slow.join('; ')}.`;
}

interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number;
}

function summarize(values: number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted.at(-1)!, runs: sorted.length };
}

const loadText = (load: number[]): string => load.map((l) => l.toFixed(1)).join(', ');

function command(cmd: string, ...args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0]!;
  } catch {
    return 'unavailable';
  }
}

function environment(): Record<string, string> {
  return {
    kernel: os.release(),
    cpu: `${os.cpus()[0]?.model ?? 'unknown'} × ${os.cpus().length}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    node: process.version,
    kubeLb: command('git', 'describe', '--always', '--dirty'),
    iptables: command('iptables', '-V'),
    nft: command('nft', '--version'),
    clang: command('clang', '--version'),
    libbpf: command('dpkg-query', '-W', '-f=${Version}', 'libbpf1'),
  };
}

type Figures = Record<string, Summary | null>;

/** The per-backend, per-N view the issue asks for: medians with their spread. */
function byBackend(plan: BenchPlan, variants: Variant[], r: Results): Record<string, Record<number, Figures>> {
  const out: Record<string, Record<number, Figures>> = {};
  for (const v of variants) {
    out[v.name] = {};
    for (const n of plan.serviceCounts) {
      const conn = r.conn.filter((c) => c.variant === v.name && c.entry === 'cluster-ip' && c.services === n && c.target === 'last');
      const first = r.conn.filter((c) => c.variant === v.name && c.entry === 'cluster-ip' && c.services === n && c.target === 'first');
      const nodePort = r.conn.filter((c) => c.variant === v.name && c.entry === 'nodeport' && c.services === n);
      const fromNode = r.conn.filter((c) => c.variant === v.name && c.entry === 'node' && c.services === n && c.target === 'last');
      const cp = r.controlPlane.filter((c) => c.variant === v.name && c.services === n);
      out[v.name]![n] = {
        connPerSec: summarize(conn.map((c) => c.connPerSec)),
        p50Ms: summarize(conn.map((c) => c.p50Ms)),
        p99Ms: summarize(conn.map((c) => c.p99Ms)),
        connPerSecTargetFirst: summarize(first.map((c) => c.connPerSec)),
        nodePortConnPerSec: summarize(nodePort.map((c) => c.connPerSec)),
        nodePortP50Ms: summarize(nodePort.map((c) => c.p50Ms)),
        nodePortP99Ms: summarize(nodePort.map((c) => c.p99Ms)),
        nodePortCpuNsPerConn: summarize(nodePort.map((c) => c.cpuNsPerConn)),
        cpuNsPerConn: summarize(conn.map((c) => c.cpuNsPerConn)),
        nodeConnPerSec: summarize(fromNode.map((c) => c.connPerSec)),
        nodeP50Ms: summarize(fromNode.map((c) => c.p50Ms)),
        nodeP99Ms: summarize(fromNode.map((c) => c.p99Ms)),
        nodeCpuNsPerConn: summarize(fromNode.map((c) => c.cpuNsPerConn)),
        fullSyncMs: summarize(cp.map((c) => c.fullSyncMs)),
        fullSyncKubeLbMs: summarize(cp.map((c) => c.fullSyncKubeLbMs)),
        endpointChangeMs: summarize(cp.map((c) => c.endpointChangeMs)),
        endpointChangeKubeLbMs: summarize(cp.map((c) => c.endpointChangeKubeLbMs)),
        rssBytes: summarize(cp.map((c) => c.rssBytes)),
        kernelMemlockBytes: summarize(cp.flatMap((c) => (c.kernelState.memlockBytes === undefined ? [] : [c.kernelState.memlockBytes]))),
        kernelRules: summarize(cp.flatMap((c) => (c.kernelState.rules === undefined ? [] : [c.kernelState.rules]))),
      };
    }
  }
  return out;
}

const fmt = (s: Summary | null | undefined, digits = 0, scale = 1): string =>
  !s ? 'n/a' : s.runs > 1 ? `${(s.median / scale).toFixed(digits)} (${(s.min / scale).toFixed(digits)}–${(s.max / scale).toFixed(digits)})` : (s.median / scale).toFixed(digits);

export async function writeReport(
  outDir: string,
  plan: BenchPlan,
  variants: Variant[],
  gaps: KernelGaps,
  r: Results,
  run: { command: string; startedAt: Date; durationS: number; loadAtStart: number[] },
): Promise<string[]> {
  const env = environment();
  const base = `${run.startedAt.toISOString().slice(0, 10)}-${env.kernel}`;
  fs.mkdirSync(outDir, { recursive: true });
  const backends = byBackend(plan, variants, r);
  const directConn = (entry: Entry): Record<'connPerSec' | 'p50Ms' | 'p99Ms' | 'cpuNsPerConn', Summary | null> => {
    const runs = r.conn.filter((c) => c.variant === 'direct' && c.entry === entry);
    return {
      connPerSec: summarize(runs.map((c) => c.connPerSec)),
      p50Ms: summarize(runs.map((c) => c.p50Ms)),
      p99Ms: summarize(runs.map((c) => c.p99Ms)),
      cpuNsPerConn: summarize(runs.map((c) => c.cpuNsPerConn)),
    };
  };
  const direct = { ...directConn('cluster-ip'), gbitPerSec: summarize(r.throughput.filter((t) => t.variant === 'direct').map((t) => t.gbitPerSec)) };
  // The NodePorts' baseline: the same external client to the pods' own addresses, routed through node-a.
  const directFromOutside = directConn('nodeport');
  // A host process's baseline: the same client in node-a's namespace, to the pods' own addresses.
  const directFromNode = directConn('node');
  const nodePortVariants = variants.filter((v) => noNodePortReason(v) === undefined);
  const nodeVariants = variants.filter((v) => noNodeReason(v) === undefined);
  const perPacketNs = perPacketFigures(r.perPacket);
  const throughputByVariant = Object.fromEntries(variants.map((v) => [v.name, summarize(r.throughput.filter((t) => t.variant === v.name).map((t) => t.gbitPerSec))]));

  // Direct is the routed reference: no service, node-a only forwards.
  const packetRate = Object.fromEntries(
    packetRateVariants(nodePortVariants).filter((v) => gaps.notRun[v.name] === undefined).map(({ name }) => {
      const runs = r.packetRate.filter((p) => p.variant === name);
      const figures = {
        deliveredPerSec: summarize(runs.map((p) => p.deliveredPerSec)),
        sentPerSec: summarize(runs.map((p) => p.sentPerSec)),
        softirqNsPerPacket: summarize(runs.map((p) => p.softirqNsPerPacket)),
        // What the forwarding would reach with a CPU of its own: the shared machine's other work takes CPU from the rate, not from this.
        perCpuSecond: summarize(runs.map((p) => 1e9 / p.softirqNsPerPacket)),
      };
      return [name, figures];
    }),
  );
  const packetRateNotMeasured: Record<string, string> =
    gaps.notRun[XDP_VARIANT.name] !== undefined
      ? { [XDP_VARIANT.name]: gaps.notRun[XDP_VARIANT.name] }
      : nodePortVariants.some((v) => v.name === 'ebpf')
        ? {}
        : { [XDP_VARIANT.name]: 'measured beside ebpf, which this run left out (--variants)' };

  const shares = variants.flatMap((v) =>
    (['cluster-ip', 'node'] as const).flatMap((entry) => {
      const share = programShare(r, v.name, entry);
      return share ? [{ variant: v.name, entry, share }] : [];
    }),
  );
  const share = programShare(r, 'ebpf', 'cluster-ip');
  const lost = (variant: string, entry: Entry): number => r.conn.filter((c) => c.variant === variant && c.entry === entry).reduce((n, c) => n + c.failures, 0);
  const targets = evaluateTargets(plan, backends, direct.connPerSec, directFromOutside.connPerSec, directFromNode.connPerSec, r.perPacket, share, packetRate, lost);
  const loadAtEnd = os.loadavg();
  const json = { command: run.command, startedAt: run.startedAt.toISOString(), durationS: run.durationS, loadAverage: { start: run.loadAtStart, end: loadAtEnd }, plan, environment: env, method: METHOD, notRunOnThisKernel: gaps, perPacketNs, backends, direct, directFromOutside, directFromNode, programShares: shares, throughput: throughputByVariant, packetRate, packetRateNotMeasured, targets, raw: r };
  const files: string[] = [];
  const write = (name: string, text: string): void => {
    fs.writeFileSync(path.join(outDir, name), text);
    files.push(path.join(outDir, name));
  };
  write(`${base}.json`, JSON.stringify(json, null, 2) + '\n');

  const charts = {
    conn: barChart({
      title: 'New TCP connections per second through a ClusterIP (target installed last)',
      groups: plan.serviceCounts.map((n) => `${n.toLocaleString('en-US')} services`),
      series: [
        { name: 'direct (no proxy)', values: plan.serviceCounts.map(() => direct.connPerSec?.median ?? null) },
        ...variants.map((v) => ({ name: v.name, values: plan.serviceCounts.map((n) => backends[v.name]![n]!.connPerSec?.median ?? null) })),
      ],
      unit: 'connections/s',
    }),
    sync: barChart({
      title: 'Full load of N services × 10 endpoints: change to traffic',
      groups: plan.serviceCounts.map((n) => `${n.toLocaleString('en-US')} services`),
      series: variants.map((v) => ({ name: v.name, values: plan.serviceCounts.map((n) => backends[v.name]![n]!.fullSyncMs?.median ?? null) })),
      unit: 'ms',
    }),
    perPacket: perPacketChart(r.perPacket),
  };
  const chartSections: Record<keyof typeof charts, Section> = { conn: 'conn', sync: 'control-plane', perPacket: 'per-packet' };
  for (const [name, svg] of Object.entries(charts)) {
    const of = chartSections[name as keyof typeof charts];
    if (plan.sections.includes(of) && gaps.notMeasured[of] === undefined) write(`${base}-${name}.svg`, svg);
  }
  /** A section of the report, or its title and why it is empty. */
  const section = (name: Section, title: string, body: () => string[]): string[] => {
    const gap = gaps.notMeasured[name];
    if (!plan.sections.includes(name)) return [title, '', `Not run: this run made only ${plan.sections.join(', ')} (--only).`, ''];
    return [title, ...(gap === undefined ? body() : ['', `Not measured on this kernel: ${gap}.`, ''])];
  };
  const routed = packetRate[DIRECT.name]!.perCpuSecond;
  /** The table of an entry other than the pod's: each variant's rate against its direct baseline, latency and CPU, by N. */
  const entryTable = (entryVariants: Variant[], baselineName: string, baseline: Summary | null, [conn, p50, p99, cpu]: [string, string, string, string]): string[] => [
    `| backend | services | conn/s | vs ${baselineName} | p50 ms | p99 ms | busy CPU µs/conn |`,
    '|---|---|---|---|---|---|---|',
    ...entryVariants.flatMap((v) =>
      plan.serviceCounts.map((n) => {
        const f = backends[v.name]![n]!;
        const ratio = f[conn] && baseline ? `${((100 * f[conn].median) / baseline.median).toFixed(0)}%` : 'n/a';
        return `| ${v.name} | ${n.toLocaleString('en-US')} | ${fmt(f[conn])} | ${ratio} | ${fmt(f[p50], 3)} | ${fmt(f[p99], 2)} | ${fmt(f[cpu], 0, 1000)} |`;
      }),
    ),
  ];
  const notMeasuredFor = (reason: (v: Variant) => string | undefined): string[] =>
    variants.flatMap((v) => {
      const why = reason(v);
      return why === undefined ? [] : ['', `Not measured for ${v.name}: ${why}.`];
    });

  const md: string[] = [
    `# kube-lb benchmark, ${run.startedAt.toISOString().slice(0, 10)}, kernel ${env.kernel}${plan.vm ? ', in the test VM' : ''}`,
    '',
    ...(plan.vm
      ? ['**This run is inside the test VM, under software emulation (TCG). Its absolute figures mean nothing; compare backends by their ratios to direct, within this report only.**', '']
      : []),
    `Command: \`${run.command}\` (${plan.mode} mode, ${plan.runs} run${plan.runs > 1 ? 's' : ''}, ${run.durationS.toFixed(0)} s).`,
    `Machine: ${env.cpu}, ${env.memory}; Node ${env.node}; kube-lb ${env.kubeLb}; ${env.iptables}; ${env.nft}; libbpf ${env.libbpf}.`,
    // Other work on a shared machine moves every figure: the report says how busy it was.
    `Load average (1, 5, 15 min): ${loadText(run.loadAtStart)} at the start, ${loadText(loadAtEnd)} at the end, on ${os.cpus().length} CPUs.`,
    '',
    // One paragraph per reason: ebpf's refusal leaves out every ebpf variant.
    ...[...new Set(Object.values(gaps.notRun))].flatMap((why) => {
      const names = Object.keys(gaps.notRun).filter((name) => gaps.notRun[name] === why);
      return [`**Not run on this kernel: ${names.join(', ')}.** ${why[0]!.toUpperCase()}${why.slice(1)}.`, ''];
    }),
    'Figures are medians; with several runs the spread (min–max) follows in parentheses.',
    '',
    '## Targets for the ebpf backend',
    '',
    '| target | bar | measured | met |',
    '|---|---|---|---|',
    ...targets.map((t) => `| ${t.name} | ${t.bar} | ${t.measured} | ${t.met === null ? 'not measured' : t.met ? 'yes' : `no: ${t.note}`} |`),
    '',
    ...section('conn', '## Connections through a ClusterIP', () => [
      '',
      `Each connection is new; the server answers with one line and closes. ${connectionTrouble(r)} ${shares.map((s) => `${programShareText(`${s.variant}${FROM[s.entry]}`, s.share)} `).join('')}Direct (no proxy): ${fmt(direct.connPerSec)} connections/s, p50 ${fmt(direct.p50Ms, 3)} ms, p99 ${fmt(direct.p99Ms, 2)} ms, ${fmt(direct.cpuNsPerConn, 0, 1000)} µs of busy CPU per connection. The services other than the target have ${plan.serviceCounts.map((n) => `${plan.connEndpointsEach[n] ?? 10} endpoint(s) each at ${n.toLocaleString('en-US')}`).join(', ')}: what a new connection pays in iptables grows with the number of services, not endpoints.`,
      '',
      'Busy CPU per connection is the whole machine\'s (/proc/stat) over the target-last runs, warm-up included, so other work on the machine is in it: compare it with direct\'s within one report.',
      '',
      '| backend | services | conn/s (target last) | vs direct | conn/s (target first) | p50 ms | p99 ms | busy CPU µs/conn |',
      '|---|---|---|---|---|---|---|---|',
      ...variants.flatMap((v) =>
        plan.serviceCounts.map((n) => {
          const f = backends[v.name]![n]!;
          const ratio = f.connPerSec && direct.connPerSec ? `${((100 * f.connPerSec.median) / direct.connPerSec.median).toFixed(0)}%` : 'n/a';
          return `| ${v.name} | ${n.toLocaleString('en-US')} | ${fmt(f.connPerSec)} | ${ratio} | ${fmt(f.connPerSecTargetFirst)} | ${fmt(f.p50Ms, 3)} | ${fmt(f.p99Ms, 2)} | ${fmt(f.cpuNsPerConn, 0, 1000)} |`;
        }),
      ),
      '',
      `![connections](${base}-conn.svg)`,
      '',
    ]),
    ...section('conn', '## Connections from the node (a host process) through a ClusterIP', () => [
      '',
      ...(nodeVariants.length === 0
        ? ['Not measured: no backend in this run serves the node\'s own connections.']
        : [
            `The same client runs in node-a's own network namespace, not in a pod, and connects to the target's ClusterIP (installed last). ebpf translates the node's sockets at connect (socket LB, its default --bpf-socket-lb=host; with --bpf-socket-lb=off the node reaches no service at all); the netfilter backends translate them in their OUTPUT hooks. Direct from the node (no kube-lb, the same client to the pods' own addresses): ${fmt(directFromNode.connPerSec)} connections/s, p50 ${fmt(directFromNode.p50Ms, 3)} ms, p99 ${fmt(directFromNode.p99Ms, 2)} ms, ${fmt(directFromNode.cpuNsPerConn, 0, 1000)} µs of busy CPU per connection.`,
            '',
            ...entryTable(nodeVariants, 'direct from the node', directFromNode.connPerSec, ['nodeConnPerSec', 'nodeP50Ms', 'nodeP99Ms', 'nodeCpuNsPerConn']),
          ]),
      ...notMeasuredFor(noNodeReason),
      '',
    ]),
    ...section('conn', '## NodePort connections from outside the cluster', () => [
      '',
      ...(nodePortVariants.length === 0
        ? ['Not measured: no backend in this run serves NodePorts.']
        : [
            `The external client opens new connections to the target's NodePort on node-a's address; the target is installed last, and its endpoints are the same 4 pods on node-a. Direct from outside (no kube-lb, the same client to the pods' own addresses through node-a): ${fmt(directFromOutside.connPerSec)} connections/s, p50 ${fmt(directFromOutside.p50Ms, 3)} ms, p99 ${fmt(directFromOutside.p99Ms, 2)} ms, ${fmt(directFromOutside.cpuNsPerConn, 0, 1000)} µs of busy CPU per connection.`,
            '',
            ...entryTable(nodePortVariants, 'direct from outside', directFromOutside.connPerSec, ['nodePortConnPerSec', 'nodePortP50Ms', 'nodePortP99Ms', 'nodePortCpuNsPerConn']),
          ]),
      ...notMeasuredFor(noNodePortReason),
      '',
    ]),
    ...section('control-plane', '## Control plane', () => [
      '',
      'N services with 10 endpoints each are written to the manifests directory of a running kube-lb; the clock runs from the write to the first answer from the last service. Then one endpoint of that service moves to another pod. "kube-lb" columns are kube-lb\'s own durations of the syncs that carried those changes; a periodic full sync that happened meanwhile carried none and is not counted. RSS is kube-lb\'s resident set after both; kernel state is the memory of the BPF maps (memlock) or the rules kube-lb wrote.',
      '',
      '| backend | services | full load ms | kube-lb sync ms | endpoint change ms | kube-lb sync ms | RSS MiB | kernel state |',
      '|---|---|---|---|---|---|---|---|',
      ...variants.flatMap((v) =>
        plan.serviceCounts.map((n) => {
          const f = backends[v.name]![n]!;
          const kernel = f.kernelMemlockBytes ? `${fmt(f.kernelMemlockBytes, 1, 2 ** 20)} MiB memlock` : f.kernelRules ? `${fmt(f.kernelRules)} rules` : 'n/a';
          return `| ${v.name} | ${n.toLocaleString('en-US')} | ${fmt(f.fullSyncMs)} | ${fmt(f.fullSyncKubeLbMs)} | ${fmt(f.endpointChangeMs)} | ${fmt(f.endpointChangeKubeLbMs, 1)} | ${fmt(f.rssBytes, 0, 2 ** 20)} | ${kernel} |`;
        }),
      ),
      '',
      ...plan.controlPlaneSkips.filter((s) => plan.serviceCounts.includes(s.services)).map((s) => `Not run: the ${s.services.toLocaleString('en-US')}-service control-plane load for every backend but ${s.except}. ${s.reason}`),
      '',
      `![full sync](${base}-sync.svg)`,
      '',
    ]),
    ...section('per-packet', '## ebpf per-packet cost', () => [
      '',
      `Measured for ${plan.perPacketFamilies.join(' and ')}, in the same rounds, with the same flows (see Method). The absolute figures move with the machine's other work; the ratio between families at one N, measured side by side, is the figure to compare.`,
      '',
      ...perPacketTable(r.perPacket),
      '',
      `![per packet](${base}-perPacket.svg)`,
      '',
    ]),
    ...section('throughput', '## Bulk throughput (iperf3, one stream)', () => [
      '',
      `| path | Gbit/s |`,
      '|---|---|',
      `| direct | ${fmt(direct.gbitPerSec, 2)} |`,
      ...variants.map((v) => `| ${v.name} | ${fmt(throughputByVariant[v.name], 2)} |`),
      '',
    ]),
    ...section('pps', '## Packets per second to a NodePort from outside the cluster', () => [
      '',
      `The external client's namespace sends UDP frames onto node-a's uplink from the kernel's XDP path (bench/flood.ts), so that they arrive as a NIC's do, before any skb exists, as fast as it can on one CPU, for ${plan.packetSeconds} s after a 1 s warm-up, to the NodePort of a service whose only endpoint is a pod on node-b (externalTrafficPolicy Cluster); the routed reference sends the same packets to the pod's own address, which node-a only routes. Delivered is what reached the pod's interface. The generator and the forwarding of every hop share one CPU (see Method), so the rate is that of the whole path, generator included, on whatever share of that CPU the loaded machine left it. CPU per packet is that CPU's softirq time over the count per packet delivered: the forwarding of node-a, the bridge and node-b into the pod, without the generator's sending. Only node-a's part differs between rows, so the differences between rows are what each datapath costs per packet. Packets per CPU-second (10⁹ / CPU ns per packet) is the rate the forwarding would reach on a CPU of its own, and the figure the targets compare: the machine's other work lowers the rate, less so this. It is no absolute capacity (the other hops are in it, and other work's softirqs on that CPU too); times are sampled at the 10 ms tick; compare rows of one run only.`,
      '',
      '| path | packets/s delivered | packets/s taken in by node-a | CPU ns/packet (softirq) | packets per CPU-second | vs routed |',
      '|---|---|---|---|---|---|',
      ...Object.entries(packetRate).map(([name, f]) => {
        const ratio = f.perCpuSecond && routed ? `${((100 * f.perCpuSecond.median) / routed.median).toFixed(0)}%` : 'n/a';
        const label = name === DIRECT.name ? 'routed, no service (reference)' : packetRateLabel(name);
        return `| ${label} | ${fmt(f.deliveredPerSec)} | ${fmt(f.sentPerSec)} | ${fmt(f.softirqNsPerPacket)} | ${fmt(f.perCpuSecond)} | ${ratio} |`;
      }),
      ...Object.entries(packetRateNotMeasured).map(([name, why]) => `| ${packetRateLabel(name)} | not measured: ${why} | | | | |`),
      '',
    ]),
    '## Method',
    '',
    ...METHOD.map((m) => `- ${m}`),
    '',
    ...(r.errors.length > 0 ? ['## Measurements that failed', '', ...r.errors.map((e) => `- ${e.what}: ${e.reason}`), ''] : []),
  ];
  write(`${base}.md`, md.join('\n'));
  return files;
}

const METHOD = [
  'Every measurement runs on a fresh node built from network namespaces (pods on /32 routes behind veths, rp_filter=1), with kube-lb started as `bin/kube-lb` ships; afterwards `kube-lb cleanup` removes the backend\'s state and the namespaces are deleted. Backends are interleaved: each run measures every backend (and direct) once per N before the next run.',
  `Connection rate: a Node.js client in the client pod opens new TCP connections over 4 concurrent loops for the stated time; after a 3 s warm-up that is not counted (the first seconds on a fresh node ran about 10% slower, direct and ebpf alike). The server answers with one line and closes, as an HTTP/1.0 server does; the client closes after it, and the latency is that of the whole exchange. The target service has 4 endpoints on 4 server pods; the other N−1 services have 10 endpoints each on addresses no pod holds. "Target last" installs the target after all other services (iptables' worst case), "target first" before them. Direct connects to the 4 pods' own addresses. In the ebpf variants' target-first runs kernel.bpf_stats_enabled is on, to read the in-kernel run time of the TC programs and of the socket programs; it adds two clock reads per program run, so the bars use the target-last runs. A connection is lost when nothing answers within ${CONNECTION_LIMIT_MS / 1000} s. Linux resends an unanswered SYN after 1 s and then each second, so the limit falls between the first two resends: with the earlier 1 s limit, a connection whose first SYN was refused and whose resend was answered counted as lost or not by chance. Connections that took over 1 s, which waited for at least one timed resend, are counted apart, and their latencies stay in the percentiles. Why the server closes first: a client that closes first keeps TIME_WAIT, and one client opening thousands of connections a second to a single ClusterIP then spends its time searching for a free source port, which direct traffic spread over 4 addresses does not. In a trial on this machine that cost the ClusterIP about a quarter of its rate under every backend alike (ebpf 72% of direct with the client closing, 95% with the server closing), and the comparison measured the client.`,
  `Connections from the node: the same client and the same measurement, run as a process of node-a's own network namespace (as a host process or a hostNetwork pod runs), to the target's ClusterIP, installed last; direct from the node connects to the 4 pods' own addresses, which node-a routes to their veths. Under ebpf, the socket programs attach to a cgroup of the bench's own (--cgroup-root) rather than the machine's root, where they would run at every connect of the machine; the node's client, and with ${SOCKET_LB_VARIANT.name} (--bpf-socket-lb=all) the client pod's, run in that cgroup. ${SOCKET_LB_VARIANT.name} translates the node's sockets as ebpf does, so its connections from the node are not measured apart.`,
  `NodePort connections from outside: the same client and the same measurement, run by the sandbox's external client, a namespace on the node network outside the cluster, from its outside address (${EXTERNAL_CLIENT_IPS[0]}), to the target's NodePort on node-a's InternalIP (from node-a's Node object in the manifests, as --nodeport-addresses' default picks it). Only the backends whose capability table has "nodeport" are measured, with the target installed last. The target is the one service of type NodePort (externalTrafficPolicy Cluster, so the connections are masqueraded); the other N−1 services are ClusterIP services as above. Its 4 endpoints are on node-a, as in the ClusterIP measurement, so the two compare; endpoints on the other node would add a hop. Direct from outside: the external client routes the cluster CIDR through node-a and connects to the 4 pods' own addresses, with no kube-lb: node-a only routes, with no NAT. Why masqueraded NodePort connections can take over 1 s, under kube-proxy's rules as under kube-lb's: the one external client reuses each source port within seconds. Conntrack then ends the old connection's entry, which still held its masquerade port on node-a, while the pod keeps that connection in TIME_WAIT for 60 s. A later connection can be masqueraded to the same port (MASQUERADE --random-fully picks any free one) and reach the pod with the same four addresses and ports. Its timestamp comes from another connection's clock (Linux offsets timestamps per connection), so about half the time the pod's TIME_WAIT refuses the SYN as old (PAWS) and answers with an ACK. The client resets, which ends the TIME_WAIT, and resends its SYN a few milliseconds later (Linux does so after an unacceptable ACK, once), which shows in the p99. Conntrack masquerades the resend afresh; should it meet another such TIME_WAIT, the next resend comes 1 s later. The report counts the refused SYNs in the pods (TcpExtPAWSTimewait). A client that reuses a source port for the same NodePort less often than every 60 s does not meet this: conntrack then keeps the old entry, and its masquerade port, for 120 s. Direct connections are not masqueraded, so a reused four-tuple meets its own TIME_WAIT, with its own clock.`,
  'Per-packet cost: BPF_PROG_TEST_RUN on lb_from_pod with 2 backends per service. test_run reruns one packet against the same skb, so a program that rewrites the packet would see its own output from the second repeat on (a DNATed packet no longer matches a service: the cheap miss path). Every sample therefore runs a fresh copy once (repeat=1) and reads the kernel\'s own timing of that run; new-flow samples each use a new client address and port (conntrack miss, service lookup, backend pick, conntrack insert), established samples replay the same flows. The kernel\'s timing includes a fixed overhead of its timer, the same for every N. Each family is measured at every N on a datapath of its own, and the rounds (500 samples of each path) go through every N in turn and, at each N, through the families one after the other, so background load falls on them alike. IPv6 measures the same flows as IPv4: each IPv6 address is its IPv4 twin\'s 32 bits under fd00:b::/96 (services, backends, clients and the address of no service alike), with the same ports and the same TCP SYN of 7 bytes of payload, so the frames differ only in their IP header (40 bytes for IPv4\'s 20, and no header checksum).',
  'Control plane: the services are written as JSON files of 500 services each (kind: List) into a running kube-lb\'s manifests directory; a poller in the client pod opens a connection every few hundred microseconds until the expected pod answers.',
  'Throughput: iperf3, one TCP stream, through a ClusterIP with one endpoint, and direct.',
  `Packets per second to a NodePort: a generator in the external client's namespace (bench/flood.ts) writes UDP frames of 60 bytes from ${EXTERNAL_CLIENT_IPS[0]} straight onto node-a's uplink (the bridge port's end of its veth), to node-a's NodePort of a UDP service whose one endpoint is a pod on node-b; nothing listens there, so the pod answers with ICMP port unreachable at the kernel's limited rate. The generator is an XDP program (bench/flood.bpf.c) run by BPF_PROG_TEST_RUN with live frames: it sends each frame from the kernel's XDP path (a redirect), so that node-a's eth0 receives frames, not skbs, as a NIC's driver does. A veth receives such frames only when it runs an XDP program: node-a's eth0 runs one that passes every frame to the stack (test/lib/xdp_pass.bpf.c), as a driver does, except in the XDP row, where kube-lb's lb_world_xdp runs there instead and sends the translated frames back out (XDP_TX) before any skb is made. The gateway's ends of the nodes' veths run the passing program too (see the sandbox), in every row. One generator process, pinned to CPU 0, with no rate limit. The source port cycles over 1,000 values: 1,000 flows, each set up (conntrack, NAT) in the 1 s warm-up, so the count measures established flows. Counted over the stated time: the packets node-a's uplink took in (its eth0's received counter) and those received on the pod's interface. On veths each hop's receive runs in softirq on the sending CPU, so node-a's forwarding, the bridge's and node-b's all run on CPU 0 beside the generator. The rate is that of the whole path on one CPU, generator included; compare rows, not absolute rates. CPU per packet is CPU 0's softirq time (/proc/stat) over the count per packet delivered: all of the forwarding is softirq work, whichever task's time it runs in, and the generator's sending is not. The time is sampled at the 10 ms tick: a few hundred samples over a count of a few seconds. The routed reference sends the same packets to the pod's address, which node-a routes with no service and no NAT. ebpf (XDP) is ebpf with --bpf-xdp=native.`,
  'Absolute figures come from a 2-core virtual machine whose other work was not controlled; compare backends within one report.',
];

interface Target {
  name: string;
  bar: string;
  measured: string;
  met: boolean | null;
  note: string;
}

function evaluateTargets(
  plan: BenchPlan,
  backends: Record<string, Record<number, Figures>>,
  direct: Summary | null,
  directFromOutside: Summary | null,
  directFromNode: Summary | null,
  perPacket: PerPacketResult[],
  share: ProgramShare | null,
  packetRate: Record<string, { perCpuSecond: Summary | null }>,
  lost: (variant: string, entry: Entry) => number,
): Target[] {
  const ebpf = backends.ebpf;
  const targets: Target[] = [];
  for (const family of familiesOf(perPacket)) {
    const one = perPacket.find((p) => p.family === family && p.services === 1);
    const most = perPacket.find((p) => p.family === family && p.services === 100_000);
    if (!one || !most) continue;
    const rNew = most.newFlowNs.median / one.newFlowNs.median;
    const rEst = most.establishedNs.median / one.establishedNs.median;
    const worst = Math.max(rNew, rEst);
    targets.push({
      name: `per-packet cost at 100,000 services vs 1, ${family}`,
      bar: 'within 10%',
      measured: `new flow ${(100 * (rNew - 1)).toFixed(1)}%, established ${(100 * (rEst - 1)).toFixed(1)}%`,
      met: worst <= 1.1,
      note: `${(100 * (worst - 1) - 10).toFixed(1)} points over`,
    });
  }
  /**
   * A variant's rate against its direct baseline at every N: the worst N
   * decides. With `lostConnections`, the bar also asks that none was lost.
   */
  const vsDirect = (name: string, figure: 'connPerSec' | 'nodePortConnPerSec' | 'nodeConnPerSec', baseline: Summary | null, why = '', variant = ebpf, bar = 0.95, lostConnections?: number): void => {
    const barText = `≥ ${100 * bar}%${lostConnections === undefined ? '' : ', no connection lost'}`;
    if (!variant || !baseline) {
      targets.push({ name, bar: barText, measured: 'not measured', met: null, note: '' });
      return;
    }
    const ratios = plan.serviceCounts.map((n) => ({ n, r: (variant[n]?.[figure]?.median ?? NaN) / baseline.median }));
    const worst = ratios.reduce((a, b) => (b.r < a.r ? b : a));
    const lostText = lostConnections === undefined ? '' : `; ${lostConnections} lost`;
    const short = worst.r < bar ? `${(100 * (bar - worst.r)).toFixed(0)} points short at ${worst.n.toLocaleString('en-US')} services${why}` : '';
    targets.push({
      name,
      bar: barText,
      measured: ratios.map(({ n, r }) => `${n.toLocaleString('en-US')}: ${(100 * r).toFixed(0)}%`).join(', ') + lostText,
      met: Number.isNaN(worst.r) ? null : worst.r >= bar && !lostConnections,
      note: [short, lostConnections ? `${lostConnections} connections lost` : ''].filter((t) => t !== '').join('; '),
    });
  };
  vsDirect(
    'connection rate vs direct, every N',
    'connPerSec',
    direct,
    share ? `; the TC programs themselves take ${((100 * share.programNs) / share.cpuNs).toFixed(1)}% of a connection's CPU (see below)` : '',
  );
  vsDirect('NodePort connection rate from outside vs direct from outside, every N', 'nodePortConnPerSec', directFromOutside);
  vsDirect(`connection rate with pods' sockets translated at connect (${SOCKET_LB_VARIANT.name}) vs direct, every N`, 'connPerSec', direct, '', backends[SOCKET_LB_VARIANT.name], 0.99, lost(SOCKET_LB_VARIANT.name, 'cluster-ip'));
  vsDirect("a host process's connection rate with its sockets translated at connect (ebpf, --bpf-socket-lb=host) vs direct from the node, every N", 'nodeConnPerSec', directFromNode, '', ebpf, 0.99, lost('ebpf', 'node'));
  // Packets per second to a NodePort: the XDP variant against iptables-nft
  // and against ebpf at TC, per CPU-second of forwarding, which the shared
  // machine's other work changes less than the rate.
  const xdp = packetRate[XDP_VARIANT.name]?.perCpuSecond?.median;
  for (const [other, bar] of [
    ['iptables-nft', 3],
    ['ebpf', 1.5],
  ] as const) {
    const base = packetRate[other]?.perCpuSecond?.median;
    const measured = xdp !== undefined && base !== undefined;
    targets.push({
      name: `NodePort packets per CPU-second from outside, ebpf (XDP) vs ${packetRateLabel(other)}`,
      bar: `≥ ${bar}×`,
      measured: measured ? `${(xdp / base).toFixed(2)}×` : `not measured: no ${packetRateLabel(xdp === undefined ? XDP_VARIANT.name : other)} figure`,
      met: measured ? xdp / base >= bar : null,
      note: measured ? `${(xdp / base).toFixed(2)}×, short of ${bar}×` : '',
    });
  }
  const nft = backends['iptables-nft']?.[10_000]?.connPerSec?.median;
  const mine = ebpf?.[10_000]?.connPerSec?.median;
  targets.push({
    name: 'connection rate at 10,000 services vs iptables-nft',
    bar: '≥ 1.5×',
    measured: nft && mine ? `${(mine / nft).toFixed(2)}×` : 'not measured',
    met: nft && mine ? mine / nft >= 1.5 : null,
    note: nft && mine ? `${(mine / nft).toFixed(2)}×, short of 1.5×` : '',
  });
  const at10k = ebpf?.[10_000];
  const bar = (name: string, limit: number, s: Summary | null | undefined, unit: string, scale = 1): void => {
    targets.push({
      name,
      bar: `≤ ${limit} ${unit}`,
      measured: s ? `${(s.median / scale).toFixed(1)} ${unit}` : 'not measured',
      met: s ? s.median / scale <= limit : null,
      note: s ? `${((s.median / scale / limit - 1) * 100).toFixed(0)}% over` : '',
    });
  };
  bar('full sync, 10,000 services × 10 endpoints (kube-lb sync)', 1000, at10k?.fullSyncKubeLbMs, 'ms');
  bar('single endpoint change with 10,000 services (kube-lb sync)', 10, at10k?.endpointChangeKubeLbMs, 'ms');
  bar('control-plane RSS with 10,000 services', 150, at10k?.rssBytes, 'MiB', 2 ** 20);
  return targets;
}
