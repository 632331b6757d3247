import { assert, unreachable } from '@flotilla/core';
import type { ClusterSnapshot, NodeInfo, NodeState, Operator, RangeInfo, SchedulerConfig } from './cluster.js';
import { hasQuorum, isCaughtUp, keyStrictlyInside, mergeProblem } from './operator.js';
import { compareKeys } from './range.js';

/**
 * The placement driver's planner: from a cluster snapshot and the operators
 * already in flight, the new operators to start. Pure and deterministic:
 * the same input gives the same operators in the same order.
 *
 * Rules, in the order they are planned (and get the move budget):
 *   1. leaveJoint   a joint configuration left behind by a leader that crashed mid-change
 *   2. repair       a voter on a down node moves to a new node (an over-replicated range just loses it in 5)
 *   3. stray        a learner no operator owns (a driver crashed mid-move): promoted if the range needs voters, else removed
 *   4. replicate    too few voters: add one
 *   5. excess       too many voters: remove one, the one on the least healthy node first
 *   6. drain        a replica on a decommissioning (or decommissioned) node moves off it
 *   7. split        by size, or by load sustained
 *   8. merge        a frozen range's merge resumed; two small, cold neighbours with the same voters (moved there first)
 *   9. balance      replicas per up node within one of each other
 *  10. balance      leaders per up node within one of each other
 *
 * Paused, it plans only what finishes work an operator left half done (a
 * driver that crashed or lost the meta lead mid-operator: its operators
 * were in its memory): rules 1 and 3 and the resumed merges of 8. A pause
 * then leaves no range with a joint configuration, a stray learner or a
 * freeze, as it leaves none with an operator in flight.
 *
 * At most one operator per range (counting those in flight): operators on
 * one range would race for its membership. Ranges that lost their quorum
 * get nothing: no command can commit there, and an operator would only hold
 * budget. Only up nodes receive replicas or leaders.
 *
 * Limits: replica additions and moves (each a snapshot to some node) in
 * flight across the cluster ≤ movesInFlightMax, and onto any one node ≤
 * snapshotsInFlightPerNodeMax, counting those in flight whose replica has
 * yet to catch up (snapshotPending: the steps after move no data). Splits,
 * transfers, removals and leaveJoint are cheap and unlimited.
 */
export function plan(snapshot: ClusterSnapshot, config: SchedulerConfig, inFlight: readonly Operator[]): Operator[] {
  assertConfig(config);
  const planning = startPlanning(snapshot, config, inFlight);
  planLeaveJoint(planning);
  if (!config.paused) planRepairs(planning);
  planStrayLearners(planning);
  if (!config.paused) {
    planReplication(planning);
    planExcess(planning);
    planDrains(planning);
    planSplits(planning);
  }
  planResumedMerges(planning);
  if (!config.paused) {
    planMerges(planning);
    planReplicaBalance(planning);
    planLeaderBalance(planning);
  }
  const operators = [...planning.planned].sort((a, b) => a.priority - b.priority || a.op.rangeId - b.op.rangeId).map((p) => p.op);
  assertPlan(planning, inFlight, operators);
  return operators;
}

/** Output order; a rule's operators come after those of every rule above it. */
const PRIORITY = {
  leaveJoint: 0,
  repair: 1,
  stray: 2,
  replicate: 3,
  excess: 4,
  drain: 5,
  split: 6,
  merge: 7,
  balanceReplicas: 8,
  balanceLeaders: 9,
} as const;
type Rule = keyof typeof PRIORITY;

/** The working state of one plan() call: what is planned so far and what it already spent. */
interface Planning {
  readonly config: SchedulerConfig;
  readonly nodes: readonly NodeInfo[];
  readonly nodeState: (nodeId: number) => NodeState | undefined;
  readonly sameStore: (nodeId: number, a: number, b: number) => boolean;
  /** By range id, so every rule visits ranges in the same order. */
  readonly ranges: readonly RangeInfo[];
  /**
   * The ranges each rule may act on, by range id, sorted out in one visit of every range (`classify`): a
   * rule visits its own few rather than every range, so a plan over a settled cluster of 100,000 ranges
   * costs one pass over them, not one per rule (plan-bench). Whether a range is open is still checked as
   * each rule goes, so a rule sees what the rules before it proposed.
   */
  readonly candidates: Candidates;
  /** Whether the range's voters (and outgoing voters) have a live majority; node states are fixed for a plan. */
  readonly quorate: (range: RangeInfo) => boolean;
  readonly replicasTarget: number;
  /** Ranges with an operator in flight or planned: each gets at most one. */
  readonly busy: Set<number>;
  /** addReplica and moveReplica operators in flight or planned. */
  movesCount: number;
  /** Split operators in flight or planned. */
  splitsCount: number;
  /** Merge operators, and replica moves that align a pair's voters for one (reason 'merge'), in flight or planned. */
  mergesCount: number;
  /** Ranges of pairs due a merge or being aligned for one: replica balance leaves them where they are. */
  readonly mergeHeld: Set<number>;
  /** Frozen ranges with no operator in flight: planMerges resumes their merges. */
  readonly frozenIdle: RangeInfo[];
  /** addReplica and moveReplica operators in flight or planned, by the node they copy a replica to. */
  readonly snapshotsByNode: Map<number, number>;
  /** Replicas (voters, outgoing voters, learners) per node as they will be once every operator in flight or planned is done. */
  readonly replicasByNode: Map<number, number>;
  /** Leaders per node, counting transfers in flight or planned as done. */
  readonly leadersByNode: Map<number, number>;
  readonly planned: { readonly op: Operator; readonly priority: number }[];
}

