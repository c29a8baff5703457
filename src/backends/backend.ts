// The seam between the model and the datapaths. The model decides which
// endpoints receive traffic for every service port; a backend only turns
// that decision into kernel state and reads the kernel state back.

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** What clients address: a ClusterIP, a port and a protocol. */
export interface Frontend {
  ip: string;
  port: number;
  protocol: Protocol;
}

/** Where traffic goes: an endpoint address and the service port's target port on it. */
export interface Destination {
  ip: string;
  port: number;
}

/** The model's verdict for one service port. */
export interface ServicePortState {
  /** "namespace/name:portName" (portName may be empty), as kube-proxy names service ports. */
  key: string;
  namespace: string;
  name: string;
  portName: string;
  frontend: Frontend;
  /** Endpoints that receive traffic, sorted by ip then port, without duplicates. */
  destinations: Destination[];
  /** ipvs: the scheduler the Service asks for (annotation kube-lb.io/ipvs-scheduler), unvalidated. */
  ipvsScheduler?: string;
}

/** Every service port the node must serve, by ServicePortState.key. */
export type DesiredState = ReadonlyMap<string, ServicePortState>;

/** The kernel's view of one frontend, as inspect reports it. */
export interface FrontendView {
  frontend: Frontend;
  destinations: Destination[];
}

export interface SyncStats {
  /** Frontends written, added or rewritten. */
  frontendsWritten: number;
  /** Frontends removed. */
  frontendsRemoved: number;
}

export interface Backend {
  readonly name: string;
  /**
   * Makes the kernel state match `state`. `changed` names the service port keys
   * touched since the last sync (including deleted ones); null asks for a full
   * reconcile against what the kernel holds.
   */
  sync(state: DesiredState, changed: ReadonlySet<string> | null): Promise<SyncStats>;
  /** Reads the kernel state back, never a memory of the last sync. */
  inspect(): Promise<FrontendView[]>;
  /** Removes everything this backend created and nothing else. */
  cleanup(): Promise<void>;
  /** Releases process resources (watchers, fds); leaves the datapath in place. */
  close(): Promise<void>;
  /** Optional: how full each kernel table is (BPF maps), for the metrics. */
  mapFill?(): Promise<MapFill[]>;
}

export interface MapFill {
  map: string;
  entries: number;
  maxEntries: number;
}

export function frontendKey(f: Frontend): string {
  return `${f.ip}:${f.port}/${f.protocol}`;
}

export function compareDestinations(a: Destination, b: Destination): number {
  const ai = ipv4ToInt(a.ip);
  const bi = ipv4ToInt(b.ip);
  return ai !== bi ? ai - bi : a.port - b.port;
}

/** Parses dotted-quad IPv4 into an unsigned 32-bit number; throws on anything else. */
export function ipv4ToInt(ip: string): number {
  // A hand-written scan: this runs for every map entry a sync writes.
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
    } else if (c === 46 && digits > 0 && dots < 3 && octet <= 255) {
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
    }
  }
  if (dots !== 3 || digits === 0 || octet > 255) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  return n * 256 + octet;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}
