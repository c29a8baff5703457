// A throwaway two-node Kubernetes cluster built from network namespaces.
//
// Both nodes are set up as on a routed CNI: every pod has a /32 address on
// eth0, a default route to a link-local gateway, and a host-side veth with
// a /32 route and proxy ARP. The nodes forward, with strict reverse-path
// filtering on. kube-lb runs on node-a only, so pods on node-b are remote
// endpoints.
//
// node-a can also put pods on a bridge (addPod's bridge option), as the
// bridge CNI plugin and flannel's cni0 keep them: in POD_BRIDGE_CIDR, the
// bridge holding its gateway address, pods on it reaching each other
// through the bridge alone.
//
// The nodes share one network, as nodes of a real cluster do: each node's
// eth0 is a veth onto a bridge in the gateway namespace, which also holds
// the network's router address and the external client. Each node routes
// the other's pod CIDR through the other's node IP (as host-gw CNIs do) and
// everything else through the gateway. (node-b routes the whole cluster
// CIDR to node-a: callers such as bench/ place node-a's pods anywhere in it
// outside node-b's pod CIDR.) node-b therefore answers an external
// client through its own default route, not through node-a: a reply that
// node-a's NAT should have seen but did not (an unmasqueraded one) reaches
// the client from the wrong address, and the client drops it.
//
// The external client owns addresses outside the node network (several,
// for source-range tests) and routes the external and load-balancer IP
// ranges to node-a. The gateway forwards nothing.
//
// Every routed pod, both nodes, the router and the external client have an
// IPv6 address beside their IPv4 one (podIpv6 derives a pod's from its IPv4
// address), laid out the same way: the nodes forward IPv6, route each
// other's pod range, and reach pods through a link-local gateway. Neighbors
// on the pod links are written statically, and the node network's
// addresses skip duplicate address detection, so no address waits. Pods on node-a's pod
// bridge have IPv4 only.
//
// The node network behaves as a wire between NICs, so that XDP on node-a's
// eth0 sees frames as a NIC delivers them: whatever sends onto it computes
// its checksums (veths would otherwise pass along partial ones, which only
// the skb's metadata explains), and the gateway's end of each node's veth
// runs an XDP program that passes everything (xdp_pass.bpf.c), which a veth
// needs to take the frames its peer's XDP program sends back (XDP_TX).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { isIPv6 } from 'node:net';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/native/index.js';
import { testLibDir } from './paths.js';
import { requireCommand, requireRoot } from './preconditions.js';
import { slow } from './slowdown.js';
import { inCgroup } from './test-cgroup.js';
import { ClientAgent } from './client-agent.js';

const exec = promisify(execFile);
const POD_CLIENT = path.join(testLibDir, 'pod-client.js');
const POD_GATEWAY = '169.254.1.1';
const NODE_NETWORK_PREFIX = 24;
const ROUTER_IP = '172.18.0.1';
const CLUSTER_CIDR = '10.244.0.0/16';
const POD_GATEWAY6 = 'fe80::1';
const NODE_NETWORK_PREFIX6 = 64;
const ROUTER_IP6 = 'fd00:18::1';
/**
 * Interfaces made afterwards use their link-local addresses at once: neighbor
 * discovery for forwarded packets is sent from them, and would otherwise
 * fail while duplicate address detection runs.
 */
const NO_DAD = ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0'];
/** The pods' IPv6 range: kube-lb's --cluster-cidr for IPv6. */
export const CLUSTER_CIDR6 = 'fd00:10:244::/48';
/** Pods on node-a's pod bridge take addresses here (the first is the bridge's own); node-a's other pods must not. */
export const POD_BRIDGE_CIDR = '10.244.0.128/25';
const POD_BRIDGE_GATEWAY = '10.244.0.129';
/** Built by the Makefile from test/lib/xdp_pass.bpf.c. */
export const XDP_PASS_OBJECT = path.join(projectRoot, 'build', 'test', 'xdp_pass.bpf.o');

