// The TC programs under BPF_PROG_TEST_RUN: crafted frames in, exact frames out.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { native } from '../../src/native/index.js';
import { ADOPT_MAP, type LoadedDatapath, loadDatapath, removePins } from '../../src/backends/ebpf/datapath.js';
import { addition, ServiceMap } from '../../src/backends/ebpf/service-map.js';
import { BackendStatsMap } from '../../src/backends/ebpf/backend-stats.js';
import { type BackendStats, decodeCtValue, encodeCtValue, encodeFlowKey, LB_CT_F_CLOSING, LB_CT_F_STACK, LB_HAIRPIN_ADDR } from '../../src/backends/ebpf/encoding.js';
import { monotonicSeconds, setAdopting } from '../../src/backends/ebpf/takeover.js';
import { type DropCounts, readDrops } from '../../src/backends/ebpf/drops.js';
import { buildPacket, inetChecksum, parsePacket, type PacketSpec, TCP } from '../lib/packets.js';
import { requireRoot } from '../lib/preconditions.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;

const lib = native();
const pinPath = `/sys/fs/bpf/kube-lb-test-bpf-${process.pid}`;
let dp: LoadedDatapath;

const client = { ip: '10.244.0.5', port: 40000 };
const backend = { ip: '10.244.0.9', port: 8080 };
const tcpService = { ip: '10.96.0.10', port: 80, protocol: 'TCP' as const };
const udpService = { ip: '10.96.0.10', port: 53, protocol: 'UDP' as const };
const emptyService = { ip: '10.96.0.11', port: 80, protocol: 'TCP' as const };
const emptyUdpService = { ip: '10.96.0.11', port: 53, protocol: 'UDP' as const };
/** Without endpoints by a traffic policy: its new flows are dropped, not refused. */
const droppingService = { ip: '10.96.0.13', port: 80, protocol: 'TCP' as const };
/** Another frontend with tcpService's backend. */
const twinService = { ip: '10.96.0.12', port: 80, protocol: 'TCP' as const };

function run(program: 'fromPod' | 'toPod', frame: Buffer): { retval: number; out: Buffer } {
  const { retval, data } = lib.progTestRun(dp.programs[program], frame, 1);
  return { retval, out: data };
}

const drops = (): DropCounts => readDrops(lib, dp.maps.drops);

const ipv4At = (b: Buffer, at: number): string => [...b.subarray(at, at + 4)].join('.');

function toService(spec: Partial<PacketSpec> = {}, svc: { ip: string; port: number; protocol: 'TCP' | 'UDP' } = tcpService): Buffer {
  return buildPacket({ saddr: client.ip, sport: client.port, daddr: svc.ip, dport: svc.port, protocol: svc.protocol, ...spec });
}

