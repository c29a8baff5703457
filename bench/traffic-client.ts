// The benchmark's client, run inside the client pod. Prints one JSON line.
//   rate  MS CONCURRENCY TARGET...   new TCP connections for MS ms over
//                                    CONCURRENCY loops, cycling over the
//                                    TARGETs (ip:port); each connection
//                                    waits for the server's first line.
//   until NAME TIMEOUT_MS TARGET     new connections until NAME answers;
//                                    prints the wall-clock time it did.
import { firstLine } from '../test/lib/first-line.js';

const wallNow = (): number => performance.timeOrigin + performance.now();

function once(target: string, timeoutMs: number): Promise<string> {
  const [host, port] = target.split(':');
  return firstLine(host!, Number(port), timeoutMs);
}

async function rate(durationMs: number, concurrency: number, targets: string[]): Promise<object> {
  const latencies: number[] = [];
  let failures = 0;
  let next = 0;
  const start = performance.now();
  const loop = async (): Promise<void> => {
    while (performance.now() - start < durationMs) {
      const t0 = performance.now();
      try {
        await once(targets[next++ % targets.length]!, 1000);
        latencies.push(performance.now() - t0);
      } catch {
        failures++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { connections: latencies.length, failures, elapsedMs: performance.now() - start, latenciesMs: latencies };
}

async function until(name: string, timeoutMs: number, target: string): Promise<object> {
  process.stderr.write('polling\n');
  const start = performance.now();
  let attempts = 0;
  while (performance.now() - start < timeoutMs) {
    attempts++;
    try {
      if ((await once(target, 200)) === name) return { answeredAt: wallNow(), attempts };
    } catch {
      // Not there yet.
    }
  }
  return { answeredAt: null, attempts };
}

const [mode, ...args] = process.argv.slice(2);
let result: object;
if (mode === 'rate') result = await rate(Number(args[0]), Number(args[1]), args.slice(2));
else if (mode === 'until') result = await until(args[0]!, Number(args[1]), args[2]!);
else throw new Error('usage: traffic-client rate MS CONCURRENCY TARGET... | until NAME TIMEOUT_MS TARGET');
process.stdout.write(JSON.stringify(result) + '\n');
