// Key distributions and operation mixes: seeded, so these statistics are exact for the seed, and
// loose enough that another correct generator would pass too.
import { SeededRng } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { keyOf, scrambledZipfianKeys, uniformKeys, zipfianRanks } from '../src/workload/keys.js';
import { WORKLOADS, checkWorkload, pick, type OpKind } from '../src/workload/mix.js';

const DRAWS = 200_000;

function histogram(next: () => number, n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (let i = 0; i < DRAWS; i++) counts[next()]!++;
  return counts;
}

describe('key distributions', () => {
  it('uniform: every key about equally often, all in range', () => {
    const counts = histogram(uniformKeys(100, new SeededRng(1)).next, 100);
    expect(Math.min(...counts)).toBeGreaterThan(DRAWS / 100 * 0.85);
    expect(Math.max(...counts)).toBeLessThan(DRAWS / 100 * 1.15);
  });

  it('zipfian: rank frequencies follow 1/(i+1)^θ (against the exact probabilities)', () => {
    const n = 1000;
    const theta = 0.99;
    const counts = histogram(zipfianRanks(n, new SeededRng(2), theta).next, n);
    let zeta = 0;
    for (let i = 1; i <= n; i++) zeta += 1 / Math.pow(i, theta);
    for (const rank of [0, 1, 2, 9, 99]) {
      const expected = DRAWS / Math.pow(rank + 1, theta) / zeta;
      expect(counts[rank], `rank ${rank}`).toBeGreaterThan(expected * 0.8);
      expect(counts[rank], `rank ${rank}`).toBeLessThan(expected * 1.2);
    }
    // The top 10 % of ranks carry most of the draws; the bottom half few.
    const top = counts.slice(0, n / 10).reduce((a, c) => a + c, 0);
    const bottom = counts.slice(n / 2).reduce((a, c) => a + c, 0);
    expect(top / DRAWS).toBeGreaterThan(0.6);
    expect(bottom / DRAWS).toBeLessThan(0.15);
  });

  it('scrambled zipfian: the same skew, but the hottest keys are not neighbours', () => {
    const n = 1000;
    const counts = histogram(scrambledZipfianKeys(n, new SeededRng(3)).next, n);
    const hottest = counts.map((c, i) => [c, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 5).map(([, i]) => i);
    expect(counts[hottest[0]!]! / DRAWS).toBeGreaterThan(0.05);
    expect(Math.max(...hottest) - Math.min(...hottest)).toBeGreaterThan(10);
  });

  it('is repeatable for a seed', () => {
    const a = zipfianRanks(500, new SeededRng(9));
    const b = zipfianRanks(500, new SeededRng(9));
    expect(Array.from({ length: 100 }, () => a.next())).toEqual(Array.from({ length: 100 }, () => b.next()));
  });

  it('keys are distinct, user keys (first byte ≥ 1), and spread over the first byte', () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => keyOf(i));
    expect(new Set(keys.map((k) => k.toString('hex'))).size).toBe(keys.length);
    expect(keys.every((k) => k[0]! >= 1)).toBe(true);
    expect(new Set(keys.map((k) => k[0])).size).toBeGreaterThan(200);
  });

  it('refuses a bad key count or θ', () => {
    expect(() => uniformKeys(0, new SeededRng(1))).toThrow(RangeError);
    expect(() => zipfianRanks(10, new SeededRng(1), 1)).toThrow(RangeError);
  });
});

describe('operation mixes', () => {
  it.each(Object.values(WORKLOADS))('$name adds up and picks in proportion', (w) => {
    checkWorkload(w);
    const rng = new SeededRng(4);
    const counts = new Map<OpKind, number>();
    for (let i = 0; i < DRAWS; i++) {
      const op = pick(w, rng.nextFloat());
      counts.set(op, (counts.get(op) ?? 0) + 1);
    }
    for (const [op, p] of Object.entries(w.mix)) expect(Math.abs((counts.get(op as OpKind) ?? 0) / DRAWS - p!)).toBeLessThan(0.01);
  });

  it('refuses a mix that does not add up', () => {
    expect(() => checkWorkload({ name: 'bad', description: '', mix: { read: 0.5, update: 0.4 } })).toThrow(RangeError);
    expect(() => checkWorkload({ name: 'bad', description: '', mix: { read: 1.5, update: -0.5 } })).toThrow(RangeError);
  });
});
