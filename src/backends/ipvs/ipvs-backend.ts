// The ipvs backend, kube-proxy's IPVS design: every ClusterIP, external IP
// and load-balancer IP on the dummy interface kube-ipvs0, one IPVS virtual
// server per frontend (NodePorts on the node's addresses) with the endpoints
// the model chose as masqueraded real servers, and ipsets plus a few
// iptables rules for masquerading and filtering (netfilter.ts). Changes are
// applied as diffs, one netlink message each, a sync's messages sent
// together on a worker thread; removed endpoints drain (draining.ts).
import fs from 'node:fs';
import { type Backend, type EndpointCounters, type FrontendView, type SyncStats, frontendView } from '../backend.js';
import type { DesiredState, FrontendKind, IPFamily, Protocol } from '../../model/contract.js';
import { frontendKey } from '../../model/contract.js';
import { native, type NativeAddon } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { type ProgrammedPort, servicePortsToProgram } from './service-ports.js';
import { DUMMY_INTERFACE, DummyLink } from './dummy-link.js';
import { DrainQueue, drainDone, needsDraining } from './draining.js';
import { type IpvsTimeouts, applySysctls, applyTimeouts, requireKernelFeatures, requiredFeatures } from './kernel.js';
import { Leftovers } from './leftovers.js';
import { type FamilySets, type RuleOptions, type SetEntry, SetChangeBatches, SetEntries, applySetChanges, frontendSetEntries, readSets, removeRules, writeSetsAndChains } from './netfilter.js';
import { allSettledOrThrow } from './settled.js';
import { Ownership } from './ownership.js';
import { SchedulerChooser, clusterScheduler } from './schedulers.js';
import { ACTIVE_WEIGHT, type IpvsChanges, IpvsTable, type RealServerStats, type VirtualServer, activeDestinations, destKey } from './virtual-servers.js';
import { protocolsOf } from '../capabilities.js';
import type { Cidr } from '../../net/ip.js';
import { servedFamilies } from '../families.js';
import { timeSlices } from '../../time-slices.js';

export interface IpvsOptions extends RuleOptions {
  log: Logger;
  /** --ipvs-scheduler; undefined gives rr, an unknown name is refused. */
  scheduler: string | undefined;
  /** --ipvs-strict-arp. */
  strictArp: boolean;
  /** --ipvs-drain-timeout: how long a removed TCP/SCTP endpoint may keep its connections. */
  drainTimeoutMs: number;
  /** --ipvs-tcp-timeout, --ipvs-tcpfin-timeout, --ipvs-udp-timeout. */
  timeouts: IpvsTimeouts;
  /** --ipvs-exclude-cidrs: virtual servers there are never removed. */
  excludeCidrs: readonly Cidr[];
}

const DRAIN_CHECK_INTERVAL_MS = 1000;
/** Set changes per ipsetApply of a partial sync: few calls for a large sync, the first sent early. */
const SET_CHANGE_BATCH = 2000;

/** Whether the kernel has IPVS loaded in this network namespace. */
const ipvsLoaded = (): boolean => fs.existsSync('/proc/net/ip_vs');

/**
 * A programmed frontend's set entries: a KUBE-LOOP-BACK entry for each of
 * its endpoints on this node, or, given the virtual server's real servers
 * that get new connections (`active`, by destKey), for those of them.
 */
function setEntriesOf(sp: ProgrammedPort, active?: ReadonlySet<string>): SetEntry[] {
  return frontendSetEntries(sp.frontend, active ? sp.onThisNode.filter((d) => active.has(destKey(d))) : sp.onThisNode);
}

