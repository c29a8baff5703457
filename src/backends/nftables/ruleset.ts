// kube-proxy's nftables design in a table of kube-lb's own, as `nft -f`
// input. Pure functions: the backend decides what each transaction holds.
//
//   filter-prerouting, filter-output -> firewall-check: vmap @firewall-ips
//     -> firewall-<hash>-ns/name/proto/port: sources outside the ranges are dropped, before any NAT
//   nat-prerouting, nat-output -> services: vmap @service-ips (ClusterIPs, external and load-balancer IPs)
//                                           vmap @service-nodeports (node address . protocol . nodePort)
//     ClusterIP -> service-<hash>-... or local-<hash>-... (the chain of its endpoint set)
//     others    -> external-<hash>-...: pods to the internal set, the node's own processes
//                  masqueraded to the internal set, the rest to the external set
//     service-/local-: affinity checks, then numgen random mod N vmap over endpoint chains
//       (a plain goto for a single endpoint)
//     -> endpoint-<hash>-ns/name/proto/port__ip/port: hairpin masquerade, affinity update, dnat
//   nat-postrouting -> masquerading: masquerade what mark-for-masquerade marked
//   filter-input, filter-forward, filter-output -> endpoints-check:
//     vmap @no-endpoint-services, vmap @no-endpoint-nodeports -> reject-chain or drop
//   filter-forward: first drops what conntrack marks invalid (not under --conntrack-tcp-be-liberal)
//   traffic-prerouting, traffic-output (after DNAT): every packet of a DNATed flow, either way,
//     counts in its endpoint's traffic-<hash>-... counter, found in @traffic by the flow's
//     frontend and endpoint as conntrack records them
//
// As kube-proxy's, one table per address family (ip kube-lb, ip6 kube-lb),
// made by the same code with the family as a parameter; each holds the
// frontends of its family, whose endpoints the model gives of that family.
import { type Destination, type EndpointSet, type FrontendKind, type IPFamily, type ResolvedFrontend, type ServicePortState, type SessionAffinity } from '../../model/contract.js';
import type { LocalTraffic } from '../../config/local-traffic.js';
import { type PortIdentity, endpointName, nameHash, safeText, servicePortName } from '../netfilter/names.js';

export const TABLE = 'kube-lb';

/** What differs between the families' tables: nft's family (also its address match, "ip saddr"), and its address type. */
export interface TableFamily {
  family: IPFamily;
  nft: 'ip' | 'ip6';
  addrType: 'ipv4_addr' | 'ipv6_addr';
}

export const TABLE_FAMILIES: Readonly<Record<IPFamily, TableFamily>> = {
  IPv4: { family: 'IPv4', nft: 'ip', addrType: 'ipv4_addr' },
  IPv6: { family: 'IPv6', nft: 'ip6', addrType: 'ipv6_addr' },
};

/** "ip kube-lb", "ip6 kube-lb": how nft commands name a family's table. */
const tableOf = (fam: TableFamily): string => `${fam.nft} ${TABLE}`;

export const SERVICE_IPS_MAP = 'service-ips';
export const SERVICE_NODEPORTS_MAP = 'service-nodeports';
export const NO_ENDPOINT_SERVICES_MAP = 'no-endpoint-services';
export const NO_ENDPOINT_NODEPORTS_MAP = 'no-endpoint-nodeports';
export const FIREWALL_IPS_MAP = 'firewall-ips';
export const TRAFFIC_MAP = 'traffic';
export const MAPS = [SERVICE_IPS_MAP, SERVICE_NODEPORTS_MAP, NO_ENDPOINT_SERVICES_MAP, NO_ENDPOINT_NODEPORTS_MAP, FIREWALL_IPS_MAP, TRAFFIC_MAP] as const;
export type MapName = (typeof MAPS)[number];

const MARK_CHAIN = 'mark-for-masquerade';
export const REJECT_CHAIN = 'reject-chain';
export const AFFINITY_PREFIX = 'affinity-';
/** Chain names stay well within the kernel's 256 bytes. */
const CHAIN_NAME_MAX = 200;

/**
 * Whether a chain belongs to one service port (its policy, external,
 * firewall and endpoint chains) and so comes and goes with it: their names
 * hold "namespace/name", and no fixed chain's name has a slash.
 */
export function isServicePortChain(name: string): boolean {
  return name.includes('/');
}


/** kube-proxy's hashAndTruncate: a hash prefix keeps names unique, the rest keeps them readable. */
function hashAndTruncate(base: string): string {
  const name = `${nameHash(base).slice(0, 8)}-${base}`;
  return name.length > CHAIN_NAME_MAX ? `${name.slice(0, CHAIN_NAME_MAX - 3)}...` : name;
}

