// How `kube-lb inspect` prints a backend's kernel state: the same view,
// text or JSON, for every backend.
import type { FrontendView } from './backends/backend.js';
import { compareDestinations, destinationKey, frontendKey } from './model/contract.js';
import { compareIps } from './net/ip.js';

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

export function formatViews(views: readonly FrontendView[], output: 'text' | 'json'): string {
  const sorted = normalizeViews(views);
  if (output === 'json') return JSON.stringify(sorted, null, 2) + '\n';
  if (sorted.length === 0) return 'no services programmed\n';
  const rows = sorted.map((v) => [
    v.kind,
    frontendKey(v.frontend),
    v.destinations.length === 0 ? '(no endpoints)' : v.destinations.map(destinationKey).join(', '),
  ]);
  const header = ['KIND', 'FRONTEND', 'BACKENDS'];
  const widths = [0, 1].map((i) => Math.max(header[i]!.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map(([k, f, b]) => `${k!.padEnd(widths[0]!)}  ${f!.padEnd(widths[1]!)}  ${b}`).join('\n') + '\n';
}
