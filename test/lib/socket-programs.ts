// The ebpf backend's socket programs at the cgroup v2 root, as bpftool
// shows them: those serving one sandbox's node are the ones whose
// kube_lb_sockcfg holds that network namespace's cookie.
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { cgroupRoot } from '../../src/backends/ebpf/sockets.js';
import { SOCK_CONFIG_MAP, SOCK_PROGRAMS } from '../../src/backends/ebpf/datapath.js';
import { compiledRoot } from './paths.js';
import type { NodeSandbox } from './sandbox.js';

const exec = promisify(execFile);

async function bpftool<T>(...args: string[]): Promise<T> {
  return JSON.parse((await exec('bpftool', ['-j', ...args])).stdout) as T;
}

/**
 * An object looked up by id, or null once it is gone: between listing the
 * root's programs and reading one, another kube-lb (another test's sandbox)
 * may have detached its own.
 */
async function bpftoolById<T>(kind: 'prog' | 'map', command: 'show' | 'dump', id: number): Promise<T | null> {
  try {
    return await bpftool<T>(kind, command, 'id', String(id));
  } catch (err) {
    if (/No such file or directory/.test((err as { stdout?: string }).stdout ?? '')) return null;
    throw err;
  }
}

/** The network namespace cookie of the sandbox's node (node-a). */
async function nodeNetnsCookie(sandbox: NodeSandbox): Promise<bigint> {
  const native = path.join(compiledRoot, 'src', 'native', 'index.js');
  const { stdout } = await sandbox.execInNode(process.execPath, ['--input-type=module', '-e', `import { native } from '${native}'; console.log(String(native().netnsCookie()))`]);
  return BigInt(stdout.trim());
}

/** The programs attached at the cgroup v2 root. */
export async function attachedAtCgroupRoot(): Promise<{ id: number; name: string }[]> {
  const root = cgroupRoot();
  if (root === null) throw new Error('no cgroup v2 file system is mounted (/proc/self/mounts)');
  // bpftool prints nothing at all, not [], where nothing is attached.
  const { stdout } = await exec('bpftool', ['-j', 'cgroup', 'show', root]);
  return stdout.trim() === '' ? [] : (JSON.parse(stdout) as { id: number; name: string }[]);
}

/** The ids of the socket programs attached at the cgroup v2 root that serve the sandbox's node. */
export async function socketProgramsServing(sandbox: NodeSandbox): Promise<number[]> {
  const cookie = await nodeNetnsCookie(sandbox);
  const names: string[] = Object.values(SOCK_PROGRAMS);
  const serving: number[] = [];
  for (const { id, name } of await attachedAtCgroupRoot()) {
    if (!names.includes(name)) continue;
    const { map_ids: mapIds = [] } = (await bpftoolById<{ map_ids?: number[] }>('prog', 'show', id)) ?? {};
    for (const mapId of mapIds) {
      if ((await bpftoolById<{ name: string }>('map', 'show', mapId))?.name !== SOCK_CONFIG_MAP) continue;
      const [entry] = (await bpftoolById<{ formatted: { value: { netns_cookie: number } } }[]>('map', 'dump', mapId)) ?? [];
      if (entry !== undefined && BigInt(entry.formatted.value.netns_cookie) === cookie) serving.push(id);
    }
  }
  return serving.sort((a, b) => a - b);
}
