// A TCP connection held open and quiet by test/lib/idle-client.ts in a pod,
// to be used once more later: after something was done to the node.
import path from 'node:path';
import { testLibDir } from './paths.js';
import { type NodeSandbox, outputOf, waitForLine } from './sandbox.js';
import { slow } from './slowdown.js';

/** What the line sent on use() got: the endpoint's answer, or the error. */
export type IdleUse = { answer: string } | { error: string };

export const lastLine = (text: string): string => text.trim().split('\n').at(-1)!;

/** Connects from pod `client` to target:port, exchanges a line, and resolves once the connection is quiet. */
export async function idleConnection(sandbox: NodeSandbox, client: string, target: string, port: number): Promise<{ use(): Promise<IdleUse> }> {
  const child = sandbox.spawnInPod(client, process.execPath, [path.join(testLibDir, 'idle-client.js'), target, String(port)]);
  const used = outputOf(child, 'the idle client');
  // Handled in use(); should the client fail early, waitForLine reports it first.
  used.catch(() => undefined);
  await waitForLine(child, /idle/, slow(10_000), 'the idle client');
  return {
    async use() {
      child.kill('SIGUSR2');
      return JSON.parse(lastLine(await used)) as IdleUse;
    },
  };
}
