import { assert } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { InvalidCommandError } from '../errors.js';
import { KEY_BYTES_MAX, SNAPSHOT_PAIR_BYTES_MAX, SNAPSHOT_PAIR_OVERHEAD_BYTES } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';

export { KEY_BYTES_MAX };
/** The largest value whose pair still fits one snapshot chunk: a range with a bigger one could never be snapshotted. */
export const VALUE_BYTES_MAX = SNAPSHOT_PAIR_BYTES_MAX - KEY_BYTES_MAX - SNAPSHOT_PAIR_OVERHEAD_BYTES;
assert(VALUE_BYTES_MAX >= 512 * 1024, `VALUE_BYTES_MAX ${VALUE_BYTES_MAX} fell below 512 KiB: the snapshot chunk limit shrank`);

/**
 * A write to a range, as carried in a Raft entry. `ifVersion` makes it
 * conditional: 0 means "the key must not exist", n > 0 means "the key's
 * current version must be n"; absent means unconditional.
 */
export type KvCommand =
  | { readonly op: 'put'; readonly key: Uint8Array; readonly value: Uint8Array; readonly ifVersion?: number }
  | { readonly op: 'delete'; readonly key: Uint8Array; readonly ifVersion?: number }
  | SplitCommand;

/**
 * Splits the range at `key` (it becomes the right half's start) if its epoch
 * is still `epoch`: the range keeps [start, key), a new shard `newShardId`
 * takes [key, end) on every replica that applies it (see state-machine.ts).
 */
export interface SplitCommand {
  readonly op: 'split';
  readonly key: Uint8Array;
  readonly newShardId: number;
  readonly epoch: number;
}

/**
 * Every shard's log starts as if restored from a snapshot at this index and
 * term, the same on every replica: a range created at bootstrap and a
 * split's right half alike (TiKV's RAFT_INIT_LOG_INDEX). A replica added
 * later starts empty, below the leader's first index, so it is caught up by
 * snapshot — the only way it learns the range and the configuration, which
 * are in no log entry.
 */
export const INITIAL_LOG_INDEX = 5;
export const INITIAL_LOG_TERM = 5;

/** Both halves after a split, as the state machine applied it. */
export interface SplitOutcome {
  readonly left: { readonly shardId: number; readonly start: Uint8Array; readonly end: Uint8Array; readonly epoch: number };
  readonly right: { readonly shardId: number; readonly start: Uint8Array; readonly end: Uint8Array | null; readonly epoch: number };
}

export interface MembershipOutcome {
  readonly epoch: number;
  readonly voters: readonly number[];
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
}

/**
 * Asks every replica to hash its range's data exactly as of this entry's
 * index (kv/consistency.ts): not a write, and not a KvCommand — nothing
 * outside the consistency checker proposes or decodes one. `id` is the
 * proposer's name for the check (a positive integer).
 */
export interface ChecksumCommand {
  readonly op: 'checksum';
  readonly id: number;
}

/** A checksum entry as the state machine applied it: where, and the range and replicas it covers as of that index. */
export interface ChecksumApplied {
  readonly id: number;
  readonly index: number;
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
  readonly epoch: number;
  /** Every replica holding the range's data at that index: voters (incoming and outgoing) and learners. */
  readonly replicas: readonly number[];
}

/** The outcome of applying one command, reported to whoever proposed it. */
export type KvResult =
  | { readonly ok: true; readonly version: number }
  | { readonly ok: true; readonly version: 0; readonly split: SplitOutcome }
  /** A checksum entry applied (see ChecksumCommand); each replica hashes its data as of `checksum.index`. */
  | { readonly ok: true; readonly version: 0; readonly checksum: ChecksumApplied }
  /** A membership change applied: the range's epoch and configuration after it. */
  | { readonly ok: true; readonly version: 0; readonly membership: MembershipOutcome }
  | { readonly ok: false; readonly code: 'VERSION_MISMATCH'; readonly currentVersion: number }
  /** The key (or split point) is outside the range as it was when the entry applied (a split got there first). */
  | { readonly ok: false; readonly code: 'KEY_OUT_OF_RANGE'; readonly reason: string }
  /** A split proposed against an epoch the range has left behind. */
  | { readonly ok: false; readonly code: 'EPOCH_MISMATCH'; readonly currentEpoch: number }
  /** A well-formed command the store cannot hold (see validateCommand); refused the same way on every replica. */
  | { readonly ok: false; readonly code: 'COMMAND_INVALID'; readonly reason: string };

