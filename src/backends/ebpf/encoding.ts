// Binary encoders and decoders for the eBPF maps' keys and values.
// They mirror bpf/include/structs.h and consts.h; test/unit/encoding-btf.test.ts
// checks every layout below against the BTF of the built object.
// Addresses are 16 bytes in packet order, IPv4 ones IPv4-mapped
// (::ffff:10.96.0.10), whichever family the caller names; ports, counts and
// flags are in host order (little-endian, checked below).
import os from 'node:os';
import type { Destination, Frontend, FrontendKind, IPFamily, NoEndpointsVerdict, Protocol } from '../../model/contract.js';
import { bytesToIpv6, intToIpv4, ipv4ToInt, ipv6ToBytes, parseCidr } from '../../net/ip.js';
import type { Netns } from './netns.js';

if (os.endianness() !== 'LE') {
  throw new Error('kube-lb encodes host-order map fields as little-endian; this host is big-endian');
}

interface Field {
  offset: number;
  size: number;
}

/** Struct layouts: name -> size and the fields the control plane reads or writes. */
export const layouts = {
  lb_svc_key: { size: 24, fields: { vip: { offset: 0, size: 16 }, port: { offset: 16, size: 2 }, proto: { offset: 18, size: 1 }, scope: { offset: 19, size: 1 }, slot: { offset: 20, size: 2 } } },
  lb_svc_value: {
    size: 28,
    fields: {
      count: { offset: 0, size: 2 },
      flags: { offset: 2, size: 2 },
      backend_addr: { offset: 4, size: 16 },
      backend_port: { offset: 20, size: 2 },
      maglev_size: { offset: 22, size: 2 },
      affinity_timeout: { offset: 24, size: 4 },
    },
  },
  lb_maglev_key: { size: 24, fields: { vip: { offset: 0, size: 16 }, port: { offset: 16, size: 2 }, proto: { offset: 18, size: 1 }, scope: { offset: 19, size: 1 }, chunk: { offset: 20, size: 2 } } },
  lb_maglev_chunk: { size: 2048, fields: { slots: { offset: 0, size: 2048 } } },
  lb_affinity_key: { size: 36, fields: { client: { offset: 0, size: 16 }, vip: { offset: 16, size: 16 }, port: { offset: 32, size: 2 }, proto: { offset: 34, size: 1 }, scope: { offset: 35, size: 1 } } },
  lb_affinity_value: { size: 24, fields: { backend_addr: { offset: 0, size: 16 }, backend_port: { offset: 16, size: 2 }, slot: { offset: 18, size: 2 }, last_seen: { offset: 20, size: 4 } } },
  lb_source_range_key: {
    size: 40,
    fields: { prefixlen: { offset: 0, size: 4 }, vip: { offset: 4, size: 16 }, port: { offset: 20, size: 2 }, proto: { offset: 22, size: 1 }, saddr: { offset: 24, size: 16 } },
  },
  lb_flow_key: { size: 40, fields: { saddr: { offset: 0, size: 16 }, daddr: { offset: 16, size: 16 }, sport: { offset: 32, size: 2 }, dport: { offset: 34, size: 2 }, proto: { offset: 36, size: 1 } } },
  lb_ct_value: {
    size: 44,
    fields: {
      backend_addr: { offset: 0, size: 16 },
      backend_port: { offset: 16, size: 2 },
      flags: { offset: 18, size: 2 },
      last_seen: { offset: 20, size: 4 },
      nat_sport: { offset: 24, size: 2 },
      nat_saddr: { offset: 28, size: 16 },
    },
  },
  lb_rnat_value: {
    size: 40,
    fields: { vip: { offset: 0, size: 16 }, vport: { offset: 16, size: 2 }, flags: { offset: 18, size: 2 }, client_addr: { offset: 20, size: 16 }, client_port: { offset: 36, size: 2 } },
  },
  lb_iface_value: {
    size: 56,
    fields: { flags: { offset: 0, size: 4 }, snat_addr: { offset: 4, size: 16 }, netns_cookie: { offset: 24, size: 8 }, netns_ino: { offset: 32, size: 4 }, snat_addr6: { offset: 40, size: 16 } },
  },
  lb_sock_config: { size: 48, fields: { netns_cookie: { offset: 0, size: 8 }, node_addr: { offset: 8, size: 16 }, flags: { offset: 24, size: 4 }, node_addr6: { offset: 32, size: 16 } } },
  lb_backend_key: {
    size: 40,
    fields: {
      vip: { offset: 0, size: 16 },
      port: { offset: 16, size: 2 },
      proto: { offset: 18, size: 1 },
      scope: { offset: 19, size: 1 },
      backend_addr: { offset: 20, size: 16 },
      backend_port: { offset: 36, size: 2 },
    },
  },
  lb_backend_stats: { size: 24, fields: { connections: { offset: 0, size: 8 }, packets: { offset: 8, size: 8 }, bytes: { offset: 16, size: 8 } } },
  lb_sock_gone_key: {
    size: 40,
    fields: { vip: { offset: 0, size: 16 }, backend_addr: { offset: 16, size: 16 }, vport: { offset: 32, size: 2 }, backend_port: { offset: 34, size: 2 }, proto: { offset: 36, size: 1 } },
  },
} satisfies Record<string, { size: number; fields: Record<string, Field> }>;

