// Socket-level load balancing: the cgroup programs at the cgroup v2 root,
// and the namespaces they serve (--bpf-socket-lb). Cgroup hooks are the
// whole machine's, shared with other kube-lbs serving other namespaces, so
// kube-lb attaches beside what is there (BPF_F_ALLOW_MULTI) and detaches
// only programs that serve its own namespace.
import fs from 'node:fs';
import path from 'node:path';
import type { CgroupHook, NativeAddon } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { SOCK_CONFIG_MAP, SOCK_PROGRAMS } from './datapath.js';
import { decodeSockConfigNetns, encodeSockConfig, type NodeAddresses } from './encoding.js';
import type { Netns } from './netns.js';

const HOOKS = Object.keys(SOCK_PROGRAMS) as CgroupHook[];

/**
 * --bpf-socket-lb: whose sockets the cgroup programs translate.
 *  - host: the node's own namespace only (host processes, hostNetwork
 *    pods); pods keep the TC path, which a service mesh's sidecar needs,
 *    as it captures connections by their service address (Cilium's
 *    socketLB.hostNamespaceOnly).
 *  - all: pods' sockets too, whose packets then need no translation.
 *  - off: no cgroup programs; the node's processes reach no service.
 */
export const SOCKET_LB_MODES = ['all', 'host', 'off'] as const;
export type SocketLb = (typeof SOCKET_LB_MODES)[number];
/** Today's behaviour, safe beside service meshes, and pods' semantics on every kernel stay those of the TC path. */
export const DEFAULT_SOCKET_LB: SocketLb = 'host';


/** The cgroup v2 root, where the hooks see every process of the machine; null when none is mounted. */
export function cgroupRoot(mounts = fs.readFileSync('/proc/self/mounts', 'utf8')): string | null {
  const line = mounts.split('\n').find((l) => l.split(' ')[2] === 'cgroup2');
  // Mount points escape spaces and the like as octal.
  return line === undefined ? null : line.split(' ')[1]!.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export const NO_CGROUP2 =
  "no cgroup v2 file system is mounted (none in /proc/self/mounts): the ebpf backend attaches to its root to balance the node's own connections; mount one (mount -t cgroup2 none /sys/fs/cgroup), or name the host's with --cgroup-root";

const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * Where the socket programs attach: --cgroup-root when given (in a
 * container, the host's cgroup v2 root mounted in, as /proc/self/mounts
 * shows the container's own), else the cgroup2 mount; null without one.
 */
export function socketCgroup(flag: string | undefined): string | null {
  if (flag === undefined) return cgroupRoot();
  let type: number | undefined;
  try {
    type = fs.statfsSync(flag).type;
  } catch (err) {
    throw new Error(`--cgroup-root=${flag}: ${(err as Error).message}; give the host's cgroup v2 root (where cgroup2 is mounted)`, { cause: err });
  }
  if (type !== CGROUP2_SUPER_MAGIC) throw new Error(`--cgroup-root=${flag}: not a cgroup v2 file system; give the host's cgroup v2 root (where cgroup2 is mounted)`);
  return flag;
}

/** The namespace a program's kube_lb_sockcfg says it serves; null for a program without one. */
function servedNetns(lib: NativeAddon, progId: number): bigint | null {
  for (const mapId of lib.progMapIds(progId) ?? []) {
    const fd = lib.mapFdById(mapId);
    if (fd === null) continue;
    try {
      if (lib.mapInfo(fd).name !== SOCK_CONFIG_MAP) continue;
      const value = lib.mapLookup(fd, Buffer.alloc(4));
      return value === null ? null : decodeSockConfigNetns(value);
    } finally {
      lib.closeFd(fd);
    }
  }
  return null;
}

/**
 * The programs attached at the hook that serve this namespace: kube-lb's
 * own, whatever became of their pins (a kube-lb stopped between attaching
 * and pinning, a cleanup cut short). Other kube-lbs' serve other namespaces.
 */
function servingHere(lib: NativeAddon, cgroup: string, hook: CgroupHook, netns: Netns): number[] {
  return lib.cgroupQuery(cgroup, hook).filter((id) => lib.progInfoById(id)?.name === SOCK_PROGRAMS[hook] && servedNetns(lib, id) === netns.cookie);
}

/**
 * Serves this namespace's sockets with the programs just loaded: writes
 * their configuration, attaches them, pins them, and then detaches the
 * ones an earlier kube-lb here attached, so that no connect finds neither
 * (one that finds both is translated by the first, and the second finds
 * a backend, no frontend).
 */
export function attachSockets(
  lib: NativeAddon,
  programFd: (name: string) => number,
  configFd: number,
  pinRoot: string,
  cgroup: string,
  netns: Netns,
  mode: 'all' | 'host',
  log: Logger,
): void {
  setSockConfig(lib, configFd, netns, mode, { ipv4: null, ipv6: null });
  for (const hook of HOOKS) {
    const name = SOCK_PROGRAMS[hook];
    const fd = programFd(name);
    const old = servingHere(lib, cgroup, hook, netns);
    lib.cgroupAttach(cgroup, hook, fd);
    // The pin only shows the programs (bpftool): which are kube-lb's is told by their configuration.
    const pin = path.join(pinRoot, name);
    fs.rmSync(pin, { force: true });
    lib.objPin(fd, pin);
    for (const o of old) lib.cgroupDetach(cgroup, hook, o);
    log.info({ cgroup, hook, program: name, replaced: old }, 'attached to the cgroup root');
  }
}

/** Tells the programs whose sockets they serve, and the node's addresses, which stand for the node as a client of unbound sockets. */
export function setSockConfig(lib: NativeAddon, configFd: number, netns: Netns, mode: 'all' | 'host', node: NodeAddresses): void {
  lib.mapUpdate(configFd, Buffer.alloc(4), encodeSockConfig(netns.cookie, mode === 'all', node));
}

/** Detaches every program serving this namespace from the cgroup root. */
export function detachSockets(lib: NativeAddon, cgroup: string, netns: Netns, log: Logger): void {
  for (const hook of HOOKS) {
    for (const id of servingHere(lib, cgroup, hook, netns)) {
      if (lib.cgroupDetach(cgroup, hook, id)) log.info({ cgroup, hook, program: SOCK_PROGRAMS[hook], id }, 'detached from the cgroup root');
    }
  }
}

/** --bpf-socket-lb=off: detaches what an earlier kube-lb here attached, and its pins. */
export function withoutSockets(lib: NativeAddon, pinRoot: string, cgroup: string | null, netns: Netns, log: Logger): void {
  if (cgroup !== null) detachSockets(lib, cgroup, netns, log);
  for (const name of Object.values(SOCK_PROGRAMS)) fs.rmSync(path.join(pinRoot, name), { force: true });
}
