// UDP has no connection to close: conntrack keeps sending a flow's packets
// to the endpoint it was first NATed to, or keeps them un-NATed if they
// started before the service had endpoints. Like kube-proxy, the netfilter
// backends delete such flows after a sync, for frontends of every kind (a
// NodePort's flows are those to its node address and port); TCP flows are
// left to end.
import type { SyncStats } from '../backend.js';
import type { Destination, Frontend } from '../../model/contract.js';
import { destinationKey, frontendKey, sameDestinations } from '../../model/contract.js';
import type { Logger } from '../../log.js';
import { runCommand } from './command.js';

/** A `conntrack -D` selection: UDP flows to a frontend, optionally only those answered from `replyFrom`. */
export interface StaleFlows {
  frontend: Frontend;
  /** An endpoint no longer behind the frontend, or the frontend itself for flows that were never NATed. */
  replyFrom?: Destination;
}

/** A frontend and every endpoint its traffic may have been NATed to. */
export interface FrontendDestinations {
  frontend: Frontend;
  destinations: readonly Destination[];
}

/** What a sync changed, from one sync to the next: the stats, and the UDP flows left stale. */
export class ProgrammedFrontends {
  private programmed: Map<string, FrontendDestinations> | null = null;

  /** Records the frontends a sync programmed. */
  update(frontends: readonly FrontendDestinations[]): { stats: SyncStats; stale: StaleFlows[] } {
    const now = new Map(frontends.map((f) => [frontendKey(f.frontend), f]));
    const before = this.programmed;
    this.programmed = now;
    const stale: StaleFlows[] = [];
    let written = 0;
    for (const [fk, f] of now) {
      const old = before?.get(fk);
      if (old !== undefined && sameDestinations(old.destinations, f.destinations)) continue;
      written++;
      if (f.frontend.protocol !== 'UDP') continue;
      const kept = new Set(f.destinations.map(destinationKey));
      for (const d of old?.destinations ?? []) if (!kept.has(destinationKey(d))) stale.push({ frontend: f.frontend, replyFrom: d });
      // Flows that began while the frontend led nowhere: known only after a first sync, so a restart flushes nothing.
      const hadNone = before !== null && (old === undefined || old.destinations.length === 0);
      if (hadNone && f.destinations.length > 0) stale.push({ frontend: f.frontend, replyFrom: { ip: f.frontend.ip, port: f.frontend.port } });
    }
    let removed = 0;
    for (const [fk, old] of before ?? []) {
      if (now.has(fk)) continue;
      removed++;
      if (old.frontend.protocol === 'UDP' && old.destinations.length > 0) stale.push({ frontend: old.frontend });
    }
    return { stats: { frontendsWritten: written, frontendsRemoved: removed }, stale };
  }
}

/** Deletes the selected UDP flows with the conntrack tool; a failure is logged, not thrown: the rules are in place. */
export async function flushStaleFlows(stale: readonly StaleFlows[], log: Logger): Promise<void> {
  for (const { frontend, replyFrom } of stale) {
    const args = ['-D', '-p', 'udp', '--orig-dst', frontend.ip, '--orig-port-dst', String(frontend.port)];
    if (replyFrom !== undefined) args.push('--reply-src', replyFrom.ip, '--reply-port-src', String(replyFrom.port));
    try {
      await runCommand('conntrack', args);
    } catch (err) {
      // conntrack exits 1 when nothing matched.
      if (!/0 flow entries have been deleted/.test((err as Error).message)) {
        log.warn({ frontend: frontendKey(frontend), err: (err as Error).message }, 'flushing stale UDP flows failed');
      }
    }
  }
  if (stale.length > 0) log.debug({ selections: stale.length }, 'flushed stale UDP flows');
}
