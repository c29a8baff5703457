// kube-proxy's iptables layout, as iptables-restore input. Pure functions:
// the backend decides which chains to send.
//
//   nat    PREROUTING, OUTPUT -> KUBE-SERVICES
//            cluster IP            -> KUBE-SVC-<hash> or KUBE-SVL-<hash> (the frontend's endpoint set)
//            external IP           -> KUBE-EXT-<hash>
//            loadbalancer IP       -> KUBE-EXT-<hash>, or KUBE-FW-<hash> with source ranges
//            last: node addresses  -> KUBE-NODEPORTS -> KUBE-EXT-<hash>
//          KUBE-EXT: pods and the node's own processes to the internal set, masquerading, then the external set
//          KUBE-SVC (set of policy cluster) / KUBE-SVL (policy local): affinity (-m recent), then
//            -m statistic over KUBE-SEP-<hash> (one per endpoint): hairpin masquerade, DNAT
//          POSTROUTING -> KUBE-POSTROUTING: MASQUERADE what KUBE-MARK-MASQ marked
//   filter FORWARD, OUTPUT -> KUBE-SERVICES: cluster IPs whose set is empty (REJECT or DROP)
//          INPUT, FORWARD, OUTPUT -> KUBE-EXTERNAL-SERVICES: other frontends whose external set is empty
//          INPUT, FORWARD, OUTPUT -> KUBE-PROXY-FIREWALL: DROP what KUBE-FW did not DNAT
//          FORWARD -> KUBE-FORWARD: DROP what conntrack marks INVALID (not under --conntrack-tcp-be-liberal)
//
// KUBE-FORWARD is kube-proxy's chain, and like KUBE-SERVICES or
// KUBE-POSTROUTING a kube-proxy leftover of that name is taken over. It
// holds only the INVALID drop: kube-proxy's rules accepting marked and
// established traffic, for hosts whose FORWARD policy drops, are left out,
// since they would also accept that traffic past the host's own rules after
// the jump; such a host accepts forwarded service traffic itself.
import type { Destination, EndpointSet, FrontendKind, IPFamily, ResolvedFrontend, ServicePortState, SessionAffinity } from '../../model/contract.js';
import type { LocalTraffic } from '../../config/local-traffic.js';
import { iptablesLocalMatch } from '../netfilter/frontends.js';
import type { Chains } from '../netfilter/iptables-text.js';
import { endpointName, nameHash, type PortIdentity, protocolName, safeText, servicePortName } from '../netfilter/names.js';

export const SERVICES_CHAIN = 'KUBE-SERVICES';
export const EXTERNAL_SERVICES_CHAIN = 'KUBE-EXTERNAL-SERVICES';
export const NODEPORTS_CHAIN = 'KUBE-NODEPORTS';
export const PROXY_FIREWALL_CHAIN = 'KUBE-PROXY-FIREWALL';
export const FORWARD_CHAIN = 'KUBE-FORWARD';
export const MARK_MASQ_CHAIN = 'KUBE-MARK-MASQ';
export const POSTROUTING_CHAIN = 'KUBE-POSTROUTING';
export const SVC_PREFIX = 'KUBE-SVC-';
export const SVL_PREFIX = 'KUBE-SVL-';
export const EXT_PREFIX = 'KUBE-EXT-';
export const FW_PREFIX = 'KUBE-FW-';
export const SEP_PREFIX = 'KUBE-SEP-';

const TOP_LEVEL_CHAINS = new Set([SERVICES_CHAIN, EXTERNAL_SERVICES_CHAIN, NODEPORTS_CHAIN, PROXY_FIREWALL_CHAIN, FORWARD_CHAIN, MARK_MASQ_CHAIN, POSTROUTING_CHAIN]);
const PER_PORT_PREFIXES = [SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX];

/** How rule comments name each kind of frontend; inspect reads the kind back from them. */
export const KIND_TEXT: Record<FrontendKind, string> = {
  ClusterIP: 'cluster IP',
  ExternalIP: 'external IP',
  LoadBalancerIP: 'loadbalancer IP',
  NodePort: 'nodePort',
};

const NEW = '-m conntrack --ctstate NEW';

/**
 * Rules in built-in chains that send traffic into ours, as kube-proxy writes
 * them. Each is inserted at the top of its chain in this order, so the last
 * one ends up first, as with kube-proxy's own list.
 */
