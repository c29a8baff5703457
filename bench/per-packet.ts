// Per-packet cost of the ebpf datapath, through BPF_PROG_TEST_RUN.
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
import { native } from '../src/native/index.js';
import { type LoadedDatapath, loadDatapath, removePins } from '../src/backends/ebpf/datapath.js';
import { addition, ServiceMap, type ServiceChange } from '../src/backends/ebpf/service-map.js';
import { intToIpv4 } from '../src/net/ip.js';
import { createLogger } from '../src/log.js';
import { buildPacket } from '../test/lib/packets.js';
import { type Spread, spread } from './stats.js';

export interface PerPacketResult {
  services: number;
  newFlowNs: Spread;
  establishedNs: Spread;
  /** A packet to no service: the floor every path pays. */
  missNs: Spread;
}

const VIP_BASE = 0x0a600000; // 10.96.0.0
// Two backends each, so 100,000 services (300,000 entries) fit the map.
const BACKENDS_PER_SERVICE = 2;

function serviceChanges(count: number): ServiceChange[] {
  const changes: ServiceChange[] = [];
  for (let i = 0; i < count; i++) {
    const wanted = Array.from({ length: BACKENDS_PER_SERVICE }, (_, b) => ({ ip: intToIpv4(0x0af40000 + ((i * BACKENDS_PER_SERVICE + b) % 0xfffe) + 1), port: 8080 }));
    changes.push(addition({ ip: intToIpv4(VIP_BASE + 1 + i), port: 80, protocol: 'TCP' }, wanted));
  }
  return changes;
}

/** Samples per round: every N gets a round in turn, so background load hits all N alike. */
const ROUND = 500;

export function measurePerPacket(serviceCounts: number[], samples: number, progress: (msg: string) => void): PerPacketResult[] {
  const lib = native();
  // A fresh pin path each: nothing to migrate, so only failures would speak.
  const log = createLogger('warn');
  const setups = serviceCounts.map((services, i) => ({ services, pinPath: `/sys/fs/bpf/kube-lb-bench-${process.pid}-${i}` }));
  const loaded: { services: number; pinPath: string; dp: LoadedDatapath; flows: Buffer[]; newFlow: number[]; established: number[]; miss: number[] }[] = [];
  try {
    for (const { services, pinPath } of setups) {
      progress(`per-packet: installing ${services.toLocaleString('en-US')} services`);
      const dp = loadDatapath(lib, pinPath, log);
      loaded.push({ services, pinPath, dp, flows: [], newFlow: [], established: [], miss: [] });
      const changes = serviceChanges(services);
      const svcMap = new ServiceMap(lib, dp.maps.svc, dp.maps.maglev);
      for (let i = 0; i < changes.length; i += 10_000) svcMap.apply(changes.slice(i, i + 10_000));
      const target = changes[Math.floor(services / 2)]!.frontend;
      loaded.at(-1)!.flows = Array.from({ length: samples }, (_, i) =>
        buildPacket({ saddr: intToIpv4(0x0afa0000 + Math.floor(i / 50_000)), sport: 1024 + (i % 50_000), daddr: target.ip, dport: 80, protocol: 'TCP' }),
      );
    }
    const miss = buildPacket({ saddr: '10.250.0.1', sport: 1024, daddr: '10.95.0.1', dport: 80, protocol: 'TCP' });
    progress(`per-packet: ${samples.toLocaleString('en-US')} samples per path and N, in rounds of ${ROUND}`);
    for (let from = 0; from < samples; from += ROUND) {
      for (const l of loaded) {
        const time = (frame: Buffer): number => lib.progTestRun(l.dp.programs.fromPod, Buffer.from(frame), 1).durationNs;
        const round = l.flows.slice(from, from + ROUND);
        for (const f of round) l.newFlow.push(time(f));
        for (const f of round) l.established.push(time(f));
        for (let i = 0; i < round.length; i++) l.miss.push(time(miss));
      }
    }
    return loaded.map((l) => ({ services: l.services, newFlowNs: spread(l.newFlow), establishedNs: spread(l.established), missNs: spread(l.miss) }));
  } finally {
    for (const l of loaded) {
      l.dp.object.close();
      removePins(l.pinPath);
    }
  }
}
