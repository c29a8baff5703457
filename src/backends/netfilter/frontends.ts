// What the netfilter backends program: one entry per frontend. Two service
// ports claiming one frontend cannot both win; like the ebpf backend, the
// smallest key keeps it and a warning names both.
import { type DesiredState, type ServicePortState, frontendKey } from '../backend.js';
import type { Logger } from '../../log.js';

/** The service ports to program, one per frontend, sorted by key so rule order is stable. */
export function servicePortsToProgram(state: DesiredState, log: Logger): ServicePortState[] {
  const byFrontend = new Map<string, ServicePortState>();
  for (const sp of state.values()) {
    const fk = frontendKey(sp.frontend);
    const other = byFrontend.get(fk);
    if (other === undefined) {
      byFrontend.set(fk, sp);
      continue;
    }
    const [keep, drop] = other.key < sp.key ? [other, sp] : [sp, other];
    log.warn({ frontend: fk, kept: keep.key, ignored: drop.key }, 'two service ports claim one frontend');
    byFrontend.set(fk, keep);
  }
  return [...byFrontend.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The packet mark that asks for masquerading: kube-proxy's --masquerade-bit (14 gives 0x4000). */
export function masqueradeMark(bit: number): string {
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new Error(`--masquerade-bit=${bit}: must be an integer from 0 to 31`);
  return `0x${(2 ** bit).toString(16)}`;
}

export interface NetfilterOptions {
  log: Logger;
  /** Traffic to a service from outside this range is masqueraded; undefined masquerades only hairpin traffic. */
  clusterCidr: string | undefined;
  /** The mark bit for masquerading. */
  masqueradeBit: number;
}
