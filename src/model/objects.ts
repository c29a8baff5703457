// Parses raw Kubernetes objects (YAML documents or API server JSON) into the
// typed objects the model works with. Everything the model relies on is
// checked here, so the model never sees a malformed object; defaults are
// applied as the API server would apply them.
import { isIPv4, isIPv6 } from 'node:net';
import type { IPFamily, Protocol } from './contract.js';
import { canonicalIp, parseCidr } from '../net/ip.js';

/** A decoded but unvalidated object: whatever a YAML document or the API returned. */
export type RawObject = Record<string, unknown>;

export type ObjectKind = 'Service' | 'EndpointSlice' | 'Node';

/** Identifies an object within its kind. Nodes are cluster-scoped: their namespace is ''. */
export interface ObjectRef {
  kind: ObjectKind;
  namespace: string;
  name: string;
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';
export type SessionAffinity = 'None' | 'ClientIP';
export type AddressType = 'IPv4' | 'IPv6' | 'FQDN';

export interface ServicePort {
  /** '' only when it is the service's single port. */
  name: string;
  protocol: Protocol;
  port: number;
  /** A port number, or the name of a container port (resolved by the EndpointSlice controller). */
  targetPort: number | string;
  nodePort: number | null;
}

export interface Service {
  kind: 'Service';
  namespace: string;
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** metadata.creationTimestamp in ms since the epoch; the older of two services claiming one frontend keeps it. Infinity when absent. */
  createdAt: number;
  type: ServiceType;
  /** clusterIP "None": DNS only, nothing to proxy. */
  headless: boolean;
  /** Allocated cluster IPs (IPv4 or IPv6), primary first; empty when headless or not allocated. */
  clusterIPs: string[];
  ports: ServicePort[];
  sessionAffinity: SessionAffinity;
  /** Stickiness timeout for ClientIP affinity; null without affinity. */
  sessionAffinityTimeoutSeconds: number | null;
  internalTrafficPolicy: TrafficPolicy;
  externalTrafficPolicy: TrafficPolicy;
  externalIPs: string[];
  /** status.loadBalancer.ingress[].ip, without those whose ipMode is Proxy (the load balancer proxies, nothing arrives for them). */
  loadBalancerIPs: string[];
  /** spec.loadBalancerSourceRanges (or the older annotation), as CIDRs; empty allows every source. */
  loadBalancerSourceRanges: string[];
  healthCheckNodePort: number | null;
  /** spec.trafficDistribution, e.g. PreferClose; null when unset. */
  trafficDistribution: string | null;
}

export interface EndpointPort {
  name: string;
  /** null: the slice does not restrict the port; kube-proxy ignores such ports. */
  port: number | null;
  protocol: Protocol;
}

export interface Endpoint {
  /** Fungible addresses of the slice's address type; consumers use the first one. */
  addresses: string[];
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string | null;
  zone: string | null;
  hints: { forZones: string[]; forNodes: string[] } | null;
}

export interface EndpointSlice {
  kind: 'EndpointSlice';
  namespace: string;
  name: string;
  /** From the kubernetes.io/service-name label. */
  serviceName: string;
  addressType: AddressType;
  /** Why this slice contributes nothing although it is valid (its endpoints are then dropped). */
  ignoredReason: string | null;
  ports: EndpointPort[];
  endpoints: Endpoint[];
}

export interface NodeAddress {
  type: string;
  address: string;
}

export interface Node {
  kind: 'Node';
  namespace: '';
  name: string;
  labels: Record<string, string>;
  /** From the topology.kubernetes.io/zone label. */
  zone: string | null;
  addresses: NodeAddress[];
  /** spec.podCIDRs, or spec.podCIDR alone: the pods' addresses on this node. */
  podCIDRs: string[];
}

export type KubeObject = Service | EndpointSlice | Node;

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const SOURCE_RANGES_ANNOTATION = 'service.beta.kubernetes.io/load-balancer-source-ranges';
const ZONE_LABEL = 'topology.kubernetes.io/zone';

// Limits the API server enforces; files must not smuggle in more.
const MAX_ENDPOINTS_PER_SLICE = 1000;
const MAX_PORTS_PER_SLICE = 100;
const MAX_ADDRESSES_PER_ENDPOINT = 100;

const API_VERSIONS: Record<ObjectKind, string> = {
  Service: 'v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  Node: 'v1',
};

export class InvalidObjectError extends Error {
  override readonly name = 'InvalidObjectError';

