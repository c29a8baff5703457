// The iptables backend: kube-proxy's iptables layout (see rules.ts), applied
// with iptables-restore --noflush in one transaction per family and sync:
// as kube-proxy's, IPv4 frontends go to iptables and IPv6 ones to ip6tables,
// from the same code with the family as a parameter. After the first sync
// only chains whose rules changed are sent; a full sync rewrites every chain
// and removes stale ones found in iptables-save.
import fs from 'node:fs';
import type { Backend, EndpointCounters, FrontendView, SyncStats } from '../backend.js';
import type { DesiredState, IPFamily, Protocol, ServicePortState } from '../../model/contract.js';
import { runCommand } from '../netfilter/command.js';
import { ProgrammedFrontends, flushStaleFlows } from '../netfilter/conntrack.js';
import { type NetfilterOptions, frontendDestinations, masqueradeMark, sortedServicePorts } from '../netfilter/frontends.js';
import { type FamilyRulesOptions, JUMPS, type PortRules, type Tables, assembleTables, SEP_PREFIX, isOwnChain, portRules } from './rules.js';
import { endpointCountersFromSave, viewsFromSave } from './save.js';
import { type Chains, type SavedTable, type TableUpdate, emptyUpdate, parseSave, renderRestore, sameRules, savedOf, tokenize } from '../netfilter/iptables-text.js';
import { timeSlices } from '../../time-slices.js';
import { protocolsOf } from '../capabilities.js';
import { servedFamilies } from '../families.js';

export const IPTABLES_MODES = ['nft', 'legacy'] as const;
export type IptablesMode = (typeof IPTABLES_MODES)[number];

export interface IptablesOptions extends NetfilterOptions {
  /** Which iptables: iptables-nft (nf_tables) or iptables-legacy (x_tables). */
  mode: IptablesMode;
}

type Table = 'nat' | 'filter';
const TABLES: readonly Table[] = ['nat', 'filter'];
const BUILT_IN_CHAINS = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

/** The mode `iptables -V` reports, as kube-proxy picks it: "(nf_tables)" or "(legacy)". */
export async function detectIptablesMode(): Promise<IptablesMode> {
  const { stdout } = await runCommand('iptables', ['-V']);
  if (stdout.includes('(nf_tables)')) return 'nft';
  if (stdout.includes('(legacy)')) return 'legacy';
  throw new Error(`cannot tell the iptables mode from \`iptables -V\`: ${JSON.stringify(stdout.trim())}; pass --iptables-mode=nft|legacy`);
}

/** Each table's chains, with each chain's rules joined: what was last written. */
type Written = Record<Table, Map<string, string>>;

/** The commands of each family: iptables for IPv4, ip6tables for IPv6. */
const COMMAND: Readonly<Record<IPFamily, string>> = { IPv4: 'iptables', IPv6: 'ip6tables' };
/** Where x_tables lists a family's tables once they exist. */
const LEGACY_TABLE_NAMES: Readonly<Record<IPFamily, string>> = { IPv4: '/proc/net/ip_tables_names', IPv6: '/proc/net/ip6_tables_names' };

/** One family's tables: how its rules are made, and what they hold. */
interface FamilyTables {
  options: FamilyRulesOptions;
  /** Null until a full sync has read the kernel: partial syncs need to know what is there. */
  written: Written | null;
  /** Rules per service port; the model hands out the same object while a service port is unchanged. */
  rulesOf: WeakMap<ServicePortState, PortRules>;
}

const joinRules = (chains: Chains): Map<string, string> => new Map([...chains].map(([name, rules]) => [name, rules.join('\n')]));

export class IptablesBackend implements Backend {
  readonly name = 'iptables';
  readonly protocols: readonly Protocol[] = protocolsOf('iptables');
  private readonly families: FamilyTables[];
  private readonly programmed = new ProgrammedFrontends();
  private readonly mark: string;

