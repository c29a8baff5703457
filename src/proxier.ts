// `kube-lb run`: a source feeds the model, the model's changes request
// syncs, and each sync hands the desired state to the backend.
import type { Backend } from './backends/backend.js';
import type { Logger } from './log.js';
import { ModelSink } from './model/ingest.js';
import { ProxyModel } from './model/model.js';
import type { Source } from './sources/source.js';
import { SyncRunner } from './sync/runner.js';

export interface ProxierOptions {
  source: Source;
  backend: Backend;
  log: Logger;
  minSyncPeriodMs: number;
  syncPeriodMs: number;
}

/** After a failed sync, the next one is full and comes after this pause. */
const RETRY_AFTER_MS = 1000;

export class Proxier {
  private readonly model = new ProxyModel();
  private readonly runner: SyncRunner;
  /** A failed sync lost its change set: the next one must be full. */
  private needFull = false;
  private ready = false;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: ProxierOptions) {
    this.runner = new SyncRunner({
      minIntervalMs: opts.minSyncPeriodMs,
      maxIntervalMs: opts.syncPeriodMs,
      run: ({ full }) => this.sync(full),
      onRunEnd: ({ full, durationMs, error }) => {
        if (error === undefined) {
          opts.log.debug({ full, durationMs: round(durationMs) }, 'sync done');
          return;
        }
        opts.log.error({ full, durationMs: round(durationMs), err: (error as Error).message }, 'sync failed; retrying with a full sync');
        this.retryTimer = setTimeout(() => this.runner.request(), RETRY_AFTER_MS);
      },
    });
  }

  /** Starts the source; syncing begins once the source has delivered its initial state. */
  async start(): Promise<void> {
    const sink = new ModelSink(this.model, this.opts.log, {
      onChange: () => this.runner.request(),
      // Only a complete initial state may remove what an earlier kube-lb left.
      onSynced: () => this.runner.start(),
    });
    await this.opts.source.start(sink);
  }

  async stop(): Promise<void> {
    clearTimeout(this.retryTimer);
    await this.opts.source.stop();
    await this.runner.stop();
    await this.opts.backend.close();
  }

  private async sync(full: boolean): Promise<void> {
    const changes = this.model.changes.take();
    const fullSync = full || this.needFull;
    this.needFull = true;
    const started = performance.now();
    const stats = await this.opts.backend.sync(this.model.desiredState(), fullSync ? null : changes.changedKeys);
    this.needFull = false;
    this.opts.log.info(
      { full: fullSync, serviceChanges: changes.services, endpointChanges: changes.endpoints, ...stats, durationMs: round(performance.now() - started) },
      'synced',
    );
    if (!this.ready) {
      this.ready = true;
      this.opts.log.info({ backend: this.opts.backend.name }, 'ready');
    }
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
