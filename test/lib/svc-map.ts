// Reading and writing kube_lb_svc behind kube-lb's back, as a write cut
// short (a crash, a full map) or a wrong count would leave it.
import { native } from '../../src/native/index.js';
import type { Frontend } from '../../src/model/contract.js';
import { layouts, writeSvcBackend, writeSvcCount, writeSvcKey } from '../../src/backends/ebpf/encoding.js';

export interface RawSvcEntry {
  frontend: Frontend;
  slot: number;
  /** Slot 0's backend count; other slots get a backend. */
  count?: number;
}

/** Entries of 10.96.9.9:80/TCP, which no test service uses, in slots from..to and without a slot 0. */
export function orphanSlots(from: number, to: number, frontend: Frontend = { ip: '10.96.9.9', port: 80, protocol: 'TCP' }): RawSvcEntry[] {
  return Array.from({ length: to - from + 1 }, (_, i) => ({ frontend, slot: from + i }));
}

function withSvcMap<T>(pinRoot: string, body: (fd: number) => T): T {
  const fd = native().objGet(`${pinRoot}/kube_lb_svc`);
  try {
    return body(fd);
  } finally {
    native().closeFd(fd);
  }
}

export function writeSvcEntries(pinRoot: string, entries: readonly RawSvcEntry[]): void {
  const keys = Buffer.alloc(entries.length * layouts.lb_svc_key.size);
  const values = Buffer.alloc(entries.length * layouts.lb_svc_value.size);
  entries.forEach(({ frontend, slot, count }, i) => {
    writeSvcKey(keys, i * layouts.lb_svc_key.size, frontend, 'internal', slot, 'IPv4');
    if (slot === 0) writeSvcCount(values, i * layouts.lb_svc_value.size, count ?? 0, { kind: 'ClusterIP', noEndpoints: 'reject', snat: false, sourceRanges: false, affinityTimeout: 0, maglevTableSize: 0 });
    else writeSvcBackend(values, i * layouts.lb_svc_value.size, { ip: '10.244.0.11', port: 8080 }, 'IPv4');
  });
  withSvcMap(pinRoot, (fd) => native().mapUpdateBatch(fd, keys, values, entries.length));
}

/** Every entry of kube_lb_svc, counted from the kernel. */
export function svcEntries(pinRoot: string): number {
  return withSvcMap(pinRoot, (fd) => native().mapDump(fd).count);
}
