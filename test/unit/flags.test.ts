import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseArgs } from 'node:util';
import { parseArgsUsageError, parseChoice, parseCount, parseDuration } from '../../src/flags.js';
import { DEFAULT_SOCKET_LB, SOCKET_LB_MODES } from '../../src/backends/ebpf/sockets.js';
import { LB_ALGORITHMS } from '../../src/model/contract.js';
import { MAX_MAGLEV_TABLE_SIZE, parseMaglevTableSize } from '../../src/backends/ebpf/maglev.js';

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
  for (const [text, ms] of cases) assert.equal(parseDuration('sync-period', text), ms, text);
});

test('rejects bad durations with a clear error', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /^--sync-period=: not a duration: empty/],
    ['1', /^--sync-period=1: not a duration: cannot parse "1" as <number><unit>/],
    ['10x', /^--sync-period=10x: not a duration: cannot parse "10x"/],
    ['1h30', /^--sync-period=1h30: not a duration: cannot parse "30"/],
    ['-1s', /^--sync-period=-1s: not a duration: must not be negative/],
    ['s', /^--sync-period=s: not a duration/],
    [' 1s', /^--sync-period= 1s: not a duration/],
    ['1 s', /^--sync-period=1 s: not a duration/],
    ['1.s.s', /^--sync-period=1\.s\.s: not a duration/],
  ];
  for (const [text, message] of cases) assert.throws(() => parseDuration('sync-period', text), { message }, JSON.stringify(text));
});

test('errors suggest valid examples', () => {
  assert.throws(() => parseDuration('sync-period', 'soon'), { message: /\(examples: 500ms, 30s, 1m, 1h30m\)$/ });
});

test('parses counts and rejects anything but a whole number in range', () => {
  assert.equal(parseCount('bpf-lb-map-max', '64', 1, 1024), 64);
  assert.equal(parseCount('bpf-lb-map-max', '1024', 1, 1024), 1024);
  for (const text of ['0', '1025', '', '1e3', '0x10', '+5', '-1', '12.0', ' 12']) {
    assert.throws(() => parseCount('bpf-lb-map-max', text, 1, 1024), new RegExp(`^Error: --bpf-lb-map-max=${text.replace(/[+.]/g, '\\$&')}: not a whole number from 1 to 1024$`), JSON.stringify(text));
  }
});

test("parseArgs' errors become one sentence naming the flag", () => {
  const options = { backend: { type: 'string' }, output: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } } as const;
  const sentence = (args: string[]): string => {
    try {
      parseArgs({ args, options, strict: true });
    } catch (err) {
      return parseArgsUsageError(err as NodeJS.ErrnoException, options).message;
    }
    return assert.fail(`${args.join(' ')} parsed`);
  };
  assert.equal(sentence(['--frob']), '--frob: unknown flag (--help lists them)');
  assert.equal(sentence(['--backend']), '--backend: needs a value, as in --backend=VALUE');
  assert.equal(sentence(['--backend', '--help']), '--backend: needs a value, as in --backend=VALUE');
  assert.equal(sentence(['-o']), '--output: needs a value, as in --output=VALUE');
  assert.equal(sentence(['-o', '--help']), '-o: needs a value, as in -o VALUE');
  assert.equal(sentence(['--help=yes']), '--help: takes no value');
});

test('--bpf-socket-lb takes all, host or off, and names the choices otherwise', () => {
  for (const mode of ['all', 'host', 'off']) assert.equal(parseChoice('bpf-socket-lb', mode, SOCKET_LB_MODES), mode);
  assert.throws(() => parseChoice('bpf-socket-lb', 'pods', SOCKET_LB_MODES), /^Error: --bpf-socket-lb=pods: choose all, host or off$/);
  assert.equal(DEFAULT_SOCKET_LB, 'host');
});

test('--bpf-lb-maglev-table-size takes a prime up to 65521, --bpf-lb-algorithm random or maglev, and each names what it takes otherwise', () => {
  for (const size of [2, 251, 16381, MAX_MAGLEV_TABLE_SIZE]) assert.equal(parseMaglevTableSize(String(size)), size);
  for (const text of ['16383', '65537', '131071', '1', '0', 'x', '', '16381.0']) {
    assert.throws(() => parseMaglevTableSize(text), new RegExp(`^Error: --bpf-lb-maglev-table-size=${text.replace('.', '\\.')}: not a prime from 2 to 65521 \\(`), JSON.stringify(text));
  }
  assert.equal(parseChoice('bpf-lb-algorithm', 'maglev', LB_ALGORITHMS), 'maglev');
  assert.throws(() => parseChoice('bpf-lb-algorithm', 'hash', LB_ALGORITHMS), /^Error: --bpf-lb-algorithm=hash: choose random or maglev$/);
});
