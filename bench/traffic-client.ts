// The benchmark's client, run inside the client pod or as the external
// client. Prints one JSON line.
//   [--source=ADDR] MODE ...         ADDR: the source address to bind
//   rate  MS CONCURRENCY LIMIT_MS TARGET...
//                                    new TCP connections for MS ms over
//                                    CONCURRENCY loops, cycling over the
//                                    TARGETs (ip:port), after as long a
//                                    warm-up; each connection waits up to
//                                    LIMIT_MS for the server's line and its
//                                    close (the bench servers answer once,
//                                    then close), and its latency is the
//                                    whole exchange.
//   until NAME TIMEOUT_MS TARGET     new connections until NAME answers;
//                                    prints the wall-clock time it did.
import { parseArgs } from 'node:util';
import { firstLine } from '../test/lib/first-line.js';

const { values, positionals } = parseArgs({ options: { source: { type: 'string' } }, allowPositionals: true });

/**
 * Discarded before measuring: on a fresh node the first seconds of traffic
 * ran about 10% slower (JIT of the client and servers, fresh kernel state),
 * under every backend and direct alike.
 */
const WARMUP_MS = 3000;

const wallNow = (): number => performance.timeOrigin + performance.now();

function once(target: string, timeoutMs: number, opts: { untilServerCloses?: boolean } = {}): Promise<string> {
  const [host, port] = target.split(':');
  return firstLine(host!, Number(port), timeoutMs, { ...opts, ...(values.source && { localAddress: values.source }) });
}

async function rate(durationMs: number, concurrency: number, limitMs: number, targets: string[]): Promise<object> {
  let latencies: number[] = [];
  let failures: Record<string, number> = {};
  let next = 0;
  const run = async (ms: number): Promise<number> => {
    latencies = [];
    failures = {};
    const start = performance.now();
    const loop = async (): Promise<void> => {
      while (performance.now() - start < ms) {
        try {
          const t0 = performance.now();
          await once(targets[next++ % targets.length]!, limitMs, { untilServerCloses: true });
          latencies.push(performance.now() - t0);
        } catch (err) {
          const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
          failures[reason] = (failures[reason] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    return performance.now() - start;
  };
  await run(WARMUP_MS);
  const warmupConnections = latencies.length;
  const elapsedMs = await run(durationMs);
  return { connections: latencies.length, warmupConnections, failures, elapsedMs, latenciesMs: latencies };
}

/**
 * The least time between two of until's attempts: one refused at once (an
 * address bound before its service is programmed) must not make the poller
 * spin, taking a CPU from the kube-lb whose sync it waits for.
 */
const POLL_INTERVAL_MS = 10;

async function until(name: string, timeoutMs: number, target: string): Promise<object> {
  process.stderr.write('polling\n');
  const start = performance.now();
  let attempts = 0;
  while (performance.now() - start < timeoutMs) {
    attempts++;
    const attemptStart = performance.now();
    try {
      if ((await once(target, 200)) === name) return { answeredAt: wallNow(), attempts };
    } catch {
      // Not there yet.
    }
    const rest = attemptStart + POLL_INTERVAL_MS - performance.now();
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
  }
  return { answeredAt: null, attempts };
}

const [mode, ...args] = positionals;
let result: object;
if (mode === 'rate') result = await rate(Number(args[0]), Number(args[1]), Number(args[2]), args.slice(3));
else if (mode === 'until') result = await until(args[0]!, Number(args[1]), args[2]!);
else throw new Error('usage: traffic-client [--source=ADDR] rate MS CONCURRENCY LIMIT_MS TARGET... | until NAME TIMEOUT_MS TARGET');
process.stdout.write(JSON.stringify(result) + '\n');
