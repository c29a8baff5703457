// What a scenario runs against: a sandboxed two-node cluster, a manifest
// directory (holding both Node objects from the start) and one kube-lb
// process on node-a driving one backend.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { cliPath } from '../lib/paths.js';
import { CLUSTER_CIDR6, type ClientMode, type ClientOptions, type ClientPlace, type ClientResult, NODES, type NodeName, NodeSandbox, waitForLine } from '../lib/sandbox.js';
import { type ServiceSpec, writeManifest, writeNodes } from '../lib/manifests.js';
import type { BackendVariant } from './variants.js';
import { type IPFamily, destinationKey } from '../../src/model/contract.js';
import { ipv6Service, ipv6Twin } from './ipv6-twins.js';
import { slow } from '../lib/slowdown.js';

export interface PodSpec {
  name: string;
  ip: string;
  /** Defaults to node-a, where kube-lb runs. */
  node?: NodeName;
  /** Serves TCP 8080 and 8081 and UDP 5353 (the default) or nothing. */
  serves?: boolean;
  /** On node-a's pod bridge (its address in POD_BRIDGE_CIDR), not on a veth of its own. */
  bridge?: boolean;
}

export const SERVER_TCP_PORTS = [8080, 8081];
export const SERVER_UDP_PORTS = [5353];
/** kube-lb's --hostname-override: it runs on node-a. */
export const KUBE_LB_NODE: NodeName = 'node-a';
const NODES_FILE = 'nodes.yaml';

export class ScenarioContext {
  private kubeLbProcess: ChildProcess | undefined;
  private logs = '';
  /** The flags that tell kube-lb its pods' traffic; a test of --detect-local-mode gives its own. */
  localTrafficArgs: readonly string[];

  private constructor(
    readonly variant: BackendVariant,
    readonly sandbox: NodeSandbox,
    readonly manifestsDir: string,
    /** IPv6: an IPv4 row runs over IPv6, its services and client targets translated to their IPv6 twins (ipv6-twins.ts). */
    readonly family: IPFamily,
  ) {
    this.localTrafficArgs = [`--pod-interface-name-prefix=${sandbox.interfacePrefix}`, '--cluster-cidr=10.244.0.0/16'];
  }

  static async create(variant: BackendVariant, pods: PodSpec[], family: IPFamily = 'IPv4'): Promise<ScenarioContext> {
    variant.requireTools();
    const sandbox = await NodeSandbox.create();
    const ctx = new ScenarioContext(variant, sandbox, fs.mkdtempSync(path.join(os.tmpdir(), `kube-lb-${sandbox.id}-`)), family);
    writeNodes(ctx.manifestsDir, NODES_FILE, Object.values(NODES));
    if (family === 'IPv6') ctx.useDualStack();
    try {
      await sandbox.addPods(pods.map((pod) => ({ ...pod, node: pod.node ?? 'node-a' })));
      // The servers start together: each is a Node.js process, slow to start under emulation.
      await Promise.all(pods.filter((p) => p.serves ?? true).map((p) => sandbox.startServer(p.name, SERVER_TCP_PORTS, SERVER_UDP_PORTS)));
    } catch (err) {
      // Nothing of kube-lb's exists yet: only the namespaces and processes go.
      await sandbox.destroy();
      fs.rmSync(ctx.manifestsDir, { recursive: true, force: true });
      throw err;
    }
    return ctx;
  }

  /** Gives the nodes their IPv6 addresses and pod ranges too, and kube-lb the IPv6 pod range: for the IPv6 rows, before kube-lb starts. */
  useDualStack(): void {
    writeNodes(this.manifestsDir, NODES_FILE, Object.values(NODES).map((n) => ({ ...n, ipv6: { ip: n.ip6, podCIDR: n.podCIDR6 } })));
    this.localTrafficArgs = [`--pod-interface-name-prefix=${this.sandbox.interfacePrefix}`, `--cluster-cidr=10.244.0.0/16,${CLUSTER_CIDR6}`];
  }

  writeServices(file: string, services: ServiceSpec[]): void {
    writeManifest(this.manifestsDir, file, this.served(services));
  }

