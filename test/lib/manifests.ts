// Kubernetes objects shaped as `kubectl get -o yaml` prints them, for the
// sandboxes' manifest directories: what the API server would have stored,
// defaults and allocated fields included.
import fs from 'node:fs';
import path from 'node:path';
import { isIPv6 } from 'node:net';
import { stringify } from 'yaml';
import type { Protocol } from '../../src/model/contract.js';

export interface PortSpec {
  name: string;
  port: number;
  targetPort: number;
  protocol: Protocol;
  /** Required on NodePort services, and on LoadBalancer services that allocate node ports. */
  nodePort?: number;
}

export interface EndpointSpec {
  ip: string;
  ready: boolean;
  /** Defaults to ready. */
  serving?: boolean;
  terminating?: boolean;
  /** Defaults to node-a, where the conformance sandbox runs kube-lb. */
  nodeName?: string;
  zone?: string;
  hints?: { forZones?: string[]; forNodes?: string[] };
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';

export interface ServiceSpec {
  namespace?: string;
  name: string;
  /** "None" for a headless service; ignored for ExternalName. */
  clusterIP: string;
  /** A dual-stack service's cluster IPs, clusterIP first; without it, clusterIP alone. */
  clusterIPs?: string[];
  /** Defaults to ClusterIP. */
  type?: ServiceType;
  /** Required for ExternalName. */
  externalName?: string;
  ports: PortSpec[];
  endpoints: EndpointSpec[];
  annotations?: Record<string, string>;
  /** Besides app: NAME, e.g. service.kubernetes.io/service-proxy-name. */
  labels?: Record<string, string>;
  externalIPs?: string[];
  /** status.loadBalancer.ingress[].ip */
  loadBalancerIngress?: string[];
  loadBalancerSourceRanges?: string[];
  /** NodePort and LoadBalancer only; the API server's default is Cluster. */
  externalTrafficPolicy?: TrafficPolicy;
  internalTrafficPolicy?: TrafficPolicy;
  /** LoadBalancer with externalTrafficPolicy Local only. */
  healthCheckNodePort?: number;
  /** sessionAffinity ClientIP with this timeout; without it, None. */
  sessionAffinityTimeoutSeconds?: number;
  trafficDistribution?: 'PreferClose' | 'PreferSameZone' | 'PreferSameNode';
  /** metadata.creationTimestamp; of two services claiming one frontend, the older keeps it. */
  createdAt?: string;
}

export interface NodeSpec {
  name: string;
  ip: string;
  podCIDR: string;
  zone: string;
  /** A dual-stack node's IPv6 InternalIP and pod CIDR. */
  ipv6?: { ip: string; podCIDR: string };
}

/** The node name endpoints get unless they say otherwise. */
export const DEFAULT_NODE_NAME = 'node-a';

const familyOf = (ip: string): 'IPv4' | 'IPv6' => (isIPv6(ip) ? 'IPv6' : 'IPv4');

const uid = (seed: string): string => {
  let h = 0;
  for (const c of seed) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  const hex = h.toString(16).padStart(8, '0');
  return `${hex}-0000-4000-8000-${hex}${hex.slice(0, 4)}`;
};

/** Fails on a spec the API server would have refused or completed differently: the objects must be ones it could have stored. */
function checkSpec(s: ServiceSpec): void {
  const type = s.type ?? 'ClusterIP';
  const fail = (why: string): never => {
    throw new Error(`test service ${s.name}: ${why}`);
  };
  if (type === 'ExternalName' && !s.externalName) fail('ExternalName needs externalName');
  if (type !== 'ExternalName' && s.externalName !== undefined) fail('externalName is for ExternalName services only');
  if (type === 'ExternalName' && s.endpoints.length > 0) fail('an ExternalName service has no endpoints');
  const external = type === 'NodePort' || type === 'LoadBalancer';
  if (!external && s.externalTrafficPolicy !== undefined) fail('externalTrafficPolicy is for NodePort and LoadBalancer services only');
  const nodePorts = s.ports.filter((p) => p.nodePort !== undefined).length;
  if (type === 'NodePort' && nodePorts !== s.ports.length) fail('a NodePort service has a nodePort on every port');
  if (type === 'LoadBalancer' && nodePorts !== 0 && nodePorts !== s.ports.length) fail('a LoadBalancer service has node ports on every port or on none');
  if (!external && nodePorts !== 0) fail('nodePort is for NodePort and LoadBalancer services only');
  if ((s.healthCheckNodePort !== undefined) !== (type === 'LoadBalancer' && s.externalTrafficPolicy === 'Local')) {
    fail('a LoadBalancer service with externalTrafficPolicy Local has a healthCheckNodePort, and no other service has one');
  }
  if (s.loadBalancerSourceRanges !== undefined && type !== 'LoadBalancer') fail('loadBalancerSourceRanges is for LoadBalancer services only');
  if (s.clusterIP === 'None' && type !== 'ClusterIP') fail('only ClusterIP services are headless');
  if (s.clusterIPs !== undefined && (s.clusterIPs[0] !== s.clusterIP || s.clusterIPs.length > 2 || new Set(s.clusterIPs.map(familyOf)).size !== s.clusterIPs.length)) {
    fail('clusterIPs start with clusterIP and hold one address per family');
  }
}

export function serviceObject(s: ServiceSpec): Record<string, unknown> {
  checkSpec(s);
  const namespace = s.namespace ?? 'default';
  const type = s.type ?? 'ClusterIP';
  const metadata = {
    ...(s.annotations && { annotations: s.annotations }),
    creationTimestamp: s.createdAt ?? '2026-11-01T10:00:00Z',
    labels: { app: s.name, ...s.labels },
    name: s.name,
    namespace,
    resourceVersion: '1001',
    uid: uid(`svc/${namespace}/${s.name}`),
  };
  const ports = s.ports.map((p) => ({ name: p.name, ...(p.nodePort !== undefined && { nodePort: p.nodePort }), port: p.port, protocol: p.protocol, targetPort: p.targetPort }));
  if (type === 'ExternalName') {
    return {
      apiVersion: 'v1',
      kind: 'Service',
      metadata,
      spec: { externalName: s.externalName, ...(ports.length > 0 && { ports }), sessionAffinity: 'None', type },
      status: { loadBalancer: {} },
    };
  }
  const external = type === 'NodePort' || type === 'LoadBalancer';
  const clusterIPs = s.clusterIPs ?? [s.clusterIP];
  const spec = {
    ...(type === 'LoadBalancer' && { allocateLoadBalancerNodePorts: s.ports.every((p) => p.nodePort !== undefined) }),
    clusterIP: s.clusterIP,
    clusterIPs,
    ...(s.externalIPs && { externalIPs: s.externalIPs }),
    ...(external && { externalTrafficPolicy: s.externalTrafficPolicy ?? 'Cluster' }),
    ...(s.healthCheckNodePort !== undefined && { healthCheckNodePort: s.healthCheckNodePort }),
    internalTrafficPolicy: s.internalTrafficPolicy ?? 'Cluster',
    ipFamilies: clusterIPs.map(familyOf),
    ipFamilyPolicy: clusterIPs.length > 1 ? 'RequireDualStack' : 'SingleStack',
    ...(s.loadBalancerSourceRanges && { loadBalancerSourceRanges: s.loadBalancerSourceRanges }),
    ports,
    selector: { app: s.name },
    sessionAffinity: s.sessionAffinityTimeoutSeconds === undefined ? 'None' : 'ClientIP',
    ...(s.sessionAffinityTimeoutSeconds !== undefined && { sessionAffinityConfig: { clientIP: { timeoutSeconds: s.sessionAffinityTimeoutSeconds } } }),
    ...(s.trafficDistribution && { trafficDistribution: s.trafficDistribution }),
    type,
  };
  const ingress = s.loadBalancerIngress?.map((ip) => ({ ip, ipMode: 'VIP' }));
  return { apiVersion: 'v1', kind: 'Service', metadata, spec, status: { loadBalancer: ingress ? { ingress } : {} } };
}

/** The slice of one family's endpoints (by default IPv4's), as the EndpointSlice controller makes one per family. */
export function endpointSliceObject(s: ServiceSpec, sliceName = `${s.name}-abc12`, family: 'IPv4' | 'IPv6' = 'IPv4'): Record<string, unknown> {
  const namespace = s.namespace ?? 'default';
  return {
    addressType: family,
    apiVersion: 'discovery.k8s.io/v1',
    endpoints: s.endpoints.filter((e) => familyOf(e.ip) === family).map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready, serving: e.serving ?? e.ready, terminating: e.terminating ?? false },
      ...(e.hints && {
        hints: {
          ...(e.hints.forNodes && { forNodes: e.hints.forNodes.map((name) => ({ name })) }),
          ...(e.hints.forZones && { forZones: e.hints.forZones.map((name) => ({ name })) }),
        },
      }),
      nodeName: e.nodeName ?? DEFAULT_NODE_NAME,
      targetRef: { kind: 'Pod', name: `pod-${e.ip.replaceAll(/[.:]/g, '-')}`, namespace, uid: uid(`pod/${e.ip}`) },
      ...(e.zone !== undefined && { zone: e.zone }),
    })),
    kind: 'EndpointSlice',
    metadata: {
      creationTimestamp: '2026-11-01T10:00:01Z',
      generateName: `${s.name}-`,
      generation: 1,
      labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', 'kubernetes.io/service-name': s.name },
      name: sliceName,
      namespace,
      ownerReferences: [{ apiVersion: 'v1', blockOwnerDeletion: true, controller: true, kind: 'Service', name: s.name, uid: uid(`svc/${namespace}/${s.name}`) }],
      resourceVersion: '1002',
      uid: uid(`slice/${namespace}/${sliceName}`),
    },
    ports: s.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })),
  };
}

