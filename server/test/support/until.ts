// Bounded waits on a condition: the tests' only way to wait for something to happen (no fixed sleeps).

/** Between two looks at the condition: often enough for a test of a few seconds, rare enough to cost nothing. */
const POLL_INTERVAL_MS = 20;

/**
 * Polls `check` until it returns a value (not undefined); fails naming `what` after `timeoutMs`, with
 * what `describe` says of the state then (and the last error `check` threw, if it threw).
 */
export async function until<T>(what: string, timeoutMs: number, check: () => T | undefined | Promise<T | undefined>, describe?: () => unknown): Promise<T> {
  const deadlineMs = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (performance.now() > deadlineMs) {
      const seen = describe === undefined ? '' : `; last seen: ${JSON.stringify(await Promise.resolve().then(describe).catch((err: unknown) => String(err)))}`;
      const error = lastError === undefined ? '' : `; last error: ${String(lastError)}`;
      throw new Error(`${what}: not within ${timeoutMs} ms${seen}${error}`);
    }
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
}

/** Polls `check` until it holds; fails naming `what` after `timeoutMs`. */
export async function untilTrue(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>, describe?: () => unknown): Promise<void> {
  await until(what, timeoutMs, async () => ((await check()) ? true : undefined), describe);
}
