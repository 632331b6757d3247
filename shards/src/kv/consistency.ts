// Replica consistency checks (ARCHITECTURE.md, "Replica consistency checks").
//
// LMDB keeps no page checksums, so nothing else notices two replicas whose
// data diverged. A range's leader proposes a checksum entry through Raft;
// every replica, when it applies that entry, opens an LMDB read transaction
// on its data exactly as of that index (the Host ends the round's apply
// transaction at a checksum entry, so the snapshot holds nothing applied
// after it) and hashes its range from it, one chunk per tick, so a big range
// never stalls the core's rounds. The result — a digest, per-block digests,
// and the snapshot held a while longer for per-key digests of one block —
// is kept in memory for the checker (server/src/consistency.ts) to collect
// and compare.
import { createHash, type Hash } from 'node:crypto';
import { assert, type GroupId, type LogIndex } from '@flotilla/core';
import { Packr } from 'msgpackr';
import type { RangeBounds } from '../storage/codec.js';
import type { NodeStore } from '../storage/node-store.js';

/**
 * Keys per block. The checker finds the first block whose digest differs,
 * then compares that block key by key: a block's keys and per-key digests
 * are one answer, at most 128 × (KEY_BYTES_MAX + 8) B ≈ 250 KiB, well
 * inside a frame; and 16 B of block digest per 128 keys keeps a 3-million-key
 * range's block list under 400 KiB.
 */
export const CHECKSUM_BLOCK_KEY_COUNT = 128;
/** A block's digest: SHA-256 truncated, 2^-128 odds that two different blocks agree. */
export const CHECKSUM_BLOCK_DIGEST_BYTES = 16;
/** A key's digest in a block detail: only compared with the same key's on another replica. */
export const CHECKSUM_KEY_DIGEST_BYTES = 8;
/**
 * Every this-many blocks the pass keeps the block's first key, where a
 * block detail starts its cursor (then steps over at most 15 blocks, 1,920
 * keys, in one synchronous read). Keeping every block's first key would cost
 * up to KEY_BYTES_MAX per 128 keys.
 */
const SEEK_STRIDE_BLOCKS = 16;
/**
 * Keys hashed per chunk (one chunk per core per tick) unless the Host says
 * otherwise: few enough that a chunk takes a small part of a tick, so the
 * core's rounds never wait long behind a check.
 */
export const CHECKSUM_CHUNK_KEY_COUNT_DEFAULT = 4096;
/** Bytes hashed per chunk at most: hashing time follows bytes, so large values must not make a chunk long. */
const CHECKSUM_CHUNK_BYTES_MAX = 1024 * 1024;
/**
 * Ticks a finished pass keeps its read transaction for block details (2 s
 * at the default tick): replicas of one range finish their passes within a
 * few ticks of each other, and the checker asks for details as soon as it
 * has every digest. Short because a held snapshot keeps LMDB from reusing
 * every page written meanwhile: the file grows by everything written during
 * the longest hold, which under steady writes soon dwarfs the data itself
 * (ARCHITECTURE.md, "Replica consistency checks"). A detail asked for too
 * late answers `missing`, and the mismatch is still reported, without its key.
 */
export const CHECKSUM_HOLD_TICKS_DEFAULT = 20;
/** Results kept per shard (the most recent): a leader retries a check it lost, so a few suffice. */
const RESULTS_PER_SHARD_MAX = 4;
/**
 * Passes captured and not yet finished per core, each holding a read
 * transaction (LMDB's reader table has 126 slots per environment by
 * default). Every node checks one range at a time, so more than this
 * waiting means a burst of checks; the excess is refused (`missing: busy`)
 * and retried by its leader later.
 */
const PASSES_QUEUED_MAX = 8;
/** Finished passes holding their snapshot, per core; the oldest is released first. */
const SNAPSHOTS_HELD_MAX = 4;

assert(CHECKSUM_BLOCK_KEY_COUNT * SEEK_STRIDE_BLOCKS <= 4096, 'a block detail steps over at most 4,096 keys synchronously');
assert(PASSES_QUEUED_MAX + SNAPSHOTS_HELD_MAX <= 32, 'checksum read transactions must leave most of the reader table to others');

/** A range's data as one pass hashed it. */
export interface RangeDigest {
  /** SHA-256 over the bounds, every block digest and the key count: equal on two replicas iff their data agree (but for collisions). */
  readonly digest: Buffer;
  readonly keyCount: number;
  /** CHECKSUM_BLOCK_DIGEST_BYTES per block of CHECKSUM_BLOCK_KEY_COUNT keys, in key order. */
  readonly blockDigests: Buffer;
  /** The first key of every SEEK_STRIDE_BLOCKS-th block (where block details seek to). */
  readonly seekKeys: readonly Buffer[];
}

