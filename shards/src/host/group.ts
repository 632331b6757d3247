import { NONE, RawNode, SeededRng, type GroupId, type LogIndex, type Logger, type NodeId, type NodeLeases, type RaftConfig, type ReadContext, type Term } from '@flotilla/core';
import type { SnapshotInstaller } from '../snapshot/installer.js';
import type { ShardStorage } from '../storage/node-store.js';
import type { ShardRange } from '../kv/range.js';
import type { FrozenRange } from '../kv/command.js';
import type { ReadOp } from './core-protocol.js';

/** One requested key in this many is sampled: cheap on the request path, still hundreds per second under load. */
const KEY_SAMPLE_EVERY = 8;
/** Samples kept per group (a ring): recent enough to follow a shifting hot spot. */
const KEY_SAMPLE_COUNT = 64;
/** Fewer samples than this say nothing about where load is. */
const KEY_SAMPLE_COUNT_MIN = 16;

/**
 * A proposal waiting for its entry to apply; it is ours only if the applied
 * entry has our term. More than one request: a batch entry, which answers
 * each with its own command's result, in order.
 */
export interface PendingProposal {
  readonly requestIds: readonly number[];
  readonly term: Term;
  /** performance.now() when proposed: the start of its proposal-to-commit latency (latency.ts). */
  readonly proposedAtMs: number;
}

/** Writes a leader took this turn, proposed together as one entry before the next Ready (ShardRequests). */
export interface ProposalBatch {
  readonly requestIds: number[];
  readonly commands: Uint8Array[];
  bytes: number;
}

export interface PendingRead {
  readonly requestId: number;
  readonly read: ReadOp;
}

/** A read confirmed at `index`, served once the state machine applied that far. */
export interface AwaitingRead {
  readonly index: LogIndex;
  readonly read: PendingRead;
}

// The empty containers of a group without pending requests: shared, never written (typed read-only).
const NO_PROPOSALS: ReadonlyMap<LogIndex, PendingProposal> = new Map();
const NO_READS: ReadonlyMap<ReadContext, PendingRead> = new Map();
const NO_AWAITING_READS: readonly AwaitingRead[] = Object.freeze([]);
const NO_STREAMS: ReadonlyMap<NodeId, number> = new Map();
const NO_BATCH: { readonly requestIds: readonly number[]; readonly commands: readonly Uint8Array[] } = Object.freeze({ requestIds: Object.freeze([]), commands: Object.freeze([]) });

/** Raft settings every replica of every group on a node shares (core/README.md: readMode is per group and must agree). */
export type GroupRaftOptions = Pick<
  RaftConfig,
  'electionTimeoutTicks' | 'heartbeatIntervalTicks' | 'readMode' | 'checkQuorum' | 'preVote' | 'appendBytesMax' | 'inflightCountMax' | 'uncommittedBytesMax' | 'applyBytesMax'
>;

/** What a group's Raft node is built with (Group.raw). */
export interface GroupOptions {
  readonly nodeId: NodeId;
  readonly seed: number;
  readonly raft: GroupRaftOptions;
  readonly nodeLeases: NodeLeases | undefined;
  /** The replica's Raft logger, made when its node is built. */
  readonly logger: (id: GroupId) => Logger;
  /** Called once per group, when its Raft node is built. */
  readonly onLoad?: () => void;
  /** Called when a group's range or accepted snapshot changed: the keys it claims (snapshot/claims.ts CoreClaims). */
  readonly claimsChanged?: (g: Group) => void;
}

/**
 * One replica of one shard on this core: its RawNode and everything the shell
 * tracks for it between Readys (pending proposals and reads, quiescence,
 * snapshot transfers). Owned by exactly one core for its whole life.
 */
