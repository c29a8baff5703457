// The kube-lb command: run, inspect, cleanup and bench. Flag names follow
// kube-proxy's where kube-proxy has one.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Backend, EndpointCounters } from './backends/backend.js';
import { DEFAULT_MAP_SIZES, DEFAULT_PIN_PATH, MAX_MAP_SIZE } from './backends/ebpf/datapath.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, parseMaglevTableSize } from './backends/ebpf/maglev.js';
import { XDP_MODES } from './backends/ebpf/attach.js';
import { DEFAULT_SOCKET_LB, SOCKET_LB_MODES } from './backends/ebpf/sockets.js';
import { familiesOf } from './backends/capabilities.js';
import { servedFamilies } from './backends/families.js';
import { type BackendName, type BackendOptions, checkStartOptions, openBackend, parseBackendName, startBackend } from './backends/registry.js';
import { clusterScheduler } from './backends/ipvs/schedulers.js';
import { IPTABLES_MODES } from './backends/iptables/iptables-backend.js';
import { loadKubeProxyConfig } from './config/kube-proxy-config.js';
import { DETECT_LOCAL_MODES, type LocalTrafficByFamily, type LocalTrafficFlags, NO_LOCAL_TRAFFIC, clusterCidrs, describeLocalTraffic, detectLocalMode, localTraffic } from './config/local-traffic.js';
import { parseArgsUsageError, parseChoice, parseCount, parseDuration, UsageError } from './flags.js';
import { readFrontendSources } from './inspect-source.js';
import { desiredState, diffViews, formatDiffs } from './diff.js';
import { countViews, formatNamedViews, formatViews, nameViews } from './inspect-view.js';
import { createLogger, type Logger } from './log.js';
import { Proxier } from './proxier.js';
import { Takeover } from './takeover.js';
import type { ModelOptions, NodePortAddresses } from './model/model.js';
import { LB_ALGORITHMS } from './model/contract.js';
import { type Cidr, parseCidr } from './net/ip.js';
import { parseBindAddress, ProxyTelemetry } from './observability/telemetry.js';
import { ManifestsSource } from './sources/manifests.js';
import { readNodePodCidrs } from './sources/node-pod-cidr.js';
import type { Source } from './sources/source.js';

