/**
 * The placement driver's view of the cluster: what the scheduler plans over
 * (scheduler.ts) and what operators step through (operator.ts). Built by
 * the driver from store and range heartbeats; plain data, so planning is a
 * pure function a table test can feed synthetic clusters.
 */

/**
 * A node's state as the driver sees it. `suspect`: heartbeats missed for a
 * little while (nothing is moved for it yet); `down`: missed past the
 * configured timeout (its replicas are repaired elsewhere);
 * `decommissioning`: asked to leave (its replicas are moved off, it gets no
 * new ones); `decommissioned`: holds nothing any more.
 */
export type NodeState = 'up' | 'suspect' | 'down' | 'decommissioning' | 'decommissioned';

export interface NodeInfo {
  readonly nodeId: number;
  readonly state: NodeState;
  /** Bytes of user data in its stores (its store heartbeat). */
  readonly usedBytes: number;
  /** Bytes free on its data directory's file system. */
  readonly availableBytes: number;
}

/** How far a replica has the range's log, as its leader last reported. */
export interface ReplicaProgress {
  readonly nodeId: number;
  readonly match: number;
}

export interface RangeInfo {
  readonly rangeId: number;
  readonly start: Uint8Array;
  /** null: to the end of the key space. */
  readonly end: Uint8Array | null;
  /** Grows with every split and membership change. */
  readonly epoch: number;
  /** The voters; in a joint configuration, the incoming ones. */
  readonly voters: readonly number[];
  /** Non-empty only in a joint configuration: the outgoing voters. */
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
  /** The node leading the range (0: unknown). */
  readonly leader: number;
  /** The leader's last log index. */
  readonly lastIndex: number;
  /** Every replica but the leader's own. */
  readonly progress: readonly ReplicaProgress[];
  readonly sizeBytes: number;
  readonly keyCount: number;
  readonly writesPerSec: number;
  readonly readsPerSec: number;
  /** How long (s) its load (writes + reads per second) has stayed at or above the split load threshold, without a break. */
  readonly hotForSec: number;
  /** A key near the middle of its data, picked by its leader from its keys; undefined below two keys. */
  readonly splitKey?: Uint8Array | undefined;
  /** How long (s) its load has stayed at or below mergeLoadOpsPerSec, without a break: merges take cold ranges only. */
  readonly coldForSec: number;
  /** Present while the range is frozen for a merge into its left neighbour (RangeReport.frozen). */
  readonly frozen?: FrozenInfo | undefined;
}

/** A range's freeze for a merge: into which range, the freeze entry's index and term, the epoch it moved the range to. */
export interface FrozenInfo {
  readonly targetRangeId: number;
  readonly index: number;
  readonly term: number;
  readonly epoch: number;
}

export interface ClusterSnapshot {
  readonly nodes: readonly NodeInfo[];
  readonly ranges: readonly RangeInfo[];
  /**
   * Whether a node holds its replicas of two ranges in one store (the same worker core), as merges need;
   * absent: every node has one store.
   */
  readonly sameStore?: (nodeId: number, a: number, b: number) => boolean;
}

export interface SchedulerConfig {
  /** Voters per range (fewer when fewer nodes can take one). */
  readonly replicationFactor: number;
  /** Split a range once it holds this many bytes. */
  readonly splitSizeBytes: number;
  /** Split a range whose load stayed at or above this (ops/s)... */
  readonly splitLoadOpsPerSec: number;
  /** ...for this long (s). */
  readonly splitLoadSustainedSec: number;
  /** Replica moves and additions in flight across the cluster, at most. */
  readonly movesInFlightMax: number;
  /**
   * Splits in flight across the cluster, at most (the biggest ranges first). Each split writes
   * the meta range, starts a group and has it elected; a load that fills many ranges at once
   * would otherwise split hundreds together, and client writes stall behind them.
   */
  readonly splitsInFlightMax: number;
  /** Replicas being caught up (by snapshot) onto one node at a time, at most. */
  readonly snapshotsInFlightPerNodeMax: number;
  /** A learner within this many entries of the leader's last index counts as caught up. */
  readonly catchUpLagEntriesMax: number;
  /** Ranges never split (the meta range); they take no part in a merge either. */
  readonly unsplittable: readonly number[];
  /**
   * Merge two neighbouring ranges once together they hold fewer bytes than this (0: never), both
   * have been cold for mergeColdSec, and they have the same voters. Well under splitSizeBytes, so
   * the merged range is not split again at once.
   */
  readonly mergeSizeBytes: number;
  /** A range at or below this load (writes and reads per second) is cold... */
  readonly mergeLoadOpsPerSec: number;
  /** ...once it has been so for this long (s). */
  readonly mergeColdSec: number;
  /** Merges in flight across the cluster, at most. */
  readonly mergesInFlightMax: number;
  /**
   * Ranges whose lead leader balancing leaves where it is (the meta range: the driver runs on its
   * leader, and moving it restarts the driver with an empty view). Replica balance does not move the
   * replica its leader holds either; other moves (repair, drain) still transfer the lead off a replica
   * they remove.
   */
  readonly leaderPinned: readonly number[];
  /** A paused scheduler plans nothing new; operators in flight still finish, and so does what an interrupted one left (scheduler.ts). */
  readonly paused: boolean;
}

