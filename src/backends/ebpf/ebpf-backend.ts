// The ebpf backend: service frontends as BPF hash-map entries, looked up by
// TC programs on pod interfaces and uplinks and by cgroup programs for the
// node's own sockets.
import { type Backend, type EndpointCounters, type FrontendView, type MapFill, type SyncStats, addCounts } from '../backend.js';
import { type DesiredState, type Destination, type NodeView, type Protocol, type ResolvedFrontend, type ServicePortState, destinationKey, frontendKey } from '../../model/contract.js';
import { native, type NativeAddon } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { type AttachOptions, Attacher, detachAll } from './attach.js';
import { flushStaleFlows } from './conntrack.js';
import { staleFlows } from '../stale-flows.js';
import {
  ADOPT_MAP,
  type LoadedDatapath,
  type LoadedXdp,
  MAPS,
  type MapFds,
  type MapSizes,
  SOCK_CONFIG_MAP,
  SOCK_DESTROY_PROGRAM,
  SOCK_GONE_MAP,
  closeMaps,
  loadDatapath,
  loadXdpProgram,
  openPinnedIfaces,
  openPinnedMaps,
  pinnedMaps,
  removePins,
} from './datapath.js';
import { LinkWatcher } from './links.js';
import { type Netns, currentNetns } from './netns.js';
import { NO_CGROUP2, type SocketLb, attachSockets, detachSockets, setSockConfig, socketCgroup, withoutSockets } from './sockets.js';
import { SocketDestroyer, goneSocketBackends } from './stale-sockets.js';
import { MapFillCache, filledMaps } from './map-stats.js';
import { type DropCounts, readDrops } from './drops.js';
import { entriesOf, type RoomRequest, refusedRequests } from './room.js';
import { BackendStatsMap } from './backend-stats.js';
import { type ChunkKey, type ServiceChange, type ServiceEntry, ServiceMap, type SlotKey, type SvcId, sameMeta, svcKey } from './service-map.js';
import type { NodeAddresses, SvcMeta } from './encoding.js';
import { type RangeChange, SourceRangeMap } from './source-ranges.js';
import { liveFlows, recordStackFlows, removeServices, setAdopting, type StackFlow } from './takeover.js';
import { protocolsOf } from '../capabilities.js';

export interface EbpfOptions {
  pinPath: string;
  /** --cgroup-root; undefined: the cgroup2 mount in /proc/self/mounts. */
  cgroupRoot: string | undefined;
  log: Logger;
}

export interface EbpfRunOptions extends EbpfOptions, AttachOptions {
  mapSizes: MapSizes;
  /** --bpf-lb-maglev-table-size: entries of the Maglev table of each service that uses Maglev (a prime). */
  maglevTableSize: number;
  /** --bpf-socket-lb. */
  socketLb: SocketLb;
  /** --takeover from a datapath the stack's conntrack translates for: its flows stay with the stack (takeover.ts). */
  adopting?: boolean;
}

/** A change that takes more entries than it holds. */
function needsRoom(change: ServiceChange): boolean {
  return entriesOf(change.wanted) > entriesOf(change.current);
}

interface WantedService extends SvcId {
  meta: SvcMeta;
  destinations: Destination[];
  sourceRanges: string[];
}

/** A map service wanted for a service port. */
interface WantedFor extends WantedService {
  port: ServicePortState;
}

/**
 * The map services of a frontend: pods reach its internal endpoint set on
 * pod interfaces; an external frontend also has an external-scope service
 * for clients outside the node, on the uplinks, with its external set and
 * SNAT where the traffic policy masquerades every source. Both have a
 * Maglev table of maglevTableSize entries, or none where it is 0.
 */