function startPlanning(snapshot: ClusterSnapshot, config: SchedulerConfig, inFlight: readonly Operator[]): Planning {
  const stateById = new Map(snapshot.nodes.map((n) => [n.nodeId, n.state]));
  const nodeState = (nodeId: number) => stateById.get(nodeId);
  // The driver hands them over by id already: sorting only what is not.
  const ranges = isSortedById(snapshot.ranges) ? snapshot.ranges : [...snapshot.ranges].sort((a, b) => a.rangeId - b.rangeId);
  // With no node down every range has its quorum: no per-range check at all.
  const anyDown = snapshot.nodes.some((n) => n.state === 'down');
  const replicasTargetCount = replicasTarget(snapshot.nodes, config);
  const planning: Planning = {
    config,
    nodes: [...snapshot.nodes].sort((a, b) => a.nodeId - b.nodeId),
    nodeState,
    sameStore: snapshot.sameStore ?? (() => true),
    ranges,
    candidates: classify(ranges, snapshot.nodes, config, replicasTargetCount),
    quorate: anyDown ? (range) => hasQuorum(range, nodeState) : (range) => range.voters.length > 0,
    replicasTarget: replicasTargetCount,
    busy: new Set(inFlight.map((op) => op.rangeId)),
    movesCount: 0,
    splitsCount: inFlight.filter((op) => op.kind === 'split').length,
    mergesCount: inFlight.filter((op) => op.kind === 'merge' || (op.kind === 'moveReplica' && op.reason === 'merge')).length,
    mergeHeld: new Set(),
    frozenIdle: [],
    snapshotsByNode: new Map(),
    replicasByNode: new Map(),
    leadersByNode: new Map(),
    planned: [],
  };
  for (const range of ranges) {
    forEachHolder(range, (node) => add(planning.replicasByNode, node, 1));
    if (range.leader !== 0) add(planning.leadersByNode, range.leader, 1);
  }
  for (const op of inFlight) spend(planning, op, rangeById(ranges, op.rangeId));
  // A merge holds its target as well as its source; a frozen range holds its target until its merge is
  // done or rolled back (planMerges resumes it): no other operator may change either meanwhile.
  for (const op of inFlight) if (op.kind === 'merge') planning.busy.add(op.targetId);
  // A move aligning two neighbours' voters for a merge holds both from replica balance until it is done: the
  // moving range has a learner or a joint configuration meanwhile and fits no pair (planMerges).
  for (const op of inFlight) if (op.kind === 'moveReplica' && op.mergeWith !== undefined) planning.mergeHeld.add(op.rangeId).add(op.mergeWith);
  for (const range of ranges) {
    if (range.frozen === undefined) continue;
    planning.busy.add(range.frozen.targetRangeId);
    // A frozen range takes no other operator (it would be refused); planMerges resumes its merge.
    if (!planning.busy.has(range.rangeId)) planning.frozenIdle.push(range);
    planning.busy.add(range.rangeId);
  }
  return planning;
}

/** The ranges each rule may act on (Planning.candidates), each list by range id. */
interface Candidates {
  /** In a joint configuration (leaveJoint). */
  readonly joint: RangeInfo[];
  /** With a voter on a down node, not over-replicated (repair). */
  readonly damaged: RangeInfo[];
  /** With learners (stray). */
  readonly withLearners: RangeInfo[];
  /** Fewer voters than the target (replicate). */
  readonly under: RangeInfo[];
  /** More voters than the target (excess). */
  readonly over: RangeInfo[];
  /** With a replica on a node leaving (drain). */
  readonly leaving: RangeInfo[];
  /** Over the split size or hot for long enough, with a split key inside (split). */
  readonly splits: RangeInfo[];
  /** Able to take part in a size merge by themselves: small, cold, led, not frozen, splittable (merge). */
  readonly mergeable: RangeInfo[];
}

/**
 * One visit of every range, sorting out those a rule may act on. Only what a plan cannot change is checked
 * here (the range's own state, node states, the config); budgets and whether a range is still open are
 * checked by each rule as it goes.
 */
