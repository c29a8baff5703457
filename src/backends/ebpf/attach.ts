// Attaching the TC programs to pod-facing interfaces, and taking them off
// again. Every attachment is recorded in the pinned kube_lb_ifaces map, so
// a later kube-lb, or cleanup, knows which qdiscs it created.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { NativeAddon, TcAttachPoint } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { type MapFds, PROGRAMS, type ProgramFds } from './datapath.js';
import { LB_IFACE_F_CREATED_HOOK, decodeIfaceEntry, encodeIfaceValue, encodeIfindex, layouts } from './encoding.js';
import { type Link, listLinks } from './links.js';

const run = promisify(execFile);

/** kube-lb's tc filter identity: handle and priority ("KL"). */
export const TC_HANDLE = 0x4b4c;
export const TC_PRIORITY = 0x4b4c;

const directions: { point: TcAttachPoint; program: keyof typeof PROGRAMS }[] = [
  { point: 'ingress', program: 'fromPod' },
  { point: 'egress', program: 'toPod' },
];

function recordedInterfaces(lib: NativeAddon, ifacesFd: number): Map<number, number> {
  const { keys, values, count } = lib.mapDump(ifacesFd);
  const result = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const { ifindex, flags } = decodeIfaceEntry(keys, values, { key: i * 4, value: i * layouts.lb_iface_value.size });
    result.set(ifindex, flags);
  }
  return result;
}

export class Attacher {
  /** ifindex -> name of the interfaces attached by this process. */
  private attached = new Map<number, string>();

  constructor(
    private readonly lib: NativeAddon,
    private readonly maps: MapFds,
    private readonly programs: ProgramFds,
    private readonly interfacePrefix: string,
    private readonly log: Logger,
  ) {}

  /** Attaches to every matching interface not yet attached, and forgets vanished ones. */
  async reconcile(): Promise<void> {
    const links = (await listLinks()).filter((l) => l.name.startsWith(this.interfacePrefix));
    const present = new Set(links.map((l) => l.ifindex));
    for (const link of links) {
      if (!this.attached.has(link.ifindex)) this.attach(link);
    }
    for (const [ifindex, name] of this.attached) {
      if (!present.has(ifindex)) {
        this.attached.delete(ifindex);
        this.lib.mapDelete(this.maps.ifaces, encodeIfindex(ifindex));
        this.log.info({ interface: name, ifindex }, 'interface gone');
      }
    }
    // Records of interfaces that vanished while no kube-lb ran.
    for (const ifindex of recordedInterfaces(this.lib, this.maps.ifaces).keys()) {
      if (!present.has(ifindex)) this.lib.mapDelete(this.maps.ifaces, encodeIfindex(ifindex));
    }
  }

  get interfaces(): string[] {
    return [...this.attached.values()];
  }

  private attach(link: Link): void {
    const key = encodeIfindex(link.ifindex);
    let flags = recordedFlags(this.lib, this.maps.ifaces, key);
    try {
      for (const { point, program } of directions) {
        const { hookCreated } = this.lib.tcAttach(link.ifindex, point, this.programs[program], TC_HANDLE, TC_PRIORITY);
        if (hookCreated) flags |= LB_IFACE_F_CREATED_HOOK;
      }
    } catch (err) {
      // The interface may have vanished between listing and attaching.
      this.log.warn({ interface: link.name, err: (err as Error).message }, 'attach failed');
      return;
    } finally {
      this.lib.mapUpdate(this.maps.ifaces, key, encodeIfaceValue(flags));
    }
    this.attached.set(link.ifindex, link.name);
    this.log.info({ interface: link.name, ifindex: link.ifindex }, 'attached');
  }
}

function recordedFlags(lib: NativeAddon, ifacesFd: number, key: Buffer): number {
  const value = lib.mapLookup(ifacesFd, key);
  return value ? value.readUInt32LE(layouts.lb_iface_value.fields.flags.offset) : 0;
}

/** Whether a tc filter of ours is on ifindex at point (by identity and program name). */
function ourFilter(lib: NativeAddon, ifindex: number, point: TcAttachPoint): boolean {
  const id = lib.tcQuery(ifindex, point, TC_HANDLE, TC_PRIORITY);
  if (id === null) return false;
  const info = lib.progInfoById(id);
  return info !== null && Object.values(PROGRAMS).includes(info.name as (typeof PROGRAMS)[keyof typeof PROGRAMS]);
}

async function hasClsact(name: string): Promise<boolean> {
  const { stdout } = await run('tc', ['-j', 'qdisc', 'show', 'dev', name]);
  return stdout.trim() !== '' && (JSON.parse(stdout) as { kind: string }[]).some((q) => q.kind === 'clsact');
}

async function hasOtherFilters(name: string): Promise<boolean> {
  for (const point of ['ingress', 'egress']) {
    const { stdout } = await run('tc', ['-j', 'filter', 'show', 'dev', name, point]);
    if (stdout.trim() !== '' && (JSON.parse(stdout) as unknown[]).length > 0) return true;
  }
  return false;
}

/**
 * Takes kube-lb's filters off every interface, and removes the clsact
 * qdiscs kube-lb created where nothing else uses them. Returns the names
 * of the interfaces it touched. Each interface done is struck from
 * kube_lb_ifaces, and one found already done (a cleanup cut short) is
 * passed over, so that running it again always finishes the job.
 */
export async function detachAll(lib: NativeAddon, ifacesFd: number | null, log: Logger): Promise<string[]> {
  const recorded = ifacesFd === null ? new Map<number, number>() : recordedInterfaces(lib, ifacesFd);
  const touched: string[] = [];
  for (const link of await listLinks()) {
    let ours = false;
    for (const { point } of directions) {
      if (ourFilter(lib, link.ifindex, point)) {
        lib.tcDetach(link.ifindex, point, TC_HANDLE, TC_PRIORITY);
        ours = true;
      }
    }
    const created = ((recorded.get(link.ifindex) ?? 0) & LB_IFACE_F_CREATED_HOOK) !== 0;
    if (created && (await hasClsact(link.name)) && !(await hasOtherFilters(link.name))) {
      lib.tcHookDestroy(link.ifindex);
      ours = true;
    }
    if (recorded.has(link.ifindex)) lib.mapDelete(ifacesFd!, encodeIfindex(link.ifindex));
    if (ours) {
      touched.push(link.name);
      log.info({ interface: link.name }, 'detached');
    }
  }
  return touched;
}
