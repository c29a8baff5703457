// What the netfilter backends program: the service ports in a stable order,
// every frontend with the endpoints its traffic may reach (for stale flows),
// and, for the backends that translate ClusterIPs only, one entry per
// ClusterIP frontend.
import type { Logger } from '../../log.js';
import { type DesiredState, type Destination, type ResolvedFrontend, type ServicePortState, compareDestinations, destinationKey } from '../../model/contract.js';
import type { FrontendDestinations } from './conntrack.js';

/** A service port's ClusterIP frontend, as the rules program it. */
export interface ProgrammedPort extends ServicePortState {
  frontend: ResolvedFrontend;
  destinations: Destination[];
}

/** The ClusterIP frontends to program, in service port order. */
export function servicePortsToProgram(state: DesiredState): ProgrammedPort[] {
  return sortedServicePorts(state).flatMap((sp) =>
    sp.frontends.filter((f) => f.kind === 'ClusterIP').map((frontend) => ({ ...sp, frontend, destinations: frontend.internal.destinations })),
  );
}

/** Service ports sorted by key, so that rule order does not depend on the order of changes. */
export function sortedServicePorts(state: DesiredState): ServicePortState[] {
  return [...state.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * Every frontend of every kind with the endpoints any of its traffic may
 * reach (internal and external sets together), for stale-flow flushing: a
 * flow cannot tell which set picked its endpoint.
 */
export function frontendDestinations(servicePorts: readonly ServicePortState[]): FrontendDestinations[] {
  return servicePorts.flatMap((sp) => sp.frontends.map((frontend) => ({ frontend, destinations: reachable(frontend) })));
}

function reachable(f: ResolvedFrontend): readonly Destination[] {
  if (f.internal === f.external) return f.internal.destinations;
  const all = new Map([...f.internal.destinations, ...f.external.destinations].map((d) => [destinationKey(d), d]));
  return [...all.values()].sort(compareDestinations);
}

/** The packet mark that asks for masquerading: kube-proxy's --masquerade-bit (14 gives 0x4000). */
export function masqueradeMark(bit: number): string {
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new Error(`--masquerade-bit=${bit}: must be an integer from 0 to 31`);
  return `0x${(2 ** bit).toString(16)}`;
}

export interface NetfilterOptions {
  log: Logger;
  /** Traffic to a service from outside this range is masqueraded; undefined masquerades only hairpin traffic. */
  clusterCidr: string | undefined;
  /** The mark bit for masquerading. */
  masqueradeBit: number;
}
