// kube-proxy's nftables design in a table of kube-lb's own, as `nft -f`
// input. Pure functions: the backend decides what each transaction holds.
//
//   nat-prerouting, nat-output -> services: ip daddr . meta l4proto . th dport vmap @service-ips
//     -> service-<hash>-ns/name/proto/port: numgen random mod N vmap { i : goto endpoint-... }
//        (a plain goto for a single endpoint)
//     -> endpoint-<hash>-ns/name/proto/port__ip/port: dnat
//   nat-postrouting -> masquerading: masquerade what mark-for-masquerade marked
//   filter-forward, filter-output -> service-endpoints-check: vmap @no-endpoint-services -> reject
import type { Destination } from '../../model/contract.js';
import type { ProgrammedPort } from '../netfilter/frontends.js';
import { nameHash, protocolName, safeText, servicePortName } from '../netfilter/names.js';

export const TABLE = 'kube-lb';
export const FAMILY = 'ip';
const T = `${FAMILY} ${TABLE}`;
export const SERVICE_IPS_MAP = 'service-ips';
export const NO_ENDPOINTS_MAP = 'no-endpoint-services';
const SERVICE_PREFIX = 'service-';
const ENDPOINT_PREFIX = 'endpoint-';
const MARK_CHAIN = 'mark-for-masquerade';
const REJECT_CHAIN = 'reject-chain';
/** Chain names stay well within the kernel's 256 bytes. */
const CHAIN_NAME_MAX = 200;

/** Whether a chain holds one service port's or one endpoint's rules, and so comes and goes with it. */
export function isServicePortChain(name: string): boolean {
  return name.startsWith(SERVICE_PREFIX) || name.startsWith(ENDPOINT_PREFIX);
}

/** kube-proxy's hashAndTruncate: a hash prefix keeps names unique, the rest keeps them readable. */
function hashAndTruncate(base: string): string {
  const name = `${nameHash(base).slice(0, 8)}-${base}`;
  return name.length > CHAIN_NAME_MAX ? `${name.slice(0, CHAIN_NAME_MAX - 3)}...` : name;
}

function chainBase(sp: ProgrammedPort): string {
  return `${sp.namespace}/${sp.name}/${protocolName(sp)}/${sp.portName}`;
}

export function serviceChainName(sp: ProgrammedPort): string {
  return safeText(SERVICE_PREFIX + hashAndTruncate(chainBase(sp)), sp);
}

export function endpointChainName(sp: ProgrammedPort, d: Destination): string {
  return safeText(ENDPOINT_PREFIX + hashAndTruncate(`${chainBase(sp)}__${d.ip}/${d.port}`), sp);
}

/** A map element: the frontend's key and the verdict it leads to. */
export interface Element {
  key: string;
  comment: string;
  verdict: string;
}

export interface Ruleset {
  /** Chains with their rules: the fixed ones and one set per service port. */
  chains: Map<string, string[]>;
  /** Elements by key, per map. */
  maps: Record<typeof SERVICE_IPS_MAP | typeof NO_ENDPOINTS_MAP, Map<string, Element>>;
}

/** The base chains (hooks) and the maps: created once, never rewritten. */
export function declarations(): string[] {
  const mapType = 'type ipv4_addr . inet_proto . inet_service : verdict ;';
  return [
    `add table ${T} { comment "kube-lb service proxy rules" ; }`,
    // Numeric priorities: some nft versions reject "dstnat" in the output hook.
    `add chain ${T} nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }`,
    `add chain ${T} nat-output { type nat hook output priority -100 ; policy accept ; }`,
    `add chain ${T} nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; }`,
    `add chain ${T} filter-forward { type filter hook forward priority -110 ; policy accept ; }`,
    `add chain ${T} filter-output { type filter hook output priority -110 ; policy accept ; }`,
    `add map ${T} ${SERVICE_IPS_MAP} { ${mapType} comment "ClusterIP, protocol and port to service port chain" ; }`,
    `add map ${T} ${NO_ENDPOINTS_MAP} { ${mapType} comment "service ports without endpoints" ; }`,
  ];
}

