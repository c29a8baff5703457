// Preconditions of the tests that touch the kernel. A missing one fails the
// test with a message saying what is missing; nothing is skipped.
import { execFileSync } from 'node:child_process';

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('precondition: this test drives the kernel and must run as root');
}

export function requireCommand(cmd: string, hint: string): void {
  try {
    execFileSync('which', [cmd], { stdio: 'ignore' });
  } catch {
    throw new Error(`precondition: ${cmd} is not installed (${hint})`);
  }
}
