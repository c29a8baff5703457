// Reads iptables-save output: the kernel's rules, for full syncs, inspect
// and cleanup.
import type { FrontendView } from '../backend.js';
import { type Destination, type FrontendKind, type Protocol, frontendKey } from '../../model/contract.js';
import { EXTERNAL_SERVICES_CHAIN, EXT_PREFIX, KIND_TEXT, NODEPORTS_CHAIN, SEP_PREFIX, SERVICES_CHAIN, isPolicyChain } from './rules.js';

export interface SavedTable {
  /** Every chain, built-in or not, with its rules as tokens after "-A CHAIN". */
  chains: Map<string, string[][]>;
  /** The same rules as iptables-save printed them, after "-A CHAIN ", for -D. */
  ruleText: Map<string, string[]>;
}

/** Splits a rule line like iptables-restore does: on spaces, with "double quoted" words. */
export function tokenize(line: string): string[] {
  const tokens: string[] = [];
  const word = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = word.exec(line); m !== null; m = word.exec(line)) {
    tokens.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  }
  return tokens;
}

/** Parses the output of `iptables-save -t TABLE` for one table. */
export function parseSave(text: string, table: string): SavedTable {
  const result: SavedTable = { chains: new Map(), ruleText: new Map() };
  let inTable = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) inTable = line.slice(1) === table;
    else if (!inTable || line.startsWith('#')) continue;
    else if (line.startsWith(':')) {
      const chain = line.slice(1).split(' ')[0]!;
      result.chains.set(chain, []);
      result.ruleText.set(chain, []);
    } else if (line.startsWith('-A ')) {
      const [, chain, ...rest] = tokenize(line);
      result.chains.get(chain!)?.push(rest);
      result.ruleText.get(chain!)?.push(line.slice(`-A ${chain} `.length));
    }
  }
  return result;
}

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
  return { kind: KIND_OF_TEXT.get(kind)!, frontend: { ip: dest.replace(/\/32$/, ''), port: Number(port), protocol: proto.toUpperCase() as Protocol } };
}

/**
 * Where external traffic entering `chain` is DNATed: a KUBE-SVC or KUBE-SVL
 * chain's endpoints; for KUBE-EXT the set its unconditional last jump leads
 * to (the earlier jumps are for pods and the node itself); for KUBE-FW the
 * KUBE-EXT chain its allowed sources go to.
 */
function destinationsOf(nat: SavedTable, chain: string): Destination[] {
  const rules = nat.chains.get(chain) ?? [];
  if (isPolicyChain(chain)) {
    const seps = new Set(rules.map((r) => option(r, '-j')).filter((t) => t?.startsWith(SEP_PREFIX)));
    return [...seps].flatMap((sep) =>
      (nat.chains.get(sep!) ?? []).flatMap((r) => {
        const to = option(r, '--to-destination');
        if (to === undefined) return [];
        const [ip, port] = to.split(':');
        return [{ ip: ip!, port: Number(port) }];
      }),
    );
  }
  const next = chain.startsWith(EXT_PREFIX)
    ? rules.find((r) => isPolicyChain(option(r, '-j') ?? '') && !r.includes('-s') && !r.includes('--src-type'))
    : rules.find((r) => option(r, '-j')?.startsWith(EXT_PREFIX));
  return next === undefined ? [] : destinationsOf(nat, option(next, '-j')!);
}

/** The service-to-endpoints view of kube-lb's chains in the nat and filter tables, every frontend kind. */
export function viewsFromSave(nat: SavedTable, filter: SavedTable): FrontendView[] {
  const views = new Map<string, FrontendView>();
  for (const chain of [SERVICES_CHAIN, NODEPORTS_CHAIN]) {
    for (const rule of nat.chains.get(chain) ?? []) {
      const found = frontendOf(rule);
      const target = option(rule, '-j');
      if (found === undefined || target === undefined) continue;
      views.set(frontendKey(found.frontend), { ...found, destinations: destinationsOf(nat, target) });
    }
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
