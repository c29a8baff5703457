// `kube-lb run --takeover`: moving a live node onto kube-lb from kube-proxy
// (iptables or nftables mode) or from another kube-lb backend, without a
// drain (docs/takeover.md). kube-lb programs its own datapath first, checks
// that the kernel holds every frontend it programmed, then removes the
// other's rules. Established flows keep their endpoint: the stack's
// conntrack keeps translating the flows the other's rules started after
// those rules are gone (and the ebpf datapath leaves them to it), and the
// ebpf datapath, when it is the one handed over from, keeps translating its
// own flows until the last one ends.
import fs from 'node:fs';
import type { Backend } from './backends/backend.js';
import { EbpfBackend } from './backends/ebpf/ebpf-backend.js';
import { pinnedMaps } from './backends/ebpf/datapath.js';
import type { StackFlow } from './backends/ebpf/takeover.js';
import { IptablesBackend, IPTABLES_MODES, type IptablesMode, detectIptablesMode } from './backends/iptables/iptables-backend.js';
import { runCommand } from './backends/netfilter/command.js';
import { translatedFlows } from './backends/netfilter/conntrack.js';
import { TABLE as KUBE_LB_NFT_TABLE } from './backends/nftables/ruleset.js';
import { type BackendName, type BackendOptions } from './backends/registry.js';
import type { Logger } from './log.js';
import { type DesiredState, frontendKey } from './model/contract.js';

/** How often the flows of the datapath taken over from are checked. */
const HANDOVER_CHECK_MS = 2000;
const KUBE_PROXY_NFT_TABLE = 'kube-proxy';
/** TCP states in which a FIN or RST was seen: the next SYN on the tuple is a new connection. */
const CLOSING_STATES = new Set(['FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE']);

/** A datapath found on the node that kube-lb takes over from. */
interface Predecessor {
  /** For logs and errors. */
  name: string;
  /** rules: netfilter rules, whose flows the stack's conntrack translates; ebpf: kube-lb's programs, which translate their own. */
  kind: 'rules' | 'ebpf';
  /** Removes its rules; ebpf: its services, and returns it: the programs stay for the flows they translate. */
  remove(): Promise<EbpfBackend | void>;
}

/**
 * The kernel applies the NAT conntrack recorded for a flow only while some
 * rule of the namespace needs conntrack and some NAT chain is registered.
 * The rules taken over from were both; the ebpf datapath is neither. This
 * table stands in for them until the last flow they started has ended.
 */
const KEEPER_TABLE = 'kube-lb-takeover';
const KEEPER_RULESET = `add table ip ${KEEPER_TABLE} { comment "kube-lb --takeover: keeps conntrack and its NAT for the flows of the rules taken over from" ; }
add chain ip ${KEEPER_TABLE} conntrack { type filter hook prerouting priority filter ; policy accept ; }
add rule ip ${KEEPER_TABLE} conntrack ct state established counter
add chain ip ${KEEPER_TABLE} nat { type nat hook postrouting priority srcnat ; policy accept ; }
`;

export class Takeover {
  private handedOver: EbpfBackend | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly predecessors: Predecessor[],
    private readonly log: Logger,
  ) {}

  /** Finds what another datapath left on the node; refuses what kube-lb cannot take over from. */
  static async find(name: BackendName, opts: BackendOptions): Promise<Takeover> {
    const found = await predecessors(name, opts);
    opts.log.info({ found: found.map((p) => p.name) }, found.length > 0 ? 'taking over: kube-lb programs its datapath, then removes the other' : 'taking over: no other datapath found');
    return new Takeover(found, opts.log);
  }

  /** Whether the ebpf datapath must leave the stack's flows to it: a predecessor's rules started them. */
  get stackFlows(): boolean {
    return this.predecessors.some((p) => p.kind === 'rules');
  }

  /**
   * After kube-lb's first sync: checks that the kernel holds every frontend
   * it programmed, removes the other datapaths, and, on ebpf, records the
   * flows the stack translates. A failure leaves the others in place; the
   * next sync tries again.
   */
  async complete(backend: Backend, state: DesiredState): Promise<void> {
    const held = new Set((await backend.inspect()).map((v) => frontendKey(v.frontend)));
    const missing = [...state.values()]
      .flatMap((sp) => sp.frontends)
      .filter((f) => f.internal.destinations.length + f.external.destinations.length > 0 && !held.has(frontendKey(f)))
      .map(frontendKey);
    if (missing.length > 0) {
      throw new Error(`--takeover: kube-lb's ${backend.name} datapath does not hold ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}: the other datapath stays until it does`);
    }
    const adopting = backend instanceof EbpfBackend && this.stackFlows;
    if (adopting) await runCommand('nft', ['-f', '-'], KEEPER_RULESET);
    for (const p of this.predecessors) {
      const handedOver = await p.remove();
      if (handedOver) {
        this.handedOver = handedOver;
        this.watch(
          () => handedOver.liveFlows(false),
          async () => {
            this.handedOver = undefined;
            await handedOver.cleanup();
          },
          'took over: the last flow of the ebpf datapath ended; removed it',
        );
      }
      this.log.info({ removed: p.name }, p.kind === 'ebpf' ? 'took over new flows; the ebpf programs stay attached for the flows they translate' : 'took over; removed');
    }
    if (adopting) {
      const flows = (await translatedFlows()).map(
        (f): StackFlow => ({
          // translatedFlows lists IPv4 flows.
          flow: { family: 'IPv4', saddr: f.src, daddr: f.dst, sport: f.sport, dport: f.dport, protocol: f.protocol },
          backend: { ip: f.replySrc, port: f.replySport },
          closing: CLOSING_STATES.has(f.state),
        }),
      );
      this.log.info({ flows: backend.adoptStackFlows(flows) }, "took over: the stack's conntrack keeps translating the flows the removed rules started");
      this.watch(
        () => backend.liveFlows(true),
        async () => {
          backend.endAdoption();
          await runCommand('nft', ['delete', 'table', 'ip', KEEPER_TABLE]);
        },
        `took over: the last flow the removed rules started ended; every flow is kube-lb's; removed table ip ${KEEPER_TABLE}`,
      );
    }
    this.predecessors.length = 0;
  }

  /** Checks every HANDOVER_CHECK_MS how many flows are live; at none, finishes. */
  private watch(live: () => number, finish: () => Promise<void>, finished: string): void {
    const check = (): void => {
      const flows = live();
      if (flows > 0) {
        this.log.debug({ flows }, 'takeover: flows of the other datapath still live');
        this.timer = setTimeout(check, HANDOVER_CHECK_MS);
        return;
      }
      this.timer = undefined;
      finish()
        .then(() => this.log.info(finished))
        .catch((err: Error) => this.log.error({ err: err.message }, 'takeover: removing what the flows of the other datapath needed failed; docs/takeover.md says how to remove it by hand'));
    };
    check();
  }

  /** Stops watching; what the live flows need stays (docs/takeover.md). */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.handedOver?.close();
  }
}