function mapServices(f: ResolvedFrontend, maglevTableSize: number): WantedService[] {
  const frontend = { ip: f.ip, port: f.port, protocol: f.protocol };
  const meta = { kind: f.kind, noEndpoints: f.noEndpoints, snat: false, sourceRanges: f.sourceRanges.length > 0, affinityTimeout: f.affinity?.timeoutSeconds ?? 0, maglevTableSize };
  const internal: WantedService = { frontend, scope: 'internal', family: f.family, meta, destinations: f.internal.destinations, sourceRanges: f.sourceRanges };
  if (f.kind === 'ClusterIP') return [internal];
  return [internal, { ...internal, scope: 'external', meta: { ...meta, snat: f.masquerade === 'all' }, destinations: f.external.destinations }];
}

/** A frontend's view is where traffic from outside the node goes: a ClusterIP's only service, the external one of the others. */
function viewOf(services: readonly (SvcId & { meta: SvcMeta; destinations: readonly Destination[] })[]): FrontendView[] {
  return services.filter((s) => (s.meta.kind === 'ClusterIP') === (s.scope === 'internal')).map((s) => ({ kind: s.meta.kind, frontend: s.frontend, destinations: [...s.destinations] }));
}

const sameMembers = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x) => b.includes(x));

/** Slots keep their order, so the map's backends are compared as a set. */
function sameDestinationSet(a: readonly Destination[], b: readonly Destination[]): boolean {
  if (a.length !== b.length) return false;
  const keys = new Set(a.map(destinationKey));
  return b.every((d) => keys.has(destinationKey(d)));
}

export class EbpfBackend implements Backend {
  readonly name = 'ebpf';
  readonly protocols: readonly Protocol[] = protocolsOf('ebpf');
  readonly countsTraffic = true;
  /** What the map holds, by svcKey: read at start, then kept by sync. */
  private applied = new Map<string, ServiceEntry>();
  /** What kube_lb_source_ranges holds, by frontendKey: read at start, then kept by sync. */
  private appliedRanges = new Map<string, string[]>();
  /** The map services (svcKey) of each service port key in the last state synced. */
  private readonly servicesOf = new Map<string, string[]>();
  /** Entries the map holds, orphans included. */
  private entries = 0;
  /** Entries of no service, read at start; the next sync deletes them. */
  private orphans: SlotKey[] = [];
  /** kube_lb_maglev's chunks of no table, read at start; the next sync deletes them. */
  private orphanChunks: ChunkKey[] = [];
  /** --bpf-lb-maglev-table-size. */
  private maglevTableSize = 0;
  /** kube_lb_svc's capacity. */
  private maxEntries = 0;
  /** A write failed: what the map holds is unknown until read again. */
  private unread = false;
  /** Service ports refused for want of room, by key; every sync tries them again. */
  private readonly refused = new Set<string>();
  private attacher: Attacher | undefined;
  /** This namespace, whose sockets the cgroup programs serve. */
  private netns: Netns | undefined;
  /** The address the cgroup programs were last told stands for the node. */
  private sockNodeAddrs: NodeAddresses = { ipv4: null, ipv6: null };
  /** Whose sockets the cgroup programs translate; off: there are none. */
  private socketLb: SocketLb = 'off';
  /** Ends sockets translated to removed backends; undefined without socket LB or where the kernel cannot. */
  private socketDestroyer: SocketDestroyer | undefined;
  private watcher: LinkWatcher | undefined;
  /** lb_world_xdp's object, loaded unless --bpf-xdp=off. */
  private xdp: LoadedXdp | null = null;
  private closed = false;
  /** Made by the first scrape, so counting costs nothing where nobody scrapes. */
  private fill: MapFillCache | undefined;

  private constructor(
    private readonly lib: NativeAddon,
    private readonly opts: EbpfOptions,
    private readonly maps: MapFds | null,
    private readonly loaded: LoadedDatapath | null,
  ) {}

