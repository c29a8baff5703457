// What each sync programmed, and the conntrack flows it left stale (which
// ones is decided in ../stale-flows.ts): conntrack keeps a UDP flow on the
// endpoint it was first NATed to, and any flow un-NATed if it began before
// the frontend had endpoints. A NodePort's flows are those to its node
// address and port.
import type { SyncStats } from '../backend.js';
import type { Destination, Frontend, ResolvedFrontend } from '../../model/contract.js';
import { frontendKey, sameDestinations } from '../../model/contract.js';
import { type StaleFlows, staleFlows } from '../stale-flows.js';
import type { Logger } from '../../log.js';
import { runCommand } from './command.js';

/** A frontend and every endpoint its traffic may have been NATed to. */
export interface FrontendDestinations {
  frontend: ResolvedFrontend;
  destinations: readonly Destination[];
}

/** What a sync changed, from one sync to the next: the stats, and the flows left stale. */
export class ProgrammedFrontends {
  private programmed: Map<string, FrontendDestinations> | null = null;

  /** Records the frontends a sync programmed. */
  update(frontends: readonly FrontendDestinations[]): { stats: SyncStats; stale: StaleFlows[] } {
    const now = new Map(frontends.map((f) => [frontendKey(f.frontend), f]));
    const before = this.programmed;
    this.programmed = now;
    const stale: StaleFlows[] = [];
    let written = 0;
    for (const [fk, f] of now) {
      const old = before?.get(fk);
      if (old !== undefined && sameDestinations(old.destinations, f.destinations)) continue;
      written++;
      // What an earlier kube-lb programmed is not known after a restart: it flushes nothing.
      const flows = staleFlows(f.frontend, f.frontend.family, old?.destinations ?? null, f.destinations, before !== null);
      if (flows !== null) stale.push(flows);
    }
    let removed = 0;
    for (const [fk, old] of before ?? []) {
      if (now.has(fk)) continue;
      removed++;
      const flows = staleFlows(old.frontend, old.frontend.family, old.destinations, null, true);
      if (flows !== null) stale.push(flows);
    }
    return { stats: { frontendsWritten: written, frontendsRemoved: removed }, stale };
  }
}

/**
 * Deletes the stale flows with the conntrack tool, one selection per
 * endpoint that answered them (the frontend itself for untranslated ones);
 * a failure is logged, not thrown: the rules are in place. Untranslated
 * flows are looked up first, in one listing per family and protocol: a sync
 * that brings many services up would otherwise run the tool once for each.
 */
export async function flushStaleFlows(stale: readonly StaleFlows[], log: Logger): Promise<void> {
  let withUntranslated: Set<string>;
  try {
    withUntranslated = await frontendsWithUntranslatedFlows(stale.filter((s) => s.untranslated));
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'listing untranslated flows failed');
    withUntranslated = new Set();
  }
  const selections = stale.flatMap(({ frontend, gone }) =>
    [...gone, ...(withUntranslated.has(frontendKey(frontend)) ? [{ ip: frontend.ip, port: frontend.port }] : [])].map((replyFrom) => ({ frontend, replyFrom })),
  );
  for (const { frontend, replyFrom } of selections) {
    const args = ['-D', '-p', frontend.protocol.toLowerCase(), '--orig-dst', frontend.ip, '--orig-port-dst', String(frontend.port), '--reply-src', replyFrom.ip, '--reply-port-src', String(replyFrom.port)];
    try {
      await runCommand('conntrack', args);
    } catch (err) {
      // conntrack exits 1 when nothing matched.
      if (!/0 flow entries have been deleted/.test((err as Error).message)) {
        log.warn({ frontend: frontendKey(frontend), err: (err as Error).message }, 'flushing stale flows failed');
      }
    }
  }
  if (selections.length > 0) log.debug({ selections: selections.length }, 'flushed stale flows');
}

/** The keys of the frontends of `stale` that conntrack holds untranslated flows to: their reply comes from the frontend itself. */
async function frontendsWithUntranslatedFlows(stale: readonly StaleFlows[]): Promise<Set<string>> {
  const found = new Set<string>();
  const groups = new Map<string, Map<string, Frontend>>();
  for (const { frontend: f, family } of stale) {
    const group = `${family === 'IPv4' ? 'ipv4' : 'ipv6'} ${f.protocol.toLowerCase()}`;
    if (!groups.has(group)) groups.set(group, new Map());
    groups.get(group)!.set(`${f.ip} ${f.port}`, f);
  }
  for (const [group, byAddress] of groups) {
    const [family, protocol] = group.split(' ') as [string, string];
    const { stdout } = await runCommand('conntrack', ['-L', '-f', family, '-p', protocol]);
    for (const line of stdout.split('\n')) {
      // src, dst, sport, dport of the original direction, then of the reply.
      const [, origDst, , origDport, replySrc, , replySport] = [...line.matchAll(/\b(?:src|dst|sport|dport)=(\S+)/g)].map((m) => m[1]);
      if (origDst === undefined || origDst !== replySrc || origDport !== replySport) continue;
      // The model spells addresses as conntrack prints them (canonicalIp).
      const f = byAddress.get(`${origDst} ${origDport}`);
      if (f) found.add(frontendKey(f));
    }
  }
  return found;
}

/** A flow conntrack translates: its first packet's tuple, the endpoint that answers it, and its TCP state. */
export interface TranslatedFlow {
  protocol: 'TCP' | 'UDP';
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** The reply's source: the endpoint. */
  replySrc: string;
  replySport: number;
  /** TCP: conntrack's state (ESTABLISHED, FIN_WAIT, ...); UDP: empty. */
  state: string;
}

/** The IPv4 TCP and UDP flows conntrack holds with their destination translated. */
export async function translatedFlows(): Promise<TranslatedFlow[]> {
  const flows: TranslatedFlow[] = [];
  for (const protocol of ['TCP', 'UDP'] as const) {
    const { stdout } = await runCommand('conntrack', ['-L', '-f', 'ipv4', '-p', protocol.toLowerCase()]);
    for (const line of stdout.split('\n')) {
      const [src, dst, sport, dport, replySrc, , replySport] = [...line.matchAll(/\b(?:src|dst|sport|dport)=(\S+)/g)].map((m) => m[1]);
      if (replySport === undefined || (replySrc === dst && replySport === dport)) continue;
      const state = protocol === 'TCP' ? (line.split(/\s+/)[3] ?? '') : '';
      flows.push({ protocol, src: src!, dst: dst!, sport: Number(sport), dport: Number(dport), replySrc: replySrc!, replySport: Number(replySport), state });
    }
  }
  return flows;
}
