// lb_from_world (TC) and lb_world_xdp (XDP), one code base in two contexts,
// and the replies of flows from outside, under BPF_PROG_TEST_RUN: crafted
// frames in, exact frames out. These paths end in a FIB lookup, so the
// programs run in a network namespace with a node's routes and neighbours
// (netns-test-run.ts); maps are filled from here. On a kernel without the
// XDP program's helpers (before 5.18), the XDP cases give way to its refusal.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import readline from 'node:readline';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { pino } from 'pino';
import { native } from '../../src/native/index.js';
import { type LoadedDatapath, type LoadedXdp, PROGRAMS, XDP_PROGRAM, loadDatapath, loadXdpProgram, removePins } from '../../src/backends/ebpf/datapath.js';
import { addition, ServiceMap } from '../../src/backends/ebpf/service-map.js';
import { SourceRangeMap } from '../../src/backends/ebpf/source-ranges.js';
import { LB_IFACE_F_UPLINK, LB_IFACE_F_XDP, encodeIfaceValue, encodeIfindex, type SvcMeta } from '../../src/backends/ebpf/encoding.js';
import { type DropCounts, readDrops } from '../../src/backends/ebpf/drops.js';
import { buildPacket, inetChecksum, parsePacket, type PacketSpec, TCP } from '../lib/packets.js';
import { testLibDir } from '../lib/paths.js';
import { requireCommand, requireRoot } from '../lib/preconditions.js';
import { hasKernelFeature } from '../../src/backends/ebpf/kernel-features.js';

const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;
const XDP_DROP = 1;
const XDP_PASS = 2;
const XDP_TX = 3;

const lib = native();
const pinPath = `/sys/fs/bpf/kube-lb-test-uplink-${process.pid}`;
const ns = `kl-uplink-${process.pid}`;

// The node: its uplink holds NODE_IP; the router and node-b are neighbours
// there; a local pod sits behind its own veth.
const NODE_IP = '172.18.0.2';
const ROUTER = { ip: '172.18.0.1', mac: '02:00:00:00:01:01' };
const NODE_B = { ip: '172.18.0.3', mac: '02:00:00:00:0b:0b' };
const POD = { ip: '10.244.0.11', mac: '02:00:00:00:0a:0b' };
const REMOTE_POD = '10.244.128.14';
/** What TC test runs see as their interface: the namespace's loopback. XDP runs name theirs: up0. */
const TEST_RUN_IFINDEX = 1;

const nodePort = { ip: NODE_IP, port: 30080, protocol: 'TCP' as const };
const localOnly = { ip: NODE_IP, port: 30081, protocol: 'TCP' as const };
const guarded = { ip: '198.51.100.7', port: 80, protocol: 'TCP' as const };
const sticky = { ip: NODE_IP, port: 30082, protocol: 'TCP' as const };
const idle = { ip: NODE_IP, port: 30083, protocol: 'TCP' as const };
const udpPort = { ip: NODE_IP, port: 30053, protocol: 'UDP' as const };
const external = (meta: Partial<SvcMeta>): Partial<SvcMeta> => ({ kind: 'NodePort', ...meta });

let dp: LoadedDatapath;
let xdp: LoadedXdp;
let uplinkIfindex: number;
let runner: ChildProcess;
let answers: AsyncIterator<string>;

function inNs(...args: string[]): void {
  execFileSync('ip', ['-n', ns, ...args]);
}

/** A program run on a frame: a TC program, or the XDP one receiving it on the uplink. */
async function run(program: keyof typeof PROGRAMS | 'xdp', frame: Buffer): Promise<{ retval: number; out: Buffer }> {
  const pin = path.join(pinPath, program === 'xdp' ? XDP_PROGRAM : PROGRAMS[program]);
  runner.stdin!.write(JSON.stringify({ pin, frame: frame.toString('hex'), ...(program === 'xdp' && { ifindex: uplinkIfindex }) }) + '\n');
  const { value, done } = await answers.next();
  assert.ok(!done, 'the test-run child exited');
  const { retval, frame: out } = JSON.parse(value as string) as { retval: number; frame: string };
  return { retval, out: Buffer.from(out, 'hex') };
}