/** One block's keys and their digests (CHECKSUM_KEY_DIGEST_BYTES each, in the same order). */
export interface BlockDetail {
  readonly keys: readonly Uint8Array[];
  readonly digests: Uint8Array;
}

/** What a replica answers for a checksum it was asked about. */
export type ChecksumAnswer =
  /** Not applied here yet, or applied and still being hashed: ask again later. */
  | { readonly state: 'pending'; readonly applied: number; readonly hashing: boolean }
  | {
      readonly state: 'done';
      readonly digest: Uint8Array;
      readonly keyCount: number;
      readonly blockCount: number;
      /** Chunks the pass took (one per tick). */
      readonly chunkCount: number;
      /** When asked for them: the block digests (see RangeDigest). */
      readonly blockDigests?: Uint8Array;
    }
  /** No result here and none coming: restarted, caught up by a snapshot past the entry, evicted, refused (busy) or failed to read. */
  | { readonly state: 'missing'; readonly reason: string };

export type ChecksumBlockAnswer = ({ readonly state: 'done' } & BlockDetail) | { readonly state: 'missing'; readonly reason: string };

const packr = new Packr({ useRecords: false, moreTypes: false });
/** One record's header (tag, key length) and trailer (version, value length); the core's thread is the only user. */
const scratch = Buffer.alloc(13);
const TAG_RECORD = 1;
/**
 * A stored value that is not [version, bytes]: hashed as its re-encoding, so damage counts as a difference, never a crash.
 * A record with a content type ([version, bytes, contentType]) is hashed this way too: all of it counts, alike on every replica.
 */
const TAG_MALFORMED = 2;

/** Feeds one stored pair into `h`; returns the bytes it hashed. */
function hashRecord(h: Hash, key: Uint8Array, stored: unknown): number {
  const wellFormed = Array.isArray(stored) && stored.length === 2 && Number.isSafeInteger(stored[0]) && stored[1] instanceof Uint8Array;
  scratch[0] = wellFormed ? TAG_RECORD : TAG_MALFORMED;
  scratch.writeUInt32BE(key.byteLength, 1);
  h.update(scratch.subarray(0, 5));
  h.update(key);
  const value: Uint8Array = wellFormed ? (stored[1] as Uint8Array) : packr.pack(stored);
  scratch.writeDoubleBE(wellFormed ? (stored[0] as number) : 0, 0);
  scratch.writeUInt32BE(value.byteLength, 8);
  h.update(scratch.subarray(0, 12));
  h.update(value);
  return 17 + key.byteLength + value.byteLength;
}

/** One key's digest, as a block detail reports it. */
export function recordDigest(key: Uint8Array, stored: unknown): Buffer {
  const h = createHash('sha256');
  hashRecord(h, key, stored);
  return h.digest().subarray(0, CHECKSUM_KEY_DIGEST_BYTES);
}

/**
 * Digests a range's pairs fed in key order (`add` per pair, then `finish`).
 * The same pairs in the same bounds give the same digest on every replica.
 */
export class RangeDigester {
  private readonly blocks: Buffer[] = [];
  private readonly seekKeys: Buffer[] = [];
  private block: Hash | undefined;
  private blockKeyCount = 0;
  private keyCount = 0;

  constructor(private readonly bounds: RangeBounds) {}

  /** Adds the next pair (keys strictly ascending); returns the bytes hashed. */
  add(key: Uint8Array, stored: unknown): number {
    if (this.block === undefined) {
      this.block = createHash('sha256');
      if (this.blocks.length % SEEK_STRIDE_BLOCKS === 0) this.seekKeys.push(Buffer.from(key));
    }
    const bytes = hashRecord(this.block, key, stored);
    this.keyCount++;
    if (++this.blockKeyCount === CHECKSUM_BLOCK_KEY_COUNT) this.closeBlock();
    return bytes;
  }

  finish(): RangeDigest {
    if (this.block !== undefined) this.closeBlock();
    const blockDigests = Buffer.concat(this.blocks);
    const h = createHash('sha256');
    h.update('flotilla range digest v1');
    const bound = (b: Uint8Array | null) => {
      scratch[0] = b === null ? 0 : 1;
      scratch.writeUInt32BE(b?.byteLength ?? 0, 1);
      h.update(scratch.subarray(0, 5));
      if (b !== null) h.update(b);
    };
    bound(this.bounds.start);
    bound(this.bounds.end);
    h.update(blockDigests);
    scratch.writeDoubleBE(this.keyCount, 0);
    h.update(scratch.subarray(0, 8));
    return { digest: h.digest(), keyCount: this.keyCount, blockDigests, seekKeys: this.seekKeys };
  }

