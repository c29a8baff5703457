// Work that runs side by side within one sync: the sync ends only once all
// of it has, so nothing it began is still changing the kernel when the next
// sync starts.

type Values<T extends readonly unknown[]> = { -readonly [K in keyof T]: Awaited<T[K]> };

/** Waits for every promise, then rejects with the first failure in their order, or resolves to their values. */
export async function allSettledOrThrow<T extends readonly unknown[] | []>(promises: T): Promise<Values<T>> {
  const values: unknown[] = [];
  for (const result of await Promise.allSettled(promises)) {
    if (result.status === 'rejected') throw result.reason;
    values.push(result.value);
  }
  return values as Values<T>;
}
