// The text formats of iptables-save and iptables-restore, for every backend
// that keeps rules in iptables: the iptables backend and ipvs's helper rules.

/** A chain's rules, each an iptables-restore line without the "-A <chain>" prefix. */
export type Chains = Map<string, string[]>;

export interface SavedTable {
  /** Every chain, built-in or not, with its rules as tokens after "-A CHAIN". */
  chains: Map<string, string[][]>;
  /** The same rules as iptables-save printed them, after "-A CHAIN ", for -D. */
  ruleText: Map<string, string[]>;
  /** Each rule's "[packets:bytes]" as `iptables-save -c` printed it, if it did. */
  counters: Map<string, (string | undefined)[]>;
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

/**
 * Whether a chain's rules as iptables-save printed them (tokens) are `rules`:
 * iptables-save puts a rule's options in an order of its own, so each rule
 * is compared as a set of tokens, which is exact only without negations.
 */
export function sameRules(kernel: readonly (readonly string[])[], rules: readonly string[]): boolean {
  const key = (tokens: readonly string[]): string => [...tokens].sort().join('\0');
  return kernel.length === rules.length && rules.every((rule, i) => {
    const tokens = tokenize(rule);
    return !tokens.includes('!') && key(tokens) === key(kernel[i]!);
  });
}

/** A table as iptables-save prints it once `chains` are written, without counters. */
export function savedOf(chains: Chains): SavedTable {
  const each = <T>(f: (rule: string) => T) => new Map([...chains].map(([name, rules]) => [name, rules.map(f)]));
  return { chains: each(tokenize), ruleText: each((rule) => rule), counters: each(() => undefined) };
}

/** "[packets:bytes] " in front of a rule, as `iptables-save -c` prints it. */
const RULE_COUNTERS = /^(\[\d+:\d+\]) /;

/** Parses the output of `iptables-save [-c] -t TABLE` for one table. */
export function parseSave(text: string, table: string): SavedTable {
  const result: SavedTable = { chains: new Map(), ruleText: new Map(), counters: new Map() };
  let inTable = false;
  for (const saved of text.split('\n')) {
    const counters = RULE_COUNTERS.exec(saved)?.[1];
    const line = counters === undefined ? saved : saved.slice(counters.length + 1);
    if (line.startsWith('*')) inTable = line.slice(1) === table;
    else if (!inTable || line.startsWith('#')) continue;
    else if (line.startsWith(':')) {
      const chain = line.slice(1).split(' ')[0]!;
      result.chains.set(chain, []);
      result.ruleText.set(chain, []);
      result.counters.set(chain, []);
    } else if (line.startsWith('-A ')) {
      const [, chain, ...rest] = tokenize(line);
      result.chains.get(chain!)?.push(rest);
      result.ruleText.get(chain!)?.push(line.slice(`-A ${chain} `.length));
      result.counters.get(chain!)?.push(counters);
    }
  }
  return result;
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
  /** "[packets:bytes]" to restore with rules of written chains, by position, for counters that must survive a rewrite. */
  counters: Map<string, (string | undefined)[]>;
}

export function emptyUpdate(): TableUpdate {
  return { write: new Map(), remove: [], insert: [], delete: [], counters: new Map() };
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
    for (const [chain, rules] of u.write) {
      const counters = u.counters.get(chain);
      rules.forEach((rule, i) => lines.push(`${counters?.[i] === undefined ? '' : `${counters[i]} `}-A ${chain} ${rule}`));
    }
    for (const { chain, rule } of u.insert) lines.push(`-I ${chain} ${rule}`);
    for (const chain of u.remove) lines.push(`-X ${chain}`);
    lines.push('COMMIT');
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
