// Attaching the TC programs to pod-facing interfaces (podInterfaces) and uplinks, and
// taking them off again. Every attachment is recorded in the pinned
// kube_lb_ifaces map with its network namespace, so a later kube-lb, or
// cleanup, knows which qdiscs it created, and where.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { BtfStruct, NativeAddon, TcAttachPoint, XdpAttachMode } from '../../native/index.js';
import type { Logger } from '../../log.js';
import { MAPS, type MapFds, PROGRAMS, type ProgramFds, XDP_PROGRAM } from './datapath.js';
import { type IfaceRecord, LB_IFACE_F_CREATED_HOOK, LB_IFACE_F_UPLINK, LB_IFACE_F_XDP, decodeIfaceValue, encodeIfaceValue, encodeIfindex, layouts } from './encoding.js';
import { convertRecords, copyPlan } from './migrate.js';
import { type Netns, describeNetns, sameNetns } from './netns.js';
import { type DirectRoute, type Link, listDirectRoutes, listLinks } from './links.js';
import type { LocalTraffic } from '../../config/local-traffic.js';
import { type Cidr, cidrContains, parseCidr } from '../../net/ip.js';

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
  uplink: [
    { point: 'ingress', program: 'fromWorld' },
    { point: 'egress', program: 'toWorld' },
  ],
};

/** kube_lb_ifaces's value as the encoders write it, for reading older layouts into it. */
const ifaceLayout: BtfStruct = {
  size: layouts.lb_iface_value.size,
  members: Object.entries(layouts.lb_iface_value.fields).map(([name, f]) => ({ name, ...f })),
};

/**
 * Every entry of a kube_lb_ifaces map, read through the BTF the map was
 * created with, so a pin of an older layout (as cleanup may find before
 * any kube-lb migrated it) reads as well: what it lacks reads as zero.
 */
export function recordedInterfaces(lib: NativeAddon, ifacesFd: number): Map<number, IfaceRecord> {
  const own = lib.mapLayouts(ifacesFd);
  if (own === null) throw new Error(`${MAPS.ifaces} (map fd ${ifacesFd}) carries no BTF, so kube-lb cannot tell what it records; kube-lb did not create it`);
  const { keys, values, count } = lib.mapDump(ifacesFd);
  const converted = convertRecords(values, count, copyPlan(own.value, ifaceLayout));
  const result = new Map<number, IfaceRecord>();
  for (let i = 0; i < count; i++) result.set(keys.readUInt32LE(i * own.key.size), decodeIfaceValue(converted, i * ifaceLayout.size));
  return result;
}

/** Records of interfaces in another network namespace than here; those without one recorded are not. */
function foreignRecords(records: Map<number, IfaceRecord>, here: Netns): Map<number, IfaceRecord> {
  return new Map([...records].filter(([, r]) => r.netns.cookie !== 0n && !sameNetns(r.netns, here)));
}

/** Names the namespaces the foreign records belong to, what kube-lb leaves, and what to do. */
function foreignError(pinRoot: string, foreign: Map<number, IfaceRecord>, here: Netns, todo: string): Error {
  const byNetns = new Map<string, number[]>();
  for (const [ifindex, r] of [...foreign].sort(([a], [b]) => a - b)) byNetns.set(describeNetns(r.netns), [...(byNetns.get(describeNetns(r.netns)) ?? []), ifindex]);
  const where = [...byNetns].map(([netns, ifindexes]) => `ifindex ${ifindexes.join(', ')} in ${netns}`).join('; ');
  return new Error(
    `${MAPS.ifaces} under ${pinRoot} records interfaces kube-lb attached to in another network namespace (${where}); this is ${describeNetns(here)}. ` +
      `An ifindex names other interfaces here, so kube-lb leaves those records, their qdiscs and the pins alone. ${todo}`,
  );
}

/** What to do about interfaces recorded in another namespace: clean up there. */
function cleanupThere(pinRoot: string): string {
  return (
    `Run \`kube-lb cleanup --backend=ebpf --bpf-pin-path=${pinRoot}\` in that namespace (nsenter --net=/proc/PID/ns/net with a process there; lsns -t net lists them). ` +
    `If it no longer exists, its interfaces went with it, and rm -r ${pinRoot} finishes the cleanup.`
  );
}

/** --bpf-xdp: where lb_world_xdp runs on the uplinks, if at all. */
export type XdpMode = XdpAttachMode | 'off';
export const XDP_MODES: readonly XdpMode[] = ['native', 'generic', 'off'];
const ATTACH_MODES: readonly XdpAttachMode[] = ['native', 'generic'];

