// A cgroup of a test's own under the cgroup v2 root, holding no process:
// socket programs attached there meet nobody's connections, as the
// machine's root would make them meet everyone's.
import fs from 'node:fs';
import path from 'node:path';
import { cgroupRoot } from '../../src/backends/ebpf/sockets.js';

export function createTestCgroup(name: string): string {
  const root = cgroupRoot();
  if (root === null) throw new Error('no cgroup v2 file system is mounted (/proc/self/mounts): mount one (mount -t cgroup2 none /sys/fs/cgroup)');
  const dir = path.join(root, `${name}-${process.pid}`);
  fs.mkdirSync(dir);
  return dir;
}

/** A command line that runs cmd with args as a process of the cgroup, so that programs attached there meet its sockets. */
export function inCgroup(dir: string, cmd: string, args: readonly string[]): string[] {
  return ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', dir, cmd, ...args];
}

/** Removes it; programs attached to it go with it. */
export function removeTestCgroup(dir: string): void {
  fs.rmdirSync(dir);
}
