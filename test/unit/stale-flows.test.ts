// Which flows a sync leaves stale: the one rule every backend follows.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { staleFlows } from '../../src/backends/stale-flows.js';

const udp = { ip: '10.96.0.10', port: 53, protocol: 'UDP' as const };
const a = { ip: '10.244.0.11', port: 5353 };
const b = { ip: '10.244.128.14', port: 5353 };

describe('stale flows', () => {
  test('flows to an endpoint the frontend no longer sends to', () => {
    assert.deepEqual(staleFlows(udp, 'IPv4', [a, b], [b], true), { frontend: udp, family: 'IPv4', gone: [a], untranslated: false });
  });

  test('a frontend that led nowhere: its untranslated flows, unless what came before is unknown', () => {
    assert.deepEqual(staleFlows(udp, 'IPv4', [], [a], true), { frontend: udp, family: 'IPv4', gone: [], untranslated: true });
    assert.deepEqual(staleFlows(udp, 'IPv4', null, [a], true), { frontend: udp, family: 'IPv4', gone: [], untranslated: true });
    assert.equal(staleFlows(udp, 'IPv4', null, [a], false), null);
  });

  test('a removed frontend: every flow to it', () => {
    assert.deepEqual(staleFlows(udp, 'IPv4', [a, b], null, true), { frontend: udp, family: 'IPv4', gone: [a, b], untranslated: true });
  });

  test('nothing when nothing left', () => {
    assert.equal(staleFlows(udp, 'IPv4', [a], [a, b], true), null);
  });

  test('TCP: only the untranslated flows of a frontend that led nowhere; connections to endpoints end on their own', () => {
    const tcp = { ...udp, port: 80, protocol: 'TCP' as const };
    assert.deepEqual(staleFlows(tcp, 'IPv4', null, [a], true), { frontend: tcp, family: 'IPv4', gone: [], untranslated: true });
    assert.deepEqual(staleFlows(tcp, 'IPv4', [], [a], true), { frontend: tcp, family: 'IPv4', gone: [], untranslated: true });
    assert.equal(staleFlows(tcp, 'IPv4', null, [a], false), null);
    assert.equal(staleFlows(tcp, 'IPv4', [a, b], [b], true), null);
    assert.equal(staleFlows(tcp, 'IPv4', [a, b], null, true), null);
  });
});
