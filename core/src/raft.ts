import { assert, unreachable } from './assert.js';
import { CompactedError, CorruptStateError, InvalidConfChangeError, ProposalDroppedError, SnapshotTemporarilyUnavailableError } from './errors.js';
import type { Logger } from './logger.js';
import { SILENT_LOGGER } from './logger.js';
import { RaftLog } from './log/raft-log.js';
import type { Storage } from './log/storage.js';
import { Changer, restoreConfig, type ChangeResult } from './membership/changer.js';
import { decodeConfChange, encodeConfChange, enterJoint } from './membership/codec.js';
import type { Progress } from './progress/progress.js';
import { ProgressTracker } from './progress/tracker.js';
import type { NodeLeases } from './read/node-leases.js';
import { ReadQueue, type PendingRead } from './read/read-queue.js';
import type { Rng } from './rng.js';
import {
  NONE,
  entriesSizeBytes,
  isLeaveJoint,
  payloadSizeBytes,
  type AppendMessage,
  type AppendResponseMessage,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type HeartbeatMessage,
  type HeartbeatResponseMessage,
  type LogIndex,
  type Message,
  type NodeId,
  type ProposeMessage,
  type ReadContext,
  type ReadIndexMessage,
  type ReadState,
  type Snapshot,
  type SnapshotMessage,
  type SoftState,
  type StateRole,
  type Term,
  type TransferLeaderMessage,
  type VoteKind,
  type VoteMessage,
  type VoteResponseMessage,
} from './types.js';

/** How linearizable reads are confirmed. */
export type ReadMode =
  /** ReadIndex: a heartbeat round acknowledged by a quorum confirms leadership (Raft thesis §6.4). */
  | 'safe'
  /**
   * Leader lease (thesis §6.4.1): served at once while a quorum acknowledged a
   * heartbeat less than an election timeout (minus a drift margin) ago. Needs
   * check-quorum, and assumes tick rates differ by less than the margin.
   */
  | 'lease';

export interface RaftConfig {
  readonly id: NodeId;
  readonly storage: Storage;
  /** Seeded randomness for election timeouts; never Math.random. */
  readonly rng: Rng;
  readonly logger?: Logger;
  /** Ticks without hearing from a leader before a follower campaigns; randomized in [t, 2t). */
  readonly electionTimeoutTicks?: number;
  /** Ticks between leader heartbeats; must be well below the election timeout. */
  readonly heartbeatIntervalTicks?: number;
  /** Index the application has already applied (on restart); entries up to it are not handed out again. */
  readonly applied?: LogIndex;
  /** Bytes of entries in one append message. */
  readonly appendBytesMax?: number;
  /** Unacknowledged append messages per follower. */
  readonly inflightCountMax?: number;
  /** Unacknowledged append bytes per follower. */
  readonly inflightBytesMax?: number;
  /** Payload bytes the leader accepts beyond its commit index before dropping proposals. */
  readonly uncommittedBytesMax?: number;
  /** Bytes of committed entries handed to the application in one Ready. */
  readonly applyBytesMax?: number;
  readonly checkQuorum?: boolean;
  readonly preVote?: boolean;
  readonly readMode?: ReadMode;
  /** Ticks subtracted from the lease for tick-rate drift between nodes. */
  readonly leaseMarginTicks?: number;
  /**
   * Leases kept per node by the shell (read/node-leases.ts), which survive
   * quiescence: a leader serves a linearizable read at once while they cover
   * a quorum of its voters, and followers keep the promises they stand for.
   * Any readMode; needs checkQuorum (a leader that lost its quorum must step down).
   */
  readonly nodeLeases?: NodeLeases;
  /** When false, followers drop proposals instead of forwarding them to the leader. */
  readonly proposalForwarding?: boolean;
  /** A leader removed from (or demoted in) the config steps down when the change applies. */
  readonly stepDownOnRemoval?: boolean;
  /**
   * `eager` (etcd-raft): when the leader's commit index moves, every
   * follower gets an append at once, empty if it has every entry, only to
   * carry the new commit index (and answers it). `lazy`: the commit index
   * rides on the next append that carries entries, or on the next heartbeat
   * (every heartbeatIntervalTicks): followers apply up to a heartbeat later,
   * and each write costs two messages and a follower round less per
   * follower. Commitment itself, and so safety, is the same either way.
   */
  readonly commitBroadcast?: 'eager' | 'lazy';
  /**
   * Which replica of this node's this is: higher for each replica the node
   * creates after destroying one (removed, then added back). Node ids name
   * peers, so without it a leader takes a late answer of the destroyed
   * replica's for the new one's: a match the new replica does not have,
   * which it then probes forever (node simulation seed 104237), and which
   * could count toward a quorum. TiKV gives each replica a new peer id for
   * the same reason. 0 when the storage keeps none (a leader adopts any).
   */
  readonly incarnation?: number;
}

/** Defaults, each with where it comes from. */
export const DEFAULTS = {
  /** etcd's and Dragonboat's customary 10 ticks; with a 100 ms tick, elections start after 1–2 s of silence. */
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  /** 1 MiB: keeps one append message well under the transport's frame limit. */
  appendBytesMax: 1 << 20,
  /** 256 messages in flight per follower, as etcd's MaxInflightMsgs in etcd server. */
  inflightCountMax: 256,
  /** 32 MiB per follower: bounds the leader's memory held for a slow follower. */
  inflightBytesMax: 32 << 20,
  /** 64 MiB uncommitted payload: backpressure before the log outgrows memory. */
  uncommittedBytesMax: 64 << 20,
  /** 64 MiB of committed entries per Ready: bounds one apply batch. */
  applyBytesMax: 64 << 20,
  checkQuorum: true,
  preVote: true,
  readMode: 'safe' as ReadMode,
  /** One tick of drift between nodes' tick clocks. */
  leaseMarginTicks: 1,
  proposalForwarding: true,
  stepDownOnRemoval: true,
  commitBroadcast: 'eager' as 'eager' | 'lazy',
  incarnation: 0,
} as const;

type ResolvedConfig = Required<Omit<RaftConfig, 'logger' | 'applied' | 'nodeLeases'>> & { logger: Logger; applied: LogIndex; nodeLeases: NodeLeases | undefined };

/**
 * Every field named, always in this order: all replicas' configs then share
 * one V8 hidden class. Spreading Object.fromEntries of the caller's fields
 * gave each replica a hidden class of its own, ~640 B of its ~780 B
 * (ARCHITECTURE.md, "Memory per replica").
 */
