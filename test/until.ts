/**
 * Waits until `f` holds, polling every `pollMs`; throws naming `what` after `ms`. Resolves with
 * the time waited (ms). For conditions on real processes (a server ready, a publish seen): every
 * wait in a test is bounded.
 */
export async function until(
  what: string,
  f: () => boolean | Promise<boolean>,
  ms = 15_000,
  pollMs = 2,
): Promise<number> {
  const started = performance.now();
  while (!(await f())) {
    if (performance.now() - started > ms) throw new Error(`gave up waiting after ${ms} ms: ${what}`);
    await Bun.sleep(pollMs);
  }
  return performance.now() - started;
}
