import type { RangeBounds } from '../storage/codec.js';

/**
 * Key ranges of many items (a core's replicas), found by overlap in
 * O(n / BLOCK + BLOCK) instead of a pass over every item: a snapshot's
 * every chunk asks which other replica owns keys in its range, and at
 * 100,000 replicas a pass over all of them took 21 ms a chunk.
 *
 * Ranges may overlap (a stale replica under the range that took its keys
 * in), so a sorted array alone does not bound the search: a range far to
 * the left may reach past the key asked about. Entries sit in blocks
 * sorted by start key, each block knowing the furthest end among its
 * entries; a query walks the blocks that start before the end asked about
 * and opens only those whose furthest end reaches past the start asked
 * about (Python's sortedcontainers keeps its lists the same way).
 */
export class RangeIndex<T> {
  private blocks: Block<T>[] = [];
  private readonly entries = new Map<T, Entry<T>>();
  /**
   * The blocks are built on the first query, in one sort: a core starting with 100,000 replicas indexes
   * them all, and inserting them one by one took ~300 ms of its start, for a query that may never come.
   */
  private built = false;

  get size(): number {
    return this.entries.size;
  }

  /** Indexes `item` under `bounds`, replacing where it was; an empty range (start at or past its end) removes it. */
  set(item: T, bounds: RangeBounds): void {
    this.delete(item);
    if (bounds.end !== null && Buffer.compare(bounds.start, bounds.end) >= 0) return;
    const entry: Entry<T> = { item, start: bounds.start, end: bounds.end };
    this.entries.set(item, entry);
    if (!this.built) return;
    if (this.blocks.length === 0) {
      this.blocks.push({ entries: [entry], furthest: entry.end });
      return;
    }
    const b = Math.max(0, this.lastBlockStarting(entry.start, true));
    const block = this.blocks[b]!;
    // After every entry starting at or before it.
    block.entries.splice(countBefore(block.entries.length, (i) => block.entries[i]!.start, entry.start, true), 0, entry);
    if (endsAfter(entry.end, block.furthest)) block.furthest = entry.end;
    if (block.entries.length > 2 * BLOCK) {
      const right = block.entries.splice(BLOCK);
      this.blocks.splice(b + 1, 0, { entries: right, furthest: furthestOf(right) });
      block.furthest = furthestOf(block.entries);
    }
  }

  delete(item: T): void {
    const entry = this.entries.get(item);
    if (entry === undefined) return;
    this.entries.delete(item);
    if (!this.built) return;
    // Entries of one start key may spread over neighbouring blocks: look from the last that may hold it, leftwards.
    for (let b = this.lastBlockStarting(entry.start, true); b >= 0; b--) {
      const block = this.blocks[b]!;
      const at = block.entries.indexOf(entry);
      if (at < 0) continue;
      block.entries.splice(at, 1);
      if (block.entries.length === 0) this.blocks.splice(b, 1);
      else if (entry.end === block.furthest || entry.end === null) block.furthest = furthestOf(block.entries);
      return;
    }
    throw new Error('range index: an indexed entry was not in its block');
  }

  /** Calls `each` for every item whose range shares a key with `within` (an empty `within` shares none). */
  forEachOverlapping(within: RangeBounds, each: (item: T, bounds: RangeBounds) => void): void {
    if (within.end !== null && Buffer.compare(within.start, within.end) >= 0) return;
    if (!this.built) this.build();
    const last = within.end === null ? this.blocks.length - 1 : this.lastBlockStarting(within.end, false);
    for (let b = last; b >= 0; b--) {
      const block = this.blocks[b]!;
      if (!endsAfter(block.furthest, within.start)) continue;
      for (const e of block.entries) {
        if (within.end !== null && Buffer.compare(e.start, within.end) >= 0) break;
        if (endsAfter(e.end, within.start)) each(e.item, e);
      }
    }
  }

  private build(): void {
    // By latin1 strings: they order as the bytes do, and compare several times faster than Buffer.compare from a sort callback.
    const keyed = [...this.entries.values()].map((e) => ({ e, k: Buffer.from(e.start.buffer, e.start.byteOffset, e.start.byteLength).toString('latin1') }));
    keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
    const sorted = keyed.map(({ e }) => e);
    this.blocks = [];
    for (let i = 0; i < sorted.length; i += BLOCK) {
      const entries = sorted.slice(i, i + BLOCK);
      this.blocks.push({ entries, furthest: furthestOf(entries) });
    }
    this.built = true;
  }

  /** The last block whose first entry starts before `key` (or at it, with `orAt`), or -1. */
  private lastBlockStarting(key: Uint8Array, orAt: boolean): number {
    return countBefore(this.blocks.length, (i) => this.blocks[i]!.entries[0]!.start, key, orAt) - 1;
  }
}

/** Entries a block holds before it splits in two is twice this. */
const BLOCK = 256;

interface Entry<T> {
  readonly item: T;
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
}

interface Block<T> {
  /** Sorted by start key. */
  readonly entries: Entry<T>[];
  /** The furthest end among the entries (null: the end of the key space). */
  furthest: Uint8Array | null;
}

/** Whether an end (null: the end of the key space) lies after `key`. */
function endsAfter(end: Uint8Array | null, key: Uint8Array | null): boolean {
  if (end === null) return key !== null;
  return key !== null && Buffer.compare(end, key) > 0;
}

function furthestOf<T>(entries: readonly Entry<T>[]): Uint8Array | null {
  let furthest = entries[0]!.end;
  for (const e of entries) if (e.end === null || (furthest !== null && Buffer.compare(e.end, furthest) > 0)) furthest = e.end;
  return furthest;
}

/** How many of `count` start keys sorted ascending (`startOf(i)`) lie before `key` (or at it, with `orAt`). */
function countBefore(count: number, startOf: (i: number) => Uint8Array, key: Uint8Array, orAt: boolean): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const c = Buffer.compare(startOf(mid), key);
    if (c < 0 || (orAt && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
