// IPv4 parsing and printing, used for every map entry and rule kube-lb writes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { intToIpv4, ipv4ToInt } from '../../src/net/ip.js';

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
