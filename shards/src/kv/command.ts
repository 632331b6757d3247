import { assert } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { InvalidCommandError } from '../errors.js';
import { KEY_BYTES_MAX, SNAPSHOT_PAIR_BYTES_MAX, SNAPSHOT_PAIR_OVERHEAD_BYTES } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';

export { KEY_BYTES_MAX };
/**
 * Characters of a value's content type at most (the HTTP API's
 * Content-Type, stored with the value). Media types in the IANA registry
 * are well under 100; parameters (charset, boundary) fit besides.
 */
export const CONTENT_TYPE_BYTES_MAX = 255;
/** A content type's msgpack framing in a stored record or a snapshot pair: str8 (2 B) for up to 255 characters. */
export const CONTENT_TYPE_OVERHEAD_BYTES = 2;
/**
 * The largest value whose pair still fits one snapshot chunk, with the
 * longest content type beside it: a range with a bigger one could never be
 * snapshotted.
 */
export const VALUE_BYTES_MAX = SNAPSHOT_PAIR_BYTES_MAX - KEY_BYTES_MAX - SNAPSHOT_PAIR_OVERHEAD_BYTES - CONTENT_TYPE_BYTES_MAX - CONTENT_TYPE_OVERHEAD_BYTES;
assert(VALUE_BYTES_MAX >= 512 * 1024, `VALUE_BYTES_MAX ${VALUE_BYTES_MAX} fell below 512 KiB: the snapshot chunk limit shrank`);

/**
 * A write to a range, as carried in a Raft entry. `ifVersion` makes a put
 * or delete conditional: 0 means "the key must not exist", n > 0 means "the
 * key's current version must be n"; absent means unconditional. Every
 * command names `key`, the first key it touches: the range it is proposed
 * to must hold it (and, for the atomic batch and the range delete, every
 * other key it touches, see commandOutsideRange).
 */
export type KvCommand = PutCommand | DeleteCommand | AtomicBatchCommand | DeleteRangeCommand | SplitCommand | PrepareMergeCommand | CommitMergeCommand | FenceMergeCommand | RollbackMergeCommand;

/** The commands that change a range's shape or epoch rather than its data. */
export type RangeCommand = SplitCommand | PrepareMergeCommand | CommitMergeCommand | FenceMergeCommand | RollbackMergeCommand;

/** Sets `key` to `value`; `contentType` (a media type, stored with the value) is the HTTP API's. */
export interface PutCommand {
  readonly op: 'put';
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly ifVersion?: number;
  readonly contentType?: string;
}

export interface DeleteCommand {
  readonly op: 'delete';
  readonly key: Uint8Array;
  readonly ifVersion?: number;
}

/**
 * Puts and deletes of keys of one range, applied all or none: each op's
 * `ifVersion` is checked against the key as the ops before it in the batch
 * left it, and if any fails nothing is written (VERSION_MISMATCH names the
 * op). One entry, so every replica applies the whole batch at one index.
 * `key` is the first op's.
 */
export interface AtomicBatchCommand {
  readonly op: 'atomicBatch';
  readonly key: Uint8Array;
  readonly ops: readonly (PutCommand | DeleteCommand)[];
}

/**
 * Deletes every key in [key, end) (`end` null: to the end of the key
 * space) in one entry. The span must lie within the range when the entry
 * applies (KEY_OUT_OF_RANGE otherwise, and nothing is deleted): a split
 * applied first moved part of it away, and the proposer deletes the rest
 * where it went.
 */
