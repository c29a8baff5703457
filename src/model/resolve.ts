// Resolves one Service and its EndpointSlices into the service ports the
// node serves, after kube-proxy's serviceport.go and topology.go: every
// frontend with its endpoint sets, masquerading, source ranges, the
// verdict without endpoints and session affinity. Pure: the node and the
// options come in, no state is kept.
import {
  type BackendSettings,
  type EndpointSet,
  type FrontendKind,
  type IPFamily,
  type LbAlgorithm,
  LB_ALGORITHMS,
  type NoEndpointsVerdict,
  type Protocol,
  type ResolvedFrontend,
  type ServicePortState,
  type SessionAffinity,
  frontendKey,
} from './contract.js';
import { type Cidr, ipFamily, cidrContains, parseCidr } from '../net/ip.js';
import type { EndpointSlice, Service, ServicePort } from './objects.js';
import { categorizeEndpoints, type PortEndpoint } from './topology.js';

/** Per-service IPVS scheduler, overriding --ipvs-scheduler (the ipvs backend validates the name). */
export const IPVS_SCHEDULER_ANNOTATION = 'kube-lb.io/ipvs-scheduler';
/** Per-service choice of endpoints by flow (maglev or random), overriding --bpf-lb-algorithm. */
export const LB_ALGORITHM_ANNOTATION = 'kube-lb.io/lb-algorithm';
/** Services with this label belong to another proxy. */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';

/** What the model knows of the node it runs on. */
export interface NodeContext {
  nodeName: string;
  /** topology.kubernetes.io/zone of this node, or ''. */
  zone: string;
  /** Addresses NodePorts answer on (--nodeport-addresses applied), loopback included where allowed. */
  nodePortIPs: readonly string[];
  /** The node's primary address of each family, or null. */
  primaryIP: Readonly<Record<IPFamily, string | null>>;
}

export interface ResolveOptions {
  /** The address families served. */
  families: readonly IPFamily[];
  /** The protocols the backend translates; other service ports are left out. */
  protocols: readonly Protocol[];
  /** kube-apiserver's --service-cluster-ip-range: cluster IPs outside it are refused; empty when not given. */
  serviceClusterIPRanges: readonly Cidr[];
  /** The pods' range (--cluster-cidr): a cluster IP inside it would take a pod's address; empty when not given. */
  clusterCidrs: readonly Cidr[];
  /**
   * Derive topology hints from spec.trafficDistribution when no endpoint
   * has any, as the EndpointSlice controller would: in manifests mode there
   * is no controller to write them.
   */
  deriveTopologyHints: boolean;
  /** --bpf-lb-algorithm: for services without the annotation kube-lb.io/lb-algorithm, or with a value it does not know. */
  lbAlgorithm: LbAlgorithm;
}

/** Why the service, or one of its ports, is not served; for a log line. */
export interface Skipped {
  portName: string | null;
  reason: string;
  /** Input the API server would have refused, or this backend cannot serve: a warning, not a debug line. */
  refused: boolean;
}

export interface Resolved {
  ports: ServicePortState[];
  skipped: Skipped[];
  /** Input served otherwise than it asks, and why; for a warning. */
  warnings: string[];
  /** healthCheckNodePort and the number of ready endpoints on this node, for externalTrafficPolicy: Local load balancers. */
  health: { port: number; localEndpoints: number } | null;
}

export function servicePortKey(namespace: string, name: string, portName: string): string {
  return `${namespace}/${name}:${portName}`;
}

/** Addresses no cluster IP may have, whatever the service range. */
const RESERVED_RANGES = ['0.0.0.0/32', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '255.255.255.255/32', '::/128', '::1/128', 'fe80::/10', 'ff00::/8'].map(parseCidr);

/**
 * Why a cluster IP is one kube-apiserver would not have allocated, or null.
 * The API server checks this; manifests are not checked by anyone else, and
 * a cluster IP equal to a pod's address would take that pod's traffic.
 */
