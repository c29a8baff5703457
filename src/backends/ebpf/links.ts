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
  /** Its global-scope IPv6 addresses, primary first. */
  ipv6: string[];
  /** The bridge (or bond) it is a port of. */
  master: string | null;
  /** Its kind ("bridge", "veth", ...); null for a plain device. */
  kind: string | null;
}

interface IpLink {
  ifindex: number;
  ifname: string;
  master?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; scope: string }[];
}

export async function listLinks(): Promise<Link[]> {
  const { stdout } = await run('ip', ['-d', '-j', 'address', 'show']);
  return (JSON.parse(stdout) as IpLink[]).map((l) => ({
    ifindex: l.ifindex,
    name: l.ifname,
    ipv4: (l.addr_info ?? []).filter((a) => a.family === 'inet' && a.scope === 'global').map((a) => a.local),
    ipv6: (l.addr_info ?? []).filter((a) => a.family === 'inet6' && a.scope === 'global').map((a) => a.local),
    master: l.master ?? null,
    kind: l.linkinfo?.info_kind ?? null,
  }));
}

/** A route of the main IPv4 table that leads straight onto a link, with no gateway. */
export interface DirectRoute {
  /** "10.244.0.5" or "10.244.0.0/24". */
  dst: string;
  dev: string;
}

export async function listDirectRoutes(): Promise<DirectRoute[]> {
  const { stdout } = await run('ip', ['-4', '-j', 'route', 'show', 'table', 'main']);
  const routes = JSON.parse(stdout) as { dst: string; dev?: string; gateway?: string; type?: string }[];
  // Blackhole and unreachable routes (Calico's for its blocks) lead nowhere.
  return routes.filter((r) => r.dev !== undefined && r.gateway === undefined && (r.type ?? 'unicast') === 'unicast' && r.dst !== 'default').map((r) => ({ dst: r.dst, dev: r.dev! }));
}

/** Calls onChange (debounced) whenever a link, an address or a route appears, changes or goes away. */
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
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'ip', '-o', 'monitor', 'link', 'address', 'route'], { stdio: ['ignore', 'pipe', 'inherit'] });
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
