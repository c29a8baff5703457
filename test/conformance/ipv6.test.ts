// The IPv6 rows on the host's backends: nftables and iptables (both modes)
// serve them; ebpf shows the capability table's reason (ipvs runs in the VM).
// Besides the IPv6 scenarios, core IPv4 rows whose addresses all have IPv6
// twins (ipv6-twins.ts) run again over IPv6.
import { ipv6Scenarios } from './ipv6-scenarios.js';
import { runConformance, runScenarios } from './suite.js';

const OVER_IPV6 = [
  'TCP and UDP on several ports spread over ready endpoints only',
  'endpoints added, made not ready and removed reach the datapath without waiting for a resync',
  'a TCP client that tried a cluster IP before its service was programmed gets through from the same source port once it is',
  'hairpin: a pod reaching its own service through itself gets its answers',
  'a held TCP connection survives a kube-lb restart',
  'internalTrafficPolicy Local: pods reach only endpoints on their node; none there, no answer',
  'terminating endpoints serve while nothing ready is left, and stop once one is ready',
  'topology: trafficDistribution PreferClose keeps traffic in the zone',
  'sessionAffinity ClientIP: one client keeps its endpoint',
];
for (const variant of ['nftables', 'iptables-nft', 'iptables-legacy', 'ebpf']) {
  runScenarios(variant, 'IPv6 scenarios', ipv6Scenarios);
  runConformance(variant, OVER_IPV6, 'IPv6');
}