describe('BPF datapath (BPF_PROG_TEST_RUN)', () => {
  before(() => {
    requireRoot();
    dp = loadDatapath(lib, pinPath, pino({ level: 'silent' }));
    new ServiceMap(lib, dp.maps.svc, dp.maps.maglev).apply([
      addition(tcpService, [backend]),
      addition(udpService, [{ ip: backend.ip, port: 5353 }]),
      addition(emptyService, []),
      addition(emptyUdpService, []),
      addition(droppingService, [], { noEndpoints: 'drop' }),
      addition(twinService, [backend]),
    ]);
  });
  after(() => {
    dp?.object.close();
    removePins(pinPath);
  });

  it('DNATs a new TCP flow to the backend with valid checksums and records it', () => {
    const { retval, out } = run('fromPod', toService());
    assert.equal(retval, TC_ACT_OK);
    const p = parsePacket(out);
    assert.deepEqual([p.saddr, p.sport, p.daddr, p.dport], [client.ip, client.port, backend.ip, backend.port]);
    assert.ok(p.ipChecksumValid, 'IP checksum');
    assert.ok(p.l4ChecksumValid, 'TCP checksum');
    assert.equal(p.payload.toString(), 'kube-lb');
    const flow = encodeFlowKey({ family: 'IPv4', saddr: client.ip, sport: client.port, daddr: tcpService.ip, dport: tcpService.port, protocol: 'TCP' });
    assert.ok(lib.mapLookup(dp.maps.ct, flow), 'conntrack entry');
    const reply = encodeFlowKey({ family: 'IPv4', saddr: backend.ip, sport: backend.port, daddr: client.ip, dport: client.port, protocol: 'TCP' });
    assert.ok(lib.mapLookup(dp.maps.rnat, reply), 'reverse NAT entry');
  });

  it('reverse-NATs the reply so the client sees the service as its peer', () => {
    const reply = buildPacket({ saddr: backend.ip, sport: backend.port, daddr: client.ip, dport: client.port, protocol: 'TCP' });
    const { retval, out } = run('toPod', reply);
    assert.equal(retval, TC_ACT_OK);
    const p = parsePacket(out);
    assert.deepEqual([p.saddr, p.sport, p.daddr, p.dport], [tcpService.ip, tcpService.port, client.ip, client.port]);
    assert.ok(p.ipChecksumValid && p.l4ChecksumValid);
  });

  it('translates UDP, and keeps a zero UDP checksum at zero', () => {
    for (const udpNoChecksum of [false, true]) {
      const { out } = run('fromPod', toService({ sport: 41000 + Number(udpNoChecksum), udpNoChecksum }, udpService));
      const p = parsePacket(out);
      assert.deepEqual([p.daddr, p.dport], [backend.ip, 5353]);
      assert.ok(p.ipChecksumValid && p.l4ChecksumValid);
      assert.equal(p.l4Checksum === 0, udpNoChecksum);
    }
  });

  it('translates packets with IP options at the right offsets', () => {
    const options = Buffer.from([0x01, 0x01, 0x01, 0x00]); // NOP NOP NOP EOL
    const { out } = run('fromPod', toService({ sport: 42000, ipOptions: options }));
    const p = parsePacket(out);
    assert.deepEqual([p.daddr, p.dport, p.sport], [backend.ip, backend.port, 42000]);
    assert.ok(p.ipChecksumValid && p.l4ChecksumValid);
    assert.deepEqual(out.subarray(34, 38), options);
  });

  it('keeps an established flow on its backend', () => {
    const first = parsePacket(run('fromPod', toService({ sport: 43000 })).out);
    for (let i = 0; i < 5; i++) {
      const again = parsePacket(run('fromPod', toService({ sport: 43000 })).out);
      assert.deepEqual([again.daddr, again.dport], [first.daddr, first.dport]);
    }
  });

  it('bounces hairpin traffic back into the pod with a hairpin source', () => {
    const self = { srcMac: '02:00:00:00:00:aa', dstMac: '02:00:00:00:00:bb' };
    const { retval, out } = run('fromPod', toService({ ...self, saddr: backend.ip, sport: 44000 }));
    assert.equal(retval, TC_ACT_REDIRECT);
    const p = parsePacket(out);
    assert.deepEqual([p.saddr, p.sport, p.daddr, p.dport], [LB_HAIRPIN_ADDR, 44000, backend.ip, backend.port]);
    assert.deepEqual([p.srcMac, p.dstMac], [self.dstMac, self.srcMac]);
    assert.ok(p.ipChecksumValid && p.l4ChecksumValid);

    const answer = buildPacket({ ...self, saddr: backend.ip, sport: backend.port, daddr: LB_HAIRPIN_ADDR, dport: 44000, protocol: 'TCP' });
    const back = run('fromPod', answer);
    assert.equal(back.retval, TC_ACT_REDIRECT);
    const q = parsePacket(back.out);
    assert.deepEqual([q.saddr, q.sport, q.daddr, q.dport], [tcpService.ip, tcpService.port, backend.ip, 44000]);
    assert.ok(q.ipChecksumValid && q.l4ChecksumValid);
  });

  it('a TCP close ends the flow: the next SYN on its tuple is a new connection', () => {
    const flow = encodeFlowKey({ family: 'IPv4', saddr: client.ip, sport: 47000, daddr: tcpService.ip, dport: tcpService.port, protocol: 'TCP' });
    run('fromPod', toService({ sport: 47000 }));
    run('fromPod', toService({ sport: 47000, tcpFlags: TCP.ACK }));
    assert.equal(decodeCtValue(lib.mapLookup(dp.maps.ct, flow)!).flags & LB_CT_F_CLOSING, 0, 'open');
    // The server closes: its FIN, on the way to the client, marks the flow.
    run('toPod', buildPacket({ saddr: backend.ip, sport: backend.port, daddr: client.ip, dport: 47000, protocol: 'TCP', tcpFlags: TCP.FIN | TCP.ACK }));
    assert.equal(decodeCtValue(lib.mapLookup(dp.maps.ct, flow)!).flags & LB_CT_F_CLOSING, LB_CT_F_CLOSING, 'closing after FIN');
    // The client's last ACK still translates; a new SYN starts afresh.
    assert.equal(parsePacket(run('fromPod', toService({ sport: 47000, tcpFlags: TCP.ACK })).out).daddr, backend.ip);
    assert.equal(parsePacket(run('fromPod', toService({ sport: 47000 })).out).daddr, backend.ip);
    assert.equal(decodeCtValue(lib.mapLookup(dp.maps.ct, flow)!).flags & LB_CT_F_CLOSING, 0, 'a new connection');
  });

  it('a UDP flow idle past its timeout picks a backend afresh', () => {
    const flow = encodeFlowKey({ family: 'IPv4', saddr: client.ip, sport: 47100, daddr: udpService.ip, dport: udpService.port, protocol: 'UDP' });
    run('fromPod', toService({ sport: 47100 }, udpService));
    // The datapath's clock is CLOCK_MONOTONIC in seconds, as process.hrtime
    // reads it; ages are u32 differences, so they hold across a wrap and
    // shortly after boot alike.
    const nowS = Number(process.hrtime.bigint() / 1_000_000_000n);
    // Age the entry, and point it at a backend the service does not have.
    lib.mapUpdate(dp.maps.ct, flow, encodeCtValue({ backend: { ip: '10.244.9.9', port: 9 }, flags: 0, lastSeen: (nowS - 31) >>> 0, natSport: 0, natSaddr: null }, 'IPv4'));
    const p = parsePacket(run('fromPod', toService({ sport: 47100 }, udpService)).out);
    assert.deepEqual([p.daddr, p.dport], [backend.ip, 5353], 'the stale entry is not used');
    assert.ok(decodeCtValue(lib.mapLookup(dp.maps.ct, flow)!).lastSeen >= nowS, 'the entry is fresh again');
  });

  it('by default, a TCP packet of no known flow that is not a SYN gets a backend, as after a restart that lost the flows', () => {
    const p = parsePacket(run('fromPod', toService({ sport: 47200, tcpFlags: TCP.ACK })).out);
    assert.deepEqual([p.daddr, p.dport], [backend.ip, backend.port]);
  });

  it("while taking over (kube_lb_adopt), a TCP packet of no known flow that is not a SYN is left to the stack, untouched and unrecorded; SYNs and UDP get a backend", () => {
    setAdopting(lib, dp.object.mapFd(ADOPT_MAP), true);
    try {
      const frame = toService({ sport: 47300, tcpFlags: TCP.ACK });
      const { retval, out } = run('fromPod', frame);
      assert.equal(retval, TC_ACT_OK);
      assert.deepEqual(out, frame, 'untouched');
      assert.equal(lib.mapLookup(dp.maps.ct, encodeFlowKey({ family: 'IPv4', saddr: client.ip, sport: 47300, daddr: tcpService.ip, dport: tcpService.port, protocol: 'TCP' })), null, 'unrecorded');
      // Its reply, which the stack translated back, passes too.
      const reply = buildPacket({ saddr: backend.ip, sport: backend.port, daddr: client.ip, dport: 47300, protocol: 'TCP', tcpFlags: TCP.ACK });
      assert.deepEqual(run('fromPod', reply).out, reply);
      assert.equal(parsePacket(run('fromPod', toService({ sport: 47301 })).out).daddr, backend.ip, 'a SYN');
      assert.equal(parsePacket(run('fromPod', toService({ sport: 47302 }, udpService)).out).daddr, backend.ip, 'UDP');
    } finally {
      setAdopting(lib, dp.object.mapFd(ADOPT_MAP), false);
    }
  });

  it("leaves a flow recorded as the stack's (LB_CT_F_STACK) to it until it closes; the next SYN on its tuple gets a backend", () => {
    const flow = encodeFlowKey({ family: 'IPv4', saddr: client.ip, sport: 47400, daddr: tcpService.ip, dport: tcpService.port, protocol: 'TCP' });
    lib.mapUpdate(dp.maps.ct, flow, encodeCtValue({ backend: { ip: '10.244.9.9', port: 9 }, flags: LB_CT_F_STACK, lastSeen: monotonicSeconds() - 5, natSport: 0, natSaddr: null }, 'IPv4'));
    for (const tcpFlags of [TCP.ACK, TCP.SYN, TCP.FIN | TCP.ACK]) {
      const frame = toService({ sport: 47400, tcpFlags });
      assert.deepEqual(run('fromPod', frame), { retval: TC_ACT_OK, out: frame }, `flags ${tcpFlags}: untouched`);
    }
    const ct = decodeCtValue(lib.mapLookup(dp.maps.ct, flow)!);
    assert.equal(ct.flags, LB_CT_F_STACK | LB_CT_F_CLOSING, 'closing after FIN');
    assert.ok(ct.lastSeen >= monotonicSeconds() - 1, 'refreshed');
    assert.equal(parsePacket(run('fromPod', toService({ sport: 47400 })).out).daddr, backend.ip, 'the next SYN is a new connection of kube-lb\'s');
    assert.equal(decodeCtValue(lib.mapLookup(dp.maps.ct, flow)!).flags & LB_CT_F_STACK, 0);
  });

  it('a direct flow on a tuple that once went through a service gets its replies untouched', () => {
    for (const [protocol, svc, port] of [['TCP', tcpService, backend.port], ['UDP', udpService, 5353]] as const) {
      run('fromPod', toService({ sport: 48000 }, svc));
      const reply = encodeFlowKey({ family: 'IPv4', saddr: backend.ip, sport: port, daddr: client.ip, dport: 48000, protocol });
      assert.ok(lib.mapLookup(dp.maps.rnat, reply), `${protocol}: reverse entry of the service flow`);
      // The same client port now talks to the endpoint directly.
      const direct = buildPacket({ saddr: client.ip, sport: 48000, daddr: backend.ip, dport: port, protocol });
      assert.deepEqual(run('fromPod', direct).out, direct, `${protocol}: the direct packet passes untouched`);
      const answer = buildPacket({ saddr: backend.ip, sport: port, daddr: client.ip, dport: 48000, protocol, tcpFlags: TCP.SYN | TCP.ACK });
      assert.deepEqual(run('toPod', answer).out, answer, `${protocol}: its reply is not rewritten`);
    }
  });

  it('gives a flow its own client port at the backend when another live flow holds the tuple there', () => {
    const sport = 49000;
    const fromBackend = (dport: number, tcpFlags: number = TCP.ACK): Buffer =>
      buildPacket({ saddr: backend.ip, sport: backend.port, daddr: client.ip, dport, protocol: 'TCP', tcpFlags });
    const first = parsePacket(run('fromPod', toService({ sport })).out);
    assert.equal(first.sport, sport, 'the first flow keeps its port');
    const second = run('fromPod', toService({ sport }, twinService));
    assert.equal(second.retval, TC_ACT_OK);
    const p = parsePacket(second.out);
    assert.deepEqual([p.daddr, p.dport], [backend.ip, backend.port]);
    assert.notEqual(p.sport, sport, 'the second flow is given another port');
    assert.ok(p.ipChecksumValid && p.l4ChecksumValid);
    // Its later packets keep that port; replies reach the client on its own port, from the right frontend.
    assert.equal(parsePacket(run('fromPod', toService({ sport, tcpFlags: TCP.ACK }, twinService)).out).sport, p.sport);
    const toSecond = parsePacket(run('toPod', fromBackend(p.sport)).out);
    assert.deepEqual([toSecond.saddr, toSecond.sport, toSecond.daddr, toSecond.dport], [twinService.ip, twinService.port, client.ip, sport]);
    assert.ok(toSecond.ipChecksumValid && toSecond.l4ChecksumValid);
    const toFirst = parsePacket(run('toPod', fromBackend(sport)).out);
    assert.deepEqual([toFirst.saddr, toFirst.sport], [tcpService.ip, tcpService.port], 'the first flow still gets its replies');
    // A FIN on the rewritten flow closes that flow, found through its own port.
    run('toPod', fromBackend(p.sport, TCP.FIN | TCP.ACK));
    const twinFlow = encodeFlowKey({ family: 'IPv4', saddr: client.ip, sport, daddr: twinService.ip, dport: twinService.port, protocol: 'TCP' });
    assert.equal(decodeCtValue(lib.mapLookup(dp.maps.ct, twinFlow)!).flags & LB_CT_F_CLOSING, LB_CT_F_CLOSING);

    // Once the first flow is closed, its tuple is free again.
    run('toPod', fromBackend(sport, TCP.FIN | TCP.ACK));
    const third = parsePacket(run('fromPod', toService({ sport }, twinService)).out);
    assert.equal(third.sport, sport, 'a closed flow does not hold its tuple');
  });

  it('refuses new flows to a service without endpoints with an ICMP port unreachable from the service, back into the pod', () => {
    const before = drops();
    for (const svc of [emptyService, emptyUdpService]) {
      const mac = { srcMac: '02:00:00:00:00:aa', dstMac: '02:00:00:00:00:bb' };
      const frame = toService({ ...mac, sport: 45000 }, svc);
      const { retval, out } = run('fromPod', frame);
      assert.equal(retval, TC_ACT_REDIRECT, `${svc.protocol}: sent back to the pod`);
      const at = 14;
      assert.deepEqual([out.subarray(0, 6), out.subarray(6, 12)], [frame.subarray(6, 12), frame.subarray(0, 6)], 'MAC addresses swapped');
      assert.equal(out.length, at + 20 + 8 + 28, 'IP header, ICMP header, and the quote of the offending header and 8 bytes');
      assert.equal(out[at + 9], 1, 'ICMP');
      assert.deepEqual([ipv4At(out, at + 12), ipv4At(out, at + 16)], [svc.ip, client.ip], 'from the service to the client');
      assert.equal(inetChecksum(out.subarray(at, at + 20)), 0, 'IP checksum');
      assert.deepEqual([out[at + 20], out[at + 21]], [3, 3], 'destination unreachable, port unreachable');
      assert.equal(inetChecksum(out.subarray(at + 20)), 0, 'ICMP checksum');
      assert.deepEqual(out.subarray(at + 28), frame.subarray(at, at + 28), 'quotes the original IP header and ports');
    }
    assert.equal(drops().no_endpoints - before.no_endpoints, 2, 'counted under no_endpoints');
  });

  it('drops, and counts, new flows to a service that a traffic policy leaves without endpoints', () => {
    const before = drops();
    assert.equal(run('fromPod', toService({ sport: 45000 }, droppingService)).retval, TC_ACT_SHOT);
    assert.equal(drops().no_endpoints - before.no_endpoints, 1);
  });

  it('leaves other traffic untouched, in both directions', () => {
    const cases: [string, Buffer][] = [
      ['another address', toService({ daddr: '10.96.0.99' })],
      ['another port', toService({ dport: 81 })],
      ['another protocol on the service port', toService({ protocol: 'UDP' })],
      ['a reply with no flow', buildPacket({ saddr: backend.ip, sport: backend.port, daddr: client.ip, dport: 1, protocol: 'TCP' })],
    ];
    for (const [what, frame] of cases) {
      for (const program of ['fromPod', 'toPod'] as const) {
        const { retval, out } = run(program, frame);
        assert.equal(retval, TC_ACT_OK, `${what} via ${program}`);
        assert.deepEqual(out, frame, `${what} via ${program} is unchanged`);
      }
    }
  });

  it('passes fragments and malformed frames untouched', () => {
    const good = toService({ sport: 46000 });
    const badIhl = Buffer.from(good);
    badIhl[14] = 0x44; // IHL 4
    const badVersion = Buffer.from(good);
    badVersion[14] = 0x65;
    const longTotLen = Buffer.from(good);
    longTotLen.writeUInt16BE(1500, 16);
    // The kernel's test_run refuses IPv4 frames shorter than an IP header,
    // so truncation is tested where the header claims more than is there.
    const optionsPastEnd = Buffer.from(good.subarray(0, 14 + 20 + 8));
    optionsPastEnd[14] = 0x4f; // IHL 15: 40 bytes of options that are not there
    const arp = Buffer.from(good);
    arp.writeUInt16BE(0x0806, 12);
    const cases: [string, Buffer][] = [
      ['first fragment', toService({ sport: 46001, fragField: 0x2000 })],
      ['later fragment', toService({ sport: 46002, fragField: 0x0010 })],
      ['IHL below 5', badIhl],
      ['IP version 6 in an IPv4 frame', badVersion],
      ['total length past the frame', longTotLen],
      ['truncated TCP header', good.subarray(0, 14 + 20 + 10)],
      ['IP options past the frame', optionsPastEnd],
      ['ARP', arp],
    ];
    for (const [what, frame] of cases) {
      const { retval, out } = run('fromPod', frame);
      assert.equal(retval, TC_ACT_OK, what);
      assert.deepEqual(out, frame, `${what} is unchanged`);
    }
  });

  it("counts each backend's connections, and the packets and IP bytes translated either way, from 0 when the backend comes back", () => {
    const counted = { ip: '10.96.0.14', port: 80, protocol: 'TCP' as const };
    const svc = new ServiceMap(lib, dp.maps.svc, dp.maps.maglev, dp.maps.backendStats);
    svc.apply([addition(counted, [backend])]);
    const stats = (): BackendStats | undefined => new BackendStatsMap(lib, dp.maps.backendStats).readAll().find((c) => c.frontend.ip === counted.ip)?.stats;
    assert.deepEqual(stats(), { connections: 0, packets: 0, bytes: 0 }, 'a new backend starts at 0');
    const frames = [
      run('fromPod', toService({ sport: 48000 }, counted)).out,
      run('toPod', buildPacket({ saddr: backend.ip, sport: backend.port, daddr: client.ip, dport: 48000, protocol: 'TCP', tcpFlags: TCP.SYN | TCP.ACK })).out,
      run('fromPod', toService({ sport: 48000, tcpFlags: TCP.ACK, payload: Buffer.alloc(100) }, counted)).out,
    ];
    const ipBytes = frames.reduce((n, f) => n + f.length - 14, 0);
    assert.deepEqual(stats(), { connections: 1, packets: 3, bytes: ipBytes });

    svc.apply([{ ...addition(counted, []), currentMeta: addition(counted, []).meta, current: [backend] }]);
    assert.equal(stats(), undefined, "a removed backend's counters go with it");
    svc.apply([{ ...addition(counted, [backend]), currentMeta: addition(counted, []).meta, current: [] }]);
    assert.deepEqual(stats(), { connections: 0, packets: 0, bytes: 0 }, 'a backend that comes back starts at 0');
  });
});
