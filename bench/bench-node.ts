// A sandboxed node for the traffic and control-plane benchmarks: a client
// pod, a few server pods, a manifests directory, and kube-lb on one
// backend, as node-a of the sandbox (test/lib/sandbox.ts), whose external
// client opens the NodePort connections. Other services' endpoints are
// addresses no pod holds: only the target service's traffic is measured.
import { execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { intToIpv4 } from '../src/net/ip.js';
import { DEFAULT_MAP_SIZES, MAPS, PROGRAMS, SOCK_PROGRAMS } from '../src/backends/ebpf/datapath.js';
import { unsupportedReason } from '../src/backends/capabilities.js';
import type { BackendName } from '../src/backends/registry.js';
import { endpointSliceObject, type EndpointSpec, serviceObject, type ServiceSpec, writeNodes } from '../test/lib/manifests.js';
import { compiledRoot } from '../test/lib/paths.js';
import { type ClientPlace, EXTERNAL_CLIENT_IPS, type NodeName, NODES, NodeSandbox, XDP_PASS_OBJECT, waitForLine } from '../test/lib/sandbox.js';
import { buildPacket } from '../test/lib/packets.js';
import { createTestCgroup, removeTestCgroup } from '../test/lib/test-cgroup.js';
import { cpuTimesNs, linkPackets } from './counters.js';

const exec = promisify(execFile);

/** Kernel memory of a backend's state, or its size in rules where memory is not reported. */
export interface KernelState {
  memlockBytes?: number;
  rules?: number;
}

/** One way of running kube-lb, as the benchmark compares them. */
export interface Variant {
  name: string;
  /** Undefined: no kube-lb at all (direct). */
  backend?: BackendName;
  /** Flags besides --backend. */
  args: string[];
  /**
   * --bpf-socket-lb=all: the client pod's processes join the cgroup the
   * socket programs attach to (see BenchNode.cgroup).
   */
  podSockets?: boolean;
}

/**
 * The variant with room in kube_lb_svc for `services` services of
 * `endpointsEach` endpoints (an entry for each, plus one for its count) where
 * the default --bpf-lb-map-max has too little: the next power of two.
 */
export function withRoomFor(variant: Variant, services: number, endpointsEach: number): Variant {
  const entries = services * (1 + endpointsEach);
  if (variant.backend !== 'ebpf' || entries <= DEFAULT_MAP_SIZES.lb) return variant;
  return { ...variant, args: [...variant.args, `--bpf-lb-map-max=${2 ** Math.ceil(Math.log2(entries))}`] };
}

/**
 * How the measured connections reach the target: from the client pod to
 * its ClusterIP, from the external client to its NodePort on node-a's
 * address, or from a process in node-a's own network namespace (a host
 * process) to the ClusterIP.
 */
export type Entry = 'cluster-ip' | 'nodeport' | 'node';

/** How progress lines and reports name an entry's connections, after the variant's name. */
export const FROM: Record<Entry, string> = { 'cluster-ip': '', nodeport: ' from outside', node: ' from the node' };

/** Why a variant's NodePorts are not measured (the capability table's reason), or undefined if they are. */
export function noNodePortReason(v: Variant): string | undefined {
  if (v.podSockets) return "its NodePorts from outside are ebpf's: the external client's sockets are no pod's";
  return v.backend ? unsupportedReason(v.backend, 'nodeport') : 'it runs no kube-lb';
}

/** Why a variant's connections from the node are not measured, or undefined if they are. */
export function noNodeReason(v: Variant): string | undefined {
  if (v.podSockets) return "the node's sockets are translated as under ebpf, whose default --bpf-socket-lb=host translates them";
  return v.backend ? unsupportedReason(v.backend, 'node-originated') : 'it runs no kube-lb';
}

/** What floodUdp counted over its measured span. */
export interface PacketCounts {
  seconds: number;
  /** Taken in by node-a's uplink (a full queue refuses the rest). */
  sent: number;
  /** Received on the sink pod's eth0. */
  delivered: number;
  /** FLOOD_CPU's softirq time: the forwarding of every hop, and nothing of the generator's sending. */
  softirqNs: number;
}

/**
 * The generator runs on CPU 0. On veths, each hop's receive runs in
 * softirq on the sending CPU, so node-a's forwarding, and node-b's, run
 * there too.
 */
const FLOOD_CPU = 0;
/** floodUdp's source ports, first and last: 1,000 flows. */
const FLOW_PORTS = [10_000, 10_999];
/** Before floodUdp counts: the flows' first packets set up conntrack entries and NAT. */
const FLOOD_WARMUP_MS = 1000;
export const SERVER_PORT = 8080;
export const IPERF_PORT = 5201;
const CLIENT_IP = '10.244.0.2';
const CLUSTER_CIDR = '10.244.0.0/16';
/** kube-lb runs as this node; the manifests hold its Node object, where NodePorts find its address. */
const NODE = NODES['node-a'];
const NODE_PORT = 30080;
const serverIp = (i: number): string => `10.244.1.${i + 1}`;
const TRAFFIC_CLIENT = path.join(compiledRoot, 'bench', 'traffic-client.js');
/** The command operators run, with its Node flags: RSS is measured as shipped. */
const KUBE_LB = path.join(compiledRoot, '..', 'bin', 'kube-lb');
/** Node options for kube-lb alone, not the bench's other processes: how its profiles are taken (bench/profile-preload.ts). */
const KUBE_LB_NODE_OPTIONS = process.env.KUBE_LB_BENCH_NODE_OPTIONS;
const wallNow = (): number => performance.timeOrigin + performance.now();
const FILE_SERVICES = 500;

/** One sync as kube-lb logs it ("synced"). */
export interface SyncRecord {
  full: boolean;
  durationMs: number;
  serviceChanges: number;
  endpointChanges: number;
}

export class BenchNode {
  private kubeLb: ChildProcess | undefined;
  private logs = '';
  /**
   * ebpf: the cgroup of the bench's own that the socket programs attach to
   * (--cgroup-root), and that the clients they translate join: on the
   * machine's root the programs would run at every connect of the machine.
   */
  private cgroup: string | undefined;

  private constructor(
    readonly variant: Variant,
    readonly sandbox: NodeSandbox,
    readonly manifestsDir: string,
    readonly servers: string[],
  ) {}

  static async create(variant: Variant, serverCount: number): Promise<BenchNode> {
    const sandbox = await NodeSandbox.create();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kube-lb-bench-${sandbox.id}-`));
    const node = new BenchNode(variant, sandbox, dir, []);
    if (variant.backend === 'ebpf') node.cgroup = createTestCgroup(`kube-lb-bench-${sandbox.id}`);
    writeNodes(dir, 'nodes.yaml', [NODE]);
    await sandbox.addPod('client', CLIENT_IP);
    for (let i = 0; i < serverCount; i++) {
      const name = `web-${i + 1}`;
      await sandbox.addPod(name, serverIp(i));
      // One-shot: the server answers and closes, so TIME_WAIT stays with the
      // servers. Were it the client's, one client opening thousands of
      // connections a second to one ClusterIP would spend its time searching
      // for a source port free of TIME_WAIT, which direct traffic, spread
      // over several pod addresses, does not: that measured the client.
      await sandbox.startServer(name, [], [], [SERVER_PORT]);
      node.servers.push(serverIp(i));
    }
    return node;
  }

  /**
   * Writes N services with `endpointsEach` endpoints to a staging file; the
   * target (answered by `targetEndpoints`) is installed first or last, and
   * for the nodeport entry it is the one NodePort service. `address` is
   * where the entry's connections go. commit() puts the file in place with
   * one rename and returns the wall time it did, so a measurement starts at
   * the change itself.
   */
  stageServices(
    count: number,
    endpointsEach: number,
    target: 'first' | 'last',
    targetEndpoints: string[] = this.servers,
    entry: Entry = 'cluster-ip',
    targetPort: { protocol: 'TCP' | 'UDP'; endpointNode: NodeName } = { protocol: 'TCP', endpointNode: 'node-a' },
  ): { vip: string; address: string; commit: () => number } {
    const targetIndex = target === 'first' ? 0 : count - 1;
    const items: Record<string, unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const spec = benchService(i, endpointsEach, i === targetIndex ? targetEndpoints.map((ip) => ({ ip, ready: true, nodeName: targetPort.endpointNode })) : undefined);
      if (i === targetIndex) {
        const nodePort = entry === 'nodeport';
        if (nodePort) spec.type = 'NodePort';
        spec.ports = [{ ...spec.ports[0]!, protocol: targetPort.protocol, ...(nodePort && { nodePort: NODE_PORT }) }];
      }
      items.push(serviceObject(spec), endpointSliceObject(spec));
    }
    // JSON: the same objects as YAML, parsed in a fraction of the time. One
    // file per 500 services, as a cluster's objects would be split by namespace.
    const staged: [string, string][] = [];
    for (let first = 0; first < items.length; first += 2 * FILE_SERVICES) {
      const file = path.join(this.manifestsDir, `services-${first / (2 * FILE_SERVICES)}.json`);
      const text = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: items.slice(first, first + 2 * FILE_SERVICES) });
      // A change touches only the files it changes, as an edit would.
      if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === text) continue;
      fs.writeFileSync(`${file}.tmp`, text);
      staged.push([`${file}.tmp`, file]);
    }
    // Files a larger earlier load left beyond this one's.
    const wanted = Math.ceil(count / FILE_SERVICES);
    const stale = fs.readdirSync(this.manifestsDir).filter((f) => Number(/^services-(\d+)\.json$/.exec(f)?.[1] ?? -1) >= wanted);
    return {
      vip: clusterIpOf(targetIndex),
      address: entry === 'nodeport' ? `${NODE.ip}:${NODE_PORT}` : `${clusterIpOf(targetIndex)}:80`,
      commit: () => {
        const at = wallNow();
        for (const [from, to] of staged) fs.renameSync(from, to);
        for (const f of stale) fs.unlinkSync(path.join(this.manifestsDir, f));
        return at;
      },
    };
  }

  /** Where an entry's connections start: the client pod, or the external client. */
  private placeOf(entry: Entry): ClientPlace {
    return entry === 'nodeport' ? 'external' : entry === 'node' ? 'host' : { pod: 'client' };
  }

  /**
   * The external client's route to the pods through node-a, for direct
   * connections from outside; the sandbox's own network routes pod
   * addresses nowhere.
   */
  async routePodsFromOutside(): Promise<void> {
    await this.sandbox.inNamespace(this.sandbox.externalNs, 'ip', 'route', 'add', CLUSTER_CIDR, 'via', NODE.ip);
  }

  /**
   * Floods `target` (ip:port) with UDP from the external client's outside
   * address, as fast as the generator (flood.ts) sends on FLOOD_CPU, and
   * counts over `seconds`, after a warm-up: the packets node-a's uplink
   * took in, those that reached `sinkPod` (a pod on node-b), and
   * FLOOD_CPU's softirq time. The source ports cycle over FLOW_PORTS, so
   * that the packets are many established flows, not one, and not a new
   * flow each. The frames reach node-a's eth0 as a NIC hands them to its
   * driver, as frames before any skb: a veth gets such frames only with
   * an XDP program on it, so eth0 runs one that passes everything
   * (xdp_pass.bpf.c) unless kube-lb's own XDP program runs there.
   */
  async floodUdp(target: string, sinkPod: string, seconds: number): Promise<PacketCounts> {
    const [dstIp, dstPort] = target.split(':');
    const ext = this.sandbox.externalNs;
    // The external namespace's end of node-a's uplink: frames sent on it
    // reach node-a's eth0 without passing the bridge.
    const uplink = NODE.name;
    const link = async (ns: string, dev: string): Promise<{ ifindex: number; address: string; stats: string }> => {
      const stats = await this.sandbox.inNamespace(ns, 'ip', '-s', '-j', 'link', 'show', dev);
      const [l] = JSON.parse(stats) as { ifindex: number; address: string }[];
      return { ifindex: l!.ifindex, address: l!.address, stats };
    };
    if (!this.variant.args.some((a) => a.startsWith('--bpf-xdp=') && a !== '--bpf-xdp=off')) {
      await this.sandbox.inNamespace(this.sandbox.nodeNs, 'ip', 'link', 'set', 'dev', 'eth0', 'xdpdrv', 'obj', XDP_PASS_OBJECT, 'sec', 'xdp');
    }
    // The flood fills the backlogs that ARP answers would queue behind, and
    // drops them: the neighbours on the path to the pod are set beforehand.
    const sink = this.sandbox.pod(sinkPod);
    const nodeB = this.sandbox.nodeNamespaces['node-b'];
    await this.sandbox.inNamespace(this.sandbox.nodeNs, 'ip', 'neigh', 'replace', NODES['node-b'].ip, 'lladdr', (await link(nodeB, 'eth0')).address, 'dev', 'eth0', 'nud', 'permanent');
    await this.sandbox.inNamespace(nodeB, 'ip', 'neigh', 'replace', sink.ip, 'lladdr', (await link(sink.ns, 'eth0')).address, 'dev', sink.hostIf, 'nud', 'permanent');
    const from = await link(ext, uplink);
    const frame = buildPacket({
      dstMac: (await link(this.sandbox.nodeNs, 'eth0')).address,
      srcMac: from.address,
      saddr: EXTERNAL_CLIENT_IPS[0],
      daddr: dstIp!,
      sport: FLOW_PORTS[0]!,
      dport: Number(dstPort),
      protocol: 'UDP',
      payload: Buffer.alloc(18),
      udpNoChecksum: true,
    });
    const args = [String(from.ifindex), frame.subarray(0, 42).toString('hex'), String(FLOW_PORTS[0]), String(FLOW_PORTS[1]! - FLOW_PORTS[0]! + 1)];
    const generator = this.sandbox.spawnAt('external', 'taskset', ['-c', String(FLOOD_CPU), process.execPath, path.join(compiledRoot, 'bench', 'flood.js'), ...args]);
    try {
      await waitForLine(generator, /Running!/, 30_000, 'the generator');
      const read = async (): Promise<{ at: number; sent: number; delivered: number; softirqNs: number }> => ({
        at: performance.now(),
        sent: linkPackets((await link(this.sandbox.nodeNs, 'eth0')).stats, 'rx'),
        delivered: linkPackets((await link(sink.ns, 'eth0')).stats, 'rx'),
        softirqNs: cpuNow(FLOOD_CPU).softirqNs,
      });
      await new Promise((r) => setTimeout(r, FLOOD_WARMUP_MS));
      const before = await read();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const after = await read();
      if (generator.exitCode !== null) throw new Error(`the generator exited early with ${generator.exitCode}`);
      return {
        seconds: (after.at - before.at) / 1000,
        sent: after.sent - before.sent,
        delivered: after.delivered - before.delivered,
        softirqNs: after.softirqNs - before.softirqNs,
      };
    } finally {
      generator.kill('SIGKILL');
    }
  }

  /**
   * Starts polling `target` with new connections from the entry's place
   * until `name` answers. Resolves once the poller is running;
   * `answeredAt` then resolves to the wall time of the first answer from
   * `name`.
   */
  async startPolling(entry: Entry, name: string, target: string, timeoutMs: number): Promise<{ answeredAt: Promise<number> }> {
    const child = this.sandbox.spawnAt(this.placeOf(entry), process.execPath, this.trafficClientArgs(entry, 'until', name, String(timeoutMs), target), this.cgroupOf(entry));
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitForLine(child, /polling/, 30_000, 'traffic client');
    const answeredAt = new Promise<number>((resolve, reject) =>
      child.once('exit', (code, signal) => {
        // Killed (kube-lb failed to start and the sandbox went) or crashed: no line to read.
        if (out === '') return reject(new Error(`${this.variant.name}: the traffic client polling ${target} ended without an answer (${signal ?? `exit code ${code}`})`));
        const at = (JSON.parse(out) as { answeredAt: number | null }).answeredAt;
        if (at === null) reject(new Error(`${this.variant.name}: ${target} was not answered by ${name} within ${timeoutMs} ms`));
        else resolve(at);
      }),
    );
    // Unawaited when the step fails before it reads the answer.
    answeredAt.catch(() => {});
    return { answeredAt };
  }

  /**
   * Starts kube-lb on the manifests directory, or with `kubeconfig` on an
   * API server, as the DaemonSet runs it (deploy/daemonset.yaml) but for
   * the kubeconfig in place of the service account; `readyTimeoutMs`
   * bounds the wait for its first sync.
   */
  async startKubeLb(kubeconfig?: string, readyTimeoutMs = 120_000): Promise<void> {
    const child = this.sandbox.spawnInNode(KUBE_LB, [
      'run',
      ...this.backendArgs(),
      kubeconfig === undefined ? `--manifests=${this.manifestsDir}` : `--kubeconfig=${kubeconfig}`,
      `--hostname-override=${NODE.name}`,
      `--pod-interface-name-prefix=${this.sandbox.interfacePrefix}`,
      `--bpf-pin-path=${this.sandbox.pinPath}`,
      `--cluster-cidr=${CLUSTER_CIDR}`,
    ], KUBE_LB_NODE_OPTIONS === undefined ? process.env : { ...process.env, NODE_OPTIONS: KUBE_LB_NODE_OPTIONS });
    child.stderr!.on('data', (d: Buffer) => (this.logs += d.toString()));
    this.kubeLb = child;
    await waitForLine(child, /"msg":"ready"/, readyTimeoutMs, `kube-lb ${this.variant.name}`);
  }

  /** kube-lb's log lines that contain `text`. */
  logLines(text: string): string[] {
    return this.logs.split('\n').filter((l) => l.includes(text));
  }

  /** kube-lb's own report of its syncs: full or not, how long each took, and how many changed services and endpoint sets each took. */
  syncs(): SyncRecord[] {
    return this.logs
      .split('\n')
      .filter((l) => l.includes('"msg":"synced"'))
      .map((l) => {
        const { full, durationMs, serviceChanges, endpointChanges } = JSON.parse(l) as SyncRecord;
        return { full, durationMs, serviceChanges, endpointChanges };
      });
  }

  /**
   * Resolves once the syncs kube-lb reports after its first `count` have
   * together taken `want` changes. A change that reaches kube-lb in parts
   * (one manifest file after another) is synced in parts, and the datapath
   * may answer after the first.
   */
  async waitForChanges(count: number, want: { services: number; endpoints: number }, timeoutMs: number): Promise<void> {
    const start = performance.now();
    const taken = (): { services: number; endpoints: number } =>
      this.syncs()
        .slice(count)
        .reduce((sum, s) => ({ services: sum.services + s.serviceChanges, endpoints: sum.endpoints + s.endpointChanges }), { services: 0, endpoints: 0 });
    for (let now = taken(); now.services < want.services || now.endpoints < want.endpoints; now = taken()) {
      if (performance.now() - start > timeoutMs) throw new Error(`${this.variant.name}: after ${timeoutMs} ms, kube-lb's syncs took ${now.services} of ${want.services} service changes and ${now.endpoints} of ${want.endpoints} endpoint changes`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Resolves once kube-lb reports more than `count` syncs. */
  async waitForSyncs(count: number, timeoutMs = 60_000): Promise<void> {
    const start = performance.now();
    while (this.syncs().length <= count) {
      if (performance.now() - start > timeoutMs) throw new Error(`${this.variant.name}: no sync after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * What the backend's state takes in the kernel: the maps' memlock for
   * ebpf, the rules kube-lb wrote for the netfilter backends.
   */
  async kernelState(): Promise<KernelState> {
    const inNode = async (cmd: string, ...args: string[]): Promise<string> => (await this.sandbox.execInNode(cmd, args)).stdout;
    switch (this.variant.name) {
      case 'ebpf': {
        let bytes = 0;
        for (const map of Object.values(MAPS)) bytes += (await this.pinned<{ bytes_memlock: number }>('map', map)).bytes_memlock;
        return { memlockBytes: bytes };
      }
      case 'iptables-nft':
      case 'iptables-legacy': {
        const save = await inNode(this.variant.name === 'iptables-nft' ? 'iptables-nft-save' : 'iptables-legacy-save');
        return { rules: save.split('\n').filter((l) => /^-A KUBE-/.test(l)).length };
      }
      case 'nftables': {
        const listing = JSON.parse(await inNode('nft', '-j', 'list', 'table', 'ip', 'kube-lb')) as { nftables: Record<string, unknown>[] };
        return { rules: listing.nftables.filter((o) => 'rule' in o).length };
      }
      case 'ipvs': {
        // /proc/net/ip_vs: one "TCP|UDP <vip>:<port> <scheduler>" line per virtual server, one "-> " line per real server.
        const table = await inNode('cat', '/proc/net/ip_vs');
        return { rules: table.split('\n').filter((l) => /^(TCP|UDP|SCTP) |^\s+->\s+[0-9A-F]/.test(l)).length };
      }
      default:
        throw new Error(`kernel state of ${this.variant.name} is not measured`);
    }
  }

  /**
   * Runs `body` and returns the machine's busy CPU time (/proc/stat) over
   * it; with `programs`, kernel.bpf_stats_enabled is on meanwhile, and the
   * in-kernel run time of the ebpf TC programs and of the socket programs
   * over the same span comes with it.
   */
  async withCost<T>(body: () => Promise<T>, programs: boolean): Promise<{ result: T; cpuNs: number; tcProgramNs?: number; socketProgramNs?: number }> {
    if (!programs) {
      const cpu0 = cpuNow().busyNs;
      const result = await body();
      return { result, cpuNs: cpuNow().busyNs - cpu0 };
    }
    // Every ebpf variant attaches them (--bpf-socket-lb host or all).
    const socketPrograms = Object.values(SOCK_PROGRAMS);
    const runTimeNs = async (progs: string[]): Promise<number> => {
      let ns = 0;
      for (const prog of progs) ns += (await this.pinned<{ run_time_ns?: number }>('prog', prog)).run_time_ns ?? 0;
      return ns;
    };
    await exec('sysctl', ['-qw', 'kernel.bpf_stats_enabled=1']);
    try {
      const [tc0, sock0, cpu0] = [await runTimeNs(Object.values(PROGRAMS)), await runTimeNs(socketPrograms), cpuNow().busyNs];
      const result = await body();
      const [tc1, sock1, cpu1] = [await runTimeNs(Object.values(PROGRAMS)), await runTimeNs(socketPrograms), cpuNow().busyNs];
      return { result, cpuNs: cpu1 - cpu0, tcProgramNs: tc1 - tc0, socketProgramNs: sock1 - sock0 };
    } finally {
      await exec('sysctl', ['-qw', 'kernel.bpf_stats_enabled=0']);
    }
  }

  /** bpftool's JSON description of one of kube-lb's pinned maps or programs. */
  private async pinned<T>(kind: 'map' | 'prog', name: string): Promise<T> {
    return JSON.parse((await this.sandbox.execInNode('bpftool', ['-j', kind, 'show', 'pinned', path.join(this.sandbox.pinPath, name)])).stdout) as T;
  }

  /** The server pods' TcpExtPAWSTimewait: SYNs their TIME_WAIT sockets refused for an old timestamp. */
  async serverPawsRejects(): Promise<number> {
    let total = 0;
    for (const pod of [...this.sandbox.pods.values()].filter((p) => this.servers.includes(p.ip))) {
      // /proc/net/netstat: a "TcpExt:" line of names, then one of values.
      const [names, values] = (await this.sandbox.inNamespace(pod.ns, 'cat', '/proc/net/netstat'))
        .split('\n')
        .filter((l) => l.startsWith('TcpExt:'))
        .map((l) => l.split(/\s+/));
      total += Number(values![names!.indexOf('PAWSTimewait')]);
    }
    return total;
  }

  async rssBytes(): Promise<number> {
    const status = fs.readFileSync(`/proc/${this.kubeLb!.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
  }

  private backendArgs(): string[] {
    if (!this.variant.backend) throw new Error(`${this.variant.name} runs no kube-lb`);
    const sockets = this.cgroup === undefined ? [] : [`--cgroup-root=${this.cgroup}`, ...(this.variant.podSockets ? ['--bpf-socket-lb=all'] : [])];
    return [`--backend=${this.variant.backend}`, ...this.variant.args, ...sockets];
  }

  /** The cgroup the entry's client joins: the node's processes always, the client pod's with variant.podSockets. */
  private cgroupOf(entry: Entry): string | undefined {
    return entry === 'node' || (entry === 'cluster-ip' && this.variant.podSockets) ? this.cgroup : undefined;
  }

  /** Runs a command where the entry's connections start; returns its stdout. */
  async exec(entry: Entry, cmd: string, ...args: string[]): Promise<string> {
    const { stdout } = await exec(...this.sandbox.atPlace(this.placeOf(entry), cmd, args, this.cgroupOf(entry)), { maxBuffer: 256 << 20 });
    return stdout;
  }

  /** Runs the traffic client (bench/traffic-client.ts) where the entry's connections start. */
  async client<T>(entry: Entry, ...args: string[]): Promise<T> {
    return JSON.parse(await this.exec(entry, process.execPath, ...this.trafficClientArgs(entry, ...args))) as T;
  }

  /**
   * The external client binds its outside address: its namespace also
   * holds the node network's router address, which would otherwise be the
   * source of connections to node-a.
   */
  private trafficClientArgs(entry: Entry, ...args: string[]): string[] {
    return [TRAFFIC_CLIENT, ...(entry === 'nodeport' ? [`--source=${EXTERNAL_CLIENT_IPS[0]}`] : []), ...args];
  }

  async destroy(): Promise<void> {
    try {
      if (this.kubeLb && this.kubeLb.exitCode === null) {
        await new Promise<void>((resolve) => {
          this.kubeLb!.once('exit', () => resolve());
          this.kubeLb!.kill('SIGTERM');
        });
      }
      if (this.variant.backend) await this.sandbox.execInNode(KUBE_LB, ['cleanup', ...this.backendArgs(), `--bpf-pin-path=${this.sandbox.pinPath}`]);
    } finally {
      await this.sandbox.destroy();
      fs.rmSync(this.manifestsDir, { recursive: true, force: true });
      if (this.cgroup !== undefined) removeTestCgroup(this.cgroup);
    }
  }
}

/** CPU time so far, all CPUs' or one CPU's. */
function cpuNow(cpu?: number): { busyNs: number; softirqNs: number } {
  return cpuTimesNs(fs.readFileSync('/proc/stat', 'utf8'), cpu);
}

/**
 * The benchmark's service i: port 80 to SERVER_PORT at clusterIpOf(i),
 * with `endpoints`, or else `endpointsEach` addresses no pod holds;
 * `generation` shifts those, so each generation is a change of every
 * address.
 */
export function benchService(i: number, endpointsEach: number, endpoints?: EndpointSpec[], generation = 0): ServiceSpec {
  return {
    name: `svc-${i}`,
    clusterIP: clusterIpOf(i),
    ports: [{ name: 'http', port: 80, targetPort: SERVER_PORT, protocol: 'TCP' }],
    endpoints: endpoints ?? Array.from({ length: endpointsEach }, (_, e) => ({ ip: intToIpv4(0x0af80000 + ((i * endpointsEach + e + generation) % 0x3fffe) + 1), ready: true })),
  };
}

export function clusterIpOf(i: number): string {
  return intToIpv4(0x0a600000 + 0x100 + i); // 10.96.1.0 onwards
}
