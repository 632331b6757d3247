import { InvalidConfChangeError, NONE, ProposalDroppedError, assert, groupId, nodeId, type Entry, type GroupId, type LogIndex, type NodeId, type Ready } from '@flotilla/core';
import { EpochMismatchError, InvalidCommandError, KeyOutOfRangeError, NotLeaderError, OutcomeUnknownError, RangeMergingError, ShardNotFoundError } from '../errors.js';
import { BATCH_BYTES_MAX, BATCH_COMMAND_COUNT_MAX, decodeCommand, encodeBatchCommand, encodeChecksumCommand, type KvResult } from '../kv/command.js';
import type { ReplicaChecksums } from '../kv/consistency.js';
import { commandOutsideRange, coversSpan, describeRange, hexKey, inRange, isInitialized } from '../kv/range.js';
import { isBatchResult, type EntryResult, type KvStateMachine } from '../kv/state-machine.js';
import type { ShellLogger } from '../shell-logger.js';
import type { CoreRequest, CoreStats, MembershipChange, ReadOp } from './core-protocol.js';
import { statusOf } from './shard-changes.js';
import type { CoreOutputBuffer } from './core-output.js';
import type { DiskGuard } from './disk-guard.js';
import { replicaFrozenInto, type Group, type PendingProposal, type PendingRead } from './group.js';
import { invalidReadOp } from './input-checks.js';
import { observeLatency, type CoreLatencies } from './latency.js';

/**
 * When the round that settles proposals took its Readys (their entries'
 * commit, as this core sees it) and when its apply transaction committed.
 */
export interface ProposalTimes {
  readonly readyAtMs: number;
  readonly appliedAtMs: number;
}

/** What a shard's requests need of their core. */
export interface ShardRequestsPort {
  readonly self: NodeId;
  readonly stats: CoreStats;
  /** The core's latency histograms: a write's proposal-to-commit and commit-to-apply are counted here. */
  readonly latencies: CoreLatencies;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'reply' | 'fail'>;
  readonly groups: ReadonlyMap<GroupId, Group>;
  readonly sm: Pick<KvStateMachine, 'get' | 'readSpan'>;
  readonly checksums: Pick<ReplicaChecksums, 'answer' | 'block'>;
  readonly disk: Pick<DiskGuard, 'isFull' | 'refusal'>;
  /** Lets a quiesced group tick again (its leader is not asked to). */
  wake(g: Group): void;
  /** The group may have a Ready now. */
  touch(g: Group): void;
}

/**
 * The requests one shard's replica answers: writes (proposals), reads,
 * consistency checks, membership changes and leadership transfers. A write
 * is answered once its entry applies, a linearizable read once its ReadIndex
 * is confirmed and applied: the round (ShardCore) settles both after its
 * commit (settleProposals, answerReads); everything else is answered on
 * arrival.
 *
 * Puts and deletes a leader takes in one turn of its core are proposed
 * together, as one batch entry per shard (proposeBatches, called by the loop
 * before it takes the Readys): one log record to write, replicate and
 * decode on every replica instead of one per write. Anything else proposed
 * for the shard (a split, a checksum, a membership change) proposes the
 * pending batch first, so the log keeps the order requests arrived in.
 */
export class ShardRequests {
  /** Groups with writes waiting in their batch. */
  private readonly batching = new Set<Group>();

  constructor(private readonly port: ShardRequestsPort) {}

