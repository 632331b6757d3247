import { describe, expect, it } from 'vitest';
import { BASELINE_INTERVALS_MAX, BASELINE_INTERVALS_MIN, LatencySketch, SnapshotFlowControl, type SnapshotFlowDecision, type SnapshotFlowSettings } from '../src/snapshot/flow-control.js';
import { ByteRateLimiter } from '../src/snapshot/rate-limit.js';
import { snapshotFlowSettings } from '../src/snapshot/relay.js';

const MiB = 1024 * 1024;

/** Round numbers, so each expected rate is plain arithmetic. */
const SETTINGS: SnapshotFlowSettings = {
  bytesPerSecMax: 64 * MiB,
  bytesPerSecMin: 4 * MiB,
  intervalMs: 250,
  increaseBytesPerSec: 2 * MiB,
  decreaseFactor: 0.5,
  decreaseAboveRatio: 1.5,
  increaseBelowRatio: 1.2,
  latencyQuantile: 0.9,
  samplesPerIntervalMin: 20,
};

/** Drives a controller interval by interval: each feeds its foreground latencies and snapshot bytes, then closes. */
function driver(settings: SnapshotFlowSettings = SETTINGS) {
  let nowMs = 0;
  const flow = new SnapshotFlowControl(settings, nowMs);
  return {
    flow,
    /** One interval in which every write took `latencyMs` (50 of them; none when undefined) and `sentBytes` went out. */
    interval(i: { latencyMs: number | undefined; sentBytes: number }): SnapshotFlowDecision {
      if (i.latencyMs !== undefined) for (let k = 0; k < 50; k++) flow.observeForeground(i.latencyMs);
      if (i.sentBytes > 0) flow.onSent(i.sentBytes);
      nowMs += settings.intervalMs;
      const decision = flow.onTick(nowMs);
      expect(decision).toBeDefined();
      return decision!;
    },
  };
}

/** Bytes that fill an interval at `bytesPerSec` (the rate held the streams back). */
const filling = (bytesPerSec: number) => (bytesPerSec * SETTINGS.intervalMs) / 1000;

/** A controller whose baseline is 10 ms: quiet intervals (no snapshot bytes) at 10 ms. */
function withBaseline() {
  const d = driver();
  for (let k = 0; k < BASELINE_INTERVALS_MIN + 1; k++) d.interval({ latencyMs: 10, sentBytes: 0 });
  expect(d.flow.baselineMs).toBeCloseTo(10, 0);
  return d;
}

describe('LatencySketch', () => {
  it('answers quantiles within one bucket (~9 %) of the exact ones', () => {
    const sketch = new LatencySketch();
    const samples = Array.from({ length: 1000 }, (_, i) => 0.5 + i * 0.25); // 0.5 .. 250.25 ms
    for (const ms of samples) sketch.observe(ms);
    for (const q of [0.5, 0.9, 0.99, 1]) {
      const exact = samples[Math.ceil(q * samples.length) - 1]!;
      const estimate = sketch.quantileMs(q)!;
      expect(estimate).toBeGreaterThanOrEqual(exact);
      expect(estimate).toBeLessThanOrEqual(exact * 1.1);
    }
  });

  it('is empty after a reset, and ignores what is not a latency', () => {
    const sketch = new LatencySketch();
    sketch.observe(5);
    sketch.reset();
    sketch.observe(Number.NaN);
    sketch.observe(-1);
    expect(sketch.count).toBe(0);
    expect(sketch.quantileMs(0.9)).toBeUndefined();
  });

  it('counts latencies past its last bound in its last bucket', () => {
    const sketch = new LatencySketch();
    sketch.observe(1e9);
    expect(sketch.quantileMs(1)).toBeGreaterThan(100_000);
  });
});

