import { SnapshotOutOfDateError, assert, type ConfState, type GroupId, type HardState, type LogIndex, type Term } from '@flotilla/core';
import { Packr } from 'msgpackr';
import {
  KEY_BYTES_MAX,
  SNAPSHOT_CHUNK_BYTES_MAX,
  SNAPSHOT_PAIR_BYTES_MAX,
  SNAPSHOT_PAIR_OVERHEAD_BYTES,
  decodeConfState,
  encodeConfState,
  encodeHardState,
  type RangeBounds,
} from './codec.js';
import { CorruptRecordError } from './errors.js';
import { WHOLE_KEY_SPACE, decodeShardRange, isInitialized } from '../kv/range.js';
import type { NodeStore } from './node-store.js';

const SNAPSHOT_FORMAT = 1;

export interface SnapshotHeader {
  readonly format: number;
  readonly shardId: GroupId;
  readonly index: LogIndex;
  readonly term: Term;
  readonly confState: ConfState;
  readonly bounds: RangeBounds;
  /** The range's epoch at the snapshot (kv/range.ts). */
  readonly epoch: number;
}

interface Chunk {
  readonly header: SnapshotHeader;
  readonly seq: number;
  readonly last: boolean;
  /** [key, version, value] triples in key order. */
  readonly pairs: readonly [Uint8Array, number, Uint8Array][];
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/**
 * Reads a consistent snapshot of one shard — its data in its range (the stored descriptor; `fallback` for a shard without one), applied
 * index, term and conf state — from a single LMDB read transaction, and
 * yields it as chunks of at most SNAPSHOT_CHUNK_BYTES_MAX. Memory use is one
 * chunk, whatever the range's size. The read transaction is held until the
 * generator finishes or is returned early.
 */
export function* readSnapshot(store: NodeStore, shardId: GroupId, fallback: RangeBounds = WHOLE_KEY_SPACE): Generator<Uint8Array, SnapshotHeader> {
  const txn = store.env.useReadTransaction();
  try {
    const at = { transaction: txn };
    // The range as of the same transaction as the data and applied index: a split applied since the
    // transfer was asked for must not leave a snapshot claiming the old bounds at the new index.
    const stored = store.meta.get([shardId, 'desc'], at);
    const { epoch, ...bounds } = stored === undefined ? { ...fallback, epoch: 1 } : decodeShardRange(shardId, stored);
    const index = store.meta.get([shardId, 'applied'], at);
    if (!Number.isSafeInteger(index)) throw new CorruptRecordError(`shard ${shardId}: applied index ${String(index)}`);
    const confState = decodeConfState(store.meta.get([shardId, 'conf'], at));
    const term = termAt(store, shardId, index as number, txn);
    const header: SnapshotHeader = { format: SNAPSHOT_FORMAT, shardId, index: index as number, term, confState, bounds, epoch };
    let pairs: [Uint8Array, number, Uint8Array][] = [];
    let bytes = 0;
    let seq = 0;
    const range = store.data.getRange({
      start: Buffer.from(bounds.start),
      ...(bounds.end === null ? {} : { end: Buffer.from(bounds.end) }),
      transaction: txn,
    });
    for (const { key, value } of range) {
      const [version, data] = value as [number, Buffer];
      const pairBytes = key.byteLength + data.byteLength + SNAPSHOT_PAIR_OVERHEAD_BYTES;
      assert(pairBytes <= SNAPSHOT_PAIR_BYTES_MAX, () => `shard ${shardId}: pair of ${pairBytes} B exceeds the snapshot pair limit ${SNAPSHOT_PAIR_BYTES_MAX}`);
      if (bytes + pairBytes > SNAPSHOT_PAIR_BYTES_MAX) {
        yield encodeChunk({ header, seq: seq++, last: false, pairs });
        pairs = [];
        bytes = 0;
      }
      pairs.push([key, version, data]);
      bytes += pairBytes;
    }
    yield encodeChunk({ header, seq, last: true, pairs });
    return header;
  } finally {
    txn.done();
  }
}

function termAt(store: NodeStore, shardId: GroupId, index: number, txn: ReturnType<NodeStore['env']['useReadTransaction']>): Term {
  if (index === 0) return 0;
  const snap = store.meta.get([shardId, 'snap'], { transaction: txn }) as [number, number];
  if (snap[0] === index) return snap[1];
  const entry = store.log.get([shardId, index], { transaction: txn }) as [number, number, Uint8Array] | undefined;
  if (entry === undefined) throw new CorruptRecordError(`shard ${shardId}: applied entry ${index} is missing from the log`);
  return entry[0];
}

function encodeChunk(c: Chunk): Uint8Array {
  const h = c.header;
  const bytes = packr.pack([h.format, h.shardId, h.index, h.term, encodeConfState(h.confState), [h.bounds.start, h.bounds.end, h.epoch], c.seq, c.last, c.pairs]);
  assert(bytes.byteLength <= SNAPSHOT_CHUNK_BYTES_MAX, () => `snapshot chunk of ${bytes.byteLength} B exceeds ${SNAPSHOT_CHUNK_BYTES_MAX}`);
  return bytes;
}

/** Decodes and validates one chunk from the network; throws CorruptRecordError on anything malformed. */
export function decodeChunk(bytes: Uint8Array): Chunk {
  if (bytes.byteLength > SNAPSHOT_CHUNK_BYTES_MAX) throw new CorruptRecordError(`snapshot chunk of ${bytes.byteLength} B exceeds ${SNAPSHOT_CHUNK_BYTES_MAX}`);
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    throw new CorruptRecordError(`undecodable snapshot chunk (${(err as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length !== 9) throw new CorruptRecordError('snapshot chunk is not a 9-tuple');
  const [format, shardId, index, term, conf, bounds, seq, last, pairs] = raw as unknown[];
  if (format !== SNAPSHOT_FORMAT) throw new CorruptRecordError(`snapshot format ${String(format)}; expected ${SNAPSHOT_FORMAT}`);
  for (const [name, n] of [['shardId', shardId], ['index', index], ['term', term], ['seq', seq]] as const) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new CorruptRecordError(`snapshot chunk ${name} ${String(n)}`);
  }
  if (typeof last !== 'boolean') throw new CorruptRecordError('snapshot chunk lacks the last flag');
  if (
    !Array.isArray(bounds) ||
    bounds.length !== 3 ||
    !(bounds[0] instanceof Uint8Array) ||
    !(bounds[1] === null || bounds[1] instanceof Uint8Array) ||
    !Number.isSafeInteger(bounds[2]) ||
    (bounds[2] as number) < 1
  ) {
    throw new CorruptRecordError('snapshot chunk bounds are malformed');
  }
  if (!Array.isArray(pairs)) throw new CorruptRecordError('snapshot chunk pairs are not a list');
  const start = bounds[0] as Uint8Array;
  const end = bounds[1] as Uint8Array | null;
  let previous: Uint8Array | undefined;
  for (const [i, p] of (pairs as unknown[]).entries()) {
    if (!Array.isArray(p) || p.length !== 3 || !(p[0] instanceof Uint8Array) || !Number.isSafeInteger(p[1]) || !(p[2] instanceof Uint8Array)) {
      throw new CorruptRecordError(`snapshot chunk ${String(seq)} holds a malformed pair at ${i}`);
    }
    const [key, version] = p as [Uint8Array, number, Uint8Array];
    // Installing a key outside the range would overwrite another range's data on this node.
    if (key.byteLength === 0 || key.byteLength > KEY_BYTES_MAX) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} has a key of ${key.byteLength} B`);
    if (compareBytes(key, start) < 0 || (end !== null && compareBytes(key, end) >= 0)) {
      throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} key ${hex(key)} is outside [${hex(start)}, ${end === null ? '∞' : hex(end)})`);
    }
    if (previous !== undefined && compareBytes(previous, key) >= 0) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} key ${hex(key)} is not after ${hex(previous)}`);
    if (version < 1) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} has version ${version}`);
    previous = key;
  }
  return {
    header: {
      format,
      shardId: shardId as GroupId,
      index: index as number,
      term: term as number,
      confState: decodeConfState(conf),
      bounds: { start: bounds[0] as Uint8Array, end: bounds[1] as Uint8Array | null },
      epoch: bounds[2] as number,
    },
    seq: seq as number,
    last,
    pairs: pairs as [Uint8Array, number, Uint8Array][],
  };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function sameHeader(a: SnapshotHeader, b: SnapshotHeader): boolean {
  const sameBytes = (x: Uint8Array | null, y: Uint8Array | null) => (x === null || y === null ? x === y : compareBytes(x, y) === 0);
  return (
    a.format === b.format &&
    a.shardId === b.shardId &&
    a.index === b.index &&
    a.term === b.term &&
    JSON.stringify(encodeConfState(a.confState)) === JSON.stringify(encodeConfState(b.confState)) &&
    sameBytes(a.bounds.start, b.bounds.start) &&
    sameBytes(a.bounds.end, b.bounds.end) &&
    a.epoch === b.epoch
  );
}

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
    const firstKey = chunk.pairs[0]?.[0];
    if (firstKey !== undefined && this.lastKey !== undefined && compareBytes(this.lastKey, firstKey) >= 0) {
      throw new CorruptRecordError(`snapshot chunk ${chunk.seq} starts at key ${hex(firstKey)}, not after ${hex(this.lastKey)}`);
    }
    if (this.header === undefined) await this.clear();
    await this.store.write(() => this.store.staging.putSync([this.shardId, chunk.seq], chunk.pairs));
    this.header ??= chunk.header;
    this.lastKey = chunk.pairs[chunk.pairs.length - 1]?.[0] ?? this.lastKey;
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
      // disjoint, see ShardCore's overlap check, so nobody else's data is there).
      // (A shard stored without a descriptor, from before ranges, is left to the snapshot's bounds.)
      const stored = store.meta.get([shardId, 'desc']);
      const owned = stored === undefined ? undefined : decodeShardRange(shardId, stored);
      if (owned !== undefined && isInitialized(owned)) store.deleteData(owned);
      store.deleteData(h.bounds);
      for (let seq = 0; seq < this.nextSeq; seq++) {
        const pairs = store.staging.get([shardId, seq]) as [Uint8Array, number, Uint8Array][] | undefined;
        if (pairs === undefined) throw new CorruptRecordError(`shard ${shardId}: staged snapshot chunk ${seq} is missing`);
        for (const [key, version, value] of pairs) store.data.putSync(Buffer.from(key), [version, value]);
        store.staging.removeSync([shardId, seq]);
      }
      for (const key of store.log.getKeys({ start: [shardId, 0], end: [shardId, Number.MAX_SAFE_INTEGER] })) store.log.removeSync(key);
      store.meta.putSync([shardId, 'hard'], encodeHardState(hardState));
      store.meta.putSync([shardId, 'conf'], encodeConfState(h.confState));
      store.meta.putSync([shardId, 'applied'], h.index);
      store.meta.putSync([shardId, 'snap'], [h.index, h.term]);
      store.meta.putSync([shardId, 'desc'], [h.bounds.start, h.bounds.end, h.epoch]);
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
