// The address families a backend serves on this node: those the capability
// table gives it that the kernel has. A kernel without IPv6 (booted with
// ipv6.disable=1) has no /proc/net/if_inet6: the backends then write no IPv6
// state, and the model leaves IPv6 addresses out with its warning, as
// kube-proxy falls back to single-stack where a family is missing.
import fs from 'node:fs';
import type { IPFamily } from '../model/contract.js';
import type { BackendName } from './registry.js';
import { familiesOf } from './capabilities.js';

function kernelHasIpv6(): boolean {
  return fs.existsSync('/proc/net/if_inet6');
}

export function servedFamilies(backend: BackendName, hasIpv6 = kernelHasIpv6()): IPFamily[] {
  return familiesOf(backend).filter((family) => family === 'IPv4' || hasIpv6);
}
