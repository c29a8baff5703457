// Binary encoders and decoders for the eBPF maps' keys and values.
// They mirror bpf/include/structs.h and consts.h; test/unit/encoding-btf.test.ts
// checks every layout below against the BTF of the built object.
// Addresses are bytes in packet order (written big-endian); ports, counts
// and flags are in host order (little-endian, checked below).
import os from 'node:os';
import type { Destination, Frontend, FrontendKind, NoEndpointsVerdict, Protocol } from '../../model/contract.js';
import { intToIpv4, ipv4ToInt, parseCidr } from '../../net/ip.js';
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
  lb_svc_key: { size: 12, fields: { vip: { offset: 0, size: 4 }, port: { offset: 4, size: 2 }, proto: { offset: 6, size: 1 }, scope: { offset: 7, size: 1 }, slot: { offset: 8, size: 2 } } },
  lb_svc_value: {
    size: 16,
    fields: {
      count: { offset: 0, size: 2 },
      flags: { offset: 2, size: 2 },
      backend_addr: { offset: 4, size: 4 },
      backend_port: { offset: 8, size: 2 },
      maglev_size: { offset: 10, size: 2 },
      affinity_timeout: { offset: 12, size: 4 },
    },
  },
  lb_maglev_key: { size: 12, fields: { vip: { offset: 0, size: 4 }, port: { offset: 4, size: 2 }, proto: { offset: 6, size: 1 }, scope: { offset: 7, size: 1 }, chunk: { offset: 8, size: 2 } } },
  lb_maglev_chunk: { size: 2048, fields: { slots: { offset: 0, size: 2048 } } },
  lb_affinity_key: { size: 12, fields: { client: { offset: 0, size: 4 }, vip: { offset: 4, size: 4 }, port: { offset: 8, size: 2 }, proto: { offset: 10, size: 1 }, scope: { offset: 11, size: 1 } } },
  lb_affinity_value: { size: 12, fields: { backend_addr: { offset: 0, size: 4 }, backend_port: { offset: 4, size: 2 }, slot: { offset: 6, size: 2 }, last_seen: { offset: 8, size: 4 } } },
  lb_source_range_key: {
    size: 16,
    fields: { prefixlen: { offset: 0, size: 4 }, vip: { offset: 4, size: 4 }, port: { offset: 8, size: 2 }, proto: { offset: 10, size: 1 }, saddr: { offset: 12, size: 4 } },
  },
  lb_flow_key: { size: 16, fields: { saddr: { offset: 0, size: 4 }, daddr: { offset: 4, size: 4 }, sport: { offset: 8, size: 2 }, dport: { offset: 10, size: 2 }, proto: { offset: 12, size: 1 } } },
  lb_ct_value: {
    size: 20,
    fields: {
      backend_addr: { offset: 0, size: 4 },
      backend_port: { offset: 4, size: 2 },
      flags: { offset: 6, size: 2 },
      last_seen: { offset: 8, size: 4 },
      nat_sport: { offset: 12, size: 2 },
      nat_saddr: { offset: 16, size: 4 },
    },
  },
  lb_rnat_value: {
    size: 16,
    fields: { vip: { offset: 0, size: 4 }, vport: { offset: 4, size: 2 }, flags: { offset: 6, size: 2 }, client_addr: { offset: 8, size: 4 }, client_port: { offset: 12, size: 2 } },
  },
  lb_iface_value: {
    size: 24,
    fields: { flags: { offset: 0, size: 4 }, snat_addr: { offset: 4, size: 4 }, netns_cookie: { offset: 8, size: 8 }, netns_ino: { offset: 16, size: 4 } },
  },
  lb_sock_config: { size: 16, fields: { netns_cookie: { offset: 0, size: 8 }, node_addr: { offset: 8, size: 4 }, flags: { offset: 12, size: 4 } } },
  lb_backend_key: {
    size: 16,
    fields: {
      vip: { offset: 0, size: 4 },
      port: { offset: 4, size: 2 },
      proto: { offset: 6, size: 1 },
      scope: { offset: 7, size: 1 },
      backend_addr: { offset: 8, size: 4 },
      backend_port: { offset: 12, size: 2 },
    },
  },
  lb_backend_stats: { size: 24, fields: { connections: { offset: 0, size: 8 }, packets: { offset: 8, size: 8 }, bytes: { offset: 16, size: 8 } } },
  lb_sock_gone_key: {
    size: 16,
    fields: { vip: { offset: 0, size: 4 }, backend_addr: { offset: 4, size: 4 }, vport: { offset: 8, size: 2 }, backend_port: { offset: 10, size: 2 }, proto: { offset: 12, size: 1 } },
  },
} satisfies Record<string, { size: number; fields: Record<string, Field> }>;

