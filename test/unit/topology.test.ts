// categorizeEndpoints against tables in the style of kube-proxy's
// topology_test.go: which endpoints each traffic policy gets on this node.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type PortEndpoint, categorizeEndpoints } from '../../src/model/topology.js';

const node = { nodeName: 'node-a', zone: 'zone-a' };

/** "ip" (ready, remote), with flags: L local, N not ready, T serving and terminating, z:/n: hints. */
function ep(spec: string): PortEndpoint {
  const [ip, ...flags] = spec.split(' ');
  const zones = flags.filter((f) => f.startsWith('z:')).map((f) => f.slice(2));
  const nodes = flags.filter((f) => f.startsWith('n:')).map((f) => f.slice(2));
  const terminating = flags.includes('T');
  return {
    ip: ip!,
    port: 80,
    ready: !flags.includes('N') && !terminating,
    serving: !flags.includes('N') || terminating,
    terminating,
    local: flags.includes('L'),
    zoneHints: zones.length > 0 ? zones : null,
    nodeHints: nodes.length > 0 ? nodes : null,
  };
}

interface Case {
  name: string;
  endpoints: string[];
  usesCluster: boolean;
  usesLocal: boolean;
  cluster: string[];
  local: string[];
  hasAny: boolean;
}

const cases: Case[] = [
  { name: 'cluster: ready endpoints only', endpoints: ['10.0.0.1', '10.0.0.2 N', '10.0.0.3 L'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.1', '10.0.0.3'], local: [], hasAny: true },
  { name: 'cluster: no ready endpoints falls back to serving-terminating ones', endpoints: ['10.0.0.1 T', '10.0.0.2 N', '10.0.0.3 T L'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.1', '10.0.0.3'], local: [], hasAny: true },
  { name: 'cluster: terminating ones are not used while one is ready', endpoints: ['10.0.0.1 T', '10.0.0.2'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.2'], local: [], hasAny: true },
  { name: 'nothing usable anywhere', endpoints: ['10.0.0.1 N', '10.0.0.2 N L'], usesCluster: true, usesLocal: true, cluster: [], local: [], hasAny: false },
  { name: 'no endpoints at all', endpoints: [], usesCluster: true, usesLocal: true, cluster: [], local: [], hasAny: false },
  { name: 'local: ready local endpoints only', endpoints: ['10.0.0.1 L', '10.0.0.2', '10.0.0.3 L N'], usesCluster: false, usesLocal: true, cluster: [], local: ['10.0.0.1'], hasAny: true },
  { name: 'local: no local endpoint, remote ones exist', endpoints: ['10.0.0.1', '10.0.0.2'], usesCluster: false, usesLocal: true, cluster: [], local: [], hasAny: true },
  { name: 'local: falls back to local serving-terminating ones', endpoints: ['10.0.0.1 L T', '10.0.0.2'], usesCluster: false, usesLocal: true, cluster: [], local: ['10.0.0.1'], hasAny: true },
  { name: 'both sets', endpoints: ['10.0.0.1 L', '10.0.0.2'], usesCluster: true, usesLocal: true, cluster: ['10.0.0.1', '10.0.0.2'], local: ['10.0.0.1'], hasAny: true },
  { name: 'zone hints: only endpoints hinted to this zone', endpoints: ['10.0.0.1 z:zone-a', '10.0.0.2 z:zone-b', '10.0.0.3 z:zone-a'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.1', '10.0.0.3'], local: [], hasAny: true },
  { name: 'zone hints ignored unless every ready endpoint has them', endpoints: ['10.0.0.1 z:zone-a', '10.0.0.2', '10.0.0.3 z:zone-b'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.1', '10.0.0.2', '10.0.0.3'], local: [], hasAny: true },
  { name: 'zone hints ignored when none is for this zone', endpoints: ['10.0.0.1 z:zone-b', '10.0.0.2 z:zone-c'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.1', '10.0.0.2'], local: [], hasAny: true },
  { name: 'hints of not-ready endpoints do not count', endpoints: ['10.0.0.1 z:zone-a', '10.0.0.2 N'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.1'], local: [], hasAny: true },
  { name: 'node hints: only endpoints hinted to this node', endpoints: ['10.0.0.1 n:node-a z:zone-a', '10.0.0.2 n:node-b z:zone-a'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.1'], local: [], hasAny: true },
  { name: 'node hints missing on one endpoint: zone hints decide', endpoints: ['10.0.0.1 n:node-a z:zone-a', '10.0.0.2 z:zone-a', '10.0.0.3 z:zone-b'], usesCluster: true, usesLocal: false, cluster: ['10.0.0.1', '10.0.0.2'], local: [], hasAny: true },
  { name: 'topology does not apply to the local set', endpoints: ['10.0.0.1 L z:zone-b', '10.0.0.2 z:zone-a'], usesCluster: true, usesLocal: true, cluster: ['10.0.0.2'], local: ['10.0.0.1'], hasAny: true },
];

describe('categorizeEndpoints (kube-proxy topology.go)', () => {
  for (const c of cases) {
    test(c.name, () => {
      const got = categorizeEndpoints(c.endpoints.map(ep), node, c.usesCluster, c.usesLocal);
      assert.deepEqual(
        { cluster: got.cluster.destinations.map((d) => d.ip), local: got.local.destinations.map((d) => d.ip), hasAny: got.hasAnyEndpoints },
        { cluster: c.cluster, local: c.local, hasAny: c.hasAny },
      );
    });
  }
});

describe('onThisNode: the endpoints of each set on this node, for hairpin marking', () => {
  test('the cluster set names its local endpoints; the local set is all local', () => {
    const got = categorizeEndpoints(['10.0.0.1 L', '10.0.0.2', '10.0.0.3 L', '10.0.0.4 L N'].map(ep), node, true, true);
    assert.deepEqual(got.cluster.onThisNode.map((d) => d.ip), ['10.0.0.1', '10.0.0.3']);
    assert.deepEqual(got.local.onThisNode, got.local.destinations);
  });
  test('a local endpoint the set leaves out is not named', () => {
    const got = categorizeEndpoints(['10.0.0.1 L z:zone-b', '10.0.0.2 z:zone-a'].map(ep), node, true, false);
    assert.deepEqual(got.cluster.onThisNode, []);
  });
});