function clusterIPProblem(ip: string, opts: ResolveOptions): string | null {
  const reserved = RESERVED_RANGES.find((c) => cidrContains(c, ip));
  if (reserved !== undefined) return `cluster IP ${ip} is in ${reserved.ip}/${reserved.prefix}, which no service may use`;
  const pods = opts.clusterCidrs.find((c) => cidrContains(c, ip));
  if (pods !== undefined) return `cluster IP ${ip} is in the pods' range ${pods.ip}/${pods.prefix} (--cluster-cidr)`;
  const ranges = opts.serviceClusterIPRanges.filter((c) => c.family === ipFamily(ip));
  if (ranges.length > 0 && !ranges.some((c) => cidrContains(c, ip))) {
    return `cluster IP ${ip} is outside --service-cluster-ip-range ${ranges.map((c) => `${c.ip}/${c.prefix}`).join(',')}`;
  }
  return null;
}

/** Why kube-proxy ignores the whole service, or null. */
function ignoredReason(service: Service): string | null {
  if (service.type === 'ExternalName') return 'type ExternalName is served by DNS alone';
  if (service.headless) return 'headless (clusterIP None) is served by DNS alone';
  const proxyName = service.labels[SERVICE_PROXY_NAME_LABEL];
  if (proxyName !== undefined) return `label ${SERVICE_PROXY_NAME_LABEL}=${proxyName} hands it to another proxy`;
  return null;
}