  constructor(
    readonly object: { kind: string; namespace: string; name: string },
    readonly reason: string,
  ) {
    super(`${describeObject(object)}: ${reason}`);
  }
}

/** "Service default/web", "Node worker-1"; odd or overlong names are quoted and cut so they cannot forge or flood log text. */
function describeObject(object: { kind: string; namespace: string; name: string }): string {
  const display = (s: string) => (/^[A-Za-z0-9._-]{1,253}$/.test(s) ? s : show(s));
  const name = object.name === '' ? '<unnamed>' : display(object.name);
  const kind = display(object.kind);
  return object.namespace === '' ? `${kind} ${name}` : `${kind} ${display(object.namespace)}/${name}`;
}

/** The supported kind of a raw object, or null for kinds and API versions the proxy does not use. */
export function supportedKind(raw: unknown): ObjectKind | null {
  if (!isRecord(raw)) return null;
  const kind = Object.keys(API_VERSIONS).find((k) => k === raw.kind) as ObjectKind | undefined;
  return kind !== undefined && raw.apiVersion === API_VERSIONS[kind] ? kind : null;
}

/** Reads kind, namespace (defaulted to "default") and name; throws InvalidObjectError if they are unusable. */
export function objectRef(raw: unknown): ObjectRef {
  const object = isRecord(raw) ? raw : {};
  const metadata = object.metadata;
  const meta = isRecord(metadata) ? metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : '';
  const kind = supportedKind(raw);
  if (kind === null) {
    const described = { kind: typeof object.kind === 'string' ? object.kind : 'object', namespace: '', name };
    const expected = Object.entries(API_VERSIONS).map(([k, version]) => `${version} ${k}`);
    throw new InvalidObjectError(described, `unsupported apiVersion ${show(object.apiVersion)} and kind ${show(object.kind)} (expected ${expected.join(', ')})`);
  }
  const namespace = kind === 'Node' ? '' : typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : 'default';
  const ref = { kind, namespace, name };
  const fields = new Fields(ref);
  if (!isRecord(metadata)) fields.fail('metadata', 'required');
  fields.requiredString(meta.name, 'metadata.name');
  if (kind !== 'Node') fields.optionalString(meta.namespace, 'metadata.namespace');
  return ref;
}

/** Validates a raw Service, EndpointSlice or Node; throws InvalidObjectError naming the object and the reason. */
export function parseObject(raw: unknown): KubeObject {
  const ref = objectRef(raw);
  const fields = new Fields(ref);
  const object = raw as RawObject;
  const metadata = object.metadata as RawObject;
  if (ref.namespace !== '') fields.name(ref.namespace, 'metadata.namespace', DNS1123_LABEL);
  switch (ref.kind) {
    case 'Service':
      fields.name(ref.name, 'metadata.name', DNS1035_LABEL);
      return parseService(ref, metadata, fields.object(object.spec, 'spec'), fields.object(object.status, 'status'), fields);
    case 'EndpointSlice':
      fields.name(ref.name, 'metadata.name', DNS1123_SUBDOMAIN);
      return parseEndpointSlice(ref, metadata, object, fields);
    case 'Node':
      fields.name(ref.name, 'metadata.name', DNS1123_SUBDOMAIN);
      return parseNode(ref, metadata, fields.object(object.spec, 'spec'), fields.object(object.status, 'status'), fields);
  }
}

function parseService(ref: ObjectRef, metadata: RawObject, spec: RawObject, status: RawObject, fields: Fields): Service {
  const type = fields.oneOf(spec.type, 'spec.type', ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'], 'ClusterIP');
  const { headless, clusterIPs } = parseClusterIPs(spec, fields);
  const ports = fields.list(spec.ports, 'spec.ports').map((raw, i) => parseServicePort(raw, `spec.ports[${i}]`, fields));
  if (ports.length === 0 && !headless && type !== 'ExternalName') fields.fail('spec.ports', 'required: at least one port');
  checkServicePortsDistinct(ports, fields);

  const sessionAffinity = fields.oneOf(spec.sessionAffinity, 'spec.sessionAffinity', ['None', 'ClientIP'], 'None');
  const clientIP = fields.object(fields.object(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig').clientIP, 'spec.sessionAffinityConfig.clientIP');
  const timeoutPath = 'spec.sessionAffinityConfig.clientIP.timeoutSeconds';
  const timeout = clientIP.timeoutSeconds === undefined ? 10800 : fields.integer(clientIP.timeoutSeconds, timeoutPath, 1, 86400);

  const loadBalancer = fields.object(status.loadBalancer, 'status.loadBalancer');
  const loadBalancerIPs = fields.list(loadBalancer.ingress, 'status.loadBalancer.ingress').flatMap((raw, i) => {
    const ingress = fields.object(raw, `status.loadBalancer.ingress[${i}]`);
    const ipMode = fields.oneOf(ingress.ipMode, `status.loadBalancer.ingress[${i}].ipMode`, ['VIP', 'Proxy'], 'VIP');
    return ingress.ip === undefined || ingress.ip === '' || ipMode === 'Proxy' ? [] : [fields.ip(ingress.ip, `status.loadBalancer.ingress[${i}].ip`)];
  });
  const annotations = fields.stringMap(metadata.annotations, 'metadata.annotations');
  const rangesField = fields.list(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges').map((r, i) => fields.cidr(r, `spec.loadBalancerSourceRanges[${i}]`));
  const rangesAnnotation = (annotations[SOURCE_RANGES_ANNOTATION] ?? '').split(',').map((r) => r.trim()).filter((r) => r !== '');
  const loadBalancerSourceRanges =
    rangesField.length > 0 ? rangesField : rangesAnnotation.map((r) => fields.cidr(r, `metadata.annotations[${show(SOURCE_RANGES_ANNOTATION)}]`));
  const created = fields.optionalString(metadata.creationTimestamp, 'metadata.creationTimestamp');
  const createdAt = created === undefined ? Infinity : Date.parse(created);
  if (Number.isNaN(createdAt)) fields.fail('metadata.creationTimestamp', `not a timestamp: ${show(created)}`);

  return {
    kind: 'Service',
    namespace: ref.namespace,
    name: ref.name,
    labels: fields.stringMap(metadata.labels, 'metadata.labels'),
    annotations,
    createdAt,
    type,
    headless,
    clusterIPs,
    ports,
    sessionAffinity,
    sessionAffinityTimeoutSeconds: sessionAffinity === 'ClientIP' ? timeout : null,
    internalTrafficPolicy: fields.oneOf(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy', ['Cluster', 'Local'], 'Cluster'),
    externalTrafficPolicy: fields.oneOf(spec.externalTrafficPolicy, 'spec.externalTrafficPolicy', ['Cluster', 'Local'], 'Cluster'),
    externalIPs: fields.list(spec.externalIPs, 'spec.externalIPs').map((ip, i) => fields.ip(ip, `spec.externalIPs[${i}]`)),
    loadBalancerIPs,
    loadBalancerSourceRanges,
    healthCheckNodePort: spec.healthCheckNodePort === undefined || spec.healthCheckNodePort === null ? null : fields.port(spec.healthCheckNodePort, 'spec.healthCheckNodePort'),
    trafficDistribution: fields.optionalString(spec.trafficDistribution, 'spec.trafficDistribution') ?? null,
  };
}

/** clusterIPs is authoritative when present; clusterIP must then equal its first entry, as the API enforces. */
function parseClusterIPs(spec: RawObject, fields: Fields): { headless: boolean; clusterIPs: string[] } {
  const single = fields.optionalString(spec.clusterIP, 'spec.clusterIP') ?? '';
  const listed = fields.list(spec.clusterIPs, 'spec.clusterIPs', 2).map((v, i) => fields.requiredString(v, `spec.clusterIPs[${i}]`));
  if (single !== '' && listed.length > 0 && listed[0] !== single) {
    fields.fail('spec.clusterIPs', `first entry ${show(listed[0])} must equal spec.clusterIP ${show(single)}`);
  }
  if (listed.length > 0) {
    if (listed.includes('None')) {
      if (listed.length > 1) fields.fail('spec.clusterIPs', '"None" must be the only entry');
      return { headless: true, clusterIPs: [] };
    }
    return { headless: false, clusterIPs: listed.map((ip, i) => fields.ip(ip, `spec.clusterIPs[${i}]`)) };
  }
  if (single === 'None') return { headless: true, clusterIPs: [] };
  return { headless: false, clusterIPs: single === '' ? [] : [fields.ip(single, 'spec.clusterIP')] };
}

function parseServicePort(raw: unknown, path: string, fields: Fields): ServicePort {
  const spec = fields.object(raw, path);
  const port = fields.port(spec.port, `${path}.port`);
  const name = fields.optionalString(spec.name, `${path}.name`) ?? '';
  if (name !== '') fields.name(name, `${path}.name`, DNS1123_LABEL);
  let targetPort: number | string = port;
  if (typeof spec.targetPort === 'string') targetPort = fields.name(spec.targetPort, `${path}.targetPort`, IANA_SVC_NAME);
  else if (spec.targetPort !== undefined) targetPort = fields.port(spec.targetPort, `${path}.targetPort`);
  return {
    name,
    protocol: fields.protocol(spec.protocol, `${path}.protocol`),
    port,
    targetPort,
    nodePort: spec.nodePort === undefined ? null : fields.port(spec.nodePort, `${path}.nodePort`),
  };
}

/** Port names key the service ports and (port, protocol) picks the frontend: both must be unique. */
function checkServicePortsDistinct(ports: ServicePort[], fields: Fields): void {
  const names = new Set<string>();
  const frontends = new Set<string>();
  ports.forEach((p, i) => {
    if (ports.length > 1 && p.name === '') fields.fail(`spec.ports[${i}].name`, 'required when the service has more than one port');
    if (names.has(p.name)) fields.fail(`spec.ports[${i}].name`, `duplicate port name ${show(p.name)}`);
    const frontend = `${p.port}/${p.protocol}`;
    if (frontends.has(frontend)) fields.fail(`spec.ports[${i}]`, `duplicate port ${frontend}`);
    names.add(p.name);
    frontends.add(frontend);
  });
}

function parseEndpointSlice(ref: ObjectRef, metadata: RawObject, object: RawObject, fields: Fields): EndpointSlice {
  const labels = fields.stringMap(metadata.labels, 'metadata.labels');
  const labelPath = `metadata.labels[${show(SERVICE_NAME_LABEL)}]`;
  const serviceName = fields.name(fields.requiredString(labels[SERVICE_NAME_LABEL], labelPath), labelPath, DNS1035_LABEL);
  const addressType = fields.oneOf(object.addressType, 'addressType', ['IPv4', 'IPv6', 'FQDN'], null);
  const ports = fields.list(object.ports, 'ports', MAX_PORTS_PER_SLICE).map((raw, i) => {
    const path = `ports[${i}]`;
    const port = fields.object(raw, path);
    const name = fields.optionalString(port.name, `${path}.name`) ?? '';
    if (name !== '') fields.name(name, `${path}.name`, DNS1123_LABEL);
    return {
      name,
      port: port.port === undefined || port.port === null ? null : fields.port(port.port, `${path}.port`),
      protocol: fields.protocol(port.protocol, `${path}.protocol`),
    };
  });
  const rawEndpoints = fields.list(object.endpoints, 'endpoints', MAX_ENDPOINTS_PER_SLICE);
  const ignoredReason = addressType === 'FQDN' ? 'addressType FQDN is not supported (IPv4 and IPv6 only), as in kube-proxy' : null;
  return {
    kind: 'EndpointSlice',
    namespace: ref.namespace,
    name: ref.name,
    serviceName,
    addressType,
    ignoredReason,
    ports,
    endpoints: addressType === 'FQDN' ? [] : rawEndpoints.map((raw, i) => parseEndpoint(raw, addressType, `endpoints[${i}]`, fields)),
  };
}

function parseEndpoint(raw: unknown, family: IPFamily, path: string, fields: Fields): Endpoint {
  const endpoint = fields.object(raw, path);
  const addresses = fields.list(endpoint.addresses, `${path}.addresses`, MAX_ADDRESSES_PER_ENDPOINT);
  if (addresses.length === 0) fields.fail(`${path}.addresses`, 'required: at least one address');
  const conditions = fields.object(endpoint.conditions, `${path}.conditions`);
  // API semantics of absent conditions: ready and serving mean true, terminating means false.
  const ready = fields.optionalBoolean(conditions.ready, `${path}.conditions.ready`) ?? true;
  const hints = endpoint.hints === undefined || endpoint.hints === null ? null : fields.object(endpoint.hints, `${path}.hints`);
  const hintNames = (key: 'forZones' | 'forNodes') =>
    fields.list(hints?.[key], `${path}.hints.${key}`).map((h, i) => fields.requiredString(fields.object(h, `${path}.hints.${key}[${i}]`).name, `${path}.hints.${key}[${i}].name`));
  return {
    addresses: addresses.map((a, i) => fields.address(a, family, `${path}.addresses[${i}]`)),
    ready,
    serving: fields.optionalBoolean(conditions.serving, `${path}.conditions.serving`) ?? true,
    terminating: fields.optionalBoolean(conditions.terminating, `${path}.conditions.terminating`) ?? false,
    nodeName: fields.optionalString(endpoint.nodeName, `${path}.nodeName`) ?? null,
    zone: fields.optionalString(endpoint.zone, `${path}.zone`) ?? null,
    hints: hints === null ? null : { forZones: hintNames('forZones'), forNodes: hintNames('forNodes') },
  };
}

function parseNode(ref: ObjectRef, metadata: RawObject, spec: RawObject, status: RawObject, fields: Fields): Node {
  const labels = fields.stringMap(metadata.labels, 'metadata.labels');
  const addresses = fields.list(status.addresses, 'status.addresses').map((raw, i) => {
    const path = `status.addresses[${i}]`;
    const entry = fields.object(raw, path);
    const type = fields.requiredString(entry.type, `${path}.type`);
    const address = fields.requiredString(entry.address, `${path}.address`);
    // Only the IP types must hold an IP; Hostname and the DNS types hold names.
    return { type, address: type.endsWith('IP') ? fields.ip(address, `${path}.address`) : address };
  });
  const podCIDRs = fields.list(spec.podCIDRs, 'spec.podCIDRs').map((c, i) => fields.cidr(c, `spec.podCIDRs[${i}]`));
  const podCIDR = fields.optionalString(spec.podCIDR, 'spec.podCIDR');
  if (podCIDRs.length === 0 && podCIDR) podCIDRs.push(fields.cidr(podCIDR, 'spec.podCIDR'));
  return { kind: 'Node', namespace: '', name: ref.name, labels, zone: labels[ZONE_LABEL] ?? null, addresses, podCIDRs };
}

interface NameRule {
  pattern: RegExp;
  maxLength: number;
  description: string;
}

const DNS1123_LABEL: NameRule = {
  pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
  maxLength: 63,
  description: 'a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit)',
};
const DNS1035_LABEL: NameRule = {
  pattern: /^[a-z]([-a-z0-9]*[a-z0-9])?$/,
  maxLength: 63,
  description: 'a DNS-1035 label (lowercase letters, digits and "-", starting with a letter, ending with a letter or digit)',
};
const DNS1123_SUBDOMAIN: NameRule = {
  pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
  maxLength: 253,
  description: 'a DNS-1123 subdomain (dot-separated DNS-1123 labels)',
};
const IANA_SVC_NAME: NameRule = {
  pattern: /^(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
  maxLength: 15,
  description: 'an IANA service name (lowercase letters, digits and single "-", at least one letter)',
};

/** Typed field readers that fail with the object's name, the field path and what was wrong. */
class Fields {
  constructor(private readonly ref: ObjectRef) {}

  fail(path: string, problem: string): never {
    throw new InvalidObjectError(this.ref, `${path}: ${problem}`);
  }

  /** An optional nested object; absent reads as {} so callers can chain. */
  object(value: unknown, path: string): RawObject {
    if (value === undefined || value === null) return {};
    if (!isRecord(value)) this.fail(path, `must be an object, got ${show(value)}`);
    return value;
  }

  /** An optional list; absent reads as []. */
  list(value: unknown, path: string, maxItems = Infinity): unknown[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) this.fail(path, `must be a list, got ${show(value)}`);
    if (value.length > maxItems) this.fail(path, `too many items: ${value.length} (at most ${maxItems})`);
    return value;
  }

  optionalString(value: unknown, path: string): string | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') this.fail(path, `must be a string, got ${show(value)}`);
    return value;
  }

  requiredString(value: unknown, path: string): string {
    const s = this.optionalString(value, path);
    if (s === undefined || s === '') this.fail(path, 'required');
    return s;
  }

  optionalBoolean(value: unknown, path: string): boolean | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') this.fail(path, `must be true or false, got ${show(value)}`);
    return value;
  }

  integer(value: unknown, path: string, min: number, max: number): number {
    if (value === undefined || value === null) this.fail(path, 'required');
    if (typeof value !== 'number' || !Number.isInteger(value)) this.fail(path, `must be an integer, got ${show(value)}`);
    if (value < min || value > max) this.fail(path, `${value} is out of range ${min}-${max}`);
    return value;
  }

  port(value: unknown, path: string): number {
    return this.integer(value, path, 1, 65535);
  }

  /** A value from `allowed`; absent reads as `fallback`, or is an error when there is none. */
  oneOf<const T extends string>(value: unknown, path: string, allowed: readonly T[], fallback: T | null): T {
    if (value === undefined || value === null || value === '') {
      if (fallback === null) this.fail(path, `required: one of ${allowed.join(', ')}`);
      return fallback;
    }
    if (!allowed.includes(value as T)) this.fail(path, `must be one of ${allowed.join(', ')}, got ${show(value)}`);
    return value as T;
  }

  protocol(value: unknown, path: string): Protocol {
    return this.oneOf(value, path, ['TCP', 'UDP', 'SCTP'], 'TCP');
  }

  /** An address of either family, in its canonical spelling (canonicalIp): the model compares addresses as text. */
  ip(value: unknown, path: string): string {
    if (typeof value !== 'string' || !(isIPv4(value) || isIPv6(value))) this.fail(path, `not an IP address: ${show(value)}`);
    return canonicalIp(value);
  }

  /** "address/prefix", as the API server validates CIDR fields. */
  cidr(value: unknown, path: string): string {
    if (typeof value !== 'string') this.fail(path, `not a CIDR: ${show(value)}`);
    try {
      parseCidr(value.trim());
    } catch {
      this.fail(path, `not a CIDR such as 10.0.0.0/8: ${show(value)}`);
    }
    return value.trim();
  }

  /** Dotted-quad without leading zeros (which older parsers read as octal). */
  /** An address of the family, as an EndpointSlice's addressType requires. */
  address(value: unknown, family: IPFamily, path: string): string {
    if (typeof value !== 'string' || !(family === 'IPv4' ? isIPv4(value) : isIPv6(value))) this.fail(path, `not an ${family} address: ${show(value)}`);
    return canonicalIp(value);
  }

  name(value: string, path: string, rule: NameRule): string {
    if (value.length > rule.maxLength || !rule.pattern.test(value)) {
      this.fail(path, `${show(value)} is not ${rule.description}, at most ${rule.maxLength} characters`);
    }
    return value;
  }

  stringMap(value: unknown, path: string): Record<string, string> {
    const map = this.object(value, path);
    for (const [key, v] of Object.entries(map)) {
      if (typeof v !== 'string') this.fail(`${path}[${show(key)}]`, `must be a string, got ${show(v)}`);
    }
    return { ...(map as Record<string, string>) };
  }
}

export function isRecord(value: unknown): value is RawObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A value for an error message: JSON, cut short so hostile input cannot flood the log. */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