/**
 * Why LMDB or a snapshot could not hold this command, or undefined if it can.
 * Checked when proposing (encodeCommand) and again when applying, so a command
 * that slipped past the proposer is refused deterministically instead of
 * failing the apply transaction on every replica forever.
 */
export function validateCommand(c: KvCommand): string | undefined {
  if (c.key.byteLength === 0) return 'key is empty';
  if (c.key.byteLength > KEY_BYTES_MAX) return `key of ${c.key.byteLength} B exceeds ${KEY_BYTES_MAX} B`;
  if (c.op === 'put' && c.value.byteLength > VALUE_BYTES_MAX) return `value of ${c.value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`;
  if (c.op === 'split') {
    if (!Number.isSafeInteger(c.newShardId) || c.newShardId <= 0) return `split's new shard id ${c.newShardId} is not a positive integer`;
    if (!Number.isSafeInteger(c.epoch) || c.epoch < 1) return `split epoch ${c.epoch} is not a positive integer`;
  }
  return undefined;
}

// Wire form: [opcode, key, value|null, ifVersion|-1], a split [OP_SPLIT, key, newShardId, epoch], a checksum
// [OP_CHECKSUM, empty key, id, -1], a batch [OP_BATCH, empty key, [command bytes...], -1]. Plain arrays: no
// field names per entry.
const OP_PUT = 1;
const OP_DELETE = 2;
const OP_SPLIT = 3;
const OP_CHECKSUM = 4;
const OP_BATCH = 5;
/**
 * Writes one batch entry carries at most. The leader folds the writes a
 * shard receives in one turn of its core into one entry (ShardRequests):
 * one log record, one entry to replicate and decode, instead of one each.
 */
export const BATCH_COMMAND_COUNT_MAX = 256;
/** Bytes of commands one batch entry carries at most (a single larger command goes alone). */
export const BATCH_BYTES_MAX = 256 * 1024;
/** msgpack's fixarray-of-4 header: every command's first byte (the opcode, a positive fixint, is the second). */
const TUPLE_4_HEADER = 0x94;
const packr = new Packr({ useRecords: false, moreTypes: false });

/** Encodes a command for proposal; throws InvalidCommandError for one the store cannot hold. */
export function encodeCommand(c: KvCommand): Uint8Array {
  const invalid = validateCommand(c);
  if (invalid !== undefined) throw new InvalidCommandError(invalid);
  if (c.op === 'split') return packr.pack([OP_SPLIT, c.key, c.newShardId, c.epoch]);
  return packr.pack(c.op === 'put' ? [OP_PUT, c.key, c.value, c.ifVersion ?? -1] : [OP_DELETE, c.key, null, c.ifVersion ?? -1]);
}

/** Encodes a checksum entry; throws InvalidCommandError for an id that is not a positive integer. */
export function encodeChecksumCommand(c: ChecksumCommand): Uint8Array {
  if (!Number.isSafeInteger(c.id) || c.id <= 0) throw new InvalidCommandError(`checksum id ${c.id} is not a positive integer`);
  return packr.pack([OP_CHECKSUM, new Uint8Array(0), c.id, -1]);
}

/**
 * Whether an entry's payload is a checksum entry, from its first two bytes
 * (the apply path asks this of every entry before decoding it): msgpack
 * writes the 4-tuple header and then the opcode as one byte, and no other
 * opcode is 4.
 */
