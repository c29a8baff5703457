// Graceful removal of real servers, as kube-proxy's graceful termination
// manager does it: a removed TCP or SCTP endpoint first gets weight 0 (no
// new connections), and is deleted once IPVS counts no connection to it
// (active + inactive) or when its grace period ends. UDP has no connection
// end to wait for, so UDP real servers are deleted at once.
import type { Destination, Frontend } from '../../model/contract.js';
import { frontendKey } from '../../model/contract.js';
import { type IpvsFrontend, destKey } from './virtual-servers.js';

export interface Draining {
  frontend: IpvsFrontend;
  destination: Destination;
  /** performance.now() after which it is deleted whatever its connections. */
  deadline: number;
}

export function needsDraining(frontend: Frontend): boolean {
  return frontend.protocol !== 'UDP';
}

/** Whether a draining real server can go: no connections left, the grace period over, or already gone. */
export function drainDone(connections: number | undefined, deadline: number, now: number): boolean {
  return connections === undefined || connections === 0 || now >= deadline;
}

/** The real servers being drained, by frontend and destination. */
export class DrainQueue {
  private readonly entries = new Map<string, Draining>();

  private static id(f: Frontend, d: Destination): string {
    return `${frontendKey(f)}>${destKey(d)}`;
  }

  add(frontend: IpvsFrontend, destination: Destination, deadline: number): void {
    this.entries.set(DrainQueue.id(frontend, destination), { frontend, destination, deadline });
  }

  has(frontend: Frontend, destination: Destination): boolean {
    return this.entries.has(DrainQueue.id(frontend, destination));
  }

  /** Stops draining one real server (its endpoint came back) or every one of a frontend (it was deleted). */
  cancel(frontend: Frontend, destination?: Destination): void {
    if (destination !== undefined) {
      this.entries.delete(DrainQueue.id(frontend, destination));
      return;
    }
    const fk = frontendKey(frontend);
    for (const [id, e] of this.entries) if (frontendKey(e.frontend) === fk) this.entries.delete(id);
  }

  /** The draining real servers grouped by frontend key. */
  byFrontend(): Map<string, Draining[]> {
    const groups = new Map<string, Draining[]>();
    for (const e of this.entries.values()) {
      const fk = frontendKey(e.frontend);
      let group = groups.get(fk);
      if (group === undefined) groups.set(fk, (group = []));
      group.push(e);
    }
    return groups;
  }

  get size(): number {
    return this.entries.size;
  }
}