/** From consts.h. */
export const LB_HAIRPIN_ADDR = '169.254.7.1';
export const LB_HAIRPIN_ADDR6 = '100::7:1';

/** The address a hairpinned pod sees as its client, in the flow's family. */
export function hairpinAddr(family: IPFamily): string {
  return family === 'IPv4' ? LB_HAIRPIN_ADDR : LB_HAIRPIN_ADDR6;
}
export const LB_CT_F_HAIRPIN = 0x1;
export const LB_CT_F_CLOSING = 0x2;
export const LB_CT_F_STACK = 0x8;
export const LB_IFACE_F_CREATED_HOOK = 0x1;
export const LB_IFACE_F_UPLINK = 0x2;
export const LB_IFACE_F_XDP = 0x4;

/** Which traffic a kube_lb_svc service serves (LB_SCOPE_*): from pods, or from outside the node through an uplink. */
export type Scope = 'internal' | 'external';
const SCOPES: Record<Scope, number> = { internal: 0, external: 1 };

/** Slot 0's flags: the frontend's kind (LB_SVC_F_* in consts.h); a ClusterIP has none. */
const KIND_FLAGS: Record<FrontendKind, number> = { ClusterIP: 0, ExternalIP: 0x1, LoadBalancerIP: 0x2, NodePort: 0x4 };

const KIND_MASK = 0x7;
/** Slot 0's flag for a frontend whose new flows are dropped, not refused, when it has no endpoint. */
const LB_SVC_F_DROP_NO_ENDPOINTS = 0x8;
/** Slot 0's flag for an external-scope service whose flows are SNATed to the uplink's address. */
const LB_SVC_F_SNAT = 0x10;
/** Slot 0's flag for a frontend only sources in kube_lb_source_ranges may reach. */
const LB_SVC_F_SOURCE_RANGES = 0x20;
/** Slot 0's flag for a service whose new flows take the slot its Maglev table gives them. */
const LB_SVC_F_MAGLEV = 0x40;
/** Entries of a Maglev table per kube_lb_maglev entry (LB_MAGLEV_CHUNK). */
export const LB_MAGLEV_CHUNK = 1024;
/** The seed of the flow hash (LB_MAGLEV_HASH_SEED). */
export const LB_MAGLEV_HASH_SEED = 0x6b6c6221;

function kindFromFlags(flags: number): FrontendKind {
  const kind = (Object.keys(KIND_FLAGS) as FrontendKind[]).find((k) => KIND_FLAGS[k] === (flags & KIND_MASK));
  if (kind === undefined) throw new Error(`kube_lb_svc: unknown frontend flags 0x${flags.toString(16)}`);
  return kind;
}

const protocolNumbers: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };

