// The traffic and control-plane measurements, one sandboxed node each.
import { BenchNode, type Entry, type KernelState, SERVER_PORT, type SyncRecord, type Variant, withRoomFor } from './bench-node.js';
import { quantile } from './stats.js';
import { waitForLine } from '../test/lib/sandbox.js';

/** "direct": the client talks to the pods' own addresses, with no kube-lb at all. */
export const DIRECT: Variant = { name: 'direct', args: [] };

const SERVER_PODS = 4;
const CONCURRENCY = 4;
const TIMEOUT_MS = 600_000;
/** When Linux first resends an unanswered SYN (its initial retransmission timeout). */
const SYN_RESEND_MS = 1000;
/**
 * A connection not answered by then is lost. Linux resends an unanswered
 * SYN after 1 s and then each second (net.ipv4.tcp_syn_linear_timeouts):
 * a limit of 1 s raced the first resend, so a connection whose first SYN
 * was refused counted as lost or not by chance. Between the first and the
 * second resend, lost means that neither the SYN nor its first resend was
 * answered; connections that took over 1 s are counted apart.
 */
export const CONNECTION_LIMIT_MS = 1500;

export interface ConnRate {
  connPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Connections lost: not answered within CONNECTION_LIMIT_MS, or refused. */
  failures: number;
  /** Failed connections by error code (or message, e.g. timeout). */
  failureReasons: Record<string, number>;
  /** Answered connections that took over 1 s: their SYN was resent (Linux resends an unanswered SYN after 1 s). */
  overOneSecond: number;
  /**
   * SYNs the server pods' TIME_WAIT sockets refused for an old timestamp
   * (TcpExtPAWSTimewait), over the measurement, its warm-up and the ready
   * poll: a refused SYN is answered with an ACK, the client resets and
   * resends its SYN, at once the first time and 1 s later the next.
   */
  pawsRejectedSyns: number;
  /** The whole machine's busy CPU time per connection, over the measurement and its warm-up. */
  cpuNsPerConn: number;
  /**
   * ebpf, target first only: the in-kernel run time per connection of the
   * TC programs and of the socket programs, over the same span.
   */
  programNsPerConn?: number;
  socketProgramNsPerConn?: number;
}

interface RateOutput {
  connections: number;
  warmupConnections: number;
  failures: Record<string, number>;
  elapsedMs: number;
  latenciesMs: number[];
}

async function withNode<T>(variant: Variant, servers: number, body: (node: BenchNode) => Promise<T>): Promise<T> {
  const node = await BenchNode.create(variant, servers);
  try {
    return await body(node);
  } finally {
    await node.destroy();
  }
}

/**
 * Brings `services` services up on a node (target answered by web-1) and
 * waits until the target answers where the entry's connections start.
 */
async function loadServices(
  node: BenchNode,
  entry: Entry,
  services: number,
  endpointsEach: number,
  target: 'first' | 'last',
  targetEndpoints: string[],
): Promise<{ address: string; ms: number }> {
  const staged = node.stageServices(services, endpointsEach, target, targetEndpoints, entry);
  const poll = await node.startPolling(entry, 'web-1', staged.address, TIMEOUT_MS);
  const t0 = staged.commit();
  return { address: staged.address, ms: (await poll.answeredAt) - t0 };
}

/**
 * New-connection rate and latency to a ClusterIP or NodePort among
 * `services` (or to the pods directly, from the same place), from the
 * entry's place. The other services have `endpointsEach` endpoints.
 */
export async function connRate(variant: Variant, entry: Entry, services: number, endpointsEach: number, target: 'first' | 'last', durationMs: number): Promise<ConnRate> {
  return withNode(variant, SERVER_PODS, async (node) => {
    let targets = node.servers.map((ip) => `${ip}:${SERVER_PORT}`);
    if (variant === DIRECT) {
      if (entry === 'nodeport') await node.routePodsFromOutside();
    } else {
      await node.startKubeLb();
      const { address } = await loadServices(node, entry, services, endpointsEach, target, node.servers);
      targets = [address];
    }
    const rate = (): Promise<RateOutput> => node.client<RateOutput>(entry, 'rate', String(durationMs), String(CONCURRENCY), String(CONNECTION_LIMIT_MS), ...targets);
    // The program statistics cost two clock reads per program run, so the
    // target-last runs, which the bars compare, go without them.
    const { result: out, cpuNs, tcProgramNs, socketProgramNs } = await node.withCost(rate, variant.backend === 'ebpf' && target === 'first');
    const sorted = out.latenciesMs.sort((a, b) => a - b);
    const pawsRejectedSyns = await node.serverPawsRejects();
    const all = out.connections + out.warmupConnections;
    return {
      connPerSec: (out.connections / out.elapsedMs) * 1000,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      failures: Object.values(out.failures).reduce((a, b) => a + b, 0),
      failureReasons: out.failures,
      overOneSecond: sorted.filter((ms) => ms > SYN_RESEND_MS).length,
      pawsRejectedSyns,
      cpuNsPerConn: cpuNs / all,
      ...(tcProgramNs !== undefined && socketProgramNs !== undefined ? { programNsPerConn: tcProgramNs / all, socketProgramNsPerConn: socketProgramNs / all } : {}),
    };
  });
}

export interface ControlPlane {
  /** From the manifest write to the last service answering. */
  fullSyncMs: number;
  /** kube-lb's own duration of the syncs that programmed them. */
  fullSyncKubeLbMs: number;
  /** From the manifest write to the changed endpoint answering. */
  endpointChangeMs: number;
  endpointChangeKubeLbMs: number;
  /** kube-lb's syncs of each stage, as it logged them: how a stage's time splits, and whether a sync was full. */
  syncs: { fullSync: SyncRecord[]; endpointChange: SyncRecord[] };
  rssBytes: number;
  kernelState: KernelState;
}

