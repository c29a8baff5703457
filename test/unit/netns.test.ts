// The ebpf backend's refusal on a kernel without SO_NETNS_COOKIE: one text, for kube-lb run and for the benchmark.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { currentNetns, ebpfKernelRefusal } from '../../src/backends/ebpf/netns.js';
import { MINIMUM_KERNEL } from '../../src/backends/ebpf/kernel-features.js';
import type { NativeAddon } from '../../src/native/index.js';

const withCookie = (netnsCookie: () => bigint): NativeAddon => ({ netnsCookie }) as unknown as NativeAddon;
const failing = (code: string): NativeAddon =>
  withCookie(() => {
    throw Object.assign(new Error(`getsockopt SO_NETNS_COOKIE: ${code}`), { code });
  });

test("ebpfKernelRefusal: kube-lb run's own refusal where the kernel lacks SO_NETNS_COOKIE, none where it has it", () => {
  assert.equal(ebpfKernelRefusal(withCookie(() => 42n)), undefined);
  const refusal = ebpfKernelRefusal(failing('ENOPROTOOPT'));
  assert.match(refusal ?? '', new RegExp(`^the ebpf backend needs kernel ${MINIMUM_KERNEL.replace('.', '\\.')} or later`));
  // The same words as the backend's start refuses with.
  assert.throws(() => currentNetns(failing('ENOPROTOOPT')), { message: refusal });
  // Any other failure is no refusal: it surfaces.
  assert.throws(() => ebpfKernelRefusal(failing('EPERM')), { code: 'EPERM' });
});
