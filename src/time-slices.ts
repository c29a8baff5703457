// Long loops on the main thread share it with health probes, scrapes and
// watch events: a loop that runs for seconds leaves them all unanswered.
// Such a loop calls the function timeSlices() returns between its steps;
// once a slice has run SLICE_MS, the call lets the event loop serve what
// waits before the loop goes on.

/** Long enough that yielding costs little, short enough that a probe waiting behind a slice is answered well within its timeout. */
const SLICE_MS = 10;

export function timeSlices(): () => Promise<void> {
  let sliceStart = performance.now();
  return async () => {
    if (performance.now() - sliceStart < SLICE_MS) return;
    await new Promise((resolve) => setImmediate(resolve));
    sliceStart = performance.now();
  };
}