function classify(ranges: readonly RangeInfo[], nodes: readonly NodeInfo[], config: SchedulerConfig, target: number): Candidates {
  const c: Candidates = { joint: [], damaged: [], withLearners: [], under: [], over: [], leaving: [], splits: [], mergeable: [] };
  const down = new Set(nodes.filter((n) => n.state === 'down').map((n) => n.nodeId));
  const leavingNodes = new Set(nodes.filter((n) => n.state === 'decommissioning' || n.state === 'decommissioned').map((n) => n.nodeId));
  const unsplittable = new Set(config.unsplittable);
  for (const range of ranges) {
    if (range.votersOutgoing.length > 0) c.joint.push(range);
    if (down.size > 0 && range.voters.length <= target && range.voters.some((v) => down.has(v))) c.damaged.push(range);
    if (range.learners.length > 0) c.withLearners.push(range);
    if (range.voters.length < target) c.under.push(range);
    if (range.voters.length > target) c.over.push(range);
    if (leavingNodes.size > 0 && (range.voters.some((n) => leavingNodes.has(n)) || range.learners.some((n) => leavingNodes.has(n)))) c.leaving.push(range);
    if (unsplittable.has(range.rangeId)) continue;
    if (splitDue(range, config) !== undefined) c.splits.push(range);
    if (
      config.mergeSizeBytes > 0 &&
      range.frozen === undefined &&
      range.leader !== 0 &&
      range.sizeBytes < config.mergeSizeBytes &&
      range.coldForSec >= config.mergeColdSec
    ) {
      c.mergeable.push(range);
    }
  }
  return c;
}

/** Why a range is due a split, if it is: over the size, or loaded for long enough, with a key to split at inside it. */
function splitDue(range: RangeInfo, config: SchedulerConfig): 'size' | 'load' | undefined {
  const big = range.sizeBytes >= config.splitSizeBytes;
  const hot = range.hotForSec >= config.splitLoadSustainedSec && range.writesPerSec + range.readsPerSec >= config.splitLoadOpsPerSec;
  // The numbers first: comparing the key with the bounds is what costs, run for every range.
  if ((!big && !hot) || range.splitKey === undefined || !keyStrictlyInside(range, range.splitKey)) return undefined;
  return big ? 'size' : 'load';
}

/** The range of that id among ranges sorted by id (a binary search: no map of every range per plan). */
function rangeById(ranges: readonly RangeInfo[], rangeId: number): RangeInfo | undefined {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const id = ranges[mid]!.rangeId;
    if (id === rangeId) return ranges[mid];
    if (id < rangeId) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}

function isSortedById(ranges: readonly RangeInfo[]): boolean {
  for (let i = 1; i < ranges.length; i++) if (ranges[i - 1]!.rangeId >= ranges[i]!.rangeId) return false;
  return true;
}

/**
 * Voters per range: the configured factor, but no more than the nodes that may keep one, and at least one.
 * A down node still counts: with no spare node its voter stays (as CockroachDB does) rather than the range
 * shrinking now and growing back by snapshot when the node returns; with a spare, repair moves it. Nodes
 * leaving (decommissioning or decommissioned) do not count.
 */
export function replicasTarget(nodes: readonly NodeInfo[], config: Pick<SchedulerConfig, 'replicationFactor'>): number {
  const usableCount = nodes.filter((n) => n.state !== 'decommissioning' && n.state !== 'decommissioned').length;
  return Math.max(1, Math.min(config.replicationFactor, usableCount));
}

/** Charges `op` (in flight, or just planned) to the budgets and the projected counts. `range` is undefined for a range no longer reported. */
function spend(planning: Planning, op: Operator, range: RangeInfo | undefined): void {
  const target = snapshotPending(planning, op, range);
  if (target !== undefined) {
    planning.movesCount += 1;
    add(planning.snapshotsByNode, target, 1);
  }
  if (range === undefined) return;
  const before = holders(range);
  const after = holdersAfter(range, op);
  for (const node of after) if (!before.has(node)) add(planning.replicasByNode, node, 1);
  for (const node of before) if (!after.has(node)) add(planning.replicasByNode, node, -1);
  if (op.kind === 'transferLeader' && range.leader === op.from) {
    add(planning.leadersByNode, op.from, -1);
    add(planning.leadersByNode, op.to, 1);
  }
}

function propose(planning: Planning, range: RangeInfo, op: Operator, rule: Rule): void {
  assert(op.rangeId === range.rangeId, () => `operator for range ${op.rangeId} proposed against range ${range.rangeId}`);
  assert(!planning.busy.has(op.rangeId), () => `second operator for range ${op.rangeId} (${op.kind})`);
  const target = snapshotTarget(op);
  if (target !== undefined) {
    assert(movesLeft(planning), () => `move budget spent (${planning.movesCount} of ${planning.config.movesInFlightMax}), planning ${op.kind} of range ${op.rangeId}`);
    assert(snapshotRoom(planning, target), () => `node ${target} already receives ${planning.snapshotsByNode.get(target)} snapshots`);
    const state = planning.nodeState(target);
    assert(state === 'up', () => `${op.kind} of range ${op.rangeId} targets node ${target}, which is ${state}`);
  }
  planning.busy.add(op.rangeId);
  spend(planning, op, range);
  planning.planned.push({ op, priority: PRIORITY[rule] });
}

