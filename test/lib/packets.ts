// Crafting and reading raw Ethernet/IPv4/IPv6/TCP/UDP frames for
// BPF_PROG_TEST_RUN. A frame is IPv6 when its addresses are.
import { isIPv6 } from 'node:net';
import { bytesToIpv6, ipv4ToInt, intToIpv4, ipv6ToBytes } from '../../src/net/ip.js';

/** An IPv6 extension header before the L4 header: hop-by-hop (0), routing (43), fragment (44) or destination options (60). */
export interface Ipv6Ext {
  type: 0 | 43 | 44 | 60;
  /** Its length in 8-byte units beyond the first 8 (not for a fragment header). */
  extraUnits?: number;
  /** Routing header: segments left. */
  segmentsLeft?: number;
}

export interface PacketSpec {
  srcMac?: string;
  dstMac?: string;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  protocol: 'TCP' | 'UDP';
  payload?: Buffer;
  /** Raw IP options, a multiple of 4 bytes. */
  ipOptions?: Buffer;
  /** IP flags and fragment offset field (host order), e.g. 0x2000 for MF. */
  fragField?: number;
  /** Leave the UDP checksum at 0 ("no checksum"). */
  udpNoChecksum?: boolean;
  /** TCP flags byte; SYN by default. */
  tcpFlags?: number;
  /** 64 by default; IPv6: the hop limit. */
  ttl?: number;
  /** IPv6 only: extension headers, in order. */
  ipv6Ext?: Ipv6Ext[];
}

const PROTO = { TCP: 6, UDP: 17 } as const;
export const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, ACK: 0x10 } as const;

function mac(s: string): Buffer {
  return Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
}

