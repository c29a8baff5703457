// What `kube-lb diff` prints: the frontends the next sync would add, change
// and remove. The kernel side is the backend's own reading of its state
// (what `inspect` shows); the wanted side is the model's resolution of the
// source, put in the same terms, as the Backend contract defines them: a
// frontend, its kind, and where traffic from outside the node goes (for a
// ClusterIP, all its traffic). So every backend answers the same question
// with the code it already has, and none carries a second copy of its sync.
import type { FrontendView } from './backends/backend.js';
import type { FrontendSource } from './inspect-source.js';
import { type Destination, type ResolvedFrontend, destinationKey, frontendKey, sameDestinations } from './model/contract.js';
import { normalizeViews } from './inspect-view.js';

/** A frontend as inspect would read it back once the model's state is synced. */
export function wantedView(f: ResolvedFrontend): FrontendView {
  return { kind: f.kind, frontend: { ip: f.ip, port: f.port, protocol: f.protocol }, destinations: (f.kind === 'ClusterIP' ? f.internal : f.external).destinations };
}

export interface FrontendDiff {
  change: 'add' | 'change' | 'remove';
  /** The service port, when the source has the frontend (a removed one is in the kernel only, which holds no names). */
  service: { namespace: string; name: string; port: string } | null;
  /** Absent on the side it is missing from. */
  before?: FrontendView;
  after?: FrontendView;
}

/** Each frontend whose kernel view differs from the wanted one: additions, then changes, then removals, each by address, port and protocol. */
export function diffViews(sources: ReadonlyMap<string, FrontendSource>, current: readonly FrontendView[]): FrontendDiff[] {
  const wanted = normalizeViews([...sources.values()].map((s) => wantedView(s.frontend)));
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
  for (const [key, before] of now) if (!sources.has(key)) diffs.push({ change: 'remove', service: null, before });
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
 *   - <none> <none> KIND ADDRESS:PORT/PROTO -> ENDPOINTS
 * with `<unset>` for an unnamed port, and `(was KIND)` after a changed kind.
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