export type NodeName = 'node-a' | 'node-b';

export interface NodeInfo {
  name: NodeName;
  /** The node's InternalIP on the node network. */
  ip: string;
  podCIDR: string;
  zone: string;
  /** The node's IPv6 InternalIP, and its IPv6 pod range. */
  ip6: string;
  podCIDR6: string;
}

/** The sandbox's nodes; kube-lb runs on node-a (its --hostname-override). */
export const NODES: Record<NodeName, NodeInfo> = {
  'node-a': { name: 'node-a', ip: '172.18.0.2', podCIDR: '10.244.0.0/24', zone: 'zone-a', ip6: 'fd00:18::2', podCIDR6: 'fd00:10:244::/64' },
  'node-b': { name: 'node-b', ip: '172.18.0.3', podCIDR: '10.244.128.0/24', zone: 'zone-b', ip6: 'fd00:18::3', podCIDR6: 'fd00:10:244:128::/64' },
};

/** The external client's addresses, in different /24s; the first is its default source. */
export const EXTERNAL_CLIENT_IPS = ['198.18.0.10', '198.18.1.10'] as const;
/** The external client's IPv6 addresses, the twins of those (ipv6-twins.ts); the first is its default IPv6 source. */
export const EXTERNAL_CLIENT_IPS6 = ['fd00:198:18::10', 'fd00:198:18:1::10'] as const;

/** The external client's default source address for a destination, by the destination's family. */
const externalSource = (destination: string): string => (isIPv6(destination) ? EXTERNAL_CLIENT_IPS6[0] : EXTERNAL_CLIENT_IPS[0]);

/**
 * A pod's IPv6 address, from its IPv4 one: 10.244.X.Y is fd00:10:244:X::Y
 * (decimal digits read as hex), so it lies in its node's IPv6 pod range
 * exactly when the IPv4 address lies in its IPv4 one. Canonical, as the
 * kernel prints it.
 */
export function podIpv6(podIp: string): string {
  const [, , x, y] = podIp.split('.');
  return x === '0' ? `fd00:10:244::${y}` : `fd00:10:244:${x}::${y}`;
}
/** The external client routes these ranges to node-a: use them for externalIPs and load-balancer ingress IPs. */
export const EXTERNAL_IP_RANGE = '203.0.113.0/24';
export const LOAD_BALANCER_IP_RANGE = '198.51.100.0/24';
/** Their IPv6 counterparts, routed to node-a's IPv6 address. */
export const EXTERNAL_IP_RANGE6 = 'fd00:203:0:113::/64';
export const LOAD_BALANCER_IP_RANGE6 = 'fd00:198:51:100::/64';

export interface Pod {
  name: string;
  ip: string;
  /** null on node-a's pod bridge. */
  ip6: string | null;
  node: NodeName;
  ns: string;
  hostIf: string;
}

/**
 * Where a client runs: a pod (on either node), the external client outside
 * the cluster, or node-a's own network namespace (as a hostNetwork pod or
 * the kubelet would).
 */
export type ClientPlace = { pod: string } | 'external' | 'host';

export type ClientMode = 'tcp' | 'udp' | 'hold' | 'udp-hold' | 'udp-connected';

export interface ClientOptions {
  /** The source address to bind; the place must own it (see EXTERNAL_CLIENT_IPS). */
  source?: string;
  /** tcp: the source port to bind, the same for every connection. */
  sourcePort?: number;
  /** tcp and udp: have each server report the client address it saw, in seenFrom. */
  reportSource?: boolean;
  /** tcp and udp: each attempt's wait for an answer, in host milliseconds (pod-client's --timeout). */
  timeoutMs?: number;
  /** A cgroup v2 directory the client joins before it starts (test-cgroup.ts). */
  cgroup?: string;
  /** hold, udp-hold and udp-connected: end before the time asked for, once this settles (not with cgroup). */
  until?: Promise<unknown>;
}

