// Reads kube-lb's layout back from parsed iptables-save output: the
// frontends and endpoint counters that inspect and metrics show.
import type { EndpointCounters, FrontendView } from '../backend.js';
import { type Destination, type FrontendKind, type Protocol, frontendKey } from '../../model/contract.js';
import type { SavedTable } from '../netfilter/iptables-text.js';
import { EXTERNAL_SERVICES_CHAIN, EXT_PREFIX, KIND_TEXT, NODEPORTS_CHAIN, SEP_PREFIX, SERVICES_CHAIN, isPolicyChain } from './rules.js';

/** The value after `flag` in a rule, if any. */
function option(rule: readonly string[], flag: string): string | undefined {
  const i = rule.indexOf(flag);
  return i < 0 ? undefined : rule[i + 1];
}

const KIND_OF_TEXT = new Map(Object.entries(KIND_TEXT).map(([kind, text]) => [text, kind as FrontendKind]));
/** "ns/name:port <kind>[ ...]": service port names hold no spaces. */
const KIND_IN_COMMENT = new RegExp(`^\\S+ (${Object.values(KIND_TEXT).join('|')})(?: |$)`);

/** The frontend a rule matches and its kind, read from the destination, port and comment. */
function frontendOf(rule: readonly string[]): { kind: FrontendKind; frontend: FrontendView['frontend'] } | undefined {
  const dest = option(rule, '-d');
  const proto = option(rule, '-p');
  const port = option(rule, '--dport');
  const kind = KIND_IN_COMMENT.exec(option(rule, '--comment') ?? '')?.[1];
  if (dest === undefined || proto === undefined || port === undefined || kind === undefined) return undefined;
  return { kind: KIND_OF_TEXT.get(kind)!, frontend: { ip: dest.replace(/\/(32|128)$/, ''), port: Number(port), protocol: proto.toUpperCase() as Protocol } };
}

/**
 * The KUBE-SEP chains external traffic entering `chain` is DNATed in: a
 * KUBE-SVC or KUBE-SVL chain's endpoints; for KUBE-EXT those of the set its
 * unconditional last jump leads to (the earlier jumps are for pods and the
 * node itself); for KUBE-FW those of the KUBE-EXT chain its allowed sources go to.
 */
function endpointChainsOf(nat: SavedTable, chain: string): string[] {
  const rules = nat.chains.get(chain) ?? [];
  if (isPolicyChain(chain)) return [...new Set(rules.map((r) => option(r, '-j')).filter((t): t is string => t?.startsWith(SEP_PREFIX) === true))];
  const next = chain.startsWith(EXT_PREFIX)
    ? rules.find((r) => isPolicyChain(option(r, '-j') ?? '') && !r.includes('-s') && !r.includes('--src-type'))
    : rules.find((r) => option(r, '-j')?.startsWith(EXT_PREFIX));
  return next === undefined ? [] : endpointChainsOf(nat, option(next, '-j')!);
}

/** A KUBE-SEP chain's DNAT rule, its index and where it sends traffic. */
function dnatOf(nat: SavedTable, sep: string): { index: number; destination: Destination } | undefined {
  const index = (nat.chains.get(sep) ?? []).findIndex((r) => option(r, '--to-destination') !== undefined);
  if (index < 0) return undefined;
  // "10.244.0.11:8080", or in ip6tables "[fd00:10:244::11]:8080".
  const target = option(nat.chains.get(sep)![index]!, '--to-destination')!;
  const colon = target.lastIndexOf(':');
  return { index, destination: { ip: target.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(target.slice(colon + 1)) } };
}

/** Each frontend rule of KUBE-SERVICES and KUBE-NODEPORTS in nat, with the frontend it matches and the chain it jumps to. */
function frontendRules(nat: SavedTable): { kind: FrontendKind; frontend: FrontendView['frontend']; target: string }[] {
  return [SERVICES_CHAIN, NODEPORTS_CHAIN].flatMap((chain) =>
    (nat.chains.get(chain) ?? []).flatMap((rule) => {
      const found = frontendOf(rule);
      const target = option(rule, '-j');
      return found === undefined || target === undefined ? [] : [{ ...found, target }];
    }),
  );
}

/** The service-to-endpoints view of kube-lb's chains in the nat and filter tables, every frontend kind. */
export function viewsFromSave(nat: SavedTable, filter: SavedTable): FrontendView[] {
  const views = new Map<string, FrontendView>();
  for (const { kind, frontend, target } of frontendRules(nat)) {
    const destinations = endpointChainsOf(nat, target).flatMap((sep) => dnatOf(nat, sep)?.destination ?? []);
    views.set(frontendKey(frontend), { kind, frontend, destinations });
  }
  // Frontends whose sets are all empty have a verdict in filter and nothing in nat.
  for (const chain of [SERVICES_CHAIN, EXTERNAL_SERVICES_CHAIN]) {
    for (const rule of filter.chains.get(chain) ?? []) {
      const found = frontendOf(rule);
      if (found !== undefined && !views.has(frontendKey(found.frontend))) views.set(frontendKey(found.frontend), { ...found, destinations: [] });
    }
  }
  return [...views.values()];
}

/**
 * The packets each KUBE-SEP chain's DNAT rule counted, from `iptables-save -c`:
 * in the nat table only the first packet of a connection is seen, so they
 * count new connections.
 */
export function endpointCountersFromSave(nat: SavedTable): EndpointCounters[] {
  const reaching = new Map<string, FrontendView['frontend'][]>();
  for (const { frontend, target } of frontendRules(nat)) {
    for (const sep of endpointChainsOf(nat, target)) reaching.set(sep, [...(reaching.get(sep) ?? []), frontend]);
  }
  return [...reaching].flatMap(([sep, frontends]) => {
    const dnat = dnatOf(nat, sep);
    const counters = dnat === undefined ? undefined : nat.counters.get(sep)?.[dnat.index];
    if (dnat === undefined || counters === undefined) return [];
    return [{ frontends, destination: dnat.destination, connections: Number(counters.slice(1, counters.indexOf(':'))) }];
  });
}
