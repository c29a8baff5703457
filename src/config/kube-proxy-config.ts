// --config FILE: a kube-proxy KubeProxyConfiguration, so a cluster's
// existing kube-proxy config can drive kube-lb. Supported fields become the
// equivalent command-line flags, which the command line then overrides, as
// in kube-proxy; every other field that is set is reported and ignored.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { UsageError } from '../flags.js';

const API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
const KIND = 'KubeProxyConfiguration';

/**
 * Config field path → kube-lb flag. The iptables and ipvs sections' sync
 * periods come first so that the top-level ones, which replace them in
 * newer kube-proxy releases, win when both are set.
 */
const FLAG_OF_FIELD: ReadonlyArray<readonly [string, string]> = [
  ['iptables.syncPeriod', 'sync-period'],
  ['iptables.minSyncPeriod', 'min-sync-period'],
  ['iptables.masqueradeBit', 'masquerade-bit'],
  ['iptables.localhostNodePorts', 'iptables-localhost-nodeports'],
  ['ipvs.syncPeriod', 'sync-period'],
  ['ipvs.minSyncPeriod', 'min-sync-period'],
  ['syncPeriod', 'sync-period'],
  ['minSyncPeriod', 'min-sync-period'],
  ['mode', 'backend'],
  ['clusterCIDR', 'cluster-cidr'],
  ['detectLocalMode', 'detect-local-mode'],
  ['detectLocal.bridgeInterface', 'pod-bridge-interface'],
  ['detectLocal.interfaceNamePrefix', 'pod-interface-name-prefix'],
  ['nodePortAddresses', 'nodeport-addresses'],
  ['hostnameOverride', 'hostname-override'],
  ['healthzBindAddress', 'healthz-bind-address'],
  ['metricsBindAddress', 'metrics-bind-address'],
  ['clientConnection.kubeconfig', 'kubeconfig'],
  ['ipvs.scheduler', 'ipvs-scheduler'],
  ['ipvs.strictARP', 'ipvs-strict-arp'],
  ['ipvs.tcpTimeout', 'ipvs-tcp-timeout'],
  ['ipvs.tcpFinTimeout', 'ipvs-tcpfin-timeout'],
  ['ipvs.udpTimeout', 'ipvs-udp-timeout'],
  ['ipvs.excludeCIDRs', 'ipvs-exclude-cidrs'],
  ['conntrack.tcpBeLiberal', 'conntrack-tcp-be-liberal'],
];

export interface KubeProxyConfig {
  /** "--flag=value" arguments, to go before the command line's own. */
  args: string[];
  /** One line per field that is set but not supported. */
  warnings: string[];
}

export function loadKubeProxyConfig(file: string): KubeProxyConfig {
  let document: unknown;
  try {
    document = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`--config ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(document) || document.apiVersion !== API_VERSION || document.kind !== KIND) {
    throw new UsageError(`--config ${file}: not a ${API_VERSION} ${KIND}`);
  }
  const { apiVersion: _apiVersion, kind: _kind, ...fields } = document;
  const leaves = new Map(flatten(fields, ''));
  const args: string[] = [];
  for (const [field, flag] of FLAG_OF_FIELD) {
    const value = leaves.get(field);
    leaves.delete(field);
    // Empty strings, empty lists and nulls are kube-proxy's "unset".
    if (value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0)) continue;
    args.push(`--${flag}=${flagValue(value, field, file)}`);
  }
  const warnings = [...leaves].filter(([, value]) => isSet(value)).map(([field]) => `--config ${file}: field ${field} is not supported by kube-lb; ignored`);
  return { args, warnings };
}

/** The fields that are lists; their flags take the items comma-separated. */
const LIST_FIELDS = new Set(['nodePortAddresses', 'ipvs.excludeCIDRs']);

/** A field's value as its flag's. */
function flagValue(value: unknown, field: string, file: string): string {
  if (LIST_FIELDS.has(field)) {
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(',');
    throw new UsageError(`--config ${file}: ${field} must be a list of strings, got ${JSON.stringify(value)}`);
  }
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new UsageError(`--config ${file}: ${field} must be a string, a number, true or false, got ${JSON.stringify(value)}`);
}

/** Leaf fields as [dotted path, value]; lists are leaves. */
function flatten(object: Record<string, unknown>, prefix: string): [string, unknown][] {
  return Object.entries(object).flatMap(([key, value]) =>
    isObject(value) && Object.keys(value).length > 0 ? flatten(value, `${prefix}${key}.`) : [[`${prefix}${key}`, value] as [string, unknown]],
  );
}

/** kube-proxy's zero values (as kubeadm writes them for every field) say nothing. */
function isSet(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (isObject(value)) return Object.keys(value).length > 0;
  return value !== null && value !== undefined && value !== '' && value !== 0 && value !== false;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
