// The network namespace kube-lb runs in. Interface indexes mean something
// in one namespace only, so kube_lb_ifaces records the namespace beside them.
import fs from 'node:fs';
import os from 'node:os';
import type { NativeAddon } from '../../native/index.js';
import { MINIMUM_KERNEL } from './kernel-features.js';

export interface Netns {
  /** The namespace file's inode: what `lsns -t net` and /proc/PID/ns/net show. */
  ino: number;
  /** SO_NETNS_COOKIE: unlike the inode, never reused while the machine runs. 0n: unknown. */
  cookie: bigint;
}

export function currentNetns(lib: NativeAddon): Netns {
  return { ino: fs.statSync('/proc/self/ns/net').ino, cookie: netnsCookie(lib) };
}

function netnsCookie(lib: NativeAddon): bigint {
  try {
    return lib.netnsCookie();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOPROTOOPT') throw err;
    throw new Error(
      `the ebpf backend needs kernel ${MINIMUM_KERNEL} or later: it tells network namespaces apart by their cookie (SO_NETNS_COOKIE), which this kernel (${os.release()}) lacks; use another backend here`,
      { cause: err },
    );
  }
}

/**
 * Why the ebpf backend cannot run on this kernel, as `kube-lb run` refuses
 * with it, or undefined where it can (the benchmark leaves ebpf out with it).
 */
export function ebpfKernelRefusal(lib: NativeAddon): string | undefined {
  try {
    netnsCookie(lib);
    return undefined;
  } catch (err) {
    if (((err as Error).cause as NodeJS.ErrnoException | undefined)?.code !== 'ENOPROTOOPT') throw err;
    return (err as Error).message;
  }
}

export function sameNetns(a: Netns, b: Netns): boolean {
  return a.cookie === b.cookie;
}

/** As `ls -l /proc/PID/ns/net` shows it, with the cookie that tells reused inodes apart. */
export function describeNetns(n: Netns): string {
  return `net:[${n.ino}] (netns cookie ${n.cookie})`;
}
