// One TCP exchange as the test servers speak it: connect, read the first
// line (the server's name), close. With untilServerCloses the client waits
// for the server to close first (the bench's one-shot servers do), so the
// TIME_WAIT is the server's. localAddress and localPort pick the client's
// source address and port.
import net from 'node:net';

export function firstLine(host: string, port: number, timeoutMs: number, opts: { untilServerCloses?: boolean; localAddress?: string; localPort?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    let line: string | undefined;
    const sock = net.connect({ host, port, timeout: timeoutMs, ...(opts.localAddress && { localAddress: opts.localAddress }), ...(opts.localPort && { localPort: opts.localPort }) });
    sock.once('data', (d) => {
      line = d.toString().split('\n')[0]!;
      if (opts.untilServerCloses) return;
      resolve(line);
      sock.destroy();
    });
    sock.once('end', () => {
      sock.destroy();
      if (line === undefined) reject(new Error('closed without an answer'));
      else resolve(line);
    });
    sock.once('timeout', () => {
      sock.destroy();
      reject(new Error('timeout'));
    });
    sock.once('error', (err) => {
      sock.destroy();
      reject(err);
    });
  });
}
