import { assert, type ConfState, type Entry, type GroupId, type LogIndex } from '@flotilla/core';
import { encodeConfState } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';
import type { NewShard, NodeStore } from '../storage/node-store.js';
import {
  INITIAL_LOG_INDEX,
  INITIAL_LOG_TERM,
  decodeBatchCommand,
  decodeChecksumCommand,
  decodeCommand,
  isBatchCommand,
  isChecksumCommand,
  validateCommand,
  type KvCommand,
  type KvResult,
  type SplitCommand,
} from './command.js';
import { decodeShardRange, describeRange, encodeShardRange, hexKey, inRange, type ShardRange } from './range.js';

/** One shard's committed entries to apply, and its configuration afterwards if a conf change was among them. */
export interface ApplyBatch {
  readonly shardId: GroupId;
  readonly entries: readonly Entry[];
  readonly confState?: ConfState | undefined;
  /** The configuration after each conf change entry among `entries`, by index (a split's right half takes the one in force). */
  readonly confAt?: ReadonlyMap<LogIndex, ConfState>;
  /** The shard's range before these entries, if the caller holds it; otherwise read from its stored descriptor. */
  readonly range?: ShardRange;
}

/** What one entry's apply produced: a batch entry's is a list, one result per command in order. */
export type EntryResult = KvResult | readonly KvResult[];

/** Whether an entry's result is a batch entry's list (Array.isArray does not narrow a readonly array). */
export function isBatchResult(r: EntryResult): r is readonly KvResult[] {
  return Array.isArray(r);
}

/** What applying produced: a result per normal entry with a command (keyed by index). */
export type ApplyResults = Map<GroupId, Map<LogIndex, EntryResult>>;

/** A shard a split created on this node while applying. */
export interface CreatedShard {
  readonly shardId: GroupId;
  readonly parent: GroupId;
  readonly range: ShardRange;
  readonly confState: ConfState;
}

/** How applying changed a shard's data: keys added (negative: removed) and bytes of keys and values. */
export interface SizeDelta {
  keyCount: number;
  sizeBytes: number;
}

export interface ApplyOutcome {
  readonly results: ApplyResults;
  /** Per shard with puts or deletes applied. */
  readonly sizes: Map<GroupId, SizeDelta>;
  /** Shards whose range or epoch the entries changed, with the new one. */
  readonly ranges: Map<GroupId, ShardRange>;
  readonly created: readonly CreatedShard[];
}

/** An apply split around a caller's transaction (see KvStateMachine.stage). */
export interface StagedApply {
  readonly isEmpty: boolean;
  /** Writes the data, applied indexes, changed ranges and split-created shards; call inside a write transaction, once. */
  write(): ApplyOutcome;
  /** Updates the in-memory applied indexes; call after that transaction committed. */
  committed(): void;
}

export interface StoredValue {
  readonly value: Buffer;
  readonly version: number;
}

/**
 * The KV state machine of every range on a node. Applying a batch and
 * advancing each shard's applied index happen in one LMDB transaction, so
 * after a crash the data always matches the applied index and replay
 * resumes exactly where the last apply ended.
 */
export class KvStateMachine {
  /** Shards a split wrote in a transaction that has not committed yet (see isCreating). */
  private readonly creating = new Set<GroupId>();

  constructor(private readonly store: NodeStore) {}

  /** Whether a split being applied right now creates this shard (it exists once the transaction commits). */
  isCreating(shardId: GroupId): boolean {
    return this.creating.has(shardId);
  }

  /**
   * Applies committed entries of many shards in one transaction. A key's
   * version only grows: it becomes max(previous + 1, entry index), so it stays
   * monotonic even when a key moves to a range whose log is younger.
   */
  async apply(batches: readonly ApplyBatch[]): Promise<ApplyResults> {
    const staged = this.stage(batches);
    let results: ApplyResults = new Map();
    if (staged.isEmpty) return results;
    await this.store.env.transaction(() => {
      results = staged.write().results;
    });
    // Applied state need not be flushed before answering: a crash rolls data and applied index back together and replay redoes it.
    staged.committed();
    return results;
  }