function protocolFromNumber(n: number): Protocol {
  const found = (Object.keys(protocolNumbers) as Protocol[]).find((p) => protocolNumbers[p] === n);
  if (!found) throw new Error(`unknown IP protocol number ${n} in map entry`);
  return found;
}

/** Writes an address of `family` as lb_addr_t; throws if it is not one. */
export function writeAddr(b: Buffer, at: number, ip: string, family: IPFamily): void {
  if (family === 'IPv6') {
    ipv6ToBytes(ip).copy(b, at);
    return;
  }
  b.fill(0, at, at + 10);
  b.writeUInt16BE(0xffff, at + 10);
  b.writeUInt32BE(ipv4ToInt(ip), at + 12);
}

/** An lb_addr_t field that may hold none (all zeros): written as such for null. */
function writeOptionalAddr(b: Buffer, at: number, ip: string | null, family: IPFamily): void {
  if (ip === null) b.fill(0, at, at + 16);
  else writeAddr(b, at, ip, family);
}

function isMapped(b: Buffer, at: number): boolean {
  return b.readBigUInt64BE(at) === 0n && b.readUInt32BE(at + 8) === 0xffff;
}

/** The family of an lb_addr_t as written. */
export function addrFamily(b: Buffer, at: number): IPFamily {
  return isMapped(b, at) ? 'IPv4' : 'IPv6';
}

export function readAddr(b: Buffer, at: number): string {
  return isMapped(b, at) ? intToIpv4(b.readUInt32BE(at + 12)) : bytesToIpv6(b, at);
}

function readOptionalAddr(b: Buffer, at: number): string | null {
  return b.readBigUInt64BE(at) === 0n && b.readBigUInt64BE(at + 8) === 0n ? null : readAddr(b, at);
}

const svcKey = layouts.lb_svc_key.fields;
const svcValue = layouts.lb_svc_value.fields;
const flowKey = layouts.lb_flow_key.fields;
const ctValue = layouts.lb_ct_value.fields;
const rnatValue = layouts.lb_rnat_value.fields;

const maglevKey = layouts.lb_maglev_key.fields;

/** The fields that name a service in one scope, in the keys of kube_lb_svc and kube_lb_maglev. */
type ServiceIdFields = Pick<typeof svcKey, 'vip' | 'port' | 'proto' | 'scope'>;

function writeServiceId(b: Buffer, at: number, fields: ServiceIdFields, f: Frontend, scope: Scope, family: IPFamily): void {
  writeAddr(b, at + fields.vip.offset, f.ip, family);
  b.writeUInt16LE(f.port, at + fields.port.offset);
  b.writeUInt8(protocolNumbers[f.protocol], at + fields.proto.offset);
  b.writeUInt8(SCOPES[scope], at + fields.scope.offset);
}

function decodeServiceId(map: string, b: Buffer, at: number, fields: ServiceIdFields): { frontend: Frontend; scope: Scope; family: IPFamily } {
  const scopeNumber = b.readUInt8(at + fields.scope.offset);
  const scope = (Object.keys(SCOPES) as Scope[]).find((s) => SCOPES[s] === scopeNumber);
  if (scope === undefined) throw new Error(`${map}: unknown scope ${scopeNumber}`);
  return {
    frontend: {
      ip: readAddr(b, at + fields.vip.offset),
      port: b.readUInt16LE(at + fields.port.offset),
      protocol: protocolFromNumber(b.readUInt8(at + fields.proto.offset)),
    },
    scope,
    family: addrFamily(b, at + fields.vip.offset),
  };
}

export function writeSvcKey(b: Buffer, at: number, f: Frontend, scope: Scope, slot: number, family: IPFamily): void {
  writeServiceId(b, at, svcKey, f, scope, family);
  b.writeUInt16LE(slot, at + svcKey.slot.offset);
}

export function decodeSvcKey(b: Buffer, at = 0): { frontend: Frontend; scope: Scope; family: IPFamily; slot: number } {
  return { ...decodeServiceId('kube_lb_svc', b, at, svcKey), slot: b.readUInt16LE(at + svcKey.slot.offset) };
}

