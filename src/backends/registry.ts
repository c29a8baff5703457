// The datapaths kube-lb can drive, chosen with --backend.
import type { LocalTrafficByFamily } from '../config/local-traffic.js';
import { UsageError } from '../flags.js';
import type { Logger } from '../log.js';
import type { Backend } from './backend.js';
import type { MapSizes } from './ebpf/datapath.js';
import type { XdpMode } from './ebpf/attach.js';
import { EbpfBackend } from './ebpf/ebpf-backend.js';
import type { SocketLb } from './ebpf/sockets.js';
import { IptablesBackend, type IptablesMode, detectIptablesMode } from './iptables/iptables-backend.js';
import { NftablesBackend } from './nftables/nft-backend.js';
import { IpvsBackend, type IpvsOptions } from './ipvs/ipvs-backend.js';
import type { IpvsTimeouts } from './ipvs/kernel.js';
import type { Cidr } from '../net/ip.js';

export const BACKEND_NAMES = ['ebpf', 'iptables', 'nftables', 'ipvs'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendOptions {
  log: Logger;
  /** ebpf: where maps and programs are pinned. */
  bpfPinPath: string;
  /** ebpf: --cgroup-root, where the socket programs attach; undefined: the cgroup2 mount in /proc/self/mounts. */
  cgroupRoot: string | undefined;
  /** ebpf: --bpf-socket-lb, whose sockets the cgroup programs translate. */
  socketLb: SocketLb;
  /** ebpf: --bpf-lb-map-max and --bpf-ct-map-max. */
  bpfMapSizes: MapSizes;
  /** ebpf: --bpf-lb-maglev-table-size, the entries of each Maglev table (a prime). */
  bpfMaglevTableSize: number;
  /** ebpf: uplinks by name (--devices); null picks the interfaces that hold the node's NodePort addresses. */
  devices: string[] | null;
  /** ebpf: --bpf-xdp. */
  xdp: XdpMode;
  /**
   * What traffic from this node's pods is (--detect-local-mode): the
   * netfilter backends masquerade service traffic from elsewhere, ebpf
   * attaches its pod programs to the interfaces it arrives on. The
   * backends that serve IPv6 take both answers, the others the IPv4 one.
   */
  localTraffic: LocalTrafficByFamily;
  /** iptables, nftables: the packet mark bit that asks for masquerading. */
  masqueradeBit: number;
  /** iptables, nftables: --conntrack-tcp-be-liberal. */
  tcpBeLiberal: boolean;
  /** iptables: nft or legacy; undefined takes what `iptables -V` reports. */
  iptablesMode: IptablesMode | undefined;
  /** ipvs: --ipvs-scheduler, the cluster-wide scheduler; undefined gives rr, an unknown name is refused. */
  ipvsScheduler: string | undefined;
  /** ipvs: --ipvs-strict-arp, kube-proxy's ARP sysctls for addresses on kube-ipvs0. */
  ipvsStrictArp: boolean;
  /** ipvs: --ipvs-drain-timeout, how long a removed TCP or SCTP endpoint keeps its connections. */
  ipvsDrainTimeoutMs: number;
  /** ipvs: --ipvs-tcp-timeout, --ipvs-tcpfin-timeout, --ipvs-udp-timeout. */
  ipvsTimeouts: IpvsTimeouts;
  /** ipvs: --ipvs-exclude-cidrs, where virtual servers are never removed. */
  ipvsExcludeCidrs: readonly Cidr[];
  /** ebpf: --takeover from a datapath the stack's conntrack translates for (src/takeover.ts). */
  adoptStackFlows?: boolean;
}

export function parseBackendName(value: string): BackendName {
  if (!(BACKEND_NAMES as readonly string[]).includes(value)) {
    throw new UsageError(`--backend=${value}: unknown backend; choose one of ${BACKEND_NAMES.join(', ')}`);
  }
  return value as BackendName;
}

function ipvsOptions(opts: BackendOptions): IpvsOptions {
  return {
    log: opts.log,
    localTraffic: opts.localTraffic,
    masqueradeBit: opts.masqueradeBit,
    scheduler: opts.ipvsScheduler,
    strictArp: opts.ipvsStrictArp,
    drainTimeoutMs: opts.ipvsDrainTimeoutMs,
    timeouts: opts.ipvsTimeouts,
    excludeCidrs: opts.ipvsExcludeCidrs,
  };
}

/** Refuses options a backend cannot start with; `run` calls it before anything starts. */
export function checkStartOptions(name: BackendName, opts: BackendOptions): void {
  if (name === 'ebpf' && opts.localTraffic.IPv4 === null) {
    throw new UsageError(
      '--backend=ebpf cannot tell the pod interfaces: give --cluster-cidr, or --detect-local-mode NodeCIDR, BridgeInterface with --pod-bridge-interface or InterfaceNamePrefix with --pod-interface-name-prefix',
    );
  }
}

/** Starts a backend that will sync: loads or reuses its kernel state. */
export async function startBackend(name: BackendName, opts: BackendOptions): Promise<Backend> {
  checkStartOptions(name, opts);
  if (name === 'iptables' || name === 'nftables') return openBackend(name, opts);
  if (name === 'ipvs') return IpvsBackend.run(ipvsOptions(opts));
  return EbpfBackend.run({
    pinPath: opts.bpfPinPath,
    cgroupRoot: opts.cgroupRoot,
    socketLb: opts.socketLb,
    // checkStartOptions refused ebpf without it.
    podTraffic: opts.localTraffic.IPv4!,
    devices: opts.devices,
    xdp: opts.xdp,
    mapSizes: opts.bpfMapSizes,
    maglevTableSize: opts.bpfMaglevTableSize,
    adopting: opts.adoptStackFlows,
    log: opts.log,
  });
}

/** Opens what a backend left in the kernel, for inspect and cleanup. */
export async function openBackend(name: BackendName, opts: BackendOptions): Promise<Backend> {
  const netfilter = { log: opts.log, localTraffic: opts.localTraffic, masqueradeBit: opts.masqueradeBit, tcpBeLiberal: opts.tcpBeLiberal };
  if (name === 'iptables') return new IptablesBackend({ ...netfilter, mode: opts.iptablesMode ?? (await detectIptablesMode()) });
  if (name === 'nftables') return new NftablesBackend(netfilter);
  if (name === 'ipvs') return IpvsBackend.open(ipvsOptions(opts));
  return EbpfBackend.open({ pinPath: opts.bpfPinPath, cgroupRoot: opts.cgroupRoot, log: opts.log });
}
