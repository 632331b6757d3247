import { assert, unreachable } from '@flotilla/core';
import type { NodeState, Operator, RangeInfo, Step, StepDecision } from './cluster.js';
import { compareKeys } from './range.js';

/**
 * The operator step machine: given an operator and its range as last
 * reported, the one Raft command to send next (or wait, done, abandon).
 *
 * It keeps no state of its own: everything it decides comes from the
 * report, so a driver that crashes mid-operator and restarts with the same
 * operator (or none: see the scheduler's stray-learner rule) picks up where
 * the range is, not where the driver thought it was. The caller sends the
 * step to the range's leader and asks again on the next report; a step it
 * already sent and that shows in the report is never sent twice, because
 * the decision is a function of the membership it sees.
 *
 * Safety, whatever the operator: no step it returns leaves a configuration
 * (the incoming one, and the outgoing one of a joint change) without a
 * majority of voters on nodes that are not down, and a voter is removed
 * only once its replacement votes or in the same joint change.
 */

export interface NextStepOptions {
  /** A learner (or voter) within this many entries of the leader's last index counts as caught up. */
  readonly catchUpLagEntriesMax: number;
  /** The driver's view of a node; undefined for a node it does not know. */
  readonly nodeState: (nodeId: number) => NodeState | undefined;
  /** Another range as last reported (a merge looks at its target); undefined when not known. */
  readonly rangeOf: (rangeId: number) => RangeInfo | undefined;
  /** The epoch a node's replica of the range applied, as its heartbeats said; undefined when it has none. */
  readonly replicaEpoch: (nodeId: number, rangeId: number) => number | undefined;
  /** Whether a node holds its replicas of two ranges in one store (ClusterSnapshot.sameStore); absent: always. */
  readonly sameStore?: (nodeId: number, a: number, b: number) => boolean;
  /** The range of the view that ends at `key` (the left neighbour of one starting there); undefined when not known. */
  readonly rangeEndingAt?: (key: Uint8Array) => RangeInfo | undefined;
}

type OperatorOf<K extends Operator['kind']> = Extract<Operator, { kind: K }>;

interface Context {
  readonly range: RangeInfo;
  readonly options: NextStepOptions;
}

export function nextStep(op: Operator, range: RangeInfo | undefined, options: NextStepOptions): StepDecision {
  // A merge's source leaves the driver's view once its target took it in.
  if (range === undefined) return op.kind === 'merge' ? done() : abandon(`range ${op.rangeId} is gone`);
  assert(range.rangeId === op.rangeId, () => `operator for range ${op.rangeId} stepped with range ${range.rangeId}`);
  if (range.epoch < op.epoch) {
    return wait(`report older than the plan (range ${range.rangeId} at epoch ${range.epoch}, planned at ${op.epoch})`);
  }
  // A joint configuration is left by the leader on its own (or by a leaveJoint operator); any other change now would
  // be refused by Raft. This holds for a moveReplica whose own replaceVoter made it too: it finishes once the range is
  // out of it.
  if (op.kind !== 'leaveJoint' && range.votersOutgoing.length > 0) return wait(`range ${range.rangeId} is in a joint configuration`);
  if (range.leader === 0) return wait(`range ${range.rangeId} has no known leader`);
  // A leader on a down node cannot take a command; a new one is elected among the live voters.
  if (options.nodeState(range.leader) === 'down') return wait(`range ${range.rangeId}: leader ${range.leader} is on a down node`);

  const context: Context = { range, options };
  const decision = decide(op, context);
  if (decision.kind === 'step' && !keepsQuorum(range, decision.step, options.nodeState)) {
    // The per-kind rules should never get here; this is the net under them (and under admin operators).
    return wait(`range ${range.rangeId}: ${describeStep(decision.step)} would leave a configuration without a live majority`);
  }
  return decision;
}

function decide(op: Operator, context: Context): StepDecision {
  switch (op.kind) {
    case 'split':
      return nextSplit(op, context);
    case 'addReplica':
      return nextAddReplica(op, context);
    case 'moveReplica':
      return nextMoveReplica(op, context);
    case 'removeReplica':
      return nextRemoveReplica(op, context);
    case 'transferLeader':
      return nextTransferLeader(op, context);
    case 'leaveJoint':
      return nextLeaveJoint(op, context);
    case 'merge':
      return nextMerge(op, context);
    default:
      return unreachable(op, 'operator');
  }
}

