// UDP has no connection to close: conntrack keeps sending a flow's packets
// to the endpoint it was first NATed to, or keeps them un-NATed if they
// started before the service had endpoints. Like kube-proxy, the netfilter
// backends delete such flows after a sync; TCP flows are left to end.
import type { SyncStats } from '../backend.js';
import type { Destination, Frontend } from '../../model/contract.js';
import type { ProgrammedPort } from './frontends.js';
import { frontendKey } from '../../model/contract.js';
import type { Logger } from '../../log.js';
import { runCommand } from './command.js';

/** A `conntrack -D` selection: UDP flows to a frontend, optionally only those answered from `replyFrom`. */
export interface StaleFlows {
  frontend: Frontend;
  /** An endpoint no longer behind the frontend, or the frontend itself for flows that were never NATed. */
  replyFrom?: Destination;
}

/** What a sync changed, from one sync to the next: the stats, and the UDP flows left stale. */
export class ProgrammedFrontends {
  private programmed: Map<string, ProgrammedPort> | null = null;

  /** Records the service ports a sync programmed. */
  update(servicePorts: readonly ProgrammedPort[]): { stats: SyncStats; stale: StaleFlows[] } {
    const now = new Map(servicePorts.map((sp) => [frontendKey(sp.frontend), sp]));
    const before = this.programmed;
    this.programmed = now;
    const stale: StaleFlows[] = [];
    let written = 0;
    for (const [fk, sp] of now) {
      const old = before?.get(fk);
      if (old !== undefined && sameDestinations(old.destinations, sp.destinations)) continue;
      written++;
      if (sp.frontend.protocol !== 'UDP') continue;
      const kept = new Set(sp.destinations.map(destinationKey));
      for (const d of old?.destinations ?? []) if (!kept.has(destinationKey(d))) stale.push({ frontend: sp.frontend, replyFrom: d });
      // Flows that began while the frontend led nowhere: known only after a first sync, so a restart flushes nothing.
      const hadNone = before !== null && (old === undefined || old.destinations.length === 0);
      if (hadNone && sp.destinations.length > 0) stale.push({ frontend: sp.frontend, replyFrom: { ip: sp.frontend.ip, port: sp.frontend.port } });
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

const destinationKey = (d: Destination): string => `${d.ip}:${d.port}`;

function sameDestinations(a: readonly Destination[], b: readonly Destination[]): boolean {
  return a.length === b.length && a.every((d, i) => destinationKey(d) === destinationKey(b[i]!));
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
