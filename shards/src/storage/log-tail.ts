import type { Entry, GroupId, HardState } from '@flotilla/core';
import { decodeEntry, decodeHardState, encodeEntry, encodeHardState, type StoredEntry, type StoredHardState } from './codec.js';
import { CorruptRecordError } from './errors.js';

/**
 * The node's log tail (ARCHITECTURE.md, storage, "The log tail"): each group
 * commit writes every shard's new entries and hard state as one record under
 * one sequence number in the `tail` sub-database, so a commit dirties a few
 * pages in one place whatever the number of shards it touches. A checkpoint,
 * inside a later group commit, moves what the tail holds into the per-shard
 * `log` and `meta` records and deletes the records it covered.
 *
 * A record is a list of shard writes, each [shardId, hard state or null,
 * index of the first entry, entries]. Replaying records in sequence order
 * rebuilds what the group commits wrote: a write's entries replace every
 * entry from their first index on, its hard state replaces the one before.
 */
export type TailShardWrite = [shardId: number, hard: StoredHardState | null, first: number, entries: StoredEntry[]];

/** Stored overhead per entry besides its payload, for the tail's size estimate (msgpack array and numbers). */
const ENTRY_OVERHEAD_BYTES = 16;

export function encodeTailWrite(shardId: GroupId, hardState: HardState | undefined, entries: readonly Entry[]): TailShardWrite {
  return [shardId, hardState === undefined ? null : encodeHardState(hardState), entries.length === 0 ? 0 : entries[0]!.index, entries.map(encodeEntry)];
}

/** Payload bytes of entries: what decides a direct write (node-store.ts) and, with tailWriteBytes, the tail's size. */
export function payloadBytes(entries: readonly Entry[]): number {
  let bytes = 0;
  for (const e of entries) bytes += e.data.byteLength;
  return bytes;
}

/** Roughly what a shard write adds to the tail (payloads plus a fixed overhead): what bounds it between checkpoints. */
export function tailWriteBytes(entryCount: number, payload: number): number {
  return payload + (entryCount + 1) * ENTRY_OVERHEAD_BYTES;
}

export interface DecodedTailWrite {
  readonly shardId: GroupId;
  readonly hardState: HardState | undefined;
  readonly entries: Entry[];
}

/** One stored record, checked: a malformed one is a CorruptRecordError naming its sequence number. */
export function decodeTailRecord(seq: number, raw: unknown): DecodedTailWrite[] {
  if (!Array.isArray(raw)) throw new CorruptRecordError(`log tail record ${seq} is not a list`);
  return raw.map((w: unknown) => {
    if (!Array.isArray(w) || w.length !== 4) throw new CorruptRecordError(`log tail record ${seq} holds a malformed shard write`);
    const [shardId, hard, first, entries] = w as unknown[];
    if (!Number.isSafeInteger(shardId) || (shardId as number) <= 0) throw new CorruptRecordError(`log tail record ${seq} names shard ${String(shardId)}`);
    if (!Number.isSafeInteger(first) || (first as number) < 0 || !Array.isArray(entries)) {
      throw new CorruptRecordError(`log tail record ${seq}: shard ${String(shardId)} entries are malformed`);
    }
    return {
      shardId: shardId as GroupId,
      hardState: hard === null ? undefined : decodeHardState(hard),
      entries: entries.map((e: unknown, i) => decodeEntry((first as number) + i, e)),
    };
  });
}