export interface AttachOptions {
  /** What tells the pod interfaces (--detect-local-mode): see podInterfaces. */
  podTraffic: LocalTraffic;
  /** Uplinks by name (--devices); null: the interfaces that hold the node's NodePort addresses. */
  devices: string[] | null;
  xdp: XdpMode;
}

/** The addresses flows SNATed on an uplink get, one per family. */
interface SnatAddrs {
  snatAddr: string | null;
  snatAddr6: string | null;
}

interface Attached extends SnatAddrs {
  name: string;
  role: Role;
}

/**
 * The interfaces that carry this node's pods' traffic, by ifindex: those
 * named with the prefix; the ports of the bridge; or, for a range, the
 * interfaces the node routes its addresses onto directly (a veth per pod,
 * as Calico and other routed CNIs set up, or a bridge's ports, as flannel's
 * cni0 and the bridge plugin have them). Ports, not the bridge itself:
 * the bridge's own hooks never see traffic it switches between two pods.
 */
export function podInterfaces(pods: LocalTraffic, links: readonly Link[], routes: readonly DirectRoute[]): Set<number> {
  const portsOf = (bridge: string): Link[] => links.filter((l) => l.master === bridge);
  if (pods.by === 'prefix') return new Set(links.filter((l) => l.name.startsWith(pods.prefix)).map((l) => l.ifindex));
  if (pods.by === 'bridge') return new Set(portsOf(pods.bridge).map((l) => l.ifindex));
  const range = parseCidr(pods.cidr);
  const devs = new Set(routes.filter((r) => cidrInside(parseCidr(r.dst.includes('/') ? r.dst : `${r.dst}/32`), range)).map((r) => r.dev));
  const found = links.filter((l) => devs.has(l.name)).flatMap((l) => (l.kind === 'bridge' ? portsOf(l.name) : [l]));
  return new Set(found.map((l) => l.ifindex));
}

/** Whether every address of `inner` lies in `outer`. */
function cidrInside(inner: Cidr, outer: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, inner.ip);
}

export class Attacher {
  /** The interfaces attached by this process, by ifindex. */
  private attached = new Map<number, Attached>();
  /** Interfaces that should carry kube-lb's programs and do not: each attach retries them. */
  private unattached = new Map<number, { name: string; err: string }>();
  /** The node's NodePort addresses, as the model last said; their interfaces are the uplinks unless --devices names them. */
  private nodeAddresses: readonly string[] = [];

  constructor(
    private readonly lib: NativeAddon,
    private readonly maps: MapFds,
    private readonly programs: ProgramFds,
    /** lb_world_xdp, loaded unless --bpf-xdp=off. */
    private readonly xdpProgram: number | null,
    private readonly opts: AttachOptions,
    private readonly netns: Netns,
    private readonly log: Logger,
  ) {}

  /**
   * Before the first reconcile: refuses a pin path whose interfaces another
   * namespace's kube-lb attached to, and takes as this namespace's the
   * records an older kube-lb made without one (it ran here: it used this pin path).
   */
  claimRecords(pinRoot: string): void {
    const records = recordedInterfaces(this.lib, this.maps.ifaces);
    const foreign = foreignRecords(records, this.netns);
    if (foreign.size > 0) {
      throw foreignError(pinRoot, foreign, this.netns, `Give this kube-lb its own --bpf-pin-path, or clean up the other: ${cleanupThere(pinRoot)}`);
    }
    const unrecorded = [...records].filter(([, r]) => r.netns.cookie === 0n);
    for (const [ifindex, r] of unrecorded) this.lib.mapUpdate(this.maps.ifaces, encodeIfindex(ifindex), encodeIfaceValue({ ...r, netns: this.netns }));
    if (unrecorded.length > 0) {
      this.log.info(
        { ifindexes: unrecorded.map(([i]) => i), netns: describeNetns(this.netns) },
        'interfaces recorded without their network namespace (by an older kube-lb on this pin path) are taken to be in this one',
      );
    }
  }