// --- The rules, in priority order. Each visits the ranges open to a new operator, by range id. ---

function planLeaveJoint(planning: Planning): void {
  for (const range of openOf(planning, planning.candidates.joint)) {
    propose(planning, range, { kind: 'leaveJoint', rangeId: range.rangeId, epoch: range.epoch, reason: 'repair' }, 'leaveJoint');
  }
}

function planRepairs(planning: Planning): void {
  // An over-replicated range loses its down voter to the excess rule instead: no snapshot needed.
  const damaged = [...openOf(planning, planning.candidates.damaged)];
  // The range closest to losing its quorum first: it gets the budget if there is not enough for all.
  damaged.sort((a, b) => quorumMargin(planning, a) - quorumMargin(planning, b) || a.rangeId - b.rangeId);
  for (const range of damaged) {
    if (!movesLeft(planning)) return;
    const from = Math.min(...range.voters.filter((v) => planning.nodeState(v) === 'down'));
    const to = bestCandidate(planning, range);
    if (to === undefined) continue;
    propose(planning, range, { kind: 'moveReplica', rangeId: range.rangeId, epoch: range.epoch, from, to, reason: 'repair' }, 'repair');
  }
}

/**
 * Learners no operator owns are what a driver that crashed mid-add or mid-move leaves. The range needing voters
 * finishes the promotion (the learner may be caught up already); otherwise the learner is undone.
 */
function planStrayLearners(planning: Planning): void {
  for (const range of openOf(planning, planning.candidates.withLearners)) {
    const learners = [...range.learners].sort((a, b) => a - b);
    if (range.voters.length < planning.replicasTarget) {
      const promotable = learners.filter((l) => planning.nodeState(l) === 'up');
      if (promotable.length > 0) {
        const node = promotable.find((l) => snapshotRoom(planning, l));
        // Out of budget: leave the learner for a later pass rather than undo work the range needs.
        if (node === undefined || !movesLeft(planning)) continue;
        propose(planning, range, { kind: 'addReplica', rangeId: range.rangeId, epoch: range.epoch, node, reason: 'replicate' }, 'stray');
        continue;
      }
    }
    propose(planning, range, { kind: 'removeReplica', rangeId: range.rangeId, epoch: range.epoch, node: learners[0]!, reason: 'undo' }, 'stray');
  }
}

function planReplication(planning: Planning): void {
  for (const range of openOf(planning, planning.candidates.under)) {
    if (!movesLeft(planning)) return;
    // A range with a learner left over was skipped by the stray rule for want of budget; it is finished there.
    if (range.learners.length > 0) continue;
    const node = bestCandidate(planning, range);
    if (node === undefined) continue;
    propose(planning, range, { kind: 'addReplica', rangeId: range.rangeId, epoch: range.epoch, node, reason: 'replicate' }, 'replicate');
  }
}

/** How much a voter's node is worth keeping: the lower, the sooner it is removed. */
const KEEP_RANK: Record<NodeState, number> = { down: 0, decommissioned: 1, decommissioning: 1, suspect: 2, up: 3 };

function planExcess(planning: Planning): void {
  for (const range of openOf(planning, planning.candidates.over)) {
    const keepRank = (v: number) => KEEP_RANK[planning.nodeState(v) ?? 'suspect'];
    const isLeader = (v: number) => (v === range.leader ? 1 : 0);
    const node = [...range.voters].sort(
      (a, b) => keepRank(a) - keepRank(b) || isLeader(a) - isLeader(b) || replicasOn(planning, b) - replicasOn(planning, a) || a - b,
    )[0]!;
    propose(planning, range, { kind: 'removeReplica', rangeId: range.rangeId, epoch: range.epoch, node, reason: 'excess' }, 'excess');
  }
}

function planDrains(planning: Planning): void {
  for (const range of openOf(planning, planning.candidates.leaving)) {
    if (!movesLeft(planning)) return;
    // A decommissioned node should hold nothing; a replica it still holds is drained like a decommissioning one's.
    const leaving = [...range.voters, ...range.learners].filter((n) => {
      const state = planning.nodeState(n);
      return state === 'decommissioning' || state === 'decommissioned';
    });
    if (leaving.length === 0) continue;
    const to = bestCandidate(planning, range);
    if (to === undefined) continue;
    const from = Math.min(...leaving);
    propose(planning, range, { kind: 'moveReplica', rangeId: range.rangeId, epoch: range.epoch, from, to, reason: 'drain' }, 'drain');
  }
}