const portBase = (p: PortIdentity): string => `${p.namespace}/${p.name}/${p.protocol.toLowerCase()}/${p.portName}`;

/** service-<hash>-ns/name/proto/port for the cluster set, local-<hash>-... for the local one. */
export function policyChainName(p: PortIdentity, policy: EndpointSet['policy']): string {
  return safeText(`${policy === 'cluster' ? 'service-' : 'local-'}${hashAndTruncate(portBase(p))}`, p);
}

export function externalChainName(p: PortIdentity): string {
  return safeText(`external-${hashAndTruncate(portBase(p))}`, p);
}

export function firewallChainName(p: PortIdentity): string {
  return safeText(`firewall-${hashAndTruncate(portBase(p))}`, p);
}

// nft takes no ':' in a name: an IPv6 address is written with '.' for it.
const endpointBase = (p: PortIdentity, d: Destination): string => hashAndTruncate(`${portBase(p)}__${d.ip.replaceAll(':', '.')}/${d.port}`);

const ENDPOINT_PREFIX = 'endpoint-';

export function endpointChainName(p: PortIdentity, d: Destination): string {
  return safeText(`${ENDPOINT_PREFIX}${endpointBase(p, d)}`, p);
}

/**
 * An endpoint chain counts what it DNATs in a named counter of the same
 * name: a named counter keeps its count when the chain is rewritten.
 */
export function isEndpointChain(name: string): boolean {
  return name.startsWith(ENDPOINT_PREFIX);
}

const TRAFFIC_PREFIX = 'traffic-';

/**
 * The counter of every packet of the flows an endpoint chain DNATed,
 * traffic-<hash>-...: named, so it keeps its count when the chain is
 * rewritten and @traffic refilled.
 */
export function trafficCounterName(endpointChain: string): string {
  return `${TRAFFIC_PREFIX}${endpointChain.slice(ENDPOINT_PREFIX.length)}`;
}

/** The named counters of the endpoint chains among these chains: each one's own and its traffic counter. */
export function endpointCounters(chains: Iterable<string>): string[] {
  return [...chains].filter(isEndpointChain).flatMap((chain) => [chain, trafficCounterName(chain)]);
}

export function affinitySetName(p: PortIdentity, d: Destination): string {
  return safeText(`${AFFINITY_PREFIX}${endpointBase(p, d)}`, p);
}

/** A map element: a frontend's key and the verdict it leads to. */
export interface Element {
  key: string;
  comment: string;
  verdict: string;
}

/** Everything one service port puts in the table. */
export interface PortRules {
  chains: Map<string, string[]>;
  elements: Map<MapName, Map<string, Element>>;
  /** Affinity sets by name, with their timeout in seconds. */
  sets: Map<string, number>;
}

/** What a service port's rules need besides the model's state. */
export interface RulesetOptions {
  /** The table's family: only frontends of it are translated. */
  family: IPFamily;
  /** What traffic of that family from pods is (--detect-local-mode); null when pods cannot be told from other sources. */
  localTraffic: LocalTraffic | null;
}

/** nft's match for local traffic, or (negated) for any other: kube-proxy's LocalTrafficDetector. */
function nftLocalMatch(fam: TableFamily, local: LocalTraffic, negated: boolean): string {
  const op = negated ? '!= ' : '';
  if (local.by === 'cidr') return `${fam.nft} saddr ${op}${local.cidr}`;
  return `iifname ${op}"${local.by === 'bridge' ? local.bridge : `${local.prefix}*`}"`;
}

/** Element comments start with the frontend's kind, which inspect reads back. */
export function elementComment(kind: FrontendKind, p: PortIdentity): string {
  return safeText(`${kind} ${servicePortName(p)}`, p);
}

export function kindOfComment(comment: string | undefined): FrontendKind | undefined {
  const kind = comment?.split(' ')[0];
  return kind === 'ClusterIP' || kind === 'ExternalIP' || kind === 'LoadBalancerIP' || kind === 'NodePort' ? kind : undefined;
}

