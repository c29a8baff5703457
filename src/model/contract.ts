// The model's contract with the backends. For every service port the model
// resolves the frontends clients address (its ClusterIP, each external IP,
// each load-balancer IP, its NodePort on each node address) and, for each,
// every Kubernetes decision: which endpoints receive which traffic, whether
// it is masqueraded, who may reach it, what happens when nobody may receive
// it, and how long a client sticks to an endpoint. A backend translates
// these into kernel state and decides nothing about Kubernetes.
import { type IPFamily, compareIps } from '../net/ip.js';

export type { IPFamily } from '../net/ip.js';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** What a frontend is to Kubernetes. */
export type FrontendKind = 'ClusterIP' | 'ExternalIP' | 'LoadBalancerIP' | 'NodePort';

/** Where traffic goes: an endpoint address and the service port's target port on it. */
export interface Destination {
  ip: string;
  port: number;
}

/**
 * The endpoints a frontend sends one class of traffic to. The model builds
 * at most one set per policy per service port, and frontends that send to
 * the same set share the object, so a backend can program it once (as
 * kube-proxy's KUBE-SVC and KUBE-SVL chains).
 */
export interface EndpointSet {
  /** 'cluster': chosen for traffic policy Cluster; 'local': only endpoints on this node, for policy Local. */
  policy: 'cluster' | 'local';
  /** Sorted by ip then port, without duplicates; already filtered by readiness, topology and terminating fallback. */
  destinations: Destination[];
  /**
   * Those of `destinations` on this node, in the same order: where a pod's
   * connection to the service can come back to the pod itself (hairpin),
   * for backends that mark hairpin traffic by endpoint, as kube-proxy's
   * IPVS mode does with KUBE-LOOP-BACK.
   */
  onThisNode: Destination[];
}

/** What happens to a new connection whose endpoint set is empty. */
export type NoEndpointsVerdict =
  /** The service has no usable endpoint anywhere: refuse at once (ICMP unreachable or TCP reset), as kube-proxy does. */
  | 'reject'
  /** Endpoints exist, but the traffic policy leaves none for this traffic: drop silently, as kube-proxy does. */
  | 'drop';

export interface SessionAffinity {
  /** A client keeps its endpoint while it sends within this many seconds. */
  timeoutSeconds: number;
}

/**
 * Which traffic to a frontend is masqueraded (SNATed to the node), besides
 * hairpin traffic, which always is: as kube-proxy does it.
 */
export type MasqueradeScope =
  /** Sources outside the cluster CIDR, this node's processes included (ClusterIPs). */
  | 'off-cluster'
  /** Every source, so that replies from endpoints on other nodes come back through this node (externalTrafficPolicy: Cluster). */
  | 'all'
  /**
   * Only this node's own processes, whose source is one of its addresses;
   * pods and outside clients keep theirs (externalTrafficPolicy: Local).
   */
  | 'node';

/** What a client connects to: an address, a port and a protocol. */
export interface Frontend {
  ip: string;
  port: number;
  protocol: Protocol;
}

/**
 * A frontend with every decision about its traffic. The frontends of one
 * service port share `affinity`; those of one family share `noEndpoints`,
 * and its non-ClusterIP ones `internal`, `external` and `masquerade`, whose
 * endpoints are all of that family; its load-balancer IPs share
 * `sourceRanges`. kube-proxy's layouts rely on
 * that: one external chain, one firewall and one affinity per port.
 */
export interface ResolvedFrontend extends Frontend {
  kind: FrontendKind;
  family: IPFamily;
  /**
   * Traffic from pods (sources in the cluster CIDR) and from this node's
   * own processes. For a ClusterIP this follows internalTrafficPolicy; for
   * the other kinds it is always the cluster set, as kube-proxy treats
   * in-cluster traffic to external addresses.
   */
  internal: EndpointSet;
  /** Traffic from anywhere else. The same object as `internal` unless externalTrafficPolicy: Local applies. */
  external: EndpointSet;
  /** Which sources are SNATed to the node on their way to an endpoint. */
  masquerade: MasqueradeScope;
  /** Source CIDRs allowed to reach this frontend; empty allows every source (loadBalancerSourceRanges). */
  sourceRanges: string[];
  /** For new connections when the endpoint set their traffic uses is empty. */
  noEndpoints: NoEndpointsVerdict;
  /** sessionAffinity: ClientIP; null without affinity. */
  affinity: SessionAffinity | null;
}

/**
 * How a frontend's new flows choose among its endpoints: at random, or by
 * Maglev consistent hashing of the flow, so that a flow keeps its endpoint
 * on every node and when its connection tracking is lost, and one endpoint
 * more or less moves few flows. Backends that cannot hash flows choose
 * their own way (docs: the capability table).
 */
export type LbAlgorithm = 'random' | 'maglev';
export const LB_ALGORITHMS: readonly LbAlgorithm[] = ['random', 'maglev'];

/** Settings a Service asks of one backend through annotations; backends validate their own. */
export interface BackendSettings {
  /** ipvs: the scheduler (annotation kube-lb.io/ipvs-scheduler), overriding --ipvs-scheduler. */
  ipvsScheduler?: string;
}

/** The model's verdict for one service port. */
export interface ServicePortState {
  /** "namespace/name:portName" (portName may be empty), as kube-proxy names service ports. */
  key: string;
  namespace: string;
  name: string;
  portName: string;
  protocol: Protocol;
  /** Every frontend this node serves for the port, ClusterIPs first; never empty (a port with none is left out of the state). */
  frontends: ResolvedFrontend[];
  /** The annotation kube-lb.io/lb-algorithm, else --bpf-lb-algorithm. */
  lbAlgorithm: LbAlgorithm;
  settings: BackendSettings;
}

/** What the model decided about the node itself. */
export interface NodeView {
  /** The node's addresses NodePorts are served on (--nodeport-addresses): where traffic from outside arrives. */
  nodePortIPs: readonly string[];
  /** The node's own address of each family (kube-proxy's node IPs), or null: the source its processes reach frontends from. */
  primaryIP: Readonly<Record<IPFamily, string | null>>;
}

/** Every service port the node must serve, by ServicePortState.key. No frontend key appears twice in it. */
export type DesiredState = ReadonlyMap<string, ServicePortState>;

/** "10.96.0.10:80/TCP", "[fd00::10]:80/TCP": identifies a frontend on the node. */
export function frontendKey(f: Frontend): string {
  return f.ip.includes(':') ? `[${f.ip}]:${f.port}/${f.protocol}` : `${f.ip}:${f.port}/${f.protocol}`;
}

export function destinationKey(d: Destination): string {
  return d.ip.includes(':') ? `[${d.ip}]:${d.port}` : `${d.ip}:${d.port}`;
}

export function compareDestinations(a: Destination, b: Destination): number {
  return compareIps(a.ip, b.ip) || a.port - b.port;
}

export function sameDestinations(a: readonly Destination[], b: readonly Destination[]): boolean {
  return a.length === b.length && a.every((d, i) => d.ip === b[i]!.ip && d.port === b[i]!.port);
}
