// Crafting and reading raw Ethernet/IPv4/TCP/UDP frames for BPF_PROG_TEST_RUN.
import { ipv4ToInt, intToIpv4 } from '../../src/net/ip.js';

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
  /** 64 by default. */
  ttl?: number;
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

export function buildPacket(p: PacketSpec): Buffer {
  const payload = p.payload ?? Buffer.from('kube-lb');
  const options = p.ipOptions ?? Buffer.alloc(0);
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
  const eth = Buffer.concat([mac(p.dstMac ?? '02:00:00:00:00:02'), mac(p.srcMac ?? '02:00:00:00:00:01'), Buffer.from([0x08, 0x00])]);
  return Buffer.concat([eth, ip, l4]);
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

export function parsePacket(frame: Buffer): ParsedPacket {
  const ip = frame.subarray(14);
  const ihl = (ip[0]! & 0x0f) * 4;
  const totLen = ip.readUInt16BE(2);
  const proto = ip[9]!;
  const l4 = ip.subarray(ihl, totLen);
  const saddr = ip.readUInt32BE(12);
  const daddr = ip.readUInt32BE(16);
  const csumAt = proto === 6 ? 16 : 6;
  const l4Checksum = l4.readUInt16BE(csumAt);
  const l4ChecksumValid =
    (proto === 17 && l4Checksum === 0) || inetChecksum(l4, pseudoHeaderSum(saddr, daddr, proto, l4.length)) === 0;
  return {
    dstMac: macString(frame.subarray(0, 6)),
    srcMac: macString(frame.subarray(6, 12)),
    saddr: intToIpv4(saddr),
    daddr: intToIpv4(daddr),
    sport: l4.readUInt16BE(0),
    dport: l4.readUInt16BE(2),
    protocol: proto,
    ttl: ip[8]!,
    ipChecksumValid: inetChecksum(ip.subarray(0, ihl)) === 0,
    l4ChecksumValid,
    l4Checksum,
    payload: l4.subarray(proto === 6 ? 20 : 8),
  };
}
