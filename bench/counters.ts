// Parsers of the kernel counters the packet-rate measurement reads.

/** USER_HZ: /proc/stat counts CPU time in ticks of 10 ms. */
const TICK_NS = 10_000_000;

/**
 * CPU time so far from /proc/stat: all CPUs' (its first line) or one
 * CPU's. Busy is user, nice, system, irq, softirq and steal; softirq, where
 * the kernel forwards packets, is also given alone.
 */
export function cpuTimesNs(procStat: string, cpu?: number): { busyNs: number; softirqNs: number } {
  const name = cpu === undefined ? 'cpu' : `cpu${cpu}`;
  const fields = procStat.split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[0] === name);
  if (!fields || fields.length < 9) throw new Error(`/proc/stat: no "${name}" line with 8 or more times`);
  const [user, nice, system, , , irq, softirq, steal] = fields.slice(1).map(Number);
  return { busyNs: (user! + nice! + system! + irq! + softirq! + steal!) * TICK_NS, softirqNs: softirq! * TICK_NS };
}

/** A link's received or sent packets, from `ip -s -j link show DEV`. */
export function linkPackets(ipJson: string, direction: 'rx' | 'tx'): number {
  const links = JSON.parse(ipJson) as { ifname?: string; stats64?: Record<'rx' | 'tx', { packets: number }> }[];
  const packets = links[0]?.stats64?.[direction]?.packets;
  if (typeof packets !== 'number') throw new Error(`ip -s -j link show: no ${direction} packet count for ${links[0]?.ifname ?? 'the link'} (was -s given?)`);
  return packets;
}

