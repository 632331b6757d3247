// The bucket counts a core keeps per latency histogram (latency.ts): where a duration lands, and that a copy
// stops counting.
import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKET_BOUNDS_SECONDS, copyCoreLatencies, emptyCoreLatencies, emptyLatencyBuckets, observeLatency } from '../../src/host/latency.js';

describe('observeLatency', () => {
  const bounds = LATENCY_BUCKET_BOUNDS_SECONDS;
  // A bound is the bucket's inclusive upper edge (Prometheus's `le`); past the largest, the overflow bucket.
  const cases: [seconds: number, bucket: number][] = [
    [0, 0],
    [bounds[0]!, 0],
    [bounds[0]! * 1.0001, 1],
    [0.001, bounds.indexOf(0.001)],
    [0.0011, bounds.indexOf(0.001) + 1],
    [bounds.at(-1)!, bounds.length - 1],
    [bounds.at(-1)! + 1, bounds.length],
    [3600, bounds.length],
  ];
  for (const [seconds, bucket] of cases) {
    it(`${seconds} s lands in bucket ${bucket}`, () => {
      const h = emptyLatencyBuckets();
      observeLatency(h, seconds);
      const expected = new Array<number>(bounds.length + 1).fill(0);
      expected[bucket] = 1;
      expect(h.counts).toEqual(expected);
      expect(h.sumSeconds).toBe(seconds);
    });
  }

  it('a copy keeps what was counted and the original goes on', () => {
    const live = emptyCoreLatencies();
    observeLatency(live.storeCommitSynced, 0.002);
    const copy = copyCoreLatencies(live);
    observeLatency(live.storeCommitSynced, 0.002);
    expect(copy.storeCommitSynced.counts.reduce((a, b) => a + b, 0)).toBe(1);
    expect(live.storeCommitSynced.counts.reduce((a, b) => a + b, 0)).toBe(2);
    expect(copy.storeCommitSynced.sumSeconds).toBe(0.002);
  });
});
