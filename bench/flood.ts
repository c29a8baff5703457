// The packet-rate benchmark's generator, run as a process of its own (it
// blocks in the kernel while it sends), pinned to one CPU, in the network
// namespace it sends from:
//   node flood.js IFINDEX HEADERS_HEX SPORT_FIRST SPORT_COUNT
// It sends 60-byte frames out of IFINDEX from the kernel's XDP path
// (flood.bpf.c), as fast as that CPU allows, until it is killed; it prints
// "Running!" first.
import { native } from '../src/native/index.js';
import { FLOOD_FRAME_BYTES, loadFlood } from './flood-program.js';

const BATCH = 1_000_000;

const [ifindex, headersHex, first, count] = process.argv.slice(2);
const headers = Buffer.from(headersHex ?? '', 'hex');
if (!ifindex || headers.length !== 42 || !first || !count) {
  process.stderr.write('usage: node flood.js IFINDEX HEADERS_HEX(42 bytes) SPORT_FIRST SPORT_COUNT\n');
  process.exit(2);
}
const lib = native();
const object = loadFlood();
const config = Buffer.alloc(4 + 2 + 2 + 42 + 2); // struct flood_config
config.writeUInt32LE(Number(ifindex), 0);
config.writeUInt16LE(Number(first), 4);
config.writeUInt16LE(Number(count), 6);
headers.copy(config, 8);
lib.mapUpdate(object.mapFd('flood_config'), Buffer.alloc(4), config);
const frame = Buffer.alloc(FLOOD_FRAME_BYTES);
headers.copy(frame);
const program = object.programFd('flood');
process.stdout.write('Running!\n');
for (;;) lib.progTestRunLive(program, frame, BATCH);