  /**
   * Checks `batches` and returns the apply as two steps, so a caller can run
   * it inside a write transaction of its own (the Host applies in the same
   * transaction as its group commit): `write()` inside the transaction,
   * `committed()` once it committed.
   */
  stage(batches: readonly ApplyBatch[]): StagedApply {
    const applied = new Map<GroupId, { index: LogIndex; confState: ConfState | undefined }>();
    for (const b of batches) {
      if (b.entries.length === 0) continue;
      const state = this.store.shardState(b.shardId);
      const first = b.entries[0]!.index;
      assert(!applied.has(b.shardId), () => `shard ${b.shardId} appears twice in one apply`);
      assert(first === state.applied + 1, () => `shard ${b.shardId}: apply from ${first} but applied is ${state.applied}`);
      for (let i = 1; i < b.entries.length; i++) {
        assert(b.entries[i]!.index === first + i, () => `shard ${b.shardId}: apply batch jumps from ${b.entries[i - 1]!.index} to ${b.entries[i]!.index}`);
      }
      applied.set(b.shardId, { index: b.entries[b.entries.length - 1]!.index, confState: b.confState });
    }
    const created: CreatedShard[] = [];
    return {
      isEmpty: applied.size === 0,
      write: () => {
        // write() runs again when its transaction failed (a full disk: ShardCore retries the round's
        // commit): what an earlier attempt noted as created here was rolled back with it, and left in
        // the list it would make a split take its own right half for a replica made elsewhere.
        created.length = 0;
        const results: ApplyResults = new Map();
        const ranges = new Map<GroupId, ShardRange>();
        const sizes = new Map<GroupId, SizeDelta>();
        for (const b of batches) {
          if (b.entries.length === 0) continue;
          const shardResults = new Map<LogIndex, EntryResult>();
          results.set(b.shardId, shardResults);
          const before = b.range ?? decodeShardRange(b.shardId, this.store.descriptor(b.shardId));
          let range = before;
          let conf = this.store.shardState(b.shardId).confState;
          for (const e of b.entries) {
            if (e.type === 'confChange') {
              // A membership change moves the epoch: a router holding the old replica set is stale.
              conf = b.confAt?.get(e.index) ?? conf;
              range = { ...range, epoch: range.epoch + 1 };
              shardResults.set(e.index, {
                ok: true,
                version: 0,
                membership: { epoch: range.epoch, voters: [...conf.voters], votersOutgoing: [...conf.votersOutgoing], learners: [...conf.learners] },
              });
              continue;
            }
            if (e.data.byteLength === 0) continue;
            if (isChecksumCommand(e.data)) {
              shardResults.set(e.index, checksumApplied(e.index, e.data, range, conf));
              continue;
            }
            if (isBatchCommand(e.data)) {
              let delta = sizes.get(b.shardId);
              if (delta === undefined) sizes.set(b.shardId, (delta = { keyCount: 0, sizeBytes: 0 }));
              const batchResults: KvResult[] = [];
              for (const data of decodeBatchCommand(e.index, e.data)) {
                const command = decodeCommand(e.index, data);
                // Only puts and deletes are batched (ShardRequests): anything else in one is refused alike everywhere.
                batchResults.push(command.op === 'split' ? { ok: false, code: 'COMMAND_INVALID', reason: 'a split cannot be batched' } : this.applyCommand(e.index, command, range, delta));
              }
              shardResults.set(e.index, batchResults);
              continue;
            }
            const command = decodeCommand(e.index, e.data);
            if (command.op === 'split') {
              const outcome = this.applySplit(b.shardId, command, range, conf, created);
              shardResults.set(e.index, outcome.result);
              range = outcome.range;
            } else {
              let delta = sizes.get(b.shardId);
              if (delta === undefined) sizes.set(b.shardId, (delta = { keyCount: 0, sizeBytes: 0 }));
              shardResults.set(e.index, this.applyCommand(e.index, command, range, delta));
            }
          }
          if (range !== before) {
            this.store.meta.putSync([b.shardId, 'desc'], encodeShardRange(range));
            ranges.set(b.shardId, range);
          }
          const done = applied.get(b.shardId)!;
          this.store.meta.putSync([b.shardId, 'applied'], done.index);
          if (done.confState !== undefined) this.store.meta.putSync([b.shardId, 'conf'], encodeConfState(done.confState));
        }
        return { results, ranges, created, sizes };
      },
      committed: () => {
        for (const [shardId, done] of applied) this.store.noteApplied(shardId, done.index, done.confState);
        for (const c of created) {
          this.store.registerShard(newShardOf(c));
          this.creating.delete(c.shardId);
        }
      },
    };
  }

