// What each backend can do, in one place. The conformance suite runs every
// scenario against every backend variant and skips, with the reason given
// here, only what this table marks unsupported; the README's table is
// rendered from it (`make readme-capabilities`).
import type { IPFamily, Protocol } from '../model/contract.js';
import type { BackendName } from './registry.js';
import { KERNEL_FEATURES, MINIMUM_KERNEL } from './ebpf/kernel-features.js';

export const CAPABILITIES = {
  tcp: 'TCP services',
  udp: 'UDP services',
  sctp: 'SCTP services',
  ipv6: 'IPv6 and dual-stack services',
  'ipv6-from-outside': 'IPv6 from outside the node: NodePort, external and load-balancer IPs',
  'ipv6-node-originated': "IPv6 from the node's own processes (host network)",
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
  'remote-endpoints': 'Endpoints on other nodes',
  'host-network-endpoints': "Host-network endpoints (a node's own address), on this node too, from pods and from outside",
  'internal-traffic-policy-local': 'internalTrafficPolicy: Local',
  'terminating-endpoints': 'Serving-and-terminating endpoints when nothing ready is left',
  topology: 'Topology: trafficDistribution and EndpointSlice hints',
  'ignored-services': 'Headless, ExternalName and other proxies\' services are left alone',
  'frontend-conflicts': 'Two services claiming one frontend: the older keeps it',
  'invalid-cluster-ips': 'Cluster IPs the API server would refuse (a pod\'s address, loopback, multicast) are refused',
  nodeport: 'NodePort on the node\'s addresses (--nodeport-addresses)',
  'external-ips': 'External IPs',
  'load-balancer-ips': 'Load-balancer IPs (status.loadBalancer.ingress)',
  'source-ranges': 'loadBalancerSourceRanges',
  'external-traffic-policy-local': 'externalTrafficPolicy: Local (local endpoints only, client address kept)',
  'external-masquerade': 'externalTrafficPolicy: Cluster reaches endpoints on other nodes (masqueraded)',
  'session-affinity': 'sessionAffinity: ClientIP with its timeout',
  'reject-without-endpoints': 'A service without endpoints refuses connections rather than let them time out',
  'node-originated': 'Traffic from the node itself (host network) to every kind of frontend',
  'localhost-nodeport': 'NodePort on 127.0.0.1',
  'drop-invalid': "An endpoint's out-of-window TCP segment does not reset the connection (kubernetes issue 74839)",
  'shared-client-port': 'One client port connected to two services with a shared endpoint at once',
  maglev: 'Maglev consistent hashing per service (kube-lb.io/lb-algorithm: maglev, --bpf-lb-algorithm): a flow keeps its endpoint across nodes and lost connection tracking',
  'connection-counters': 'Connections per service and endpoint on /metrics, from the kernel\'s counters',
  'traffic-counters': 'Packets and bytes per service and endpoint on /metrics, from the kernel\'s counters',
} as const;

export type Capability = keyof typeof CAPABILITIES;

/** true: supported; a string: unsupported, and why. */
export type Support = true | string;

const ALL: Record<Capability, Support> = Object.fromEntries(Object.keys(CAPABILITIES).map((c) => [c, true])) as Record<Capability, true>;

export const BACKEND_CAPABILITIES: Record<BackendName, Record<Capability, Support>> = {
  ebpf: {
    ...ALL,
    sctp: "SCTP's CRC32c covers its ports and the whole packet: a translated port needs it recomputed, which the TC programs do not do; SCTP service ports are left out, with a warning naming them",
  },
  iptables: { ...ALL, maglev: 'random, as kube-proxy', 'traffic-counters': "the nat table sees only a connection's first packet, and a packet past DNAT no longer names its frontend: counting the others takes a conntrack rule per endpoint that every packet walks" },
  nftables: { ...ALL, 'localhost-nodeport': "as kube-proxy's nftables mode", maglev: 'random, as kube-proxy' },
  ipvs: {
    ...ALL,
    'external-traffic-policy-local': "as kube-proxy's IPVS mode: outside traffic gets local endpoints with its source kept, but a virtual server serves one endpoint set, so pods reaching an external address get the local ones too",
    'localhost-nodeport': "as kube-proxy's IPVS mode",
    'shared-client-port': "as kube-proxy's IPVS mode: IPVS translates only the destination, so the two connections reach the endpoint from one address and port, and collide",
    maglev: 'IPVS has its own Maglev scheduler: kube-lb.io/ipvs-scheduler: mh',
  },
};

/** The oldest kernel a backend is tested on, where it has one (test/vm/README.md). */
export const MINIMUM_KERNELS: Partial<Record<BackendName, string>> = { ebpf: MINIMUM_KERNEL };

/** A supported capability that needs a newer kernel than the backend's minimum in part: which part, and from which kernel. */
interface NewerKernel {
  kernel: string;
  part: string;
}

export const CAPABILITY_KERNELS: Partial<Record<BackendName, Partial<Record<Capability, NewerKernel>>>> = {
  ebpf: {
    'reject-without-endpoints': { kernel: KERNEL_FEATURES.sockErrno.since, part: "ECONNREFUSED rather than EPERM for the node's own connections" },
    'udp-flows-follow-endpoints': { kernel: KERNEL_FEATURES.sockDestroy.since, part: "the node's own connected UDP sockets" },
  },
};

/** Why `backend` cannot do `capability`, or undefined if it can. */
export function unsupportedReason(backend: BackendName, capability: Capability): string | undefined {
  const support = BACKEND_CAPABILITIES[backend][capability];
  return support === true ? undefined : support;
}

/** The protocols `backend` translates, as the table says: the model leaves service ports of the others out. */
export function protocolsOf(backend: BackendName): Protocol[] {
  const support = BACKEND_CAPABILITIES[backend];
  return (['TCP', 'UDP', 'SCTP'] as const).filter((p) => support[p.toLowerCase() as 'tcp' | 'udp' | 'sctp'] === true);
}

/** The address families `backend` serves, as the table says: the model leaves addresses of the others out. */
export function familiesOf(backend: BackendName): IPFamily[] {
  return BACKEND_CAPABILITIES[backend].ipv6 === true ? ['IPv4', 'IPv6'] : ['IPv4'];
}

/** The table as Markdown, for the README. */
export function capabilityTableMarkdown(): string {
  const backends = Object.keys(BACKEND_CAPABILITIES) as BackendName[];
  const cell = (b: BackendName, c: Capability): string => {
    const support = BACKEND_CAPABILITIES[b][c];
    if (support !== true) return `no: ${support}`;
    const newer = CAPABILITY_KERNELS[b]?.[c];
    return newer === undefined ? 'yes' : `yes (${newer.part}: kernel ${newer.kernel})`;
  };
  const heading = (b: BackendName): string => (MINIMUM_KERNELS[b] === undefined ? b : `${b} (kernel ${MINIMUM_KERNELS[b]}+)`);
  const rows = (Object.keys(CAPABILITIES) as Capability[]).map((c) => `| ${CAPABILITIES[c]} | ${backends.map((b) => cell(b, c)).join(' | ')} |`);
  return [`| Capability | ${backends.map(heading).join(' | ')} |`, `| --- | ${backends.map(() => '---').join(' | ')} |`, ...rows].join('\n') + '\n';
}
