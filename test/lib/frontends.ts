// Resolved frontends and service ports built by hand, for tests of the
// backends' rule generators.
import { ipFamily } from '../../src/net/ip.js';
import type { Destination, EndpointSet, Frontend, FrontendKind, ResolvedFrontend, ServicePortState } from '../../src/model/contract.js';

/**
 * A frontend as the model resolves one of a Cluster-policy service: one set
 * for all its traffic, masquerading by kind, no source ranges, no affinity.
 */
export function resolvedFrontend(kind: FrontendKind, ip: string, port: number, fields: Partial<ResolvedFrontend> & { internal: EndpointSet }): ResolvedFrontend {
  return {
    kind,
    family: ipFamily(ip),
    ip,
    port,
    protocol: 'TCP',
    external: fields.internal,
    masquerade: kind === 'ClusterIP' ? 'off-cluster' : 'all',
    sourceRanges: [],
    noEndpoints: 'reject',
    affinity: null,
    ...fields,
  };
}

export interface ClusterIpPortSpec {
  key: string;
  namespace: string;
  name: string;
  portName: string;
  frontend: Frontend;
  destinations: Destination[];
}

/** A service port with one ClusterIP frontend, which the tests reach directly. */
export interface ClusterIpPort extends ServicePortState {
  frontend: ResolvedFrontend;
  destinations: Destination[];
}

export function clusterIpPort(spec: ClusterIpPortSpec): ClusterIpPort {
  const frontend = resolvedFrontend('ClusterIP', spec.frontend.ip, spec.frontend.port, {
    protocol: spec.frontend.protocol,
    internal: { policy: 'cluster', destinations: spec.destinations, onThisNode: [] },
  });
  return { ...spec, protocol: spec.frontend.protocol, frontends: [frontend], frontend, lbAlgorithm: 'random', settings: {} };
}
