// IPVS virtual servers as kube-lb reads and writes them: one per frontend,
// of the frontend's family, real servers by "ip:port" with their weight.
// Each change is one netlink message; a sync's changes go to the kernel
// together (IpvsChanges), many per sendmsg, each with its own error, on a
// worker thread.
import type { IpvsChange, NativeAddon } from '../../native/index.js';
import type { Destination, Frontend, IPFamily, Protocol } from '../../model/contract.js';
import { frontendKey } from '../../model/contract.js';
import { timeSlices } from '../../time-slices.js';

export const PROTOCOL_NUMBERS: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };
const PROTOCOL_NAMES = new Map(Object.entries(PROTOCOL_NUMBERS).map(([name, n]) => [n, name as Protocol]));

/** Real servers that get new connections have this weight; draining ones have 0. */
export const ACTIVE_WEIGHT = 1;

export interface RealServer {
  destination: Destination;
  weight: number;
}

/** How a virtual server picks real servers: its scheduler, and how long a client sticks to one (seconds; 0 for not at all). */
export interface Scheduling {
  scheduler: string;
  persistence: number;
}

/** A frontend with its family, which IPVS keys services by: the model's ResolvedFrontend, or what the kernel reports. */
export type IpvsFrontend = Frontend & { family: IPFamily };

export interface VirtualServer extends Scheduling {
  frontend: IpvsFrontend;
  /** By destKey. */
  realServers: Map<string, RealServer>;
}

export const destKey = (d: Destination): string => `${d.ip}:${d.port}`;

/** The destinations that receive new connections: weight above 0. */
export function activeDestinations(vs: VirtualServer): Destination[] {
  return [...vs.realServers.values()].filter((r) => r.weight > 0).map((r) => r.destination);
}

/** Connection counts of a real server, from the IPVS stats. */
export interface RealServerStats {
  weight: number;
  /** Open now: active and inactive. */
  connections: number;
  /** Sent to it since it was added; null where the kernel does not say. */
  scheduled: number | null;
  /** Packets and bytes of those connections, both directions; null where the kernel does not say. */
  packets: number | null;
  bytes: number | null;
}

/** Thin typed layer over the addon's IPVS calls, keyed by Frontend and Destination. */
export class IpvsTable {
  constructor(private readonly lib: NativeAddon) {}

  /**
   * Every virtual server of either family `owns` accepts, with its real
   * servers: one dump each, thousands on a full sync, so the event loop
   * gets its turns between them.
   */
  async read(owns: (f: IpvsFrontend) => boolean): Promise<Map<string, VirtualServer>> {
    const result = new Map<string, VirtualServer>();
    const turn = timeSlices();
    for (const svc of this.lib.ipvsServices()) {
      await turn();
      const protocol = PROTOCOL_NAMES.get(svc.protocol);
      if (protocol === undefined) continue;
      const frontend: IpvsFrontend = { ip: svc.address, port: svc.port, protocol, family: svc.family };
      if (!owns(frontend)) continue;
      const realServers = new Map<string, RealServer>();
      for (const d of this.lib.ipvsDests(svc.family, svc.address, svc.protocol, svc.port)) {
        const destination = { ip: d.address, port: d.port };
        realServers.set(destKey(destination), { destination, weight: d.weight });
      }
      result.set(frontendKey(frontend), { frontend, scheduler: svc.scheduler, persistence: svc.persistence, realServers });
    }
    return result;
  }

  /** The real servers' weights and connection counts (active + inactive), by destKey. */
  stats(frontend: IpvsFrontend): Map<string, RealServerStats> {
    const dests = this.lib.ipvsDests(frontend.family, frontend.ip, PROTOCOL_NUMBERS[frontend.protocol], frontend.port);
    return new Map(dests.map((d) => [`${d.address}:${d.port}`, { weight: d.weight, connections: d.activeConns + d.inactiveConns, scheduled: d.scheduledConns, packets: d.packets, bytes: d.bytes }]));
  }

  /** An empty set of changes, applied with apply(). */
  changes(): IpvsChanges {
    return new IpvsChanges(this.lib);
  }
}

/**
 * Changes queued to be applied together, in order. Each belongs to an owner
 * (a frontend key), to whom its error goes, and runs its `applied` callback
 * once the kernel has taken it.
 */
export class IpvsChanges {
  private readonly queued: { change: IpvsChange; owner: string; applied: () => void }[] = [];

  constructor(private readonly lib: Pick<NativeAddon, 'ipvsApply'>) {}

  get size(): number {
    return this.queued.length;
  }

  addService(owner: string, f: IpvsFrontend, s: Scheduling, applied: () => void): void {
    this.queue(owner, ['addService', f.family, f.ip, PROTOCOL_NUMBERS[f.protocol], f.port, s.scheduler, s.persistence], applied);
  }

  setScheduling(owner: string, f: IpvsFrontend, s: Scheduling, applied: () => void): void {
    this.queue(owner, ['setService', f.family, f.ip, PROTOCOL_NUMBERS[f.protocol], f.port, s.scheduler, s.persistence], applied);
  }

  deleteService(owner: string, f: IpvsFrontend, applied: () => void): void {
    this.queue(owner, ['deleteService', f.family, f.ip, PROTOCOL_NUMBERS[f.protocol], f.port], applied);
  }

  addRealServer(owner: string, f: IpvsFrontend, d: Destination, weight: number, applied: () => void): void {
    this.queue(owner, ['addDest', f.family, f.ip, PROTOCOL_NUMBERS[f.protocol], f.port, d.ip, d.port, weight], applied);
  }

  setWeight(owner: string, f: IpvsFrontend, d: Destination, weight: number, applied: () => void): void {
    this.queue(owner, ['setDest', f.family, f.ip, PROTOCOL_NUMBERS[f.protocol], f.port, d.ip, d.port, weight], applied);
  }

  deleteRealServer(owner: string, f: IpvsFrontend, d: Destination, applied: () => void): void {
    this.queue(owner, ['deleteDest', f.family, f.ip, PROTOCOL_NUMBERS[f.protocol], f.port, d.ip, d.port], applied);
  }

  /** Takes back every queued change of these owners: none of them is sent. */
  withdraw(owners: ReadonlySet<string>): void {
    if (owners.size === 0) return;
    const kept = this.queued.filter((q) => !owners.has(q.owner));
    this.queued.splice(0, this.queued.length, ...kept);
  }

  private queue(owner: string, change: IpvsChange, applied: () => void): void {
    this.queued.push({ change, owner, applied });
  }

  /**
   * Sends every change; runs the callback of each the kernel took, and
   * resolves to each owner's first error (the kernel goes on past a failed
   * change, so later ones of the same owner may fail for it or succeed).
   */
  async apply(): Promise<Map<string, Error>> {
    const queued = this.queued.splice(0);
    const errors = new Map<string, Error>();
    if (queued.length === 0) return errors;
    const results = await this.lib.ipvsApply(queued.map((q) => q.change));
    queued.forEach(({ change, owner, applied }, i) => {
      const err = results[i];
      if (err === null) applied();
      else if (!errors.has(owner)) errors.set(owner, err ?? new Error(`no result for IPVS change ${change.join(' ')}`));
    });
    return errors;
  }
}
