// A preload for kube-lb under the bench (KUBE_LB_BENCH_NODE_OPTIONS=
// "--import=<dist>/bench/profile-preload.js", KUBE_LB_PROFILE_DIR=DIR):
// samples its CPU from KUBE_LB_PROFILE_DELAY_MS (default 3000) after start
// until it exits, then writes DIR/kube-lb-<pid>.cpuprofile, and logs its
// memory every 500 ms to DIR/memory-<pid>.log (gaps there are the event
// loop held). Not --cpu-prof: its sampling signal interrupts the BPF
// verifier, and the datapath's load fails with EAGAIN; the delay lets the
// load finish first.
import fs from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.KUBE_LB_PROFILE_DIR;
if (dir === undefined) throw new Error('profile-preload: set KUBE_LB_PROFILE_DIR');
const started = performance.now();
const session = new Session();
session.connect();
setTimeout(() => {
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
}, Number(process.env.KUBE_LB_PROFILE_DELAY_MS ?? 3000)).unref();
// A session of the thread itself answers at once, so the profile is written before the exit.
process.on('exit', () =>
  session.post('Profiler.stop', (err, result) => {
    if (err === null) fs.writeFileSync(path.join(dir, `kube-lb-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
  }),
);
const log = fs.openSync(path.join(dir, `memory-${process.pid}.log`), 'a');
const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);
setInterval(() => {
  const m = process.memoryUsage();
  fs.writeSync(log, `${((performance.now() - started) / 1000).toFixed(1)} s: rss ${mib(m.rss)} heapUsed ${mib(m.heapUsed)} external ${mib(m.external)} MiB\n`);
}, 500).unref();
