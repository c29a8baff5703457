// IPv4 rows run over IPv6: each sandbox address has an IPv6 twin, so a row
// written with IPv4 addresses runs unchanged against IPv6-only services
// (the context translates what it writes and where its clients connect).
import type { ServiceSpec } from '../lib/manifests.js';
import { EXTERNAL_CLIENT_IPS, EXTERNAL_CLIENT_IPS6, NODES, podIpv6 } from '../lib/sandbox.js';

/**
 * Pods' twins by podIpv6, nodes' their IPv6 InternalIP, the external
 * client's its IPv6 addresses; service IPs 10.96.X.Y as fd00:96:X::Y,
 * external IPs 203.0.113.Y and load-balancer IPs 198.51.100.Y in the IPv6
 * ranges the external client routes to node-a (sandbox.ts).
 */
export function ipv6Twin(ip: string): string {
  const [a, b, x, y] = ip.split('.');
  if (a === '10' && b === '244') return podIpv6(ip);
  if (a === '10' && b === '96') return x === '0' ? `fd00:96::${y}` : `fd00:96:${x}::${y}`;
  if (`${a}.${b}.${x}` === '203.0.113') return `fd00:203:0:113::${y}`;
  if (`${a}.${b}.${x}` === '198.51.100') return `fd00:198:51:100::${y}`;
  const client = EXTERNAL_CLIENT_IPS.indexOf(ip as (typeof EXTERNAL_CLIENT_IPS)[number]);
  if (client >= 0) return EXTERNAL_CLIENT_IPS6[client]!;
  const node = Object.values(NODES).find((n) => n.ip === ip);
  if (node) return node.ip6;
  throw new Error(`${ip} has no IPv6 twin in the sandbox: this row cannot run over IPv6`);
}

/** A single address's range: its twin's. Wider ranges have no twin a row could rely on. */
function ipv6RangeTwin(cidr: string): string {
  const [ip, prefix] = cidr.split('/');
  if (prefix !== '32') throw new Error(`${cidr} has no IPv6 twin: only single addresses (/32) do`);
  return `${ipv6Twin(ip!)}/128`;
}

/** A service's IPv6-only twin: each of its addresses is the twin of its IPv4 one. */
export function ipv6Service(s: ServiceSpec): ServiceSpec {
  if (s.clusterIPs !== undefined) throw new Error(`service ${s.name}: clusterIPs has no IPv6 twin: this row cannot run over IPv6`);
  const headless = s.clusterIP === 'None' || s.clusterIP === '';
  return {
    ...s,
    clusterIP: headless ? s.clusterIP : ipv6Twin(s.clusterIP),
    endpoints: s.endpoints.map((e) => ({ ...e, ip: ipv6Twin(e.ip) })),
    ...(s.externalIPs && { externalIPs: s.externalIPs.map(ipv6Twin) }),
    ...(s.loadBalancerIngress && { loadBalancerIngress: s.loadBalancerIngress.map(ipv6Twin) }),
    ...(s.loadBalancerSourceRanges && { loadBalancerSourceRanges: s.loadBalancerSourceRanges.map(ipv6RangeTwin) }),
  };
}
