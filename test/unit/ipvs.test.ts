// The ipvs backend's pure parts: scheduler choice, the ipset and iptables
// text it feeds to ipset/iptables-restore, the set changes it sends to
// ipsetApply, draining decisions, the kernel check's message, the model
// carrying the per-service scheduler, the batching of IPVS changes with
// each error back to its frontend, reading the kernel's table in turns with
// the event loop, and how a sync waits for the work it runs
// side by side.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ServicePortState } from '../../src/model/contract.js';
import { DrainQueue, drainDone, needsDraining } from '../../src/backends/ipvs/draining.js';
import { requireKernelFeatures } from '../../src/backends/ipvs/kernel.js';
import { CLUSTER_IP_SET, LOOP_BACK_SET, SetChangeBatches, type SetEntry, SetEntries, type SetEntryChange, applySetChanges, familySetName, frontendSetEntries, renderRemoval, renderRules, renderSetsSync } from '../../src/backends/ipvs/netfilter.js';
import { IPVS_SCHEDULERS, SchedulerChooser, clusterScheduler } from '../../src/backends/ipvs/schedulers.js';
import { IpvsChanges, IpvsTable } from '../../src/backends/ipvs/virtual-servers.js';
import { allSettledOrThrow } from '../../src/backends/ipvs/settled.js';
import type { IpsetChange, IpvsChange, NativeAddon } from '../../src/native/index.js';
import { parseObject } from '../../src/model/objects.js';
import { captureLogger, rawService, testModel } from './fixtures.js';

function servicePort(ipvsScheduler?: string): ServicePortState {
  return {
    key: 'default/web:http',
    namespace: 'default',
    name: 'web',
    portName: 'http',
    protocol: 'TCP',
    frontends: [],
    lbAlgorithm: 'random',
    settings: ipvsScheduler === undefined ? {} : { ipvsScheduler },
  };
}

