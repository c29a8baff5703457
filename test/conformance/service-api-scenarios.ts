// The conformance rows for the whole Service API beyond ClusterIP from
// pods: NodePorts, external and load-balancer IPs, traffic policies,
// terminating endpoints, topology, affinity, source ranges, rejection,
// traffic from the node itself, and the services kube-lb leaves alone.
// Every row uses real TCP and UDP clients in the two-node sandbox.
import assert from 'node:assert/strict';
import path from 'node:path';
import { testLibDir } from '../lib/paths.js';
import type { EndpointSpec, ServiceSpec } from '../lib/manifests.js';
import { type ClientResult, EXTERNAL_CLIENT_IPS, NODES, waitForLine } from '../lib/sandbox.js';
import { slow } from '../lib/slowdown.js';
import { SERVER_TCP_PORTS } from './context.js';
import { type Scenario, VIP, endpoints, ipOf, podAddress, pods } from './scenarios.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, maglevPick, maglevTable } from '../../src/backends/ebpf/maglev.js';

const NODE_IP = NODES['node-a'].ip;
const EXTERNAL_IP = '203.0.113.10';
const LB_IP = '198.51.100.10';
const HTTP_NODE_PORT = 30080;
const DNS_NODE_PORT = 30053;
const HEALTH_NODE_PORT = 32100;
/** A host-network server on node-a, on the pods' port: the node's own address is its endpoint. */
const HOST_SERVER = 'node-a-host';

/** A LoadBalancer service on every kind of frontend: ClusterIP VIP, an external IP, an ingress IP, NodePorts. */
function lbService(eps: EndpointSpec[], over: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    name: 'web',
    clusterIP: VIP,
    type: 'LoadBalancer',
    ports: [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: HTTP_NODE_PORT },
      { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP', nodePort: DNS_NODE_PORT },
    ],
    externalIPs: [EXTERNAL_IP],
    loadBalancerIngress: [LB_IP],
    endpoints: eps,
    ...over,
  };
}

function answeredBy(result: ClientResult, expected: string[], what: string): void {
  assert.equal(result.failures, 0, `${what}: failures ${JSON.stringify(result.errors)}`);
  assert.deepEqual(Object.keys(result.answers).sort(), [...expected].sort(), `${what}: answered by ${JSON.stringify(result.answers)}`);
}

/** The client addresses the servers saw, whoever answered. */
function sourcesSeen(result: ClientResult): string[] {
  return [...new Set(Object.values(result.seenFrom ?? {}).flatMap((bySource) => Object.keys(bySource)))].sort();
}

const BOTH_NODES = ['web-1', 'web-4'];

/**
 * How long a refused attempt may take, in host milliseconds. Over IPv4 the
 * refusal comes at once. Over IPv6 it comes a second later, with the SYN's
 * first retransmission: the ICMPv6 error comes back within connect()'s own
 * call, while it holds its socket, and the kernel drops it then
 * (TcpExtLockDroppedIcmps), as it would under kube-proxy.
 */
const REFUSAL_MS = 3000;

/** Every attempt failed with a refusal, none by a timeout. */
function assertRefused(r: ClientResult, what: string): void {
  assert.deepEqual(r.answers, {}, `${what}: answered`);
  assert.ok(r.failures > 0 && r.errors.every((e) => /ECONNREFUSED|EHOSTUNREACH/.test(e)), `${what}: refused, not timed out: ${JSON.stringify(r.errors)}`);
}

