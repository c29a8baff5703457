// Typed loader for the N-API addon in native/ (a thin layer over libbpf).
// The addon knows nothing of Kubernetes: it loads objects, attaches programs
// and reads and writes maps. Every failure is thrown as an Error whose
// message names the operation, the object and the errno text, with
// `errno` and `code` set.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { IPFamily } from '../net/ip.js';

export type TcAttachPoint = 'ingress' | 'egress';
/** Where an XDP program runs: in the driver, or on the skb for drivers without XDP. */
export type XdpAttachMode = 'native' | 'generic';
/** The cgroup socket hooks kube-lb uses (BPF_CGROUP_INET4_CONNECT, _UDP4_SENDMSG, _UDP4_RECVMSG, _INET4_GETPEERNAME). */
export type CgroupHook = 'connect4' | 'sendmsg4' | 'recvmsg4' | 'getpeername4' | 'connect6' | 'sendmsg6' | 'recvmsg6' | 'getpeername6';

export interface MapInfo {
  id: number;
  type: number;
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

/** A map as an object defines it: what load() creates, or reuses if a pin matches. */
export interface MapDef {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** Whether the map is pinned by name (LIBBPF_PIN_BY_NAME). */
  pinned: boolean;
  /** From the object's BTF; null without it. */
  key: BtfStruct | null;
  value: BtfStruct | null;
}

export interface ProgInfo {
  id: number;
  name: string;
}

export interface TestRunResult {
  retval: number;
  data: Buffer;
  durationNs: number;
}

export interface BtfMember {
  name: string;
  offset: number;
  size: number;
}

/** A type's layout; a type other than a struct is one member named "" covering it all. */
export interface BtfStruct {
  size: number;
  members: BtfMember[];
}

/** A libbpf bpf_object, opened with maps pinned by name under pinRoot. */
export interface BpfObject {
  /** Sets a map's capacity; only before load(). */
  setMaxEntries(name: string, maxEntries: number): void;
  /** Whether load() loads the program (all are loaded unless told otherwise); only before load(). */
  setAutoload(name: string, autoload: boolean): void;
  /** The maps as load() will create them. */
  maps(): MapDef[];
  /** Loads programs into the kernel; maps pinned under pinRoot are reused. */
  load(): void;
  mapFd(name: string): number;
  programFd(name: string): number;
  /** Pins a program at path, replacing whatever was pinned there. */
  pinProgram(name: string, path: string): void;
  close(): void;
}

export interface NativeAddon {
  openObject(objectPath: string, pinRoot: string): BpfObject;

