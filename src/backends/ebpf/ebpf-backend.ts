// The ebpf backend: ClusterIP services as BPF hash-map entries, looked up
// by TC programs on every pod-facing interface.
import type { Backend, FrontendView, MapFill, SyncStats } from '../backend.js';
import { type DesiredState, type Destination, type Frontend, type FrontendKind, type NoEndpointsVerdict, type Protocol, destinationKey, frontendKey } from '../../model/contract.js';
import { native, type NativeAddon } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { Attacher, detachAll } from './attach.js';
import { flushStaleFlows } from './conntrack.js';
import { type StaleUdpFlows, staleUdpFlows } from '../stale-flows.js';
import { type LoadedDatapath, MAPS, type MapFds, type MapSizes, closeMaps, loadDatapath, openPinnedMap, openPinnedMaps, pinnedMaps, removePins } from './datapath.js';
import { LinkWatcher } from './links.js';
import { MapFillCache } from './map-stats.js';
import { type DropCounts, readDrops } from './drops.js';
import { type ServiceChange, type ServiceEntry, ServiceMap } from './service-map.js';

export interface EbpfOptions {
  pinPath: string;
  log: Logger;
}

export interface EbpfRunOptions extends EbpfOptions {
  /** Attach to every interface whose name starts with this. */
  interfacePrefix: string;
  mapSizes: MapSizes;
}

/** Slots keep their order, so the map's backends are compared as a set. */
function sameDestinationSet(a: readonly Destination[], b: readonly Destination[]): boolean {
  if (a.length !== b.length) return false;
  const keys = new Set(a.map(destinationKey));
  return b.every((d) => keys.has(destinationKey(d)));
}

export class EbpfBackend implements Backend {
  readonly name = 'ebpf';
  readonly protocols: readonly Protocol[] = ['TCP', 'UDP'];
  /** What the map holds, by frontendKey: read at start, then kept by sync. */
  private applied = new Map<string, ServiceEntry>();
  /** The frontends of each service port key in the last state synced. */
  private readonly frontendsOf = new Map<string, string[]>();
  private attacher: Attacher | undefined;
  private watcher: LinkWatcher | undefined;
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
    const loaded = loadDatapath(lib, opts.pinPath, opts.mapSizes);
    const backend = new EbpfBackend(lib, opts, loaded.maps, loaded);
    backend.applied = new ServiceMap(lib, loaded.maps.svc).readAll();
    opts.log.info({ pinPath: opts.pinPath, servicesPinned: backend.applied.size }, 'ebpf datapath loaded');
    const attacher = new Attacher(lib, loaded.maps, loaded.programs, opts.interfacePrefix, opts.log);
    backend.attacher = attacher;
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

  async sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats> {
    if (!this.loaded) throw new Error('ebpf backend opened read-only cannot sync');
    // The programs see traffic from pods only, so every frontend sends to its internal set.
    const wanted = new Map<string, { kind: FrontendKind; noEndpoints: NoEndpointsVerdict; frontend: Frontend; destinations: Destination[] }>();
    const candidates = new Set<string>(changed === null ? this.applied.keys() : []);
    if (changed === null) this.frontendsOf.clear();
    for (const key of changed ?? state.keys()) {
      for (const fk of this.frontendsOf.get(key) ?? []) candidates.add(fk);
      const sp = state.get(key);
      const now = (sp?.frontends ?? []).map((f) => {
        const fk = frontendKey(f);
        wanted.set(fk, { kind: f.kind, noEndpoints: f.noEndpoints, frontend: { ip: f.ip, port: f.port, protocol: f.protocol }, destinations: f.internal.destinations });
        candidates.add(fk);
        return fk;
      });
      if (now.length > 0) this.frontendsOf.set(key, now);
      else this.frontendsOf.delete(key);
    }

    const changes: ServiceChange[] = [];
    const stale: StaleUdpFlows[] = [];
    for (const fk of candidates) {
      const want = wanted.get(fk);
      const current = this.applied.get(fk);
      if (want && current && want.kind === current.kind && want.noEndpoints === current.noEndpoints && sameDestinationSet(current.slots, want.destinations)) continue;
      if (!want && !current) continue;
      const { kind, noEndpoints, frontend } = (want ?? current)!;
      changes.push({
        kind,
        noEndpoints,
        frontend,
        currentKind: current?.kind ?? null,
        currentNoEndpoints: current?.noEndpoints ?? null,
        current: current?.slots ?? null,
        wanted: want?.destinations ?? null,
      });
      // The map holds what the kernel has, so this holds after a restart too.
      const flows = staleUdpFlows(frontend, current?.slots ?? null, want?.destinations ?? null, true);
      if (flows !== null) stale.push(flows);
    }

    const tables = new ServiceMap(this.lib, this.loaded.maps.svc).apply(changes);
    let removed = 0;
    for (const { frontend } of changes) {
      const fk = frontendKey(frontend);
      const slots = tables.get(fk);
      if (slots) this.applied.set(fk, { kind: wanted.get(fk)!.kind, noEndpoints: wanted.get(fk)!.noEndpoints, frontend, slots });
      else if (this.applied.delete(fk)) removed++;
    }
    const flushed = flushStaleFlows(this.lib, this.loaded.maps, stale);
    if (flushed > 0) this.opts.log.info({ flows: flushed }, 'flushed UDP flows to removed endpoints');
    if (changed === null) await this.attacher?.reconcile();
    return { frontendsWritten: changes.length - removed, frontendsRemoved: removed };
  }

  async mapFill(): Promise<MapFill[]> {
    if (!this.maps || this.closed) return [];
    this.fill ??= new MapFillCache(this.lib, this.maps, (map, err) => this.opts.log.warn({ map, err: err.message }, 'cannot count BPF map entries'));
    return this.fill.read();
  }

  async drops(): Promise<DropCounts> {
    if (!this.maps || this.closed) throw new Error('the ebpf backend is closed');
    return readDrops(this.lib, this.maps.drops);
  }

  async inspect(): Promise<FrontendView[]> {
    if (!this.maps) return [];
    const entries = [...new ServiceMap(this.lib, this.maps.svc).readAll().values()];
    return entries.map((e) => ({ kind: e.kind, frontend: e.frontend, destinations: e.slots }));
  }

  async cleanup(): Promise<void> {
    this.watcher?.stop();
    // From the pin, not this.maps: a cleanup cut short may have left kube_lb_ifaces alone.
    const ifaces = openPinnedMap(this.lib, this.opts.pinPath, 'ifaces');
    try {
      await detachAll(this.lib, ifaces, this.opts.log);
    } finally {
      if (ifaces !== null) this.lib.closeFd(ifaces);
    }
    await this.close();
    removePins(this.opts.pinPath);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.stop();
    await this.fill?.close();
    if (this.loaded) this.loaded.object.close();
    else if (this.maps) closeMaps(this.lib, this.maps);
  }
}