  private roleOf(link: Link, pods: ReadonlySet<number>): Role | null {
    if (pods.has(link.ifindex)) return 'pod';
    if (this.opts.devices !== null) return this.opts.devices.includes(link.name) ? 'uplink' : null;
    // Loopback NodePorts are reached by the node's own processes only, which the socket programs serve.
    return link.ipv4.some((ip) => this.nodeAddresses.includes(ip) && !ip.startsWith('127.')) ? 'uplink' : null;
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
    const routes = this.opts.podTraffic.by === 'cidr' ? await listDirectRoutes() : [];
    const pods = podInterfaces(this.opts.podTraffic, links, routes);
    const present = new Set<number>();
    for (const link of links) {
      const role = this.roleOf(link, pods);
      if (role === null) continue;
      present.add(link.ifindex);
      // Flows SNATed there get the node's own address on it, else its primary one.
      const ownOrFirst = (addrs: string[]): string | null => (role === 'uplink' ? (addrs.find((ip) => this.nodeAddresses.includes(ip)) ?? addrs[0] ?? null) : null);
      const snat = { snatAddr: ownOrFirst(link.ipv4), snatAddr6: ownOrFirst(link.ipv6) };
      const known = this.attached.get(link.ifindex);
      if (known?.role === role && known.snatAddr === snat.snatAddr && known.snatAddr6 === snat.snatAddr6) continue;
      if (role === 'uplink' && snat.snatAddr === null) this.log.warn({ interface: link.name }, 'uplink has no IPv4 address: IPv4 flows that must be SNATed there are dropped (no_snat_addr)');
      this.attach(link, role, snat);
    }
    // An interface that vanished while being attached failed for no fault of ours.
    if (this.unattached.size > 0) {
      const still = new Set((await listLinks()).map((l) => l.ifindex));
      for (const ifindex of this.unattached.keys()) if (!present.has(ifindex) || !still.has(ifindex)) this.unattached.delete(ifindex);
    }
    for (const [ifindex, { name }] of this.attached) {
      if (present.has(ifindex)) continue;
      // Still there, but no longer a pod interface or an uplink (its route went, say): the programs come off.
      const link = links.find((l) => l.ifindex === ifindex);
      const key = encodeIfindex(ifindex);
      const record = this.lib.mapLookup(this.maps.ifaces, key);
      if (link !== undefined && (await detachInterface(this.lib, link, record ? decodeIfaceValue(record) : undefined))) {
        this.log.info({ interface: name, ifindex }, 'detached: no longer a pod interface or an uplink');
      } else {
        this.log.info({ interface: name, ifindex }, 'interface gone');
      }
      this.attached.delete(ifindex);
      this.lib.mapDelete(this.maps.ifaces, key);
    }
    // Records of interfaces that vanished while no kube-lb ran here.
    for (const [ifindex, r] of recordedInterfaces(this.lib, this.maps.ifaces)) {
      if (!present.has(ifindex) && sameNetns(r.netns, this.netns)) this.lib.mapDelete(this.maps.ifaces, encodeIfindex(ifindex));
    }
  }

  get interfaces(): string[] {
    return [...this.attached.values()].map((a) => a.name);
  }

  /** Each interface that should carry kube-lb's programs and does not, with the kernel's reason. */
  get failures(): string[] {
    return [...this.unattached.values()].map(({ name, err }) => `${name}: ${err}`);
  }

  private attach(link: Link, role: Role, snat: SnatAddrs): void {
    const key = encodeIfindex(link.ifindex);
    const recorded = this.lib.mapLookup(this.maps.ifaces, key);
    let flags = (recorded ? decodeIfaceValue(recorded).flags : 0) & LB_IFACE_F_CREATED_HOOK;
    if (role === 'uplink') flags |= LB_IFACE_F_UPLINK;
    try {
      for (const { point, program } of PROGRAMS_BY_ROLE[role]) {
        const { hookCreated } = this.lib.tcAttach(link.ifindex, point, this.programs[program], TC_HANDLE, TC_PRIORITY);
        if (hookCreated) flags |= LB_IFACE_F_CREATED_HOOK;
      }
      // After TC, which serves whatever XDP leaves to it.
      if (role === 'uplink' && this.attachXdp(link)) flags |= LB_IFACE_F_XDP;
    } catch (err) {
      this.log.warn({ interface: link.name, err: (err as Error).message }, 'attach failed');
      this.unattached.set(link.ifindex, { name: link.name, err: (err as Error).message });
      return;
    } finally {
      this.lib.mapUpdate(this.maps.ifaces, key, encodeIfaceValue({ flags, ...snat, netns: this.netns }));
    }
    this.attached.set(link.ifindex, { name: link.name, role, ...snat });
    this.unattached.delete(link.ifindex);
    this.log.info({ interface: link.name, ifindex: link.ifindex, role, ...(snat.snatAddr !== null && { snatAddr: snat.snatAddr }), ...(snat.snatAddr6 !== null && { snatAddr6: snat.snatAddr6 }) }, 'attached');
  }

