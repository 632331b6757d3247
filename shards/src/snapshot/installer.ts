import { SnapshotOutOfDateError, assert, type GroupId, type HardState } from '@flotilla/core';
import { encodeFrozen } from '../kv/merge.js';
import { decodeShardRange, hexKey, isInitialized } from '../kv/range.js';
import { encodeConfState, encodeHardState } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';
import type { NodeStore } from '../storage/node-store.js';
import { decodeChunk, forEachPair, sameHeader, type SnapshotHeader } from './chunk.js';

/**
 * Receives a snapshot's chunks into the staging sub-database, then swaps the
 * shard's state in one transaction: its range's data, its log (emptied; the
 * snapshot point becomes the compaction point), applied index and conf
 * state. A crash before that transaction commits leaves the old state (the
 * staging area is cleared on open); after it, the new one. Never a mix.
 */
export class SnapshotInstaller {
  private header: SnapshotHeader | undefined;
  private nextSeq = 0;
  private complete = false;
  /** Encoded bytes of the chunks staged so far: what the install will write again into the data. */
  private stagedByteCount = 0;
  /** The last key staged: keys must ascend across chunks too. */
  private lastKey: Uint8Array | undefined;

  constructor(
    private readonly store: NodeStore,
    readonly shardId: GroupId,
  ) {}

  /** The header of the snapshot being staged, once its first chunk arrived. */
  get stagedHeader(): SnapshotHeader | undefined {
    return this.header;
  }

  /** Whether the last chunk has been staged (install may follow). */
  get stagedBytes(): number {
    return this.stagedByteCount;
  }

  get isComplete(): boolean {
    return this.complete;
  }

  /**
   * Stages one chunk (in order). Returns true when the last chunk has arrived.
   * Chunks come from the network: anything malformed, out of order, from
   * another shard or snapshot, or after the last one is a CorruptRecordError
   * and leaves the installer as it was, so the right chunk may still follow.
   */
  async addChunk(bytes: Uint8Array): Promise<boolean> {
    const chunk = decodeChunk(bytes);
    if (this.complete) throw new CorruptRecordError(`snapshot chunk ${chunk.seq} for shard ${this.shardId} arrived after the last chunk`);
    if (chunk.header.shardId !== this.shardId) throw new CorruptRecordError(`snapshot chunk for shard ${chunk.header.shardId}, expected ${this.shardId}`);
    if (chunk.seq !== this.nextSeq) throw new CorruptRecordError(`snapshot chunk ${chunk.seq} out of order; expected ${this.nextSeq}`);
    if (this.header !== undefined && !sameHeader(chunk.header, this.header)) {
      throw new CorruptRecordError(
        `snapshot chunk ${chunk.seq} is from snapshot ${chunk.header.index}/${chunk.header.term} of shard ${chunk.header.shardId} with other bounds or conf state than ${this.header.index}/${this.header.term}`,
      );
    }
    const firstKey = chunk.firstKey;
    if (firstKey !== undefined && this.lastKey !== undefined && Buffer.compare(this.lastKey, firstKey) >= 0) {
      throw new CorruptRecordError(`snapshot chunk ${chunk.seq} starts at key ${hexKey(firstKey)}, not after ${hexKey(this.lastKey)}`);
    }
    if (this.header === undefined) await this.clear();
    // The body as it came (decodeChunk checked every pair): one value, no pair decoded or encoded. Not
    // synced: opening clears the staging area, and the install's synced transaction covers it.
    await this.store.writeUnsynced(() => this.store.staging.putSync([this.shardId, chunk.seq], chunk.body));
    this.header ??= chunk.header;
    // Copied: the key is a view into a chunk the transport may reuse.
    if (chunk.lastKey !== undefined) this.lastKey = Uint8Array.from(chunk.lastKey);
    this.nextSeq++;
    this.stagedByteCount += bytes.byteLength;
    this.complete = chunk.last;
    return chunk.last;
  }

