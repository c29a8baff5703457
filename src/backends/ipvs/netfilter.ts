// The ipsets and the few iptables rules of kube-proxy's ipvs mode
// (pkg/proxy/ipvs/proxier.go): IPVS does the load balancing, these do the
// masquerading.
//   KUBE-CLUSTER-IP  hash:ip,port     every ClusterIP,proto:port
//   KUBE-LOOP-BACK   hash:ip,port,ip  endpoint,proto:port,endpoint: hairpin
// Sets change with services (ipset restore, as a diff); the rules do not
// (iptables-restore --noflush, at start and on full syncs). Unlike the
// iptables backend, this mode has no KUBE-FORWARD chain yet, so it does
// not drop what conntrack marks INVALID (capability drop-invalid).
import { runCommand } from '../netfilter/command.js';
import type { LocalTraffic } from '../../config/local-traffic.js';
import { iptablesLocalMatch, masqueradeMark } from '../netfilter/frontends.js';
import type { Destination, Frontend } from '../../model/contract.js';

export const CLUSTER_IP_SET = 'KUBE-CLUSTER-IP';
export const LOOP_BACK_SET = 'KUBE-LOOP-BACK';
const SET_TYPES: Record<string, string> = { [CLUSTER_IP_SET]: 'hash:ip,port', [LOOP_BACK_SET]: 'hash:ip,port,ip' };

export const NAT_CHAINS = ['KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'] as const;

/** Jumps from the built-in chains, each recognisable by its comment. */
export const JUMPS = [
  { table: 'nat', from: 'PREROUTING', to: 'KUBE-SERVICES', comment: 'kubernetes service portals' },
  { table: 'nat', from: 'OUTPUT', to: 'KUBE-SERVICES', comment: 'kubernetes service portals' },
  { table: 'nat', from: 'POSTROUTING', to: 'KUBE-POSTROUTING', comment: 'kubernetes postrouting rules' },
] as const;

export const jumpArgs = (j: (typeof JUMPS)[number]): string[] => ['-m', 'comment', '--comment', j.comment, '-j', j.to];

export interface SetContents {
  [CLUSTER_IP_SET]: Set<string>;
  [LOOP_BACK_SET]: Set<string>;
}

const proto = (f: Frontend): string => f.protocol.toLowerCase();

/** The set entries for the programmed frontends and the destinations that get new traffic. */
export function setContents(programmed: Iterable<{ frontend: Frontend; destinations: readonly Destination[] }>): SetContents {
  const contents: SetContents = { [CLUSTER_IP_SET]: new Set(), [LOOP_BACK_SET]: new Set() };
  for (const { frontend, destinations } of programmed) {
    contents[CLUSTER_IP_SET].add(`${frontend.ip},${proto(frontend)}:${frontend.port}`);
    // A pod reaching its own service comes back to itself: masquerade so the reply returns through IPVS.
    for (const d of destinations) contents[LOOP_BACK_SET].add(`${d.ip},${proto(frontend)}:${d.port},${d.ip}`);
  }
  return contents;
}

const createLine = (name: string, type: string): string => `create ${name} ${type} family inet hashsize 1024 maxelem 1048576`;

/** `ipset restore` input that replaces both sets' contents atomically (fill a twin, swap, destroy it). */
export function renderSetsReplace(contents: SetContents): string {
  const lines: string[] = [];
  for (const set of [CLUSTER_IP_SET, LOOP_BACK_SET] as const) {
    const twin = `${set}-NEW`;
    lines.push(createLine(set, SET_TYPES[set]!), createLine(twin, SET_TYPES[set]!), `flush ${twin}`);
    for (const entry of contents[set]) lines.push(`add ${twin} ${entry}`);
    lines.push(`swap ${twin} ${set}`, `destroy ${twin}`);
  }
  return lines.join('\n') + '\n';
}

