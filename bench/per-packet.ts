// Per-packet cost of the ebpf datapath, through BPF_PROG_TEST_RUN, for
// each address family.
//
// test_run repeats a packet against the same skb, so a program that
// rewrites the packet would see its own output from the second repeat on
// (a DNATed packet no longer matches any service, which is the cheap
// miss path). Every sample therefore runs a fresh copy of the packet once
// (repeat = 1) and reads the kernel's own timing of that run; the
// statistics come from many such samples. New-flow samples use a new
// source address and port each, so each one takes the miss in conntrack,
// the service lookup, the backend pick and the conntrack insert; the
// established-flow samples replay the same flows.
//
// Both families measure the same flows: every address is numbered by 32
// bits, which are the IPv4 address itself or the last 32 bits of its IPv6
// twin, so the packets differ only in their IP headers.
import { native } from '../src/native/index.js';
import { type LoadedDatapath, loadDatapath, removePins } from '../src/backends/ebpf/datapath.js';
import { addition, ServiceMap, type ServiceChange } from '../src/backends/ebpf/service-map.js';
import type { IPFamily } from '../src/model/contract.js';
import { bytesToIpv6, intToIpv4 } from '../src/net/ip.js';
import { createLogger } from '../src/log.js';
import { buildPacket, parsePacket } from '../test/lib/packets.js';
import { type Spread, spread } from './stats.js';

export interface PerPacketResult {
  family: IPFamily;
  services: number;
  newFlowNs: Spread;
  establishedNs: Spread;
  /** A packet to no service: the floor every path pays. */
  missNs: Spread;
}

/** The IPv6 twins' prefix, fd00:b::/96: a ULA range no sandbox address uses. */
const PREFIX6 = Buffer.from([0xfd, 0x00, 0x00, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0]);

/** The address numbered `n` (an IPv4 address's 32 bits) in the family: the IPv4 address, or its twin in fd00:b::/96. */
export function benchAddress(family: IPFamily, n: number): string {
  if (family === 'IPv4') return intToIpv4(n);
  const bytes = Buffer.alloc(16);
  PREFIX6.copy(bytes);
  bytes.writeUInt32BE(n >>> 0, 12);
  return bytesToIpv6(bytes);
}

const VIP_BASE = 0x0a600000; // 10.96.0.0
const BACKEND_BASE = 0x0af40000; // 10.244.0.0
const CLIENT_BASE = 0x0afa0000; // 10.250.0.0
const NO_SERVICE = 0x0a5f0001; // 10.95.0.1
/** Source ports per client address before the next address. */
const PORTS_PER_CLIENT = 50_000;
// Two backends each, so 100,000 services (300,000 entries) fit the map.
const BACKENDS_PER_SERVICE = 2;

export function serviceChanges(family: IPFamily, count: number): ServiceChange[] {
  const changes: ServiceChange[] = [];
  for (let i = 0; i < count; i++) {
    const wanted = Array.from({ length: BACKENDS_PER_SERVICE }, (_, b) => ({ ip: benchAddress(family, BACKEND_BASE + ((i * BACKENDS_PER_SERVICE + b) % 0xfffe) + 1), port: 8080 }));
    changes.push(addition({ ip: benchAddress(family, VIP_BASE + 1 + i), port: 80, protocol: 'TCP' }, wanted, {}, 'internal', family));
  }
  return changes;
}

/** One TCP SYN per sample to `target` port 80, each from its own client address and port. */
export function flowPackets(family: IPFamily, target: string, samples: number): Buffer[] {
  return Array.from({ length: samples }, (_, i) =>
    buildPacket({ saddr: benchAddress(family, CLIENT_BASE + Math.floor(i / PORTS_PER_CLIENT)), sport: 1024 + (i % PORTS_PER_CLIENT), daddr: target, dport: 80, protocol: 'TCP' }),
  );
}

/** A TCP SYN to an address no service has. */
export function missPacket(family: IPFamily): Buffer {
  return buildPacket({ saddr: benchAddress(family, CLIENT_BASE + 1), sport: 1024, daddr: benchAddress(family, NO_SERVICE), dport: 80, protocol: 'TCP' });
}

/** Samples per round: every N and family gets a round in turn, so background load hits them all alike. */
const ROUND = 500;

/** One family and N: its datapath, its packets and its samples so far. */
interface Loaded {
  family: IPFamily;
  services: number;
  pinPath: string;
  dp: LoadedDatapath;
  flows: Buffer[];
  /** The target service's backends: where its flows must go. */
  backends: string[];
  miss: Buffer;
  newFlow: number[];
  established: number[];
  missed: number[];
}

export function measurePerPacket(families: readonly IPFamily[], serviceCounts: number[], samples: number, progress: (msg: string) => void): PerPacketResult[] {
  const lib = native();
  // A fresh pin path each: nothing to migrate, so only failures would speak.
  const log = createLogger('warn');
  // Each N's families side by side in every round: their ratio is the figure a loaded machine leaves meaningful.
  const setups = serviceCounts.flatMap((services) => families.map((family) => ({ family, services })));
  const loaded: Loaded[] = [];
  try {
    for (const [i, { family, services }] of setups.entries()) {
      progress(`per-packet: installing ${services.toLocaleString('en-US')} ${family} services`);
      const pinPath = `/sys/fs/bpf/kube-lb-bench-${process.pid}-${i}`;
      const dp = loadDatapath(lib, pinPath, log);
      const l: Loaded = { family, services, pinPath, dp, flows: [], backends: [], miss: missPacket(family), newFlow: [], established: [], missed: [] };
      loaded.push(l);
      const changes = serviceChanges(family, services);
      const svcMap = new ServiceMap(lib, dp.maps.svc, dp.maps.maglev);
      for (let c = 0; c < changes.length; c += 10_000) svcMap.apply(changes.slice(c, c + 10_000));
      const target = changes[Math.floor(services / 2)]!;
      l.flows = flowPackets(family, target.frontend.ip, samples);
      l.backends = target.wanted!.map((d) => d.ip);
    }
    progress(`per-packet: ${samples.toLocaleString('en-US')} samples per path, family and N, in rounds of ${ROUND}`);
    for (let from = 0; from < samples; from += ROUND) {
      for (const l of loaded) {
        const time = (frame: Buffer): number => lib.progTestRun(l.dp.programs.fromPod, Buffer.from(frame), 1).durationNs;
        const round = l.flows.slice(from, from + ROUND);
        for (const f of round) l.newFlow.push(time(f));
        for (const f of round) l.established.push(time(f));
        for (let i = 0; i < round.length; i++) l.missed.push(time(l.miss));
      }
    }
    // Figures of packets the program let through untranslated would measure nothing.
    for (const l of loaded) {
      const { daddr } = parsePacket(lib.progTestRun(l.dp.programs.fromPod, Buffer.from(l.flows[0]!), 1).data);
      if (!l.backends.includes(daddr)) throw new Error(`per-packet: at ${l.services} ${l.family} services, a measured flow left lb_from_pod to ${daddr}, not to a backend of its service (${l.backends.join(', ')})`);
    }
    return loaded.map((l) => ({ family: l.family, services: l.services, newFlowNs: spread(l.newFlow), establishedNs: spread(l.established), missNs: spread(l.missed) }));
  } finally {
    for (const l of loaded) {
      l.dp.object.close();
      removePins(l.pinPath);
    }
  }
}
