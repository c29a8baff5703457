// Which virtual servers are kube-lb's, and what kind of frontend each is,
// read from the kernel: IPVS keeps no label. Those on an address of
// kube-ipvs0 are ClusterIPs, external or load-balancer IPs (the sets say
// which); NodePorts are on the node's own addresses, at a port of the
// KUBE-NODE-PORT sets. Others' virtual servers are neither, and neither
// are those in --ipvs-exclude-cidrs, which kube-lb never removes.
import os from 'node:os';
import type { Frontend, FrontendKind } from '../../model/contract.js';
import { type Cidr, cidrContains } from '../../net/ip.js';
import { type SetContents, nodePortEntry } from './netfilter.js';

/** The node's IPv4 addresses, on every interface. */
function nodeAddresses(): Set<string> {
  return new Set(Object.values(os.networkInterfaces()).flatMap((addrs) => (addrs ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address)));
}

export class Ownership {
  private readonly nodeIps = nodeAddresses();

  constructor(
    /** kube-ipvs0's addresses. */
    private readonly bound: ReadonlySet<string>,
    private readonly sets: SetContents,
    private readonly excluded: readonly Cidr[],
  ) {}

  private isNodePort(f: Frontend): boolean {
    if (this.bound.has(f.ip) || !this.nodeIps.has(f.ip)) return false;
    const [set, entry] = nodePortEntry(f, false);
    return this.sets[set].has(entry);
  }

  owns(f: Frontend): boolean {
    if (this.excluded.some((cidr) => cidrContains(cidr, f.ip))) return false;
    return this.bound.has(f.ip) || this.isNodePort(f);
  }

  /** What the sets say a frontend kube-lb owns is. */
  kind(f: Frontend): FrontendKind {
    if (this.isNodePort(f)) return 'NodePort';
    const entry = `${f.ip},${f.protocol.toLowerCase()}:${f.port}`;
    if (this.sets['KUBE-LOAD-BALANCER'].has(entry)) return 'LoadBalancerIP';
    if (this.sets['KUBE-EXTERNAL-IP'].has(entry) || this.sets['KUBE-EXTERNAL-IP-LOCAL'].has(entry)) return 'ExternalIP';
    // KUBE-CLUSTER-IP, or in no set yet (a sync failed between the two).
    return 'ClusterIP';
  }
}
