// kube-lb diff's comparison and lines: what differs between a backend's plan
// and what it reads from the kernel, named from the source.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FrontendView } from '../../src/backends/backend.js';
import { diffViews, formatDiffs } from '../../src/diff.js';
import type { FrontendSource } from '../../src/inspect-source.js';
import { type FrontendKind, type ServicePortState, frontendKey } from '../../src/model/contract.js';

const view = (kind: FrontendKind, ip: string, port: number, ...endpoints: string[]): FrontendView => ({
  kind,
  frontend: { ip, port, protocol: 'TCP' },
  destinations: endpoints.map((e) => ({ ip: e.split(':')[0]!, port: Number(e.split(':')[1]) })),
});

/** The source's frontends: only the names matter to the diff. */
function sources(...named: [FrontendView, string, string][]): Map<string, FrontendSource> {
  return new Map(
    named.map(([v, name, portName]) => {
      const [namespace, service] = name.split('/') as [string, string];
      const servicePort = { key: `${name}:${portName}`, namespace, name: service, portName } as ServicePortState;
      return [frontendKey(v.frontend), { servicePort, frontend: v.frontend, endpointNodes: new Map() } as unknown as FrontendSource];
    }),
  );
}

describe('kube-lb diff lines', () => {
  const web = view('ClusterIP', '10.96.0.10', 80, '10.244.0.12:8080', '10.244.0.11:8080');
  const webNodePort = view('NodePort', '172.18.0.2', 30080, '10.244.0.11:8080');
  const api = view('ClusterIP', '10.96.0.20', 443);
  const gone = view('ClusterIP', '10.96.0.30', 80, '10.244.0.13:8080');

  it('prints additions, then changes, then removals, each by address; endpoints sorted; nothing when nothing differs', () => {
    const planned = [webNodePort, view('ClusterIP', '10.96.0.10', 80, '10.244.0.11:8080'), api];
    const current = [gone, view('ExternalIP', '172.18.0.2', 30080, '10.244.0.11:8080'), web];
    const named = sources([web, 'default/web', 'http'], [webNodePort, 'default/web', 'http'], [api, 'shop/api', '']);
    assert.equal(
      formatDiffs(diffViews(planned, current, named)),
      [
        '+ shop/api <unset> ClusterIP 10.96.0.20:443/TCP -> (no endpoints)',
        '~ default/web http ClusterIP 10.96.0.10:80/TCP: 10.244.0.11:8080, 10.244.0.12:8080 -> 10.244.0.11:8080',
        '~ default/web http NodePort 172.18.0.2:30080/TCP (was ExternalIP): 10.244.0.11:8080 -> 10.244.0.11:8080',
        '- <none> <none> ClusterIP 10.96.0.30:80/TCP -> 10.244.0.13:8080',
        '',
      ].join('\n'),
    );
    // Slots keep the order endpoints came in: the kernel's order is not a difference.
    assert.deepEqual(diffViews([web], [view('ClusterIP', '10.96.0.10', 80, '10.244.0.11:8080', '10.244.0.12:8080')], named), []);
  });
});
