// Which UDP flows a sync leaves stale: the one rule every backend follows.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { staleUdpFlows } from '../../src/backends/stale-flows.js';

const udp = { ip: '10.96.0.10', port: 53, protocol: 'UDP' as const };
const a = { ip: '10.244.0.11', port: 5353 };
const b = { ip: '10.244.128.14', port: 5353 };

describe('stale UDP flows', () => {
  test('flows to an endpoint the frontend no longer sends to', () => {
    assert.deepEqual(staleUdpFlows(udp, [a, b], [b], true), { frontend: udp, gone: [a], untranslated: false });
  });

  test('a frontend that led nowhere: its untranslated flows, unless what came before is unknown', () => {
    assert.deepEqual(staleUdpFlows(udp, [], [a], true), { frontend: udp, gone: [], untranslated: true });
    assert.deepEqual(staleUdpFlows(udp, null, [a], true), { frontend: udp, gone: [], untranslated: true });
    assert.equal(staleUdpFlows(udp, null, [a], false), null);
  });

  test('a removed frontend: every flow to it', () => {
    assert.deepEqual(staleUdpFlows(udp, [a, b], null, true), { frontend: udp, gone: [a, b], untranslated: true });
  });

  test('nothing when nothing left, and never for TCP', () => {
    assert.equal(staleUdpFlows(udp, [a], [a, b], true), null);
    assert.equal(staleUdpFlows({ ...udp, protocol: 'TCP' }, [a, b], [b], true), null);
  });
});