  /** Loads (or reuses) the datapath and attaches to matching interfaces, now and as they appear. */
  static async run(opts: EbpfRunOptions): Promise<EbpfBackend> {
    const lib = native();
    // First: on a kernel too old to run, nothing is loaded or pinned.
    const netns = currentNetns(lib);
    const loaded = loadDatapath(lib, opts.pinPath, opts.log, opts.mapSizes);
    const backend = new EbpfBackend(lib, opts, loaded.maps, loaded);
    // Before any service is written; at every start, so that a takeover cut short ends with the next start.
    setAdopting(lib, loaded.object.mapFd(ADOPT_MAP), opts.adopting ?? false);
    let attacher: Attacher;
    try {
      backend.xdp = opts.xdp === 'off' ? null : loadXdpProgram(lib, opts.pinPath, opts.mapSizes);
      attacher = new Attacher(lib, loaded.maps, loaded.programs, backend.xdp?.program ?? null, opts, netns, opts.log);
      attacher.claimRecords(opts.pinPath);
      backend.startSockets(netns, opts);
    } catch (err) {
      await backend.close();
      throw err;
    }
    backend.maxEntries = lib.mapInfo(loaded.maps.svc).maxEntries;
    backend.maglevTableSize = opts.maglevTableSize;
    backend.readServiceMap();
    backend.appliedRanges = new SourceRangeMap(lib, loaded.maps.sourceRanges).readAll();
    opts.log.info({ pinPath: opts.pinPath, servicesPinned: backend.applied.size, maxEntries: backend.maxEntries }, 'ebpf datapath loaded');
    backend.attacher = attacher;
    backend.netns = netns;
    const reconcile = (): void => {
      attacher.reconcile().catch((err: Error) => opts.log.error({ err: err.message }, 'attaching to interfaces failed'));
    };
    backend.watcher = new LinkWatcher(reconcile, (err) => opts.log.warn({ err: err.message }, 'link watch'));
    backend.watcher.start();
    await attacher.reconcile();
    return backend;
  }

  /** Reads what an earlier kube-lb pinned, for inspect and cleanup. */
  static open(opts: EbpfOptions): EbpfBackend {
    const lib = native();
    const pinned = pinnedMaps(opts.pinPath);
    if (pinned.length > 0 && pinned.length < Object.keys(MAPS).length) {
      opts.log.warn(
        { pinPath: opts.pinPath, pinned: pinned.map((key) => MAPS[key]) },
        'only some kube-lb maps are pinned, as an interrupted cleanup leaves them; run kube-lb cleanup --backend=ebpf to finish it',
      );
    }
    return new EbpfBackend(lib, opts, openPinnedMaps(lib, opts.pinPath), null);
  }

