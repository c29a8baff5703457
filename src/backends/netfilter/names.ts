// kube-proxy's names for service ports and their chains, shared by the
// iptables and nftables backends so both look like kube-proxy's to an
// operator.
import { createHash } from 'node:crypto';
import type { Destination, IPFamily, ServicePortState } from '../../model/contract.js';

/** What names a service port in chain names and comments. */
export type PortIdentity = Pick<ServicePortState, 'key' | 'namespace' | 'name' | 'portName' | 'protocol'>;

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (Go's base32.StdEncoding) without padding; callers only take a prefix. */
function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** base32(sha256(text)), the digest kube-proxy shortens into chain names. */
export function nameHash(text: string): string {
  return base32(createHash('sha256').update(text).digest());
}

/** kube-proxy's ServicePortName.String(): "namespace/name:port", or "namespace/name" for an unnamed port. */
export function servicePortName(sp: PortIdentity): string {
  return sp.portName === '' ? `${sp.namespace}/${sp.name}` : `${sp.namespace}/${sp.name}:${sp.portName}`;
}

/** The protocol as kube-proxy spells it in rules and hashes. */
export function protocolName(sp: PortIdentity): string {
  return sp.protocol.toLowerCase();
}

/** An endpoint as kube-proxy writes it (Go's net.JoinHostPort): an IPv6 address bracketed. */
export function endpointName(d: Destination, family: IPFamily): string {
  return family === 'IPv6' ? `[${d.ip}]:${d.port}` : `${d.ip}:${d.port}`;
}

// Names and comments come from validated Kubernetes names (DNS labels), so
// they never hold quotes, spaces or control characters. Rule text is built by
// string concatenation, so this is checked again here rather than trusted.
const SAFE_TEXT = /^[A-Za-z0-9._:/ >[\]-]*$/;

/** Returns `text` if it can be embedded in rule text as is; throws naming the service port otherwise. */
export function safeText(text: string, sp: PortIdentity): string {
  if (!SAFE_TEXT.test(text) || text.length > 250) {
    throw new Error(`service port ${JSON.stringify(sp.key)}: ${JSON.stringify(text)} cannot be used in a rule (only letters, digits and ._:/>[]- are allowed, at most 250 characters)`);
  }
  return text;
}
