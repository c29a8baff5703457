// Which UDP flows a sync leaves stale, decided once for every backend. UDP
// has no close: a flow keeps the endpoint it was first translated to, or
// stays untranslated, for as long as its client keeps its source port. As
// kube-proxy does, kube-lb ends such flows after the sync that made them
// stale; TCP flows end on their own.
import { type Destination, type Frontend, destinationKey } from '../model/contract.js';

export interface StaleUdpFlows {
  frontend: Frontend;
  /** Endpoints the frontend no longer sends to: flows translated to them end. */
  gone: Destination[];
  /** Flows that reached the frontend untranslated end: it led nowhere before, or is gone. */
  untranslated: boolean;
}

/**
 * Compares the endpoints a frontend reached before a sync with those after
 * (null: the frontend was, or is, absent). `beforeKnown` is false when the
 * sync cannot know what an earlier kube-lb left (a first sync from memory):
 * then no untranslated flow is assumed. Returns null when nothing is stale.
 */
export function staleUdpFlows(frontend: Frontend, before: readonly Destination[] | null, after: readonly Destination[] | null, beforeKnown: boolean): StaleUdpFlows | null {
  if (frontend.protocol !== 'UDP') return null;
  const kept = new Set((after ?? []).map(destinationKey));
  const gone = (before ?? []).filter((d) => !kept.has(destinationKey(d)));
  const ledNowhere = beforeKnown && (before === null || before.length === 0) && after !== null && after.length > 0;
  const untranslated = ledNowhere || (after === null && before !== null);
  return gone.length > 0 || untranslated ? { frontend, gone, untranslated } : null;
}