  async sync(state: DesiredState, changed: ReadonlySet<string> | null, node?: NodeView): Promise<SyncStats> {
    if (!this.loaded) throw new Error('ebpf backend opened read-only cannot sync');
    if (this.unread) {
      this.readServiceMap();
      changed = null;
    }
    const wanted = new Map<string, WantedFor>();
    const candidates = new Set<string>(changed === null ? this.applied.keys() : []);
    if (changed === null) this.servicesOf.clear();
    const ports: ServicePortState[] = [];
    for (const key of changed === null ? state.keys() : new Set([...changed, ...this.refused])) {
      for (const sk of this.servicesOf.get(key) ?? []) candidates.add(sk);
      const sp = state.get(key);
      if (sp) ports.push(sp);
      const maglevTableSize = sp?.lbAlgorithm === 'maglev' ? this.maglevTableSize : 0;
      const now = (sp?.frontends ?? []).flatMap((f) => mapServices(f, maglevTableSize)).map((svc) => {
        const sk = svcKey(svc);
        wanted.set(sk, { ...svc, port: sp! });
        candidates.add(sk);
        return sk;
      });
      if (now.length > 0) this.servicesOf.set(key, now);
      else this.servicesOf.delete(key);
    }

    const changes: ServiceChange[] = [];
    const rangeChanges: RangeChange[] = [];
    for (const sk of candidates) {
      const want = wanted.get(sk);
      const current = this.applied.get(sk);
      // A frontend's ranges are written once, with its internal-scope service.
      const { frontend, scope, family } = (want ?? current)!;
      if (scope === 'internal') {
        const ranges = { frontend, family, current: this.appliedRanges.get(frontendKey(frontend)) ?? [], wanted: want?.sourceRanges ?? [] };
        if (!sameMembers(ranges.current, ranges.wanted)) rangeChanges.push(ranges);
      }
      if (want && current && sameMeta(want.meta, current.meta) && sameDestinationSet(current.slots, want.destinations)) continue;
      if (!want && !current) continue;
      const { meta } = (want ?? current)!;
      changes.push({ frontend, scope, family, meta, currentMeta: current?.meta ?? null, current: current?.slots ?? null, wanted: want?.destinations ?? null });
    }

    // Decided before anything is written. A refused frontend that is in the
    // map keeps its last programmed backends, as kube-proxy's rules stay as
    // they were when a sync fails.
    const portOf = (sk: string): string => wanted.get(sk)!.port.key;
    const { free, requests } = this.roomRequests(changes, portOf);
    const { refused, left } = refusedRequests(free, [...requests.values()]);
    this.noteRefusals(ports, refused, requests, left);
    for (const key of this.refused) if (!state.has(key)) this.refused.delete(key);
    const accepted = changes.filter((c) => !needsRoom(c) || !refused.has(portOf(svcKey(c))));
    // The map holds what the kernel has, so this holds after a restart too.
    const stale = accepted.flatMap(({ frontend, family, current, wanted: destinations }) => staleFlows(frontend, family, current, destinations, true) ?? []);

    const ranges = new SourceRangeMap(this.lib, this.loaded.maps.sourceRanges);
    ranges.add(rangeChanges);
    let tables: Map<string, Destination[]>;
    try {
      tables = new ServiceMap(this.lib, this.loaded.maps.svc, this.loaded.maps.maglev, this.loaded.maps.backendStats).apply(accepted, this.orphans, this.orphanChunks);
    } catch (err) {
      this.unread = true;
      throw err;
    }
    this.entries -= this.orphans.length;
    this.orphans = [];
    this.orphanChunks = [];
    ranges.remove(rangeChanges);
    for (const { frontend, wanted: cidrs } of rangeChanges) {
      if (cidrs.length > 0) this.appliedRanges.set(frontendKey(frontend), [...cidrs]);
      else this.appliedRanges.delete(frontendKey(frontend));
    }
    let removed = 0;
    for (const change of accepted) {
      this.entries += entriesOf(change.wanted) - entriesOf(change.current);
      const sk = svcKey(change);
      const slots = tables.get(sk);
      if (slots) this.applied.set(sk, { frontend: change.frontend, scope: change.scope, family: change.family, meta: change.meta, slots });
      else if (this.applied.delete(sk)) removed++;
    }
    const flushed = flushStaleFlows(this.lib, this.loaded.maps, stale);
    if (flushed > 0) this.opts.log.info({ flows: flushed }, 'flushed UDP flows to removed endpoints');
    const goneBackends = this.socketDestroyer ? goneSocketBackends(accepted) : [];
    if (goneBackends.length > 0) {
      const destroyed = this.socketDestroyer!.destroy(goneBackends);
      if (destroyed > 0) this.opts.log.info({ sockets: destroyed }, 'destroyed connected UDP sockets of removed endpoints');
    }
    if (node !== undefined) {
      this.setSockNodeAddresses({ ipv4: node.primaryIP.IPv4, ipv6: node.primaryIP.IPv6 });
    }
    if ((node !== undefined && this.attacher?.setNodeAddresses(node.nodePortIPs)) || changed === null) await this.attacher?.reconcile();
    // The maps are right, but traffic through these interfaces is not translated: the retry attaches again.
    const unattached = this.attacher?.failures ?? [];
    if (unattached.length > 0) throw new Error(`kube-lb's programs are not attached to ${unattached.length} interface(s): ${unattached.join('; ')}`);
    return { frontendsWritten: accepted.length - removed, frontendsRemoved: removed, servicePortsRefused: this.refused.size };
  }

