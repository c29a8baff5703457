// Connected UDP sockets translated to a backend that a sync removed keep
// sending to it: UDP has no close to end them. As the TC path flushes such
// flows, kube-lb destroys such sockets with an iterator program
// (bpf/include/sock_destroy.h), on kernels with the bpf_sock_destroy kfunc
// (6.5 and later). A socket iterator sees one network namespace's sockets:
// the one it is made in.
import fs from 'node:fs';
import { type Destination, type Frontend, type IPFamily, destinationKey } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';
import { encodeSockGoneKey } from './encoding.js';
import type { ServiceChange } from './service-map.js';

/** kube_lb_sock_gone's capacity (LB_SOCK_GONE_MAX_ENTRIES): more pairs take several runs. */
const GONE_MAX_ENTRIES = 65536;
const PRESENT = Buffer.from([1]);

export interface GoneBackend {
  frontend: Frontend;
  family: IPFamily;
  backend: Destination;
}

/** The backends that changes removed from UDP frontends' internal sets, the ones sockets are translated to. */
export function goneSocketBackends(changes: readonly ServiceChange[]): GoneBackend[] {
  return changes
    .filter((c) => c.scope === 'internal' && c.frontend.protocol === 'UDP')
    .flatMap(({ frontend, family, current, wanted }) => {
      const kept = new Set((wanted ?? []).map(destinationKey));
      return (current ?? []).filter((d) => !kept.has(destinationKey(d))).map((backend) => ({ frontend, family, backend }));
    });
}

/** Every network namespace of the machine's processes but the caller's, one /proc/PID/ns/net each. */
function otherNamespaces(): string[] {
  const seen = new Set([fs.statSync('/proc/self/ns/net').ino]);
  const paths: string[] = [];
  for (const entry of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    const nsPath = `/proc/${entry}/ns/net`;
    let ino: number;
    try {
      ino = fs.statSync(nsPath).ino;
    } catch {
      continue; // the process ended
    }
    if (seen.has(ino)) continue;
    seen.add(ino);
    paths.push(nsPath);
  }
  return paths;
}

export class SocketDestroyer {
  constructor(
    private readonly lib: NativeAddon,
    private readonly programFd: number,
    private readonly goneFd: number,
    /** --bpf-socket-lb=all: pods' sockets are translated too, in namespaces of their own. */
    private readonly allNamespaces: boolean,
  ) {}

  /** Destroys the connected UDP sockets translated to gone backends; returns how many. */
  destroy(gone: readonly GoneBackend[]): number {
    let destroyed = 0;
    for (let i = 0; i < gone.length; i += GONE_MAX_ENTRIES) {
      const keys = gone.slice(i, i + GONE_MAX_ENTRIES).map(({ frontend, family, backend }) => encodeSockGoneKey(frontend, backend, family));
      try {
        for (const key of keys) this.lib.mapUpdate(this.goneFd, key, PRESENT);
        destroyed += this.runEverywhere();
      } finally {
        for (const key of keys) this.lib.mapDelete(this.goneFd, key);
      }
    }
    return destroyed;
  }

  /** Runs the iterator in every namespace whose sockets are translated; the iterator writes a byte per socket destroyed. */
  private runEverywhere(): number {
    let destroyed = this.lib.iterRun(this.programFd, null);
    if (!this.allNamespaces) return destroyed;
    for (const nsPath of otherNamespaces()) {
      try {
        destroyed += this.lib.iterRun(this.programFd, nsPath);
      } catch (err) {
        // Its last process ended since: no socket is left there.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return destroyed;
  }
}