export function resolveService(service: Service, slices: ReadonlySet<EndpointSlice>, node: NodeContext, opts: ResolveOptions): Resolved {
  const ignored = ignoredReason(service);
  if (ignored !== null) return { ports: [], skipped: [{ portName: null, reason: ignored, refused: false }], warnings: [], health: null };
  const badClusterIP = service.clusterIPs.map((ip) => clusterIPProblem(ip, opts)).find((problem) => problem !== null);
  if (badClusterIP !== undefined) return { ports: [], skipped: [{ portName: null, reason: badClusterIP, refused: true }], warnings: [], health: null };
  const inFamily = (ip: string): boolean => opts.families.includes(ipFamily(ip));
  const clusterIPs = service.clusterIPs.filter(inFamily);
  const externalIPs = service.externalIPs.filter(inFamily);
  const loadBalancerIPs = service.loadBalancerIPs.filter(inFamily);
  const nodePortIPs = node.nodePortIPs.filter(inFamily);
  // Addresses of a family the backend does not serve are left out, and said so (a warning, not a debug line).
  const unserved = [...service.clusterIPs, ...service.externalIPs, ...service.loadBalancerIPs].filter((ip) => !inFamily(ip));
  const notServed = `${unserved.join(', ')}: this backend serves ${opts.families.join(' and ')} only`;
  // As kube-proxy, a service without a cluster IP of the family is not served at all, not even on its other addresses.
  if (clusterIPs.length === 0) return { ports: [], skipped: [{ portName: null, reason: `no cluster IP of a served family; ${notServed}`, refused: true }], warnings: [], health: null };
  const skipped: Skipped[] = [];

  const externalPolicyLocal = service.externalTrafficPolicy === 'Local';
  const internalPolicyLocal = service.internalTrafficPolicy === 'Local';
  const affinity: SessionAffinity | null = service.sessionAffinityTimeoutSeconds === null ? null : { timeoutSeconds: service.sessionAffinityTimeoutSeconds };
  const settings: BackendSettings = {};
  const scheduler = service.annotations[IPVS_SCHEDULER_ANNOTATION];
  if (scheduler !== undefined) settings.ipvsScheduler = scheduler;
  const warnings: string[] = unserved.length === 0 ? [] : [`addresses left out, ${notServed}`];
  const lbAlgorithm = serviceLbAlgorithm(service, opts, warnings);

  const localReady = new Set<string>();
  // An address listed twice (say, an external IP equal to the ClusterIP) is served once, as its first kind and port.
  const seen = new Set<string>();
  const firstSeen = (f: ResolvedFrontend): boolean => {
    const key = frontendKey(f);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  };
  const ports: ServicePortState[] = [];
  for (const port of service.ports) {
    if (!opts.protocols.includes(port.protocol)) {
      skipped.push({ portName: port.name, reason: `protocol ${port.protocol} is not supported by this backend (${opts.protocols.join(', ')})`, refused: true });
      continue;
    }
    const hasNodePort = port.nodePort !== null && (service.type === 'NodePort' || service.type === 'LoadBalancer');
    const externallyAccessible = hasNodePort || externalIPs.length > 0 || loadBalancerIPs.length > 0;
    const usesCluster = !internalPolicyLocal || externallyAccessible;
    const usesLocal = internalPolicyLocal || (externalPolicyLocal && externallyAccessible);
    const endpoints = portEndpoints(service, slices, port, node, opts);
    for (const e of endpoints) if (e.local && e.ready) localReady.add(e.ip);
    // Each family has its own endpoint sets, as kube-proxy has one proxier per
    // family: a frontend reaches endpoints of its own family only.
    const setsByFamily = new Map<IPFamily, { cluster: EndpointSet; local: EndpointSet; noEndpoints: NoEndpointsVerdict }>();
    const setsOf = (family: IPFamily) => {
      let sets = setsByFamily.get(family);
      if (sets === undefined) {
        const found = categorizeEndpoints(endpoints.filter((e) => ipFamily(e.ip) === family), node, usesCluster, usesLocal);
        sets = {
          cluster: found.cluster,
          local: found.local,
          noEndpoints: found.hasAnyEndpoints ? 'drop' : 'reject',
        };
        setsByFamily.set(family, sets);
      }
      return sets;
    };
    const frontend = (kind: FrontendKind, ip: string, portNumber: number): ResolvedFrontend => {
      const family = ipFamily(ip);
      const { cluster, local, noEndpoints } = setsOf(family);
      const isClusterIP = kind === 'ClusterIP';
      const internal = isClusterIP && internalPolicyLocal ? local : cluster;
      const external = isClusterIP ? internal : externalPolicyLocal ? local : cluster;
      return {
        kind,
        family,
        ip,
        port: portNumber,
        protocol: port.protocol,
        noEndpoints,
        affinity,
        internal,
        external,
        masquerade: isClusterIP ? 'off-cluster' : externalPolicyLocal ? 'node' : 'all',
        sourceRanges: kind === 'LoadBalancerIP' ? effectiveSourceRanges(service, loadBalancerIPs, node, family) : [],
      };
    };
    const frontends = [
      ...clusterIPs.map((ip) => frontend('ClusterIP', ip, port.port)),
      ...externalIPs.map((ip) => frontend('ExternalIP', ip, port.port)),
      ...loadBalancerIPs.map((ip) => frontend('LoadBalancerIP', ip, port.port)),
      ...(hasNodePort ? nodePortIPs.map((ip) => frontend('NodePort', ip, port.nodePort!)) : []),
    ];
    ports.push({
      key: servicePortKey(service.namespace, service.name, port.name),
      namespace: service.namespace,
      name: service.name,
      portName: port.name,
      protocol: port.protocol,
      frontends: frontends.filter(firstSeen),
      lbAlgorithm,
      settings,
    });
  }
  const needsHealthCheck = service.type === 'LoadBalancer' && externalPolicyLocal && service.healthCheckNodePort !== null;
  return { ports, skipped, warnings, health: needsHealthCheck ? { port: service.healthCheckNodePort!, localEndpoints: localReady.size } : null };
}

/** The annotation kube-lb.io/lb-algorithm if it names an algorithm, else the default; a value it does not name is a warning. */
function serviceLbAlgorithm(service: Service, opts: ResolveOptions, warnings: string[]): LbAlgorithm {
  const asked = service.annotations[LB_ALGORITHM_ANNOTATION];
  if (asked === undefined) return opts.lbAlgorithm;
  const known = LB_ALGORITHMS.find((a) => a === asked);
  if (known !== undefined) return known;
  warnings.push(`annotation ${LB_ALGORITHM_ANNOTATION}=${JSON.stringify(asked)} names no algorithm (${LB_ALGORITHMS.join(', ')}); using ${opts.lbAlgorithm} (--bpf-lb-algorithm)`);
  return opts.lbAlgorithm;
}

