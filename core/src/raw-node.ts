import { assert } from './assert.js';
import { InvalidMessageError, StepPeerNotFoundError } from './errors.js';
import { encodeConfChange } from './membership/codec.js';
import type { ProgressState } from './progress/progress.js';
import { Raft, type RaftConfig } from './raft.js';
import {
  isHardStateEqual,
  isLocalMessage,
  isResponseMessage,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type LogIndex,
  type Message,
  type NodeId,
  type ReadContext,
  type ReadState,
  type Snapshot,
  type SoftState,
  type Term,
} from './types.js';

/**
 * Everything one step of the shell's loop must do for a group. Handle it in
 * this order, then call `advance()`:
 *
 * 1. send `messages` (they do not depend on this Ready's writes — the
 *    leader's appends go out while it persists, Raft thesis §10.2.1);
 * 2. durably write `snapshot` (if any), then `entries` (replacing any
 *    conflicting suffix of the stored log from entries[0].index), then
 *    `hardState` — one atomic, synced write when `mustSync`;
 * 3. only then send `messagesAfterPersist` (votes and acknowledgements
 *    promise what was just written);
 * 4. apply `committedEntries` (and install `snapshot` into the state machine
 *    first, if any), calling `applyConfChange` for conf-change entries;
 * 5. serve `readStates` once the applied index reaches each one's index;
 *    fail `droppedReads` with a retryable error.
 */
export interface Ready {
  /** Present when leader or role changed since the previous Ready. */
  readonly softState: SoftState | undefined;
  /** Present when term, vote or commit changed: persist it. */
  readonly hardState: HardState | undefined;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | undefined;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly messagesAfterPersist: readonly Message[];
  readonly readStates: readonly ReadState[];
  readonly droppedReads: readonly ReadContext[];
  /** Whether the write must be synced: entries, a snapshot, or a term/vote change. */
  readonly mustSync: boolean;
}

export interface ProgressStatus {
  readonly match: LogIndex;
  readonly next: LogIndex;
  readonly state: ProgressState;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
  readonly inflightCount: number;
}

export interface Status {
  readonly id: NodeId;
  readonly hardState: HardState;
  readonly softState: SoftState;
  readonly applied: LogIndex;
  readonly lastIndex: LogIndex;
  readonly leadTransferee: NodeId;
  readonly config: ConfState;
  /** Per-peer replication state; only on the leader. */
  readonly progress: ReadonlyMap<NodeId, ProgressStatus> | undefined;
  readonly leaseValid: boolean;
}

/**
 * The thread-unsafe, synchronous interface to one Raft group replica
 * (etcd-raft's RawNode). The caller owns time (`tick`), the network (`step`
 * and Ready messages) and the disk (Ready writes); the node never waits.
 *
 * Contract: after `ready()` the caller must process the Ready as documented
 * on `Ready` and call `advance()` before the next `ready()`. `step`, `tick`,
 * `propose` and friends may be called between `ready()` and `advance()`.
 */
