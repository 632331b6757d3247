// The ranges a static bootstrap creates (node.ts initialRanges): they tile the user key space, in order,
// with ids below the ones the meta range allocates for splits.
import { FIRST_ALLOCATED_RANGE_ID, META_RANGE_ID, USER_KEY_MIN } from '@flotilla/placement';
import { describe, expect, it } from 'vitest';
import { INITIAL_RANGE_COUNT_MAX, initialRanges } from '../src/node.js';

describe('initialRanges', () => {
  for (const count of [1, 2, 8, 255, 256, 257, 300, 999, INITIAL_RANGE_COUNT_MAX]) {
    it(`tiles the user key space with ${count} ranges, each non-empty, ids 2..${count + 1}`, () => {
      const [meta, ...user] = initialRanges(count);
      expect(meta!.rangeId).toBe(META_RANGE_ID);
      expect(Buffer.from(meta!.end!)).toEqual(Buffer.from(USER_KEY_MIN));
      expect(user.map((r) => r.rangeId)).toEqual(Array.from({ length: count }, (_, i) => i + 2));
      expect(user.at(-1)!.rangeId).toBeLessThan(FIRST_ALLOCATED_RANGE_ID);
      expect(Buffer.from(user[0]!.start)).toEqual(Buffer.from(USER_KEY_MIN));
      expect(user.at(-1)!.end).toBeNull();
      for (const [i, r] of user.entries()) {
        if (r.end !== null) expect(Buffer.compare(r.start, r.end), `range ${r.rangeId} is empty`).toBeLessThan(0);
        if (i > 0) expect(Buffer.from(r.start)).toEqual(Buffer.from(user[i - 1]!.end!));
        // Up to 256 the split points are one byte, as clusters bootstrapped by earlier releases have them.
        if (i > 0) expect(r.start.byteLength).toBe(count <= 256 ? 1 : 2);
      }
    });
  }

  it('keeps the bounds an 8-range cluster has always had', () => {
    expect(initialRanges(8).slice(1).map((r) => [Buffer.from(r.start).toString('hex'), r.end === null ? null : Buffer.from(r.end).toString('hex')])).toEqual([
      ['0001', '20'], ['20', '40'], ['40', '60'], ['60', '80'], ['80', 'a0'], ['a0', 'c0'], ['c0', 'e0'], ['e0', null],
    ]);
  });
});
