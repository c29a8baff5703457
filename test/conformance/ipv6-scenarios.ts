// The IPv6 rows: a dual-stack service, an IPv6-only one, and traffic
// policy, affinity and the node's own traffic over IPv6, with real TCP and
// UDP in the sandbox's IPv6 network. Backends that serve IPv4 only
// show the capability table's reason.
import assert from 'node:assert/strict';
import type { EndpointSpec, ServiceSpec } from '../lib/manifests.js';
import { EXTERNAL_CLIENT_IPS6, NODES, podIpv6 } from '../lib/sandbox.js';
import { slow } from '../lib/slowdown.js';
import { type Scenario, VIP, assertAnsweredBy, endpoints, pods } from './scenarios.js';

const VIP6 = 'fd00:96::10';
const NODE_IP6 = NODES['node-a'].ip6;
/** In EXTERNAL_IP_RANGE6 and LOAD_BALANCER_IP_RANGE6, which the external client routes to node-a. */
const EXTERNAL_IP6 = 'fd00:203:0:113::10';
const LB_IP6 = 'fd00:198:51:100::10';
const BOTH_NODES = ['web-1', 'web-4'];
const ipv6Pods = pods.filter((p) => ['client', 'web-1', 'web-2', 'web-4'].includes(p.name));

/** The endpoints of both families of these pods, as the EndpointSlice controller lists them, one slice per family. */
function dualEndpoints(names: string[]): EndpointSpec[] {
  const v4 = endpoints(names);
  return [...v4, ...v4.map((e) => ({ ...e, ip: podIpv6(e.ip) }))];
}

