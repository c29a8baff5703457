// What the ipvs backend programs: one virtual server per frontend of every
// kind, with the endpoints the model chose for it. A virtual server cannot
// tell pods from outside clients, so each serves one endpoint set: a
// ClusterIP its internal one, the other kinds their external one, as
// kube-proxy's IPVS mode does.
import { servedSet } from '../backend.js';
import type { Destination, ResolvedFrontend, ServicePortState } from '../../model/contract.js';
import { sortedServicePorts } from '../netfilter/frontends.js';

/** A service port's frontend, as a virtual server. */
export interface ProgrammedPort extends ServicePortState {
  frontend: ResolvedFrontend;
  destinations: Destination[];
  /** Those of `destinations` on this node, in the same order: the endpoints whose own connections to the frontend come back to them (KUBE-LOOP-BACK). */
  onThisNode: Destination[];
}

/** The frontends of these service ports to program, in service port order. */
export function servicePortsToProgram(ports: Iterable<ServicePortState>): ProgrammedPort[] {
  return sortedServicePorts(ports).flatMap((sp) =>
    sp.frontends.map((frontend) => {
      const served = servedSet(frontend);
      return { ...sp, frontend, destinations: served.destinations, onThisNode: served.onThisNode };
    }),
  );
}