const USAGE = `usage:
  kube-lb [run] --backend=ebpf|iptables|nftables|ipvs --manifests DIR --hostname-override NAME
                [--detect-local-mode ClusterCIDR|NodeCIDR|BridgeInterface|InterfaceNamePrefix
                 (how pods' traffic is told: by --cluster-cidr CIDR[,CIDR] (one per family),
                 the Node's spec.podCIDRs, --pod-bridge-interface BRIDGE or
                 --pod-interface-name-prefix PREFIX; ebpf attaches to the pod interfaces so
                 found; see docs/local-traffic.md)]
                [--devices IF,... (ebpf)]
                [--masquerade-bit 14] [--iptables-mode nft|legacy (iptables)]
                [--nodeport-addresses primary|CIDR,...]
                [--service-cluster-ip-range CIDR,... (refuses cluster IPs outside)]
                [--iptables-localhost-nodeports true|false (iptables)]
                [--conntrack-tcp-be-liberal true|false]
                [--ipvs-scheduler rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|mh (ipvs)]
                [--ipvs-strict-arp true|false (ipvs: arp_ignore=1, arp_announce=2, as kube-proxy)]
                [--ipvs-drain-timeout 15m (ipvs: how long a removed TCP endpoint keeps its connections)]
                [--ipvs-tcp-timeout 0s] [--ipvs-tcpfin-timeout 0s] [--ipvs-udp-timeout 0s]
                               (ipvs: IPVS's idle timeouts, whole seconds; 0 leaves the kernel's)
                [--ipvs-exclude-cidrs CIDR,... (ipvs: virtual servers there are never removed)]
                [--bpf-pin-path P] [--min-sync-period 1s] [--sync-period 30s]
                [--cgroup-root DIR (ebpf: the cgroup v2 root the socket programs attach to;
                 default: the cgroup2 mount in /proc/self/mounts)]
                [--bpf-socket-lb host|all|off (ebpf: whose sockets are translated at connect:
                 the node's own (host, the default: pods keep the TC path, as service meshes
                 need), pods' too (all), or none (off: the node's processes reach no service))]
                [--bpf-lb-map-max 1048576 (ebpf: kube_lb_svc entries: one per service port
                 frontend plus one per backend of it; costs 16 B per entry, rounded up to
                 a power of two, plus 88 B per entry in use; see docs/ebpf-maps.md)]
                [--bpf-ct-map-max 262144 (ebpf: flows tracked in kube_lb_ct and in kube_lb_rnat;
                 costs 192 B per entry, all reserved at start)]
                [--bpf-lb-algorithm random|maglev (ebpf: how new flows choose an endpoint, for
                 services without the annotation kube-lb.io/lb-algorithm)]
                [--bpf-lb-maglev-table-size 16381 (ebpf: entries of each Maglev table, a prime
                 up to 65521; costs 2 B per entry per service that uses Maglev)]
                [--bpf-xdp native|generic|off (ebpf: XDP on the uplinks, in the driver or on
                 the skb; default off, as Cilium's loadBalancer.acceleration; see docs/xdp.md)]
                [--takeover (move the node from kube-proxy's iptables or nftables rules, or from
                 another kube-lb backend, without a drain: kube-lb programs its datapath, then
                 removes the other's; see docs/takeover.md)]
                [--log-level info] [--healthz-bind-address 0.0.0.0:10256]
                [--metrics-bind-address 127.0.0.1:10249] [--config FILE]
                [--metrics-endpoint-labels false|true (true labels kube_lb_service_connections_total,
                 _packets_total and _bytes_total with each endpoint too; the default keeps one
                 series per service port)]
                Objects come from --manifests DIR, else from the API server
                of --kubeconfig FILE, else of the in-cluster service account.
  kube-lb diff [the flags of run]
                  (what the next sync would add (+), change (~) and remove (-) in the kernel,
                   writing nothing; exit code 0: nothing differs, 1: something does,
                   2: usage error, 3: failure; see docs/diff.md)
  kube-lb inspect --backend=B [--bpf-pin-path P] [--iptables-mode M] [-o wide|json]
                  [--manifests DIR | --kubeconfig FILE] [--hostname-override NAME] [--service NS/NAME]
                  (with a source, as run reads it: each frontend's service, port name, policy,
                   affinity and endpoints' nodes; --service shows one service's frontends;
                   -o wide adds the connections, and where the kernel counts them packets and
                   bytes, the kernel counted to each endpoint)
  kube-lb cleanup --backend=B [--bpf-pin-path P] [--cgroup-root DIR] [--iptables-mode M]
                  (or kube-proxy's spelling: kube-lb --cleanup ...)
  kube-lb bench [--quick] [--variants ebpf,iptables-nft,...] [--services N,...] [--only pps,...] [--runs N] [--out DIR]
                  (every backend side by side; see bench/main.ts)
`;

