// What `kube-lb diff` prints: the frontends the next sync would add, change
// and remove. Each backend answers in inspect's terms (a frontend, its kind,
// and where traffic from outside the node goes): what it reads back from
// the kernel now (inspect), and what it would read back once the model's
// state is synced (planned, computed by its sync's own translation). The
// comparison and the names, which come from the source, are the same for
// every backend.
import type { FrontendView } from './backends/backend.js';
import type { FrontendSource } from './inspect-source.js';
import { type DesiredState, type Destination, destinationKey, frontendKey, sameDestinations } from './model/contract.js';
import { normalizeViews } from './inspect-view.js';

/** The model's state, from its frontends: every service port in it has one. */
export function desiredState(sources: ReadonlyMap<string, FrontendSource>): DesiredState {
  return new Map([...sources.values()].map((s) => [s.servicePort.key, s.servicePort]));
}

export interface FrontendDiff {
  change: 'add' | 'change' | 'remove';
  /** The service port, when the source has the frontend (a removed one is usually in the kernel only, which holds no names). */
  service: { namespace: string; name: string; port: string } | null;
  /** Absent on the side it is missing from. */
  before?: FrontendView;
  after?: FrontendView;
}

/**
 * Each frontend whose view differs between the kernel (`current`) and the
 * backend's plan: additions, then changes, then removals, each by address,
 * port and protocol; named from the source's frontend of the same key.
 */
export function diffViews(planned: readonly FrontendView[], current: readonly FrontendView[], sources: ReadonlyMap<string, FrontendSource>): FrontendDiff[] {
  const wanted = normalizeViews(planned);
  const keys = new Set(wanted.map((v) => frontendKey(v.frontend)));
  const now = new Map(normalizeViews(current).map((v) => [frontendKey(v.frontend), v]));
  const named = (v: FrontendView): FrontendDiff['service'] => {
    const sp = sources.get(frontendKey(v.frontend))?.servicePort;
    return sp === undefined ? null : { namespace: sp.namespace, name: sp.name, port: sp.portName };
  };
  const diffs: FrontendDiff[] = [];
  for (const after of wanted) {
    const before = now.get(frontendKey(after.frontend));
    if (before === undefined) diffs.push({ change: 'add', service: named(after), after });
    else if (before.kind !== after.kind || !sameDestinations(before.destinations, after.destinations)) diffs.push({ change: 'change', service: named(after), before, after });
  }
  for (const [key, before] of now) if (!keys.has(key)) diffs.push({ change: 'remove', service: named(before), before });
  const order = { add: 0, change: 1, remove: 2 };
  // Stable sort: within a group, the frontends stay in normalizeViews' order.
  return diffs.sort((a, b) => order[a.change] - order[b.change]);
}

const SIGN = { add: '+', change: '~', remove: '-' };

function endpoints(destinations: readonly Destination[]): string {
  return destinations.length === 0 ? '(no endpoints)' : destinations.map(destinationKey).join(', ');
}

/**
 * One line per frontend:
 *   + NAMESPACE/NAME PORT KIND ADDRESS:PORT/PROTO -> ENDPOINTS
 *   ~ NAMESPACE/NAME PORT KIND ADDRESS:PORT/PROTO: ENDPOINTS BEFORE -> ENDPOINTS AFTER
 *   - NAMESPACE/NAME PORT KIND ADDRESS:PORT/PROTO -> ENDPOINTS
 * with `<none> <none>` for a frontend the source does not have, `<unset>` for an unnamed port, and `(was KIND)` after a changed kind.
 */
export function formatDiffs(diffs: readonly FrontendDiff[]): string {
  return diffs
    .map((d) => {
      const view = (d.after ?? d.before)!;
      const name = d.service === null ? '<none> <none>' : `${d.service.namespace}/${d.service.name} ${d.service.port || '<unset>'}`;
      const head = `${SIGN[d.change]} ${name} ${view.kind} ${frontendKey(view.frontend)}`;
      if (d.change !== 'change') return `${head} -> ${endpoints(view.destinations)}\n`;
      const kind = d.before!.kind === view.kind ? '' : ` (was ${d.before!.kind})`;
      return `${head}${kind}: ${endpoints(d.before!.destinations)} -> ${endpoints(view.destinations)}\n`;
    })
    .join('');
}
