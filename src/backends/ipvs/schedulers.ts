// IPVS schedulers: one cluster-wide (--ipvs-scheduler, as kube-proxy) and
// an optional one per Service (annotation kube-lb.io/ipvs-scheduler, carried
// by the model as ServicePortState.ipvsScheduler).
import { UsageError } from '../../flags.js';
import type { Logger } from '../../log.js';
import type { ServicePortState } from '../../model/contract.js';

/** Every scheduler the kernel ships (net/netfilter/ipvs/ip_vs_<name>.c) that a ClusterIP can use. */
export const IPVS_SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh'] as const;
export type IpvsScheduler = (typeof IPVS_SCHEDULERS)[number];

/** kube-proxy's default. */
export const DEFAULT_SCHEDULER: IpvsScheduler = 'rr';

export function isIpvsScheduler(name: string): name is IpvsScheduler {
  return (IPVS_SCHEDULERS as readonly string[]).includes(name);
}

/** The --ipvs-scheduler value to use; an unknown name is refused, as kube-proxy refuses it. */
export function clusterScheduler(flag: string | undefined): IpvsScheduler {
  if (flag === undefined || flag === '') return DEFAULT_SCHEDULER;
  if (isIpvsScheduler(flag)) return flag;
  throw new UsageError(`--ipvs-scheduler=${flag}: unknown IPVS scheduler; choose one of ${IPVS_SCHEDULERS.join(', ')}`);
}

/**
 * Picks each service port's scheduler: its Service's annotation when it names
 * a known scheduler, else the cluster-wide one. An unknown annotation is
 * logged once per service port and value, not on every sync.
 */
export class SchedulerChooser {
  private readonly rejected = new Set<string>();

  constructor(
    readonly clusterWide: IpvsScheduler,
    private readonly log: Logger,
  ) {}

  choose(sp: ServicePortState): IpvsScheduler {
    const wanted = sp.settings.ipvsScheduler;
    if (wanted === undefined) return this.clusterWide;
    if (isIpvsScheduler(wanted)) return wanted;
    const id = `${sp.key}\n${wanted}`;
    if (!this.rejected.has(id)) {
      this.rejected.add(id);
      this.log.error(
        { kind: 'Service', namespace: sp.namespace, name: sp.name, annotation: 'kube-lb.io/ipvs-scheduler', scheduler: wanted, known: IPVS_SCHEDULERS.join(','), using: this.clusterWide },
        'unknown IPVS scheduler rejected; using the default',
      );
    }
    return this.clusterWide;
  }
}
