import { assert, type ConfState, type Entry, type GroupId, type LogIndex } from '@flotilla/core';
import { encodeConfState } from '../storage/codec.js';
import { decodeStoredValue, readSpan, readStored, scanStored, type ScanOptions, type StoredValue } from './data-reads.js';
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
  type AtomicBatchCommand,
  type DeleteCommand,
  type DeleteRangeCommand,
  type KvCommand,
  type KvResult,
  type PutCommand,
  type SplitCommand,
  type RangeCommand,
  type FrozenRange,
  type PrepareMergeCommand,
  type CommitMergeCommand,
} from './command.js';
import { commitMergeRefusal, decodeFrozen, encodeFrozen, fenceMergeRefusal, mergedRange, prepareMergeRefusal, rollbackMergeRefusal, sourceCaughtUp } from './merge.js';
import { commandOutsideRange, decodeShardRange, describeRange, encodeShardRange, hexKey, type ShardRange } from './range.js';

/** One shard's committed entries to apply, and its configuration afterwards if a conf change was among them. */
export interface ApplyBatch {
  readonly shardId: GroupId;
  readonly entries: readonly Entry[];
  readonly confState?: ConfState | undefined;
  /** The configuration after each conf change entry among `entries`, by index (a split's right half takes the one in force). */
  readonly confAt?: ReadonlyMap<LogIndex, ConfState>;
  /** The shard's range before these entries, if the caller holds it; otherwise read from its stored descriptor. */
  readonly range?: ShardRange;
  /** The shard's freeze for a merge before these entries (null: none), if the caller holds it; otherwise read from the store. */
  readonly frozen?: FrozenRange | null;
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
  /** Shards a prepareMerge froze. */
  readonly frozen: Map<GroupId, FrozenRange>;
  /** Shards a rollbackMerge unfroze (after any freeze in the same apply). */
  readonly unfrozen: Set<GroupId>;
  /** Merges applied: the target took the source in (the source's replica here is to be destroyed, its data kept). */
  readonly merged: readonly { readonly target: GroupId; readonly source: GroupId }[];
}

/** An apply split around a caller's transaction (see KvStateMachine.stage). */
export interface StagedApply {
  readonly isEmpty: boolean;
  /** Writes the data, applied indexes, changed ranges and split-created shards; call inside a write transaction, once. */
  write(): ApplyOutcome;
  /** Updates the in-memory applied indexes; call after that transaction committed. */
  committed(): void;
}

