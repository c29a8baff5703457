// The ipsets and the few iptables rules of kube-proxy's ipvs mode
// (pkg/proxy/ipvs/proxier.go): IPVS does the load balancing, these do the
// masquerading and keep kube-ipvs0's addresses to their service ports.
//   KUBE-CLUSTER-IP            hash:ip,port     every ClusterIP,proto:port
//   KUBE-EXTERNAL-IP(-LOCAL)   hash:ip,port     external IPs, masqueraded (or not: -LOCAL)
//   KUBE-LOAD-BALANCER(-LOCAL) hash:ip,port     load-balancer IPs; -LOCAL ones are not masqueraded
//   KUBE-LOAD-BALANCER-FW      hash:ip,port     load-balancer IPs with loadBalancerSourceRanges,
//   -SOURCE-CIDR, -SOURCE-IP   hash:ip,port,net/ip  and the sources they accept
//   KUBE-NODE-PORT-TCP/-UDP    bitmap:port      NodePorts; -LOCAL-TCP/-UDP are not masqueraded
//   KUBE-NODE-PORT(-LOCAL)-SCTP-HASH  hash:ip,port  SCTP NodePorts, by node address as kube-proxy keeps them
//   KUBE-LOOP-BACK             hash:ip,port,ip  endpoint,proto:port,endpoint of this node's endpoints: hairpin
//   KUBE-IPVS-IPS              hash:ip          every address on kube-ipvs0
// Each family has its own: IPv4's by these names in iptables, IPv6's with
// the prefix KUBE-6- (family inet6) in ip6tables, the same chains and rules
// in each, as kube-proxy runs one proxier per family.
// Sets change with services, entry by entry: full syncs compare them with
// what the kernel holds (one netlink dump, ipsetList) and change only what
// differs, other syncs send the changed frontends' entries over netlink (ipsetApply)
// rather than start an ipset process each time; the rules do not change
// (iptables-restore --noflush, at start and on full syncs). Unlike the
// iptables backend, no rule drops what conntrack marks INVALID: IPVS
// translates an endpoint's replies by its own connection table, whatever
// conntrack makes of their window, so an out-of-window segment never
// reaches the client untranslated (kubernetes issue 74839).
import { runCommand } from '../netfilter/command.js';
import { emptyUpdate, parseSave, renderRestore, tokenize, type TableUpdate } from '../netfilter/iptables-text.js';
import type { LocalTrafficByFamily } from '../../config/local-traffic.js';
import { iptablesLocalMatch, masqueradeMark } from '../netfilter/frontends.js';
import type { Destination, Frontend, IPFamily, Protocol, ResolvedFrontend } from '../../model/contract.js';
import type { Leftovers } from './leftovers.js';
import type { IpsetChange, IpsetElement, IpsetType, NativeAddon } from '../../native/index.js';
import { PROTOCOL_NUMBERS } from './virtual-servers.js';
import { addressBits, parseCidr } from '../../net/ip.js';
import { allSettledOrThrow } from './settled.js';

export const CLUSTER_IP_SET = 'KUBE-CLUSTER-IP';
export const LOOP_BACK_SET = 'KUBE-LOOP-BACK';
const EXTERNAL_IP_SET = 'KUBE-EXTERNAL-IP';
const EXTERNAL_IP_LOCAL_SET = 'KUBE-EXTERNAL-IP-LOCAL';
const LOAD_BALANCER_SET = 'KUBE-LOAD-BALANCER';
const LOAD_BALANCER_LOCAL_SET = 'KUBE-LOAD-BALANCER-LOCAL';
const LOAD_BALANCER_FW_SET = 'KUBE-LOAD-BALANCER-FW';
const SOURCE_CIDR_SET = 'KUBE-LOAD-BALANCER-SOURCE-CIDR';
const SOURCE_IP_SET = 'KUBE-LOAD-BALANCER-SOURCE-IP';
const IPVS_IPS_SET = 'KUBE-IPVS-IPS';

