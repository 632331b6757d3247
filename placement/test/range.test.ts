import { describe, expect, it } from 'vitest';
import { RangeTable, compareKeys, type RangeDescriptor } from '../src/range.js';

const b = (s: string) => Buffer.from(s);
const range = (rangeId: number, start: string, end: string | null, epoch = 1, replicas: number[] = [1]): RangeDescriptor => ({
  rangeId,
  start: b(start),
  end: end === null ? null : b(end),
  epoch,
  replicas,
});
const ids = (t: RangeTable) => t.all().map((r) => `${r.rangeId}@${r.epoch}`);

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

  it('takes a descriptor of the same range and epoch as a refresh', () => {
    const t = new RangeTable([range(1, '', null, 5, [1, 2])]);
    expect(t.upsert(range(1, '', null, 5, [1, 2, 3]))).toBe(true);
    expect(t.lookup(b('a'))?.replicas).toEqual([1, 2, 3]);
  });

  it('removes a range by id, leaving its keys unrouted', () => {
    const t = new RangeTable([range(1, '', 'm'), range(2, 'm', null)]);
    t.remove(2);
    expect(ids(t)).toEqual(['1@1']);
    expect(t.lookup(b('n'))).toBeUndefined();
  });

  it('asserts that a range starts before it ends (a caller bug, not input)', () => {
    expect(() => new RangeTable().upsert(range(1, 'm', 'a'))).toThrow(/start must precede end/);
    expect(() => new RangeTable().upsert(range(1, 'm', 'm'))).toThrow(/start must precede end/);
  });
});

describe('RangeTable under stale descriptors (higher epoch wins on overlap)', () => {
  // Range 1 [∅, ∞) at epoch 1 splits at m into 1 [∅, m) and 2 [m, ∞), both at epoch 2;
  // then 2 splits at t into 2 [m, t) and 3 [t, ∞), both at epoch 3.
  const parent = range(1, '', null, 1);
  const left = range(1, '', 'm', 2);
  const right = range(2, 'm', null, 2);
  const rightLeft = range(2, 'm', 't', 3);
  const rightRight = range(3, 't', null, 3);
  const current = ['1@2', '2@3', '3@3'];

  it('applies a split delivered parent first, then children', () => {
    const t = new RangeTable();
    expect(t.upsert(parent)).toBe(true);
    expect(t.upsert(left)).toBe(true);
    expect(ids(t)).toEqual(['1@2']);
    expect(t.upsert(right)).toBe(true);
    expect(ids(t)).toEqual(['1@2', '2@2']);
  });

  it('ignores the parent delivered after its children', () => {
    const t = new RangeTable();
    expect(t.upsert(right)).toBe(true);
    expect(t.upsert(left)).toBe(true);
    expect(t.upsert(parent)).toBe(false);
    expect(ids(t)).toEqual(['1@2', '2@2']);
  });

  it('ignores the parent and the middle generation delivered after the grandchildren', () => {
    const t = new RangeTable();
    expect(t.upsert(rightRight)).toBe(true);
    expect(t.upsert(parent)).toBe(false);
    expect(t.upsert(right)).toBe(false);
    expect(t.upsert(rightLeft)).toBe(true);
    expect(t.upsert(left)).toBe(true);
    expect(ids(t)).toEqual(current);
  });

  it('shows a gap where a child evicted its parent and its sibling has not arrived', () => {
    const t = new RangeTable([parent]);
    expect(t.upsert(right)).toBe(true);
    expect(t.lookup(b('a'))).toBeUndefined();
    expect(t.lookup(b(''))).toBeUndefined();
    expect(t.lookup(b('n'))?.rangeId).toBe(2);
    expect(t.upsert(rightRight)).toBe(true);
    expect(t.lookup(b('n'))).toBeUndefined();
    expect(t.lookup(b('u'))?.rangeId).toBe(3);
    expect(t.upsert(left)).toBe(true);
    expect(t.lookup(b('a'))?.rangeId).toBe(1);
  });

  it('ends with the current ranges whatever order the versions arrive in', () => {
    const versions = [parent, left, right, rightLeft, rightRight];
    let orders = 0;
    for (const order of permutations(versions)) {
      const t = new RangeTable();
      for (const r of order) t.upsert(r);
      expect(ids(t), order.map((r) => `${r.rangeId}@${r.epoch}`).join(' ')).toEqual(current);
      orders++;
    }
    expect(orders).toBe(120);
  });

  it('replaceAll drops a stale entry of a meta scan, whatever its position', () => {
    for (const list of permutations([left, right, parent])) {
      const t = new RangeTable([range(9, 'x', 'y', 7)]);
      t.replaceAll(list);
      expect(ids(t)).toEqual(['1@2', '2@2']);
    }
    expect(ids(new RangeTable([parent, rightRight, left, right, rightLeft]))).toEqual(current);
  });

  it('ignores an overlapping range of the same epoch (keeps what it holds)', () => {
    const t = new RangeTable([range(1, 'a', 'm', 4)]);
    expect(t.upsert(range(2, 'l', 'z', 4))).toBe(false);
    expect(ids(t)).toEqual(['1@4']);
    expect(t.lookup(b('n'))).toBeUndefined();
    expect(t.upsert(range(2, 'l', 'z', 5))).toBe(true);
    expect(ids(t)).toEqual(['2@5']);
  });

  it('replaceAll resolves an equal-epoch conflict the same way in any order', () => {
    const a = range(1, 'a', 'm', 4);
    const c = range(2, 'l', 'z', 4);
    expect(ids(new RangeTable([a, c]))).toEqual(['1@4']);
    expect(ids(new RangeTable([c, a]))).toEqual(['1@4']);
  });
});