function resolveConfig(c: RaftConfig): ResolvedConfig {
  const r: ResolvedConfig = {
    id: c.id,
    storage: c.storage,
    rng: c.rng,
    logger: c.logger ?? SILENT_LOGGER,
    applied: c.applied ?? 0,
    nodeLeases: c.nodeLeases,
    electionTimeoutTicks: c.electionTimeoutTicks ?? DEFAULTS.electionTimeoutTicks,
    heartbeatIntervalTicks: c.heartbeatIntervalTicks ?? DEFAULTS.heartbeatIntervalTicks,
    appendBytesMax: c.appendBytesMax ?? DEFAULTS.appendBytesMax,
    inflightCountMax: c.inflightCountMax ?? DEFAULTS.inflightCountMax,
    inflightBytesMax: c.inflightBytesMax ?? DEFAULTS.inflightBytesMax,
    uncommittedBytesMax: c.uncommittedBytesMax ?? DEFAULTS.uncommittedBytesMax,
    applyBytesMax: c.applyBytesMax ?? DEFAULTS.applyBytesMax,
    checkQuorum: c.checkQuorum ?? DEFAULTS.checkQuorum,
    preVote: c.preVote ?? DEFAULTS.preVote,
    readMode: c.readMode ?? DEFAULTS.readMode,
    leaseMarginTicks: c.leaseMarginTicks ?? DEFAULTS.leaseMarginTicks,
    proposalForwarding: c.proposalForwarding ?? DEFAULTS.proposalForwarding,
    stepDownOnRemoval: c.stepDownOnRemoval ?? DEFAULTS.stepDownOnRemoval,
    commitBroadcast: c.commitBroadcast ?? DEFAULTS.commitBroadcast,
    incarnation: c.incarnation ?? DEFAULTS.incarnation,
  };
  if (r.id === NONE) throw new RangeError('raft config: id must not be 0 (reserved for "none")');
  if (!(r.heartbeatIntervalTicks > 0)) throw new RangeError(`raft config: heartbeatIntervalTicks must be positive, got ${r.heartbeatIntervalTicks}`);
  if (!(r.electionTimeoutTicks > r.heartbeatIntervalTicks)) {
    throw new RangeError(`raft config: electionTimeoutTicks ${r.electionTimeoutTicks} must exceed heartbeatIntervalTicks ${r.heartbeatIntervalTicks}`);
  }
  if (!(r.inflightCountMax > 0)) throw new RangeError(`raft config: inflightCountMax must be positive, got ${r.inflightCountMax}`);
  if (!(r.inflightBytesMax >= r.appendBytesMax)) {
    throw new RangeError(`raft config: inflightBytesMax ${r.inflightBytesMax} must be at least appendBytesMax ${r.appendBytesMax}`);
  }
  if (r.readMode === 'lease' && !r.checkQuorum) throw new RangeError('raft config: readMode "lease" requires checkQuorum');
  if (r.nodeLeases !== undefined && !r.checkQuorum) throw new RangeError('raft config: nodeLeases requires checkQuorum');
  if (!(r.leaseMarginTicks >= 0 && r.leaseMarginTicks < r.electionTimeoutTicks)) {
    throw new RangeError(`raft config: leaseMarginTicks ${r.leaseMarginTicks} must be in [0, electionTimeoutTicks)`);
  }
  return r;
}

/** Messages that must wait until the Ready's hard state and entries are durable. */
const AFTER_PERSIST: ReadonlySet<Message['type']> = new Set<Message['type']>([
  'vote', // depends on our own durable vote for ourselves
  'preVote', // carries our last log position, which must be ours after a crash
  'voteResponse', // a granted vote is a promise that must survive a crash
  'preVoteResponse',
  'appendResponse', // acknowledges entries as durable
  'heartbeatResponse', // acknowledges the term
]);

/**
 * One replica of one group: the Raft state machine (etcd-raft's `raft`).
 * Synchronous and deterministic; drive it through RawNode.
 */
export class Raft {
  readonly id: NodeId;
  term: Term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: StateRole = 'follower';
  isLearner = false;

  readonly log: RaftLog;
  tracker: ProgressTracker;
  readonly config: ResolvedConfig;
  private readonly logger: Logger;
  private readonly rng: Rng;

  /** Outbound messages that may leave now (leader appends and heartbeats: thesis §10.2.1). */
  msgs: Message[] = [];
  /** Outbound messages that may leave only once this round's writes are durable. */
  msgsAfterPersist: Message[] = [];
  readStates: ReadState[] = [];
  /** Local reads dropped because leadership was lost; the shell fails them fast. */
  droppedReads: ReadContext[] = [];

  /** The follower we are handing leadership to, or NONE. */
  leadTransferee: NodeId = NONE;
  /** Index of the latest conf change in the log; a new one is refused until applied passes it. */
  pendingConfIndex: LogIndex = 0;
  /**
   * Set by RawNode while a Ready's committed entries are with the application. Their conf
   * changes are applied (applyConfChange) to the current configuration, so no snapshot may
   * replace that configuration until advance().
   */
  applyingCommittedEntries = false;
  /** Payload bytes appended by this leader and not yet committed. */
  uncommittedBytes = 0;

  private readonly reads = new ReadQueue();
  /** A campaign was refused for a node-lease promise (see takeHeldByPromise). */
  private heldByPromise = false;
  /** Set once we sent TimeoutNow: the target may win a forced vote inside our lease. */
  private leaseRevoked = false;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Ticks since this replica started; drives the lease and the post-restart quiet period. */
  private nowTick = 0;

  constructor(config: RaftConfig) {
    this.config = resolveConfig(config);
    this.id = this.config.id;
    this.logger = this.config.logger;
    this.rng = this.config.rng;
    this.log = new RaftLog(this.config.storage, this.logger, this.config.applyBytesMax);
    this.tracker = new ProgressTracker(this.config.inflightCountMax, this.config.inflightBytesMax);

    const { hardState, confState } = this.config.storage.initialState();
    const restored = restoreConfig(confState, this.log.lastIndex(), (o) => this.tracker.newProgress(o));
    const cs = this.switchToConfig(restored);
    assertConfStatesEquivalent(cs, confState);

    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (this.config.applied > 0) this.log.appliedTo(this.config.applied);
    this.becomeFollower(this.term, NONE);
    this.logger.info(
      { nodeId: this.id, term: this.term, commit: this.log.committed, applied: this.log.applied, lastIndex: this.log.lastIndex(), voters: this.tracker.config.voters.toString() },
      'raft replica started',
    );
  }

  // ---------------------------------------------------------------------------
  // State queries

  softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  /** Whether queued reads can be put into a heartbeat round now. */
  hasFlushableReads(): boolean {
    return this.role === 'leader' && this.reads.hasQueued() && this.committedEntryInCurrentTerm();
  }

  pendingReadCount(): number {
    return this.reads.pendingCount();
  }

  /**
   * A campaign was refused because of a node-lease promise since the last
   * call: the shell asks the leader's node whether it still has this group
   * (it may have lost or removed its replica while its node lives on, and
   * the promise would hold the group leaderless until it answered).
   */
  takeHeldByPromise(): boolean {
    const held = this.heldByPromise;
    this.heldByPromise = false;
    return held;
  }

  /**
   * A follower forgets its leader (etcd-raft's ForgetLeader): it stays in its
   * term, does not campaign now, and its promises to the leader's node no
   * longer bind this group. For when that node says its replica does not lead.
   */
  forgetLeader(): void {
    if (this.role !== 'follower' || this.lead === NONE) return;
    this.logger.info({ nodeId: this.id, term: this.term, leaderId: this.lead }, 'forgot the leader: its node says its replica does not lead');
    this.lead = NONE;
  }

  /** Whether a lease read would be served without a round trip right now. */
  leaseValid(): boolean {
    if (this.role !== 'leader' || this.leaseRevoked || this.leadTransferee !== NONE) return false;
    if (this.config.readMode === 'lease' && this.nowTick < this.reads.quorumSentTick + this.config.electionTimeoutTicks - this.config.leaseMarginTicks) return true;
    return this.nodeLeaseQuorum();
  }

