// A throwaway Kubernetes node built from network namespaces, as on a
// routed CNI: every pod has a /32 address on eth0, a default route to a
// link-local gateway, and a host-side veth with a /32 route and proxy ARP.
// The node namespace forwards, with strict reverse-path filtering on. Like
// a real node it has an uplink: eth0 with the node IP and a default route
// to a gateway in a small namespace of its own, which forwards nothing.
// Masquerading (hairpin traffic) takes the node IP as its source.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { testLibDir } from './paths.js';
import { requireCommand, requireRoot } from './preconditions.js';
import { slow } from './slowdown.js';

const exec = promisify(execFile);
const GATEWAY = '169.254.1.1';
const NODE_IP = '172.18.0.2';
const UPLINK_GATEWAY = '172.18.0.1';

export interface Pod {
  name: string;
  ip: string;
  ns: string;
  hostIf: string;
}

export type ClientMode = 'tcp' | 'udp' | 'hold' | 'udp-hold';

export interface ClientResult {
  answers: Record<string, number>;
  failures: number;
  errors: string[];
  sent?: number;
  /** udp-hold: who answered each datagram, in order. */
  order?: string[];
}

async function ip(...args: string[]): Promise<string> {
  return (await exec('ip', args)).stdout;
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

export class NodeSandbox {
  readonly nodeNs: string;
  /** Holds the node uplink's gateway. */
  readonly uplinkNs: string;
  /** Host-side interface names start with this: kube-lb's --pod-interface-name-prefix. */
  readonly interfacePrefix: string;
  readonly pinPath: string;
  readonly pods = new Map<string, Pod>();
  private children = new Set<ChildProcess>();

  private constructor(readonly id: string) {
    this.nodeNs = `kl-${id}-node`;
    this.uplinkNs = `kl-${id}-uplink`;
    this.interfacePrefix = `kl${id}p`;
    this.pinPath = `/sys/fs/bpf/kube-lb-test-${id}`;
  }

  static async create(): Promise<NodeSandbox> {
    requireRoot();
    requireCommand('ip', 'apt-get install iproute2');
    requireCommand('nsenter', 'apt-get install util-linux');
    const sb = new NodeSandbox(Math.random().toString(36).slice(2, 7));
    await ip('netns', 'add', sb.nodeNs);
    await sb.inNode('ip', 'link', 'set', 'lo', 'up');
    await sb.inNode('sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1');
    await sb.addUplink();
    return sb;
  }

  private async addUplink(): Promise<void> {
    await ip('netns', 'add', this.uplinkNs);
    await ip('-n', this.nodeNs, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.uplinkNs);
    await ip('-n', this.nodeNs, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'eth0');
    await ip('-n', this.nodeNs, 'link', 'set', 'eth0', 'up');
    await ip('-n', this.nodeNs, 'route', 'add', 'default', 'via', UPLINK_GATEWAY);
    await ip('-n', this.uplinkNs, 'addr', 'add', `${UPLINK_GATEWAY}/24`, 'dev', 'eth0');
    await ip('-n', this.uplinkNs, 'link', 'set', 'eth0', 'up');
  }

  /** Runs a command in the node's network namespace. */
  async inNode(cmd: string, ...args: string[]): Promise<string> {
    return (await exec('ip', ['netns', 'exec', this.nodeNs, cmd, ...args])).stdout;
  }

  async addPod(name: string, podIp: string): Promise<Pod> {
    const pod: Pod = { name, ip: podIp, ns: `kl-${this.id}-${name}`, hostIf: `${this.interfacePrefix}${this.pods.size}` };
    await ip('netns', 'add', pod.ns);
    await ip('-n', this.nodeNs, 'link', 'add', pod.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.ns);
    await this.inNode('sysctl', '-qw', `net.ipv4.conf.${pod.hostIf}.proxy_arp=1`, `net.ipv4.conf.${pod.hostIf}.rp_filter=1`);
    await ip('-n', this.nodeNs, 'link', 'set', pod.hostIf, 'up');
    await ip('-n', this.nodeNs, 'route', 'add', `${podIp}/32`, 'dev', pod.hostIf);
    const hostMac = (JSON.parse(await ip('-n', this.nodeNs, '-j', 'link', 'show', pod.hostIf)) as { address: string }[])[0]!.address;
    await ip('-n', pod.ns, 'link', 'set', 'lo', 'up');
    await ip('-n', pod.ns, 'addr', 'add', `${podIp}/32`, 'dev', 'eth0');
    await ip('-n', pod.ns, 'link', 'set', 'eth0', 'up');
    await ip('-n', pod.ns, 'route', 'add', GATEWAY, 'dev', 'eth0', 'scope', 'link');
    await ip('-n', pod.ns, 'route', 'add', 'default', 'via', GATEWAY, 'dev', 'eth0');
    // The node namespace has no route to the gateway address for proxy ARP
    // to answer from, so pods learn the gateway's MAC statically.
    await ip('-n', pod.ns, 'neigh', 'replace', GATEWAY, 'lladdr', hostMac, 'dev', 'eth0', 'nud', 'permanent');
    this.pods.set(name, pod);
    return pod;
  }

  async removePod(name: string): Promise<void> {
    const pod = this.pods.get(name);
    if (!pod) throw new Error(`no pod ${name}`);
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

  /** Runs the test client in a pod; see test/lib/pod-client.ts for the modes. */
  async client(podName: string, mode: ClientMode, target: string, port: number, countOrMs: number): Promise<ClientResult> {
    const pod = this.pod(podName);
    const { stdout } = await exec('ip', ['netns', 'exec', pod.ns, process.execPath, path.join(testLibDir, 'pod-client.js'), mode, target, String(port), String(countOrMs)], {
      timeout: 120_000,
    });
    return JSON.parse(stdout) as ClientResult;
  }

  /**
   * Runs a command in the node namespace with nsenter, which, unlike
   * `ip netns exec`, keeps /sys/fs/bpf visible.
   */
  spawnInNode(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const child = spawn('nsenter', [`--net=/run/netns/${this.nodeNs}`, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  async execInNode(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
    return exec('nsenter', [`--net=/run/netns/${this.nodeNs}`, cmd, ...args], { maxBuffer: 64 << 20 });
  }

  pod(name: string): Pod {
    const pod = this.pods.get(name);
    if (!pod) throw new Error(`no pod ${name} in sandbox ${this.id}`);
    return pod;
  }

  /** Starts a command in a pod's network namespace; destroy() ends it if it is still running. */
  spawnInPod(podName: string, cmd: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.pod(podName).ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    for (const pod of this.pods.values()) await ip('netns', 'del', pod.ns).catch(() => undefined);
    await ip('netns', 'del', this.nodeNs).catch(() => undefined);
    await ip('netns', 'del', this.uplinkNs).catch(() => undefined);
  }
}

export { waitForLine };
