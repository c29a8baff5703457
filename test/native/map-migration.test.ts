// Pinned maps of another definition, against the real kernel: loadDatapath
// migrates them (src/backends/ebpf/migrate.ts) instead of failing. The
// upgrade from the previous commit's layout, with traffic, is in
// test/conformance/ebpf.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native } from '../../src/native/index.js';
import { DEFAULT_MAP_SIZES, type LoadedDatapath, loadDatapath, removePins } from '../../src/backends/ebpf/datapath.js';
import { encodeCtValue, encodeFlowKey, layouts, writeSvcCount, writeSvcKey } from '../../src/backends/ebpf/encoding.js';
import { addition } from '../../src/backends/ebpf/service-map.js';
import { editedObject } from '../lib/bpf-objects.js';
import { requireCommand, requireRoot } from '../lib/preconditions.js';
import { captureLogger } from '../unit/fixtures.js';

const lib = native();
const root = `/sys/fs/bpf/kube-lb-test-migrate-${process.pid}`;
/** Smaller maps than the defaults: services and flows 64 each, and services 16. */
const small = { lb: 64, ct: 64 };
const smaller = { lb: 16, ct: 64 };
let tmp: string;
/** Today's object with a field more in the flow key, where padding was. */
let zoned: string;

/** n services (slot 0 only) and n flows. */
function fill(dp: LoadedDatapath, n: number): void {
  for (let i = 0; i < n; i++) {
    const key = Buffer.alloc(layouts.lb_svc_key.size);
    const { frontend, scope, meta } = addition({ ip: `10.96.0.${i + 1}`, port: 80, protocol: 'TCP' }, []);
    writeSvcKey(key, 0, frontend, scope, 0, 'IPv4');
    const value = Buffer.alloc(layouts.lb_svc_value.size);
    writeSvcCount(value, 0, 0, meta);
    lib.mapUpdate(dp.maps.svc, key, value);
    lib.mapUpdate(dp.maps.ct, flow(i), encodeCtValue({ backend: { ip: '10.244.0.9', port: 8080 + i }, flags: 0, lastSeen: 1000 + i, natSport: 0, natSaddr: null }, 'IPv4'));
  }
}

const flow = (i: number): Buffer => encodeFlowKey({ family: 'IPv4', saddr: '10.244.0.5', daddr: '10.96.0.10', sport: 40000 + i, dport: 80, protocol: 'TCP' });
const count = (fd: number): number => lib.mapDump(fd).count;
const asides = (pin: string): string[] => fs.readdirSync(pin).filter((e) => e.endsWith('_migrating'));

