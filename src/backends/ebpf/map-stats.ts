// How full each BPF map is, for the kube_lb_bpf_map_entries and
// kube_lb_bpf_map_max_entries metrics: a full conntrack or service map
// drops traffic silently, so its fill level is worth an alert.
//
// The kernel keeps no entry count, so counting means walking the map, which
// takes long when the conntrack map is full. A scrape must answer at once
// (health probes share the event loop), so counts come from a cache that a
// background walk refreshes, and a scrape never waits for one.
import type { NativeAddon } from '../../native/index.js';
import type { MapFill } from '../backend.js';
import { MAPS, type MapFds } from './datapath.js';

/** How often the counts are refreshed while /metrics is scraped; the metric's HELP text states it. */
export const FILL_REFRESH_MS = 10_000;
/**
 * Walks stop when nothing has scraped for this long, longer than common scrape
 * intervals (Prometheus' default is a minute): each walk costs CPU in proportion
 * to the entries, for nobody.
 */
export const FILL_IDLE_MS = 5 * 60_000;

/** The maps that fill up, by name; kube_lb_drops is an array of counters, always whole. */
export function filledMaps(fds: MapFds): { map: string; fd: number }[] {
  return (Object.keys(MAPS) as (keyof typeof MAPS)[]).filter((key) => key !== 'drops').map((key) => ({ map: MAPS[key], fd: fds[key] }));
}

export class MapFillCache {
  private readonly maps: { map: string; fd: number; maxEntries: number }[];
  private readonly counts = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private walk: Promise<void> | null = null;
  private lastRead = 0;
  private closed = false;

  constructor(
    private readonly lib: NativeAddon,
    maps: { map: string; fd: number }[],
    private readonly onError: (map: string, err: Error) => void,
  ) {
    // A map's capacity is fixed when it is created.
    this.maps = maps.map(({ map, fd }) => ({ map, fd, maxEntries: lib.mapInfo(fd).maxEntries }));
  }

  /**
   * Answers at once from the last walk. entries is null for a map not counted
   * yet: on the first read, and on the first after a pause in reads.
   */
  read(): MapFill[] {
    this.lastRead = Date.now();
    if (this.timer === undefined && !this.closed) {
      this.timer = setInterval(() => this.tick(), FILL_REFRESH_MS).unref();
      this.refresh();
    }
    return this.maps.map(({ map, maxEntries }) => ({ map, entries: this.counts.get(map) ?? null, maxEntries }));
  }

  /** Stops refreshing, and resolves once no count is under way: nothing of the cache runs after it. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.walk;
  }

  private tick(): void {
    if (Date.now() - this.lastRead < FILL_IDLE_MS) return this.refresh();
    clearInterval(this.timer);
    this.timer = undefined;
    // Counts kept through a pause would be served later as if current.
    this.counts.clear();
  }

  /** Never two walks at once: a walk slower than the period delays the next one instead. */
  private refresh(): void {
    if (this.walk !== null) return;
    this.walk = this.countAll().finally(() => {
      this.walk = null;
    });
  }

  // One map at a time, so a walk holds one thread of libuv's pool, which file
  // system calls and DNS lookups share. Once refreshing stops (closed, or
  // paused), nothing more is counted or kept.
  private async countAll(): Promise<void> {
    for (const { map, fd } of this.maps) {
      if (this.timer === undefined) return;
      try {
        const count = await this.lib.mapCount(fd);
        if (this.timer !== undefined) this.counts.set(map, count);
      } catch (err) {
        this.counts.delete(map);
        this.onError(map, err as Error);
      }
    }
  }
}