  /** The value; for a per-CPU map, one 8-byte aligned value per possible CPU, end to end. */
  mapLookup(fd: number, key: Buffer): Buffer | null;
  /** value: for a per-CPU map, one 8-byte aligned value per possible CPU, as mapLookup returns it. */
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags?: number): void;
  /** Returns false when the key was absent. */
  mapDelete(fd: number, key: Buffer): boolean;
  /** keys and values are count records laid end to end (a per-CPU map's values as mapUpdate takes them). */
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number): void;
  mapDeleteBatch(fd: number, keys: Buffer, count: number): void;
  /** Every entry, keys and values laid end to end (a per-CPU map's values as mapLookup returns them). */
  mapDump(fd: number): { keys: Buffer; values: Buffer; count: number };
  /**
   * How many entries the map holds (every slot, for an array), counted on a
   * worker thread without copying entries into JS. Errors reject the promise.
   * The walk uses a duplicate of fd, so fd may be closed meanwhile.
   */
  mapCount(fd: number): Promise<number>;
  mapInfo(fd: number): MapInfo;
  /** Key and value layouts from the BTF the map was created with; null without BTF. */
  mapLayouts(fd: number): { key: BtfStruct; value: BtfStruct } | null;

  objGet(pinPath: string): number;
  objPin(fd: number, pinPath: string): void;
  /** A new fd of the map with that id, or null when there is none. */
  mapFdById(id: number): number | null;
  closeFd(fd: number): void;
  progInfo(fd: number): ProgInfo;
  progInfoById(id: number): ProgInfo | null;
  /** The ids of the maps the program uses, or null when no program has that id. */
  progMapIds(id: number): number[] | null;

  /** Creates the clsact hook if needed; hookCreated tells whether it did. */
  tcAttach(ifindex: number, point: TcAttachPoint, progFd: number, handle: number, priority: number): { hookCreated: boolean };
  /** Returns false when no such filter exists. */
  tcDetach(ifindex: number, point: TcAttachPoint, handle: number, priority: number): boolean;
  /** The attached program's id, or null. */
  tcQuery(ifindex: number, point: TcAttachPoint, handle: number, priority: number): number | null;
  /** Removes the clsact qdisc (both directions) from ifindex. */
  tcHookDestroy(ifindex: number): void;

  /** Attaches an XDP program to ifindex in that mode, replacing the one there in that mode. */
  xdpAttach(ifindex: number, progFd: number, mode: XdpAttachMode): void;
  xdpDetach(ifindex: number, mode: XdpAttachMode): void;
  /** The ids of the XDP programs on ifindex by mode; 0: none. */
  xdpQuery(ifindex: number): Record<XdpAttachMode, number>;

  /** Attaches to a cgroup v2 directory with BPF_F_ALLOW_MULTI: programs already there stay. */
  cgroupAttach(cgroupPath: string, hook: CgroupHook, progFd: number): void;
  /** Returns false when the program is gone or not attached there. */
  cgroupDetach(cgroupPath: string, hook: CgroupHook, progId: number): boolean;
  /** The ids of the programs attached to the cgroup itself (not inherited) at the hook. */
  cgroupQuery(cgroupPath: string, hook: CgroupHook): number[];

  /** ctxIn: the program's context to start from (for XDP, a struct xdp_md), else the kernel's default. */
  progTestRun(progFd: number, data: Buffer, repeat: number, ctxIn?: Buffer): TestRunResult;
  /** Runs an XDP program on repeat copies of frame as received (BPF_F_TEST_XDP_LIVE_FRAMES): what it sends leaves. EINVAL on a kernel without live frames (before 5.18). */
  progTestRunLive(progFd: number, frame: Buffer, repeat: number): void;

  /**
   * Runs an iterator program once, made in the network namespace at
   * netnsPath (/proc/PID/ns/net; null: the caller's), where socket
   * iterators see that namespace's sockets. Returns the bytes it wrote.
   */
  iterRun(progFd: number, netnsPath: string | null): number;
  /** Whether the running kernel's BTF has a function (a kfunc) of that name. */
  kernelHasFunction(name: string): boolean;
  /** Whether the running kernel has the BPF helper bpf_<name> (its BTF's enum bpf_func_id names BPF_FUNC_<name>). */
  kernelHasHelper(name: string): boolean;

  /** The calling process's network namespace cookie (SO_NETNS_COOKIE), unique while the machine runs. */
  netnsCookie(): bigint;

  /** Struct layouts from the BTF of an ELF object. */
  btfStructs(objectPath: string, names: string[]): Record<string, BtfStruct>;

  // IPVS over generic netlink (IPv4 and IPv6 address:port services,
  // masquerade forwarding). family is the model's: the addresses are of it,
  // real servers of their service's. protocol is an IP protocol number (6 TCP, 17 UDP, 132 SCTP).
  ipvsServices(): IpvsService[];
  ipvsDests(family: IPFamily, address: string, protocol: number, port: number): IpvsDest[];
  /**
   * Applies the changes in order, many netlink messages per sendmsg, on a
   * worker thread; resolves to each one's null or error (with code, as a
   * lone call would throw). Rejects only where the exchange itself failed,
   * when some may have been applied, or where a change is malformed, when
   * none was. One batch at a time: the kernel takes two in flight in no set
   * order.
   */
  ipvsApply(changes: readonly IpvsChange[]): Promise<(Error | null)[]>;
  /** IPVS's idle timeouts in seconds (ipvsadm --set); 0 leaves one as it is. */
  ipvsSetTimeouts(tcp: number, tcpFin: number, udp: number): void;

  // ipset elements over nfnetlink, for the sets of the ipvs backend.
  /**
   * Adds and deletes the elements, consecutive changes of one kind to one
   * set in one netlink message, many messages per sendmsg; adding one
   * already there, or deleting one that is not, succeeds. A change may be
   * repeated and the changes taken out of order, so no element may have two.
   * Resolves, as ipvsApply does, to each change's null or error, naming the
   * set and the element (code: an errno's name, or ipset's own as
   * IPSET_ERR_HASH_FULL).
   */
  ipsetApply(changes: readonly IpsetChange[]): Promise<(Error | null)[]>;
  /** Every set of a type ipsetApply writes, with its entries as `ipset save` prints them, in one dump. */
  ipsetList(): { name: string; entries: string[] }[];

  // Links and addresses over rtnetlink, for the IPVS dummy interface.
  /** The interface's index, or null when there is none. */
  linkIndex(name: string): number | null;
  /** Creates a dummy interface, left down; fails with code EEXIST if the name is taken. */
  linkAddDummy(name: string): void;
  linkDelete(ifindex: number): void;
  /** Adds each ip/32 or, without duplicate address detection, ip/128, many per sendmsg, on a worker thread; resolves for each to null or its error (code EEXIST if it is there). */
  addressAdd(ifindex: number, addresses: readonly [ip: string, family: IPFamily][]): Promise<(Error | null)[]>;
  addressDelete(ifindex: number, addresses: readonly [ip: string, family: IPFamily][]): Promise<(Error | null)[]>;
  /** The interface's global addresses, with their family as the kernel gives it. */
  addressList(ifindex: number): { family: IPFamily; address: string }[];
}

