// The API-server source against the test API server in this process: the
// real client-node informers over HTTPS with a kubeconfig, CA and token.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ObjectKind, RawObject } from '../../src/model/objects.js';
import { ApiServerSource } from '../../src/sources/apiserver.js';
import type { ObjectSink } from '../../src/model/ingest.js';
import { endpointSliceObject, serviceObject, type ServiceSpec } from '../lib/manifests.js';
import { captureLogger } from '../unit/fixtures.js';
import { createTestPki, type TestPki, writeKubeconfig } from './pki.js';
import { TestApiServer } from './server.js';

type Op = { op: 'upsert'; id: string; object: RawObject } | { op: 'delete'; id: string } | { op: 'synced' };

/** Records what the source delivers. */
class RecordingSink implements ObjectSink {
  readonly ops: Op[] = [];

  upsert(object: RawObject, origin: string): void {
    assert.equal(origin, 'apiserver');
    const meta = object.metadata as { namespace?: string; name: string };
    this.ops.push({ op: 'upsert', id: `${String(object.kind)}/${meta.namespace ?? ''}/${meta.name}`, object });
  }

  delete(kind: ObjectKind, namespace: string, name: string): void {
    this.ops.push({ op: 'delete', id: `${kind}/${namespace}/${name}` });
  }

  synced(): void {
    this.ops.push({ op: 'synced' });
  }

  /** Ops after index `from`, as "upsert Service/default/web" strings. */
  summary(from = 0): string[] {
    return this.ops.slice(from).map((o) => (o.op === 'synced' ? 'synced' : `${o.op} ${o.id}`));
  }
}

function web(ip: string, extra: Partial<ServiceSpec> = {}): ServiceSpec {
  return { name: 'web', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: [{ ip, ready: true }], ...extra };
}