const SET_TYPES = {
  [CLUSTER_IP_SET]: 'hash:ip,port',
  [EXTERNAL_IP_SET]: 'hash:ip,port',
  [EXTERNAL_IP_LOCAL_SET]: 'hash:ip,port',
  [LOAD_BALANCER_SET]: 'hash:ip,port',
  [LOAD_BALANCER_LOCAL_SET]: 'hash:ip,port',
  [LOAD_BALANCER_FW_SET]: 'hash:ip,port',
  [SOURCE_CIDR_SET]: 'hash:ip,port,net',
  [SOURCE_IP_SET]: 'hash:ip,port,ip',
  'KUBE-NODE-PORT-TCP': 'bitmap:port',
  'KUBE-NODE-PORT-UDP': 'bitmap:port',
  'KUBE-NODE-PORT-LOCAL-TCP': 'bitmap:port',
  'KUBE-NODE-PORT-LOCAL-UDP': 'bitmap:port',
  'KUBE-NODE-PORT-SCTP-HASH': 'hash:ip,port',
  'KUBE-NODE-PORT-LOCAL-SCTP-HASH': 'hash:ip,port',
  [LOOP_BACK_SET]: 'hash:ip,port,ip',
  [IPVS_IPS_SET]: 'hash:ip',
} as const satisfies Record<string, IpsetType>;

export type SetName = keyof typeof SET_TYPES;
export const SET_NAMES = Object.keys(SET_TYPES) as SetName[];
export type SetContents = Record<SetName, Set<string>>;
/** Each family's sets. */
export type FamilySets = Record<IPFamily, SetContents>;

/** A set's name in the kernel: kube-proxy's, with KUBE-6- for IPv6 and cut to ipset's 31 characters as kube-proxy cuts it. */
export function familySetName(set: SetName, family: IPFamily): string {
  return family === 'IPv4' ? set : `KUBE-6-${set.slice('KUBE-'.length)}`.slice(0, 31);
}

const emptySets = (): SetContents => Object.fromEntries(SET_NAMES.map((name) => [name, new Set<string>()])) as SetContents;
const emptyFamilySets = (): FamilySets => ({ IPv4: emptySets(), IPv6: emptySets() });
/** One set's entries that frontends need, by text, each with how many need it. */
type SetUsers = Map<string, { entry: SetEntry; count: number }>;
const emptyUsers = (): Record<SetName, SetUsers> => Object.fromEntries(SET_NAMES.map((name) => [name, new Map()])) as Record<SetName, SetUsers>;

/** The commands of each family. */
const IPTABLES: Record<IPFamily, string> = { IPv4: 'iptables', IPv6: 'ip6tables' };

/** Each protocol's NodePort set, and the set of its NodePorts that are not masqueraded. */
const NODE_PORT_SETS: Record<Protocol, { all: SetName; local: SetName }> = {
  TCP: { all: 'KUBE-NODE-PORT-TCP', local: 'KUBE-NODE-PORT-LOCAL-TCP' },
  UDP: { all: 'KUBE-NODE-PORT-UDP', local: 'KUBE-NODE-PORT-LOCAL-UDP' },
  SCTP: { all: 'KUBE-NODE-PORT-SCTP-HASH', local: 'KUBE-NODE-PORT-LOCAL-SCTP-HASH' },
};

const nodePortSet = (protocol: Protocol, local: boolean): SetName => NODE_PORT_SETS[protocol][local ? 'local' : 'all'];

/** A NodePort's entry in its set: the port (bitmap:port), or for SCTP the node address and port (hash:ip,port). */
export function nodePortEntry(f: Pick<Frontend, 'ip' | 'port' | 'protocol'> & { family: IPFamily }, local: boolean): SetEntry {
  const set = nodePortSet(f.protocol, local);
  if (f.protocol === 'SCTP') return { family: f.family, set, text: ipPortText(f), element: ['hash:ip,port', f.family, f.ip, PROTOCOL_NUMBERS.SCTP, f.port] };
  return { family: f.family, set, text: String(f.port), element: ['bitmap:port', f.port] };
}

