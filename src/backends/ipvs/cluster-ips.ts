// What the ipvs backend programs: one virtual server per ClusterIP frontend,
// with the endpoints the model chose for it. (The other frontend kinds are
// not built for ipvs yet.)
import type { DesiredState, Destination, ResolvedFrontend, ServicePortState } from '../../model/contract.js';
import { sortedServicePorts } from '../netfilter/frontends.js';

/** A service port's ClusterIP frontend, as a virtual server. */
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

