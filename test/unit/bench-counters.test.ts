import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cpuTimesNs, linkPackets } from '../../bench/counters.js';

describe('bench counters', () => {
  test('cpuTimesNs adds the busy fields of /proc/stat and gives softirq alone', () => {
    // user nice system idle iowait irq softirq steal guest guest_nice
    const stat = 'cpu  100 2 30 9000 50 4 60 1 0 0\ncpu0 50 1 15 4500 25 2 30 0 0 0\nintr 1\n';
    assert.deepEqual(cpuTimesNs(stat), { busyNs: (100 + 2 + 30 + 4 + 60 + 1) * 10_000_000, softirqNs: 60 * 10_000_000 });
  });

  test('cpuTimesNs reads one CPU when asked', () => {
    const stat = 'cpu  100 2 30 9000 50 4 60 1 0 0\ncpu0 50 1 15 4500 25 2 30 0 0 0\ncpu1 50 1 15 4500 25 2 30 1 0 0\n';
    assert.deepEqual(cpuTimesNs(stat, 1), { busyNs: (50 + 1 + 15 + 2 + 30 + 1) * 10_000_000, softirqNs: 30 * 10_000_000 });
  });

  test('cpuTimesNs names the line it did not find', () => {
    assert.throws(() => cpuTimesNs('cpu  1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n', 3), /no "cpu3" line/);
  });

  test('linkPackets reads rx or tx packets of ip -s -j link show', () => {
    const json = JSON.stringify([{ ifname: 'eth0', stats64: { rx: { bytes: 600, packets: 10 }, tx: { bytes: 120, packets: 2 } } }]);
    assert.equal(linkPackets(json, 'rx'), 10);
    assert.equal(linkPackets(json, 'tx'), 2);
  });

  test('linkPackets says so when the output has no statistics', () => {
    assert.throws(() => linkPackets(JSON.stringify([{ ifname: 'eth0' }]), 'rx'), /no rx packet count for eth0 \(was -s given\?\)/);
  });

});
