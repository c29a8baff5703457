// Which conntrack flows a sync leaves stale, decided once for every backend.
// UDP has no close: a flow keeps the endpoint it was first translated to, or
// stays untranslated, for as long as its client keeps its source port. As
// kube-proxy does, kube-lb ends such flows after the sync that made them
// stale. A TCP or SCTP connection to an endpoint ends on its own, but one
// that began before its frontend was programmed does not: conntrack holds
// its first packet's tuple untranslated, every retransmitted SYN (or a new
// connection reusing the source port) joins that entry and goes nowhere,
// and each one keeps it alive. kube-lb ends those too, where kube-proxy ends
// them only for UDP.
import { type Destination, type Frontend, type IPFamily, destinationKey } from '../model/contract.js';

export interface StaleFlows {
  frontend: Frontend;
  /** The frontend's address family, as the model resolved it. */
  family: IPFamily;
  /** Endpoints the frontend no longer sends to: flows translated to them end (UDP only). */
  gone: Destination[];
  /** Flows that reached the frontend untranslated end: it led nowhere before, or (UDP) is gone. */
  untranslated: boolean;
}

/**
 * Compares the endpoints a frontend reached before a sync with those after
 * (null: the frontend was, or is, absent). `beforeKnown` is false when the
 * sync cannot know what an earlier kube-lb left (a first sync from memory):
 * then no untranslated flow is assumed. Returns null when nothing is stale.
 */
export function staleFlows(frontend: Frontend, family: IPFamily, before: readonly Destination[] | null, after: readonly Destination[] | null, beforeKnown: boolean): StaleFlows | null {
  const ledNowhere = beforeKnown && (before === null || before.length === 0) && after !== null && after.length > 0;
  if (frontend.protocol !== 'UDP') return ledNowhere ? { frontend, family, gone: [], untranslated: true } : null;
  const kept = new Set((after ?? []).map(destinationKey));
  const gone = (before ?? []).filter((d) => !kept.has(destinationKey(d)));
  const untranslated = ledNowhere || (after === null && before !== null);
  return gone.length > 0 || untranslated ? { frontend, family, gone, untranslated } : null;
}