  private closeBlock(): void {
    this.blocks.push(this.block!.digest().subarray(0, CHECKSUM_BLOCK_DIGEST_BYTES));
    this.block = undefined;
    this.blockKeyCount = 0;
  }
}

/** The digest of `pairs` (key order) in `bounds`, in one go: tests' oracle, and the definition the incremental pass must match. */
export function digestPairs(bounds: RangeBounds, pairs: Iterable<{ key: Uint8Array; stored: unknown }>): RangeDigest {
  const d = new RangeDigester(bounds);
  for (const p of pairs) d.add(p.key, p.stored);
  return d.finish();
}

/** The first block whose digest differs between two replicas' block lists; undefined if the lists are equal. */
export function firstDifferentBlock(a: Uint8Array, b: Uint8Array): number | undefined {
  const n = CHECKSUM_BLOCK_DIGEST_BYTES;
  const shorter = Math.min(a.byteLength, b.byteLength) / n;
  for (let i = 0; i < shorter; i++) {
    if (Buffer.compare(a.subarray(i * n, (i + 1) * n), b.subarray(i * n, (i + 1) * n)) !== 0) return i;
  }
  // Equal as far as both go: the first block only one of them has.
  return a.byteLength === b.byteLength ? undefined : shorter;
}

/**
 * The first key whose presence or contents differ between two replicas'
 * details of the same block (every block before it agreed, so both lists
 * start at the same position in key order): at the first position where the
 * keys differ, the smaller key is missing from the other replica; where they
 * are the same key, its digest decides. Undefined if the details agree.
 */
export function firstDifferentKey(a: BlockDetail, b: BlockDetail): Uint8Array | undefined {
  const n = CHECKSUM_KEY_DIGEST_BYTES;
  for (let p = 0; ; p++) {
    const ka = a.keys[p];
    const kb = b.keys[p];
    if (ka === undefined || kb === undefined) return ka ?? kb;
    const order = Buffer.compare(ka, kb);
    if (order !== 0) return order < 0 ? ka : kb;
    if (Buffer.compare(a.digests.subarray(p * n, (p + 1) * n), b.digests.subarray(p * n, (p + 1) * n)) !== 0) return ka;
  }
}

type ReadTxn = ReturnType<NodeStore['env']['useReadTransaction']>;

/** One checksum entry as this replica captured it. */
interface ChecksumRecord {
  readonly shardId: GroupId;
  readonly id: number;
  readonly index: LogIndex;
  readonly bounds: RangeBounds;
  state: 'hashing' | 'done' | 'failed';
  /** Hashing: the pass's snapshot. Done: held for block details until heldUntilTick, then released (undefined). */
  txn: ReadTxn | undefined;
  heldUntilTick: number;
  iterator: Iterator<{ key: Buffer; value: unknown }> | undefined;
  digester: RangeDigester | undefined;
  digest: RangeDigest | undefined;
  reason: string | undefined;
  chunkCount: number;
}

export interface ReplicaChecksumsOptions {
  /** Keys hashed per chunk (CHECKSUM_CHUNK_KEY_COUNT_DEFAULT). */
  readonly chunkKeyCount: number;
  /** How long a finished pass keeps its snapshot (CHECKSUM_HOLD_TICKS_DEFAULT). */
  readonly holdTicks: number;
}

export interface ReplicaChecksumsStats {
  /** Checksum entries captured (a pass started). */
  passes: number;
  /** Captures refused because PASSES_QUEUED_MAX passes were waiting. */
  passesRefused: number;
  /** Passes that could not read their range (the reason is in the result and the log). */
  passesFailed: number;
  chunks: number;
}

/**
 * The checksum results of one core's replicas and the passes computing
 * them. Contract: `capture` right after the transaction that applied the
 * checksum entry committed, before anything else writes to the store (the
 * read transaction it opens must hold exactly that state); `onTick` once per
 * tick (it hashes one chunk of the oldest pass); `dropShard` before a
 * replica's data is destroyed is not needed (snapshots are unaffected) but
 * frees its transactions; `close` before the store closes.
 */
