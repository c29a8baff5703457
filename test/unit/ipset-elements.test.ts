// The ipvs backend's set entries, kept as ipset's text, turned into the
// elements ipsetApply sends, by the set's type and family.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ipsetElement } from '../../src/backends/ipvs/ipset-elements.js';

describe('ipset elements', () => {
  test('each set type kube-lb uses, in both families', () => {
    assert.deepEqual(ipsetElement('hash:ip', 'IPv4', '10.96.0.10'), ['hash:ip', 'IPv4', '10.96.0.10']);
    assert.deepEqual(ipsetElement('hash:ip', 'IPv6', 'fd00:96::10'), ['hash:ip', 'IPv6', 'fd00:96::10']);
    assert.deepEqual(ipsetElement('hash:ip,port', 'IPv4', '10.96.0.10,tcp:80'), ['hash:ip,port', 'IPv4', '10.96.0.10', 6, 80]);
    assert.deepEqual(ipsetElement('hash:ip,port', 'IPv6', 'fd00:96::10,udp:53'), ['hash:ip,port', 'IPv6', 'fd00:96::10', 17, 53]);
    assert.deepEqual(ipsetElement('hash:ip,port', 'IPv4', '192.168.0.2,sctp:30009'), ['hash:ip,port', 'IPv4', '192.168.0.2', 132, 30009]);
    assert.deepEqual(ipsetElement('hash:ip,port,ip', 'IPv4', '10.244.0.11,udp:5353,10.244.0.11'), ['hash:ip,port,ip', 'IPv4', '10.244.0.11', 17, 5353, '10.244.0.11']);
    assert.deepEqual(ipsetElement('hash:ip,port,ip', 'IPv6', 'fd00::1,udp:53,fd00::1'), ['hash:ip,port,ip', 'IPv6', 'fd00::1', 17, 53, 'fd00::1']);
    assert.deepEqual(ipsetElement('hash:ip,port,net', 'IPv4', '10.0.0.1,tcp:80,10.0.0.0/8'), ['hash:ip,port,net', 'IPv4', '10.0.0.1', 6, 80, '10.0.0.0', 8]);
    assert.deepEqual(ipsetElement('hash:ip,port,net', 'IPv6', 'fd00:100::12,tcp:80,fd00:18::/64'), ['hash:ip,port,net', 'IPv6', 'fd00:100::12', 6, 80, 'fd00:18::', 64]);
    assert.deepEqual(ipsetElement('bitmap:port', 'IPv4', '30080'), ['bitmap:port', 30080]);
    assert.deepEqual(ipsetElement('bitmap:port', 'IPv6', '0'), ['bitmap:port', 0]);
  });

  test('the family is the caller\'s, whatever the text holds (the addon then refuses a mismatch)', () => {
    assert.deepEqual(ipsetElement('hash:ip', 'IPv6', '10.96.0.10'), ['hash:ip', 'IPv6', '10.96.0.10']);
  });

  test('an entry that is not of its type is refused by name', () => {
    for (const [type, entry] of [
      ['hash:ip', '10.96.0.10,tcp:80'],
      ['hash:ip,port', '10.96.0.10'],
      ['hash:ip,port', '10.96.0.10,80'],
      ['hash:ip,port', '10.96.0.10,icmp:0'],
      ['hash:ip,port', '10.96.0.10,tcp:65536'],
      ['hash:ip,port', '10.96.0.10,tcp:8o'],
      ['hash:ip,port', '10.96.0.10,tcp:80:1'],
      ['hash:ip,port,ip', '10.244.0.11,udp:5353'],
      ['hash:ip,port,net', '10.0.0.1,tcp:80,10.0.0.0'],
      ['hash:ip,port,net', '10.0.0.1,tcp:80,10.0.0.0/33'],
      ['hash:ip,port,net', '10.0.0.1,tcp:80,10.0.0.0/8/8'],
      ['bitmap:port', 'tcp:30080'],
      ['bitmap:port', ''],
    ] as const) {
      assert.throws(() => ipsetElement(type, 'IPv4', entry), { message: `ipset entry ${entry} is not an element of a ${type} set` });
    }
    assert.deepEqual(ipsetElement('hash:ip,port,net', 'IPv6', 'fd00::1,tcp:80,fd00::/128')[6], 128);
    assert.throws(() => ipsetElement('hash:ip,port,net', 'IPv6', 'fd00::1,tcp:80,fd00::/129'), /fd00::\/129 is not an element of a hash:ip,port,net set/);
  });
});