/** From consts.h. */
export const LB_HAIRPIN_ADDR = '169.254.7.1';
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

const svcKey = layouts.lb_svc_key.fields;
const svcValue = layouts.lb_svc_value.fields;
const flowKey = layouts.lb_flow_key.fields;
const ctValue = layouts.lb_ct_value.fields;
const rnatValue = layouts.lb_rnat_value.fields;

const maglevKey = layouts.lb_maglev_key.fields;

/** The fields that name a service in one scope, in the keys of kube_lb_svc and kube_lb_maglev. */
type ServiceIdFields = Pick<typeof svcKey, 'vip' | 'port' | 'proto' | 'scope'>;

function writeServiceId(b: Buffer, at: number, fields: ServiceIdFields, f: Frontend, scope: Scope): void {
  b.writeUInt32BE(ipv4ToInt(f.ip), at + fields.vip.offset);
  b.writeUInt16LE(f.port, at + fields.port.offset);
  b.writeUInt8(protocolNumbers[f.protocol], at + fields.proto.offset);
  b.writeUInt8(SCOPES[scope], at + fields.scope.offset);
}

function decodeServiceId(map: string, b: Buffer, at: number, fields: ServiceIdFields): { frontend: Frontend; scope: Scope } {
  const scopeNumber = b.readUInt8(at + fields.scope.offset);
  const scope = (Object.keys(SCOPES) as Scope[]).find((s) => SCOPES[s] === scopeNumber);
  if (scope === undefined) throw new Error(`${map}: unknown scope ${scopeNumber}`);
  return {
    frontend: {
      ip: intToIpv4(b.readUInt32BE(at + fields.vip.offset)),
      port: b.readUInt16LE(at + fields.port.offset),
      protocol: protocolFromNumber(b.readUInt8(at + fields.proto.offset)),
    },
    scope,
  };
}

export function writeSvcKey(b: Buffer, at: number, f: Frontend, scope: Scope, slot: number): void {
  writeServiceId(b, at, svcKey, f, scope);
  b.writeUInt16LE(slot, at + svcKey.slot.offset);
}

export function decodeSvcKey(b: Buffer, at = 0): { frontend: Frontend; scope: Scope; slot: number } {
  return { ...decodeServiceId('kube_lb_svc', b, at, svcKey), slot: b.readUInt16LE(at + svcKey.slot.offset) };
}

export function writeMaglevKey(b: Buffer, at: number, f: Frontend, scope: Scope, chunk: number): void {
  writeServiceId(b, at, maglevKey, f, scope);
  b.writeUInt16LE(chunk, at + maglevKey.chunk.offset);
}

export function decodeMaglevKey(b: Buffer, at = 0): { frontend: Frontend; scope: Scope; chunk: number } {
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

/** Slots 1..count: one backend each. */
export function writeSvcBackend(b: Buffer, at: number, d: Destination): void {
  b.writeUInt32BE(ipv4ToInt(d.ip), at + svcValue.backend_addr.offset);
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
    backend: { ip: intToIpv4(b.readUInt32BE(at + svcValue.backend_addr.offset)), port: b.readUInt16LE(at + svcValue.backend_port.offset) },
  };
}

