// What each backend can do, in one place. The conformance suite runs every
// scenario against every backend variant and skips, with the reason given
// here, only what this table marks unsupported; the README's table is
// rendered from it (`make readme-capabilities`).
import type { BackendName } from './registry.js';

export const CAPABILITIES = {
  tcp: 'TCP services',
  udp: 'UDP services',
  'several-ports': 'Several ports per service',
  'endpoint-updates': 'Endpoints added, removed and made not ready',
  'udp-flows-follow-endpoints': 'A long-lived UDP flow moves off an endpoint that is removed',
  'no-endpoints': 'Service ports without ready endpoints get no traffic',
  'service-deletion': 'Service deletion',
  hairpin: 'Hairpin (a pod reaching itself through its service)',
  'scale-2000': '2,000 services',
  'restart-without-disruption': 'Restart without disrupting established connections',
  'hostile-names': 'Hostile names cannot break or inject rules',
  'cleanup-keeps-foreign-state': 'Cleanup leaves foreign rules and tables intact',
  inspect: '`kube-lb inspect` reads the service-to-backends view back from the kernel',
} as const;

export type Capability = keyof typeof CAPABILITIES;

/** true: supported; a string: unsupported, and why. */
export type Support = true | string;

const ALL: Record<Capability, Support> = Object.fromEntries(Object.keys(CAPABILITIES).map((c) => [c, true])) as Record<Capability, true>;

export const BACKEND_CAPABILITIES: Record<BackendName, Record<Capability, Support>> = {
  ebpf: ALL,
  iptables: ALL,
  nftables: ALL,
  ipvs: ALL,
};

/** Why `backend` cannot do `capability`, or undefined if it can. */
export function unsupportedReason(backend: BackendName, capability: Capability): string | undefined {
  const support = BACKEND_CAPABILITIES[backend][capability];
  return support === true ? undefined : support;
}

/** The table as Markdown, for the README. */
export function capabilityTableMarkdown(): string {
  const backends = Object.keys(BACKEND_CAPABILITIES) as BackendName[];
  const cell = (s: Support): string => (s === true ? 'yes' : `no: ${s}`);
  const rows = (Object.keys(CAPABILITIES) as Capability[]).map((c) => `| ${CAPABILITIES[c]} | ${backends.map((b) => cell(BACKEND_CAPABILITIES[b][c])).join(' | ')} |`);
  return [`| Capability | ${backends.join(' | ')} |`, `| --- | ${backends.map(() => '---').join(' | ')} |`, ...rows].join('\n') + '\n';
}