  /**
   * What a reader outside Raft needs to serve a node-lease read of this
   * leader's applied state (the shell's local reads): each voter with the
   * lease mark its acknowledgement of this term carries (-1: none yet; this
   * node's own counts always). Undefined whenever such a read would not be
   * linearizable whatever the leases say: not the leader, a transfer under
   * way or the lease revoked, no entry of this term committed yet, committed
   * entries not all applied, a joint configuration, or no node leases. The
   * reader counts `voters` a majority with the node leases it holds now,
   * as nodeLeaseQuorum does.
   */
  nodeLeaseReadVoters(): (readonly [voter: NodeId, mark: number])[] | undefined {
    if (this.config.nodeLeases === undefined || this.role !== 'leader' || this.leaseRevoked || this.leadTransferee !== NONE) return undefined;
    if (!this.committedEntryInCurrentTerm() || this.log.applied !== this.log.committed) return undefined;
    const voters = this.tracker.config.voters;
    if (voters.isJoint) return undefined;
    const out: (readonly [NodeId, number])[] = [];
    for (const id of voters.incoming.voters) out.push([id, id === this.id ? 0 : (this.tracker.progress.get(id)?.leaseMark ?? -1)]);
    return out;
  }

  /** Whether the voters whose node leases hold, and who acknowledged this term since their node started, are a quorum (with us). */
  private nodeLeaseQuorum(): boolean {
    const leases = this.config.nodeLeases;
    if (leases === undefined) return false;
    const votes = new Map<NodeId, boolean>();
    for (const id of this.tracker.config.voters.ids()) {
      const p = this.tracker.progress.get(id);
      votes.set(id, id === this.id || (p !== undefined && p.leaseMark >= 0 && leases.holds(id, p.leaseMark)));
    }
    return this.tracker.config.voters.voteResult(votes) === 'won';
  }

  /**
   * Whether a promise this node made forbids helping `candidate` get
   * elected: one to our leader's node (unless the candidate is that leader),
   * or, knowing no leader, one we may have made before a restart.
   */
  private promisedAgainst(candidate: NodeId): boolean {
    const leases = this.config.nodeLeases;
    if (leases === undefined || this.lead === this.id) return false;
    if (this.lead === NONE) return leases.promised(NONE);
    // A leader no longer a voter here can never be elected again: a promise to it would hold the group leaderless.
    return candidate !== this.lead && this.tracker.config.voters.has(this.lead) && leases.promised(this.lead);
  }

  /**
   * The candidate is the leader our node promised: it stepped down (check-quorum) and stands again.
   * Granting it is what the promise is for; a follower's recent contact with it (inLease) is no reason to refuse.
   */
  private promisedTo(candidate: NodeId): boolean {
    const leases = this.config.nodeLeases;
    return leases !== undefined && candidate === this.lead && candidate !== NONE && leases.promised(candidate);
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.termOrZero(this.log.committed) === this.term;
  }

  /** Index up to which this replica's log is known durable (the leader counts itself only up to here). */
  private persistedIndex(): LogIndex {
    if (this.log.hasPendingSnapshot()) return 0;
    return Math.min(this.log.storage.lastIndex(), this.log.unstable.offset - 1);
  }

  // ---------------------------------------------------------------------------
  // Sending

  private send(m: Message): void {
    assert(m.to !== NONE, () => `message ${m.type} has no recipient`);
    if (AFTER_PERSIST.has(m.type)) this.msgsAfterPersist.push(m);
    else this.msgs.push(m);
  }

  /** Sends an append (or a snapshot if the entries are compacted) to `to`. Returns whether anything was sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const progress = this.tracker.progress.get(to);
    assert(progress !== undefined, () => `send append to unknown peer ${to}`);
    if (progress.isPaused()) return false;

    const prevIndex = progress.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) return this.maybeSendSnapshot(to, progress);
    let entries: Entry[];
    try {
      entries = this.log.entries(progress.next, this.config.appendBytesMax);
    } catch (err) {
      if (err instanceof CompactedError) return this.maybeSendSnapshot(to, progress);
      throw err;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;

    const message: AppendMessage = {
      type: 'append',
      from: this.id,
      to,
      term: this.term,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.log.committed,
    };
    this.send(message);
    const last = entries.length > 0 ? entries[entries.length - 1]!.index : prevIndex;
    progress.sentEntries({ entryCount: entries.length, bytes: entriesSizeBytes(entries), lastIndex: last });
    return true;
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  private maybeSendSnapshot(to: NodeId, progress: Progress): boolean {
    if (!progress.recentActive) {
      this.logger.debug({ nodeId: this.id, to }, 'snapshot not sent to inactive follower');
      return false;
    }
    let snapshot: Snapshot;
    try {
      snapshot = this.log.snapshot();
    } catch (err) {
      if (err instanceof SnapshotTemporarilyUnavailableError) {
        this.logger.debug({ nodeId: this.id, to }, 'snapshot temporarily unavailable');
        return false;
      }
      throw err;
    }
    assert(snapshot.metadata.index > 0, () => `need a non-empty snapshot to catch up node ${to}`);
    const { index, term } = snapshot.metadata;
    this.logger.info({ nodeId: this.id, term: this.term, to, snapshotIndex: index, snapshotTerm: term, progress: progress.toString() }, 'sending snapshot');
    progress.becomeSnapshot(index);
    const message: SnapshotMessage = { type: 'snapshot', from: this.id, to, term: this.term, snapshot };
    this.send(message);
    return true;
  }

  private sendHeartbeat(to: NodeId, round: number): void {
    const progress = this.tracker.progress.get(to)!;
    // The follower may not have everything we committed; never tell it to commit past its match.
    const commit = Math.min(progress.match, this.log.committed);
    const message: HeartbeatMessage = { type: 'heartbeat', from: this.id, to, term: this.term, commit, round };
    this.send(message);
  }

  private bcastAppend(): void {
    this.tracker.visit((id) => {
      if (id !== this.id) this.sendAppend(id);
    });
  }

  /** Starts a heartbeat round; queued reads join it when `withReads`. */
  private bcastHeartbeat(withReads: boolean): void {
    const round = this.reads.startRound({ nowTick: this.nowTick, commitIndex: this.log.committed, withReads });
    this.tracker.visit((id) => {
      if (id !== this.id) this.sendHeartbeat(id, round);
    });
    this.onHeartbeatAck(this.id, round);
  }

  // ---------------------------------------------------------------------------
  // Commit and apply

  /** Advances the commit index to what a quorum has durably replicated, if from our term (§5.4.2). */
  private maybeCommit(): boolean {
    return this.log.maybeCommit(this.tracker.committed(), this.term);
  }

  /** The shell persisted entries up to (index, term): the leader may count itself. */
  onPersisted(index: LogIndex, term: Term): void {
    if (this.role !== 'leader') return;
    if (!this.log.matchTerm(index, term)) return; // replaced since; not ours to count
    const self = this.tracker.progress.get(this.id);
    if (self === undefined) return;
    const before = this.log.committed;
    if (self.maybeUpdate(index) && this.maybeCommit()) this.onCommitAdvanced(before);
  }

  /**
   * The commit index moved past `before`: tell the followers now, or let the
   * next append or heartbeat carry it (commitBroadcast). A conf change among
   * the newly committed entries always goes out at once: once it applies
   * here, a replica it removes hears from us no more, and must learn of its
   * removal before that.
   */
  private onCommitAdvanced(before: LogIndex): void {
    const confChangeCommitted = this.pendingConfIndex > before && this.pendingConfIndex <= this.log.committed;
    if (this.config.commitBroadcast === 'eager' || confChangeCommitted) return this.bcastAppend();
    this.tracker.visit((id) => {
      if (id !== this.id) this.maybeSendAppend(id, false);
    });
  }

