// What each sync programmed, and the conntrack flows it left stale (which
// ones is decided in ../stale-flows.ts): conntrack keeps a UDP flow on the
// endpoint it was first NATed to, or un-NATed if it began before the
// frontend had endpoints. A NodePort's flows are those to its node address
// and port.
import type { SyncStats } from '../backend.js';
import type { Destination, Frontend } from '../../model/contract.js';
import { frontendKey, sameDestinations } from '../../model/contract.js';
import { type StaleUdpFlows, staleUdpFlows } from '../stale-flows.js';
import type { Logger } from '../../log.js';
import { runCommand } from './command.js';

/** A frontend and every endpoint its traffic may have been NATed to. */
export interface FrontendDestinations {
  frontend: Frontend;
  destinations: readonly Destination[];
}

/** What a sync changed, from one sync to the next: the stats, and the UDP flows left stale. */
export class ProgrammedFrontends {
  private programmed: Map<string, FrontendDestinations> | null = null;

  /** Records the frontends a sync programmed. */
  update(frontends: readonly FrontendDestinations[]): { stats: SyncStats; stale: StaleUdpFlows[] } {
    const now = new Map(frontends.map((f) => [frontendKey(f.frontend), f]));
    const before = this.programmed;
    this.programmed = now;
    const stale: StaleUdpFlows[] = [];
    let written = 0;
    for (const [fk, f] of now) {
      const old = before?.get(fk);
      if (old !== undefined && sameDestinations(old.destinations, f.destinations)) continue;
      written++;
      // What an earlier kube-lb programmed is not known after a restart: it flushes nothing.
      const flows = staleUdpFlows(f.frontend, old?.destinations ?? null, f.destinations, before !== null);
      if (flows !== null) stale.push(flows);
    }
    let removed = 0;
    for (const [fk, old] of before ?? []) {
      if (now.has(fk)) continue;
      removed++;
      const flows = staleUdpFlows(old.frontend, old.destinations, null, true);
      if (flows !== null) stale.push(flows);
    }
    return { stats: { frontendsWritten: written, frontendsRemoved: removed }, stale };
  }
}

/**
 * Deletes the stale UDP flows with the conntrack tool, one selection per
 * endpoint that answered them (the frontend itself for untranslated ones);
 * a failure is logged, not thrown: the rules are in place.
 */
export async function flushStaleFlows(stale: readonly StaleUdpFlows[], log: Logger): Promise<void> {
  const selections = stale.flatMap(({ frontend, gone, untranslated }) => [...gone, ...(untranslated ? [{ ip: frontend.ip, port: frontend.port }] : [])].map((replyFrom) => ({ frontend, replyFrom })));
  for (const { frontend, replyFrom } of selections) {
    const args = ['-D', '-p', 'udp', '--orig-dst', frontend.ip, '--orig-port-dst', String(frontend.port), '--reply-src', replyFrom.ip, '--reply-port-src', String(replyFrom.port)];
    try {
      await runCommand('conntrack', args);
    } catch (err) {
      // conntrack exits 1 when nothing matched.
      if (!/0 flow entries have been deleted/.test((err as Error).message)) {
        log.warn({ frontend: frontendKey(frontend), err: (err as Error).message }, 'flushing stale UDP flows failed');
      }
    }
  }
  if (selections.length > 0) log.debug({ selections: selections.length }, 'flushed stale UDP flows');
}
