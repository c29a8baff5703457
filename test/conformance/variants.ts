// The backend variants the conformance suite runs against. Adding a
// backend is one entry here (and its row in src/backends/capabilities.ts)
// plus a one-line <variant>.test.ts.
import fs from 'node:fs';
import assert from 'node:assert/strict';
import { FILTER_CHAINS as IPVS_FILTER_CHAINS, NAT_CHAINS as IPVS_NAT_CHAINS } from '../../src/backends/ipvs/netfilter.js';
import type { BackendName } from '../../src/backends/registry.js';
import type { NodeSandbox } from '../lib/sandbox.js';
import { requireCommand } from '../lib/preconditions.js';
import { socketProgramsServing } from '../lib/socket-programs.js';

export interface BackendVariant {
  /** Names the variant in test titles: "iptables-nft". */
  name: string;
  backend: BackendName;
  /** Flags for every kube-lb command besides --backend. */
  flags(sandbox: NodeSandbox): string[];
  /** Fails if the tools this variant drives are missing. */
  requireTools(): void;
  /** Fails if anything this backend creates is left in the node after cleanup. */
  assertNothingLeft(sandbox: NodeSandbox): Promise<void>;
}

function iptablesVariant(mode: 'nft' | 'legacy'): BackendVariant {
  return {
    name: `iptables-${mode}`,
    backend: 'iptables',
    flags: () => [`--iptables-mode=${mode}`],
    requireTools: () => {
      for (const command of ['iptables', 'ip6tables']) requireCommand(`${command}-${mode}-restore`, 'apt-get install iptables');
    },
    async assertNothingLeft(sandbox) {
      for (const command of ['iptables', 'ip6tables']) {
        const saved = await sandbox.inNode(`${command}-${mode}-save`);
        const ours = saved
          .split('\n')
          .filter((l) => /^:KUBE-(SERVICES|EXTERNAL-SERVICES|NODEPORTS|PROXY-FIREWALL|FORWARD|MARK-MASQ|POSTROUTING|SVC-|SVL-|EXT-|FW-|SEP-)|-j KUBE-(SERVICES|EXTERNAL-SERVICES|PROXY-FIREWALL|FORWARD|POSTROUTING)\b/.test(l));
        assert.deepEqual(ours, [], `${command}-${mode} rules of kube-lb remain after cleanup`);
      }
    },
  };
}

/** ebpf, with XDP off, or in the driver on node-a's uplink (for the rows that come from outside). */
function ebpfVariant(xdp: 'off' | 'native'): BackendVariant {
  return {
    name: xdp === 'off' ? 'ebpf' : 'ebpf-xdp',
    backend: 'ebpf',
    flags: (sandbox) => [`--bpf-pin-path=${sandbox.pinPath}`, ...(xdp === 'off' ? [] : [`--bpf-xdp=${xdp}`])],
    requireTools: () => requireCommand('bpftool', 'apt-get install bpftool'),
    async assertNothingLeft(sandbox) {
      assert.equal(fs.existsSync(sandbox.pinPath), false, 'pins remain after cleanup');
      assert.deepEqual(await socketProgramsServing(sandbox), [], "socket programs serving the node's namespace remain attached after cleanup");
      assert.doesNotMatch(await sandbox.inNode('ip', '-d', 'link', 'show', 'eth0'), /prog\/xdp/, 'an XDP program remains on the uplink after cleanup');
    },
  };
}

export const VARIANTS: BackendVariant[] = [
  ebpfVariant('off'),
  ebpfVariant('native'),
  iptablesVariant('nft'),
  iptablesVariant('legacy'),
  {
    // Runs only in the VM (test/vm): the host kernel has no IPVS.
    name: 'ipvs',
    backend: 'ipvs',
    flags: () => [],
    requireTools: () => requireCommand('ipset', 'apt-get install ipset'),
    async assertNothingLeft(sandbox) {
      const links = await sandbox.inNode('ip', '-o', 'link', 'show');
      assert.doesNotMatch(links, /kube-ipvs0/, 'kube-ipvs0 remains after cleanup');
      // Virtual servers in the service ranges 10.96.0.0/12 (hex 0A6x....) and fd00:96::/48 (written in full); foreign ones may stay.
      assert.doesNotMatch(await sandbox.inNode('cat', '/proc/net/ip_vs'), /^(TCP|UDP|SCTP)\s+(0A6|\[fd00:0096:)/im, 'IPVS virtual servers remain after cleanup');
      assert.doesNotMatch(await sandbox.inNode('ipset', 'list', '-n'), /^KUBE-/m, 'kube-lb ipsets remain after cleanup');
      const chains = [...IPVS_NAT_CHAINS, ...IPVS_FILTER_CHAINS].join('|');
      for (const command of ['iptables-save', 'ip6tables-save']) {
        assert.doesNotMatch(await sandbox.inNode(command), new RegExp(`^:(${chains})\\b|-j (${chains})\\b`, 'm'), `kube-lb rules remain in ${command} after cleanup`);
      }
    },
  },
  {
    name: 'nftables',
    backend: 'nftables',
    flags: () => [],
    requireTools: () => requireCommand('nft', 'apt-get install nftables'),
    async assertNothingLeft(sandbox) {
      const tables = await sandbox.inNode('nft', 'list', 'tables');
      assert.doesNotMatch(tables, /table ip kube-lb\b/, 'the kube-lb nft table remains after cleanup');
    },
  },
];

export function variant(name: string): BackendVariant {
  const v = VARIANTS.find((x) => x.name === name);
  if (v === undefined) throw new Error(`no backend variant ${name}; known: ${VARIANTS.map((x) => x.name).join(', ')}`);
  return v;
}
