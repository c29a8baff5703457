// ipsetApply and ipsetList against the kernel, in a network namespace of the
// test's own (kl-ipset-PID), where the addon runs in a child process: kube-lb's
// sets of both families, created by the ipset command as a full sync creates
// them, take the changes a SetEntries makes, through applySetChanges, and
// `ipset save` then prints exactly the entries kube-lb keeps, as ipsetList
// reads them too. Needs root and the ipset command.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { IpsetChange, NativeAddon } from '../../src/native/index.js';
import { type FamilySets, SET_NAMES, type SetEntry, SetEntries, applySetChanges, familySetName, frontendSetEntries, readSets, renderSetsSync } from '../../src/backends/ipvs/netfilter.js';
import { requireCommand, requireRoot } from '../lib/preconditions.js';

const ns = `kl-ipset-${process.pid}`;
// The addon as kube-lb loads it (native()), with the batches' encoding.
const nativeModule = fileURLToPath(new URL('../../src/native/index.js', import.meta.url));

/** Runs a command in the namespace; its stdout. */
function inNetns(command: string, args: string[], input = ''): string {
  try {
    return execFileSync('ip', ['netns', 'exec', ns, command, ...args], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const { stderr, message } = err as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} in ${ns} failed: ${stderr?.trim() || message}`);
  }
}

// Reads the changes as JSON on stdin; writes each result, or why the call failed.
const APPLY = `
import { native } from ${JSON.stringify(nativeModule)};
let input = '';
process.stdin.on('data', (d) => (input += d)).on('end', async () => {
  let out;
  try {
    out = { results: (await native().ipsetApply(JSON.parse(input))).map((e) => e && { message: e.message, code: e.code, errno: e.errno }) };
  } catch (e) {
    out = { thrown: { name: e.name, message: e.message } };
  }
  process.stdout.write(JSON.stringify(out));
});`;

// Writes what ipsetList read.
const LIST = `
import { native } from ${JSON.stringify(nativeModule)};
process.stdout.write(JSON.stringify(native().ipsetList()));`;

/** ipsetApply and ipsetList as the addon runs them in the namespace. */
const netnsLib: Pick<NativeAddon, 'ipsetApply' | 'ipsetList'> = {
  ipsetList() {
    return JSON.parse(inNetns(process.execPath, ['--input-type=module', '-e', LIST])) as ReturnType<NativeAddon['ipsetList']>;
  },
  async ipsetApply(changes: readonly IpsetChange[]): Promise<(Error | null)[]> {
    const out = JSON.parse(inNetns(process.execPath, ['--input-type=module', '-e', APPLY], JSON.stringify(changes))) as {
      results?: ({ message: string; code: string; errno: number } | null)[];
      thrown?: { name: string; message: string };
    };
    if (out.thrown) throw out.thrown.name === 'TypeError' ? new TypeError(out.thrown.message) : new Error(out.thrown.message);
    return out.results!.map((e) => e && Object.assign(new Error(e.message), { code: e.code, errno: e.errno }));
  },
};

/** Every set's entries by kernel name, as `ipset save` prints them. */
function saved(): Map<string, Set<string>> {
  const sets = new Map<string, Set<string>>();
  for (const line of inNetns('ipset', ['save']).split('\n')) {
    const [verb, name, entry] = line.split(' ');
    if (verb === 'create') sets.set(name!, new Set());
    if (verb === 'add') sets.get(name!)!.add(entry!);
  }
  return sets;
}

type Frontend = Parameters<typeof frontendSetEntries>[0];
type Endpoint = { ip: string; port: number };

/** The set entries of these frontends, each with its endpoints on this node, as a sync makes them. */
const setEntries = (frontends: [Frontend, Endpoint[]?][]): SetEntry[] => frontends.flatMap(([f, onThisNode]) => frontendSetEntries(f, onThisNode ?? []));

const frontend = (kind: Frontend['kind'], family: Frontend['family'], ip: string, protocol: Frontend['protocol'], port: number, sourceRanges: string[] = []): Frontend => ({ kind, family, ip, protocol, port, masquerade: 'all', sourceRanges });

/** The sets holding `entries`, the others empty. */
function contentsOf(entries: readonly SetEntry[]): FamilySets {
  const sets = new SetEntries();
  sets.set('test', entries);
  return sets.contents();
}

/** What a full sync does to the sets: it makes them hold `entries`, from what the kernel holds. */
async function fullSync(entries: readonly SetEntry[]): Promise<void> {
  const wanted = new SetEntries();
  wanted.set('test', entries);
  const current = readSets(netnsLib);
  inNetns('ipset', ['restore', '-exist'], renderSetsSync(wanted.contents(), current, ['IPv4', 'IPv6']));
  await applySetChanges(netnsLib, wanted.missingFrom(current));
}

/** Checks that the kernel holds exactly `expected` in kube-lb's sets, by `ipset save` and by ipsetList. */
function assertKernelHolds(expected: FamilySets): void {
  const kernel = saved();
  const listed = readSets(netnsLib);
  for (const family of ['IPv4', 'IPv6'] as const) {
    for (const set of SET_NAMES) {
      const name = familySetName(set, family);
      assert.deepEqual([...kernel.get(name)!].sort(), [...expected[family][set]].sort(), `${name}, by ipset save`);
      assert.deepEqual([...listed[family][set]].sort(), [...expected[family][set]].sort(), `${name}, by ipsetList`);
    }
  }
}

// One element or more of every set type, in each family.
const first = setEntries([
  [frontend('ClusterIP', 'IPv4', '10.96.0.10', 'TCP', 80)],
  [frontend('ClusterIP', 'IPv4', '10.96.0.10', 'UDP', 53), [{ ip: '10.244.0.11', port: 5353 }]],
  [frontend('LoadBalancerIP', 'IPv4', '198.51.100.12', 'TCP', 80, ['198.18.0.0/24', '198.51.100.12/32', '203.0.113.7/32'])],
  [frontend('NodePort', 'IPv4', '192.168.0.2', 'TCP', 30080)],
  [frontend('NodePort', 'IPv4', '192.168.0.2', 'TCP', 30081)],
  [frontend('NodePort', 'IPv4', '192.168.0.2', 'SCTP', 30009)],
  [frontend('ClusterIP', 'IPv6', 'fd00:96::10', 'TCP', 80)],
  [frontend('ClusterIP', 'IPv6', 'fd00:96::10', 'UDP', 53), [{ ip: 'fd00::1', port: 53 }]],
  [frontend('LoadBalancerIP', 'IPv6', 'fd00:100::12', 'TCP', 80, ['fd00:18::/64', 'fd00:100::12/128', 'fd00:18::7/128'])],
  [frontend('NodePort', 'IPv6', 'fd00:168::2', 'UDP', 30053)],
]);

// Some of those gone, others come.
const second = setEntries([
  [frontend('ClusterIP', 'IPv4', '10.96.0.10', 'TCP', 80)],
  [frontend('ClusterIP', 'IPv4', '10.96.0.10', 'UDP', 53), [{ ip: '10.244.0.11', port: 5353 }]],
  [frontend('ClusterIP', 'IPv4', '10.96.0.11', 'TCP', 443), [{ ip: '10.244.0.12', port: 8080 }]],
  [frontend('LoadBalancerIP', 'IPv4', '198.51.100.12', 'TCP', 80, ['198.18.0.0/16'])],
  [frontend('NodePort', 'IPv4', '192.168.0.2', 'TCP', 30081)],
  [frontend('ClusterIP', 'IPv6', 'fd00:96::10', 'TCP', 80)],
  [frontend('ClusterIP', 'IPv6', 'fd00:96::11', 'SCTP', 9)],
  [frontend('NodePort', 'IPv6', 'fd00:168::2', 'UDP', 30053)],
  [frontend('NodePort', 'IPv6', 'fd00:168::2', 'UDP', 32767)],
]);

/** The error results of `results`, each as [code, message]. */
const errorsOf = (results: (Error | null)[]): ([string, string] | null)[] => results.map((e) => e && [(e as NodeJS.ErrnoException).code!, e.message]);

describe('ipsetApply', () => {
  before(async () => {
    requireRoot();
    requireCommand('ipset', 'apt-get install ipset');
    execFileSync('ip', ['netns', 'add', ns]);
    // kube-lb's sets of both families, as its full syncs create them.
    await fullSync([]);
  });

  after(() => {
    execFileSync('ip', ['netns', 'del', ns]);
  });

  it('adds and deletes elements of every set type and family; ipset save prints them as kube-lb keeps them', async () => {
    const sets = new SetEntries();
    await applySetChanges(netnsLib, sets.set('test', first));
    assertKernelHolds(contentsOf(first));
    await applySetChanges(netnsLib, sets.set('test', second));
    assertKernelHolds(contentsOf(second));
  });

  it('a full sync deletes what the kernel holds that is not wanted and adds what it lacks, creating a set that is missing', async () => {
    await fullSync(first);
    assertKernelHolds(contentsOf(first));
    inNetns('ipset', ['destroy', 'KUBE-6-LOOP-BACK']);
    await fullSync(second);
    assertKernelHolds(contentsOf(second));
  });

  it('sends a batch larger than one sendmsg, a set\'s changes many per message; the kernel holds every change', async () => {
    const loopBack = Array.from({ length: 300 }, (_, i) => ({ ip: `10.244.${i >> 8}.${i & 255}`, port: 8080 }));
    const many = [...second, ...setEntries([[frontend('ClusterIP', 'IPv4', '10.96.0.12', 'TCP', 80), loopBack]])];
    const sets = new SetEntries();
    sets.set('test', second);
    const changes = sets.set('test', many);
    assert.ok(changes.length > 256, `${changes.length} changes`);
    await applySetChanges(netnsLib, changes); // throws naming any change the kernel refused
    assertKernelHolds(contentsOf(many));
    await applySetChanges(netnsLib, sets.set('test', second));
    assertKernelHolds(contentsOf(second));
  });

  it('takes adding an element already there and deleting one that is not as done, as ipset -exist does', async () => {
    const results = await netnsLib.ipsetApply([
      ['add', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.10', 6, 80],
      ['add', 'KUBE-6-NODE-PORT-UDP', 'bitmap:port', 30053],
      ['del', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.99', 6, 80],
      ['del', 'KUBE-6-LOOP-BACK', 'hash:ip,port,ip', 'IPv6', 'fd00::99', 17, 53, 'fd00::99'],
      ['del', 'KUBE-NODE-PORT-UDP', 'bitmap:port', 1],
    ]);
    assert.deepEqual(results, [null, null, null, null, null]);
    assertKernelHolds(contentsOf(second));
  });

  it('returns a set that does not exist as its change\'s error, and applies the changes around it', async () => {
    const results = await netnsLib.ipsetApply([
      ['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.12'],
      ['add', 'KUBE-NO-SUCH-SET', 'hash:ip,port', 'IPv4', '10.96.0.12', 6, 80],
      ['del', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.12'],
    ]);
    assert.deepEqual(errorsOf(results), [null, ['ENOENT', 'add element 10.96.0.12,tcp:80 of ipset KUBE-NO-SUCH-SET: no such set'], null]);
    assertKernelHolds(contentsOf(second));
  });

  it('fails an update that a set refuses, naming the set, the element and why', async () => {
    inNetns('ipset', ['destroy', 'KUBE-6-IPVS-IPS']);
    try {
      const sets = new SetEntries();
      sets.set('test', second);
      await assert.rejects(applySetChanges(netnsLib, sets.set('test', [...second, ...setEntries([[frontend('ClusterIP', 'IPv6', 'fd00:96::12', 'TCP', 80)]])])), {
        message: 'ipset refused 1 of 2 element change(s): add element fd00:96::12 of ipset KUBE-6-IPVS-IPS: no such set',
      });
    } finally {
      await fullSync(second);
    }
    assertKernelHolds(contentsOf(second));
  });

  it('a refused element fails alone: those sent in one message with it, before and after, are applied', async () => {
    const results = await netnsLib.ipsetApply([
      ['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.20'],
      ['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '0.0.0.0'],
      ['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.21'],
    ]);
    assert.deepEqual(errorsOf(results), [null, ['IPSET_ERR_HASH_ELEM', 'add element 0.0.0.0 of ipset KUBE-IPVS-IPS: a hash set cannot hold an all-zero element'], null]);
    assert.deepEqual(
      [...saved().get('KUBE-IPVS-IPS')!].filter((ip) => ip.startsWith('10.96.0.2')).sort(),
      ['10.96.0.20', '10.96.0.21'],
    );
    await netnsLib.ipsetApply([
      ['del', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.20'],
      ['del', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.21'],
    ]);
    assertKernelHolds(contentsOf(second));
  });

  it("reads ipset's own refusals as its reasons, by the set's type", async () => {
    inNetns('ipset', ['create', 'kl-test-range', 'bitmap:port', 'range', '30000-32767']);
    inNetns('ipset', ['create', 'kl-test-full', 'hash:ip', 'maxelem', '1']);
    const results = await netnsLib.ipsetApply([
      ['add', 'kl-test-range', 'bitmap:port', 80],
      ['add', 'kl-test-full', 'hash:ip', 'IPv4', '10.0.0.1'],
      ['add', 'kl-test-full', 'hash:ip', 'IPv4', '10.0.0.2'],
      ['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '0.0.0.0'],
      ['add', 'KUBE-LOAD-BALANCER-SOURCE-CIDR', 'hash:ip,port,net', 'IPv4', '198.51.100.12', 6, 80, '0.0.0.0', 0],
      // An element of the other family: the kernel refuses the message's form.
      ['add', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv6', 'fd00::1', 6, 80],
    ]);
    assert.deepEqual(errorsOf(results), [
      ['IPSET_ERR_BITMAP_RANGE', "add element 80 of ipset kl-test-range: the element is outside the set's range"],
      null,
      ['IPSET_ERR_HASH_FULL', 'add element 10.0.0.2 of ipset kl-test-full: the set is full (its maxelem)'],
      ['IPSET_ERR_HASH_ELEM', 'add element 0.0.0.0 of ipset KUBE-IPVS-IPS: a hash set cannot hold an all-zero element'],
      ['IPSET_ERR_INVALID_CIDR', 'add element 198.51.100.12,tcp:80,0.0.0.0/0 of ipset KUBE-LOAD-BALANCER-SOURCE-CIDR: the prefix length is out of range'],
      ['IPSET_ERR_PROTOCOL', "add element fd00::1,tcp:80 of ipset KUBE-CLUSTER-IP: the kernel's ipset refused the message (an attribute missing, malformed, or an address of the other family)"],
    ]);
  });

  it('refuses a malformed change before sending any', async () => {
    for (const [change, message] of [
      [['put', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.13'], 'ipsetApply: change 1 must be a line "op set type ...element" with op add or del'],
      [['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.13', 'extra'], 'ipsetApply: change must have 4 fields separated by single spaces, not 5'],
      [['add', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.13 6', 6, 80], 'ipsetApply: change must have 6 fields separated by single spaces, not 7'],
      [['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.13\nadd KUBE-IPVS-IPS hash:ip IPv4 10.96.0.14'], 'ipsetApply: changes must be 2 lines, not 3 (a field holds a line break)'],
      [['add', 'KUBE-IPVS-IPS', 'hash:net', 'IPv4', '10.96.0.13'], 'ipsetApply: type must be one of hash:ip, hash:ip,port, hash:ip,port,ip, hash:ip,port,net, bitmap:port'],
      [['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', 'fd00::13'], 'ipsetApply: fd00::13 is not an IPv4 address'],
      [['add', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.13', 6], 'ipsetApply: port must be an integer from 0 to 65535'],
      [['add', 'x'.repeat(32), 'hash:ip', 'IPv4', '10.96.0.13'], 'ipsetApply: set must be a name of 1 to 31 characters'],
    ] as [IpsetChange, string][]) {
      await assert.rejects(netnsLib.ipsetApply([['add', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.13'], change]), { name: 'TypeError', message });
    }
    assertKernelHolds(contentsOf(second));
  });
});
