// What kube-lb reports about itself: proxier health on /healthz and /livez,
// Prometheus metrics on /metrics. The proxier tells it when changes are
// queued and how syncs went; the objects on their way to the model tell it
// the node's eligibility and when endpoint changes were triggered.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Backend } from '../backends/backend.js';
import type { DesiredState } from '../model/contract.js';
import { UsageError } from '../flags.js';
import type { Logger } from '../log.js';
import type { ObjectKind, RawObject } from '../model/objects.js';
import type { ObjectSink } from '../model/ingest.js';
import { answerHealth, healthCheckOf, ProxierHealth } from './health.js';
import { ProxyMetrics } from './metrics.js';

/** Set by the EndpointSlice controller: when the change that produced this slice version happened. */
const LAST_CHANGE_TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface TelemetryOptions {
  backend: Backend;
  /** This node's name, to follow its Node object. */
  nodeName: string;
  /** kube-proxy's healthTimeout is twice the sync period. */
  syncPeriodMs: number;
  /** host:port; '' serves nothing. Port 0 picks a free port (logged). */
  healthzBindAddress: string;
  metricsBindAddress: string;
  /** Label the connection counters with each endpoint (--metrics-endpoint-labels). */
  metricsEndpointLabels: boolean;
  log: Logger;
}

export interface SyncOutcome {
  durationMs: number;
  serviceChanges: number;
  endpointChanges: number;
  /** Service ports the backend had no room for (SyncStats.servicePortsRefused). */
  servicePortsRefused: number;
  /** What the sync handed the backend: it names what the kernel counts. */
  state: DesiredState;
}

export class ProxyTelemetry {
  readonly health: ProxierHealth;
  readonly metrics: ProxyMetrics;
  private readonly servers: http.Server[] = [];
  private sourceSynced = false;
  /** Trigger times of endpoint changes not yet handed to a sync, and of those in the running sync. */
  private pendingTriggers: Date[] = [];
  private syncingTriggers: Date[] = [];
  private syncedState: DesiredState | null = null;

  private constructor(private readonly opts: TelemetryOptions) {
    this.health = new ProxierHealth(2 * opts.syncPeriodMs);
    this.metrics = new ProxyMetrics(opts.backend, { endpointLabels: opts.metricsEndpointLabels, syncedState: () => this.syncedState });
  }

  /** Starts the health and metrics servers; rejects if an address cannot be bound. */
  static async start(opts: TelemetryOptions): Promise<ProxyTelemetry> {
    const telemetry = new ProxyTelemetry(opts);
    try {
      await telemetry.listen('healthz', opts.healthzBindAddress, (req, res) => telemetry.serveHealth(req, res));
      await telemetry.listen('metrics', opts.metricsBindAddress, (req, res) => telemetry.serveMetrics(req, res));
    } catch (err) {
      await telemetry.close();
      throw err;
    }
    return telemetry;
  }

  /** Wraps the sink the source feeds, to read what the model does not keep. */
  observe(sink: ObjectSink): ObjectSink {
    return {
      upsert: (object: RawObject, origin: string) => {
        this.inspect(object);
        sink.upsert(object, origin);
      },
      delete: (kind: ObjectKind, namespace: string, name: string) => {
        if (kind === 'Node' && name === this.opts.nodeName) this.health.syncNode(null);
        sink.delete(kind, namespace, name);
      },
      synced: () => {
        this.sourceSynced = true;
        sink.synced();
      },
    };
  }

  /** The model changed and a sync was requested. */
  queued(pending: { services: number; endpoints: number }): void {
    this.health.queuedUpdate();
    this.metrics.lastQueued.setToCurrentTime();
    this.setPending(pending);
  }

  /** A sync took the pending changes. */
  syncStarted(pending: { services: number; endpoints: number }): void {
    this.syncingTriggers = this.pendingTriggers;
    this.pendingTriggers = [];
    this.setPending(pending);
  }

