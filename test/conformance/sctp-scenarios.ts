// The SCTP rows. They run only in the VM (test/vm/sctp.vm-test.ts): the
// host's kernel has no SCTP sockets, so no client could open an association.
import assert from 'node:assert/strict';
import type { EndpointSpec, ServiceSpec } from '../lib/manifests.js';
import { EXTERNAL_CLIENT_IPS, NODES } from '../lib/sandbox.js';
import { sctpClient, startSctpServers } from '../lib/sctp.js';
import { type Scenario, VIP, assertAnsweredBy, endpoints, pods } from './scenarios.js';

const NODE_IP = NODES['node-a'].ip;
const SCTP_PORT = 7777;
const SCTP_TARGET_PORT = 9999;
const SCTP_NODE_PORT = 30777;
const BOTH_NODES = ['web-1', 'web-4'];

function signallingService(eps: EndpointSpec[]): ServiceSpec {
  return { name: 'signalling', clusterIP: VIP, type: 'NodePort', ports: [{ name: 'sig', port: SCTP_PORT, targetPort: SCTP_TARGET_PORT, protocol: 'SCTP', nodePort: SCTP_NODE_PORT }], endpoints: eps };
}

export const sctpScenarios: Scenario[] = [
  {
    name: 'SCTP: a cluster IP from a pod and a NodePort from outside reach endpoints on both nodes, and a removed endpoint gets no new association',
    needs: ['sctp', 'nodeport', 'remote-endpoints', 'external-masquerade', 'endpoint-updates', 'inspect'],
    // The SCTP servers are Python programs; the pods serve nothing else.
    pods: pods.filter((p) => ['client', ...BOTH_NODES].includes(p.name)).map((p) => ({ ...p, serves: false })),
    async run(ctx) {
      await startSctpServers(ctx.sandbox, BOTH_NODES, SCTP_TARGET_PORT);
      ctx.writeServices('signalling.yaml', [signallingService(endpoints(BOTH_NODES))]);
      await ctx.startKubeLb();
      assertAnsweredBy(await sctpClient(ctx.sandbox, { pod: 'client' }, VIP, SCTP_PORT, 20), BOTH_NODES, 'SCTP to the cluster IP from a pod');
      assertAnsweredBy(await sctpClient(ctx.sandbox, 'external', NODE_IP, SCTP_NODE_PORT, 20, EXTERNAL_CLIENT_IPS[0]), BOTH_NODES, 'SCTP to the NodePort from outside');
      const shown = (JSON.parse(await ctx.kubeLb('inspect', '-o', 'json')) as { kind: string; frontend: { ip: string; port: number; protocol: string } }[]).map((v) => `${v.kind} ${v.frontend.ip}:${v.frontend.port}/${v.frontend.protocol}`);
      assert.deepEqual(shown.sort(), [`ClusterIP ${VIP}:${SCTP_PORT}/SCTP`, `NodePort ${NODE_IP}:${SCTP_NODE_PORT}/SCTP`], 'inspect reads the SCTP frontends back');

      ctx.writeServices('signalling.yaml', [signallingService(endpoints(['web-1']))]);
      await ctx.waitUntil('web-4 removed', 5000, async () => {
        const r = await sctpClient(ctx.sandbox, { pod: 'client' }, VIP, SCTP_PORT, 8);
        return r.failures === 0 && Object.keys(r.answers).join() === 'web-1';
      });
    },
  },
];
