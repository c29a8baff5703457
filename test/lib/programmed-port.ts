// A service port with one ClusterIP frontend, shaped as the netfilter
// backends program it, for tests of their rule generators.
import type { Destination, EndpointSet, Frontend } from '../../src/model/contract.js';
import type { ProgrammedPort } from '../../src/backends/netfilter/frontends.js';

export interface ClusterIpPortSpec {
  key: string;
  namespace: string;
  name: string;
  portName: string;
  frontend: Frontend;
  destinations: Destination[];
}

export function programmedPort(spec: ClusterIpPortSpec): ProgrammedPort {
  const set: EndpointSet = { policy: 'cluster', destinations: spec.destinations };
  const frontend = {
    kind: 'ClusterIP' as const,
    family: 'IPv4' as const,
    ...spec.frontend,
    internal: set,
    external: set,
    masquerade: 'off-cluster' as const,
    sourceRanges: [],
    noEndpoints: 'reject' as const,
    affinity: null,
  };
  return { ...spec, protocol: spec.frontend.protocol, frontends: [frontend], frontend, settings: {} };
}
