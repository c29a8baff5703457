// One TCP exchange as the test servers speak it: connect, read the first
// line (the server's name), close.
import net from 'node:net';

export function firstLine(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port, timeout: timeoutMs });
    sock.once('data', (d) => {
      resolve(d.toString().split('\n')[0]!);
      sock.destroy();
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