  /** The row's services as this context serves them: themselves, or their IPv6 twins. */
  served(services: ServiceSpec[]): ServiceSpec[] {
    return this.family === 'IPv6' ? services.map(ipv6Service) : services;
  }

  /** The row's addresses (comma-separated) as this context serves them: themselves, or their twins when the row runs over IPv6. */
  address(ip: string): string {
    return this.family === 'IPv6' ? ip.split(',').map(ipv6Twin).join(',') : ip;
  }

  removeFile(file: string): void {
    fs.unlinkSync(path.join(this.manifestsDir, file));
  }

  kubeLbArgs(extraArgs: readonly string[] = []): string[] {
    return [
      'run',
      `--backend=${this.variant.backend}`,
      ...this.variant.flags(this.sandbox),
      `--manifests=${this.manifestsDir}`,
      `--hostname-override=${KUBE_LB_NODE}`,
      ...this.localTrafficArgs,
      ...extraArgs,
    ];
  }

  /**
   * Starts kube-lb, run by the command `under` if given (say, setpriv), and
   * waits for its log line `until`: by default the first successful sync's "ready".
   */
  async startKubeLb(env: NodeJS.ProcessEnv = process.env, extraArgs: readonly string[] = [], { until = /"msg":"ready"/, under = [] as string[] } = {}): Promise<void> {
    assert.equal(this.kubeLbProcess, undefined, 'kube-lb already running');
    const [cmd, ...args] = [...under, process.execPath, cliPath, ...this.kubeLbArgs(extraArgs)];
    const child = this.sandbox.spawnInNode(cmd!, args, env);
    child.stderr!.on('data', (d: Buffer) => (this.logs += d.toString()));
    this.kubeLbProcess = child;
    // Room for a loaded machine: the first sync of 2,000 services takes seconds.
    try {
      await waitForLine(child, until, slow(180_000), 'kube-lb');
    } catch (err) {
      // One that exited has nothing left to stop: destroy() would wait for its exit forever.
      if (child.exitCode !== null || child.signalCode !== null) this.kubeLbProcess = undefined;
      throw err;
    }
  }

  /** Stops kube-lb with SIGTERM and checks that it exits cleanly. */
  async stopKubeLb(): Promise<void> {
    const child = this.kubeLbProcess;
    assert.ok(child, 'kube-lb is not running');
    this.kubeLbProcess = undefined;
    const code = await new Promise<number | null>((resolve) => {
      child.once('exit', (c) => resolve(c));
      child.kill('SIGTERM');
    });
    assert.equal(code, 0, `kube-lb exit code; logs:\n${this.logs.slice(-3000)}`);
  }

  /** The running kube-lb's process id. */
  get kubeLbPid(): number {
    assert.ok(this.kubeLbProcess?.pid, 'kube-lb is not running');
    return this.kubeLbProcess.pid;
  }

