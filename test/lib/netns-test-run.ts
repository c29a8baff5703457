// Runs BPF_PROG_TEST_RUN inside a network namespace, for programs whose
// verdict depends on its routes and neighbours (bpf_fib_lookup): run it as
//   nsenter --net=/run/netns/NS node netns-test-run.js
// and write one JSON line per run, {"pin": PROGRAM_PIN, "frame": HEX}; it
// answers each with {"retval": N, "frame": HEX}. The test loads the
// programs and fills the maps from its own namespace; maps are global.
import readline from 'node:readline';
import { native } from '../../src/native/index.js';

const lib = native();
const programs = new Map<string, number>();
for await (const line of readline.createInterface({ input: process.stdin })) {
  const { pin, frame } = JSON.parse(line) as { pin: string; frame: string };
  if (!programs.has(pin)) programs.set(pin, lib.objGet(pin));
  const { retval, data } = lib.progTestRun(programs.get(pin)!, Buffer.from(frame, 'hex'), 1);
  process.stdout.write(JSON.stringify({ retval, frame: data.toString('hex') }) + '\n');
}
