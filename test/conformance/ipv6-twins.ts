// IPv4 rows run over IPv6: each sandbox address has an IPv6 twin, so a row
// written with IPv4 addresses runs unchanged against IPv6-only services
// (the context translates what it writes and where its clients connect).
import type { ServiceSpec } from '../lib/manifests.js';
import { NODES, podIpv6 } from '../lib/sandbox.js';

/** Pods' twins by podIpv6, nodes' their IPv6 InternalIP, service IPs 10.96.X.Y as fd00:96:X::Y. */
export function ipv6Twin(ip: string): string {
  const [a, b, x, y] = ip.split('.');
  if (a === '10' && b === '244') return podIpv6(ip);
  if (a === '10' && b === '96') return x === '0' ? `fd00:96::${y}` : `fd00:96:${x}::${y}`;
  const node = Object.values(NODES).find((n) => n.ip === ip);
  if (node) return node.ip6;
  throw new Error(`${ip} has no IPv6 twin in the sandbox: this row cannot run over IPv6`);
}

/** A service's IPv6-only twin: its cluster IP and endpoints are the twins of its IPv4 ones. */
export function ipv6Service(s: ServiceSpec): ServiceSpec {
  for (const field of ['clusterIPs', 'externalIPs', 'loadBalancerIngress', 'loadBalancerSourceRanges'] as const) {
    if (s[field] !== undefined) throw new Error(`service ${s.name}: ${field} has no IPv6 twin: this row cannot run over IPv6`);
  }
  const headless = s.clusterIP === 'None' || s.clusterIP === '';
  return { ...s, clusterIP: headless ? s.clusterIP : ipv6Twin(s.clusterIP), endpoints: s.endpoints.map((e) => ({ ...e, ip: ipv6Twin(e.ip) })) };
}
