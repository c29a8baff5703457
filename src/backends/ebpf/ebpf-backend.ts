// The ebpf backend: ClusterIP services as BPF hash-map entries, looked up
// by TC programs on every pod-facing interface.
import type { Backend, DesiredState, Destination, FrontendView, MapFill, ServicePortState, SyncStats } from '../backend.js';
import { frontendKey } from '../backend.js';
import { native, type NativeAddon } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { Attacher, detachAll } from './attach.js';
import { addStale, flushStaleFlows, type StaleDestinations } from './conntrack.js';
import { type LoadedDatapath, MAPS, type MapFds, closeMaps, loadDatapath, openPinnedMap, openPinnedMaps, pinnedMaps, removePins } from './datapath.js';
import { LinkWatcher } from './links.js';
import { readMapFill } from './map-stats.js';
import { type ServiceChange, type ServiceEntry, ServiceMap } from './service-map.js';

export interface EbpfOptions {
  pinPath: string;
  log: Logger;
}

export interface EbpfRunOptions extends EbpfOptions {
  /** Attach to every interface whose name starts with this. */
  interfacePrefix: string;
}

const destKey = (d: Destination): string => `${d.ip}:${d.port}`;

function sameDestinations(a: readonly Destination[], b: readonly Destination[]): boolean {
  if (a.length !== b.length) return false;
  const keys = new Set(a.map(destKey));
  return b.every((d) => keys.has(destKey(d)));
}

export class EbpfBackend implements Backend {
  readonly name = 'ebpf';
  /** What the map holds, by frontendKey: read at start, then kept by sync. */
  private applied = new Map<string, ServiceEntry>();
  /** The frontend of each service port key in the last state synced. */
  private frontendsOf = new Map<string, string>();
  /** The service port keys claiming each frontend; more than one is a conflict. */
  private claims = new Map<string, Set<string>>();
  private attacher: Attacher | undefined;
  private watcher: LinkWatcher | undefined;
  private closed = false;

  private constructor(
    private readonly lib: NativeAddon,
    private readonly opts: EbpfOptions,
    private readonly maps: MapFds | null,
    private readonly loaded: LoadedDatapath | null,
  ) {}

  /** Loads (or reuses) the datapath and attaches to matching interfaces, now and as they appear. */
  static async run(opts: EbpfRunOptions): Promise<EbpfBackend> {
    const lib = native();
    const loaded = loadDatapath(lib, opts.pinPath);
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
    const candidates = this.updateClaims(state, changed);

    const changes: ServiceChange[] = [];
    const stale: StaleDestinations = new Map();
    for (const fk of candidates) {
      const wanted = this.claimant(fk, state);
      const current = this.applied.get(fk);
      if (wanted && current && sameDestinations(current.slots, wanted.destinations)) continue;
      if (!wanted && !current) continue;
      const frontend = (wanted ?? current)!.frontend;
      changes.push({ frontend, current: current?.slots ?? null, wanted: wanted?.destinations ?? null });
      if (current) {
        const keep = new Set((wanted?.destinations ?? []).map(destKey));
        addStale(stale, frontend, current.slots.filter((d) => !keep.has(destKey(d))));
      }
    }

    const tables = new ServiceMap(this.lib, this.loaded.maps.svc).apply(changes);
    let removed = 0;
    for (const { frontend } of changes) {
      const fk = frontendKey(frontend);
      const slots = tables.get(fk);
      if (slots) this.applied.set(fk, { frontend, slots });
      else if (this.applied.delete(fk)) removed++;
    }
    const flushed = flushStaleFlows(this.lib, this.loaded.maps, stale);
    if (flushed > 0) this.opts.log.info({ flows: flushed }, 'flushed UDP flows to removed endpoints');
    if (changed === null) await this.attacher?.reconcile();
    return { frontendsWritten: changes.length - removed, frontendsRemoved: removed };
  }

  /**
   * Brings the frontend claims up to date with the changed keys (all keys on
   * a full sync) and returns the frontends to re-examine: those the changed
   * keys had or have, and on a full sync everything the map holds.
   */
  private updateClaims(state: DesiredState, changed: ReadonlySet<string> | null): Set<string> {
    const candidates = new Set<string>();
    if (changed === null) {
      this.frontendsOf = new Map();
      this.claims = new Map();
      for (const fk of this.applied.keys()) candidates.add(fk);
    }
    for (const key of changed ?? state.keys()) {
      const before = this.frontendsOf.get(key);
      if (before !== undefined) {
        this.claims.get(before)!.delete(key);
        if (this.claims.get(before)!.size === 0) this.claims.delete(before);
        this.frontendsOf.delete(key);
        candidates.add(before);
      }
      const now = state.get(key);
      if (now !== undefined) {
        const fk = frontendKey(now.frontend);
        const keys = this.claims.get(fk) ?? new Set<string>();
        this.claims.set(fk, keys.add(key));
        this.frontendsOf.set(key, fk);
        candidates.add(fk);
      }
    }
    return candidates;
  }

  /** The service port a frontend serves; of two claiming one, the smaller key, with a warning. */
  private claimant(fk: string, state: DesiredState): ServicePortState | undefined {
    const keys = this.claims.get(fk);
    if (keys === undefined) return undefined;
    const sorted = [...keys].sort();
    if (sorted.length > 1) this.opts.log.warn({ frontend: fk, kept: sorted[0], ignored: sorted.slice(1) }, 'several service ports claim one frontend');
    return state.get(sorted[0]!);
  }

  async mapFill(): Promise<MapFill[]> {
    return this.maps ? readMapFill(this.lib, this.maps) : [];
  }

  async inspect(): Promise<FrontendView[]> {
    if (!this.maps) return [];
    const entries = [...new ServiceMap(this.lib, this.maps.svc).readAll().values()];
    return entries.map((e) => ({ frontend: e.frontend, destinations: e.slots }));
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
    if (this.loaded) this.loaded.object.close();
    else if (this.maps) closeMaps(this.lib, this.maps);
  }
}