export const NAT_CHAINS = ['KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-NODE-PORT', 'KUBE-LOAD-BALANCER'] as const;
export const FILTER_CHAINS = ['KUBE-IPVS-FILTER'] as const;

/** Jumps from the built-in chains, each recognisable by its comment. */
export const JUMPS = [
  { table: 'nat', from: 'PREROUTING', to: 'KUBE-SERVICES', comment: 'kubernetes service portals' },
  { table: 'nat', from: 'OUTPUT', to: 'KUBE-SERVICES', comment: 'kubernetes service portals' },
  { table: 'nat', from: 'POSTROUTING', to: 'KUBE-POSTROUTING', comment: 'kubernetes postrouting rules' },
  { table: 'filter', from: 'INPUT', to: 'KUBE-IPVS-FILTER', comment: 'kubernetes ipvs access filter' },
] as const;

type Jump = (typeof JUMPS)[number];

export const jumpArgs = (j: Jump): string[] => ['-m', 'comment', '--comment', j.comment, '-j', j.to];

const proto = (p: Protocol): string => p.toLowerCase();

/** A frontend as a hash:ip,port set prints it: "10.96.0.10,tcp:80". */
export const ipPortText = (f: Pick<Frontend, 'ip' | 'port' | 'protocol'>): string => `${f.ip},${proto(f.protocol)}:${f.port}`;

/**
 * One entry of one of a family's sets, twice: as ipset prints it, which
 * full syncs compare with what ipsetList reads, and as ipsetApply sends it, built
 * beside the text rather than parsed back from it.
 */
export interface SetEntry {
  readonly family: IPFamily;
  readonly set: SetName;
  readonly text: string;
  readonly element: IpsetElement;
}


/** The set entries of one programmed frontend and those of its endpoints on this node that get new traffic. */
export function frontendSetEntries(
  f: Pick<ResolvedFrontend, 'ip' | 'port' | 'protocol' | 'kind' | 'family' | 'masquerade' | 'sourceRanges'>,
  onThisNode: readonly Destination[],
): SetEntry[] {
  const { family } = f;
  const entries: SetEntry[] = [];
  const add = (set: SetName, text: string, element: IpsetElement): void => void entries.push({ family, set, text, element });
  const protocol = PROTOCOL_NUMBERS[f.protocol];
  const protocolName = proto(f.protocol);
  const ipPort = ipPortText(f);
  const ipPortElement: IpsetElement = ['hash:ip,port', family, f.ip, protocol, f.port];
  // Traffic the model keeps unmasqueraded (externalTrafficPolicy: Local) goes in the -LOCAL sets.
  const unmasqueraded = f.masquerade === 'node';
  if (f.kind === 'NodePort') {
    for (const local of unmasqueraded ? [false, true] : [false]) entries.push(nodePortEntry(f, local));
  } else {
    add(IPVS_IPS_SET, f.ip, ['hash:ip', family, f.ip]);
    if (f.kind === 'ClusterIP') add(CLUSTER_IP_SET, ipPort, ipPortElement);
    else if (f.kind === 'ExternalIP') add(unmasqueraded ? EXTERNAL_IP_LOCAL_SET : EXTERNAL_IP_SET, ipPort, ipPortElement);
    else {
      add(LOAD_BALANCER_SET, ipPort, ipPortElement);
      if (unmasqueraded) add(LOAD_BALANCER_LOCAL_SET, ipPort, ipPortElement);
      if (f.sourceRanges.length > 0) add(LOAD_BALANCER_FW_SET, ipPort, ipPortElement);
      // As kube-proxy: every range by CIDR; the load-balancer IP itself, which the model adds when a range holds the node, by IP (the node's own traffic has it as source).
      const hostPrefix = addressBits(family);
      for (const range of f.sourceRanges) {
        if (range === `${f.ip}/${hostPrefix}`) add(SOURCE_IP_SET, `${ipPort},${f.ip}`, ['hash:ip,port,ip', family, f.ip, protocol, f.port, f.ip]);
        else {
          const { ip: net, prefix } = parseCidr(range);
          // ipset prints a host-length prefix as the bare address.
          add(SOURCE_CIDR_SET, `${ipPort},${prefix === hostPrefix ? net : range}`, ['hash:ip,port,net', family, f.ip, protocol, f.port, net, prefix]);
        }
      }
    }
  }
  // A pod reaching its own service comes back to itself: masquerade so the
  // reply returns through IPVS. Only a pod on this node can, so kube-proxy
  // lists only those.
  // The per-entry loops of this file (here, SetEntries, ipsetChanges) are
  // indexed, without array destructuring or spreading: a large first sync
  // runs them before V8 has optimized them, where those step an iterator
  // (an allocation) per element.
  for (let i = 0; i < onThisNode.length; i++) {
    const d = onThisNode[i]!;
    add(LOOP_BACK_SET, `${d.ip},${protocolName}:${d.port},${d.ip}`, ['hash:ip,port,ip', family, d.ip, protocol, d.port, d.ip]);
  }
  return entries;
}