export function writeMaglevKey(b: Buffer, at: number, f: Frontend, scope: Scope, chunk: number, family: IPFamily): void {
  writeServiceId(b, at, maglevKey, f, scope, family);
  b.writeUInt16LE(chunk, at + maglevKey.chunk.offset);
}

export function decodeMaglevKey(b: Buffer, at = 0): { frontend: Frontend; scope: Scope; family: IPFamily; chunk: number } {
  return { ...decodeServiceId('kube_lb_maglev', b, at, maglevKey), chunk: b.readUInt16LE(at + maglevKey.chunk.offset) };
}

/** Entries start..start + LB_MAGLEV_CHUNK of a table of slots, as one kube_lb_maglev value (zeros past the table's end). */
export function writeMaglevChunk(b: Buffer, at: number, slots: Uint16Array, start: number): void {
  const end = Math.min(slots.length, start + LB_MAGLEV_CHUNK);
  for (let i = start; i < end; i++) b.writeUInt16LE(slots[i]!, at + (i - start) * 2);
  b.fill(0, at + (end - start) * 2, at + LB_MAGLEV_CHUNK * 2);
}

/** What slot 0 says about a service besides its backend count. */
export interface SvcMeta {
  kind: FrontendKind;
  noEndpoints: NoEndpointsVerdict;
  /** External scope: SNAT flows to the uplink's address. */
  snat: boolean;
  /** Only sources in kube_lb_source_ranges may open flows. */
  sourceRanges: boolean;
  /** Session affinity: seconds a client keeps its backend; 0: none. */
  affinityTimeout: number;
  /** Entries of the service's Maglev table; 0: new flows pick a slot at random. */
  maglevTableSize: number;
}

/** Slot 0 of a service: how many backend slots are in use, and its meta. */
export function writeSvcCount(b: Buffer, at: number, count: number, meta: SvcMeta): void {
  const flags =
    KIND_FLAGS[meta.kind] |
    (meta.noEndpoints === 'drop' ? LB_SVC_F_DROP_NO_ENDPOINTS : 0) |
    (meta.snat ? LB_SVC_F_SNAT : 0) |
    (meta.sourceRanges ? LB_SVC_F_SOURCE_RANGES : 0) |
    (meta.maglevTableSize > 0 ? LB_SVC_F_MAGLEV : 0);
  b.writeUInt16LE(count, at + svcValue.count.offset);
  b.writeUInt16LE(flags, at + svcValue.flags.offset);
  b.writeUInt16LE(meta.maglevTableSize, at + svcValue.maglev_size.offset);
  b.writeUInt32LE(meta.affinityTimeout, at + svcValue.affinity_timeout.offset);
}

/** Slots 1..count: one backend each, of the frontend's family. */
export function writeSvcBackend(b: Buffer, at: number, d: Destination, family: IPFamily): void {
  writeAddr(b, at + svcValue.backend_addr.offset, d.ip, family);
  b.writeUInt16LE(d.port, at + svcValue.backend_port.offset);
}

export function decodeSvcValue(b: Buffer, at = 0): { count: number; meta: SvcMeta; backend: Destination } {
  const flags = b.readUInt16LE(at + svcValue.flags.offset);
  return {
    count: b.readUInt16LE(at + svcValue.count.offset),
    meta: {
      kind: kindFromFlags(flags),
      noEndpoints: flags & LB_SVC_F_DROP_NO_ENDPOINTS ? 'drop' : 'reject',
      snat: (flags & LB_SVC_F_SNAT) !== 0,
      sourceRanges: (flags & LB_SVC_F_SOURCE_RANGES) !== 0,
      affinityTimeout: b.readUInt32LE(at + svcValue.affinity_timeout.offset),
      maglevTableSize: flags & LB_SVC_F_MAGLEV ? b.readUInt16LE(at + svcValue.maglev_size.offset) : 0,
    },
    backend: { ip: readAddr(b, at + svcValue.backend_addr.offset), port: b.readUInt16LE(at + svcValue.backend_port.offset) },
  };
}