/**
 * A merge (shards: kv/merge.ts), decided from the two ranges' reports:
 * 1. the source not frozen: freeze it, if both ranges are still as planned
 *    and fit (neighbours, same voters on up nodes, no change under way);
 * 2. frozen: once every voter's replica of the source applied the freeze
 *    (its epoch, from the nodes' heartbeats), commit on the target;
 * 3. done once the target covers the source.
 * A frozen source serves nothing, so a merge that cannot finish — the
 * target changed, a voter's node is down — is rolled back: first the
 * target is fenced (its epoch moves, so no commitMerge planned against the
 * old one can apply; any already in its log applied before the fence),
 * then the source unfreezes. Both only once the target's report shows the
 * fence applied without the merge, so a rollback never races a commit.
 */
function nextMerge(op: OperatorOf<'merge'>, { range: source, options }: Context): StepDecision {
  const target = options.rangeOf(op.targetId);
  if (target === undefined) {
    if (source.frozen === undefined) return abandon(`target range ${op.targetId} is not known`);
    // Gone from the view, and another range now ends where the source starts: the target lost the keys next
    // to the source. Merged away, it froze first, and a frozen range takes nothing in (commitMergeRefusal);
    // split short or changed, any commitMerge proposed before carries an epoch it no longer has. It will
    // never take the source in, so the freeze is undone without a fence. (Had it taken the source in, every
    // replica of the source would have been destroyed as it applied that, and the rollback could not commit.)
    // Node simulation seed 659: an admin merge took the target in while the source's group had no leader
    // to report its freeze, and the source stayed frozen, serving nothing, for good.
    const left = options.rangeEndingAt?.(source.start);
    if (left !== undefined && left.rangeId !== op.targetId && source.frozen.targetRangeId === op.targetId) {
      return step({ kind: 'rollbackMerge', start: source.start, epoch: source.epoch, targetId: op.targetId });
    }
    return wait(`target range ${op.targetId} is not known`);
  }
  if (covers(target, source)) return done();
  const frozen = source.frozen;
  if (frozen === undefined) {
    // Unfrozen: not frozen yet, or rolled back (the epoch moved on).
    if (source.epoch !== op.epoch || target.epoch !== op.targetEpoch) return abandon(`range ${source.rangeId} or ${target.rangeId} changed before the freeze`);
    const problem = mergeProblem(target, source, options.nodeState, options.sameStore);
    if (problem !== undefined) return abandon(problem);
    return step({ kind: 'freeze', start: source.start, epoch: source.epoch, targetId: target.rangeId, voters: sorted(source.voters) });
  }
  if (frozen.targetRangeId !== op.targetId) return abandon(`range ${source.rangeId} is frozen for a merge into range ${frozen.targetRangeId}`);
  // A suspect node is a blip, not a reason to undo a merge; a down one would hold it for as long as it stays down.
  const notDown = (id: number): NodeState | undefined => (options.nodeState(id) === 'suspect' ? 'up' : options.nodeState(id));
  const rollback = target.epoch !== op.targetEpoch ? `target range ${target.rangeId} changed (epoch ${op.targetEpoch} → ${target.epoch})` : mergeProblem(target, source, notDown, options.sameStore);
  if (rollback !== undefined) {
    if (target.leader === 0 || options.nodeState(target.leader) === 'down') return wait(`range ${target.rangeId} has no live leader to fence`);
    if (target.epoch === op.targetEpoch) return step({ kind: 'fenceMerge', targetId: target.rangeId, targetStart: target.start, targetEpoch: target.epoch });
    // Fenced (or moved on by itself) without taking the source in: no commit can apply any more.
    return step({ kind: 'rollbackMerge', start: source.start, epoch: source.epoch, targetId: target.rangeId });
  }
  const behind = source.voters.filter((v) => (options.replicaEpoch(v, source.rangeId) ?? 0) < frozen.epoch);
  if (behind.length > 0) return wait(`replicas of range ${source.rangeId} on nodes ${behind.join(', ')} have not applied the freeze`);
  if (target.leader === 0) return wait(`range ${target.rangeId} has no known leader`);
  return step({
    kind: 'commitMerge',
    targetId: target.rangeId,
    targetStart: target.start,
    targetEpoch: target.epoch,
    sourceEnd: source.end,
    sourceEpoch: frozen.epoch,
    freezeIndex: frozen.index,
    freezeTerm: frozen.term,
    voters: sorted(source.voters),
  });
}

