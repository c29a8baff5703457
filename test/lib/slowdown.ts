// How much slower this machine is than the host the time bounds were set
// for: the test VM (software emulation) sets KUBE_LB_TEST_SLOWDOWN, and
// every wait and time bound scales with it. On the host it is 1, so the
// bounds there are exactly the ones the issues ask for.
function parse(value: string | undefined): number {
  if (value === undefined || value === '') return 1;
  const n = Number(value);
  if (!(n >= 1)) throw new Error(`KUBE_LB_TEST_SLOWDOWN=${value}: not a number of at least 1`);
  return n;
}

export const SLOWDOWN = parse(process.env.KUBE_LB_TEST_SLOWDOWN);

/** A duration of the host's, in this machine's time. */
export const slow = (ms: number): number => ms * SLOWDOWN;
