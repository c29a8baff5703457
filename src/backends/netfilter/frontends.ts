// What the netfilter backends program: the service ports in a stable order,
// and every frontend with the endpoints its traffic may reach (for stale
// flows).
import type { LocalTraffic, LocalTrafficByFamily } from '../../config/local-traffic.js';
import type { Logger } from '../../log.js';
import { type Destination, type ResolvedFrontend, type ServicePortState, compareDestinations, destinationKey } from '../../model/contract.js';
import type { FrontendDestinations } from './conntrack.js';

/** Service ports sorted by key, so that rule order does not depend on the order of changes. */
export function sortedServicePorts(ports: Iterable<ServicePortState>): ServicePortState[] {
  return [...ports].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
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

/** iptables' match for local traffic, or (negated) for any other: kube-proxy's LocalTrafficDetector. */
export function iptablesLocalMatch(local: LocalTraffic, negated: boolean): string[] {
  const not = negated ? ['!'] : [];
  if (local.by === 'cidr') return [...not, '-s', local.cidr];
  return [...not, '-i', local.by === 'bridge' ? local.bridge : `${local.prefix}+`];
}

export interface NetfilterOptions {
  log: Logger;
  /** Traffic to a service from elsewhere is masqueraded (--detect-local-mode), told for each family, whose rules match their own; null masquerades only hairpin traffic. */
  localTraffic: LocalTrafficByFamily;
  /** The mark bit for masquerading. */
  masqueradeBit: number;
  /**
   * --conntrack-tcp-be-liberal: conntrack tracks (and so de-NATs) TCP
   * segments out of window instead of marking them INVALID, so the INVALID
   * drop is left out, as kube-proxy leaves it out.
   */
  tcpBeLiberal: boolean;
}
