// The nftables backend: kube-proxy's nftables design (see ruleset.ts) in
// tables of kube-lb's own, one per address family, applied together in
// atomic `nft -f` transactions. After the first sync only changed chains, sets and map elements are sent; a
// full sync rewrites everything and removes stale chains and sets found in
// the kernel.
import { type Backend, type EndpointCounters, type FrontendView, type SyncStats, frontendView } from '../backend.js';
import type { DesiredState, IPFamily, Protocol, ServicePortState } from '../../model/contract.js';
import { runCommand } from '../netfilter/command.js';
import { type FrontendDestinations, ProgrammedFrontends, flushStaleFlows } from '../netfilter/conntrack.js';
import { type NetfilterOptions, frontendDestinations, masqueradeMark } from '../netfilter/frontends.js';
import { type Listing, endpointCountersFromListing, parseListing, viewsFromListing } from './listing.js';
import { AFFINITY_PREFIX, type PortRules, type RulesetOptions, TABLE, TABLE_FAMILIES, type TableFamily, fixedChains, isEmpty, portRules, renderTransaction } from './ruleset.js';
import { type KernelObjects, type PortTable, fullTransaction, partialTransaction } from './transactions.js';
import { timeSlices } from '../../time-slices.js';
import { protocolsOf } from '../capabilities.js';
import { servedFamilies } from '../families.js';

/** What one service port puts in the kernel, and what it means for stale UDP flows. */
interface Translated {
  /** Its rules in each family's table. */
  rules: Map<IPFamily, PortRules>;
  /** One entry per frontend, with every endpoint its traffic can reach. */
  frontends: FrontendDestinations[];
}

/** One family's table: how its rules are made, and what it holds. */
interface FamilyTable {
  fam: TableFamily;
  options: RulesetOptions;
  fixed: Map<string, string[]>;
  /** What the table holds, as last written; null until a full sync has read the kernel. */
  written: PortTable | null;
}

export class NftablesBackend implements Backend {
  readonly name = 'nftables';
  readonly protocols: readonly Protocol[] = protocolsOf('nftables');
  readonly countsTraffic = true;
  private readonly tables: FamilyTable[];
  private readonly programmed = new ProgrammedFrontends();
  /**
   * Translations by the model's ServicePortState object: the model hands out
   * the same object while a service port is unchanged, so an unchanged port
   * costs a lookup, and a partial sync compares ports by identity.
   */
  private readonly cache = new WeakMap<ServicePortState, Translated>();

  constructor(private readonly opts: NetfilterOptions) {
    const mark = masqueradeMark(opts.masqueradeBit);
    this.tables = servedFamilies('nftables').map((family) => ({
      fam: TABLE_FAMILIES[family],
      options: { family, localTraffic: opts.localTraffic[family] },
      fixed: fixedChains(TABLE_FAMILIES[family], mark, !opts.tcpBeLiberal),
      written: null,
    }));
  }

