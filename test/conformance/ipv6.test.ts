// The IPv6 rows on the host's backends: nftables, iptables (both modes) and
// ebpf serve them (ipvs runs them in the VM, test/vm/ipvs-ipv6.vm-test.ts). Besides the IPv6 scenarios, core IPv4
// rows whose addresses all have IPv6 twins (over-ipv6.ts) run again over IPv6.
import { ipv6Scenarios } from './ipv6-scenarios.js';
import { OVER_IPV6 } from './over-ipv6.js';
import { runConformance, runScenarios } from './suite.js';

for (const variant of ['nftables', 'iptables-nft', 'iptables-legacy', 'ebpf']) {
  runScenarios(variant, 'IPv6 scenarios', ipv6Scenarios);
  runConformance(variant, OVER_IPV6, 'IPv6');
}