describe('SnapshotFlowControl', () => {
  it('starts at the ceiling and decides only once an interval has passed', () => {
    const flow = new SnapshotFlowControl(SETTINGS, 1_000);
    expect(flow.bytesPerSec).toBe(64 * MiB);
    expect(flow.onTick(1_000 + SETTINGS.intervalMs - 1)).toBeUndefined();
    expect(flow.onTick(1_000 + SETTINGS.intervalMs)).toBeDefined();
  });

  it('halves what was actually sent when foreground latency rises above 1.5× its baseline', () => {
    const d = withBaseline();
    // 32 MiB/s went out (under a 64 MiB/s rate): halving the rate would not bite, halving what was sent does.
    const decision = d.interval({ latencyMs: 20, sentBytes: filling(32 * MiB) });
    expect(decision).toMatchObject({ action: 'decrease', reason: 'latencyHigh' });
    expect(decision.bytesPerSec).toBe(16 * MiB);
    expect(d.flow.bytesPerSec).toBe(16 * MiB);
  });

  it('waits an interval after a decrease before deciding another', () => {
    const d = withBaseline();
    d.interval({ latencyMs: 20, sentBytes: filling(64 * MiB) });
    expect(d.interval({ latencyMs: 20, sentBytes: filling(32 * MiB) })).toMatchObject({ action: 'hold', reason: 'afterDecrease', bytesPerSec: 32 * MiB });
    expect(d.interval({ latencyMs: 20, sentBytes: filling(32 * MiB) })).toMatchObject({ action: 'decrease', bytesPerSec: 16 * MiB });
  });

  it('never goes below its floor, so a move always progresses', () => {
    const d = withBaseline();
    for (let k = 0; k < 20; k++) d.interval({ latencyMs: 100, sentBytes: filling(d.flow.bytesPerSec) });
    expect(d.flow.bytesPerSec).toBe(4 * MiB);
    expect(d.interval({ latencyMs: 100, sentBytes: filling(4 * MiB) })).toMatchObject({ action: 'hold', reason: 'atLimit' });
  });

  it('grows additively while latency is fine and the rate holds the streams back, up to its ceiling', () => {
    const d = withBaseline();
    d.interval({ latencyMs: 40, sentBytes: filling(64 * MiB) }); // → 32 MiB/s
    const rates: number[] = [];
    for (let k = 0; k < 20; k++) rates.push(d.interval({ latencyMs: 10, sentBytes: filling(d.flow.bytesPerSec) }).bytesPerSec / MiB);
    expect(rates.slice(0, 3)).toEqual([34, 36, 38]);
    expect(rates.at(-1)).toBe(64);
    expect(d.interval({ latencyMs: 10, sentBytes: filling(64 * MiB) })).toMatchObject({ action: 'hold', reason: 'atLimit' });
  });

  it('holds between the two ratios: latency raised but not too high', () => {
    const d = withBaseline();
    d.interval({ latencyMs: 40, sentBytes: filling(64 * MiB) }); // → 32 MiB/s
    expect(d.interval({ latencyMs: 13, sentBytes: filling(32 * MiB) })).toMatchObject({ action: 'hold', reason: 'latencyRaised', bytesPerSec: 32 * MiB });
  });

  it('does not grow a rate the streams do not fill', () => {
    const d = withBaseline();
    d.interval({ latencyMs: 40, sentBytes: filling(64 * MiB) }); // → 32 MiB/s
    expect(d.interval({ latencyMs: 10, sentBytes: filling(8 * MiB) })).toMatchObject({ action: 'hold', reason: 'notLimited', bytesPerSec: 32 * MiB });
  });

  it('grows when there are too few writes to tell: nothing to protect', () => {
    const d = withBaseline();
    d.interval({ latencyMs: 40, sentBytes: filling(64 * MiB) }); // → 32 MiB/s
    expect(d.interval({ latencyMs: undefined, sentBytes: filling(32 * MiB) })).toMatchObject({ action: 'increase', reason: 'tooFewSamples', bytesPerSec: 34 * MiB });
  });

  it('does not decrease for high latency while no snapshot bytes went out: the cause is elsewhere', () => {
    const d = withBaseline();
    expect(d.interval({ latencyMs: 100, sentBytes: 0 })).toMatchObject({ action: 'hold', reason: 'latencyHigh', bytesPerSec: 64 * MiB });
  });

  it('takes its baseline from quiet intervals only, not from those its own snapshots slowed', () => {
    const d = withBaseline();
    // A long move at the floor with latency at 30 ms: the baseline stays the quiet 10 ms.
    for (let k = 0; k < 2 * BASELINE_INTERVALS_MAX; k++) d.interval({ latencyMs: 30, sentBytes: filling(d.flow.bytesPerSec) });
    expect(d.flow.baselineMs).toBeCloseTo(10, 0);
    expect(d.flow.bytesPerSec).toBe(4 * MiB);
    // The interval right after the last snapshot bytes is not quiet either (their effect lags).
    d.interval({ latencyMs: 50, sentBytes: 0 });
    expect(d.flow.baselineMs).toBeCloseTo(10, 0);
  });

  it('follows the median of quiet intervals, not one lucky interval', () => {
    const d = driver();
    for (const ms of [10, 2, 10, 10, 10]) d.interval({ latencyMs: ms, sentBytes: 0 });
    expect(d.flow.baselineMs).toBeCloseTo(10, 0);
  });

  it('judges against the median of recent intervals until enough quiet ones were seen', () => {
    const d = driver();
    expect(d.interval({ latencyMs: 10, sentBytes: filling(64 * MiB) })).toMatchObject({ action: 'hold', reason: 'noBaseline' });
    for (let k = 0; k < BASELINE_INTERVALS_MIN; k++) d.interval({ latencyMs: 10, sentBytes: filling(64 * MiB) });
    expect(d.flow.baselineMs).toBeCloseTo(10, 0);
    expect(d.interval({ latencyMs: 20, sentBytes: filling(64 * MiB) })).toMatchObject({ action: 'decrease' });
  });

  it('refuses settings that cannot work', () => {
    expect(() => new SnapshotFlowControl({ ...SETTINGS, bytesPerSecMin: 0 }, 0)).toThrow(RangeError);
    expect(() => new SnapshotFlowControl({ ...SETTINGS, bytesPerSecMin: SETTINGS.bytesPerSecMax + 1 }, 0)).toThrow(RangeError);
    expect(() => new SnapshotFlowControl({ ...SETTINGS, decreaseFactor: 1 }, 0)).toThrow(RangeError);
    expect(() => new SnapshotFlowControl({ ...SETTINGS, increaseBelowRatio: 2, decreaseAboveRatio: 1.5 }, 0)).toThrow(RangeError);
    expect(() => new SnapshotFlowControl({ ...SETTINGS, latencyQuantile: 0 }, 0)).toThrow(RangeError);
  });

  it("keeps a ceiling configured below the default floor as both floor and ceiling", () => {
    const settings = snapshotFlowSettings(1 * MiB);
    expect(settings.bytesPerSecMin).toBe(1 * MiB);
    expect(new SnapshotFlowControl(settings, 0).bytesPerSec).toBe(1 * MiB);
  });
});

describe('ByteRateLimiter.setRate', () => {
  it('paces what comes after a change at the new rate', async () => {
    const t = { nowMs: 0 };
    const limiter = new ByteRateLimiter({ bytesPerSec: 1_000, burstBytes: 1_000, nowMs: () => t.nowMs, sleep: async (ms) => void (t.nowMs += ms) });
    await limiter.take(1_000); // the burst
    limiter.setRate(100, 100);
    await limiter.take(100);
    expect(t.nowMs).toBe(1_000);
  });

  it('caps the tokens saved up at the new, smaller burst', async () => {
    const t = { nowMs: 0 };
    const limiter = new ByteRateLimiter({ bytesPerSec: 1_000, burstBytes: 1_000, nowMs: () => t.nowMs, sleep: async (ms) => void (t.nowMs += ms) });
    limiter.setRate(1_000, 100);
    await limiter.take(200);
    expect(t.nowMs).toBe(100);
  });
});
