import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, test } from 'node:test';
import { SyncRunner, type SyncRunResult } from '../../src/sync/runner.js';

interface Run {
  full: boolean;
  /** When the runner started it. */
  at: number;
}

/** A runner whose runs are recorded, each taking `runMs`. */
function recordingRunner(minIntervalMs: number, maxIntervalMs: number, runMs = 0) {
  const runs: Run[] = [];
  const results: SyncRunResult[] = [];
  let active = 0;
  let maxActive = 0;
  const runner = new SyncRunner({
    minIntervalMs,
    maxIntervalMs,
    // The runner's own start time: the callback's clock would also count whatever preempted the process in between.
    run: async ({ full, startedAt }) => {
      runs.push({ full, at: startedAt });
      maxActive = Math.max(maxActive, ++active);
      await sleep(runMs);
      active--;
    },
    onRunEnd: (result) => results.push(result),
  });
  return { runner, runs, results, maxActive: () => maxActive };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `condition`; the bound only ends a failing test, with room for a loaded machine. */
async function until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail('timed out');
    await sleep(5);
  }
}

describe('SyncRunner', () => {
  let runner: SyncRunner | null = null;

  afterEach(async () => {
    await runner?.stop();
    runner = null;
  });

  test('the first run is full and immediate; requests before start are folded into it', async () => {
    const r = recordingRunner(50, 10_000);
    runner = r.runner;
    runner.request();
    await sleep(30);
    assert.equal(r.runs.length, 0, 'nothing runs before start()');
    const started = performance.now();
    runner.start();
    await until(() => r.results.length === 1);
    assert.deepEqual(r.runs.map((x) => x.full), [true]);
    assert.ok(r.runs[0]!.at - started < 100);
    await sleep(100);
    assert.equal(r.runs.length, 1);
  });

  test('requests are coalesced and runs start at least minInterval apart', async () => {
    const r = recordingRunner(150, 10_000);
    runner = r.runner;
    runner.start();
    await until(() => r.results.length === 1);
    for (let i = 0; i < 10; i++) runner.request();
    await sleep(80);
    for (let i = 0; i < 10; i++) runner.request();
    await until(() => r.results.length === 2);
    await sleep(250);
    assert.equal(r.runs.length, 2, 'twenty requests made one run');
    assert.equal(r.runs[1]!.full, false);
    assert.ok(r.runs[1]!.at - r.runs[0]!.at >= 149, `runs ${(r.runs[1]!.at - r.runs[0]!.at).toFixed(1)} ms apart`);
  });

  test('a request long after the last run runs right away', async () => {
    const r = recordingRunner(50, 10_000);
    runner = r.runner;
    runner.start();
    await until(() => r.results.length === 1);
    await sleep(100);
    const requested = performance.now();
    runner.request();
    await until(() => r.results.length === 2);
    assert.ok(r.runs[1]!.at - requested < 100);
  });

  test('runs never overlap; a request during a run makes one more run after it', async () => {
    const r = recordingRunner(10, 10_000, 100);
    runner = r.runner;
    runner.start();
    await sleep(20);
    runner.request();
    runner.request();
    await until(() => r.results.length === 2);
    await sleep(150);
    assert.equal(r.runs.length, 2);
    assert.equal(r.maxActive(), 1);
    assert.ok(r.runs[1]!.at - r.runs[0]!.at >= 100);
  });

  test('a full resync runs every maxInterval even while requests keep coming', async () => {
    const r = recordingRunner(20, 200);
    runner = r.runner;
    runner.start();
    const requests = setInterval(() => runner?.request(), 30);
    try {
      await sleep(700);
    } finally {
      clearInterval(requests);
    }
    const fullRuns = r.runs.filter((x) => x.full);
    assert.ok(fullRuns.length >= 3, `${fullRuns.length} full runs in 700 ms`);
    assert.ok(r.runs.some((x) => !x.full));
    for (let i = 1; i < fullRuns.length; i++) {
      const gap = fullRuns[i]!.at - fullRuns[i - 1]!.at;
      assert.ok(gap >= 199 && gap < 350, `full runs ${gap.toFixed(1)} ms apart`);
    }
  });

  test('periodic runs happen without any request', async () => {
    const r = recordingRunner(10, 100);
    runner = r.runner;
    runner.start();
    await until(() => r.results.length === 3, 1000);
    assert.deepEqual(r.runs.map((x) => x.full), [true, true, true]);
  });

  test('records duration and time of the last successful run, and reports failures', async () => {
    let fail = false;
    const results: SyncRunResult[] = [];
    runner = new SyncRunner({
      minIntervalMs: 10,
      maxIntervalMs: 10_000,
      run: async () => {
        await sleep(40);
        if (fail) throw new Error('datapath unavailable');
      },
      onRunEnd: (result) => results.push(result),
    });
    assert.equal(runner.lastSyncAt, null);
    const before = new Date();
    runner.start();
    await until(() => results.length === 1);
    assert.ok(runner.lastDurationMs! >= 39);
    assert.ok(runner.lastSyncAt! >= before);
    assert.equal(results[0]!.error, undefined);

    const lastSuccess = runner.lastSyncAt;
    fail = true;
    runner.request();
    await until(() => results.length === 2);
    assert.equal((results[1]!.error as Error).message, 'datapath unavailable');
    assert.equal(runner.lastSyncAt, lastSuccess);
    assert.ok(results[1]!.durationMs >= 39);
  });

  test('a run that throws synchronously does not wedge the runner', async () => {
    const results: SyncRunResult[] = [];
    runner = new SyncRunner({
      minIntervalMs: 10,
      maxIntervalMs: 10_000,
      run: () => {
        throw new Error('not even a promise');
      },
      onRunEnd: (result) => results.push(result),
    });
    runner.start();
    await until(() => results.length === 1);
    runner.request();
    await until(() => results.length === 2);
    assert.equal((results[1]!.error as Error).message, 'not even a promise');
  });

  test('stop() waits for the run in progress and nothing runs afterwards', async () => {
    const r = recordingRunner(10, 100, 80);
    runner = r.runner;
    runner.start();
    await sleep(20);
    runner.request();
    await runner.stop();
    assert.equal(r.results.length, 1, 'the in-flight run finished before stop() resolved');
    await sleep(250);
    assert.equal(r.runs.length, 1);
  });

  test('rejects nonsensical intervals', () => {
    assert.throws(
      () => new SyncRunner({ minIntervalMs: 1000, maxIntervalMs: 10, run: async () => {}, onRunEnd: () => {} }),
      /invalid sync intervals: need 0 <= min \(1000ms\) <= max \(10ms\)/,
    );
  });
});