/**
 * The set entries kube-lb's frontends need, kept by frontend so that a sync
 * touches only the frontends it changes. Frontends share entries (one
 * NodePort on every node address, one address with several ports): an
 * entry stays while any frontend needs it.
 */
export class SetEntries {
  private readonly ofFrontend = new Map<string, readonly SetEntry[]>();
  private readonly users: Record<IPFamily, Record<SetName, SetUsers>> = { IPv4: emptyUsers(), IPv6: emptyUsers() };

  /** Makes `entries` the frontend's (none: it is gone); returns the changes this makes to the kernel's sets, deletions first. */
  set(frontend: string, entries: readonly SetEntry[]): SetEntryChange[] {
    const before = this.ofFrontend.get(frontend) ?? [];
    if (entries.length > 0) this.ofFrontend.set(frontend, entries);
    else this.ofFrontend.delete(frontend);
    // Counted up before down, so an entry the frontend keeps never reaches 0.
    const added: SetEntryChange[] = [];
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const users = this.users[entry.family][entry.set];
      const user = users.get(entry.text);
      if (user) user.count++;
      else {
        users.set(entry.text, { entry, count: 1 });
        added.push(['add', entry]);
      }
    }
    const deleted: SetEntryChange[] = [];
    for (let i = 0; i < before.length; i++) {
      const entry = before[i]!;
      const users = this.users[entry.family][entry.set];
      const user = users.get(entry.text)!;
      if (--user.count === 0) {
        users.delete(entry.text);
        deleted.push(['del', user.entry]);
      }
    }
    return deleted.length === 0 ? added : [...deleted, ...added];
  }

  /** Every entry, set by set. */
  contents(): FamilySets {
    const contents = emptyFamilySets();
    for (const entry of this.entries()) contents[entry.family][entry.set].add(entry.text);
    return contents;
  }

  /** The entries the kernel (`current`, as readSets read it) lacks, as changes for applySetChanges. */
  missingFrom(current: FamilySets): SetEntryChange[] {
    const missing: SetEntryChange[] = [];
    for (const entry of this.entries()) if (!current[entry.family][entry.set].has(entry.text)) missing.push(['add', entry]);
    return missing;
  }

  private *entries(): Generator<SetEntry> {
    for (const family of ['IPv4', 'IPv6'] as const) {
      for (const set of SET_NAMES) for (const { entry } of this.users[family][set].values()) yield entry;
    }
  }
}

/** An entry to add to its set or delete from it. */
export type SetEntryChange = readonly [op: 'add' | 'del', entry: SetEntry];

function ipsetChange(change: SetEntryChange): IpsetChange {
  const { family, set, element } = change[1];
  const head: (string | number)[] = [change[0], familySetName(set, family)];
  return head.concat(element) as IpsetChange;
}

function createLine(name: string, type: string, family: IPFamily): string {
  return type === 'bitmap:port' ? `create ${name} ${type} range 0-65535` : `create ${name} ${type} family ${family === 'IPv6' ? 'inet6' : 'inet'} hashsize 1024 maxelem 1048576`;
}