/**
 * How a context answers: its program, and its verdicts for a frame sent on
 * (TC redirects; XDP sends it back out of the uplink it came in on) and a
 * frame dropped. Each context has clients and ports of its own, so that
 * neither finds the other's flows, nor their tuples at the endpoints.
 */
interface Context {
  name: string;
  program: 'fromWorld' | 'xdp';
  sent: number;
  dropped: number;
  client: { ip: string; port: number };
  /** Another client address, and one inside the source range. */
  otherClient: string;
  allowedClient: string;
}
const TC_CONTEXT: Context = { name: 'TC', program: 'fromWorld', sent: TC_ACT_REDIRECT, dropped: TC_ACT_SHOT, client: { ip: '198.18.0.10', port: 40000 }, otherClient: '198.18.0.11', allowedClient: '198.18.1.10' };
const XDP_CONTEXT: Context = { name: 'XDP', program: 'xdp', sent: XDP_TX, dropped: XDP_DROP, client: { ip: '198.18.0.20', port: 50000 }, otherClient: '198.18.0.21', allowedClient: '198.18.1.20' };
const kernelHasXdp = hasKernelFeature(lib, 'xdpBytes');
const CONTEXTS = kernelHasXdp ? [TC_CONTEXT, XDP_CONTEXT] : [TC_CONTEXT];