/** `ipset restore` input that turns `before` into `after`; empty when they are equal. */
export function renderSetsDiff(before: SetContents, after: SetContents): string {
  const lines: string[] = [];
  for (const set of [CLUSTER_IP_SET, LOOP_BACK_SET] as const) {
    for (const entry of before[set]) if (!after[set].has(entry)) lines.push(`del ${set} ${entry}`);
    for (const entry of after[set]) if (!before[set].has(entry)) lines.push(`add ${set} ${entry}`);
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}

export interface RuleOptions {
  /** Traffic to a ClusterIP from elsewhere is masqueraded (--detect-local-mode). */
  localTraffic: LocalTraffic | null;
  masqueradeBit: number;
}

/** `iptables-restore --noflush` input for kube-lb's chains (declaring a chain flushes it). */
export function renderRules(opts: RuleOptions): string {
  const mark = masqueradeMark(opts.masqueradeBit);
  const clusterIps = ['-m', 'set', '--match-set', CLUSTER_IP_SET];
  const masqueradeOffCluster = opts.localTraffic
    ? [...iptablesLocalMatch(opts.localTraffic, true), ...clusterIps, 'dst,dst']
    : // Without local traffic known, masquerade node-originated traffic whose source is a ClusterIP (kube-proxy's fallback).
      [...clusterIps, 'src,dst'];
  const rule = (chain: string, ...args: string[]): string => ['-A', chain, ...args].join(' ');
  return [
    '*nat',
    ...NAT_CHAINS.map((c) => `:${c} - [0:0]`),
    rule('KUBE-SERVICES', '-s', '127.0.0.0/8', '-j', 'RETURN'),
    rule('KUBE-SERVICES', ...masqueradeOffCluster, '-j', 'KUBE-MARK-MASQ'),
    // Accept ClusterIP traffic so that no later rule gets in IPVS's way.
    rule('KUBE-SERVICES', ...clusterIps, 'dst,dst', '-j', 'ACCEPT'),
    rule('KUBE-POSTROUTING', '-m', 'set', '--match-set', LOOP_BACK_SET, 'dst,dst,src', '-j', 'MASQUERADE'),
    rule('KUBE-POSTROUTING', '-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN'),
    rule('KUBE-POSTROUTING', '-j', 'MARK', '--xor-mark', mark),
    rule('KUBE-POSTROUTING', '-j', 'MASQUERADE', '--random-fully'),
    rule('KUBE-MARK-MASQ', '-j', 'MARK', '--or-mark', mark),
    'COMMIT',
    '',
  ].join('\n');
}

/** Creates the sets (so rules can name them), writes the chains, and adds each jump once. */
export async function installRules(opts: RuleOptions, contents: SetContents): Promise<void> {
  await runCommand('ipset', ['restore', '-exist'], renderSetsReplace(contents));
  await runCommand('iptables-restore', ['-w', '--noflush'], renderRules(opts));
  for (const jump of JUMPS) {
    const args = ['-w', '-t', jump.table];
    const exists = await runCommand('iptables', [...args, '-C', jump.from, ...jumpArgs(jump)]).then(() => true, () => false);
    if (!exists) await runCommand('iptables', [...args, '-I', jump.from, ...jumpArgs(jump)]);
  }
}

export async function updateSets(before: SetContents, after: SetContents): Promise<void> {
  const diff = renderSetsDiff(before, after);
  if (diff !== '') await runCommand('ipset', ['restore', '-exist'], diff);
}

/**
 * Removes the jumps, chains and sets that exist; what exists and cannot be
 * removed (a set another rule still names, say) is reported, not hidden.
 */
export async function removeRules(): Promise<void> {
  const problems: string[] = [];
  const attempt = (cmd: string, args: string[]): Promise<boolean> =>
    runCommand(cmd, args).then(
      () => true,
      (err: Error) => (problems.push(err.message), false),
    );
  for (const jump of JUMPS) {
    const args = ['-w', '-t', jump.table];
    const present = (): Promise<boolean> => runCommand('iptables', [...args, '-C', jump.from, ...jumpArgs(jump)]).then(() => true, () => false);
    while ((await present()) && (await attempt('iptables', [...args, '-D', jump.from, ...jumpArgs(jump)])));
  }
  const chains = new Set((await runCommand('iptables-save', ['-t', 'nat'])).stdout.split('\n').flatMap((l) => (l.startsWith(':') ? [l.slice(1).split(' ')[0]!] : [])));
  for (const chain of NAT_CHAINS) {
    if (chains.has(chain) && (await attempt('iptables', ['-w', '-t', 'nat', '-F', chain]))) await attempt('iptables', ['-w', '-t', 'nat', '-X', chain]);
  }
  const sets = new Set((await runCommand('ipset', ['list', '-n'])).stdout.split('\n'));
  for (const set of [CLUSTER_IP_SET, LOOP_BACK_SET]) if (sets.has(set)) await attempt('ipset', ['destroy', set]);
  if (problems.length > 0) throw new Error(`kube-lb's ipvs rules were not all removed: ${problems.join('; ')}`);
}