/**
 * `ipset restore -exist` input for a full sync: it creates the families'
 * sets where they are missing and deletes the entries the kernel holds
 * (`current`, as readSets read them) that `wanted` lacks. Only the
 * differences, as kube-proxy syncs its sets: replacing a set (a filled twin
 * swapped in, the old one destroyed) waits for an RCU grace period per set.
 * The additions go over netlink (SetEntries.missingFrom): ipset restore parses each
 * line far slower than the kernel takes it.
 */
export function renderSetsSync(wanted: FamilySets, current: FamilySets, families: readonly IPFamily[]): string {
  const lines: string[] = [];
  for (const family of families) {
    for (const set of SET_NAMES) {
      const name = familySetName(set, family);
      lines.push(createLine(name, SET_TYPES[set], family));
      for (const entry of current[family][set]) if (!wanted[family][set].has(entry)) lines.push(`del ${name} ${entry}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** Each kernel set name of kube-lb's: its family and set. */
const KERNEL_SET_NAMES = new Map((['IPv4', 'IPv6'] as const).flatMap((family) => SET_NAMES.map((set) => [familySetName(set, family), { family, set }] as const)));

/** kube-lb's sets as the kernel holds them, each entry as `ipset save` prints it; a set that does not exist is empty. */
export function readSets(lib: Pick<NativeAddon, 'ipsetList'>): FamilySets {
  const contents = emptyFamilySets();
  for (const { name, entries } of lib.ipsetList()) {
    const known = KERNEL_SET_NAMES.get(name);
    if (known) for (const entry of entries) contents[known.family][known.set].add(entry);
  }
  return contents;
}

export interface RuleOptions {
  /** Traffic to a ClusterIP from elsewhere is masqueraded (--detect-local-mode), told for each family. */
  localTraffic: LocalTrafficByFamily;
  masqueradeBit: number;
}

/**
 * `iptables-restore --noflush` (or ip6tables-restore) input for one
 * family's chains (declaring a chain flushes it), with the jumps into them
 * that `saved` (the family's iptables-save output) lacks.
 */
export function renderRules(opts: RuleOptions, family: IPFamily, saved: string): string {
  const mark = masqueradeMark(opts.masqueradeBit);
  const local = opts.localTraffic[family];
  const inSet = (set: SetName, match: string): string[] => ['-m', 'set', '--match-set', familySetName(set, family), match];
  const masqueradeOffCluster = local
    ? [...iptablesLocalMatch(local, true), ...inSet(CLUSTER_IP_SET, 'dst,dst')]
    : // Without local traffic known, masquerade node-originated traffic whose source is a ClusterIP (kube-proxy's fallback).
      inSet(CLUSTER_IP_SET, 'src,dst');
  const rule = (chain: string, ...args: string[]): string => ['-A', chain, ...args].join(' ');
  const nodePortRules = (['TCP', 'UDP', 'SCTP'] as const).flatMap((p) => {
    const match = p === 'SCTP' ? 'dst,dst' : 'dst';
    return [
      rule('KUBE-NODE-PORT', '-p', proto(p), ...inSet(nodePortSet(p, true), match), '-j', 'RETURN'),
      rule('KUBE-NODE-PORT', '-p', proto(p), ...inSet(nodePortSet(p, false), match), '-j', 'KUBE-MARK-MASQ'),
    ];
  });
  const localDestination = ['-m', 'addrtype', '--dst-type', 'LOCAL'];
  const own = ownRules(saved);
  const isJump = (j: Jump) => (d: { chain: string; rule: string }): boolean => d.chain === j.from && tokenize(d.rule).join('\0') === jumpArgs(j).join('\0');
  const missingJumps = (table: Table): string[] =>
    JUMPS.filter((j) => j.table === table && !own[table].delete.some(isJump(j))).map((j) => ['-I', j.from, ...jumpArgs(j).map(quoted)].join(' '));
  return [
    '*nat',
    ...NAT_CHAINS.map((c) => `:${c} - [0:0]`),
    rule('KUBE-SERVICES', '-s', family === 'IPv6' ? '::1/128' : '127.0.0.0/8', '-j', 'RETURN'),
    rule('KUBE-SERVICES', ...inSet(LOAD_BALANCER_SET, 'dst,dst'), '-j', 'KUBE-LOAD-BALANCER'),
    rule('KUBE-SERVICES', ...masqueradeOffCluster, '-j', 'KUBE-MARK-MASQ'),
    rule('KUBE-SERVICES', ...inSet(EXTERNAL_IP_SET, 'dst,dst'), '-j', 'KUBE-MARK-MASQ'),
    // Accept external-IP traffic bound for the node, so that no later rule gets in IPVS's way.
    rule('KUBE-SERVICES', ...inSet(EXTERNAL_IP_SET, 'dst,dst'), ...localDestination, '-j', 'ACCEPT'),
    rule('KUBE-SERVICES', ...inSet(EXTERNAL_IP_LOCAL_SET, 'dst,dst'), ...localDestination, '-j', 'ACCEPT'),
    rule('KUBE-SERVICES', ...localDestination, '-j', 'KUBE-NODE-PORT'),
    rule('KUBE-SERVICES', ...inSet(CLUSTER_IP_SET, 'dst,dst'), '-j', 'ACCEPT'),
    rule('KUBE-SERVICES', ...inSet(LOAD_BALANCER_SET, 'dst,dst'), '-j', 'ACCEPT'),
    ...nodePortRules,
    rule('KUBE-LOAD-BALANCER', ...inSet(LOAD_BALANCER_LOCAL_SET, 'dst,dst'), '-j', 'RETURN'),
    rule('KUBE-LOAD-BALANCER', '-j', 'KUBE-MARK-MASQ'),
    rule('KUBE-POSTROUTING', ...inSet(LOOP_BACK_SET, 'dst,dst,src'), '-j', 'MASQUERADE'),
    rule('KUBE-POSTROUTING', '-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN'),
    rule('KUBE-POSTROUTING', '-j', 'MARK', '--xor-mark', mark),
    rule('KUBE-POSTROUTING', '-j', 'MASQUERADE', '--random-fully'),
    rule('KUBE-MARK-MASQ', '-j', 'MARK', '--or-mark', mark),
    ...missingJumps('nat'),
    'COMMIT',
    '*filter',
    ...FILTER_CHAINS.map((c) => `:${c} - [0:0]`),
    rule('KUBE-IPVS-FILTER', ...inSet(LOAD_BALANCER_FW_SET, 'dst,dst'), '-m', 'set', '!', '--match-set', familySetName(SOURCE_CIDR_SET, family), 'dst,dst,src', '-m', 'set', '!', '--match-set', familySetName(SOURCE_IP_SET, family), 'dst,dst,src', '-m', 'comment', '--comment', '"source outside loadBalancerSourceRanges"', '-j', 'DROP'),
    // kube-ipvs0's addresses are local: without this, they would reach every port the node listens on (kubernetes issue 72236).
    ...([LOAD_BALANCER_SET, CLUSTER_IP_SET, EXTERNAL_IP_SET, EXTERNAL_IP_LOCAL_SET] as const).map((set) => rule('KUBE-IPVS-FILTER', ...inSet(set, 'dst,dst'), '-j', 'RETURN')),
    rule('KUBE-IPVS-FILTER', '-m', 'conntrack', '--ctstate', 'NEW', ...inSet(IPVS_IPS_SET, 'dst'), '-j', 'REJECT'),
    ...missingJumps('filter'),
    'COMMIT',
    '',
  ].join('\n');
}

type Table = 'nat' | 'filter';

const CHAINS: Record<Table, readonly string[]> = { nat: NAT_CHAINS, filter: FILTER_CHAINS };

const quoted = (word: string): string => (word.includes(' ') ? `"${word}"` : word);

/** kube-lb's chains and the jumps into them that one family's iptables-save output shows, as an update that removes them. */
function ownRules(saved: string): Record<Table, TableUpdate> {
  const update: Record<Table, TableUpdate> = { nat: emptyUpdate(), filter: emptyUpdate() };
  for (const table of ['nat', 'filter'] as const) {
    const { chains, ruleText } = parseSave(saved, table);
    update[table].remove = CHAINS[table].filter((c) => chains.has(c));
    for (const jump of JUMPS.filter((j) => j.table === table)) {
      const tokens = jumpArgs(jump).join('\0');
      (chains.get(jump.from) ?? []).forEach((rule, i) => {
        if (rule.join('\0') === tokens) update[table].delete.push({ chain: jump.from, rule: ruleText.get(jump.from)![i]! });
      });
    }
  }
  return update;
}

/** One family's rules as the kernel holds them: iptables-save of every table it has. */
async function savedRules(family: IPFamily): Promise<string> {
  return (await runCommand(`${IPTABLES[family]}-save`, [])).stdout;
}

/** The iptables-restore input that removes what `saved` (one family's iptables-save output) shows of kube-lb's; '' when nothing. */
export function renderRemoval(saved: string): string {
  return renderRestore(ownRules(saved));
}

/**
 * A full sync's netfilter state: makes the families' sets exist and hold
 * `wanted`, from what the kernel holds (`current`), and writes the chains,
 * which name the sets. Once the sets exist, their entries and each
 * family's chains go in side by side.
 */
export async function writeSetsAndChains(lib: Pick<NativeAddon, 'ipsetApply'>, wanted: SetEntries, current: FamilySets, families: readonly IPFamily[], rules: RuleOptions): Promise<void> {
  await runCommand('ipset', ['restore', '-exist'], renderSetsSync(wanted.contents(), current, families));
  await allSettledOrThrow([applySetChanges(lib, wanted.missingFrom(current)), ...families.map((family) => installChains(rules, family))]);
}

/** Writes one family's chains and adds each jump once. */
async function installChains(opts: RuleOptions, family: IPFamily): Promise<void> {
  await runCommand(`${IPTABLES[family]}-restore`, ['-w', '--noflush'], renderRules(opts, family, await savedRules(family)));
}

/**
 * What ipsetApply is given for `changes`: each element's last change (it
 * may repeat changes and take them out of order), a set's deletions
 * together and its additions together (it sends each run in few messages).
 */
function ipsetChanges(changes: readonly SetEntryChange[]): IpsetChange[] {
  const groups: Record<IPFamily, Map<SetName, { del: IpsetChange[]; add: IpsetChange[] }>> = { IPv4: new Map(), IPv6: new Map() };
  const last = lastPerElement(changes);
  for (let i = 0; i < last.length; i++) {
    const change = last[i]!;
    const { family, set } = change[1];
    const bySet = groups[family];
    const group = bySet.get(set) ?? bySet.set(set, { del: [], add: [] }).get(set)!;
    group[change[0]].push(ipsetChange(change));
  }
  let sent: IpsetChange[] = [];
  for (const bySet of [groups.IPv4, groups.IPv6]) for (const { del, add } of bySet.values()) sent = sent.concat(del, add);
  return sent;
}

/**
 * Each element's last change. SetEntries gives an element two only where
 * one frontend let it go and another took it in the same batch, a deletion
 * and an addition: a batch of one kind has none to merge.
 */
function lastPerElement(changes: readonly SetEntryChange[]): readonly SetEntryChange[] {
  if (!changes.some((c) => c[0] === 'del') || !changes.some((c) => c[0] === 'add')) return changes;
  const last = new Map<string, SetEntryChange>();
  for (const change of changes) last.set(`${change[1].family} ${change[1].set} ${change[1].text}`, change);
  return [...last.values()];
}

/** Makes the changes to the sets in one netlink exchange; fails naming each element the kernel refused, and why. */
export async function applySetChanges(lib: Pick<NativeAddon, 'ipsetApply'>, changes: readonly SetEntryChange[]): Promise<void> {
  if (changes.length === 0) return;
  const sent = ipsetChanges(changes);
  const refused = (await lib.ipsetApply(sent)).filter((err) => err !== null);
  if (refused.length > 0) throw new Error(`ipset refused ${refused.length} of ${sent.length} element change(s): ${refused.map((err) => err.message).join('; ')}`);
}

/**
 * A partial sync's set changes, sent in batches as the sync plans them, so
 * that the kernel takes the first while the rest are worked out. One batch
 * at a time, in order: a later batch may undo an earlier one's change.
 */
export class SetChangeBatches {
  private pending: SetEntryChange[] = [];
  private sent: Promise<void>;
  private readonly failures: Error[] = [];

  /** The first batch goes once `after` (the sync's other kernel exchange) has settled, whether it failed or not. */
  constructor(
    private readonly lib: Pick<NativeAddon, 'ipsetApply'>,
    private readonly batchSize: number,
    after: Promise<unknown>,
  ) {
    this.sent = after.then(() => undefined, () => undefined);
  }

  add(changes: readonly SetEntryChange[]): void {
    for (let i = 0; i < changes.length; i++) this.pending.push(changes[i]!);
    if (this.pending.length >= this.batchSize) this.send();
  }

  /** Sends what is left; resolves once the kernel has taken every batch, or fails with what each batch had refused. */
  async end(): Promise<void> {
    this.send();
    await this.sent;
    if (this.failures.length > 0) throw new Error(this.failures.map((err) => err.message).join('; '));
  }

  private send(): void {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    // A refused batch does not hold back the next: the kernel goes on past a refused element within one batch too.
    this.sent = this.sent.then(() => applySetChanges(this.lib, batch).catch((err: Error) => void this.failures.push(err)));
  }
}

/**
 * Removes the jumps, chains and sets that exist; what exists and cannot be
 * removed (a set another rule still names, say) goes to `leftovers`. Each
 * family's rules go in one restore, the sets in another; where the kernel
 * refuses one (a foreign rule still uses a chain or set of ours), one
 * command at a time removes what it can and names the rest.
 */
export async function removeRules(leftovers: Leftovers, families: readonly IPFamily[]): Promise<void> {
  const succeeds = (cmd: string, args: string[], input = ''): Promise<boolean> => runCommand(cmd, args, input).then(() => true, () => false);
  for (const family of families) {
    const payload = renderRemoval(await savedRules(family));
    // A refused restore may have committed one table and not the other: what is left is read again.
    if (payload !== '' && !(await succeeds(`${IPTABLES[family]}-restore`, ['-w', '--noflush'], payload))) await removeRulesOneByOne(leftovers, family, ownRules(await savedRules(family)));
  }
  const sets = await ownSets(families);
  if (sets.length > 0 && !(await succeeds('ipset', ['restore'], sets.map((set) => `destroy ${set}\n`).join('')))) {
    for (const set of await ownSets(families)) await leftovers.attempt(`ipset destroy ${set}`, () => runCommand('ipset', ['destroy', set]));
  }
}

/** The families' sets of kube-lb's that exist. */
async function ownSets(families: readonly IPFamily[]): Promise<string[]> {
  const existing = new Set((await runCommand('ipset', ['list', '-n'])).stdout.split('\n'));
  return families.flatMap((family) => SET_NAMES.map((set) => familySetName(set, family)).filter((name) => existing.has(name)));
}

/** removeRules for one family's rules (`own`, as ownRules read them), a command at a time, each failure noted. */
async function removeRulesOneByOne(leftovers: Leftovers, family: IPFamily, own: Record<Table, TableUpdate>): Promise<void> {
  const command = IPTABLES[family];
  const run = (args: string[]): Promise<boolean> => leftovers.attempt(`${command} ${args.join(' ')}`, () => runCommand(command, args));
  for (const table of ['nat', 'filter'] as const) {
    for (const { chain, rule } of own[table].delete) await run(['-w', '-t', table, '-D', chain, ...tokenize(rule)]);
    // Flush them all before deleting any: one may jump to another.
    const flushed = [];
    for (const chain of own[table].remove) if (await run(['-w', '-t', table, '-F', chain])) flushed.push(chain);
    for (const chain of flushed) await run(['-w', '-t', table, '-X', chain]);
  }
}
