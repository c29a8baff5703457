// What the datapath uses beyond kernel 5.10, the oldest whose verifier the
// programs are tested against: probed once at start in the running kernel's
// BTF, and each one missing logged with what it costs. The programs test the
// same helpers themselves (bpf_core_enum_value_exists) and fall back; the
// XDP program cannot, and --bpf-xdp is refused without its helpers. One
// feature has no fallback: the network namespace cookie (netns.ts).
import type { NativeAddon } from '../../native/index.js';
import type { Logger } from '../../log.js';

/**
 * The oldest kernel the ebpf backend runs on: kube-lb tells network
 * namespaces apart by their cookie, which a process reads with
 * SO_NETNS_COOKIE from this kernel on.
 */
export const MINIMUM_KERNEL = '5.14';

interface KernelFeature {
  /** A BPF helper, bpf_<name>, or a kfunc. */
  helper?: string;
  kfunc?: string;
  /** The kernel that brought it. */
  since: string;
  /** What kube-lb does without it. */
  missing: string;
}

export const KERNEL_FEATURES = {
  coarseClock: {
    helper: 'ktime_get_coarse_ns',
    since: '5.11',
    missing: 'connection tracking reads the precise monotonic clock instead, a little dearer per packet',
  },
  sockErrno: {
    helper: 'set_retval',
    since: '5.18',
    missing: "the node's own connections to a service without endpoints fail at once with EPERM instead of ECONNREFUSED",
  },
  xdpBytes: {
    helper: 'xdp_load_bytes',
    since: '5.18',
    missing: '--bpf-xdp is refused (lb_world_xdp reads frames with bpf_xdp_load_bytes); without it the TC program on the uplink does the same work',
  },
  sockDestroy: {
    kfunc: 'bpf_sock_destroy',
    since: '6.5',
    missing: "a connected UDP socket of the node translated to an endpoint that is then removed keeps sending to it until its process closes it (pods' flows move, on the TC path)",
  },
} as const satisfies Record<string, KernelFeature>;

export type KernelFeatureName = keyof typeof KERNEL_FEATURES;
export type KernelFeatures = Record<KernelFeatureName, boolean>;

export function hasKernelFeature(lib: NativeAddon, name: KernelFeatureName): boolean {
  const feature: KernelFeature = KERNEL_FEATURES[name];
  return feature.helper !== undefined ? lib.kernelHasHelper(feature.helper) : lib.kernelHasFunction(feature.kfunc!);
}

/** Probes every feature, and logs each one this kernel lacks, once. */
export function probeKernelFeatures(lib: NativeAddon, log: Logger): KernelFeatures {
  const features = {} as KernelFeatures;
  for (const name of Object.keys(KERNEL_FEATURES) as KernelFeatureName[]) {
    features[name] = hasKernelFeature(lib, name);
    const { helper, kfunc, since, missing } = KERNEL_FEATURES[name] as KernelFeature;
    if (!features[name]) log.warn({ feature: helper !== undefined ? `bpf_${helper}` : kfunc, since }, `this kernel lacks a feature of kernel ${since}: ${missing}`);
  }
  return features;
}

/** The refusal of --bpf-xdp on a kernel without the XDP program's helpers, or undefined. */
export function xdpRefusal(lib: NativeAddon): string | undefined {
  if (hasKernelFeature(lib, 'xdpBytes')) return undefined;
  const { helper, since } = KERNEL_FEATURES.xdpBytes;
  return `--bpf-xdp needs kernel ${since} or later (lb_world_xdp calls bpf_${helper}); this kernel lacks it: run with --bpf-xdp=off, where the TC program on the uplink does the same work`;
}