  /** Kills kube-lb with SIGKILL, as the OOM killer does: nothing of its own runs on the way out. */
  async killKubeLb(): Promise<void> {
    const child = this.kubeLbProcess;
    assert.ok(child, 'kube-lb is not running');
    this.kubeLbProcess = undefined;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async kubeLb(...args: string[]): Promise<string> {
    return this.kubeLbIn(this.sandbox.nodeNs, ...args);
  }

  /** Runs a kube-lb command with this backend's flags in another of the sandbox's network namespaces. */
  async kubeLbIn(ns: string, ...args: string[]): Promise<string> {
    return (await this.sandbox.execIn(ns, process.execPath, [cliPath, ...args, `--backend=${this.variant.backend}`, ...this.variant.flags(this.sandbox)])).stdout;
  }

  /** Runs the test client in a pod, on either node. */
  client(pod: string, mode: ClientMode, ip: string, port: number, countOrMs: number, opts: ClientOptions = {}): Promise<ClientResult> {
    return this.sandbox.client(pod, mode, this.address(ip), port, countOrMs, opts);
  }

  /** Runs the test client outside the cluster (source: EXTERNAL_CLIENT_IPS[0] unless opts.source says otherwise). */
  externalClient(mode: ClientMode, ip: string, port: number, countOrMs: number, opts: ClientOptions = {}): Promise<ClientResult> {
    const source = opts.source === undefined ? {} : { source: this.address(opts.source) };
    return this.sandbox.clientAt('external', mode, this.address(ip), port, countOrMs, { ...opts, ...source });
  }

  /** An http:// URL of the row's address and port, as this context serves it (an IPv6 host bracketed). */
  httpUrl(ip: string, port: number): string {
    return `http://${destinationKey({ ip: this.address(ip), port })}/`;
  }

  /** Runs the test client in node-a's own network namespace, as a hostNetwork pod would. */
  hostClient(mode: ClientMode, ip: string, port: number, countOrMs: number, opts: ClientOptions = {}): Promise<ClientResult> {
    return this.sandbox.clientAt('host', mode, this.address(ip), port, countOrMs, opts);
  }

  /** Fetches a URL with curl from a place; see NodeSandbox.curl. */
  curl(place: ClientPlace, url: string, opts: { source?: string; timeoutMs?: number } = {}): Promise<string> {
    return this.sandbox.curl(place, url, opts);
  }

  /** Polls check until it returns true; returns the time it took, or fails after timeoutMs (host time, scaled by the slowdown). */
  async waitUntil(what: string, hostTimeoutMs: number, check: () => Promise<boolean>): Promise<number> {
    const timeoutMs = slow(hostTimeoutMs);
    const start = performance.now();
    while (performance.now() - start < timeoutMs) {
      if (await check()) return performance.now() - start;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${what}: not true after ${timeoutMs} ms; kube-lb logs:\n${this.logs.slice(-3000)}`);
  }

  /** Resolves once kube-lb has logged a line matching `pattern`: its log can reach the test after the kernel state the line tells of. */
  async waitForLog(what: string, pattern: RegExp, hostTimeoutMs = 10_000): Promise<void> {
    await this.waitUntil(what, hostTimeoutMs, async () => pattern.test(this.logs));
  }

  get kubeLbLogs(): string {
    return this.logs;
  }

  /** Runs the backend's cleanup, checks it leaves nothing, and tears the sandbox down. */
  async destroy(): Promise<void> {
    try {
      if (this.kubeLbProcess) await this.stopKubeLb();
      await this.kubeLb('cleanup');
      await this.variant.assertNothingLeft(this.sandbox);
    } finally {
      await this.sandbox.destroy();
      fs.rmSync(this.manifestsDir, { recursive: true, force: true });
    }
  }
}

/**
 * Runs a hold (hold, udp-hold or udp-connected, started by `start` with the
 * `until` it passes on) while body runs, and ends it once body is done, so
 * that the time the hold asks for is only its bound. Returns its result.
 */
export async function holdWhile(start: (until: Promise<void>) => Promise<ClientResult>, body: () => Promise<void>): Promise<ClientResult> {
  let done!: () => void;
  const until = new Promise<void>((resolve) => (done = resolve));
  const held = start(until);
  // Its failure is the caller's once body is done; until then it must not go unhandled.
  held.catch(() => undefined);
  try {
    await body();
  } finally {
    done();
  }
  return held;
}

/** Runs `body` in a fresh context (over IPv6 if `family` says so) and always cleans up and tears the sandbox down. */
export async function withContext(variant: BackendVariant, pods: PodSpec[], body: (ctx: ScenarioContext) => Promise<void>, family: IPFamily = 'IPv4'): Promise<void> {
  const ctx = await ScenarioContext.create(variant, pods, family);
  let failure: unknown;
  try {
    await body(ctx);
  } catch (err) {
    failure = err;
  }
  try {
    await ctx.destroy();
  } catch (err) {
    // A row that failed often leaves state its cleanup check then finds: the row's own failure comes first.
    if (failure === undefined) throw err;
    throw new AggregateError([failure, err], `${(failure as Error).message}\n(and then its cleanup: ${(err as Error).message})`);
  }
  if (failure !== undefined) throw failure;
}
