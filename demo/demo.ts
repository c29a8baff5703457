// `make demo`: a throwaway node in network namespaces, one ClusterIP
// service with a TCP and a UDP port, and kube-lb's ebpf datapath carrying
// real traffic to it. Everything is torn down at the end.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { type ServiceSpec, writeManifest } from '../test/lib/manifests.js';
import { type ClientResult, NodeSandbox, waitForLine } from '../test/lib/sandbox.js';

const exec = promisify(execFile);
const KUBE_LB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/kube-lb');
const VIP = '10.96.0.10';

const step = (n: number, text: string): void => console.log(`\n\x1b[1m${n}. ${text}\x1b[0m`);
const show = (text: string): void => console.log(text.replace(/^/gm, '   ').trimEnd());

function summary(r: ClientResult): string {
  const who = Object.entries(r.answers)
    .sort()
    .map(([pod, n]) => `${pod} ×${n}`)
    .join(', ');
  return `${who || 'nobody'}${r.failures ? `; ${r.failures} failed` : ''}`;
}

function service(endpoints: { ip: string; ready: boolean }[]): ServiceSpec {
  return {
    name: 'web',
    clusterIP: VIP,
    ports: [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
      { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
    ],
    endpoints,
  };
}

async function main(): Promise<void> {
  const started = performance.now();
  const sandbox = await NodeSandbox.create();
  const manifests = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-demo-'));
  const kubeLb = (...args: string[]) => sandbox.execInNode(KUBE_LB, [...args, '--backend=ebpf', `--bpf-pin-path=${sandbox.pinPath}`]);
  try {
    step(1, 'A throwaway node: one client pod and three backend pods on /32 routes, rp_filter=1');
    await sandbox.addPod('client', '10.244.0.2');
    const backends = [
      { name: 'web-a', ip: '10.244.0.11' },
      { name: 'web-b', ip: '10.244.0.12' },
      { name: 'web-c', ip: '10.244.0.13' },
    ];
    for (const b of backends) {
      await sandbox.addPod(b.name, b.ip);
      await sandbox.startServer(b.name, [8080], [5353]);
      show(`${b.name}  ${b.ip}  answers TCP 8080 and UDP 5353 with its name`);
    }

    step(2, `Manifests: Service web (ClusterIP ${VIP}, 80/TCP -> 8080, 53/UDP -> 5353); web-c is not ready`);
    writeManifest(manifests, 'web.yaml', [service([{ ip: '10.244.0.11', ready: true }, { ip: '10.244.0.12', ready: true }, { ip: '10.244.0.13', ready: false }])]);
    show(`written to ${manifests}/web.yaml as a kind: List, as kubectl prints it`);

    step(3, 'kube-lb --backend=ebpf, and traffic from the client pod');
    const child = sandbox.spawnInNode(KUBE_LB, [
      'run', '--backend=ebpf', `--manifests=${manifests}`, '--hostname-override=demo-node',
      `--pod-interface-name-prefix=${sandbox.interfacePrefix}`, `--bpf-pin-path=${sandbox.pinPath}`,
    ]);
    await waitForLine(child, /"msg":"ready"/, 30_000, 'kube-lb');
    show('kube-lb is ready (programs attached to the pod interfaces, maps written)');
    show(`30 TCP connections to ${VIP}:80   -> ${summary(await sandbox.client('client', 'tcp', VIP, 80, 30))}`);
    show(`30 UDP datagrams  to ${VIP}:53   -> ${summary(await sandbox.client('client', 'udp', VIP, 53, 30))}`);
    show('web-c is not ready, so it never answers.');

    step(4, 'What the kernel holds: kube-lb inspect, and bpftool on a pinned map');
    show((await kubeLb('inspect')).stdout);
    const dump = (await exec('bpftool', ['map', 'dump', 'pinned', `${sandbox.pinPath}/kube_lb_svc`])).stdout;
    show(`$ bpftool map dump pinned ${sandbox.pinPath}/kube_lb_svc   (first entries)`);
    show(dump.split('\n').slice(0, 24).join('\n'));

    step(5, 'Scale: web-c becomes ready, web-a goes away');
    writeManifest(manifests, 'web.yaml', [service([{ ip: '10.244.0.12', ready: true }, { ip: '10.244.0.13', ready: true }])]);
    const t0 = performance.now();
    for (;;) {
      const r = await sandbox.client('client', 'tcp', VIP, 80, 12);
      if (Object.keys(r.answers).sort().join() === 'web-b,web-c' && r.failures === 0) break;
      if (performance.now() - t0 > 5000) throw new Error(`the change did not reach the datapath: ${summary(r)}`);
    }
    show(`the datapath followed the edit within ${Math.round(performance.now() - t0)} ms`);
    show(`30 TCP connections to ${VIP}:80   -> ${summary(await sandbox.client('client', 'tcp', VIP, 80, 30))}`);
    show(`30 UDP datagrams  to ${VIP}:53   -> ${summary(await sandbox.client('client', 'udp', VIP, 53, 30))}`);
    show((await kubeLb('inspect')).stdout);

    step(6, 'Tear down: stop kube-lb, kube-lb cleanup, delete the namespaces');
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await kubeLb('cleanup');
    show(`cleanup removed programs, filters and ${sandbox.pinPath}`);
  } finally {
    await sandbox.destroy();
    fs.rmSync(manifests, { recursive: true, force: true });
  }
  console.log(`\ndemo done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

await main();
