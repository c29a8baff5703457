// The proxy's view of the cluster and the one place that decides which
// endpoints receive which traffic, for every service port (resolve.ts),
// and which service owns a frontend two of them claim.
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from '../log.js';
import { type Cidr, cidrContains, ipFamily } from '../net/ip.js';
import { ChangeTracker } from './change-tracker.js';
import { type DesiredState, type IPFamily, type NodeView, type ServicePortState, frontendKey } from './contract.js';
import type { EndpointSlice, KubeObject, Node, ObjectKind, Service } from './objects.js';
import { type NodeContext, type ResolveOptions, type Resolved, resolveService, servicePortKey } from './resolve.js';
import { timeSlices } from '../time-slices.js';

/** --nodeport-addresses: the node's primary addresses, or those of its addresses within the CIDRs. */
export type NodePortAddresses = 'primary' | readonly Cidr[];

export interface ModelOptions extends ResolveOptions {
  /** This node's name (--hostname-override): its Node object and which endpoints are local. */
  nodeName: string;
  nodePortAddresses: NodePortAddresses;
  /**
   * Whether NodePorts also answer on 127.0.0.1 when --nodeport-addresses
   * includes it (kube-proxy's iptables mode allows it; its other modes do not).
   */
  localhostNodePorts: boolean;
  log: Logger;
}

const LOOPBACK_IPV4 = '127.0.0.1';

/** One served healthCheckNodePort: the service and its ready endpoints on this node. */
export interface ServiceHealth {
  namespace: string;
  name: string;
  localEndpoints: number;
}


export class ProxyModel {
  /** Records every effective change, for incremental syncs. */
  readonly changes = new ChangeTracker((service) => this.portKeysOf(service));

  // Services and slices are keyed "namespace/name"; slices are also grouped
  // by their service ("namespace/serviceName") so a service's endpoints are
  // found without scanning every slice.
  private readonly services = new Map<string, Service>();
  private readonly slices = new Map<string, EndpointSlice>();
  private readonly slicesByService = new Map<string, Set<EndpointSlice>>();
  private node: Node | undefined;
  private nodeContext: NodeContext;

  /** Each service's resolution, before frontend ownership is applied. */
  private readonly resolved = new Map<string, Resolved>();
  /** The services claiming each frontend; the oldest owns it. */
  private readonly claimants = new Map<string, Set<string>>();
  /** Conflicts already logged, as "owner|refused" per claim, so each is logged once while it lasts. */
  private readonly loggedConflicts = new Map<string, Set<string>>();
  /** What desiredState() returns: every service's port states, by key. */
  private readonly state = new Map<string, ServicePortState>();
  /** The port keys each service has in the state. */
  private readonly stateKeysOf = new Map<string, string[]>();
  private readonly healthByService = new Map<string, { port: number; health: ServiceHealth }>();
  /** Services ("namespace/name") to resolve again. */
  private readonly changedServices = new Set<string>();
  /** Services whose frontend ownership may have changed. */
  private readonly reownedServices = new Set<string>();

  constructor(private readonly opts: ModelOptions) {
    this.nodeContext = this.computeNodeContext();
  }

  /** Stores an object; returns false (and records nothing) if it equals the stored version. */
  upsert(object: KubeObject): boolean {
    switch (object.kind) {
      case 'Service':
        return this.upsertService(object);
      case 'EndpointSlice':
        return this.upsertSlice(object);
      case 'Node':
        return this.upsertNode(object);
    }
  }

  /** Removes an object; returns false if it was not stored. Nodes have namespace ''. */
  delete(kind: ObjectKind, namespace: string, name: string): boolean {
    const id = `${namespace}/${name}`;
    switch (kind) {
      case 'Service':
        return this.deleteService(id);
      case 'EndpointSlice':
        return this.deleteSlice(id);
      case 'Node':
        if (name !== this.opts.nodeName || this.node === undefined) return false;
        this.node = undefined;
        this.nodeChanged();
        return true;
    }
  }

  /**
   * Every service port to serve, by key. The map is the model's own, brought
   * up to date on each call by recomputing only the services that changed,
   * so a sync after one change costs one service, not all of them. Call it
   * before `changes.take()`: a change of frontend ownership marks the other
   * claimants changed. Callers must not modify the map or its entries, nor
   * keep it across calls.
   */
  desiredState(): DesiredState {
    for (const id of this.changedServices) this.resolve(id);
    this.changedServices.clear();
    for (const id of this.reownedServices) this.publish(id);
    this.reownedServices.clear();
    return this.state;
  }

  /**
   * Does desiredState()'s work ahead of it, in time slices: after thousands
   * of changes that work would hold the event loop. Objects that arrive
   * meanwhile are resolved here too, or by desiredState().
   */
  async resolveChanges(): Promise<void> {
    const turn = timeSlices();
    for (const id of this.changedServices) {
      await turn();
      this.changedServices.delete(id);
      this.resolve(id);
    }
    for (const id of this.reownedServices) {
      await turn();
      this.reownedServices.delete(id);
      this.publish(id);
    }
  }