const options = {
  backend: { type: 'string', default: 'ebpf' },
  manifests: { type: 'string' },
  kubeconfig: { type: 'string' },
  config: { type: 'string' },
  'healthz-bind-address': { type: 'string', default: '0.0.0.0:10256' },
  'metrics-bind-address': { type: 'string', default: '127.0.0.1:10249' },
  'metrics-endpoint-labels': { type: 'string', default: 'false' },
  cleanup: { type: 'boolean' },
  takeover: { type: 'boolean' },
  'hostname-override': { type: 'string' },
  'detect-local-mode': { type: 'string' },
  'pod-interface-name-prefix': { type: 'string' },
  'pod-bridge-interface': { type: 'string' },
  devices: { type: 'string' },
  'cluster-cidr': { type: 'string' },
  'service-cluster-ip-range': { type: 'string' },
  'nodeport-addresses': { type: 'string', default: 'primary' },
  'iptables-localhost-nodeports': { type: 'string', default: 'true' },
  'masquerade-bit': { type: 'string', default: '14' },
  'conntrack-tcp-be-liberal': { type: 'string', default: 'false' },
  'iptables-mode': { type: 'string' },
  'ipvs-scheduler': { type: 'string' },
  'ipvs-strict-arp': { type: 'string', default: 'false' },
  'ipvs-drain-timeout': { type: 'string', default: '15m' },
  'ipvs-tcp-timeout': { type: 'string', default: '0s' },
  'ipvs-tcpfin-timeout': { type: 'string', default: '0s' },
  'ipvs-udp-timeout': { type: 'string', default: '0s' },
  'ipvs-exclude-cidrs': { type: 'string' },
  'bpf-pin-path': { type: 'string', default: DEFAULT_PIN_PATH },
  'cgroup-root': { type: 'string' },
  'bpf-socket-lb': { type: 'string', default: DEFAULT_SOCKET_LB },
  'bpf-lb-map-max': { type: 'string', default: String(DEFAULT_MAP_SIZES.lb) },
  'bpf-ct-map-max': { type: 'string', default: String(DEFAULT_MAP_SIZES.ct) },
  'bpf-lb-algorithm': { type: 'string', default: 'random' },
  'bpf-lb-maglev-table-size': { type: 'string', default: String(DEFAULT_MAGLEV_TABLE_SIZE) },
  'bpf-xdp': { type: 'string', default: 'off' },
  'min-sync-period': { type: 'string', default: '1s' },
  'sync-period': { type: 'string', default: '30s' },
  'log-level': { type: 'string', default: 'info' },
  service: { type: 'string' },
  output: { type: 'string', short: 'o', default: 'text' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>['values'];

const isInterfaceName = (name: string): boolean => /^[^\s/]{1,15}$/.test(name);

/** --devices: interface names, comma-separated. */
function devicesFlag(value: string): string[] {
  const names = value.split(',').map((n) => n.trim());
  const bad = names.find((n) => !isInterfaceName(n));
  if (bad !== undefined) throw new UsageError(`--devices=${value}: "${bad}" is not an interface name`);
  return names;
}

/** --detect-local-mode and its companions, checked. */
function localTrafficFlags(flags: Flags): LocalTrafficFlags {
  const bridge = flags['pod-bridge-interface'];
  if (bridge !== undefined && !isInterfaceName(bridge)) throw new UsageError(`--pod-bridge-interface=${bridge}: not an interface name`);
  return {
    mode: flags['detect-local-mode'] === undefined ? undefined : parseChoice('detect-local-mode', flags['detect-local-mode'], DETECT_LOCAL_MODES),
    clusterCidrs: clusterCidrs(flags['cluster-cidr']),
    bridge,
    prefix: flags['pod-interface-name-prefix'],
  };
}

/** What local traffic is on this node; NodeCIDR reads the node's pod CIDR from the source. */
async function localTrafficOf(flags: Flags, nodeName: string, log: Logger): Promise<LocalTrafficByFamily> {
  const localFlags = localTrafficFlags(flags);
  const mode = detectLocalMode(localFlags);
  const nodeCidrs = mode === 'NodeCIDR' ? await readNodePodCidrs(await objectSource(flags, nodeName, log), nodeName, log) : undefined;
  return localTraffic(mode, localFlags, nodeCidrs);
}

/** The backend's options but local traffic, which `run` alone needs (inspect and cleanup render no rules). */
function backendOptions(flags: Flags, log: Logger): Omit<BackendOptions, 'localTraffic'> {
  const masqueradeBit = Number(flags['masquerade-bit']);
  if (!/^\d+$/.test(flags['masquerade-bit']) || masqueradeBit > 31) {
    throw new UsageError(`--masquerade-bit=${flags['masquerade-bit']}: not an integer from 0 to 31`);
  }
  // Checked here too, so that cleanup refuses a bad one as run does.
  clusterCidrs(flags['cluster-cidr']);
  const mode = flags['iptables-mode'] === undefined ? undefined : parseChoice('iptables-mode', flags['iptables-mode'], IPTABLES_MODES);
  return {
    log,
    bpfPinPath: flags['bpf-pin-path'],
    cgroupRoot: flags['cgroup-root'],
    socketLb: parseChoice('bpf-socket-lb', flags['bpf-socket-lb'], SOCKET_LB_MODES),
    bpfMapSizes: { lb: mapSize(flags, 'bpf-lb-map-max'), ct: mapSize(flags, 'bpf-ct-map-max') },
    bpfMaglevTableSize: parseMaglevTableSize(flags['bpf-lb-maglev-table-size']),
    devices: flags.devices === undefined ? null : devicesFlag(flags.devices),
    xdp: parseChoice('bpf-xdp', flags['bpf-xdp'], XDP_MODES),
    masqueradeBit,
    tcpBeLiberal: booleanFlag('conntrack-tcp-be-liberal', flags['conntrack-tcp-be-liberal']),
    iptablesMode: mode,
    ipvsScheduler: clusterScheduler(flags['ipvs-scheduler']),
    ipvsStrictArp: booleanFlag('ipvs-strict-arp', flags['ipvs-strict-arp']),
    ipvsDrainTimeoutMs: parseDuration('ipvs-drain-timeout', flags['ipvs-drain-timeout']),
    ipvsTimeouts: {
      tcpSeconds: wholeSeconds(flags, 'ipvs-tcp-timeout'),
      tcpFinSeconds: wholeSeconds(flags, 'ipvs-tcpfin-timeout'),
      udpSeconds: wholeSeconds(flags, 'ipvs-udp-timeout'),
    },
    ipvsExcludeCidrs: cidrList('ipvs-exclude-cidrs', flags['ipvs-exclude-cidrs']),
  };
}

/** A duration IPVS takes in seconds: a fraction would be dropped without a word, so it is refused. */
function wholeSeconds(flags: Flags, name: 'ipvs-tcp-timeout' | 'ipvs-tcpfin-timeout' | 'ipvs-udp-timeout'): number {
  const ms = parseDuration(name, flags[name]);
  if (ms % 1000 !== 0 || ms / 1000 > 2 ** 31 - 1) throw new UsageError(`--${name}=${flags[name]}: IPVS takes a whole number of seconds`);
  return ms / 1000;
}

function mapSize(flags: Flags, name: 'bpf-lb-map-max' | 'bpf-ct-map-max'): number {
  return parseCount(name, flags[name], 1, MAX_MAP_SIZE);
}

/** --nodeport-addresses: kube-proxy's "primary" (the node's primary IPs), or CIDRs. */
function nodePortAddresses(value: string): NodePortAddresses {
  return value === 'primary' ? 'primary' : cidrList('nodeport-addresses', value, 'give "primary" or a comma-separated list of CIDRs');
}

/** A comma-separated list of CIDRs; an absent flag is an empty list. */
function cidrList(name: string, value: string | undefined, hint = 'give a comma-separated list of CIDRs'): Cidr[] {
  if (value === undefined) return [];
  try {
    return value.split(',').map((c) => parseCidr(c.trim()));
  } catch (err) {
    throw new UsageError(`--${name}=${value}: ${(err as Error).message}; ${hint}`);
  }
}

function booleanFlag(name: string, value: string): boolean {
  if (value !== 'true' && value !== 'false') throw new UsageError(`--${name}=${value}: choose true or false`);
  return value === 'true';
}

const TCP_BE_LIBERAL = '/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal';

/**
 * --conntrack-tcp-be-liberal, as kube-proxy sets it: conntrack then tracks
 * out-of-window TCP segments instead of marking them INVALID, so they are
 * de-NATed and the netfilter backends need no INVALID drop.
 */
function enableTcpBeLiberal(log: Logger): void {
  if (!fs.existsSync(TCP_BE_LIBERAL)) throw new Error(`--conntrack-tcp-be-liberal: ${TCP_BE_LIBERAL} does not exist; load conntrack first (modprobe nf_conntrack)`);
  if (fs.readFileSync(TCP_BE_LIBERAL, 'utf8').trim() === '1') return;
  fs.writeFileSync(TCP_BE_LIBERAL, '1');
  log.info({ sysctl: 'net.netfilter.nf_conntrack_tcp_be_liberal', value: 1 }, 'set for --conntrack-tcp-be-liberal');
}

/** How the model resolves services on this node: `run` syncs what it resolves, `inspect` names frontends with it. */
function modelOptions(flags: Flags, backendName: BackendName, nodeName: string): Omit<ModelOptions, 'protocols' | 'log'> {
  return {
    nodeName,
    nodePortAddresses: nodePortAddresses(flags['nodeport-addresses']),
    // kube-proxy serves NodePorts on 127.0.0.1 only in its iptables mode;
    // ebpf's socket programs serve them too, with nothing to enable.
    localhostNodePorts:
      (backendName === 'iptables' && booleanFlag('iptables-localhost-nodeports', flags['iptables-localhost-nodeports'])) || backendName === 'ebpf',
    families: servedFamilies(backendName),
    // No EndpointSlice controller writes hints for manifests.
    deriveTopologyHints: flags.manifests !== undefined,
    serviceClusterIPRanges: cidrList('service-cluster-ip-range', flags['service-cluster-ip-range']),
    clusterCidrs: clusterCidrs(flags['cluster-cidr']),
    lbAlgorithm: parseChoice('bpf-lb-algorithm', flags['bpf-lb-algorithm'], LB_ALGORITHMS),
  };
}

/** Where objects come from: --manifests DIR, else the API server. */
async function objectSource(flags: Flags, nodeName: string, log: Logger): Promise<Source> {
  return flags.manifests
    ? new ManifestsSource({ directory: flags.manifests, log })
    : // Loaded only when used: @kubernetes/client-node is thousands of files,
      // seconds of startup on slow filesystems such as the test VM's 9p.
      new (await import('./sources/apiserver.js')).ApiServerSource({ kubeconfig: flags.kubeconfig, nodeName, log });
}

/** Every setting `run` takes from its flags, all checked before anything starts: a usage error leaves no state behind. */
async function runSettings(flags: Flags, log: Logger) {
  const minSyncPeriodMs = parseDuration('min-sync-period', flags['min-sync-period']);
  const syncPeriodMs = parseDuration('sync-period', flags['sync-period']);
  const hostname = flags['hostname-override'] ?? os.hostname();
  const backendName = parseBackendName(flags.backend);
  const model = modelOptions(flags, backendName, hostname);
  const options = backendOptions(flags, log);
  for (const what of ['healthz', 'metrics'] as const) {
    const address = flags[`${what}-bind-address`];
    if (address !== '') parseBindAddress(address, what);
  }
  const metricsEndpointLabels = booleanFlag('metrics-endpoint-labels', flags['metrics-endpoint-labels']);
  // Last: finding the node's pod range (NodeCIDR) reads the objects.
  const startOptions: BackendOptions = { ...options, localTraffic: await localTrafficOf(flags, hostname, log) };
  checkStartOptions(backendName, startOptions);
  return { minSyncPeriodMs, syncPeriodMs, hostname, backendName, model, startOptions, metricsEndpointLabels };
}

async function run(flags: Flags, log: Logger): Promise<void> {
  const { minSyncPeriodMs, syncPeriodMs, hostname, backendName, model, startOptions, metricsEndpointLabels } = await runSettings(flags, log);
  // "node", not "hostname": every line already carries the machine's hostname.
  log.info({ backend: backendName, node: hostname, manifests: flags.manifests, kubeconfig: flags.kubeconfig, clusterCidr: flags['cluster-cidr'], localTraffic: describeLocalTraffic(startOptions.localTraffic) }, 'starting');
  if (servedFamilies(backendName).length < familiesOf(backendName).length) {
    log.warn({ backend: backendName }, 'this kernel has no IPv6 (booted with ipv6.disable=1?): IPv6 services are served as IPv4-only, as kube-proxy falls back to single-stack');
  }
  // Listen first: a signal during start-up (a first sync can take seconds)
  // still ends in an orderly stop once start-up is done.
  const stopRequested = new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      log.info({ signal }, 'stopping; the datapath stays in place');
      resolve();
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });

  // Before the first sync: without the sysctl, rules without the INVALID drop would bring issue 74839 back.
  if (startOptions.tcpBeLiberal) enableTcpBeLiberal(log);
  const takeover = flags.takeover ? await Takeover.find(backendName, startOptions) : undefined;
  const backend: Backend = await startBackend(backendName, { ...startOptions, adoptStackFlows: takeover?.stackFlows });
  const telemetry = await ProxyTelemetry.start({
    backend,
    nodeName: hostname,
    syncPeriodMs,
    healthzBindAddress: flags['healthz-bind-address'],
    metricsBindAddress: flags['metrics-bind-address'],
    metricsEndpointLabels,
    log,
  });
  const proxier = new Proxier({
    source: await objectSource(flags, hostname, log),
    backend,
    log,
    minSyncPeriodMs,
    syncPeriodMs,
    telemetry,
    model,
    takeover,
  });
  await proxier.start();
  await stopRequested;
  await proxier.stop();
}