/**
 * Why `left` cannot take in `right` now, or undefined: they must be
 * neighbours, with the same voters, every one on an up node (a merge waits
 * for every replica of the source), and no learner or change under way.
 */
export function mergeProblem(
  left: RangeInfo,
  right: RangeInfo,
  nodeState: (nodeId: number) => NodeState | undefined,
  sameStore: (nodeId: number, a: number, b: number) => boolean = () => true,
): string | undefined {
  if (left.end === null || compareKeys(left.end, right.start) !== 0) return `range ${left.rangeId} does not end where range ${right.rangeId} starts`;
  if (left.learners.length > 0 || right.learners.length > 0 || left.votersOutgoing.length > 0 || right.votersOutgoing.length > 0) return 'a learner or a membership change is under way';
  const [a, b] = [sorted(left.voters), sorted(right.voters)];
  if (a.length !== b.length || a.some((v, i) => v !== b[i])) return `ranges ${left.rangeId} and ${right.rangeId} have different voters`;
  const notUp = a.filter((v) => nodeState(v) !== 'up');
  if (notUp.length > 0) return `nodes ${notUp.join(', ')} are not up`;
  // The target's replica takes the source's data where it lies: both must be in one store on every node.
  const apart = a.filter((v) => !sameStore(v, left.rangeId, right.rangeId));
  if (apart.length > 0) return `nodes ${apart.join(', ')} hold ranges ${left.rangeId} and ${right.rangeId} in different stores (worker cores)`;
  return undefined;
}

/** Whether `left` took `right` in: it starts before it and ends where it ends, or past. */
function covers(left: RangeInfo, right: RangeInfo): boolean {
  if (compareKeys(left.start, right.start) >= 0) return false;
  if (left.end === null) return true;
  return right.end !== null && compareKeys(left.end, right.end) >= 0;
}

function sorted(nodes: readonly number[]): number[] {
  return [...nodes].sort((a, b) => a - b);
}

function nextSplit(op: OperatorOf<'split'>, { range }: Context): StepDecision {
  const inside = keyStrictlyInside(range, op.key);
  if (range.epoch > op.epoch) {
    // The split itself raises the epoch and leaves the key as this range's end (the right half is a new range). An
    // epoch that moved with the key still inside was some other change: the plan no longer matches the range.
    return inside ? abandon(`range ${range.rangeId} changed (epoch ${op.epoch} → ${range.epoch}) before it split`) : done();
  }
  if (!inside) return abandon(`split key is not strictly inside range ${range.rangeId}`);
  return step({ kind: 'split', key: op.key });
}

function nextAddReplica(op: OperatorOf<'addReplica'>, context: Context): StepDecision {
  const { range, options } = context;
  const { node } = op;
  if (range.voters.includes(node)) return done();
  if (!canReceive(options.nodeState(node))) return abandon(`node ${node} is ${options.nodeState(node) ?? 'unknown'}`);
  if (range.learners.includes(node)) {
    if (!isCaughtUp(range, node, options.catchUpLagEntriesMax)) return wait(`learner ${node} is catching up`);
    return step({ kind: 'promote', node });
  }
  // Adding a learner is the one step planned against a precise membership; once the epoch moved, the plan may be
  // wrong (the range split, or someone else added a replica).
  if (range.epoch !== op.epoch) return abandon(`range ${range.rangeId} changed (epoch ${op.epoch} → ${range.epoch}) before the learner was added`);
  return step({ kind: 'addLearner', node });
}