export class ReplicaChecksums {
  private readonly results = new Map<GroupId, ChecksumRecord[]>();
  /** Passes in capture order; the first is hashed. */
  private readonly queue: ChecksumRecord[] = [];
  /** Finished passes holding their snapshot, oldest first. */
  private readonly held: ChecksumRecord[] = [];
  private tick = 0;
  readonly stats: ReplicaChecksumsStats = { passes: 0, passesRefused: 0, passesFailed: 0, chunks: 0 };

  constructor(
    private readonly store: NodeStore,
    private readonly options: ReplicaChecksumsOptions,
    private readonly onFailed: (fields: Record<string, unknown>, message: string) => void,
  ) {
    assert(Number.isSafeInteger(options.chunkKeyCount) && options.chunkKeyCount > 0, () => `checksum chunk key count ${options.chunkKeyCount} is not a positive integer`);
    assert(Number.isSafeInteger(options.holdTicks) && options.holdTicks >= 0, () => `checksum hold ticks ${options.holdTicks} is not a non-negative integer`);
  }

  /** A checksum entry applied: snapshot the range now and queue its pass. */
  capture(shardId: GroupId, c: { id: number; index: LogIndex; bounds: RangeBounds }): void {
    const r: ChecksumRecord = {
      shardId,
      id: c.id,
      index: c.index,
      bounds: c.bounds,
      state: 'hashing',
      txn: undefined,
      heldUntilTick: 0,
      iterator: undefined,
      digester: undefined,
      digest: undefined,
      reason: undefined,
      chunkCount: 0,
    };
    let list = this.results.get(shardId);
    if (list === undefined) this.results.set(shardId, (list = []));
    list.push(r);
    while (list.length > RESULTS_PER_SHARD_MAX) this.release(list.shift()!);
    if (this.queue.length >= PASSES_QUEUED_MAX) {
      this.stats.passesRefused++;
      r.state = 'failed';
      r.reason = `node ${this.store.nodeId} had ${this.queue.length} checksum passes waiting; ask again with a new check`;
      return;
    }
    r.txn = this.store.env.useReadTransaction();
    const { start, end } = c.bounds;
    r.iterator = this.store.data
      .getRange({ start: Buffer.from(start), ...(end === null ? {} : { end: Buffer.from(end) }), transaction: r.txn })
      [Symbol.iterator]() as Iterator<{ key: Buffer; value: unknown }>;
    r.digester = new RangeDigester(c.bounds);
    this.queue.push(r);
    this.stats.passes++;
  }

  /** One tick: hash one chunk of the oldest pass, release snapshots held past their time. */
  onTick(tick: number): void {
    this.tick = tick;
    const head = this.queue[0];
    if (head !== undefined) this.step(head);
    while (this.held.length > 0 && this.held[0]!.heldUntilTick <= tick) this.release(this.held[0]!);
  }

  /** Whether a pass is under way (tests; a pass does not keep the core busy: it advances with ticks). */
  get isHashing(): boolean {
    return this.queue.length > 0;
  }

  private step(r: ChecksumRecord): void {
    const keyCountMax = this.options.chunkKeyCount;
    let keys = 0;
    let bytes = 0;
    r.chunkCount++;
    this.stats.chunks++;
    try {
      while (keys < keyCountMax && bytes < CHECKSUM_CHUNK_BYTES_MAX) {
        const next = r.iterator!.next();
        if (next.done === true) return this.finish(r);
        bytes += r.digester!.add(next.value.key, next.value.value);
        keys++;
      }
    } catch (err) {
      // A record LMDB or msgpack cannot read is damage this check exists to find: reported, never the core's end.
      this.stats.passesFailed++;
      r.reason = `reading range data on node ${this.store.nodeId} failed: ${(err as Error).message}`;
      this.onFailed({ rangeId: r.shardId, checksumId: r.id, index: r.index, err }, 'checksum pass could not read its range');
      this.release(r);
      r.state = 'failed';
    }
  }

  private finish(r: ChecksumRecord): void {
    this.queue.splice(this.queue.indexOf(r), 1);
    r.digest = r.digester!.finish();
    r.digester = undefined;
    r.iterator!.return?.();
    r.iterator = undefined;
    r.state = 'done';
    // A newer result of the same shard supersedes the older ones' snapshots.
    for (const other of this.results.get(r.shardId) ?? []) if (other !== r && other.state === 'done') this.release(other);
    r.heldUntilTick = this.tick + this.options.holdTicks;
    this.held.push(r);
    while (this.held.length > SNAPSHOTS_HELD_MAX) this.release(this.held[0]!);
  }

