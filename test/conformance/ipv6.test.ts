// The IPv6 rows on the host's backends: nftables and iptables (both modes)
// serve them; ebpf shows the capability table's reason (ipvs runs in the VM).
import { ipv6Scenarios } from './ipv6-scenarios.js';
import { runScenarios } from './suite.js';

for (const variant of ['nftables', 'iptables-nft', 'iptables-legacy', 'ebpf']) runScenarios(variant, 'IPv6 scenarios', ipv6Scenarios);
