// How `kube-lb inspect` prints a backend's kernel state: the same view,
// text or JSON, for every backend.
import { type FrontendView, compareDestinations, frontendKey, ipv4ToInt } from './backends/backend.js';

/** Frontends by address, port and protocol; destinations sorted. */
export function normalizeViews(views: readonly FrontendView[]): FrontendView[] {
  return views
    .map((v) => ({ frontend: v.frontend, destinations: [...v.destinations].sort(compareDestinations) }))
    .sort(
      (a, b) =>
        ipv4ToInt(a.frontend.ip) - ipv4ToInt(b.frontend.ip) ||
        a.frontend.port - b.frontend.port ||
        a.frontend.protocol.localeCompare(b.frontend.protocol),
    );
}

export function formatViews(views: readonly FrontendView[], output: 'text' | 'json'): string {
  const sorted = normalizeViews(views);
  if (output === 'json') return JSON.stringify(sorted, null, 2) + '\n';
  if (sorted.length === 0) return 'no services programmed\n';
  const rows = sorted.map((v) => [
    frontendKey(v.frontend),
    v.destinations.length === 0 ? '(no endpoints: traffic dropped)' : v.destinations.map((d) => `${d.ip}:${d.port}`).join(', '),
  ]);
  const width = Math.max('FRONTEND'.length, ...rows.map((r) => r[0]!.length));
  return [['FRONTEND', 'BACKENDS'], ...rows].map(([f, b]) => `${f!.padEnd(width)}  ${b}`).join('\n') + '\n';
}
