// Loading the BPF object with its maps pinned under the pin root, and
// finding what an earlier kube-lb pinned there.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { type BpfObject, type CgroupHook, type NativeAddon, projectRoot } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { asidePin, finishMigration, prepareMigration } from './migrate.js';
import { type KernelFeatures, probeKernelFeatures, xdpRefusal } from './kernel-features.js';

export const DEFAULT_PIN_PATH = '/sys/fs/bpf/kube-lb';
export const OBJECT_PATH = path.join(projectRoot, 'build', 'bpf', 'kube_lb.bpf.o');

export const PROGRAMS = { fromPod: 'lb_from_pod', toPod: 'lb_to_pod', fromWorld: 'lb_from_world', toWorld: 'lb_to_world' } as const;
/** lb_from_world's code built for XDP (--bpf-xdp), in an object of its own over the same pinned maps. */
export const XDP_OBJECT_PATH = path.join(projectRoot, 'build', 'bpf', 'kube_lb_xdp.bpf.o');
export const XDP_PROGRAM = 'lb_world_xdp';
/**
 * The cgroup programs of socket-level load balancing (sockets.ts), by hook;
 * pinned once attached. Their names fit the 15 characters the kernel keeps,
 * since kube-lb tells its attached programs by name.
 */
export const SOCK_PROGRAMS: Record<CgroupHook, string> = {
  connect4: 'lb_connect4',
  sendmsg4: 'lb_sendmsg4',
  recvmsg4: 'lb_recvmsg4',
  getpeername4: 'lb_getpeername4',
  connect6: 'lb_connect6',
  sendmsg6: 'lb_sendmsg6',
  recvmsg6: 'lb_recvmsg6',
  getpeername6: 'lb_getpeername6',
};
/** Pinned, so that a restart keeps the frontends connected sockets must be shown. */
export const SOCK_RNAT_MAP = 'kube_lb_sock_rnat';
/** Not pinned: each loaded set of programs has its own, which says whose they are (sockets.ts). */
export const SOCK_CONFIG_MAP = 'kube_lb_sockcfg';
/** Pinned and written at every start: whether a takeover is under way (takeover.ts). */
export const ADOPT_MAP = 'kube_lb_adopt';
/** The iterator that destroys connected UDP sockets whose backend is gone (stale-sockets.ts), and the map that names those backends; neither pinned. */
export const SOCK_DESTROY_PROGRAM = 'lb_udp_destroy';
export const SOCK_GONE_MAP = 'kube_lb_sock_gone';
export const MAPS = {
  svc: 'kube_lb_svc',
  ct: 'kube_lb_ct',
  rnat: 'kube_lb_rnat',
  ifaces: 'kube_lb_ifaces',
  drops: 'kube_lb_drops',
  affinity: 'kube_lb_affinity',
  sourceRanges: 'kube_lb_source_ranges',
  maglev: 'kube_lb_maglev',
  backendStats: 'kube_lb_backend_stats',
} as const;

export type MapFds = Record<keyof typeof MAPS, number>;

/** Entries of kube_lb_svc and kube_lb_backend_stats (--bpf-lb-map-max) and of each conntrack map (--bpf-ct-map-max). */
export interface MapSizes {
  lb: number;
  ct: number;
}

/** The flags' defaults; docs/ebpf-maps.md says what they cost. */
export const DEFAULT_MAP_SIZES: MapSizes = { lb: 1_048_576, ct: 262_144 };
/** Kernels refuse larger hash maps: their bucket table would pass 4 GiB. */
export const MAX_MAP_SIZE = 2 ** 27;
export type ProgramFds = Record<keyof typeof PROGRAMS, number>;

const BPF_FS_MAGIC = 0xcafe4a11;
/** Where the kernel offers an empty directory for bpffs: the one place kube-lb mounts it itself. */
const BPF_FS_MOUNT_POINT = '/sys/fs/bpf';

/**
 * Creates the pin root on a bpffs, mounting bpffs on /sys/fs/bpf if that is
 * where the pin root lives and nothing is mounted there yet. Anywhere else a
 * mount would hide what the directory holds (a path under /run would cover
 * /run), so kube-lb refuses and says what to do.
 */