const backendKey = layouts.lb_backend_key.fields;

/** A kube_lb_backend_stats key: one backend of one kube_lb_svc service. */
export function writeBackendKey(b: Buffer, at: number, f: Frontend, scope: Scope, d: Destination): void {
  writeServiceId(b, at, backendKey, f, scope);
  b.writeUInt32BE(ipv4ToInt(d.ip), at + backendKey.backend_addr.offset);
  b.writeUInt16LE(d.port, at + backendKey.backend_port.offset);
}

export function decodeBackendKey(b: Buffer, at = 0): { frontend: Frontend; scope: Scope; destination: Destination } {
  return {
    ...decodeServiceId('kube_lb_backend_stats', b, at, backendKey),
    destination: { ip: intToIpv4(b.readUInt32BE(at + backendKey.backend_addr.offset)), port: b.readUInt16LE(at + backendKey.backend_port.offset) },
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
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  protocol: Protocol;
}

export function encodeFlowKey(f: Flow): Buffer {
  const b = Buffer.alloc(layouts.lb_flow_key.size);
  b.writeUInt32BE(ipv4ToInt(f.saddr), flowKey.saddr.offset);
  b.writeUInt32BE(ipv4ToInt(f.daddr), flowKey.daddr.offset);
  b.writeUInt16LE(f.sport, flowKey.sport.offset);
  b.writeUInt16LE(f.dport, flowKey.dport.offset);
  b.writeUInt8(protocolNumbers[f.protocol], flowKey.proto.offset);
  return b;
}

export function decodeFlowKey(b: Buffer, at = 0): Flow {
  return {
    saddr: intToIpv4(b.readUInt32BE(at + flowKey.saddr.offset)),
    daddr: intToIpv4(b.readUInt32BE(at + flowKey.daddr.offset)),
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
    backend: { ip: intToIpv4(b.readUInt32BE(at + ctValue.backend_addr.offset)), port: b.readUInt16LE(at + ctValue.backend_port.offset) },
    flags: b.readUInt16LE(at + ctValue.flags.offset),
    lastSeen: b.readUInt32LE(at + ctValue.last_seen.offset),
    natSport: b.readUInt16LE(at + ctValue.nat_sport.offset),
    natSaddr: b.readUInt32BE(at + ctValue.nat_saddr.offset) === 0 ? null : intToIpv4(b.readUInt32BE(at + ctValue.nat_saddr.offset)),
  };
}

/** Tests write conntrack entries, and a takeover its LB_CT_F_STACK ones (takeover.ts); the datapath owns the rest. */
export function encodeCtValue(v: CtValue): Buffer {
  const b = Buffer.alloc(layouts.lb_ct_value.size);
  b.writeUInt32BE(ipv4ToInt(v.backend.ip), ctValue.backend_addr.offset);
  b.writeUInt16LE(v.backend.port, ctValue.backend_port.offset);
  b.writeUInt16LE(v.flags, ctValue.flags.offset);
  b.writeUInt32LE(v.lastSeen, ctValue.last_seen.offset);
  b.writeUInt16LE(v.natSport, ctValue.nat_sport.offset);
  b.writeUInt32BE(v.natSaddr === null ? 0 : ipv4ToInt(v.natSaddr), ctValue.nat_saddr.offset);
  return b;
}

export function decodeRnatValue(b: Buffer, at = 0): { vip: string; vport: number; flags: number; clientAddr: string; clientPort: number } {
  return {
    vip: intToIpv4(b.readUInt32BE(at + rnatValue.vip.offset)),
    vport: b.readUInt16LE(at + rnatValue.vport.offset),
    flags: b.readUInt16LE(at + rnatValue.flags.offset),
    clientAddr: intToIpv4(b.readUInt32BE(at + rnatValue.client_addr.offset)),
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
  netns: Netns;
}

const ifaceValue = layouts.lb_iface_value.fields;

export function encodeIfaceValue(v: IfaceRecord): Buffer {
  const b = Buffer.alloc(layouts.lb_iface_value.size);
  b.writeUInt32LE(v.flags, ifaceValue.flags.offset);
  b.writeUInt32BE(v.snatAddr === null ? 0 : ipv4ToInt(v.snatAddr), ifaceValue.snat_addr.offset);
  b.writeBigUInt64LE(v.netns.cookie, ifaceValue.netns_cookie.offset);
  b.writeUInt32LE(v.netns.ino, ifaceValue.netns_ino.offset);
  return b;
}

/** sock.h: the cgroup programs translate the sockets of every namespace, pods' too. */
const LB_SOCK_F_ALL_NAMESPACES = 0x1;

/**
 * kube_lb_sockcfg: the namespace whose sockets the cgroup programs serve,
 * whether they serve every other one too, and the node's address (null:
 * none known yet).
 */
export function encodeSockConfig(netnsCookie: bigint, allNamespaces: boolean, nodeAddr: string | null): Buffer {
  const { fields } = layouts.lb_sock_config;
  const b = Buffer.alloc(layouts.lb_sock_config.size);
  b.writeBigUInt64LE(netnsCookie, fields.netns_cookie.offset);
  b.writeUInt32BE(nodeAddr === null ? 0 : ipv4ToInt(nodeAddr), fields.node_addr.offset);
  b.writeUInt32LE(allNamespaces ? LB_SOCK_F_ALL_NAMESPACES : 0, fields.flags.offset);
  return b;
}

/** kube_lb_sock_gone: a frontend and a backend it no longer sends to. */
export function encodeSockGoneKey(frontend: Frontend, backend: Destination): Buffer {
  const { fields } = layouts.lb_sock_gone_key;
  const b = Buffer.alloc(layouts.lb_sock_gone_key.size);
  b.writeUInt32BE(ipv4ToInt(frontend.ip), fields.vip.offset);
  b.writeUInt32BE(ipv4ToInt(backend.ip), fields.backend_addr.offset);
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
  const snat = value.readUInt32BE(at + ifaceValue.snat_addr.offset);
  return {
    flags: value.readUInt32LE(at + ifaceValue.flags.offset),
    snatAddr: snat === 0 ? null : intToIpv4(snat),
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
const FRONTEND_BITS = 64;

/** A kube_lb_source_ranges key: a frontend and an IPv4 CIDR allowed to reach it. */
export function encodeSourceRangeKey(f: Frontend, cidr: string): Buffer {
  const { ip, prefix } = parseCidr(cidr);
  const b = Buffer.alloc(layouts.lb_source_range_key.size);
  b.writeUInt32LE(FRONTEND_BITS + prefix, sourceRangeKey.prefixlen.offset);
  b.writeUInt32BE(ipv4ToInt(f.ip), sourceRangeKey.vip.offset);
  b.writeUInt16LE(f.port, sourceRangeKey.port.offset);
  b.writeUInt8(protocolNumbers[f.protocol], sourceRangeKey.proto.offset);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  b.writeUInt32BE((ipv4ToInt(ip) & mask) >>> 0, sourceRangeKey.saddr.offset);
  return b;
}

export function decodeSourceRangeKey(b: Buffer, at = 0): { frontend: Frontend; cidr: string } {
  return {
    frontend: {
      ip: intToIpv4(b.readUInt32BE(at + sourceRangeKey.vip.offset)),
      port: b.readUInt16LE(at + sourceRangeKey.port.offset),
      protocol: protocolFromNumber(b.readUInt8(at + sourceRangeKey.proto.offset)),
    },
    cidr: `${intToIpv4(b.readUInt32BE(at + sourceRangeKey.saddr.offset))}/${b.readUInt32LE(at + sourceRangeKey.prefixlen.offset) - FRONTEND_BITS}`,
  };
}
