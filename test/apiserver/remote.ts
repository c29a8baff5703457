// The test API server in another network namespace (kube-lb's node), driven
// from the test over a Unix socket, which crosses network namespaces: the
// child runs main.ts, and RemoteApiServer forwards each control call to it.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeSandbox } from '../lib/sandbox.js';
import type { TestPki } from './pki.js';
import type { ApiServerControl, ServerStats } from './server.js';

/** The control calls main.ts accepts. */
export const CONTROL_METHODS = ['apply', 'applyAll', 'delete', 'dropWatches', 'compact', 'setOutage', 'stats'] as const;

export class RemoteApiServer implements ApiServerControl {
  private constructor(
    readonly port: number,
    private readonly socketPath: string,
    private readonly child: ChildProcess,
  ) {}

  /** Starts the server in the sandbox's node namespace on 127.0.0.1; `dir` holds the PKI file and the control socket. */
  static async start(sandbox: NodeSandbox, pki: TestPki, dir: string): Promise<RemoteApiServer> {
    const pkiFile = path.join(dir, 'pki.json');
    fs.writeFileSync(pkiFile, JSON.stringify(pki), { mode: 0o600 });
    const socketPath = path.join(dir, 'control.sock');
    const main = fileURLToPath(new URL('./main.js', import.meta.url));
    const child = sandbox.spawnInNode(process.execPath, [main, pkiFile, socketPath]);
    const port = await new Promise<number>((resolve, reject) => {
      let output = '';
      child.stdout!.on('data', (d: Buffer) => {
        output += d.toString();
        const m = /"port":(\d+)/.exec(output);
        if (m) resolve(Number(m[1]));
      });
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      child.once('exit', (code) => reject(new Error(`test API server exited with ${code}: ${output}`)));
    });
    return new RemoteApiServer(port, socketPath, child);
  }

  apply(object: Record<string, unknown>): Promise<void> {
    return this.call('apply', [object]) as Promise<void>;
  }
  applyAll(objects: Record<string, unknown>[]): Promise<void> {
    return this.call('applyAll', [objects]) as Promise<void>;
  }
  delete(kind: 'Service' | 'EndpointSlice' | 'Node', namespace: string, name: string): Promise<void> {
    return this.call('delete', [kind, namespace, name]) as Promise<void>;
  }
  dropWatches(): Promise<void> {
    return this.call('dropWatches', []) as Promise<void>;
  }
  compact(): Promise<void> {
    return this.call('compact', []) as Promise<void>;
  }
  setOutage(down: boolean): Promise<void> {
    return this.call('setOutage', [down]) as Promise<void>;
  }
  stats(): Promise<ServerStats> {
    return this.call('stats', []) as Promise<ServerStats>;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill('SIGTERM');
    });
  }

  private call(method: (typeof CONTROL_METHODS)[number], args: unknown[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      // A connection per call: a kept-alive one the server closes after 5 s idle (a loaded machine, a
      // long batch being built) fails the next call's write with EPIPE.
      const req = http.request({ socketPath: this.socketPath, method: 'POST', path: `/${method}`, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => (res.statusCode === 200 ? resolve(body === '' ? undefined : JSON.parse(body)) : reject(new Error(`${method}: ${body}`))));
      });
      req.on('error', reject);
      req.end(JSON.stringify(args));
    });
  }
}