  /**
   * Atomically replaces the shard's state with the staged snapshot; resolves once durable. `current` is
   * Raft's hard state as of the Ready carrying the snapshot: its term and vote are recorded, the commit
   * index is the snapshot's (see below).
   */
  async install(current: HardState): Promise<SnapshotHeader> {
    const h = this.header;
    assert(h !== undefined && this.complete, () => `shard ${this.shardId}: install before the last chunk`);
    assert(current.term >= h.term, () => `shard ${this.shardId}: hard state term ${current.term} below snapshot term ${h.term}`);
    const store = this.store;
    const shardId = this.shardId;
    const before = store.shardState(shardId); // throws for a shard this node does not have, before anything is written
    // Installing at or below the applied index would roll the range back (and drop applied entries from the log).
    if (h.index <= before.applied) throw new SnapshotOutOfDateError(h.index, before.applied);
    const stored = before.hardState;
    // The log is emptied up to the snapshot point: a durable commit index past it would point at entries
    // that are gone (Raft restores only snapshots beyond its commit, so this is our bug if it fails).
    assert(stored.commit <= h.index, () => `shard ${shardId}: stored commit ${stored.commit} is past snapshot index ${h.index}; Raft restores only snapshots beyond its commit`);
    // The durable term and vote never move back, whatever the caller passes.
    assert(current.term >= stored.term, () => `shard ${shardId}: install with term ${current.term} below stored term ${stored.term}`);
    assert(current.term > stored.term || current.vote === stored.vote || stored.vote === 0, () => `shard ${shardId}: install would change the vote of term ${stored.term}`);
    // Committed at the snapshot point, not at `current.commit`: the Ready that carries the snapshot may
    // also carry the entries after it and a commit index among them (the leader's next append arrived
    // before the Ready was taken). Those entries and that commit are the round's group commit, after
    // this one; a crash in between leaves a log ending at the snapshot, committed there, as it must.
    const hardState: HardState = { term: current.term, vote: current.vote, commit: h.index };
    await store.write(() => {
      // The range this replica owned until now goes too: after a split it owned more than the
      // snapshot's range, and what lies outside is no longer its own (ranges in one store are
      // disjoint, see the overlap check in incoming.ts, so nobody else's data is there).
      // (A shard stored without a descriptor, from before ranges, is left to the snapshot's bounds.)
      const stored = store.meta.get([shardId, 'desc']);
      const owned = stored === undefined ? undefined : decodeShardRange(shardId, stored);
      if (owned !== undefined && isInitialized(owned)) store.deleteData(owned);
      store.deleteData(h.bounds);
      for (let seq = 0; seq < this.nextSeq; seq++) {
        const body = store.staging.get([shardId, seq]);
        if (!(body instanceof Uint8Array)) throw new CorruptRecordError(`shard ${shardId}: staged snapshot chunk ${seq} is missing`);
        forEachPair(body, (key, record) => store.dataRecords.putSync(key, record));
        store.staging.removeSync([shardId, seq]);
      }
      for (const key of store.log.getKeys({ start: [shardId, 0], end: [shardId, Number.MAX_SAFE_INTEGER] })) store.log.removeSync(key);
      store.meta.putSync([shardId, 'hard'], encodeHardState(hardState));
      store.meta.putSync([shardId, 'conf'], encodeConfState(h.confState));
      store.meta.putSync([shardId, 'applied'], h.index);
      store.meta.putSync([shardId, 'snap'], [h.index, h.term]);
      store.meta.putSync([shardId, 'desc'], [h.bounds.start, h.bounds.end, h.epoch]);
      // Frozen for a merge as the range was at the snapshot, or not: nothing of the replica's own survives.
      store.writeFrozen(shardId, h.frozen === undefined ? undefined : encodeFrozen(h.frozen));
    });
    store.noteInstalled(shardId, {
      hardState,
      confState: h.confState,
      applied: h.index,
      snapshotIndex: h.index,
      snapshotTerm: h.term,
      lastIndex: h.index,
    });
    return h;
  }

  /** Drops whatever this shard has staged (an abandoned or restarted transfer). */
  async clear(): Promise<void> {
    await this.store.write(() => {
      for (const key of this.store.staging.getKeys({ start: [this.shardId, 0], end: [this.shardId, Number.MAX_SAFE_INTEGER] })) this.store.staging.removeSync(key);
    });
  }
}
