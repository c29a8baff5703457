// What the netfilter backends program: one entry per ClusterIP frontend,
// with the endpoints the model chose for it.
import type { Logger } from '../../log.js';
import { type DesiredState, type Destination, type ResolvedFrontend, type ServicePortState, compareDestinations, destinationKey } from '../../model/contract.js';
import type { FrontendDestinations } from './conntrack.js';

/** A service port's ClusterIP frontend, as the rules program it. */
export interface ProgrammedPort extends ServicePortState {
  frontend: ResolvedFrontend;
  destinations: Destination[];
}

/** The ClusterIP frontends to program, sorted by service port key so rule order is stable. */
export function servicePortsToProgram(state: DesiredState): ProgrammedPort[] {
  const ports: ProgrammedPort[] = [];
  for (const sp of state.values()) {
    for (const frontend of sp.frontends) {
      if (frontend.kind === 'ClusterIP') ports.push({ ...sp, frontend, destinations: frontend.internal.destinations });
    }
  }
  return ports.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
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