export class Group {
  /** Made on first use (see raw); until then the replica is exactly a fresh, dormant follower of its stored state. */
  private rawNode: RawNode | undefined;
  /** Not ticking: idle and fully replicated (leader), or told so by the leader (follower). */
  quiesced = false;
  /** Last leader and term reported to the Host. */
  reportedLeader: NodeId = NONE;
  reportedTerm: Term = 0;
  /*
   * What requests and snapshot streams wait on: each created by its first
   * write and dropped, once empty, when the group quiesces (releaseIdle).
   * A quiesced replica holds none of them (~700 B a replica as empty
   * containers: ARCHITECTURE.md, "Memory per replica"). Read through the
   * getters, which never allocate; change through the methods.
   */
  private proposalsByIndex: Map<LogIndex, PendingProposal> | undefined;
  private pendingBatch: ProposalBatch | undefined;
  private readsByContext: Map<ReadContext, PendingRead> | undefined;
  private readsAwaiting: AwaitingRead[] | undefined;
  private streamsOut: Map<NodeId, number> | undefined;
  /** Incoming snapshot being staged, and the stream carrying it. */
  incoming: { streamId: number; installer: SnapshotInstaller; from: NodeId; term: Term } | undefined;
  private acceptedSnapshot: SnapshotInstaller | undefined;
  removed = false;
  /** Frozen for a merge into its left neighbour (kv/merge.ts): it serves nothing more; undefined when not. */
  frozen: FrozenRange | undefined;
  /** Keys and bytes of its data, kept up to date on apply; undefined until counted (see range-reports.ts sizesOf). */
  sizes: { keyCount: number; sizeBytes: number } | undefined;
  /** Writes proposed and reads served here (placement's load signal). */
  writeCount = 0;
  readCount = 0;
  /** Every KEY_SAMPLE_EVERY-th requested key, the last KEY_SAMPLE_COUNT of them: where load concentrates (undefined until the first). */
  private keySamples: Uint8Array[] | undefined;
  private keySampleNext = 0;
  private keysSeen = 0;

  private ownedRange: ShardRange;

  constructor(
    readonly id: GroupId,
    readonly storage: ShardStorage,
    bounds: ShardRange,
    /** Shared by every group of the core. */
    private readonly options: GroupOptions,
  ) {
    this.ownedRange = bounds;
  }

  /** The range this replica owns now; applying a split or conf change, or installing a snapshot, replaces it. */
  get bounds(): ShardRange {
    return this.ownedRange;
  }

  set bounds(bounds: ShardRange) {
    this.ownedRange = bounds;
    this.options.claimsChanged?.(this);
  }

  /** A staged snapshot Raft accepted; installed when its Ready is handled. */
  get accepted(): SnapshotInstaller | undefined {
    return this.acceptedSnapshot;
  }

  set accepted(installer: SnapshotInstaller | undefined) {
    this.acceptedSnapshot = installer;
    this.options.claimsChanged?.(this);
  }

  /**
   * The replica's Raft node, built from its stored state on first use: a
   * node restarting with 100,000 replicas builds none of them until traffic,
   * a request or its campaign turn needs one (ARCHITECTURE.md, "Lazy
   * replicas"). Until then every question the core asks of a dormant
   * replica without it — leader, role, status (shard-changes.ts statusOf) — has the
   * answer a freshly built node would give: follower, no leader, the stored
   * term and configuration.
   */
  get raw(): RawNode {
    if (this.rawNode !== undefined) return this.rawNode;
    const { options } = this;
    this.rawNode = new RawNode({
      ...options.raft,
      nodeLeases: options.nodeLeases,
      id: options.nodeId,
      storage: this.storage,
      applied: this.storage.applied,
      incarnation: this.storage.incarnation,
      // Every group on every node draws its own election jitter, reproducibly from the node's seed.
      rng: new SeededRng((options.seed ^ Math.imul(this.id, 0x9e3779b1) ^ Math.imul(options.nodeId, 0x85ebca6b)) >>> 0),
      logger: options.logger(this.id),
      // The shell answers non-leaders with a leader hint instead (proposals are matched by index and term on the leader).
      proposalForwarding: false,
      // Followers learn a new commit index from the next append or the coalesced heartbeat (every tick), not from
      // an append of its own: ARCHITECTURE.md, "Commit indexes ride on appends and heartbeats".
      commitBroadcast: 'lazy',
    });
    options.onLoad?.();
    return this.rawNode;
  }