/** Loads N services with 10 endpoints each into a running kube-lb, then moves one endpoint. */
export async function controlPlane(variant: Variant, services: number): Promise<ControlPlane> {
  return withNode(withRoomFor(variant, services, 10), 2, async (node) => {
    await node.startKubeLb();
    const [web1, web2] = node.servers as [string, string];
    // The datapath can answer before kube-lb has synced all of a change,
    // so each stage waits for the syncs that took all of it before adding
    // their durations up, and the next stage starts on an idle kube-lb. A
    // periodic full sync that falls in the stage carries none of its
    // changes: it is listed with the stage's syncs but not added up.
    const measure = async (want: { services: number; endpoints: number }, stage: () => Promise<number>): Promise<{ ms: number; kubeLbMs: number; syncs: SyncRecord[] }> => {
      const before = node.syncs().length;
      const ms = await stage();
      await node.waitForChanges(before, want, TIMEOUT_MS);
      const syncs = node.syncs().slice(before);
      const carried = syncs.filter((s) => s.serviceChanges + s.endpointChanges > 0);
      return { ms, kubeLbMs: carried.reduce((sum, s) => sum + s.durationMs, 0), syncs };
    };

    // Past --min-sync-period since kube-lb's first sync: both changes then
    // measure propagation, not the rate limit.
    const pastMinSyncPeriod = (): Promise<void> => new Promise((r) => setTimeout(r, 1100));
    await pastMinSyncPeriod();
    const full = await measure({ services, endpoints: services }, async () => (await loadServices(node, 'cluster-ip', services, 10, 'last', [web1])).ms);
    await pastMinSyncPeriod();
    const change = await measure({ services: 0, endpoints: 1 }, async () => {
      const staged = node.stageServices(services, 10, 'last', [web2]);
      const poll = await node.startPolling('cluster-ip', 'web-2', staged.address, TIMEOUT_MS);
      const t0 = staged.commit();
      return (await poll.answeredAt) - t0;
    });
    return {
      fullSyncMs: full.ms,
      fullSyncKubeLbMs: full.kubeLbMs,
      endpointChangeMs: change.ms,
      endpointChangeKubeLbMs: change.kubeLbMs,
      syncs: { fullSync: full.syncs, endpointChange: change.syncs },
      rssBytes: await node.rssBytes(),
      kernelState: await node.kernelState(),
    };
  });
}

export interface Throughput {
  gbitPerSec: number;
}

/** iperf3 through a ClusterIP (or directly to the pod) for `seconds`. */
export async function throughput(variant: Variant, seconds: number): Promise<Throughput> {
  return withNode(variant, 0, async (node) => {
    const server = await node.sandbox.addPod('iperf', '10.244.2.1');
    const iperf = node.sandbox.spawnInPod(server.name, 'iperf3', ['-s', '-1', '--forceflush', '-p', String(SERVER_PORT)]);
    try {
      // The direct client connects at once: it must not beat the server to its port.
      await waitForLine(iperf, /Server listening/, 10_000, 'iperf3 server');
      let target = server.ip;
      if (variant !== DIRECT) {
        await node.startKubeLb();
        // A probe would use up the one-shot iperf3 server: wait for the sync instead.
        const syncs = node.syncs().length;
        const staged = node.stageServices(1, 1, 'last', [server.ip]);
        staged.commit();
        target = staged.vip;
        await node.waitForSyncs(syncs);
      }
      const out = await node.exec('cluster-ip', 'iperf3', '-c', target, '-p', variant === DIRECT ? String(SERVER_PORT) : '80', '-t', String(seconds), '-J');
      const report = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
      return { gbitPerSec: report.end.sum_received.bits_per_second / 1e9 };
    } finally {
      iperf.kill();
    }
  });
}

export interface PacketRate {
  /** Packets per second node-a's uplink took in from the generator. */
  sentPerSec: number;
  /** Packets per second that reached the endpoint on node-b. */
  deliveredPerSec: number;
  /**
   * Softirq time of the generator's CPU per delivered packet: the
   * forwarding of every hop on the way (see floodUdp).
   */
  softirqNsPerPacket: number;
}

/** node-b's pod that the flood is forwarded to; it need not answer. */
const SINK = { name: 'sink', ip: '10.244.128.10' } as const;

/**
 * UDP packets per second from the external client through node-a to an
 * endpoint on node-b: to a NodePort on node-a whose only endpoint is that
 * pod, or (direct) to the pod's address, which node-a only routes.
 */
export async function packetRate(variant: Variant, seconds: number): Promise<PacketRate> {
  return withNode(variant, 0, async (node) => {
    await node.sandbox.addPod(SINK.name, SINK.ip, 'node-b');
    let target = `${SINK.ip}:${SERVER_PORT}`;
    if (variant !== DIRECT) {
      await node.startKubeLb();
      const syncs = node.syncs().length;
      const staged = node.stageServices(1, 1, 'last', [SINK.ip], 'nodeport', { protocol: 'UDP', endpointNode: 'node-b' });
      staged.commit();
      await node.waitForSyncs(syncs);
      target = staged.address;
    }
    const c = await node.floodUdp(target, SINK.name, seconds);
    if (c.delivered === 0) throw new Error(`${variant.name}: none of the ${c.sent} packets sent to ${target} reached ${SINK.name} on node-b`);
    return {
      sentPerSec: c.sent / c.seconds,
      deliveredPerSec: c.delivered / c.seconds,
      softirqNsPerPacket: c.softirqNs / c.delivered,
    };
  });
}
