// The nftables backend: kube-proxy's nftables design (see ruleset.ts) in a
// table of kube-lb's own, applied in atomic `nft -f` transactions. After
// the first sync only changed chains and map elements are sent; a full sync
// rewrites everything and removes stale chains found in the kernel.
import type { Backend, FrontendView, SyncStats } from '../backend.js';
import type { DesiredState, Protocol } from '../../model/contract.js';
import { runCommand } from '../netfilter/command.js';
import { ProgrammedFrontends, flushStaleFlows } from '../netfilter/conntrack.js';
import { type NetfilterOptions, masqueradeMark, servicePortsToProgram } from '../netfilter/frontends.js';
import { type Listing, parseListing, viewsFromListing } from './listing.js';
import { FAMILY, NO_ENDPOINTS_MAP, type Ruleset, SERVICE_IPS_MAP, TABLE, type Transaction, buildRuleset, isServicePortChain, renderTransaction } from './ruleset.js';

const MAPS = [SERVICE_IPS_MAP, NO_ENDPOINTS_MAP] as const;

export class NftablesBackend implements Backend {
  readonly name = 'nftables';
  readonly protocols: readonly Protocol[] = ['TCP', 'UDP'];
  /** What the table holds, as last written; null until a full sync has read the kernel. */
  private written: Ruleset | null = null;
  private readonly programmed = new ProgrammedFrontends();
  private readonly mark: string;

  constructor(private readonly opts: NetfilterOptions) {
    this.mark = masqueradeMark(opts.masqueradeBit);
  }

  async sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    const servicePorts = servicePortsToProgram(state);
    const wanted = buildRuleset(servicePorts, this.mark, this.opts.clusterCidr);
    const full = changed === null || this.written === null;
    const tx = full ? fullTransaction(wanted, await this.chainNames()) : partialTransaction(wanted, this.written!);
    const empty = tx.write.size + tx.deleteElements.length + tx.addElements.length + tx.flushMaps.length + tx.removeChains.length === 0;
    if (!empty) {
      this.written = null; // after a failure the next sync starts over from the kernel
      await runCommand('nft', ['-f', '-'], renderTransaction(tx));
    }
    this.written = wanted;
    this.opts.log.debug({ full, chainsWritten: tx.write.size, chainsRemoved: tx.removeChains.length }, 'nft transaction');
    const { stats, stale } = this.programmed.update(servicePorts);
    await flushStaleFlows(stale, this.opts.log);
    return stats;
  }

  async inspect(): Promise<FrontendView[]> {
    const listing = await this.list();
    return listing === null ? [] : viewsFromListing(listing);
  }

  /** Deletes kube-lb's table, and with it every chain, rule and map kube-lb made; nothing else. */
  async cleanup(): Promise<void> {
    if (await this.tableExists()) await runCommand('nft', ['delete', 'table', FAMILY, TABLE]);
    this.written = null;
  }

  async close(): Promise<void> {}

  private async tableExists(): Promise<boolean> {
    const { stdout } = await runCommand('nft', ['-j', 'list', 'tables', FAMILY]);
    const items = (JSON.parse(stdout) as { nftables?: { table?: { name: string } }[] }).nftables ?? [];
    return items.some((i) => i.table?.name === TABLE);
  }

  /** The names of the chains in kube-lb's table: cheaper to list than the whole table. */
  private async chainNames(): Promise<Set<string>> {
    const { stdout } = await runCommand('nft', ['-j', 'list', 'chains', FAMILY]);
    const items = (JSON.parse(stdout) as { nftables?: { chain?: { table: string; name: string } }[] }).nftables ?? [];
    return new Set(items.flatMap((i) => (i.chain?.table === TABLE ? [i.chain.name] : [])));
  }

  /** The table as the kernel holds it, or null if there is none. */
  private async list(): Promise<Listing | null> {
    if (!(await this.tableExists())) return null;
    return parseListing((await runCommand('nft', ['-j', 'list', 'table', FAMILY, TABLE])).stdout);
  }
}

/** Everything, with the maps refilled from scratch and stale service port chains removed. */
function fullTransaction(wanted: Ruleset, kernelChains: ReadonlySet<string>): Transaction {
  const stale = [...kernelChains].filter((c) => isServicePortChain(c) && !wanted.chains.has(c));
  return {
    write: wanted.chains,
    flushMaps: [...MAPS],
    deleteElements: [],
    addElements: MAPS.flatMap((map) => [...wanted.maps[map].values()].map((element) => ({ map, element }))),
    removeChains: stale,
  };
}

/** Only chains and elements that differ from what was written. */
function partialTransaction(wanted: Ruleset, written: Ruleset): Transaction {
  const tx: Transaction = { write: new Map(), flushMaps: [], deleteElements: [], addElements: [], removeChains: [] };
  for (const [chain, rules] of wanted.chains) {
    if (written.chains.get(chain)?.join('\n') !== rules.join('\n')) tx.write.set(chain, rules);
  }
  for (const map of MAPS) {
    for (const [key, element] of wanted.maps[map]) {
      const before = written.maps[map].get(key);
      if (before?.verdict === element.verdict && before.comment === element.comment) continue;
      if (before !== undefined) tx.deleteElements.push({ map, key });
      tx.addElements.push({ map, element });
    }
    for (const key of written.maps[map].keys()) if (!wanted.maps[map].has(key)) tx.deleteElements.push({ map, key });
  }
  tx.removeChains = [...written.chains.keys()].filter((c) => !wanted.chains.has(c));
  return tx;
}
