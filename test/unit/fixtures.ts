// Builders for raw Kubernetes objects as they appear in manifests, and a
// logger that keeps its lines for assertions. Shared by the unit tests.
import { pino } from 'pino';
import type { Logger } from '../../src/log.js';
import type { RawObject } from '../../src/model/objects.js';
import { type ModelOptions, ProxyModel } from '../../src/model/model.js';

export interface RawPort {
  name?: string;
  port: number;
  protocol?: string;
  targetPort?: number | string;
  nodePort?: number;
}

export function rawService(name: string, spec: RawObject & { ports?: RawPort[] } = {}, namespace = 'default'): RawObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }], ...spec },
  };
}

export interface RawEndpoint {
  addresses: string[];
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  nodeName?: string;
  zone?: string;
  hints?: { forZones?: { name: string }[]; forNodes?: { name: string }[] };
}

export function rawSlice(
  name: string,
  serviceName: string,
  ports: Array<{ name?: string; port?: number; protocol?: string }>,
  endpoints: RawEndpoint[],
  namespace = 'default',
): RawObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    ports,
    endpoints,
  };
}

export function readyEndpoint(ip: string): RawEndpoint {
  return { addresses: [ip], conditions: { ready: true } };
}

export function rawNode(name: string, zone: string, internalIP: string): RawObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'topology.kubernetes.io/zone': zone } },
    status: { addresses: [{ type: 'InternalIP', address: internalIP }, { type: 'Hostname', address: name }] },
  };
}

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A debug-level logger whose parsed JSON lines land in `lines`. */
export function captureLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

/** A model for node "node-a", as `kube-lb run` configures it by default, logging nowhere unless given a logger. */
export function testModel(options: Partial<ModelOptions> = {}): ProxyModel {
  return new ProxyModel({
    nodeName: 'node-a',
    nodePortAddresses: 'primary',
    localhostNodePorts: false,
    families: ['IPv4'],
    protocols: ['TCP', 'UDP'],
    deriveTopologyHints: false,
    serviceClusterIPRanges: [],
    clusterCidrs: [],
    lbAlgorithm: 'random',
    log: pino({ level: 'silent' }),
    ...options,
  });
}
