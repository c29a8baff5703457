// A TCP connection that goes quiet on demand, for tests that act on a
// connection while nothing else moves on it. Run in a pod:
//   node idle-client.js IP PORT
// Connects, reads the greeting, exchanges one line, prints "idle" and sends
// nothing more. On SIGUSR2 it sends one more line, waits for the answer
// (or an error, or a second without one) and prints one JSON line:
// { "answer": "web-1" } or { "error": "read ECONNRESET" }.
import net from 'node:net';

const [ip, portArg] = process.argv.slice(2);
const port = Number(portArg);
if (!ip || !Number.isInteger(port)) throw new Error('usage: idle-client IP PORT');
const ANSWER_TIMEOUT_MS = 1000;

const sock = net.connect({ host: ip, port });
let buffered = '';
let lines = 0;
let timer: NodeJS.Timeout | undefined;
const finish = (result: { answer: string } | { error: string }): void => {
  clearTimeout(timer);
  process.stdout.write(JSON.stringify(result) + '\n');
  sock.destroy();
  process.exit(0);
};
sock.on('data', (d) => {
  buffered += d.toString();
  const received = buffered.split('\n');
  buffered = received.pop()!;
  for (const line of received) {
    lines++;
    // The greeting, then the answer to the first line; the third answers the line sent on SIGUSR2.
    if (lines === 1) sock.write('ping\n');
    else if (lines === 2) process.stdout.write('idle\n');
    else finish({ answer: line });
  }
});
sock.on('error', (err) => finish({ error: err.message }));
sock.on('close', () => finish({ error: 'closed by the peer' }));
process.on('SIGUSR2', () => {
  if (lines < 2) return finish({ error: 'SIGUSR2 before the connection was idle' });
  sock.write('ping\n');
  timer = setTimeout(() => finish({ error: `no answer within ${ANSWER_TIMEOUT_MS} ms` }), ANSWER_TIMEOUT_MS);
});