/** A Ready node with its InternalIP, hostname and zone, as the kubelet registers it. */
export function nodeObject(n: NodeSpec): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' },
      creationTimestamp: '2026-11-01T09:00:00Z',
      labels: {
        'beta.kubernetes.io/arch': 'amd64',
        'beta.kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'kubernetes.io/hostname': n.name,
        'kubernetes.io/os': 'linux',
        'topology.kubernetes.io/zone': n.zone,
      },
      name: n.name,
      resourceVersion: '900',
      uid: uid(`node/${n.name}`),
    },
    spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR, ...(n.ipv6 ? [n.ipv6.podCIDR] : [])] },
    status: {
      addresses: [
        { address: n.ip, type: 'InternalIP' },
        ...(n.ipv6 ? [{ address: n.ipv6.ip, type: 'InternalIP' }] : []),
        { address: n.name, type: 'Hostname' },
      ],
      conditions: [
        {
          lastHeartbeatTime: '2026-11-01T10:00:00Z',
          lastTransitionTime: '2026-11-01T09:00:10Z',
          message: 'kubelet is posting ready status',
          reason: 'KubeletReady',
          status: 'True',
          type: 'Ready',
        },
      ],
    },
  };
}

/** A `kind: List` document, as `kubectl get svc,endpointslices -o yaml` prints. */
export function listDocument(items: Record<string, unknown>[]): string {
  return stringify({ apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } });
}

