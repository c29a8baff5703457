// The TC programs on IPv6 under BPF_PROG_TEST_RUN, beside the IPv4 ones of
// datapath.test.ts: the same maps, keyed by 16-byte addresses, hold both
// families.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { native } from '../../src/native/index.js';
import { type LoadedDatapath, loadDatapath, removePins } from '../../src/backends/ebpf/datapath.js';
import { addition, ServiceMap } from '../../src/backends/ebpf/service-map.js';
import { flushStaleFlows } from '../../src/backends/ebpf/conntrack.js';
import { decodeRnatValue, encodeFlowKey, LB_HAIRPIN_ADDR6 } from '../../src/backends/ebpf/encoding.js';
import { readDrops } from '../../src/backends/ebpf/drops.js';
import { bytesToIpv6 } from '../../src/net/ip.js';
import { buildPacket, inetChecksum, type Ipv6Ext, parsePacket, type PacketSpec, TCP } from '../lib/packets.js';
import { requireRoot } from '../lib/preconditions.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;

const lib = native();
const pinPath = `/sys/fs/bpf/kube-lb-test-bpf6-${process.pid}`;
let dp: LoadedDatapath;

const client = { ip: 'fd00:10:244::5', port: 40000 };
const backend = { ip: 'fd00:10:244::9', port: 8080 };
const tcpService = { ip: 'fd00:96::10', port: 80, protocol: 'TCP' as const };
const udpService = { ip: 'fd00:96::10', port: 53, protocol: 'UDP' as const };
const emptyService = { ip: 'fd00:96::11', port: 80, protocol: 'TCP' as const };
const emptyUdpService = { ip: 'fd00:96::11', port: 53, protocol: 'UDP' as const };
/** An IPv4 frontend whose address is the IPv4 word of tcpService's: the families' keys never meet. */
const ipv4Service = { ip: '0.0.0.16', port: 80, protocol: 'TCP' as const };

function run(program: 'fromPod' | 'toPod', frame: Buffer): { retval: number; out: Buffer } {
  const { retval, data } = lib.progTestRun(dp.programs[program], frame, 1);
  return { retval, out: data };
}

function toService(spec: Partial<PacketSpec> = {}, svc: { ip: string; port: number; protocol: 'TCP' | 'UDP' } = tcpService): Buffer {
  return buildPacket({ saddr: client.ip, sport: client.port, daddr: svc.ip, dport: svc.port, protocol: svc.protocol, ...spec });
}

const tuple = (out: Buffer): [string, number, string, number] => {
  const p = parsePacket(out);
  return [p.saddr, p.sport, p.daddr, p.dport];
};

