import { sleep, type Clock, type Timer } from '@flotilla/core';
import { KvError, RETRY_AFTER_MS, type Deadline } from './store.js';

/**
 * The store's waits under a request's deadline: Host calls cut off at it,
 * pauses cut short by it. Nothing here starts a budget of its own.
 */
export class HostCalls {
  private inFlight = 0;
  private abandoned = 0;

  constructor(private readonly clock: Clock) {}

  /** Host calls awaited now: at most one per call into the store. */
  get inFlightCount(): number {
    return this.inFlight;
  }

  /**
   * Host calls given up at their request's deadline whose Host request has
   * not settled yet: the Host keeps each until its own timeout
   * (requestTimeoutTicks), so these are bounded by the request rate times it.
   */
  get abandonedCount(): number {
    return this.abandoned;
  }

  /**
   * Awaits one Host call, but no longer than `deadline`: past it the call is
   * given up with DeadlineExceededError (the Host keeps its request until its
   * own timeout, counted meanwhile in abandonedCount).
   */
  async run<T>(deadline: Deadline, what: string, call: () => Promise<T>): Promise<T> {
    const remainingMs = deadline.remainingMs();
    if (remainingMs <= 0) throw new DeadlineExceededError(what, { handedOver: false });
    this.inFlight++;
    let timer: Timer | undefined;
    let pending: Promise<T> | undefined;
    try {
      pending = call();
      const cutOff = new Promise<never>((_, reject) => {
        timer = this.clock.setTimer(remainingMs, () => reject(new DeadlineExceededError(what, { handedOver: true })));
      });
      return await Promise.race([pending, cutOff]);
    } catch (err) {
      if (err instanceof DeadlineExceededError && pending !== undefined) {
        this.abandoned++;
        const settled = () => {
          this.abandoned--;
        };
        // Only the count waits for it; its outcome has no one left to tell (race already observed any rejection).
        void pending.then(settled, settled);
      }
      throw err;
    } finally {
      timer?.cancel();
      this.inFlight--;
    }
  }

  /** Sleeps `ms`, cut short by the deadline. */
  async pause(deadline: Deadline, ms: number): Promise<void> {
    const sleepMs = Math.min(ms, deadline.remainingMs());
    if (sleepMs > 0) await sleep(this.clock, sleepMs);
  }

  /** Waits for `work` until the deadline at the latest; `work` must never reject (the meta refresh's shared read). */
  async waitAtMost(deadline: Deadline, work: Promise<void>): Promise<void> {
    let timer: Timer | undefined;
    try {
      await Promise.race([work, new Promise<void>((resolve) => (timer = this.clock.setTimer(deadline.remainingMs(), resolve)))]);
    } finally {
      timer?.cancel();
    }
  }
}

/**
 * A Host call not made, or given up, at its request's deadline: UNAVAILABLE;
 * a write that was handed over (`handedOver`) becomes TIMEOUT (outcome unknown).
 */
export class DeadlineExceededError extends KvError {
  readonly handedOver: boolean;
  constructor(what: string, o: { handedOver: boolean }) {
    super('UNAVAILABLE', `${what}: no answer by the request's deadline`, { retryAfterMs: RETRY_AFTER_MS });
    this.handedOver = o.handedOver;
  }
}

/** A Host error that means this node is shutting down, as CLOSED; anything else as it is. */
export function closedOr(err: unknown): unknown {
  const code = (err as { code?: string }).code;
  if (code === 'HOST_CLOSED' || code === 'CORE_CRASHED') return new KvError('CLOSED', `the store is closed (${(err as Error).message})`);
  return err;
}