  /** The application applied entries up to `index`. */
  appliedTo(index: LogIndex): void {
    this.log.appliedTo(index);
    // Joint configs with autoLeave are left by the leader as soon as entering them is applied (thesis §4.3).
    if (this.tracker.config.autoLeave && index >= this.pendingConfIndex && this.role === 'leader') {
      const leave: ConfChange = { changes: [], transition: 'auto' };
      try {
        this.appendProposal([{ term: 0, index: 0, type: 'confChange', data: encodeConfChange(leave) }]);
        this.bcastAppend();
        this.logger.info({ nodeId: this.id, term: this.term, config: this.tracker.config.voters.toString() }, 'initiating automatic transition out of joint configuration');
      } catch (err) {
        // Dropped (e.g. over the uncommitted cap): the next apply retries.
        this.logger.debug({ nodeId: this.id, err }, 'automatic leave of joint configuration postponed');
      }
    }
  }

  private increaseUncommittedBytes(entries: readonly Entry[]): boolean {
    const bytes = payloadSizeBytes(entries);
    // A single proposal larger than the cap still goes through when nothing else is uncommitted.
    if (this.uncommittedBytes > 0 && bytes > 0 && this.uncommittedBytes + bytes > this.config.uncommittedBytesMax) return false;
    this.uncommittedBytes += bytes;
    return true;
  }

