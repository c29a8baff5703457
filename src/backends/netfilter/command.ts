// Runs the netfilter tools (iptables-restore, iptables-save, nft) without a
// shell: arguments are an argv array and rule text goes through stdin, so no
// name or comment is ever parsed by a shell.
import { spawn } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs `cmd args`, writing `input` to its stdin; rejects with the tool's own message on a non-zero exit. */
export function runCommand(cmd: string, args: readonly string[], input = ''): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.once('error', (e) => reject(new Error(`${cmd}: ${e.message}`)));
    child.once('close', (code, signal) => {
      const result = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
      if (code === 0) resolve(result);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${result.stderr.trim().slice(0, 2000)}`));
    });
    // A tool that fails early closes stdin; the exit status reports that.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}