const ports: ServiceSpec['ports'] = [
  { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 },
  { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP', nodePort: 30053 },
];

export const ipv6Scenarios: Scenario[] = [
  {
    name: 'IPv6, dual-stack: both cluster IPs from a pod, and the IPv6 NodePort, external and load-balancer IPs from outside (masqueraded), reach endpoints on both nodes over TCP and UDP; inspect shows IPv6 frontends bracketed',
    needs: ['ipv6', 'ipv6-from-outside', 'tcp', 'udp', 'nodeport', 'external-ips', 'load-balancer-ips', 'remote-endpoints', 'external-masquerade', 'inspect'],
    pods: ipv6Pods,
    async run(ctx) {
      ctx.useDualStack();
      ctx.writeServices('web.yaml', [
        { name: 'web', clusterIP: VIP, clusterIPs: [VIP, VIP6], type: 'LoadBalancer', externalIPs: [EXTERNAL_IP6], loadBalancerIngress: [LB_IP6], ports, endpoints: dualEndpoints(BOTH_NODES) },
      ]);
      await ctx.startKubeLb();
      for (const [vip, what] of [[VIP6, 'IPv6'], [VIP, 'IPv4']] as const) {
        assertAnsweredBy(await ctx.client('client', 'tcp', vip, 80, 20), BOTH_NODES, `TCP to the ${what} cluster IP from a pod`);
        assertAnsweredBy(await ctx.client('client', 'udp', vip, 53, 20), BOTH_NODES, `UDP to the ${what} cluster IP from a pod`);
      }
      for (const [what, ip, tcpPort, udpPort] of [['NodePort', NODE_IP6, 30080, 30053], ['external IP', EXTERNAL_IP6, 80, 53], ['load-balancer IP', LB_IP6, 80, 53]] as const) {
        for (const mode of ['tcp', 'udp'] as const) {
          const outside = await ctx.externalClient(mode, ip, mode === 'tcp' ? tcpPort : udpPort, 20, { reportSource: true });
          assertAnsweredBy(outside, BOTH_NODES, `${mode} to the IPv6 ${what} from outside`);
          const sources = new Set(Object.values(outside.seenFrom ?? {}).flatMap((bySource) => Object.keys(bySource)));
          assert.ok(sources.size > 0 && !sources.has(EXTERNAL_CLIENT_IPS6[0]), `${mode} to the IPv6 ${what}: masqueraded, the endpoints saw ${[...sources].join(', ')}`);
        }
      }
      const text = await ctx.kubeLb('inspect');
      assert.match(text, /\[fd00:96::10\]:80\/TCP\s+\[fd00:10:244::11\]:8080, \[fd00:10:244:128::14\]:8080\n/);
      assert.match(text, /\[fd00:18::2\]:30053\/UDP\s+\[fd00:10:244::11\]:5353, \[fd00:10:244:128::14\]:5353\n/);
      assert.match(text, /10\.96\.0\.10:80\/TCP\s+10\.244\.0\.11:8080, 10\.244\.128\.14:8080\n/);
    },
  },
  {
    name: 'IPv6 only: when its endpoint is removed, a long-lived UDP flow moves to the new one and new TCP connections and UDP flows go there too',
    needs: ['ipv6', 'tcp', 'udp', 'endpoint-updates', 'udp-flows-follow-endpoints', 'remote-endpoints'],
    pods: ipv6Pods,
    async run(ctx) {
      ctx.useDualStack();
      const v6Only = (names: string[]): ServiceSpec => ({ name: 'web6', clusterIP: VIP6, ports: ports.map(({ nodePort: _, ...p }) => p), endpoints: dualEndpoints(names).filter((e) => e.ip.includes(':')) });
      ctx.writeServices('web6.yaml', [v6Only(['web-4'])]);
      await ctx.startKubeLb();
      const flow = ctx.client('client', 'udp-hold', VIP6, 53, slow(4000));
      await new Promise((r) => setTimeout(r, slow(1000)));
      ctx.writeServices('web6.yaml', [v6Only(['web-1'])]);
      const { order = [] } = await flow;
      assert.equal(order[0], 'web-4', `the flow starts on web-4: ${order.join(' ')}`);
      // 4 s at one datagram per 50 ms; the change lands well before the last second.
      const last = order.slice(-15);
      assert.ok(last.length === 15 && last.every((who) => who === 'web-1'), `the flow ends on web-1: ${order.join(' ')}`);
      assertAnsweredBy(await ctx.client('client', 'tcp', VIP6, 80, 10), ['web-1'], 'TCP after the change');
      assertAnsweredBy(await ctx.client('client', 'udp', VIP6, 53, 10), ['web-1'], 'UDP after the change');
    },
  },
  {
    name: "IPv6: the node's own processes reach an IPv6 cluster IP with endpoints on both nodes over TCP, UDP and connected UDP, whose socket moves off an endpoint that is removed",
    needs: ['ipv6', 'ipv6-node-originated', 'tcp', 'udp', 'node-originated', 'remote-endpoints', 'udp-flows-follow-endpoints'],
    pods: ipv6Pods,
    async run(ctx) {
      ctx.useDualStack();
      const web6 = (names: string[]): ServiceSpec => ({ name: 'web6', clusterIP: VIP6, ports: ports.map(({ nodePort: _, ...p }) => p), endpoints: dualEndpoints(names).filter((e) => e.ip.includes(':')) });
      ctx.writeServices('web6.yaml', [web6(BOTH_NODES)]);
      await ctx.startKubeLb();
      assertAnsweredBy(await ctx.hostClient('tcp', VIP6, 80, 20), BOTH_NODES, 'TCP from the node');
      assertAnsweredBy(await ctx.hostClient('udp', VIP6, 53, 20), BOTH_NODES, 'UDP from the node, answered from the cluster IP');
      const logsBefore = ctx.kubeLbLogs.length;
      ctx.writeServices('web6.yaml', [web6(['web-4'])]);
      // The connected socket below must start on web-4: once the sync is done, no
      // stale UDP flow to web-1 is left for its source port to meet again.
      await ctx.waitUntil('the sync that removes web-1 is done', 10_000, async () => /"endpointChanges":[1-9][^\n]*"msg":"synced"/.test(ctx.kubeLbLogs.slice(logsBefore)));
      assertAnsweredBy(await ctx.hostClient('udp', VIP6, 53, 10), ['web-4'], 'UDP from the node once web-4 alone is left');
      const flow = ctx.hostClient('udp-connected', VIP6, 53, slow(4000));
      await new Promise((r) => setTimeout(r, slow(1000)));
      ctx.writeServices('web6.yaml', [web6(['web-1'])]);
      const { order = [] } = await flow;
      assert.equal(order[0], 'web-4', `the connected socket starts on web-4: ${order.join(' ')}`);
      const last = order.slice(-15);
      assert.ok(last.length === 15 && last.every((who) => who === 'web-1'), `the connected socket ends on web-1: ${order.join(' ')}`);
    },
  },
  {
    name: 'IPv6: externalTrafficPolicy Local keeps the outside client\'s source on the NodePort and reaches local endpoints only; ClientIP affinity keeps a pod on one endpoint; the node itself reaches the IPv6 cluster IP',
    needs: ['ipv6', 'ipv6-from-outside', 'ipv6-node-originated', 'tcp', 'udp', 'nodeport', 'external-traffic-policy-local', 'session-affinity', 'node-originated', 'remote-endpoints'],
    pods: ipv6Pods,
    async run(ctx) {
      ctx.useDualStack();
      const eps = dualEndpoints(['web-1', 'web-2', 'web-4']);
      ctx.writeServices('web.yaml', [
        { name: 'web', clusterIP: VIP, clusterIPs: [VIP, VIP6], type: 'NodePort', externalTrafficPolicy: 'Local', ports, endpoints: eps },
        { name: 'sticky', clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'fd00:96::20'], ports: ports.map(({ nodePort: _, ...p }) => p), sessionAffinityTimeoutSeconds: 600, endpoints: eps },
      ]);
      await ctx.startKubeLb();
      const outside = await ctx.externalClient('tcp', NODE_IP6, 30080, 20, { reportSource: true });
      assertAnsweredBy(outside, ['web-1', 'web-2'], 'TCP to the IPv6 NodePort from outside, local endpoints only');
      const sources = new Set(Object.values(outside.seenFrom ?? {}).flatMap((bySource) => Object.keys(bySource)));
      assert.deepEqual([...sources], [EXTERNAL_CLIENT_IPS6[0]], "the outside client's IPv6 address is kept");
      for (const mode of ['tcp', 'udp'] as const) {
        const sticky = await ctx.client('client', mode, 'fd00:96::20', mode === 'tcp' ? 80 : 53, 20);
        assert.equal(sticky.failures, 0, JSON.stringify(sticky.errors));
        assert.equal(Object.keys(sticky.answers).length, 1, `${mode} with ClientIP affinity went to ${JSON.stringify(sticky.answers)}`);
      }
      assertAnsweredBy(await ctx.hostClient('tcp', VIP6, 80, 40), ['web-1', 'web-2', 'web-4'], 'TCP from the node itself to the IPv6 cluster IP');
    },
  },
];