  /** The healthCheckNodePorts to serve, by port (externalTrafficPolicy: Local load balancers). */
  healthChecks(): ReadonlyMap<number, ServiceHealth> {
    this.desiredState();
    const byPort = new Map<number, ServiceHealth>();
    for (const { port, health } of this.healthByService.values()) if (!byPort.has(port)) byPort.set(port, health);
    return byPort;
  }

  private upsertService(service: Service): boolean {
    const id = `${service.namespace}/${service.name}`;
    const old = this.services.get(id);
    if (old !== undefined && isDeepStrictEqual(old, service)) return false;
    this.changes.markService(service.namespace, service.name);
    this.services.set(id, service);
    this.changedServices.add(id);
    return true;
  }

  private deleteService(id: string): boolean {
    const old = this.services.get(id);
    if (old === undefined) return false;
    this.changes.markService(old.namespace, old.name);
    this.services.delete(id);
    this.changedServices.add(id);
    return true;
  }

  private upsertSlice(slice: EndpointSlice): boolean {
    const id = `${slice.namespace}/${slice.name}`;
    const old = this.slices.get(id);
    if (old !== undefined && isDeepStrictEqual(old, slice)) return false;
    // The service label may have changed: both the old and the new service are affected.
    if (old !== undefined) this.removeSlice(id, old);
    this.changes.markEndpoints(slice.namespace, slice.serviceName);
    const serviceId = `${slice.namespace}/${slice.serviceName}`;
    this.slices.set(id, slice);
    let group = this.slicesByService.get(serviceId);
    if (group === undefined) this.slicesByService.set(serviceId, (group = new Set()));
    group.add(slice);
    this.changedServices.add(serviceId);
    return true;
  }

  private deleteSlice(id: string): boolean {
    const old = this.slices.get(id);
    if (old === undefined) return false;
    this.removeSlice(id, old);
    return true;
  }

  private removeSlice(id: string, slice: EndpointSlice): void {
    this.changes.markEndpoints(slice.namespace, slice.serviceName);
    const serviceId = `${slice.namespace}/${slice.serviceName}`;
    const group = this.slicesByService.get(serviceId)!;
    group.delete(slice);
    if (group.size === 0) this.slicesByService.delete(serviceId);
    this.slices.delete(id);
    this.changedServices.add(serviceId);
  }

  /** Only this node's Node object matters: its addresses (NodePorts) and zone (topology). */
  private upsertNode(node: Node): boolean {
    if (node.name !== this.opts.nodeName) return false;
    if (this.node !== undefined && isDeepStrictEqual(this.node, node)) return false;
    this.node = node;
    this.nodeChanged();
    return true;
  }

  private nodeChanged(): void {
    const context = this.computeNodeContext();
    if (isDeepStrictEqual(context, this.nodeContext)) return;
    this.nodeContext = context;
    this.opts.log.info({ node: this.opts.nodeName, zone: context.zone, nodePortIPs: context.nodePortIPs }, 'node addresses or zone changed');
    for (const service of this.services.values()) {
      this.changes.markService(service.namespace, service.name);
      this.changedServices.add(`${service.namespace}/${service.name}`);
    }
  }

  private computeNodeContext(): NodeContext {
    const node = this.node;
    const addresses = node?.addresses ?? [];
    // kube-proxy's node IPs: InternalIPs before ExternalIPs, the first of each family.
    const candidates = [...addresses.filter((a) => a.type === 'InternalIP'), ...addresses.filter((a) => a.type === 'ExternalIP')].map((a) => a.address);
    const first = (family: IPFamily): string | null => candidates.find((ip) => ipFamily(ip) === family) ?? null;
    const primaryIP = { IPv4: first('IPv4'), IPv6: first('IPv6') };
    const nodePortIPs: string[] = [];
    const choice = this.opts.nodePortAddresses;
    if (choice === 'primary') nodePortIPs.push(...[primaryIP.IPv4, primaryIP.IPv6].filter((ip) => ip !== null));
    else {
      for (const ip of new Set(candidates)) if (choice.some((c) => cidrContains(c, ip))) nodePortIPs.push(ip);
      if (this.opts.localhostNodePorts && choice.some((c) => cidrContains(c, LOOPBACK_IPV4))) nodePortIPs.push(LOOPBACK_IPV4);
    }
    return { nodeName: this.opts.nodeName, zone: node?.zone ?? '', nodePortIPs, primaryIP };
  }