export interface ClientResult {
  answers: Record<string, number>;
  failures: number;
  errors: string[];
  sent?: number;
  /** udp-hold, udp-connected: who answered each datagram, in order. */
  order?: string[];
  /** udp-connected: sockets the kernel ended, each replaced by a new one. */
  reconnects?: number;
  /** With reportSource: server name, then the client address it saw, then how often. */
  seenFrom?: Record<string, Record<string, number>>;
}

async function ip(...args: string[]): Promise<string> {
  return (await exec('ip', args)).stdout;
}

/**
 * Runs ip commands, one per line, in one process, in namespace ns if given
 * (`ip -n ns -batch -`): every spawn is costly, most of all under the test
 * VM's emulation. It stops at the first failing command, unless force
 * (which also ignores the failures).
 */
function ipBatch(ns: string | null, commands: string[][], opts: { force?: boolean } = {}): Promise<void> {
  const args = [...(opts.force ? ['-force'] : []), ...(ns === null ? [] : ['-n', ns]), '-batch', '-'];
  const script = commands.map((c) => c.join(' ')).join('\n') + '\n';
  return new Promise((resolve, reject) => {
    const child = spawn('ip', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', (e) => (opts.force ? resolve() : reject(e)));
    child.once('exit', (code) => (code === 0 || opts.force ? resolve() : reject(new Error(`ip ${args.join(' ')} failed (${code}): ${err.trim()}\n${script}`))));
    child.stdin.end(script);
  });
}

/**
 * A locally administered MAC for a veth end, from the pod's IPv4 address
 * (unique in a sandbox), so pods and nodes can learn each other's without
 * asking the kernel.
 */
function vethMac(podIp: string, end: 'pod' | 'host'): string {
  const octets = podIp.split('.').map((o) => Number(o).toString(16).padStart(2, '0'));
  return [end === 'pod' ? '02' : '06', '00', ...octets].join(':');
}

/** Waits for a child's first output line matching `pattern`, or fails after timeoutMs. */
function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready after ${timeoutMs} ms; output: ${seen.slice(-2000)}`)), timeoutMs);
    const onData = (d: Buffer): void => {
      seen += d.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}; output: ${seen.slice(-2000)}`));
    });
  });
}

