// The test client in the sandboxes, run in a pod, in the external client's
// namespace or in a node's own (host-network) namespace. Prints one JSON
// line of results.
//   node pod-client.js tcp IP PORT COUNT   COUNT new connections; who answered each
//   node pod-client.js udp IP PORT COUNT   COUNT datagrams, each from a new socket
//     (tcp and udp take IP,IP,... too: COUNT to each address in turn)
//   node pod-client.js hold IP PORT MS     one connection, a line every 50 ms for MS
//   node pod-client.js udp-hold IP PORT MS one UDP socket, a datagram every 50 ms for MS;
//                                          reports who answered, in order
//   node pod-client.js udp-connected IP PORT MS  as udp-hold with a connected socket;
//                                          one the kernel ends is replaced by a new one,
//                                          as a resolver does (reconnects counts them)
// Options, after the arguments:
//   --source=IP      bind this source address (the namespace must hold it)
//   --source-port=N  tcp: bind this source port (connections in turn reuse it)
//   --report-source  tcp and udp: ask each server which client address it
//                    saw; results then carry seenFrom (server, address, count)
//   --timeout=MS     tcp and udp: how long each connection or datagram waits
//                    for its answer, in host milliseconds (default 1000),
//                    scaled by the slowdown
//   node pod-client.js serve   runs requests as they come, concurrently: one
//                    JSON line each on stdin, {"id": N, "args": [MODE, IP, ...]},
//                    answered by {"id": N, "result": ...} or {"id": N, "error": "..."};
//                    {"stop": N} ends request N (hold, udp-hold, udp-connected)
//                    before its time is up.
//                    The sandbox keeps one per place, as starting Node costs
//                    more than most requests, many times more under emulation.
import net from 'node:net';
import dgram from 'node:dgram';
import readline from 'node:readline';
import { firstLine } from './first-line.js';
import { slow } from './slowdown.js';

// Host milliseconds, scaled with the machine: under emulation a connection takes many times longer.
const DEFAULT_TIMEOUT_MS = 1000;
const USAGE = 'usage: pod-client tcp|udp|hold|udp-hold|udp-connected IP PORT COUNT [--source=IP] [--source-port=N] [--report-source] [--timeout=MS], or pod-client serve';

/** One client run, from its arguments. */
interface Request {
  mode: string;
  /** The target, or targets in turn (tcp and udp). */
  ip: string;
  port: number;
  /** Connections or datagrams (tcp, udp), or milliseconds (the others). */
  count: number;
  source?: string;
  sourcePort: number;
  reportSource: boolean;
  /** tcp and udp: each attempt's wait for its answer, scaled. */
  timeoutMs: number;
}

function parseRequest(args: string[]): Request {
  const positional = args.filter((a) => !a.startsWith('--'));
  const options = args.filter((a) => a.startsWith('--'));
  const [mode, ip, portArg, countArg] = positional;
  const port = Number(portArg);
  const count = Number(countArg);
  const source = options.find((o) => o.startsWith('--source='))?.slice('--source='.length);
  const sourcePort = Number(options.find((o) => o.startsWith('--source-port='))?.slice('--source-port='.length) ?? 0);
  const reportSource = options.includes('--report-source');
  const timeoutOption = options.find((o) => o.startsWith('--timeout='))?.slice('--timeout='.length);
  const timeoutMs = Number(timeoutOption ?? DEFAULT_TIMEOUT_MS);
  const unknownOptions = options.filter((o) => !o.startsWith('--source=') && !o.startsWith('--source-port=') && !o.startsWith('--timeout=') && o !== '--report-source');
  if (!mode || !(mode in RUN) || !ip || !Number.isInteger(port) || !Number.isInteger(count)) throw new Error(`${args.join(' ')}: ${USAGE}`);
  if (unknownOptions.length > 0) throw new Error(`unknown options ${unknownOptions.join(' ')}; ${USAGE}`);
  if (!(timeoutMs > 0)) throw new Error(`--timeout wants a number of milliseconds; ${USAGE}`);
  if ((reportSource || timeoutOption !== undefined) && mode !== 'tcp' && mode !== 'udp') throw new Error(`--report-source and --timeout work with tcp and udp only; ${USAGE}`);
  return { mode, ip, port, count, ...(source !== undefined && { source }), sourcePort, reportSource, timeoutMs: slow(timeoutMs) };
}

interface Result {
  answers: Record<string, number>;
  failures: number;
  errors: string[];
  seenFrom?: Record<string, Record<string, number>>;
}