function nextMoveReplica(op: OperatorOf<'moveReplica'>, context: Context): StepDecision {
  const { range, options } = context;
  const { from, to } = op;
  assert(from !== to, () => `moveReplica of range ${range.rangeId} from node ${from} to itself`);
  const fromIsVoter = range.voters.includes(from);
  const fromIsLearner = range.learners.includes(from);

  if (range.voters.includes(to)) {
    if (!fromIsVoter && !fromIsLearner) return done();
    if (fromIsLearner) return step({ kind: 'removeNode', node: from });
    // `to` votes already (promoted some other way) and `from` is still a voter: a plain removal finishes the move.
    return removeVoter(from, context);
  }

  if (!range.learners.includes(to)) {
    if (range.epoch !== op.epoch) {
      return abandon(`range ${range.rangeId} changed (epoch ${op.epoch} → ${range.epoch}) before the learner was added`);
    }
    if (options.nodeState(to) !== 'up') return abandon(`node ${to} is ${options.nodeState(to) ?? 'unknown'}`);
    return step({ kind: 'addLearner', node: to });
  }

  // `to` is a learner.
  if (!canReceive(options.nodeState(to))) return abandon(`node ${to} is ${options.nodeState(to) ?? 'unknown'}`);
  if (!isCaughtUp(range, to, options.catchUpLagEntriesMax)) return wait(`learner ${to} is catching up`);
  // `from` gone (removed by someone else) or only a learner: nothing to swap; promote, and a learner `from` is removed
  // on the next step. Adding before removing either way.
  if (!fromIsVoter) return step({ kind: 'promote', node: to });
  // A sole voter (a factor of one) has no one to hand the lead to: promote `to` first, and the rule above (`to`
  // votes, `from` still does) moves the lead to it and then removes `from`. Still adding before removing.
  if (range.leader === from && range.voters.length === 1) return step({ kind: 'promote', node: to });
  if (range.leader === from) return transferLeadOff(from, context);
  return step({ kind: 'replaceVoter', add: to, remove: from });
}

function nextRemoveReplica(op: OperatorOf<'removeReplica'>, context: Context): StepDecision {
  const { range } = context;
  const { node } = op;
  if (range.learners.includes(node)) return step({ kind: 'removeNode', node });
  if (!range.voters.includes(node)) return done();
  return removeVoter(node, context);
}

function nextTransferLeader(op: OperatorOf<'transferLeader'>, { range, options }: Context): StepDecision {
  const { from, to } = op;
  if (range.leader === to) return done();
  if (!range.voters.includes(to)) return abandon(`node ${to} is not a voter of range ${range.rangeId}`);
  if (range.leader !== from) return abandon(`range ${range.rangeId} is led by node ${range.leader} now, not ${from}`);
  // The scheduler's rule that only up nodes get leaders holds here too: a transfer to a node that went away
  // would leave the range leaderless until an election.
  if (options.nodeState(to) !== 'up') return abandon(`node ${to} is ${options.nodeState(to) ?? 'unknown'}`);
  return step({ kind: 'transferLeader', to });
}

function nextLeaveJoint(_op: OperatorOf<'leaveJoint'>, { range }: Context): StepDecision {
  if (range.votersOutgoing.length === 0) return done();
  return step({ kind: 'leaveJoint' });
}

/**
 * Removes voter `node`, only once someone else leads, and not while that would leave the remaining voters without
 * a majority on up nodes: stricter than the non-down net in nextStep, because removing a live voter lowers the
 * failures the range survives, so not while any of the rest is suspect.
 *
 * Removing a voter on a down node is exempt from the up-majority rule (the non-down net still applies): it leaves
 * the live voters as they were and the majority they need no larger, so it never lowers what the range survives,
 * and holding it back would keep a dead voter in the quorum while the rest are suspect.
 */
function removeVoter(node: number, context: Context): StepDecision {
  const { range, options } = context;
  const remaining = range.voters.filter((v) => v !== node);
  const remainingUpCount = remaining.filter((v) => options.nodeState(v) === 'up').length;
  if (options.nodeState(node) !== 'down' && !isMajority(remainingUpCount, remaining.length)) {
    return wait(`removing node ${node} would leave range ${range.rangeId} with ${remainingUpCount} of ${remaining.length} voters up`);
  }
  if (range.leader === node) return transferLeadOff(node, context);
  return step({ kind: 'removeNode', node });
}

/** Moves the lead off `from` to the most caught-up other voter on an up node (lowest id on a tie). */
function transferLeadOff(from: number, { range, options }: Context): StepDecision {
  const to = range.voters
    .filter((v) => v !== from && options.nodeState(v) === 'up' && isCaughtUp(range, v, options.catchUpLagEntriesMax))
    .sort((a, b) => matchOf(range, b) - matchOf(range, a) || a - b)[0];
  if (to === undefined) return wait(`no caught-up voter on an up node to take the lead of range ${range.rangeId} from node ${from}`);
  return step({ kind: 'transferLeader', to });
}

