// The native addon against the real kernel: needs root, bpffs, clang and
// iproute2. Missing preconditions fail the suite rather than skip it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native, projectRoot, type BpfObject, type CgroupHook } from '../../src/native/index.js';
import { pino } from 'pino';
import { OBJECT_PATH, SOCK_DESTROY_PROGRAM, ensurePinRoot, loadDatapath, removePins } from '../../src/backends/ebpf/datapath.js';
import { possibleCpus } from '../../src/backends/ebpf/backend-stats.js';
import { createTestCgroup, removeTestCgroup } from '../lib/test-cgroup.js';

const BPF_MAP_TYPE_HASH = 1;
const BPF_NOEXIST = 1;
const TC_ACT_OK = 0;

const addon = native();
const fixtures = path.join(projectRoot, 'test', 'native', 'fixtures');
const testRoot = `/sys/fs/bpf/kube-lb-test-${process.pid}`;
const vethA = `kltst${process.pid}a`;
const vethB = `kltst${process.pid}b`;

function run(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const { stderr, message } = err as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr?.trim() || message}`);
  }
}

function checkPreconditions(): void {
  assert.equal(process.getuid?.(), 0, 'the native tests need root (BPF syscalls, netlink): run them as root');
  if (run('stat', ['-f', '-c', '%T', '/sys/fs/bpf']).trim() !== 'bpf_fs') {
    run('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
  }
}

/** Compiles fixtures/<name>.bpf.c into dir, returning the object's path. */
function compileFixture(name: string, dir: string): string {
  const object = path.join(dir, `${name}.o`);
  // With -target bpf, clang does not search the multiarch dir holding <asm/types.h>.
  const multiarch = run('clang', ['-print-multiarch']).trim();
  run('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch}`,
    '-c', path.join(fixtures, `${name}.bpf.c`), '-o', object]);
  return object;
}

/** struct kltest_key (fixtures/kltest.bpf.c), in host byte order. */
function key(addr: number, port: number, proto: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(addr, 0);
  b.writeUInt16LE(port, 4);
  b.writeUInt8(proto, 6);
  return b;
}

/** struct kltest_value (fixtures/kltest.bpf.c). */
function value(packets: number, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(packets), 0);
  Buffer.from([2, 0, 0, 0, 0, 1]).copy(b, 8); // mac
  b.writeUInt16LE(port, 14);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** A dump's entries as "key=value" hex strings, in no particular order. */
function entries(dump: { keys: Buffer; values: Buffer; count: number }, keySize: number, valueSize: number): string[] {
  assert.equal(dump.keys.length, dump.count * keySize);
  assert.equal(dump.values.length, dump.count * valueSize);
  const out: string[] = [];
  for (let i = 0; i < dump.count; i++) {
    const k = dump.keys.subarray(i * keySize, (i + 1) * keySize).toString('hex');
    const v = dump.values.subarray(i * valueSize, (i + 1) * valueSize).toString('hex');
    out.push(`${k}=${v}`);
  }
  return out.sort();
}

function ifindex(name: string): number {
  return Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8'));
}

function deleteVeth(): void {
  if (fs.existsSync(`/sys/class/net/${vethA}`)) run('ip', ['link', 'del', vethA]);
}

