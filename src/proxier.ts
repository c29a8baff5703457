// `kube-lb run`: a source feeds the model, the model's changes request
// syncs, and each sync hands the desired state to the backend.
import type { Backend } from './backends/backend.js';
import type { Logger } from './log.js';
import { ModelSink } from './model/ingest.js';
import { type ModelOptions, ProxyModel } from './model/model.js';
import type { ProxyTelemetry } from './observability/telemetry.js';
import { ServiceHealthServers } from './observability/service-health.js';
import type { Source } from './sources/source.js';
import { SyncRunner } from './sync/runner.js';
import type { Takeover } from './takeover.js';

export interface ProxierOptions {
  source: Source;
  backend: Backend;
  log: Logger;
  minSyncPeriodMs: number;
  syncPeriodMs: number;
  /** Health and metrics; closed with the proxier. */
  telemetry: ProxyTelemetry;
  /** How the model resolves services on this node; the protocols and the logger come from the backend and the proxier. */
  model: Omit<ModelOptions, 'protocols' | 'log'>;
  /** --takeover: completed after the first sync that succeeds; until then every sync tries it. */
  takeover?: Takeover;
}

/** After a sync that wrote or removed this many frontends, collect garbage. */
const COLLECT_AFTER_FRONTENDS = 1000;

/** After a failed sync, the next one is full and comes after this pause. */
const RETRY_AFTER_MS = 1000;

export class Proxier {
  private readonly model: ProxyModel;
  private readonly serviceHealth: ServiceHealthServers;
  private readonly runner: SyncRunner;
  /** A failed sync lost its change set: the next one must be full. */
  private needFull = false;
  private ready = false;
  /** The source delivered its initial state: from now on a change is a queued update. */
  private sourceSynced = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private takeover: Takeover | undefined;

  constructor(private readonly opts: ProxierOptions) {
    this.takeover = opts.takeover;
    this.model = new ProxyModel({ ...opts.model, protocols: opts.backend.protocols, log: opts.log });
    this.serviceHealth = new ServiceHealthServers(opts.telemetry.health, opts.log);
    this.runner = new SyncRunner({
      minIntervalMs: opts.minSyncPeriodMs,
      maxIntervalMs: opts.syncPeriodMs,
      run: ({ full }) => this.sync(full),
      onRunEnd: ({ full, durationMs, error }) => {
        if (error === undefined) {
          opts.log.debug({ full, durationMs: round(durationMs) }, 'sync done');
          return;
        }
        opts.telemetry.syncFailed(durationMs);
        opts.log.error({ full, durationMs: round(durationMs), err: (error as Error).message }, 'sync failed; retrying with a full sync');
        this.retryTimer = setTimeout(() => this.runner.request(), RETRY_AFTER_MS);
      },
    });
  }

  /** Starts the source; syncing begins once the source has delivered its initial state. */
  async start(): Promise<void> {
    const { telemetry } = this.opts;
    const sink = new ModelSink(this.model, this.opts.log, {
      onChange: () => {
        this.runner.request();
        if (this.sourceSynced) telemetry.queued(this.model.changes.pending());
      },
      // Only a complete initial state may remove what an earlier kube-lb left.
      onSynced: () => {
        this.sourceSynced = true;
        this.runner.start();
      },
    });
    await this.opts.source.start(telemetry.observe(sink));
  }

  async stop(): Promise<void> {
    clearTimeout(this.retryTimer);
    await this.opts.source.stop();
    await this.runner.stop();
    await this.opts.takeover?.stop();
    await this.opts.backend.close();
    await this.serviceHealth.close();
    await this.opts.telemetry.close();
  }

  private async sync(full: boolean): Promise<void> {
    // The state first: resolving it can mark more service ports changed.
    await this.model.resolveChanges();
    const state = this.model.desiredState();
    const changes = this.model.changes.take();
    this.opts.telemetry.syncStarted(this.model.changes.pending());
    const fullSync = full || this.needFull;
    this.needFull = true;
    const started = performance.now();
    const stats = await this.opts.backend.sync(state, fullSync ? null : changes.changedKeys, this.model.nodeView());
    // Part of the sync: kube-lb is not ready while another datapath serves the node.
    await this.takeover?.complete(this.opts.backend, state);
    this.takeover = undefined;
    this.needFull = false;
    const durationMs = performance.now() - started;
    // A refusal needs no retry of its own: the backend tries refused service ports at every sync, and only a sync frees room.
    this.opts.telemetry.syncCompleted({ durationMs, serviceChanges: changes.services, endpointChanges: changes.endpoints, servicePortsRefused: stats.servicePortsRefused ?? 0, state });
    // Objects may have arrived during the sync: they are resolved in slices too.
    await this.model.resolveChanges();
    this.serviceHealth.update(this.model.healthChecks());
    this.opts.log.info(
      { full: fullSync, serviceChanges: changes.services, endpointChanges: changes.endpoints, ...stats, durationMs: round(durationMs) },
      'synced',
    );
    if (!this.ready) {
      this.ready = true;
      this.opts.log.info({ backend: this.opts.backend.name }, 'ready');
    }
    if (stats.frontendsWritten + stats.frontendsRemoved >= COLLECT_AFTER_FRONTENDS) this.collectGarbage();
  }

  /**
   * A large change leaves its parse and sync garbage in the heap, and V8
   * keeps the freed pages mapped: a regular collection leaves RSS where it
   * was. The last-resort flavour (V8's gc extension, which bin/kube-lb
   * exposes) compacts and unmaps them too. It runs after the datapath is
   * programmed.
   */
  private collectGarbage(): void {
    const gc = (globalThis as { gc?: (options: object) => void }).gc;
    if (!gc) return;
    const started = performance.now();
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    this.opts.log.debug({ durationMs: round(performance.now() - started), rssBytes: process.memoryUsage.rss() }, 'collected garbage');
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