/** One change of ipvsApply; persistence: seconds a client sticks to its real server (ipvsadm -p), 0 for none. */
export type IpvsChange =
  | [op: 'addService' | 'setService', family: IPFamily, address: string, protocol: number, port: number, scheduler: string, persistence: number]
  | [op: 'deleteService', family: IPFamily, address: string, protocol: number, port: number]
  | [op: 'addDest' | 'setDest', family: IPFamily, address: string, protocol: number, port: number, destAddress: string, destPort: number, weight: number]
  | [op: 'deleteDest', family: IPFamily, address: string, protocol: number, port: number, destAddress: string, destPort: number];

/** The ipset set types the addon writes. */
export type IpsetType = 'hash:ip' | 'hash:ip,port' | 'hash:ip,port,ip' | 'hash:ip,port,net' | 'bitmap:port';

/**
 * An element of a set of its type: family is the set's (its addresses are of
 * it), protocol an IP protocol number, ip2/cidr2 the net of hash:ip,port,net.
 */
export type IpsetElement =
  | [type: 'hash:ip', family: IPFamily, ip: string]
  | [type: 'hash:ip,port', family: IPFamily, ip: string, protocol: number, port: number]
  | [type: 'hash:ip,port,ip', family: IPFamily, ip: string, protocol: number, port: number, ip2: string]
  | [type: 'hash:ip,port,net', family: IPFamily, ip: string, protocol: number, port: number, ip2: string, cidr2: number]
  | [type: 'bitmap:port', port: number];

/** One change of ipsetApply: an element to add to or delete from the set of that name. */
export type IpsetChange = [op: 'add' | 'del', set: string, ...element: IpsetElement];

export interface IpvsService {
  family: IPFamily;
  address: string;
  protocol: number;
  port: number;
  scheduler: string;
  /** Seconds of persistence; 0 for none. */
  persistence: number;
}

export interface IpvsDest {
  address: string;
  port: number;
  weight: number;
  activeConns: number;
  inactiveConns: number;
  /** Connections IPVS sent to it since it was added; null where the kernel sends no 64-bit stats. */
  scheduledConns: number | null;
  /** Packets of those connections, both directions, since it was added; null as for scheduledConns. */
  packets: number | null;
  /** Their bytes (IP headers included); null as for scheduledConns. */
  bytes: number | null;
}

/** The nearest directory at or above `from` with a package.json. */
function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json at or above ${from}`);
  }
}

/** The project root: this file runs from dist/src/native/, or from dist/bundle/ bundled into kube-lb. */
export const projectRoot = packageRoot(path.dirname(fileURLToPath(import.meta.url)));

/** The addon as it loads: batches of changes and of addresses cross as lines of text (asLines). */
type LoadedAddon = Omit<NativeAddon, 'ipvsApply' | 'ipsetApply' | 'addressAdd' | 'addressDelete'> & {
  ipvsApply(lines: string, count: number): Promise<(Error | null)[]>;
  ipsetApply(lines: string, count: number): Promise<(Error | null)[]>;
  addressAdd(ifindex: number, lines: string, count: number): Promise<(Error | null)[]>;
  addressDelete(ifindex: number, lines: string, count: number): Promise<(Error | null)[]>;
};

/**
 * A batch's changes as the addon takes them: a line each, its fields
 * separated by spaces, in one string: reading one string per batch
 * through N-API costs less than one per change, and far less than one per
 * field. The addon refuses a line whose fields do not add up, as a field
 * with a space in it would make them, and a text of more lines than
 * changes, as a field with a line break would make it.
 */
const asLines = (changes: readonly (readonly (string | number)[])[]): string => changes.map((change) => change.join(' ')).join('\n');

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (!cached) {
    const require = createRequire(import.meta.url);
    const addonPath = path.join(projectRoot, 'build', 'Release', 'kube_lb_native.node');
    let loaded: LoadedAddon;
    try {
      loaded = require(addonPath) as LoadedAddon;
    } catch (err) {
      throw new Error(`loading native addon ${addonPath}: ${(err as Error).message} (run make)`);
    }
    cached = {
      ...loaded,
      ipvsApply: (changes) => loaded.ipvsApply(asLines(changes), changes.length),
      ipsetApply: (changes) => loaded.ipsetApply(asLines(changes), changes.length),
      addressAdd: (ifindex, addresses) => loaded.addressAdd(ifindex, asLines(addresses), addresses.length),
      addressDelete: (ifindex, addresses) => loaded.addressDelete(ifindex, asLines(addresses), addresses.length),
    };
  }
  return cached;
}
