// Per-service and per-endpoint connection (and packet and byte) counters for /metrics. Backends
// count by kernel object (frontends and endpoint addresses); the names
// operators know come from the state of the last sync, which is what the
// kernel holds. Counters are read from the kernel when /metrics is scraped,
// never at a sync.
import { type Backend, type Counts, type EndpointCounters, addCounts } from '../backends/backend.js';
import { type DesiredState, type ServicePortState, destinationKey, frontendKey } from '../model/contract.js';

/** A scrape finding the last read older than this starts a new one: several scrapers cost one read of the kernel. */
export const COUNTERS_MAX_AGE_MS = 5_000;

export interface ConnectionSample {
  labels: { namespace: string; service: string; port: string; endpoint?: string };
  counts: Counts;
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

/** The last samples made of each read of the counters: a scrape's metrics (connections, packets, bytes) share one. */
const samplesByRead = new WeakMap<readonly EndpointCounters[], { state: DesiredState; endpointLabels: boolean; samples: ConnectionSample[] }>();

/**
 * Sums the kernel's counts by service port, and by endpoint too when
 * `endpointLabels` is set. Counts of frontends the state does not hold
 * (a service deleted since the last sync) are left out. The same state and
 * read give the same samples, summed once.
 */
export function connectionSamples(state: DesiredState, counted: readonly EndpointCounters[], endpointLabels: boolean): ConnectionSample[] {
  const last = samplesByRead.get(counted);
  if (last !== undefined && last.state === state && last.endpointLabels === endpointLabels) return last.samples;
  // Keyed by the service port itself without endpoint labels: no key string per counted endpoint.
  const samples = new Map<unknown, ConnectionSample>();
  for (const c of counted) {
    const sp = servicePortOf(state, c);
    if (sp === undefined) continue;
    const endpoint = endpointLabels ? destinationKey(c.destination) : undefined;
    const id = endpoint === undefined ? sp : `${sp.key}\0${endpoint}`;
    const sample = samples.get(id);
    if (sample !== undefined) {
      sample.counts = addCounts(sample.counts, c);
      continue;
    }
    const labels: ConnectionSample['labels'] = { namespace: sp.namespace, service: sp.name, port: sp.portName };
    if (endpoint !== undefined) labels.endpoint = endpoint;
    samples.set(id, { labels, counts: addCounts(undefined, c) });
  }
  const result = [...samples.values()];
  samplesByRead.set(counted, { state, endpointLabels, samples: result });
  return result;
}

/**
 * The backend's counters, read at most once per COUNTERS_MAX_AGE_MS and
 * never twice at once. Reading a large table takes long, so a scrape
 * answers from the last read and a stale one starts the next; only the
 * first scrape, and the first after a failed read, wait for theirs.
 */
export class CountersCache {
  private last: { at: number; counted: EndpointCounters[] } | null = null;
  private reading: Promise<EndpointCounters[]> | null = null;

  constructor(private readonly counters: () => Promise<EndpointCounters[]>, private readonly now = Date.now) {}

  read(): Promise<EndpointCounters[]> {
    if (this.last === null) return this.refresh();
    // A failure here clears the last read: the next scrape waits for a read of its own, and fails with it.
    if (this.now() - this.last.at >= COUNTERS_MAX_AGE_MS) this.refresh().catch(() => {});
    return Promise.resolve(this.last.counted);
  }

  private refresh(): Promise<EndpointCounters[]> {
    if (this.reading !== null) return this.reading;
    const at = this.now();
    this.reading = this.counters()
      .then(
        (counted) => {
          this.last = { at, counted };
          return counted;
        },
        (err: unknown) => {
          this.last = null;
          throw err;
        },
      )
      .finally(() => {
        this.reading = null;
      });
    return this.reading;
  }
}

/** The backend's counting, if it counts. */
export function countersOf(backend: Backend): CountersCache | undefined {
  const counters = backend.counters?.bind(backend);
  return counters === undefined ? undefined : new CountersCache(counters);
}