  onPropose(id: number, shardId: GroupId, command: Uint8Array): void {
    const g = this.proposingGroup(id, shardId);
    if (g === undefined) return;
    let decoded: ReturnType<typeof decodeCommand>;
    try {
      decoded = decodeCommand(0, command);
    } catch (err) {
      return this.port.out.fail(id, new InvalidCommandError((err as Error).message));
    }
    const outside = commandOutsideRange(g.bounds, decoded);
    if (outside !== undefined) return this.port.out.fail(id, this.outOfRange(g, outside.key, outside.end));
    if (g.frozen !== undefined && decoded.op !== 'rollbackMerge') return this.port.out.fail(id, this.merging(g));
    if (decoded.op === 'prepareMerge') {
      // A range another range here is frozen into does not merge away meanwhile: that merge could never
      // finish, and its source would wait for a rollback. The driver holds such a target too, but only if it
      // heard the freeze (node simulation seed 659). Best effort: this node's replica of the source may not
      // have applied its freeze yet.
      const source = replicaFrozenInto(this.port.groups, g.id);
      if (source !== undefined) return this.port.out.fail(id, new RangeMergingError(`shard ${g.id} on node ${this.port.self} is the target of shard ${source}'s merge (frozen into it); it cannot merge away meanwhile`));
      return this.proposeFence(id, g, command);
    }
    g.writeCount++;
    g.sampleKey(decoded.key);
    this.port.stats.proposals++;
    // Only single puts and deletes share a batch entry: anything else (a split, an atomic batch, a range delete) is an entry of its own.
    if (decoded.op !== 'put' && decoded.op !== 'delete') {
      this.proposeBatch(g);
      this.proposeTracked(id, g, command);
      return;
    }
    const full = g.batchedCount >= BATCH_COMMAND_COUNT_MAX || (g.batchedCount > 0 && g.batch().bytes + command.byteLength > BATCH_BYTES_MAX);
    if (full) this.proposeBatch(g);
    const b = g.batch();
    b.requestIds.push(id);
    b.commands.push(command);
    b.bytes += command.byteLength;
    this.batching.add(g);
    this.port.touch(g);
  }

  /** Proposes every shard's pending writes, one entry per shard (the loop calls this before taking the Readys). */
  proposeBatches(): void {
    for (const g of this.batching) this.proposeBatch(g);
    this.batching.clear();
  }

  /**
   * Proposes the group's pending writes as one entry (a lone write as a
   * plain command, as it came). A group that lost its lead or was removed
   * since they arrived fails them as it would have on arrival.
   */
  private proposeBatch(g: Group): void {
    if (g.batchedCount === 0) return;
    const { requestIds, commands } = g.takeBatch();
    const fail = (err: Error): void => {
      for (const id of requestIds) this.port.out.fail(id, err);
    };
    if (g.removed) return fail(new ShardNotFoundError(g.id, this.port.self));
    if (!g.isLeader) return fail(new NotLeaderError(g.id, this.port.self, g.leader));
    const batched = commands.length > 1;
    try {
      g.raw.propose(batched ? encodeBatchCommand(commands) : commands[0]!);
    } catch (err) {
      if (err instanceof ProposalDroppedError) return fail(err);
      throw err;
    }
    this.port.stats.proposalEntries++;
    this.trackProposal(g, requestIds);
    this.port.touch(g);
  }

  onRead(id: number, shardId: GroupId, read: PendingRead, consistency: 'linearizable' | 'stale'): void {
    const { out, stats, disk } = this.port;
    const g = this.requestGroup(id, shardId, { read: true });
    if (g === undefined) return;
    // A replica waiting for its first snapshot (added by a move) owns no range yet: it sends the caller
    // on as a follower does. KEY_OUT_OF_RANGE would stop the caller: it means "the range moved".
    if (!isInitialized(g.bounds)) return this.notLeader(id, g);
    const op = read.read;
    // LMDB refuses (throws on) keys over its limit; a read must fail, not take the core down.
    const invalid = invalidReadOp(op);
    if (invalid !== undefined) return out.fail(id, new InvalidCommandError(invalid));
    if (op.op === 'get' && !inRange(g.bounds, op.key)) return out.fail(id, this.outOfRange(g, op.key));
    if (g.frozen !== undefined) return out.fail(id, this.merging(g));
    stats.reads++;
    g.readCount++;
    g.sampleKey(op.op === 'get' ? op.key : op.start);
    if (consistency === 'stale') return this.serveRead(g, read);
    if (!g.isLeader) return this.notLeader(id, g);
    // A leader whose Readys wait for space sends no heartbeats: its ReadIndex would never be confirmed.
    if (disk.isFull) return out.fail(id, disk.refusal()!);
    const context = String(id);
    if (g.raw.raft.leaseValid()) stats.leaseReads++;
    try {
      g.raw.readIndex(context);
    } catch (err) {
      if (err instanceof ProposalDroppedError) return out.fail(id, err);
      throw err;
    }
    g.setRead(context, read);
    this.port.touch(g);
  }