/** Everything kube-lb wants in its table for these service ports and this masquerade mark (e.g. 0x4000). */
export function buildRuleset(servicePorts: readonly ProgrammedPort[], mark: string, clusterCidr: string | undefined): Ruleset {
  const chains = new Map<string, string[]>([
    ['nat-prerouting', ['jump services']],
    ['nat-output', ['jump services']],
    ['nat-postrouting', ['jump masquerading']],
    ['filter-forward', ['ct state new jump service-endpoints-check']],
    ['filter-output', ['ct state new jump service-endpoints-check']],
    ['services', [`ip daddr . meta l4proto . th dport vmap @${SERVICE_IPS_MAP}`]],
    ['service-endpoints-check', [`ip daddr . meta l4proto . th dport vmap @${NO_ENDPOINTS_MAP}`]],
    [REJECT_CHAIN, ['reject']],
    [MARK_CHAIN, [`meta mark set meta mark | ${mark}`]],
    // The mark is cleared so a packet that is processed again is not masqueraded twice.
    ['masquerading', [`meta mark & ${mark} == 0 return`, `meta mark set meta mark ^ ${mark}`, 'masquerade fully-random']],
  ]);
  const maps: Ruleset['maps'] = { [SERVICE_IPS_MAP]: new Map(), [NO_ENDPOINTS_MAP]: new Map() };
  for (const sp of servicePorts) {
    const key = `${sp.frontend.ip} . ${protocolName(sp)} . ${sp.frontend.port}`;
    const comment = safeText(servicePortName(sp), sp);
    if (sp.destinations.length === 0) {
      maps[NO_ENDPOINTS_MAP].set(key, { key, comment, verdict: `goto ${REJECT_CHAIN}` });
      continue;
    }
    const svcChain = serviceChainName(sp);
    maps[SERVICE_IPS_MAP].set(key, { key, comment, verdict: `goto ${svcChain}` });
    const svcRules: string[] = [];
    const proto = protocolName(sp);
    if (clusterCidr !== undefined) {
      svcRules.push(`ip daddr ${sp.frontend.ip} ${proto} dport ${sp.frontend.port} ip saddr != ${clusterCidr} jump ${MARK_CHAIN}`);
    }
    if (sp.destinations.length === 1) {
      // The same choice as a one-element numgen vmap, without the anonymous set each vmap
      // is: the kernel names new sets by scanning the table's sets, so thousands of them
      // make a transaction take seconds.
      svcRules.push(`goto ${endpointChainName(sp, sp.destinations[0]!)}`);
    } else {
      const picks = sp.destinations.map((d, i) => `${i} : goto ${endpointChainName(sp, d)}`);
      svcRules.push(`numgen random mod ${sp.destinations.length} vmap { ${picks.join(' , ')} }`);
    }
    chains.set(svcChain, svcRules);
    for (const d of sp.destinations) {
      chains.set(endpointChainName(sp, d), [
        `ip saddr ${d.ip} jump ${MARK_CHAIN}`,
        // A dnat reached through a vmap needs the protocol matched first.
        `meta l4proto ${proto} dnat to ${d.ip}:${d.port}`,
      ]);
    }
  }
  return { chains, maps };
}

/** What one transaction changes. */
export interface Transaction {
  /** Chains to create if missing, flush and fill. */
  write: Map<string, string[]>;
  /** Map elements to delete, then to add: an element's verdict cannot be changed in place. */
  deleteElements: { map: string; key: string }[];
  addElements: { map: string; element: Element }[];
  /** Maps to empty before adding elements (full syncs). */
  flushMaps: string[];
  /** Chains to flush and delete, after the elements pointing at them are gone. */
  removeChains: string[];
}

/** Renders one `nft -f` transaction: all of it applies, or none. */
export function renderTransaction(tx: Transaction): string {
  const lines = declarations();
  for (const map of tx.flushMaps) lines.push(`flush map ${T} ${map}`);
  for (const { map, key } of tx.deleteElements) lines.push(`delete element ${T} ${map} { ${key} }`);
  // Every chain exists before any rule jumps to it.
  for (const chain of tx.write.keys()) lines.push(`add chain ${T} ${chain}`);
  for (const [chain, rules] of tx.write) {
    lines.push(`flush chain ${T} ${chain}`);
    for (const rule of rules) lines.push(`add rule ${T} ${chain} ${rule}`);
  }
  for (const { map, element: e } of tx.addElements) lines.push(`add element ${T} ${map} { ${e.key} comment "${e.comment}" : ${e.verdict} }`);
  for (const chain of tx.removeChains) lines.push(`flush chain ${T} ${chain}`);
  for (const chain of tx.removeChains) lines.push(`delete chain ${T} ${chain}`);
  return lines.join('\n') + '\n';
}