function planSplits(planning: Planning): void {
  const { config } = planning;
  // The biggest first, then the busiest; by range id between equals (a plan is deterministic). Only the
  // first few are taken (the budget), and while a cluster grows most ranges are due: those are picked,
  // not every due range sorted.
  const before = (a: RangeInfo, b: RangeInfo) => b.sizeBytes - a.sizeBytes || b.writesPerSec + b.readsPerSec - (a.writesPerSec + a.readsPerSec) || a.rangeId - b.rangeId;
  const room = config.splitsInFlightMax - planning.splitsCount;
  if (room <= 0) return;
  const picked: RangeInfo[] = [];
  for (const range of openOf(planning, planning.candidates.splits)) {
    if (picked.length === room && before(range, picked[room - 1]!) >= 0) continue;
    let at = picked.length;
    while (at > 0 && before(range, picked[at - 1]!) < 0) at--;
    picked.splice(at, 0, range);
    if (picked.length > room) picked.pop();
  }
  for (const range of picked) {
    propose(planning, range, { kind: 'split', rangeId: range.rangeId, epoch: range.epoch, key: range.splitKey!, reason: splitDue(range, config)! }, 'split');
    planning.splitsCount++;
  }
}

/** Frozen ranges no operator owns (a driver that crashed mid-merge): each merge is resumed, or rolled back. */
function planResumedMerges(planning: Planning): void {
  for (const range of planning.frozenIdle) {
    const targetId = range.frozen!.targetRangeId;
    const target = rangeById(planning.ranges, targetId);
    planning.busy.delete(range.rangeId);
    // A target gone from the view is resumed too: the operator rolls the freeze back once the view shows the
    // target can no longer take the source in (operator.ts nextMerge), and waits while it cannot tell.
    if (target !== undefined) {
      proposeMerge(planning, range, target, 'resume');
      continue;
    }
    propose(planning, range, { kind: 'merge', rangeId: range.rangeId, epoch: range.epoch, targetId, targetEpoch: 0, reason: 'resume' }, 'merge');
    planning.mergesCount++;
  }
}

/**
 * New merges (a frozen range's is resumed by planResumedMerges): neighbours
 * that are small together (mergeSizeBytes), both cold for mergeColdSec,
 * with the same voters on up nodes and no change under way: the right one
 * merges into the left, smallest pairs first. A pair that differs only in
 * where its voters are gets them aligned first, one replica move at a time
 * (PD's merge checker does the same), within the move budget and counted
 * as a merge in flight. The meta range and other unsplittable ranges take
 * no part.
 */
function planMerges(planning: Planning): void {
  const { config } = planning;
  if (config.mergeSizeBytes <= 0) return;
  // Both ranges of a pair must be mergeable by themselves, so only those are sorted: two neighbours in the
  // key space are neighbours among them too (nothing lies between them).
  const byStart = [...planning.candidates.mergeable].sort((a, b) => compareKeys(a.start, b.start));
  const due: MergePair[] = [];
  const apart: MergePair[] = [];
  for (let i = 0; i + 1 < byStart.length; i++) {
    const pair = { left: byStart[i]!, right: byStart[i + 1]! };
    const fit = mergeFit(planning, pair.left, pair.right);
    if (fit === 'no') continue;
    // Held from replica balance whether merged now or later (and while an alignment moves: startPlanning): a
    // balance move would take the pair apart again, and the two rules would trade its replicas for ever.
    planning.mergeHeld.add(pair.left.rangeId).add(pair.right.rangeId);
    if (!isOpen(planning, pair.left) || !isOpen(planning, pair.right)) continue;
    if (fit === 'now') due.push(pair);
    else apart.push(pair);
  }
  const smallestFirst = (a: MergePair, b: MergePair) => a.left.sizeBytes + a.right.sizeBytes - (b.left.sizeBytes + b.right.sizeBytes) || a.right.rangeId - b.right.rangeId;
  due.sort(smallestFirst);
  for (const { left, right } of due) {
    if (planning.mergesCount >= config.mergesInFlightMax) return;
    // A pair overlapping one planned just now (a range has one neighbour on each side) waits for the next plan.
    if (planning.busy.has(left.rangeId) || planning.busy.has(right.rangeId)) continue;
    proposeMerge(planning, right, left, 'size');
  }
  apart.sort(smallestFirst);
  for (const { left, right } of apart) {
    if (planning.mergesCount >= config.mergesInFlightMax || !movesLeft(planning)) return;
    if (planning.busy.has(left.rangeId) || planning.busy.has(right.rangeId)) continue;
    // The smaller range moves: fewer bytes to copy. Its voter that the other lacks goes to one of the other's it lacks.
    const [moving, staying] = right.sizeBytes <= left.sizeBytes ? [right, left] : [left, right];
    const from = Math.min(...moving.voters.filter((v) => !staying.voters.includes(v)));
    const to = staying.voters.filter((v) => !moving.voters.includes(v) && snapshotRoom(planning, v)).sort((a, b) => a - b)[0];
    if (to === undefined) continue;
    propose(planning, moving, { kind: 'moveReplica', rangeId: moving.rangeId, epoch: moving.epoch, from, to, reason: 'merge', mergeWith: staying.rangeId }, 'merge');
    planning.busy.add(staying.rangeId);
    planning.mergesCount++;
  }
}

interface MergePair {
  readonly left: RangeInfo;
  readonly right: RangeInfo;
}

