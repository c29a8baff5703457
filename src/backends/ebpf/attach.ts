// Attaching the TC programs to pod-facing interfaces and uplinks, and
// taking them off again. Every attachment is recorded in the pinned kube_lb_ifaces map, so
// a later kube-lb, or cleanup, knows which qdiscs it created.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { NativeAddon, TcAttachPoint } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { type MapFds, PROGRAMS, type ProgramFds } from './datapath.js';
import { type IfaceRecord, LB_IFACE_F_CREATED_HOOK, LB_IFACE_F_UPLINK, decodeIfaceValue, encodeIfaceValue, encodeIfindex, layouts } from './encoding.js';
import { type Link, listLinks } from './links.js';

const run = promisify(execFile);

/** kube-lb's tc filter identity: handle and priority ("KL"). */
export const TC_HANDLE = 0x4b4c;
export const TC_PRIORITY = 0x4b4c;

/** What kube-lb attaches to an interface, by its role. */
type Role = 'pod' | 'uplink';
const PROGRAMS_BY_ROLE: Record<Role, { point: TcAttachPoint; program: keyof typeof PROGRAMS }[]> = {
  pod: [
    { point: 'ingress', program: 'fromPod' },
    { point: 'egress', program: 'toPod' },
  ],
  uplink: [{ point: 'ingress', program: 'fromWorld' }],
};

function recordedInterfaces(lib: NativeAddon, ifacesFd: number): Map<number, IfaceRecord> {
  const { keys, values, count } = lib.mapDump(ifacesFd);
  const result = new Map<number, IfaceRecord>();
  for (let i = 0; i < count; i++) result.set(keys.readUInt32LE(i * 4), decodeIfaceValue(values, i * layouts.lb_iface_value.size));
  return result;
}

export interface AttachOptions {
  /** Pod interfaces: every interface whose name starts with this. */
  interfacePrefix: string;
  /** Uplinks by name (--devices); null: the interfaces that hold the node's NodePort addresses. */
  devices: string[] | null;
}

interface Attached {
  name: string;
  role: Role;
  snatAddr: string | null;
}

export class Attacher {
  /** The interfaces attached by this process, by ifindex. */
  private attached = new Map<number, Attached>();
  /** The node's NodePort addresses, as the model last said; their interfaces are the uplinks unless --devices names them. */
  private nodeAddresses: readonly string[] = [];

  constructor(
    private readonly lib: NativeAddon,
    private readonly maps: MapFds,
    private readonly programs: ProgramFds,
    private readonly opts: AttachOptions,
    private readonly log: Logger,
  ) {}

  private roleOf(link: Link): Role | null {
    if (link.name.startsWith(this.opts.interfacePrefix)) return 'pod';
    if (this.opts.devices !== null) return this.opts.devices.includes(link.name) ? 'uplink' : null;
    return link.ipv4.some((ip) => this.nodeAddresses.includes(ip)) ? 'uplink' : null;
  }

  /** Takes the node's NodePort addresses; says whether they changed, so that the uplinks must be found again. */
  setNodeAddresses(addresses: readonly string[]): boolean {
    if (addresses.length === this.nodeAddresses.length && addresses.every((a) => this.nodeAddresses.includes(a))) return false;
    this.nodeAddresses = [...addresses];
    return true;
  }

  /** Attaches to every pod interface and uplink not yet attached, and forgets vanished ones. */
  async reconcile(): Promise<void> {
    const links = await listLinks();
    const present = new Set<number>();
    for (const link of links) {
      const role = this.roleOf(link);
      if (role === null) continue;
      present.add(link.ifindex);
      // Flows SNATed there get the node's own address on it, else its primary one.
      const snatAddr = role === 'uplink' ? (link.ipv4.find((ip) => this.nodeAddresses.includes(ip)) ?? link.ipv4[0] ?? null) : null;
      const known = this.attached.get(link.ifindex);
      if (known?.role === role && known.snatAddr === snatAddr) continue;
      if (role === 'uplink' && snatAddr === null) this.log.warn({ interface: link.name }, 'uplink has no IPv4 address: flows that must be SNATed there are dropped (no_snat_addr)');
      this.attach(link, role, snatAddr);
    }
    for (const [ifindex, { name }] of this.attached) {
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
    return [...this.attached.values()].map((a) => a.name);
  }

  private attach(link: Link, role: Role, snatAddr: string | null): void {
    const key = encodeIfindex(link.ifindex);
    const recorded = this.lib.mapLookup(this.maps.ifaces, key);
    let flags = (recorded ? decodeIfaceValue(recorded).flags : 0) & LB_IFACE_F_CREATED_HOOK;
    if (role === 'uplink') flags |= LB_IFACE_F_UPLINK;
    try {
      for (const { point, program } of PROGRAMS_BY_ROLE[role]) {
        const { hookCreated } = this.lib.tcAttach(link.ifindex, point, this.programs[program], TC_HANDLE, TC_PRIORITY);
        if (hookCreated) flags |= LB_IFACE_F_CREATED_HOOK;
      }
    } catch (err) {
      // The interface may have vanished between listing and attaching.
      this.log.warn({ interface: link.name, err: (err as Error).message }, 'attach failed');
      return;
    } finally {
      this.lib.mapUpdate(this.maps.ifaces, key, encodeIfaceValue({ flags, snatAddr }));
    }
    this.attached.set(link.ifindex, { name: link.name, role, snatAddr });
    this.log.info({ interface: link.name, ifindex: link.ifindex, role, ...(snatAddr !== null && { snatAddr }) }, 'attached');
  }
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
  const recorded = ifacesFd === null ? new Map<number, IfaceRecord>() : recordedInterfaces(lib, ifacesFd);
  const touched: string[] = [];
  for (const link of await listLinks()) {
    let ours = false;
    for (const point of ['ingress', 'egress'] as const) {
      if (ourFilter(lib, link.ifindex, point)) {
        lib.tcDetach(link.ifindex, point, TC_HANDLE, TC_PRIORITY);
        ours = true;
      }
    }
    const created = ((recorded.get(link.ifindex)?.flags ?? 0) & LB_IFACE_F_CREATED_HOOK) !== 0;
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
