// Which endpoints a service port's traffic may use on this node, the way
// kube-proxy's pkg/proxy/topology.go decides it: readiness, topology hints
// (used only when every ready endpoint has them), traffic policies, and the
// fallback to serving-and-terminating endpoints (KEP-1669) when nothing
// ready is left.
import { compareDestinations, type Destination, type EndpointSet } from './contract.js';

/** One endpoint of a service port, as the model sees it. */
export interface PortEndpoint extends Destination {
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** Whether the endpoint runs on this node. */
  local: boolean;
  /** hints.forZones names, or null when the endpoint has no zone hints. */
  zoneHints: readonly string[] | null;
  /** hints.forNodes names, or null when the endpoint has no node hints. */
  nodeHints: readonly string[] | null;
}

export interface Categorized {
  /** For traffic policy Cluster; empty when the port does not use it. */
  cluster: EndpointSet;
  /** For traffic policy Local; empty when the port does not use it. */
  local: EndpointSet;
  /** Whether any endpoint anywhere could serve the port (ready, or serving and terminating). */
  hasAnyEndpoints: boolean;
}

export interface TopologyContext {
  nodeName: string;
  /** This node's zone label, or '' when it has none. */
  zone: string;
}

type TopologyMode = '' | 'PreferSameNode' | 'PreferSameZone';

/** Hints are honoured only when every ready endpoint has them and some are for this node or zone. */
function topologyMode(endpoints: readonly PortEndpoint[], ctx: TopologyContext): TopologyMode {
  const ready = endpoints.filter((e) => e.ready);
  if (ready.length === 0) return '';
  if (ready.every((e) => e.nodeHints !== null && e.nodeHints.length > 0) && ready.some((e) => e.nodeHints!.includes(ctx.nodeName))) return 'PreferSameNode';
  if (ready.every((e) => e.zoneHints !== null && e.zoneHints.length > 0) && ready.some((e) => e.zoneHints!.includes(ctx.zone))) return 'PreferSameZone';
  return '';
}

function availableForTopology(e: PortEndpoint, mode: TopologyMode, ctx: TopologyContext): boolean {
  if (mode === 'PreferSameNode') return e.nodeHints!.includes(ctx.nodeName);
  if (mode === 'PreferSameZone') return e.zoneHints!.includes(ctx.zone);
  return true;
}

const usable = (e: PortEndpoint): boolean => e.ready || (e.serving && e.terminating);

/**
 * kube-proxy's CategorizeEndpoints. `usesCluster` and `usesLocal` say which
 * sets the port's traffic policies need.
 */
export function categorizeEndpoints(endpoints: readonly PortEndpoint[], ctx: TopologyContext, usesCluster: boolean, usesLocal: boolean): Categorized {
  let cluster: PortEndpoint[] = [];
  if (usesCluster) {
    const mode = topologyMode(endpoints, ctx);
    cluster = endpoints.filter((e) => e.ready && availableForTopology(e, mode, ctx));
    // Topology never empties the set while a ready endpoint exists, so an
    // empty set here means nothing is ready anywhere.
    if (cluster.length === 0) cluster = endpoints.filter((e) => e.serving && e.terminating);
  }
  let local: PortEndpoint[] = [];
  if (usesLocal) {
    local = endpoints.filter((e) => e.local && e.ready);
    if (local.length === 0) local = endpoints.filter((e) => e.local && e.serving && e.terminating);
  }
  return { cluster: endpointSet('cluster', cluster), local: endpointSet('local', local), hasAnyEndpoints: endpoints.some(usable) };
}

function endpointSet(policy: EndpointSet['policy'], endpoints: readonly PortEndpoint[]): EndpointSet {
  return { policy, destinations: destinations(endpoints), onThisNode: destinations(endpoints.filter((e) => e.local)) };
}

function destinations(endpoints: readonly PortEndpoint[]): Destination[] {
  return endpoints.map((e) => ({ ip: e.ip, port: e.port })).sort(compareDestinations);
}