/** The Internet checksum (RFC 1071) of buf. */
export function inetChecksum(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudoHeaderSum(saddr: number, daddr: number, proto: number, l4len: number): number {
  return (saddr >>> 16) + (saddr & 0xffff) + (daddr >>> 16) + (daddr & 0xffff) + proto + l4len;
}

/** The IPv6 pseudo-header's sum (RFC 8200 8.1), unfolded. */
function pseudoHeaderSum6(saddr: Buffer, daddr: Buffer, proto: number, l4len: number): number {
  let sum = proto + (l4len >>> 16) + (l4len & 0xffff);
  for (let i = 0; i < 16; i += 2) sum += saddr.readUInt16BE(i) + daddr.readUInt16BE(i);
  return sum;
}

function l4Segment(p: PacketSpec): Buffer {
  const payload = p.payload ?? Buffer.from('kube-lb');
  const l4hdr = p.protocol === 'TCP' ? 20 : 8;
  const l4 = Buffer.alloc(l4hdr + payload.length);
  l4.writeUInt16BE(p.sport, 0);
  l4.writeUInt16BE(p.dport, 2);
  if (p.protocol === 'TCP') {
    l4.writeUInt32BE(1000, 4); // seq
    l4.writeUInt8(5 << 4, 12); // data offset
    l4.writeUInt8(p.tcpFlags ?? TCP.SYN, 13);
    l4.writeUInt16BE(65535, 14); // window
  } else {
    l4.writeUInt16BE(l4.length, 4);
  }
  payload.copy(l4, l4hdr);
  return l4;
}

function ethernet(p: PacketSpec, etherType: number): Buffer {
  const type = Buffer.alloc(2);
  type.writeUInt16BE(etherType);
  return Buffer.concat([mac(p.dstMac ?? '02:00:00:00:00:02'), mac(p.srcMac ?? '02:00:00:00:00:01'), type]);
}

function buildPacket6(p: PacketSpec): Buffer {
  const l4 = l4Segment(p);
  const saddr = ipv6ToBytes(p.saddr);
  const daddr = ipv6ToBytes(p.daddr);
  let sum = inetChecksum(l4, pseudoHeaderSum6(saddr, daddr, PROTO[p.protocol], l4.length));
  if (p.protocol === 'UDP' && sum === 0) sum = 0xffff;
  l4.writeUInt16BE(sum, p.protocol === 'TCP' ? 16 : 6);
  const exts = p.ipv6Ext ?? [];
  const headers = exts.map((e, i) => {
    const next = i + 1 < exts.length ? exts[i + 1]!.type : PROTO[p.protocol];
    const h = Buffer.alloc(e.type === 44 ? 8 : 8 * (1 + (e.extraUnits ?? 0)));
    h.writeUInt8(next, 0);
    if (e.type === 44) {
      h.writeUInt16BE(0x0001, 2); // offset 0, more fragments
      h.writeUInt32BE(0x1234, 4);
    } else {
      h.writeUInt8(e.extraUnits ?? 0, 1);
      if (e.type === 43) h.writeUInt8(e.segmentsLeft ?? 0, 3);
      else h.writeUInt8(1, 2); // a PadN option filling the rest
      if (e.type !== 43) h.writeUInt8(h.length - 4, 3);
    }
    return h;
  });
  const ext = Buffer.concat(headers);
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(ext.length + l4.length, 4);
  ip.writeUInt8(exts.length > 0 ? exts[0]!.type : PROTO[p.protocol], 6);
  ip.writeUInt8(p.ttl ?? 64, 7);
  saddr.copy(ip, 8);
  daddr.copy(ip, 24);
  return Buffer.concat([ethernet(p, 0x86dd), ip, ext, l4]);
}

export function buildPacket(p: PacketSpec): Buffer {
  if (isIPv6(p.saddr)) return buildPacket6(p);
  const options = p.ipOptions ?? Buffer.alloc(0);
  const l4 = l4Segment(p);
  const saddr = ipv4ToInt(p.saddr);
  const daddr = ipv4ToInt(p.daddr);
  if (!(p.protocol === 'UDP' && p.udpNoChecksum)) {
    let sum = inetChecksum(l4, pseudoHeaderSum(saddr, daddr, PROTO[p.protocol], l4.length));
    if (p.protocol === 'UDP' && sum === 0) sum = 0xffff;
    l4.writeUInt16BE(sum, p.protocol === 'TCP' ? 16 : 6);
  }
  const ip = Buffer.alloc(20 + options.length);
  ip.writeUInt8(0x40 | ((20 + options.length) / 4), 0);
  ip.writeUInt16BE(ip.length + l4.length, 2);
  ip.writeUInt16BE(0x1234, 4);
  ip.writeUInt16BE(p.fragField ?? 0x4000, 6); // DF by default
  ip.writeUInt8(p.ttl ?? 64, 8);
  ip.writeUInt8(PROTO[p.protocol], 9);
  ip.writeUInt32BE(saddr, 12);
  ip.writeUInt32BE(daddr, 16);
  options.copy(ip, 20);
  ip.writeUInt16BE(inetChecksum(ip), 10);
  return Buffer.concat([ethernet(p, 0x0800), ip, l4]);
}

export interface ParsedPacket {
  srcMac: string;
  dstMac: string;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  protocol: number;
  ttl: number;
  ipChecksumValid: boolean;
  l4ChecksumValid: boolean;
  l4Checksum: number;
  payload: Buffer;
}

function macString(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** What the IP layer of a frame says, whichever its version. */
interface IpLayer {
  saddr: string;
  daddr: string;
  protocol: number;
  ttl: number;
  ipChecksumValid: boolean;
  l4: Buffer;
  /** Whether the L4 checksum is right over its pseudo-header (for UDP over IPv4, 0 counts: none). */
  l4ChecksumValid: (l4Checksum: number) => boolean;
}

/** An IPv6 frame's IP layer: the extension headers before TCP or UDP are walked over. */
function ipv6Layer(ip: Buffer): IpLayer {
  let protocol = ip[6]!;
  let off = 40;
  while (protocol === 0 || protocol === 43 || protocol === 60) {
    const next = ip[off]!;
    off += 8 * (1 + ip[off + 1]!);
    protocol = next;
  }
  const l4 = ip.subarray(off, 40 + ip.readUInt16BE(4));
  const [saddr, daddr] = [ip.subarray(8, 24), ip.subarray(24, 40)];
  return {
    saddr: bytesToIpv6(saddr),
    daddr: bytesToIpv6(daddr),
    protocol,
    ttl: ip[7]!,
    ipChecksumValid: true, // IPv6 has none
    l4,
    l4ChecksumValid: (sum) => sum !== 0 && inetChecksum(l4, pseudoHeaderSum6(saddr, daddr, protocol, l4.length)) === 0,
  };
}

function ipv4Layer(ip: Buffer): IpLayer {
  const ihl = (ip[0]! & 0x0f) * 4;
  const protocol = ip[9]!;
  const l4 = ip.subarray(ihl, ip.readUInt16BE(2));
  const [saddr, daddr] = [ip.readUInt32BE(12), ip.readUInt32BE(16)];
  return {
    saddr: intToIpv4(saddr),
    daddr: intToIpv4(daddr),
    protocol,
    ttl: ip[8]!,
    ipChecksumValid: inetChecksum(ip.subarray(0, ihl)) === 0,
    l4,
    l4ChecksumValid: (sum) => (protocol === 17 && sum === 0) || inetChecksum(l4, pseudoHeaderSum(saddr, daddr, protocol, l4.length)) === 0,
  };
}

export function parsePacket(frame: Buffer): ParsedPacket {
  const ip = frame.subarray(14);
  const layer = frame.readUInt16BE(12) === 0x86dd ? ipv6Layer(ip) : ipv4Layer(ip);
  const { l4, protocol } = layer;
  const l4Checksum = l4.readUInt16BE(protocol === 6 ? 16 : 6);
  return {
    dstMac: macString(frame.subarray(0, 6)),
    srcMac: macString(frame.subarray(6, 12)),
    saddr: layer.saddr,
    daddr: layer.daddr,
    sport: l4.readUInt16BE(0),
    dport: l4.readUInt16BE(2),
    protocol,
    ttl: layer.ttl,
    ipChecksumValid: layer.ipChecksumValid,
    l4ChecksumValid: layer.l4ChecksumValid(l4Checksum),
    l4Checksum,
    payload: l4.subarray(protocol === 6 ? 20 : 8),
  };
}
