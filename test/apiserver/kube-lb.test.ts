// kube-lb fed by the test API server, end to end: the API server runs in a
// sandboxed node's namespace, kube-lb reaches it through a kubeconfig (CA and
// token) with the real client, and pods exchange real traffic through the
// datapath that the watch events program.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NamedView } from '../../src/inspect-view.js';
import { DEFAULT_NODE_NAME, endpointSliceObject, serviceObject, type EndpointSpec, type ServiceSpec } from '../lib/manifests.js';
import { cliPath } from '../lib/paths.js';
import { NodeSandbox, waitForLine } from '../lib/sandbox.js';
import { createTestPki, type TestPki, writeKubeconfig } from './pki.js';
import { RemoteApiServer } from './remote.js';
import { FILL_REFRESH_MS } from '../../src/backends/ebpf/map-stats.js';

/** The backends this suite runs against: every registered one but ipvs, which needs a kernel with IPVS (test/vm). */
const BACKENDS = ['ebpf', 'iptables', 'nftables'];

const PODS = [
  { name: 'client', ip: '10.244.0.2', serves: false },
  { name: 'web-1', ip: '10.244.0.11', serves: true },
  { name: 'web-2', ip: '10.244.0.12', serves: true },
];
const TCP_PORT = 8080;

function service(name: string, clusterIP: string, endpoints: EndpointSpec[]): ServiceSpec {
  return { name, clusterIP, ports: [{ name: 'http', port: 80, targetPort: TCP_PORT, protocol: 'TCP' }], endpoints };
}
const ready = (...ips: string[]): EndpointSpec[] => ips.map((ip) => ({ ip, ready: true }));
const NODE_POD_CIDR = '10.244.0.0/24';
const NODE = {
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: 'node1' },
  spec: { podCIDR: NODE_POD_CIDR, podCIDRs: [NODE_POD_CIDR] },
  status: { addresses: [{ type: 'InternalIP', address: '192.168.0.1' }] },
};

/** A sandboxed node, the API server in it, and kube-lb watching it. */
class ApiContext {
  private kubeLbProcess: ChildProcess | undefined;
  private logs = '';

  private constructor(
    readonly backend: string,
    readonly sandbox: NodeSandbox,
    readonly api: RemoteApiServer,
    readonly dir: string,
  ) {}