export class IpvsBackend implements Backend {
  readonly name = 'ipvs';
  readonly protocols: readonly Protocol[] = protocolsOf('ipvs');
  readonly countsTraffic = true;
  /** The families whose ipsets and ip(6)tables rules it writes. */
  private readonly families: IPFamily[] = servedFamilies('ipvs');
  private readonly table: IpvsTable;
  private readonly schedulers: SchedulerChooser;
  private readonly drain = new DrainQueue();
  /** kube-lb's virtual servers by frontendKey: read from the kernel on full syncs, then kept by sync. */
  private applied = new Map<string, VirtualServer>();
  /** Frontends each service port key was last programmed with. */
  private readonly frontendsOf = new Map<string, string[]>();
  /** The set entries last written; null until a full sync has installed the rules. */
  private sets: SetEntries | null = null;
  private drainTimer: NodeJS.Timeout | undefined;
  /** The last IPVS write begun (a sync's or a drain check's): the next waits for it, so batches reach the kernel one at a time, in order. */
  private ipvsWrites: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly lib: NativeAddon,
    private readonly opts: IpvsOptions,
    private link: DummyLink | null,
  ) {
    this.table = new IpvsTable(lib);
    this.schedulers = new SchedulerChooser(clusterScheduler(opts.scheduler), opts.log);
  }

  /** Checks the kernel, creates kube-ipvs0 and starts draining; the first sync is full. */
  static async run(opts: IpvsOptions): Promise<IpvsBackend> {
    const scheduler = clusterScheduler(opts.scheduler);
    await requireKernelFeatures(requiredFeatures(scheduler), opts.log);
    applySysctls(opts.log, opts.strictArp);
    const lib = native();
    applyTimeouts(lib, opts.timeouts, opts.log);
    const backend = new IpvsBackend(lib, opts, DummyLink.ensure(lib));
    backend.scheduleDrainCheck();
    opts.log.info({ scheduler }, 'ipvs backend ready');
    return backend;
  }

  /** Reads what an earlier kube-lb left, for inspect and cleanup. */
  static open(opts: IpvsOptions): IpvsBackend {
    const lib = native();
    return new IpvsBackend(lib, opts, DummyLink.find(lib));
  }

  sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    return this.serialized(() => this.syncNow(state, changed));
  }

  private async syncNow(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    const link = this.link;
    if (!link || !this.drainTimer) throw new Error('ipvs backend opened read-only cannot sync');
    // A partial sync changes the set entries this process wrote; a full one reads the kernel's sets, to know what it owns and what to change.
    const sets: { partial: SetEntries } | { kernel: FamilySets } = changed !== null && this.sets !== null ? { partial: this.sets } : { kernel: readSets(this.lib) };
    const full = 'kernel' in sets;
    // A partial sync looks only at the service ports that changed.
    const programmed = servicePortsToProgram(full ? state.values() : [...changed!].flatMap((key) => state.get(key) ?? []));
    const wanted = new Map(programmed.map((sp) => [frontendKey(sp.frontend), sp]));
    // A full sync may unbind only what was bound when it looked: an address another binds meanwhile is not its to judge.
    const boundAtStart = full ? link.addresses() : new Map<string, IPFamily>();
    if (full) {
      // Also what this process programmed or is about to: a sync that failed may have left a NodePort out of its set.
      const ownership = new Ownership(boundAtStart, sets.kernel, this.opts.excludeCidrs);
      const known = new Set([...wanted.keys(), ...this.applied.keys()]);
      this.applied = await this.table.read((f) => known.has(frontendKey(f)) || ownership.owns(f));
    }
    const frontendsNow = new Map<string, string[]>();
    for (const sp of programmed) frontendsNow.set(sp.key, [...(frontendsNow.get(sp.key) ?? []), frontendKey(sp.frontend)]);

    const candidates = new Set<string>();
    if (full) {
      for (const fk of wanted.keys()) candidates.add(fk);
      for (const fk of this.applied.keys()) candidates.add(fk);
    } else {
      for (const key of changed!) {
        for (const fk of frontendsNow.get(key) ?? []) candidates.add(fk);
        for (const fk of this.frontendsOf.get(key) ?? []) candidates.add(fk);
      }
    }

    let removed = 0;
    const released: [string, IPFamily][] = [];
    /** By frontend key, why it failed. */
    const failed = new Map<string, string>();
    // One bad service port (say, a scheduler the kernel lacks) must not stop the others; the sync still fails, below.
    const fail = (fk: string, err: Error): void => {
      const sp = wanted.get(fk);
      this.opts.log.error({ servicePort: sp?.key, frontend: fk, err: err.message }, 'programming IPVS failed');
      failed.set(fk, `${sp?.key ?? 'removed'} ${fk}: ${err.message}`);
    };
    /** The address a wanted frontend binds on kube-ipvs0 (a NodePort's are the node's). */
    const addressOf = (fk: string): [string, IPFamily][] => {
      const f = wanted.get(fk)?.frontend;
      return f && f.kind !== 'NodePort' ? [[f.ip, f.family]] : [];
    };
    // The addresses are bound, all together on a worker thread, while the
    // IPVS changes are worked out; a frontend whose address could not be
    // bound is then left out, its changes withdrawn before any is sent.
    const binding = link.bind([...candidates].flatMap(addressOf));
    const changes = this.table.changes();
    const touched = new Set<string>();
    // Thousands of frontends on a full sync or a large change: the event loop gets its turns meanwhile.
    const turn = timeSlices();
    for (const fk of candidates) {
      await turn();
      const sp = wanted.get(fk);
      const current = this.applied.get(fk);
      if (sp) {
        if (this.reconcile(changes, fk, sp, current)) touched.add(fk);
      } else if (current) {
        changes.deleteService(fk, current.frontend, () => {
          this.drain.cancel(current.frontend);
          this.applied.delete(fk);
          released.push([current.frontend.ip, current.frontend.family]);
          removed++;
        });
      }
    }
    const bindFailed = await binding;
    const unbound = new Set<string>();
    for (const fk of candidates) {
      const [address] = addressOf(fk);
      const bindErr = address && bindFailed.get(address[0]);
      if (!bindErr) continue;
      fail(fk, bindErr);
      unbound.add(fk);
      touched.delete(fk);
    }
    changes.withdraw(unbound);
    // The kernel takes the IPVS changes on a worker thread while the set
    // entries are worked out and written: a frontend's are planned from the
    // destinations it wants, which its virtual server holds once its changes
    // are taken; one that failed gets them from what the kernel holds (an
    // endpoint IPVS refused gets no KUBE-LOOP-BACK entry), corrected once
    // IPVS has answered.
    const longIpvsExchange = changes.size >= SET_CHANGE_BATCH;
    const ipvsApplied = changes.apply().then(async (refusedByIpvs) => {
      // Also the addresses bound for frontends IPVS refused: nothing answers there, not even the node's own ports.
      await this.unbindUnused(link, [...(full ? boundAtStart : released), ...[...refusedByIpvs.keys()].flatMap(addressOf)]);
      return refusedByIpvs;
    });
    const taken = (fk: string): SetEntry[] => {
      const vs = this.applied.get(fk);
      const sp = wanted.get(fk);
      return vs && sp ? setEntriesOf(sp, new Set(activeDestinations(vs).map(destKey))) : [];
    };
    const planned = (fk: string): SetEntry[] => {
      const sp = wanted.get(fk);
      return sp && !failed.has(fk) ? setEntriesOf(sp) : taken(fk);
    };
    this.sets = null; // unknown until written: a failure makes the next sync full
    // A full sync compares every frontend's entries with the kernel's sets; a partial one changes those this process wrote.
    const entries = 'kernel' in sets ? new SetEntries() : sets.partial;
    // After a long IPVS exchange: the event loop and two long kernel
    // exchanges at once leave a two-CPU node's event loop waiting for CPU.
    // A short one goes beside them, which keeps a small sync's wait short.
    const batches = new SetChangeBatches(this.lib, SET_CHANGE_BATCH, longIpvsExchange ? ipvsApplied : Promise.resolve());
    for (const fk of candidates) {
      await turn();
      const changed = entries.set(fk, planned(fk));
      if (!full) batches.add(changed); // a full sync compares the entries as a whole
    }
    const setsWritten = 'kernel' in sets ? writeSetsAndChains(this.lib, entries, sets.kernel, this.families, this.opts) : batches.end();
    const [refused] = await allSettledOrThrow([ipvsApplied, setsWritten]);
    for (const [fk, err] of refused) fail(fk, err);
    await applySetChanges(this.lib, [...refused.keys()].flatMap((fk) => entries.set(fk, taken(fk))));
    this.sets = entries;
    const written = [...touched].filter((fk) => !refused.has(fk)).length;
    if (full) this.frontendsOf.clear();
    for (const key of full ? state.keys() : changed!) {
      const now = frontendsNow.get(key);
      if (now) this.frontendsOf.set(key, now);
      else this.frontendsOf.delete(key);
    }
    // The failure makes the next sync full, which retries these.
    if (failed.size > 0) throw new Error(`IPVS refused ${failed.size} virtual server(s): ${[...failed.values()].join('; ')}`);
    return { frontendsWritten: written, frontendsRemoved: removed };
  }

  /**
   * Queues the changes that make one virtual server match its service port;
   * returns whether there are any. Each updates what kube-lb knows of the
   * kernel (applied, drain) once the kernel has taken it.
   */
  private reconcile(changes: IpvsChanges, fk: string, sp: ProgrammedPort, current: VirtualServer | undefined): boolean {
    const f = sp.frontend;
    // sessionAffinity: ClientIP is IPVS persistence, as in kube-proxy.
    const scheduling = { scheduler: this.schedulers.choose(sp), persistence: f.affinity?.timeoutSeconds ?? 0 };
    const queuedBefore = changes.size;
    let vs = current;
    if (vs === undefined) {
      const added: VirtualServer = { frontend: f, ...scheduling, realServers: new Map() };
      changes.addService(fk, f, scheduling, () => this.applied.set(fk, added));
      vs = added;
    } else if (vs.scheduler !== scheduling.scheduler || vs.persistence !== scheduling.persistence) {
      const updated = vs;
      changes.setScheduling(fk, f, scheduling, () => Object.assign(updated, scheduling));
    }
    const realServers = vs.realServers;
    // The keys of the destinations it wants, to find the real servers it holds beyond them; a new virtual server holds none.
    const wantedKeys = new Set<string>();
    const holdsAny = realServers.size > 0;
    // Indexed, as netfilter.ts's per-entry loops: this runs cold on a large first sync.
    for (let i = 0; i < sp.destinations.length; i++) {
      const d = sp.destinations[i]!;
      const key = destKey(d);
      if (holdsAny) wantedKeys.add(key);
      const rs = realServers.get(key);
      if (rs === undefined) {
        changes.addRealServer(fk, f, d, ACTIVE_WEIGHT, () => realServers.set(key, { destination: d, weight: ACTIVE_WEIGHT }));
      } else if (rs.weight !== ACTIVE_WEIGHT) {
        changes.setWeight(fk, f, d, ACTIVE_WEIGHT, () => {
          rs.weight = ACTIVE_WEIGHT;
          this.drain.cancel(f, d);
        });
      }
    }
    for (const [key, rs] of realServers) {
      if (wantedKeys.has(key)) continue;
      if (!needsDraining(f)) {
        changes.deleteRealServer(fk, f, rs.destination, () => realServers.delete(key));
        continue;
      }
      // Also picks up real servers an earlier kube-lb left draining.
      const startDraining = (): void => {
        if (!this.drain.has(f, rs.destination)) this.drain.add(f, rs.destination, performance.now() + this.opts.drainTimeoutMs);
      };
      if (rs.weight === 0) startDraining();
      else {
        changes.setWeight(fk, f, rs.destination, 0, () => {
          rs.weight = 0;
          startDraining();
        });
      }
    }
    return changes.size > queuedBefore;
  }

  /** Unbinds the candidate addresses that no virtual server uses any more. */
  private async unbindUnused(link: DummyLink, candidates: Iterable<[string, IPFamily]>): Promise<void> {
    const addresses = [...candidates];
    if (addresses.length === 0) return; // most syncs remove no frontend: skip the walk over every virtual server
    const used = new Set([...this.applied.values()].map((vs) => vs.frontend.ip));
    await link.unbind(addresses.filter(([ip]) => !used.has(ip)));
  }

  /** Runs `write` once the IPVS writes begun before it have ended. */
  private serialized<T>(write: () => Promise<T>): Promise<T> {
    const run = this.ipvsWrites.then(write);
    this.ipvsWrites = run.catch(() => undefined);
    return run;
  }

  /** Checks the draining real servers a while after the last check ended, until close. */
  private scheduleDrainCheck(): void {
    this.drainTimer = setTimeout(() => {
      void this.serialized(() => this.checkDraining())
        .catch((err: Error) => this.opts.log.warn({ err: err.message }, 'checking draining real servers failed'))
        .finally(() => {
          if (this.drainTimer) this.scheduleDrainCheck();
        });
    }, DRAIN_CHECK_INTERVAL_MS);
    this.drainTimer.unref();
  }

  /** Deletes draining real servers whose connections have ended or whose grace period is over. */
  private async checkDraining(): Promise<void> {
    const now = performance.now();
    const changes = this.table.changes();
    for (const [fk, entries] of this.drain.byFrontend()) {
      const vs = this.applied.get(fk);
      let stats: Map<string, RealServerStats>;
      try {
        stats = vs ? this.table.stats(vs.frontend) : new Map();
      } catch (err) {
        this.opts.log.warn({ frontend: fk, err: (err as Error).message }, 'checking draining real servers failed');
        continue;
      }
      for (const e of entries) {
        const st = stats.get(destKey(e.destination));
        if (!drainDone(st?.connections, e.deadline, now)) continue;
        const deleted = (): void => {
          vs?.realServers.delete(destKey(e.destination));
          this.drain.cancel(e.frontend, e.destination);
          this.opts.log.info({ frontend: fk, destination: destKey(e.destination), connections: st?.connections ?? 0, timedOut: now >= e.deadline }, 'drained real server deleted');
        };
        if (st) changes.deleteRealServer(fk, e.frontend, e.destination, deleted);
        else deleted();
      }
    }
    try {
      for (const [fk, err] of await changes.apply()) this.opts.log.warn({ frontend: fk, err: err.message }, 'checking draining real servers failed');
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'deleting drained real servers failed');
    }
  }

  /** kube-lb's virtual servers as the kernel holds them, with what the sets say each is; none where IPVS is not loaded. */
  private async readOwned(): Promise<{ vs: VirtualServer; kind: FrontendKind }[]> {
    if (!ipvsLoaded()) return [];
    const ownership = new Ownership(this.link?.addresses() ?? new Map(), readSets(this.lib), this.opts.excludeCidrs);
    return [...(await this.table.read((f) => ownership.owns(f))).values()].map((vs) => ({ vs, kind: ownership.kind(vs.frontend) }));
  }

  async inspect(): Promise<FrontendView[]> {
    // The frontend as every backend shows it: its family is IPVS's key, not part of the view.
    return (await this.readOwned()).map(({ vs, kind }) => {
      const { ip, port, protocol } = vs.frontend;
      return { kind, frontend: { ip, port, protocol }, destinations: activeDestinations(vs) };
    });
  }

  async planned(state: DesiredState): Promise<FrontendView[]> {
    return servicePortsToProgram(state.values()).map(({ frontend }) => frontendView(frontend));
  }

  /** What IPVS counted for each real server of each virtual server: one virtual server per frontend. */
  async counters(): Promise<EndpointCounters[]> {
    return (await this.readOwned()).flatMap(({ vs }) => {
      const stats = this.table.stats(vs.frontend);
      return [...vs.realServers].flatMap(([key, r]) => {
        const st = stats.get(key);
        if (st === undefined || st.scheduled === null) return [];
        return [{ frontends: [vs.frontend], destination: r.destination, connections: st.scheduled, ...(st.packets !== null && st.bytes !== null ? { packets: st.packets, bytes: st.bytes } : {}) }];
      });
    });
  }

  /** Removes everything it can, then reports what it could not. */
  async cleanup(): Promise<void> {
    await this.close();
    const leftovers = new Leftovers();
    const changes = this.table.changes();
    for (const { vs } of await this.readOwned()) changes.deleteService(`virtual server ${frontendKey(vs.frontend)}`, vs.frontend, () => {});
    let refused = new Map<string, Error>();
    await leftovers.attempt('virtual servers', async () => (refused = await changes.apply()));
    for (const [what, err] of refused) leftovers.note(what, err);
    const link = this.link;
    if (link) {
      await leftovers.attempt(`link ${DUMMY_INTERFACE}`, () => link.delete());
      this.link = null;
    }
    await removeRules(leftovers, this.families);
    leftovers.throwIfAny('ipvs cleanup');
  }

  async close(): Promise<void> {
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    await this.ipvsWrites; // a drain check may be writing
  }
}
