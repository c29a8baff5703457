// Decides when to sync, with the semantics of kube-proxy's
// BoundedFrequencyRunner: requested syncs run as soon as allowed but at
// most once per minInterval, a full resync runs at least every maxInterval,
// and runs never overlap.
import { performance } from 'node:perf_hooks';

export interface SyncRunOptions {
  /** Periodic full resync (true), or a sync of what changed (false). */
  full: boolean;
  /** When the run started (performance.now()): the time minInterval and maxInterval count from. */
  startedAt: number;
}

export interface SyncRunResult {
  full: boolean;
  durationMs: number;
  /** Set when the run threw. */
  error?: unknown;
}

export interface SyncRunnerOptions {
  /** Least time between the starts of two runs. */
  minIntervalMs: number;
  /** Most time between the starts of two full runs. */
  maxIntervalMs: number;
  run(options: SyncRunOptions): Promise<void>;
  /** Called after every run, failed or not; the runner itself has nowhere to report errors. */
  onRunEnd(result: SyncRunResult): void;
}

export class SyncRunner {
  private durationMs: number | null = null;
  private syncedAt: Date | null = null;
  private readonly options: SyncRunnerOptions;
  private started = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private requested = false;
  // Monotonic times (performance.now()) of the last run starts.
  private lastRunStart = -Infinity;
  private lastFullRunStart = -Infinity;

  constructor(options: SyncRunnerOptions) {
    if (!(options.minIntervalMs >= 0 && options.maxIntervalMs > 0 && options.minIntervalMs <= options.maxIntervalMs)) {
      throw new Error(`invalid sync intervals: need 0 <= min (${options.minIntervalMs}ms) <= max (${options.maxIntervalMs}ms) and max > 0`);
    }
    this.options = options;
  }

  /** Duration of the last run, failed or not. */
  get lastDurationMs(): number | null {
    return this.durationMs;
  }

  /** Wall-clock end of the last successful run. */
  get lastSyncAt(): Date | null {
    return this.syncedAt;
  }

  /** Starts with a full run right away; full runs then follow every maxInterval. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.schedule();
  }

  /** Asks for a sync of what changed; many requests before it runs make one run. */
  request(): void {
    this.requested = true;
    this.schedule();
  }

  /** Stops scheduling and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
  }

  /** Arms the one timer for the next thing due: a pending run, or the next full resync. */
  private schedule(): void {
    if (!this.started || this.stopped || this.inFlight) return;
    if (this.timer !== null) clearTimeout(this.timer);
    const now = performance.now();
    const fullAt = this.lastFullRunStart + this.options.maxIntervalMs;
    const runAt = this.requested || now >= fullAt ? Math.max(now, this.lastRunStart + this.options.minIntervalMs) : fullAt;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (performance.now() < runAt) {
        this.schedule(); // woke early: timers and performance.now() may disagree slightly
        return;
      }
      // finally() always runs later than this assignment, even if run() throws synchronously.
      this.inFlight = this.runOnce().finally(() => {
        this.inFlight = null;
        this.schedule();
      });
    }, runAt - now);
  }

  private async runOnce(): Promise<void> {
    const start = performance.now();
    // Never run yet counts as due: the first run is always full.
    const full = start >= this.lastFullRunStart + this.options.maxIntervalMs;
    this.requested = false;
    this.lastRunStart = start;
    if (full) this.lastFullRunStart = start;
    let error: unknown;
    try {
      await this.options.run({ full, startedAt: start });
    } catch (err) {
      error = err;
    }
    this.durationMs = performance.now() - start;
    if (error === undefined) this.syncedAt = new Date();
    this.options.onRunEnd({ full, durationMs: this.durationMs, ...(error === undefined ? {} : { error }) });
  }
}
