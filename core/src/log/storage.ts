import { assert } from '../assert.js';
import { CompactedError, SnapshotOutOfDateError, UnavailableError } from '../errors.js';
import {
  EMPTY_CONF_STATE,
  EMPTY_HARD_STATE,
  entrySizeBytes,
  type ConfState,
  type Entry,
  type HardState,
  type LogIndex,
  type Snapshot,
  type Term,
} from '../types.js';

/**
 * Read access to what a replica has persisted. The core only reads through
 * this interface; the shell writes (entries, hard state, snapshots from a
 * Ready) and must have made them durable before calling `advance()`.
 *
 * The log is the entries (firstIndex()-1, lastIndex()]: the entry at
 * firstIndex()-1 is the one covered by the latest snapshot, whose term stays
 * readable through term().
 */
export interface Storage {
  /** Persisted hard and conf state, read once when a RawNode starts. */
  initialState(): { hardState: HardState; confState: ConfState };
  /**
   * Entries in [lo, hi), at least one if any, stopping before `bytesMax` is
   * exceeded. Throws CompactedError when lo < firstIndex(), UnavailableError when hi > lastIndex()+1.
   */
  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[];
  /** Term of entry i for i in [firstIndex()-1, lastIndex()]; otherwise throws CompactedError / UnavailableError. */
  term(i: LogIndex): Term;
  firstIndex(): LogIndex;
  lastIndex(): LogIndex;
  /** The most recent snapshot; may throw SnapshotTemporarilyUnavailableError while one is being built. */
  snapshot(): Snapshot;
}

/** Takes entries from the front of `entries` while their total stays within `bytesMax` (always at least one). */
export function limitSize(entries: Entry[], bytesMax: number): Entry[] {
  if (entries.length === 0) return entries;
  let total = entrySizeBytes(entries[0]!);
  let n = 1;
  for (; n < entries.length; n++) {
    total += entrySizeBytes(entries[n]!);
    if (total > bytesMax) break;
  }
  return n === entries.length ? entries : entries.slice(0, n);
}

/**
 * Storage held in memory, for tests, the simulator and the demo. It has the
 * same semantics the LMDB storage must have, including the dummy entry at
 * position 0 that records the snapshot's index and term.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot;
  /** ents[0] is a dummy entry at the snapshot index. */
  private ents: Entry[];

  constructor() {
    this.snap = { metadata: { index: 0, term: 0, confState: EMPTY_CONF_STATE }, data: new Uint8Array(0) };
    this.ents = [{ index: 0, term: 0, type: 'normal', data: new Uint8Array(0) }];
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.snap.metadata.confState };
  }

  setHardState(hs: HardState): void {
    this.hardState = hs;
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    const offset = this.ents[0]!.index;
    if (lo <= offset) throw new CompactedError(lo, offset + 1);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1, this.lastIndex());
    return limitSize(this.ents.slice(lo - offset, hi - offset), bytesMax);
  }

  term(i: LogIndex): Term {
    const offset = this.ents[0]!.index;
    if (i < offset) throw new CompactedError(i, offset + 1);
    if (i - offset >= this.ents.length) throw new UnavailableError(i, this.lastIndex());
    return this.ents[i - offset]!.term;
  }

  firstIndex(): LogIndex {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): LogIndex {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces everything with a snapshot (a follower installing one). */
  applySnapshot(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    if (index < this.snap.metadata.index) throw new SnapshotOutOfDateError(index, this.snap.metadata.index);
    this.snap = snapshot;
    this.ents = [{ index, term: snapshot.metadata.term, type: 'normal', data: new Uint8Array(0) }];
  }

  /** Records a snapshot of the state machine at applied index `i` (log entries stay until compact()). */
  createSnapshot(i: LogIndex, confState: ConfState, data: Uint8Array): Snapshot {
    if (i <= this.snap.metadata.index) throw new SnapshotOutOfDateError(i, this.snap.metadata.index);
    const offset = this.ents[0]!.index;
    // compact() may have gone past the latest snapshot: the term of `i` is then gone.
    if (i < offset) throw new CompactedError(i, offset + 1);
    assert(i <= this.lastIndex(), () => `snapshot index ${i} is past last index ${this.lastIndex()}`);
    this.snap = { metadata: { index: i, term: this.ents[i - offset]!.term, confState }, data };
    return this.snap;
  }

  /** Discards entries before `compactIndex`; the entry at compactIndex becomes the dummy. */
  compact(compactIndex: LogIndex): void {
    const offset = this.ents[0]!.index;
    if (compactIndex <= offset) throw new CompactedError(compactIndex, offset + 1);
    assert(compactIndex <= this.lastIndex(), () => `compact ${compactIndex} is past last index ${this.lastIndex()}`);
    const i = compactIndex - offset;
    const dummy: Entry = { index: this.ents[i]!.index, term: this.ents[i]!.term, type: 'normal', data: new Uint8Array(0) };
    this.ents = [dummy, ...this.ents.slice(i + 1)];
  }

  /**
   * Appends entries, replacing any conflicting suffix: everything from
   * entries[0].index on is discarded first. Entries already compacted are skipped.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return;
    let toAppend = entries;
    if (first > entries[0]!.index) toAppend = entries.slice(first - entries[0]!.index);
    const offset = toAppend[0]!.index - this.ents[0]!.index;
    assert(offset <= this.ents.length, () => `missing log entries [last ${this.lastIndex()}, append at ${toAppend[0]!.index}]`);
    // Truncate the conflicting suffix in place and push: copying the whole log per append is quadratic.
    this.ents.length = offset;
    for (const e of toAppend) this.ents.push(e);
  }
}
