// The key-range index a core finds overlapping replicas with (kv/range-index.ts), against a pass over
// every range (the oracle), through random sets, moves and deletes of overlapping and tiling ranges.
import { describe, expect, it } from 'vitest';
import { RangeIndex } from '../src/kv/range-index.js';
import type { RangeBounds } from '../src/storage/codec.js';

/** Deterministic: the same ranges every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const key = (n: number): Uint8Array => Buffer.from(n.toString(16).padStart(6, '0'), 'hex');

function overlaps(a: RangeBounds, b: RangeBounds): boolean {
  const empty = (r: RangeBounds) => r.end !== null && Buffer.compare(r.start, r.end) >= 0;
  if (empty(a) || empty(b)) return false;
  return (a.end === null || Buffer.compare(b.start, a.end) < 0) && (b.end === null || Buffer.compare(a.start, b.end) < 0);
}

describe('RangeIndex', () => {
  it.each([1, 2, 3, 4])('finds exactly the ranges a pass over all of them finds (seed %i)', (seed) => {
    const random = rng(seed);
    const index = new RangeIndex<number>();
    const oracle = new Map<number, RangeBounds>();
    const span = 1 << 20;
    const randomRange = (): RangeBounds => {
      const start = Math.floor(random() * span);
      const r = random();
      // Mostly short ranges (a tiling), some long ones (stale replicas), some to the end, some empty.
      const length = r < 0.8 ? 1 + Math.floor(random() * 64) : r < 0.93 ? Math.floor(random() * span) : r < 0.97 ? -1 : 0;
      return { start: key(start), end: length < 0 ? null : key(Math.min(span, start + length)) };
    };
    for (let step = 0; step < 6000; step++) {
      const id = Math.floor(random() * 1500);
      const r = random();
      if (r < 0.7) {
        const bounds = randomRange();
        index.set(id, bounds);
        if (bounds.end !== null && Buffer.compare(bounds.start, bounds.end) >= 0) oracle.delete(id);
        else oracle.set(id, bounds);
      } else if (r < 0.85) {
        index.delete(id);
        oracle.delete(id);
      } else if (step >= 1500 * (seed % 2)) {
        // Odd seeds ask nothing for their first 1,500 steps: the blocks are then built from many ranges at once.
        const within = randomRange();
        const found: number[] = [];
        index.forEachOverlapping(within, (item) => found.push(item));
        const expected = [...oracle].filter(([, b]) => overlaps(b, within)).map(([item]) => item);
        expect(found.sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
      }
      expect(index.size).toBe(oracle.size);
    }
  });

  it('finds a long range far to the left of the key asked about, across many blocks', () => {
    const index = new RangeIndex<number>();
    for (let i = 1; i <= 5000; i++) index.set(i, { start: key(i * 10), end: key(i * 10 + 10) });
    index.set(0, { start: key(5), end: null });
    const found: number[] = [];
    index.forEachOverlapping({ start: key(40_000), end: key(40_001) }, (item) => found.push(item));
    expect(found.sort((a, b) => a - b)).toEqual([0, 4000]);
    index.delete(0);
    found.length = 0;
    index.forEachOverlapping({ start: key(40_000), end: key(40_001) }, (item) => found.push(item));
    expect(found).toEqual([4000]);
  });
});
