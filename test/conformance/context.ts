// What a scenario runs against: a sandboxed node, a manifest directory and
// one kube-lb process driving one backend.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { cliPath } from '../lib/paths.js';
import { type ClientMode, type ClientResult, NodeSandbox, waitForLine } from '../lib/sandbox.js';
import { type ServiceSpec, writeManifest } from '../lib/manifests.js';
import type { BackendVariant } from './variants.js';
import { slow } from '../lib/slowdown.js';

export interface PodSpec {
  name: string;
  ip: string;
  /** Serves TCP 8080 and 8081 and UDP 5353 (the default) or nothing. */
  serves?: boolean;
}

export const SERVER_TCP_PORTS = [8080, 8081];
export const SERVER_UDP_PORTS = [5353];

export class ScenarioContext {
  private kubeLbProcess: ChildProcess | undefined;
  private logs = '';

  private constructor(
    readonly variant: BackendVariant,
    readonly sandbox: NodeSandbox,
    readonly manifestsDir: string,
  ) {}

  static async create(variant: BackendVariant, pods: PodSpec[]): Promise<ScenarioContext> {
    variant.requireTools();
    const sandbox = await NodeSandbox.create();
    const ctx = new ScenarioContext(variant, sandbox, fs.mkdtempSync(path.join(os.tmpdir(), `kube-lb-${sandbox.id}-`)));
    for (const pod of pods) {
      await sandbox.addPod(pod.name, pod.ip);
      if (pod.serves ?? true) await sandbox.startServer(pod.name, SERVER_TCP_PORTS, SERVER_UDP_PORTS);
    }
    return ctx;
  }

  writeServices(file: string, services: ServiceSpec[]): void {
    writeManifest(this.manifestsDir, file, services);
  }

  removeFile(file: string): void {
    fs.unlinkSync(path.join(this.manifestsDir, file));
  }

  kubeLbArgs(): string[] {
    return [
      'run',
      `--backend=${this.variant.backend}`,
      ...this.variant.flags(this.sandbox),
      `--manifests=${this.manifestsDir}`,
      '--hostname-override=node1',
      `--pod-interface-name-prefix=${this.sandbox.interfacePrefix}`,
      '--cluster-cidr=10.244.0.0/16',
    ];
  }

  /** Starts kube-lb in the node namespace; resolves after its first sync. */
  async startKubeLb(env: NodeJS.ProcessEnv = process.env): Promise<void> {
    assert.equal(this.kubeLbProcess, undefined, 'kube-lb already running');
    const child = this.sandbox.spawnInNode(process.execPath, [cliPath, ...this.kubeLbArgs()], env);
    child.stderr!.on('data', (d: Buffer) => (this.logs += d.toString()));
    this.kubeLbProcess = child;
    // Room for a loaded machine: the first sync of 2,000 services takes seconds.
    await waitForLine(child, /"msg":"ready"/, slow(120_000), 'kube-lb');
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
    return (await this.sandbox.execInNode(process.execPath, [cliPath, ...args, `--backend=${this.variant.backend}`, ...this.variant.flags(this.sandbox)])).stdout;
  }

  client(pod: string, mode: ClientMode, ip: string, port: number, countOrMs: number): Promise<ClientResult> {
    return this.sandbox.client(pod, mode, ip, port, countOrMs);
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

/** Runs `body` in a fresh context and always cleans up and tears the sandbox down. */
export async function withContext(variant: BackendVariant, pods: PodSpec[], body: (ctx: ScenarioContext) => Promise<void>): Promise<void> {
  const ctx = await ScenarioContext.create(variant, pods);
  try {
    await body(ctx);
  } finally {
    await ctx.destroy();
  }
}