export const JUMPS: Record<'nat' | 'filter', { chain: string; rule: string }[]> = {
  nat: [
    { chain: 'OUTPUT', rule: `-m comment --comment "kubernetes service portals" -j ${SERVICES_CHAIN}` },
    { chain: 'PREROUTING', rule: `-m comment --comment "kubernetes service portals" -j ${SERVICES_CHAIN}` },
    { chain: 'POSTROUTING', rule: `-m comment --comment "kubernetes postrouting rules" -j ${POSTROUTING_CHAIN}` },
  ],
  filter: [
    { chain: 'INPUT', rule: `${NEW} -m comment --comment "kubernetes externally-visible service portals" -j ${EXTERNAL_SERVICES_CHAIN}` },
    { chain: 'FORWARD', rule: `${NEW} -m comment --comment "kubernetes externally-visible service portals" -j ${EXTERNAL_SERVICES_CHAIN}` },
    // Not in kube-proxy, which lets the node's own connections to an external
    // or load-balancer IP without endpoints leave the node: they are refused
    // here as they are from pods.
    { chain: 'OUTPUT', rule: `${NEW} -m comment --comment "kubernetes externally-visible service portals" -j ${EXTERNAL_SERVICES_CHAIN}` },
    { chain: 'FORWARD', rule: `${NEW} -m comment --comment "kubernetes service portals" -j ${SERVICES_CHAIN}` },
    { chain: 'OUTPUT', rule: `${NEW} -m comment --comment "kubernetes service portals" -j ${SERVICES_CHAIN}` },
    // Every packet, not only NEW ones: INVALID is a state of its own.
    { chain: 'FORWARD', rule: `-m comment --comment "kubernetes forwarding rules" -j ${FORWARD_CHAIN}` },
    { chain: 'INPUT', rule: `${NEW} -m comment --comment "kubernetes load balancer firewall" -j ${PROXY_FIREWALL_CHAIN}` },
    { chain: 'OUTPUT', rule: `${NEW} -m comment --comment "kubernetes load balancer firewall" -j ${PROXY_FIREWALL_CHAIN}` },
    { chain: 'FORWARD', rule: `${NEW} -m comment --comment "kubernetes load balancer firewall" -j ${PROXY_FIREWALL_CHAIN}` },
  ],
};

/** Whether a chain name is one kube-lb creates in the nat or filter table. */
export function isOwnChain(name: string): boolean {
  return TOP_LEVEL_CHAINS.has(name) || PER_PORT_PREFIXES.some((p) => name.startsWith(p));
}

/** Whether a chain holds one endpoint set's spread (KUBE-SVC or KUBE-SVL). */
export function isPolicyChain(name: string): boolean {
  return name.startsWith(SVC_PREFIX) || name.startsWith(SVL_PREFIX);
}

const portHash = (sp: PortIdentity): string => nameHash(servicePortName(sp) + protocolName(sp)).slice(0, 16);

/** KUBE-SVC for the set of policy cluster, KUBE-SVL for policy local: kube-proxy's names. */
export function policyChainName(sp: PortIdentity, policy: EndpointSet['policy']): string {
  return (policy === 'cluster' ? SVC_PREFIX : SVL_PREFIX) + portHash(sp);
}

export function serviceChainName(sp: PortIdentity): string {
  return policyChainName(sp, 'cluster');
}

export function externalChainName(sp: PortIdentity): string {
  return EXT_PREFIX + portHash(sp);
}

export function firewallChainName(sp: PortIdentity): string {
  return FW_PREFIX + portHash(sp);
}

export function endpointChainName(sp: PortIdentity, d: Destination, family: IPFamily): string {
  return SEP_PREFIX + nameHash(servicePortName(sp) + protocolName(sp) + endpointName(d, family)).slice(0, 16);
}

/** kube-proxy's probability for the i-th of n remaining endpoints: 1/n with 10 decimals. */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

