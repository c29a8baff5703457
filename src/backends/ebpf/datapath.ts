// Loading the BPF object with its maps pinned under the pin root, and
// finding what an earlier kube-lb pinned there.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { type BpfObject, type NativeAddon, projectRoot } from '../../native/index.js';

export const DEFAULT_PIN_PATH = '/sys/fs/bpf/kube-lb';
export const OBJECT_PATH = path.join(projectRoot, 'build', 'bpf', 'kube_lb.bpf.o');

export const PROGRAMS = { fromPod: 'lb_from_pod', toPod: 'lb_to_pod' } as const;
export const MAPS = { svc: 'kube_lb_svc', ct: 'kube_lb_ct', rnat: 'kube_lb_rnat', ifaces: 'kube_lb_ifaces' } as const;

export type MapFds = Record<keyof typeof MAPS, number>;
export type ProgramFds = Record<keyof typeof PROGRAMS, number>;

const BPF_FS_MAGIC = 0xcafe4a11;

/** Mounts bpffs on the pin root's parent if it is not there, then creates the pin root. */
export function ensurePinRoot(pinRoot: string): void {
  const mountPoint = path.dirname(pinRoot);
  fs.mkdirSync(mountPoint, { recursive: true });
  if (fs.statfsSync(mountPoint).type !== BPF_FS_MAGIC) {
    execFileSync('mount', ['-t', 'bpf', 'bpf', mountPoint]);
  }
  fs.mkdirSync(pinRoot, { recursive: true });
}

export interface LoadedDatapath {
  object: BpfObject;
  maps: MapFds;
  programs: ProgramFds;
}

/**
 * Loads the datapath. Maps already pinned under pinRoot are reused with
 * their content (services, flows), so a restart loses no connection; the
 * programs are loaded afresh and pinned beside them.
 */
export function loadDatapath(lib: NativeAddon, pinRoot: string, objectPath = OBJECT_PATH): LoadedDatapath {
  if (!fs.existsSync(objectPath)) throw new Error(`BPF object ${objectPath} is missing (run make)`);
  ensurePinRoot(pinRoot);
  const object = lib.openObject(objectPath, pinRoot);
  try {
    object.load();
    const maps = mapRecord((name) => object.mapFd(name));
    const programs = {} as ProgramFds;
    for (const [key, name] of Object.entries(PROGRAMS) as [keyof typeof PROGRAMS, string][]) {
      programs[key] = object.programFd(name);
      object.pinProgram(name, path.join(pinRoot, name));
    }
    return { object, maps, programs };
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

/** Opens the pinned maps for reading, or returns null when nothing is pinned. */
export function openPinnedMaps(lib: NativeAddon, pinRoot: string): MapFds | null {
  if (!fs.existsSync(path.join(pinRoot, MAPS.svc))) return null;
  return mapRecord((name) => lib.objGet(path.join(pinRoot, name)));
}

export function closeMaps(lib: NativeAddon, maps: MapFds): void {
  for (const fd of Object.values(maps)) lib.closeFd(fd);
}

/** Removes every pin kube-lb made under pinRoot, then the folder itself. */
export function removePins(pinRoot: string): void {
  if (!fs.existsSync(pinRoot)) return;
  const ours = new Set<string>([...Object.values(MAPS), ...Object.values(PROGRAMS)]);
  for (const entry of fs.readdirSync(pinRoot)) {
    if (!ours.has(entry)) throw new Error(`pin path ${pinRoot} holds ${entry}, which kube-lb did not create; leaving it`);
    fs.unlinkSync(path.join(pinRoot, entry));
  }
  fs.rmdirSync(pinRoot);
}