  /** Whether the Raft node was built (raw used). */
  get loaded(): boolean {
    return this.rawNode !== undefined;
  }

  /** Proposals waiting for their entries to apply, by index. */
  get proposals(): ReadonlyMap<LogIndex, PendingProposal> {
    return this.proposalsByIndex ?? NO_PROPOSALS;
  }

  setProposal(index: LogIndex, proposal: PendingProposal): void {
    (this.proposalsByIndex ??= new Map()).set(index, proposal);
  }

  deleteProposal(index: LogIndex): void {
    this.proposalsByIndex?.delete(index);
  }

  /** Writes taken this turn and not yet proposed. */
  get batchedCount(): number {
    return this.pendingBatch?.commands.length ?? 0;
  }

  /** The batch this turn's writes join (made by the first). */
  batch(): ProposalBatch {
    return (this.pendingBatch ??= { requestIds: [], commands: [], bytes: 0 });
  }

  /** Empties the pending batch, returning what it held. */
  takeBatch(): { readonly requestIds: readonly number[]; readonly commands: readonly Uint8Array[] } {
    const b = this.pendingBatch ?? NO_BATCH;
    this.pendingBatch = undefined;
    return b;
  }

  /** Reads waiting for their ReadState, by context. */
  get reads(): ReadonlyMap<ReadContext, PendingRead> {
    return this.readsByContext ?? NO_READS;
  }

  setRead(context: ReadContext, read: PendingRead): void {
    (this.readsByContext ??= new Map()).set(context, read);
  }

  deleteRead(context: ReadContext): void {
    this.readsByContext?.delete(context);
  }

  /** Reads confirmed at an index the state machine has not applied yet, in index order. */
  get readsAwaitingApply(): readonly AwaitingRead[] {
    return this.readsAwaiting ?? NO_AWAITING_READS;
  }

  awaitApply(read: AwaitingRead): void {
    (this.readsAwaiting ??= []).push(read);
  }

  /** The oldest read awaiting apply once `applied` reaches its index, removed; undefined when there is none. */
  takeReadApplied(applied: LogIndex): PendingRead | undefined {
    const first = this.readsAwaiting?.[0];
    if (first === undefined || first.index > applied) return undefined;
    this.readsAwaiting!.shift();
    return first.read;
  }

  /** Forgets every pending proposal, batched write and read (their requests were answered). */
  clearRequests(): void {
    this.proposalsByIndex = undefined;
    this.pendingBatch = undefined;
    this.readsByContext = undefined;
    this.readsAwaiting = undefined;
  }

  /** Outgoing snapshot stream per follower. */
  get snapshotsOut(): ReadonlyMap<NodeId, number> {
    return this.streamsOut ?? NO_STREAMS;
  }

  setSnapshotOut(to: NodeId, streamId: number): void {
    (this.streamsOut ??= new Map()).set(to, streamId);
  }

  deleteSnapshotOut(to: NodeId): void {
    this.streamsOut?.delete(to);
  }

  /**
   * The group quiesced: drops the containers above that are empty (the next
   * write makes them again), and the store's cached entries of the shard.
   */
  releaseIdle(): void {
    this.storage.releaseCache();
    if (this.proposalsByIndex?.size === 0) this.proposalsByIndex = undefined;
    if (this.pendingBatch?.commands.length === 0) this.pendingBatch = undefined;
    if (this.readsByContext?.size === 0) this.readsByContext = undefined;
    if (this.readsAwaiting?.length === 0) this.readsAwaiting = undefined;
    if (this.streamsOut?.size === 0) this.streamsOut = undefined;
  }