/**
 * `run`'s dry run: the frontends the next sync would add, change and
 * remove, from the same flags, objects and model as `run`: the backend's
 * plan for the model's state against what its inspect reads from the
 * kernel, which diff only reads. It exits as `kubectl diff`: 0 when
 * nothing differs, 1 when something does.
 */
async function diff(flags: Flags, log: Logger): Promise<number> {
  const { backendName, model, startOptions } = await runSettings(flags, log);
  const backend = await openBackend(backendName, startOptions);
  try {
    const sources = await readFrontendSources(await objectSource(flags, model.nodeName, log), { ...model, protocols: backend.protocols, log }, log);
    const diffs = diffViews(await backend.planned(desiredState(sources)), await backend.inspect(), sources);
    process.stdout.write(formatDiffs(diffs));
    return diffs.length === 0 ? 0 : 1;
  } finally {
    await backend.close();
  }
}

/**
 * The kernel's frontends; named, with policy, affinity and each endpoint's
 * node, when --manifests or --kubeconfig says where the objects are, since
 * the kernel holds addresses only.
 */
async function inspect(flags: Flags, log: Logger): Promise<void> {
  const output = flags.output;
  if (output !== 'text' && output !== 'wide' && output !== 'json') throw new UsageError(`-o ${output}: choose text, wide or json`);
  const backendName = parseBackendName(flags.backend);
  const named = flags.manifests !== undefined || flags.kubeconfig !== undefined;
  const wanted = flags.service === undefined ? undefined : serviceFlag(flags.service, named);
  const model = named ? modelOptions(flags, backendName, flags['hostname-override'] ?? os.hostname()) : undefined;
  const backend = await openBackend(backendName, { ...backendOptions(flags, log), localTraffic: NO_LOCAL_TRAFFIC });
  try {
    const views = output === 'wide' ? countViews(await backend.inspect(), await countersFor(backend)) : await backend.inspect();
    if (model === undefined) {
      process.stdout.write(formatViews(views, output));
      return;
    }
    const sources = await readFrontendSources(await objectSource(flags, model.nodeName, log), { ...model, protocols: backend.protocols, log }, log);
    const shown = nameViews(views, sources).filter((v) => wanted === undefined || (v.service?.namespace === wanted.namespace && v.service.name === wanted.name));
    process.stdout.write(formatNamedViews(shown, output, wanted && `no frontend of ${wanted.namespace}/${wanted.name} is programmed`));
  } finally {
    await backend.close();
  }
}