async function text(stream: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of stream) body += String(chunk);
  return body;
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not true after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('API-server source against the test API server', () => {
  let dir: string;
  let pki: TestPki;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-apiserver-'));
    pki = await createTestPki(dir);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Runs body with a fresh server (holding `objects`) and a started source. */
  async function withSource(objects: RawObject[], body: (server: TestApiServer, sink: RecordingSink, logs: ReturnType<typeof captureLogger>) => Promise<void>): Promise<void> {
    const server = await TestApiServer.start({ cert: pki.serverCert, key: pki.serverKey, token: pki.token, bookmarkIntervalMs: 100 });
    for (const object of objects) await server.apply(object);
    const kubeconfig = path.join(dir, `kubeconfig-${server.port}`);
    writeKubeconfig(kubeconfig, server.port, pki);
    const logs = captureLogger();
    const source = new ApiServerSource({ kubeconfig, nodeName: 'node1', log: logs.log, minBackoffMs: 50, maxBackoffMs: 200 });
    const sink = new RecordingSink();
    try {
      await source.start(sink);
      await eventually('initial sync', () => sink.ops.some((o) => o.op === 'synced'));
      await body(server, sink, logs);
    } finally {
      await source.stop();
      await server.close();
    }
  }

  const node = (name: string): RawObject => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { addresses: [{ type: 'InternalIP', address: '192.168.0.1' }] } });

  it('lists, then watches creates, updates and deletes, with kube-proxy selectors and bookmarks', () =>
    withSource([serviceObject(web('10.244.0.11')), endpointSliceObject(web('10.244.0.11')), node('node1'), node('node2')], async (server, sink) => {
      // The initial state: plain API JSON with apiVersion and kind, then synced.
      assert.deepEqual(sink.summary().sort(), ['synced', 'upsert EndpointSlice/default/web-abc12', 'upsert Node//node1', 'upsert Service/default/web']);
      assert.equal(sink.summary().at(-1), 'synced');
      const service = sink.ops.find((o) => o.op === 'upsert' && o.id === 'Service/default/web') as { object: RawObject };
      assert.equal(service.object.apiVersion, 'v1');
      assert.equal((service.object.metadata as { creationTimestamp: unknown }).creationTimestamp, '2026-11-01T10:00:00Z');

      const stats = await server.stats();
      assert.equal(stats.lastWatchQuery.Service!.allowWatchBookmarks, 'true');
      assert.equal(stats.lastWatchQuery.Service!.labelSelector, '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless');
      assert.equal(stats.lastWatchQuery.EndpointSlice!.labelSelector, stats.lastWatchQuery.Service!.labelSelector);
      assert.equal(stats.lastWatchQuery.Node!.fieldSelector, 'metadata.name=node1');

      let mark = sink.ops.length;
      await server.apply(endpointSliceObject(web('10.244.0.12')));
      await server.apply(serviceObject({ ...web('10.244.0.12'), name: 'db' }));
      const other = serviceObject({ ...web('10.244.0.13'), name: 'other' });
      (other.metadata as { labels: Record<string, string> }).labels['service.kubernetes.io/service-proxy-name'] = 'someone-else';
      await server.apply(other);
      await server.delete('Service', 'default', 'db');
      await eventually('watch events', () => sink.ops.length >= mark + 3);
      // Bookmarks pass without a callback; nothing else arrives (the other proxy's service is filtered).
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(sink.summary(mark), ['upsert EndpointSlice/default/web-abc12', 'upsert Service/default/db', 'delete Service/default/db']);
      const slice = sink.ops.at(mark) as { object: RawObject };
      assert.deepEqual((slice.object.endpoints as { addresses: string[] }[]).map((e) => e.addresses[0]), ['10.244.0.12']);

      // Labelling a service for another proxy removes it, as leaving the selection.
      mark = sink.ops.length;
      const labelled = serviceObject(web('10.244.0.12'));
      (labelled.metadata as { labels: Record<string, string> }).labels['service.kubernetes.io/service-proxy-name'] = 'someone-else';
      await server.apply(labelled);
      await eventually('delete on leaving the selection', () => sink.ops.length > mark);
      assert.deepEqual(sink.summary(mark), ['delete Service/default/web']);
    }));

  it('a list larger than a page arrives in pages (limit and continue), all of it before synced', () => {
    const services = Array.from({ length: 1200 }, (_, i) => serviceObject({ ...web('10.244.0.11'), name: `web-${i}`, clusterIP: `10.96.${i >> 8}.${i & 255}` }));
    return withSource([...services, node('node1')], async (server, sink) => {
      const synced = sink.ops.findIndex((o) => o.op === 'synced');
      assert.equal(sink.ops.slice(0, synced).filter((o) => o.op === 'upsert' && o.id.startsWith('Service/')).length, 1200);
      const stats = await server.stats();
      assert.equal(stats.lists.Service, 1);
      // Pages of 500: the first list call, then two continue calls.
      assert.equal(stats.continuedLists.Service, 2);
    });
  });

  it('a dropped watch resumes from its resourceVersion without a relist', () =>
    withSource([serviceObject(web('10.244.0.11'))], async (server, sink) => {
      const listsBefore = (await server.stats()).lists.Service;
      const watchesBefore = (await server.stats()).watches.Service!;
      await server.dropWatches();
      await server.apply(serviceObject(web('10.244.0.11', { clusterIP: '10.96.0.20' })));
      const mark = sink.ops.length;
      await eventually('update after reconnect', () => sink.ops.length > mark);
      assert.deepEqual(sink.summary(mark), ['upsert Service/default/web']);
      const stats = await server.stats();
      assert.ok(stats.watches.Service! > watchesBefore, 'the watch reconnected');
      assert.equal(stats.lists.Service, listsBefore, 'no relist');
    }));

  it('410 Gone relists and diffs: what vanished is deleted, nothing else is touched', () =>
    withSource([serviceObject(web('10.244.0.11')), serviceObject({ ...web('10.244.0.12'), name: 'db' }), serviceObject({ ...web('10.244.0.13'), name: 'cache' })], async (server, sink) => {
      const mark = sink.ops.length;
      // Changes the client misses while it cannot connect, then history is compacted.
      await server.setOutage(true);
      await server.delete('Service', 'default', 'db');
      await server.apply(serviceObject(web('10.244.0.11', { clusterIP: '10.96.0.20' })));
      await server.compact();
      await new Promise((r) => setTimeout(r, 200));
      await server.setOutage(false);
      await eventually('relist after 410', () => sink.ops.length >= mark + 2);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(sink.summary(mark).sort(), ['delete Service/default/db', 'upsert Service/default/web']);
      assert.ok((await server.stats()).lists.Service! >= 2, 'relisted');
    }));

  it('a 410 ERROR event on an open watch relists', () =>
    withSource([serviceObject(web('10.244.0.11'))], async (server, sink) => {
      const lists = (await server.stats()).lists.Service!;
      await server.compact();
      await eventually('relist', async () => (await server.stats()).lists.Service! > lists);
      const mark = sink.ops.length;
      await server.apply(serviceObject(web('10.244.0.11', { clusterIP: '10.96.0.30' })));
      await eventually('watching again', () => sink.ops.length > mark);
      assert.deepEqual(sink.summary(mark), ['upsert Service/default/web']);
    }));

  it('reconnects with backoff after an outage and logs the failures', () =>
    withSource([serviceObject(web('10.244.0.11'))], async (server, sink, { lines }) => {
      await server.setOutage(true);
      await new Promise((r) => setTimeout(r, 600));
      const failures = lines.filter((l) => l.msg.startsWith('API server watch failed'));
      assert.ok(failures.length >= 2, `retried while down: ${failures.length}`);
      assert.ok(failures.length < 30, `backed off: ${failures.length} failures in 600 ms`);
      await server.setOutage(false);
      const mark = sink.ops.length;
      await server.apply(serviceObject(web('10.244.0.11', { clusterIP: '10.96.0.40' })));
      await eventually('update after the outage', () => sink.ops.length > mark);
      assert.deepEqual(sink.summary(mark), ['upsert Service/default/web']);
    }));

  it('the server speaks the protocol: lists carry a resourceVersion, watches stream chunked JSON lines', async () => {
    const server = await TestApiServer.start({ cert: pki.serverCert, key: pki.serverKey, token: pki.token });
    const get = (query: string) =>
      new Promise<IncomingMessage>((resolve, reject) =>
        https.get({ host: '127.0.0.1', port: server.port, path: `/api/v1/services${query}`, ca: pki.caCert, headers: { authorization: `Bearer ${pki.token}` } }, resolve).on('error', reject),
      );
    try {
      await server.apply(serviceObject(web('10.244.0.11')));
      const list = JSON.parse(await text(await get(''))) as { kind: string; metadata: { resourceVersion: string }; items: RawObject[] };
      assert.equal(list.kind, 'ServiceList');
      assert.equal(list.items[0]!.kind, undefined, 'list items carry no kind');
      const watch = await get(`?watch=true&resourceVersion=${list.metadata.resourceVersion}`);
      assert.equal(watch.headers['transfer-encoding'], 'chunked');
      const lines: string[] = [];
      watch.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter((l) => l !== '')));
      await server.delete('Service', 'default', 'web');
      await eventually('DELETED event', () => lines.length > 0);
      const event = JSON.parse(lines[0]!) as { type: string; object: { kind: string; metadata: { resourceVersion: string } } };
      assert.equal(event.type, 'DELETED');
      assert.equal(event.object.kind, 'Service');
      assert.ok(Number(event.object.metadata.resourceVersion) > Number(list.metadata.resourceVersion));
      watch.destroy();
    } finally {
      await server.close();
    }
  });

  it('a wrong token is refused and never synced', async () => {
    const server = await TestApiServer.start({ cert: pki.serverCert, key: pki.serverKey, token: pki.token });
    const kubeconfig = path.join(dir, 'kubeconfig-bad-token');
    writeKubeconfig(kubeconfig, server.port, { ...pki, token: 'wrong' });
    const { log, lines } = captureLogger();
    const source = new ApiServerSource({ kubeconfig, nodeName: 'node1', log, minBackoffMs: 50, maxBackoffMs: 100 });
    const sink = new RecordingSink();
    try {
      await source.start(sink);
      await eventually('refused', async () => (await server.stats()).unauthorized >= 3);
      assert.deepEqual(sink.ops, []);
      assert.ok(lines.some((l) => l.msg.startsWith('API server watch failed')));
    } finally {
      await source.stop();
      await server.close();
    }
  });
});
