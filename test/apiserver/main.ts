// Runs the test API server on 127.0.0.1 of the network namespace it is
// started in, controlled over a Unix socket (see remote.ts). Prints
// {"port":N} once it listens. Arguments: PKI_JSON_FILE CONTROL_SOCKET.
import fs from 'node:fs';
import http from 'node:http';
import type { TestPki } from './pki.js';
import { CONTROL_METHODS } from './remote.js';
import { TestApiServer } from './server.js';

const [pkiFile, socketPath] = process.argv.slice(2);
if (!pkiFile || !socketPath) throw new Error('usage: main.js PKI_JSON_FILE CONTROL_SOCKET');
const pki = JSON.parse(fs.readFileSync(pkiFile, 'utf8')) as TestPki;
const api = await TestApiServer.start({ cert: pki.serverCert, key: pki.serverKey, token: pki.token, bookmarkIntervalMs: 1000 });

const control = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d: Buffer) => (body += d.toString()));
  req.on('end', () => {
    const method = (req.url ?? '').slice(1) as (typeof CONTROL_METHODS)[number];
    if (!CONTROL_METHODS.includes(method)) {
      res.writeHead(404).end(`unknown control call ${method}`);
      return;
    }
    const call = api[method] as (...args: unknown[]) => Promise<unknown>;
    call.apply(api, JSON.parse(body || '[]') as unknown[]).then(
      (result) => res.writeHead(200).end(result === undefined ? '' : JSON.stringify(result)),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
});
fs.rmSync(socketPath, { force: true });
control.listen(socketPath, () => process.stdout.write(`${JSON.stringify({ port: api.port })}\n`));
process.once('SIGTERM', () => {
  control.close();
  void api.close().then(() => process.exit(0));
});
