// The Prometheus metrics: kube-proxy's sync metrics under their kube-proxy
// names, so existing dashboards and alerts keep working, plus kube-lb's own.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Backend, Counts } from '../backends/backend.js';
import { FILL_IDLE_MS, FILL_REFRESH_MS } from '../backends/ebpf/map-stats.js';
import type { DesiredState } from '../model/contract.js';
import { COUNTERS_MAX_AGE_MS, connectionSamples, countersOf } from './service-counters.js';

export interface MetricsOptions {
  /** Label the service counters with each endpoint too (--metrics-endpoint-labels): one series per endpoint instead of per service port. */
  endpointLabels: boolean;
  /** The state of the last completed sync, which names what the kernel counts; null before the first. */
  syncedState: () => DesiredState | null;
}

/** kube-proxy's buckets: 1 ms doubling up to about 16 s. */
const SYNC_DURATION_BUCKETS = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);
/** kube-proxy's buckets: 0.25 s and 0.5 s, each second to 59 s, every 5 s to 115 s, every 30 s to 5 min. */
const NETWORK_PROGRAMMING_BUCKETS = [
  0.25, 0.5,
  ...Array.from({ length: 59 }, (_, i) => i + 1),
  ...Array.from({ length: 12 }, (_, i) => 60 + 5 * i),
  ...Array.from({ length: 7 }, (_, i) => 120 + 30 * i),
];

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly syncDuration = new Histogram({ name: 'kubeproxy_sync_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds', buckets: SYNC_DURATION_BUCKETS, registers: [this.registry] });
  readonly lastSync = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', help: 'The last time proxy rules were successfully synced', registers: [this.registry] });
  readonly lastQueued = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', help: 'The last time a sync of proxy rules was queued', registers: [this.registry] });
  readonly networkProgramming = new Histogram({ name: 'kubeproxy_network_programming_duration_seconds', help: 'In Cluster Network Programming Latency in seconds', buckets: NETWORK_PROGRAMMING_BUCKETS, registers: [this.registry] });
  readonly endpointChangesPending = new Gauge({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending', help: 'Pending proxy rules Endpoint changes', registers: [this.registry] });
  readonly endpointChangesTotal = new Counter({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total', help: 'Cumulative proxy rules Endpoint changes', registers: [this.registry] });
  readonly serviceChangesPending = new Gauge({ name: 'kubeproxy_sync_proxy_rules_service_changes_pending', help: 'Pending proxy rules Service changes', registers: [this.registry] });
  readonly serviceChangesTotal = new Counter({ name: 'kubeproxy_sync_proxy_rules_service_changes_total', help: 'Cumulative proxy rules Service changes', registers: [this.registry] });
  readonly healthzTotal = new Counter({ name: 'kubeproxy_proxy_healthz_total', help: 'Cumulative proxy healthz HTTP status', labelNames: ['code'], registers: [this.registry] });
  readonly livezTotal = new Counter({ name: 'kubeproxy_proxy_livez_total', help: 'Cumulative proxy livez HTTP status', labelNames: ['code'], registers: [this.registry] });
  // The process's memory under prom-client's default names, read at each scrape.
  readonly residentMemory = new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers: [this.registry], collect() { this.set(process.memoryUsage.rss()); } });
  readonly heapUsed = new Gauge({ name: 'nodejs_heap_size_used_bytes', help: 'Process heap size used from Node.js in bytes.', registers: [this.registry], collect() { this.set(process.memoryUsage().heapUsed); } });
  readonly syncErrors = new Counter({ name: 'kube_lb_sync_errors_total', help: 'Syncs that failed, by backend; a sync that refused service ports counts', labelNames: ['backend'], registers: [this.registry] });
  readonly servicePortsRefused = new Gauge({ name: 'kube_lb_service_ports_refused', help: 'Service ports the last sync left unprogrammed, or as last programmed, for want of room in a kernel table (kube_lb_svc: --bpf-lb-map-max); a warning names each', labelNames: ['backend'], registers: [this.registry] });

  constructor(backend: Backend, opts: MetricsOptions) {
    this.syncErrors.inc({ backend: backend.name }, 0);
    this.servicePortsRefused.set({ backend: backend.name }, 0);
    const counters = countersOf(backend);
    if (counters !== undefined) {
      const age = `A scrape answers from the last read of the kernel and starts the next when it is ${COUNTERS_MAX_AGE_MS / 1000} s old: counts are up to that old plus the time a read takes (the first scrape waits for its read)`;
      const metrics: [string, string, keyof Counts][] = [
        [
          'kube_lb_service_connections_total',
          `New connections to each service port (port: its name), and with endpoint labels to each endpoint (ip:port), as the kernel counted them: for iptables and nftables the packets their endpoint chains DNATed, which are the first packet of each connection, the only one the nat table sees; for ipvs the connections it scheduled to each real server; for ebpf the flows its programs gave each backend, sockets translated at connect included. ${age}; an endpoint's count starts at 0 when its kernel chain, real server or BPF entry is created`,
          'connections',
        ],
      ];
      if (backend.countsTraffic === true) {
        const traffic = `of the connections kube_lb_service_connections_total counts, both directions, as the kernel counted them (nftables: the packets of DNATed flows, counted after DNAT by their frontend and endpoint; ipvs: its real servers' stats; ebpf: the packets its programs translated, which leaves out the connections of sockets translated at connect: the node's own, and pods' under --bpf-socket-lb=all). ${age}`;
        metrics.push(['kube_lb_service_packets_total', `Packets ${traffic}`, 'packets'], ['kube_lb_service_bytes_total', `Bytes (IP headers included) ${traffic}`, 'bytes']);
      }
      for (const [name, help, field] of metrics) {
        new Counter({
          name,
          help,
          labelNames: opts.endpointLabels ? ['namespace', 'service', 'port', 'endpoint'] : ['namespace', 'service', 'port'],
          registers: [this.registry],
          async collect() {
            this.reset();
            const state = opts.syncedState();
            if (state === null) return;
            for (const { labels, counts } of connectionSamples(state, await counters.read(), opts.endpointLabels)) {
              const value = counts[field];
              if (value !== undefined) this.inc(labels, value);
            }
          },
        });
      }
    }
    const drops = backend.drops?.bind(backend);
    if (drops !== undefined) {
      new Counter({
        name: 'kube_lb_bpf_drops_total',
        help: 'Packets the BPF programs dropped, by reason, since the pinned counters were created (no_endpoints also counts new flows refused with an ICMP port unreachable)',
        labelNames: ['reason'],
        registers: [this.registry],
        async collect() {
          this.reset();
          for (const [reason, count] of Object.entries(await drops())) this.inc({ reason }, count);
        },
      });
    }
    const mapFill = backend.mapFill?.bind(backend);
    if (mapFill === undefined) return;
    // Set at scrape time; a map the backend has no count for is left out, not kept at an old value.
    for (const [name, help, field] of [
      ['kube_lb_bpf_map_entries', `Entries in each BPF map, counted in the background every ${FILL_REFRESH_MS / 1000} s while metrics are scraped: up to that old, plus the time one count takes. Absent from the first scrape, and from the first after a pause of ${FILL_IDLE_MS / 60_000} min`, 'entries'],
      ['kube_lb_bpf_map_max_entries', 'Capacity of each BPF map', 'maxEntries'],
    ] as const) {
      new Gauge({
        name,
        help,
        labelNames: ['map'],
        registers: [this.registry],
        async collect() {
          this.reset();
          for (const fill of await mapFill()) {
            const value = fill[field];
            if (value !== null) this.set({ map: fill.map }, value);
          }
        },
      });
    }
  }
}
