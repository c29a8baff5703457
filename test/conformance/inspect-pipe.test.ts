// `kube-lb inspect -o json | jq` must get the whole document. Node writes to
// a pipe without blocking and queues what the pipe cannot take yet, so a
// command that exits right after writing loses whatever a slow reader has
// not taken. One backend is enough: the output path is the CLI's, not a
// backend's.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServiceSpec } from '../lib/manifests.js';
import { cliPath } from '../lib/paths.js';
import { withContext } from './context.js';
import { variant } from './variants.js';

const SERVICES = 1000;

// The reader starts once kube-lb has exited, or after a few seconds: a
// kube-lb that drains its output before exiting waits for the reader, and
// one that does not has exited with part of its output still queued.
const SLOW_READER = `
status=$1; shift
{ "$@"; echo $? > "$status"; } | { for _ in $(seq 50); do [ -e "$status" ] && break; sleep 0.1; done; cat; }
`;

describe('kube-lb output through a pipe', () => {
  it(`inspect -o json of ${SERVICES} services reaches a slow reader whole`, () =>
    withContext(variant('nftables'), [], async (ctx) => {
      const services: ServiceSpec[] = Array.from({ length: SERVICES }, (_, i) => ({
        name: `svc-${i}`,
        clusterIP: `10.96.${10 + Math.floor(i / 250)}.${(i % 250) + 1}`,
        ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
        endpoints: [{ ip: '10.244.0.11', ready: true }],
      }));
      ctx.writeServices('many.yaml', services);
      await ctx.startKubeLb();
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-pipe-'));
      try {
        const status = path.join(scratch, 'status');
        const inspect = [process.execPath, cliPath, 'inspect', '-o', 'json', `--backend=${ctx.variant.backend}`, ...ctx.variant.flags(ctx.sandbox)];
        const { stdout } = await ctx.sandbox.execInNode('bash', ['-c', SLOW_READER, 'slow-reader', status, ...inspect]);
        assert.equal(fs.readFileSync(status, 'utf8').trim(), '0', 'kube-lb inspect exit status');
        let views: { frontend: { ip: string } }[];
        try {
          views = JSON.parse(stdout) as typeof views;
        } catch (err) {
          assert.fail(`the reader got ${stdout.length} bytes that do not parse as JSON (${(err as Error).message})`);
        }
        assert.equal(views.length, SERVICES, 'one frontend per service');
        assert.equal(views.at(-1)!.frontend.ip, services.at(-1)!.clusterIP);
      } finally {
        fs.rmSync(scratch, { recursive: true, force: true });
      }
    }));
});