/** One service port's share of the rules: lines for the shared chains, and chains of its own. */
export interface PortRules {
  /** nat KUBE-SERVICES. */
  services: string[];
  /** nat KUBE-NODEPORTS. */
  nodePorts: string[];
  /** filter KUBE-SERVICES. */
  filterServices: string[];
  /** filter KUBE-EXTERNAL-SERVICES. */
  externalServices: string[];
  /** filter KUBE-PROXY-FIREWALL. */
  firewall: string[];
  /** The KUBE-SVC, KUBE-SVL, KUBE-EXT, KUBE-FW and KUBE-SEP chains of the port, in nat. */
  chains: Chains;
  /** Addresses of its NodePort frontends, which KUBE-SERVICES sends to KUBE-NODEPORTS. */
  nodePortIPs: string[];
}

/**
 * The value `pick` gives every frontend in `frontends`. kube-proxy's layout
 * has one KUBE-EXT, one KUBE-FW and one affinity list per service port, so
 * the frontends sharing them must agree; the model resolves them so.
 */
function portWide<T>(sp: ServicePortState, frontends: readonly ResolvedFrontend[], what: string, pick: (f: ResolvedFrontend) => T, same: (a: T, b: T) => boolean): T | undefined {
  if (frontends.length === 0) return undefined;
  const first = pick(frontends[0]!);
  for (const f of frontends) {
    if (!same(pick(f), first)) throw new Error(`service port ${JSON.stringify(sp.key)}: its frontends differ in ${what}, which kube-proxy's iptables layout keeps once per service port`);
  }
  return first;
}

const sameAffinity = (a: SessionAffinity | null, b: SessionAffinity | null): boolean => a?.timeoutSeconds === b?.timeoutSeconds;

/** One family's tables: which frontends they translate, and what traffic from pods is in that family. */
export interface FamilyRulesOptions {
  family: IPFamily;
  /** --detect-local-mode's answer for the family; null when pods cannot be told from other sources. */
  local: LocalTraffic | null;
}

/** A single address as a match or a source takes it: /32 in iptables, /128 in ip6tables. */
export const HOST_PREFIX: Readonly<Record<IPFamily, string>> = { IPv4: '/32', IPv6: '/128' };