/** What the kernel counted, for -o wide; a backend that counts nothing says so. */
async function countersFor(backend: Backend): Promise<EndpointCounters[]> {
  if (backend.counters !== undefined) return backend.counters();
  process.stderr.write(`kube-lb inspect: the ${backend.name} backend counts no connections per endpoint yet; -o wide shows none\n`);
  return [];
}

/** --service NAMESPACE/NAME; names are the source's, so it needs one. */
function serviceFlag(value: string, named: boolean): { namespace: string; name: string } {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(value);
  if (m === null) throw new UsageError(`--service=${value}: give NAMESPACE/NAME`);
  if (!named) throw new UsageError(`--service=${value}: needs --manifests or --kubeconfig, where the names are (the kernel holds addresses only)`);
  return { namespace: m[1]!, name: m[2]! };
}

async function cleanup(flags: Flags, log: Logger): Promise<void> {
  await (await openBackend(parseBackendName(flags.backend), { ...backendOptions(flags, log), localTraffic: NO_LOCAL_TRAFFIC })).cleanup();
  log.info({ backend: flags.backend }, 'cleanup done');
}

/** A command's exit code; none is 0. */
const commands: Record<string, (flags: Flags, log: Logger) => Promise<number | void>> = { run, inspect, cleanup, diff };