/** Everything a child prints on stdout, once it has exited; rejects on a non-zero exit. */
export function outputOf(child: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${what} exited with ${code}: ${err.slice(-2000)}`))));
  });
}

function inCidr(addr: string, cidr: string): boolean {
  const toInt = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const [base, bits] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  return Math.floor(toInt(addr) / size) === Math.floor(toInt(base!) / size);
}

export class NodeSandbox {
  /** node-a's network namespace, where kube-lb runs. */
  readonly nodeNs: string;
  readonly nodeNamespaces: Record<NodeName, string>;
  /** Holds the node network's bridge, its router address and the external client. */
  readonly externalNs: string;
  /** Host-side interface names start with this: kube-lb's --pod-interface-name-prefix. */
  readonly interfacePrefix: string;
  /** node-a's pod bridge, made with the first pod put on it. */
  readonly podBridge: string;
  readonly pinPath: string;
  readonly pods = new Map<string, Pod>();
  private children = new Set<ChildProcess>();
  private tempDirs: string[] = [];
  private interfaces = 0;
  private podBridgeMade = false;
  /** By namespace: see clientAgent. */
  private clientAgents = new Map<string, ClientAgent>();

  private constructor(readonly id: string) {
    this.nodeNs = `kl-${id}-node`;
    this.nodeNamespaces = { 'node-a': this.nodeNs, 'node-b': `kl-${id}-node-b` };
    this.externalNs = `kl-${id}-ext`;
    this.interfacePrefix = `kl${id}p`;
    this.podBridge = `kl${id}br`;
    this.pinPath = `/sys/fs/bpf/kube-lb-test-${id}`;
  }

  static async create(): Promise<NodeSandbox> {
    requireRoot();
    requireCommand('ip', 'apt-get install iproute2');
    requireCommand('nsenter', 'apt-get install util-linux');
    requireCommand('ethtool', 'apt-get install ethtool');
    const sb = new NodeSandbox(Math.random().toString(36).slice(2, 7));
    try {
      await ipBatch(null, [sb.externalNs, ...Object.values(sb.nodeNamespaces)].map((ns) => ['netns', 'add', ns]));
      await sb.addNodeNetwork();
      await Promise.all(Object.values(NODES).map((node) => sb.addNode(node)));
    } catch (err) {
      await sb.destroy();
      throw err;
    }
    return sb;
  }

  private async addNodeNetwork(): Promise<void> {
    const ns = this.externalNs;
    await this.inNamespace(ns, 'sysctl', '-qw', ...NO_DAD);
    await ipBatch(ns, [
      ['link', 'set', 'lo', 'up'],
      ['link', 'add', 'br0', 'type', 'bridge'],
      ['addr', 'add', `${ROUTER_IP}/${NODE_NETWORK_PREFIX}`, 'dev', 'br0'],
      ['link', 'set', 'br0', 'up'],
      ['addr', 'add', `${ROUTER_IP6}/${NODE_NETWORK_PREFIX6}`, 'dev', 'br0', 'nodad'],
      ...EXTERNAL_CLIENT_IPS.map((addr) => ['addr', 'add', `${addr}/32`, 'dev', 'lo']),
      ...EXTERNAL_CLIENT_IPS6.map((addr) => ['addr', 'add', `${addr}/128`, 'dev', 'lo']),
      ...[EXTERNAL_IP_RANGE, LOAD_BALANCER_IP_RANGE].map((range) => ['route', 'add', range, 'via', NODES['node-a'].ip]),
      ...[EXTERNAL_IP_RANGE6, LOAD_BALANCER_IP_RANGE6].map((range) => ['route', 'add', range, 'via', NODES['node-a'].ip6]),
    ]);
    await this.inNamespace(ns, 'ethtool', '-K', 'br0', 'tx', 'off');
  }

  private async addNode(node: NodeInfo): Promise<void> {
    const ns = this.nodeNamespaces[node.name];
    await this.inNamespace(ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1', 'net.ipv6.conf.all.forwarding=1', ...NO_DAD);
    const nodeA = NODES['node-a'];
    const nodeB = NODES['node-b'];
    const [otherPods, otherPods6, via, via6] = node === nodeA ? [nodeB.podCIDR, nodeB.podCIDR6, nodeB.ip, nodeB.ip6] : [CLUSTER_CIDR, CLUSTER_CIDR6, nodeA.ip, nodeA.ip6];
    await ipBatch(ns, [
      ['link', 'set', 'lo', 'up'],
      ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', node.name, 'netns', this.externalNs],
      ['addr', 'add', `${node.ip}/${NODE_NETWORK_PREFIX}`, 'dev', 'eth0'],
      ['addr', 'add', `${node.ip6}/${NODE_NETWORK_PREFIX6}`, 'dev', 'eth0', 'nodad'],
      ['link', 'set', 'eth0', 'up'],
      ['route', 'add', 'default', 'via', ROUTER_IP],
      ['route', 'add', '::/0', 'via', ROUTER_IP6],
      ['route', 'add', otherPods, 'via', via],
      ['route', 'add', otherPods6, 'via', via6],
    ]);
    await ipBatch(this.externalNs, [
      ['link', 'set', node.name, 'master', 'br0', 'up'],
      ['link', 'set', 'dev', node.name, 'xdpdrv', 'obj', XDP_PASS_OBJECT, 'sec', 'xdp'],
    ]);
    await this.inNamespace(ns, 'ethtool', '-K', 'eth0', 'tx', 'off');
  }

  /** Runs a command in node-a's network namespace. */
  async inNode(cmd: string, ...args: string[]): Promise<string> {
    return this.inNamespace(this.nodeNs, cmd, ...args);
  }

  /** Runs a command in any of the sandbox's network namespaces. */
  async inNamespace(ns: string, cmd: string, ...args: string[]): Promise<string> {
    return (await exec('ip', ['netns', 'exec', ns, cmd, ...args])).stdout;
  }

  /**
   * Adds a pod on a node; its address must lie in node-b's pod CIDR exactly
   * when it runs there, and in POD_BRIDGE_CIDR exactly when it goes on
   * node-a's pod bridge (opts.bridge), whose ports are not named with
   * interfacePrefix.
   */
  async addPod(name: string, podIp: string, node: NodeName = 'node-a', opts: { bridge?: boolean } = {}): Promise<Pod> {
    const [pod] = await this.addPods([{ name, ip: podIp, node, bridge: opts.bridge ?? false }]);
    return pod!;
  }

  /**
   * Adds pods as addPod does, with a few ip processes for all of them rather
   * than a few for each: every spawn is costly, most of all under the test
   * VM's emulation.
   */
  async addPods(specs: readonly { name: string; ip: string; node: NodeName; bridge?: boolean }[]): Promise<Pod[]> {
    // Each is known before it exists, so that destroy() removes what a failure leaves, and a name given twice is refused.
    const pods = specs.map((spec) => {
      const pod = this.newPod(spec.name, spec.ip, spec.node, spec.bridge ?? false);
      this.pods.set(pod.name, pod);
      return pod;
    });
    await ipBatch(null, pods.map((pod) => ['netns', 'add', pod.ns]));
    const routed = pods.filter((pod) => pod.ip6 !== null);
    const bridged = pods.filter((pod) => pod.ip6 === null);
    await Promise.all([
      ...(['node-a', 'node-b'] as const).map((node) => this.addRoutedPods(node, routed.filter((pod) => pod.node === node))),
      this.addBridgedPods(bridged),
    ]);
    return pods;
  }

  /** A new pod's names and addresses, checked against addPod's rules. */
  private newPod(name: string, podIp: string, node: NodeName, bridge: boolean): Pod {
    if (this.pods.has(name)) throw new Error(`pod ${name} exists already in sandbox ${this.id}`);
    // The nodes route node-b's pod CIDR to node-b, so a pod elsewhere with
    // such an address would be unreachable from node-b's side.
    if (inCidr(podIp, NODES['node-b'].podCIDR) !== (node === 'node-b')) {
      throw new Error(`pod ${name} on ${node}: ${podIp} must ${node === 'node-b' ? '' : 'not '}lie in node-b's pod CIDR ${NODES['node-b'].podCIDR}`);
    }
    if (inCidr(podIp, POD_BRIDGE_CIDR) !== bridge || (bridge && node !== 'node-a')) {
      throw new Error(`pod ${name} on ${node}: ${podIp} must lie in ${POD_BRIDGE_CIDR} exactly when the pod is on node-a's pod bridge`);
    }
    const hostIf = bridge ? `kl${this.id}b${this.interfaces++}` : `${this.interfacePrefix}${this.interfaces++}`;
    return { name, ip: podIp, ip6: bridge ? null : podIpv6(podIp), node, ns: `kl-${this.id}-${name}`, hostIf };
  }

  /** The ip command that adds a pod's veth, its end in the pod's namespace named eth0. */
  private static addVeth(pod: Pod): string[] {
    return ['link', 'add', pod.hostIf, 'address', vethMac(pod.ip, 'host'), 'type', 'veth', 'peer', 'name', 'eth0', 'address', vethMac(pod.ip, 'pod'), 'netns', pod.ns];
  }

  /** Links one node's routed pods (each on a /32 and /128 route behind a proxy-ARP veth). */
  private async addRoutedPods(node: NodeName, pods: readonly Pod[]): Promise<void> {
    if (pods.length === 0) return;
    const nodeNs = this.nodeNamespaces[node];
    await ipBatch(
      nodeNs,
      pods.flatMap((pod) => [
        NodeSandbox.addVeth(pod),
        ['link', 'set', pod.hostIf, 'up'],
        ['route', 'add', `${pod.ip}/32`, 'dev', pod.hostIf],
        ['route', 'add', `${pod.ip6}/128`, 'dev', pod.hostIf],
        ['neigh', 'replace', pod.ip6!, 'lladdr', vethMac(pod.ip, 'pod'), 'dev', pod.hostIf, 'nud', 'permanent'],
      ]),
    );
    await this.inNamespace(nodeNs, 'sysctl', '-qw', ...pods.flatMap((pod) => [`net.ipv4.conf.${pod.hostIf}.proxy_arp=1`, `net.ipv4.conf.${pod.hostIf}.rp_filter=1`]));
    // The node namespace has no route to the gateway addresses for proxy ARP
    // to answer from, so pods learn the gateway's MAC statically; the node
    // learns the pod's IPv6 neighbor the same way.
    await Promise.all(
      pods.map((pod) => {
        const hostMac = vethMac(pod.ip, 'host');
        return ipBatch(pod.ns, [
          ['link', 'set', 'lo', 'up'],
          ['addr', 'add', `${pod.ip}/32`, 'dev', 'eth0'],
          ['addr', 'add', `${pod.ip6}/128`, 'dev', 'eth0', 'nodad'],
          ['link', 'set', 'eth0', 'up'],
          ['route', 'add', POD_GATEWAY, 'dev', 'eth0', 'scope', 'link'],
          ['route', 'add', 'default', 'via', POD_GATEWAY, 'dev', 'eth0'],
          ['route', 'add', '::/0', 'via', POD_GATEWAY6, 'dev', 'eth0'],
          ['neigh', 'replace', POD_GATEWAY, 'lladdr', hostMac, 'dev', 'eth0', 'nud', 'permanent'],
          ['neigh', 'replace', POD_GATEWAY6, 'lladdr', hostMac, 'dev', 'eth0', 'nud', 'permanent'],
        ]);
      }),
    );
  }

  /** Puts pods on node-a's pod bridge, made with the first of them. */
  private async addBridgedPods(pods: readonly Pod[]): Promise<void> {
    if (pods.length === 0) return;
    const prefix = POD_BRIDGE_CIDR.split('/')[1]!;
    const bridgeMissing = !this.podBridgeMade;
    this.podBridgeMade = true;
    await ipBatch(this.nodeNs, [
      ...(bridgeMissing
        ? [
            ['link', 'add', this.podBridge, 'type', 'bridge'],
            ['addr', 'add', `${POD_BRIDGE_GATEWAY}/${prefix}`, 'dev', this.podBridge],
            ['link', 'set', this.podBridge, 'up'],
          ]
        : []),
      ...pods.flatMap((pod) => [NodeSandbox.addVeth(pod), ['link', 'set', pod.hostIf, 'master', this.podBridge, 'up']]),
    ]);
    await Promise.all(
      pods.map((pod) =>
        ipBatch(pod.ns, [
          ['link', 'set', 'lo', 'up'],
          ['addr', 'add', `${pod.ip}/${prefix}`, 'dev', 'eth0'],
          ['link', 'set', 'eth0', 'up'],
          ['route', 'add', 'default', 'via', POD_BRIDGE_GATEWAY, 'dev', 'eth0'],
        ]),
      ),
    );
  }

  async removePod(name: string): Promise<void> {
    const pod = this.pods.get(name);
    if (!pod) throw new Error(`no pod ${name}`);
    // Its client agent would keep the namespace alive under its name's next owner.
    this.clientAgents.get(pod.ns)?.stop();
    this.clientAgents.delete(pod.ns);
    await ip('netns', 'del', pod.ns);
    this.pods.delete(name);
  }

  /** Starts a pod's server answering with its name; resolves once it listens. */
  async startServer(podName: string, tcpPorts: number[], udpPorts: number[] = [], oneShotTcpPorts: number[] = []): Promise<ChildProcess> {
    const pod = this.pod(podName);
    const child = this.spawnInPod(podName, process.execPath, [
      path.join(testLibDir, 'pod-server.js'),
      pod.name,
      tcpPorts.join(','),
      udpPorts.join(','),
      oneShotTcpPorts.join(','),
    ]);
    await waitForLine(child, /ready/, slow(10_000), `server in pod ${pod.name}`);
    return child;
  }

  /** The network namespace of a client place. */
  namespaceOf(place: ClientPlace): string {
    if (place === 'external') return this.externalNs;
    if (place === 'host') return this.nodeNs;
    return this.pod(place.pod).ns;
  }

  /** Runs the test client in a pod; see test/lib/pod-client.ts for the modes. */
  client(podName: string, mode: ClientMode, target: string, port: number, countOrMs: number, opts: ClientOptions = {}): Promise<ClientResult> {
    return this.clientAt({ pod: podName }, mode, target, port, countOrMs, opts);
  }

  /**
   * Runs the test client at any place. The external client binds
   * its default source for the target's family unless told another source.
   */
  async clientAt(place: ClientPlace, mode: ClientMode, target: string, port: number, countOrMs: number, opts: ClientOptions = {}): Promise<ClientResult> {
    const source = opts.source ?? (place === 'external' ? externalSource(target.split(',')[0]!) : undefined);
    const args = [mode, target, String(port), String(countOrMs)];
    if (source !== undefined) args.push(`--source=${source}`);
    if (opts.sourcePort !== undefined) args.push(`--source-port=${opts.sourcePort}`);
    if (opts.reportSource) args.push('--report-source');
    if (opts.timeoutMs !== undefined) args.push(`--timeout=${opts.timeoutMs}`);
    if (opts.cgroup === undefined) return this.clientAgent(place).request<ClientResult>(args, slow(120_000), opts.until);
    if (opts.until !== undefined) throw new Error('a client in a cgroup of its own cannot be ended early (until)');
    const { stdout } = await exec(...this.atPlace(place, process.execPath, [POD_CLIENT, ...args], opts.cgroup), { timeout: slow(120_000) });
    return JSON.parse(stdout) as ClientResult;
  }

  /** The place's client agent, started with its first client. */
  private clientAgent(place: ClientPlace): ClientAgent {
    const ns = this.namespaceOf(place);
    let agent = this.clientAgents.get(ns);
    if (agent?.alive) return agent;
    const child = this.track(spawn(...this.atPlace(place, process.execPath, [POD_CLIENT, 'serve']), { stdio: ['pipe', 'pipe', 'pipe'] }));
    agent = new ClientAgent(child, ns);
    this.clientAgents.set(ns, agent);
    return agent;
  }


  /**
   * Starts Debian's nginx in a pod, serving on `port` of both families a
   * page that names the pod ("web-1\n"); resolves once it answers.
   * destroy() ends it.
   */
  async startNginx(podName: string, port = 80): Promise<ChildProcess> {
    requireCommand('nginx', 'apt-get install nginx');
    requireCommand('curl', 'apt-get install curl');
    const pod = this.pod(podName);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kube-lb-nginx-${this.id}-${pod.name}-`));
    this.tempDirs.push(dir);
    fs.mkdirSync(path.join(dir, 'html'));
    fs.writeFileSync(path.join(dir, 'html', 'index.html'), `${pod.name}\n`);
    // One process in the foreground, as root (no user switch: the temporary
    // directory is root's alone), with every path inside the directory, so
    // nothing of the system's nginx setup is read or written.
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      [
        'daemon off;',
        'master_process off;',
        `pid ${dir}/nginx.pid;`,
        'error_log stderr warn;',
        'events {}',
        'http {',
        '  access_log off;',
        `  client_body_temp_path ${dir}/client_body;`,
        `  proxy_temp_path ${dir}/proxy;`,
        `  fastcgi_temp_path ${dir}/fastcgi;`,
        `  uwsgi_temp_path ${dir}/uwsgi;`,
        `  scgi_temp_path ${dir}/scgi;`,
        '  default_type text/plain;',
        `  server { listen ${port}; listen [::]:${port}; root ${dir}/html; }`,
        '}',
        '',
      ].join('\n'),
    );
    const child = this.spawnInPod(podName, 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr']);
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const deadline = performance.now() + slow(10_000);
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nginx in pod ${pod.name} exited with ${child.exitCode}: ${output.slice(-2000)}`);
      try {
        if ((await this.curl({ pod: podName }, `http://127.0.0.1:${port}/`)) === `${pod.name}\n`) return child;
      } catch {
        // Not listening yet.
      }
      if (performance.now() > deadline) throw new Error(`nginx in pod ${pod.name} not answering on port ${port} after ${slow(10_000)} ms: ${output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Fetches `url` with Debian's curl from a place; resolves with the body of
   * a 2xx answer and rejects with curl's error otherwise (refused, timed
   * out, HTTP error). The external client uses its default source for the
   * host's family unless told another source.
   */
  async curl(place: ClientPlace, url: string, opts: { source?: string; timeoutMs?: number } = {}): Promise<string> {
    requireCommand('curl', 'apt-get install curl');
    const source = opts.source ?? (place === 'external' ? externalSource(new URL(url).hostname.replace(/^\[(.*)\]$/, '$1')) : undefined);
    const args = ['-sS', '--fail', '--noproxy', '*', '--max-time', String((opts.timeoutMs ?? 2000) / 1000)];
    if (source !== undefined) args.push('--interface', source);
    const { stdout } = await exec('ip', ['netns', 'exec', this.namespaceOf(place), 'curl', ...args, url], { timeout: 60_000 });
    return stdout;
  }

  /**
   * Runs a command in node-a's namespace with nsenter, which, unlike
   * `ip netns exec`, keeps /sys/fs/bpf visible.
   */
  spawnInNode(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    return this.track(spawn('nsenter', [`--net=/run/netns/${this.nodeNs}`, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env }));
  }

  async execInNode(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
    return this.execIn(this.nodeNs, cmd, args);
  }

  /** Runs a command in any of the sandbox's network namespaces with nsenter, as execInNode does in node-a's. */
  async execIn(ns: string, cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
    return exec('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], { maxBuffer: 64 << 20 });
  }

  pod(name: string): Pod {
    const pod = this.pods.get(name);
    if (!pod) throw new Error(`no pod ${name} in sandbox ${this.id}`);
    return pod;
  }

  /** Starts a command in a pod's network namespace; destroy() ends it if it is still running. */
  spawnInPod(podName: string, cmd: string, args: string[]): ChildProcess {
    return this.spawnAt({ pod: podName }, cmd, args);
  }

  /** Starts a command at a client place, in a cgroup if given; destroy() ends it if it is still running. */
  spawnAt(place: ClientPlace, cmd: string, args: string[], cgroup?: string): ChildProcess {
    return this.track(spawn(...this.atPlace(place, cmd, args, cgroup), { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** The command line that runs cmd at a place (`ip netns exec`), in a cgroup if given, joined first: `ip netns exec` hides the host's /sys. */
  atPlace(place: ClientPlace, cmd: string, args: readonly string[], cgroup?: string): [string, string[]] {
    const inNamespace = ['netns', 'exec', this.namespaceOf(place), cmd, ...args];
    if (cgroup === undefined) return ['ip', inNamespace];
    const [file, ...argv] = inCgroup(cgroup, 'ip', inNamespace);
    return [file!, argv];
  }

  private track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  async destroy(): Promise<void> {
    await Promise.all(
      [...this.children].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    const namespaces = [...[...this.pods.values()].map((pod) => pod.ns), ...Object.values(this.nodeNamespaces), this.externalNs];
    await ipBatch(null, namespaces.map((ns) => ['netns', 'del', ns]), { force: true });
    for (const dir of this.tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  }
}

export { waitForLine };