const drops = (): DropCounts => readDrops(lib, dp.maps.drops);
const macAt = (b: Buffer, at: number): string => [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');

describe('uplink datapath (BPF_PROG_TEST_RUN in a node namespace)', () => {
  before(() => {
    requireRoot();
    requireCommand('ip', 'apt-get install iproute2');
    requireCommand('nsenter', 'apt-get install util-linux');
    execFileSync('ip', ['netns', 'add', ns]);
    inNs('link', 'set', 'lo', 'up');
    inNs('link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1');
    inNs('link', 'add', 'pod0', 'type', 'veth', 'peer', 'name', 'pod1');
    for (const link of ['up0', 'up1', 'pod0', 'pod1']) inNs('link', 'set', link, 'up');
    inNs('addr', 'add', `${NODE_IP}/24`, 'dev', 'up0');
    for (const [ip, mac, dev] of [[ROUTER.ip, ROUTER.mac, 'up0'], [NODE_B.ip, NODE_B.mac, 'up0'], [POD.ip, POD.mac, 'pod0']] as const) {
      inNs('neigh', 'replace', ip, 'lladdr', mac, 'dev', dev, 'nud', 'permanent');
    }
    inNs('route', 'add', 'default', 'via', ROUTER.ip);
    inNs('route', 'add', '10.244.128.0/24', 'via', NODE_B.ip);
    inNs('route', 'add', `${POD.ip}/32`, 'dev', 'pod0');
    execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);

    dp = loadDatapath(lib, pinPath, pino({ level: 'silent' }));
    if (kernelHasXdp) xdp = loadXdpProgram(lib, pinPath);
    uplinkIfindex = (JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'link', 'show', 'up0'], { encoding: 'utf8' })) as { ifindex: number }[])[0]!.ifindex;
    const noNetns = { ino: 0, cookie: 0n };
    lib.mapUpdate(dp.maps.ifaces, encodeIfindex(TEST_RUN_IFINDEX), encodeIfaceValue({ flags: LB_IFACE_F_UPLINK, snatAddr: NODE_IP, snatAddr6: null, netns: noNetns }));
    lib.mapUpdate(dp.maps.ifaces, encodeIfindex(uplinkIfindex), encodeIfaceValue({ flags: LB_IFACE_F_UPLINK | LB_IFACE_F_XDP, snatAddr: NODE_IP, snatAddr6: null, netns: noNetns }));
    new ServiceMap(lib, dp.maps.svc, dp.maps.maglev).apply([
      addition(nodePort, [{ ip: REMOTE_POD, port: 8080 }], external({ snat: true }), 'external'),
      addition(localOnly, [{ ip: POD.ip, port: 8080 }], external({}), 'external'),
      addition(guarded, [{ ip: POD.ip, port: 8080 }], external({ kind: 'LoadBalancerIP', sourceRanges: true }), 'external'),
      addition(
        sticky,
        [1, 2, 3].map((i) => ({ ip: `10.244.128.${i}`, port: 8080 })),
        external({ affinityTimeout: 60 }),
        'external',
      ),
      addition(idle, [], external({}), 'external'),
      addition(udpPort, [{ ip: REMOTE_POD, port: 5353 }], external({ snat: true }), 'external'),
    ]);
    new SourceRangeMap(lib, dp.maps.sourceRanges).add([{ frontend: guarded, family: 'IPv4', current: [], wanted: ['198.18.1.0/24'] }]);

    // nsenter, not ip netns exec, which mounts a fresh /sys without the pins' bpffs.
    runner = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, path.join(testLibDir, 'netns-test-run.js')], { stdio: ['pipe', 'pipe', 'inherit'] });
    answers = readline.createInterface({ input: runner.stdout! })[Symbol.asyncIterator]();
  });

  after(() => {
    runner?.stdin?.end();
    runner?.kill();
    xdp?.object.close();
    dp?.object.close();
    removePins(pinPath);
    execFileSync('ip', ['netns', 'delete', ns]);
  });

  if (!kernelHasXdp) {
    it('XDP: refused on this kernel, which lacks bpf_xdp_load_bytes (5.18), naming what to do', () => {
      assert.throws(() => loadXdpProgram(lib, pinPath), /--bpf-xdp needs kernel 5\.18 or later .*run with --bpf-xdp=off/);
    });
  }

  for (const c of CONTEXTS) {
    const fromClient = (to: { ip: string; port: number }, spec: Partial<PacketSpec> = {}): Buffer =>
      buildPacket({ saddr: c.client.ip, sport: c.client.port, daddr: to.ip, dport: to.port, protocol: 'TCP', ...spec });

    it(`${c.name}: NodePort under policy Cluster: DNAT to a remote endpoint, SNAT to the uplink keeping the client's port, out to node-b`, async () => {
      const { retval, out } = await run(c.program, fromClient(nodePort));
      assert.equal(retval, c.sent);
      const p = parsePacket(out);
      assert.deepEqual([p.saddr, p.sport, p.daddr, p.dport], [NODE_IP, c.client.port, REMOTE_POD, 8080]);
      assert.equal(p.dstMac, NODE_B.mac, "to node-b's MAC");
      assert.equal(p.ttl, 63, 'one hop less');
      assert.ok(p.ipChecksumValid && p.l4ChecksumValid);

      // The reply from node-b goes back to the client from the NodePort.
      const reply = buildPacket({ saddr: REMOTE_POD, sport: 8080, daddr: NODE_IP, dport: p.sport, protocol: 'TCP', tcpFlags: TCP.SYN | TCP.ACK });
      const back = await run(c.program, reply);
      assert.equal(back.retval, c.sent);
      const q = parsePacket(back.out);
      assert.deepEqual([q.saddr, q.sport, q.daddr, q.dport], [NODE_IP, nodePort.port, c.client.ip, c.client.port]);
      assert.equal(q.dstMac, ROUTER.mac, 'towards the client, through the router');
      assert.ok(q.ipChecksumValid && q.l4ChecksumValid);

      // Later packets of the flow keep their SNAT port.
      const again = parsePacket((await run(c.program, fromClient(nodePort, { tcpFlags: TCP.ACK }))).out);
      assert.equal(again.sport, p.sport);
    });

    it(`${c.name}: UDP, its checksum kept right; a UDP datagram without a checksum keeps none`, async () => {
      const withSum = parsePacket((await run(c.program, fromClient(udpPort, { protocol: 'UDP', sport: c.client.port + 4000, payload: Buffer.from('query') }))).out);
      assert.deepEqual([withSum.saddr, withSum.daddr, withSum.dport], [NODE_IP, REMOTE_POD, 5353]);
      assert.ok(withSum.ipChecksumValid && withSum.l4ChecksumValid);
      const { retval, out } = await run(c.program, fromClient(udpPort, { protocol: 'UDP', sport: c.client.port + 4001, udpNoChecksum: true }));
      assert.equal(retval, c.sent);
      assert.equal(out.readUInt16BE(14 + 20 + 6), 0, 'UDP checksum still "none"');
    });

    it(`${c.name}: two clients on one port: the second gets a port from the SNAT range`, async () => {
      const a = parsePacket((await run(c.program, fromClient(nodePort, { sport: c.client.port + 1000 }))).out);
      const b = parsePacket((await run(c.program, fromClient(nodePort, { saddr: c.otherClient, sport: c.client.port + 1000 }))).out);
      assert.equal(a.sport, c.client.port + 1000);
      assert.ok(b.sport >= 61000, `SNAT port ${b.sport} from the SNAT range`);
    });

    it(`${c.name}: NodePort under policy Local: to a local pod with the client address kept; its reply leaves from the NodePort`, async () => {
      const frame = fromClient(localOnly);
      let { retval, out } = await run(c.program, frame);
      if (c.program === 'xdp') {
        // A local pod is TC's: XDP passes the frame on unchanged, having recorded the flow.
        assert.equal(retval, XDP_PASS);
        assert.deepEqual(out, frame);
        ({ retval, out } = await run('fromWorld', out));
      }
      assert.equal(retval, TC_ACT_REDIRECT);
      const p = parsePacket(out);
      assert.deepEqual([p.saddr, p.sport, p.daddr, p.dport, p.dstMac], [c.client.ip, c.client.port, POD.ip, 8080, POD.mac]);
      assert.ok(p.ipChecksumValid && p.l4ChecksumValid);

      const reply = buildPacket({ saddr: POD.ip, sport: 8080, daddr: c.client.ip, dport: c.client.port, protocol: 'TCP', tcpFlags: TCP.SYN | TCP.ACK });
      const back = await run('fromPod', reply);
      assert.equal(back.retval, TC_ACT_REDIRECT);
      const q = parsePacket(back.out);
      assert.deepEqual([q.saddr, q.sport, q.daddr, q.dport, q.dstMac], [NODE_IP, localOnly.port, c.client.ip, c.client.port, ROUTER.mac]);
      assert.ok(q.ipChecksumValid && q.l4ChecksumValid);
    });

    it(`${c.name}: loadBalancerSourceRanges: a source inside passes, one outside is dropped and counted`, async () => {
      const before = drops();
      // The endpoint is local: XDP leaves the allowed flow to TC.
      assert.equal((await run(c.program, fromClient(guarded, { saddr: c.allowedClient }))).retval, c.program === 'xdp' ? XDP_PASS : TC_ACT_REDIRECT);
      assert.equal((await run(c.program, fromClient(guarded))).retval, c.dropped);
      assert.equal(drops().source_range - before.source_range, 1);
    });

    it(`${c.name}: session affinity: a client keeps its endpoint over new connections`, async () => {
      const picked = new Set<string>();
      for (let i = 0; i < 12; i++) picked.add(parsePacket((await run(c.program, fromClient(sticky, { sport: c.client.port + 2000 + i }))).out).daddr);
      assert.equal(picked.size, 1, `one endpoint for one client: ${[...picked].join(', ')}`);
    });

    it(`${c.name}: a NodePort without endpoints refuses the client from outside with an ICMP port unreachable`, async () => {
      const before = drops();
      const frame = fromClient(idle, { srcMac: ROUTER.mac, dstMac: '02:00:00:00:02:02' });
      const { retval, out } = await run(c.program, frame);
      assert.equal(retval, c.sent, 'sent back out');
      assert.equal(macAt(out, 0), ROUTER.mac, 'to the router it came from');
      assert.equal(out.length, 14 + 20 + 8 + 28, 'an IP header, an ICMP header and the quote');
      assert.deepEqual([out[14 + 9], out[14 + 20], out[14 + 21]], [1, 3, 3], 'ICMP port unreachable');
      assert.equal(inetChecksum(out.subarray(14, 34)), 0, 'IP checksum');
      assert.equal(inetChecksum(out.subarray(34)), 0, 'ICMP checksum');
      assert.equal(drops().no_endpoints - before.no_endpoints, 1);
    });

    it(`${c.name}: a packet with no hop left is dropped and counted`, async () => {
      const before = drops();
      assert.equal((await run(c.program, fromClient(nodePort, { sport: c.client.port + 3000, ttl: 1 }))).retval, c.dropped);
      assert.equal(drops().ttl_exceeded - before.ttl_exceeded, 1);
    });

    it(`${c.name}: traffic to no service passes untouched`, async () => {
      const frame = fromClient({ ip: NODE_IP, port: 22 });
      const { retval, out } = await run(c.program, frame);
      assert.equal(retval, c.program === 'xdp' ? XDP_PASS : 0);
      assert.deepEqual(out, frame);
    });
  }
});