function note(result: Result, who: string | null, err?: string): void {
  if (who) result.answers[who] = (result.answers[who] ?? 0) + 1;
  else {
    result.failures++;
    if (err && result.errors.length < 5) result.errors.push(err);
  }
}

/** Counts one answer: a bare name, or with --report-source "name address". */
function noteAnswer(req: Request, result: Result, answer: string): void {
  if (!req.reportSource) return note(result, answer);
  const [who, from] = answer.split(' ');
  if (!who || !from) return note(result, null, `not a "name address" answer: ${JSON.stringify(answer)}`);
  note(result, who);
  const seen = (result.seenFrom ??= {});
  const bySource = (seen[who] ??= {});
  bySource[from] = (bySource[from] ?? 0) + 1;
}

/** With --report-source: the greeting, then the answer to a "source" line. */
function tcpSourceOnce(req: Request, address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: address, port: req.port, timeout: req.timeoutMs, ...(req.source && { localAddress: req.source }), ...(req.sourcePort && { localPort: req.sourcePort }) });
    let buffered = '';
    const fail = (err: Error): void => {
      sock.destroy();
      reject(err);
    };
    sock.once('connect', () => sock.write('source\n'));
    sock.on('data', (d) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      if (lines.length < 3) return;
      sock.destroy();
      resolve(lines[1]!);
    });
    sock.once('end', () => fail(new Error('closed before answering "source"')));
    sock.once('timeout', () => fail(new Error('timeout')));
    sock.once('error', fail);
  });
}

const tcpOnce = (req: Request, address: string): Promise<string> =>
  req.reportSource ? tcpSourceOnce(req, address) : firstLine(address, req.port, req.timeoutMs, { ...(req.source && { localAddress: req.source }), ...(req.sourcePort && { localPort: req.sourcePort }) });

/** A UDP socket of the family of `address`, the target. */
function udpSocket(req: Request, address: string): dgram.Socket {
  const sock = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
  if (req.source) sock.bind({ address: req.source });
  return sock;
}

function udpOnce(req: Request, address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = udpSocket(req, address);
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error('timeout'));
    }, req.timeoutMs);
    sock.once('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve(msg.toString());
    });
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.close();
      reject(err);
    };
    sock.once('error', fail);
    // Connected, so that an ICMP port unreachable fails it at once
    // (ECONNREFUSED). A connect that fails (a socket-level load balancer
    // refusing) comes to the callback, not as an 'error' event.
    sock.connect(req.port, address, ((err?: Error) => (err ? fail(err) : sock.send(req.reportSource ? 'source' : 'who'))) as () => void);
  });
}

// One connection at a time, even across addresses: connections made at once
// can share a source port, and two flows from one client port to two
// services that land on one endpoint are a datapath question of their own
// (a conformance row of its own), not what a sweep checks.
async function repeat(req: Request, once: (req: Request, address: string) => Promise<string>): Promise<Result> {
  const result: Result = { answers: {}, failures: 0, errors: [] };
  const addresses = req.ip.split(',');
  for (const address of addresses) {
    for (let i = 0; i < req.count; i++) {
      try {
        noteAnswer(req, result, await once(req, address));
      } catch (err) {
        note(result, null, addresses.length > 1 ? `${address}: ${(err as Error).message}` : (err as Error).message);
      }
    }
  }
  return result;
}

/** Calls end once `count` ms have passed, or sooner if stop aborts. */
function afterCount(req: Request, stop: AbortSignal, end: () => void): void {
  const finish = (): void => {
    clearTimeout(timer);
    stop.removeEventListener('abort', finish);
    end();
  };
  const timer = setTimeout(finish, stop.aborted ? 0 : req.count);
  stop.addEventListener('abort', finish, { once: true });
}

/** Holds one connection for `count` ms (or until stopped), sending a line every 50 ms; every answer must come back. */
function hold(req: Request, stop: AbortSignal): Promise<Result & { sent: number }> {
  return new Promise((resolve) => {
    const result = { answers: {} as Record<string, number>, failures: 0, errors: [] as string[], sent: 0 };
    const sock = net.connect({ host: req.ip, port: req.port, ...(req.source && { localAddress: req.source }) });
    let buffered = '';
    let interval: NodeJS.Timeout | undefined;
    const finish = (err?: string): void => {
      clearInterval(interval);
      if (err) note(result, null, err);
      sock.destroy();
      resolve(result);
    };
    sock.on('data', (d) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) note(result, line);
    });
    sock.on('error', (err) => finish(err.message));
    sock.on('close', () => finish());
    sock.once('connect', () => {
      interval = setInterval(() => {
        sock.write('ping\n');
        result.sent++;
      }, 50);
      afterCount(req, stop, () => {
        clearInterval(interval);
        // Let the last answers arrive.
        setTimeout(() => finish(), 300);
      });
    });
  });
}

