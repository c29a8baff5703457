// Probes a health endpoint over and over, one request at a time, each on a
// new connection as the kubelet's probes are. Run where kube-lb listens:
//   node health-prober.js URL
// Prints "probing" after the first answer; on SIGTERM prints one JSON line:
// { "answers": 412, "slowestMs": 23.4, "failures": [] }, failures naming
// each probe that errored or answered other than 200.
import http from 'node:http';

const [url] = process.argv.slice(2);
if (!url) throw new Error('usage: health-prober URL');
/** Between probes; short, so that any stall of kube-lb's is met by a probe. */
const PAUSE_MS = 10;
/** Far longer than any bound a test sets, so a stalled kube-lb shows as a slow answer, not a failure. */
const PROBE_TIMEOUT_MS = 30_000;

let answers = 0;
let slowestMs = 0;
const failures: string[] = [];
let stopping = false;

function probe(): Promise<void> {
  return new Promise((resolve) => {
    const start = performance.now();
    const fail = (why: string): void => {
      failures.push(why);
      resolve();
    };
    const req = http.get(url!, { agent: false, timeout: PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => {
        answers++;
        slowestMs = Math.max(slowestMs, performance.now() - start);
        if (res.statusCode === 200) resolve();
        else fail(`status ${res.statusCode}`);
      });
      res.on('error', (err) => fail(err.message));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)));
    req.on('error', (err) => fail(err.message));
  });
}

process.on('SIGTERM', () => {
  stopping = true;
});
await probe();
process.stdout.write('probing\n');
while (!stopping) {
  await probe();
  await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
}
process.stdout.write(JSON.stringify({ answers, slowestMs, failures }) + '\n');
