// Room in kube_lb_svc, decided before anything is written: a change that
// does not fit is refused whole, for its service port, instead of failing
// the kernel write halfway and with it every other change of the sync.

/** Entries a frontend takes: its slot 0 and one slot per backend; none when absent. */
export function entriesOf(destinations: readonly unknown[] | null): number {
  return destinations === null ? 0 : 1 + destinations.length;
}

/** What one service port's changes need beyond the entries they hold now. */
export interface RoomRequest {
  /** The service port key. */
  key: string;
  /** Some of the frontends that grow are in the map already. */
  inMap: boolean;
  entries: number;
}

/**
 * The service ports whose requests do not fit in `free` entries, and the
 * entries left free once the others are in. Frontends
 * already in the map keep their room first, so a new service never takes
 * it from one that is served; then new service ports in key order, so what
 * gets in does not depend on the order changes arrived in.
 */
export function refusedRequests(free: number, requests: readonly RoomRequest[]): { refused: Set<string>; left: number } {
  const refused = new Set<string>();
  const total = requests.reduce((n, r) => n + r.entries, 0);
  if (total <= free) return { refused, left: free - total };
  const ordered = [...requests].sort((a, b) => Number(b.inMap) - Number(a.inMap) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const request of ordered) {
    if (request.entries <= free) free -= request.entries;
    else refused.add(request.key);
  }
  return { refused, left: free };
}
