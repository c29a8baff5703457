import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { ModelSink } from '../../src/model/ingest.js';
import type { ObjectKind, RawObject } from '../../src/model/objects.js';
import { ManifestsSource } from '../../src/sources/manifests.js';
import type { ObjectSink } from '../../src/model/ingest.js';
import { captureLogger, testModel } from './fixtures.js';

/** Exactly what `kubectl get svc,endpointslices -o yaml` prints for a small cluster. */
const KUBECTL_LIST = `apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    creationTimestamp: "2025-11-20T09:14:03Z"
    labels:
      component: apiserver
      provider: kubernetes
    name: kubernetes
    namespace: default
    resourceVersion: "198"
    uid: 0b2f7a8e-58d4-4a51-9d7e-3f0b1d2c4e5f
  spec:
    clusterIP: 10.96.0.1
    clusterIPs:
    - 10.96.0.1
    internalTrafficPolicy: Cluster
    ipFamilies:
    - IPv4
    ipFamilyPolicy: SingleStack
    ports:
    - name: https
      port: 443
      protocol: TCP
      targetPort: 6443
    sessionAffinity: None
    type: ClusterIP
  status:
    loadBalancer: {}
- apiVersion: v1
  kind: Service
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"name":"web","namespace":"default"},"spec":{"ports":[{"name":"http","port":80,"targetPort":"http"}],"selector":{"app":"web"}}}
    creationTimestamp: "2025-11-21T15:02:44Z"
    managedFields:
    - apiVersion: v1
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata:
          f:annotations:
            .: {}
            f:kubectl.kubernetes.io/last-applied-configuration: {}
        f:spec:
          f:internalTrafficPolicy: {}
          f:ports:
            .: {}
            k:{"port":80,"protocol":"TCP"}:
              .: {}
              f:name: {}
              f:port: {}
              f:protocol: {}
              f:targetPort: {}
          f:selector: {}
          f:sessionAffinity: {}
          f:type: {}
      manager: kubectl-client-side-apply
      operation: Update
      time: "2025-11-21T15:02:44Z"
    name: web
    namespace: default
    resourceVersion: "48211"
    uid: 6c1e2d3f-4a5b-4c6d-8e7f-901a2b3c4d5e
  spec:
    clusterIP: 10.96.120.15
    clusterIPs:
    - 10.96.120.15
    internalTrafficPolicy: Cluster
    ipFamilies:
    - IPv4
    ipFamilyPolicy: SingleStack
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: http
    selector:
      app: web
    sessionAffinity: None
    type: ClusterIP
  status:
    loadBalancer: {}
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - 10.244.1.7
    conditions:
      ready: true
      serving: true
      terminating: false
    nodeName: worker-1
    targetRef:
      kind: Pod
      name: web-7d4b9c8f6-x2x9k
      namespace: default
      uid: 1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b
  - addresses:
    - 10.244.2.4
    conditions:
      ready: false
      serving: false
      terminating: false
    nodeName: worker-2
    targetRef:
      kind: Pod
      name: web-7d4b9c8f6-q8w7e
      namespace: default
      uid: 2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d
  kind: EndpointSlice
  metadata:
    annotations:
      endpoints.kubernetes.io/last-change-trigger-time: "2025-11-21T15:03:10Z"
    creationTimestamp: "2025-11-21T15:02:44Z"
    generateName: web-
    generation: 3
    labels:
      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
      kubernetes.io/service-name: web
    managedFields:
    - apiVersion: discovery.k8s.io/v1
      fieldsType: FieldsV1
      fieldsV1:
        f:addressType: {}
        f:endpoints: {}
        f:metadata:
          f:generateName: {}
          f:labels:
            .: {}
            f:endpointslice.kubernetes.io/managed-by: {}
            f:kubernetes.io/service-name: {}
          f:ownerReferences:
            .: {}
            k:{"uid":"6c1e2d3f-4a5b-4c6d-8e7f-901a2b3c4d5e"}: {}
        f:ports: {}
      manager: kube-controller-manager
      operation: Update
      time: "2025-11-21T15:03:10Z"
    name: web-8kq2p
    namespace: default
    ownerReferences:
    - apiVersion: v1
      blockOwnerDeletion: true
      controller: true
      kind: Service
      name: web
      uid: 6c1e2d3f-4a5b-4c6d-8e7f-901a2b3c4d5e
    resourceVersion: "48290"
    uid: 9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a
  ports:
  - name: http
    port: 8080
    protocol: TCP
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - 172.18.0.2
    conditions:
      ready: true
  kind: EndpointSlice
  metadata:
    creationTimestamp: "2025-11-20T09:14:04Z"
    generation: 1
    labels:
      kubernetes.io/service-name: kubernetes
    name: kubernetes
    namespace: default
    resourceVersion: "200"
    uid: 3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7
  ports:
  - name: https
    port: 6443
    protocol: TCP
kind: List
metadata:
  resourceVersion: ""
`;