/** diff's 1 says that something differs, so its failures exit >1, as kubectl diff's do; 2 is a usage error. */
const FAILED: Record<string, number> = { diff: 3 };

/** The flags, with a --config file's settings under the command line's, as in kube-proxy. */
function parseCommandLine(argv: string[]) {
  const parse = (args: string[]) => {
    try {
      return parseArgs({ args, options, allowPositionals: true, strict: true });
    } catch (err) {
      throw parseArgsUsageError(err as NodeJS.ErrnoException, options);
    }
  };
  const parsed = parse(argv);
  if (parsed.values.config === undefined) return { ...parsed, configWarnings: [] };
  const config = loadKubeProxyConfig(parsed.values.config);
  return { ...parse([...config.args, ...argv]), configWarnings: config.warnings };
}

/** The benchmark lives beside the control plane in the built tree (dist/bench), with flags of its own. */
function bench(args: string[]): number {
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'main.js');
  return spawnSync(process.execPath, [main, ...args], { stdio: 'inherit' }).status ?? 1;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'bench') return bench(argv.slice(1));
  let parsed;
  let log: Logger;
  try {
    parsed = parseCommandLine(argv);
    log = createLogger(parsed.values['log-level']);
  } catch (err) {
    return usageError(err);
  }
  const { values: flags, positionals, configWarnings } = parsed;
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const name = flags.cleanup ? 'cleanup' : (positionals[0] ?? 'run');
  const command = commands[name];
  if (!command || positionals.length > (flags.cleanup ? 0 : 1)) {
    return usageError(new UsageError(`unknown command ${JSON.stringify(positionals.join(' '))}; the commands are run, diff, inspect, cleanup and bench`));
  }
  for (const warning of configWarnings) log.warn(warning);
  try {
    return (await command(flags, log)) ?? 0;
  } catch (err) {
    if (err instanceof UsageError) return usageError(err);
    log.fatal({ err: (err as Error).message }, `${name} failed`);
    return FAILED[name] ?? 1;
  }
}

/** A usage error is one sentence on stderr and exit code 2; anything else is a failure of kube-lb's own. */
function usageError(err: unknown): number {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`kube-lb: ${err.message}\n`);
  return 2;
}

/**
 * Resolves once everything written to `stream` so far has been handed to
 * the kernel. Node writes to a pipe without blocking and queues what the
 * pipe cannot take yet; process.exit drops that queue, which cut
 * `kube-lb inspect -o json | jq` at the pipe's capacity.
 */
function drained(stream: NodeJS.WriteStream): Promise<void> {
  // A failed write (the reader went away) has nothing left to wait for.
  return new Promise((resolve) => stream.write('', () => resolve()));
}

// A reader that stops early (`kube-lb inspect | head`) is no error of
// kube-lb's; any other failure to write the output fails the command.
let outputError: Error | undefined;
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') outputError ??= err;
  });
}
const code = await main(process.argv.slice(2));
await Promise.all([drained(process.stdout), drained(process.stderr)]);
if (outputError !== undefined) process.stderr.write(`kube-lb: cannot write the output: ${outputError.message}\n`);
process.exit(code === 0 && outputError !== undefined ? 1 : code);