export type { StoredValue } from './data-reads.js';

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
        const frozenNow = new Map<GroupId, FrozenRange>();
        const unfrozen = new Set<GroupId>();
        const merged: { target: GroupId; source: GroupId }[] = [];
        for (const b of batches) {
          if (b.entries.length === 0) continue;
          const shardResults = new Map<LogIndex, EntryResult>();
          results.set(b.shardId, shardResults);
          const before = b.range ?? decodeShardRange(b.shardId, this.store.descriptor(b.shardId));
          let range = before;
          let conf = this.store.shardState(b.shardId).confState;
          let frozen = b.frozen === undefined ? decodeFrozen(b.shardId, this.store.frozen(b.shardId)) : (b.frozen ?? undefined);
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
                batchResults.push(
                  frozen !== undefined
                    ? frozenRefusal(b.shardId, frozen)
                    : command.op === 'put' || command.op === 'delete'
                      ? this.applyWrite(e.index, command, range, delta)
                      : { ok: false, code: 'COMMAND_INVALID', reason: `a ${command.op} cannot be batched` },
                );
              }
              shardResults.set(e.index, batchResults);
              continue;
            }
            const command = decodeCommand(e.index, e.data);
            if (command.op === 'prepareMerge') {
              const refused = prepareMergeRefusal(command, b.shardId, range, conf, frozen);
              if (refused !== undefined) {
                shardResults.set(e.index, refused);
                continue;
              }
              range = { ...range, epoch: range.epoch + 1 };
              frozen = { targetShardId: command.targetShardId, index: e.index, term: e.term, epoch: range.epoch };
              this.store.writeFrozen(b.shardId, encodeFrozen(frozen));
              frozenNow.set(b.shardId, frozen);
              unfrozen.delete(b.shardId);
              shardResults.set(e.index, { ok: true, version: 0, frozen });
            } else if (command.op === 'rollbackMerge') {
              const refused = rollbackMergeRefusal(command, b.shardId, range, frozen);
              if (refused !== undefined) {
                shardResults.set(e.index, refused);
                continue;
              }
              range = { ...range, epoch: range.epoch + 1 };
              frozen = undefined;
              this.store.writeFrozen(b.shardId, undefined);
              unfrozen.add(b.shardId);
              frozenNow.delete(b.shardId);
              shardResults.set(e.index, { ok: true, version: 0, unfrozen: { epoch: range.epoch } });
            } else if (frozen !== undefined) {
              // Frozen: its data is final as of the freeze, for the target to take in.
              shardResults.set(e.index, frozenRefusal(b.shardId, frozen));
            } else if (command.op === 'fenceMerge') {
              const refused = fenceMergeRefusal(command, range);
              if (refused !== undefined) {
                shardResults.set(e.index, refused);
                continue;
              }
              range = { ...range, epoch: range.epoch + 1 };
              shardResults.set(e.index, { ok: true, version: 0, fenced: { epoch: range.epoch } });
            } else if (command.op === 'commitMerge') {
              const outcome = this.applyCommitMerge(b.shardId, command, range, conf);
              shardResults.set(e.index, outcome.result);
              if (outcome.result.ok) merged.push({ target: b.shardId, source: command.sourceShardId as GroupId });
              range = outcome.range;
            } else if (command.op === 'split') {
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
        return { results, ranges, created, sizes, frozen: frozenNow, unfrozen, merged };
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

  /**
   * A merge's commit on the target (kv/merge.ts): refused from the target's
   * own state alike everywhere, else the source's replica here must have
   * applied its freeze — the core held this apply until it did
   * (ShardCore's merge gate) — and the range now ends where the source
   * ended. Nothing is copied: both replicas' data is this store's.
   */
  private applyCommitMerge(shardId: GroupId, c: CommitMergeCommand, range: ShardRange, conf: ConfState): { result: KvResult; range: ShardRange } {
    const refused = commitMergeRefusal(c, shardId, range, conf, undefined);
    if (refused !== undefined) return { result: refused, range };
    const source = c.sourceShardId as GroupId;
    assert(
      this.store.hasShard(source) &&
        sourceCaughtUp(c, shardId, range.end, {
          range: decodeShardRange(source, this.store.descriptor(source)),
          frozen: decodeFrozen(source, this.store.frozen(source)),
          applied: this.store.shardState(source).applied,
        }),
      () => `shard ${shardId}: merge of shard ${source} applied before that shard's replica here caught up to its freeze ${c.freezeIndex}`,
    );
    const merged = mergedRange(range, c);
    return { result: { ok: true, version: 0, merged: { shardId, start: merged.start, end: merged.end, epoch: merged.epoch, sourceShardId: source } }, range: merged };
  }

  /** A write command: put, delete, atomic batch or range delete. */
  private applyCommand(index: LogIndex, command: Exclude<KvCommand, RangeCommand>, range: ShardRange, delta: SizeDelta): KvResult {
    if (command.op === 'put' || command.op === 'delete') return this.applyWrite(index, command, range, delta);
    const refused = refusal(command, range);
    if (refused !== undefined) return refused;
    return command.op === 'atomicBatch' ? this.applyAtomicBatch(index, command, delta) : this.applyDeleteRange(command, delta);
  }

  private applyWrite(index: LogIndex, command: PutCommand | DeleteCommand, range: ShardRange, delta: SizeDelta): KvResult {
    const refused = refusal(command, range);
    if (refused !== undefined) return refused;
    const key = asBuffer(command.key);
    const current = this.get(key);
    const currentVersion = current?.version ?? 0;
    if (command.ifVersion !== undefined && command.ifVersion !== currentVersion) {
      return { ok: false, code: 'VERSION_MISMATCH', currentVersion };
    }
    if (command.op === 'put') {
      const version = Math.max(currentVersion + 1, index);
      this.writeRecord(key, current, { value: command.value, version, contentType: command.contentType }, delta);
      return { ok: true, version, created: current === undefined };
    }
    if (current !== undefined) this.writeRecord(key, current, undefined, delta);
    return { ok: true, version: 0 };
  }

  /**
   * All ops or none: each op is checked against the key as the ops before
   * it left it, on a copy in memory (the apply transaction is shared with
   * other entries and cannot be rolled back alone); only when every
   * condition held are the records written. A put's version follows the
   * rule of a single put, as if the ops were entries in a row at `index`.
   */
  private applyAtomicBatch(index: LogIndex, command: AtomicBatchCommand, delta: SizeDelta): KvResult {
    /** By the key's bytes as latin1: each key's record before the batch, and after the ops so far (undefined: absent). */
    const before = new Map<string, { key: Buffer; record: StoredValue | undefined }>();
    const after = new Map<string, { value: Uint8Array; version: number; contentType: string | undefined } | undefined>();
    const versions: number[] = [];
    for (const [opIndex, op] of command.ops.entries()) {
      const key = asBuffer(op.key);
      const id = key.toString('latin1');
      if (!before.has(id)) before.set(id, { key, record: this.get(key) });
      const current = after.has(id) ? after.get(id) : before.get(id)!.record;
      const currentVersion = current?.version ?? 0;
      if (op.ifVersion !== undefined && op.ifVersion !== currentVersion) return { ok: false, code: 'VERSION_MISMATCH', currentVersion, opIndex };
      if (op.op === 'put') {
        const version = Math.max(currentVersion + 1, index);
        after.set(id, { value: op.value, version, contentType: op.contentType });
        versions.push(version);
      } else {
        after.set(id, undefined);
        versions.push(0);
      }
    }
    for (const [id, record] of after) {
      const { key, record: previous } = before.get(id)!;
      if (record === undefined && previous === undefined) continue;
      this.writeRecord(key, previous, record, delta);
    }
    return { ok: true, version: 0, versions };
  }

  /**
   * Removes every key of [start, end) (the range holds the whole span,
   * checked by the caller) in this apply's transaction. The work is bounded
   * by the range's size, which the placement driver keeps under its split
   * threshold (splitSizeBytes); an embedded store that never splits
   * deletes as many keys as the span holds.
   */
  private applyDeleteRange(command: DeleteRangeCommand, delta: SizeDelta): KvResult {
    let deletedCount = 0;
    const span = { start: asBuffer(command.key), ...(command.end === null ? {} : { end: asBuffer(command.end) }) };
    for (const { key, value } of this.store.data.getRange(span)) {
      const current = decodeStoredValue(key, value);
      this.store.data.removeSync(key);
      delta.keyCount--;
      delta.sizeBytes -= key.byteLength + current.value.byteLength;
      deletedCount++;
    }
    return { ok: true, version: 0, deletedCount };
  }

  /** Replaces `key`'s record `current` by `next` (undefined: deletes it), keeping the size delta. */
  private writeRecord(key: Buffer, current: StoredValue | undefined, next: { value: Uint8Array; version: number; contentType: string | undefined } | undefined, delta: SizeDelta): void {
    if (next === undefined) {
      if (current === undefined) return;
      this.store.data.removeSync(key);
      delta.keyCount--;
      delta.sizeBytes -= key.byteLength + current.value.byteLength;
      return;
    }
    this.store.data.putSync(key, next.contentType === undefined ? [next.version, next.value] : [next.version, next.value, next.contentType]);
    if (current === undefined) {
      delta.keyCount++;
      delta.sizeBytes += key.byteLength + next.value.byteLength;
    } else {
      delta.sizeBytes += next.value.byteLength - current.value.byteLength;
    }
  }

  get(key: Uint8Array): StoredValue | undefined {
    return readStored(this.store.data, key);
  }

  /** A scan request's records (see data-reads.ts readSpan). */
  readSpan(span: Parameters<typeof readSpan>[1]): ReturnType<typeof readSpan> {
    return readSpan(this.store.data, span);
  }

  /** Keys in [start, end) in order (see data-reads.ts scanStored). */
  scan(options: ScanOptions): Generator<{ key: Buffer; value: Buffer; version: number }> {
    return scanStored(this.store.data, options);
  }
}

/**
 * Why a write is refused, alike on every replica, or undefined: invalid
 * (validateCommand), or (in part) outside the range as it is now — proposed
 * before a split that applied first, so the key belongs to the other half:
 * the client retries there.
 */
function refusal(command: Exclude<KvCommand, RangeCommand>, range: ShardRange): KvResult | undefined {
  const invalid = validateCommand(command);
  if (invalid !== undefined) return { ok: false, code: 'COMMAND_INVALID', reason: invalid };
  const outside = commandOutsideRange(range, command);
  if (outside === undefined) return undefined;
  const what = outside.end === undefined ? `key ${hexKey(outside.key)}` : `span [${hexKey(outside.key)}, ${hexKey(outside.end)})`;
  return { ok: false, code: 'KEY_OUT_OF_RANGE', reason: `${what} is outside ${describeRange(range)}` };
}

function frozenRefusal(shardId: GroupId, frozen: FrozenRange): KvResult {
  return { ok: false, code: 'RANGE_MERGING', reason: `shard ${shardId} is frozen from index ${frozen.index} for a merge into shard ${frozen.targetShardId}` };
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


function asBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