export interface DeleteRangeCommand {
  readonly op: 'deleteRange';
  readonly key: Uint8Array;
  readonly end: Uint8Array | null;
}

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
 * Freezes the range (the merge's source, the right one of two neighbours)
 * for a merge into its left neighbour `targetShardId`, if it is still at
 * `epoch` with exactly `voters` (sorted) as voters — the target's, which a
 * merge requires — and no learner or membership change. From the index it
 * applies at (the freeze index) the range refuses every write, split and
 * read on every replica (RANGE_MERGING): its data stays as of that index,
 * for the target's commitMerge to take in. `key` is the range's start.
 * Proposed as a membership fence (RawNode.proposeConfFence), so no
 * membership change follows it in the log.
 */
export interface PrepareMergeCommand {
  readonly op: 'prepareMerge';
  readonly key: Uint8Array;
  readonly targetShardId: number;
  readonly epoch: number;
  readonly voters: readonly number[];
}

/**
 * Takes the frozen right neighbour `sourceShardId` into this range (the
 * merge's target), if this range is still at `epoch`, ends where the
 * source starts, and has exactly `voters` (sorted) as voters and no learner
 * or membership change. The range then ends at `sourceEnd`; its epoch
 * becomes one past both ranges' (`sourceEpoch` is the source's after its
 * freeze). On each node, applying waits until the node's replica of the
 * source applied its freeze at `freezeIndex` (both share a store: user
 * data is keyed by key, so nothing is copied); that replica is then
 * destroyed, its data kept. `key` is this range's start.
 */
export interface CommitMergeCommand {
  readonly op: 'commitMerge';
  readonly key: Uint8Array;
  readonly epoch: number;
  readonly sourceShardId: number;
  readonly sourceEnd: Uint8Array | null;
  readonly sourceEpoch: number;
  readonly freezeIndex: number;
  /** The freeze entry's term: with its index, the proof that the source committed it (RawNode.commitKnown). */
  readonly freezeTerm: number;
  readonly voters: readonly number[];
}

/**
 * Moves a merge target's epoch on (if still `epoch`), so that no
 * commitMerge planned against that epoch can apply any more: the first
 * half of rolling a merge back (kv/merge.ts). `key` is the range's start.
 */
export interface FenceMergeCommand {
  readonly op: 'fenceMerge';
  readonly key: Uint8Array;
  readonly epoch: number;
}

/**
 * Unfreezes a range frozen for a merge into `targetShardId` at `epoch`
 * (its epoch since the freeze): the second half of a rollback, proposed
 * only once the target was fenced without taking it in. `key` is the
 * range's start.
 */
export interface RollbackMergeCommand {
  readonly op: 'rollbackMerge';
  readonly key: Uint8Array;
  readonly epoch: number;
  readonly targetShardId: number;
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

/** A range's freeze for a merge, as applied and as stored with the replica. */
export interface FrozenRange {
  readonly targetShardId: number;
  /** The freeze's index: the range's data is final as of it. */
  readonly index: number;
  /** The freeze entry's term. */
  readonly term: number;
  /** The range's epoch after the freeze. */
  readonly epoch: number;
}

/** The target after a merge applied. */
export interface MergeOutcome {
  readonly shardId: number;
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
  readonly epoch: number;
  readonly sourceShardId: number;
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

/**
 * The outcome of applying one command, reported to whoever proposed it. A
 * put's `created` says the key did not exist before it.
 */
export type KvResult =
  | { readonly ok: true; readonly version: number; readonly created?: boolean }
  /** An atomic batch applied: each op's new version, in order (0 for a delete). */
  | { readonly ok: true; readonly version: 0; readonly versions: readonly number[] }
  /** A range delete applied: how many keys it removed. */
  | { readonly ok: true; readonly version: 0; readonly deletedCount: number }
  | { readonly ok: true; readonly version: 0; readonly split: SplitOutcome }
  /** A prepareMerge applied: the range is frozen from `index` at `epoch` (see PrepareMergeCommand). */
  | { readonly ok: true; readonly version: 0; readonly frozen: FrozenRange }
  /** A commitMerge applied: the range as it is now, with the source taken in. */
  | { readonly ok: true; readonly version: 0; readonly merged: MergeOutcome }
  /** A fenceMerge applied: the range's epoch now. */
  | { readonly ok: true; readonly version: 0; readonly fenced: { readonly epoch: number } }
  /** A rollbackMerge applied: the range serves again, at this epoch. */
  | { readonly ok: true; readonly version: 0; readonly unfrozen: { readonly epoch: number } }
  /** A checksum entry applied (see ChecksumCommand); each replica hashes its data as of `checksum.index`. */
  | { readonly ok: true; readonly version: 0; readonly checksum: ChecksumApplied }
  /** A membership change applied: the range's epoch and configuration after it. */
  | { readonly ok: true; readonly version: 0; readonly membership: MembershipOutcome }
  /** An ifVersion did not match; in an atomic batch `opIndex` is the op whose did (and nothing was written). */
  | { readonly ok: false; readonly code: 'VERSION_MISMATCH'; readonly currentVersion: number; readonly opIndex?: number }
  /** The key (or split point) is outside the range as it was when the entry applied (a split got there first). */
  | { readonly ok: false; readonly code: 'KEY_OUT_OF_RANGE'; readonly reason: string }
  /** The range is frozen for a merge (or an identical freeze is refused: already frozen); retried once merged, against the range that took it in. */
  | { readonly ok: false; readonly code: 'RANGE_MERGING'; readonly reason: string }
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
  switch (c.op) {
    case 'put':
      if (c.value.byteLength > VALUE_BYTES_MAX) return `value of ${c.value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`;
      return c.contentType === undefined ? undefined : invalidContentType(c.contentType);
    case 'delete':
      return undefined;
    case 'atomicBatch':
      return invalidAtomicBatch(c);
    case 'deleteRange':
      if (c.end !== null && c.end.byteLength > KEY_BYTES_MAX) return `range end of ${c.end.byteLength} B exceeds ${KEY_BYTES_MAX} B`;
      if (c.end !== null && Buffer.compare(c.key, c.end) >= 0) return `range start ${hex(c.key)} is not before its end ${hex(c.end)}`;
      return undefined;
    case 'split':
      if (!Number.isSafeInteger(c.newShardId) || c.newShardId <= 0) return `split's new shard id ${c.newShardId} is not a positive integer`;
      if (!Number.isSafeInteger(c.epoch) || c.epoch < 1) return `split epoch ${c.epoch} is not a positive integer`;
      return undefined;
    case 'prepareMerge':
      if (!isPositiveInteger(c.targetShardId)) return `merge target ${c.targetShardId} is not a positive integer`;
      if (!isPositiveInteger(c.epoch)) return `merge epoch ${c.epoch} is not a positive integer`;
      return invalidVoters(c.voters);
    case 'fenceMerge':
      return isPositiveInteger(c.epoch) ? undefined : `fence epoch ${c.epoch} is not a positive integer`;
    case 'rollbackMerge':
      if (!isPositiveInteger(c.targetShardId)) return `rollback target ${c.targetShardId} is not a positive integer`;
      return isPositiveInteger(c.epoch) ? undefined : `rollback epoch ${c.epoch} is not a positive integer`;
    case 'commitMerge':
      if (!isPositiveInteger(c.sourceShardId)) return `merge source ${c.sourceShardId} is not a positive integer`;
      if (!isPositiveInteger(c.epoch) || !isPositiveInteger(c.sourceEpoch)) return `merge epochs ${c.epoch}, ${c.sourceEpoch} are not positive integers`;
      if (!isPositiveInteger(c.freezeIndex) || !isPositiveInteger(c.freezeTerm)) return `merge freeze index ${c.freezeIndex} and term ${c.freezeTerm} are not positive integers`;
      if (c.sourceEnd !== null && c.sourceEnd.byteLength > KEY_BYTES_MAX) return `merge source end of ${c.sourceEnd.byteLength} B exceeds ${KEY_BYTES_MAX} B`;
      if (c.sourceEnd !== null && Buffer.compare(c.key, c.sourceEnd) >= 0) return `merge source end ${hex(c.sourceEnd)} is not past the range's start ${hex(c.key)}`;
      return invalidVoters(c.voters);
    default: {
      const never: never = c;
      return `unknown command ${JSON.stringify(never)}`;
    }
  }
}

/**
 * Ops of one atomic batch at most. With ATOMIC_BATCH_BYTES_MAX it keeps
 * the batch's entry within the largest entry the log is sized for (the
 * largest put: a key, a value and 1 KiB of framing; see options.ts), as
 * asserted below: each op costs at most 5 B of framing in the entry.
 */
export const ATOMIC_BATCH_OPS_MAX = 512;
/** Encoded bytes of an atomic batch's ops together at most (keys, values, content types and their framing). */
export const ATOMIC_BATCH_BYTES_MAX = VALUE_BYTES_MAX;
assert(ATOMIC_BATCH_BYTES_MAX + ATOMIC_BATCH_OPS_MAX * 5 + 16 <= KEY_BYTES_MAX + VALUE_BYTES_MAX + 1024, 'an atomic batch entry must fit the largest entry the log is sized for');

function isPositiveInteger(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
}

/** A merge's voters: node ids, ascending without repeats, at least one. */
function invalidVoters(voters: readonly number[]): string | undefined {
  if (!Array.isArray(voters) || voters.length === 0) return 'a merge names no voters';
  for (let i = 0; i < voters.length; i++) {
    if (!isPositiveInteger(voters[i])) return `merge voter ${String(voters[i])} is not a node id`;
    if (i > 0 && voters[i]! <= voters[i - 1]!) return 'merge voters are not ascending without repeats';
  }
  return undefined;
}

function invalidAtomicBatch(c: AtomicBatchCommand): string | undefined {
  if (c.ops.length === 0) return 'an atomic batch has no ops';
  if (c.ops.length > ATOMIC_BATCH_OPS_MAX) return `an atomic batch of ${c.ops.length} ops exceeds ${ATOMIC_BATCH_OPS_MAX}`;
  if (Buffer.compare(c.key, c.ops[0]!.key) !== 0) return "an atomic batch's key is not its first op's";
  let bytes = 0;
  for (const [i, op] of c.ops.entries()) {
    // Only plain puts and deletes: a nested batch or a split inside one has no meaning.
    if ((op.op as string) !== 'put' && (op.op as string) !== 'delete') return `op ${i} of an atomic batch is a ${String(op.op)}, not a put or delete`;
    const invalid = validateCommand(op);
    if (invalid !== undefined) return `op ${i} of an atomic batch: ${invalid}`;
    bytes += op.key.byteLength + (op.op === 'put' ? op.value.byteLength + (op.contentType?.length ?? 0) : 0) + 16;
  }
  if (bytes > ATOMIC_BATCH_BYTES_MAX) return `an atomic batch of ${bytes} B exceeds ${ATOMIC_BATCH_BYTES_MAX} B`;
  return undefined;
}

/**
 * Why a content type cannot be stored, or undefined: at most
 * CONTENT_TYPE_BYTES_MAX characters, each visible ASCII or a space (what a
 * media type with parameters is made of, RFC 9110 §8.3), and not empty.
 */
export function invalidContentType(contentType: string): string | undefined {
  if (typeof contentType !== 'string' || contentType.length === 0) return 'content type is empty';
  if (contentType.length > CONTENT_TYPE_BYTES_MAX) return `content type of ${contentType.length} characters exceeds ${CONTENT_TYPE_BYTES_MAX}`;
  if (!/^[\x20-\x7e]+$/.test(contentType)) return 'content type has a character that is not visible ASCII or a space';
  return undefined;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

// Wire form: [opcode, key, value|null, ifVersion|-1], a put with a content type [OP_PUT, key, value, ifVersion|-1,
// contentType], a split [OP_SPLIT, key, newShardId, epoch], a checksum [OP_CHECKSUM, empty key, id, -1], a batch
// [OP_BATCH, empty key, [command bytes...], -1], an atomic batch [OP_ATOMIC_BATCH, first key, [put or delete
// bytes...], -1], a range delete [OP_DELETE_RANGE, start, end|null, -1], a freeze [OP_PREPARE_MERGE, start, [target,
// epoch, voters], -1], a merge [OP_COMMIT_MERGE, start, [source, epoch, sourceEpoch, freezeIndex, freezeTerm,
// sourceEnd|null, voters], -1], a fence [OP_FENCE_MERGE, start, epoch, -1], a rollback [OP_ROLLBACK_MERGE, start,
// [target, epoch], -1]. Plain arrays: no field names per entry.
const OP_PUT = 1;
const OP_DELETE = 2;
const OP_SPLIT = 3;
const OP_CHECKSUM = 4;
const OP_BATCH = 5;
const OP_ATOMIC_BATCH = 6;
const OP_DELETE_RANGE = 7;
const OP_PREPARE_MERGE = 8;
const OP_COMMIT_MERGE = 9;
const OP_FENCE_MERGE = 10;
const OP_ROLLBACK_MERGE = 11;
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
  return encodeValid(c);
}

function encodeValid(c: KvCommand): Uint8Array {
  switch (c.op) {
    case 'split':
      return packr.pack([OP_SPLIT, c.key, c.newShardId, c.epoch]);
    case 'put':
      return packr.pack(c.contentType === undefined ? [OP_PUT, c.key, c.value, c.ifVersion ?? -1] : [OP_PUT, c.key, c.value, c.ifVersion ?? -1, c.contentType]);
    case 'delete':
      return packr.pack([OP_DELETE, c.key, null, c.ifVersion ?? -1]);
    case 'atomicBatch':
      return packr.pack([OP_ATOMIC_BATCH, c.key, c.ops.map(encodeValid), -1]);
    case 'deleteRange':
      return packr.pack([OP_DELETE_RANGE, c.key, c.end, -1]);
    case 'prepareMerge':
      return packr.pack([OP_PREPARE_MERGE, c.key, [c.targetShardId, c.epoch, [...c.voters]], -1]);
    case 'fenceMerge':
      return packr.pack([OP_FENCE_MERGE, c.key, c.epoch, -1]);
    case 'rollbackMerge':
      return packr.pack([OP_ROLLBACK_MERGE, c.key, [c.targetShardId, c.epoch], -1]);
    case 'commitMerge':
      return packr.pack([OP_COMMIT_MERGE, c.key, [c.sourceShardId, c.epoch, c.sourceEpoch, c.freezeIndex, c.freezeTerm, c.sourceEnd, [...c.voters]], -1]);
  }
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
  const [op, key, value, ifVersion, contentType] = unpackTuple(index, data, 'command');
  if (!(key instanceof Uint8Array)) throw new CorruptRecordError(`entry ${index}: command key is not bytes`);
  if (contentType !== undefined && (op !== OP_PUT || typeof contentType !== 'string')) throw new CorruptRecordError(`entry ${index}: command is not a 4-tuple`);
  if (op === OP_SPLIT) {
    // Range checks (positive ids and epochs) are validateCommand's: a bad one is refused at apply, not fatal.
    if (typeof value !== 'number' || typeof ifVersion !== 'number') throw new CorruptRecordError(`entry ${index}: split without numeric shard id and epoch`);
    return { op: 'split', key, newShardId: value, epoch: ifVersion };
  }
  if (op === OP_PREPARE_MERGE || op === OP_COMMIT_MERGE) return decodeMergeCommand(index, op, key, value, ifVersion);
  if (op === OP_FENCE_MERGE) {
    if (ifVersion !== -1 || typeof value !== 'number') throw new CorruptRecordError(`entry ${index}: fenceMerge without a numeric epoch`);
    return { op: 'fenceMerge', key, epoch: value };
  }
  if (op === OP_ROLLBACK_MERGE) {
    if (ifVersion !== -1 || !Array.isArray(value) || value.length !== 2 || !value.every((n) => typeof n === 'number')) throw new CorruptRecordError(`entry ${index}: rollbackMerge fields are malformed`);
    return { op: 'rollbackMerge', key, targetShardId: value[0] as number, epoch: value[1] as number };
  }
  if (typeof ifVersion !== 'number' || !Number.isSafeInteger(ifVersion) || ifVersion < -1) {
    throw new CorruptRecordError(`entry ${index}: command ifVersion ${String(ifVersion)}`);
  }
  const condition = ifVersion === -1 ? {} : { ifVersion };
  if (op === OP_PUT) {
    if (!(value instanceof Uint8Array)) throw new CorruptRecordError(`entry ${index}: put without a byte value`);
    return { op: 'put', key, value, ...condition, ...(contentType === undefined ? {} : { contentType: contentType as string }) };
  }
  if (op === OP_DELETE) return { op: 'delete', key, ...condition };
  if (op === OP_DELETE_RANGE) {
    if (ifVersion !== -1 || !(value === null || value instanceof Uint8Array)) throw new CorruptRecordError(`entry ${index}: range delete without a byte or null end`);
    return { op: 'deleteRange', key, end: value };
  }
  if (op === OP_ATOMIC_BATCH) {
    if (ifVersion !== -1 || !Array.isArray(value) || !value.every((c) => c instanceof Uint8Array)) throw new CorruptRecordError(`entry ${index}: atomic batch does not carry a list of encoded ops`);
    const ops = (value as Uint8Array[]).map((c) => {
      const decoded = decodeCommand(index, c);
      // Anything but puts and deletes inside is refused at apply (validateCommand), alike on every replica.
      return decoded as PutCommand | DeleteCommand;
    });
    return { op: 'atomicBatch', key, ops };
  }
  if (op === OP_CHECKSUM) throw new CorruptRecordError(`entry ${index}: a checksum entry is not a KV command (decodeChecksumCommand)`);
  if (op === OP_BATCH) throw new CorruptRecordError(`entry ${index}: a batch entry is not one KV command (decodeBatchCommand)`);
  throw new CorruptRecordError(`entry ${index}: unknown opcode ${String(op)}`);
}

/** A merge command's fields, shaped only (their values are validateCommand's, refused alike at apply). */
function decodeMergeCommand(index: number, op: number, key: Uint8Array, value: unknown, ifVersion: unknown): PrepareMergeCommand | CommitMergeCommand {
  const numbers = (xs: unknown): xs is number[] => Array.isArray(xs) && xs.every((x) => typeof x === 'number');
  if (ifVersion !== -1 || !Array.isArray(value)) throw new CorruptRecordError(`entry ${index}: merge command without its fields`);
  if (op === OP_PREPARE_MERGE) {
    const [targetShardId, epoch, voters] = value as unknown[];
    if (value.length !== 3 || typeof targetShardId !== 'number' || typeof epoch !== 'number' || !numbers(voters)) throw new CorruptRecordError(`entry ${index}: prepareMerge fields are malformed`);
    return { op: 'prepareMerge', key, targetShardId, epoch, voters };
  }
  const [sourceShardId, epoch, sourceEpoch, freezeIndex, freezeTerm, sourceEnd, voters] = value as unknown[];
  if (
    value.length !== 7 ||
    typeof freezeTerm !== 'number' ||
    typeof sourceShardId !== 'number' ||
    typeof epoch !== 'number' ||
    typeof sourceEpoch !== 'number' ||
    typeof freezeIndex !== 'number' ||
    !(sourceEnd === null || sourceEnd instanceof Uint8Array) ||
    !numbers(voters)
  ) {
    throw new CorruptRecordError(`entry ${index}: commitMerge fields are malformed`);
  }
  return { op: 'commitMerge', key, epoch, sourceShardId, sourceEnd, sourceEpoch, freezeIndex, freezeTerm, voters };
}

/** Whether an entry's payload is a commitMerge (the round checks every committed entry before applying it: two bytes tell, as isChecksumCommand). */
export function isCommitMergeCommand(data: Uint8Array): boolean {
  return data.byteLength >= 2 && data[0] === TUPLE_4_HEADER && data[1] === OP_COMMIT_MERGE;
}

/** Whether an entry's payload changes a range's shape: a split, a freeze or a merge (two bytes tell, as isChecksumCommand). */
export function isRangeCommand(data: Uint8Array): boolean {
  if (data.byteLength < 2 || data[0] !== TUPLE_4_HEADER) return false;
  const op = data[1];
  return op === OP_SPLIT || op === OP_PREPARE_MERGE || op === OP_COMMIT_MERGE || op === OP_FENCE_MERGE || op === OP_ROLLBACK_MERGE;
}

/**
 * An entry's payload as its 4-tuple (with opcode `op`, if given), or the
 * 5-tuple of a put with a content type; CorruptRecordError naming `what`
 * otherwise.
 */
function unpackTuple(index: number, data: Uint8Array, what: string, op?: number): unknown[] {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (err) {
    throw new CorruptRecordError(`entry ${index}: undecodable ${what} (${(err as Error).message})`);
  }
  const arity = Array.isArray(raw) ? raw.length : 0;
  if (!Array.isArray(raw) || (arity !== 4 && !(arity === 5 && raw[0] === OP_PUT)) || (op !== undefined && raw[0] !== op)) throw new CorruptRecordError(`entry ${index}: ${what} is not a 4-tuple`);
  return raw as unknown[];
}
