// kube-proxy's --detect-local-mode: how traffic from this node's pods is
// told from other traffic. Decided here once; the netfilter backends turn
// the answer into a packet match (kube-proxy's LocalTrafficDetector), the
// ebpf backend into the interfaces it attaches its pod programs to. As in
// kube-proxy, each address family has its own answer: a range tells only
// its own family's pods, an interface tells both.
import { UsageError } from '../flags.js';
import { type Cidr, type IPFamily, parseCidr } from '../net/ip.js';

export const DETECT_LOCAL_MODES = ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'] as const;
export type DetectLocalMode = (typeof DETECT_LOCAL_MODES)[number];

/** What local (pod) traffic of one family is; null: nothing tells it (kube-proxy's no-op detector). */
export type LocalTraffic =
  /** Its source lies in this range (ClusterCIDR, NodeCIDR). */
  | { by: 'cidr'; cidr: string }
  /** It arrives from this bridge, that is through one of its ports. */
  | { by: 'bridge'; bridge: string }
  /** It arrives on an interface whose name starts with this. */
  | { by: 'prefix'; prefix: string };

/** Local traffic of each family: kube-proxy's LocalTrafficDetector, one per family. */
export type LocalTrafficByFamily = Readonly<Record<IPFamily, LocalTraffic | null>>;

export const NO_LOCAL_TRAFFIC: LocalTrafficByFamily = { IPv4: null, IPv6: null };

export interface LocalTrafficFlags {
  /** --detect-local-mode; undefined when not given. */
  mode: DetectLocalMode | undefined;
  /** --cluster-cidr, parsed by clusterCidrs(): at most one per family. */
  clusterCidrs: readonly Cidr[];
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
  if (flags.clusterCidrs.length > 0 || (!flags.prefix && !flags.bridge)) return 'ClusterCIDR';
  if (flags.prefix && flags.bridge) {
    throw new UsageError('--pod-interface-name-prefix and --pod-bridge-interface each pick a --detect-local-mode: give --detect-local-mode to choose one');
  }
  return flags.prefix ? 'InterfaceNamePrefix' : 'BridgeInterface';
}

/** --cluster-cidr: one CIDR, or one of each family comma-separated, as kube-proxy takes it; absent, none. */
export function clusterCidrs(value: string | undefined): Cidr[] {
  if (!value) return [];
  let cidrs: Cidr[];
  try {
    cidrs = value.split(',').map((c) => parseCidr(c.trim()));
  } catch (err) {
    throw new UsageError(`--cluster-cidr=${value}: ${(err as Error).message}; give one CIDR, or one per family comma-separated, such as 10.244.0.0/16,fd00:10:244::/56`);
  }
  if (cidrs.length > 2 || (cidrs.length === 2 && cidrs[0]!.family === cidrs[1]!.family)) {
    throw new UsageError(`--cluster-cidr=${value}: at most one CIDR per family (one IPv4, one IPv6)`);
  }
  return cidrs;
}

const cidrText = (c: Cidr): string => `${c.ip}/${c.prefix}`;

/** Each family's range among `cidrs`, or null for a family without one. */
function byCidr(cidrs: readonly Cidr[]): LocalTrafficByFamily {
  const of = (family: IPFamily): LocalTraffic | null => {
    const c = cidrs.find((c) => c.family === family);
    return c === undefined ? null : { by: 'cidr', cidr: cidrText(c) };
  };
  return { IPv4: of('IPv4'), IPv6: of('IPv6') };
}

/**
 * Local traffic under `mode`; `nodeCidrs` are the node's pod CIDRs
 * (spec.podCIDRs), read only for NodeCIDR. A mode without what it needs
 * is refused, as kube-proxy refuses it, except ClusterCIDR without a range,
 * which detects nothing, as in kube-proxy; a family without a range of its
 * own detects nothing either.
 */
export function localTraffic(mode: DetectLocalMode, flags: LocalTrafficFlags, nodeCidrs: readonly Cidr[] | undefined): LocalTrafficByFamily {
  switch (mode) {
    case 'ClusterCIDR':
      return byCidr(flags.clusterCidrs);
    case 'NodeCIDR':
      if (nodeCidrs === undefined || nodeCidrs.length === 0) throw new Error('--detect-local-mode=NodeCIDR: the node has no pod CIDR (spec.podCIDRs)');
      return byCidr(nodeCidrs);
    case 'BridgeInterface': {
      if (!flags.bridge) throw new UsageError('--detect-local-mode=BridgeInterface needs --pod-bridge-interface, the bridge the pods are on');
      const bridge: LocalTraffic = { by: 'bridge', bridge: flags.bridge };
      return { IPv4: bridge, IPv6: bridge };
    }
    case 'InterfaceNamePrefix': {
      if (!flags.prefix) throw new UsageError('--detect-local-mode=InterfaceNamePrefix needs --pod-interface-name-prefix, the start of the pod interfaces\' names');
      const prefix: LocalTraffic = { by: 'prefix', prefix: flags.prefix };
      return { IPv4: prefix, IPv6: prefix };
    }
  }
}

/** Says what local traffic is, for logs and errors: once when both families tell it alike, else per family. */
export function describeLocalTraffic(local: LocalTrafficByFamily): string {
  const describe = (l: LocalTraffic | null): string => {
    if (l === null) return 'none';
    if (l.by === 'cidr') return `from ${l.cidr}`;
    return l.by === 'bridge' ? `from bridge ${l.bridge}` : `from interfaces ${l.prefix}*`;
  };
  const [v4, v6] = [describe(local.IPv4), describe(local.IPv6)];
  return v4 === v6 ? v4 : `IPv4 ${v4}, IPv6 ${v6}`;
}
