// --detect-local-mode: which mode a command line picks, what each mode
// needs, and which interfaces the ebpf backend takes for pod interfaces.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type LocalTrafficFlags, clusterCidrs, detectLocalMode, localTraffic } from '../../src/config/local-traffic.js';
import { parseCidr } from '../../src/net/ip.js';
import { podInterfaces } from '../../src/backends/ebpf/attach.js';
import type { Link } from '../../src/backends/ebpf/links.js';
import { UsageError } from '../../src/flags.js';

/** A usage error (one sentence, exit code 2) whose message matches. */
const usage = (message: RegExp) => (err: unknown): boolean => err instanceof UsageError && message.test(err.message);

const none: LocalTrafficFlags = { mode: undefined, clusterCidrs: [], bridge: undefined, prefix: undefined };
const v4 = [parseCidr('10.244.0.0/16')];

describe('detect-local-mode', () => {
  it("defaults to kube-proxy's ClusterCIDR, unless a lone companion flag names the pods another way", () => {
    assert.equal(detectLocalMode(none), 'ClusterCIDR');
    assert.equal(detectLocalMode({ ...none, clusterCidrs: v4, prefix: 'veth' }), 'ClusterCIDR');
    assert.equal(detectLocalMode({ ...none, prefix: 'veth' }), 'InterfaceNamePrefix');
    assert.equal(detectLocalMode({ ...none, bridge: 'cni0' }), 'BridgeInterface');
    assert.equal(detectLocalMode({ ...none, mode: 'NodeCIDR', prefix: 'veth' }), 'NodeCIDR');
    assert.throws(() => detectLocalMode({ ...none, prefix: 'veth', bridge: 'cni0' }), usage(/give --detect-local-mode to choose one$/));
  });

  it('each mode takes what it needs, and refuses to run without it, as kube-proxy does', () => {
    assert.deepEqual(localTraffic('ClusterCIDR', none, undefined), { IPv4: null, IPv6: null });
    assert.deepEqual(localTraffic('ClusterCIDR', { ...none, clusterCidrs: v4 }, undefined), { IPv4: { by: 'cidr', cidr: '10.244.0.0/16' }, IPv6: null });
    assert.deepEqual(localTraffic('NodeCIDR', { ...none, clusterCidrs: v4 }, [parseCidr('10.244.1.0/24')]), { IPv4: { by: 'cidr', cidr: '10.244.1.0/24' }, IPv6: null });
    assert.throws(() => localTraffic('NodeCIDR', none, []), /the node has no pod CIDR/);
    assert.throws(() => localTraffic('BridgeInterface', none, undefined), usage(/^--detect-local-mode=BridgeInterface needs --pod-bridge-interface/));
    assert.throws(() => localTraffic('InterfaceNamePrefix', none, undefined), usage(/^--detect-local-mode=InterfaceNamePrefix needs --pod-interface-name-prefix/));
  });
});

describe('--cluster-cidr', () => {
  it('takes one CIDR, or one of each family comma-separated, and tells each family its own, as kube-proxy does', () => {
    assert.deepEqual(clusterCidrs(undefined), []);
    const both = clusterCidrs('10.244.0.0/16, fd00:10:244::/48');
    assert.deepEqual(both, [parseCidr('10.244.0.0/16'), parseCidr('fd00:10:244::/48')]);
    assert.deepEqual(localTraffic('ClusterCIDR', { ...none, clusterCidrs: both }, undefined), {
      IPv4: { by: 'cidr', cidr: '10.244.0.0/16' },
      IPv6: { by: 'cidr', cidr: 'fd00:10:244::/48' },
    });
    assert.deepEqual(localTraffic('ClusterCIDR', { ...none, clusterCidrs: clusterCidrs('fd00:10:244::/48') }, undefined), { IPv4: null, IPv6: { by: 'cidr', cidr: 'fd00:10:244::/48' } });
    const prefix = { by: 'prefix', prefix: 'veth' } as const;
    assert.deepEqual(localTraffic('InterfaceNamePrefix', { ...none, prefix: 'veth' }, undefined), { IPv4: prefix, IPv6: prefix });
  });

  it('refuses two of one family, more than two, and what is not a CIDR', () => {
    assert.throws(() => clusterCidrs('10.244.0.0/16,10.245.0.0/16'), usage(/at most one CIDR per family/));
    assert.throws(() => clusterCidrs('10.244.0.0/16,fd00::/48,fd01::/48'), usage(/at most one CIDR per family/));
    assert.throws(() => clusterCidrs('10.244.0.0'), usage(/^--cluster-cidr=10.244.0.0: not a CIDR/));
  });
});

describe('pod interfaces (ebpf)', () => {
  const link = (ifindex: number, name: string, over: Partial<Link> = {}): Link => ({ ifindex, name, ipv4: [], ipv6: [], master: null, kind: 'veth', ...over });
  const links = [
    link(1, 'eth0', { ipv4: ['172.18.0.2'], kind: null }),
    link(2, 'cali1'),
    link(3, 'cali2'),
    link(4, 'cni0', { kind: 'bridge', ipv4: ['10.244.0.1'] }),
    link(5, 'veth1', { master: 'cni0' }),
    link(6, 'veth2', { master: 'cni0' }),
    link(7, 'flannel.1', { kind: 'vxlan' }),
  ];
  const routes = [
    { dst: '10.244.0.7', dev: 'cali1' },
    { dst: '10.244.0.8', dev: 'cali2' },
    { dst: '10.244.0.0/24', dev: 'cni0' },
    { dst: '172.18.0.0/24', dev: 'eth0' },
    // A wider route than the range, as onto an overlay, is no pod's.
    { dst: '10.0.0.0/8', dev: 'flannel.1' },
  ];
  const found = (pods: Parameters<typeof podInterfaces>[0]): number[] => [...podInterfaces(pods, links, routes)].sort((a, b) => a - b);

  it('by name prefix, by bridge port, and by the direct routes into a range, with bridges standing for their ports', () => {
    assert.deepEqual(found({ by: 'prefix', prefix: 'cali' }), [2, 3]);
    assert.deepEqual(found({ by: 'bridge', bridge: 'cni0' }), [5, 6]);
    assert.deepEqual(found({ by: 'cidr', cidr: '10.244.0.0/16' }), [2, 3, 5, 6]);
    assert.deepEqual(found({ by: 'cidr', cidr: '10.244.1.0/24' }), []);
  });
});