async function predecessors(name: BackendName, opts: BackendOptions): Promise<Predecessor[]> {
  if (name !== 'ipvs') refuseIpvs();
  const found: Predecessor[] = [];
  const netfilter = { log: opts.log, localTraffic: opts.localTraffic, masqueradeBit: opts.masqueradeBit, tcpBeLiberal: opts.tcpBeLiberal };
  const ownMode: IptablesMode | undefined = name === 'iptables' ? (opts.iptablesMode ?? (await detectIptablesMode())) : undefined;
  for (const mode of IPTABLES_MODES) {
    if (mode === ownMode || !(await hasIptablesChains(mode))) continue;
    // kube-lb's iptables backend writes kube-proxy's layout: its cleanup removes either.
    const rules = new IptablesBackend({ ...netfilter, mode });
    found.push({ name: `kube-proxy's iptables rules (iptables-${mode})`, kind: 'rules', remove: () => rules.cleanup() });
  }
  for (const table of await nftTables()) {
    const kubeLbs = name !== 'nftables' && (table.family === 'ip' || table.family === 'ip6') && table.name === KUBE_LB_NFT_TABLE;
    if (table.name !== KUBE_PROXY_NFT_TABLE && !kubeLbs) continue;
    const what = `${kubeLbs ? "kube-lb's" : "kube-proxy's"} nftables table ${table.family} ${table.name}`;
    // The kernel applies the NAT of established flows only while some NAT
    // chain is registered; ebpf registers none, so the table's empty base chains stay.
    if (name === 'ebpf') found.push({ name: `${what}'s rules`, kind: 'rules', remove: async () => void (await runCommand('nft', ['flush', 'table', table.family, table.name])) });
    else found.push({ name: what, kind: 'rules', remove: async () => void (await runCommand('nft', ['delete', 'table', table.family, table.name])) });
  }
  if (name !== 'ebpf' && pinnedMaps(opts.bpfPinPath).length > 0) {
    found.push({
      name: `kube-lb's ebpf datapath (${opts.bpfPinPath})`,
      kind: 'ebpf',
      remove: async () => {
        const ebpf = EbpfBackend.open({ pinPath: opts.bpfPinPath, cgroupRoot: opts.cgroupRoot, log: opts.log });
        ebpf.handOver();
        return ebpf;
      },
    });
  }
  return found;
}

/**
 * IPVS translates established connections only while their service address
 * is local (on kube-ipvs0): removing it would cut them, keeping it would
 * keep IPVS answering. Neither is a takeover without a drop.
 */
function refuseIpvs(): void {
  const servers = fs.existsSync('/proc/net/ip_vs') && /^(TCP|UDP|SCTP)\s/m.test(fs.readFileSync('/proc/net/ip_vs', 'utf8'));
  if (servers || fs.existsSync('/sys/class/net/kube-ipvs0')) {
    throw new Error(
      '--takeover: IPVS virtual servers or kube-ipvs0 are present (kube-proxy in ipvs mode, or kube-lb --backend=ipvs); kube-lb cannot take over from IPVS without cutting its established connections: drain the node, or run --backend=ipvs',
    );
  }
}

/** Whether iptables-MODE holds kube-proxy's chains; false where that iptables is not installed. */
async function hasIptablesChains(mode: IptablesMode): Promise<boolean> {
  let saved: string;
  try {
    // All tables: legacy lists only those the kernel has, and -t would create one.
    saved = (await runCommand(`iptables-${mode}-save`, [])).stdout;
  } catch (err) {
    if (/ENOENT/.test((err as Error).message)) return false;
    throw err;
  }
  return /^:KUBE-(SERVICES|POSTROUTING|MARK-MASQ) /m.test(saved);
}

/** The nftables tables of the node; none where nft is not installed. */
async function nftTables(): Promise<{ family: string; name: string }[]> {
  let listed: string;
  try {
    listed = (await runCommand('nft', ['list', 'tables'])).stdout;
  } catch (err) {
    if (/ENOENT/.test((err as Error).message)) return [];
    throw err;
  }
  return [...listed.matchAll(/^table (\S+) (\S+)$/gm)].map((m) => ({ family: m[1]!, name: m[2]! }));
}
