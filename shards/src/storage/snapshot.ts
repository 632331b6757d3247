import { assert, type ConfState, type GroupId, type HardState, type LogIndex, type Term } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { decodeConfState, encodeConfState, encodeHardState } from './codec.js';
import { CorruptRecordError } from './errors.js';
import type { NodeStore } from './node-store.js';

/** Largest snapshot chunk on the wire: bounds memory on both sides and keeps chunks interleavable with heartbeats. */
export const SNAPSHOT_CHUNK_BYTES_MAX = 1024 * 1024;
/** Room for a chunk's header and msgpack framing within SNAPSHOT_CHUNK_BYTES_MAX. */
const CHUNK_HEADER_BYTES_MAX = 16 * 1024;
/** A single key/value pair must fit one chunk. */
export const SNAPSHOT_PAIR_BYTES_MAX = SNAPSHOT_CHUNK_BYTES_MAX - CHUNK_HEADER_BYTES_MAX;
/**
 * msgpack framing counted per pair: fixarray 1 + key header ≤ 3 + version ≤ 9 +
 * value header ≤ 3 for pairs under 64 KiB; bigger pairs (bin32, 2 more bytes
 * each) are few per chunk and fit in the header allowance.
 */
export const SNAPSHOT_PAIR_OVERHEAD_BYTES = 16;
const SNAPSHOT_FORMAT = 1;

/** The key range a shard owns: [start, end), `end` null for "to the end of the key space". */
export interface RangeBounds {
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
}

export interface SnapshotHeader {
  readonly format: number;
  readonly shardId: GroupId;
  readonly index: LogIndex;
  readonly term: Term;
  readonly confState: ConfState;
  readonly bounds: RangeBounds;
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
 * Reads a consistent snapshot of one shard — its data in `bounds`, applied
 * index, term and conf state — from a single LMDB read transaction, and
 * yields it as chunks of at most SNAPSHOT_CHUNK_BYTES_MAX. Memory use is one
 * chunk, whatever the range's size. The read transaction is held until the
 * generator finishes or is returned early.
 */
export function* readSnapshot(store: NodeStore, shardId: GroupId, bounds: RangeBounds): Generator<Uint8Array, SnapshotHeader> {
  const txn = store.env.useReadTransaction();
  try {
    const at = { transaction: txn };
    const index = store.meta.get([shardId, 'applied'], at);
    if (!Number.isSafeInteger(index)) throw new CorruptRecordError(`shard ${shardId}: applied index ${String(index)}`);
    const confState = decodeConfState(store.meta.get([shardId, 'conf'], at));
    const term = termAt(store, shardId, index as number, txn);
    const header: SnapshotHeader = { format: SNAPSHOT_FORMAT, shardId, index: index as number, term, confState, bounds };
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
  const bytes = packr.pack([h.format, h.shardId, h.index, h.term, encodeConfState(h.confState), [h.bounds.start, h.bounds.end], c.seq, c.last, c.pairs]);
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
  if (!Array.isArray(bounds) || bounds.length !== 2 || !(bounds[0] instanceof Uint8Array) || !(bounds[1] === null || bounds[1] instanceof Uint8Array)) {
    throw new CorruptRecordError('snapshot chunk bounds are malformed');
  }
  if (!Array.isArray(pairs)) throw new CorruptRecordError('snapshot chunk pairs are not a list');
  for (const p of pairs as unknown[]) {
    if (!Array.isArray(p) || p.length !== 3 || !(p[0] instanceof Uint8Array) || !Number.isSafeInteger(p[1]) || !(p[2] instanceof Uint8Array)) {
      throw new CorruptRecordError('snapshot chunk holds a malformed pair');
    }
  }
  return {
    header: {
      format,
      shardId: shardId as GroupId,
      index: index as number,
      term: term as number,
      confState: decodeConfState(conf),
      bounds: { start: bounds[0] as Uint8Array, end: bounds[1] as Uint8Array | null },
    },
    seq: seq as number,
    last,
    pairs: pairs as [Uint8Array, number, Uint8Array][],
  };
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

  constructor(
    private readonly store: NodeStore,
    readonly shardId: GroupId,
  ) {}

  /** Stages one chunk (in order). Returns true when the last chunk has arrived. */
  async addChunk(bytes: Uint8Array): Promise<boolean> {
    assert(!this.complete, () => `shard ${this.shardId}: chunk after the last one`);
    const chunk = decodeChunk(bytes);
    if (chunk.header.shardId !== this.shardId) throw new CorruptRecordError(`snapshot chunk for shard ${chunk.header.shardId}, expected ${this.shardId}`);
    if (chunk.seq !== this.nextSeq) throw new CorruptRecordError(`snapshot chunk ${chunk.seq} out of order; expected ${this.nextSeq}`);
    if (this.header === undefined) {
      this.header = chunk.header;
      await this.clear();
    } else if (chunk.header.index !== this.header.index || chunk.header.term !== this.header.term) {
      throw new CorruptRecordError(`snapshot chunk ${chunk.seq} is from snapshot ${chunk.header.index}/${chunk.header.term}, expected ${this.header.index}/${this.header.term}`);
    }
    await this.store.env.transaction(() => this.store.staging.putSync([this.shardId, chunk.seq], chunk.pairs));
    this.nextSeq++;
    this.complete = chunk.last;
    return chunk.last;
  }

  /** Atomically replaces the shard's state with the staged snapshot; resolves once durable. */
  async install(current: HardState): Promise<SnapshotHeader> {
    const h = this.header;
    assert(h !== undefined && this.complete, () => `shard ${this.shardId}: install before the last chunk`);
    assert(current.term >= h.term, () => `shard ${this.shardId}: hard state term ${current.term} below snapshot term ${h.term}`);
    const store = this.store;
    const shardId = this.shardId;
    const stored = store.shardState(shardId).hardState;
    // The durable term and vote never move back, whatever the caller passes.
    assert(current.term >= stored.term, () => `shard ${shardId}: install with term ${current.term} below stored term ${stored.term}`);
    assert(current.term > stored.term || current.vote === stored.vote || stored.vote === 0, () => `shard ${shardId}: install would change the vote of term ${stored.term}`);
    const hardState: HardState = { term: current.term, vote: current.vote, commit: Math.max(stored.commit, current.commit, h.index) };
    await store.env.transaction(() => {
      const dataRange = { start: Buffer.from(h.bounds.start), ...(h.bounds.end === null ? {} : { end: Buffer.from(h.bounds.end) }) };
      for (const key of store.data.getKeys(dataRange)) store.data.removeSync(key);
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
      store.meta.putSync([shardId, 'desc'], [h.bounds.start, h.bounds.end]);
    });
    await store.env.flushed;
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
    await this.store.env.transaction(() => {
      for (const key of this.store.staging.getKeys({ start: [this.shardId, 0], end: [this.shardId, Number.MAX_SAFE_INTEGER] })) this.store.staging.removeSync(key);
    });
  }
}