  static async create(backend: string, pki: TestPki): Promise<ApiContext> {
    const sandbox = await NodeSandbox.create();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kube-lb-api-${sandbox.id}-`));
    try {
      for (const pod of PODS) {
        await sandbox.addPod(pod.name, pod.ip);
        if (pod.serves) await sandbox.startServer(pod.name, [TCP_PORT]);
      }
      const api = await RemoteApiServer.start(sandbox, pki, dir);
      writeKubeconfig(path.join(dir, 'kubeconfig'), api.port, pki);
      await api.apply(NODE);
      return new ApiContext(backend, sandbox, api, dir);
    } catch (err) {
      await sandbox.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  async applyService(spec: ServiceSpec): Promise<void> {
    await this.api.apply(serviceObject(spec));
    await this.api.apply(endpointSliceObject(spec));
  }

  private get configFile(): string {
    return path.join(this.dir, 'kube-proxy-config.yaml');
  }

  /**
   * Starts kube-lb configured as kube-proxy is: a KubeProxyConfiguration
   * file, some flags overriding it. Local traffic is told by the Node's pod
   * CIDR, so the ebpf backend finds the pods' veths by their routes.
   */
  async startKubeLb(): Promise<void> {
    const config = this.configFile;
    fs.writeFileSync(
      config,
      `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${path.join(this.dir, 'kubeconfig')}
hostnameOverride: node1
clusterCIDR: 10.244.0.0/16
detectLocalMode: NodeCIDR
mode: ${this.backend}
minSyncPeriod: 100ms
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:0
conntrack:
  maxPerCore: 32768
`,
    );
    const child = this.sandbox.spawnInNode(process.execPath, [
      cliPath,
      `--config=${config}`,
      `--bpf-pin-path=${this.sandbox.pinPath}`,
      // Overrides the file's 0.0.0.0:10256.
      '--healthz-bind-address=127.0.0.1:0',
    ]);
    child.stderr!.on('data', (d: Buffer) => (this.logs += d.toString()));
    this.kubeLbProcess = child;
    await waitForLine(child, /"msg":"ready"/, 30_000, 'kube-lb');
    assert.match(this.logs, /field conntrack\.maxPerCore is not supported by kube-lb; ignored/);
    // Local traffic is the Node's spec.podCIDRs (detectLocalMode: NodeCIDR), read from the API server.
    assert.match(this.logs, /"localTraffic":"IPv4 from 10\.244\.0\.0\/24, IPv6 none"/);
  }

  /** `kube-lb inspect` with run's configuration file, so it names frontends from the API server. */
  async inspect(...args: string[]): Promise<string> {
    return (await this.sandbox.execInNode(process.execPath, [cliPath, 'inspect', `--config=${this.configFile}`, `--bpf-pin-path=${this.sandbox.pinPath}`, ...args])).stdout;
  }

  /** Who answers `count` new connections to ip:80 from the client pod. */
  async answers(ip: string, count = 6): Promise<{ answers: Record<string, number>; failures: number }> {
    return this.sandbox.client('client', 'tcp', ip, 80, count);
  }

  /** Polls until the connections to ip:80 are answered by exactly `pods` (none: all fail). */
  async waitForAnswers(ip: string, pods: string[], what: string): Promise<void> {
    const start = Date.now();
    let last: unknown;
    while (Date.now() - start < 20_000) {
      const result = await this.answers(ip, 4);
      last = result;
      const who = Object.keys(result.answers).sort();
      if (pods.length === 0 ? result.failures === 4 : result.failures === 0 && pods.every((p) => who.includes(p)) && who.every((p) => pods.includes(p))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${what}: ${ip} not answered by [${pods.join(', ')}] after 20 s; last ${JSON.stringify(last)}; kube-lb logs:\n${this.logs.slice(-3000)}`);
  }

  /** An HTTP GET from inside the node namespace, where kube-lb listens. */
  async get(server: 'healthz' | 'metrics', urlPath: string): Promise<{ status: number; body: string; contentType: string }> {
    const m = new RegExp(`"${server}":"127\\.0\\.0\\.1:(\\d+)"`).exec(this.logs);
    assert.ok(m, `kube-lb did not log its ${server} address; logs:\n${this.logs.slice(-2000)}`);
    const script = `const r = await fetch('http://127.0.0.1:${m[1]}${urlPath}'); console.log(JSON.stringify({ status: r.status, contentType: r.headers.get('content-type'), body: await r.text() }));`;
    const { stdout } = await this.sandbox.execInNode(process.execPath, ['--input-type=module', '-e', script]);
    return JSON.parse(stdout) as { status: number; body: string; contentType: string };
  }

  get kubeLbLogs(): string {
    return this.logs;
  }

  async destroy(): Promise<void> {
    try {
      const child = this.kubeLbProcess;
      if (child !== undefined && child.exitCode === null) {
        const code = await new Promise<number | null>((resolve) => {
          child.once('exit', (c) => resolve(c));
          child.kill('SIGTERM');
        });
        assert.equal(code, 0, `kube-lb exit code on SIGTERM; logs:\n${this.logs.slice(-3000)}`);
      }
      // kube-proxy's spelling of `kube-lb cleanup`.
      await this.sandbox.execInNode(process.execPath, [cliPath, '--cleanup', `--backend=${this.backend}`, `--bpf-pin-path=${this.sandbox.pinPath}`]);
      assert.equal(fs.existsSync(this.sandbox.pinPath), false, 'pins remain after --cleanup');
    } finally {
      await this.api.stop();
      await this.sandbox.destroy();
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

for (const backend of BACKENDS) {
  describe(`kube-lb with the ${backend} backend, fed by the API server`, () => {
    let pkiDir: string;
    let pki: TestPki;
    before(async () => {
      pkiDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-pki-'));
      pki = await createTestPki(pkiDir);
    });
    after(() => fs.rmSync(pkiDir, { recursive: true, force: true }));

    async function withContext(body: (ctx: ApiContext) => Promise<void>): Promise<void> {
      const ctx = await ApiContext.create(backend, pki);
      try {
        await body(ctx);
      } finally {
        await ctx.destroy();
      }
    }

    it('creates, updates and deletes from watch events reach the datapath; /healthz, /metrics and /proxyMode answer; inspect names what it shows', () =>
      withContext(async (ctx) => {
        await ctx.applyService(service('web', '10.96.0.10', ready('10.244.0.11')));
        await ctx.startKubeLb();
        assert.deepEqual(await ctx.answers('10.96.0.10'), { answers: { 'web-1': 6 }, failures: 0, errors: [] });

        await ctx.api.apply(endpointSliceObject(service('web', '10.96.0.10', ready('10.244.0.11', '10.244.0.12'))));
        await ctx.waitForAnswers('10.96.0.10', ['web-1', 'web-2'], 'slice update');
        await ctx.applyService(service('db', '10.96.0.20', ready('10.244.0.12')));
        await ctx.waitForAnswers('10.96.0.20', ['web-2'], 'service create');
        await ctx.api.delete('Service', 'default', 'db');
        await ctx.waitForAnswers('10.96.0.20', [], 'service delete');
        // The kernel holds addresses only: the names come from the API server, as run reads it.
        const views = JSON.parse(await ctx.inspect('-o', 'json', '--service=default/web')) as NamedView[];
        assert.deepEqual(
          views.map((v) => ({ service: v.service, frontend: v.frontend, policy: v.policy, affinity: v.affinity, destinations: v.destinations })),
          [
            {
              service: { namespace: 'default', name: 'web', port: 'http' },
              frontend: { ip: '10.96.0.10', port: 80, protocol: 'TCP' },
              policy: 'Cluster',
              affinity: null,
              destinations: [{ ip: '10.244.0.11', port: TCP_PORT, node: DEFAULT_NODE_NAME }, { ip: '10.244.0.12', port: TCP_PORT, node: DEFAULT_NODE_NAME }],
            },
          ],
        );

        const healthz = await ctx.get('healthz', '/healthz');
        assert.equal(healthz.status, 200);
        assert.equal(healthz.contentType, 'application/json');
        const body = JSON.parse(healthz.body) as Record<string, unknown>;
        assert.deepEqual(Object.keys(body), ['lastUpdated', 'currentTime', 'nodeEligible']);
        assert.equal(body.nodeEligible, true);
        const livez = await ctx.get('healthz', '/livez');
        assert.equal(livez.status, 200);
        assert.deepEqual(Object.keys(JSON.parse(livez.body) as object), ['lastUpdated', 'currentTime']);

        // A node marked for deletion is not eligible: /healthz fails, /livez does not.
        await ctx.api.apply({ ...NODE, spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] } });
        const start = Date.now();
        while ((await ctx.get('healthz', '/healthz')).status !== 503) {
          assert.ok(Date.now() - start < 10_000, 'healthz still 200 for a node being deleted');
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(JSON.parse((await ctx.get('healthz', '/healthz')).body).nodeEligible, false);
        assert.equal((await ctx.get('healthz', '/livez')).status, 200);

        const metrics = await ctx.get('metrics', '/metrics');
        assert.equal(metrics.status, 200);
        assert.match(metrics.contentType, /^text\/plain/);
        for (const name of [
          'kubeproxy_sync_proxy_rules_duration_seconds_bucket',
          'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
          'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
          'kubeproxy_sync_proxy_rules_endpoint_changes_total',
          'kubeproxy_sync_proxy_rules_endpoint_changes_pending',
          'kubeproxy_sync_proxy_rules_service_changes_total',
          'kubeproxy_sync_proxy_rules_service_changes_pending',
          'kubeproxy_network_programming_duration_seconds_bucket',
          `kube_lb_sync_errors_total{backend="${backend}"} 0`,
        ]) {
          assert.ok(metrics.body.includes(name), `/metrics lacks ${name}:\n${metrics.body.slice(0, 3000)}`);
        }
        // Only the ebpf backend has BPF maps to report.
        if (backend === 'ebpf') {
          assert.match(metrics.body, /^kube_lb_bpf_map_max_entries\{map="kube_lb_ct"\} [1-9]\d*$/m);
          // Entries are counted in the background, starting with the first scrape.
          const start = Date.now();
          while (!/^kube_lb_bpf_map_entries\{map="kube_lb_svc"\} [1-9]\d*$/m.test((await ctx.get('metrics', '/metrics')).body)) {
            assert.ok(Date.now() - start < FILL_REFRESH_MS, 'no kube_lb_bpf_map_entries for kube_lb_svc within a refresh period');
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        const proxyMode = await ctx.get('metrics', '/proxyMode');
        assert.deepEqual([proxyMode.status, proxyMode.contentType, proxyMode.body], [200, 'text/plain; charset=utf-8', backend], "kube-proxy's /proxyMode");
        const serviceChanges = Number(/^kubeproxy_sync_proxy_rules_service_changes_total (\d+)/m.exec(metrics.body)?.[1]);
        assert.ok(serviceChanges >= 2, `service changes counted: ${serviceChanges}`);
      }));

    it('recovers from a dropped watch and from 410 Gone, and keeps forwarding through an API outage', () =>
      withContext(async (ctx) => {
        await ctx.applyService(service('web', '10.96.0.10', ready('10.244.0.11')));
        await ctx.applyService(service('db', '10.96.0.20', ready('10.244.0.12')));
        await ctx.startKubeLb();

        await ctx.api.dropWatches();
        await ctx.api.apply(endpointSliceObject(service('web', '10.96.0.10', ready('10.244.0.12'))));
        await ctx.waitForAnswers('10.96.0.10', ['web-2'], 'change after a dropped watch');

        const listsBefore = (await ctx.api.stats()).lists.EndpointSlice!;
        await ctx.api.compact();
        await ctx.api.apply(endpointSliceObject(service('web', '10.96.0.10', ready('10.244.0.11'))));
        await ctx.waitForAnswers('10.96.0.10', ['web-1'], 'change after 410 Gone');
        assert.ok((await ctx.api.stats()).lists.EndpointSlice! > listsBefore, 'relisted after 410');

        // The API server goes away: the datapath keeps forwarding.
        await ctx.api.setOutage(true);
        await new Promise((r) => setTimeout(r, 1500));
        assert.deepEqual(await ctx.answers('10.96.0.10'), { answers: { 'web-1': 6 }, failures: 0, errors: [] });
        assert.deepEqual(await ctx.answers('10.96.0.20'), { answers: { 'web-2': 6 }, failures: 0, errors: [] });
        assert.match(ctx.kubeLbLogs, /API server watch failed/);
        // Changes kube-lb misses, then compaction: it must relist and diff, deleting only what vanished.
        await ctx.api.delete('Service', 'default', 'db');
        await ctx.api.apply(endpointSliceObject(service('web', '10.96.0.10', ready('10.244.0.11', '10.244.0.12'))));
        await ctx.api.compact();
        await ctx.api.setOutage(false);
        await ctx.waitForAnswers('10.96.0.10', ['web-1', 'web-2'], 'converged after the outage');
        await ctx.waitForAnswers('10.96.0.20', [], 'deleted during the outage');
      }));

    it('rejects invalid objects with a log line naming them, and every other service keeps working', () =>
      withContext(async (ctx) => {
        await ctx.applyService(service('web', '10.96.0.10', ready('10.244.0.11')));
        await ctx.startKubeLb();

        await ctx.api.apply(serviceObject(service('bad-ip', '10.96.0.300', ready('10.244.0.12'))));
        const badPort = serviceObject(service('bad-port', '10.96.0.21', []));
        (badPort.spec as { ports: { port: number }[] }).ports[0]!.port = 70000;
        await ctx.api.apply(badPort);
        const noAddressType = endpointSliceObject(service('web', '10.96.0.10', ready('10.244.0.12')), 'web-no-type');
        delete noAddressType.addressType;
        await ctx.api.apply(noAddressType);
        const manyIps = Array.from({ length: 10_000 }, (_, i) => `10.245.${i >> 8}.${i & 255}`);
        await ctx.api.apply(endpointSliceObject(service('web', '10.96.0.10', ready(...manyIps)), 'web-huge'));
        // A valid change after them still arrives.
        await ctx.applyService(service('db', '10.96.0.20', ready('10.244.0.12')));
        await ctx.waitForAnswers('10.96.0.20', ['web-2'], 'valid service next to invalid ones');

        assert.deepEqual(await ctx.answers('10.96.0.10'), { answers: { 'web-1': 6 }, failures: 0, errors: [] });
        const rejections = ctx.kubeLbLogs
          .split('\n')
          .filter((l) => l.includes('rejected invalid'))
          .map((l) => JSON.parse(l) as { msg: string; reason: string; origin: string });
        const expected: [string, RegExp][] = [
          ['Service default/bad-ip', /spec\.clusterIPs\[0\]: not an IP address: "10\.96\.0\.300"/],
          ['Service default/bad-port', /spec\.ports\[0\]\.port: 70000 is out of range/],
          ['EndpointSlice default/web-no-type', /addressType: required/],
          ['EndpointSlice default/web-huge', /endpoints: too many items: 10000/],
        ];
        for (const [object, reason] of expected) {
          const line = rejections.find((r) => r.msg.includes(object));
          assert.ok(line, `no rejection logged for ${object}; rejections: ${JSON.stringify(rejections)}`);
          assert.match(line.reason, reason);
          assert.equal(line.origin, 'apiserver');
        }
      }));
  });
}
