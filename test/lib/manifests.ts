// Kubernetes objects shaped as `kubectl get -o yaml` prints them, for the
// sandboxes' manifest directories.
import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';

export interface PortSpec {
  name: string;
  port: number;
  targetPort: number;
  protocol: 'TCP' | 'UDP';
}

export interface EndpointSpec {
  ip: string;
  ready: boolean;
  /** Defaults to ready. */
  serving?: boolean;
  terminating?: boolean;
  nodeName?: string;
}

export interface ServiceSpec {
  namespace?: string;
  name: string;
  clusterIP: string;
  ports: PortSpec[];
  endpoints: EndpointSpec[];
  annotations?: Record<string, string>;
}

const uid = (seed: string): string => {
  let h = 0;
  for (const c of seed) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  const hex = h.toString(16).padStart(8, '0');
  return `${hex}-0000-4000-8000-${hex}${hex.slice(0, 4)}`;
};

export function serviceObject(s: ServiceSpec): Record<string, unknown> {
  const namespace = s.namespace ?? 'default';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      ...(s.annotations && { annotations: s.annotations }),
      creationTimestamp: '2026-11-01T10:00:00Z',
      labels: { app: s.name },
      name: s.name,
      namespace,
      resourceVersion: '1001',
      uid: uid(`svc/${namespace}/${s.name}`),
    },
    spec: {
      clusterIP: s.clusterIP,
      clusterIPs: [s.clusterIP],
      internalTrafficPolicy: 'Cluster',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      ports: s.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol, targetPort: p.targetPort })),
      selector: { app: s.name },
      sessionAffinity: 'None',
      type: 'ClusterIP',
    },
    status: { loadBalancer: {} },
  };
}

export function endpointSliceObject(s: ServiceSpec, sliceName = `${s.name}-abc12`): Record<string, unknown> {
  const namespace = s.namespace ?? 'default';
  return {
    addressType: 'IPv4',
    apiVersion: 'discovery.k8s.io/v1',
    endpoints: s.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready, serving: e.serving ?? e.ready, terminating: e.terminating ?? false },
      nodeName: e.nodeName ?? 'node1',
      targetRef: { kind: 'Pod', name: `pod-${e.ip.replaceAll('.', '-')}`, namespace, uid: uid(`pod/${e.ip}`) },
    })),
    kind: 'EndpointSlice',
    metadata: {
      creationTimestamp: '2026-11-01T10:00:01Z',
      generateName: `${s.name}-`,
      generation: 1,
      labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', 'kubernetes.io/service-name': s.name },
      name: sliceName,
      namespace,
      ownerReferences: [{ apiVersion: 'v1', blockOwnerDeletion: true, controller: true, kind: 'Service', name: s.name, uid: uid(`svc/${namespace}/${s.name}`) }],
      resourceVersion: '1002',
      uid: uid(`slice/${namespace}/${sliceName}`),
    },
    ports: s.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })),
  };
}

/** A `kind: List` document, as `kubectl get svc,endpointslices -o yaml` prints. */
export function listDocument(items: Record<string, unknown>[]): string {
  return stringify({ apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } });
}

/** Writes a file atomically (write then rename), as editors and kubectl tooling tend to. */
export function writeManifest(dir: string, file: string, services: ServiceSpec[]): void {
  const items = services.flatMap((s) => [serviceObject(s), endpointSliceObject(s)]);
  const tmp = path.join(dir, `.${file}.tmp`);
  fs.writeFileSync(tmp, listDocument(items));
  fs.renameSync(tmp, path.join(dir, file));
}