  /**
   * A sync ran to its end. One that refused service ports did not do
   * everything: it counts as failed, and what it refused stays queued, so
   * health turns bad if it stays refused past the health timeout.
   */
  syncCompleted(outcome: SyncOutcome): void {
    this.syncedState = outcome.state;
    this.metrics.servicePortsRefused.set({ backend: this.opts.backend.name }, outcome.servicePortsRefused);
    if (outcome.servicePortsRefused > 0) {
      this.metrics.syncErrors.inc({ backend: this.opts.backend.name });
      this.health.queuedUpdate();
    } else {
      this.health.updated();
      this.metrics.lastSync.setToCurrentTime();
    }
    this.metrics.syncDuration.observe(outcome.durationMs / 1000);
    this.metrics.serviceChangesTotal.inc(outcome.serviceChanges);
    this.metrics.endpointChangesTotal.inc(outcome.endpointChanges);
    const now = Date.now();
    for (const trigger of this.syncingTriggers) this.metrics.networkProgramming.observe(Math.max(0, now - trigger.getTime()) / 1000);
    this.syncingTriggers = [];
  }

  /** The failed sync's changes come again with the next (full) one. */
  syncFailed(durationMs: number): void {
    this.metrics.syncDuration.observe(durationMs / 1000);
    this.metrics.syncErrors.inc({ backend: this.opts.backend.name });
    this.pendingTriggers = [...this.syncingTriggers, ...this.pendingTriggers];
    this.syncingTriggers = [];
  }

  async close(): Promise<void> {
    await Promise.all(
      this.servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    );
  }

  private inspect(object: RawObject): void {
    const metadata = (object.metadata ?? {}) as { name?: unknown; annotations?: Record<string, unknown> };
    if (object.kind === 'Node' && metadata.name === this.opts.nodeName) this.health.syncNode(object);
    // The initial state's changes happened before kube-lb was there to program them.
    if (object.kind !== 'EndpointSlice' || !this.sourceSynced) return;
    const trigger = metadata.annotations?.[LAST_CHANGE_TRIGGER_TIME];
    const time = typeof trigger === 'string' ? new Date(trigger) : null;
    if (time !== null && !Number.isNaN(time.getTime())) this.pendingTriggers.push(time);
  }

  private setPending(pending: { services: number; endpoints: number }): void {
    this.metrics.serviceChangesPending.set(pending.services);
    this.metrics.endpointChangesPending.set(pending.endpoints);
  }

  private serveHealth(req: http.IncomingMessage, res: http.ServerResponse): void {
    const check = healthCheckOf(req);
    if (check === null) return notFound(res);
    const healthy = answerHealth(this.health, check, res);
    (check === 'healthz' ? this.metrics.healthzTotal : this.metrics.livezTotal).inc({ code: healthy ? '200' : '503' });
  }

  private serveMetrics(req: http.IncomingMessage, res: http.ServerResponse): void {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (pathname === '/proxyMode') return this.serveProxyMode(res);
    if (pathname !== '/metrics') return notFound(res);
    this.metrics.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
        res.end(text);
      },
      (err: Error) => {
        this.opts.log.warn({ err: err.message }, 'cannot collect metrics');
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`cannot collect metrics: ${err.message}\n`);
      },
    );
  }

  /** kube-proxy's /proxyMode: the mode's name, with no newline, as kube-proxy's own tooling reads it. */
  private serveProxyMode(res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' });
    res.end(this.opts.backend.name);
  }

  private async listen(what: string, address: string, handler: http.RequestListener): Promise<void> {
    if (address === '') return;
    const { host, port } = parseBindAddress(address, what);
    const server = http.createServer(handler);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const hint = err.code === 'EADDRINUSE' ? `; another program (kube-proxy, another kube-lb?) holds the port: stop it, or choose another --${what}-bind-address ("" turns ${what} off)` : '';
        reject(new Error(`cannot serve ${what} on ${address}: ${err.message}${hint}`));
      });
      server.listen(port, host, () => resolve());
    });
    this.servers.push(server);
    const bound = server.address() as AddressInfo;
    this.opts.log.info({ [what]: `${bound.address}:${bound.port}` }, `serving ${what}`);
  }
}

/** "0.0.0.0:10256", "[::]:10256" or "127.0.0.1:0" into host and port. */
export function parseBindAddress(address: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) throw new UsageError(`--${what}-bind-address=${address}: not host:port, such as 0.0.0.0:10256`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function notFound(res: http.ServerResponse): void {
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('404 page not found\n');
}