  /** Counts the reads the Host served itself (local-reads.ts) as this replica's: placement's load signal and key samples. */
  onLocalReads(reads: readonly (readonly [shardId: number, count: number, keys: readonly Uint8Array[]])[]): void {
    const { stats, groups } = this.port;
    for (const [shardId, count, keys] of reads) {
      stats.reads += count;
      stats.leaseReads += count;
      const g = groups.get(groupId(shardId));
      if (g === undefined || g.removed) continue;
      g.readCount += count;
      for (const key of keys) g.sampleKey(key, true);
    }
  }

  /**
   * Serves a read from the applied state. The range is checked here, at
   * serving time, not only on arrival: a split applied while a ReadIndex was
   * confirmed moved part of the range away, and a scan must fail then
   * (KEY_OUT_OF_RANGE: the caller re-routes) rather than return a page
   * silently missing the other half's keys.
   */
  serveRead(g: Group, pending: PendingRead): void {
    const { out, sm } = this.port;
    const op: ReadOp = pending.read;
    // Frozen since the read arrived: the merge may already let the target write these keys.
    if (g.frozen !== undefined) return out.fail(pending.requestId, this.merging(g));
    if (op.op === 'get') {
      if (!inRange(g.bounds, op.key)) return out.fail(pending.requestId, this.outOfRange(g, op.key));
      const v = sm.get(op.key);
      return out.reply(pending.requestId, v === undefined ? null : { value: v.value, version: v.version, ...(v.contentType === undefined ? {} : { contentType: v.contentType }) });
    }
    if (!coversSpan(g.bounds, op.start, op.end)) return out.fail(pending.requestId, this.outOfRange(g, op.start, op.end));
    const pairs = sm.readSpan(op).map((p): [Uint8Array, Uint8Array, number] => [p.key, p.value, p.version]);
    out.reply(pending.requestId, pairs);
  }

  /**
   * Answers the requests waiting for the group's entries the round just
   * applied: with the entry's result, or PROPOSAL_DROPPED when the entry at
   * that index came from another term (a later leader overwrote ours).
   */
  settleProposals(g: Group, committed: readonly Entry[], results: ReadonlyMap<LogIndex, EntryResult> | undefined, times: ProposalTimes): void {
    if (g.proposals.size === 0) return;
    for (const e of committed) this.settleProposal(g, e, results?.get(e.index), times);
  }

  /**
   * Serves the reads whose ReadIndex the Ready confirmed, at once if the
   * replica applied that far, else when it has; a read Raft dropped (the
   * leader lost its lead) fails NOT_LEADER.
   */
  answerReads(g: Group, rd: Pick<Ready, 'readStates' | 'droppedReads'>): void {
    const { out, self } = this.port;
    const applied = g.storage.applied;
    for (const rs of rd.readStates) {
      const read = g.reads.get(rs.context);
      if (read === undefined) continue;
      g.deleteRead(rs.context);
      if (rs.index <= applied) this.serveRead(g, read);
      else g.awaitApply({ index: rs.index, read });
    }
    for (const context of rd.droppedReads) {
      const read = g.reads.get(context);
      if (read === undefined) continue;
      g.deleteRead(context);
      out.fail(read.requestId, new NotLeaderError(g.id, self, g.leader));
    }
    for (let read = g.takeReadApplied(applied); read !== undefined; read = g.takeReadApplied(applied)) this.serveRead(g, read);
  }

  /** A consistency check starts on the leader: one checksum entry through Raft, answered once applied here. */
  onChecksumPropose(id: number, shardId: GroupId, checksumId: number): void {
    const g = this.proposingGroup(id, shardId);
    if (g === undefined) return;
    let command: Uint8Array;
    try {
      command = encodeChecksumCommand({ op: 'checksum', id: checksumId });
    } catch (err) {
      return this.port.out.fail(id, err);
    }
    // The check covers every write answered before it was asked for.
    this.proposeBatch(g);
    this.proposeTracked(id, g, command);
  }

  /** What this replica has for a checksum entry; asking never wakes the group (a follower answers from memory). */
  onChecksumQuery(r: Extract<CoreRequest, { kind: 'checksumResult' | 'checksumBlock' }>): void {
    const { groups, out, checksums, self } = this.port;
    const g = groups.get(groupId(r.shardId));
    if (g === undefined || g.removed) return out.fail(r.id, new ShardNotFoundError(groupId(r.shardId), self));
    if (r.kind === 'checksumBlock') return out.reply(r.id, checksums.block(g.id, { index: r.index, id: r.checksumId, block: r.block }));
    out.reply(r.id, checksums.answer(g.id, { index: r.index, id: r.checksumId, withBlocks: r.withBlocks }, g.storage.applied));
  }

