import { assert } from '../assert.js';
import type { Entry, LogIndex, Snapshot, Term } from '../types.js';

/**
 * Entries and a snapshot that are not yet persisted. `entries[i]` has index
 * `offset + i`; an incoming snapshot precedes them.
 */
export class Unstable {
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];
  offset: LogIndex;

  constructor(offset: LogIndex) {
    this.offset = offset;
  }

  maybeFirstIndex(): LogIndex | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  maybeLastIndex(): LogIndex | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot?.metadata.index;
  }

  maybeTerm(i: LogIndex): Term | undefined {
    if (i < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  /** Entries up to (i, t) are durable. A term mismatch means they were replaced meanwhile: keep them. */
  stableTo(i: LogIndex, t: Term): void {
    const term = this.maybeTerm(i);
    if (term === undefined || i < this.offset) return;
    if (term === t) {
      this.entries = this.entries.slice(i + 1 - this.offset);
      this.offset = i + 1;
    }
  }

  stableSnapTo(i: LogIndex): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i) this.snapshot = undefined;
  }

  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(entries: readonly Entry[]): void {
    const from = entries[0]!.index;
    if (from === this.offset + this.entries.length) {
      this.entries.push(...entries);
    } else if (from <= this.offset) {
      // Replaces all unstable entries (and, for the storage, everything from `from`).
      this.offset = from;
      this.entries = [...entries];
    } else {
      this.entries = [...this.slice(this.offset, from), ...entries];
    }
  }

  slice(lo: LogIndex, hi: LogIndex): Entry[] {
    assert(lo <= hi, () => `unstable slice lo ${lo} > hi ${hi}`);
    const upper = this.offset + this.entries.length;
    assert(lo >= this.offset && hi <= upper, () => `unstable slice [${lo},${hi}) out of bounds [${this.offset},${upper})`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