const backendKey = layouts.lb_backend_key.fields;

/** A kube_lb_backend_stats key: one backend of one kube_lb_svc service. */
export function writeBackendKey(b: Buffer, at: number, f: Frontend, scope: Scope, d: Destination, family: IPFamily): void {
  writeServiceId(b, at, backendKey, f, scope, family);
  writeAddr(b, at + backendKey.backend_addr.offset, d.ip, family);
  b.writeUInt16LE(d.port, at + backendKey.backend_port.offset);
}

export function decodeBackendKey(b: Buffer, at = 0): { frontend: Frontend; scope: Scope; family: IPFamily; destination: Destination } {
  return {
    ...decodeServiceId('kube_lb_backend_stats', b, at, backendKey),
    destination: { ip: readAddr(b, at + backendKey.backend_addr.offset), port: b.readUInt16LE(at + backendKey.backend_port.offset) },
  };
}

export interface BackendStats {
  connections: number;
  packets: number;
  bytes: number;
}

const backendStats = layouts.lb_backend_stats.fields;

/** The sum over CPUs of one kube_lb_backend_stats value, as a lookup returns it: one struct per possible CPU. */
export function sumBackendStats(values: Buffer, at: number, cpus: number): BackendStats {
  const sum = { connections: 0n, packets: 0n, bytes: 0n };
  for (let cpu = 0; cpu < cpus; cpu++) {
    const base = at + cpu * layouts.lb_backend_stats.size;
    for (const field of ['connections', 'packets', 'bytes'] as const) sum[field] += values.readBigUInt64LE(base + backendStats[field].offset);
  }
  return { connections: Number(sum.connections), packets: Number(sum.packets), bytes: Number(sum.bytes) };
}

export interface Flow {
  family: IPFamily;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  protocol: Protocol;
}

export function encodeFlowKey(f: Flow): Buffer {
  const b = Buffer.alloc(layouts.lb_flow_key.size);
  writeAddr(b, flowKey.saddr.offset, f.saddr, f.family);
  writeAddr(b, flowKey.daddr.offset, f.daddr, f.family);
  b.writeUInt16LE(f.sport, flowKey.sport.offset);
  b.writeUInt16LE(f.dport, flowKey.dport.offset);
  b.writeUInt8(protocolNumbers[f.protocol], flowKey.proto.offset);
  return b;
}

export function decodeFlowKey(b: Buffer, at = 0): Flow {
  return {
    family: addrFamily(b, at + flowKey.saddr.offset),
    saddr: readAddr(b, at + flowKey.saddr.offset),
    daddr: readAddr(b, at + flowKey.daddr.offset),
    sport: b.readUInt16LE(at + flowKey.sport.offset),
    dport: b.readUInt16LE(at + flowKey.dport.offset),
    protocol: protocolFromNumber(b.readUInt8(at + flowKey.proto.offset)),
  };
}

export interface CtValue {
  backend: Destination;
  flags: number;
  /** Seconds of CLOCK_MONOTONIC (coarse) when the flow was last seen. */
  lastSeen: number;
  /** The client port the backend sees when the client's own was taken there, or the flow is SNATed; 0: kept. */
  natSport: number;
  /** SNAT: the node address the backend sees as the client; null: the client's own. */
  natSaddr: string | null;
}

export function decodeCtValue(b: Buffer, at = 0): CtValue {
  return {
    backend: { ip: readAddr(b, at + ctValue.backend_addr.offset), port: b.readUInt16LE(at + ctValue.backend_port.offset) },
    flags: b.readUInt16LE(at + ctValue.flags.offset),
    lastSeen: b.readUInt32LE(at + ctValue.last_seen.offset),
    natSport: b.readUInt16LE(at + ctValue.nat_sport.offset),
    natSaddr: readOptionalAddr(b, at + ctValue.nat_saddr.offset),
  };
}

