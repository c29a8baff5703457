// Reads iptables-save output: the kernel's rules, for full syncs, inspect
// and cleanup.
import type { FrontendView } from '../backend.js';
import type { Destination, Protocol } from '../../model/contract.js';
import { SEP_PREFIX, SERVICES_CHAIN, SVC_PREFIX } from './rules.js';

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

function frontendOf(rule: readonly string[]): FrontendView['frontend'] | undefined {
  const dest = option(rule, '-d');
  const proto = option(rule, '-p');
  const port = option(rule, '--dport');
  if (dest === undefined || proto === undefined || port === undefined) return undefined;
  return { ip: dest.replace(/\/32$/, ''), port: Number(port), protocol: proto.toUpperCase() as Protocol };
}

/** The service-to-endpoints view of kube-lb's chains in the nat and filter tables. */
export function viewsFromSave(nat: SavedTable, filter: SavedTable): FrontendView[] {
  const views: FrontendView[] = [];
  for (const rule of nat.chains.get(SERVICES_CHAIN) ?? []) {
    const target = option(rule, '-j');
    const frontend = frontendOf(rule);
    if (frontend === undefined || !target?.startsWith(SVC_PREFIX)) continue;
    const destinations: Destination[] = [];
    for (const svcRule of nat.chains.get(target) ?? []) {
      const sep = option(svcRule, '-j');
      if (!sep?.startsWith(SEP_PREFIX)) continue;
      for (const sepRule of nat.chains.get(sep) ?? []) {
        const to = option(sepRule, '--to-destination');
        if (to === undefined) continue;
        const [ip, port] = to.split(':');
        destinations.push({ ip: ip!, port: Number(port) });
      }
    }
    views.push({ kind: 'ClusterIP', frontend, destinations });
  }
  for (const rule of filter.chains.get(SERVICES_CHAIN) ?? []) {
    const frontend = frontendOf(rule);
    if (frontend !== undefined && option(rule, '-j') === 'REJECT') views.push({ kind: 'ClusterIP', frontend, destinations: [] });
  }
  return views;
}
