import { describe, expect, it } from 'vitest';
import { ByteRateLimiter } from '../src/snapshot/rate-limit.js';

/** A fake clock whose sleeps advance it: the time a sequence of takes needs is exactly what it slept. */
function fakeTime() {
  const t = { nowMs: 0, slept: [] as number[] };
  return {
    t,
    nowMs: () => t.nowMs,
    sleep: async (ms: number) => {
      t.slept.push(ms);
      t.nowMs += ms;
    },
  };
}

describe('ByteRateLimiter', () => {
  it('lets a burst through at once, then holds the rate', async () => {
    const time = fakeTime();
    const limiter = new ByteRateLimiter({ bytesPerSec: 1_000, burstBytes: 1_000, nowMs: time.nowMs, sleep: time.sleep });
    await limiter.take(1_000);
    expect(time.t.nowMs).toBe(0);
    // 3,000 more bytes at 1,000 B/s: three seconds, in order.
    await Promise.all([limiter.take(1_000), limiter.take(1_000), limiter.take(1_000)]);
    expect(time.t.nowMs).toBe(3_000);
  });

  it('refills with idle time, never above the burst', async () => {
    const time = fakeTime();
    const limiter = new ByteRateLimiter({ bytesPerSec: 1_000, burstBytes: 500, nowMs: time.nowMs, sleep: time.sleep });
    await limiter.take(500);
    time.t.nowMs += 10_000; // idle for long: the bucket holds only the burst
    await limiter.take(500);
    expect(time.t.slept).toEqual([]);
    await limiter.take(250);
    expect(time.t.slept).toEqual([250]);
  });

  it('lets a chunk bigger than the burst through after its whole size of time', async () => {
    const time = fakeTime();
    const limiter = new ByteRateLimiter({ bytesPerSec: 1_000, burstBytes: 100, nowMs: time.nowMs, sleep: time.sleep });
    await limiter.take(2_100);
    expect(time.t.nowMs).toBe(2_000);
  });

  it('refuses a rate or burst that is not positive', () => {
    const time = fakeTime();
    expect(() => new ByteRateLimiter({ bytesPerSec: 0, burstBytes: 1, nowMs: time.nowMs, sleep: time.sleep })).toThrow(RangeError);
  });
});
