// IPv4 parsing and printing, used for every map entry and rule kube-lb writes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalIp, intToIpv4, ipv4ToInt } from '../../src/net/ip.js';

describe('ipv4ToInt', () => {
  it('parses dotted quads, and intToIpv4 prints them back', () => {
    for (const [text, n] of [['0.0.0.0', 0], ['10.96.0.10', 0x0a60000a], ['255.255.255.255', 0xffffffff], ['1.2.3.4', 0x01020304]] as const) {
      assert.equal(ipv4ToInt(text), n, text);
      assert.equal(intToIpv4(n), text);
    }
  });

  it('rejects anything else, naming it', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.256', '1..2.3', '1.2.3.4.', '.1.2.3', 'a.b.c.d', '1.2.3.1000', '1.2.3.-1', ' 1.2.3.4', 'fd00::1', '0x1.2.3.4']) {
      assert.throws(() => ipv4ToInt(bad), { message: `not an IPv4 address: ${JSON.stringify(bad)}` }, JSON.stringify(bad));
    }
  });
});

describe('canonicalIp', () => {
  it('spells IPv6 in RFC 5952 form and leaves IPv4 as it is', () => {
    assert.equal(canonicalIp('FD00:0096:0:0:0:0:0:10'), 'fd00:96::10');
    assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1', 'the first of two equal runs of zeros');
    assert.equal(canonicalIp('::ffff:10.0.0.1'), '::ffff:a00:1');
    assert.equal(canonicalIp('10.96.0.10'), '10.96.0.10');
  });
});
