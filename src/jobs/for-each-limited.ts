// Bounded concurrency for a job's per-image work: a few lanes take the next item in turn.

/** Runs `task` on every item, at most `limit` at a time, and starts no new one once `signal` is aborted. */
export async function forEachLimited<T>(items: readonly T[], limit: number, signal: AbortSignal, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (!signal.aborted && next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
