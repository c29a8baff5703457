import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { benchAddress, flowPackets, missPacket, serviceChanges, type PerPacketResult } from '../../bench/per-packet.js';
import { perPacketChart, perPacketFigures, perPacketTable } from '../../bench/per-packet-report.js';
import type { Spread } from '../../bench/stats.js';
import { parsePacket } from '../lib/packets.js';

describe('bench per-packet packets', () => {
  test('benchAddress gives the IPv4 address, or its 32 bits last under fd00:b::/96', () => {
    assert.equal(benchAddress('IPv4', 0x0a600001), '10.96.0.1');
    assert.equal(benchAddress('IPv6', 0x0a600001), 'fd00:b::a60:1');
    assert.equal(benchAddress('IPv6', 0xffffffff), 'fd00:b::ffff:ffff');
  });

  test('both families measure the same flows, with frames that differ only by the IP header', () => {
    const v4 = flowPackets('IPv4', benchAddress('IPv4', 0x0a600002), 50_001);
    const v6 = flowPackets('IPv6', benchAddress('IPv6', 0x0a600002), 50_001);
    assert.equal(v6.length, v4.length);
    for (const i of [0, 1, 49_999, 50_000]) {
      const [a, b] = [parsePacket(v4[i]!), parsePacket(v6[i]!)];
      assert.equal(v6[i]!.length - v4[i]!.length, 20, 'IPv6 header 40 bytes, IPv4 20');
      assert.deepEqual([b.sport, b.dport, b.protocol, b.payload], [a.sport, a.dport, a.protocol, a.payload]);
      assert.ok(a.l4ChecksumValid && b.l4ChecksumValid);
    }
    // The 50,001st flow moves to the next client address, in both families.
    assert.deepEqual([parsePacket(v4[50_000]!).saddr, parsePacket(v4[50_000]!).sport], ['10.250.0.1', 1024]);
    assert.deepEqual([parsePacket(v6[50_000]!).saddr, parsePacket(v6[50_000]!).sport], ['fd00:b::afa:1', 1024]);
    assert.equal(parsePacket(v6[0]!).daddr, 'fd00:b::a60:2');
  });

  test('the packet to no service is the same in both families', () => {
    const [a, b] = [parsePacket(missPacket('IPv4')), parsePacket(missPacket('IPv6'))];
    assert.deepEqual([a.saddr, a.daddr], ['10.250.0.1', '10.95.0.1']);
    assert.deepEqual([b.saddr, b.daddr], ['fd00:b::afa:1', 'fd00:b::a5f:1']);
  });

  test('serviceChanges writes each service and its backends in the family asked for', () => {
    const [v4, v6] = [serviceChanges('IPv4', 2), serviceChanges('IPv6', 2)];
    assert.deepEqual(v4.map((c) => [c.family, c.frontend.ip, c.wanted!.map((d) => d.ip)]), [
      ['IPv4', '10.96.0.1', ['10.244.0.1', '10.244.0.2']],
      ['IPv4', '10.96.0.2', ['10.244.0.3', '10.244.0.4']],
    ]);
    assert.deepEqual(v6.map((c) => [c.family, c.frontend.ip, c.wanted!.map((d) => d.ip)]), [
      ['IPv6', 'fd00:b::a60:1', ['fd00:b::af4:1', 'fd00:b::af4:2']],
      ['IPv6', 'fd00:b::a60:2', ['fd00:b::af4:3', 'fd00:b::af4:4']],
    ]);
  });
});

const spread = (median: number): Spread => ({ median, p10: median - 10, p90: median + 10, samples: 100 });
const result = (family: 'IPv4' | 'IPv6', services: number, newFlow: number, established: number, miss: number): PerPacketResult => ({
  family,
  services,
  newFlowNs: spread(newFlow),
  establishedNs: spread(established),
  missNs: spread(miss),
});

describe('bench per-packet report', () => {
  const results = [result('IPv4', 1, 700, 200, 150), result('IPv4', 1000, 720, 210, 160), result('IPv6', 1, 770, 250, 165), result('IPv6', 1000, 792, 252, 160)];

  test('the table puts each N\'s IPv6 row under its IPv4 row, with IPv6\'s ratio to IPv4 per path', () => {
    assert.deepEqual(perPacketTable(results), [
      '| services | family | new flow ns (p10–p90) | vs IPv4 | established ns (p10–p90) | vs IPv4 | not a service ns (p10–p90) | vs IPv4 |',
      '|---|---|---|---|---|---|---|---|',
      '| 1 | IPv4 | 700 (690–710) |  | 200 (190–210) |  | 150 (140–160) |  |',
      '| 1 | IPv6 | 770 (760–780) | 1.10× | 250 (240–260) | 1.25× | 165 (155–175) | 1.10× |',
      '| 1,000 | IPv4 | 720 (710–730) |  | 210 (200–220) |  | 160 (150–170) |  |',
      '| 1,000 | IPv6 | 792 (782–802) | 1.10× | 252 (242–262) | 1.20× | 160 (150–170) | 1.00× |',
    ]);
  });

  test('with one family the table has no ratio columns', () => {
    assert.deepEqual(perPacketTable(results.slice(0, 1)), [
      '| services | family | new flow ns (p10–p90) | established ns (p10–p90) | not a service ns (p10–p90) |',
      '|---|---|---|---|---|',
      '| 1 | IPv4 | 700 (690–710) | 200 (190–210) | 150 (140–160) |',
    ]);
  });

  test('the JSON figures are by family, then by N', () => {
    const figures = perPacketFigures(results);
    assert.deepEqual(Object.keys(figures), ['IPv4', 'IPv6']);
    assert.deepEqual(Object.keys(figures.IPv6!), ['1', '1000']);
    assert.equal(figures.IPv6![1000]!.established.median, 252);
  });

  test('the chart has a bar per path and family, in each N\'s group', () => {
    const svg = perPacketChart(results);
    for (const name of ['new flow, IPv4', 'new flow, IPv6', 'established, IPv4', 'established, IPv6', 'not a service, IPv4', 'not a service, IPv6']) assert.match(svg, new RegExp(`>${name}</text>`));
    assert.match(svg, /<title>established, IPv6, 1,000 services: 252 ns per packet<\/title>/);
    assert.equal(svg.match(/<rect [^>]*><title>/g)!.length, 12);
  });
});
