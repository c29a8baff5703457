// Records the exact bytes kube-lb sends to a netfilter tool: a wrapper of
// the same name, first on kube-lb's PATH, saves its stdin and then runs the
// real tool on it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

export class ToolCapture {
  private constructor(
    private readonly dir: string,
    private readonly payloadDir: string,
  ) {}

  /** Wraps `tool` (e.g. "iptables-nft-restore"), which must be installed. */
  static create(tool: string): ToolCapture {
    const real = execFileSync('which', [tool]).toString().trim();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-capture-'));
    const payloadDir = path.join(dir, 'payloads');
    fs.mkdirSync(path.join(dir, 'bin'));
    fs.mkdirSync(payloadDir);
    const wrapper = path.join(dir, 'bin', tool);
    fs.writeFileSync(wrapper, `#!/bin/sh\nf="${payloadDir}/$(date +%s%N)-$$"\ncat > "$f"\nexec ${real} "$@" < "$f"\n`, { mode: 0o755 });
    return new ToolCapture(dir, payloadDir);
  }

  /** The environment for kube-lb: the wrapper comes first on PATH. */
  env(): NodeJS.ProcessEnv {
    return { ...process.env, PATH: `${path.join(this.dir, 'bin')}:${process.env['PATH'] ?? ''}` };
  }

  /** Every non-empty input sent since the last clear(), oldest first. */
  payloads(): string[] {
    return fs
      .readdirSync(this.payloadDir)
      .sort()
      .map((f) => fs.readFileSync(path.join(this.payloadDir, f), 'utf8'))
      .filter((p) => p !== '');
  }

  clear(): void {
    for (const f of fs.readdirSync(this.payloadDir)) fs.rmSync(path.join(this.payloadDir, f));
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