function service(name: string, clusterIP: string, namespace = 'default'): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  clusterIP: ${clusterIP}
  ports:
  - name: http
    port: 80
`;
}

type Event = { type: 'upsert'; id: string; object: RawObject; origin: string } | { type: 'delete'; id: string } | { type: 'synced' };

/** A sink that records what it is given, and can wait for it. */
class RecordingSink implements ObjectSink {
  readonly events: Event[] = [];

  upsert(object: RawObject, origin: string): void {
    const metadata = object.metadata as { name: string; namespace?: string };
    const namespace = object.kind === 'Node' ? '' : (metadata.namespace ?? 'default');
    this.events.push({ type: 'upsert', id: `${String(object.kind)}/${namespace}/${metadata.name}`, object, origin });
  }

  delete(kind: ObjectKind, namespace: string, name: string): void {
    this.events.push({ type: 'delete', id: `${kind}/${namespace}/${name}` });
  }

  synced(): void {
    this.events.push({ type: 'synced' });
  }

  /** Event summaries ("upsert Service/default/web") from index `from` on. */
  summary(from = 0, id?: string): string[] {
    return this.events
      .slice(from)
      .filter((e) => id === undefined || (e.type !== 'synced' && e.id === id))
      .map((e) => (e.type === 'synced' ? 'synced' : `${e.type} ${e.id}`));
  }

  /**
   * Waits until the events from `from` on contain all of `expected`. The
   * bound only ends a failing test: it is far above what a loaded 2-core
   * machine needs, since a passing test waits only as long as it takes.
   */
  async waitFor(expected: string[], from: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!expected.every((e) => this.summary(from).includes(e))) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${expected.join(', ')}; got ${this.summary(from).join(', ') || 'nothing'}`);
      await sleep(20);
    }
  }
}