  /**
   * Proposes a membership change on the leader (joint consensus when more
   * than one voter changes, left automatically), refused unless the range is
   * still at the epoch the caller planned against: a plan made before a
   * split or another change must be made again. Answered once applied.
   */
  onChangeMembership(id: number, shardId: GroupId, epoch: number, changes: readonly MembershipChange[]): void {
    const g = this.proposingGroup(id, shardId);
    if (g === undefined) return;
    if (g.bounds.epoch !== epoch) return this.port.out.fail(id, new EpochMismatchError(`shard ${shardId} is at epoch ${g.bounds.epoch}, not ${epoch} (node ${this.port.self})`));
    // Its voters are the ones the merge checked (kv/merge.ts); the freeze's fence kept changes out until now.
    if (g.frozen !== undefined) return this.port.out.fail(id, this.merging(g));
    this.proposeBatch(g);
    try {
      g.raw.proposeConfChange({ changes: changes.map((c) => ({ type: c.type, nodeId: nodeId(c.nodeId) })), transition: 'auto' });
    } catch (err) {
      if (err instanceof ProposalDroppedError || err instanceof InvalidConfChangeError) return this.port.out.fail(id, err);
      throw err;
    }
    this.trackProposal(g, [id]);
    this.port.log.info({ rangeId: shardId, epoch, changes }, 'membership change proposed');
    this.port.touch(g);
  }

  onTransferLeader(id: number, shardId: GroupId, to: NodeId): void {
    const g = this.requestGroup(id, shardId);
    if (g === undefined) return;
    if (!g.isLeader) return this.notLeader(id, g);
    g.raw.transferLeader(to);
    this.port.touch(g);
    this.port.out.reply(id, null);
  }

  /** Every replica on this core but those being removed. */
  onStatus(id: number): void {
    this.port.out.reply(id, [...this.port.groups.values()].filter((g) => !g.removed).map((g) => statusOf(g)));
  }

  /**
   * Fails every request still waiting on the group (it is being removed, or the core closes) with `error`, but
   * proposals already in the log with OUTCOME_UNKNOWN: their entries were sent to followers and may commit under
   * the next leader (a retry on `error`'s say-so would run the write twice).
   */
  failPending(g: Group, error: () => Error): void {
    const { out } = this.port;
    for (const [index, p] of g.proposals) {
      for (const id of p.requestIds) out.fail(id, new OutcomeUnknownError(`${error().message}, with the write's entry ${index} of shard ${g.id} in its log`));
    }
    for (const id of g.takeBatch().requestIds) out.fail(id, error());
    for (const r of g.reads.values()) out.fail(r.requestId, error());
    for (const r of g.readsAwaitingApply) out.fail(r.read.requestId, error());
    g.clearRequests();
    this.batching.delete(g);
  }

  /** The group a client request addresses, woken; undefined (and answered) when it is not here. */
  private requestGroup(id: number, shardId: GroupId, options: { read?: boolean } = {}): Group | undefined {
    const g = this.port.groups.get(shardId);
    if (g === undefined || g.removed) {
      this.port.out.fail(id, new ShardNotFoundError(shardId, this.port.self));
      return undefined;
    }
    // A read its leader's node lease answers needs nothing of the group: it stays quiesced.
    if (options.read === true && g.isLeader && g.raw.raft.leaseValid()) return g;
    if (g.quiesced && (g.isLeader || g.leader === NONE)) {
      this.port.wake(g);
      // A dormant group that knows no leader (a restarted node) campaigns at once instead of
      // waiting out an election timeout; pre-vote keeps that from disturbing a live leader.
      if (g.leader === NONE && g.raw.raft.promotable()) g.raw.campaign();
      this.port.touch(g);
    }
    return g;
  }

  /**
   * The group a write request goes to, when this replica may propose: it
   * exists, leads, and its disk takes writes. Otherwise the request is
   * failed (SHARD_NOT_FOUND, NOT_LEADER with a hint, DISK_FULL) and undefined returned.
   */
  private proposingGroup(id: number, shardId: GroupId): Group | undefined {
    const g = this.requestGroup(id, shardId);
    if (g === undefined) return undefined;
    if (!g.isLeader) return void this.notLeader(id, g);
    const full = this.port.disk.refusal();
    if (full !== undefined) return void this.port.out.fail(id, full);
    return g;
  }