describe('pinned maps of another definition are migrated on load', () => {
  before(() => {
    requireRoot();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-migrate-'));
    zoned = editedObject(tmp, 'structs.h', (t) => t.replace(/(struct lb_flow_key \{[^}]*__u8 proto;\n)\t__u8 pad\[3\];/, '$1\t__u8 zone;\n\t__u8 pad[2];'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('a resize carries the entries over, as many as fit', () => {
    const pin = `${root}-resize`;
    let dp: LoadedDatapath | undefined;
    try {
      dp = loadDatapath(lib, pin, captureLogger().log, small);
      fill(dp, 40);
      dp.object.close();

      const grown = captureLogger();
      dp = loadDatapath(lib, pin, grown.log);
      assert.deepEqual([count(dp.maps.svc), count(dp.maps.ct)], [40, 40], 'every entry carried into the larger maps');
      assert.deepEqual(lib.mapLookup(dp.maps.ct, flow(7)), encodeCtValue({ backend: { ip: '10.244.0.9', port: 8087 }, flags: 0, lastSeen: 1007, natSport: 0, natSaddr: null }, 'IPv4'));
      const svcLine = grown.lines.find((l) => l.map === 'kube_lb_svc');
      assert.equal(svcLine?.msg, 'pinned map kube_lb_svc migrated: 40 of 40 entries carried over');
      assert.deepEqual(svcLine?.why, ['max_entries 64 is now 1048576']);
      assert.deepEqual(asides(pin), [], 'no pin left aside');
      dp.object.close();

      const shrunk = captureLogger();
      dp = loadDatapath(lib, pin, shrunk.log, smaller);
      assert.equal(count(dp.maps.svc), 16, 'as many services as fit');
      assert.equal(count(dp.maps.ct), 40, 'the flows fit');
      assert.equal(shrunk.lines.find((l) => l.map === 'kube_lb_svc')?.msg, 'pinned map kube_lb_svc migrated: 16 of 40 entries carried over');
      assert.equal(lib.mapInfo(dp.maps.svc).maxEntries, 16);
    } finally {
      dp?.object.close();
      removePins(pin);
    }
  });

  it('a key that gained a field keeps its entries, the new field at zero', () => {
    const pin = `${root}-zone`;
    let dp: LoadedDatapath | undefined;
    try {
      dp = loadDatapath(lib, pin, captureLogger().log);
      fill(dp, 10);
      dp.object.close();
      const { log, lines } = captureLogger();
      dp = loadDatapath(lib, pin, log, DEFAULT_MAP_SIZES, zoned);
      assert.equal(count(dp.maps.ct), 10);
      assert.ok(lib.mapLookup(dp.maps.ct, flow(3)), 'a flow found by its old key: zone 0 sits where the padding was');
      const line = lines.find((l) => l.map === 'kube_lb_ct');
      assert.deepEqual([line?.msg, line?.zeroed, line?.why], ['pinned map kube_lb_ct migrated: 10 of 10 entries carried over', ['zone'], ['the key layout changed']]);
    } finally {
      dp?.object.close();
      removePins(pin);
    }
  });

  it('a migration cut short resumes from the map it left aside', () => {
    const pin = `${root}-resume`;
    let dp: LoadedDatapath | undefined;
    try {
      dp = loadDatapath(lib, pin, captureLogger().log, small);
      fill(dp, 10);
      dp.object.close();
      // Where a crash right after moving the pin aside leaves it.
      fs.renameSync(path.join(pin, 'kube_lb_ct'), path.join(pin, 'kube_lb_ct_migrating'));
      const { log, lines } = captureLogger();
      dp = loadDatapath(lib, pin, log);
      assert.equal(count(dp.maps.ct), 10);
      assert.deepEqual(lines.find((l) => l.map === 'kube_lb_ct')?.why, ['an earlier migration was cut short']);
      assert.deepEqual(asides(pin), []);
    } finally {
      dp?.object.close();
      removePins(pin);
    }
  });

  it('refuses, naming both pins, where a migration cut short meets yet another layout', () => {
    requireCommand('bpftool', 'apt-get install bpftool');
    const pin = `${root}-twice`;
    try {
      loadDatapath(lib, pin, captureLogger().log, small).object.close();
      fs.renameSync(path.join(pin, 'kube_lb_ct'), path.join(pin, 'kube_lb_ct_migrating'));
      execFileSync('bpftool', ['map', 'create', path.join(pin, 'kube_lb_ct'), 'type', 'lru_hash', 'key', '16', 'value', '8', 'entries', '16', 'name', 'kube_lb_ct']);
      assert.throws(() => loadDatapath(lib, pin, captureLogger().log), /kube_lb_ct and .*kube_lb_ct_migrating both hold maps of another layout .*Remove the one you can spare/);
    } finally {
      fs.rmSync(pin, { recursive: true, force: true });
    }
  });

  it('a map whose key changed is recreated empty, and the log says why', () => {
    requireCommand('bpftool', 'apt-get install bpftool');
    const pin = `${root}-key`;
    let dp: LoadedDatapath | undefined;
    try {
      fs.mkdirSync(pin, { recursive: true });
      // What a kube-lb with an 8-byte service key would have pinned (without BTF: bpftool gives none).
      execFileSync('bpftool', ['map', 'create', path.join(pin, 'kube_lb_svc'), 'type', 'hash', 'key', '8', 'value', '4', 'entries', '16', 'name', 'kube_lb_svc', 'flags', '1']);
      execFileSync('bpftool', ['map', 'update', 'pinned', path.join(pin, 'kube_lb_svc'), 'key', 'hex', '0a', '60', '00', '0a', '50', '00', '06', '00', 'value', 'hex', '01', '00', '00', '00']);
      const { log, lines } = captureLogger();
      dp = loadDatapath(lib, pin, log);
      const line = lines.find((l) => l.map === 'kube_lb_svc');
      assert.equal(line?.msg, 'pinned map kube_lb_svc recreated empty: the key lost or resized fields ((8 bytes, no BTF))');
      assert.deepEqual([line?.found, line?.carried], [1, 0]);
      assert.deepEqual([count(dp.maps.svc), lib.mapInfo(dp.maps.svc).keySize], [0, layouts.lb_svc_key.size]);
      assert.deepEqual(asides(pin), []);
    } finally {
      dp?.object.close();
      removePins(pin);
    }
  });
});