  /** The node of each endpoint address of a service, as its EndpointSlices say; for inspect. */
  endpointNodes(namespace: string, name: string): Map<string, string> {
    const nodes = new Map<string, string>();
    for (const slice of this.slicesByService.get(`${namespace}/${name}`) ?? []) {
      for (const endpoint of slice.endpoints) {
        const address = endpoint.addresses[0];
        if (address !== undefined && endpoint.nodeName !== null) nodes.set(address, endpoint.nodeName);
      }
    }
    return nodes;
  }

  nodeView(): NodeView {
    return { nodePortIPs: this.nodeContext.nodePortIPs, primaryIP: this.nodeContext.primaryIP };
  }

  /** Resolves a service again and updates its claims; services sharing a claim are re-owned too. */
  private resolve(id: string): void {
    const service = this.services.get(id);
    const before = this.resolved.get(id);
    const after = service === undefined ? undefined : resolveService(service, this.slicesByService.get(id) ?? new Set(), this.nodeContext, this.opts);
    if (after === undefined) this.resolved.delete(id);
    else this.resolved.set(id, after);
    if (service !== undefined && after !== undefined) {
      for (const { portName, reason, refused } of after.skipped) {
        this.opts.log[refused ? 'warn' : 'debug']({ kind: 'Service', namespace: service.namespace, name: service.name, port: portName ?? undefined, reason }, 'not serving');
      }
      // Once while it lasts, not at every endpoint change.
      for (const reason of after.warnings.filter((w) => !before?.warnings.includes(w))) {
        this.opts.log.warn({ kind: 'Service', namespace: service.namespace, name: service.name, reason }, 'served otherwise than asked');
      }
    }
    const claimsBefore = new Set(before?.ports.flatMap((p) => p.frontends.map(frontendKey)) ?? []);
    const claimsAfter = new Set(after?.ports.flatMap((p) => p.frontends.map(frontendKey)) ?? []);
    for (const claim of new Set([...claimsBefore, ...claimsAfter])) {
      let set = this.claimants.get(claim);
      if (claimsAfter.has(claim)) {
        if (set === undefined) this.claimants.set(claim, (set = new Set()));
        set.add(id);
      } else set?.delete(id);
      for (const other of set ?? []) {
        if (other === id || this.changedServices.has(other) || this.reownedServices.has(other)) continue;
        const [namespace, name] = other.split('/') as [string, string];
        this.changes.markService(namespace, name);
        this.reownedServices.add(other);
      }
      if (set?.size === 0) this.claimants.delete(claim);
      if ((set?.size ?? 0) <= 1) this.loggedConflicts.delete(claim);
    }
    this.reownedServices.add(id);
  }

  /** Writes a service's port states into the state, without the frontends another service owns. */
  private publish(id: string): void {
    for (const key of this.stateKeysOf.get(id) ?? []) this.state.delete(key);
    this.stateKeysOf.delete(id);
    this.healthByService.delete(id);
    const resolved = this.resolved.get(id);
    if (resolved === undefined) return;
    const keys: string[] = [];
    for (const port of resolved.ports) {
      const frontends = port.frontends.filter((f) => this.owns(id, frontendKey(f)));
      if (frontends.length === 0) continue;
      this.state.set(port.key, frontends.length === port.frontends.length ? port : { ...port, frontends });
      keys.push(port.key);
    }
    this.stateKeysOf.set(id, keys);
    const service = this.services.get(id)!;
    if (resolved.health !== null) {
      this.healthByService.set(id, { port: resolved.health.port, health: { namespace: service.namespace, name: service.name, localEndpoints: resolved.health.localEndpoints } });
    }
  }

  /** Whether service `id` owns `claim`: the oldest claimant does (then the smallest namespace/name); others are refused once, in the log. */
  private owns(id: string, claim: string): boolean {
    const claimants = this.claimants.get(claim);
    if (claimants === undefined || claimants.size === 1) return true;
    const order = (a: string): [number, string] => [this.services.get(a)?.createdAt ?? Infinity, a];
    let owner = id;
    for (const other of claimants) {
      const [ta, na] = order(other);
      const [tb, nb] = order(owner);
      if (ta < tb || (ta === tb && na < nb)) owner = other;
    }
    if (owner === id) return true;
    let logged = this.loggedConflicts.get(claim);
    if (logged === undefined) this.loggedConflicts.set(claim, (logged = new Set()));
    if (!logged.has(`${owner}|${id}`)) {
      logged.add(`${owner}|${id}`);
      const [namespace, name] = id.split('/') as [string, string];
      this.opts.log.warn(
        { kind: 'Service', namespace, name, frontend: claim, owner, reason: `frontend ${claim} already belongs to the older Service ${owner}` },
        'refused a frontend another service owns',
      );
    }
    return false;
  }

  /** All declared port keys, even of services that produce no frontend, so nothing stale escapes a sync. */
  private portKeysOf(serviceId: string): string[] {
    const service = this.services.get(serviceId);
    return service === undefined ? [] : service.ports.map((p) => servicePortKey(service.namespace, service.name, p.name));
  }
}
