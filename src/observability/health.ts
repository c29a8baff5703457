// kube-proxy's proxier health: healthy while no queued update has waited
// longer than healthTimeout for a sync, and (for /healthz only) while the
// node is not being deleted. Served on /healthz and /livez with kube-proxy's
// JSON body.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RawObject } from '../model/objects.js';

/** The Cluster Autoscaler's taint on a node it is about to delete. */
const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';
/** Go's zero time, which kube-proxy reports when it never synced. */
const ZERO_TIME = new Date(-62135596800000);

export interface HealthStatus {
  healthy: boolean;
  lastUpdated: Date;
  currentTime: Date;
  nodeEligible: boolean;
}

export class ProxierHealth {
  private lastUpdated = ZERO_TIME;
  /** When the oldest update not yet synced was queued; null when none is pending. */
  private oldestPendingQueued: Date | null = null;
  // Eligible while starting, until the Node object says otherwise.
  private nodeEligible = true;

  constructor(
    private readonly healthTimeoutMs: number,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** A change arrived that a sync must apply. */
  queuedUpdate(): void {
    this.oldestPendingQueued ??= this.now();
  }

  /** A sync applied everything queued before it started. */
  updated(): void {
    this.oldestPendingQueued = null;
    this.lastUpdated = this.now();
  }

  /** Follows this node's Node object: a node being deleted (or about to be) takes no new traffic. */
  syncNode(node: RawObject | null): void {
    const metadata = (node?.metadata ?? {}) as { deletionTimestamp?: unknown };
    const taints = ((node?.spec as { taints?: unknown } | undefined)?.taints ?? []) as { key?: unknown }[];
    this.nodeEligible = node !== null && !metadata.deletionTimestamp && !(Array.isArray(taints) && taints.some((t) => t?.key === TO_BE_DELETED_TAINT));
  }

  status(): HealthStatus {
    const currentTime = this.now();
    const healthy = this.oldestPendingQueued === null || currentTime.getTime() - this.oldestPendingQueued.getTime() < this.healthTimeoutMs;
    return { healthy, lastUpdated: this.lastUpdated, currentTime, nodeEligible: this.nodeEligible };
  }
}

export type HealthCheck = 'healthz' | 'livez';

/**
 * kube-proxy's handlers: /healthz also requires an eligible node and reports
 * it; /livez does not. A healthy answer reports lastUpdated as now, as
 * kube-proxy does for compatibility with older releases.
 */
export function answerHealth(health: ProxierHealth, check: HealthCheck, res: ServerResponse): boolean {
  const status = health.status();
  const healthy = status.healthy && (check === 'livez' || status.nodeEligible);
  const lastUpdated = (healthy ? status.currentTime : status.lastUpdated).toISOString();
  const body = { lastUpdated, currentTime: status.currentTime.toISOString(), ...(check === 'healthz' ? { nodeEligible: status.nodeEligible } : {}) };
  res.writeHead(healthy ? 200 : 503, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff' });
  res.end(JSON.stringify(body));
  return healthy;
}

export function healthCheckOf(req: IncomingMessage): HealthCheck | null {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  return path === '/healthz' ? 'healthz' : path === '/livez' ? 'livez' : null;
}