interface HeldUdp extends Result {
  sent: number;
  order: string[];
}

/**
 * Calls send every 50 ms for `count` ms (or until stopped), each call a
 * datagram sent; once the last answers had time to arrive, counts those
 * that never came as failures and calls end.
 */
function sendForCount(req: Request, stop: AbortSignal, result: HeldUdp, send: () => void, end: () => void): void {
  const interval = setInterval(() => {
    send();
    result.sent++;
  }, 50);
  afterCount(req, stop, () => {
    clearInterval(interval);
    setTimeout(() => {
      result.failures += result.sent - result.order.length;
      end();
    }, 300);
  });
}

/** Notes an answer of a held UDP flow, in order. */
function noteInOrder(result: HeldUdp, msg: Buffer): void {
  note(result, msg.toString());
  result.order.push(msg.toString());
}

/** Keeps one UDP flow (one source port) for `count` ms (or until stopped), as a long-lived UDP client does. */
function udpHold(req: Request, stop: AbortSignal): Promise<HeldUdp> {
  return new Promise((resolve) => {
    const result: HeldUdp = { answers: {}, failures: 0, errors: [], sent: 0, order: [] };
    const sock = udpSocket(req, req.ip);
    sock.on('message', (msg) => noteInOrder(result, msg));
    sock.on('error', (err) => note(result, null, err.message));
    sendForCount(
      req,
      stop,
      result,
      () => sock.send('who', req.port, req.ip),
      () => {
        sock.close();
        resolve(result);
      },
    );
  });
}

/** Keeps a connected UDP socket for `count` ms (or until stopped); when the kernel ends it (ECONNABORTED, or EDESTADDRREQ on a send that comes before the read), connects a new one. */
function udpConnected(req: Request, stop: AbortSignal): Promise<HeldUdp & { reconnects: number }> {
  return new Promise((resolve) => {
    const result = { answers: {}, failures: 0, errors: [] as string[], sent: 0, order: [] as string[], reconnects: -1 };
    let sock: dgram.Socket | null = null;
    const connect = (): void => {
      const next = udpSocket(req, req.ip);
      next.on('message', (msg) => noteInOrder(result, msg));
      next.on('error', (err) => {
        if (next !== sock) return;
        if (result.errors.length < 5) result.errors.push(err.message);
        sock = null;
        next.close();
        connect();
      });
      next.connect(req.port, req.ip, () => (sock = next));
      result.reconnects++;
    };
    connect();
    sendForCount(
      req,
      stop,
      result,
      () => {
        // Between a socket the kernel ended and the next one's connect, the datagram is lost.
        const current = sock;
        current?.send('who', (err) => {
          if (err) current.emit('error', err);
        });
      },
      () => {
        sock?.close();
        sock = null;
        resolve(result);
      },
    );
  });
}

const RUN: Record<string, (req: Request, stop: AbortSignal) => Promise<Result>> = {
  tcp: (req) => repeat(req, tcpOnce),
  udp: (req) => repeat(req, udpOnce),
  hold,
  'udp-hold': udpHold,
  'udp-connected': udpConnected,
};

const run = async (args: string[], stop: AbortSignal): Promise<Result> => {
  const req = parseRequest(args);
  return RUN[req.mode]!(req, stop);
};

/** serve: requests in, results out, as they finish; a stop line ends a running request early. */
function serve(): void {
  const answer = (reply: object): boolean => process.stdout.write(JSON.stringify(reply) + '\n');
  const running = new Map<number, AbortController>();
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const request = JSON.parse(line) as { id: number; args: string[] } | { stop: number };
    if ('stop' in request) return running.get(request.stop)?.abort();
    const { id, args } = request;
    const stop = new AbortController();
    running.set(id, stop);
    run(args, stop.signal)
      .then(
        (result) => answer({ id, result }),
        (err: Error) => answer({ id, error: err.message }),
      )
      .finally(() => running.delete(id));
  });
}

if (process.argv[2] === 'serve') serve();
else process.stdout.write(JSON.stringify(await run(process.argv.slice(2), new AbortController().signal)) + '\n');
