// Per-service and per-endpoint connection counters for /metrics. Backends
// count by kernel object (frontends and endpoint addresses); the names
// operators know come from the state of the last sync, which is what the
// kernel holds. Counters are read from the kernel when /metrics is scraped,
// never at a sync.
import type { Backend, EndpointCounters } from '../backends/backend.js';
import { type DesiredState, type ServicePortState, destinationKey, frontendKey } from '../model/contract.js';

/** Scrapes within this long of a read share it: several scrapers cost one read of the kernel. */
export const COUNTERS_MAX_AGE_MS = 5_000;

export interface ConnectionSample {
  labels: { namespace: string; service: string; port: string; endpoint?: string };
  connections: number;
}

const servicePortsByFrontend = new WeakMap<DesiredState, Map<string, ServicePortState>>();

function servicePortOf(state: DesiredState, counted: EndpointCounters): ServicePortState | undefined {
  let index = servicePortsByFrontend.get(state);
  if (index === undefined) {
    index = new Map([...state.values()].flatMap((sp) => sp.frontends.map((f) => [frontendKey(f), sp] as const)));
    servicePortsByFrontend.set(state, index);
  }
  for (const f of counted.frontends) {
    const sp = index.get(frontendKey(f));
    if (sp !== undefined) return sp;
  }
  return undefined;
}

/**
 * Sums the kernel's counts by service port, and by endpoint too when
 * `endpointLabels` is set. Counts of frontends the state does not hold
 * (a service deleted since the last sync) are left out.
 */
export function connectionSamples(state: DesiredState, counted: readonly EndpointCounters[], endpointLabels: boolean): ConnectionSample[] {
  const samples = new Map<string, ConnectionSample>();
  for (const c of counted) {
    const sp = servicePortOf(state, c);
    if (sp === undefined) continue;
    const labels: ConnectionSample['labels'] = { namespace: sp.namespace, service: sp.name, port: sp.portName };
    if (endpointLabels) labels.endpoint = destinationKey(c.destination);
    const id = `${sp.key}\0${labels.endpoint ?? ''}`;
    const sample = samples.get(id);
    if (sample === undefined) samples.set(id, { labels, connections: c.connections });
    else sample.connections += c.connections;
  }
  return [...samples.values()];
}

/** The backend's counters, read at most once per COUNTERS_MAX_AGE_MS, and never twice at once. */
export class CountersCache {
  private last: { at: number; read: Promise<EndpointCounters[]> } | null = null;

  constructor(private readonly counters: () => Promise<EndpointCounters[]>, private readonly now = Date.now) {}

  read(): Promise<EndpointCounters[]> {
    const now = this.now();
    if (this.last === null || now - this.last.at >= COUNTERS_MAX_AGE_MS) {
      const read = this.counters();
      this.last = { at: now, read };
      // A failed read is not served again.
      read.catch(() => {
        if (this.last?.read === read) this.last = null;
      });
    }
    return this.last.read;
  }
}

/** The backend's counting, if it counts. */
export function countersOf(backend: Backend): CountersCache | undefined {
  const counters = backend.counters?.bind(backend);
  return counters === undefined ? undefined : new CountersCache(counters);
}