  /** Ends a record's pass or held snapshot (its result, if done, stays). */
  private release(r: ChecksumRecord): void {
    const queued = this.queue.indexOf(r);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      r.state = 'failed';
      r.reason ??= 'the pass was dropped before it finished (evicted by newer checks, or the replica was removed)';
    }
    const held = this.held.indexOf(r);
    if (held >= 0) this.held.splice(held, 1);
    r.iterator?.return?.();
    r.iterator = undefined;
    r.digester = undefined;
    r.txn?.done();
    r.txn = undefined;
  }

  /** The result for checksum `id` at `index`, for a replica that has applied up to `applied`. */
  answer(shardId: GroupId, q: { index: LogIndex; id: number; withBlocks: boolean }, applied: LogIndex): ChecksumAnswer {
    const r = this.results.get(shardId)?.find((x) => x.index === q.index);
    if (r === undefined) {
      if (applied < q.index) return { state: 'pending', applied, hashing: false };
      return { state: 'missing', reason: `node ${this.store.nodeId} applied shard ${shardId} past ${q.index} without a result for it (restarted, caught up by a snapshot past it, or evicted by newer checks)` };
    }
    if (r.id !== q.id) return { state: 'missing', reason: `the checksum at index ${q.index} of shard ${shardId} on node ${this.store.nodeId} is check ${r.id}, not ${q.id}` };
    switch (r.state) {
      case 'hashing':
        return { state: 'pending', applied, hashing: true };
      case 'failed':
        return { state: 'missing', reason: r.reason! };
      case 'done': {
        const d = r.digest!;
        const blockCount = d.blockDigests.byteLength / CHECKSUM_BLOCK_DIGEST_BYTES;
        return { state: 'done', digest: d.digest, keyCount: d.keyCount, blockCount, chunkCount: r.chunkCount, ...(q.withBlocks ? { blockDigests: d.blockDigests } : {}) };
      }
      default: {
        const never: never = r.state;
        throw new Error(`unknown checksum state ${String(never)}`);
      }
    }
  }

  /** Block `block`'s keys and per-key digests, read from the pass's held snapshot (the same state it hashed). */
  block(shardId: GroupId, q: { index: LogIndex; id: number; block: number }): ChecksumBlockAnswer {
    const r = this.results.get(shardId)?.find((x) => x.index === q.index && x.id === q.id);
    if (r === undefined || r.state !== 'done') return { state: 'missing', reason: `node ${this.store.nodeId} has no finished check ${q.id} at index ${q.index} of shard ${shardId}` };
    if (r.txn === undefined) return { state: 'missing', reason: `node ${this.store.nodeId} released the snapshot of check ${q.id} of shard ${shardId} (held ${this.options.holdTicks} ticks)` };
    const d = r.digest!;
    const blockCount = d.blockDigests.byteLength / CHECKSUM_BLOCK_DIGEST_BYTES;
    if (!Number.isSafeInteger(q.block) || q.block < 0 || q.block >= blockCount) return { state: 'missing', reason: `check ${q.id} of shard ${shardId} has ${blockCount} blocks, not a block ${q.block}` };
    const seek = d.seekKeys[Math.floor(q.block / SEEK_STRIDE_BLOCKS)]!;
    const keys: Uint8Array[] = [];
    const digests = Buffer.alloc(CHECKSUM_BLOCK_KEY_COUNT * CHECKSUM_KEY_DIGEST_BYTES);
    try {
      const range = this.store.data.getRange({
        start: seek,
        ...(r.bounds.end === null ? {} : { end: Buffer.from(r.bounds.end) }),
        offset: (q.block % SEEK_STRIDE_BLOCKS) * CHECKSUM_BLOCK_KEY_COUNT,
        limit: CHECKSUM_BLOCK_KEY_COUNT,
        transaction: r.txn,
      });
      for (const { key, value } of range) {
        recordDigest(key, value).copy(digests, keys.length * CHECKSUM_KEY_DIGEST_BYTES);
        keys.push(Buffer.from(key));
      }
    } catch (err) {
      return { state: 'missing', reason: `reading block ${q.block} of shard ${shardId} on node ${this.store.nodeId} failed: ${(err as Error).message}` };
    }
    return { state: 'done', keys, digests: digests.subarray(0, keys.length * CHECKSUM_KEY_DIGEST_BYTES) };
  }

  /** Forgets a shard's results and releases their transactions (the replica is going away). */
  dropShard(shardId: GroupId): void {
    for (const r of this.results.get(shardId) ?? []) this.release(r);
    this.results.delete(shardId);
  }

  close(): void {
    for (const shardId of [...this.results.keys()]) this.dropShard(shardId);
  }
}