function proposeMerge(planning: Planning, source: RangeInfo, target: RangeInfo, reason: 'size' | 'resume'): void {
  propose(planning, source, { kind: 'merge', rangeId: source.rangeId, epoch: source.epoch, targetId: target.rangeId, targetEpoch: target.epoch, reason }, 'merge');
  planning.busy.add(target.rangeId);
  planning.mergesCount++;
}

/**
 * Whether two merge candidates (each small, cold, led, not frozen, splittable: classify) fit a merge as a pair
 * now, or once replica moves put their voters on the same nodes: adjacent, small together, as many voters
 * each, every one up, no change under way, and both in one store on every voter they share. Whether both are
 * open (no operator, a quorum) is the caller's to check.
 */
function mergeFit(planning: Planning, left: RangeInfo, right: RangeInfo): 'now' | 'aligned first' | 'no' {
  if (left.end === null || compareKeys(left.end, right.start) !== 0) return 'no';
  if (left.sizeBytes + right.sizeBytes >= planning.config.mergeSizeBytes) return 'no';
  if (mergeProblem(left, right, planning.nodeState, planning.sameStore) === undefined) return 'now';
  if (left.learners.length > 0 || right.learners.length > 0 || left.votersOutgoing.length > 0 || right.votersOutgoing.length > 0) return 'no';
  if (left.voters.length !== right.voters.length) return 'no';
  if ([...left.voters, ...right.voters].some((v) => planning.nodeState(v) !== 'up')) return 'no';
  // Voters both share but in different stores would still block the merge after the moves.
  if (left.voters.some((v) => right.voters.includes(v) && !planning.sameStore(v, left.rangeId, right.rangeId))) return 'no';
  return 'aligned first';
}

/**
 * Moves replicas from the most loaded up node to less loaded ones until every pair is within one. A move only goes
 * to a node at least two below its source, so each one lowers the spread and the loop ends (it is bounded by the
 * move budget besides).
 */
function planReplicaBalance(planning: Planning): void {
  const candidates = planning.nodes.filter((n) => n.state === 'up').map((n) => n.nodeId);
  while (movesLeft(planning)) {
    const move = findReplicaMove(planning, candidates);
    if (move === undefined) return;
    const { range, from, to } = move;
    propose(planning, range, { kind: 'moveReplica', rangeId: range.rangeId, epoch: range.epoch, from, to, reason: 'balance' }, 'balanceReplicas');
  }
}

function findReplicaMove(planning: Planning, candidates: readonly number[]): { range: RangeInfo; from: number; to: number } | undefined {
  if (candidates.length < 2) return undefined;
  const countMin = Math.min(...candidates.map((n) => replicasOn(planning, n)));
  const sources = [...candidates].sort((a, b) => replicasOn(planning, b) - replicasOn(planning, a) || a - b);
  for (const from of sources) {
    const fromCount = replicasOn(planning, from);
    if (fromCount - countMin <= 1) return undefined;
    // A source that leads needs a leader transfer first; prefer ranges it only follows.
    // Nor a pinned range's replica on its leader: the move would hand the lead on, and the meta range's lead
    // carries the driver, which would restart without the move it was making and undo it as a stray learner,
    // then plan it again (node simulation seeds 4194 and 14183: the meta range's replica moved for ever).
    const pinnedLead = (r: RangeInfo) => r.leader === from && planning.config.leaderPinned.includes(r.rangeId);
    const ranges = [...openOf(planning, planning.ranges)]
      .filter((r) => r.voters.includes(from) && !planning.mergeHeld.has(r.rangeId) && !pinnedLead(r))
      .sort((a, b) => Number(a.leader === from) - Number(b.leader === from) || a.rangeId - b.rangeId);
    for (const range of ranges) {
      const to = bestCandidate(planning, range, (n) => replicasOn(planning, n) <= fromCount - 2);
      if (to !== undefined) return { range, from, to };
    }
  }
  return undefined;
}

/** As planReplicaBalance, for leaders: a transfer to one of the range's caught-up voters at least two leaders below. */
function planLeaderBalance(planning: Planning): void {
  // Not onto a node still receiving snapshots: a leader there waits out every install on that node (one
  // LMDB transaction and its sync each, up to half a second), and so do the writes it leads.
  const candidates = planning.nodes.filter((n) => n.state === 'up' && (planning.snapshotsByNode.get(n.nodeId) ?? 0) === 0).map((n) => n.nodeId);
  const led = new LeaderIndex(planning.ranges);
  for (;;) {
    const transfer = findLeaderTransfer(planning, candidates, led);
    if (transfer === undefined) return;
    const { range, from, to } = transfer;
    propose(planning, range, { kind: 'transferLeader', rangeId: range.rangeId, epoch: range.epoch, from, to, reason: 'balance' }, 'balanceLeaders');
  }
}

/**
 * The ranges each node leads, by range id, and for each node how many of the first of them are out of the
 * leader balance for the rest of the plan: busy (which only grows), without a quorum, pinned, or with no
 * caught-up voter on a candidate node. A range that fails only on leader counts is looked at again on the
 * next call (counts move both ways as transfers are planned). So a plan of many transfers does not look
 * through the same settled ranges once per transfer, nor through every range for each.
 */
