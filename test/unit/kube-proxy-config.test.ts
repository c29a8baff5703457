import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadKubeProxyConfig } from '../../src/config/kube-proxy-config.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-config-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

describe('--config KubeProxyConfiguration', () => {
  it('turns supported fields into flags and names every unsupported field that is set', () => {
    // As kubeadm writes it: every field present, most at their zero value.
    const file = write(
      'kubeadm.yaml',
      `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: cali
detectLocalMode: InterfaceNamePrefix
conntrack:
  maxPerCore: 32768
  min: null
  tcpBeLiberal: true
healthzBindAddress: ""
hostnameOverride: node-a
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 2s
  syncPeriod: 45s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 3s
  scheduler: lc
  strictARP: true
  tcpFinTimeout: 30s
  tcpTimeout: 0s
  udpTimeout: 0s
metricsBindAddress: 0.0.0.0:10249
mode: nftables
nodePortAddresses:
- 192.168.0.0/16
- 127.0.0.1/32
syncPeriod: 1m0s
`,
    );
    const { args, warnings } = loadKubeProxyConfig(file);
    assert.deepEqual(args, [
      '--sync-period=45s',
      '--min-sync-period=2s',
      '--masquerade-bit=14',
      '--iptables-localhost-nodeports=false',
      '--min-sync-period=3s',
      '--sync-period=1m0s',
      '--backend=nftables',
      '--cluster-cidr=10.244.0.0/16',
      '--detect-local-mode=InterfaceNamePrefix',
      '--pod-interface-name-prefix=cali',
      '--nodeport-addresses=192.168.0.0/16,127.0.0.1/32',
      '--hostname-override=node-a',
      '--metrics-bind-address=0.0.0.0:10249',
      '--kubeconfig=/var/lib/kube-proxy/kubeconfig.conf',
      '--ipvs-scheduler=lc',
      '--ipvs-strict-arp=true',
      '--ipvs-tcp-timeout=0s',
      '--ipvs-tcpfin-timeout=30s',
      '--ipvs-udp-timeout=0s',
      '--conntrack-tcp-be-liberal=true',
    ]);
    assert.deepEqual(warnings, [
      `--config ${file}: field bindAddress is not supported by kube-lb; ignored`,
      `--config ${file}: field configSyncPeriod is not supported by kube-lb; ignored`,
      `--config ${file}: field conntrack.maxPerCore is not supported by kube-lb; ignored`,
    ]);
  });

  it("takes ipvs.excludeCIDRs as --ipvs-exclude-cidrs, comma-separated", () => {
    const file = write('exclude.yaml', 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nipvs:\n  excludeCIDRs:\n  - 192.0.2.0/24\n  - 198.51.100.7/32\n');
    assert.deepEqual(loadKubeProxyConfig(file), { args: ['--ipvs-exclude-cidrs=192.0.2.0/24,198.51.100.7/32'], warnings: [] });
  });

  it('rejects a file that is not a KubeProxyConfiguration, naming it', () => {
    const other = write('other.yaml', 'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n');
    assert.throws(() => loadKubeProxyConfig(other), { message: `--config ${other}: not a kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration` });
    const broken = write('broken.yaml', 'kind: [\n');
    assert.throws(() => loadKubeProxyConfig(broken), (err: Error) => err.message.startsWith(`--config ${broken}: `));
    const badType = write('bad-type.yaml', 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: [ebpf]\n');
    assert.throws(() => loadKubeProxyConfig(badType), { message: `--config ${badType}: mode must be a string, a number, true or false, got ["ebpf"]` });
  });
});
