// A `pod-client serve` process kept in one place of the sandbox: the
// sandbox's clients there go through it, as starting Node for each costs
// more than most clients' work (many times more in the test VM).
import type { ChildProcess } from 'node:child_process';
import readline from 'node:readline';

interface Pending {
  resolve: (result: unknown) => void;
  reject: (err: Error) => void;
}

export class ClientAgent {
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private stderr = '';
  private exitedWith: string | null = null;

  constructor(
    private readonly child: ChildProcess,
    private readonly place: string,
  ) {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const reply = JSON.parse(line) as { id: number; result?: unknown; error?: string };
      const pending = this.pending.get(reply.id);
      if (!pending) return;
      this.pending.delete(reply.id);
      if (reply.error !== undefined) pending.reject(new Error(`client in ${place}: ${reply.error}`));
      else pending.resolve(reply.result);
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
    child.once('exit', (code, signal) => {
      this.exitedWith = `pod-client serve in ${place} exited with ${code ?? signal}: ${this.stderr}`;
      for (const { reject } of this.pending.values()) reject(new Error(this.exitedWith));
      this.pending.clear();
    });
  }

  get alive(): boolean {
    return this.exitedWith === null;
  }

  /** Runs one client (pod-client's arguments); fails after timeoutMs. A hold ends early once `until` settles. */
  request<T>(args: string[], timeoutMs: number, until?: Promise<unknown>): Promise<T> {
    if (this.exitedWith !== null) return Promise.reject(new Error(this.exitedWith));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`client in ${this.place} (${args.join(' ')}) did not finish in ${timeoutMs} ms`));
      }, timeoutMs);
      const settle = <A>(fn: (a: A) => void) => (a: A): void => {
        clearTimeout(timer);
        fn(a);
      };
      this.pending.set(id, { resolve: settle((r) => resolve(r as T)), reject: settle(reject) });
      this.child.stdin!.write(JSON.stringify({ id, args }) + '\n');
      const stop = (): void => {
        if (this.pending.has(id)) this.child.stdin!.write(JSON.stringify({ stop: id }) + '\n');
      };
      until?.then(stop, stop);
    });
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}
