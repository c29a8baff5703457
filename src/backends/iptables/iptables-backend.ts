// The iptables backend: kube-proxy's iptables layout (see rules.ts), applied
// with iptables-restore --noflush in one transaction per sync. After the
// first sync only chains whose rules changed are sent; a full sync rewrites
// every chain and removes stale ones found in iptables-save.
import fs from 'node:fs';
import type { Backend, EndpointCounters, FrontendView, SyncStats } from '../backend.js';
import type { DesiredState, Protocol, ServicePortState } from '../../model/contract.js';
import { runCommand } from '../netfilter/command.js';
import { ProgrammedFrontends, flushStaleFlows } from '../netfilter/conntrack.js';
import { type NetfilterOptions, frontendDestinations, masqueradeMark, sortedServicePorts } from '../netfilter/frontends.js';
import {
  type Chains,
  JUMPS,
  type PortRules,
  type TableUpdate,
  type Tables,
  assembleTables,
  emptyUpdate,
  SEP_PREFIX,
  isOwnChain,
  portRules,
  renderRestore,
} from './rules.js';
import { type SavedTable, endpointCountersFromSave, parseSave, savedOf, tokenize, viewsFromSave } from './save.js';
import { timeSlices } from '../../time-slices.js';
import { protocolsOf } from '../capabilities.js';

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

const joinRules = (chains: Chains): Map<string, string> => new Map([...chains].map(([name, rules]) => [name, rules.join('\n')]));

export class IptablesBackend implements Backend {
  readonly name = 'iptables';
  readonly protocols: readonly Protocol[] = protocolsOf('iptables');
  /** Null until a full sync has read the kernel: partial syncs need to know what is there. */
  private written: Written | null = null;
  private readonly programmed = new ProgrammedFrontends();
  /** Rules per service port; the model hands out the same object while a service port is unchanged. */
  private readonly rulesOf = new WeakMap<ServicePortState, PortRules>();
  private readonly mark: string;

  constructor(private readonly opts: IptablesOptions) {
    this.mark = masqueradeMark(opts.masqueradeBit);
  }

  async sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    const servicePorts = sortedServicePorts(state);
    const wanted = await this.wantedChains(servicePorts);
    if (wanted.localhostNodePorts) enableRouteLocalnet(this.opts.log);
    const full = changed === null || this.written === null;
    const update = full ? await this.fullUpdate(wanted) : this.partialUpdate(wanted, this.written!);
    const payload = renderRestore(update);
    if (payload !== '') {
      this.written = null; // unknown if the restore fails half-way through its tables
      await this.restore(payload);
    }
    this.written = { nat: joinRules(wanted.nat), filter: joinRules(wanted.filter) };
    this.opts.log.debug({ full, natChainsWritten: update.nat.write.size, natChainsRemoved: update.nat.remove.length, bytes: payload.length }, 'iptables-restore');
    const { stats, stale } = this.programmed.update(frontendDestinations(servicePorts));
    await flushStaleFlows(stale, this.opts.log);
    return stats;
  }

  async inspect(): Promise<FrontendView[]> {
    const [nat, filter] = await Promise.all(TABLES.map((t) => this.save(t)));
    return viewsFromSave(nat!, filter!);
  }

  /** The chains sync writes, read as inspect reads iptables-save. */
  async planned(state: DesiredState): Promise<FrontendView[]> {
    const wanted = await this.wantedChains(sortedServicePorts(state));
    return viewsFromSave(savedOf(wanted.nat), savedOf(wanted.filter));
  }

  async counters(): Promise<EndpointCounters[]> {
    return endpointCountersFromSave(await this.save('nat'));
  }

  async cleanup(): Promise<void> {
    const update: Record<Table, TableUpdate> = { nat: emptyUpdate(), filter: emptyUpdate() };
    for (const table of TABLES) {
      const saved = await this.save(table);
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
    if (payload !== '') await this.restore(payload);
    this.written = null;
  }

  async close(): Promise<void> {}

  private async wantedChains(servicePorts: readonly ServicePortState[]): Promise<Tables> {
    const ports: PortRules[] = [];
    // Translating thousands of new service ports takes long: the event loop gets its turns meanwhile.
    const turn = timeSlices();
    for (const sp of servicePorts) {
      await turn();
      let rules = this.rulesOf.get(sp);
      if (rules === undefined) this.rulesOf.set(sp, (rules = portRules(sp, this.opts.localTraffic)));
      ports.push(rules);
    }
    return assembleTables(ports, this.mark, !this.opts.tcpBeLiberal);
  }

  /** Every wanted chain, stale chains of ours removed, missing jumps from built-in chains added. */
  private async fullUpdate(wanted: Record<Table, Chains>): Promise<Record<Table, TableUpdate>> {
    const update: Record<Table, TableUpdate> = { nat: emptyUpdate(), filter: emptyUpdate() };
    for (const table of TABLES) {
      const saved = await this.save(table);
      update[table].write = wanted[table];
      update[table].remove = [...saved.chains.keys()].filter((c) => isOwnChain(c) && !wanted[table].has(c));
      update[table].insert = JUMPS[table].filter((j) => !hasRule(saved, j.chain, j.rule));
      // Rewriting a chain zeroes its counters: the endpoint chains' counters, which the metrics read, are restored with their rules.
      for (const [chain, rules] of wanted[table]) {
        const counters = saved.counters.get(chain);
        if (chain.startsWith(SEP_PREFIX) && counters?.length === rules.length) update[table].counters.set(chain, counters);
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

  private async save(table: Table): Promise<SavedTable> {
    // iptables-legacy-save creates a table it is asked for in a namespace
    // that has none yet: reading, as diff and inspect do, must not.
    if (this.opts.mode === 'legacy' && !legacyTables().includes(table)) return parseSave('', table);
    const { stdout } = await runCommand(`iptables-${this.opts.mode}-save`, ['--counters', '-t', table]);
    return parseSave(stdout, table);
  }

  private async restore(payload: string): Promise<void> {
    await runCommand(`iptables-${this.opts.mode}-restore`, ['--noflush', '--counters', '--wait'], payload);
  }
}

/** The x_tables tables this network namespace has: none until the module is loaded and a table is first used. */
function legacyTables(): string[] {
  try {
    return fs.readFileSync('/proc/net/ip_tables_names', 'utf8').split('\n');
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
