// Records which service ports changed since the last sync, the way
// kube-proxy's change trackers do, so a sync can touch only those (and remove
// the ones that vanished). Service and endpoint changes are counted apart
// because they are reported apart.

/** What changed since the previous take(). */
export interface Changes {
  /** Service port keys to re-examine, including ports that no longer exist. */
  changedKeys: Set<string>;
  /** Distinct services whose Service object changed. */
  services: number;
  /** Distinct services whose endpoints changed. */
  endpoints: number;
}

/** The port keys a service ("namespace/name") has right now; none if it does not exist. */
export type PortKeysOf = (service: string) => readonly string[];

export class ChangeTracker {
  /** Keys the services had before their changes; the keys after are read at take(). */
  private readonly keysBefore = new Set<string>();
  private readonly services = new Set<string>();
  private readonly endpoints = new Set<string>();

  constructor(private readonly portKeysOf: PortKeysOf) {}

  /** Call BEFORE applying a change to Service namespace/name. */
  markService(namespace: string, name: string): void {
    this.mark(this.services, `${namespace}/${name}`);
  }

  /** Call BEFORE applying a change to the endpoints of service namespace/name. */
  markEndpoints(namespace: string, name: string): void {
    this.mark(this.endpoints, `${namespace}/${name}`);
  }

  pending(): { services: number; endpoints: number } {
    return { services: this.services.size, endpoints: this.endpoints.size };
  }

  /** Returns the changes recorded since the last take() and starts over. */
  take(): Changes {
    const changedKeys = new Set(this.keysBefore);
    for (const service of new Set([...this.services, ...this.endpoints])) {
      for (const key of this.portKeysOf(service)) changedKeys.add(key);
    }
    const changes = { changedKeys, services: this.services.size, endpoints: this.endpoints.size };
    this.keysBefore.clear();
    this.services.clear();
    this.endpoints.clear();
    return changes;
  }

  private mark(set: Set<string>, service: string): void {
    set.add(service);
    for (const key of this.portKeysOf(service)) this.keysBefore.add(key);
  }
}
