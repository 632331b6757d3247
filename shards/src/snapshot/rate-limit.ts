/**
 * A token bucket over bytes: what bounds the snapshot bandwidth a node
 * sends (TiKV's snap-io-max-bytes-per-sec), so catching up a replica cannot
 * starve the Raft traffic that shares its links and disks. Waiters are
 * served in order; one chunk larger than the burst waits for its whole size
 * (the bucket goes into debt) rather than forever. Clock and sleep are
 * injected: tests drive them.
 */
export class ByteRateLimiter {
  private tokens: number;
  private lastMs: number;
  private queue: Promise<void> = Promise.resolve();
  private bytesPerSec: number;
  private burstBytes: number;

  constructor(
    private readonly o: {
      readonly bytesPerSec: number;
      /** Bytes that may go at once after an idle spell. */
      readonly burstBytes: number;
      readonly nowMs: () => number;
      readonly sleep: (ms: number) => Promise<void>;
    },
  ) {
    checkRate(o.bytesPerSec, o.burstBytes);
    this.bytesPerSec = o.bytesPerSec;
    this.burstBytes = o.burstBytes;
    this.tokens = o.burstBytes;
    this.lastMs = o.nowMs();
  }

  /**
   * A new rate from now on (SnapshotFlowControl moves it). Time until now
   * refills at the old rate; a waiter already asleep wakes as planned, and
   * the debt it leaves is repaid at the new rate by the takes after it.
   */
  setRate(bytesPerSec: number, burstBytes: number): void {
    checkRate(bytesPerSec, burstBytes);
    this.refill();
    this.bytesPerSec = bytesPerSec;
    this.burstBytes = burstBytes;
    this.tokens = Math.min(this.tokens, burstBytes);
  }

  /** Resolves once `bytes` may be sent. */
  take(bytes: number): Promise<void> {
    const turn = this.queue.then(() => this.wait(bytes));
    this.queue = turn;
    return turn;
  }

  private async wait(bytes: number): Promise<void> {
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return;
    await this.o.sleep((-this.tokens / this.bytesPerSec) * 1000);
    this.refill();
  }

  private refill(): void {
    const now = this.o.nowMs();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.lastMs) / 1000) * this.bytesPerSec);
    this.lastMs = now;
  }
}

function checkRate(bytesPerSec: number, burstBytes: number): void {
  if (!(bytesPerSec > 0) || !(burstBytes > 0)) throw new RangeError(`rate ${bytesPerSec} B/s and burst ${burstBytes} B must be positive`);
}