describe('RangeTable property: random split histories', () => {
  const SEEDS = 10;
  const HISTORY_STEPS = 120;
  const SUBSETS_PER_SEED = 8;

  it('holds exactly the current ranges after every version arrives, in any order', () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const random = mulberry32(seed);
      const { versions, current } = simulateHistory(random, HISTORY_STEPS);
      const want = current.map(describeRange).sort();
      const t = new RangeTable();
      for (const r of shuffled(versions, random)) {
        t.upsert(r);
        expectDisjoint(t, seed);
      }
      expect(t.all().map(describeRange).sort(), `seed ${seed}`).toEqual(want);
      expect(new RangeTable(shuffled(versions, random)).all().map(describeRange).sort(), `seed ${seed} (replaceAll)`).toEqual(want);
    }
  });

  it('holds the newest of whatever subset arrives, against a naive oracle', () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const random = mulberry32(seed);
      const { versions } = simulateHistory(random, HISTORY_STEPS);
      for (let i = 0; i < SUBSETS_PER_SEED; i++) {
        const subset = shuffled(versions.filter(() => random() < 0.3), random);
        const t = new RangeTable();
        for (const r of subset) {
          t.upsert(r);
          expectDisjoint(t, seed);
        }
        const want = newestOf(subset).map(describeRange).sort();
        expect(t.all().map(describeRange).sort(), `seed ${seed}, subset ${i}`).toEqual(want);
        expect(new RangeTable(subset).all().map(describeRange).sort(), `seed ${seed}, subset ${i} (replaceAll)`).toEqual(want);
      }
    }
  });

  it('upsertMany is upsert of each in turn: over a table holding some versions already, overlapping or not', () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const random = mulberry32(seed);
      const { versions, current } = simulateHistory(random, HISTORY_STEPS);
      // The current ranges tile the key space: the fast path; any subset of all versions: mostly the slow one.
      for (const list of [shuffled(current, random), ...Array.from({ length: SUBSETS_PER_SEED }, () => shuffled(versions.filter(() => random() < 0.3), random))]) {
        const held = shuffled(versions.filter(() => random() < 0.1), random);
        const one = new RangeTable();
        const many = new RangeTable();
        for (const r of held) {
          one.upsert(r);
          many.upsert(r);
        }
        for (const r of list) one.upsert(r);
        many.upsertMany(list);
        expectDisjoint(many, seed);
        expect(many.all().map(describeRange), `seed ${seed}`).toEqual(one.all().map(describeRange));
      }
    }
  });
});

