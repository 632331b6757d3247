import { assert } from '@flotilla/core';

/**
 * A range of the key space and the shard (Raft group) that owns it:
 * [start, end), `end` null for "to the end of the key space". `epoch` grows
 * with every split (both halves take the parent's epoch + 1) and every
 * membership change, so of two overlapping descriptors of different ranges
 * the one with the lower epoch is stale.
 */
export interface RangeDescriptor {
  readonly rangeId: number;
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
  readonly epoch: number;
  /** Nodes holding a replica (a replica's id is its node's id). */
  readonly replicas: readonly number[];
}

export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

export function rangeContains(r: Pick<RangeDescriptor, 'start' | 'end'>, key: Uint8Array): boolean {
  return compareKeys(key, r.start) >= 0 && (r.end === null || compareKeys(key, r.end) < 0);
}

type Span = Pick<RangeDescriptor, 'start' | 'end'>;

function spansOverlap(a: Span, b: Span): boolean {
  return (a.end === null || compareKeys(b.start, a.end) < 0) && (b.end === null || compareKeys(a.start, b.end) < 0);
}

/**
 * The ranges a router knows, kept sorted by start key: which range holds a
 * key (binary search) and which ranges a scan crosses, in order.
 *
 * It is a cache fed from many sources (the meta range, replies naming a
 * newer descriptor) in any order, so it may be offered stale descriptors,
 * e.g. a parent after its split halves. Of overlapping descriptors the
 * higher epoch wins; a descriptor evicted that way leaves its keys unrouted
 * (lookup answers undefined) until the descriptor now owning them arrives,
 * rather than routing them to a range that no longer holds them. The table
 * is disjoint after every change whatever the input; that is asserted, so a
 * bug in the rule surfaces here rather than as a write to the wrong shard.
 */
export class RangeTable {
  private ranges: RangeDescriptor[] = [];
  private byId = new Map<number, RangeDescriptor>();

  /** As replaceAll(ranges): the order of `ranges` does not matter. */
  constructor(ranges: readonly RangeDescriptor[] = []) {
    this.replaceAll(ranges);
  }

  get size(): number {
    return this.ranges.length;
  }

  all(): readonly RangeDescriptor[] {
    return this.ranges;
  }

  /** The descriptor held for range `rangeId`, if any. */
  get(rangeId: number): RangeDescriptor | undefined {
    return this.byId.get(rangeId);
  }

  private set(next: RangeDescriptor[]): void {
    this.ranges = next;
    this.byId = new Map(next.map((r) => [r.rangeId, r]));
  }

  /**
   * Adds `r`, or replaces the descriptor held for its id, unless `r` is stale;
   * returns whether the table took it. `r` is stale, and ignored, when the
   * table holds its range at a higher epoch or any other range overlapping
   * it at a higher epoch. Taking `r` evicts the old descriptor of its range
   * and every overlapping one (all of lower epoch, hence stale).
   *
   * An overlapping other range at the same epoch cannot come from a correct
   * cluster (split halves share an epoch but not keys); the table keeps what
   * it holds and ignores `r`, as it cannot tell which is current.
   */
  upsert(r: RangeDescriptor): boolean {
    const next = upserted(this.ranges, r);
    if (next === undefined) return false;
    this.set(next);
    return true;
  }

  /**
   * Rebuilds the table from a full list, e.g. a scan of the meta range,
   * which may transiently hold a stale entry overlapping a current one. The
   * same rule as upsert decides, and the list's order does not: it is taken
   * highest epoch first (ties by range id, then bounds, so that even an
   * equal-epoch conflict resolves the same way every time).
   */
  replaceAll(ranges: readonly RangeDescriptor[]): void {
    const byEpochDescending = [...ranges].sort(
      (a, b) => b.epoch - a.epoch || a.rangeId - b.rangeId || compareKeys(a.start, b.start) || compareEnds(a.end, b.end),
    );
    let next: RangeDescriptor[] = [];
    for (const r of byEpochDescending) next = upserted(next, r) ?? next;
    this.set(next);
  }

  remove(rangeId: number): void {
    this.set(this.ranges.filter((r) => r.rangeId !== rangeId));
  }

  /** The range holding `key`, or undefined when no known range covers it. */
  lookup(key: Uint8Array): RangeDescriptor | undefined {
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.ranges[mid]!;
      if (compareKeys(key, r.start) < 0) hi = mid - 1;
      else if (r.end !== null && compareKeys(key, r.end) >= 0) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  /** Ranges that intersect [start, end), in key order. */
  overlapping(start: Uint8Array, end: Uint8Array | null): RangeDescriptor[] {
    return this.ranges.filter((r) => spansOverlap(r, { start, end }));
  }
}

/** `ranges` (sorted, disjoint) with `r` taken in, or undefined when `r` is stale (see RangeTable.upsert). */
function upserted(ranges: readonly RangeDescriptor[], r: RangeDescriptor): RangeDescriptor[] | undefined {
  assert(r.end === null || compareKeys(r.start, r.end) < 0, () => `range ${r.rangeId}: start must precede end`);
  for (const held of ranges) {
    if (held.rangeId === r.rangeId) {
      if (held.epoch > r.epoch) return undefined;
    } else if (spansOverlap(held, r) && held.epoch >= r.epoch) {
      // Greater: r is stale. Equal: a conflict no correct cluster produces; keep what is held.
      return undefined;
    }
  }
  const next = ranges.filter((held) => held.rangeId !== r.rangeId && !spansOverlap(held, r));
  next.push(r);
  next.sort((a, b) => compareKeys(a.start, b.start));
  for (let i = 1; i < next.length; i++) {
    const prev = next[i - 1]!;
    assert(prev.end !== null, () => `range ${prev.rangeId} runs to the end of the key space but range ${next[i]!.rangeId} starts after it`);
    assert(compareKeys(prev.end, next[i]!.start) <= 0, () => `ranges ${prev.rangeId} and ${next[i]!.rangeId} overlap`);
  }
  return next;
}

/** Orders range ends, null (the end of the key space) last. */
function compareEnds(a: Uint8Array | null, b: Uint8Array | null): number {
  if (a === null) return b === null ? 0 : 1;
  if (b === null) return -1;
  return compareKeys(a, b);
}