/** Writes a file atomically (write then rename), as editors and kubectl tooling tend to. */
function writeAtomically(dir: string, file: string, content: string): void {
  const tmp = path.join(dir, `.${file}.tmp`);
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, path.join(dir, file));
}

/**
 * The EndpointSlices of a service: one for IPv4 unless it is IPv6 alone,
 * and one for IPv6 when it has an IPv6 cluster IP or endpoint;
 * ExternalName services have none, as in a cluster.
 */
function slicesOf(s: ServiceSpec): Record<string, unknown>[] {
  if (s.type === 'ExternalName') return [];
  const families = new Set([...(s.clusterIPs ?? [s.clusterIP]).filter((ip) => ip !== 'None'), ...s.endpoints.map((e) => e.ip)].map(familyOf));
  return [
    ...(families.has('IPv4') || !families.has('IPv6') ? [endpointSliceObject(s)] : []),
    ...(families.has('IPv6') ? [endpointSliceObject(s, `${s.name}-v6abc`, 'IPv6')] : []),
  ];
}

/** Services with their EndpointSlices. */
function objectsOf(services: ServiceSpec[]): Record<string, unknown>[] {
  return services.flatMap((s) => [serviceObject(s), ...slicesOf(s)]);
}

/** Writes services with their EndpointSlices in one `kind: List` document. */
export function writeManifest(dir: string, file: string, services: ServiceSpec[]): void {
  writeAtomically(dir, file, listDocument(objectsOf(services)));
}

/** Writes services with their EndpointSlices one YAML document each, as Helm and kustomize print them. */
export function writeDocuments(dir: string, file: string, services: ServiceSpec[]): void {
  writeAtomically(dir, file, objectsOf(services).map((o) => stringify(o)).join('---\n'));
}

export function writeNodes(dir: string, file: string, nodes: NodeSpec[]): void {
  writeAtomically(dir, file, listDocument(nodes.map(nodeObject)));
}
