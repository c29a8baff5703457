// The proxy's view of the cluster and the one place that decides which
// endpoints receive traffic for every service port.
import { isIPv4 } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { compareDestinations, type DesiredState, type Destination, type ServicePortState } from '../backends/backend.js';
import { ChangeTracker } from './change-tracker.js';
import type { EndpointSlice, KubeObject, Node, ObjectKind, Service, ServicePort } from './objects.js';

/** Per-service IPVS scheduler, overriding --ipvs-scheduler (the ipvs backend validates the name). */
export const IPVS_SCHEDULER_ANNOTATION = 'kube-lb.io/ipvs-scheduler';

/** kube-proxy's service port name: "namespace/name:portName". */
export function servicePortKey(namespace: string, name: string, portName: string): string {
  return `${namespace}/${name}:${portName}`;
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
  private readonly nodes = new Map<string, Node>();

  /** Per-service result of the endpoint selection, recomputed when the service or its slices change. */
  private readonly portStates = new Map<string, ServicePortState[]>();
  /** What desiredState() returns: every service's port states, by key. */
  private readonly state = new Map<string, ServicePortState>();
  /** Services ("namespace/name") whose port states are out of date in `state`. */
  private readonly changedServices = new Set<string>();

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
        return this.nodes.delete(name);
    }
  }

  /**
   * Every service port to serve, by key. The map is the model's own, brought
   * up to date on each call by recomputing only the services that changed,
   * so a sync after one change costs one service, not all of them. Callers
   * must not modify it or its entries, nor keep it across calls.
   */
  desiredState(): DesiredState {
    for (const id of this.changedServices) {
      for (const old of this.portStates.get(id) ?? []) this.state.delete(old.key);
      this.portStates.delete(id);
      const service = this.services.get(id);
      if (service === undefined) continue;
      for (const portState of this.portStatesOf(id, service)) this.state.set(portState.key, portState);
    }
    this.changedServices.clear();
    return this.state;
  }

  private upsertService(service: Service): boolean {
    const id = `${service.namespace}/${service.name}`;
    const old = this.services.get(id);
    if (old !== undefined && isDeepStrictEqual(old, service)) return false;
    this.changes.markService(service.namespace, service.name);
    this.services.set(id, service);
    this.invalidate(id);
    return true;
  }

  private deleteService(id: string): boolean {
    const old = this.services.get(id);
    if (old === undefined) return false;
    this.changes.markService(old.namespace, old.name);
    this.services.delete(id);
    this.invalidate(id);
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
    this.invalidate(serviceId);
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
    this.invalidate(serviceId);
  }

  // Nothing is computed from nodes yet (topology-aware routing will be), so
  // node changes mark no service port.
  private upsertNode(node: Node): boolean {
    const old = this.nodes.get(node.name);
    if (old !== undefined && isDeepStrictEqual(old, node)) return false;
    this.nodes.set(node.name, node);
    return true;
  }

  private invalidate(serviceId: string): void {
    this.changedServices.add(serviceId);
  }

  /** All declared port keys, even of services that produce no frontend, so nothing stale escapes a sync. */
  private portKeysOf(serviceId: string): string[] {
    const service = this.services.get(serviceId);
    return service === undefined ? [] : service.ports.map((p) => servicePortKey(service.namespace, service.name, p.name));
  }

  private portStatesOf(id: string, service: Service): ServicePortState[] {
    let states = this.portStates.get(id);
    if (states === undefined) this.portStates.set(id, (states = this.computePortStates(service, this.slicesByService.get(id))));
    return states;
  }

  private computePortStates(service: Service, slices: ReadonlySet<EndpointSlice> = new Set()): ServicePortState[] {
    if (service.type === 'ExternalName' || service.headless) return [];
    // Only IPv4 is served for now; a dual-stack service is served on its IPv4 ClusterIP.
    const clusterIP = service.clusterIPs.find((ip) => isIPv4(ip));
    if (clusterIP === undefined) return [];
    const ipvsScheduler = service.annotations[IPVS_SCHEDULER_ANNOTATION];
    return service.ports.map((port) => ({
      key: servicePortKey(service.namespace, service.name, port.name),
      namespace: service.namespace,
      name: service.name,
      portName: port.name,
      frontend: { ip: clusterIP, port: port.port, protocol: port.protocol },
      destinations: selectDestinations(slices, port),
      ...(ipvsScheduler !== undefined && { ipvsScheduler }),
    }));
  }
}

/**
 * The endpoints of `slices` that receive traffic for `port`: slice ports
 * match by name and protocol and give the destination port; an endpoint is
 * used when it is ready.
 */
function selectDestinations(slices: ReadonlySet<EndpointSlice>, port: ServicePort): Destination[] {
  const byAddress = new Map<string, Destination>();
  for (const slice of slices) {
    for (const slicePort of slice.ports) {
      if (slicePort.name !== port.name || slicePort.protocol !== port.protocol || slicePort.port === null) continue;
      for (const endpoint of slice.endpoints) {
        if (!endpoint.ready) continue;
        // An endpoint's addresses are fungible; like kube-proxy, use the first.
        const ip = endpoint.addresses[0]!;
        byAddress.set(`${ip}:${slicePort.port}`, { ip, port: slicePort.port });
      }
    }
  }
  return [...byAddress.values()].sort(compareDestinations);
}
