// kube-proxy's iptables layout, as iptables-restore input. Pure functions:
// the backend decides which chains to send.
//
//   nat    PREROUTING, OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash> (one per service port)
//            -> KUBE-SEP-<hash> (one per endpoint, picked with -m statistic) -> DNAT
//          POSTROUTING -> KUBE-POSTROUTING: MASQUERADE what KUBE-MARK-MASQ marked
//   filter FORWARD, OUTPUT -> KUBE-SERVICES: REJECT service ports without endpoints
import type { Destination } from '../../model/contract.js';
import type { ProgrammedPort } from '../netfilter/frontends.js';
import { endpointName, nameHash, protocolName, safeText, servicePortName } from '../netfilter/names.js';

export const SERVICES_CHAIN = 'KUBE-SERVICES';
export const MARK_MASQ_CHAIN = 'KUBE-MARK-MASQ';
export const POSTROUTING_CHAIN = 'KUBE-POSTROUTING';
export const SVC_PREFIX = 'KUBE-SVC-';
export const SEP_PREFIX = 'KUBE-SEP-';

/** A chain's rules, each an iptables-restore line without the "-A <chain>" prefix. */
export type Chains = Map<string, string[]>;

/** Rules in built-in chains that send traffic into ours, as kube-proxy writes them. */
export const JUMPS: Record<'nat' | 'filter', { chain: string; rule: string }[]> = {
  nat: [
    { chain: 'PREROUTING', rule: `-m comment --comment "kubernetes service portals" -j ${SERVICES_CHAIN}` },
    { chain: 'OUTPUT', rule: `-m comment --comment "kubernetes service portals" -j ${SERVICES_CHAIN}` },
    { chain: 'POSTROUTING', rule: `-m comment --comment "kubernetes postrouting rules" -j ${POSTROUTING_CHAIN}` },
  ],
  filter: [
    { chain: 'FORWARD', rule: `-m comment --comment "kubernetes service portals" -m conntrack --ctstate NEW -j ${SERVICES_CHAIN}` },
    { chain: 'OUTPUT', rule: `-m comment --comment "kubernetes service portals" -m conntrack --ctstate NEW -j ${SERVICES_CHAIN}` },
  ],
};

/** Whether a chain name is one kube-lb creates in the nat or filter table. */
export function isOwnChain(name: string): boolean {
  return name === SERVICES_CHAIN || name === MARK_MASQ_CHAIN || name === POSTROUTING_CHAIN || name.startsWith(SVC_PREFIX) || name.startsWith(SEP_PREFIX);
}

export function serviceChainName(sp: ProgrammedPort): string {
  return SVC_PREFIX + nameHash(servicePortName(sp) + protocolName(sp)).slice(0, 16);
}

export function endpointChainName(sp: ProgrammedPort, d: Destination): string {
  return SEP_PREFIX + nameHash(servicePortName(sp) + protocolName(sp) + endpointName(d)).slice(0, 16);
}

/** kube-proxy's probability for the i-th of n remaining endpoints: 1/n with 10 decimals. */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

/** "-m tcp -p tcp -d VIP/32 --dport PORT": the match on a service port's frontend. */
function frontendMatch(sp: ProgrammedPort): string {
  const proto = protocolName(sp);
  return `-m ${proto} -p ${proto} -d ${sp.frontend.ip}/32 --dport ${sp.frontend.port}`;
}

const comment = (text: string, sp: ProgrammedPort): string => `-m comment --comment "${safeText(text, sp)}"`;