export class RawNode {
  readonly raft: Raft;
  private previousSoftState: SoftState;
  private previousHardState: HardState;
  private pending: Ready | undefined;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.previousSoftState = this.raft.softState();
    this.previousHardState = this.raft.hardState();
  }

  get id(): NodeId {
    return this.raft.id;
  }

  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (pre-vote first when enabled). */
  campaign(): void {
    this.raft.step({ type: 'hup', from: this.raft.id, to: this.raft.id, term: 0, transfer: false });
  }

  /** Proposes `data`. Throws ProposalDroppedError when it is refused here (no leader, transfer, cap). */
  propose(data: Uint8Array): void {
    this.raft.propose([{ term: 0, index: 0, type: 'normal', data }]);
  }

  /** Proposes several entries at once; all are appended or none. */
  proposeBatch(payloads: readonly Uint8Array[]): void {
    this.raft.propose(payloads.map((data) => ({ term: 0, index: 0, type: 'normal', data })));
  }

  /**
   * Proposes `data` as a fence for membership changes, on the leader only:
   * refused while a change is pending (not yet applied), and no change is
   * accepted until this entry is applied, as if it were one. A range
   * freezing for a merge proposes its freeze so: no membership change can
   * then land in its log after the freeze (once the leader applied the
   * freeze it refuses them itself).
   */
  proposeConfFence(data: Uint8Array): void {
    this.raft.proposeConfFence(data);
  }

  /**
   * Proposes a membership change. Throws ProposalDroppedError when another change is pending (or no
   * leader...), and InvalidConfChangeError on the leader when `cc` cannot apply to the current config.
   */
  proposeConfChange(cc: ConfChange): void {
    this.raft.propose([{ term: 0, index: 0, type: 'confChange', data: encodeConfChange(cc) }]);
  }

  /** Applies a committed conf change (call when applying its entry); persist the returned ConfState with the apply. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /** Delivers a message from another replica. Local message types are refused. */
  step(m: Message): void {
    if (isLocalMessage(m)) throw new InvalidMessageError(`local message type ${m.type} from the network (from ${m.from})`);
    if (isResponseMessage(m) && !this.raft.tracker.progress.has(m.from)) throw new StepPeerNotFoundError(m.from);
    this.raft.step(m);
  }

  /** Requests a linearizable read; answered by a ReadState with this context, or listed in droppedReads. */
  readIndex(context: ReadContext): void {
    this.raft.readIndex(context);
  }

  transferLeader(transferee: NodeId): void {
    this.raft.step({ type: 'transferLeader', from: this.raft.id, to: this.raft.id, term: 0, transferee });
  }

  /** The transport could not reach `id`. */
  reportUnreachable(id: NodeId): void {
    this.raft.step({ type: 'unreachable', from: id, to: this.raft.id, term: 0 });
  }

  /** The outcome of sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, outcome: 'finished' | 'failed'): void {
    this.raft.step({ type: 'snapshotStatus', from: id, to: this.raft.id, term: 0, reject: outcome === 'failed' });
  }

  hasReady(): boolean {
    if (this.pending !== undefined) return false;
    const r = this.raft;
    const soft = r.softState();
    if (soft.leader !== this.previousSoftState.leader || soft.role !== this.previousSoftState.role) return true;
    if (!isHardStateEqual(r.hardState(), this.previousHardState)) return true;
    return (
      r.log.hasPendingSnapshot() ||
      r.log.unstableEntries().length > 0 ||
      r.msgs.length > 0 ||
      r.msgsAfterPersist.length > 0 ||
      r.log.hasNextCommittedEntries() ||
      r.readStates.length > 0 ||
      r.droppedReads.length > 0 ||
      r.hasFlushableReads()
    );
  }

  ready(): Ready {
    assert(this.pending === undefined, () => `ready() called twice without advance() (node ${this.raft.id})`);
    const r = this.raft;
    r.flushReads();
    const soft = r.softState();
    const hard = r.hardState();
    const softChanged = soft.leader !== this.previousSoftState.leader || soft.role !== this.previousSoftState.role;
    const hardChanged = !isHardStateEqual(hard, this.previousHardState);
    const entries = [...r.log.unstableEntries()];
    const committedEntries = r.log.nextCommittedEntries();
    const rd: Ready = {
      softState: softChanged ? soft : undefined,
      hardState: hardChanged ? hard : undefined,
      entries,
      snapshot: r.log.unstable.snapshot,
      committedEntries,
      messages: r.msgs,
      messagesAfterPersist: r.msgsAfterPersist,
      readStates: r.readStates,
      droppedReads: r.droppedReads,
      mustSync:
        entries.length > 0 ||
        r.log.unstable.snapshot !== undefined ||
        (hardChanged && (hard.term !== this.previousHardState.term || hard.vote !== this.previousHardState.vote)),
    };
    r.msgs = [];
    r.msgsAfterPersist = [];
    r.readStates = [];
    r.droppedReads = [];
    r.reduceUncommittedBytes(committedEntries);
    r.applyingCommittedEntries = committedEntries.length > 0;
    if (softChanged) this.previousSoftState = soft;
    this.pending = rd;
    return rd;
  }

  /** The Ready from the last `ready()` is persisted, sent and applied. */
  advance(): void {
    const rd = this.pending;
    assert(rd !== undefined, () => `advance() without ready() (node ${this.raft.id})`);
    this.pending = undefined;
    const r = this.raft;
    r.applyingCommittedEntries = false;
    if (rd.hardState !== undefined) this.previousHardState = rd.hardState;
    if (rd.snapshot !== undefined) {
      r.log.stableSnapTo(rd.snapshot.metadata.index);
      r.appliedTo(rd.snapshot.metadata.index);
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      r.log.stableTo(last.index, last.term);
      r.onPersisted(last.index, last.term);
    }
    if (rd.committedEntries.length > 0) r.appliedTo(rd.committedEntries[rd.committedEntries.length - 1]!.index);
  }

  /**
   * Stops applying at `index`, an entry among the committed entries of the
   * Ready just taken: that Ready (returned trimmed, and advanced as such)
   * keeps only the entries below it, and no later Ready hands out `index`
   * or anything after it until resumeApply(). For an entry whose apply
   * depends on something outside this group that is not there yet (a merge
   * waits for the merged range's replica on this node to catch up). Raft
   * goes on meanwhile: the log grows and commits, only applying waits.
   */
  holdApply(index: LogIndex): Ready {
    const rd = this.pending;
    assert(rd !== undefined, () => `holdApply() without ready() (node ${this.raft.id})`);
    const at = rd.committedEntries.findIndex((e) => e.index === index);
    assert(at >= 0, () => `holdApply(${index}): not among the Ready's committed entries (node ${this.raft.id})`);
    this.raft.log.applyHeldAt = index;
    const trimmed: Ready = { ...rd, committedEntries: rd.committedEntries.slice(0, at) };
    this.raft.applyingCommittedEntries = at > 0;
    this.pending = trimmed;
    return trimmed;
  }

  /** Applying goes on past the index holdApply() stopped at. */
  resumeApply(): void {
    this.raft.log.applyHeldAt = Number.POSITIVE_INFINITY;
  }

  /** The index applying waits at (holdApply), or undefined. */
  get applyHeldAt(): LogIndex | undefined {
    const at = this.raft.log.applyHeldAt;
    return at === Number.POSITIVE_INFINITY ? undefined : at;
  }

  /**
   * Learns from outside the group that its entry at `index` with `term` is
   * committed (a merge carries that proof for the range it takes in): if
   * this replica's log holds that entry, its commit index moves up to it
   * (Log Matching: every entry before it is then committed too). Returns
   * whether the log holds it. A replica whose peers are gone can so still
   * apply what they committed.
   */
  commitKnown(index: LogIndex, term: Term): boolean {
    const log = this.raft.log;
    if (!log.matchTerm(index, term)) return false;
    log.commitTo(index);
    return true;
  }

  /** Whether a Ready was taken and not yet advanced. */
  get isProcessingReady(): boolean {
    return this.pending !== undefined;
  }

  status(): Status {
    const r = this.raft;
    let progress: Map<NodeId, ProgressStatus> | undefined;
    if (r.role === 'leader') {
      progress = new Map();
      r.tracker.visit((id, p) => {
        progress!.set(id, {
          match: p.match,
          next: p.next,
          state: p.state,
          isLearner: p.isLearner,
          recentActive: p.recentActive,
          inflightCount: p.inflights.size,
        });
      });
    }
    return {
      id: r.id,
      hardState: r.hardState(),
      softState: r.softState(),
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      leadTransferee: r.leadTransferee,
      config: r.tracker.confState(),
      progress,
      leaseValid: r.leaseValid(),
    };
  }
}
