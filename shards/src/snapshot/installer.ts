import { SnapshotOutOfDateError, assert, type GroupId, type HardState } from '@flotilla/core';
import { encodeFrozen } from '../kv/merge.js';
import { decodeShardRange, describeRange, hexKey, isInitialized, type ShardRange } from '../kv/range.js';
import { encodeConfState, encodeHardState, type RangeBounds } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';
import type { NodeStore } from '../storage/node-store.js';
import { decodeChunk, forEachPair, sameHeader, type SnapshotHeader } from './chunk.js';
import { SnapshotOverlapError, claimsWithin, describeClaim, overlappingClaim, storeClaims, type RangeClaim, type RangeClaims, type ReceiveMode } from './claims.js';

function copyBounds(b: RangeBounds): RangeBounds {
  return { start: Uint8Array.from(b.start), end: b.end === null ? null : Uint8Array.from(b.end) };
}

function sameBounds(a: RangeBounds, b: RangeBounds): boolean {
  return Buffer.compare(a.start, b.start) === 0 && (a.end === null || b.end === null ? a.end === b.end : Buffer.compare(a.end, b.end) === 0);
}

/**
 * Receives a snapshot's chunks, then swaps the shard's state in one
 * transaction: its range's data, its log (emptied; the snapshot point
 * becomes the compaction point), applied index, conf state and range. A
 * crash before that transaction commits leaves the old state (opening
 * clears what was received, node-store.ts clearStaging); after it, the new
 * one. Never a mix.
 *
 * The records reach the data one of two ways (ReceiveMode), chosen at the
 * first chunk:
 * - `staged`: each chunk's body goes into the staging sub-database, and the
 *   install deletes the range's old data and copies every staged record in.
 *   For a replica that owns keys (a lagging one): nothing of the snapshot
 *   may be visible in its range before the install.
 * - `direct`: each chunk's records go straight into the data, in the
 *   chunk's own transaction, and the install only flips the metadata. For
 *   a replica that owns no keys (range epoch 0: every replica created for
 *   a move) whose snapshot overlaps no other replica's range here: nobody
 *   reads keys no replica owns, and the transfer's receiving marker
 *   (NodeStore.markReceiving) claims them meanwhile (claims.ts), so no other
 *   snapshot lands there and a cleanup knows what to delete. The install
 *   of a 32 MiB range went from one 36–560 ms transaction in the core's
 *   round (a copy and its fsync) to 2–31 ms (ARCHITECTURE.md, "Snapshot
 *   flow control").
 *
 * Every chunk's transaction first checks the snapshot against what the
 * other replicas here own or claim (`claims`), before it deletes or writes
 * anything: a throw inside an lmdb-js async transaction does not roll back
 * what came before it (measured: lmdb 3.5.6 commits the writes made before
 * the throw), so the check refuses by writing nothing, and the refusal is
 * thrown once the empty transaction returned.
 */
export class SnapshotInstaller {
  private header: SnapshotHeader | undefined;
  /** How this transfer's records reach the data; decided at its first chunk. */
  private mode: ReceiveMode | undefined;
  private nextSeq = 0;
  private complete = false;
  /** Encoded bytes of the chunks staged so far: what the install will write again into the data (none when direct). */
  private stagedByteCount = 0;
  /** The last key received: keys must ascend across chunks too. */
  private lastKey: Uint8Array | undefined;
  private readonly claims: RangeClaims;

  constructor(
    private readonly store: NodeStore,
    readonly shardId: GroupId,
    /** What other replicas here own or claim (default: the store's descriptors and markers, storeClaims). */
    options: { claims?: RangeClaims } = {},
  ) {
    this.claims = options.claims ?? storeClaims(store);
  }

  /** The header of the snapshot being received, once its first chunk arrived. */
  get stagedHeader(): SnapshotHeader | undefined {
    return this.header;
  }

  /** Bytes the install will copy into the data: the staged chunks' (0 when received directly). */
  get stagedBytes(): number {
    return this.stagedByteCount;
  }

  /** How the records reach the data, once the first chunk arrived. */
  get receiveMode(): ReceiveMode | undefined {
    return this.mode;
  }

  get isComplete(): boolean {
    return this.complete;
  }

