// The node's network interfaces, read and watched through iproute2 so the
// answer always comes from the current network namespace (sysfs may show
// another one's, e.g. under nsenter --net).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Link {
  ifindex: number;
  name: string;
  /** Its global-scope IPv4 addresses, primary first. */
  ipv4: string[];
}

export async function listLinks(): Promise<Link[]> {
  const { stdout } = await run('ip', ['-j', 'address', 'show']);
  return (JSON.parse(stdout) as { ifindex: number; ifname: string; addr_info?: { family: string; local: string; scope: string }[] }[]).map((l) => ({
    ifindex: l.ifindex,
    name: l.ifname,
    ipv4: (l.addr_info ?? []).filter((a) => a.family === 'inet' && a.scope === 'global').map((a) => a.local),
  }));
}

/** Calls onChange (debounced) whenever a link or an address appears, changes or goes away. */
export class LinkWatcher {
  private child: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly onChange: () => void,
    private readonly onError: (err: Error) => void,
  ) {}

  start(): void {
    this.stopped = false;
    // ip monitor only notices its parent is gone when it next writes, so a
    // kube-lb killed with SIGKILL would leave it behind: setpriv (util-linux)
    // has the kernel kill it with its parent instead.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'ip', '-o', 'monitor', 'link', 'address'], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.child = child;
    child.stdout!.on('data', () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(this.onChange, 20);
    });
    child.on('error', (err) => this.onError(err));
    child.on('exit', (code) => {
      if (this.stopped) return;
      this.onError(new Error(`ip monitor exited with ${code}; restarting it`));
      setTimeout(() => !this.stopped && this.start(), 1000).unref();
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.child?.kill();
  }
}