/**
 * A frontend's loadBalancerSourceRanges, as kube-proxy's proxier of its
 * family sees them: the ranges of its family only, none (every source) if
 * one of them is all of the family (0.0.0.0/0, ::/0), plus the family's
 * load-balancer IPs themselves when a range holds a node address: traffic
 * from the node to a VIP that is also local loops back with the VIP as its
 * source (kube-proxy's allowFromNode). A family the ranges leave out gets
 * none, so every source, as in kube-proxy.
 */
function effectiveSourceRanges(service: Service, loadBalancerIPs: readonly string[], node: NodeContext, family: IPFamily): string[] {
  const ranges = service.loadBalancerSourceRanges.filter((r) => parseCidr(r).family === family);
  const cidrs = ranges.map(parseCidr);
  if (cidrs.length === 0 || cidrs.some((c) => c.prefix === 0)) return [];
  const own = node.primaryIP[family];
  const allowFromNode = own !== null && cidrs.some((c) => cidrContains(c, own));
  const hostRoutes = allowFromNode ? loadBalancerIPs.filter((ip) => ipFamily(ip) === family).map((ip) => (family === 'IPv4' ? `${ip}/32` : `${ip}/128`)) : [];
  return [...ranges, ...hostRoutes];
}

/**
 * The endpoints of the service's slices for `port`: slice ports match by
 * name and protocol and give the destination port; an endpoint's addresses
 * are fungible and, like kube-proxy, the first is used; a duplicate address
 * counts once, as first seen.
 */
function portEndpoints(service: Service, slices: ReadonlySet<EndpointSlice>, port: ServicePort, node: NodeContext, opts: ResolveOptions): PortEndpoint[] {
  const byAddress = new Map<string, PortEndpoint>();
  for (const slice of slices) {
    if (slice.ignoredReason !== null) continue;
    for (const slicePort of slice.ports) {
      if (slicePort.name !== port.name || slicePort.protocol !== port.protocol || slicePort.port === null) continue;
      for (const e of slice.endpoints) {
        const ip = e.addresses[0]!;
        if (!opts.families.includes(ipFamily(ip))) continue;
        const key = `${ip}:${slicePort.port}`;
        if (byAddress.has(key)) continue;
        byAddress.set(key, {
          ip,
          port: slicePort.port,
          ready: e.ready,
          serving: e.serving,
          terminating: e.terminating,
          local: e.nodeName === node.nodeName,
          zoneHints: e.hints === null || e.hints.forZones.length === 0 ? null : e.hints.forZones,
          nodeHints: e.hints === null || e.hints.forNodes.length === 0 ? null : e.hints.forNodes,
        });
      }
    }
  }
  const endpoints = [...byAddress.values()];
  if (opts.deriveTopologyHints) deriveHints(service, slices, endpoints);
  return endpoints;
}

/**
 * Fills in the hints the EndpointSlice controller would write for
 * spec.trafficDistribution, when no endpoint has any: PreferClose and
 * PreferSameZone hint each endpoint to its own zone, PreferSameNode also to
 * its own node. Like the controller, nothing is hinted unless every
 * endpoint has a zone (or, for nodes, a node name).
 */
function deriveHints(service: Service, slices: ReadonlySet<EndpointSlice>, endpoints: PortEndpoint[]): void {
  const mode = service.trafficDistribution;
  if (mode !== 'PreferClose' && mode !== 'PreferSameZone' && mode !== 'PreferSameNode') return;
  if (endpoints.some((e) => e.zoneHints !== null || e.nodeHints !== null)) return;
  const placement = new Map<string, { zone: string | null; nodeName: string | null }>();
  for (const slice of slices) for (const e of slice.endpoints) if (!placement.has(e.addresses[0]!)) placement.set(e.addresses[0]!, e);
  const zones = endpoints.map((e) => placement.get(e.ip)?.zone ?? null);
  const nodes = endpoints.map((e) => placement.get(e.ip)?.nodeName ?? null);
  endpoints.forEach((e, i) => {
    if (zones.every((z) => z !== null)) e.zoneHints = [zones[i]!];
    if (mode === 'PreferSameNode' && nodes.every((n) => n !== null)) e.nodeHints = [nodes[i]!];
  });
}
