import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { Backend } from '../../src/backends/backend.js';
import { ProxierHealth } from '../../src/observability/health.js';
import { ServiceHealthServers } from '../../src/observability/service-health.js';
import { parseBindAddress, ProxyTelemetry } from '../../src/observability/telemetry.js';
import type { ObjectSink } from '../../src/model/ingest.js';
import { captureLogger, rawSlice, readyEndpoint } from './fixtures.js';

describe('proxier health (kube-proxy semantics)', () => {
  it('is healthy until a queued update waits longer than the timeout for a sync', () => {
    let now = 1_000_000;
    const health = new ProxierHealth(60_000, () => new Date(now));
    assert.equal(health.status().healthy, true, 'healthy while starting');
    health.queuedUpdate();
    now += 59_000;
    assert.equal(health.status().healthy, true);
    health.queuedUpdate(); // does not move the oldest pending update
    now += 1_000;
    assert.equal(health.status().healthy, false);
    health.updated();
    assert.deepEqual(health.status(), { healthy: true, lastUpdated: new Date(now), currentTime: new Date(now), nodeEligible: true });
  });

  it('a node being deleted or tainted for deletion is not eligible', () => {
    const health = new ProxierHealth(60_000);
    health.syncNode({ metadata: { name: 'n' }, spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler' }] } });
    assert.equal(health.status().nodeEligible, false);
    health.syncNode({ metadata: { name: 'n' } });
    assert.equal(health.status().nodeEligible, true);
    health.syncNode({ metadata: { name: 'n', deletionTimestamp: '2026-11-01T10:00:00Z' } });
    assert.equal(health.status().nodeEligible, false);
    health.syncNode(null);
    assert.equal(health.status().nodeEligible, false);
  });
});

describe('health and metrics servers', () => {
  const backend: Backend = {
    name: 'fake',
    protocols: ['TCP', 'UDP'],
    sync: async () => ({ frontendsWritten: 0, frontendsRemoved: 0 }),
    inspect: async () => [],
    planned: async () => [],
    cleanup: async () => {},
    close: async () => {},
    mapFill: async () => [{ map: 'kube_lb_svc', entries: 3, maxEntries: 65536 }, { map: 'kube_lb_ct', entries: null, maxEntries: 1024 }],
  };

  async function withTelemetry(body: (t: ProxyTelemetry, get: (server: string, path: string) => Promise<Response>) => Promise<void>, syncPeriodMs = 30_000): Promise<void> {
    const { log, lines } = captureLogger();
    const telemetry = await ProxyTelemetry.start({ backend, nodeName: 'node1', syncPeriodMs, healthzBindAddress: '127.0.0.1:0', metricsBindAddress: '127.0.0.1:0', metricsEndpointLabels: true, log });
    const address = (server: string) => lines.find((l) => typeof l[server] === 'string')![server] as string;
    try {
      await body(telemetry, (server, path) => fetch(`http://${address(server)}${path}`));
    } finally {
      await telemetry.close();
    }
  }

  it('a port another program holds fails the start with a message saying what to do', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as net.AddressInfo;
    try {
      const { log } = captureLogger();
      await assert.rejects(
        ProxyTelemetry.start({ backend, nodeName: 'node1', syncPeriodMs: 30_000, healthzBindAddress: `127.0.0.1:${port}`, metricsBindAddress: '127.0.0.1:0', metricsEndpointLabels: true, log }),
        /cannot serve healthz on 127\.0\.0\.1:\d+: .*EADDRINUSE.*choose another --healthz-bind-address/,
      );
    } finally {
      holder.close();
    }
  });

  it('answer /healthz, /livez and /metrics over HTTP with kube-proxy names', () =>
    withTelemetry(async (telemetry, get) => {
      const healthz = await get('healthz', '/healthz');
      assert.equal(healthz.status, 200);
      assert.equal(healthz.headers.get('content-type'), 'application/json');
      assert.deepEqual(Object.keys((await healthz.json()) as object), ['lastUpdated', 'currentTime', 'nodeEligible']);
      assert.equal((await get('healthz', '/nope')).status, 404);

      // An endpoint change after the initial state, then the sync that programs it.
      const delivered: string[] = [];
      const sink = telemetry.observe({ upsert: () => delivered.push('upsert'), delete: () => delivered.push('delete'), synced: () => delivered.push('synced') } satisfies ObjectSink);
      sink.synced();
      const slice = rawSlice('web-1', 'web', [{ name: 'http', port: 8080 }], [readyEndpoint('10.244.0.11')]);
      (slice.metadata as { annotations?: Record<string, string> }).annotations = { 'endpoints.kubernetes.io/last-change-trigger-time': new Date(Date.now() - 2500).toISOString() };
      sink.upsert(slice, 'test');
      sink.delete('Node', '', 'node1');
      assert.deepEqual(delivered, ['synced', 'upsert', 'delete']);
      telemetry.queued({ services: 0, endpoints: 1 });
      telemetry.syncStarted({ services: 0, endpoints: 0 });
      telemetry.syncCompleted({ durationMs: 12, serviceChanges: 0, endpointChanges: 1, servicePortsRefused: 0, state: new Map() });

      // The node object went away: /healthz fails, /livez does not.
      assert.equal((await get('healthz', '/healthz')).status, 503);
      assert.equal((await get('healthz', '/livez')).status, 200);

      const metrics = await (await get('metrics', '/metrics')).text();
      for (const line of [
        'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.016"} 1',
        'kubeproxy_sync_proxy_rules_endpoint_changes_total 1',
        'kubeproxy_sync_proxy_rules_endpoint_changes_pending 0',
        'kubeproxy_network_programming_duration_seconds_bucket{le="2"} 0',
        'kubeproxy_network_programming_duration_seconds_bucket{le="3"} 1',
        'kubeproxy_proxy_healthz_total{code="503"} 1',
        'kube_lb_sync_errors_total{backend="fake"} 0',
        'kube_lb_bpf_map_entries{map="kube_lb_svc"} 3',
        'kube_lb_bpf_map_max_entries{map="kube_lb_svc"} 65536',
        'kube_lb_bpf_map_max_entries{map="kube_lb_ct"} 1024',
      ]) {
        assert.ok(metrics.includes(line), `/metrics lacks ${line}:\n${metrics}`);
      }
      assert.doesNotMatch(metrics, /kube_lb_bpf_map_entries\{map="kube_lb_ct"\}/, 'a map not counted yet has no entries line');
      assert.match(metrics, /^kubeproxy_sync_proxy_rules_last_timestamp_seconds \d+/m);
      assert.match(metrics, /^kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds \d+/m);

      telemetry.syncStarted({ services: 0, endpoints: 0 });
      telemetry.syncFailed(5);
      assert.ok((await (await get('metrics', '/metrics')).text()).includes('kube_lb_sync_errors_total{backend="fake"} 1'));
    }));

  it('a sync that refused service ports counts as failed, and health turns bad while they stay refused', () =>
    withTelemetry(async (telemetry, get) => {
      const completed = (servicePortsRefused: number): void => {
        telemetry.syncStarted({ services: 0, endpoints: 0 });
        telemetry.syncCompleted({ durationMs: 1, serviceChanges: 0, endpointChanges: 0, servicePortsRefused, state: new Map() });
      };
      completed(2);
      const metrics = await (await get('metrics', '/metrics')).text();
      assert.ok(metrics.includes('kube_lb_sync_errors_total{backend="fake"} 1'), metrics);
      assert.ok(metrics.includes('kube_lb_service_ports_refused{backend="fake"} 2'), metrics);
      assert.doesNotMatch(metrics, /^kubeproxy_sync_proxy_rules_last_timestamp_seconds [1-9]/m, 'not a successful sync');
      // Past the health timeout (twice the sync period) with the refusal still there.
      await new Promise((r) => setTimeout(r, 300));
      completed(2);
      assert.equal((await get('healthz', '/livez')).status, 503);
      completed(0);
      assert.equal((await get('healthz', '/livez')).status, 200);
      assert.ok((await (await get('metrics', '/metrics')).text()).includes('kube_lb_service_ports_refused{backend="fake"} 0'));
    }, 50));

  it("answers kube-proxy's /proxyMode on the metrics port with the backend's name, as kube-proxy answers it", () =>
    withTelemetry(async (_telemetry, get) => {
      const res = await get('metrics', '/proxyMode');
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
      assert.equal(await res.text(), 'fake', 'the name alone, no newline');
      assert.equal((await get('healthz', '/proxyMode')).status, 404, 'not on the health port');
    }));

  it('parses bind addresses like kube-proxy and rejects others', () => {
    assert.deepEqual(parseBindAddress('0.0.0.0:10256', 'healthz'), { host: '0.0.0.0', port: 10256 });
    assert.deepEqual(parseBindAddress('[::]:10249', 'metrics'), { host: '::', port: 10249 });
    assert.deepEqual(parseBindAddress(':10249', 'metrics'), { host: '0.0.0.0', port: 10249 });
    assert.throws(() => parseBindAddress('10256', 'healthz'), { message: '--healthz-bind-address=10256: not host:port, such as 0.0.0.0:10256' });
    assert.throws(() => parseBindAddress('127.0.0.1:70000', 'metrics'), /--metrics-bind-address=127\.0\.0\.1:70000/);
  });
});

describe('service health check node ports', () => {
  it("answers as kube-proxy: 200 with the local endpoint count, 503 without, on the service's port", async () => {
    const { log } = captureLogger();
    const servers = new ServiceHealthServers(new ProxierHealth(60_000), log, '127.0.0.1');
    const port = 30000 + Math.floor(Math.random() * 2000);
    try {
      servers.update(new Map([[port, { namespace: 'default', name: 'web', localEndpoints: 2 }]]));
      const get = async (): Promise<{ status: number; body: unknown; weight: string | null }> => {
        const res = await fetch(`http://127.0.0.1:${port}/`);
        return { status: res.status, body: await res.json(), weight: res.headers.get('x-load-balancing-endpoint-weight') };
      };
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(await get(), { status: 200, body: { service: { namespace: 'default', name: 'web' }, localEndpoints: 2, serviceProxyHealthy: true }, weight: '2' });
      servers.update(new Map([[port, { namespace: 'default', name: 'web', localEndpoints: 0 }]]));
      assert.deepEqual(await get(), { status: 503, body: { service: { namespace: 'default', name: 'web' }, localEndpoints: 0, serviceProxyHealthy: true }, weight: '0' });
      servers.update(new Map());
      await assert.rejects(fetch(`http://127.0.0.1:${port}/`), 'the listener is closed with the service');
    } finally {
      await servers.close();
    }
  });
});
