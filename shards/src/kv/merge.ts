import type { ConfState } from '@flotilla/core';
import { CorruptRecordError } from '../storage/errors.js';
import { validateCommand, type CommitMergeCommand, type FenceMergeCommand, type FrozenRange, type KvResult, type PrepareMergeCommand, type RollbackMergeCommand } from './command.js';
import { describeRange, hexKey, type ShardRange } from './range.js';

/*
 * Merging two neighbouring ranges, decided from their logs alone (TiKV's
 * PrepareMerge / CommitMerge, CockroachDB's Subsume):
 *
 * 1. The right range (the source) applies prepareMerge at index F and is
 *    frozen from there on every replica: it refuses every write, split and
 *    read, so its data is final as of F. The freeze is proposed as a
 *    membership fence, so no membership change follows it in the source's
 *    log: its voters stay the ones the freeze checked.
 * 2. Once every replica of the source applied F (whoever drives the merge
 *    checks it), the left range (the target) applies commitMerge: it then
 *    ends where the source ended. Both have the same voters, and on each
 *    node both replicas share one store, whose user data is keyed by key:
 *    the source's data is already where the target reads, and nothing is
 *    copied. The source's replica is destroyed, its data kept.
 *
 * Applying commitMerge is refused alike on every replica when the target's
 * own state rules it out (this module). Otherwise each node's replica of
 * the target waits, before applying it, until the node's replica of the
 * source has applied F (ShardCore holds its apply: RawNode.holdApply), as
 * TiKV's target waits on its source's CatchUpLogs: whether that replica
 * caught up is local, and deciding anything from it would make replicas
 * diverge.
 */

/** The stored form of a freeze: [target, index, epoch, term]. */
export function encodeFrozen(f: FrozenRange): [number, number, number, number] {
  return [f.targetShardId, f.index, f.epoch, f.term];
}

export function decodeFrozen(shardId: number, stored: unknown): FrozenRange | undefined {
  if (stored === undefined) return undefined;
  if (!Array.isArray(stored) || stored.length !== 4 || !stored.every((n) => Number.isSafeInteger(n) && (n as number) > 0)) {
    throw new CorruptRecordError(`shard ${shardId}: merge freeze record is malformed`);
  }
  const [targetShardId, index, epoch, term] = stored as number[];
  return { targetShardId: targetShardId!, index: index!, epoch: epoch!, term: term! };
}

/** Why a freeze is refused, alike on every replica (from the range's own state), or undefined. */
export function prepareMergeRefusal(c: PrepareMergeCommand, shardId: number, range: ShardRange, conf: ConfState, frozen: FrozenRange | undefined): KvResult | undefined {
  const invalid = validateCommand(c);
  if (invalid !== undefined) return { ok: false, code: 'COMMAND_INVALID', reason: invalid };
  if (frozen !== undefined) return { ok: false, code: 'RANGE_MERGING', reason: `shard ${shardId} is already frozen for a merge into shard ${frozen.targetShardId}` };
  if (c.epoch !== range.epoch) return { ok: false, code: 'EPOCH_MISMATCH', currentEpoch: range.epoch };
  if (Buffer.compare(c.key, range.start) !== 0) return { ok: false, code: 'KEY_OUT_OF_RANGE', reason: `freeze names start ${hexKey(c.key)}, the range is ${describeRange(range)}` };
  if (range.start.byteLength === 0) return { ok: false, code: 'COMMAND_INVALID', reason: 'the first range has no left neighbour to merge into' };
  if (c.targetShardId === shardId) return { ok: false, code: 'COMMAND_INVALID', reason: 'a range cannot merge into itself' };
  return membershipRefusal(conf, c.voters);
}

/** Why a commitMerge is refused, alike on every replica (from the target's own state), or undefined. */
export function commitMergeRefusal(c: CommitMergeCommand, shardId: number, range: ShardRange, conf: ConfState, frozen: FrozenRange | undefined): KvResult | undefined {
  const invalid = validateCommand(c);
  if (invalid !== undefined) return { ok: false, code: 'COMMAND_INVALID', reason: invalid };
  if (frozen !== undefined) return { ok: false, code: 'RANGE_MERGING', reason: `shard ${shardId} is itself frozen for a merge into shard ${frozen.targetShardId}` };
  if (c.epoch !== range.epoch) return { ok: false, code: 'EPOCH_MISMATCH', currentEpoch: range.epoch };
  if (c.sourceShardId === shardId) return { ok: false, code: 'COMMAND_INVALID', reason: 'a range cannot merge itself in' };
  if (Buffer.compare(c.key, range.start) !== 0) return { ok: false, code: 'KEY_OUT_OF_RANGE', reason: `merge names start ${hexKey(c.key)}, the range is ${describeRange(range)}` };
  if (range.end === null || (c.sourceEnd !== null && Buffer.compare(c.sourceEnd, range.end) <= 0)) {
    return { ok: false, code: 'KEY_OUT_OF_RANGE', reason: `the source's end ${hexKey(c.sourceEnd)} is not past the range ${describeRange(range)}` };
  }
  return membershipRefusal(conf, c.voters);
}

