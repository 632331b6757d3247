import { assert } from '@flotilla/core';

/**
 * A range of the key space and the shard (Raft group) that owns it:
 * [start, end), `end` null for "to the end of the key space". `epoch` grows
 * with every split and membership change, so a router can tell a stale
 * descriptor from a current one.
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

/**
 * The ranges a router knows, kept sorted by start key: which range holds a
 * key (binary search) and which ranges a scan crosses, in order. It checks
 * on every change that the ranges stay disjoint, so a routing bug surfaces
 * here rather than as a write to the wrong shard.
 */
export class RangeTable {
  private ranges: RangeDescriptor[] = [];

  constructor(ranges: readonly RangeDescriptor[] = []) {
    for (const r of ranges) this.upsert(r);
  }

  get size(): number {
    return this.ranges.length;
  }

  all(): readonly RangeDescriptor[] {
    return this.ranges;
  }

  /** Adds a range or replaces the one with its id; an older epoch than the one held is ignored (returns false). */
  upsert(r: RangeDescriptor): boolean {
    assert(r.end === null || compareKeys(r.start, r.end) < 0, () => `range ${r.rangeId}: start must precede end`);
    const existing = this.ranges.findIndex((x) => x.rangeId === r.rangeId);
    if (existing >= 0 && this.ranges[existing]!.epoch > r.epoch) return false;
    const next = this.ranges.filter((x) => x.rangeId !== r.rangeId);
    next.push(r);
    next.sort((a, b) => compareKeys(a.start, b.start));
    for (let i = 1; i < next.length; i++) {
      const prev = next[i - 1]!;
      assert(prev.end !== null && compareKeys(prev.end, next[i]!.start) <= 0, () => `ranges ${prev.rangeId} and ${next[i]!.rangeId} overlap`);
    }
    this.ranges = next;
    return true;
  }

  remove(rangeId: number): void {
    this.ranges = this.ranges.filter((r) => r.rangeId !== rangeId);
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
    return this.ranges.filter((r) => (r.end === null || compareKeys(start, r.end) < 0) && (end === null || compareKeys(r.start, end) < 0));
  }
}