export const serviceApiScenarios: Scenario[] = [
  {
    name: 'NodePort, external IP and load-balancer IP from outside reach endpoints on both nodes, masqueraded',
    needs: ['tcp', 'udp', 'nodeport', 'external-ips', 'load-balancer-ips', 'external-masquerade', 'remote-endpoints'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [lbService(endpoints(BOTH_NODES))]);
      await ctx.startKubeLb();
      for (const [what, ip, port] of [['NodePort', NODE_IP, HTTP_NODE_PORT], ['external IP', EXTERNAL_IP, 80], ['load-balancer IP', LB_IP, 80]] as const) {
        const tcp = await ctx.externalClient('tcp', ip, port, 30, { reportSource: true });
        answeredBy(tcp, BOTH_NODES, `TCP to the ${what}`);
        // Masqueraded to node-a's address, so that node-b's replies come back through node-a.
        assert.deepEqual(sourcesSeen(tcp), [ctx.address(NODE_IP)], `TCP to the ${what}: the servers saw ${JSON.stringify(tcp.seenFrom)}`);
      }
      answeredBy(await ctx.externalClient('udp', NODE_IP, DNS_NODE_PORT, 30), BOTH_NODES, 'UDP to the NodePort');
      answeredBy(await ctx.externalClient('udp', LB_IP, 53, 30), BOTH_NODES, 'UDP to the load-balancer IP');
    },
  },
  {
    name: "a host-network endpoint of this node and a pod endpoint on the other serve a cluster IP and a NodePort, from a pod and from outside; this node's own endpoint sees the outside client's address",
    needs: ['tcp', 'nodeport', 'remote-endpoints', 'host-network-endpoints'],
    pods: pods.filter((p) => ['client', 'web-4'].includes(p.name)),
    async run(ctx) {
      await waitForLine(ctx.sandbox.spawnAt('host', process.execPath, [path.join(testLibDir, 'pod-server.js'), HOST_SERVER, String(SERVER_TCP_PORTS[0]), '']), /ready/, slow(10_000), 'the host-network server on node-a');
      const hostEndpoint: EndpointSpec = { ip: NODE_IP, ready: true, nodeName: 'node-a', zone: NODES['node-a'].zone };
      ctx.writeServices('web.yaml', [
        { name: 'web', clusterIP: VIP, type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: SERVER_TCP_PORTS[0]!, protocol: 'TCP', nodePort: HTTP_NODE_PORT }], endpoints: [hostEndpoint, ...endpoints(['web-4'])] },
      ]);
      await ctx.startKubeLb();
      answeredBy(await ctx.client('client', 'tcp', VIP, 80, 30), [HOST_SERVER, 'web-4'], 'TCP to the cluster IP from a pod');
      answeredBy(await ctx.client('client', 'tcp', NODE_IP, HTTP_NODE_PORT, 30), [HOST_SERVER, 'web-4'], 'TCP to the NodePort from a pod');
      const outside = await ctx.externalClient('tcp', NODE_IP, HTTP_NODE_PORT, 30, { reportSource: true });
      answeredBy(outside, [HOST_SERVER, 'web-4'], 'TCP to the NodePort from outside');
      // The node's stack delivers to its own endpoint: nothing to masquerade, as under kube-proxy.
      assert.deepEqual(Object.keys(outside.seenFrom?.[HOST_SERVER] ?? {}), [ctx.address(EXTERNAL_CLIENT_IPS[0])], `the host-network endpoint saw ${JSON.stringify(outside.seenFrom)}`);
    },
  },
  {
    name: 'a real HTTP server and client: curl through a NodePort reaches nginx on both nodes',
    needs: ['tcp', 'nodeport', 'remote-endpoints'],
    pods: pods.map((p) => (p.name === 'web-1' || p.name === 'web-4' ? { ...p, serves: false } : p)),
    async run(ctx) {
      await ctx.sandbox.startNginx('web-1', 8080);
      await ctx.sandbox.startNginx('web-4', 8080);
      ctx.writeServices('web.yaml', [lbService(endpoints(BOTH_NODES), { type: 'NodePort', externalIPs: undefined, loadBalancerIngress: undefined })]);
      await ctx.startKubeLb();
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) seen.add((await ctx.curl('external', ctx.httpUrl(NODE_IP, HTTP_NODE_PORT))).trim());
      assert.deepEqual([...seen].sort(), BOTH_NODES);
    },
  },
  {
    name: 'externalTrafficPolicy Local: outside traffic reaches local endpoints with its source kept; the health check node port counts them',
    needs: ['tcp', 'udp', 'nodeport', 'load-balancer-ips', 'external-traffic-policy-local', 'remote-endpoints'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [
        lbService(endpoints(BOTH_NODES), { externalTrafficPolicy: 'Local', healthCheckNodePort: HEALTH_NODE_PORT }),
        // Endpoints on node-b only: outside traffic to this node is dropped, and the health check says so.
        lbService(endpoints(['web-5']), {
          name: 'remote',
          clusterIP: '10.96.0.20',
          externalIPs: undefined,
          loadBalancerIngress: ['198.51.100.20'],
          ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30081 }],
          externalTrafficPolicy: 'Local',
          healthCheckNodePort: HEALTH_NODE_PORT + 1,
        }),
      ]);
      await ctx.startKubeLb();
      for (const [what, ip, port] of [['NodePort', NODE_IP, HTTP_NODE_PORT], ['load-balancer IP', LB_IP, 80]] as const) {
        const tcp = await ctx.externalClient('tcp', ip, port, 20, { reportSource: true });
        answeredBy(tcp, ['web-1'], `TCP to the ${what}`);
        assert.deepEqual(sourcesSeen(tcp), [ctx.address(EXTERNAL_CLIENT_IPS[0])], `TCP to the ${what}: the client's address is kept`);
      }
      answeredBy(await ctx.externalClient('udp', NODE_IP, DNS_NODE_PORT, 20), ['web-1'], 'UDP to the NodePort');
      // From a pod, the load-balancer IP is served as Cluster.
      answeredBy(await ctx.client('client', 'tcp', LB_IP, 80, 30), BOTH_NODES, 'TCP from a pod to the load-balancer IP');
      const dropped = await ctx.externalClient('tcp', NODE_IP, 30081, 2);
      assert.equal(dropped.failures, 2, `no local endpoint: ${JSON.stringify(dropped.answers)}`);

      // inspect shows each frontend with where outside traffic goes: the local endpoint for the external kinds.
      const view = JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as { kind: string; frontend: { ip: string; port: number }; destinations: { ip: string }[] }[];
      const seen = (ip: string, port: number) => view.find((v) => v.frontend.ip === ctx.address(ip) && v.frontend.port === port);
      assert.deepEqual(seen(NODE_IP, HTTP_NODE_PORT)?.kind, 'NodePort');
      assert.deepEqual(seen(NODE_IP, HTTP_NODE_PORT)?.destinations.map((d) => d.ip), [podAddress(ctx, 'web-1')], 'the NodePort: local endpoints only');
      assert.deepEqual(seen(LB_IP, 80)?.kind, 'LoadBalancerIP');
      assert.deepEqual(seen(LB_IP, 80)?.destinations.map((d) => d.ip), [podAddress(ctx, 'web-1')], 'the load-balancer IP: local endpoints only');
      assert.deepEqual(seen(VIP, 80)?.destinations.map((d) => d.ip).sort(), BOTH_NODES.map((n) => podAddress(ctx, n)).sort(), 'the ClusterIP: every endpoint');

      const health = JSON.parse(await ctx.curl('external', ctx.httpUrl(NODE_IP, HEALTH_NODE_PORT))) as unknown;
      assert.deepEqual(health, { service: { namespace: 'default', name: 'web' }, localEndpoints: 1, serviceProxyHealthy: true });
      await assert.rejects(ctx.curl('external', ctx.httpUrl(NODE_IP, HEALTH_NODE_PORT + 1)), /503/, 'no local endpoint: 503');
    },
  },
  {
    name: 'loadBalancerSourceRanges: only sources inside the ranges reach the load-balancer IP',
    needs: ['tcp', 'load-balancer-ips', 'source-ranges'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [lbService(endpoints(BOTH_NODES), { loadBalancerSourceRanges: [`${EXTERNAL_CLIENT_IPS[0]}/32`] })]);
      await ctx.startKubeLb();
      answeredBy(await ctx.externalClient('tcp', LB_IP, 80, 20, { source: EXTERNAL_CLIENT_IPS[0] }), BOTH_NODES, 'an allowed source');
      const denied = await ctx.externalClient('tcp', LB_IP, 80, 1, { source: EXTERNAL_CLIENT_IPS[1] });
      assert.equal(denied.failures, 1, `a source outside the ranges was answered: ${JSON.stringify(denied.answers)}`);
    },
  },
  {
    name: 'internalTrafficPolicy Local: pods reach only endpoints on their node; none there, no answer',
    needs: ['tcp', 'udp', 'internal-traffic-policy-local', 'remote-endpoints'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [
        { ...lbService(endpoints(['web-1', 'web-2', 'web-4', 'web-5']), { type: 'ClusterIP', externalIPs: undefined, loadBalancerIngress: undefined }), ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }], internalTrafficPolicy: 'Local' },
        { name: 'remote', clusterIP: '10.96.0.20', internalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: endpoints(['web-4']) },
      ]);
      await ctx.startKubeLb();
      answeredBy(await ctx.client('client', 'tcp', VIP, 80, 30), ['web-1', 'web-2'], 'TCP');
      answeredBy(await ctx.client('client', 'udp', VIP, 53, 30), ['web-1', 'web-2'], 'UDP');
      const none = await ctx.client('client', 'tcp', '10.96.0.20', 80, 1);
      assert.equal(none.failures, 1, `only a remote endpoint, yet answered: ${JSON.stringify(none.answers)}`);
    },
  },
  {
    name: 'terminating endpoints serve while nothing ready is left, and stop once one is ready',
    needs: ['tcp', 'terminating-endpoints', 'remote-endpoints'],
    pods,
    async run(ctx) {
      const terminating = (names: string[]): EndpointSpec[] => endpoints(names).map((e) => ({ ...e, ready: false, serving: true, terminating: true }));
      ctx.writeServices('web.yaml', [{ name: 'web', clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: terminating(['web-1', 'web-4']) }]);
      await ctx.startKubeLb();
      answeredBy(await ctx.client('client', 'tcp', VIP, 80, 20), BOTH_NODES, 'only terminating endpoints');
      ctx.writeServices('web.yaml', [{ name: 'web', clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: [...terminating(['web-1', 'web-4']), ...endpoints(['web-2'])] }]);
      await ctx.waitUntil('the ready endpoint takes over', 10_000, async () => {
        const r = await ctx.client('client', 'tcp', VIP, 80, 10);
        return r.failures === 0 && Object.keys(r.answers).join() === 'web-2';
      });
    },
  },
  {
    name: 'topology: trafficDistribution PreferClose keeps traffic in the zone',
    needs: ['tcp', 'topology', 'remote-endpoints'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [{ name: 'web', clusterIP: VIP, trafficDistribution: 'PreferClose', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: endpoints(['web-1', 'web-4', 'web-5']) }]);
      await ctx.startKubeLb();
      answeredBy(await ctx.client('client', 'tcp', VIP, 80, 20), ['web-1'], 'zone-a only');
    },
  },
  {
    name: 'sessionAffinity ClientIP: one client keeps its endpoint',
    needs: ['tcp', 'udp', 'session-affinity', 'remote-endpoints'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [{ ...lbService(endpoints(['web-1', 'web-2', 'web-4', 'web-5']), { type: 'ClusterIP', externalIPs: undefined, loadBalancerIngress: undefined }), ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }], sessionAffinityTimeoutSeconds: 600 }]);
      await ctx.startKubeLb();
      const tcp = await ctx.client('client', 'tcp', VIP, 80, 30);
      assert.equal(tcp.failures, 0, JSON.stringify(tcp.errors));
      assert.equal(Object.keys(tcp.answers).length, 1, `TCP went to ${JSON.stringify(tcp.answers)}`);
      const udp = await ctx.client('client', 'udp', VIP, 53, 30);
      assert.equal(Object.keys(udp.answers).length, 1, `UDP went to ${JSON.stringify(udp.answers)}`);
    },
  },
  {
    name: 'kube-lb.io/lb-algorithm: maglev: each client port, from a pod or from outside, reaches the endpoint the Maglev table names, before and after an endpoint goes',
    needs: ['tcp', 'maglev', 'remote-endpoints', 'load-balancer-ips', 'external-masquerade', 'node-originated'],
    pods,
    async run(ctx) {
      const maglevWeb = (names: string[]): ServiceSpec => ({
        ...lbService(endpoints(names), { externalIPs: undefined }),
        annotations: { 'kube-lb.io/lb-algorithm': 'maglev' },
        ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: HTTP_NODE_PORT }],
      });
      /** The pod the TypeScript reference sends a flow to (the row's addresses, as the context serves them), with kube-lb's default table size. */
      const predicted = (names: string[], saddr: string, sport: number, daddr: string): string => {
        const table = maglevTable(names.map((n) => ({ ip: podAddress(ctx, n), port: 8080 })), DEFAULT_MAGLEV_TABLE_SIZE);
        const flow = { family: ctx.family, saddr: ctx.address(saddr), sport, daddr: ctx.address(daddr), dport: 80, protocol: 'TCP' as const };
        const { ip } = maglevPick(table, flow)!;
        return names.find((n) => podAddress(ctx, n) === ip)!;
      };
      /** One connection from each port, from a pod to the ClusterIP and from outside to the load-balancer IP. */
      const checkPorts = async (names: string[], ports: number[], when: string): Promise<void> => {
        for (const sourcePort of ports) {
          answeredBy(await ctx.client('client', 'tcp', VIP, 80, 1, { sourcePort }), [predicted(names, ipOf('client'), sourcePort, VIP)], `from the client pod's port ${sourcePort} ${when}`);
          const fromOutside = await ctx.externalClient('tcp', LB_IP, 80, 1, { sourcePort });
          answeredBy(fromOutside, [predicted(names, EXTERNAL_CLIENT_IPS[0], sourcePort, LB_IP)], `from outside, port ${sourcePort}, to the load-balancer IP ${when}`);
        }
      };
      const all = ['web-1', 'web-2', 'web-4', 'web-5'];
      ctx.writeServices('web.yaml', [maglevWeb(all)]);
      await ctx.startKubeLb();
      // Random choice would match the prediction for all of them by a chance of 4^-20.
      const ports = Array.from({ length: 10 }, (_, i) => 40201 + i);
      assert.ok(new Set(ports.map((p) => predicted(all, ipOf('client'), p, VIP))).size > 1, 'the ports chosen reach more than one endpoint');
      await checkPorts(all, ports, 'with four endpoints');
      // The node's own sockets are balanced at connect, before they have a port to hash: at random.
      const fromNode = await ctx.hostClient('tcp', VIP, 80, 20);
      assert.equal(fromNode.failures, 0, JSON.stringify(fromNode.errors));
      assert.ok(Object.keys(fromNode.answers).length > 1, `the node's connections spread: ${JSON.stringify(fromNode.answers)}`);
      const left = all.filter((n) => n !== 'web-5');
      ctx.writeServices('web.yaml', [maglevWeb(left)]);
      // Read back from the kernel: a batch of connections that misses web-5 by chance would not prove it gone.
      await ctx.waitUntil('web-5 removed', 15_000, async () => {
        const view = JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as { destinations: { ip: string }[] }[];
        return view.length > 0 && view.every((v) => !v.destinations.some((d) => d.ip === podAddress(ctx, 'web-5')));
      });
      // Other ports: the clients' closed connections hold theirs a while (TIME_WAIT).
      await checkPorts(left, ports.map((p) => p + 100), 'after web-5 went');
    },
  },
  {
    name: 'a service without endpoints refuses TCP and UDP from pods rather than let them time out',
    needs: ['tcp', 'udp', 'reject-without-endpoints'],
    pods,
    async run(ctx) {
      ctx.writeServices('idle.yaml', [lbService(endpoints([], ['web-1']), { name: 'idle' })]);
      await ctx.startKubeLb();
      assertRefused(await ctx.client('client', 'tcp', VIP, 80, 3, { timeoutMs: REFUSAL_MS }), 'TCP from a pod');
      assertRefused(await ctx.client('client', 'udp', VIP, 53, 3, { timeoutMs: REFUSAL_MS }), 'UDP from a pod');
    },
  },
  {
    name: 'a service without endpoints refuses TCP and UDP from the node itself rather than let them time out',
    needs: ['tcp', 'udp', 'reject-without-endpoints', 'node-originated'],
    pods,
    async run(ctx) {
      ctx.writeServices('idle.yaml', [lbService(endpoints([], ['web-1']), { name: 'idle' })]);
      await ctx.startKubeLb();
      assertRefused(await ctx.hostClient('tcp', VIP, 80, 3, { timeoutMs: REFUSAL_MS }), 'TCP from the host');
      assertRefused(await ctx.hostClient('udp', VIP, 53, 3, { timeoutMs: REFUSAL_MS }), 'UDP from the host');
    },
  },
  {
    name: 'a NodePort without endpoints refuses connections from outside rather than let them time out',
    needs: ['tcp', 'reject-without-endpoints', 'nodeport'],
    pods,
    async run(ctx) {
      ctx.writeServices('idle.yaml', [lbService(endpoints([], ['web-1']), { name: 'idle' })]);
      await ctx.startKubeLb();
      assertRefused(await ctx.externalClient('tcp', NODE_IP, HTTP_NODE_PORT, 3, { timeoutMs: REFUSAL_MS }), 'TCP from outside');
    },
  },
  {
    name: 'traffic from the node itself reaches the ClusterIP, NodePort, external and load-balancer IPs',
    needs: ['tcp', 'udp', 'node-originated', 'nodeport', 'external-ips', 'load-balancer-ips', 'remote-endpoints'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [lbService(endpoints(BOTH_NODES))]);
      await ctx.startKubeLb();
      for (const [what, ip, port] of [['ClusterIP', VIP, 80], ['NodePort', NODE_IP, HTTP_NODE_PORT], ['external IP', EXTERNAL_IP, 80], ['load-balancer IP', LB_IP, 80]] as const) {
        answeredBy(await ctx.hostClient('tcp', ip, port, 20), BOTH_NODES, `TCP from the host to the ${what}`);
      }
      answeredBy(await ctx.hostClient('udp', VIP, 53, 20), BOTH_NODES, 'UDP from the host to the ClusterIP');
    },
  },
  {
    name: "the node's own processes are shown the frontend as their peer: getpeername over TCP, and the source of replies to an unconnected UDP socket, as a DNS resolver checks",
    needs: ['tcp', 'udp', 'node-originated', 'nodeport', 'external-ips', 'load-balancer-ips'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [lbService(endpoints(['web-1']))]);
      await ctx.startKubeLb();
      for (const [ip, tcpPort, udpPort] of [[VIP, 80, 53], [NODE_IP, HTTP_NODE_PORT, DNS_NODE_PORT], [EXTERNAL_IP, 80, 53], [LB_IP, 80, 53]] as const) {
        const frontend = ctx.address(ip);
        const { stdout } = await ctx.sandbox.execInNode(process.execPath, [path.join(testLibDir, 'peer-client.js'), frontend, String(tcpPort), String(udpPort)]);
        assert.deepEqual(JSON.parse(stdout), { tcp: { peer: `${frontend}:${tcpPort}`, answer: 'web-1' }, udp: { peer: `${frontend}:${udpPort}`, answer: 'web-1' } }, frontend);
      }
    },
  },
  {
    name: "sessionAffinity ClientIP holds for the node's own connections",
    needs: ['tcp', 'udp', 'session-affinity', 'node-originated', 'remote-endpoints'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [{ ...lbService(endpoints(['web-1', 'web-2', 'web-4', 'web-5']), { type: 'ClusterIP', externalIPs: undefined, loadBalancerIngress: undefined }), ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }], sessionAffinityTimeoutSeconds: 600 }]);
      await ctx.startKubeLb();
      for (const [mode, port] of [['tcp', 80], ['udp', 53]] as const) {
        const r = await ctx.hostClient(mode, VIP, port, 30);
        assert.equal(r.failures, 0, `${mode}: ${JSON.stringify(r.errors)}`);
        assert.equal(Object.keys(r.answers).length, 1, `${mode} from the node went to ${JSON.stringify(r.answers)}`);
      }
    },
  },
  {
    name: 'NodePort on 127.0.0.1 when --nodeport-addresses includes it',
    needs: ['tcp', 'nodeport', 'localhost-nodeport', 'node-originated'],
    pods,
    async run(ctx) {
      ctx.writeServices('web.yaml', [lbService(endpoints(BOTH_NODES), { type: 'NodePort', externalIPs: undefined, loadBalancerIngress: undefined })]);
      await ctx.startKubeLb(process.env, ['--nodeport-addresses=127.0.0.0/8,172.18.0.0/24']);
      answeredBy(await ctx.hostClient('tcp', '127.0.0.1', HTTP_NODE_PORT, 20), BOTH_NODES, 'TCP from the host to 127.0.0.1');
      answeredBy(await ctx.externalClient('tcp', NODE_IP, HTTP_NODE_PORT, 20), BOTH_NODES, 'TCP from outside to the node address');
    },
  },
  {
    name: 'headless, ExternalName and other proxies\' services are left alone',
    needs: ['tcp', 'ignored-services'],
    pods,
    async run(ctx) {
      const http = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' as const }];
      ctx.writeServices('web.yaml', [{ name: 'web', clusterIP: VIP, ports: http, endpoints: endpoints(['web-1']) }]);
      ctx.writeServices('ignored.yaml', [
        { name: 'headless', clusterIP: 'None', ports: http, endpoints: endpoints(['web-2']) },
        { name: 'db', clusterIP: '', type: 'ExternalName', externalName: 'db.example.com', ports: [], endpoints: [] },
        { name: 'theirs', clusterIP: '10.96.0.40', labels: { 'service.kubernetes.io/service-proxy-name': 'another-proxy' }, ports: http, endpoints: endpoints(['web-3']) },
      ]);
      await ctx.startKubeLb();
      answeredBy(await ctx.client('client', 'tcp', VIP, 80, 5), ['web-1'], 'the ordinary service');
      const theirs = await ctx.client('client', 'tcp', '10.96.0.40', 80, 1);
      assert.equal(theirs.failures, 1, `another proxy's service was served: ${JSON.stringify(theirs.answers)}`);
      const view = JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as { frontend: { ip: string } }[];
      assert.deepEqual([...new Set(view.map((v) => v.frontend.ip))], [ctx.address(VIP)], 'only the ordinary service is programmed');
      assert.doesNotMatch(ctx.kubeLbLogs, /"level":(40|50)/, 'nothing to warn about');
    },
  },
  {
    name: "a cluster IP equal to a pod's address is refused: direct traffic to the pod stays direct",
    needs: ['tcp', 'invalid-cluster-ips'],
    pods,
    async run(ctx) {
      const hijacker = ipOf('web-2');
      ctx.writeServices('web.yaml', [
        { name: 'web', clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: endpoints(['web-1']) },
        { name: 'hijack', clusterIP: hijacker, ports: [{ name: 'http', port: 8080, targetPort: 8080, protocol: 'TCP' }], endpoints: endpoints(['web-1']) },
      ]);
      await ctx.startKubeLb();
      answeredBy(await ctx.client('client', 'tcp', hijacker, 8080, 10), ['web-2'], 'direct traffic to web-2');
      answeredBy(await ctx.client('client', 'tcp', VIP, 80, 5), ['web-1'], 'the valid service beside it');
      const refusal = ctx.kubeLbLogs.split('\n').find((l) => l.includes('"name":"hijack"') && l.includes('not serving'));
      assert.ok(refusal !== undefined && refusal.includes("pods' range"), `one warning names the service and why: ${ctx.kubeLbLogs.slice(-2000)}`);
    },
  },
  {
    name: 'two services claiming one ClusterIP and port: the older keeps it, the newer is refused by name',
    needs: ['tcp', 'frontend-conflicts'],
    pods,
    async run(ctx) {
      const http = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' as const }];
      ctx.writeServices('a.yaml', [{ name: 'newer', namespace: 'intruder', clusterIP: VIP, ports: http, endpoints: endpoints(['web-2']), createdAt: '2026-11-02T10:00:00Z' }]);
      ctx.writeServices('b.yaml', [{ name: 'older', clusterIP: VIP, ports: http, endpoints: endpoints(['web-1']), createdAt: '2026-11-01T10:00:00Z' }]);
      await ctx.startKubeLb();
      answeredBy(await ctx.client('client', 'tcp', VIP, 80, 10), ['web-1'], 'the older service');
      const refusals = ctx.kubeLbLogs.split('\n').filter((l) => l.includes('refused a frontend another service owns'));
      assert.equal(refusals.length, 1, `one log line: ${refusals.join('\n')}`);
      assert.match(refusals[0]!, /"namespace":"intruder","name":"newer".*default\/older/);
      ctx.removeFile('b.yaml');
      await ctx.waitUntil('the newer service takes over', 10_000, async () => {
        const r = await ctx.client('client', 'tcp', VIP, 80, 5);
        return r.failures === 0 && Object.keys(r.answers).join() === 'web-2';
      });
    },
  },
];