/** Why a fence is refused, alike on every replica, or undefined (a frozen range refuses it before this). */
export function fenceMergeRefusal(c: FenceMergeCommand, range: ShardRange): KvResult | undefined {
  const invalid = validateCommand(c);
  if (invalid !== undefined) return { ok: false, code: 'COMMAND_INVALID', reason: invalid };
  if (c.epoch !== range.epoch) return { ok: false, code: 'EPOCH_MISMATCH', currentEpoch: range.epoch };
  if (Buffer.compare(c.key, range.start) !== 0) return { ok: false, code: 'KEY_OUT_OF_RANGE', reason: `fence names start ${hexKey(c.key)}, the range is ${describeRange(range)}` };
  return undefined;
}

/** Why a rollback is refused, alike on every replica, or undefined: the range must be frozen for that target, at that epoch. */
export function rollbackMergeRefusal(c: RollbackMergeCommand, shardId: number, range: ShardRange, frozen: FrozenRange | undefined): KvResult | undefined {
  const invalid = validateCommand(c);
  if (invalid !== undefined) return { ok: false, code: 'COMMAND_INVALID', reason: invalid };
  if (frozen === undefined) return { ok: false, code: 'COMMAND_INVALID', reason: `shard ${shardId} is not frozen` };
  if (frozen.targetShardId !== c.targetShardId) return { ok: false, code: 'COMMAND_INVALID', reason: `shard ${shardId} is frozen for shard ${frozen.targetShardId}, not ${c.targetShardId}` };
  if (c.epoch !== range.epoch) return { ok: false, code: 'EPOCH_MISMATCH', currentEpoch: range.epoch };
  if (Buffer.compare(c.key, range.start) !== 0) return { ok: false, code: 'KEY_OUT_OF_RANGE', reason: `rollback names start ${hexKey(c.key)}, the range is ${describeRange(range)}` };
  return undefined;
}

/** The target's range once the source is taken in: its epoch passes both. */
export function mergedRange(range: ShardRange, c: CommitMergeCommand): ShardRange {
  return { start: range.start, end: c.sourceEnd, epoch: Math.max(range.epoch, c.sourceEpoch) + 1 };
}

/**
 * Whether a replica of the source, as this node holds it, is what the
 * commitMerge `c` takes in: frozen for this target at its freeze index and
 * epoch, at the range the target expects (starting at the target's end),
 * and applied through the freeze.
 */
export function sourceCaughtUp(c: CommitMergeCommand, targetShardId: number, targetEnd: Uint8Array | null, source: { range: ShardRange; frozen: FrozenRange | undefined; applied: number }): boolean {
  const f = source.frozen;
  if (f === undefined || f.targetShardId !== targetShardId || f.index !== c.freezeIndex || f.term !== c.freezeTerm || f.epoch !== c.sourceEpoch) return false;
  if (source.applied < c.freezeIndex) return false;
  if (targetEnd === null || Buffer.compare(source.range.start, targetEnd) !== 0) return false;
  return source.range.end === null ? c.sourceEnd === null : c.sourceEnd !== null && Buffer.compare(source.range.end, c.sourceEnd) === 0;
}

/** A merge joins two ranges with the same voters and nothing else: no learner, no change under way. */
function membershipRefusal(conf: ConfState, voters: readonly number[]): KvResult | undefined {
  if (conf.votersOutgoing.length > 0 || conf.learners.length > 0 || conf.learnersNext.length > 0) {
    return { ok: false, code: 'COMMAND_INVALID', reason: 'the range has learners or a membership change under way; merge it afterwards' };
  }
  const have = [...conf.voters].sort((a, b) => a - b);
  if (have.length !== voters.length || have.some((v, i) => v !== voters[i])) {
    return { ok: false, code: 'COMMAND_INVALID', reason: `the range's voters ${have.join(',')} are not the merge's ${voters.join(',')}` };
  }
  return undefined;
}