/** Tests write conntrack entries, and a takeover its LB_CT_F_STACK ones (takeover.ts); the datapath owns the rest. */
export function encodeCtValue(v: CtValue, family: IPFamily): Buffer {
  const b = Buffer.alloc(layouts.lb_ct_value.size);
  writeAddr(b, ctValue.backend_addr.offset, v.backend.ip, family);
  b.writeUInt16LE(v.backend.port, ctValue.backend_port.offset);
  b.writeUInt16LE(v.flags, ctValue.flags.offset);
  b.writeUInt32LE(v.lastSeen, ctValue.last_seen.offset);
  b.writeUInt16LE(v.natSport, ctValue.nat_sport.offset);
  writeOptionalAddr(b, ctValue.nat_saddr.offset, v.natSaddr, family);
  return b;
}

export function decodeRnatValue(b: Buffer, at = 0): { vip: string; vport: number; flags: number; clientAddr: string; clientPort: number } {
  return {
    vip: readAddr(b, at + rnatValue.vip.offset),
    vport: b.readUInt16LE(at + rnatValue.vport.offset),
    flags: b.readUInt16LE(at + rnatValue.flags.offset),
    clientAddr: readAddr(b, at + rnatValue.client_addr.offset),
    clientPort: b.readUInt16LE(at + rnatValue.client_port.offset),
  };
}

export function encodeIfindex(ifindex: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(ifindex, 0);
  return b;
}

/**
 * An interface kube-lb attached to: LB_IFACE_F_* flags, for an uplink the
 * address flows are SNATed to (null: none), and the network namespace the
 * ifindex belongs to (cookie 0n: not recorded).
 */
export interface IfaceRecord {
  flags: number;
  snatAddr: string | null;
  /** The same for IPv6 flows. */
  snatAddr6: string | null;
  netns: Netns;
}

const ifaceValue = layouts.lb_iface_value.fields;

export function encodeIfaceValue(v: IfaceRecord): Buffer {
  const b = Buffer.alloc(layouts.lb_iface_value.size);
  b.writeUInt32LE(v.flags, ifaceValue.flags.offset);
  writeOptionalAddr(b, ifaceValue.snat_addr.offset, v.snatAddr, 'IPv4');
  writeOptionalAddr(b, ifaceValue.snat_addr6.offset, v.snatAddr6, 'IPv6');
  b.writeBigUInt64LE(v.netns.cookie, ifaceValue.netns_cookie.offset);
  b.writeUInt32LE(v.netns.ino, ifaceValue.netns_ino.offset);
  return b;
}

/** sock.h: the cgroup programs translate the sockets of every namespace, pods' too. */
const LB_SOCK_F_ALL_NAMESPACES = 0x1;

/** The node's address of each family (null: none known), which stands for the node as a client of unbound sockets. */
export interface NodeAddresses {
  ipv4: string | null;
  ipv6: string | null;
}

/** kube_lb_sockcfg: the namespace whose sockets the cgroup programs serve, whether they serve every other one too, and the node's addresses. */
export function encodeSockConfig(netnsCookie: bigint, allNamespaces: boolean, node: NodeAddresses): Buffer {
  const { fields } = layouts.lb_sock_config;
  const b = Buffer.alloc(layouts.lb_sock_config.size);
  b.writeBigUInt64LE(netnsCookie, fields.netns_cookie.offset);
  writeOptionalAddr(b, fields.node_addr.offset, node.ipv4, 'IPv4');
  writeOptionalAddr(b, fields.node_addr6.offset, node.ipv6, 'IPv6');
  b.writeUInt32LE(allNamespaces ? LB_SOCK_F_ALL_NAMESPACES : 0, fields.flags.offset);
  return b;
}

/** kube_lb_sock_gone: a frontend and a backend it no longer sends to. */
export function encodeSockGoneKey(frontend: Frontend, backend: Destination, family: IPFamily): Buffer {
  const { fields } = layouts.lb_sock_gone_key;
  const b = Buffer.alloc(layouts.lb_sock_gone_key.size);
  writeAddr(b, fields.vip.offset, frontend.ip, family);
  writeAddr(b, fields.backend_addr.offset, backend.ip, family);
  b.writeUInt16LE(frontend.port, fields.vport.offset);
  b.writeUInt16LE(backend.port, fields.backend_port.offset);
  b.writeUInt8(protocolNumbers[frontend.protocol], fields.proto.offset);
  return b;
}