  /** Notes a key a request touched (one in KEY_SAMPLE_EVERY is kept; all when `sampled`: the Host's local reads sample their own). */
  sampleKey(key: Uint8Array, sampled = false): void {
    if (!sampled && this.keysSeen++ % KEY_SAMPLE_EVERY !== 0) return;
    const samples = (this.keySamples ??= []);
    if (samples.length < KEY_SAMPLE_COUNT) samples.push(key);
    else samples[this.keySampleNext] = key;
    this.keySampleNext = (this.keySampleNext + 1) % KEY_SAMPLE_COUNT;
  }

  /**
   * The median sampled key strictly inside the range, once enough were seen
   * (CockroachDB's load-based splitter does the same with its samples): a
   * split there halves the load, wherever the data lies.
   */
  loadSplitKey(): Uint8Array | undefined {
    if (this.keySamples === undefined || this.keySamples.length < KEY_SAMPLE_COUNT_MIN) return undefined;
    const inside = this.keySamples.filter((k) => Buffer.compare(k, this.bounds.start) > 0 && (this.bounds.end === null || Buffer.compare(k, this.bounds.end) < 0));
    if (inside.length < KEY_SAMPLE_COUNT_MIN) return undefined;
    inside.sort(Buffer.compare);
    return inside[inside.length >> 1];
  }

  /** Forgets samples and sizes (the range changed under them: a split, a snapshot). */
  resetLoad(): void {
    this.keySamples = undefined;
    this.keySampleNext = 0;
    this.sizes = undefined;
  }

  /** Never builds the Raft node: one not built yet leads nothing and knows no leader. */
  get isLeader(): boolean {
    return this.rawNode?.raft.role === 'leader';
  }

  get leader(): NodeId {
    return this.rawNode?.raft.lead ?? NONE;
  }

  /** Whether any request of a client still waits on this group. */
  hasPendingRequests(): boolean {
    return this.proposals.size > 0 || this.reads.size > 0 || this.readsAwaitingApply.length > 0;
  }

  /**
   * Whether a leader may quiesce: nothing to do and every replica on a live
   * node holds the whole log (so a follower told to quiesce has nothing to
   * wait for), no transfer, no joint configuration, no snapshot in flight,
   * every live follower heard from recently.
   */
  canQuiesce(downPeers: ReadonlySet<NodeId>): boolean {
    const raw = this.raw;
    const r = raw.raft;
    if (r.role !== 'leader' || r.leadTransferee !== NONE) return false;
    if (raw.isProcessingReady || raw.hasReady() || this.hasPendingRequests() || r.pendingReadCount() > 0) return false;
    if (this.snapshotsOut.size > 0 || this.incoming !== undefined) return false;
    const last = r.log.lastIndex();
    if (r.log.committed !== last || r.log.applied !== last || r.pendingConfIndex > last) return false;
    if (r.tracker.confState().votersOutgoing.length > 0) return false;
    // Replicas on nodes that are down are left behind (they catch up on the next write after they
    // return), but only while the live, caught-up voters still form a quorum.
    let caughtUp = true;
    let liveVoters = 0;
    const voters = new Set(r.tracker.confState().voters);
    r.tracker.visit((id, progress) => {
      if (id !== r.id && downPeers.has(id)) return;
      if (id !== r.id && (progress.match !== last || progress.state !== 'replicate' || !progress.recentActive)) caughtUp = false;
      if (voters.has(id)) liveVoters++;
    });
    return caughtUp && liveVoters * 2 > voters.size;
  }
}

/** A replica among `groups` frozen for a merge into shard `targetId`, by id; O(replicas): asked only before a freeze or a new replica. */
export function replicaFrozenInto(groups: ReadonlyMap<GroupId, Group>, targetId: number): GroupId | undefined {
  for (const g of groups.values()) if (!g.removed && g.frozen?.targetShardId === targetId) return g.id;
  return undefined;
}
