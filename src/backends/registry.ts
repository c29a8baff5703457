// The datapaths kube-lb can drive, chosen with --backend.
import type { Logger } from '../log.js';
import type { Backend } from './backend.js';
import { EbpfBackend } from './ebpf/ebpf-backend.js';

export const BACKEND_NAMES = ['ebpf', 'iptables', 'nftables', 'ipvs'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendOptions {
  log: Logger;
  /** ebpf: where maps and programs are pinned. */
  bpfPinPath: string;
  /** ebpf: attach to interfaces whose names start with this. */
  podInterfacePrefix: string | undefined;
}

export function parseBackendName(value: string): BackendName {
  if (!(BACKEND_NAMES as readonly string[]).includes(value)) {
    throw new Error(`--backend=${value}: unknown backend; choose one of ${BACKEND_NAMES.join(', ')}`);
  }
  return value as BackendName;
}

function unavailable(name: BackendName): never {
  throw new Error(`--backend=${name} is not available in this build yet; use --backend=ebpf`);
}

/** Starts a backend that will sync: loads or reuses its kernel state. */
export async function startBackend(name: BackendName, opts: BackendOptions): Promise<Backend> {
  if (name !== 'ebpf') unavailable(name);
  if (!opts.podInterfacePrefix) throw new Error('--backend=ebpf needs --pod-interface-name-prefix: the interfaces to attach to');
  return EbpfBackend.run({ pinPath: opts.bpfPinPath, interfacePrefix: opts.podInterfacePrefix, log: opts.log });
}

/** Opens what a backend left in the kernel, for inspect and cleanup. */
export function openBackend(name: BackendName, opts: BackendOptions): Backend {
  if (name !== 'ebpf') unavailable(name);
  return EbpfBackend.open({ pinPath: opts.bpfPinPath, log: opts.log });
}