/** Keys are 2-byte big-endian integers 1..65535; bound 0 is the empty key and KEY_SPACE_END is "no end". */
const KEY_SPACE_END = 0x1_0000;
const keyOf = (n: number) => (n === 0 ? new Uint8Array(0) : Uint8Array.of(n >> 8, n & 0xff));

/** Splits (left half keeps the id) and membership changes of random ranges, as a correct cluster makes them. */
function simulateHistory(random: () => number, steps: number): { versions: RangeDescriptor[]; current: RangeDescriptor[] } {
  interface Live {
    rangeId: number;
    lo: number;
    hi: number;
    epoch: number;
  }
  const toDescriptor = (r: Live): RangeDescriptor => ({
    rangeId: r.rangeId,
    start: keyOf(r.lo),
    end: r.hi === KEY_SPACE_END ? null : keyOf(r.hi),
    epoch: r.epoch,
    replicas: [r.epoch],
  });
  const live: Live[] = [{ rangeId: 1, lo: 0, hi: KEY_SPACE_END, epoch: 1 }];
  const versions = [toDescriptor(live[0]!)];
  let nextRangeId = 2;
  for (let step = 0; step < steps; step++) {
    const r = live[Math.floor(random() * live.length)]!;
    if (random() < 0.6 && r.hi - r.lo >= 2) {
      const at = r.lo + 1 + Math.floor(random() * (r.hi - r.lo - 1));
      const split: Live = { rangeId: nextRangeId++, lo: at, hi: r.hi, epoch: r.epoch + 1 };
      r.hi = at;
      r.epoch++;
      live.push(split);
      versions.push(toDescriptor(r), toDescriptor(split));
    } else {
      r.epoch++;
      versions.push(toDescriptor(r));
    }
  }
  return { versions, current: live.map(toDescriptor) };
}

/** The naive oracle: a version survives unless another one of its range, or overlapping it, has a higher epoch. */
function newestOf(versions: readonly RangeDescriptor[]): RangeDescriptor[] {
  const overlap = (x: RangeDescriptor, y: RangeDescriptor) =>
    (x.end === null || compareKeys(y.start, x.end) < 0) && (y.end === null || compareKeys(x.start, y.end) < 0);
  return versions.filter((v) => !versions.some((w) => w.epoch > v.epoch && (w.rangeId === v.rangeId || overlap(v, w))));
}

function expectDisjoint(t: RangeTable, seed: number): void {
  const all = t.all();
  for (let i = 1; i < all.length; i++) {
    const prev = all[i - 1]!;
    // One expect per failure, not per pair: this runs after every upsert.
    if (prev.end === null || compareKeys(prev.end, all[i]!.start) > 0) {
      expect.fail(`seed ${seed}: ranges ${describeRange(prev)} and ${describeRange(all[i]!)} overlap`);
    }
  }
}

function describeRange(r: RangeDescriptor): string {
  const hex = (k: Uint8Array | null) => (k === null ? '∞' : Buffer.from(k).toString('hex'));
  return `${r.rangeId}@${r.epoch}[${hex(r.start)},${hex(r.end)})`;
}

function* permutations<T>(items: readonly T[]): Generator<T[]> {
  if (items.length <= 1) {
    yield [...items];
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const rest = [...items.slice(0, i), ...items.slice(i + 1)];
    for (const tail of permutations(rest)) yield [items[i]!, ...tail];
  }
}

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A small seeded PRNG (mulberry32): the same seed replays the same history. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

describe('RangeTable.get', () => {
  it('finds a range by id, and forgets it once evicted or removed', () => {
    const t = new RangeTable([range(1, '', 'm', 1), range(2, 'm', null, 1)]);
    expect(t.get(2)?.start).toEqual(Buffer.from('m'));
    expect(t.upsert(range(3, 't', null, 2))).toBe(true); // evicts range 2
    expect(t.get(2)).toBeUndefined();
    expect(t.get(3)?.epoch).toBe(2);
    t.remove(1);
    expect([t.get(1), t.get(3)?.rangeId]).toEqual([undefined, 3]);
  });
});