  /**
   * A split, decided from the log alone so every replica decides the same:
   * refused if the range's epoch moved since it was proposed, the key is not
   * strictly inside the range, or a membership change is under way; else the
   * range keeps [start, key) and both halves take epoch + 1. The right half's
   * shard is created here in the same transaction — unless this node has a
   * replica of it already (made for a snapshot before this replica caught up
   * to the split), which then gets the right half's data by that snapshot.
   */
  private applySplit(shardId: GroupId, c: SplitCommand, range: ShardRange, conf: ConfState, created: CreatedShard[]): { result: KvResult; range: ShardRange } {
    const invalid = validateCommand(c);
    if (invalid !== undefined) return { result: { ok: false, code: 'COMMAND_INVALID', reason: invalid }, range };
    if (c.epoch !== range.epoch) return { result: { ok: false, code: 'EPOCH_MISMATCH', currentEpoch: range.epoch }, range };
    if (Buffer.compare(c.key, range.start) <= 0 || (range.end !== null && Buffer.compare(c.key, range.end) >= 0)) {
      return { result: { ok: false, code: 'KEY_OUT_OF_RANGE', reason: `split key ${hexKey(c.key)} is not inside ${describeRange(range)}` }, range };
    }
    if (conf.votersOutgoing.length > 0) return { result: { ok: false, code: 'COMMAND_INVALID', reason: 'the range is changing membership; split it afterwards' }, range };
    if (c.newShardId === shardId) return { result: { ok: false, code: 'COMMAND_INVALID', reason: `split's new shard id is the range's own` }, range };
    const left: ShardRange = { start: range.start, end: c.key, epoch: range.epoch + 1 };
    const right: ShardRange = { start: c.key, end: range.end, epoch: range.epoch + 1 };
    const newShardId = c.newShardId as GroupId;
    if (!this.store.hasShard(newShardId) && !this.store.isAway(newShardId) && !created.some((x) => x.shardId === newShardId)) {
      const shard: CreatedShard = { shardId: newShardId, parent: shardId, range: right, confState: conf };
      this.store.writeShardRecords(newShardOf(shard));
      this.creating.add(newShardId);
      created.push(shard);
    } else if (!created.some((x) => x.shardId === newShardId)) {
      // The right half has a replica on this node already, made to receive a snapshot before this
      // replica applied the split (ShardCore: unknown shards), here or in another core's store. It
      // will hold the right half's data from that snapshot; the copy here is nobody's.
      this.store.deleteData(right);
    }
    return {
      result: { ok: true, version: 0, split: { left: { shardId, start: left.start, end: c.key, epoch: left.epoch }, right: { shardId: newShardId, ...right } } },
      range: left,
    };
  }

