// The nftables backend: kube-proxy's nftables design (see ruleset.ts) in a
// table of kube-lb's own, applied in atomic `nft -f` transactions. After
// the first sync only changed chains, sets and map elements are sent; a
// full sync rewrites everything and removes stale chains and sets found in
// the kernel.
import { type Backend, type EndpointCounters, type FrontendView, type SyncStats, frontendView } from '../backend.js';
import type { DesiredState, Protocol, ServicePortState } from '../../model/contract.js';
import { runCommand } from '../netfilter/command.js';
import { type FrontendDestinations, ProgrammedFrontends, flushStaleFlows } from '../netfilter/conntrack.js';
import { type NetfilterOptions, frontendDestinations, masqueradeMark } from '../netfilter/frontends.js';
import { type Listing, endpointCountersFromListing, parseListing, viewsFromListing } from './listing.js';
import { AFFINITY_PREFIX, FAMILY, type PortRules, type RulesetOptions, TABLE, fixedChains, isEmpty, portRules, renderTransaction } from './ruleset.js';
import { type KernelObjects, type PortTable, fullTransaction, partialTransaction } from './transactions.js';
import { timeSlices } from '../../time-slices.js';
import { protocolsOf } from '../capabilities.js';

/** What one service port puts in the kernel, and what it means for stale UDP flows. */
interface Translated {
  rules: PortRules;
  /** One entry per frontend, with every endpoint its traffic can reach. */
  frontends: FrontendDestinations[];
}

export class NftablesBackend implements Backend {
  readonly name = 'nftables';
  readonly protocols: readonly Protocol[] = protocolsOf('nftables');
  readonly countsTraffic = true;
  /** What the table holds, as last written; null until a full sync has read the kernel. */
  private written: PortTable | null = null;
  private readonly programmed = new ProgrammedFrontends();
  private readonly options: RulesetOptions;
  private readonly fixed: Map<string, string[]>;
  /**
   * Translations by the model's ServicePortState object: the model hands out
   * the same object while a service port is unchanged, so an unchanged port
   * costs a lookup, and a partial sync compares ports by identity.
   */
  private readonly cache = new WeakMap<ServicePortState, Translated>();

  constructor(private readonly opts: NetfilterOptions) {
    this.options = { localTraffic: opts.localTraffic };
    this.fixed = fixedChains(masqueradeMark(opts.masqueradeBit), !opts.tcpBeLiberal);
  }

  async sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    const wanted = new Map<string, PortRules>();
    const frontends: FrontendDestinations[] = [];
    // Translating thousands of new service ports takes long: the event loop gets its turns meanwhile.
    const turn = timeSlices();
    for (const sp of state.values()) {
      await turn();
      const t = this.translate(sp);
      wanted.set(sp.key, t.rules);
      frontends.push(...t.frontends);
    }
    const full = changed === null || this.written === null;
    const tx = full ? fullTransaction(this.fixed, wanted, await this.kernelObjects()) : partialTransaction(wanted, this.written!);
    if (!isEmpty(tx)) {
      this.written = null; // after a failure the next sync starts over from the kernel
      await runCommand('nft', ['-f', '-'], renderTransaction(tx));
    }
    this.written = wanted;
    this.opts.log.debug({ full, chainsWritten: tx.write.size, chainsRemoved: tx.removeChains.length }, 'nft transaction');
    const { stats, stale } = this.programmed.update(frontends);
    await flushStaleFlows(stale, this.opts.log);
    return stats;
  }

  async inspect(): Promise<FrontendView[]> {
    if (!(await this.tableExists())) return [];
    return viewsFromListing(await this.listing());
  }

  /** Every frontend of every service port: each has its map element, and the listing follows it as the contract says. */
  async planned(state: DesiredState): Promise<FrontendView[]> {
    return [...state.values()].flatMap((sp) => sp.frontends.map(frontendView));
  }

  async counters(): Promise<EndpointCounters[]> {
    if (!(await this.tableExists())) return [];
    return endpointCountersFromListing(await this.listing());
  }

  /** Deletes kube-lb's table, and with it every chain, rule, map and set kube-lb made; nothing else. */
  async cleanup(): Promise<void> {
    if (await this.tableExists()) await runCommand('nft', ['delete', 'table', FAMILY, TABLE]);
    this.written = null;
  }

  async close(): Promise<void> {}

  private translate(sp: ServicePortState): Translated {
    let t = this.cache.get(sp);
    if (t === undefined) {
      t = { rules: portRules(sp, this.options), frontends: frontendDestinations([sp]) };
      this.cache.set(sp, t);
    }
    return t;
  }

  private async listing(): Promise<Listing> {
    return parseListing((await runCommand('nft', ['-j', 'list', 'table', FAMILY, TABLE])).stdout);
  }

  private async tableExists(): Promise<boolean> {
    const { stdout } = await runCommand('nft', ['-j', 'list', 'tables', FAMILY]);
    const items = (JSON.parse(stdout) as { nftables?: { table?: { name: string } }[] }).nftables ?? [];
    return items.some((i) => i.table?.name === TABLE);
  }

  /** The chains, affinity sets (with their timeouts) and named counters in kube-lb's table: cheaper to list than the whole table. */
  private async kernelObjects(): Promise<KernelObjects> {
    const chains = await runCommand('nft', ['-j', 'list', 'chains', FAMILY]);
    const sets = await runCommand('nft', ['-j', 'list', 'sets', FAMILY]);
    const counters = await runCommand('nft', ['-j', 'list', 'counters', FAMILY]);
    type Named = { table: string; family: string; name: string };
    type Item = { chain?: Named; set?: Named & { timeout?: number }; counter?: Named };
    const items = (text: string): Item[] => (JSON.parse(text) as { nftables?: Item[] }).nftables ?? [];
    const ours = (o: Named | undefined): o is Named => o?.table === TABLE && o.family === FAMILY;
    return {
      chains: new Set(items(chains.stdout).flatMap((i) => (ours(i.chain) ? [i.chain.name] : []))),
      sets: new Map(items(sets.stdout).flatMap((i) => (ours(i.set) && i.set.name.startsWith(AFFINITY_PREFIX) ? [[i.set.name, i.set.timeout ?? 0] as const] : []))),
      counters: new Set(items(counters.stdout).flatMap((i) => (ours(i.counter) ? [i.counter.name] : []))),
    };
  }
}
