// Which virtual servers are kube-lb's, and what kind of frontend each is,
// read from the kernel: IPVS keeps no label. Those on an address of
// kube-ipvs0 are ClusterIPs, external or load-balancer IPs (the sets say
// which); NodePorts are on the node's own addresses, at a port of the
// KUBE-NODE-PORT sets. Others' virtual servers are neither, and neither
// are those in --ipvs-exclude-cidrs, which kube-lb never removes.
import os from 'node:os';
import type { FrontendKind, IPFamily } from '../../model/contract.js';
import { type FamilySets, ipPortText, nodePortEntry } from './netfilter.js';
import type { IpvsFrontend } from './virtual-servers.js';
import { type Cidr, cidrContains } from '../../net/ip.js';

/** The node's addresses of both families, on every interface. */
function nodeAddresses(): Set<string> {
  return new Set(Object.values(os.networkInterfaces()).flatMap((addrs) => (addrs ?? []).map((a) => a.address)));
}

export class Ownership {
  private readonly nodeIps = nodeAddresses();

  constructor(
    /** kube-ipvs0's addresses. */
    private readonly bound: ReadonlyMap<string, IPFamily>,
    private readonly sets: FamilySets,
    private readonly excluded: readonly Cidr[],
  ) {}

  private isNodePort(f: IpvsFrontend): boolean {
    if (this.bound.has(f.ip) || !this.nodeIps.has(f.ip)) return false;
    const { set, text } = nodePortEntry(f, false);
    return this.sets[f.family][set].has(text);
  }

  owns(f: IpvsFrontend): boolean {
    if (this.excluded.some((cidr) => cidrContains(cidr, f.ip))) return false;
    return this.bound.has(f.ip) || this.isNodePort(f);
  }

  /** What the sets say a frontend kube-lb owns is. */
  kind(f: IpvsFrontend): FrontendKind {
    if (this.isNodePort(f)) return 'NodePort';
    const entry = ipPortText(f);
    const sets = this.sets[f.family];
    if (sets['KUBE-LOAD-BALANCER'].has(entry)) return 'LoadBalancerIP';
    if (sets['KUBE-EXTERNAL-IP'].has(entry) || sets['KUBE-EXTERNAL-IP-LOCAL'].has(entry)) return 'ExternalIP';
    // KUBE-CLUSTER-IP, or in no set yet (a sync failed between the two).
    return 'ClusterIP';
  }
}
