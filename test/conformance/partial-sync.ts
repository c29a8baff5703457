// The incremental-sync check shared by the netfilter backends: with 1,000
// services programmed, one endpoint change must send only what it touched,
// judged on the bytes the backend actually sent to its tool.
import assert from 'node:assert/strict';
import { clusterIpPort } from '../lib/frontends.js';
import type { ServiceSpec } from '../lib/manifests.js';
import { ToolCapture } from './capture.js';
import { withContext } from './context.js';
import { endpoints, ipOf, pods } from './scenarios.js';
import { variant } from './variants.js';

const SERVICES = 1000;
const CHANGED = 500;

function service(i: number, ready: string[]): ServiceSpec {
  return {
    name: `svc-${i}`,
    clusterIP: `10.96.${10 + Math.floor(i / 250)}.${(i % 250) + 1}`,
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
    endpoints: endpoints(ready),
  };
}

/** The changed service port as the backends name it. */
export const changedServicePort = clusterIpPort({
  key: `default/svc-${CHANGED}:http`,
  namespace: 'default',
  name: `svc-${CHANGED}`,
  portName: 'http',
  frontend: { ip: service(CHANGED, []).clusterIP, port: 80, protocol: 'TCP' },
  destinations: [
    { ip: ipOf('web-1'), port: 8080 },
    { ip: ipOf('web-2'), port: 8080 },
  ],
});

/**
 * Starts kube-lb with 1,000 one-endpoint services, then adds a second
 * endpoint to one of them; hands `check` the first sync's input and every
 * input sent for the change.
 */
export async function endpointChangeAmong1000Services(variantName: string, tool: string, check: (initial: string, change: string[]) => void): Promise<void> {
  const capture = ToolCapture.create(tool);
  try {
    await withContext(variant(variantName), pods, async (ctx) => {
      const all = Array.from({ length: SERVICES }, (_, i) => service(i, ['web-1']));
      ctx.writeServices('many.yaml', all);
      await ctx.startKubeLb(capture.env());
      const initial = capture.payloads().join('');
      capture.clear();
      all[CHANGED] = service(CHANGED, ['web-1', 'web-2']);
      ctx.writeServices('many.yaml', all);
      // Room for a loaded machine: this checks what is sent, not how fast.
      await ctx.waitUntil('the second endpoint answers', 30_000, async () => {
        const r = await ctx.client('client', 'tcp', changedServicePort.frontend.ip, 80, 12);
        return r.failures === 0 && Object.keys(r.answers).length === 2;
      });
      check(initial, capture.payloads());
    });
  } finally {
    capture.remove();
  }
}

/** The names a payload declares with `pattern`'s first group, sorted. */
export function declared(payload: string, pattern: RegExp): string[] {
  return [...payload.matchAll(pattern)].map((m) => m[1]!).sort();
}

export function assertSmall(payload: string, maxBytes: number, what: string): void {
  assert.ok(payload.length <= maxBytes, `${what}: ${payload.length} bytes sent:\n${payload.slice(0, 3000)}`);
}
