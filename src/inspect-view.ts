// How `kube-lb inspect` prints a backend's kernel state: the same view,
// text or JSON, for every backend; named from the source when it is given.
import { type Counts, type EndpointCounters, type FrontendView, addCounts } from './backends/backend.js';
import type { FrontendSource } from './inspect-source.js';
import { type Destination, type SessionAffinity, compareDestinations, destinationKey, frontendKey } from './model/contract.js';
import { compareIps } from './net/ip.js';

/** A frontend in the kernel, named with what the source says of it. */
export interface NamedView extends FrontendView {
  /** The service port; null when the source has no such frontend (stale kernel state, or a sync still to come). */
  service: { namespace: string; name: string; port: string } | null;
  /** The traffic policy of the traffic the view follows: internal for a ClusterIP, external for the others. */
  policy: 'Cluster' | 'Local' | null;
  affinity: SessionAffinity | null;
  /** The kernel's destinations, each with its endpoint's node when the source knows it. */
  destinations: (Destination & { node: string | null })[];
}

/** What -o wide shows of a destination: what the kernel counted to it, when it counts. */
type CountedDestination = Destination & Partial<Counts>;

/**
 * Each view's destinations with what the kernel counted to them (-o wide):
 * connections, and packets and bytes where the kernel counts them. A
 * kernel that counts an endpoint once for all frontends of its service
 * port shows that count on each of them.
 */
export function countViews(views: readonly FrontendView[], counted: readonly EndpointCounters[]): FrontendView[] {
  const counts = new Map<string, Counts>();
  for (const c of counted) {
    for (const f of c.frontends) {
      const key = `${frontendKey(f)} ${destinationKey(c.destination)}`;
      counts.set(key, addCounts(counts.get(key), c));
    }
  }
  return views.map((v) => ({
    ...v,
    destinations: v.destinations.map((d): CountedDestination => ({ ...d, ...counts.get(`${frontendKey(v.frontend)} ${destinationKey(d)}`) })),
  }));
}

/** "10.244.0.11:8080", with " (node)" and " conns=N pkts=N bytes=N" when known. */
function destinationText(d: CountedDestination & { node?: string | null }): string {
  const node = d.node === null || d.node === undefined ? '' : ` (${d.node})`;
  const conns = d.connections === undefined ? '' : ` conns=${d.connections}`;
  const traffic = d.packets === undefined ? '' : ` pkts=${d.packets} bytes=${d.bytes}`;
  return `${destinationKey(d)}${node}${conns}${traffic}`;
}

/** Frontends by address, port and protocol; destinations sorted. */
export function normalizeViews(views: readonly FrontendView[]): FrontendView[] {
  return views
    .map((v) => ({ kind: v.kind, frontend: v.frontend, destinations: [...v.destinations].sort(compareDestinations) }))
    .sort(
      (a, b) =>
        compareIps(a.frontend.ip, b.frontend.ip) ||
        a.frontend.port - b.frontend.port ||
        a.frontend.protocol.localeCompare(b.frontend.protocol),
    );
}

/** The views, normalized, each named from the source's frontend of the same key. */
export function nameViews(views: readonly FrontendView[], sources: ReadonlyMap<string, FrontendSource>): NamedView[] {
  return normalizeViews(views).map((view) => {
    const source = sources.get(frontendKey(view.frontend));
    const destinations = view.destinations.map((d) => ({ ...d, node: source?.endpointNodes.get(d.ip) ?? null }));
    if (source === undefined) return { ...view, service: null, policy: null, affinity: null, destinations };
    const { servicePort: sp, frontend } = source;
    const followed = view.kind === 'ClusterIP' ? frontend.internal : frontend.external;
    return {
      ...view,
      service: { namespace: sp.namespace, name: sp.name, port: sp.portName },
      policy: followed.policy === 'local' ? 'Local' : 'Cluster',
      affinity: frontend.affinity,
      destinations,
    };
  });
}

export function formatViews(views: readonly FrontendView[], output: 'text' | 'wide' | 'json'): string {
  const sorted = normalizeViews(views);
  if (output === 'json') return JSON.stringify(sorted, null, 2) + '\n';
  if (sorted.length === 0) return 'no services programmed\n';
  return table(
    ['KIND', 'FRONTEND', 'BACKENDS'],
    sorted.map((v) => [v.kind, frontendKey(v.frontend), backends(v.destinations.map(destinationText))]),
  );
}

/** Named views as `kubectl get -o wide` prints objects: `<none>` where the source has nothing to say. */
export function formatNamedViews(views: readonly NamedView[], output: 'text' | 'wide' | 'json', nothing = 'no services programmed'): string {
  if (output === 'json') return JSON.stringify(views, null, 2) + '\n';
  if (views.length === 0) return `${nothing}\n`;
  const none = '<none>';
  return table(
    ['NAMESPACE', 'NAME', 'PORT', 'KIND', 'FRONTEND', 'POLICY', 'AFFINITY', 'BACKENDS'],
    views.map((v) => [
      v.service?.namespace ?? none,
      v.service?.name ?? none,
      v.service === null ? none : v.service.port || '<unset>',
      v.kind,
      frontendKey(v.frontend),
      v.policy ?? none,
      v.service === null ? none : v.affinity === null ? 'None' : `ClientIP/${v.affinity.timeoutSeconds}s`,
      backends(v.destinations.map(destinationText)),
    ]),
  );
}

function backends(destinations: string[]): string {
  return destinations.length === 0 ? '(no endpoints)' : destinations.join(', ');
}

/** Columns padded to their widest cell; the last, a list, runs on. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');
  return [header, ...rows].map(line).join('\n') + '\n';
}
