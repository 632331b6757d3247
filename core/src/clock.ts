/**
 * Injected time, for everything above the Raft core that waits or measures:
 * deadlines, retries, duty intervals, rate limits. Production uses
 * `SYSTEM_CLOCK`; the whole-node simulation (test/src/node-sim) runs every
 * node on one virtual clock, so a seed replays a run exactly. The core itself
 * counts ticks and never reads a clock.
 */
export interface Clock {
  /** Monotonic milliseconds. */
  nowMs(): number;
  /** Calls `fn` once, `ms` from now (0 or less: on a later turn, never inside this call). */
  setTimer(ms: number, fn: () => void): Timer;
}

export interface Timer {
  /** The timer will not fire; calling it again, or after it fired, does nothing. */
  cancel(): void;
}

/**
 * performance.now and setTimeout. Node's timers are unref'd: a retry or a
 * duty interval never holds a process open by itself (the Host's tick timer
 * and the servers do, while the node runs).
 */
export const SYSTEM_CLOCK: Clock = {
  nowMs: () => performance.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms)) as { unref?: () => void };
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
};

/** Resolves `ms` from now on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}

/** Calls `fn` every `ms` until the returned timer is cancelled (the next call is armed before `fn` runs, so a throwing `fn` does not stop it). */
export function every(clock: Clock, ms: number, fn: () => void): Timer {
  let current: Timer | undefined;
  let cancelled = false;
  const arm = (): void => {
    current = clock.setTimer(ms, () => {
      if (cancelled) return;
      arm();
      fn();
    });
  };
  arm();
  return {
    cancel() {
      cancelled = true;
      current?.cancel();
    },
  };
}