class LeaderIndex {
  private readonly byNode = new Map<number, RangeInfo[]>();
  private readonly skip = new Map<number, number>();

  constructor(ranges: readonly RangeInfo[]) {
    for (const r of ranges) {
      if (r.leader === 0) continue;
      let list = this.byNode.get(r.leader);
      if (list === undefined) this.byNode.set(r.leader, (list = []));
      list.push(r);
    }
  }

  /** The first range `from` leads that `fits`, passing for good over those at the front that are `out`. */
  find<T>(from: number, out: (range: RangeInfo) => boolean, fits: (range: RangeInfo) => T | undefined): T | undefined {
    const list = this.byNode.get(from) ?? [];
    let front = true;
    for (let i = this.skip.get(from) ?? 0; i < list.length; i++) {
      if (out(list[i]!)) {
        if (front) this.skip.set(from, i + 1);
        continue;
      }
      front = false;
      const found = fits(list[i]!);
      if (found !== undefined) return found;
    }
    return undefined;
  }
}

function findLeaderTransfer(planning: Planning, candidates: readonly number[], led: LeaderIndex): { range: RangeInfo; from: number; to: number } | undefined {
  if (candidates.length < 2) return undefined;
  const leadersOn = (n: number) => planning.leadersByNode.get(n) ?? 0;
  const countMin = Math.min(...candidates.map(leadersOn));
  const sources = [...candidates].sort((a, b) => leadersOn(b) - leadersOn(a) || a - b);
  for (const from of sources) {
    const fromCount = leadersOn(from);
    if (fromCount - countMin <= 1) return undefined;
    const votersFor = (range: RangeInfo) => range.voters.filter((v) => v !== from && candidates.includes(v) && isCaughtUp(range, v, planning.config.catchUpLagEntriesMax));
    const out = (range: RangeInfo) => !isOpen(planning, range) || planning.config.leaderPinned.includes(range.rangeId) || votersFor(range).length === 0;
    const transfer = led.find(from, out, (range) => {
      const to = votersFor(range)
        .filter((v) => leadersOn(v) <= fromCount - 2)
        .sort((a, b) => leadersOn(a) - leadersOn(b) || a - b)[0];
      return to === undefined ? undefined : { range, from, to };
    });
    if (transfer !== undefined) return transfer;
  }
  return undefined;
}

// --- Helpers. ---

/** Those of `ranges` a new operator may go to, in their order. Checked as it goes, so a rule sees its own proposals. */
function* openOf(planning: Planning, ranges: readonly RangeInfo[]): Generator<RangeInfo> {
  for (const range of ranges) if (isOpen(planning, range)) yield range;
}

/** No operator in flight or planned, and a quorum to commit one. */
function isOpen(planning: Planning, range: RangeInfo): boolean {
  return !planning.busy.has(range.rangeId) && planning.quorate(range);
}

/**
 * Where a new replica of `range` goes: an up node not holding it, with room for another snapshot, the fewest
 * replicas (counting operators in flight), then the most free bytes, then the lowest id.
 */
function bestCandidate(planning: Planning, range: RangeInfo, eligible: (nodeId: number) => boolean = () => true): number | undefined {
  const held = holders(range);
  return planning.nodes
    .filter((n) => n.state === 'up' && !held.has(n.nodeId) && snapshotRoom(planning, n.nodeId) && eligible(n.nodeId))
    .sort((a, b) => replicasOn(planning, a.nodeId) - replicasOn(planning, b.nodeId) || b.availableBytes - a.availableBytes || a.nodeId - b.nodeId)[0]
    ?.nodeId;
}

/** Live voters beyond the quorum's need: 0 means one more failure loses it. */
function quorumMargin(planning: Planning, range: RangeInfo): number {
  const liveCount = range.voters.filter((v) => planning.nodeState(v) !== 'down').length;
  return liveCount - (Math.floor(range.voters.length / 2) + 1);
}

/** Nodes with any replica of the range: voters, outgoing voters, learners. */
function holders(range: RangeInfo): Set<number> {
  return new Set([...range.voters, ...range.votersOutgoing, ...range.learners]);
}

/** `holders(range)` without building the set: each node once (run for every range on every plan). */
function forEachHolder(range: RangeInfo, f: (node: number) => void): void {
  for (const n of range.voters) f(n);
  for (const n of range.votersOutgoing) if (!range.voters.includes(n)) f(n);
  for (const n of range.learners) if (!range.voters.includes(n) && !range.votersOutgoing.includes(n)) f(n);
}

/** The nodes holding the range once `op` is done. */
function holdersAfter(range: RangeInfo, op: Operator): Set<number> {
  const after = holders(range);
  switch (op.kind) {
    case 'addReplica':
      after.add(op.node);
      break;
    case 'moveReplica':
      after.add(op.to);
      after.delete(op.from);
      break;
    case 'removeReplica':
      after.delete(op.node);
      break;
    case 'leaveJoint':
      for (const node of range.votersOutgoing) if (!range.voters.includes(node) && !range.learners.includes(node)) after.delete(node);
      break;
    case 'split':
    case 'transferLeader':
    case 'merge':
      break;
    default:
      return unreachable(op, 'operator');
  }
  return after;
}