/** Translates one service port's resolved frontends of one family into kube-proxy's chains, as that family's iptables takes them. */
export function portRules(sp: ServicePortState, { family, local }: FamilyRulesOptions): PortRules {
  const name = servicePortName(sp);
  const proto = protocolName(sp);
  const host = HOST_PREFIX[family];
  const frontends = sp.frontends.filter((f) => f.family === family);
  const comment = (text: string): string => `-m comment --comment "${safeText(text, sp)}"`;
  const match = (f: ResolvedFrontend): string => `-m ${proto} -p ${proto} -d ${f.ip}${host} --dport ${f.port}`;
  const setChain = (set: EndpointSet): string | null => (set.destinations.length === 0 ? null : policyChainName(sp, set.policy));
  const out: PortRules = { services: [], nodePorts: [], filterServices: [], externalServices: [], firewall: [], chains: new Map(), nodePortIPs: [] };

  const affinity = portWide(sp, frontends, 'session affinity', (f) => f.affinity, sameAffinity) ?? null;
  const external = frontends.filter((f) => f.kind !== 'ClusterIP');
  const ext = portWide(sp, external, 'endpoint sets or masquerading', (f) => f, (a, b) => a.internal === b.internal && a.external === b.external && a.masquerade === b.masquerade);
  const loadBalancers = frontends.filter((f) => f.kind === 'LoadBalancerIP');
  const sourceRanges = portWide(sp, loadBalancers, 'source ranges', (f) => f.sourceRanges.join(','), (a, b) => a === b) ?? '';

  // Each set's spread, with the masquerading of cluster IP traffic from outside the cluster in front, as kube-proxy writes it.
  // Its chain is named after its policy, so a port has one set per policy.
  const sets = new Map<EndpointSet, string[]>();
  const setRules = (set: EndpointSet): string[] => {
    let rules = sets.get(set);
    if (rules !== undefined) return rules;
    if ([...sets.keys()].some((other) => other.policy === set.policy)) throw new Error(`service port ${JSON.stringify(sp.key)}: two endpoint sets of policy ${set.policy}, which kube-proxy's iptables layout names once per service port`);
    sets.set(set, (rules = []));
    return rules;
  };

  // KUBE-EXT leads somewhere only if one of its sets has endpoints; otherwise the filter verdict alone answers.
  const extChain = ext !== undefined && (setChain(ext.internal) !== null || setChain(ext.external) !== null) ? externalChainName(sp) : null;
  const fwChain = extChain !== null && sourceRanges !== '' ? firewallChainName(sp) : null;

  for (const f of frontends) {
    const kind = `${name} ${KIND_TEXT[f.kind]}`;
    // kube-proxy's comments: "has no endpoints" when nothing anywhere can answer, "has no local endpoints" when the policy leaves nothing.
    const verdict = `${comment(`${kind} has no ${f.noEndpoints === 'reject' ? '' : 'local '}endpoints`)} ${match(f)} -j ${f.noEndpoints === 'reject' ? 'REJECT' : 'DROP'}`;
    if (f.kind === 'ClusterIP') {
      // A cluster IP's internal and external sets are one: it leads straight to it.
      const target = setChain(f.internal);
      if (target === null) {
        out.filterServices.push(verdict);
        continue;
      }
      out.services.push(`${comment(kind)} ${match(f)} -j ${target}`);
      const rules = setRules(f.internal);
      // Off-cluster traffic to a cluster IP may come from a route to the service range through any node: masquerade so replies return here.
      if (f.masquerade === 'off-cluster' && local !== null) rules.push(`${comment(kind)} ${match(f)} ${iptablesLocalMatch(local, true).join(' ')} -j ${MARK_MASQ_CHAIN}`);
      continue;
    }
    if (f.external.destinations.length === 0) out.externalServices.push(verdict);
    if (extChain === null) continue;
    if (f.kind === 'NodePort') {
      out.nodePorts.push(`${comment(kind)} ${match(f)} -j ${extChain}`);
      out.nodePortIPs.push(f.ip);
    } else if (f.kind === 'LoadBalancerIP' && fwChain !== null) {
      out.services.push(`${comment(kind)} ${match(f)} -j ${fwChain}`);
      // Packets KUBE-FW did not DNAT still have the load-balancer IP as their destination here.
      out.firewall.push(`${comment(`${name} traffic not accepted by ${fwChain}`)} ${match(f)} -j DROP`);
    } else {
      out.services.push(`${comment(kind)} ${match(f)} -j ${extChain}`);
    }
  }

  if (extChain !== null) {
    const { internal, external: externalSet, masquerade } = ext!;
    const internalChain = setChain(internal);
    const externalChain = setChain(externalSet);
    const rules: string[] = [];
    if (masquerade === 'all') {
      // Endpoints on other nodes must answer through this node.
      rules.push(`${comment(`masquerade traffic for ${name} external destinations`)} -j ${MARK_MASQ_CHAIN}`);
    } else if (internalChain !== null) {
      // Pods reach external addresses as if through the load balancer outside and back: the internal set, their source kept.
      if (local !== null) rules.push(`${comment(`pod traffic for ${name} external destinations`)} ${iptablesLocalMatch(local, false).join(' ')} -j ${internalChain}`);
      // The node's own processes pick a local address (the external IP itself, or 127.0.0.1) as their source: endpoints could not answer it.
      rules.push(`${comment(`masquerade LOCAL traffic for ${name} external destinations`)} -m addrtype --src-type LOCAL -j ${MARK_MASQ_CHAIN}`);
      rules.push(`${comment(`route LOCAL traffic for ${name} external destinations`)} -m addrtype --src-type LOCAL -j ${internalChain}`);
    }
    if (externalChain !== null) rules.push(`-j ${externalChain}`);
    out.chains.set(extChain, rules);
    if (internalChain !== null) setRules(internal);
    if (externalChain !== null) setRules(externalSet);
  }

  if (fwChain !== null) {
    const fw = `${comment(`${name} loadbalancer IP`)}`;
    out.chains.set(fwChain, [
      ...sourceRanges.split(',').map((cidr) => `${fw} -s ${cidr} -j ${extChain}`),
      // A comment-only rule, as kube-proxy ends the chain: what gets here is dropped by KUBE-PROXY-FIREWALL.
      comment(`other traffic to ${name} will be dropped by KUBE-PROXY-FIREWALL`),
    ]);
  }

  const seps = new Map<string, Destination>();
  for (const [set, rules] of sets) {
    const chain = policyChainName(sp, set.policy);
    const n = set.destinations.length;
    const to = (d: Destination): string => endpointChainName(sp, d, family);
    if (affinity !== null) {
      for (const d of set.destinations) rules.push(`${comment(`${name} -> ${endpointName(d, family)}`)} -m recent --name ${to(d)} --rcheck --seconds ${affinity.timeoutSeconds} --reap -j ${to(d)}`);
    }
    set.destinations.forEach((d, i) => {
      const pick = i < n - 1 ? ` -m statistic --mode random --probability ${probability(n - i)}` : '';
      rules.push(`${comment(`${name} -> ${endpointName(d, family)}`)}${pick} -j ${to(d)}`);
      seps.set(to(d), d);
    });
    out.chains.set(chain, rules);
  }
  for (const [sep, d] of seps) {
    const remember = affinity === null ? '' : ` -m recent --name ${sep} --set`;
    out.chains.set(sep, [
      // Hairpin: an endpoint reaching itself must not see its own address as the source.
      `${comment(name)} -s ${d.ip}${host} -j ${MARK_MASQ_CHAIN}`,
      `${comment(name)}${remember} -m ${proto} -p ${proto} -j DNAT --to-destination ${endpointName(d, family)}`,
    ]);
  }
  return out;
}

