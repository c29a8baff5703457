// kube-proxy's --detect-local-mode: how traffic from this node's pods is
// told from other traffic. Decided here once; the netfilter backends turn
// the answer into a packet match (kube-proxy's LocalTrafficDetector), the
// ebpf backend into the interfaces it attaches its pod programs to.
import { UsageError } from '../flags.js';

export const DETECT_LOCAL_MODES = ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'] as const;
export type DetectLocalMode = (typeof DETECT_LOCAL_MODES)[number];

/** What local (pod) traffic is; null: nothing tells it (kube-proxy's no-op detector). */
export type LocalTraffic =
  /** Its source lies in this range (ClusterCIDR, NodeCIDR). */
  | { by: 'cidr'; cidr: string }
  /** It arrives from this bridge, that is through one of its ports. */
  | { by: 'bridge'; bridge: string }
  /** It arrives on an interface whose name starts with this. */
  | { by: 'prefix'; prefix: string };

export interface LocalTrafficFlags {
  /** --detect-local-mode; undefined when not given. */
  mode: DetectLocalMode | undefined;
  /** --cluster-cidr. */
  clusterCidr: string | undefined;
  /** --pod-bridge-interface. */
  bridge: string | undefined;
  /** --pod-interface-name-prefix. */
  prefix: string | undefined;
}

/**
 * The mode in force. Given --cluster-cidr, or nothing, it is kube-proxy's
 * default, ClusterCIDR; a lone --pod-interface-name-prefix or
 * --pod-bridge-interface picks its own mode, where kube-proxy would detect
 * nothing (kube-lb's ebpf backend needed the prefix before the mode existed).
 */
export function detectLocalMode(flags: LocalTrafficFlags): DetectLocalMode {
  if (flags.mode !== undefined) return flags.mode;
  if (flags.clusterCidr || (!flags.prefix && !flags.bridge)) return 'ClusterCIDR';
  if (flags.prefix && flags.bridge) {
    throw new UsageError('--pod-interface-name-prefix and --pod-bridge-interface each pick a --detect-local-mode: give --detect-local-mode to choose one');
  }
  return flags.prefix ? 'InterfaceNamePrefix' : 'BridgeInterface';
}

/**
 * Local traffic under `mode`; `nodeCidr` is the node's IPv4 pod CIDR
 * (spec.podCIDRs), read only for NodeCIDR. A mode without what it needs
 * is refused, as kube-proxy refuses it, except ClusterCIDR without a range,
 * which detects nothing, as in kube-proxy.
 */
export function localTraffic(mode: DetectLocalMode, flags: LocalTrafficFlags, nodeCidr: string | undefined): LocalTraffic | null {
  switch (mode) {
    case 'ClusterCIDR':
      return flags.clusterCidr ? { by: 'cidr', cidr: flags.clusterCidr } : null;
    case 'NodeCIDR':
      if (nodeCidr === undefined) throw new Error('--detect-local-mode=NodeCIDR: the node has no IPv4 pod CIDR (spec.podCIDRs)');
      return { by: 'cidr', cidr: nodeCidr };
    case 'BridgeInterface':
      if (!flags.bridge) throw new UsageError('--detect-local-mode=BridgeInterface needs --pod-bridge-interface, the bridge the pods are on');
      return { by: 'bridge', bridge: flags.bridge };
    case 'InterfaceNamePrefix':
      if (!flags.prefix) throw new UsageError('--detect-local-mode=InterfaceNamePrefix needs --pod-interface-name-prefix, the start of the pod interfaces\' names');
      return { by: 'prefix', prefix: flags.prefix };
  }
}

/** Says what local traffic is, for logs and errors. */
export function describeLocalTraffic(local: LocalTraffic | null): string {
  if (local === null) return 'none';
  if (local.by === 'cidr') return `from ${local.cidr}`;
  return local.by === 'bridge' ? `from bridge ${local.bridge}` : `from interfaces ${local.prefix}*`;
}