export function isChecksumCommand(data: Uint8Array): boolean {
  return data.byteLength >= 2 && data[0] === TUPLE_4_HEADER && data[1] === OP_CHECKSUM;
}

/** Decodes a checksum entry (isChecksumCommand was true); a malformed id is refused at apply, alike on every replica. */
export function decodeChecksumCommand(index: number, data: Uint8Array): ChecksumCommand | { readonly invalid: string } {
  const raw = unpackTuple(index, data, 'checksum command', OP_CHECKSUM);
  const id = raw[2];
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) return { invalid: `checksum id ${String(id)} is not a positive integer` };
  return { op: 'checksum', id };
}

/**
 * Encodes puts and deletes, each already encoded (encodeCommand), as one
 * entry. Applied in order, each with its own result, exactly as if each had
 * been an entry of its own at the batch's index.
 */
export function encodeBatchCommand(commands: readonly Uint8Array[]): Uint8Array {
  assert(commands.length > 0, 'a batch entry carries at least one command');
  return packr.pack([OP_BATCH, new Uint8Array(0), commands, -1]);
}

/** Whether an entry's payload is a batch entry (see isChecksumCommand for why two bytes tell). */
export function isBatchCommand(data: Uint8Array): boolean {
  return data.byteLength >= 2 && data[0] === TUPLE_4_HEADER && data[1] === OP_BATCH;
}

/** The commands of a batch entry (isBatchCommand was true), each to decode with decodeCommand. */
export function decodeBatchCommand(index: number, data: Uint8Array): readonly Uint8Array[] {
  const commands = unpackTuple(index, data, 'batch command', OP_BATCH)[2];
  if (!Array.isArray(commands) || commands.length === 0 || !commands.every((c) => c instanceof Uint8Array)) {
    throw new CorruptRecordError(`entry ${index}: batch command does not carry a list of encoded commands`);
  }
  return commands as Uint8Array[];
}

export function decodeCommand(index: number, data: Uint8Array): KvCommand {
  const [op, key, value, ifVersion] = unpackTuple(index, data, 'command');
  if (!(key instanceof Uint8Array)) throw new CorruptRecordError(`entry ${index}: command key is not bytes`);
  if (op === OP_SPLIT) {
    // Range checks (positive ids and epochs) are validateCommand's: a bad one is refused at apply, not fatal.
    if (typeof value !== 'number' || typeof ifVersion !== 'number') throw new CorruptRecordError(`entry ${index}: split without numeric shard id and epoch`);
    return { op: 'split', key, newShardId: value, epoch: ifVersion };
  }
  if (typeof ifVersion !== 'number' || !Number.isSafeInteger(ifVersion) || ifVersion < -1) {
    throw new CorruptRecordError(`entry ${index}: command ifVersion ${String(ifVersion)}`);
  }
  const condition = ifVersion === -1 ? {} : { ifVersion };
  if (op === OP_PUT) {
    if (!(value instanceof Uint8Array)) throw new CorruptRecordError(`entry ${index}: put without a byte value`);
    return { op: 'put', key, value, ...condition };
  }
  if (op === OP_DELETE) return { op: 'delete', key, ...condition };
  if (op === OP_CHECKSUM) throw new CorruptRecordError(`entry ${index}: a checksum entry is not a KV command (decodeChecksumCommand)`);
  if (op === OP_BATCH) throw new CorruptRecordError(`entry ${index}: a batch entry is not one KV command (decodeBatchCommand)`);
  throw new CorruptRecordError(`entry ${index}: unknown opcode ${String(op)}`);
}

/** An entry's payload as its 4-tuple (with opcode `op`, if given); CorruptRecordError naming `what` otherwise. */
function unpackTuple(index: number, data: Uint8Array, what: string, op?: number): unknown[] {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (err) {
    throw new CorruptRecordError(`entry ${index}: undecodable ${what} (${(err as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length !== 4 || (op !== undefined && raw[0] !== op)) throw new CorruptRecordError(`entry ${index}: ${what} is not a 4-tuple`);
  return raw as unknown[];
}
