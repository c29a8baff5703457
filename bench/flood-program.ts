// The packet-rate generator's XDP program (flood.bpf.c), as bench/flood.ts
// runs it, and whether this kernel can run it at all.
import os from 'node:os';
import path from 'node:path';
import { type BpfObject, native, projectRoot } from '../src/native/index.js';

export const FLOOD_FRAME_BYTES = 60;

/** flood.bpf.o, loaded. Its maps are not pinned: the pin root is never written. */
export function loadFlood(): BpfObject {
  const object = native().openObject(path.join(projectRoot, 'build', 'bench', 'flood.bpf.o'), '/sys/fs/bpf');
  object.load();
  return object;
}

/**
 * Why this kernel cannot run the generator, or undefined where it can. It
 * sends with BPF_PROG_TEST_RUN's live frames (BPF_F_TEST_XDP_LIVE_FRAMES,
 * from kernel 5.18); older kernels refuse the call (EINVAL: see
 * progTestRunLive). Probed with one frame, which the program, not yet told
 * where to send, drops.
 */
export function packetRateRefusal(): string | undefined {
  const object = loadFlood();
  try {
    native().progTestRunLive(object.programFd('flood'), Buffer.alloc(FLOOD_FRAME_BYTES), 1);
    return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    return `the generator (bench/flood.ts) sends with BPF_PROG_TEST_RUN's live frames (BPF_F_TEST_XDP_LIVE_FRAMES, kernel 5.18 and later), which this kernel (${os.release()}) refuses`;
  } finally {
    object.close();
  }
}
