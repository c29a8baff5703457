// The ebpf kernel matrix on the VM's kernel (Debian's stock 6.1): the
// programs load and pass its verifier (every scenario loads them), and the
// scenarios that exercise the datapath itself pass with real traffic. The
// BPF_PROG_TEST_RUN tests (test/bpf) run in the same VM. The scale and
// naming scenarios test the control plane, which the host already covers.
import { runConformance } from '../conformance/suite.js';

runConformance('ebpf', [
  'TCP and UDP on several ports spread over ready endpoints only',
  'endpoints added, made not ready and removed reach the datapath without waiting for a resync',
  'a long-lived UDP flow moves to the new endpoint when its endpoint is removed',
  'a service with no ready endpoint gets no traffic, and deleting a service stops it',
  'hairpin: a pod reaching its own service through itself gets its answers',
  'a held TCP connection survives a kube-lb restart',
]);
