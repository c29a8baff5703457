// What the kube-lb of an earlier commit leaves behind, made with today's
// addon from that commit's BPF object: its maps pinned in their layout, its
// programs attached to the pod interfaces of the namespace this runs in
// (run it in node-a with nsenter), kube_lb_ifaces filled as it filled it,
// and services written. Then it exits, as a kube-lb stopped for an upgrade.
//   node previous-datapath.js OBJECT PIN_ROOT INTERFACE_PREFIX CHANGES_JSON
// CHANGES_JSON: ServiceChange[] (src/backends/ebpf/service-map.ts).
// Its services and kube_lb_ifaces are written by field name from the
// object's BTF, addresses in the size it gives them (4 bytes before
// lb_addr_t took 16, IPv4-mapped): ClusterIP services without Maglev or
// affinity, whose other fields are zero.
import assert from 'node:assert/strict';
import path from 'node:path';
import { native } from '../../src/native/index.js';
import { TC_HANDLE, TC_PRIORITY } from '../../src/backends/ebpf/attach.js';
import { MAPS, PROGRAMS } from '../../src/backends/ebpf/datapath.js';
import { LB_IFACE_F_CREATED_HOOK, writeAddr } from '../../src/backends/ebpf/encoding.js';
import { listLinks } from '../../src/backends/ebpf/links.js';
import type { ServiceChange } from '../../src/backends/ebpf/service-map.js';
import type { BtfStruct } from '../../src/native/index.js';

const [objectPath, pinRoot, interfacePrefix, changesJson] = process.argv.slice(2);
if (!objectPath || !pinRoot || !interfacePrefix || !changesJson) throw new Error('usage: previous-datapath OBJECT PIN_ROOT INTERFACE_PREFIX CHANGES_JSON');

const lib = native();
const btf = lib.btfStructs(objectPath, ['lb_svc_key', 'lb_svc_value', 'lb_iface_value']);

/** A record of `struct`: addresses (strings, IPv4) in their field's size, numbers little-endian; fields not given are zero. */
function record(struct: BtfStruct, fields: Record<string, string | number>): Buffer {
  const b = Buffer.alloc(struct.size);
  for (const [name, v] of Object.entries(fields)) {
    const m = struct.members.find((x) => x.name === name);
    assert.ok(m, `${name} in ${objectPath}`);
    if (typeof v === 'number') b.writeUIntLE(v, m.offset, m.size);
    else if (m.size === 4) Buffer.from(v.split('.').map(Number)).copy(b, m.offset);
    else writeAddr(b, m.offset, v, 'IPv4');
  }
  return b;
}

/** kube_lb_svc entries of ClusterIP services: slot 0 with the count, then a slot per backend. */
function writeServices(fd: number, changes: ServiceChange[]): void {
  const [key, value] = [btf.lb_svc_key!, btf.lb_svc_value!];
  for (const { frontend, wanted } of changes) {
    const id = { vip: frontend.ip, port: frontend.port, proto: frontend.protocol === 'TCP' ? 6 : 17 };
    lib.mapUpdate(fd, record(key, { ...id, slot: 0 }), record(value, { count: wanted!.length }));
    wanted!.forEach((d, i) => lib.mapUpdate(fd, record(key, { ...id, slot: i + 1 }), record(value, { backend_addr: d.ip, backend_port: d.port })));
  }
}

const ifaceValue = btf.lb_iface_value!;
const flagsField = ifaceValue.members.find((m) => m.name === 'flags');
assert.ok(flagsField?.size === 4, `lb_iface_value.flags (4 bytes) in ${objectPath}`);

const object = lib.openObject(objectPath, pinRoot);
object.load();
// The TC programs every earlier commit pinned; lb_to_world came later.
for (const name of [PROGRAMS.fromPod, PROGRAMS.toPod, PROGRAMS.fromWorld]) object.pinProgram(name, path.join(pinRoot, name));
const ifaces = object.mapFd(MAPS.ifaces);
for (const link of (await listLinks()).filter((l) => l.name.startsWith(interfacePrefix))) {
  let flags = 0;
  for (const [point, program] of [['ingress', PROGRAMS.fromPod], ['egress', PROGRAMS.toPod]] as const) {
    if (lib.tcAttach(link.ifindex, point, object.programFd(program), TC_HANDLE, TC_PRIORITY).hookCreated) flags |= LB_IFACE_F_CREATED_HOOK;
  }
  const key = Buffer.alloc(4);
  key.writeUInt32LE(link.ifindex);
  const value = Buffer.alloc(ifaceValue.size);
  value.writeUInt32LE(flags, flagsField.offset);
  lib.mapUpdate(ifaces, key, value);
}
writeServices(object.mapFd(MAPS.svc), JSON.parse(changesJson) as ServiceChange[]);
object.close();
process.stdout.write('attached\n');
