import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCount, parseDuration } from '../../src/flags.js';
import { DEFAULT_SOCKET_LB, parseSocketLb } from '../../src/backends/ebpf/sockets.js';

test('parses Go-style durations into milliseconds', () => {
  const cases: Array<[string, number]> = [
    ['0', 0],
    ['1s', 1000],
    ['500ms', 500],
    ['30s', 30_000],
    ['1m', 60_000],
    ['1h30m', 5_400_000],
    ['1h0m0.5s', 3_600_500],
    ['1.5s', 1500],
    ['.5s', 500],
    ['2us', 0.002],
    ['2µs', 0.002],
    ['1000000ns', 1],
    ['1m1ms', 60_001],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
});

test('rejects bad durations with a clear error', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /^invalid duration "": empty/],
    ['1', /^invalid duration "1": cannot parse "1" as <number><unit>/],
    ['10x', /^invalid duration "10x": cannot parse "10x"/],
    ['1h30', /^invalid duration "1h30": cannot parse "30"/],
    ['-1s', /^invalid duration "-1s": must not be negative/],
    ['s', /^invalid duration "s"/],
    [' 1s', /^invalid duration " 1s"/],
    ['1 s', /^invalid duration "1 s"/],
    ['1.s.s', /^invalid duration "1.s.s"/],
  ];
  for (const [text, message] of cases) assert.throws(() => parseDuration(text), { message }, JSON.stringify(text));
});

test('errors suggest valid examples', () => {
  assert.throws(() => parseDuration('soon'), { message: /\(examples: 500ms, 30s, 1m, 1h30m\)$/ });
});

test('parses counts and rejects anything but a whole number in range', () => {
  assert.equal(parseCount('bpf-lb-map-max', '64', 1, 1024), 64);
  assert.equal(parseCount('bpf-lb-map-max', '1024', 1, 1024), 1024);
  for (const text of ['0', '1025', '', '1e3', '0x10', '+5', '-1', '12.0', ' 12']) {
    assert.throws(() => parseCount('bpf-lb-map-max', text, 1, 1024), new RegExp(`^Error: --bpf-lb-map-max=${text.replace(/[+.]/g, '\\$&')}: not a whole number from 1 to 1024$`), JSON.stringify(text));
  }
});

test('--bpf-socket-lb takes all, host or off, and names the choices otherwise', () => {
  for (const mode of ['all', 'host', 'off']) assert.equal(parseSocketLb(mode), mode);
  assert.throws(() => parseSocketLb('pods'), /^Error: --bpf-socket-lb=pods: choose all, host or off$/);
  assert.equal(DEFAULT_SOCKET_LB, 'host');
});
