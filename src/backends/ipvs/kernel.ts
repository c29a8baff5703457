// What the ipvs backend needs from the kernel: modules loaded (or built in)
// and kube-proxy's IPVS sysctls. A kernel without them fails fast, naming
// every missing feature, instead of failing on the first netlink message.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import type { Logger } from '../../log.js';
import type { NativeAddon } from '../../native/index.js';

const exec = promisify(execFile);

interface KernelFeature {
  /** How an operator knows it: the config option. */
  name: string;
  module: string;
  /** Whether the running kernel, in this network namespace, has it. */
  present(): boolean;
}

const moduleLoaded = (module: string) => (): boolean => fs.existsSync(`/sys/module/${module}`) || builtIn(module);

/** Whether the module is compiled into the kernel (modules.builtin lists kernel/.../name.ko). */
function builtIn(module: string): boolean {
  try {
    const list = fs.readFileSync(`/lib/modules/${os.release()}/modules.builtin`, 'utf8');
    return list.split('\n').some((line) => line.endsWith(`/${module}.ko`));
  } catch {
    return false;
  }
}

export function requiredFeatures(scheduler: string): KernelFeature[] {
  return [
    { name: 'IPVS (CONFIG_IP_VS)', module: 'ip_vs', present: () => fs.existsSync('/proc/net/ip_vs') },
    { name: `the IPVS ${scheduler} scheduler (CONFIG_IP_VS_${scheduler.toUpperCase()})`, module: `ip_vs_${scheduler}`, present: moduleLoaded(`ip_vs_${scheduler}`) },
    { name: 'connection tracking (CONFIG_NF_CONNTRACK)', module: 'nf_conntrack', present: () => fs.existsSync('/proc/sys/net/netfilter/nf_conntrack_max') },
    { name: 'dummy interfaces (CONFIG_DUMMY)', module: 'dummy', present: moduleLoaded('dummy') },
  ];
}

/** Loads what is missing with modprobe; throws naming every feature still missing. */
export async function requireKernelFeatures(features: KernelFeature[], log: Logger): Promise<void> {
  const missing: string[] = [];
  for (const feature of features) {
    if (feature.present()) continue;
    const why = await exec('modprobe', [feature.module]).then(
      () => '',
      (err: Error & { stderr?: string }) => (err.stderr || err.message).trim(),
    );
    if (feature.present()) {
      log.info({ module: feature.module }, 'loaded kernel module');
      continue;
    }
    missing.push(`${feature.name}: modprobe ${feature.module}${why ? ` said: ${why}` : ' succeeded but the feature is still absent'}`);
  }
  if (missing.length > 0) {
    throw new Error(`--backend=ipvs: kernel ${os.release()} lacks what IPVS needs:\n  ${missing.join('\n  ')}`);
  }
}

/** kube-proxy's IPVS sysctls, in the current network namespace. */
export const IPVS_SYSCTLS: Record<string, string> = {
  // Masquerading with iptables needs IPVS connections in conntrack.
  'net/ipv4/vs/conntrack': '1',
  // Drop connections to removed real servers at once rather than blackholing them.
  'net/ipv4/vs/expire_nodest_conn': '1',
  'net/ipv4/vs/expire_quiescent_template': '1',
  'net/ipv4/ip_forward': '1',
};

/** kube-proxy's --ipvs-strict-arp: only the interface holding an address answers ARP for it, so kube-ipvs0's addresses are not announced. */
export const STRICT_ARP_SYSCTLS: Record<string, string> = {
  'net/ipv4/conf/all/arp_ignore': '1',
  'net/ipv4/conf/all/arp_announce': '2',
};

export function applySysctls(log: Logger, strictArp: boolean): void {
  for (const [key, value] of Object.entries({ ...IPVS_SYSCTLS, ...(strictArp ? STRICT_ARP_SYSCTLS : {}) })) {
    const file = `/proc/sys/${key}`;
    if (fs.readFileSync(file, 'utf8').trim() === value) continue;
    fs.writeFileSync(file, value);
    log.info({ sysctl: key.replaceAll('/', '.'), value }, 'set sysctl');
  }
}

/** kube-proxy's --ipvs-tcp-timeout, --ipvs-tcpfin-timeout and --ipvs-udp-timeout, in whole seconds; 0 leaves the kernel's. */
export interface IpvsTimeouts {
  tcpSeconds: number;
  tcpFinSeconds: number;
  udpSeconds: number;
}

/** Sets IPVS's idle timeouts where one was given, as kube-proxy does at start. */
export function applyTimeouts(lib: NativeAddon, t: IpvsTimeouts, log: Logger): void {
  if (t.tcpSeconds === 0 && t.tcpFinSeconds === 0 && t.udpSeconds === 0) return;
  lib.ipvsSetTimeouts(t.tcpSeconds, t.tcpFinSeconds, t.udpSeconds);
  log.info({ tcpSeconds: t.tcpSeconds, tcpFinSeconds: t.tcpFinSeconds, udpSeconds: t.udpSeconds }, 'set IPVS timeouts');
}