  /**
   * Puts lb_world_xdp on an uplink in the --bpf-xdp mode, replacing ours of
   * an earlier kube-lb at once, or takes ours off when the mode is off or
   * another. Says whether it runs there. An XDP program of someone else's
   * is left alone, and so is XDP a driver refuses: TC serves that uplink.
   */
  private attachXdp(link: Link): boolean {
    const wanted = this.opts.xdp === 'off' ? null : this.opts.xdp;
    const present = this.lib.xdpQuery(link.ifindex);
    for (const mode of ATTACH_MODES) {
      if (present[mode] === 0) continue;
      if (!isOurXdp(this.lib, present[mode])) {
        if (wanted !== null) this.log.warn({ interface: link.name, mode, program: this.lib.progInfoById(present[mode])?.name }, 'another XDP program runs on the uplink: kube-lb leaves it there and serves the uplink at TC only');
        return false;
      }
      // An interface runs XDP in one mode at a time.
      if (mode !== wanted) this.lib.xdpDetach(link.ifindex, mode);
    }
    if (wanted === null) return false;
    try {
      this.lib.xdpAttach(link.ifindex, this.xdpProgram!, wanted);
    } catch (err) {
      const hint = wanted === 'native' ? ' (its driver may lack native XDP: --bpf-xdp=generic works with every driver)' : '';
      this.log.warn({ interface: link.name, mode: wanted, err: (err as Error).message }, `XDP could not be attached${hint}; TC serves the uplink`);
      return false;
    }
    return true;
  }
}

function isOurXdp(lib: NativeAddon, id: number): boolean {
  return lib.progInfoById(id)?.name === XDP_PROGRAM;
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
 * Takes kube-lb's XDP program and filters off one interface, and its clsact
 * qdisc if kube-lb created it (`record`) and nothing else uses it. Says
 * whether it found anything of kube-lb's there.
 */
async function detachInterface(lib: NativeAddon, link: Link, record: IfaceRecord | undefined): Promise<boolean> {
  let ours = false;
  const xdp = lib.xdpQuery(link.ifindex);
  for (const mode of ATTACH_MODES) {
    if (xdp[mode] !== 0 && isOurXdp(lib, xdp[mode])) {
      lib.xdpDetach(link.ifindex, mode);
      ours = true;
    }
  }
  for (const point of ['ingress', 'egress'] as const) {
    if (ourFilter(lib, link.ifindex, point)) {
      lib.tcDetach(link.ifindex, point, TC_HANDLE, TC_PRIORITY);
      ours = true;
    }
  }
  const created = ((record?.flags ?? 0) & LB_IFACE_F_CREATED_HOOK) !== 0;
  if (created && (await hasClsact(link.name)) && !(await hasOtherFilters(link.name))) {
    lib.tcHookDestroy(link.ifindex);
    ours = true;
  }
  return ours;
}

/**
 * Takes kube-lb's XDP programs and filters off every interface, and removes the clsact
 * qdiscs kube-lb created where nothing else uses them. Returns the names
 * of the interfaces it touched. Each interface done is struck from
 * kube_lb_ifaces (ifacesFds: the pin, and the one a migration cut short
 * left aside), and one found already done (a cleanup cut short) is passed
 * over, so that running it again always finishes the job. Records of
 * another network namespace are left, and then it fails saying so: pinRoot
 * must stay for the cleanup there.
 */
export async function detachAll(lib: NativeAddon, ifacesFds: number[], pinRoot: string, netns: Netns, log: Logger): Promise<string[]> {
  const recorded = new Map<number, IfaceRecord>();
  for (const fd of ifacesFds) for (const [ifindex, r] of recordedInterfaces(lib, fd)) recorded.set(ifindex, r);
  const foreign = foreignRecords(recorded, netns);
  for (const ifindex of foreign.keys()) recorded.delete(ifindex);
  const touched: string[] = [];
  for (const link of await listLinks()) {
    const ours = await detachInterface(lib, link, recorded.get(link.ifindex));
    if (recorded.has(link.ifindex)) for (const fd of ifacesFds) lib.mapDelete(fd, encodeIfindex(link.ifindex));
    if (ours) {
      touched.push(link.name);
      log.info({ interface: link.name }, 'detached');
    }
  }
  if (foreign.size > 0) throw foreignError(pinRoot, foreign, netns, cleanupThere(pinRoot));
  return touched;
}