  private settleProposal(g: Group, e: Entry, result: EntryResult | undefined, times: ProposalTimes): void {
    const p = g.proposals.get(e.index);
    if (p === undefined) return;
    g.deleteProposal(e.index);
    if (p.term !== e.term) {
      this.failProposal(p, new ProposalDroppedError(`entry ${e.index} of shard ${g.id} committed from term ${e.term}, not the proposal's term ${p.term}`));
      return;
    }
    const { latencies } = this.port;
    observeLatency(latencies.proposalToCommit, Math.max(0, times.readyAtMs - p.proposedAtMs) / 1e3);
    observeLatency(latencies.commitToApply, Math.max(0, times.appliedAtMs - times.readyAtMs) / 1e3);
    assert(result !== undefined, () => `shard ${g.id}: proposal at ${e.index} applied without a result`);
    if (p.requestIds.length === 1) {
      assert(!isBatchResult(result), () => `shard ${g.id}: entry ${e.index} of one write applied as a batch`);
      this.port.out.reply(p.requestIds[0]!, result);
      return;
    }
    assert(isBatchResult(result) && result.length === p.requestIds.length, () => `shard ${g.id}: batch entry ${e.index} of ${p.requestIds.length} writes applied with ${isBatchResult(result) ? result.length : 'no'} results`);
    for (let i = 0; i < result.length; i++) this.port.out.reply(p.requestIds[i]!, result[i]);
  }

  private failProposal(p: PendingProposal, err: Error): void {
    for (const id of p.requestIds) this.port.out.fail(id, err);
  }

  private notLeader(id: number, g: Group): void {
    this.port.out.fail(id, new NotLeaderError(g.id, this.port.self, g.leader));
  }

  /** Proposes `command` for request `id`, answered when its entry applies (false: Raft dropped it and the request failed). */
  private proposeTracked(id: number, g: Group, command: Uint8Array): boolean {
    try {
      g.raw.propose(command);
    } catch (err) {
      if (err instanceof ProposalDroppedError) {
        this.port.out.fail(id, err);
        return false;
      }
      throw err;
    }
    this.trackProposal(g, [id]);
    this.port.touch(g);
    return true;
  }

  /** Proposes a merge's freeze as a membership fence (RawNode.proposeConfFence), answered when it applies. */
  private proposeFence(id: number, g: Group, command: Uint8Array): void {
    this.proposeBatch(g);
    try {
      g.raw.proposeConfFence(command);
    } catch (err) {
      if (err instanceof ProposalDroppedError) return this.port.out.fail(id, err);
      throw err;
    }
    this.trackProposal(g, [id]);
    this.port.log.info({ rangeId: g.id }, 'merge freeze proposed');
    this.port.touch(g);
  }

  private merging(g: Group): RangeMergingError {
    return new RangeMergingError(`shard ${g.id} on node ${this.port.self} is frozen from index ${g.frozen?.index} for a merge into shard ${g.frozen?.targetShardId}`);
  }

  /** Requests `requestIds` wait for the entry just proposed (the log's last), answered when it applies in this term. */
  private trackProposal(g: Group, requestIds: readonly number[]): void {
    const r = g.raw.raft;
    const index = r.log.lastIndex();
    const previous = g.proposals.get(index);
    // An entry we proposed at this index in an earlier term was overwritten: it will never apply.
    if (previous !== undefined) this.failProposal(previous, new ProposalDroppedError(`entry ${index} of shard ${g.id} was replaced by a later leader`));
    g.setProposal(index, { requestIds, term: r.term, proposedAtMs: performance.now() });
  }

  private outOfRange(g: Group, key: Uint8Array, end?: Uint8Array | null): KeyOutOfRangeError {
    const what = end === undefined ? `key ${hexKey(key)}` : `span [${hexKey(key)}, ${hexKey(end)})`;
    return new KeyOutOfRangeError(`${what} is outside shard ${g.id}'s range ${describeRange(g.bounds)} (epoch ${g.bounds.epoch}) on node ${this.port.self}`);
  }
}