function clusterIPOf(event: Event | undefined): string | undefined {
  return event?.type === 'upsert' ? (event.object.spec as { clusterIP: string }).clusterIP : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('ManifestsSource', () => {
  let directory: string;
  let source: ManifestsSource | null;

  beforeEach(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'kube-lb-manifests-'));
    source = null;
  });

  afterEach(async () => {
    await source?.stop();
    await rm(directory, { recursive: true, force: true });
  });

  async function start(sink: ObjectSink, rescanIntervalMs = 2000) {
    const logger = captureLogger();
    source = new ManifestsSource({ directory, log: logger.log, rescanIntervalMs });
    await source.start(sink);
    return logger;
  }

  test('reads multi-document files and kubectl List output, ignoring other kinds and files', async () => {
    await writeFile(
      path.join(directory, 'app.yaml'),
      `${service('api', '10.96.0.20')}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n---\n# only a comment\n---\n${service('db', '10.96.0.21', 'data')}`,
    );
    await writeFile(path.join(directory, 'cluster.yaml'), KUBECTL_LIST);
    await writeFile(
      path.join(directory, 'node.json'),
      JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'worker-1' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.11' }] } }),
    );
    await writeFile(path.join(directory, 'notes.txt'), service('ignored', '10.96.0.99'));
    await writeFile(path.join(directory, '.app.yaml.swp'), service('ignored', '10.96.0.99'));

    const sink = new RecordingSink();
    const { lines } = await start(sink);
    assert.deepEqual(sink.summary(), [
      'upsert Service/default/api',
      'upsert Service/data/db',
      'upsert Service/default/kubernetes',
      'upsert Service/default/web',
      'upsert EndpointSlice/default/web-8kq2p',
      'upsert EndpointSlice/default/kubernetes',
      'upsert Node//worker-1',
      'synced',
    ]);
    assert.equal((sink.events[0] as { origin: string }).origin, path.join(directory, 'app.yaml'));
    const ignored = lines.filter((l) => l.level >= 30);
    assert.deepEqual(
      ignored.map((l) => [l.level, l.file, l.objects]),
      [[30, path.join(directory, 'app.yaml'), ['apps/v1 Deployment default/api']]],
      'the Deployment is noted as ignored, and nothing else is complained about',
    );
  });

  test('kubectl List output feeds the model end to end', async () => {
    await writeFile(path.join(directory, 'cluster.yaml'), KUBECTL_LIST);
    const model = testModel();
    const logger = captureLogger();
    let synced = false;
    await start(new ModelSink(model, logger.log, { onChange: () => {}, onSynced: () => (synced = true) }));
    assert.ok(synced);
    assert.deepEqual(
      logger.lines.filter((l) => l.level >= 40),
      [],
      'nothing rejected',
    );
    const state = model.desiredState();
    const web = state.get('default/web:http')!;
    assert.deepEqual(
      { key: web.key, namespace: web.namespace, name: web.name, portName: web.portName, frontends: web.frontends.map((f) => ({ kind: f.kind, ip: f.ip, port: f.port, protocol: f.protocol })) },
      { key: 'default/web:http', namespace: 'default', name: 'web', portName: 'http', frontends: [{ kind: 'ClusterIP', ip: '10.96.120.15', port: 80, protocol: 'TCP' }] },
    );
    assert.deepEqual(web.frontends[0]!.internal.destinations, [{ ip: '10.244.1.7', port: 8080 }]);
    assert.deepEqual(state.get('default/kubernetes:https')?.frontends[0]!.internal.destinations, [{ ip: '172.18.0.2', port: 6443 }]);
  });

  test('added, edited, renamed and deleted files are noticed promptly', async () => {
    await writeFile(path.join(directory, 'a.yaml'), service('alpha', '10.96.0.30'));
    const sink = new RecordingSink();
    await start(sink);

    let mark = sink.events.length;
    await writeFile(path.join(directory, 'b.yaml'), `${service('beta', '10.96.0.31')}---\n${service('gamma', '10.96.0.32')}`);
    await sink.waitFor(['upsert Service/default/beta', 'upsert Service/default/gamma'], mark);

    mark = sink.events.length;
    await writeFile(path.join(directory, 'b.yaml'), `${service('beta', '10.96.0.41')}---\n${service('gamma', '10.96.0.32')}`);
    await sink.waitFor(['upsert Service/default/beta'], mark);
    assert.deepEqual(sink.summary(mark), ['upsert Service/default/beta'], 'only the changed object is delivered');
    const edited = sink.events.at(-1);
    assert.equal(edited?.type === 'upsert' && (edited.object.spec as { clusterIP: string }).clusterIP, '10.96.0.41');

    mark = sink.events.length;
    await rename(path.join(directory, 'b.yaml'), path.join(directory, 'c.yml'));
    await sleep(400);
    assert.deepEqual(sink.summary(mark), [], 'a rename changes no object');

    await unlink(path.join(directory, 'c.yml'));
    await sink.waitFor(['delete Service/default/beta', 'delete Service/default/gamma'], mark);
    assert.deepEqual(sink.summary(mark).sort(), ['delete Service/default/beta', 'delete Service/default/gamma']);
  });

  test('a file that stops parsing keeps its objects and does not stop other files', async () => {
    await writeFile(path.join(directory, 'a.yaml'), `${service('alpha', '10.96.0.30')}---\n${service('beta', '10.96.0.31')}`);
    const sink = new RecordingSink();
    const { lines } = await start(sink);

    const mark = sink.events.length;
    await writeFile(path.join(directory, 'a.yaml'), `${service('alpha', '10.96.0.30')}---\nkind: [unclosed\n`);
    await writeFile(path.join(directory, 'z.yaml'), service('zeta', '10.96.0.39'));
    await sink.waitFor(['upsert Service/default/zeta'], mark);
    assert.deepEqual(sink.summary(mark), ['upsert Service/default/zeta'], 'nothing from the broken file is deleted');
    const complaint = lines.find((l) => l.file === path.join(directory, 'a.yaml'));
    assert.ok(complaint, 'the parse error is logged with the file');
    assert.equal(complaint.level, 40);
    assert.match(String(complaint.reason), /line \d+/);

    const fixedMark = sink.events.length;
    await writeFile(path.join(directory, 'a.yaml'), service('alpha', '10.96.0.50'));
    await sink.waitFor(['upsert Service/default/alpha', 'delete Service/default/beta'], fixedMark);
  });

  test('a duplicate definition that goes away hands the object back to the other file, and later files still count', async () => {
    await writeFile(path.join(directory, 'a.yaml'), service('web', '10.96.0.30'));
    const sink = new RecordingSink();
    const { lines } = await start(sink);

    let mark = sink.events.length;
    await writeFile(path.join(directory, 'b.yaml'), service('web', '10.96.0.31'));
    await sink.waitFor(['upsert Service/default/web'], mark);
    assert.equal(clusterIPOf(sink.events.at(-1)), '10.96.0.31', 'the later file wins');

    mark = sink.events.length;
    await unlink(path.join(directory, 'b.yaml'));
    await sink.waitFor(['upsert Service/default/web'], mark);
    assert.equal(clusterIPOf(sink.events.at(-1)), '10.96.0.30', "a.yaml's definition is back");

    mark = sink.events.length;
    await writeFile(path.join(directory, 'c.yaml'), service('late', '10.96.0.32'));
    await sink.waitFor(['upsert Service/default/late'], mark);
    assert.deepEqual(
      lines.filter((l) => l.level >= 50),
      [],
      'no errors',
    );
  });

  test('a file nested 10,000 deep is one skipped file: start succeeds and other files keep working', async () => {
    const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    await writeFile(path.join(directory, 'deep.json'), `{"apiVersion":"v1","kind":"Service","metadata":{"name":"deep","labels":${deep}}}`);
    await writeFile(path.join(directory, 'deep.yaml'), `apiVersion: v1\nkind: Service\nmetadata:\n  name: deep2\n  labels: ${deep}\n`);
    await writeFile(path.join(directory, 'good.yaml'), service('good', '10.96.0.30'));
    const sink = new RecordingSink();
    const { lines } = await start(sink);
    assert.deepEqual(sink.summary(), ['upsert Service/default/good', 'synced']);
    for (const name of ['deep.json', 'deep.yaml']) {
      const complaint = lines.filter((l) => l.file === path.join(directory, name));
      assert.equal(complaint.length, 1, `one log line for ${name}: ${JSON.stringify(complaint)}`);
      assert.equal(complaint[0]!.level, 40);
      // The YAML parser has a limit of its own.
      assert.match(String(complaint[0]!.reason), /nested more than \d+ levels deep|RESOURCE_EXHAUSTION/);
    }

    const mark = sink.events.length;
    await writeFile(path.join(directory, 'z.yaml'), service('zeta', '10.96.0.39'));
    await sink.waitFor(['upsert Service/default/zeta'], mark);
  });

  test('a file rewritten in place is not read half-written: no object is deleted or cut short meanwhile', async () => {
    const before = `${service('alpha', '10.96.0.30')}---\n${service('beta', '10.96.0.31')}`;
    const after = `${service('alpha', '10.96.0.30')}---\n${service('beta', '10.96.0.41')}`;
    await writeFile(path.join(directory, 'a.yaml'), before);
    const sink = new RecordingSink();
    await start(sink);

    const mark = sink.events.length;
    // As a slow writer does it: truncate, write part of the file, pause, write the rest.
    const cut = after.indexOf('10.96.0.41') + 'clusterIP: 10.9'.length - 'clusterIP: '.length;
    const file = await open(path.join(directory, 'a.yaml'), 'w');
    try {
      await sleep(400);
      await file.write(after.slice(0, cut));
      await file.sync();
      await sleep(400);
      await file.write(after.slice(cut));
    } finally {
      await file.close();
    }
    await sink.waitFor(['upsert Service/default/beta'], mark);
    await sleep(300);
    assert.deepEqual(sink.summary(mark), ['upsert Service/default/beta'], 'only the finished edit is delivered');
    assert.equal(clusterIPOf(sink.events.at(-1)), '10.96.0.41');
  });

  test('an emptied file takes its objects away once it stays empty', async () => {
    await writeFile(path.join(directory, 'a.yaml'), service('alpha', '10.96.0.30'));
    const sink = new RecordingSink();
    await start(sink);
    const mark = sink.events.length;
    await writeFile(path.join(directory, 'a.yaml'), '');
    await sink.waitFor(['delete Service/default/alpha'], mark);
  });

  test('objects and files kube-lb does not read are reported once per file, not on every rescan', async () => {
    await writeFile(
      path.join(directory, 'other.yaml'),
      [
        'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n',
        'apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata:\n  name: web-old\naddressType: IPv4\nendpoints: []\n',
        'apiVersion: v1\nkind: service\nmetadata:\n  name: lower\n',
        service('good', '10.96.0.30'),
      ].join('---\n'),
    );
    await symlink(path.join(directory, 'missing.yaml'), path.join(directory, 'dangling.yaml'));
    const sink = new RecordingSink();
    const { lines } = await start(sink, 100);
    await sleep(600);
    // A change elsewhere makes a delivery; the reports still come once.
    const mark = sink.events.length;
    await writeFile(path.join(directory, 'z.yaml'), service('zeta', '10.96.0.39'));
    await sink.waitFor(['upsert Service/default/zeta'], mark);
    await sleep(300);
    assert.deepEqual(sink.summary(0, 'Service/default/good'), ['upsert Service/default/good']);

    const about = (name: string) => lines.filter((l) => l.file === path.join(directory, name) && l.level >= 30);
    const other = about('other.yaml');
    const unread = other.find((l) => l.level === 40);
    assert.ok(unread, `a warning for the near misses: ${JSON.stringify(other)}`);
    assert.deepEqual(unread.objects, ['discovery.k8s.io/v1beta1 EndpointSlice default/web-old', 'v1 service default/lower']);
    const ignored = other.find((l) => l.level === 30);
    assert.deepEqual(ignored?.objects, ['apps/v1 Deployment default/api']);
    assert.equal(other.length, 2, `two lines about other.yaml, once each: ${JSON.stringify(other)}`);
    const dangling = about('dangling.yaml');
    assert.equal(dangling.length, 1, `one line about the dangling symlink: ${JSON.stringify(dangling)}`);
    assert.equal(dangling[0]!.level, 40);
    assert.match(String(dangling[0]!.msg), /dangling symlink/);
  });

  test('symlinks are followed only within the directory, and no log line quotes a file', async () => {
    const outside = await mkdtemp(path.join(tmpdir(), 'kube-lb-outside-'));
    try {
      await writeFile(path.join(outside, 'secret.yaml'), 'password: hunter2-secret\n  bad: [x\n');
      await writeFile(path.join(outside, 'svc.yaml'), service('outside', '10.96.0.50'));
      await symlink(path.join(outside, 'secret.yaml'), path.join(directory, 'secret.yaml'));
      await symlink(path.join(outside, 'svc.yaml'), path.join(directory, 'outside.yaml'));
      // A ConfigMap volume: every file is a link into a ..data folder of the same directory.
      await mkdir(path.join(directory, '..2026_11_30'));
      await writeFile(path.join(directory, '..2026_11_30', 'web.yaml'), service('web', '10.96.0.30'));
      await symlink('..2026_11_30', path.join(directory, '..data'));
      await symlink('..data/web.yaml', path.join(directory, 'web.yaml'));
      await writeFile(path.join(directory, 'broken.yaml'), 'token: s3cr3t-yaml\n  x: [y\n');
      await writeFile(path.join(directory, 'broken.json'), '{"token": "s3cr3t-json" x}');

      const sink = new RecordingSink();
      const { lines } = await start(sink);
      assert.deepEqual(sink.summary(), ['upsert Service/default/web', 'synced']);
      const logged = JSON.stringify(lines);
      assert.doesNotMatch(logged, /hunter2|s3cr3t/, 'no file content in the logs');
      for (const name of ['secret.yaml', 'outside.yaml']) {
        const line = lines.find((l) => l.file === path.join(directory, name));
        assert.equal(line?.level, 40, `a warning for ${name}`);
        assert.match(String(line?.msg), /links outside the manifests directory/);
      }
      for (const name of ['broken.yaml', 'broken.json']) {
        const line = lines.find((l) => l.file === path.join(directory, name));
        assert.equal(line?.level, 40, `a warning for ${name}`);
        assert.match(String(line?.reason), /line \d+|position \d+|not valid JSON/);
      }
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  test('an object without a name is skipped with a warning naming the file', async () => {
    await writeFile(path.join(directory, 'a.yaml'), `apiVersion: v1\nkind: Service\nmetadata:\n  namespace: shop\nspec: {}\n---\n${service('alpha', '10.96.0.30')}`);
    const sink = new RecordingSink();
    const { lines } = await start(sink);
    assert.deepEqual(sink.summary(), ['upsert Service/default/alpha', 'synced']);
    const warning = lines.find((l) => l.level === 40);
    assert.equal(warning?.file, path.join(directory, 'a.yaml'));
    assert.equal(warning?.reason, 'metadata.name: required');
  });

  test('an invalid object is rejected at the model boundary with its name, origin and reason, keeping its last good version', async () => {
    await writeFile(path.join(directory, 'web.yaml'), service('web', '10.96.0.30'));
    const model = testModel();
    const logger = captureLogger();
    let changes = 0;
    await start(new ModelSink(model, logger.log, { onChange: () => changes++, onSynced: () => {} }));
    assert.equal(changes, 1);

    await writeFile(path.join(directory, 'web.yaml'), service('web', '10.96.0.300'));
    const deadline = Date.now() + 1500;
    while (!logger.lines.some((l) => l.level === 40) && Date.now() < deadline) await sleep(20);
    const rejection = logger.lines.find((l) => l.level === 40);
    assert.deepEqual(
      { kind: rejection?.kind, namespace: rejection?.namespace, name: rejection?.name, origin: rejection?.origin, reason: rejection?.reason },
      { kind: 'Service', namespace: 'default', name: 'web', origin: path.join(directory, 'web.yaml'), reason: 'spec.clusterIP: not an IP address: "10.96.0.300"' },
    );
    assert.equal(changes, 1);
    assert.equal(model.desiredState().get('default/web:http')?.frontends[0]!.ip, '10.96.0.30');
  });

  test('the periodic rescan finds changes on its own', async () => {
    const sink = new RecordingSink();
    await start(sink, 200);
    // Stop the watcher so only the rescan can notice the new file.
    (source as unknown as { watcher: { close(): void } }).watcher.close();
    await writeFile(path.join(directory, 'late.yaml'), service('late', '10.96.0.33'));
    await sink.waitFor(['upsert Service/default/late'], 0);
  });

  test('stop() ends delivery', async () => {
    const sink = new RecordingSink();
    await start(sink, 100);
    await source!.stop();
    const mark = sink.events.length;
    await writeFile(path.join(directory, 'after.yaml'), service('after', '10.96.0.34'));
    await sleep(400);
    assert.deepEqual(sink.summary(mark), []);
  });

  test('a missing directory fails start() with a clear error', async () => {
    source = new ManifestsSource({ directory: path.join(directory, 'missing'), log: captureLogger().log });
    await assert.rejects(source.start(new RecordingSink()), /cannot read manifests directory .*missing: ENOENT/);
  });
});
