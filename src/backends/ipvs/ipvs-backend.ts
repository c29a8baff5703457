// The ipvs backend, kube-proxy's IPVS design: every ClusterIP, external IP
// and load-balancer IP on the dummy interface kube-ipvs0, one IPVS virtual
// server per frontend (NodePorts on the node's addresses) with the endpoints
// the model chose as masqueraded real servers, and ipsets plus a few
// iptables rules for masquerading and filtering (netfilter.ts). Changes are
// applied as diffs, one netlink message each; removed endpoints drain
// (draining.ts).
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
import { type FamilySets, type RuleOptions, installRules, readSets, removeRules, setContents, updateSets } from './netfilter.js';
import { Ownership } from './ownership.js';
import { SchedulerChooser, clusterScheduler } from './schedulers.js';
import { ACTIVE_WEIGHT, IpvsTable, type VirtualServer, activeDestinations, destKey } from './virtual-servers.js';
import { protocolsOf } from '../capabilities.js';
import type { Cidr } from '../../net/ip.js';
import { servedFamilies } from '../families.js';

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

/** Whether the kernel has IPVS loaded in this network namespace. */
const ipvsLoaded = (): boolean => fs.existsSync('/proc/net/ip_vs');

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
  /** The set contents last written; null until a full sync has installed the rules. */
  private sets: FamilySets | null = null;
  private drainTimer: NodeJS.Timeout | undefined;

  private constructor(
    lib: NativeAddon,
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
    backend.drainTimer = setInterval(() => backend.checkDraining(), DRAIN_CHECK_INTERVAL_MS);
    backend.drainTimer.unref();
    opts.log.info({ scheduler }, 'ipvs backend ready');
    return backend;
  }

  /** Reads what an earlier kube-lb left, for inspect and cleanup. */
  static open(opts: IpvsOptions): IpvsBackend {
    const lib = native();
    return new IpvsBackend(lib, opts, DummyLink.find(lib));
  }

  async sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    const link = this.link;
    if (!link || !this.drainTimer) throw new Error('ipvs backend opened read-only cannot sync');
    const full = changed === null || this.sets === null;
    const programmed = servicePortsToProgram(state);
    const wanted = new Map(programmed.map((sp) => [frontendKey(sp.frontend), sp]));
    if (full) {
      // Also what this process programmed or is about to: a sync that failed may have left a NodePort out of its set.
      const ownership = new Ownership(link.addresses(), await readSets(), this.opts.excludeCidrs);
      const known = new Set([...wanted.keys(), ...this.applied.keys()]);
      this.applied = this.table.read((f) => known.has(frontendKey(f)) || ownership.owns(f));
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

    let written = 0;
    let removed = 0;
    const released: [string, IPFamily][] = [];
    const failed: string[] = [];
    for (const fk of candidates) {
      const sp = wanted.get(fk);
      const current = this.applied.get(fk);
      try {
        if (sp) {
          if (sp.frontend.kind !== 'NodePort') link.bind(sp.frontend.ip, sp.frontend.family);
          if (this.reconcile(sp, current)) written++;
        } else if (current) {
          this.table.deleteService(current.frontend);
          this.drain.cancel(current.frontend);
          this.applied.delete(fk);
          released.push([current.frontend.ip, current.frontend.family]);
          removed++;
        }
      } catch (err) {
        // One bad service port (say, a scheduler the kernel lacks) must not stop the others; the sync still fails, below.
        this.opts.log.error({ servicePort: sp?.key, frontend: fk, err: (err as Error).message }, 'programming IPVS failed');
        failed.push(`${sp?.key ?? 'removed'} ${fk}: ${(err as Error).message}`);
      }
    }
    this.unbindUnused(link, full ? link.addresses() : released);

    const contents = setContents([...this.applied].flatMap(([fk, vs]) => {
      const sp = wanted.get(fk);
      return sp ? [{ frontend: sp.frontend, destinations: activeDestinations(vs) }] : [];
    }));
    const before = this.sets;
    this.sets = null; // unknown until written: a failure makes the next sync full
    if (full || before === null) await installRules(this.opts, contents, this.families);
    else await updateSets(before, contents);
    this.sets = contents;

    if (full) this.frontendsOf.clear();
    for (const key of full ? state.keys() : changed!) {
      const now = frontendsNow.get(key);
      if (now) this.frontendsOf.set(key, now);
      else this.frontendsOf.delete(key);
    }
    // The failure makes the next sync full, which retries these.
    if (failed.length > 0) throw new Error(`IPVS refused ${failed.length} virtual server(s): ${failed.join('; ')}`);
    return { frontendsWritten: written, frontendsRemoved: removed };
  }

  /** Makes one virtual server match its service port; returns whether anything changed. */
  private reconcile(sp: ProgrammedPort, current: VirtualServer | undefined): boolean {
    const f = sp.frontend;
    // sessionAffinity: ClientIP is IPVS persistence, as in kube-proxy.
    const scheduling = { scheduler: this.schedulers.choose(sp), persistence: f.affinity?.timeoutSeconds ?? 0 };
    let changedAny = false;
    let vs = current;
    if (vs === undefined) {
      this.table.addService(f, scheduling);
      vs = { frontend: f, ...scheduling, realServers: new Map() };
      this.applied.set(frontendKey(f), vs);
      changedAny = true;
    } else if (vs.scheduler !== scheduling.scheduler || vs.persistence !== scheduling.persistence) {
      this.table.setScheduling(f, scheduling);
      Object.assign(vs, scheduling);
      changedAny = true;
    }

    const wantedKeys = new Set(sp.destinations.map(destKey));
    for (const d of sp.destinations) {
      const rs = vs.realServers.get(destKey(d));
      if (rs === undefined) {
        this.table.addRealServer(f, d, ACTIVE_WEIGHT);
        vs.realServers.set(destKey(d), { destination: d, weight: ACTIVE_WEIGHT });
        changedAny = true;
      } else if (rs.weight !== ACTIVE_WEIGHT) {
        this.table.setWeight(f, d, ACTIVE_WEIGHT);
        rs.weight = ACTIVE_WEIGHT;
        this.drain.cancel(f, d);
        changedAny = true;
      }
    }
    for (const [key, rs] of vs.realServers) {
      if (wantedKeys.has(key)) continue;
      if (!needsDraining(f)) {
        this.table.deleteRealServer(f, rs.destination);
        vs.realServers.delete(key);
        changedAny = true;
        continue;
      }
      if (rs.weight !== 0) {
        this.table.setWeight(f, rs.destination, 0);
        rs.weight = 0;
        changedAny = true;
      }
      // Also picks up real servers an earlier kube-lb left draining.
      if (!this.drain.has(f, rs.destination)) {
        this.drain.add(f, rs.destination, performance.now() + this.opts.drainTimeoutMs);
      }
    }
    return changedAny;
  }

  /** Unbinds the candidate addresses that no virtual server uses any more. */
  private unbindUnused(link: DummyLink, candidates: Iterable<[string, IPFamily]>): void {
    const used = new Set([...this.applied.values()].map((vs) => vs.frontend.ip));
    for (const [ip, family] of candidates) if (!used.has(ip)) link.unbind(ip, family);
  }

  /** Deletes draining real servers whose connections have ended or whose grace period is over. */
  private checkDraining(): void {
    const now = performance.now();
    for (const [fk, entries] of this.drain.byFrontend()) {
      const vs = this.applied.get(fk);
      try {
        const stats = vs ? this.table.stats(vs.frontend) : new Map();
        for (const e of entries) {
          const st = stats.get(destKey(e.destination));
          if (!drainDone(st?.connections, e.deadline, now)) continue;
          if (st) this.table.deleteRealServer(e.frontend, e.destination);
          vs?.realServers.delete(destKey(e.destination));
          this.drain.cancel(e.frontend, e.destination);
          this.opts.log.info({ frontend: fk, destination: destKey(e.destination), connections: st?.connections ?? 0, timedOut: now >= e.deadline }, 'drained real server deleted');
        }
      } catch (err) {
        this.opts.log.warn({ frontend: fk, err: (err as Error).message }, 'checking draining real servers failed');
      }
    }
  }

  /** kube-lb's virtual servers as the kernel holds them, with what the sets say each is; none where IPVS is not loaded. */
  private async readOwned(): Promise<{ vs: VirtualServer; kind: FrontendKind }[]> {
    if (!ipvsLoaded()) return [];
    const ownership = new Ownership(this.link?.addresses() ?? new Map(), await readSets(), this.opts.excludeCidrs);
    return [...this.table.read((f) => ownership.owns(f)).values()].map((vs) => ({ vs, kind: ownership.kind(vs.frontend) }));
  }

  async inspect(): Promise<FrontendView[]> {
    // The frontend as every backend shows it: its family is IPVS's key, not part of the view.
    return (await this.readOwned()).map(({ vs, kind }) => {
      const { ip, port, protocol } = vs.frontend;
      return { kind, frontend: { ip, port, protocol }, destinations: activeDestinations(vs) };
    });
  }

  async planned(state: DesiredState): Promise<FrontendView[]> {
    return servicePortsToProgram(state).map(({ frontend }) => frontendView(frontend));
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
    for (const { vs } of await this.readOwned()) await leftovers.attempt(`virtual server ${frontendKey(vs.frontend)}`, () => this.table.deleteService(vs.frontend));
    const link = this.link;
    if (link) {
      await leftovers.attempt(`link ${DUMMY_INTERFACE}`, () => link.delete());
      this.link = null;
    }
    await removeRules(leftovers, this.families);
    leftovers.throwIfAny('ipvs cleanup');
  }

  async close(): Promise<void> {
    clearInterval(this.drainTimer);
    this.drainTimer = undefined;
  }
}