const NODEPORTS_JUMP_COMMENT = '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"';

/**
 * route_localnet lets the world outside send to 127.0.0.0/8 too; kube-proxy
 * drops such connections unless they were DNATed to a NodePort's endpoint.
 * (kube-proxy puts this rule in kubelet's KUBE-FIREWALL chain; kube-lb keeps
 * it in a chain of its own, so that cleanup removes exactly what it made.)
 */
const LOCALNET_GUARD = '-m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP';

/**
 * Conntrack does not de-NAT a segment it finds out of window (INVALID), so
 * an endpoint's late retransmission would reach the client from the
 * endpoint's own address, and the client's RST would kill the connection
 * (kubernetes issue 74839). Dropped, it costs at most a retransmission.
 */
const INVALID_DROP = '-m conntrack --ctstate INVALID -j DROP';

export interface Tables {
  nat: Chains;
  filter: Chains;
  /** Whether a NodePort answers on a loopback address, which needs route_localnet. */
  localhostNodePorts: boolean;
}

/**
 * Every chain of one family's two tables, from the service ports' rules in
 * order, the masquerade mark `mark` (e.g. 0x4000) and whether INVALID
 * packets are dropped.
 */
export function assembleTables(family: IPFamily, ports: readonly PortRules[], mark: string, dropInvalid: boolean): Tables {
  const nodePortIPs = new Set(ports.flatMap((p) => p.nodePortIPs));
  const localhostNodePorts = [...nodePortIPs].some((ip) => ip.startsWith('127.'));
  const nat: Chains = new Map([
    // KUBE-NODEPORTS last, as kube-proxy orders it: a node address may also be an external or load-balancer IP, whose own rules win.
    [SERVICES_CHAIN, [...ports.flatMap((p) => p.services), ...[...nodePortIPs].map((ip) => `${NODEPORTS_JUMP_COMMENT} -d ${ip}${HOST_PREFIX[family]} -j ${NODEPORTS_CHAIN}`)]],
    [NODEPORTS_CHAIN, ports.flatMap((p) => p.nodePorts)],
    [MARK_MASQ_CHAIN, [`-j MARK --or-mark ${mark}`]],
    [
      POSTROUTING_CHAIN,
      [
        `-m mark ! --mark ${mark}/${mark} -j RETURN`,
        // The mark is cleared so a packet that is processed again is not masqueraded twice.
        `-j MARK --xor-mark ${mark}`,
        `-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`,
      ],
    ],
  ]);
  for (const p of ports) for (const [name, rules] of p.chains) nat.set(name, rules);
  const filter: Chains = new Map([
    [SERVICES_CHAIN, ports.flatMap((p) => p.filterServices)],
    [EXTERNAL_SERVICES_CHAIN, ports.flatMap((p) => p.externalServices)],
    [PROXY_FIREWALL_CHAIN, [...(localhostNodePorts ? [LOCALNET_GUARD] : []), ...ports.flatMap((p) => p.firewall)]],
    [FORWARD_CHAIN, dropInvalid ? [INVALID_DROP] : []],
  ]);
  return { nat, filter, localhostNodePorts };
}
