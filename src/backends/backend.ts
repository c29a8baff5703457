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
  const parts = ip.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
    n = n * 256 + Number(p);
  }
  return n;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}