/** The namespace whose sockets a kube_lb_sockcfg serves. */
export function decodeSockConfigNetns(value: Buffer): bigint {
  return value.readBigUInt64LE(layouts.lb_sock_config.fields.netns_cookie.offset);
}

export function decodeIfaceValue(value: Buffer, at = 0): IfaceRecord {
  return {
    flags: value.readUInt32LE(at + ifaceValue.flags.offset),
    snatAddr: readOptionalAddr(value, at + ifaceValue.snat_addr.offset),
    snatAddr6: readOptionalAddr(value, at + ifaceValue.snat_addr6.offset),
    netns: { ino: value.readUInt32LE(at + ifaceValue.netns_ino.offset), cookie: value.readBigUInt64LE(at + ifaceValue.netns_cookie.offset) },
  };
}

/** enum lb_drop_reason in consts.h, in its order: the reason label of each kube_lb_drops index. */
export const DROP_REASONS = ['no_endpoints', 'no_nat_port', 'conntrack_full', 'rewrite_failed', 'reject_failed', 'no_route', 'ttl_exceeded', 'no_snat_addr', 'source_range'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** Sums a per-CPU u64 counter, as a lookup returns it: one 8-byte value per possible CPU. */
export function sumPerCpu(values: Buffer): number {
  let sum = 0n;
  for (let at = 0; at < values.length; at += 8) sum += values.readBigUInt64LE(at);
  return Number(sum);
}

const sourceRangeKey = layouts.lb_source_range_key.fields;
/** The LPM trie's prefix length covers the frontend (address, port, protocol, pad) before the source. */
const FRONTEND_BITS = 160;
/** An IPv4 prefix covers the 96 bits of the mapping before its own. */
const MAPPED_BITS = 96;

/** A kube_lb_source_ranges key: a frontend of `family` and a CIDR of that family allowed to reach it. */
export function encodeSourceRangeKey(f: Frontend, cidr: string, family: IPFamily): Buffer {
  const { ip, prefix, family: cidrFamily } = parseCidr(cidr);
  if (cidrFamily !== family) throw new Error(`source range ${cidr} is not of the frontend's family ${family}`);
  const b = Buffer.alloc(layouts.lb_source_range_key.size);
  b.writeUInt32LE(FRONTEND_BITS + (family === 'IPv4' ? MAPPED_BITS : 0) + prefix, sourceRangeKey.prefixlen.offset);
  writeAddr(b, sourceRangeKey.vip.offset, f.ip, family);
  b.writeUInt16LE(f.port, sourceRangeKey.port.offset);
  b.writeUInt8(protocolNumbers[f.protocol], sourceRangeKey.proto.offset);
  writeAddr(b, sourceRangeKey.saddr.offset, ip, family);
  // The trie compares only the prefix's bits; the rest is zeroed so that a key reads back as the CIDR.
  const bits = (family === 'IPv4' ? MAPPED_BITS : 0) + prefix;
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    b[sourceRangeKey.saddr.offset + i]! &= (0xff00 >> keep) & 0xff;
  }
  return b;
}

export function decodeSourceRangeKey(b: Buffer, at = 0): { frontend: Frontend; cidr: string } {
  const saddr = at + sourceRangeKey.saddr.offset;
  const bits = b.readUInt32LE(at + sourceRangeKey.prefixlen.offset) - FRONTEND_BITS;
  return {
    frontend: {
      ip: readAddr(b, at + sourceRangeKey.vip.offset),
      port: b.readUInt16LE(at + sourceRangeKey.port.offset),
      protocol: protocolFromNumber(b.readUInt8(at + sourceRangeKey.proto.offset)),
    },
    cidr: `${readAddr(b, saddr)}/${addrFamily(b, saddr) === 'IPv4' ? bits - MAPPED_BITS : bits}`,
  };
}
