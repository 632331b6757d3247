// A node's fake durable disk: what survives a crash. The RawNode reads its
// log through it (it implements Storage); the shell writes it only while
// handling a Ready, so anything the node did not persist is simply not here
// when the node restarts.
import {
  assert,
  MemoryStorage,
  type ConfState,
  type Entry,
  type HardState,
  type LogIndex,
  type Snapshot,
  type Storage,
  type Term,
} from '@flotilla/core';

/** Where a restarted node resumes: the state machine image and membership as of `applied`. */
export interface RestartPoint {
  readonly applied: LogIndex;
  readonly confState: ConfState;
}

export class SimDisk implements Storage {
  /** Hard state, log entries and the latest snapshot. */
  readonly log = new MemoryStorage();
  /**
   * Highest index the state machine applied, written in the same (atomic)
   * write as each apply. May trail the snapshot: a snapshot persisted but not
   * yet installed when the node crashed still counts, see restartPoint().
   */
  appliedIndex: LogIndex = 0;
  /** Membership as of appliedIndex: what the last applied conf change or installed snapshot produced. */
  confState: ConfState;

  /**
   * Called when the core asks for the snapshot to send a follower. The shell
   * may build a fresh one first (a node added after the last compaction
   * needs a snapshot that includes it), or throw
   * SnapshotTemporarilyUnavailableError as if one were being built.
   */
  onSnapshotRequest: (() => void) | undefined;

  /** A fresh disk holds the bootstrap membership as a snapshot at index 0, as every founding node's does. */
  constructor(bootstrap: ConfState, stateMachineImage: Uint8Array) {
    this.log.applySnapshot({ metadata: { index: 0, term: 0, confState: bootstrap }, data: stateMachineImage });
    this.confState = bootstrap;
  }

  /**
   * The state machine is rebuilt from the snapshot and then by replaying
   * entries up to appliedIndex; a newer snapshot than appliedIndex was
   * persisted with its image, so the node resumes from it.
   */
  restartPoint(): RestartPoint {
    const snap = this.log.snapshot().metadata;
    if (snap.index >= this.appliedIndex) return { applied: snap.index, confState: snap.confState };
    return { applied: this.appliedIndex, confState: this.confState };
  }

  /** One Ready's durable write: snapshot, then entries (replacing any conflicting suffix), then hard state. */
  write(options: { snapshot: Snapshot | undefined; entries: readonly Entry[]; hardState: HardState | undefined }): void {
    if (options.snapshot !== undefined) this.log.applySnapshot(options.snapshot);
    if (options.entries.length > 0) this.log.append(options.entries);
    if (options.hardState !== undefined) this.log.setHardState(options.hardState);
  }

  hardState(): HardState {
    return this.log.initialState().hardState;
  }

  // Storage, as the RawNode sees it.

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState(), confState: this.restartPoint().confState };
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    return this.log.entries(lo, hi, bytesMax);
  }

  term(i: LogIndex): Term {
    return this.log.term(i);
  }

  firstIndex(): LogIndex {
    return this.log.firstIndex();
  }

  lastIndex(): LogIndex {
    return this.log.lastIndex();
  }

  snapshot(): Snapshot {
    this.onSnapshotRequest?.();
    return this.log.snapshot();
  }

  /** Records a snapshot of the state machine (`image`) at the applied index; the log stays. */
  createSnapshot(image: Uint8Array): Snapshot {
    return this.log.createSnapshot(this.appliedIndex, this.confState, image);
  }

  /** Drops the log up to `compactIndex`, which the latest snapshot must cover. */
  compact(compactIndex: LogIndex): void {
    const snapIndex = this.log.snapshot().metadata.index;
    assert(compactIndex <= snapIndex, () => `compact index ${compactIndex} is past the snapshot index ${snapIndex}`);
    if (compactIndex >= this.log.firstIndex()) this.log.compact(compactIndex);
  }
}
