// The kube-lb command: run, inspect and cleanup. Flag names follow
// kube-proxy's where kube-proxy has one.
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { Backend } from './backends/backend.js';
import { DEFAULT_PIN_PATH } from './backends/ebpf/datapath.js';
import { type BackendOptions, openBackend, parseBackendName, startBackend } from './backends/registry.js';
import { parseDuration } from './flags.js';
import { formatViews } from './inspect-view.js';
import { createLogger, type Logger } from './log.js';
import { Proxier } from './proxier.js';
import { ManifestsSource } from './sources/manifests.js';

const USAGE = `usage:
  kube-lb [run] --backend=ebpf --manifests DIR --hostname-override NAME
                --pod-interface-name-prefix PREFIX [--cluster-cidr CIDR]
                [--bpf-pin-path P] [--min-sync-period 1s] [--sync-period 30s]
                [--log-level info]
  kube-lb inspect --backend=ebpf [--bpf-pin-path P] [-o json]
  kube-lb cleanup --backend=ebpf [--bpf-pin-path P]
`;

const options = {
  backend: { type: 'string', default: 'ebpf' },
  manifests: { type: 'string' },
  'hostname-override': { type: 'string' },
  'pod-interface-name-prefix': { type: 'string' },
  'cluster-cidr': { type: 'string' },
  'bpf-pin-path': { type: 'string', default: DEFAULT_PIN_PATH },
  'min-sync-period': { type: 'string', default: '1s' },
  'sync-period': { type: 'string', default: '30s' },
  'log-level': { type: 'string', default: 'info' },
  output: { type: 'string', short: 'o', default: 'text' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>['values'];

class UsageError extends Error {}

function validateCidr(cidr: string): void {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(cidr);
  if (!m || Number(m[2]) > 32 || m[1]!.split('.').some((o) => Number(o) > 255)) {
    throw new UsageError(`--cluster-cidr=${cidr}: not an IPv4 CIDR such as 10.244.0.0/16`);
  }
}

function backendOptions(flags: Flags, log: Logger): BackendOptions {
  return { log, bpfPinPath: flags['bpf-pin-path'], podInterfacePrefix: flags['pod-interface-name-prefix'] };
}

async function run(flags: Flags, log: Logger): Promise<void> {
  if (!flags.manifests) throw new UsageError('run needs --manifests DIR (the API-server source is not available yet)');
  if (flags['cluster-cidr']) validateCidr(flags['cluster-cidr']);
  const minSyncPeriodMs = parseDuration(flags['min-sync-period']);
  const syncPeriodMs = parseDuration(flags['sync-period']);
  const hostname = flags['hostname-override'] ?? os.hostname();
  const backendName = parseBackendName(flags.backend);
  log.info({ backend: backendName, hostname, manifests: flags.manifests, clusterCidr: flags['cluster-cidr'] }, 'starting');

  const backend: Backend = await startBackend(backendName, backendOptions(flags, log));
  const proxier = new Proxier({
    source: new ManifestsSource({ directory: flags.manifests, log }),
    backend,
    log,
    minSyncPeriodMs,
    syncPeriodMs,
  });
  await proxier.start();

  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      log.info({ signal }, 'stopping; the datapath stays in place');
      resolve();
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
  await proxier.stop();
}

async function inspect(flags: Flags, log: Logger): Promise<void> {
  if (flags.output !== 'text' && flags.output !== 'json') throw new UsageError(`-o ${flags.output}: choose text or json`);
  const backend = openBackend(parseBackendName(flags.backend), backendOptions(flags, log));
  try {
    process.stdout.write(formatViews(await backend.inspect(), flags.output));
  } finally {
    await backend.close();
  }
}

async function cleanup(flags: Flags, log: Logger): Promise<void> {
  await openBackend(parseBackendName(flags.backend), backendOptions(flags, log)).cleanup();
  log.info({ backend: flags.backend }, 'cleanup done');
}

const commands: Record<string, (flags: Flags, log: Logger) => Promise<void>> = { run, inspect, cleanup };

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`kube-lb: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values: flags, positionals } = parsed;
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const name = positionals[0] ?? 'run';
  const command = commands[name];
  if (!command || positionals.length > 1) {
    process.stderr.write(`kube-lb: unknown command ${JSON.stringify(positionals.join(' '))}\n${USAGE}`);
    return 2;
  }
  const log = createLogger(flags['log-level']);
  try {
    await command(flags, log);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kube-lb: ${err.message}\n${USAGE}`);
      return 2;
    }
    log.fatal({ err: (err as Error).message }, `${name} failed`);
    return 1;
  }
}

process.exit(await main(process.argv.slice(2)));
