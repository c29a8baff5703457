// The ebpf kernel matrix on the VM's kernel (KUBE_LB_VM_KERNEL, test/vm/run):
// the programs load and pass its verifier (every scenario loads them), and
// scenarios that exercise the datapath itself pass with real traffic. The
// BPF_PROG_TEST_RUN tests (test/bpf) run in the same VM. The other
// scenarios test the control plane, which the host already covers; each
// costs minutes under emulation, so the extra kernels run the first one
// only, and Debian 12's own (6.1) all of them, including traffic from
// outside to endpoints on both nodes under XDP in the driver. On a kernel
// older than the backend's minimum (5.10), kube-lb must refuse to run.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { runConformance } from '../conformance/suite.js';
import { binPath } from '../lib/paths.js';
import { slow } from '../lib/slowdown.js';
import { MINIMUM_KERNEL } from '../../src/backends/ebpf/kernel-features.js';

const EVERY_KERNEL = ['TCP and UDP on several ports spread over ready endpoints only'];
const kernel = process.env.KUBE_LB_VM_KERNEL ?? '6.1';
const olderThan = (a: string, b: string): boolean => {
  const [a1, a2] = a.split('.').map(Number) as [number, number];
  const [b1, b2] = b.split('.').map(Number) as [number, number];
  return a1 < b1 || (a1 === b1 && a2 < b2);
};

if (kernel === '6.1') {
  runConformance('ebpf', [
    ...EVERY_KERNEL,
    'a long-lived UDP flow moves to the new endpoint when its endpoint is removed',
    'hairpin: a pod reaching its own service through itself gets its answers',
    'a held TCP connection survives a kube-lb restart',
  ]);
  runConformance('ebpf-xdp', ['NodePort, external IP and load-balancer IP from outside reach endpoints on both nodes, masqueraded']);
} else if (!olderThan(kernel, MINIMUM_KERNEL)) {
  runConformance('ebpf', EVERY_KERNEL);
} else {
  describe(`ebpf on kernel ${kernel}, older than ${MINIMUM_KERNEL}`, () => {
    it('kube-lb run refuses at once, naming the kernel it needs, and pins nothing', async () => {
      const manifests = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-refusal-'));
      const pinPath = `/sys/fs/bpf/kube-lb-refusal-${process.pid}`;
      try {
        const run = promisify(execFile)(binPath, ['run', '--backend=ebpf', `--manifests=${manifests}`, '--hostname-override=node-a', '--cluster-cidr=10.244.0.0/16', `--bpf-pin-path=${pinPath}`], { timeout: slow(30_000) });
        const err = (await run.then(() => assert.fail('kube-lb run started'), (e: unknown) => e)) as { code: number; stderr: string };
        assert.notEqual(err.code, 0);
        assert.match(err.stderr, new RegExp(`the ebpf backend needs kernel ${MINIMUM_KERNEL.replace('.', '\\.')} or later: .*SO_NETNS_COOKIE.*use another backend`));
        assert.equal(fs.existsSync(pinPath), false, 'nothing pinned');
      } finally {
        fs.rmSync(manifests, { recursive: true, force: true });
      }
    });
  });
}
