import { assert } from '../assert.js';
import { CompactedError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Entry, LogIndex, Snapshot, Term } from '../types.js';
import { limitSize, type Storage } from './storage.js';
import { Unstable } from './unstable.js';

/**
 * A replica's log: the persisted part behind `Storage` plus the unstable tail.
 * Invariant: applied <= committed <= lastIndex().
 */
export class RaftLog {
  readonly unstable: Unstable;
  /** Highest index known to be committed (§5.3). */
  committed: LogIndex;
  /** Highest index handed to the application to apply. */
  applied: LogIndex;
  /** No entry at or past this index is handed out to apply (RawNode.holdApply); +∞ when none is held. */
  applyHeldAt: number = Number.POSITIVE_INFINITY;

  constructor(
    readonly storage: Storage,
    private readonly logger: Logger,
    /** Upper bound on the bytes of committed entries handed out in one Ready. */
    readonly applyBytesMax: number,
  ) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    // Everything up to the snapshot is committed and applied by definition.
    this.committed = first - 1;
    this.applied = first - 1;
  }

  /**
   * Appends the leader's entries that follow (index, logTerm), if our log has
   * that entry (§5.3 consistency check). Returns the last index of the new
   * entries, or undefined on mismatch.
   */
  maybeAppend(index: LogIndex, logTerm: Term, committed: LogIndex, entries: readonly Entry[]): LogIndex | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, () => `entry ${conflict} conflicts with committed entry (committed ${this.committed})`);
      this.append(entries.slice(conflict - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(entries: readonly Entry[]): LogIndex {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0]!.index - 1;
    assert(after >= this.committed, () => `append after ${after} is below committed ${this.committed}`);
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /**
   * The index of the first entry whose term differs from ours, or that we do
   * not have; 0 when all of `entries` are already in the log.
   */
  findConflict(entries: readonly Entry[]): LogIndex {
    for (const e of entries) {
      if (!this.matchTerm(e.index, e.term)) {
        if (e.index <= this.lastIndex()) {
          this.logger.debug({ index: e.index, existingTerm: this.term(e.index), conflictingTerm: e.term }, 'found conflicting entry');
        }
        return e.index;
      }
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term: the
   * highest entry that could still match the other log (fast backtracking).
   * Stops at the compaction point, where nothing older is known.
   */
  findConflictByTerm(index: LogIndex, term: Term): { index: LogIndex; term: Term } {
    for (; index > 0; index--) {
      const t = this.term(index);
      if (t === undefined) return { index, term: 0 };
      if (t <= term) return { index, term: t };
    }
    return { index: 0, term: 0 };
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  /**
   * Committed entries not yet applied, up to applyBytesMax and below
   * applyHeldAt (none while a snapshot is pending install).
   */
  nextCommittedEntries(): Entry[] {
    if (this.unstable.snapshot !== undefined) return [];
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = Math.min(this.committed + 1, this.applyHeldAt);
    if (lo >= hi) return [];
    return this.slice(lo, hi, this.applyBytesMax);
  }

  hasNextCommittedEntries(): boolean {
    if (this.unstable.snapshot !== undefined) return false;
    return Math.min(this.committed + 1, this.applyHeldAt) > Math.max(this.applied + 1, this.firstIndex());
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  firstIndex(): LogIndex {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): LogIndex {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  commitTo(index: LogIndex): void {
    if (this.committed >= index) return; // never decrease commit
    assert(index <= this.lastIndex(), () => `commit index ${index} exceeds last index ${this.lastIndex()}`);
    this.committed = index;
  }

  appliedTo(index: LogIndex): void {
    if (index === 0) return;
    assert(index <= this.committed, () => `applied ${index} exceeds committed ${this.committed}`);
    assert(index >= this.applied, () => `applied ${index} is below previous applied ${this.applied}`);
    this.applied = index;
  }

  stableTo(index: LogIndex, term: Term): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapTo(index: LogIndex): void {
    this.unstable.stableSnapTo(index);
  }

  lastTerm(): Term {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, () => `term of last index ${this.lastIndex()} is unknown`);
    return t;
  }

  /** Term of entry `index`, or undefined when it is compacted or past the end. */
  term(index: LogIndex): Term | undefined {
    // The valid range is [firstIndex-1, lastIndex]: the entry before the first is the snapshot's.
    const dummy = this.firstIndex() - 1;
    if (index < dummy || index > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(index);
    if (t !== undefined) return t;
    return this.storage.term(index);
  }

  termOrZero(index: LogIndex): Term {
    return this.term(index) ?? 0;
  }

  /** Entries from `index` on, up to `bytesMax`. Throws CompactedError if index is compacted. */
  entries(index: LogIndex, bytesMax: number): Entry[] {
    if (index > this.lastIndex()) return [];
    return this.slice(index, this.lastIndex() + 1, bytesMax);
  }

  /** Whether a candidate's log ending at (index, term) is at least as up to date as ours (§5.4.1). */
  isUpToDate(index: LogIndex, term: Term): boolean {
    const lastTerm = this.lastTerm();
    return term > lastTerm || (term === lastTerm && index >= this.lastIndex());
  }

  matchTerm(index: LogIndex, term: Term): boolean {
    const t = this.term(index);
    return t !== undefined && t === term;
  }

  /** Commits `index` if it is above the commit index and from `term` — the leader's own term (§5.4.2). */
  maybeCommit(index: LogIndex, term: Term): boolean {
    if (index > this.committed && this.termOrZero(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  restore(snapshot: Snapshot): void {
    this.logger.info({ index: snapshot.metadata.index, term: snapshot.metadata.term }, 'log restored from snapshot');
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
    // A held entry at or below the snapshot is in it: nothing is left to wait for.
    if (this.applyHeldAt <= snapshot.metadata.index) this.applyHeldAt = Number.POSITIVE_INFINITY;
  }

  /** Entries in [lo, hi) from storage and the unstable tail, limited to bytesMax (at least one). */
  slice(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    this.checkOutOfBounds(lo, hi);
    if (lo === hi) return [];
    let result: Entry[] = [];
    if (lo < this.unstable.offset) {
      const stored = this.storage.entries(lo, Math.min(hi, this.unstable.offset), bytesMax);
      // Storage stopped early because of the byte limit: that is all we return.
      if (stored.length < Math.min(hi, this.unstable.offset) - lo) return stored;
      result = stored;
    }
    if (hi > this.unstable.offset) {
      const tail = this.unstable.slice(Math.max(lo, this.unstable.offset), hi);
      result = result.length > 0 ? result.concat(tail) : tail;
    }
    return limitSize(result, bytesMax);
  }

  private checkOutOfBounds(lo: LogIndex, hi: LogIndex): void {
    assert(lo <= hi, () => `invalid slice ${lo} > ${hi}`);
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(lo, first);
    const upper = this.lastIndex() + 1;
    assert(hi <= upper, () => `slice [${lo},${hi}) out of bounds [${first},${upper})`);
  }

  toString(): string {
    return `committed=${this.committed} applied=${this.applied} unstable.offset=${this.unstable.offset} unstable.len=${this.unstable.entries.length}`;
  }
}