describe('ipvs schedulers', () => {
  test('every kernel scheduler is accepted cluster-wide; none gives rr', () => {
    assert.deepEqual([...IPVS_SCHEDULERS], ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh']);
    for (const s of IPVS_SCHEDULERS) assert.equal(clusterScheduler(s), s);
    assert.equal(clusterScheduler(undefined), 'rr');
  });

  test('an unknown --ipvs-scheduler is a usage error naming it', () => {
    assert.throws(() => clusterScheduler('fastest'), { name: 'Error', message: /^--ipvs-scheduler=fastest: unknown IPVS scheduler; choose one of rr, wrr/ });
  });

  test('the annotation wins over the cluster-wide scheduler; an unknown one is logged once and ignored', () => {
    const { log, lines } = captureLogger();
    const chooser = new SchedulerChooser('wlc', log);
    assert.equal(chooser.choose(servicePort()), 'wlc');
    assert.equal(chooser.choose(servicePort('sh')), 'sh');
    assert.equal(chooser.choose(servicePort('bogus')), 'wlc');
    assert.equal(chooser.choose(servicePort('bogus')), 'wlc');
    assert.equal(lines.length, 1, 'one log line however often the service port is synced');
    assert.equal(lines[0]!.name, 'web');
    assert.equal(lines[0]!.annotation, 'kube-lb.io/ipvs-scheduler');
    assert.equal(lines[0]!.scheduler, 'bogus');
  });

  test('the model carries the annotation on every port of the service, and only when set', () => {
    const model = testModel();
    model.upsert(parseObject(rawService('plain')));
    const annotated = rawService('sticky', { clusterIP: '10.96.0.11' });
    (annotated.metadata as Record<string, unknown>).annotations = { 'kube-lb.io/ipvs-scheduler': 'sh' };
    model.upsert(parseObject(annotated));
    const state = model.desiredState();
    assert.equal(state.get('default/sticky:http')!.settings.ipvsScheduler, 'sh');
    assert.deepEqual(state.get('default/plain:http')!.settings, {});
  });
});

/** Frontends with their endpoints on this node, each keyed by its place in the list. */
type Programmed = { frontend: Parameters<typeof frontendSetEntries>[0]; onThisNode: { ip: string; port: number }[] }[];

/** SetEntries holding these frontends' entries, as a full sync fills it. */
function setEntriesOf(programmed: Programmed): SetEntries {
  const sets = new SetEntries();
  programmed.forEach(({ frontend, onThisNode }, i) => sets.set(String(i), frontendSetEntries(frontend, onThisNode)));
  return sets;
}

const setContents = (programmed: Programmed) => setEntriesOf(programmed).contents();

/** What applySetChanges sends the kernel for these changes (the stand-in takes them at once). */
function sent(changes: readonly SetEntryChange[]): IpsetChange[] {
  const calls: IpsetChange[] = [];
  void applySetChanges({ ipsetApply: async (batch) => (calls.push(...batch), batch.map(() => null)) }, changes);
  return calls;
}

describe('ipvs ipsets and iptables rules', () => {
  const clusterIp = { kind: 'ClusterIP' as const, family: 'IPv4' as const, masquerade: 'off-cluster' as const, sourceRanges: [] };
  const programmed = [
    { frontend: { ip: '10.96.0.10', port: 80, protocol: 'TCP' as const, ...clusterIp }, onThisNode: [{ ip: '10.244.0.11', port: 8080 }] },
    { frontend: { ip: '10.96.0.10', port: 53, protocol: 'UDP' as const, ...clusterIp }, onThisNode: [{ ip: '10.244.0.11', port: 5353 }] },
  ];

  test('KUBE-CLUSTER-IP holds ip,proto:port, KUBE-LOOP-BACK endpoint,proto:port,endpoint and KUBE-IPVS-IPS the bound address', () => {
    const contents = setContents(programmed).IPv4;
    assert.deepEqual([...contents[CLUSTER_IP_SET]], ['10.96.0.10,tcp:80', '10.96.0.10,udp:53']);
    assert.deepEqual([...contents[LOOP_BACK_SET]], ['10.244.0.11,tcp:8080,10.244.0.11', '10.244.0.11,udp:5353,10.244.0.11']);
    assert.deepEqual([...contents['KUBE-IPVS-IPS']], ['10.96.0.10']);
  });

  test('NodePorts (SCTP ones by node address, as kube-proxy), external and load-balancer IPs go to their sets; unmasqueraded ones (externalTrafficPolicy Local) also or only to the -LOCAL sets; source ranges to -FW and -SOURCE-CIDR, the load-balancer IP itself (the node\'s own traffic) to -SOURCE-IP', () => {
    const at = (kind: 'NodePort' | 'ExternalIP' | 'LoadBalancerIP', ip: string, port: number, masquerade: 'all' | 'node', protocol: 'TCP' | 'UDP' | 'SCTP' = 'TCP', sourceRanges: string[] = []) => ({
      frontend: { ip, port, protocol, kind, family: 'IPv4' as const, masquerade, sourceRanges },
      onThisNode: [],
    });
    const byFamily = setContents([
      at('NodePort', '192.168.0.2', 30080, 'all'),
      at('NodePort', '192.168.0.2', 30053, 'node', 'UDP'),
      at('NodePort', '192.168.0.2', 30009, 'node', 'SCTP'),
      at('ExternalIP', '203.0.113.10', 80, 'all'),
      at('ExternalIP', '203.0.113.11', 80, 'node'),
      at('LoadBalancerIP', '198.51.100.10', 80, 'all'),
      at('LoadBalancerIP', '198.51.100.11', 80, 'node'),
      at('LoadBalancerIP', '198.51.100.12', 80, 'all', 'TCP', ['198.18.0.0/24', '198.18.1.10/32', '198.51.100.12/32']),
    ]);
    const contents = byFamily.IPv4;
    const entries = Object.fromEntries(Object.entries(contents).filter(([, v]) => v.size > 0).map(([k, v]) => [k, [...v]]));
    assert.deepEqual(entries, {
      'KUBE-NODE-PORT-TCP': ['30080'],
      'KUBE-NODE-PORT-UDP': ['30053'],
      'KUBE-NODE-PORT-LOCAL-UDP': ['30053'],
      'KUBE-NODE-PORT-SCTP-HASH': ['192.168.0.2,sctp:30009'],
      'KUBE-NODE-PORT-LOCAL-SCTP-HASH': ['192.168.0.2,sctp:30009'],
      'KUBE-EXTERNAL-IP': ['203.0.113.10,tcp:80'],
      'KUBE-EXTERNAL-IP-LOCAL': ['203.0.113.11,tcp:80'],
      'KUBE-LOAD-BALANCER': ['198.51.100.10,tcp:80', '198.51.100.11,tcp:80', '198.51.100.12,tcp:80'],
      'KUBE-LOAD-BALANCER-LOCAL': ['198.51.100.11,tcp:80'],
      'KUBE-LOAD-BALANCER-FW': ['198.51.100.12,tcp:80'],
      'KUBE-LOAD-BALANCER-SOURCE-CIDR': ['198.51.100.12,tcp:80,198.18.0.0/24', '198.51.100.12,tcp:80,198.18.1.10'], // a host-length prefix as ipset prints it
      'KUBE-LOAD-BALANCER-SOURCE-IP': ['198.51.100.12,tcp:80,198.51.100.12'],
      'KUBE-IPVS-IPS': ['203.0.113.10', '203.0.113.11', '198.51.100.10', '198.51.100.11', '198.51.100.12'],
    });
    assert.ok(renderSetsSync(byFamily, setContents([]), ['IPv4']).split('\n').includes('create KUBE-NODE-PORT-TCP bitmap:port range 0-65535'));
  });

  test('each entry\'s element, what ipsetApply sends, says what its text says, in its set\'s type and family', () => {
    const types = new Map(renderSetsSync(setContents([]), setContents([]), ['IPv4', 'IPv6']).split('\n').filter((l) => l.startsWith('create ')).map((l) => [l.split(' ')[1]!, l.split(' ')[2]!]));
    const protocolName: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };
    const elementText = (el: SetEntry['element']): string => {
      switch (el[0]) {
        case 'bitmap:port': return String(el[1]);
        case 'hash:ip': return el[2];
        case 'hash:ip,port': return `${el[2]},${protocolName[el[3]]}:${el[4]}`;
        case 'hash:ip,port,ip': return `${el[2]},${protocolName[el[3]]}:${el[4]},${el[5]}`;
        case 'hash:ip,port,net': return `${el[2]},${protocolName[el[3]]}:${el[4]},${el[5]}/${el[6]}`;
      }
    };
    const frontends = (['IPv4', 'IPv6'] as const).flatMap((family) => {
      const [node, service, source, endpoint] = family === 'IPv4' ? ['192.168.0.2', '198.51.100.12', '198.18.0.0/24', '10.244.0.11'] : ['fd00:168::2', 'fd00:51::12', 'fd00:18::/64', 'fd00:244::11'];
      const f = { family, masquerade: 'node' as const, sourceRanges: [] };
      return [
        frontendSetEntries({ ...f, kind: 'NodePort', ip: node, port: 30080, protocol: 'TCP' }, []),
        frontendSetEntries({ ...f, kind: 'NodePort', ip: node, port: 30009, protocol: 'SCTP' }, []),
        frontendSetEntries({ ...f, kind: 'ClusterIP', ip: service, port: 53, protocol: 'UDP' }, [{ ip: endpoint, port: 5353 }]),
        frontendSetEntries({ ...f, kind: 'ExternalIP', ip: service, port: 80, protocol: 'TCP' }, []),
        frontendSetEntries({ ...f, kind: 'LoadBalancerIP', ip: service, port: 80, protocol: 'TCP', sourceRanges: [source, `${service}/${family === 'IPv4' ? 32 : 128}`] }, []),
      ].flat();
    });
    assert.deepEqual(new Set(frontends.map((e) => types.get(familySetName(e.set, e.family)))).size, 5, 'every set type is made');
    for (const e of frontends) {
      assert.equal(e.element[0], types.get(familySetName(e.set, e.family)), `${e.set} ${e.text}`);
      assert.equal(elementText(e.element), e.text);
      if (e.element[0] !== 'bitmap:port') assert.equal(e.element[1], e.family, `${e.set} ${e.text}`);
    }
  });

  test('every set of both families fits the 31 characters ipset allows a name, all distinct', () => {
    const names = renderSetsSync(setContents([]), setContents([]), ['IPv4', 'IPv6']).split('\n').filter((l) => l.startsWith('create ')).map((l) => l.split(' ')[1]!);
    assert.equal(new Set(names).size, names.length);
    for (const name of names) assert.ok(name.length <= 31, name);
  });

  test('a full sync creates the sets, deletes what the kernel holds that is not wanted and adds what it lacks; a frontend\'s change adds and deletes only what changed', () => {
    const wanted = setContents(programmed);
    const kernel = setContents([programmed[0]!]);
    kernel.IPv4['KUBE-CLUSTER-IP'].add('10.96.0.99,tcp:80');
    const restore = renderSetsSync(wanted, kernel, ['IPv4']).split('\n');
    assert.ok(restore.includes('create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 1048576'));
    assert.ok(restore.includes('create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 1048576'));
    assert.deepEqual(restore.filter((l) => !l.startsWith('create ')), ['del KUBE-CLUSTER-IP 10.96.0.99,tcp:80', ''], 'only what is not wanted is deleted');
    assert.ok(!restore.some((l) => l.includes('KUBE-6-')), 'no IPv6 set where IPv6 is not served');
    assert.deepEqual(sent(setEntriesOf(programmed).missingFrom(kernel)), [
      ['add', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.10', 17, 53],
      ['add', 'KUBE-LOOP-BACK', 'hash:ip,port,ip', 'IPv4', '10.244.0.11', 17, 5353, '10.244.0.11'],
    ], 'only what the kernel lacks is added');
    assert.deepEqual(setEntriesOf(programmed).missingFrom(wanted), [], 'nothing to add when the kernel holds it all');

    const sets = setEntriesOf(programmed);
    assert.deepEqual(sent(sets.set('1', [])), [
      ['del', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.10', 17, 53],
      ['del', 'KUBE-LOOP-BACK', 'hash:ip,port,ip', 'IPv4', '10.244.0.11', 17, 5353, '10.244.0.11'],
    ], 'the address stays in KUBE-IPVS-IPS: the TCP port still has it');
    const { frontend, onThisNode } = programmed[0]!;
    assert.deepEqual(sets.set('0', frontendSetEntries(frontend, onThisNode)), [], 'unchanged, nothing to send');
    assert.deepEqual(sent(sets.set('0', frontendSetEntries(frontend, []))), [['del', 'KUBE-LOOP-BACK', 'hash:ip,port,ip', 'IPv4', '10.244.0.11', 6, 8080, '10.244.0.11']]);
    assert.deepEqual(sent(sets.set('0', [])), [['del', 'KUBE-IPVS-IPS', 'hash:ip', 'IPv4', '10.96.0.10'], ['del', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.10', 6, 80]]);
    assert.deepEqual(Object.values(sets.contents().IPv4).filter((set) => set.size > 0), []);
  });

  test('an entry frontends share stays until the last of them goes: one NodePort on two node addresses', () => {
    const nodePort = (ip: string) => frontendSetEntries({ ip, port: 30080, protocol: 'TCP', kind: 'NodePort', family: 'IPv4', masquerade: 'all', sourceRanges: [] }, []);
    const sets = new SetEntries();
    assert.deepEqual(sent(sets.set('a', nodePort('192.168.0.2'))), [['add', 'KUBE-NODE-PORT-TCP', 'bitmap:port', 30080]]);
    assert.deepEqual(sets.set('b', nodePort('192.168.1.2')), []);
    assert.deepEqual(sets.set('a', []), []);
    assert.deepEqual([...sets.contents().IPv4['KUBE-NODE-PORT-TCP']], ['30080']);
    assert.deepEqual(sent(sets.set('b', [])), [['del', 'KUBE-NODE-PORT-TCP', 'bitmap:port', 30080]]);
  });

  test('a sync\'s set changes go to the kernel in one ipsetApply, and every refused element fails the update by name', async () => {
    const calls: (readonly IpsetChange[])[] = [];
    const lib = (refuse: (c: IpsetChange) => boolean) => ({
      async ipsetApply(changes: readonly IpsetChange[]) {
        calls.push(changes);
        return changes.map((c) => (refuse(c) ? new Error(`add element ${c[4]},udp:${c[6]} of ipset ${c[1]}: the set is full (its maxelem)`) : null));
      },
    });
    const changes = setEntriesOf([programmed[0]!]).set('1', frontendSetEntries(programmed[1]!.frontend, programmed[1]!.onThisNode));
    await applySetChanges(lib(() => false), []);
    assert.equal(calls.length, 0, 'nothing to send, no exchange');
    await applySetChanges(lib(() => false), changes);
    assert.deepEqual(calls.pop(), sent(changes));
    await assert.rejects(applySetChanges(lib((c) => c[1] === 'KUBE-CLUSTER-IP'), changes), {
      message: 'ipset refused 1 of 2 element change(s): add element 10.96.0.10,udp:53 of ipset KUBE-CLUSTER-IP: the set is full (its maxelem)',
    });
  });

  test('ipsetApply gets each element\'s last change only, a set\'s changes together: it may repeat them and take them out of order', () => {
    const sets = setEntriesOf(programmed);
    // The first frontend's entries go, and another frontend takes them: deleted, then added again, in one sync.
    const changes = [...sets.set('0', []), ...sets.set('moved', frontendSetEntries(programmed[0]!.frontend, programmed[0]!.onThisNode)), ...sets.set('1', [])];
    assert.equal(changes.length, 6);
    assert.deepEqual(sent(changes), [
      ['del', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.10', 17, 53],
      ['add', 'KUBE-CLUSTER-IP', 'hash:ip,port', 'IPv4', '10.96.0.10', 6, 80],
      ['del', 'KUBE-LOOP-BACK', 'hash:ip,port,ip', 'IPv4', '10.244.0.11', 17, 5353, '10.244.0.11'],
      ['add', 'KUBE-LOOP-BACK', 'hash:ip,port,ip', 'IPv4', '10.244.0.11', 6, 8080, '10.244.0.11'],
    ]);
  });

  test("a partial sync's set changes go in batches as they are planned, once IPVS has taken its changes, one batch at a time in order; a refused batch does not hold back the next, and the end fails naming what was refused", async () => {
    const exchanges: { changes: readonly IpsetChange[]; answer: (refused: boolean) => void }[] = [];
    const lib = {
      ipsetApply: (changes: readonly IpsetChange[]) =>
        new Promise<(Error | null)[]>((resolve) =>
          exchanges.push({ changes, answer: (refused) => resolve(changes.map((c) => (refused ? new Error(`add element ${c[4]} of ipset ${c[1]}: refused`) : null))) }),
        ),
    };
    const loopBack = (i: number) => frontendSetEntries(programmed[0]!.frontend, [{ ip: `10.244.1.${i}`, port: 8080 }]).filter((e) => e.set === LOOP_BACK_SET);
    const sets = new SetEntries();
    let ipvsTaken = (): void => {};
    const batches = new SetChangeBatches(lib, 2, new Promise<void>((resolve) => (ipvsTaken = resolve)));
    batches.add(sets.set('a', loopBack(1)));
    await nextTurn();
    assert.equal(exchanges.length, 0, 'below the batch size, nothing is sent yet');
    batches.add(sets.set('b', loopBack(2)));
    await nextTurn();
    assert.equal(exchanges.length, 0, 'a full batch waits for the IPVS exchange');
    ipvsTaken();
    await nextTurn();
    assert.equal(exchanges.length, 1, 'then goes while the sync goes on planning');
    batches.add(sets.set('a', []));
    batches.add(sets.set('c', loopBack(3)));
    const ended = batches.end();
    await nextTurn();
    assert.equal(exchanges.length, 1, 'the next batch waits for the kernel to take the one before');
    exchanges[0]!.answer(true);
    await nextTurn();
    assert.equal(exchanges.length, 2, 'a refused batch does not hold back the next');
    assert.deepEqual(
      exchanges.map((e) => e.changes.map((c) => `${c[0]} ${c[4]}`)),
      [['add 10.244.1.1', 'add 10.244.1.2'], ['del 10.244.1.1', 'add 10.244.1.3']],
    );
    exchanges[1]!.answer(false);
    await assert.rejects(ended, { message: 'ipset refused 2 of 2 element change(s): add element 10.244.1.1 of ipset KUBE-LOOP-BACK: refused; add element 10.244.1.2 of ipset KUBE-LOOP-BACK: refused' });
  });

  test('rules follow kube-proxy: masquerade off-cluster, external and hairpin traffic, accept service traffic, filter the rest of kube-ipvs0', () => {
    const rules = renderRules({ localTraffic: { IPv4: { by: 'cidr', cidr: '10.244.0.0/16' }, IPv6: null }, masqueradeBit: 14 }, 'IPv4', '');
    for (const line of [
      ':KUBE-SERVICES - [0:0]',
      '-A KUBE-SERVICES ! -s 10.244.0.0/16 -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ',
      '-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER',
      '-A KUBE-SERVICES -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ',
      '-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT',
      '-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT',
      '-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN',
      '-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ',
      '-A KUBE-NODE-PORT -p sctp -m set --match-set KUBE-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j RETURN',
      '-A KUBE-NODE-PORT -p sctp -m set --match-set KUBE-NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ',
      '-A KUBE-LOAD-BALANCER -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN',
      '-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ',
      '-A KUBE-POSTROUTING -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE',
      '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
      '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
      '*filter',
      '-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN',
      '-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -m set ! --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -m set ! --match-set KUBE-LOAD-BALANCER-SOURCE-IP dst,dst,src -m comment --comment "source outside loadBalancerSourceRanges" -j DROP',
      '-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT',
    ]) {
      assert.ok(rules.split('\n').includes(line), `missing: ${line}\n${rules}`);
    }
    assert.match(renderRules({ localTraffic: { IPv4: null, IPv6: null }, masqueradeBit: 0 }, 'IPv4', ''), /--match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ\n/);
    assert.doesNotMatch(rules, /KUBE-FORWARD/, 'no KUBE-FORWARD chain yet');
  });

  // As iptables-save prints a node with kube-lb's rules and a foreign one beside them.
  const SAVED = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':KUBE-IPVS-FILTER - [0:0]',
    ':FOREIGN - [0:0]',
    '-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER',
    '-A INPUT -j FOREIGN',
    '-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT',
    'COMMIT',
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':KUBE-SERVICES - [0:0]',
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    'COMMIT',
    '',
  ].join('\n');

  test('the rules add only the jumps the kernel lacks, at the top of their built-in chains', () => {
    const opts = { localTraffic: { IPv4: null, IPv6: null }, masqueradeBit: 14 };
    const inserts = (saved: string): string[] => renderRules(opts, 'IPv4', saved).split('\n').filter((l) => l.startsWith('-I '));
    assert.deepEqual(inserts(''), [
      '-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      '-I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      '-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
      '-I INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER',
    ]);
    assert.deepEqual(inserts(SAVED), ['-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING']);
  });

  test('cleanup removes every jump into its chains (each copy) and the chains, in one restore, and leaves foreign rules', () => {
    assert.equal(
      renderRemoval(SAVED),
      [
        '*filter',
        ':KUBE-IPVS-FILTER - [0:0]',
        '-D INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER',
        '-X KUBE-IPVS-FILTER',
        'COMMIT',
        '*nat',
        ':KUBE-SERVICES - [0:0]',
        '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-D OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-D OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-X KUBE-SERVICES',
        'COMMIT',
        '',
      ].join('\n'),
    );
    assert.equal(renderRemoval('*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n'), '');
  });

  const v6 = { kind: 'ClusterIP' as const, family: 'IPv6' as const, masquerade: 'off-cluster' as const, sourceRanges: [] };
  const dualStack = [
    ...programmed,
    { frontend: { ip: 'fd00:96::10', port: 80, protocol: 'TCP' as const, ...v6 }, onThisNode: [{ ip: 'fd00:244::11', port: 8080 }] },
    { frontend: { ip: 'fd00:96::10', port: 30080, protocol: 'TCP' as const, ...v6, kind: 'NodePort' as const }, onThisNode: [{ ip: 'fd00:244::11', port: 8080 }] },
    { frontend: { ip: 'fd00:100::12', port: 80, protocol: 'TCP' as const, ...v6, kind: 'LoadBalancerIP' as const, masquerade: 'all' as const, sourceRanges: ['fd00:18::/64', 'fd00:100::12/128'] }, onThisNode: [] },
  ];

  test('IPv6 frontends fill the KUBE-6- twins of the sets (family inet6), IPv4 ones the sets kube-proxy names without it', () => {
    const contents = setContents(dualStack);
    assert.deepEqual([...contents.IPv4[CLUSTER_IP_SET]], ['10.96.0.10,tcp:80', '10.96.0.10,udp:53']);
    assert.deepEqual([...contents.IPv6[CLUSTER_IP_SET]], ['fd00:96::10,tcp:80']);
    assert.deepEqual([...contents.IPv6[LOOP_BACK_SET]], ['fd00:244::11,tcp:8080,fd00:244::11']);
    assert.deepEqual([...contents.IPv6['KUBE-NODE-PORT-TCP']], ['30080']);
    assert.deepEqual([...contents.IPv4['KUBE-NODE-PORT-TCP']], []);
    assert.deepEqual([...contents.IPv6['KUBE-LOAD-BALANCER-SOURCE-CIDR']], ['fd00:100::12,tcp:80,fd00:18::/64']);
    assert.deepEqual([...contents.IPv6['KUBE-LOAD-BALANCER-SOURCE-IP']], ['fd00:100::12,tcp:80,fd00:100::12'], 'the load-balancer IP itself, /128, by IP');

    const replace = renderSetsSync(contents, setContents([]), ['IPv4', 'IPv6']).split('\n');
    assert.ok(replace.includes('create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 1048576'));
    assert.ok(replace.includes('create KUBE-6-NODE-PORT-TCP bitmap:port range 0-65535'));
    // kube-proxy cuts the names past 31 characters.
    assert.ok(replace.includes('create KUBE-6-LOAD-BALANCER-SOURCE-CID hash:ip,port,net family inet6 hashsize 1024 maxelem 1048576'));
    assert.ok(replace.includes('create KUBE-6-NODE-PORT-LOCAL-SCTP-HAS hash:ip,port family inet6 hashsize 1024 maxelem 1048576'));
    assert.ok(replace.includes('create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 1048576'));

    const sets = setEntriesOf(programmed);
    const v6Changes = sent(dualStack.slice(programmed.length).flatMap(({ frontend, onThisNode }, i) => sets.set(`v6-${i}`, frontendSetEntries(frontend, onThisNode))));
    assert.deepEqual(v6Changes, [
      ['add', 'KUBE-6-IPVS-IPS', 'hash:ip', 'IPv6', 'fd00:96::10'],
      ['add', 'KUBE-6-IPVS-IPS', 'hash:ip', 'IPv6', 'fd00:100::12'],
      ['add', 'KUBE-6-CLUSTER-IP', 'hash:ip,port', 'IPv6', 'fd00:96::10', 6, 80],
      ['add', 'KUBE-6-LOOP-BACK', 'hash:ip,port,ip', 'IPv6', 'fd00:244::11', 6, 8080, 'fd00:244::11'],
      ['add', 'KUBE-6-NODE-PORT-TCP', 'bitmap:port', 30080],
      ['add', 'KUBE-6-LOAD-BALANCER', 'hash:ip,port', 'IPv6', 'fd00:100::12', 6, 80],
      ['add', 'KUBE-6-LOAD-BALANCER-FW', 'hash:ip,port', 'IPv6', 'fd00:100::12', 6, 80],
      ['add', 'KUBE-6-LOAD-BALANCER-SOURCE-CID', 'hash:ip,port,net', 'IPv6', 'fd00:100::12', 6, 80, 'fd00:18::', 64],
      ['add', 'KUBE-6-LOAD-BALANCER-SOURCE-IP', 'hash:ip,port,ip', 'IPv6', 'fd00:100::12', 6, 80, 'fd00:100::12'],
    ], 'the NodePort shares its endpoint\'s KUBE-6-LOOP-BACK entry with the cluster IP');
  });

  test('IPv6 rules name the KUBE-6- sets, in the chains IPv4 has, with IPv6 loopback and pod CIDR', () => {
    const rules = renderRules({ localTraffic: { IPv4: { by: 'cidr', cidr: '10.244.0.0/16' }, IPv6: { by: 'cidr', cidr: 'fd00:244::/64' } }, masqueradeBit: 14 }, 'IPv6', '').split('\n');
    for (const line of [
      ':KUBE-SERVICES - [0:0]',
      '-A KUBE-SERVICES -s ::1/128 -j RETURN',
      '-A KUBE-SERVICES ! -s fd00:244::/64 -m set --match-set KUBE-6-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ',
      '-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-6-NODE-PORT-TCP dst -j KUBE-MARK-MASQ',
      '-A KUBE-POSTROUTING -m set --match-set KUBE-6-LOOP-BACK dst,dst,src -j MASQUERADE',
      '-A KUBE-IPVS-FILTER -m set --match-set KUBE-6-LOAD-BALANCER-FW dst,dst -m set ! --match-set KUBE-6-LOAD-BALANCER-SOURCE-CID dst,dst,src -m set ! --match-set KUBE-6-LOAD-BALANCER-SOURCE-IP dst,dst,src -m comment --comment "source outside loadBalancerSourceRanges" -j DROP',
      '-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-6-IPVS-IPS dst -j REJECT',
    ]) {
      assert.ok(rules.includes(line), `missing: ${line}\n${rules.join('\n')}`);
    }
    assert.ok(!rules.some((l) => / KUBE-(?!6-)[A-Z-]+ (dst|src)/.test(l) && l.includes('--match-set')), 'no IPv4 set in the IPv6 rules');
  });
});

describe('ipvs draining', () => {
  test('UDP real servers go at once; TCP and SCTP drain', () => {
    assert.equal(needsDraining({ ip: '10.96.0.10', port: 53, protocol: 'UDP' }), false);
    assert.equal(needsDraining({ ip: '10.96.0.10', port: 80, protocol: 'TCP' }), true);
    assert.equal(needsDraining({ ip: '10.96.0.10', port: 80, protocol: 'SCTP' }), true);
  });

  test('a draining real server goes when its connections end, its grace period ends, or it is gone', () => {
    assert.equal(drainDone(2, 1000, 999), false);
    assert.equal(drainDone(0, 1000, 999), true);
    assert.equal(drainDone(2, 1000, 1000), true);
    assert.equal(drainDone(undefined, 1000, 0), true);
  });

  test('the queue groups by frontend and cancels one real server or a whole frontend', () => {
    const q = new DrainQueue();
    const web = { ip: '10.96.0.10', port: 80, protocol: 'TCP' as const, family: 'IPv4' as const };
    const admin = { ip: '10.96.0.10', port: 81, protocol: 'TCP' as const, family: 'IPv4' as const };
    q.add(web, { ip: '10.244.0.11', port: 8080 }, 1);
    q.add(web, { ip: '10.244.0.12', port: 8080 }, 1);
    q.add(admin, { ip: '10.244.0.11', port: 8081 }, 1);
    assert.deepEqual([...q.byFrontend().keys()], ['10.96.0.10:80/TCP', '10.96.0.10:81/TCP']);
    q.cancel(web, { ip: '10.244.0.11', port: 8080 });
    assert.equal(q.has(web, { ip: '10.244.0.12', port: 8080 }), true);
    assert.equal(q.size, 2);
    q.cancel(web);
    assert.equal(q.size, 1);
  });
});

describe('ipvs kernel check', () => {
  test('fails fast naming every missing feature and what modprobe said', async () => {
    const { log } = captureLogger();
    const features = [
      { name: 'IPVS (CONFIG_IP_VS)', module: 'kube_lb_test_no_such_module_a', present: () => false },
      { name: 'dummy interfaces (CONFIG_DUMMY)', module: 'kube_lb_test_no_such_module_b', present: () => false },
      { name: 'something present', module: 'unused', present: () => true },
    ];
    await assert.rejects(requireKernelFeatures(features, log), (err: Error) => {
      assert.match(err.message, /--backend=ipvs: kernel .* lacks what IPVS needs/);
      assert.match(err.message, /IPVS \(CONFIG_IP_VS\): modprobe kube_lb_test_no_such_module_a said: .+/);
      assert.match(err.message, /dummy interfaces \(CONFIG_DUMMY\): modprobe kube_lb_test_no_such_module_b/);
      assert.doesNotMatch(err.message, /something present/);
      return true;
    });
  });
});

describe('ipvs batched changes', () => {
  const web = { ip: '10.96.0.10', port: 80, protocol: 'TCP' as const, family: 'IPv4' as const };
  const dns = { ip: '10.96.0.11', port: 53, protocol: 'UDP' as const, family: 'IPv4' as const };
  const web6 = { ip: 'fd00:96::10', port: 443, protocol: 'SCTP' as const, family: 'IPv6' as const };
  const rr = { scheduler: 'rr', persistence: 0 };

  /** A stand-in for the addon's ipvsApply: records each call, refuses the changes `refuse` picks. */
  function fakeAddon(refuse: (change: IpvsChange) => string | null) {
    const calls: IpvsChange[][] = [];
    return {
      calls,
      async ipvsApply(changes: readonly IpvsChange[]) {
        calls.push([...changes]);
        return changes.map((c) => {
          const why = refuse(c);
          return why === null ? null : Object.assign(new Error(why), { code: 'EINVAL' });
        });
      },
    };
  }

  test('every change goes in one call, in order, with the protocol numbers and arguments the addon takes', async () => {
    const lib = fakeAddon(() => null);
    const changes = new IpvsChanges(lib);
    const applied: string[] = [];
    changes.addService('web', web, rr, () => applied.push('add web'));
    changes.addRealServer('web', web, { ip: '10.244.0.11', port: 8080 }, 1, () => applied.push('add dest'));
    changes.setWeight('web', web, { ip: '10.244.0.12', port: 8080 }, 0, () => applied.push('drain dest'));
    changes.deleteRealServer('dns', dns, { ip: '10.244.0.13', port: 5353 }, () => applied.push('delete dest'));
    changes.setScheduling('dns', dns, { scheduler: 'sh', persistence: 10800 }, () => applied.push('set dns'));
    changes.deleteService('dns', dns, () => applied.push('delete dns'));
    changes.addService('web6', web6, rr, () => applied.push('add web6'));
    changes.addRealServer('web6', web6, { ip: 'fd00:244::11', port: 8443 }, 1, () => applied.push('add web6 dest'));
    assert.equal(changes.size, 8);
    assert.deepEqual(await changes.apply(), new Map());
    assert.deepEqual(lib.calls, [
      [
        ['addService', 'IPv4', '10.96.0.10', 6, 80, 'rr', 0],
        ['addDest', 'IPv4', '10.96.0.10', 6, 80, '10.244.0.11', 8080, 1],
        ['setDest', 'IPv4', '10.96.0.10', 6, 80, '10.244.0.12', 8080, 0],
        ['deleteDest', 'IPv4', '10.96.0.11', 17, 53, '10.244.0.13', 5353],
        ['setService', 'IPv4', '10.96.0.11', 17, 53, 'sh', 10800],
        ['deleteService', 'IPv4', '10.96.0.11', 17, 53],
        ['addService', 'IPv6', 'fd00:96::10', 132, 443, 'rr', 0],
        ['addDest', 'IPv6', 'fd00:96::10', 132, 443, 'fd00:244::11', 8443, 1],
      ],
    ]);
    assert.deepEqual(applied, ['add web', 'add dest', 'drain dest', 'delete dest', 'set dns', 'delete dns', 'add web6', 'add web6 dest']);
    assert.equal(changes.size, 0, 'apply empties the queue');
    assert.deepEqual(await changes.apply(), new Map());
    assert.equal(lib.calls.length, 1, 'nothing queued: no call');
  });

  test("a refused change's error goes to its owner, the first one only; the changes the kernel took still run their callbacks", async () => {
    const lib = fakeAddon((c) => (c[0] === 'addService' && c[2] === '10.96.0.10' ? 'add IPVS service TCP 10.96.0.10:80: Invalid argument' : c[0] === 'addDest' && c[2] === '10.96.0.10' ? 'add IPVS real server: No such process' : null));
    const changes = new IpvsChanges(lib);
    const applied: string[] = [];
    changes.addService('web', web, { scheduler: 'nope', persistence: 0 }, () => applied.push('add web'));
    changes.addRealServer('web', web, { ip: '10.244.0.11', port: 8080 }, 1, () => applied.push('add web dest'));
    changes.addService('dns', dns, rr, () => applied.push('add dns'));
    changes.addRealServer('dns', dns, { ip: '10.244.0.13', port: 5353 }, 1, () => applied.push('add dns dest'));
    const errors = await changes.apply();
    assert.deepEqual([...errors.keys()], ['web']);
    assert.equal(errors.get('web')!.message, 'add IPVS service TCP 10.96.0.10:80: Invalid argument');
    assert.deepEqual(applied, ['add dns', 'add dns dest']);
  });

  test('an exchange that fails as a whole rejects, and the queue is emptied for the next sync', async () => {
    let calls = 0;
    const changes = new IpvsChanges({
      ipvsApply: async () => {
        calls++;
        throw new Error('send batch of 2 netlink requests: No buffer space available');
      },
    });
    const applied: string[] = [];
    changes.addService('web', web, rr, () => applied.push('add web'));
    await assert.rejects(changes.apply(), /No buffer space available/);
    assert.deepEqual(applied, []);
    assert.equal(changes.size, 0);
    assert.equal(calls, 1);
  });
});

describe('ipvs table read', () => {
  test('reading thousands of virtual servers, one dump each, lets the event loop run between dumps', async () => {
    const services = Array.from({ length: 2000 }, (_, i) => ({ family: 'IPv4' as const, address: `10.96.${i >> 8}.${i & 255}`, protocol: 6, port: 80, scheduler: 'rr', persistence: 0 }));
    const lib = {
      ipvsServices: () => services,
      ipvsDests: (_family: string, address: string) => {
        // A dump takes the kernel a while: together, far longer than one slice of the event loop.
        const until = performance.now() + 0.02;
        while (performance.now() < until);
        return [{ address: address.replace('10.96.', '10.244.'), port: 8080, weight: 1, activeConns: 0, inactiveConns: 0, scheduledConns: 0, packets: 0, bytes: 0 }];
      },
    } as unknown as NativeAddon;
    let ranMeanwhile = false;
    setImmediate(() => (ranMeanwhile = true));
    const read = await new IpvsTable(lib).read((f) => f.ip !== '10.96.0.0');
    assert.ok(ranMeanwhile, 'the event loop did not run during the read');
    assert.equal(read.size, 1999, 'every virtual server the filter accepts');
    assert.deepEqual([...read.get('10.96.7.207:80/TCP')!.realServers.keys()], ['10.244.7.207:8080']);
  });
});

describe('ipvs work side by side', () => {
  test('a sync waits for all of its work, then fails with the first failure in order, or gets every value', async () => {
    const ended: string[] = [];
    const after = <T>(ms: number, what: string, outcome: () => T): Promise<T> =>
      new Promise<void>((resolve) => setTimeout(resolve, ms)).then(() => {
        ended.push(what);
        return outcome();
      });
    const fail = (message: string) => (): never => {
      throw new Error(message);
    };
    await assert.rejects(allSettledOrThrow([after(5, 'sets', fail('sets refused')), after(1, 'ipvs', fail('ipvs refused')), after(20, 'chains', () => 'ok')]), { message: 'sets refused' });
    assert.deepEqual(ended, ['ipvs', 'sets', 'chains'], 'the slowest work ended before the failure came back');
    assert.deepEqual(await allSettledOrThrow([after(1, 'a', () => new Map([['web', 1]])), after(1, 'b', () => undefined)]), [new Map([['web', 1]]), undefined]);
  });
});