/** A node that may hold a replica still being added: not gone or going (suspect is a blip, not a reason to give up). */
function canReceive(state: NodeState | undefined): boolean {
  return state === 'up' || state === 'suspect';
}

/** How far `node` has the range's log: the leader has all of it; a replica the leader has not reported, none. */
export function matchOf(range: RangeInfo, node: number): number {
  if (node === range.leader) return range.lastIndex;
  return range.progress.find((p) => p.nodeId === node)?.match ?? 0;
}

/**
 * A replica that acknowledged nothing is never caught up, however short the
 * leader's log: a new range's log is a few entries long (its first index is
 * INITIAL_LOG_INDEX), so "within the lag of the last index" alone held for
 * an empty learner, and promoting it made a voter that holds no range. Such
 * a replica refuses votes until a snapshot gives it the range (it cannot
 * tell a stale candidate from a real one), so a crash of both nodes of a
 * two-voter range before the snapshot left it without a leader for good. A
 * joining replica starts at index 0 and every range's log starts past it,
 * so any acknowledgement means a snapshot was installed, durably (its
 * acknowledgement is sent after the round's sync).
 */
export function isCaughtUp(range: RangeInfo, node: number, catchUpLagEntriesMax: number): boolean {
  const match = matchOf(range, node);
  return match > 0 && match >= range.lastIndex - catchUpLagEntriesMax;
}

export function isMajority(count: number, of: number): boolean {
  return 2 * count > of;
}

/** Whether `voters` has a majority on nodes not down; an unknown node counts as not down (the driver may just not have heard from it yet). */
export function hasLiveMajority(voters: readonly number[], nodeState: (nodeId: number) => NodeState | undefined): boolean {
  return isMajority(voters.filter((v) => nodeState(v) !== 'down').length, voters.length);
}

/** Whether the range can commit anything: a live majority in its voters and, in a joint configuration, in the outgoing ones too. */
export function hasQuorum(range: Pick<RangeInfo, 'voters' | 'votersOutgoing'>, nodeState: (nodeId: number) => NodeState | undefined): boolean {
  return hasLiveMajority(range.voters, nodeState) && (range.votersOutgoing.length === 0 || hasLiveMajority(range.votersOutgoing, nodeState));
}

/**
 * Whether every configuration after `s` keeps a live majority. Steps that do not change the voters pass (a learner
 * has no vote; leaving a joint configuration only drops the outgoing half's requirement).
 */
function keepsQuorum(range: RangeInfo, s: Step, nodeState: (nodeId: number) => NodeState | undefined): boolean {
  switch (s.kind) {
    case 'promote':
      return hasQuorum({ voters: [...range.voters, s.node], votersOutgoing: range.votersOutgoing }, nodeState);
    case 'replaceVoter':
      return hasQuorum({ voters: [...range.voters.filter((v) => v !== s.remove), s.add], votersOutgoing: range.voters }, nodeState);
    case 'removeNode':
      if (!range.voters.includes(s.node)) return true;
      return hasQuorum({ voters: range.voters.filter((v) => v !== s.node), votersOutgoing: range.votersOutgoing }, nodeState);
    case 'split':
    case 'addLearner':
    case 'transferLeader':
    case 'leaveJoint':
    case 'freeze':
    case 'commitMerge':
    case 'fenceMerge':
    case 'rollbackMerge':
      return true;
    default:
      return unreachable(s, 'step');
  }
}

/** start < key, and key < end unless the range runs to the end of the key space: a split there leaves two non-empty halves. */
export function keyStrictlyInside(range: Pick<RangeInfo, 'start' | 'end'>, key: Uint8Array): boolean {
  return compareKeys(range.start, key) < 0 && (range.end === null || compareKeys(key, range.end) < 0);
}

function describeStep(s: Step): string {
  switch (s.kind) {
    case 'promote':
      return `promoting node ${s.node}`;
    case 'replaceVoter':
      return `replacing voter ${s.remove} with ${s.add}`;
    case 'removeNode':
      return `removing node ${s.node}`;
    default:
      return s.kind;
  }
}

function step(s: Step): StepDecision {
  return { kind: 'step', step: s };
}

function wait(why: string): StepDecision {
  return { kind: 'wait', why };
}

function done(): StepDecision {
  return { kind: 'done' };
}

function abandon(why: string): StepDecision {
  return { kind: 'abandon', why };
}