  async sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    const wanted = new Map(this.tables.map((t) => [t.fam.family, new Map<string, PortRules>()]));
    const frontends: FrontendDestinations[] = [];
    // Translating thousands of new service ports takes long: the event loop gets its turns meanwhile.
    const turn = timeSlices();
    for (const sp of state.values()) {
      await turn();
      const t = this.translate(sp);
      for (const [family, rules] of t.rules) wanted.get(family)!.set(sp.key, rules);
      frontends.push(...t.frontends);
    }
    const full = changed === null || this.tables.some((t) => t.written === null);
    const kernel = full ? await this.kernelObjects() : undefined;
    // Both tables change in one transaction.
    let input = '';
    let chainsWritten = 0;
    let chainsRemoved = 0;
    for (const table of this.tables) {
      const tx = full ? fullTransaction(table.fixed, wanted.get(table.fam.family)!, kernel!.get(table.fam.nft)!) : partialTransaction(wanted.get(table.fam.family)!, table.written!);
      if (isEmpty(tx)) continue;
      input += renderTransaction(table.fam, tx);
      chainsWritten += tx.write.size;
      chainsRemoved += tx.removeChains.length;
    }
    if (input !== '') {
      for (const table of this.tables) table.written = null; // after a failure the next sync starts over from the kernel
      await runCommand('nft', ['-f', '-'], input);
    }
    for (const table of this.tables) table.written = wanted.get(table.fam.family)!;
    this.opts.log.debug({ full, chainsWritten, chainsRemoved }, 'nft transaction');
    const { stats, stale } = this.programmed.update(frontends);
    await flushStaleFlows(stale, this.opts.log);
    return stats;
  }

  async inspect(): Promise<FrontendView[]> {
    return (await this.listings()).flatMap(viewsFromListing);
  }

  /** Every frontend of every service port: each has its map element, and the listing follows it as the contract says. */
  async planned(state: DesiredState): Promise<FrontendView[]> {
    return [...state.values()].flatMap((sp) => sp.frontends.map(frontendView));
  }

  async counters(): Promise<EndpointCounters[]> {
    return (await this.listings()).flatMap(endpointCountersFromListing);
  }

  /** Deletes kube-lb's tables, and with them every chain, rule, map and set kube-lb made; nothing else. */
  async cleanup(): Promise<void> {
    for (const nft of await this.existingTables()) await runCommand('nft', ['delete', 'table', nft, TABLE]);
    for (const table of this.tables) table.written = null;
  }

  async close(): Promise<void> {}

  private translate(sp: ServicePortState): Translated {
    let t = this.cache.get(sp);
    if (t === undefined) {
      t = { rules: new Map(this.tables.map((table) => [table.fam.family, portRules(sp, table.options)])), frontends: frontendDestinations([sp]) };
      this.cache.set(sp, t);
    }
    return t;
  }

  /** The listing of each family's table that exists. */
  private async listings(): Promise<Listing[]> {
    const found: Listing[] = [];
    for (const nft of await this.existingTables()) found.push(parseListing((await runCommand('nft', ['-j', 'list', 'table', nft, TABLE])).stdout));
    return found;
  }

  /** The nft families of kube-lb's tables in the kernel. */
  private async existingTables(): Promise<TableFamily['nft'][]> {
    const { stdout } = await runCommand('nft', ['-j', 'list', 'tables']);
    const items = (JSON.parse(stdout) as { nftables?: { table?: { name: string; family: string } }[] }).nftables ?? [];
    return this.tables.map((t) => t.fam.nft).filter((nft) => items.some((i) => i.table?.name === TABLE && i.table.family === nft));
  }

  /** The chains, affinity sets (with their timeouts) and named counters in each of kube-lb's tables: cheaper to list than the tables. */
  private async kernelObjects(): Promise<Map<TableFamily['nft'], KernelObjects>> {
    const chains = await runCommand('nft', ['-j', 'list', 'chains']);
    const sets = await runCommand('nft', ['-j', 'list', 'sets']);
    const counters = await runCommand('nft', ['-j', 'list', 'counters']);
    type Named = { table: string; family: string; name: string };
    type Item = { chain?: Named; set?: Named & { timeout?: number }; counter?: Named };
    const items = (text: string): Item[] => (JSON.parse(text) as { nftables?: Item[] }).nftables ?? [];
    return new Map(
      this.tables.map(({ fam: { nft } }) => {
        const ours = (o: Named | undefined): o is Named => o?.table === TABLE && o.family === nft;
        const objects: KernelObjects = {
          chains: new Set(items(chains.stdout).flatMap((i) => (ours(i.chain) ? [i.chain.name] : []))),
          sets: new Map(items(sets.stdout).flatMap((i) => (ours(i.set) && i.set.name.startsWith(AFFINITY_PREFIX) ? [[i.set.name, i.set.timeout ?? 0] as const] : []))),
          counters: new Set(items(counters.stdout).flatMap((i) => (ours(i.counter) ? [i.counter.name] : []))),
        };
        return [nft, objects];
      }),
    );
  }
}