describe('BPF datapath over IPv6 (BPF_PROG_TEST_RUN)', () => {
  before(() => {
    requireRoot();
    dp = loadDatapath(lib, pinPath, pino({ level: 'silent' }));
    new ServiceMap(lib, dp.maps.svc, dp.maps.maglev).apply([
      addition(tcpService, [backend], {}, 'internal', 'IPv6'),
      addition(udpService, [{ ip: backend.ip, port: 5353 }], {}, 'internal', 'IPv6'),
      addition(emptyService, [], {}, 'internal', 'IPv6'),
      addition(emptyUdpService, [], {}, 'internal', 'IPv6'),
      addition(ipv4Service, [{ ip: '10.244.0.9', port: 8080 }]),
    ]);
  });
  after(() => {
    dp?.object.close();
    removePins(pinPath);
  });

  it('DNATs a new TCP flow to its IPv6 backend with a valid checksum, and records it in both conntrack maps', () => {
    const { retval, out } = run('fromPod', toService());
    assert.equal(retval, TC_ACT_OK);
    assert.deepEqual(tuple(out), [client.ip, client.port, backend.ip, backend.port]);
    const p = parsePacket(out);
    assert.ok(p.l4ChecksumValid, 'TCP checksum over the IPv6 pseudo-header');
    assert.equal(p.payload.toString(), 'kube-lb');
    assert.equal(p.ttl, 64, 'the hop limit is the stack\'s to decrement');
    assert.ok(lib.mapLookup(dp.maps.ct, encodeFlowKey({ family: 'IPv6', saddr: client.ip, sport: client.port, daddr: tcpService.ip, dport: tcpService.port, protocol: 'TCP' })), 'conntrack entry');
    const rnat = lib.mapLookup(dp.maps.rnat, encodeFlowKey({ family: 'IPv6', saddr: backend.ip, sport: backend.port, daddr: client.ip, dport: client.port, protocol: 'TCP' }));
    assert.ok(rnat, 'reverse NAT entry');
    assert.deepEqual([decodeRnatValue(rnat).vip, decodeRnatValue(rnat).clientAddr], [tcpService.ip, client.ip]);
  });

  it('reverse-NATs the reply so the client sees the service as its peer', () => {
    const reply = buildPacket({ saddr: backend.ip, sport: backend.port, daddr: client.ip, dport: client.port, protocol: 'TCP', tcpFlags: TCP.SYN | TCP.ACK });
    const { retval, out } = run('toPod', reply);
    assert.equal(retval, TC_ACT_OK);
    assert.deepEqual(tuple(out), [tcpService.ip, tcpService.port, client.ip, client.port]);
    assert.ok(parsePacket(out).l4ChecksumValid);
  });

  it('translates UDP both ways with valid (mandatory) checksums', () => {
    const out = run('fromPod', toService({ sport: 41000 }, udpService)).out;
    assert.deepEqual(tuple(out), [client.ip, 41000, backend.ip, 5353]);
    assert.ok(parsePacket(out).l4ChecksumValid, 'UDP checksum');
    const reply = run('toPod', buildPacket({ saddr: backend.ip, sport: 5353, daddr: client.ip, dport: 41000, protocol: 'UDP' })).out;
    assert.deepEqual(tuple(reply), [udpService.ip, udpService.port, client.ip, 41000]);
    assert.ok(parsePacket(reply).l4ChecksumValid && parsePacket(reply).l4Checksum !== 0);
  });

  it('checksums stay valid whatever the addresses and payload (the sum must never fold to a wrong 0 or 0xffff)', () => {
    for (let i = 0; i < 64; i++) {
      const payload = Buffer.alloc(i, i * 37);
      const out = run('fromPod', toService({ sport: 45000 + i, payload }, i % 2 ? udpService : tcpService)).out;
      assert.ok(parsePacket(out).l4ChecksumValid, `flow ${i}`);
    }
  });

  it('skips hop-by-hop, destination options and a spent routing header, and translates at the right offsets', () => {
    const ipv6Ext: Ipv6Ext[] = [{ type: 0 }, { type: 60, extraUnits: 1 }, { type: 43, segmentsLeft: 0 }];
    const frame = toService({ sport: 42000, ipv6Ext });
    const { retval, out } = run('fromPod', frame);
    assert.equal(retval, TC_ACT_OK);
    assert.deepEqual(tuple(out), [client.ip, 42000, backend.ip, backend.port]);
    assert.ok(parsePacket(out).l4ChecksumValid);
    assert.deepEqual(out.subarray(54, 54 + 32), frame.subarray(54, 54 + 32), 'the extension headers are left as they were');
  });

  it('leaves alone fragments, a routing header with segments left, too many extension headers, and a truncated header', () => {
    const untouched: [string, Buffer][] = [
      ['a fragment', toService({ sport: 43000, ipv6Ext: [{ type: 44 }] })],
      ['a routing header with segments left', toService({ sport: 43001, ipv6Ext: [{ type: 43, segmentsLeft: 1 }] })],
      ['nine extension headers', toService({ sport: 43002, ipv6Ext: Array.from({ length: 9 }, (): Ipv6Ext => ({ type: 60 })) })],
      ['a truncated TCP header', toService({ sport: 43003 }).subarray(0, 14 + 40 + 10)],
    ];
    for (const [what, frame] of untouched) {
      const { retval, out } = run('fromPod', frame);
      assert.equal(retval, TC_ACT_OK, what);
      assert.deepEqual(out, frame, `${what}: untouched`);
    }
    const eight = toService({ sport: 43004, ipv6Ext: Array.from({ length: 7 }, (): Ipv6Ext => ({ type: 60 })) });
    assert.deepEqual(tuple(run('fromPod', eight).out), [client.ip, 43004, backend.ip, backend.port], 'seven extension headers are skipped');
  });

  it('bounces hairpin traffic back into the pod from the IPv6 hairpin address, and gives it its service back', () => {
    const self = { srcMac: '02:00:00:00:00:aa', dstMac: '02:00:00:00:00:bb' };
    const { retval, out } = run('fromPod', toService({ ...self, saddr: backend.ip, sport: 44000 }));
    assert.equal(retval, TC_ACT_REDIRECT);
    assert.deepEqual(tuple(out), [LB_HAIRPIN_ADDR6, 44000, backend.ip, backend.port]);
    assert.ok(parsePacket(out).l4ChecksumValid);
    const answer = buildPacket({ ...self, saddr: backend.ip, sport: backend.port, daddr: LB_HAIRPIN_ADDR6, dport: 44000, protocol: 'TCP', tcpFlags: TCP.SYN | TCP.ACK });
    const back = run('fromPod', answer);
    assert.equal(back.retval, TC_ACT_REDIRECT);
    assert.deepEqual(tuple(back.out), [tcpService.ip, tcpService.port, backend.ip, 44000]);
    assert.ok(parsePacket(back.out).l4ChecksumValid);
  });

  it('refuses a new flow to an IPv6 frontend without endpoints with an ICMPv6 port unreachable from it, back into the pod', () => {
    const before = readDrops(lib, dp.maps.drops).no_endpoints;
    for (const svc of [emptyService, emptyUdpService]) {
      const mac = { srcMac: '02:00:00:00:00:aa', dstMac: '02:00:00:00:00:bb' };
      const frame = toService({ ...mac, sport: 46000 }, svc);
      const { retval, out } = run('fromPod', frame);
      assert.equal(retval, TC_ACT_REDIRECT, `${svc.protocol}: sent back to the pod`);
      const at = 14;
      assert.deepEqual([out.subarray(0, 6), out.subarray(6, 12)], [frame.subarray(6, 12), frame.subarray(0, 6)], 'MAC addresses swapped');
      assert.equal(out.length, at + 40 + 8 + 48, 'IPv6 header, ICMPv6 header, and the quote of the offending header and 8 bytes');
      assert.deepEqual([out.readUInt16BE(12), out[at]! >> 4, out.readUInt16BE(at + 4), out[at + 6]], [0x86dd, 6, 8 + 48, 58], 'IPv6, its payload length, ICMPv6');
      assert.deepEqual([bytesToIpv6(out, at + 8), bytesToIpv6(out, at + 24)], [svc.ip, client.ip], 'from the service to the client');
      assert.deepEqual([out[at + 40], out[at + 41]], [1, 4], 'destination unreachable, port unreachable');
      const pseudo = Buffer.alloc(40);
      out.copy(pseudo, 0, at + 8, at + 40);
      pseudo.writeUInt32BE(56, 32);
      pseudo[39] = 58;
      assert.equal(inetChecksum(Buffer.concat([pseudo, out.subarray(at + 40)])), 0, 'ICMPv6 checksum, over its pseudo-header');
      assert.deepEqual(out.subarray(at + 48), frame.subarray(at, at + 48), 'quotes the original IPv6 header and ports');
    }
    assert.equal(readDrops(lib, dp.maps.drops).no_endpoints - before, 2, 'counted under no_endpoints');
  });

  it('drops, rather than refuses, a flow whose extension headers the quote would cut', () => {
    const before = readDrops(lib, dp.maps.drops).no_endpoints;
    assert.equal(run('fromPod', toService({ sport: 46100, ipv6Ext: [{ type: 60 }] }, emptyService)).retval, TC_ACT_SHOT);
    assert.equal(readDrops(lib, dp.maps.drops).no_endpoints - before, 1);
  });

  it('keeps the families apart: an IPv6 address is not the IPv4 frontend of its last word, and IPv4 is served beside it', () => {
    const other = run('fromPod', toService({ sport: 47000, daddr: '::10' }));
    assert.deepEqual(tuple(other.out), [client.ip, 47000, '::10', 80], 'no IPv4 frontend for an IPv6 address');
    const v4 = run('fromPod', buildPacket({ saddr: '10.244.0.5', sport: 47001, daddr: ipv4Service.ip, dport: 80, protocol: 'TCP' }));
    assert.deepEqual(tuple(v4.out), ['10.244.0.5', 47001, '10.244.0.9', 8080]);
    assert.ok(parsePacket(v4.out).ipChecksumValid && parsePacket(v4.out).l4ChecksumValid);
  });

  it('flushes the conntrack entries of IPv6 flows to a removed endpoint', () => {
    run('fromPod', toService({ sport: 48000 }, udpService));
    const flow = encodeFlowKey({ family: 'IPv6', saddr: client.ip, sport: 48000, daddr: udpService.ip, dport: udpService.port, protocol: 'UDP' });
    assert.ok(lib.mapLookup(dp.maps.ct, flow));
    assert.ok(flushStaleFlows(lib, dp.maps, [{ frontend: udpService, family: 'IPv6', gone: [{ ip: backend.ip, port: 5353 }], untranslated: false }]) >= 1);
    assert.equal(lib.mapLookup(dp.maps.ct, flow), null);
    assert.equal(lib.mapLookup(dp.maps.rnat, encodeFlowKey({ family: 'IPv6', saddr: backend.ip, sport: 5353, daddr: client.ip, dport: 48000, protocol: 'UDP' })), null);
  });
});
