import { describe, expect, it } from 'vitest';
import { RangeTable, type RangeDescriptor } from '../src/range.js';

const b = (s: string) => Buffer.from(s);
const range = (rangeId: number, start: string, end: string | null, epoch = 1): RangeDescriptor => ({ rangeId, start: b(start), end: end === null ? null : b(end), epoch, replicas: [1] });

describe('RangeTable', () => {
  const table = new RangeTable([range(2, 'm', 't'), range(1, '', 'm'), range(3, 't', null)]);

  it.each([
    ['', 1],
    ['a', 1],
    ['lzzz', 1],
    ['m', 2],
    ['m\u0000', 2],
    ['szzz', 2],
    ['t', 3],
    ['\u00ff\u00ff', 3],
  ])('routes key %j to range %i', (key, rangeId) => {
    expect(table.lookup(b(key))?.rangeId).toBe(rangeId);
  });

  it('lists the ranges a scan crosses, in key order', () => {
    expect(table.overlapping(b('k'), b('u')).map((r) => r.rangeId)).toEqual([1, 2, 3]);
    expect(table.overlapping(b('m'), b('t')).map((r) => r.rangeId)).toEqual([2]);
    expect(table.overlapping(b('n'), null).map((r) => r.rangeId)).toEqual([2, 3]);
  });

  it('leaves a gap unrouted instead of guessing', () => {
    const gappy = new RangeTable([range(1, 'a', 'c'), range(2, 'd', 'f')]);
    expect(gappy.lookup(b('c'))).toBeUndefined();
    expect(gappy.lookup(b('0'))).toBeUndefined();
    expect(gappy.lookup(b('f'))).toBeUndefined();
  });

  it('replaces a descriptor only with one of the same or a newer epoch', () => {
    const t = new RangeTable([range(1, '', null, 5)]);
    expect(t.upsert(range(1, '', 'k', 4))).toBe(false);
    expect(t.lookup(b('z'))?.rangeId).toBe(1);
    expect(t.upsert(range(1, '', 'k', 6))).toBe(true);
    expect(t.lookup(b('z'))).toBeUndefined();
  });

  it('refuses overlapping ranges (a routing bug, not input)', () => {
    const t = new RangeTable([range(1, 'a', 'm')]);
    expect(() => t.upsert(range(2, 'l', 'z'))).toThrow(/overlap/);
  });
});