/** Translates one service port's frontends of the table's family: their elements, chains and affinity sets. */
export function portRules(sp: ServicePortState, opts: RulesetOptions): PortRules {
  const named: PortIdentity = sp;
  const fam = TABLE_FAMILIES[opts.family];
  const frontends = sp.frontends.filter((f) => f.family === opts.family);
  const proto = sp.protocol.toLowerCase();
  const rules: PortRules = { chains: new Map(), elements: new Map(MAPS.map((m) => [m, new Map()])), sets: new Map() };
  // Each non-empty endpoint set's policy chain: the rules that run before an endpoint is picked.
  const prelude = new Map<EndpointSet, string[]>();
  const use = (set: EndpointSet, affinity: SessionAffinity | null): string | null => {
    if (set.destinations.length === 0) return null;
    if (!prelude.has(set)) {
      prelude.set(set, []);
      writeEndpointSet(fam, rules, named, set, affinity);
    }
    return policyChainName(named, set.policy);
  };
  const element = (map: MapName, f: ResolvedFrontend, verdict: string): void => {
    const key = `${f.ip} . ${proto} . ${f.port}`;
    rules.elements.get(map)!.set(key, { key, comment: elementComment(f.kind, named), verdict });
  };

  for (const f of frontends) {
    const nodePort = f.kind === 'NodePort';
    const internal = use(f.internal, f.affinity);
    const external = use(f.external, f.affinity);
    if (external === null) element(nodePort ? NO_ENDPOINT_NODEPORTS_MAP : NO_ENDPOINT_SERVICES_MAP, f, f.noEndpoints === 'reject' ? `goto ${REJECT_CHAIN}` : 'drop');
    if (f.sourceRanges.length > 0) {
      const chain = firewallChainName(named);
      rules.chains.set(chain, [`${fam.nft} saddr != { ${f.sourceRanges.join(', ')} } drop`]);
      element(FIREWALL_IPS_MAP, f, `goto ${chain}`);
    }
    if (internal === null && external === null) continue;
    if (f.kind === 'ClusterIP') {
      // A ClusterIP sends all its traffic to its one set (the contract keeps
      // internal and external the same), and, as in kube-proxy, the
      // masquerade rule for sources outside the cluster sits in that set's chain.
      if (f.masquerade === 'off-cluster' && opts.localTraffic !== null) {
        prelude.get(f.internal)!.push(`${fam.nft} daddr ${f.ip} ${proto} dport ${f.port} ${nftLocalMatch(fam, opts.localTraffic, true)} jump ${MARK_CHAIN}`);
      }
      element(SERVICE_IPS_MAP, f, `goto ${internal}`);
      continue;
    }
    const chain = externalChainName(named);
    rules.chains.set(chain, externalChainRules(fam, f, internal, external, opts.localTraffic));
    element(nodePort ? SERVICE_NODEPORTS_MAP : SERVICE_IPS_MAP, f, `goto ${chain}`);
  }
  // Each frontend's endpoints, by the flow's frontend and endpoint, to their traffic counters.
  for (const f of frontends) {
    for (const d of new Map([...f.internal.destinations, ...f.external.destinations].map((d) => [`${d.ip} . ${d.port}`, d])).values()) {
      const key = `${f.ip} . ${proto} . ${f.port} . ${d.ip} . ${d.port}`;
      rules.elements.get(TRAFFIC_MAP)!.set(key, { key, comment: elementComment(f.kind, named), verdict: `"${trafficCounterName(endpointChainName(named, d))}"` });
    }
  }
  for (const [set, first] of prelude) rules.chains.get(policyChainName(named, set.policy))!.unshift(...first);
  return rules;
}

/**
 * The external chain of a frontend other than a ClusterIP: pods and the
 * node's own processes use the internal set, and the node's processes are
 * masqueraded because their source address is the node's; the rest use the
 * external set. Rules that would change nothing are left out.
 */
function externalChainRules(fam: TableFamily, f: ResolvedFrontend, internal: string | null, external: string | null, local: LocalTraffic | null): string[] {
  const rules: string[] = [];
  if (f.masquerade === 'all') {
    // Endpoints on other nodes must answer through this node.
    rules.push(`jump ${MARK_CHAIN}`);
  } else if (internal !== null) {
    if (local !== null) rules.push(`${nftLocalMatch(fam, local, false)} goto ${internal}`);
    rules.push(`fib saddr type local jump ${MARK_CHAIN}`, `fib saddr type local goto ${internal}`);
  }
  if (external !== null) rules.push(`goto ${external}`);
  return rules;
}