  constructor(private readonly opts: IptablesOptions) {
    this.mark = masqueradeMark(opts.masqueradeBit);
    this.families = servedFamilies('iptables').map((family) => ({ options: { family, local: opts.localTraffic[family] }, written: null, rulesOf: new WeakMap() }));
  }

  async sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    const servicePorts = sortedServicePorts(state.values());
    for (const fam of this.families) {
      const wanted = await this.wantedChains(fam, servicePorts);
      if (wanted.localhostNodePorts) enableRouteLocalnet(this.opts.log);
      const full = changed === null || fam.written === null;
      const update = full ? await this.fullUpdate(fam.options.family, wanted) : this.partialUpdate(wanted, fam.written!);
      const payload = renderRestore(update);
      if (payload !== '') {
        fam.written = null; // unknown if the restore fails half-way through its tables
        await this.restore(fam.options.family, payload);
      }
      fam.written = { nat: joinRules(wanted.nat), filter: joinRules(wanted.filter) };
      this.opts.log.debug({ family: fam.options.family, full, natChainsWritten: update.nat.write.size, natChainsRemoved: update.nat.remove.length, bytes: payload.length }, 'iptables-restore');
    }
    const { stats, stale } = this.programmed.update(frontendDestinations(servicePorts));
    await flushStaleFlows(stale, this.opts.log);
    return stats;
  }

  async inspect(): Promise<FrontendView[]> {
    const views: FrontendView[] = [];
    for (const { options } of this.families) {
      const [nat, filter] = await Promise.all(TABLES.map((t) => this.save(options.family, t)));
      views.push(...viewsFromSave(nat!, filter!));
    }
    return views;
  }

  /** The chains sync writes, read as inspect reads iptables-save. */
  async planned(state: DesiredState): Promise<FrontendView[]> {
    const servicePorts = sortedServicePorts(state.values());
    const views: FrontendView[] = [];
    for (const fam of this.families) {
      const wanted = await this.wantedChains(fam, servicePorts);
      views.push(...viewsFromSave(savedOf(wanted.nat), savedOf(wanted.filter)));
    }
    return views;
  }

  async counters(): Promise<EndpointCounters[]> {
    const counters: EndpointCounters[] = [];
    for (const { options } of this.families) counters.push(...endpointCountersFromSave(await this.save(options.family, 'nat')));
    return counters;
  }

  async cleanup(): Promise<void> {
    for (const fam of this.families) {
      await this.cleanupFamily(fam.options.family);
      fam.written = null;
    }
  }

  async close(): Promise<void> {}

  /** Removes kube-lb's chains from one family's tables, and the jumps into them from built-in chains; every other rule stays. */
  private async cleanupFamily(family: IPFamily): Promise<void> {
    const update: Record<Table, TableUpdate> = { nat: emptyUpdate(), filter: emptyUpdate() };
    for (const table of TABLES) {
      const saved = await this.save(family, table);
      for (const [chain, rules] of saved.chains) {
        if (isOwnChain(chain)) update[table].remove.push(chain);
        else if (BUILT_IN_CHAINS.has(chain)) {
          // Only rules that jump into our chains; every other rule stays.
          rules.forEach((rule, i) => {
            const jump = rule.indexOf('-j');
            if (jump >= 0 && isOwnChain(rule[jump + 1] ?? '')) update[table].delete.push({ chain, rule: saved.ruleText.get(chain)![i]! });
          });
        }
      }
    }
    const payload = renderRestore(update);
    if (payload !== '') await this.restore(family, payload);
  }

  private async wantedChains(fam: FamilyTables, servicePorts: readonly ServicePortState[]): Promise<Tables> {
    const ports: PortRules[] = [];
    // Translating thousands of new service ports takes long: the event loop gets its turns meanwhile.
    const turn = timeSlices();
    for (const sp of servicePorts) {
      await turn();
      let rules = fam.rulesOf.get(sp);
      if (rules === undefined) fam.rulesOf.set(sp, (rules = portRules(sp, fam.options)));
      ports.push(rules);
    }
    return assembleTables(fam.options.family, ports, this.mark, !this.opts.tcpBeLiberal);
  }

  /** Every wanted chain, stale chains of ours removed, missing jumps from built-in chains added. */
  private async fullUpdate(family: IPFamily, wanted: Record<Table, Chains>): Promise<Record<Table, TableUpdate>> {
    const update: Record<Table, TableUpdate> = { nat: emptyUpdate(), filter: emptyUpdate() };
    for (const table of TABLES) {
      const saved = await this.save(family, table);
      update[table].write = new Map(wanted[table]);
      update[table].remove = [...saved.chains.keys()].filter((c) => isOwnChain(c) && !wanted[table].has(c));
      update[table].insert = JUMPS[table].filter((j) => !hasRule(saved, j.chain, j.rule));
      // Rewriting a chain zeroes its counters, which the metrics read for
      // endpoint chains, and ip6tables-nft-restore (1.8.9) drops the counters
      // it is given: an endpoint chain the kernel already holds as wanted is
      // left alone, one that differs is rewritten with its counters.
      for (const [chain, rules] of wanted[table]) {
        const kernel = saved.chains.get(chain);
        if (!chain.startsWith(SEP_PREFIX) || kernel === undefined) continue;
        const counters = saved.counters.get(chain);
        if (sameRules(kernel, rules)) update[table].write.delete(chain);
        else if (counters?.length === rules.length) update[table].counters.set(chain, counters);
      }
    }
    return update;
  }

  /** Only chains whose rules differ from what was written, and chains no longer wanted. */
  private partialUpdate(wanted: Record<Table, Chains>, written: Written): Record<Table, TableUpdate> {
    const update: Record<Table, TableUpdate> = { nat: emptyUpdate(), filter: emptyUpdate() };
    for (const table of TABLES) {
      for (const [name, rules] of wanted[table]) {
        if (written[table].get(name) !== rules.join('\n')) update[table].write.set(name, rules);
      }
      update[table].remove = [...written[table].keys()].filter((c) => !wanted[table].has(c));
    }
    return update;
  }

  private async save(family: IPFamily, table: Table): Promise<SavedTable> {
    // iptables-legacy-save creates a table it is asked for in a namespace
    // that has none yet: reading, as diff and inspect do, must not.
    if (this.opts.mode === 'legacy' && !legacyTables(family).includes(table)) return parseSave('', table);
    const { stdout } = await runCommand(`${COMMAND[family]}-${this.opts.mode}-save`, ['--counters', '-t', table]);
    return parseSave(stdout, table);
  }

  private async restore(family: IPFamily, payload: string): Promise<void> {
    await runCommand(`${COMMAND[family]}-${this.opts.mode}-restore`, ['--noflush', '--counters', '--wait'], payload);
  }
}

/** The x_tables tables of a family this network namespace has: none until the module is loaded and a table is first used. */
function legacyTables(family: IPFamily): string[] {
  try {
    return fs.readFileSync(LEGACY_TABLE_NAMES[family], 'utf8').split('\n');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

const ROUTE_LOCALNET = '/proc/sys/net/ipv4/conf/all/route_localnet';

/**
 * NodePorts on 127.0.0.1 are DNATed to addresses elsewhere, which the kernel
 * refuses for loopback sources unless route_localnet is on; kube-proxy sets
 * it, and leaves it set, in the same case.
 */
function enableRouteLocalnet(log: IptablesOptions['log']): void {
  if (fs.readFileSync(ROUTE_LOCALNET, 'utf8').trim() === '1') return;
  fs.writeFileSync(ROUTE_LOCALNET, '1');
  log.info({ sysctl: 'net.ipv4.conf.all.route_localnet', value: 1 }, 'enabled for NodePorts on 127.0.0.1');
}

/** Whether `chain` holds `rule` as iptables-save prints it. */
function hasRule(saved: SavedTable, chain: string, rule: string): boolean {
  const tokens = tokenize(rule).join('\0');
  return (saved.chains.get(chain) ?? []).some((r) => r.join('\0') === tokens);
}