describe('native addon', () => {
  let tmp: string;
  let objectPath: string;
  let rejectedPath: string;
  let obj: BpfObject;
  let hashFd: number;
  let arrayFd: number;
  let tcFd: number;
  let xdpFd: number;

  before(() => {
    checkPreconditions();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-native-'));
    objectPath = compileFixture('kltest', tmp);
    rejectedPath = compileFixture('kltest_rejected', tmp);
    fs.mkdirSync(`${testRoot}/suite`, { recursive: true });
    fs.mkdirSync(`${testRoot}/reuse`, { recursive: true });
    fs.mkdirSync(`${testRoot}/resized`, { recursive: true });
    obj = addon.openObject(objectPath, `${testRoot}/suite`);
    obj.load();
    hashFd = obj.mapFd('kltest_hash');
    arrayFd = obj.mapFd('kltest_array');
    tcFd = obj.programFd('kltest_tc');
    xdpFd = obj.programFd('kltest_xdp');
  });

  after(() => {
    obj?.close();
    deleteVeth();
    fs.rmSync(testRoot, { recursive: true, force: true });
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('loads an object, pinning maps declared LIBBPF_PIN_BY_NAME under pinRoot', () => {
    const { id, ...info } = addon.mapInfo(hashFd);
    assert.ok(id > 0);
    assert.deepEqual(info, { type: BPF_MAP_TYPE_HASH, name: 'kltest_hash', keySize: 8, valueSize: 16, maxEntries: 16, flags: 0 });
    assert.ok(fs.existsSync(`${testRoot}/suite/kltest_hash`));
    assert.ok(!fs.existsSync(`${testRoot}/suite/kltest_array`), 'kltest_array is not pinned');
    assert.equal(addon.progInfo(tcFd).name, 'kltest_tc');
    assert.equal(addon.progInfo(xdpFd).name, 'kltest_xdp');
  });

  it('updates, looks up and deletes map elements', () => {
    const k = key(0x0a000001, 80, 6);
    addon.mapUpdate(hashFd, k, value(1, 8080));
    assert.deepEqual(addon.mapLookup(hashFd, k), value(1, 8080));
    assert.throws(() => addon.mapUpdate(hashFd, k, value(2, 8080), BPF_NOEXIST), {
      message: `bpf_map_update_elem map fd ${hashFd}: File exists`, errno: 17, code: 'EEXIST',
    });
    assert.equal(addon.mapDelete(hashFd, k), true);
    assert.equal(addon.mapDelete(hashFd, k), false);
    assert.equal(addon.mapLookup(hashFd, k), null);
  });

  it('updates and deletes in batches, and dumps', () => {
    const keys = [key(1, 1, 6), key(2, 2, 17), key(3, 3, 132)];
    const values = [value(10, 1), value(20, 2), value(30, 3)];
    addon.mapUpdateBatch(hashFd, Buffer.concat(keys), Buffer.concat(values), 3);
    const pairs = keys.map((k, i) => `${k.toString('hex')}=${values[i].toString('hex')}`).sort();
    assert.deepEqual(entries(addon.mapDump(hashFd), 8, 16), pairs);

    // An absent key does not stop the others from being deleted.
    addon.mapDeleteBatch(hashFd, Buffer.concat([keys[0], key(9, 9, 9), keys[2]]), 3);
    assert.deepEqual(entries(addon.mapDump(hashFd), 8, 16), [pairs[1]]);
    addon.mapDeleteBatch(hashFd, keys[1], 1);
    assert.equal(addon.mapDump(hashFd).count, 0);
  });

  it('writes a million new per-CPU elements of a map without preallocation in one call', async () => {
    // kube_lb_backend_stats at 100,000 services × 10 endpoints: one kernel
    // batch of them all drained the per-CPU element cache (ENOMEM).
    const pin = `${testRoot}/percpu-batch`;
    const count = 1_000_000;
    run('bpftool', ['map', 'create', pin, 'type', 'percpu_hash', 'key', '4', 'value', '8', 'entries', String(count), 'name', 'kltest_pcpub', 'flags', '1']);
    const fd = addon.objGet(pin);
    try {
      const keys = Buffer.alloc(4 * count);
      for (let i = 0; i < count; i++) keys.writeUInt32LE(i, 4 * i);
      const { valueSize } = addon.mapInfo(fd);
      addon.mapUpdateBatch(fd, keys, Buffer.alloc(valueSize * possibleCpus() * count), count);
      assert.equal(await addon.mapCount(fd), count);
    } finally {
      addon.closeFd(fd);
      fs.rmSync(pin);
    }
  });

  it('dumps every array slot and falls back to per-element deletes the array refuses', () => {
    addon.mapUpdateBatch(arrayFd, Buffer.concat([u32(1), u32(2)]), Buffer.concat([u64(11), u64(22)]), 2);
    const dump = addon.mapDump(arrayFd);
    assert.equal(dump.count, 4);
    assert.deepEqual(dump.values.subarray(8, 24), Buffer.concat([u64(11), u64(22)]));
    // Arrays have no batch delete: the per-element fallback reports the kernel's refusal.
    assert.throws(() => addon.mapDeleteBatch(arrayFd, u32(1), 1), {
      message: `bpf_map_delete_elem map fd ${arrayFd}: Invalid argument`, errno: 22, code: 'EINVAL',
    });
  });

  it('counts entries on a worker thread: hash, array and per-CPU maps, past one batch, with its fd closed meanwhile', async () => {
    addon.mapUpdateBatch(hashFd, Buffer.concat([key(1, 1, 6), key(2, 2, 6), key(3, 3, 6)]), Buffer.alloc(48), 3);
    assert.equal(await addon.mapCount(hashFd), 3);
    addon.mapDeleteBatch(hashFd, Buffer.concat([key(1, 1, 6), key(2, 2, 6), key(3, 3, 6)]), 3);
    assert.equal(await addon.mapCount(hashFd), 0);
    assert.equal(await addon.mapCount(arrayFd), 4, 'every array slot');

    // Larger than the native walk's batch, so the walk resumes from the kernel's cursor.
    const bigPin = `${testRoot}/big`;
    const big = 10_000;
    run('bpftool', ['map', 'create', bigPin, 'type', 'hash', 'key', '4', 'value', '8', 'entries', String(big), 'name', 'kltest_big']);
    const keys = Buffer.alloc(4 * big);
    for (let i = 0; i < big; i++) keys.writeUInt32LE(i, 4 * i);
    let fd = addon.objGet(bigPin);
    addon.mapUpdateBatch(fd, keys, Buffer.alloc(8 * big), big);
    const counting = addon.mapCount(fd);
    addon.closeFd(fd);
    assert.equal(await counting, big);

    // The kernel copies a per-CPU value for every possible CPU, 8-byte aligned:
    // enough entries that values sized by value_size alone would overrun the walk's buffer.
    const perCpuPin = `${testRoot}/percpu`;
    const perCpu = 5_000;
    run('bpftool', ['map', 'create', perCpuPin, 'type', 'percpu_hash', 'key', '4', 'value', '12', 'entries', String(perCpu), 'name', 'kltest_percpu']);
    const updates = Array.from({ length: perCpu }, (_, i) =>
      `map update pinned ${perCpuPin} key ${i & 0xff} ${i >> 8} 0 0 value ${Array(12).fill('7').join(' ')}`);
    fs.writeFileSync(path.join(tmp, 'percpu.batch'), `${updates.join('\n')}\n`);
    run('bpftool', ['batch', 'file', path.join(tmp, 'percpu.batch')]);
    fd = addon.objGet(perCpuPin);
    try {
      assert.equal(await addon.mapCount(fd), perCpu);
    } finally {
      addon.closeFd(fd);
    }

    // Every failure rejects, argument errors included.
    await assert.rejects(addon.mapCount(999999), {
      message: 'bpf_obj_get_info_by_fd map fd 999999: File descriptor in bad state', errno: 77, code: 'EBADFD',
    });
    await assert.rejects(addon.mapCount('3' as unknown as number), {
      name: 'TypeError', message: 'mapCount: fd must be an integer from 0 to 2147483647',
    });
  });

  it('validates arguments', () => {
    assert.throws(() => addon.mapLookup(hashFd, Buffer.alloc(3)), {
      name: 'TypeError', message: 'mapLookup: key must be 8 bytes long for this map, not 3',
    });
    assert.throws(() => addon.mapUpdateBatch(hashFd, Buffer.alloc(16), Buffer.alloc(16), 2), {
      name: 'TypeError', message: 'mapUpdateBatch: values must be 32 bytes long for this map, not 16',
    });
    assert.throws(() => addon.mapLookup('3' as unknown as number, Buffer.alloc(8)), {
      name: 'TypeError', message: 'mapLookup: fd must be an integer from 0 to 2147483647',
    });
    assert.throws(() => addon.tcQuery(1, 'sideways' as 'ingress', 1, 1), {
      name: 'TypeError', message: "tcQuery: point must be 'ingress' or 'egress'",
    });
    assert.throws(() => addon.tcDetach(1, 'ingress', 1, 65536), {
      name: 'TypeError', message: 'tcDetach: priority must be an integer from 1 to 65535',
    });
    assert.throws(() => addon.btfStructs(objectPath, [1 as unknown as string]), {
      name: 'TypeError', message: 'btfStructs: names must be an array of strings',
    });
  });

  it('sets a map\'s capacity before load, and refuses to after', () => {
    const resized = addon.openObject(objectPath, `${testRoot}/resized`);
    try {
      resized.setMaxEntries('kltest_hash', 3);
      resized.load();
      assert.equal(addon.mapInfo(resized.mapFd('kltest_hash')).maxEntries, 3);
      assert.throws(() => resized.setMaxEntries('kltest_hash', 5), { code: 'EBUSY', message: /bpf_map__set_max_entries kltest_hash/ });
      assert.throws(() => resized.setMaxEntries('kltest_missing', 5), { code: 'ENOENT' });
    } finally {
      resized.close();
    }
  });

  it('reuses maps pinned by name across loads', () => {
    const k = key(7, 7, 6);
    const first = addon.openObject(objectPath, `${testRoot}/reuse`);
    first.load();
    const mapId = addon.mapInfo(first.mapFd('kltest_hash')).id;
    addon.mapUpdate(first.mapFd('kltest_hash'), k, value(7, 7));
    first.close();

    const second = addon.openObject(objectPath, `${testRoot}/reuse`);
    try {
      second.load();
      assert.equal(addon.mapInfo(second.mapFd('kltest_hash')).id, mapId);
      assert.deepEqual(addon.mapLookup(second.mapFd('kltest_hash'), k), value(7, 7));
    } finally {
      second.close();
    }
  });

  it('pins programs, replacing the previous pin, and pins and gets objects', () => {
    const progPin = `${testRoot}/prog`;
    for (const name of ['kltest_tc', 'kltest_xdp']) {
      obj.pinProgram(name, progPin);
      const fd = addon.objGet(progPin);
      try {
        const info = addon.progInfo(fd);
        assert.equal(info.name, name);
        assert.deepEqual(addon.progInfoById(info.id), info);
      } finally {
        addon.closeFd(fd);
      }
    }
    assert.equal(addon.progInfoById(0x7ffffff0), null);

    const mapPin = `${testRoot}/array`;
    addon.objPin(arrayFd, mapPin);
    const fd = addon.objGet(mapPin);
    try {
      assert.equal(addon.mapInfo(fd).id, addon.mapInfo(arrayFd).id);
    } finally {
      addon.closeFd(fd);
    }
  });

  it('runs the tc program on a 64-byte packet', () => {
    const packet = Buffer.alloc(64);
    packet.writeUInt16BE(0x0800, 12); // EtherType IPv4
    const counted = () => addon.mapLookup(arrayFd, u32(0))!.readBigUInt64LE(0);
    const before = counted();
    const result = addon.progTestRun(tcFd, packet, 3);
    assert.equal(result.retval, TC_ACT_OK);
    assert.deepEqual(result.data, packet);
    assert.equal(typeof result.durationNs, 'number');
    assert.equal(counted() - before, 3n);
  });

  it('attaches, queries and detaches tc programs on a veth', () => {
    deleteVeth();
    run('ip', ['link', 'add', vethA, 'type', 'veth', 'peer', 'name', vethB]);
    try {
      const dev = ifindex(vethA);
      const tcId = addon.progInfo(tcFd).id;
      assert.equal(addon.tcQuery(dev, 'ingress', 1, 1), null, 'no clsact qdisc yet');
      assert.equal(addon.tcDetach(dev, 'ingress', 1, 1), false, 'no clsact qdisc yet');
      assert.deepEqual(addon.tcAttach(dev, 'ingress', tcFd, 1, 1), { hookCreated: true });
      assert.deepEqual(addon.tcAttach(dev, 'egress', tcFd, 1, 1), { hookCreated: false });
      assert.deepEqual(addon.tcAttach(dev, 'ingress', tcFd, 1, 1), { hookCreated: false }, 'replaces');
      assert.equal(addon.tcQuery(dev, 'ingress', 1, 1), tcId);
      assert.equal(addon.tcQuery(dev, 'egress', 1, 1), tcId);
      assert.equal(addon.tcDetach(dev, 'ingress', 1, 1), true);
      assert.equal(addon.tcDetach(dev, 'ingress', 1, 1), false);
      assert.equal(addon.tcQuery(dev, 'ingress', 1, 1), null);
      assert.equal(addon.tcQuery(dev, 'egress', 1, 2), null, 'another priority');
      addon.tcHookDestroy(dev);
      assert.doesNotMatch(run('tc', ['qdisc', 'show', 'dev', vethA]), /clsact/);
    } finally {
      deleteVeth();
    }
  });

  it('attaches, lists and detaches cgroup programs, and finds their maps by id', () => {
    const cgroup = createTestCgroup('kube-lb-native');
    try {
      const fd = obj.programFd('kltest_connect4');
      const id = addon.progInfo(fd).id;
      assert.deepEqual(addon.cgroupQuery(cgroup, 'connect4'), []);
      addon.cgroupAttach(cgroup, 'connect4', fd);
      assert.deepEqual(addon.cgroupQuery(cgroup, 'connect4'), [id]);
      assert.deepEqual(addon.cgroupQuery(cgroup, 'sendmsg4'), [], 'another hook');
      const arrayId = addon.mapInfo(arrayFd).id;
      assert.deepEqual(addon.progMapIds(id), [arrayId]);
      const byId = addon.mapFdById(arrayId)!;
      try {
        assert.equal(addon.mapInfo(byId).name, 'kltest_array');
      } finally {
        addon.closeFd(byId);
      }
      assert.equal(addon.cgroupDetach(cgroup, 'connect4', id), true);
      assert.equal(addon.cgroupDetach(cgroup, 'connect4', id), false, 'already detached');
      assert.deepEqual(addon.cgroupQuery(cgroup, 'connect4'), []);
      assert.throws(() => addon.cgroupAttach(path.join(cgroup, 'absent'), 'connect4', fd), /open cgroup .*absent: No such file or directory/);
      assert.throws(() => addon.cgroupQuery(cgroup, 'bind4' as CgroupHook), /hook/);
    } finally {
      removeTestCgroup(cgroup);
    }
  });

  it('names the failing operation, object and errno', () => {
    // BPF_OBJ_GET_INFO_BY_FD answers EBADFD, not EBADF, for a closed fd.
    assert.throws(() => addon.mapLookup(999999, Buffer.alloc(8)), {
      message: 'bpf_obj_get_info_by_fd map fd 999999: File descriptor in bad state', errno: 77, code: 'EBADFD',
    });
    const missing = `${testRoot}/missing`;
    assert.throws(() => addon.objGet(missing), {
      message: `bpf_obj_get ${missing}: No such file or directory`, errno: 2, code: 'ENOENT',
    });
    assert.throws(() => addon.openObject(`${tmp}/missing.o`, testRoot), {
      message: new RegExp(`^bpf_object__open_file ${tmp}/missing.o: No such file or directory`), code: 'ENOENT',
    });
    assert.throws(() => addon.tcAttach(0x7ffffff0, 'ingress', tcFd, 1, 1), {
      message: `bpf_tc_hook_create ifindex ${0x7ffffff0}: No such device`, code: 'ENODEV',
    });
    assert.throws(() => obj.mapFd('nope'), {
      message: `bpf_object__find_map_by_name nope in ${objectPath}: No such file or directory`, code: 'ENOENT',
    });
    const closed = addon.openObject(objectPath, testRoot);
    closed.close();
    assert.throws(() => closed.load(), {
      message: `bpf_object__load ${objectPath} (closed): Bad file descriptor`, code: 'EBADF',
    });
  });

  it('appends the verifier log when load fails', () => {
    const rejected = addon.openObject(rejectedPath, testRoot);
    try {
      assert.throws(() => rejected.load(), (err: Error & { code: string }) => {
        assert.match(err.message, new RegExp(`^bpf_object__load ${rejectedPath}: Permission denied\n`));
        assert.match(err.message, /BEGIN PROG LOAD LOG[\s\S]*invalid/);
        assert.equal(err.code, 'EACCES');
        return true;
      });
    } finally {
      rejected.close();
    }
  });

  it('tells network namespaces apart by their cookie', () => {
    const here = addon.netnsCookie();
    assert.ok(typeof here === 'bigint' && here > 0n, `cookie ${here}`);
    assert.equal(addon.netnsCookie(), here, 'the same namespace, the same cookie');
    const ns = `kltst${process.pid}ns`;
    run('ip', ['netns', 'add', ns]);
    try {
      const addonPath = path.join(projectRoot, 'build', 'Release', 'kube_lb_native.node');
      const there = run('ip', ['netns', 'exec', ns, process.execPath, '-e', `process.stdout.write(String(require(${JSON.stringify(addonPath)}).netnsCookie()))`]);
      assert.notEqual(BigInt(there), here, 'another namespace, another cookie');
    } finally {
      run('ip', ['netns', 'del', ns]);
    }
  });

  it("reads struct layouts from BTF: an object file's, an opened object's map definitions, a loaded map's", () => {
    const structs = addon.btfStructs(objectPath, ['kltest_key', 'kltest_value']);
    const def = obj.maps().find((m) => m.name === 'kltest_hash');
    assert.deepEqual(def, { name: 'kltest_hash', type: BPF_MAP_TYPE_HASH, keySize: 8, valueSize: 16, maxEntries: 16, flags: 0, pinned: true, key: structs.kltest_key, value: structs.kltest_value });
    assert.deepEqual(addon.mapLayouts(hashFd), { key: structs.kltest_key, value: structs.kltest_value }, 'the kernel keeps the BTF the map was created with');
    assert.deepEqual(structs, {
      kltest_key: {
        size: 8,
        members: [
          { name: 'addr', offset: 0, size: 4 },
          { name: 'port', offset: 4, size: 2 },
          { name: 'proto', offset: 6, size: 1 },
          { name: 'pad', offset: 7, size: 1 },
        ],
      },
      kltest_value: {
        size: 16,
        members: [
          { name: 'packets', offset: 0, size: 8 },
          { name: 'mac', offset: 8, size: 6 },
          { name: 'port', offset: 14, size: 2 },
        ],
      },
    });
    assert.throws(() => addon.btfStructs(objectPath, ['nope']), {
      message: `btf__find_by_name_kind struct nope in ${objectPath}: No such file or directory`, code: 'ENOENT',
    });
  });
});

describe('the pin root', () => {
  it('is refused, with what to do, where mounting bpffs would hide a directory or bpffs forbids the name', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-lb-pin-'));
    try {
      const before = fs.statfsSync(dir).type;
      assert.throws(() => ensurePinRoot(path.join(dir, 'kube-lb')), /is not a bpffs; mount one there first \(mount -t bpf bpf .*\) or choose a path under \/sys\/fs\/bpf/);
      assert.equal(fs.statfsSync(dir).type, before, 'nothing was mounted over the directory');
      assert.throws(() => ensurePinRoot('/sys/fs/bpf/kube-lb.v2'), /bpffs allows no "\." in a name/);
      assert.throws(() => ensurePinRoot('kube-lb'), /give an absolute path/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('map sizes', () => {
  it('are applied at load', () => {
    const pinRoot = `${testRoot}-sizes`;
    const dp = loadDatapath(native(), pinRoot, pino({ level: 'silent' }), { lb: 64, ct: 128 });
    try {
      assert.deepEqual(
        [dp.maps.svc, dp.maps.ct, dp.maps.rnat].map((fd) => [native().mapInfo(fd).name, native().mapInfo(fd).maxEntries]),
        [['kube_lb_svc', 64], ['kube_lb_ct', 128], ['kube_lb_rnat', 128]],
      );
    } finally {
      dp.object.close();
      removePins(pinRoot);
    }
  });

  it('more than the kernel allows fails the load with a message that names the flags', () => {
    const pinRoot = `${testRoot}-too-big`;
    try {
      assert.throws(() => loadDatapath(native(), pinRoot, pino({ level: 'silent' }), { lb: 2 ** 31, ct: 128 }), /creating the maps failed \(E2BIG\): --bpf-lb-map-max=2147483648 or --bpf-ct-map-max=128 asks for more than this kernel/);
    } finally {
      fs.rmSync(pinRoot, { recursive: true, force: true });
    }
  });
});

describe('the socket iterator', () => {
  it("is probed in the kernel's BTF, loaded where the kernel has bpf_sock_destroy, and run in a network namespace", () => {
    const lib = native();
    assert.equal(lib.kernelHasFunction('bpf_sock_destroy'), true, 'this kernel has bpf_sock_destroy (6.5 and later), which this test needs');
    assert.equal(lib.kernelHasFunction('kube_lb_no_such_kfunc'), false);
    assert.equal(lib.kernelHasHelper('ktime_get_coarse_ns'), true, 'a helper of 5.11, named without its bpf_ prefix');
    assert.equal(lib.kernelHasHelper('kube_lb_no_such_helper'), false);
    const pinRoot = `${testRoot}-iter`;
    const dp = loadDatapath(lib, pinRoot, pino({ level: 'silent' }), { lb: 64, ct: 128 });
    try {
      assert.equal(dp.features.sockDestroy, true);
      const fd = dp.object.programFd(SOCK_DESTROY_PROGRAM);
      assert.equal(lib.iterRun(fd, null), 0, 'no backend is gone: nothing destroyed');
      assert.equal(lib.iterRun(fd, '/proc/self/ns/net'), 0, 'made in a namespace by path');
      assert.throws(() => lib.iterRun(fd, '/proc/0/ns/net'), (err: NodeJS.ErrnoException) => err.code === 'ENOENT' && /open prog fd \d+ in \/proc\/0\/ns\/net/.test(err.message));
    } finally {
      dp.object.close();
      removePins(pinRoot);
    }
  });

  it('is left unloaded when told, as on kernels without the kfunc', () => {
    const pinRoot = `${testRoot}-noiter`;
    ensurePinRoot(pinRoot);
    const object = native().openObject(OBJECT_PATH, pinRoot);
    try {
      object.setAutoload(SOCK_DESTROY_PROGRAM, false);
      object.load();
      assert.throws(() => object.programFd(SOCK_DESTROY_PROGRAM), /not loaded/);
      assert.ok(object.programFd('lb_connect4') > 0, 'the other programs are loaded');
    } finally {
      object.close();
      removePins(pinRoot);
    }
  });
});