/** A non-empty endpoint set's policy chain, and its endpoints' chains and affinity sets. */
function writeEndpointSet(fam: TableFamily, rules: PortRules, named: PortIdentity, set: EndpointSet, affinity: SessionAffinity | null): void {
  const proto = named.protocol.toLowerCase();
  const destinations = set.destinations;
  const chain: string[] = [];
  if (affinity !== null) {
    // A client with a live affinity entry returns to its endpoint; a new one is spread.
    for (const d of destinations) chain.push(`${fam.nft} saddr @${affinitySetName(named, d)} goto ${endpointChainName(named, d)}`);
  }
  if (destinations.length === 1) {
    // The same choice as a one-element numgen vmap, without the anonymous set each vmap
    // is: the kernel names new sets by scanning the table's sets, so thousands of them
    // make a transaction take seconds.
    chain.push(`goto ${endpointChainName(named, destinations[0]!)}`);
  } else {
    const picks = destinations.map((d, i) => `${i} : goto ${endpointChainName(named, d)}`);
    chain.push(`numgen random mod ${destinations.length} vmap { ${picks.join(' , ')} }`);
  }
  rules.chains.set(policyChainName(named, set.policy), chain);
  for (const d of destinations) {
    const endpoint = [`${fam.nft} saddr ${d.ip} jump ${MARK_CHAIN}`];
    if (affinity !== null) {
      const name = affinitySetName(named, d);
      rules.sets.set(name, affinity.timeoutSeconds);
      endpoint.push(`update @${name} { ${fam.nft} saddr }`);
    }
    // A dnat reached through a vmap needs the protocol matched first.
    const chain = endpointChainName(named, d);
    endpoint.push(`meta l4proto ${proto} counter name ${chain} dnat to ${endpointName(d, fam.family)}`);
    rules.chains.set(chain, endpoint);
  }
}

/** The base chains (hooks) and the maps: declared in every transaction, never rewritten. */
export function declarations(fam: TableFamily): string[] {
  const T = tableOf(fam);
  const addrKey = `type ${fam.addrType} . inet_proto . inet_service : verdict ;`;
  // Filter chains run before DNAT (priority -110 against -100), so they see the address the client used.
  return [
    `add table ${T} { comment "kube-lb service proxy rules" ; }`,
    `add chain ${T} filter-prerouting { type filter hook prerouting priority -110 ; policy accept ; }`,
    `add chain ${T} filter-input { type filter hook input priority -110 ; policy accept ; }`,
    `add chain ${T} filter-forward { type filter hook forward priority -110 ; policy accept ; }`,
    `add chain ${T} filter-output { type filter hook output priority -110 ; policy accept ; }`,
    // Numeric priorities: some nft versions reject "dstnat" in the output hook.
    `add chain ${T} nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }`,
    `add chain ${T} nat-output { type nat hook output priority -100 ; policy accept ; }`,
    `add chain ${T} nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; }`,
    // After DNAT, so that the first packet's conntrack entry names its endpoint.
    `add chain ${T} traffic-prerouting { type filter hook prerouting priority -99 ; policy accept ; }`,
    `add chain ${T} traffic-output { type filter hook output priority -99 ; policy accept ; }`,
    `add map ${T} ${SERVICE_IPS_MAP} { ${addrKey} comment "ClusterIP, external IP and load-balancer IP traffic" ; }`,
    `add map ${T} ${SERVICE_NODEPORTS_MAP} { ${addrKey} comment "NodePort traffic, by node address" ; }`,
    `add map ${T} ${NO_ENDPOINT_SERVICES_MAP} { ${addrKey} comment "drop or reject traffic to services without endpoints" ; }`,
    `add map ${T} ${NO_ENDPOINT_NODEPORTS_MAP} { ${addrKey} comment "drop or reject traffic to node ports without endpoints" ; }`,
    `add map ${T} ${FIREWALL_IPS_MAP} { ${addrKey} comment "destinations subject to loadBalancerSourceRanges" ; }`,
    `add map ${T} ${TRAFFIC_MAP} { type ${fam.addrType} . inet_proto . inet_service . ${fam.addrType} . inet_service : counter ; comment "the traffic counter of each frontend's endpoint" ; }`,
  ];
}

const dispatchOf = (fam: TableFamily, map: MapName): string => `${fam.nft} daddr . meta l4proto . th dport vmap @${map}`;
/**
 * A DNATed flow's packet, either way, to its endpoint's traffic counter.
 * The protocol match gives proto-dst its type; a flow without an element
 * (DNATed by someone else) goes on uncounted.
 */
const countTraffic = (fam: TableFamily): string =>
  `ct status dnat meta l4proto { tcp, udp, sctp } counter name ct original ${fam.nft} daddr . meta l4proto . ct original proto-dst . ct reply ${fam.nft} saddr . ct reply proto-src map @${TRAFFIC_MAP}`;

