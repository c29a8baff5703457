// The SCTP rows, on the VM's kernel: the host's has no SCTP sockets. They
// run on iptables in nft mode and on nftables: iptables' legacy mode
// writes the same rules; on ebpf and ipvs they show the capability table's
// reason.
import { runScenarios } from '../conformance/suite.js';
import { sctpScenarios } from '../conformance/sctp-scenarios.js';

for (const variant of ['iptables-nft', 'nftables', 'ebpf', 'ipvs']) runScenarios(variant, 'SCTP scenarios', sctpScenarios);