export const SCHEDULER_CONFIG_DEFAULTS: SchedulerConfig = {
  replicationFactor: 3,
  splitSizeBytes: 64 * 1024 * 1024,
  splitLoadOpsPerSec: 2_000,
  splitLoadSustainedSec: 30,
  movesInFlightMax: 4,
  splitsInFlightMax: 16,
  snapshotsInFlightPerNodeMax: 2,
  catchUpLagEntriesMax: 16,
  unsplittable: [],
  mergeSizeBytes: 8 * 1024 * 1024,
  mergeLoadOpsPerSec: 5,
  mergeColdSec: 600,
  mergesInFlightMax: 4,
  leaderPinned: [],
  paused: false,
};

/**
 * A change to one range the driver carries out step by step (operator.ts
 * `nextStep`), each step one Raft command on the range. `epoch` is the
 * range's epoch when the operator was planned.
 */
export type Operator =
  | { readonly kind: 'split'; readonly rangeId: number; readonly epoch: number; readonly key: Uint8Array; readonly reason: 'size' | 'load' | 'admin' }
  /** add a learner on `node`, wait until it caught up, promote it to voter. */
  | { readonly kind: 'addReplica'; readonly rangeId: number; readonly epoch: number; readonly node: number; readonly reason: 'replicate' | 'repair' | 'admin' }
  /**
   * add a learner on `to`, wait until it caught up, move the lead off `from` if it leads, then one joint change: `to` voter, `from` removed.
   * With reason 'merge', `mergeWith` names the neighbour whose voters the move aligns the range's with.
   */
  | { readonly kind: 'moveReplica'; readonly rangeId: number; readonly epoch: number; readonly from: number; readonly to: number; readonly reason: 'balance' | 'repair' | 'drain' | 'merge' | 'admin'; readonly mergeWith?: number }
  /** move the lead off `node` if it leads, then remove its replica (voter or learner). */
  | { readonly kind: 'removeReplica'; readonly rangeId: number; readonly epoch: number; readonly node: number; readonly reason: 'excess' | 'undo' | 'admin' }
  | { readonly kind: 'transferLeader'; readonly rangeId: number; readonly epoch: number; readonly from: number; readonly to: number; readonly reason: 'balance' | 'admin' }
  /** leave a joint configuration left behind (a leader that crashed mid-change). */
  | { readonly kind: 'leaveJoint'; readonly rangeId: number; readonly epoch: number; readonly reason: 'repair' }
  /**
   * Merge range `rangeId` (the source) into its left neighbour `targetId` (operator.ts nextMerge):
   * freeze the source, wait until every voter's replica of it applied the freeze, commit on the
   * target; or, once the merge cannot finish (a voter down, the target changed), fence the target
   * and unfreeze the source. `epoch` and `targetEpoch` are the two ranges' when planned.
   */
  | { readonly kind: 'merge'; readonly rangeId: number; readonly epoch: number; readonly targetId: number; readonly targetEpoch: number; readonly reason: 'size' | 'resume' | 'admin' };

/** One Raft command on a range, sent to its leader. */
export type Step =
  | { readonly kind: 'split'; readonly key: Uint8Array }
  | { readonly kind: 'addLearner'; readonly node: number }
  | { readonly kind: 'promote'; readonly node: number }
  /** One joint change: `add` becomes a voter (from learner), `remove` leaves. */
  | { readonly kind: 'replaceVoter'; readonly add: number; readonly remove: number }
  | { readonly kind: 'removeNode'; readonly node: number }
  | { readonly kind: 'transferLeader'; readonly to: number }
  | { readonly kind: 'leaveJoint' }
  /** On the source: prepareMerge (it freezes for `targetId`, which must have exactly `voters`). */
  | { readonly kind: 'freeze'; readonly start: Uint8Array; readonly epoch: number; readonly targetId: number; readonly voters: readonly number[] }
  /** On the target (sent to `targetId`'s leader): commitMerge of the frozen source. */
  | {
      readonly kind: 'commitMerge';
      readonly targetId: number;
      readonly targetStart: Uint8Array;
      readonly targetEpoch: number;
      readonly sourceEnd: Uint8Array | null;
      readonly sourceEpoch: number;
      readonly freezeIndex: number;
      readonly freezeTerm: number;
      readonly voters: readonly number[];
    }
  /** On the target (sent to `targetId`'s leader): moves its epoch, so no commitMerge planned against `targetEpoch` can apply. */
  | { readonly kind: 'fenceMerge'; readonly targetId: number; readonly targetStart: Uint8Array; readonly targetEpoch: number }
  /** On the source: unfreezes it (the target was fenced first: the merge can never apply). */
  | { readonly kind: 'rollbackMerge'; readonly start: Uint8Array; readonly epoch: number; readonly targetId: number };

/** What an operator needs next, given the range as last reported. */
export type StepDecision =
  | { readonly kind: 'step'; readonly step: Step }
  /** Nothing to send now (a learner catching up, no leader known). */
  | { readonly kind: 'wait'; readonly why: string }
  | { readonly kind: 'done' }
  /** The range moved on in a way the operator cannot follow (split, another change): drop it; the next pass re-plans. */
  | { readonly kind: 'abandon'; readonly why: string };
