// Addresses as kube-lb handles them: the family of an address, ordering,
// IPv4's numeric form and IPv6's bytes for the BPF maps, and CIDR
// membership.
import { isIPv4, isIPv6 } from 'node:net';

export type IPFamily = 'IPv4' | 'IPv6';

/** An address's length in bits in the family: the prefix of a single host. */
export function addressBits(family: IPFamily): number {
  return family === 'IPv4' ? 32 : 128;
}

/** The family of a textual address; throws on anything that is not an address. */
export function ipFamily(ip: string): IPFamily {
  if (isIPv4(ip)) return 'IPv4';
  if (isIPv6(ip)) return 'IPv6';
  throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
}

/** Parses dotted-quad IPv4 into an unsigned 32-bit number; throws on anything else. */
export function ipv4ToInt(ip: string): number {
  // A hand-written scan: this runs for every map entry a sync writes.
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
    } else if (c === 46 && digits > 0 && dots < 3 && octet <= 255) {
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
    }
  }
  if (dots !== 3 || digits === 0 || octet > 255) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  return n * 256 + octet;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** An address as a bigint, for ordering and prefix tests across both families. */
function ipToBigInt(ip: string): bigint {
  if (isIPv4(ip)) return BigInt(ipv4ToInt(ip));
  let text = ip;
  // An embedded IPv4 tail ("::ffff:1.2.3.4") is two groups.
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = ipv4ToInt(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const split = (s: string | undefined): string[] => (s ? s.split(':') : []);
  const h = split(head);
  const t = split(tail);
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** An IPv6 address as its 16 bytes; throws on anything else. */
export function ipv6ToBytes(ip: string): Buffer {
  if (!isIPv6(ip)) throw new Error(`not an IPv6 address: ${JSON.stringify(ip)}`);
  const b = Buffer.alloc(16);
  let n = ipToBigInt(ip);
  for (let i = 15; i >= 0; i--, n >>= 8n) b[i] = Number(n & 0xffn);
  return b;
}

/** 16 bytes as an IPv6 address in RFC 5952's form: the longest run of zero groups (two or more, the first of equals) as "::". */
export function bytesToIpv6(b: Buffer, at = 0): string {
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(at + 2 * i));
  let best = { start: -1, length: 1 };
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (best.start < 0) return hex(groups);
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`;
}

/**
 * An address in one spelling per address: IPv4 as given, IPv6 in RFC 5952's
 * form (lower case, zeros compressed), as conntrack prints it and Go's
 * net.IP.String() gives it; so "FD00:0:0::1" and "fd00::1" are one address.
 */
export function canonicalIp(ip: string): string {
  return isIPv6(ip) ? bytesToIpv6(ipv6ToBytes(ip)) : ip;
}

/** Orders addresses: IPv4 before IPv6, then numerically. */
export function compareIps(a: string, b: string): number {
  const fa = ipFamily(a);
  const fb = ipFamily(b);
  if (fa !== fb) return fa === 'IPv4' ? -1 : 1;
  if (fa === 'IPv4') return ipv4ToInt(a) - ipv4ToInt(b);
  const x = ipToBigInt(a);
  const y = ipToBigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export interface Cidr {
  family: IPFamily;
  /** The network address as written, e.g. "10.0.0.0". */
  ip: string;
  prefix: number;
}

/** Parses "address/prefix"; throws naming what is wrong. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const ip = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? '' : text.slice(slash + 1);
  if (!isIPv4(ip) && !isIPv6(ip)) throw new Error(`not a CIDR: ${JSON.stringify(text)} (expected an address/prefix such as 10.0.0.0/8)`);
  const family = ipFamily(ip);
  const max = addressBits(family);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) throw new Error(`not a CIDR: ${JSON.stringify(text)} (the prefix must be 0 to ${max})`);
  return { family, ip, prefix: Number(prefixText) };
}

/** Whether `ip` lies in `cidr`; addresses of the other family never do. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  if (ipFamily(ip) !== cidr.family) return false;
  const bits = BigInt(addressBits(cidr.family));
  const shift = bits - BigInt(cidr.prefix);
  return ipToBigInt(ip) >> shift === ipToBigInt(cidr.ip) >> shift;
}