  /**
   * Receives one chunk (in order). Returns true when the last chunk has
   * arrived. Chunks come from the network: anything malformed, out of order,
   * from another shard or snapshot, or after the last one is a
   * CorruptRecordError and leaves the installer as it was, so the right
   * chunk may still follow. A snapshot overlapping what another replica here
   * owns or claims is a SnapshotOverlapError, and nothing is written.
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
    const { store, shardId } = this;
    // Copied: decoded bounds are views into the chunk, which the transport may reuse; the header outlives it.
    const h = this.header ?? { ...chunk.header, bounds: copyBounds(chunk.header.bounds) };
    const range: ShardRange = { start: h.bounds.start, end: h.bounds.end, epoch: h.epoch };
    const first = this.header === undefined;
    const mode = this.mode ?? this.modeFor(range);
    let refusal: RangeClaim | undefined;
    let received: RangeBounds | undefined;
    // Not synced: what a crash loses of it, opening clears anyway, and the install's synced
    // transaction covers it (LMDB commits in order; a sync covers every commit before it).
    await store.writeUnsynced(() => {
      // Before anything is deleted or written (see the class comment: nothing here may throw after a write).
      refusal = overlappingClaim(this.claims, shardId, range, mode);
      if (refusal !== undefined) return;
      // A new transfer: whatever an older one left goes first, sparing every other replica's keys.
      if (first) store.deleteStaged(shardId, (older) => claimsWithin(this.claims, shardId, older));
      if (mode === 'direct') {
        if (first) {
          store.markReceiving(shardId, h.bounds, claimsWithin(this.claims, shardId, h.bounds));
          received = h.bounds;
        }
        // decodeChunk checked every pair: in the bounds, ascending, a well-formed record.
        forEachPair(chunk.body, (key, record) => store.dataRecords.putSync(key, record));
      } else {
        // The body as it came: one value, no pair decoded or encoded.
        store.staging.putSync([shardId, chunk.seq], chunk.body);
      }
    });
    if (refusal !== undefined) {
      throw new SnapshotOverlapError(
        `snapshot ${h.index} of shard ${shardId} covers ${describeRange(range)} (epoch ${range.epoch}), overlapping ${describeClaim(refusal)} on node ${store.nodeId}; retried once that shard catches up`,
      );
    }
    if (first) store.noteReceiving(shardId, received);
    this.header ??= h;
    this.mode = mode;
    // Copied: the key is a view into a chunk the transport may reuse.
    if (chunk.lastKey !== undefined) this.lastKey = Uint8Array.from(chunk.lastKey);
    this.nextSeq++;
    if (mode === 'staged') this.stagedByteCount += bytes.byteLength;
    this.complete = chunk.last;
    return chunk.last;
  }

  /**
   * Direct when the replica owns no keys (by its stored range: the truth
   * an install replaces) and the snapshot takes over no other replica here
   * (claims.ts staleUnder); staged otherwise.
   */
  private modeFor(range: ShardRange): ReceiveMode {
    if (isInitialized(decodeShardRange(this.shardId, this.store.descriptor(this.shardId)))) return 'staged';
    return overlappingClaim(this.claims, this.shardId, range, 'direct') === undefined ? 'direct' : 'staged';
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
    const direct = this.mode === 'direct';
    store.beginInstall();
    try {
      await store.write(() => {
        // Every check before the first write (a throw here does not roll back what came before it).
        const stored = store.meta.get([shardId, 'desc']);
        const owned = stored === undefined ? undefined : decodeShardRange(shardId, stored);
        if (direct) {
          // The records are in the data already, claimed by the marker since the first chunk: the
          // replica owned nothing then and nothing since (an install is the only way to a range).
          assert(owned !== undefined && !isInitialized(owned), () => `shard ${shardId}: direct install over the owned range ${owned === undefined ? 'of the whole key space' : describeRange(owned)}`);
          const marked = store.receiving().get(shardId);
          assert(marked !== undefined && sameBounds(marked, h.bounds), () => `shard ${shardId}: direct install of ${describeRange(h.bounds)} without its receiving marker (${marked === undefined ? 'none' : describeRange(marked)})`);
          store.unmarkReceiving(shardId);
        } else {
          for (let seq = 0; seq < this.nextSeq; seq++) {
            if (!store.staging.doesExist([shardId, seq])) throw new CorruptRecordError(`shard ${shardId}: staged snapshot chunk ${seq} is missing`);
          }
          // The range this replica owned until now goes too: after a split it owned more than the
          // snapshot's range, and what lies outside is no longer its own (ranges in one store are
          // disjoint, see claims.ts, so nobody else's data is there).
          // (A shard stored without a descriptor, from before ranges, is left to the snapshot's bounds.)
          if (owned !== undefined && isInitialized(owned)) store.deleteData(owned);
          store.deleteData(h.bounds);
          for (let seq = 0; seq < this.nextSeq; seq++) {
            const body = store.staging.get([shardId, seq]) as Uint8Array;
            forEachPair(body, (key, record) => store.dataRecords.putSync(key, record));
            store.staging.removeSync([shardId, seq]);
          }
        }
        store.clearLogForInstall(shardId);
        store.meta.putSync([shardId, 'hard'], encodeHardState(hardState));
        store.meta.putSync([shardId, 'conf'], encodeConfState(h.confState));
        store.meta.putSync([shardId, 'applied'], h.index);
        store.meta.putSync([shardId, 'snap'], [h.index, h.term]);
        store.meta.putSync([shardId, 'desc'], [h.bounds.start, h.bounds.end, h.epoch]);
        // Frozen for a merge as the range was at the snapshot, or not: nothing of the replica's own survives.
        store.writeFrozen(shardId, h.frozen === undefined ? undefined : encodeFrozen(h.frozen));
      });
      if (direct) store.noteReceiving(shardId, undefined);
      store.noteInstalled(shardId, {
        hardState,
        confState: h.confState,
        applied: h.index,
        snapshotIndex: h.index,
        snapshotTerm: h.term,
        lastIndex: h.index,
      });
    } finally {
      store.endInstall();
    }
    return h;
  }

  /**
   * Drops whatever this shard has received and not installed (an abandoned,
   * failed or superseded transfer): staged chunks, and records received
   * straight into the data — except keys another replica here owns or
   * claims, which were never the transfer's.
   */
  async clear(): Promise<void> {
    const { store, shardId } = this;
    await store.write(() => store.deleteStaged(shardId, (received) => claimsWithin(this.claims, shardId, received)));
    store.noteReceiving(shardId, undefined);
  }
}