  private applyCommand(index: LogIndex, command: Exclude<KvCommand, SplitCommand>, range: ShardRange, delta: SizeDelta): KvResult {
    const invalid = validateCommand(command);
    if (invalid !== undefined) return { ok: false, code: 'COMMAND_INVALID', reason: invalid };
    // Proposed before a split that applied first: the key belongs to the other half now. Refused alike everywhere; the client retries there.
    if (!inRange(range, command.key)) return { ok: false, code: 'KEY_OUT_OF_RANGE', reason: `key ${hexKey(command.key)} is outside ${describeRange(range)}` };
    const key = Buffer.from(command.key.buffer, command.key.byteOffset, command.key.byteLength);
    const current = this.readRaw(key);
    const currentVersion = current?.version ?? 0;
    if (command.ifVersion !== undefined && command.ifVersion !== currentVersion) {
      return { ok: false, code: 'VERSION_MISMATCH', currentVersion };
    }
    if (command.op === 'put') {
      const version = Math.max(currentVersion + 1, index);
      this.store.data.putSync(key, [version, command.value]);
      if (current === undefined) {
        delta.keyCount++;
        delta.sizeBytes += key.byteLength + command.value.byteLength;
      } else {
        delta.sizeBytes += command.value.byteLength - current.value.byteLength;
      }
      return { ok: true, version };
    }
    if (current !== undefined) {
      this.store.data.removeSync(key);
      delta.keyCount--;
      delta.sizeBytes -= key.byteLength + current.value.byteLength;
    }
    return { ok: true, version: 0 };
  }

  private readRaw(key: Buffer): StoredValue | undefined {
    const raw = this.store.data.get(key);
    return raw === undefined ? undefined : decodeStoredValue(key, raw);
  }

  get(key: Uint8Array): StoredValue | undefined {
    return this.readRaw(Buffer.from(key.buffer, key.byteOffset, key.byteLength));
  }

  /** Keys in [start, end) in order, at most `limit`, skipping the first `offset`; `end` undefined means to the end of the key space. */
  *scan(options: { start: Uint8Array; end?: Uint8Array | undefined; limit: number; offset?: number }): Generator<{ key: Buffer; value: Buffer; version: number }> {
    const range = this.store.data.getRange({
      start: Buffer.from(options.start),
      ...(options.end === undefined ? {} : { end: Buffer.from(options.end) }),
      limit: options.limit,
      ...(options.offset === undefined ? {} : { offset: options.offset }),
    });
    for (const { key, value } of range) {
      const stored = decodeStoredValue(key, value);
      yield { key, value: stored.value, version: stored.version };
    }
  }
}

/**
 * A checksum entry writes nothing: the Host ends the apply transaction at it
 * and each replica hashes its data from a snapshot taken right after the
 * commit (kv/consistency.ts). Its result names the range and the replicas
 * as of its index, which the checker compares.
 */
function checksumApplied(index: LogIndex, data: Uint8Array, range: ShardRange, conf: ConfState): KvResult {
  const command = decodeChecksumCommand(index, data);
  if ('invalid' in command) return { ok: false, code: 'COMMAND_INVALID', reason: command.invalid };
  const replicas = [...new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners, ...conf.learnersNext])].sort((a, b) => a - b);
  return { ok: true, version: 0, checksum: { id: command.id, index, start: range.start, end: range.end, epoch: range.epoch, replicas } };
}

function newShardOf(c: CreatedShard): NewShard {
  return { shardId: c.shardId, confState: c.confState, descriptor: encodeShardRange(c.range), startAt: { index: INITIAL_LOG_INDEX, term: INITIAL_LOG_TERM } };
}

/** A data record as read back from LMDB: [version, bytes], checked so damage fails loudly. */
function decodeStoredValue(key: Buffer, raw: unknown): StoredValue {
  if (!Array.isArray(raw) || raw.length !== 2 || !Number.isSafeInteger(raw[0]) || (raw[0] as number) < 1 || !(raw[1] instanceof Uint8Array)) {
    throw new CorruptRecordError(`data record for key ${key.toString('hex')} is malformed`);
  }
  return { version: raw[0] as number, value: raw[1] as Buffer };
}
