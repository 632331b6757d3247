import { assert, type ConfState, type Entry, type GroupId, type LogIndex } from '@flotilla/core';
import { encodeConfState } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';
import type { NodeStore } from '../storage/node-store.js';
import { decodeCommand, validateCommand, type KvResult } from './command.js';

/** One shard's committed entries to apply, and its configuration afterwards if a conf change was among them. */
export interface ApplyBatch {
  readonly shardId: GroupId;
  readonly entries: readonly Entry[];
  readonly confState?: ConfState | undefined;
}

/** What applying produced: a result per normal entry with a command (keyed by index). */
export type ApplyResults = Map<GroupId, Map<LogIndex, KvResult>>;

/** An apply split around a caller's transaction (see KvStateMachine.stage). */
export interface StagedApply {
  readonly isEmpty: boolean;
  /** Writes the data and applied indexes; call inside a write transaction, once. */
  write(): ApplyResults;
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
  constructor(private readonly store: NodeStore) {}

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
      results = staged.write();
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
    return {
      isEmpty: applied.size === 0,
      write: () => {
        const results: ApplyResults = new Map();
        for (const b of batches) {
          if (b.entries.length === 0) continue;
          const shardResults = new Map<LogIndex, KvResult>();
          results.set(b.shardId, shardResults);
          for (const e of b.entries) {
            if (e.type !== 'normal' || e.data.byteLength === 0) continue;
            shardResults.set(e.index, this.applyCommand(e));
          }
          const done = applied.get(b.shardId)!;
          this.store.meta.putSync([b.shardId, 'applied'], done.index);
          if (done.confState !== undefined) this.store.meta.putSync([b.shardId, 'conf'], encodeConfState(done.confState));
        }
        return results;
      },
      committed: () => {
        for (const [shardId, done] of applied) this.store.noteApplied(shardId, done.index, done.confState);
      },
    };
  }

  private applyCommand(e: Entry): KvResult {
    const command = decodeCommand(e.index, e.data);
    const invalid = validateCommand(command);
    if (invalid !== undefined) return { ok: false, code: 'COMMAND_INVALID', reason: invalid };
    const key = Buffer.from(command.key.buffer, command.key.byteOffset, command.key.byteLength);
    const current = this.readRaw(key);
    const currentVersion = current?.version ?? 0;
    if (command.ifVersion !== undefined && command.ifVersion !== currentVersion) {
      return { ok: false, code: 'VERSION_MISMATCH', currentVersion };
    }
    if (command.op === 'put') {
      const version = Math.max(currentVersion + 1, e.index);
      this.store.data.putSync(key, [version, command.value]);
      return { ok: true, version };
    }
    if (current !== undefined) this.store.data.removeSync(key);
    return { ok: true, version: 0 };
  }

  private readRaw(key: Buffer): StoredValue | undefined {
    const raw = this.store.data.get(key);
    return raw === undefined ? undefined : decodeStoredValue(key, raw);
  }

  get(key: Uint8Array): StoredValue | undefined {
    return this.readRaw(Buffer.from(key.buffer, key.byteOffset, key.byteLength));
  }

  /** Keys in [start, end) in order, at most `limit`; `end` undefined means to the end of the key space. */
  *scan(options: { start: Uint8Array; end?: Uint8Array | undefined; limit: number }): Generator<{ key: Buffer; value: Buffer; version: number }> {
    const range = this.store.data.getRange({
      start: Buffer.from(options.start),
      ...(options.end === undefined ? {} : { end: Buffer.from(options.end) }),
      limit: options.limit,
    });
    for (const { key, value } of range) {
      const stored = decodeStoredValue(key, value);
      yield { key, value: stored.value, version: stored.version };
    }
  }
}

/** A data record as read back from LMDB: [version, bytes], checked so damage fails loudly. */
function decodeStoredValue(key: Buffer, raw: unknown): StoredValue {
  if (!Array.isArray(raw) || raw.length !== 2 || !Number.isSafeInteger(raw[0]) || (raw[0] as number) < 1 || !(raw[1] instanceof Uint8Array)) {
    throw new CorruptRecordError(`data record for key ${key.toString('hex')} is malformed`);
  }
  return { version: raw[0] as number, value: raw[1] as Buffer };
}