  /** Attaches the cgroup programs as --bpf-socket-lb says, or detaches those of an earlier kube-lb with off. */
  private startSockets(netns: Netns, opts: EbpfRunOptions): void {
    const { object, features } = this.loaded!;
    const cgroup = socketCgroup(opts.cgroupRoot);
    if (opts.socketLb === 'off') {
      withoutSockets(this.lib, opts.pinPath, cgroup, netns, opts.log);
      return;
    }
    if (cgroup === null) throw new Error(NO_CGROUP2);
    attachSockets(this.lib, (name) => object.programFd(name), object.mapFd(SOCK_CONFIG_MAP), opts.pinPath, cgroup, netns, opts.socketLb, opts.log);
    this.socketLb = opts.socketLb;
    // Without the kfunc, probeKernelFeatures said what is lost.
    if (features.sockDestroy) {
      this.socketDestroyer = new SocketDestroyer(this.lib, object.programFd(SOCK_DESTROY_PROGRAM), object.mapFd(SOCK_GONE_MAP), opts.socketLb === 'all');
    }
  }

  private setSockNodeAddresses(addrs: NodeAddresses): void {
    if (this.socketLb === 'off' || (addrs.ipv4 === this.sockNodeAddrs.ipv4 && addrs.ipv6 === this.sockNodeAddrs.ipv6)) return;
    setSockConfig(this.lib, this.loaded!.object.mapFd(SOCK_CONFIG_MAP), this.netns!, this.socketLb, addrs);
    this.sockNodeAddrs = addrs;
  }

  /** The room each service port's changes need, and the room free once orphans and removed frontends are gone. */
  private roomRequests(changes: readonly ServiceChange[], portOf: (fk: string) => string): { free: number; requests: Map<string, RoomRequest> } {
    let free = this.maxEntries - this.entries + this.orphans.length;
    const requests = new Map<string, RoomRequest>();
    for (const change of changes) {
      if (change.wanted === null) free += entriesOf(change.current);
      if (!needsRoom(change)) continue;
      const key = portOf(svcKey(change));
      const request = requests.get(key) ?? { key, inMap: false, entries: 0 };
      request.entries += entriesOf(change.wanted) - entriesOf(change.current);
      request.inMap ||= change.current !== null;
      requests.set(key, request);
    }
    return { free, requests };
  }

  /** Keeps this.refused, naming each service port once when it is refused and once when it gets in. */
  private noteRefusals(ports: readonly ServicePortState[], refused: ReadonlySet<string>, requests: ReadonlyMap<string, RoomRequest>, entriesFree: number): void {
    for (const port of ports) {
      const service = `${port.namespace}/${port.name}`;
      if (refused.has(port.key) && !this.refused.has(port.key)) {
        this.refused.add(port.key);
        this.opts.log.warn(
          { service, port: port.portName, frontends: port.frontends.map(frontendKey), entriesNeeded: requests.get(port.key)!.entries, entriesFree, maxEntries: this.maxEntries },
          'kube_lb_svc has no room for this service port: it is not programmed (a frontend already programmed keeps its last backends) until deleting services frees room, or kube-lb runs with a larger --bpf-lb-map-max',
        );
      } else if (!refused.has(port.key) && this.refused.delete(port.key)) {
        this.opts.log.info({ service, port: port.portName }, 'kube_lb_svc has room for this service port again: programmed');
      }
    }
  }

  /**
   * Reads kube_lb_svc: the services, the orphans to delete, and how full it
   * is; and gives kube_lb_backend_stats an entry for each of its backends,
   * and none else.
   */
  private readServiceMap(): void {
    const contents = new ServiceMap(this.lib, this.maps!.svc, this.maps!.maglev).readAll();
    const backends = [...contents.services.values()].flatMap(({ frontend, scope, family, slots }) => slots.map((destination) => ({ frontend, scope, family, destination })));
    const stats = new BackendStatsMap(this.lib, this.maps!.backendStats).reconcile(backends);
    if (stats.added + stats.removed > 0) this.opts.log.info(stats, 'kube_lb_backend_stats: counters added for backends without, removed for backends gone');
    this.applied = contents.services;
    this.orphans = contents.orphans;
    this.orphanChunks = contents.orphanChunks;
    this.entries = contents.entries;
    this.unread = false;
    if (this.orphans.length > 0) {
      this.opts.log.info({ orphans: this.orphans.length }, 'kube_lb_svc holds entries of no service, left by a write cut short; the next sync deletes them');
    }
  }