/** The node an operator copies a replica to (a snapshot's worth of work), if it is a move or an addition. */
function snapshotTarget(op: Operator): number | undefined {
  if (op.kind === 'addReplica') return op.node;
  if (op.kind === 'moveReplica') return op.to;
  return undefined;
}

/**
 * The node an operator's snapshot goes to while it has yet to arrive: an add or a move whose replica
 * there has not caught up. The steps after (promotion, a lead transferred off, leaving the joint
 * configuration) are Raft commands, not data, so they hold no snapshot budget: the next move streams
 * meanwhile (a 1 GiB rebalance spent most of its time in those steps with both of a node's slots held).
 */
function snapshotPending(planning: Planning, op: Operator, range: RangeInfo | undefined): number | undefined {
  const target = snapshotTarget(op);
  if (target === undefined || range === undefined) return target;
  return isCaughtUp(range, target, planning.config.catchUpLagEntriesMax) ? undefined : target;
}

function movesLeft(planning: Planning): boolean {
  return planning.movesCount < planning.config.movesInFlightMax;
}

function snapshotRoom(planning: Planning, nodeId: number): boolean {
  return (planning.snapshotsByNode.get(nodeId) ?? 0) < planning.config.snapshotsInFlightPerNodeMax;
}

function replicasOn(planning: Planning, nodeId: number): number {
  return planning.replicasByNode.get(nodeId) ?? 0;
}

function add(counts: Map<number, number>, key: number, delta: number): void {
  counts.set(key, (counts.get(key) ?? 0) + delta);
}

function assertConfig(config: SchedulerConfig): void {
  assert(
    Number.isSafeInteger(config.replicationFactor) && config.replicationFactor >= 1,
    () => `replication factor ${config.replicationFactor} is not a positive integer`,
  );
  assert(
    Number.isSafeInteger(config.movesInFlightMax) && config.movesInFlightMax >= 0,
    () => `moves in flight max ${config.movesInFlightMax} is not a non-negative integer`,
  );
  assert(Number.isSafeInteger(config.splitsInFlightMax) && config.splitsInFlightMax >= 0, () => `splits in flight max ${config.splitsInFlightMax} is not a non-negative integer`);
  assert(Number.isSafeInteger(config.mergesInFlightMax) && config.mergesInFlightMax >= 0, () => `merges in flight max ${config.mergesInFlightMax} is not a non-negative integer`);
  assert(config.mergeSizeBytes >= 0 && config.mergeColdSec >= 0 && config.mergeLoadOpsPerSec >= 0, () => 'merge thresholds must not be negative');
  assert(
    Number.isSafeInteger(config.snapshotsInFlightPerNodeMax) && config.snapshotsInFlightPerNodeMax >= 0,
    () => `snapshots in flight per node max ${config.snapshotsInFlightPerNodeMax} is not a non-negative integer`,
  );
  assert(config.catchUpLagEntriesMax >= 0, () => `catch-up lag ${config.catchUpLagEntriesMax} is negative`);
}

/** What plan() promises, checked on its own output (O(operators)). */
function assertPlan(planning: Planning, inFlight: readonly Operator[], operators: readonly Operator[]): void {
  const seen = new Set(inFlight.map((op) => op.rangeId));
  const pending = (op: Operator) => snapshotPending(planning, op, rangeById(planning.ranges, op.rangeId));
  let movesNewCount = 0;
  for (const op of operators) {
    assert(!seen.has(op.rangeId), () => `range ${op.rangeId} planned a second operator (${op.kind})`);
    seen.add(op.rangeId);
    if (pending(op) !== undefined) movesNewCount += 1;
  }
  const movesInFlightCount = inFlight.filter((op) => pending(op) !== undefined).length;
  assert(
    movesNewCount === 0 || movesInFlightCount + movesNewCount <= planning.config.movesInFlightMax,
    () => `${movesNewCount} moves planned with ${movesInFlightCount} in flight, over ${planning.config.movesInFlightMax}`,
  );
  const splitsNewCount = operators.filter((op) => op.kind === 'split').length;
  const splitsInFlightCount = inFlight.filter((op) => op.kind === 'split').length;
  assert(
    splitsNewCount === 0 || splitsInFlightCount + splitsNewCount <= planning.config.splitsInFlightMax,
    () => `${splitsNewCount} splits planned with ${splitsInFlightCount} in flight, over ${planning.config.splitsInFlightMax}`,
  );
  for (const target of new Set(operators.map(snapshotTarget))) {
    if (target === undefined) continue;
    const count = [...inFlight, ...operators].filter((op) => pending(op) === target).length;
    const countMax = planning.config.snapshotsInFlightPerNodeMax;
    assert(count <= countMax, () => `${count} snapshots onto node ${target}, over ${countMax}`);
  }
}
