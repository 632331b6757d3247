// The membership operator: picks a valid configuration change for the
// leader's current configuration. Pure apart from the random stream and the
// id allocator, so it is easy to reason about which changes a run makes.
import type { ConfChange, ConfChangeSingle, ConfChangeTransition, ConfState, NodeId, SeededRng } from '@flotilla/core';

export interface MembershipLimits {
  /** Never fewer voters: with three, a run can still lose one node and make progress. */
  readonly votersMin: number;
  readonly votersMax: number;
  /** Voters plus learners. */
  readonly membersMax: number;
}

export const DEFAULT_MEMBERSHIP_LIMITS: MembershipLimits = { votersMin: 3, votersMax: 5, membersMax: 7 };

const JOINT_TRANSITIONS: readonly ConfChangeTransition[] = ['auto', 'implicit', 'explicit'];

function pick<T>(items: readonly T[], rng: SeededRng): T {
  return items[rng.intBelow(items.length)]!;
}

/**
 * A change to propose on top of `cs`, or undefined when there is nothing
 * sensible to do. A joint config left explicitly gets its (empty) leave
 * request; one that auto-leaves is left alone, the leader leaves it itself.
 * `allocateId` gives a never-used node id for additions.
 */
/**
 * A change no configuration can take: removing every voter. An operator can
 * send one by mistake; the leader must refuse it rather than commit an entry
 * that every replica then fails to apply.
 */
export function invalidConfChange(cs: ConfState, rng: SeededRng): ConfChange {
  return { changes: cs.voters.map((id) => ({ type: 'removeNode', nodeId: id })), transition: pick(JOINT_TRANSITIONS, rng) };
}

export function chooseConfChange(cs: ConfState, rng: SeededRng, allocateId: () => NodeId, limits: MembershipLimits): ConfChange | undefined {
  if (cs.votersOutgoing.length > 0) {
    return cs.autoLeave ? undefined : { changes: [], transition: 'explicit' };
  }
  const voters = cs.voters;
  const learners = cs.learners;
  const members = voters.length + learners.length;
  const canGrowVoters = voters.length < limits.votersMax;
  const canShrinkVoters = voters.length > limits.votersMin;
  const canAddMember = members < limits.membersMax;

  const options: (() => ConfChange)[] = [];
  const single = (change: ConfChangeSingle): ConfChange => {
    // A single change is usually simple; sometimes force it through a joint config.
    const transition: ConfChangeTransition = rng.chance(0.7) ? 'auto' : pick(['implicit', 'explicit'] as const, rng);
    return { changes: [change], transition };
  };
  if (canAddMember) options.push(() => single({ type: 'addLearner', nodeId: allocateId() }));
  if (canAddMember && canGrowVoters) options.push(() => single({ type: 'addNode', nodeId: allocateId() }));
  if (learners.length > 0 && canGrowVoters) options.push(() => single({ type: 'addNode', nodeId: pick(learners, rng) }));
  if (learners.length > 0) options.push(() => single({ type: 'removeNode', nodeId: pick(learners, rng) }));
  if (canShrinkVoters) {
    options.push(() => single({ type: 'removeNode', nodeId: pick(voters, rng) }));
    options.push(() => single({ type: 'addLearner', nodeId: pick(voters, rng) }));
  }
  // Replace a voter: always joint (two voters change).
  if (canAddMember || learners.length > 0) {
    options.push(() => {
      const incoming = learners.length > 0 && (!canAddMember || rng.chance(0.5)) ? pick(learners, rng) : allocateId();
      const outgoing = pick(voters, rng);
      const demote = rng.chance(0.3);
      return {
        changes: [{ type: 'addNode', nodeId: incoming }, { type: demote ? 'addLearner' : 'removeNode', nodeId: outgoing }],
        transition: pick(JOINT_TRANSITIONS, rng),
      };
    });
  }
  if (options.length === 0) return undefined;
  return pick(options, rng)();
}

export function describeConfChange(cc: ConfChange): string {
  if (cc.changes.length === 0) return 'leave-joint';
  return `${cc.changes.map((c) => `${c.type}(${c.nodeId})`).join('+')}/${cc.transition}`;
}

export function describeConfState(cs: ConfState): string {
  let s = `voters=[${cs.voters.join(',')}]`;
  if (cs.votersOutgoing.length > 0) s += `&&[${cs.votersOutgoing.join(',')}]${cs.autoLeave ? ' auto' : ''}`;
  if (cs.learners.length > 0) s += ` learners=[${cs.learners.join(',')}]`;
  if (cs.learnersNext.length > 0) s += ` learnersNext=[${cs.learnersNext.join(',')}]`;
  return s;
}

export function membersOf(cs: ConfState): Set<NodeId> {
  return new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext]);
}
