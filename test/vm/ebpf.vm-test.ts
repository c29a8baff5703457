// The ebpf kernel matrix on the VM's kernel (Debian's stock 6.1): the
// programs load and pass its verifier (every scenario loads them), and the
// scenarios that exercise the datapath itself (translation of TCP and UDP,
// flows moved off a removed endpoint, hairpin, conntrack kept across a
// restart) pass with real traffic, and so does traffic from outside to
// endpoints on both nodes under XDP in the driver. The BPF_PROG_TEST_RUN
// tests (test/bpf) run in the same VM. The other scenarios test the control plane, which the
// host already covers; each costs minutes under emulation.
import { runConformance } from '../conformance/suite.js';

runConformance('ebpf', [
  'TCP and UDP on several ports spread over ready endpoints only',
  'a long-lived UDP flow moves to the new endpoint when its endpoint is removed',
  'hairpin: a pod reaching its own service through itself gets its answers',
  'a held TCP connection survives a kube-lb restart',
]);

runConformance('ebpf-xdp', ['NodePort, external IP and load-balancer IP from outside reach endpoints on both nodes, masqueraded']);