export function ensurePinRoot(pinRoot: string): void {
  const flag = `--bpf-pin-path=${pinRoot}`;
  if (!path.isAbsolute(pinRoot)) throw new Error(`${flag}: give an absolute path, such as ${DEFAULT_PIN_PATH}`);
  // bpffs refuses names with a dot in them.
  if (path.basename(pinRoot).includes('.')) throw new Error(`${flag}: bpffs allows no "." in a name; choose a name without one, such as ${DEFAULT_PIN_PATH}`);
  const parent = path.dirname(pinRoot);
  if (!isBpffs(parent)) {
    if (parent !== BPF_FS_MOUNT_POINT) {
      throw new Error(`${flag}: ${parent} is not a bpffs; mount one there first (mount -t bpf bpf ${parent}) or choose a path under ${BPF_FS_MOUNT_POINT}`);
    }
    execFileSync('mount', ['-t', 'bpf', 'bpf', parent]);
  }
  fs.mkdirSync(pinRoot, { recursive: true });
}

function isBpffs(dir: string): boolean {
  try {
    return fs.statfsSync(dir).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

function setMapSizes(object: BpfObject, sizes: MapSizes): void {
  object.setMaxEntries(MAPS.svc, sizes.lb);
  // A backend's counters follow its slots, which kube_lb_svc holds.
  object.setMaxEntries(MAPS.backendStats, sizes.lb);
  object.setMaxEntries(MAPS.ct, sizes.ct);
  object.setMaxEntries(MAPS.rnat, sizes.ct);
}

export interface LoadedDatapath {
  object: BpfObject;
  maps: MapFds;
  programs: ProgramFds;
  /** What the kernel offers beyond 5.10; with sockDestroy, SOCK_DESTROY_PROGRAM is loaded. */
  features: KernelFeatures;
}

/**
 * Loads the datapath with maps of the given sizes. Maps already pinned under
 * pinRoot are reused with their content (services, flows), so a restart
 * loses no connection; pins of another layout or size are migrated (see
 * migrate.ts). The programs are loaded afresh and pinned beside them.
 */
export function loadDatapath(lib: NativeAddon, pinRoot: string, log: Logger, sizes: MapSizes = DEFAULT_MAP_SIZES, objectPath = OBJECT_PATH): LoadedDatapath {
  if (!fs.existsSync(objectPath)) throw new Error(`BPF object ${objectPath} is missing (run make)`);
  ensurePinRoot(pinRoot);
  const object = lib.openObject(objectPath, pinRoot);
  try {
    setMapSizes(object, sizes);
    const features = probeKernelFeatures(lib, log);
    // The iterator calls a kfunc older kernels lack, which fails the whole load.
    if (!features.sockDestroy) object.setAutoload(SOCK_DESTROY_PROGRAM, false);
    // After the sizes are set: a pin of another size is migrated too.
    const migrating = prepareMigration(lib, object, pinRoot);
    try {
      object.load();
    } catch (err) {
      const { code } = err as NodeJS.ErrnoException;
      if (code === 'E2BIG' || code === 'ENOMEM') {
        throw new Error(
          `creating the maps failed (${code}): --bpf-lb-map-max=${sizes.lb} or --bpf-ct-map-max=${sizes.ct} asks for more than this kernel or its memory allows; choose smaller sizes`,
          { cause: err },
        );
      }
      // Migration moved aside every pin of another layout or size: one is back, so another process pins there too.
      if (!/couldn't reuse pinned map/.test((err as Error).message)) throw err;
      throw new Error(
        `a map pinned under ${pinRoot} has another layout or size, pinned there while kube-lb was migrating the maps (is another kube-lb using this pin path?); ` +
          `\`kube-lb cleanup --backend=ebpf --bpf-pin-path=${pinRoot}\` removes them, and with them the connections they track\n${(err as Error).message}`,
        { cause: err },
      );
    }
    finishMigration(lib, object, migrating, log);
    const maps = mapRecord((name) => object.mapFd(name));
    const programs = {} as ProgramFds;
    for (const [key, name] of Object.entries(PROGRAMS) as [keyof typeof PROGRAMS, string][]) {
      programs[key] = object.programFd(name);
      object.pinProgram(name, path.join(pinRoot, name));
    }
    return { object, maps, programs, features };
  } catch (err) {
    object.close();
    throw err;
  }
}

export interface LoadedXdp {
  object: BpfObject;
  program: number;
}

/**
 * Loads the XDP program over the maps loadDatapath pinned under pinRoot
 * (with the same sizes, or libbpf would not reuse them), and pins it beside
 * them.
 */
export function loadXdpProgram(lib: NativeAddon, pinRoot: string, sizes: MapSizes = DEFAULT_MAP_SIZES): LoadedXdp {
  if (!fs.existsSync(XDP_OBJECT_PATH)) throw new Error(`BPF object ${XDP_OBJECT_PATH} is missing (run make)`);
  const refusal = xdpRefusal(lib);
  if (refusal !== undefined) throw new Error(refusal);
  const object = lib.openObject(XDP_OBJECT_PATH, pinRoot);
  try {
    setMapSizes(object, sizes);
    object.load();
    object.pinProgram(XDP_PROGRAM, path.join(pinRoot, XDP_PROGRAM));
    return { object, program: object.programFd(XDP_PROGRAM) };
  } catch (err) {
    object.close();
    throw err;
  }
}

function mapRecord(fdOf: (name: string) => number): MapFds {
  const fds = {} as MapFds;
  for (const [key, name] of Object.entries(MAPS) as [keyof typeof MAPS, string][]) fds[key] = fdOf(name);
  return fds;
}

/** The maps pinned under pinRoot: all, none, or some after an interrupted cleanup. */
export function pinnedMaps(pinRoot: string): (keyof typeof MAPS)[] {
  return (Object.keys(MAPS) as (keyof typeof MAPS)[]).filter((key) => fs.existsSync(path.join(pinRoot, MAPS[key])));
}

/** Opens the pinned maps for reading, or returns null unless every one is pinned. */
export function openPinnedMaps(lib: NativeAddon, pinRoot: string): MapFds | null {
  if (pinnedMaps(pinRoot).length < Object.keys(MAPS).length) return null;
  return mapRecord((name) => lib.objGet(path.join(pinRoot, name)));
}

/** Opens kube_lb_ifaces as pinned, and as a migration cut short left it aside: those of the two that exist. */
export function openPinnedIfaces(lib: NativeAddon, pinRoot: string): number[] {
  const pin = path.join(pinRoot, MAPS.ifaces);
  return [pin, asidePin(pin)].filter((p) => fs.existsSync(p)).map((p) => lib.objGet(p));
}

export function closeMaps(lib: NativeAddon, maps: MapFds): void {
  for (const fd of Object.values(maps)) lib.closeFd(fd);
}

/**
 * Removes every pin kube-lb made under pinRoot, then the folder itself.
 * Nothing is removed if anything there is foreign, and kube_lb_ifaces goes
 * last: until then a cleanup cut short can still be finished, knowing which
 * clsact qdiscs kube-lb created.
 */
export function removePins(pinRoot: string): void {
  if (!fs.existsSync(pinRoot)) return;
  const maps = [...Object.values(MAPS), SOCK_RNAT_MAP, ADOPT_MAP];
  const ours = new Set<string>([...maps, ...maps.map(asidePin), ...Object.values(PROGRAMS), XDP_PROGRAM, ...Object.values(SOCK_PROGRAMS)]);
  const entries = fs.readdirSync(pinRoot);
  const foreign = entries.filter((entry) => !ours.has(entry));
  if (foreign.length > 0) throw new Error(`pin path ${pinRoot} holds ${foreign.join(', ')}, which kube-lb did not create; leaving it all`);
  const last = (entry: string): number => Number(entry === MAPS.ifaces);
  for (const entry of entries.sort((a, b) => last(a) - last(b))) fs.unlinkSync(path.join(pinRoot, entry));
  fs.rmdirSync(pinRoot);
}
