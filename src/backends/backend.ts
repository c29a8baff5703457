// The Backend interface: what every datapath implements. The model decides
// which endpoints receive which traffic (src/model/contract.ts); a backend
// only turns that decision into kernel state and reads the kernel back.
import type { DesiredState, Destination, EndpointSet, Frontend, FrontendKind, NodeView, Protocol, ResolvedFrontend } from '../model/contract.js';

/** The kernel's view of one frontend, as inspect reports it. */
export interface FrontendView {
  kind: FrontendKind;
  frontend: Frontend;
  /** Where traffic from outside the node goes (for a ClusterIP, all its traffic). */
  destinations: Destination[];
}

/** The endpoint set a frontend's view shows: a ClusterIP's internal one, the other kinds' external one. */
export const servedSet = (f: ResolvedFrontend): EndpointSet => (f.kind === 'ClusterIP' ? f.internal : f.external);

/** A frontend as the contract says inspect shows it: for backends that program every frontend as the model resolved it. */
export function frontendView(f: ResolvedFrontend): FrontendView {
  return { kind: f.kind, frontend: { ip: f.ip, port: f.port, protocol: f.protocol }, destinations: servedSet(f).destinations };
}

export interface SyncStats {
  /** Frontends written, added or rewritten. */
  frontendsWritten: number;
  /** Frontends removed. */
  frontendsRemoved: number;
  /**
   * Service ports left unprogrammed, or as last programmed, because a
   * kernel table has no room for them; the backend tries them again at
   * every sync. A sync that refused any did not do everything: it counts
   * as failed.
   */
  servicePortsRefused?: number;
}

export interface Backend {
  readonly name: string;
  /** The protocols it translates; the model leaves service ports of others out, and says so. */
  readonly protocols: readonly Protocol[];
  /**
   * Makes the kernel state match `state`. `changed` names the service port keys
   * touched since the last sync (including deleted ones); null asks for a full
   * reconcile against what the kernel holds. `node` is what the model says
   * about the node itself; absent, it is as at the last sync.
   */
  sync(state: DesiredState, changed: ReadonlySet<string> | null, node?: NodeView): Promise<SyncStats>;
  /** Reads the kernel state back, never a memory of the last sync. */
  inspect(): Promise<FrontendView[]>;
  /**
   * What inspect would read back once `state` is synced, computed as sync
   * computes the kernel state it writes, writing nothing and reading no
   * kernel state: `kube-lb diff` compares it with inspect.
   */
  planned(state: DesiredState): Promise<FrontendView[]>;
  /** Removes everything this backend created and nothing else. */
  cleanup(): Promise<void>;
  /** Releases process resources (watchers, fds); leaves the datapath in place. */
  close(): Promise<void>;
  /** Optional: how full each kernel table is (BPF maps), for the metrics. */
  mapFill?(): Promise<MapFill[]>;
  /** Optional: packets the datapath dropped, by reason, since its counters were created (BPF maps survive restarts). */
  drops?(): Promise<Record<string, number>>;
  /** Optional: what the kernel counted for each endpoint of each frontend, read from the kernel at each call. */
  counters?(): Promise<EndpointCounters[]>;
  /** Whether counters() counts packets and bytes too, not only connections. */
  readonly countsTraffic?: boolean;
}

/**
 * What the kernel counted for traffic to one endpoint. Some kernels count
 * an endpoint once for several frontends of its service port (a netfilter
 * endpoint chain serves them all): `frontends` names those whose traffic
 * the counts include, so the count is reported once, not once per frontend.
 */
export interface EndpointCounters {
  frontends: Frontend[];
  destination: Destination;
  /** New connections sent to the endpoint since the kernel object counting them was created. */
  connections: number;
  /** Where the backend countsTraffic: the packets of those connections, both directions, and their IP bytes. */
  packets?: number;
  bytes?: number;
}

/** What the kernel counted to an endpoint, or to a service port. */
export type Counts = Pick<EndpointCounters, 'connections' | 'packets' | 'bytes'>;

/** The sum of two counts; packets and bytes only where both count them. */
export function addCounts(a: Counts | undefined, b: Counts): Counts {
  if (a === undefined) return { connections: b.connections, ...(b.packets === undefined ? {} : { packets: b.packets, bytes: b.bytes }) };
  const sum: Counts = { connections: a.connections + b.connections };
  if (a.packets !== undefined && b.packets !== undefined) Object.assign(sum, { packets: a.packets + b.packets, bytes: (a.bytes ?? 0) + (b.bytes ?? 0) });
  return sum;
}

export interface MapFill {
  map: string;
  /** null while not counted yet. */
  entries: number | null;
  maxEntries: number;
}
