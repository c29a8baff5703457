// What the kube-lb of an earlier commit leaves behind, made with today's
// addon from that commit's BPF object: its maps pinned in their layout, its
// programs attached to the pod interfaces of the namespace this runs in
// (run it in node-a with nsenter), kube_lb_ifaces filled as it filled it,
// and services written. Then it exits, as a kube-lb stopped for an upgrade.
//   node previous-datapath.js OBJECT PIN_ROOT INTERFACE_PREFIX CHANGES_JSON
// CHANGES_JSON: ServiceChange[] (src/backends/ebpf/service-map.ts).
// Only kube_lb_ifaces is written by field name from the object's BTF; the
// services are written with today's encoders, so this refuses an object
// whose service layout differs: teach it that layout before using one.
import assert from 'node:assert/strict';
import path from 'node:path';
import { native } from '../../src/native/index.js';
import { TC_HANDLE, TC_PRIORITY } from '../../src/backends/ebpf/attach.js';
import { MAPS, PROGRAMS } from '../../src/backends/ebpf/datapath.js';
import { LB_IFACE_F_CREATED_HOOK, layouts } from '../../src/backends/ebpf/encoding.js';
import { listLinks } from '../../src/backends/ebpf/links.js';
import { type ServiceChange, ServiceMap } from '../../src/backends/ebpf/service-map.js';

const [objectPath, pinRoot, interfacePrefix, changesJson] = process.argv.slice(2);
if (!objectPath || !pinRoot || !interfacePrefix || !changesJson) throw new Error('usage: previous-datapath OBJECT PIN_ROOT INTERFACE_PREFIX CHANGES_JSON');

const lib = native();
const btf = lib.btfStructs(objectPath, ['lb_svc_key', 'lb_svc_value', 'lb_iface_value']);
// Today's fields the old layout lacks lie on its padding, which today's
// encoders fill with zeros for what those services use (no Maglev table).
for (const name of ['lb_svc_key', 'lb_svc_value'] as const) {
  const today: Record<string, { offset: number; size: number }> = layouts[name].fields;
  for (const member of btf[name]!.members.filter((m) => !m.name.startsWith('pad'))) {
    assert.deepEqual(
      { name: member.name, offset: member.offset, size: member.size },
      { name: member.name, ...today[member.name] },
      `struct ${name} in ${objectPath} differs from today's: write its services in its own layout`,
    );
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
// The object has no kube_lb_maglev, and its services need none.
new ServiceMap(lib, object.mapFd(MAPS.svc), -1).apply(JSON.parse(changesJson) as ServiceChange[]);
object.close();
process.stdout.write('attached\n');