  async mapFill(): Promise<MapFill[]> {
    if (!this.maps || this.closed) return [];
    this.fill ??= new MapFillCache(this.lib, filledMaps(this.maps), (map, err) => this.opts.log.warn({ map, err: err.message }, 'cannot count BPF map entries'));
    return this.fill.read();
  }

  async drops(): Promise<DropCounts> {
    if (!this.maps || this.closed) throw new Error('the ebpf backend is closed');
    return readDrops(this.lib, this.maps.drops);
  }

  /** What the datapath counted for each backend of each frontend, both scopes together. */
  async counters(): Promise<EndpointCounters[]> {
    if (!this.maps || this.closed) return [];
    const counted = new Map<string, EndpointCounters>();
    for (const { frontend, destination, stats } of new BackendStatsMap(this.lib, this.maps.backendStats).readAll()) {
      const key = `${frontendKey(frontend)} ${destinationKey(destination)}`;
      const c = counted.get(key);
      if (c === undefined) counted.set(key, { frontends: [frontend], destination, ...stats });
      else Object.assign(c, addCounts(c, stats));
    }
    return [...counted.values()];
  }

  async inspect(): Promise<FrontendView[]> {
    if (!this.maps) return [];
    return viewOf([...new ServiceMap(this.lib, this.maps.svc, this.maps.maglev).readAll().services.values()].map((e) => ({ ...e, destinations: e.slots })));
  }

  /** The map services sync writes for every frontend; the Maglev table size does not change what inspect shows. */
  async planned(state: DesiredState): Promise<FrontendView[]> {
    return viewOf([...state.values()].flatMap((sp) => sp.frontends.flatMap((f) => mapServices(f, 0))));
  }

  /**
   * Records the flows the stack translates to kube-lb's frontends as the
   * stack's, in a takeover from a datapath of the stack's. Returns how many.
   */
  adoptStackFlows(flows: readonly StackFlow[]): number {
    if (!this.loaded) throw new Error('ebpf backend opened read-only cannot take over');
    return recordStackFlows(this.lib, this.loaded.maps, flows, [...this.applied.values()].map((e) => e.frontend));
  }

  /** Ends a takeover: packets of no flow of kube-lb's get an endpoint again, whatever their TCP flags. */
  endAdoption(): void {
    if (this.loaded && !this.closed) setAdopting(this.lib, this.loaded.object.mapFd(ADOPT_MAP), false);
  }

  /** Hands new flows over to the stack (another backend): removes every service, keeps the flows. Returns the entries removed. */
  handOver(): number {
    return this.maps ? removeServices(this.lib, this.maps) : 0;
  }

  /** The live flows the programs translate, or with `stack` leave to the stack's conntrack (takeover.ts). */
  liveFlows(stack: boolean): number {
    return this.maps ? liveFlows(this.lib, this.maps, stack) : 0;
  }

  async cleanup(): Promise<void> {
    this.watcher?.stop();
    // From the pins, not this.maps: a cleanup cut short may have left
    // kube_lb_ifaces alone, and a migration cut short its old map aside.
    const ifaces = openPinnedIfaces(this.lib, this.opts.pinPath);
    try {
      const netns = currentNetns(this.lib);
      // Without a cgroup v2 file system, no kube-lb could attach any.
      const cgroup = socketCgroup(this.opts.cgroupRoot);
      if (cgroup !== null) detachSockets(this.lib, cgroup, netns, this.opts.log);
      await detachAll(this.lib, ifaces, this.opts.pinPath, netns, this.opts.log);
    } finally {
      for (const fd of ifaces) this.lib.closeFd(fd);
      await this.close();
    }
    removePins(this.opts.pinPath);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.stop();
    await this.fill?.close();
    this.xdp?.object.close();
    if (this.loaded) this.loaded.object.close();
    else if (this.maps) closeMaps(this.lib, this.maps);
  }
}
