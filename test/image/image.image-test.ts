// The image `make image` builds (build/image/kube-lb.oci.tar), run as
// deploy/daemonset.yaml runs it: unpacked from its OCI layout, its
// entrypoint started with the DaemonSet's arguments, environment,
// capabilities and volumes in the sandbox node's network namespace
// (test/image/container plays the container runtime), reading the test API
// server through the in-cluster service account. A pod reaches a ClusterIP
// service through it. Run by `make test-image`, which builds the image first.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { cgroupRoot } from '../../src/backends/ebpf/sockets.js';
import { createTestPki, type TestPki } from '../apiserver/pki.js';
import { RemoteApiServer } from '../apiserver/remote.js';
import { endpointSliceObject, nodeObject, serviceObject, type ServiceSpec } from '../lib/manifests.js';
import { compiledRoot } from '../lib/paths.js';
import { requireCommand, requireRoot } from '../lib/preconditions.js';
import { NODES, NodeSandbox, waitForLine } from '../lib/sandbox.js';
import { slow } from '../lib/slowdown.js';
import { socketProgramsServing } from '../lib/socket-programs.js';

const exec = promisify(execFile);
type Json = Record<string, any>;

const REPO = path.resolve(compiledRoot, '..');
const ARCHIVE = path.join(REPO, 'build', 'image', 'kube-lb.oci.tar');
const CONTAINER = path.join(REPO, 'test', 'image', 'container');
/** The volumes test/image/container mounts, by their path in the container. */
const MOUNTED = ['/sys/fs/bpf', '/run/kube-lb/cgroupv2', '/run/xtables.lock', '/lib/modules'];
const NODE = NODES['node-a'];
const WEB: ServiceSpec = {
  name: 'web',
  clusterIP: '10.96.0.10',
  ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
  endpoints: [
    { ip: '10.244.0.11', ready: true },
    { ip: '10.244.128.11', ready: true, nodeName: 'node-b' },
  ],
};

function daemonSetContainer(): { image: string; container: Json } {
  const file = path.join(REPO, 'deploy', 'daemonset.yaml');
  const daemonSet = parseAllDocuments(fs.readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as Json)
    .find((m) => m.kind === 'DaemonSet');
  assert.ok(daemonSet, `${file} holds no DaemonSet`);
  const [container] = daemonSet.spec.template.spec.containers as Json[];
  return { image: container!.image, container: container! };
}

const blobPath = (layout: string, digest: string): string => path.join(layout, 'blobs', ...digest.split(':'));
const readJson = (file: string): Json => JSON.parse(fs.readFileSync(file, 'utf8')) as Json;

/** The image's config, after checking that the layout names one image, by the DaemonSet's image name, for every loader. */
function checkLayout(layout: string, imageName: string): Json {
  assert.deepEqual(readJson(path.join(layout, 'oci-layout')), { imageLayoutVersion: '1.0.0' });
  const index = readJson(path.join(layout, 'index.json'));
  assert.equal(index.manifests.length, 1, 'index.json holds one image');
  const [descriptor] = index.manifests as Json[];
  const fullName = `docker.io/library/${imageName}`;
  assert.deepEqual(descriptor!.annotations, { 'io.containerd.image.name': fullName, 'org.opencontainers.image.ref.name': fullName });
  const manifest = readJson(blobPath(layout, descriptor!.digest));
  for (const d of [descriptor!, manifest.config, ...manifest.layers] as Json[]) {
    const blob = fs.readFileSync(blobPath(layout, d.digest));
    assert.equal(blob.length, d.size, `size of ${d.digest}`);
    assert.equal(`sha256:${createHash('sha256').update(blob).digest('hex')}`, d.digest, `content of ${d.digest}`);
  }
  const config = readJson(blobPath(layout, manifest.config.digest));
  assert.equal(config.rootfs.diff_ids.length, manifest.layers.length);
  const rel = (digest: string): string => path.relative(layout, blobPath(layout, digest));
  assert.deepEqual(readJson(path.join(layout, 'manifest.json')), [
    { Config: rel(manifest.config.digest), RepoTags: [imageName], Layers: manifest.layers.map((l: Json) => rel(l.digest)) },
  ]);
  return config;
}