/** The chains every table has, with their rules, for this masquerade mark and whether invalid packets are dropped. */
export function fixedChains(fam: TableFamily, mark: string, dropInvalid: boolean): Map<string, string[]> {
  const dispatch = (map: MapName): string => dispatchOf(fam, map);
  return new Map([
    ['filter-prerouting', ['ct state new jump firewall-check']],
    // reject is valid only in the input, forward and output hooks.
    ['filter-input', ['ct state new jump endpoints-check']],
    // Conntrack does not de-NAT a segment it finds out of window, so an endpoint's
    // late retransmission would reach the client from the endpoint's own address
    // and draw a RST that kills the connection (kubernetes issue 74839).
    ['filter-forward', [...(dropInvalid ? ['ct state invalid drop'] : []), 'ct state new jump endpoints-check']],
    ['filter-output', ['ct state new jump endpoints-check', 'ct state new jump firewall-check']],
    ['nat-prerouting', ['jump services']],
    ['nat-output', ['jump services']],
    ['nat-postrouting', ['jump masquerading']],
    // A packet on lo was counted on its way out.
    ['traffic-prerouting', [`iif != lo ${countTraffic(fam)}`]],
    ['traffic-output', [countTraffic(fam)]],
    ['firewall-check', [dispatch(FIREWALL_IPS_MAP)]],
    ['services', [dispatch(SERVICE_IPS_MAP), dispatch(SERVICE_NODEPORTS_MAP)]],
    ['endpoints-check', [dispatch(NO_ENDPOINT_SERVICES_MAP), dispatch(NO_ENDPOINT_NODEPORTS_MAP)]],
    [REJECT_CHAIN, ['reject']],
    [MARK_CHAIN, [`meta mark set meta mark | ${mark}`]],
    // The mark is cleared so a packet that is processed again is not masqueraded twice.
    ['masquerading', [`meta mark & ${mark} == 0 return`, `meta mark set meta mark ^ ${mark}`, 'masquerade fully-random']],
  ]);
}

/** What one transaction changes. */
export interface Transaction {
  /** Chains to create if missing, flush and fill. */
  write: Map<string, string[]>;
  /** Map elements to delete, then to add: an element's verdict cannot be changed in place. */
  deleteElements: { map: MapName; key: string }[];
  addElements: { map: MapName; element: Element }[];
  /** Maps to empty before adding elements (full syncs). */
  flushMaps: MapName[];
  /** Affinity sets to delete (once no rule refers to them), then sets to add with their timeout in seconds. */
  deleteSets: string[];
  addSets: Map<string, number>;
  /** Chains to flush and delete, after the elements pointing at them are gone. */
  removeChains: string[];
  /** Named counters to add (kept if they exist) before the rules naming them, and to delete once no rule names them. */
  addCounters: string[];
  deleteCounters: string[];
}

export function emptyTransaction(): Transaction {
  return { write: new Map(), deleteElements: [], addElements: [], flushMaps: [], deleteSets: [], addSets: new Map(), removeChains: [], addCounters: [], deleteCounters: [] };
}

export function isEmpty(tx: Transaction): boolean {
  return (
    tx.write.size + tx.deleteElements.length + tx.addElements.length + tx.flushMaps.length + tx.deleteSets.length + tx.addSets.size + tx.removeChains.length + tx.addCounters.length + tx.deleteCounters.length === 0
  );
}

/** Renders one family's part of an `nft -f` transaction: all of it applies, or none. */
export function renderTransaction(fam: TableFamily, tx: Transaction): string {
  const T = tableOf(fam);
  const lines = declarations(fam);
  for (const map of tx.flushMaps) lines.push(`flush map ${T} ${map}`);
  for (const { map, key } of tx.deleteElements) lines.push(`delete element ${T} ${map} { ${key} }`);
  // Every chain exists before any rule jumps to it, and no rule refers to a set about to be deleted.
  for (const chain of tx.write.keys()) lines.push(`add chain ${T} ${chain}`);
  for (const chain of [...tx.write.keys(), ...tx.removeChains]) lines.push(`flush chain ${T} ${chain}`);
  for (const set of tx.deleteSets) lines.push(`delete set ${T} ${set}`);
  for (const [set, timeout] of tx.addSets) lines.push(`add set ${T} ${set} { type ${fam.addrType} ; flags dynamic,timeout ; timeout ${timeout}s ; }`);
  for (const counter of tx.addCounters) lines.push(`add counter ${T} ${counter}`);
  for (const [chain, rules] of tx.write) for (const rule of rules) lines.push(`add rule ${T} ${chain} ${rule}`);
  for (const { map, element: e } of tx.addElements) lines.push(`add element ${T} ${map} { ${e.key} comment "${e.comment}" : ${e.verdict} }`);
  for (const chain of tx.removeChains) lines.push(`delete chain ${T} ${chain}`);
  for (const counter of tx.deleteCounters) lines.push(`delete counter ${T} ${counter}`);
  return lines.join('\n') + '\n';
}