  reduceUncommittedBytes(entries: readonly Entry[]): void {
    if (this.role !== 'leader') return;
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - payloadSizeBytes(entries));
  }

  /** Appends proposals at the end of the leader's log. Returns false when over the uncommitted cap. */
  private appendEntries(entries: readonly Entry[]): boolean {
    const last = this.log.lastIndex();
    const stamped: Entry[] = entries.map((e, i) => ({ term: this.term, index: last + 1 + i, type: e.type, data: e.data }));
    if (!this.increaseUncommittedBytes(stamped)) {
      this.logger.debug({ nodeId: this.id, uncommittedBytes: this.uncommittedBytes }, 'proposal over the uncommitted cap');
      return false;
    }
    this.log.append(stamped);
    return true;
  }

  // ---------------------------------------------------------------------------
  // Role transitions

  private reset(term: Term): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.tracker.resetVotes();
    const last = this.log.lastIndex();
    for (const [id, old] of this.tracker.progress) {
      const fresh = this.tracker.newProgress({ next: last + 1, isLearner: old.isLearner });
      if (id === this.id) {
        fresh.match = this.persistedIndex();
        fresh.recentActive = true;
      }
      this.tracker.progress.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.leaseRevoked = false;
    for (const read of this.reads.reset()) if (read.from === this.id) this.droppedReads.push(read.context);
  }

  becomeFollower(term: Term, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = 'follower';
    this.logger.info({ nodeId: this.id, term: this.term, leaderId: lead }, 'became follower');
  }

  private becomeCandidate(): void {
    assert(this.role !== 'leader', () => `invalid transition leader -> candidate (node ${this.id}, term ${this.term})`);
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.logger.info({ nodeId: this.id, term: this.term }, 'became candidate');
  }

  private becomePreCandidate(): void {
    assert(this.role !== 'leader', () => `invalid transition leader -> pre-candidate (node ${this.id}, term ${this.term})`);
    // Pre-vote (thesis §9.6): neither term nor vote changes until a quorum says we could win.
    this.tracker.resetVotes();
    this.lead = NONE;
    this.role = 'preCandidate';
    this.logger.info({ nodeId: this.id, term: this.term }, 'became pre-candidate');
  }

  private becomeLeader(): void {
    assert(this.role !== 'follower', () => `invalid transition follower -> leader (node ${this.id}, term ${this.term})`);
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    // The leader replicates to itself by persisting; it is always "replicating".
    this.tracker.progress.get(this.id)!.becomeReplicate();
    // Any conf change in the log may be unapplied; refuse new ones until we apply past it.
    this.pendingConfIndex = this.log.lastIndex();
    // An empty entry of our own term lets us commit (§5.4.2, §8): earlier terms' entries commit with it.
    const ok = this.appendEntries([{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }]);
    assert(ok, 'empty leader entry refused by the uncommitted cap');
    this.logger.info({ nodeId: this.id, term: this.term, lastIndex: this.log.lastIndex() }, 'became leader');
  }

  // ---------------------------------------------------------------------------
  // Elections

  private hup(transfer: boolean): void {
    if (this.role === 'leader') {
      this.logger.debug({ nodeId: this.id, term: this.term }, 'ignoring hup: already leader');
      return;
    }
    if (!this.promotable()) {
      this.logger.warn({ nodeId: this.id, term: this.term }, 'not promotable; cannot campaign');
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.warn({ nodeId: this.id, term: this.term }, 'cannot campaign: committed conf changes not yet applied');
      return;
    }
    if (!transfer && this.promisedAgainst(this.id)) {
      // Our node promised the leader's node not to help elect anyone else, ourselves included.
      this.logger.debug({ nodeId: this.id, term: this.term, leaderId: this.lead }, "cannot campaign: promised to the leader's node");
      this.heldByPromise = this.lead !== NONE;
      return;
    }
    if (!transfer && this.config.readMode === 'lease' && this.lead !== NONE && this.electionElapsed < this.config.electionTimeoutTicks) {
      // A forced campaign (RawNode.campaign) while we still hear from the leader: our last heartbeat
      // acknowledgement promised its lease that we would not vote, for ourselves either, for an
      // election timeout (thesis §4.2.3, §6.4.1). Campaigning would also forget the leader and let
      // us grant others' votes. The timer never gets here: it fires only after the timeout.
      this.logger.warn({ nodeId: this.id, term: this.term, leaderId: this.lead, electionElapsedTicks: this.electionElapsed }, 'cannot campaign: inside the leader lease');
      return;
    }
    this.logger.info({ nodeId: this.id, term: this.term }, 'starting a new election');
    if (this.config.preVote && !transfer) this.campaign('preElection', false);
    else this.campaign('election', transfer);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    // Scan in pages so a long unapplied tail does not materialize at once.
    for (let index = lo; index <= this.log.committed; ) {
      const page = this.log.slice(index, this.log.committed + 1, this.config.applyBytesMax);
      for (const e of page) if (e.type === 'confChange') return true;
      index += page.length;
    }
    return false;
  }

  /** Whether this replica may become leader: a voter, without a snapshot waiting to install. */
  promotable(): boolean {
    const self = this.tracker.progress.get(this.id);
    return self !== undefined && !self.isLearner && !this.log.hasPendingSnapshot();
  }

  private campaign(kind: 'preElection' | 'election', transfer: boolean): void {
    let voteType: VoteKind;
    let term: Term;
    if (kind === 'preElection') {
      this.becomePreCandidate();
      voteType = 'preVote';
      // Pre-vote requests carry the term we would campaign in, without taking it.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = 'vote';
      term = this.term;
    }
    const index = this.log.lastIndex();
    const logTerm = this.log.lastTerm();
    for (const id of this.tracker.voterNodes()) {
      if (id === this.id) {
        // Our own vote: persisted with the hard state of this Ready before any request leaves.
        const result = this.poll(id, true);
        if (result === 'won') {
          if (kind === 'preElection') this.campaign('election', transfer);
          else this.becomeLeader();
          return;
        }
        continue;
      }
      const message: VoteMessage = { type: voteType, from: this.id, to: id, term, index, logTerm, transfer };
      this.logger.debug({ nodeId: this.id, term: this.term, to: id, voteType, index, logTerm }, 'sent vote request');
      this.send(message);
    }
  }

  private poll(id: NodeId, granted: boolean): 'won' | 'lost' | 'pending' {
    this.tracker.recordVote(id, granted);
    return this.tracker.tallyVotes().result;
  }

  // ---------------------------------------------------------------------------
  // Ticks

  /** Dispatched on the role, as step is: a tick and a step closure per replica cost ~150 B (ARCHITECTURE.md, "Memory per replica"). */
  tick(): void {
    this.nowTick++;
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  private pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.config.electionTimeoutTicks + this.rng.intBelow(this.config.electionTimeoutTicks);
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.pastElectionTimeout()) {
      // Reset after the hup, so hup sees how long we have not heard from a leader.
      this.step({ type: 'hup', from: this.id, to: this.id, term: 0, transfer: false });
      // Held by a node-lease promise: try again next tick, not a whole election timeout later (the
      // promise runs out within a timeout of the leader's node falling silent, and failover must not
      // wait a second timeout on top).
      this.electionElapsed = this.heldByPromise ? this.randomizedElectionTimeout - 1 : 0;
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTimeoutTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum) this.step({ type: 'checkQuorum', from: this.id, to: this.id, term: 0 });
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === 'leader' && this.leadTransferee !== NONE) {
        this.logger.info({ nodeId: this.id, term: this.term, transferee: this.leadTransferee }, 'leader transfer timed out');
        this.abortLeaderTransfer();
      }
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.config.heartbeatIntervalTicks) {
      this.heartbeatElapsed = 0;
      this.step({ type: 'beat', from: this.id, to: this.id, term: 0 });
    }
  }

  // ---------------------------------------------------------------------------
  // Step: term handling common to every role (§5.1), then role dispatch

  step(m: Message): void {
    if (m.term === 0) {
      // local message (or a forwarded proposal / read, which carry no term)
    } else if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        // Thesis §4.2.3: while we hear from a live leader, a higher-term vote request is a
        // disruptive server. A transfer (TimeoutNow) is the leader's own request and is exempt.
        if (!m.transfer && !this.promisedTo(m.from) && (this.inLease() || this.promisedAgainst(m.from))) {
          this.logger.info(
            { nodeId: this.id, term: this.term, from: m.from, candidateTerm: m.term, leaderId: this.lead, electionElapsedTicks: this.electionElapsed },
            'ignored vote request within leader lease',
          );
          return;
        }
      }
      if (m.type === 'preVote') {
        // A pre-vote never changes our term.
      } else if (m.type === 'preVoteResponse' && !m.reject) {
        // Granted pre-votes carry the future term; we take it only when the pre-vote wins.
      } else {
        this.logger.info({ nodeId: this.id, term: this.term, messageType: m.type, from: m.from, messageTerm: m.term }, 'received message with higher term');
        const fromLeader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot';
        this.becomeFollower(m.term, fromLeader ? m.from : NONE);
      }
    } else if (m.term < this.term) {
      this.onStaleTermMessage(m);
      return;
    }

    switch (m.type) {
      case 'hup':
        this.hup(m.transfer);
        return;
      case 'vote':
      case 'preVote':
        this.onVoteRequest(m);
        return;
      default:
        this.stepByRole(m);
    }
  }

  private stepByRole(m: Message): void {
    switch (this.role) {
      case 'leader':
        return this.stepLeader(m);
      case 'candidate':
      case 'preCandidate':
        return this.stepCandidate(m);
      case 'follower':
        return this.stepFollower(m);
      default:
        unreachable(this.role, 'role');
    }
  }

  /** A follower that heard from a leader within the election timeout does not vote. */
  private inLease(): boolean {
    if (!this.config.checkQuorum) return false;
    if (this.lead !== NONE && this.electionElapsed < this.config.electionTimeoutTicks) return true;
    // After a restart we forgot whom we heard from; leases granted before the crash may still run.
    return this.config.readMode === 'lease' && this.nowTick < this.config.electionTimeoutTicks;
  }

  private onStaleTermMessage(m: Message): void {
    if ((this.config.checkQuorum || this.config.preVote) && (m.type === 'heartbeat' || m.type === 'append')) {
      // A leader cut off by a partition keeps sending at its old term. Our answer at the
      // current term makes it step down; without it, check-quorum / pre-vote could leave the
      // cluster stuck with that node unable to rejoin (etcd-raft issue 5451).
      this.send({ type: 'appendResponse', from: this.id, to: m.from, term: this.term, index: 0, reject: false, rejectHint: 0, logTerm: 0, incarnation: this.config.incarnation });
    } else if (m.type === 'preVote') {
      // Tell a lagging pre-candidate our term so it can catch up.
      this.send({ type: 'preVoteResponse', from: this.id, to: m.from, term: this.term, reject: true });
    } else {
      this.logger.debug({ nodeId: this.id, term: this.term, messageType: m.type, from: m.from, messageTerm: m.term }, 'ignored message with lower term');
    }
  }

  private onVoteRequest(m: VoteMessage): void {
    // We can vote if we already voted for this candidate (a duplicate), or have not voted and
    // know no leader in this term, or it is a pre-vote for a later term.
    const canVote =
      this.vote === m.from || (this.vote === NONE && this.lead === NONE) || (m.type === 'preVote' && m.term > this.term);
    const responseType = m.type === 'vote' ? 'voteResponse' : 'preVoteResponse';
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      this.logger.info({ nodeId: this.id, term: this.term, voteType: m.type, candidate: m.from, candidateIndex: m.index, candidateLogTerm: m.logTerm }, 'granted vote');
      // The response carries the request's term: for a pre-vote, our own term may be lower.
      const response: VoteResponseMessage = { type: responseType, from: this.id, to: m.from, term: m.term, reject: false };
      this.send(response);
      if (m.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.logger.info(
        { nodeId: this.id, term: this.term, voteType: m.type, candidate: m.from, candidateIndex: m.index, candidateLogTerm: m.logTerm, vote: this.vote, lastIndex: this.log.lastIndex(), lastTerm: this.log.lastTerm() },
        'rejected vote',
      );
      this.send({ type: responseType, from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  // ---------------------------------------------------------------------------
  // Leader

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'beat':
        this.bcastHeartbeat(false);
        return;
      case 'checkQuorum':
        this.onCheckQuorum();
        return;
      case 'propose':
        this.onLeaderPropose(m);
        return;
      case 'readIndex':
        this.onLeaderReadIndex(m);
        return;
      case 'transferLeader':
        this.onTransferLeader(m);
        return;
      case 'appendResponse':
        this.onAppendResponse(m);
        return;
      case 'heartbeatResponse':
        this.onHeartbeatResponse(m);
        return;
      case 'snapshotStatus':
        this.onSnapshotStatus(m.from, m.reject);
        return;
      case 'unreachable': {
        // An unreachable follower in replicate state would eat its whole window; probe instead.
        const progress = this.tracker.progress.get(m.from);
        if (progress?.state === 'replicate') progress.becomeProbe();
        return;
      }
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // Same term, another leader: impossible under Election Safety (§5.2).
        assert(false, () => `leader ${this.id} got ${m.type} from ${m.from} in its own term ${this.term}`);
        return;
      case 'voteResponse':
      case 'preVoteResponse':
      case 'readIndexResponse':
      case 'timeoutNow':
      case 'hup':
      case 'vote':
      case 'preVote':
        this.logger.debug({ nodeId: this.id, term: this.term, messageType: m.type, from: m.from }, 'leader ignored message');
        return;
      default:
        unreachable(m, 'message type');
    }
  }

  private onCheckQuorum(): void {
    if (!this.tracker.quorumActive()) {
      this.logger.warn({ nodeId: this.id, term: this.term }, 'stepped down: quorum not active (check-quorum)');
      this.becomeFollower(this.term, NONE);
      return;
    }
    // Mark everyone inactive for the next round; we are always active to ourselves.
    this.tracker.visit((id, progress) => {
      if (id !== this.id) progress.recentActive = false;
    });
  }

  private onLeaderPropose(m: ProposeMessage): void {
    if (m.entries.length === 0) return this.dropRequest(m, 'empty proposal');
    if (!this.tracker.progress.has(this.id)) {
      // Removed from the config but still leading until the change is applied elsewhere.
      return this.dropRequest(m, `node ${this.id} is no longer a member (term ${this.term})`);
    }
    if (this.leadTransferee !== NONE) {
      return this.dropRequest(m, `leader transfer to ${this.leadTransferee} in progress (term ${this.term})`);
    }
    try {
      this.appendProposal(m.entries);
    } catch (err) {
      if (err instanceof ProposalDroppedError) return this.dropRequest(m, err.reason);
      // An invalid or undecodable conf change: our caller gets the error; one forwarded over the network is dropped.
      if (err instanceof InvalidConfChangeError && m.from !== this.id) return this.dropRequest(m, err.message);
      throw err;
    }
    this.bcastAppend();
  }

  /**
   * Refuses a proposal or read. Our own caller gets a ProposalDroppedError; one
   * forwarded from another replica is dropped (its sender times out and retries).
   */
  private dropRequest(m: ProposeMessage | ReadIndexMessage, reason: string): void {
    if (m.from === this.id) throw new ProposalDroppedError(reason);
    this.logger.debug({ nodeId: this.id, term: this.term, from: m.from, messageType: m.type, reason }, 'dropped forwarded request');
  }

  /** Validates conf changes among `entries`, then appends them all; throws ProposalDroppedError when refused. */
  private appendProposal(entries: readonly Entry[]): void {
    // Recorded only once the entries are accepted: a proposal refused by the cap must not block the next change.
    let pendingConfIndex = this.pendingConfIndex;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.type !== 'confChange') continue;
      const cc = decodeConfChange(e.data);
      const alreadyPending = pendingConfIndex > this.log.applied;
      const alreadyJoint = this.tracker.config.voters.isJoint;
      const wantsLeaveJoint = isLeaveJoint(cc);
      let refused: string | undefined;
      if (alreadyPending) refused = `conf change at index ${pendingConfIndex} not yet applied (applied ${this.log.applied})`;
      else if (alreadyJoint && !wantsLeaveJoint) refused = 'must leave the joint configuration first';
      else if (!alreadyJoint && wantsLeaveJoint) refused = 'not in a joint configuration; nothing to leave';
      if (refused !== undefined) {
        this.logger.info({ nodeId: this.id, term: this.term, reason: refused }, 'conf change refused');
        throw new ProposalDroppedError(refused);
      }
      // Dry-run it: with no other change pending, the current config is the one it will be applied to,
      // and a committed change that every replica fails to apply (removing every voter, say) wedges the
      // group (test/test/sim.test.ts has the regression).
      this.changedConfig(cc);
      pendingConfIndex = this.log.lastIndex() + i + 1;
    }
    if (!this.appendEntries(entries)) {
      throw new ProposalDroppedError(`uncommitted bytes ${this.uncommittedBytes} at cap ${this.config.uncommittedBytesMax}`);
    }
    this.pendingConfIndex = pendingConfIndex;
  }

  private onLeaderReadIndex(m: ReadIndexMessage): void {
    for (const context of m.contexts) this.reads.enqueue({ from: m.from, context });
    if (this.committedEntryInCurrentTerm()) this.serveReadsWithoutRound();
  }

  /** A single voter, or a valid lease, confirms leadership without a round trip. */
  private serveReadsWithoutRound(): void {
    if (this.tracker.isSingleton() || this.leaseValid()) {
      const index = this.log.committed;
      this.respondToReads(index, this.reads.takeQueued());
    }
  }

  /** Puts queued reads into a heartbeat round (called once per Ready so reads share rounds). */
  flushReads(): void {
    if (!this.hasFlushableReads()) return;
    this.serveReadsWithoutRound();
    if (this.reads.hasQueued()) this.bcastHeartbeat(true);
  }

  private respondToReads(index: LogIndex, reads: readonly PendingRead[]): void {
    const byFollower = new Map<NodeId, ReadContext[]>();
    for (const read of reads) {
      if (read.from === this.id || read.from === NONE) {
        this.readStates.push({ index, context: read.context });
      } else {
        let contexts = byFollower.get(read.from);
        if (contexts === undefined) byFollower.set(read.from, (contexts = []));
        contexts.push(read.context);
      }
    }
    for (const [to, contexts] of byFollower) {
      this.send({ type: 'readIndexResponse', from: this.id, to, term: this.term, index, contexts });
    }
  }

  /** A response in this term: the follower knows us as its leader (it answers only the leader it follows). */
  private markLeaseAck(from: NodeId, progress: Progress): void {
    if (this.config.nodeLeases !== undefined && from !== this.id) progress.leaseMark = this.config.nodeLeases.ackMark(from);
  }

  private onHeartbeatAck(from: NodeId, round: number): void {
    const progress = this.tracker.progress.get(from);
    if (progress === undefined || round <= progress.ackedRound || !this.reads.isKnownRound(round)) return;
    progress.ackedRound = round;
    const quorumRound = this.tracker.quorumAckedRound();
    if (quorumRound === 0 || quorumRound === Number.MAX_SAFE_INTEGER) return;
    for (const confirmed of this.reads.onQuorumAcked(quorumRound)) this.respondToReads(confirmed.index, confirmed.reads);
  }

  private onHeartbeatResponse(m: HeartbeatResponseMessage): void {
    const progress = this.tracker.progress.get(m.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    this.markLeaseAck(m.from, progress);
    progress.probeSent = false;
    this.onHeartbeatAck(m.from, m.round);
    // Every append filling the window may have been lost (or its ack): free one slot so the
    // follower gets an append whose answer resyncs the window (etcd-raft's FreeFirstOne).
    // Without it replication to a live follower stalls forever (test/test/sim.test.ts regressions).
    if (progress.state === 'replicate' && progress.inflights.full()) progress.inflights.freeFirstOne();
    // A caught-up follower still in probe (an `unreachable` report moved it there) gets an empty
    // append too: its answer moves it back to replicate (etcd-raft does the same). Otherwise it
    // stays in probe until the next write, and a leader with a follower in probe never quiesces.
    if (progress.match < this.log.lastIndex() || progress.state === 'probe') this.sendAppend(m.from);
  }

  private onAppendResponse(m: AppendResponseMessage): void {
    const progress = this.tracker.progress.get(m.from);
    if (progress === undefined) return;
    if (m.incarnation !== progress.incarnation) {
      // A late answer of a replica its node has since destroyed: what it had is gone.
      if (m.incarnation < progress.incarnation) return;
      // A new replica on that node: what the one before it acknowledged is not there. Start over
      // from its answer, as for a follower we never heard from.
      if (progress.match > 0 || progress.incarnation > 0) {
        this.logger.info({ nodeId: this.id, term: this.term, from: m.from, incarnation: m.incarnation, was: progress.incarnation, match: progress.match }, 'new replica on a follower node; replicating to it from the start');
        // A rejection tells where its log fails to match: probe from there.
        progress.restartFor(m.incarnation, m.reject ? m.index + 1 : progress.next);
      } else {
        progress.incarnation = m.incarnation;
      }
    }
    progress.recentActive = true;
    this.markLeaseAck(m.from, progress);
    if (m.reject) {
      this.onAppendResponseRejected(m, progress);
      return;
    }
    const wasPaused = progress.isPaused();
    if (!progress.maybeUpdate(m.index) && !(progress.match === m.index && progress.state === 'probe')) return;
    switch (progress.state) {
      case 'probe':
        progress.becomeReplicate();
        break;
      case 'snapshot':
        // The follower caught up past the snapshot (or our log still covers it): resume replication.
        if (progress.match + 1 >= this.log.firstIndex()) {
          progress.becomeProbe();
          progress.becomeReplicate();
        }
        break;
      case 'replicate':
        progress.inflights.freeLE(m.index);
        break;
    }
    const before = this.log.committed;
    if (this.maybeCommit()) {
      this.onCommitAdvanced(before);
    } else if (wasPaused) {
      // The window opened: nothing else will trigger a send.
      this.sendAppend(m.from);
    }
    // Drain as much of the log as the window allows.
    while (this.maybeSendAppend(m.from, false)) {
      // keep sending
    }
    if (m.from === this.leadTransferee && progress.match === this.log.lastIndex()) {
      this.logger.info({ nodeId: this.id, term: this.term, transferee: m.from }, 'transferee caught up; sending timeout-now');
      this.sendTimeoutNow(m.from);
    }
  }

  /** Fast backtracking (thesis §3.5, etcd-raft's findConflictByTerm): skip a whole term per round trip. */
  private onAppendResponseRejected(m: AppendResponseMessage, progress: Progress): void {
    this.logger.debug({ nodeId: this.id, term: this.term, from: m.from, rejected: m.index, hintIndex: m.rejectHint, hintTerm: m.logTerm }, 'append rejected');
    let nextProbe = m.rejectHint;
    if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
    if (progress.maybeDecreaseTo(m.index, nextProbe)) {
      if (progress.state === 'replicate') progress.becomeProbe();
      this.sendAppend(m.from);
    }
  }

  private onSnapshotStatus(from: NodeId, rejected: boolean): void {
    const progress = this.tracker.progress.get(from);
    if (progress === undefined || progress.state !== 'snapshot') return;
    if (rejected) {
      progress.pendingSnapshot = 0;
      this.logger.info({ nodeId: this.id, term: this.term, to: from }, 'snapshot send failed');
    }
    // Wait for the follower's append response (or a heartbeat response) before probing again.
    progress.becomeProbe();
    progress.probeSent = true;
  }

  private onTransferLeader(m: TransferLeaderMessage): void {
    const transferee = m.transferee;
    const progress = this.tracker.progress.get(transferee);
    if (progress === undefined || progress.isLearner) {
      this.logger.info({ nodeId: this.id, term: this.term, transferee }, 'leader transfer ignored: transferee is not a voter');
      return;
    }
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === transferee) return; // already in progress
      this.abortLeaderTransfer();
    }
    if (transferee === this.id) return;
    // Transfer must finish within an election timeout (thesis §3.10).
    this.electionElapsed = 0;
    this.leadTransferee = transferee;
    this.logger.info({ nodeId: this.id, term: this.term, transferee, transfereeMatch: progress.match }, 'leader transfer started');
    if (progress.match === this.log.lastIndex()) this.sendTimeoutNow(transferee);
    else this.sendAppend(transferee);
  }

  private sendTimeoutNow(to: NodeId): void {
    // The target will win a vote that ignores leases; ours must end now.
    this.leaseRevoked = true;
    this.send({ type: 'timeoutNow', from: this.id, to, term: this.term });
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  // ---------------------------------------------------------------------------
  // Candidate and pre-candidate

  private stepCandidate(m: Message): void {
    const myResponse = this.role === 'preCandidate' ? 'preVoteResponse' : 'voteResponse';
    switch (m.type) {
      case 'propose':
      case 'readIndex':
        return this.dropRequest(m, `no leader at term ${this.term} (node ${this.id} is campaigning)`);
      case 'append':
        this.becomeFollower(m.term, m.from);
        this.onAppend(m);
        return;
      case 'heartbeat':
        this.becomeFollower(m.term, m.from);
        this.onHeartbeat(m);
        return;
      case 'snapshot':
        this.becomeFollower(m.term, m.from);
        this.onSnapshot(m);
        return;
      case 'voteResponse':
      case 'preVoteResponse': {
        if (m.type !== myResponse) return; // a response from an earlier phase
        const result = this.poll(m.from, !m.reject);
        const tally = this.tracker.tallyVotes();
        this.logger.info({ nodeId: this.id, term: this.term, from: m.from, granted: tally.granted, rejected: tally.rejected, voteType: m.type }, 'vote tallied');
        if (result === 'won') {
          if (this.role === 'preCandidate') {
            this.campaign('election', false);
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === 'lost') {
          // Pre-vote lost: stay at our term as a follower. Vote lost: same.
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      case 'timeoutNow':
        this.logger.debug({ nodeId: this.id, term: this.term, from: m.from }, 'ignored timeout-now while campaigning');
        return;
      case 'transferLeader':
      case 'beat':
      case 'checkQuorum':
      case 'unreachable':
      case 'snapshotStatus':
      case 'appendResponse':
      case 'heartbeatResponse':
      case 'readIndexResponse':
      case 'hup':
      case 'vote':
      case 'preVote':
        return;
      default:
        unreachable(m, 'message type');
    }
  }

  // ---------------------------------------------------------------------------
  // Follower

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'propose':
        if (this.lead === NONE) return this.dropRequest(m, `no leader at term ${this.term} (node ${this.id})`);
        if (!this.config.proposalForwarding) return this.dropRequest(m, `not leader; forwarding disabled (leader is ${this.lead})`);
        if (m.from !== this.id) return this.dropRequest(m, 'forwarded proposal reached a follower');
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'append':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.onAppend(m);
        return;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.onHeartbeat(m);
        return;
      case 'snapshot':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.onSnapshot(m);
        return;
      case 'transferLeader':
        if (this.lead === NONE) {
          this.logger.info({ nodeId: this.id, term: this.term }, 'no leader; dropping leader transfer');
          return;
        }
        this.send({ ...m, to: this.lead, term: this.term });
        return;
      case 'timeoutNow':
        this.logger.info({ nodeId: this.id, term: this.term, from: m.from }, 'received timeout-now; campaigning for leader transfer');
        // Transfers skip pre-vote: the leader asked, so we know we are not partitioned.
        this.hup(true);
        return;
      case 'readIndex':
        if (this.lead === NONE) return this.dropRequest(m, `no leader at term ${this.term} to serve reads`);
        if (m.from !== this.id) return this.dropRequest(m, 'forwarded read reached a follower');
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'readIndexResponse':
        for (const context of m.contexts) this.readStates.push({ index: m.index, context });
        return;
      case 'voteResponse':
      case 'preVoteResponse':
      case 'appendResponse':
      case 'heartbeatResponse':
      case 'beat':
      case 'checkQuorum':
      case 'unreachable':
      case 'snapshotStatus':
      case 'hup':
      case 'vote':
      case 'preVote':
        return;
      default:
        unreachable(m, 'message type');
    }
  }

  private onAppend(m: AppendMessage): void {
    if (m.index < this.log.committed) {
      // Everything up to our commit index matches the leader's log (Leader Completeness).
      this.sendAppendResponse(m.from, this.log.committed);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.sendAppendResponse(m.from, lastNew);
      return;
    }
    // Reject with a hint: our highest index <= m.index whose term is <= m.logTerm.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.logger.debug({ nodeId: this.id, term: this.term, index: m.index, logTerm: m.logTerm, hintIndex: hint.index, hintTerm: hint.term, from: m.from }, 'rejected append');
    this.send({ type: 'appendResponse', from: this.id, to: m.from, term: this.term, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term, incarnation: this.config.incarnation });
  }

  private sendAppendResponse(to: NodeId, index: LogIndex): void {
    this.send({ type: 'appendResponse', from: this.id, to, term: this.term, index, reject: false, rejectHint: 0, logTerm: 0, incarnation: this.config.incarnation });
  }

  private onHeartbeat(m: HeartbeatMessage): void {
    this.log.commitTo(m.commit);
    this.send({ type: 'heartbeatResponse', from: this.id, to: m.from, term: this.term, round: m.round });
  }

  private onSnapshot(m: SnapshotMessage): void {
    const { index, term } = m.snapshot.metadata;
    if (this.restore(m.snapshot)) {
      this.logger.info({ nodeId: this.id, term: this.term, commit: this.log.committed, snapshotIndex: index, snapshotTerm: term }, 'restored snapshot');
      this.sendAppendResponse(m.from, this.log.lastIndex());
    } else {
      this.logger.info({ nodeId: this.id, term: this.term, commit: this.log.committed, snapshotIndex: index, snapshotTerm: term }, 'ignored snapshot');
      this.sendAppendResponse(m.from, this.log.committed);
    }
  }

  /** Installs a snapshot from the leader; false when it brings nothing new. */
  private restore(snapshot: Snapshot): boolean {
    const { index, term, confState } = snapshot.metadata;
    if (index <= this.log.committed) return false;
    if (this.role !== 'follower') {
      // Only a follower of this term's leader can get here; anything else is a protocol violation we survive.
      this.logger.warn({ nodeId: this.id, term: this.term, role: this.role }, 'non-follower asked to restore a snapshot; becoming follower');
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    const member = [confState.voters, confState.learners, confState.votersOutgoing].some((ids) => ids.includes(this.id));
    // A replica added after the leader's latest snapshot is not in that snapshot's config yet: it
    // restores it anyway and learns of its own addition from the entries that follow (else it could
    // never catch up). A current member that the snapshot would drop still refuses it.
    if (!member && this.tracker.progress.has(this.id)) {
      this.logger.warn({ nodeId: this.id, term: this.term, snapshotIndex: index }, 'snapshot does not include this node; ignored');
      return false;
    }
    if (this.log.matchTerm(index, term)) {
      // We already have the snapshot's last entry: fast-forward the commit index instead.
      this.log.commitTo(index);
      return false;
    }
    if (this.applyingCommittedEntries) {
      // Entries below the snapshot are being applied; restoring now would swap the config their
      // conf changes apply to, and replicas would diverge on membership or throw InvalidConfChangeError
      // (test/test/sim.test.ts regressions). The leader retries.
      this.logger.info({ nodeId: this.id, term: this.term, snapshotIndex: index }, 'snapshot ignored: committed entries are being applied');
      return false;
    }
    this.log.restore(snapshot);
    this.tracker = new ProgressTracker(this.config.inflightCountMax, this.config.inflightBytesMax);
    const restored = restoreConfig(confState, this.log.lastIndex(), (o) => this.tracker.newProgress(o));
    assertConfStatesEquivalent(this.switchToConfig(restored), confState);
    return true;
  }

  // ---------------------------------------------------------------------------
  // Membership

  /** Applies a committed conf change; returns the new ConfState for the application to persist. */
  applyConfChange(cc: ConfChange): ConfState {
    if (this.tracker.config.voters.incoming.size === 0) {
      // The bootstrap config lives in an index-0 snapshot, never in the log. A replica started on an
      // empty storage replays only the later changes: on `addNode` of itself it would believe it is a
      // one-voter group and elect itself (split brain). Fail loudly instead.
      throw new InvalidConfChangeError(
        `node ${this.id} has no configuration to change (applied ${this.log.applied}); start a joining replica from the group's bootstrap ConfState or from a snapshot`,
      );
    }
    return this.switchToConfig(this.changedConfig(cc));
  }

  /** The config and progress `cc` leads to from the current config; throws InvalidConfChangeError if it cannot apply. */
  private changedConfig(cc: ConfChange): ChangeResult {
    const changer = new Changer({ config: this.tracker.config, progress: this.tracker.progress }, this.log.lastIndex(), (o) =>
      this.tracker.newProgress(o),
    );
    if (isLeaveJoint(cc)) return changer.leaveJoint();
    const { joint, autoLeave } = enterJoint(cc);
    return joint ? changer.enterJoint(autoLeave, cc.changes) : changer.simple(cc.changes);
  }

  private switchToConfig(result: ChangeResult): ConfState {
    this.tracker.config = result.config;
    this.tracker.progress = result.progress;
    const cs = this.tracker.confState();
    this.logger.info({ nodeId: this.id, term: this.term, config: this.tracker.config.voters.toString(), learners: cs.learners }, 'switched to configuration');
    const self = this.tracker.progress.get(this.id);
    this.isLearner = self?.isLearner ?? false;

    if ((self === undefined || this.isLearner) && this.role === 'leader') {
      // Removed or demoted: a leader that is no longer a voter must not keep leading (§6).
      if (this.config.stepDownOnRemoval) {
        this.logger.info({ nodeId: this.id, term: this.term }, 'stepping down: removed from the configuration');
        this.becomeFollower(this.term, NONE);
      }
      return cs;
    }
    if (this.role !== 'leader' || cs.voters.length === 0) return cs;
    // The quorum may have changed: commit what the new config allows, or catch up new peers.
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else {
      this.tracker.visit((id) => {
        if (id !== this.id) this.maybeSendAppend(id, false);
      });
    }
    if (this.leadTransferee !== NONE && !this.tracker.config.voters.has(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  private loadState(hs: HardState): void {
    if (hs.commit < this.log.committed || hs.commit > this.log.lastIndex()) {
      throw new CorruptStateError(`hard state commit ${hs.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}] (node ${this.id})`);
    }
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  // ---------------------------------------------------------------------------
  // Proposals from the RawNode

  propose(entries: readonly Entry[]): void {
    this.step({ type: 'propose', from: this.id, to: this.id, term: 0, entries });
  }

  /** See RawNode.proposeConfFence. */
  proposeConfFence(data: Uint8Array): void {
    if (this.role !== 'leader') throw new ProposalDroppedError(`node ${this.id} is not the leader (term ${this.term}): a fence is proposed on the leader only`);
    if (this.pendingConfIndex > this.log.applied) throw new ProposalDroppedError(`conf change at index ${this.pendingConfIndex} not yet applied (applied ${this.log.applied})`);
    this.propose([{ term: 0, index: 0, type: 'normal', data }]);
    this.pendingConfIndex = this.log.lastIndex();
  }

  readIndex(context: ReadContext): void {
    this.step({ type: 'readIndex', from: this.id, to: this.id, term: 0, contexts: [context] });
  }
}

function assertConfStatesEquivalent(a: ConfState, b: ConfState): void {
  const norm = (ids: readonly NodeId[]): string => [...ids].sort((x, y) => x - y).join(',');
  assert(norm(a.voters) === norm(b.voters), () => `conf state voters differ: ${norm(a.voters)} vs ${norm(b.voters)}`);
  assert(norm(a.votersOutgoing) === norm(b.votersOutgoing), () => `conf state outgoing voters differ: ${norm(a.votersOutgoing)} vs ${norm(b.votersOutgoing)}`);
  assert(norm(a.learners) === norm(b.learners), () => `conf state learners differ: ${norm(a.learners)} vs ${norm(b.learners)}`);
  assert(norm(a.learnersNext) === norm(b.learnersNext), () => `conf state learnersNext differ: ${norm(a.learnersNext)} vs ${norm(b.learnersNext)}`);
  assert(a.autoLeave === b.autoLeave, () => `conf state autoLeave differs: ${a.autoLeave} vs ${b.autoLeave}`);
}