/** A service port's KUBE-SVC chain and its KUBE-SEP chains; nothing for a port without endpoints. */
export function servicePortChains(sp: ProgrammedPort, clusterCidr: string | undefined): Chains {
  const n = sp.destinations.length;
  if (n === 0) return new Map();
  const name = servicePortName(sp);
  const proto = protocolName(sp);
  const svc: string[] = [];
  const seps: [string, string[]][] = [];
  if (clusterCidr !== undefined) {
    svc.push(`${comment(`${name} cluster IP`, sp)} ${frontendMatch(sp)} ! -s ${clusterCidr} -j ${MARK_MASQ_CHAIN}`);
  }
  sp.destinations.forEach((d, i) => {
    const sep = endpointChainName(sp, d);
    const pick = i < n - 1 ? ` -m statistic --mode random --probability ${probability(n - i)}` : '';
    svc.push(`${comment(`${name} -> ${endpointName(d)}`, sp)}${pick} -j ${sep}`);
    seps.push([sep, [
      `${comment(name, sp)} -s ${d.ip}/32 -j ${MARK_MASQ_CHAIN}`,
      `${comment(name, sp)} -m ${proto} -p ${proto} -j DNAT --to-destination ${endpointName(d)}`,
    ]]);
  });
  return new Map([[serviceChainName(sp), svc], ...seps]);
}

/** nat KUBE-SERVICES: one jump per service port that has endpoints. */
export function natServicesRules(servicePorts: readonly ProgrammedPort[]): string[] {
  return servicePorts
    .filter((sp) => sp.destinations.length > 0)
    .map((sp) => `${comment(`${servicePortName(sp)} cluster IP`, sp)} ${frontendMatch(sp)} -j ${serviceChainName(sp)}`);
}

/** filter KUBE-SERVICES: an immediate error for service ports without endpoints, as kube-proxy gives. */
export function filterServicesRules(servicePorts: readonly ProgrammedPort[]): string[] {
  return servicePorts
    .filter((sp) => sp.destinations.length === 0)
    .map((sp) => `${comment(`${servicePortName(sp)} has no endpoints`, sp)} ${frontendMatch(sp)} -j REJECT`);
}

/** KUBE-MARK-MASQ and KUBE-POSTROUTING, for the mark `mark` (e.g. 0x4000). */
export function masqueradeChains(mark: string): Chains {
  return new Map([
    [MARK_MASQ_CHAIN, [`-j MARK --or-mark ${mark}`]],
    [
      POSTROUTING_CHAIN,
      [
        `-m mark ! --mark ${mark}/${mark} -j RETURN`,
        // The mark is cleared so a packet that is processed again is not masqueraded twice.
        `-j MARK --xor-mark ${mark}`,
        `-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`,
      ],
    ],
  ]);
}

/** One table's section of an iptables-restore --noflush payload. */
export interface TableUpdate {
  /** Chains to (re)write: declaring a chain flushes it. */
  write: Chains;
  /** Chains to flush and delete. */
  remove: string[];
  /** Rules to add at the top of built-in chains, "-I CHAIN rule". */
  insert: { chain: string; rule: string }[];
  /** Rules to delete from built-in chains, "-D CHAIN rule". */
  delete: { chain: string; rule: string }[];
}

export function emptyUpdate(): TableUpdate {
  return { write: new Map(), remove: [], insert: [], delete: [] };
}

export function isEmptyUpdate(u: TableUpdate): boolean {
  return u.write.size === 0 && u.remove.length === 0 && u.insert.length === 0 && u.delete.length === 0;
}

/** Renders iptables-restore input; tables with nothing to do are left out. */
export function renderRestore(tables: Partial<Record<'nat' | 'filter', TableUpdate>>): string {
  const lines: string[] = [];
  for (const table of ['filter', 'nat'] as const) {
    const u = tables[table];
    if (u === undefined || isEmptyUpdate(u)) continue;
    lines.push(`*${table}`);
    for (const chain of [...u.write.keys(), ...u.remove]) lines.push(`:${chain} - [0:0]`);
    for (const { chain, rule } of u.delete) lines.push(`-D ${chain} ${rule}`);
    for (const [chain, rules] of u.write) for (const rule of rules) lines.push(`-A ${chain} ${rule}`);
    for (const { chain, rule } of u.insert) lines.push(`-I ${chain} ${rule}`);
    for (const chain of u.remove) lines.push(`-X ${chain}`);
    lines.push('COMMIT');
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
