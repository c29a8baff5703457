// Runs BPF_PROG_TEST_RUN inside a network namespace, for programs whose
// verdict depends on its routes and neighbours (bpf_fib_lookup): run it as
//   nsenter --net=/run/netns/NS node netns-test-run.js
// and write one JSON line per run, {"pin": PROGRAM_PIN, "frame": HEX}, with
// "ifindex": N for an XDP program that receives the frame on interface N;
// it answers each with {"retval": N, "frame": HEX}. The test loads the
// programs and fills the maps from its own namespace; maps are global.
import readline from 'node:readline';
import { native } from '../../src/native/index.js';

const lib = native();
const programs = new Map<string, number>();
for await (const line of readline.createInterface({ input: process.stdin })) {
  const { pin, frame, ifindex } = JSON.parse(line) as { pin: string; frame: string; ifindex?: number };
  if (!programs.has(pin)) programs.set(pin, lib.objGet(pin));
  const data = Buffer.from(frame, 'hex');
  const { retval, data: out } = lib.progTestRun(programs.get(pin)!, data, 1, ifindex === undefined ? undefined : xdpMd(data.length, ifindex));
  process.stdout.write(JSON.stringify({ retval, frame: out.toString('hex') }) + '\n');
}

/** A struct xdp_md for a frame of len bytes received on ifindex, queue 0. */
function xdpMd(len: number, ifindex: number): Buffer {
  const md = Buffer.alloc(24); // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
  md.writeUInt32LE(len, 4);
  md.writeUInt32LE(ifindex, 12);
  return md;
}
