// The per-packet part of the benchmark report: ebpf's cost per packet by
// path, service count and address family, each family beside the first
// measured (IPv6 beside IPv4), as JSON figures, a Markdown table and a chart.
import type { IPFamily } from '../src/model/contract.js';
import type { PerPacketResult } from './per-packet.js';
import type { Spread } from './stats.js';
import { barChart } from './svg.js';

const PATHS = [
  { key: 'newFlowNs', name: 'new flow' },
  { key: 'establishedNs', name: 'established' },
  { key: 'missNs', name: 'not a service' },
] as const;

/** The families measured, in the order measured. */
export const familiesOf = (results: readonly PerPacketResult[]): IPFamily[] => [...new Set(results.map((p) => p.family))];
const countsOf = (results: readonly PerPacketResult[]): number[] => [...new Set(results.map((p) => p.services))];
const find = (results: readonly PerPacketResult[], family: IPFamily, services: number): PerPacketResult | undefined =>
  results.find((p) => p.family === family && p.services === services);

/** The JSON's perPacketNs: by family, then by service count. */
export function perPacketFigures(results: readonly PerPacketResult[]): Partial<Record<IPFamily, Record<number, { newFlow: Spread; established: Spread; miss: Spread }>>> {
  return Object.fromEntries(
    familiesOf(results).map((family) => [
      family,
      Object.fromEntries(results.filter((p) => p.family === family).map((p) => [p.services, { newFlow: p.newFlowNs, established: p.establishedNs, miss: p.missNs }])),
    ]),
  );
}

/** Medians by N, each path's families side by side. */
export function perPacketChart(results: readonly PerPacketResult[]): string {
  const counts = countsOf(results);
  const families = familiesOf(results);
  return barChart({
    title: 'ebpf per-packet cost (BPF_PROG_TEST_RUN, median)',
    groups: counts.map((n) => `${n.toLocaleString('en-US')} services`),
    series: PATHS.flatMap(({ key, name }) => families.map((family) => ({ name: `${name}, ${family}`, values: counts.map((n) => find(results, family, n)?.[key].median ?? null) }))),
    unit: 'ns per packet',
  });
}

/**
 * A row per N and family. With two families, each path has a column for
 * the second's median over the first's at the same N (IPv6 over IPv4):
 * measured in the same rounds, these compare even on a loaded machine.
 */
export function perPacketTable(results: readonly PerPacketResult[]): string[] {
  const families = familiesOf(results);
  const base = families.length > 1 ? families[0] : undefined;
  const cell = (s: Spread): string => `${s.median.toFixed(0)} (${s.p10.toFixed(0)}–${s.p90.toFixed(0)})`;
  const ratio = (p: PerPacketResult, key: (typeof PATHS)[number]['key']): string => {
    const b = base === undefined || p.family === base ? undefined : find(results, base, p.services);
    return b ? `${(p[key].median / b[key].median).toFixed(2)}×` : '';
  };
  return [
    `| services | family | ${PATHS.map(({ name }) => `${name} ns (p10–p90)${base ? ` | vs ${base}` : ''}`).join(' | ')} |`,
    `|---|---|${PATHS.map(() => (base ? '---|---|' : '---|')).join('')}`,
    ...countsOf(results).flatMap((n) =>
      families.flatMap((family) => {
        const p = find(results, family, n);
        if (!p) return [];
        return [`| ${n.toLocaleString('en-US')} | ${family} | ${PATHS.map(({ key }) => `${cell(p[key])}${base ? ` | ${ratio(p, key)}` : ''}`).join(' | ')} |`];
      }),
    ),
  ];
}