/** The DaemonSet's capabilities as setpriv's list; the container drops every other one. */
function capabilityList(container: Json): string {
  const context = container.securityContext as Json;
  assert.equal(context.privileged, false, 'the DaemonSet runs unprivileged, with capabilities');
  assert.deepEqual(context.capabilities.drop, ['ALL']);
  return ['-all', ...(context.capabilities.add as string[]).map((c) => `+${c.toLowerCase()}`)].join(',');
}

/**
 * The container's command line: the image's entrypoint with the DaemonSet's
 * arguments ($(VAR) expanded as the kubelet does), its environment, and the
 * sandbox's pod interface prefix in place of the cluster's CNI's.
 */
function containerCommand(config: Json, container: Json, vars: Record<string, string>, podPrefix: string): string[] {
  const expand = (s: string): string => s.replace(/\$\(([A-Z_]+)\)/g, (_, v: string) => vars[v] ?? assert.fail(`no value for $(${v})`));
  const args = (container.args as string[]).map(expand).map((a) => (a.startsWith('--pod-interface-name-prefix=') ? `--pod-interface-name-prefix=${podPrefix}` : a));
  const env = [...(config.config.Env as string[]), ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)];
  return ['env', '-i', '-C', config.config.WorkingDir, ...env, ...config.config.Entrypoint, ...args];
}

