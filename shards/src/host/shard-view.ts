import type { CoreChanges, ShardChange } from './shard-changes.js';

/** What changed in the view since a caller's cursor (ShardView.since). */
export interface ShardViewChanges {
  /** Where this answer leaves the caller: pass it to the next `since`. */
  readonly cursor: number;
  /** `changed` is every replica (the caller's cursor was 0 or fell out of the journal): what the caller knew is replaced. */
  readonly full: boolean;
  readonly changed: readonly ShardChange[];
  /** Replicas gone since the cursor (empty when `full`). */
  readonly removed: readonly number[];
}

/** Journal entries kept beyond one per replica before the older half goes (a caller that far behind gets everything). */
const JOURNAL_SLACK = 1024;

/**
 * The main thread's copy of every local replica's status and range report,
 * kept current by the cores' changes (shard-changes.ts), and a journal of
 * which replica changed when, so each of the node's duties (the placement
 * heartbeat, the descriptors it records) reads only what changed since it
 * last looked. The journal holds shard ids in the order their changes were
 * taken in; change number `seq` is journal[seq - journalStart].
 */
export class ShardView {
  private readonly entries = new Map<number, ShardChange>();
  private journal: number[] = [];
  /** The change number of journal[0]. */
  private journalStart = 1;

  /** Takes in one core's changes. */
  apply(c: Pick<CoreChanges, 'changed' | 'removed'>): void {
    for (const shardId of c.removed) {
      this.entries.delete(shardId);
      this.journal.push(shardId);
    }
    for (const change of c.changed) {
      this.entries.set(change.status.shardId, change);
      this.journal.push(change.status.shardId);
    }
    this.compact();
  }

  /** Takes in every core's full answer: replicas none of them named are gone. */
  replaceAll(all: readonly Pick<CoreChanges, 'changed'>[]): void {
    const named = new Set<number>();
    for (const c of all) for (const change of c.changed) named.add(change.status.shardId);
    const gone = [...this.entries.keys()].filter((shardId) => !named.has(shardId));
    for (const c of all) this.apply({ changed: c.changed, removed: [] });
    this.apply({ changed: [], removed: gone });
  }

  /** The change number of the latest change taken in. */
  get cursor(): number {
    return this.journalStart + this.journal.length - 1;
  }

  get size(): number {
    return this.entries.size;
  }

  get(shardId: number): ShardChange | undefined {
    return this.entries.get(shardId);
  }

  values(): IterableIterator<ShardChange> {
    return this.entries.values();
  }

  /** What changed after change number `cursor` (0: everything). */
  since(cursor: number): ShardViewChanges {
    if (cursor <= 0 || cursor < this.journalStart - 1 || cursor > this.cursor) {
      return { cursor: this.cursor, full: true, changed: [...this.entries.values()], removed: [] };
    }
    const ids = new Set(this.journal.slice(cursor + 1 - this.journalStart));
    const changed: ShardChange[] = [];
    const removed: number[] = [];
    for (const shardId of ids) {
      const entry = this.entries.get(shardId);
      if (entry === undefined) removed.push(shardId);
      else changed.push(entry);
    }
    return { cursor: this.cursor, full: false, changed, removed };
  }

  private compact(): void {
    if (this.journal.length <= 2 * this.entries.size + JOURNAL_SLACK) return;
    const dropped = this.journal.length >> 1;
    this.journal = this.journal.slice(dropped);
    this.journalStart += dropped;
  }
}
