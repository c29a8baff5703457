// The deploy/ manifests: kubectl accepts them (client-side dry run against
// a discovery-only stand-in for a cluster), every field is one the
// Kubernetes API schema knows, and the RBAC rules are exactly the least
// privilege kube-lb needs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import { parseAllDocuments } from 'yaml';
import { compiledRoot } from '../lib/paths.js';
import { requireCommand } from '../lib/preconditions.js';

const exec = promisify(execFile);
type Json = Record<string, any>;

// The sources, not the compiled tree: deploy/ is not compiled.
const DEPLOY_DIR = path.resolve(compiledRoot, '..', 'deploy');

function loadManifests(): Json[] {
  return fs
    .readdirSync(DEPLOY_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(fs.readFileSync(path.join(DEPLOY_DIR, f), 'utf8')).map((d) => d.toJS() as Json));
}

/** Just enough API discovery for kubectl to map the manifests' kinds; every object GET is a 404, so apply plans creations. */
function discoveryServer(): http.Server {
  const resource = (name: string, kind: string, namespaced: boolean) => ({ name, singularName: kind.toLowerCase(), namespaced, kind, verbs: ['create', 'get', 'list', 'patch', 'update', 'watch'] });
  const groups: Record<string, Json[]> = {
    v1: [resource('serviceaccounts', 'ServiceAccount', true)],
    'apps/v1': [resource('daemonsets', 'DaemonSet', true)],
    'rbac.authorization.k8s.io/v1': [resource('clusterroles', 'ClusterRole', false), resource('clusterrolebindings', 'ClusterRoleBinding', false)],
  };
  const answers: Record<string, Json> = {
    '/version': { major: '1', minor: '32', gitVersion: 'v1.32.0' },
    '/api': { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] },
    '/apis': {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: ['apps/v1', 'rbac.authorization.k8s.io/v1'].map((gv) => ({ name: gv.split('/')[0], versions: [{ groupVersion: gv, version: 'v1' }], preferredVersion: { groupVersion: gv, version: 'v1' } })),
    },
  };
  for (const [groupVersion, resources] of Object.entries(groups)) {
    answers[groupVersion === 'v1' ? '/api/v1' : `/apis/${groupVersion}`] = { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources };
  }
  return http.createServer((req, res) => {
    const answer = answers[new URL(req.url ?? '/', 'http://localhost').pathname];
    res.writeHead(answer ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer ?? { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 }));
  });
}

describe('deploy/ manifests', () => {
  it('kubectl apply --dry-run=client accepts them', async () => {
    requireCommand('kubectl', 'install kubectl');
    const server = discoveryServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-kubectl-'));
    try {
      const kubeconfig = path.join(dir, 'kubeconfig');
      const { port } = server.address() as { port: number };
      fs.writeFileSync(kubeconfig, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: `http://127.0.0.1:${port}` } }], users: [{ name: 'u', user: {} }], contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }], 'current-context': 'c' }));
      // Schema validation needs the cluster's OpenAPI documents, which the stand-in does not have: the typed round trip below checks the fields.
      const { stdout } = await exec('kubectl', ['apply', '--dry-run=client', '--validate=false', '--cache-dir', path.join(dir, 'cache'), '-f', DEPLOY_DIR], { env: { ...process.env, KUBECONFIG: kubeconfig } });
      assert.deepEqual(stdout.trim().split('\n').sort(), [
        'clusterrole.rbac.authorization.k8s.io/kube-lb created (dry run)',
        'clusterrolebinding.rbac.authorization.k8s.io/kube-lb created (dry run)',
        'daemonset.apps/kube-lb created (dry run)',
        'serviceaccount/kube-lb created (dry run)',
      ]);
    } finally {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('every field is known to the Kubernetes API types (a typed round trip loses nothing)', () => {
    for (const manifest of loadManifests()) {
      const type = `V1${manifest.kind}`;
      const roundTrip = ObjectSerializer.serialize(ObjectSerializer.deserialize(manifest, type, ''), type, '');
      assert.deepEqual(JSON.parse(JSON.stringify(roundTrip)), manifest, `${manifest.kind} ${manifest.metadata.name} has fields the API does not know`);
    }
  });

  it('RBAC grants exactly get/list/watch on services, endpointslices and nodes', () => {
    const manifests = loadManifests();
    const role = manifests.find((m) => m.kind === 'ClusterRole')!;
    const grants = role.rules.flatMap((rule: Json) =>
      rule.apiGroups.flatMap((group: string) => rule.resources.flatMap((resource: string) => rule.verbs.map((verb: string) => `${group || 'core'}/${resource}:${verb}`))),
    );
    assert.deepEqual(grants.sort(), [
      'core/nodes:get',
      'core/nodes:list',
      'core/nodes:watch',
      'core/services:get',
      'core/services:list',
      'core/services:watch',
      'discovery.k8s.io/endpointslices:get',
      'discovery.k8s.io/endpointslices:list',
      'discovery.k8s.io/endpointslices:watch',
    ]);
    for (const rule of role.rules) assert.deepEqual(Object.keys(rule).sort(), ['apiGroups', 'resources', 'verbs'], 'no resourceNames or nonResourceURLs');
    const binding = manifests.find((m) => m.kind === 'ClusterRoleBinding')!;
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    const account = manifests.find((m) => m.kind === 'ServiceAccount')!;
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: account.metadata.namespace }]);
  });

  it("the DaemonSet runs with the ebpf backend's capabilities only on the host network, everywhere, with bpffs, the host's cgroup v2 root and the xtables lock", () => {
    const manifests = loadManifests();
    const daemonSet = manifests.find((m) => m.kind === 'DaemonSet')!;
    const pod = daemonSet.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.equal(pod.serviceAccountName, manifests.find((m) => m.kind === 'ServiceAccount')!.metadata.name);
    const [container] = pod.containers;
    // Measured by test/image (docs/image.md).
    assert.deepEqual(container.securityContext, { privileged: false, capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'SYS_ADMIN'] } });
    const hostPathOf = (mountPath: string) => {
      const mount = container.volumeMounts.find((m: Json) => m.mountPath === mountPath);
      assert.ok(mount, `nothing mounted on ${mountPath}`);
      return pod.volumes.find((v: Json) => v.name === mount.name).hostPath.path;
    };
    assert.equal(hostPathOf('/sys/fs/bpf'), '/sys/fs/bpf');
    assert.equal(hostPathOf('/run/xtables.lock'), '/run/xtables.lock');
    const cgroupRoot = (container.args as string[]).find((a) => a.startsWith('--cgroup-root='));
    assert.ok(cgroupRoot, 'the socket programs attach to the cgroup v2 root named by --cgroup-root, not the container\'s own');
    assert.equal(hostPathOf(cgroupRoot.slice('--cgroup-root='.length)), '/sys/fs/cgroup');
    assert.equal(container.livenessProbe.httpGet.path, '/livez');
    assert.equal(container.livenessProbe.httpGet.port, 10256);
  });
});