describe('the image, run as deploy/daemonset.yaml runs it', () => {
  let dir: string;
  let layout: string;
  let rootfs: string;
  const { image, container } = daemonSetContainer();

  before(async () => {
    requireRoot();
    requireCommand('bpftool', 'apt-get install bpftool');
    assert.ok(fs.existsSync(ARCHIVE), `${ARCHIVE} is missing: run make image (make test-image builds it)`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-image-'));
    layout = path.join(dir, 'layout');
    rootfs = path.join(dir, 'rootfs');
    fs.mkdirSync(layout);
    fs.mkdirSync(rootfs);
    await exec('tar', ['-xf', ARCHIVE, '-C', layout]);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is an OCI layout naming the DaemonSet\'s image for ctr import, podman load and docker load', () => {
    const config = checkLayout(layout, image);
    assert.deepEqual(config.config.Cmd, ['run']);
  });

  it("runs with the DaemonSet's arguments, capabilities and volumes on the sandbox node, and a pod reaches a ClusterIP service through it", async () => {
    const config = checkLayout(layout, image);
    const mountPaths = (container.volumeMounts as Json[]).map((m) => m.mountPath as string);
    assert.deepEqual(mountPaths.sort(), [...MOUNTED].sort(), 'test/image/container mounts what the DaemonSet mounts');
    const manifest = readJson(path.join(layout, 'index.json')).manifests[0];
    for (const layer of readJson(blobPath(layout, manifest.digest)).layers as Json[]) {
      await exec('tar', ['-xzf', blobPath(layout, layer.digest), '-C', rootfs, '--numeric-owner']);
    }
    const cgroup2 = cgroupRoot();
    assert.ok(cgroup2, 'no cgroup v2 file system is mounted (/proc/self/mounts)');
    const caps = capabilityList(container);

    const sandbox = await NodeSandbox.create();
    const bpffs = path.join(dir, 'bpffs');
    const secrets = path.join(dir, 'serviceaccount');
    let api: RemoteApiServer | undefined;
    let kubeLb: ChildProcess | undefined;
    let logs = '';
    let failure: Error | undefined;
    const inContainer = (command: string[]): ChildProcess =>
      spawn(CONTAINER, [rootfs, sandbox.nodeNs, caps, bpffs, cgroup2, secrets, '--', ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      fs.mkdirSync(bpffs);
      await exec('mount', ['-t', 'bpf', 'bpf', bpffs]);
      for (const [name, ip, node] of [['client', '10.244.0.2', 'node-a'], ['web-1', '10.244.0.11', 'node-a'], ['web-2', '10.244.128.11', 'node-b']] as const) {
        await sandbox.addPod(name, ip, node);
        if (name !== 'client') await sandbox.startServer(name, [8080]);
      }
      const pki: TestPki = await createTestPki(dir);
      api = await RemoteApiServer.start(sandbox, pki, dir);
      fs.mkdirSync(secrets);
      fs.writeFileSync(path.join(secrets, 'token'), pki.token);
      fs.writeFileSync(path.join(secrets, 'ca.crt'), pki.caCert);
      fs.writeFileSync(path.join(secrets, 'namespace'), 'kube-system');
      for (const node of Object.values(NODES)) await api.apply(nodeObject(node));
      await api.apply(serviceObject(WEB));
      await api.apply(endpointSliceObject(WEB));

      // What the kubelet sets: the downward API's NODE_NAME, and the API server's service address.
      const vars = { NODE_NAME: NODE.name, KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(api.port) };
      kubeLb = inContainer(containerCommand(config, container, vars, sandbox.interfacePrefix));
      kubeLb.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
      kubeLb.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
      await waitForLine(kubeLb, /"msg":"ready"/, slow(60_000), 'kube-lb in the image');

      // The DaemonSet's probes, as the kubelet sends them on the node.
      for (const probe of ['livenessProbe', 'readinessProbe']) {
        const { host, port, path: urlPath } = container[probe].httpGet as Json;
        await sandbox.curl('host', `http://${host}:${port}${urlPath}`);
      }
      const result = await sandbox.client('client', 'tcp', WEB.clusterIP, 80, 20);
      assert.equal(result.failures, 0, `connections to ${WEB.clusterIP}:80 failed: ${result.errors.join('; ')}; logs:\n${logs.slice(-3000)}`);
      assert.deepEqual(Object.keys(result.answers).sort(), ['web-1', 'web-2'], 'the local and the remote endpoint answer');
      assert.ok(fs.readdirSync(bpffs).includes('kube-lb'), "the maps are pinned in the host's bpffs, which outlives the container");
      assert.notDeepEqual(await socketProgramsServing(sandbox), [], "the socket programs are attached at the host's cgroup v2 root");

      // The kubelet's SIGTERM reaches kube-lb, PID 1 of the container's PID namespace.
      const [pid1] = fs.readFileSync(`/proc/${kubeLb.pid}/task/${kubeLb.pid}/children`, 'utf8').trim().split(' ');
      const exited = new Promise<number | null>((resolve) => kubeLb!.once('exit', resolve));
      process.kill(Number(pid1), 'SIGTERM');
      assert.equal(await exited, 0, `exit code on SIGTERM; logs:\n${logs.slice(-3000)}`);
    } catch (err) {
      failure = err as Error;
      throw err;
    } finally {
      if (kubeLb && kubeLb.exitCode === null) {
        const exited = new Promise((resolve) => kubeLb!.once('exit', resolve));
        kubeLb.kill('SIGKILL');
        await exited;
      }
      try {
        // The image's own cleanup, with the same capabilities: nothing of kube-lb's stays on the node.
        const cgroupRootArg = (container.args as string[]).filter((a) => a.startsWith('--cgroup-root='));
        const cleanup = inContainer(['env', '-i', ...(config.config.Env as string[]), ...config.config.Entrypoint, 'cleanup', '--backend=ebpf', ...cgroupRootArg]);
        let output = '';
        cleanup.stdout!.on('data', (d: Buffer) => (output += d.toString()));
        cleanup.stderr!.on('data', (d: Buffer) => (output += d.toString()));
        assert.equal(await new Promise((resolve) => cleanup.once('exit', resolve)), 0, `kube-lb cleanup in the image: ${output}`);
        assert.equal(fs.existsSync(path.join(bpffs, 'kube-lb')), false, 'pins remain after cleanup');
        assert.deepEqual(await socketProgramsServing(sandbox), [], 'socket programs remain attached after cleanup');
      } catch (err) {
        // The first failure is the one to read; this one follows from it or comes besides it.
        if (failure === undefined) throw err;
        failure.message += `\nand cleaning up: ${(err as Error).message}`;
      } finally {
        await exec('umount', [bpffs]).catch(() => undefined);
        await api?.stop();
        await sandbox.destroy();
      }
    }
  });
});
