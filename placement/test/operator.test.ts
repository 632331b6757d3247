import { describe, expect, it } from 'vitest';
import type { NodeState, Operator, RangeInfo, StepDecision } from '../src/cluster.js';
import { nextStep } from '../src/operator.js';

const key = (s: string) => Buffer.from(s);
const CATCH_UP_LAG_ENTRIES_MAX = 10;
const LAST_INDEX = 100;

interface RangeSpec {
  voters?: number[];
  outgoing?: number[];
  learners?: number[];
  leader?: number;
  epoch?: number;
  /** Replica match indexes; a replica not named here is fully caught up. */
  match?: Record<number, number>;
  /** The leader's last index (default LAST_INDEX). */
  lastIndex?: number;
  start?: string;
  end?: string | null;
}

/** Range 7, [b, m), epoch 5, voters 1 2 3 led by 1, everyone caught up unless told otherwise. */
function range(spec: RangeSpec = {}): RangeInfo {
  const voters = spec.voters ?? [1, 2, 3];
  const outgoing = spec.outgoing ?? [];
  const learners = spec.learners ?? [];
  const leader = spec.leader ?? 1;
  const replicas = [...new Set([...voters, ...outgoing, ...learners])].filter((n) => n !== leader);
  return {
    rangeId: 7,
    start: key(spec.start ?? 'b'),
    end: spec.end === null ? null : key(spec.end ?? 'm'),
    epoch: spec.epoch ?? 5,
    voters,
    votersOutgoing: outgoing,
    learners,
    leader,
    lastIndex: spec.lastIndex ?? LAST_INDEX,
    progress: replicas.map((nodeId) => ({ nodeId, match: spec.match?.[nodeId] ?? spec.lastIndex ?? LAST_INDEX })),
    sizeBytes: 0,
    keyCount: 0,
    writesPerSec: 0,
    readsPerSec: 0,
    hotForSec: 0,
    coldForSec: 0,
  };
}

const split = (keyText: string): Operator => ({ kind: 'split', rangeId: 7, epoch: 5, key: key(keyText), reason: 'size' });
const addReplica = (node: number): Operator => ({ kind: 'addReplica', rangeId: 7, epoch: 5, node, reason: 'replicate' });
const moveReplica = (from: number, to: number): Operator => ({ kind: 'moveReplica', rangeId: 7, epoch: 5, from, to, reason: 'balance' });
const removeReplica = (node: number): Operator => ({ kind: 'removeReplica', rangeId: 7, epoch: 5, node, reason: 'excess' });
const transferLeader = (from: number, to: number): Operator => ({ kind: 'transferLeader', rangeId: 7, epoch: 5, from, to, reason: 'balance' });
const leaveJoint: Operator = { kind: 'leaveJoint', rangeId: 7, epoch: 5, reason: 'repair' };

/** What a case expects: a decision kind, or the exact step. */
type Expected = 'wait' | 'done' | 'abandon' | StepDecision & { kind: 'step' };
const step = (s: (StepDecision & { kind: 'step' })['step']): Expected => ({ kind: 'step', step: s });

type Case = [name: string, op: Operator, range: RangeInfo | undefined, states: Record<number, NodeState>, expected: Expected];

function decide(op: Operator, r: RangeInfo | undefined, states: Record<number, NodeState>): StepDecision {
  return nextStep(op, r, { catchUpLagEntriesMax: CATCH_UP_LAG_ENTRIES_MAX, nodeState: (n) => states[n] ?? (n <= 9 ? 'up' : undefined), rangeOf: () => undefined, replicaEpoch: () => undefined });
}

function check([, op, r, states, expected]: Case): void {
  const decision = decide(op, r, states);
  if (typeof expected === 'string') expect(decision.kind).toBe(expected);
  else expect(decision).toEqual(expected);
}

describe('nextStep: before any operator kind', () => {
  it.each<Case>([
    ['abandons when the range is gone', addReplica(4), undefined, {}, 'abandon'],
    ['waits on a report older than the plan', addReplica(4), range({ epoch: 4 }), {}, 'wait'],
    ['waits while the range is in a joint configuration', addReplica(4), range({ voters: [1, 2, 4], outgoing: [1, 2, 3] }), {}, 'wait'],
    ['waits in the joint configuration its own replaceVoter made', moveReplica(3, 4), range({ voters: [1, 2, 4], outgoing: [1, 2, 3], epoch: 7 }), {}, 'wait'],
    ['waits while no leader is known', addReplica(4), range({ leader: 0 }), {}, 'wait'],
    ['waits while the leader is on a down node', addReplica(4), range({ leader: 2 }), { 2: 'down' }, 'wait'],
  ])('%s', (...c) => check(c));
});

describe('nextStep: split', () => {
  it.each<Case>([
    ['splits at a key strictly inside', split('f'), range(), {}, step({ kind: 'split', key: key('f') })],
    ['splits a range running to the end of the key space', split('zz'), range({ end: null }), {}, step({ kind: 'split', key: key('zz') })],
    ['abandons a key at the start (an empty left half)', split('b'), range(), {}, 'abandon'],
    ['abandons a key at the end', split('m'), range(), {}, 'abandon'],
    ['abandons a key outside', split('a'), range(), {}, 'abandon'],
    ['is done once the epoch moved and the key is the end', split('f'), range({ epoch: 6, end: 'f' }), {}, 'done'],
    ['abandons when the epoch moved but the key is still inside', split('f'), range({ epoch: 6 }), {}, 'abandon'],
    ['waits for a leader even when split', split('f'), range({ epoch: 6, end: 'f', leader: 0 }), {}, 'wait'],
  ])('%s', (...c) => check(c));
});

describe('nextStep: addReplica', () => {
  it.each<Case>([
    ['adds a learner first', addReplica(4), range(), {}, step({ kind: 'addLearner', node: 4 })],
    ['abandons when the range changed before the learner was added', addReplica(4), range({ epoch: 6 }), {}, 'abandon'],
    ['waits for a lagging learner', addReplica(4), range({ epoch: 6, learners: [4], match: { 4: 50 } }), {}, 'wait'],
    ['waits for a learner its leader has not reported', addReplica(4), { ...range({ epoch: 6, learners: [4] }), progress: [] }, {}, 'wait'],
    ['waits one entry short of caught up', addReplica(4), range({ epoch: 6, learners: [4], match: { 4: LAST_INDEX - CATCH_UP_LAG_ENTRIES_MAX - 1 } }), {}, 'wait'],
    // A new range's log is shorter than the lag: an empty learner was once "within the lag" and promoted.
    ['waits for a learner that acknowledged nothing, on a log shorter than the lag', addReplica(4), range({ epoch: 6, learners: [4], lastIndex: 7, match: { 4: 0 } }), {}, 'wait'],
    ['promotes a learner that installed its snapshot, on a log shorter than the lag', addReplica(4), range({ epoch: 6, learners: [4], lastIndex: 7, match: { 4: 5 } }), {}, step({ kind: 'promote', node: 4 })],
    ['promotes a learner exactly at the lag limit', addReplica(4), range({ epoch: 6, learners: [4], match: { 4: LAST_INDEX - CATCH_UP_LAG_ENTRIES_MAX } }), {}, step({ kind: 'promote', node: 4 })],
    ['promotes a learner on a suspect node (a blip)', addReplica(4), range({ epoch: 6, learners: [4] }), { 4: 'suspect' }, step({ kind: 'promote', node: 4 })],
    ['is done once the node votes', addReplica(4), range({ epoch: 7, voters: [1, 2, 3, 4] }), {}, 'done'],
    ['abandons a down target', addReplica(4), range({ epoch: 6, learners: [4] }), { 4: 'down' }, 'abandon'],
    ['abandons a decommissioning target', addReplica(4), range(), { 4: 'decommissioning' }, 'abandon'],
    ['abandons a decommissioned target', addReplica(4), range(), { 4: 'decommissioned' }, 'abandon'],
    ['abandons a target the driver does not know', addReplica(40), range(), {}, 'abandon'],
  ])('%s', (...c) => check(c));
});

describe('nextStep: moveReplica (adds before it removes)', () => {
  it.each<Case>([
    ['adds the target as a learner first', moveReplica(3, 4), range(), {}, step({ kind: 'addLearner', node: 4 })],
    ['abandons when the range changed before the learner was added', moveReplica(3, 4), range({ epoch: 6 }), {}, 'abandon'],
    ['abandons a target that is not up before adding it', moveReplica(3, 4), range(), { 4: 'suspect' }, 'abandon'],
    ['waits for the learner to catch up', moveReplica(3, 4), range({ epoch: 6, learners: [4], match: { 4: 10 } }), {}, 'wait'],
    ['abandons when the learner\'s node went down', moveReplica(3, 4), range({ epoch: 6, learners: [4] }), { 4: 'down' }, 'abandon'],
    ['swaps in one joint change once caught up', moveReplica(3, 4), range({ epoch: 6, learners: [4] }), {}, step({ kind: 'replaceVoter', add: 4, remove: 3 })],
    ['waits for a move target that acknowledged nothing, on a log shorter than the lag', moveReplica(3, 4), range({ epoch: 6, learners: [4], lastIndex: 7, match: { 4: 0 } }), {}, 'wait'],
    [
      'moves the lead off the source first, to the most caught-up up voter',
      moveReplica(3, 4),
      range({ epoch: 6, learners: [4], leader: 3, match: { 1: 95, 2: 99 } }),
      {},
      step({ kind: 'transferLeader', to: 2 }),
    ],
    ['breaks a tie in catch-up by the lowest node id', moveReplica(3, 4), range({ epoch: 6, learners: [4], leader: 3 }), {}, step({ kind: 'transferLeader', to: 1 })],
    ['never moves the lead to a node that is not up', moveReplica(3, 4), range({ epoch: 6, learners: [4], leader: 3, match: { 2: 99 } }), { 1: 'suspect' }, step({ kind: 'transferLeader', to: 2 })],
    ['waits when no voter can take the lead', moveReplica(3, 4), range({ epoch: 6, learners: [4], leader: 3, match: { 2: 10 } }), { 1: 'down' }, 'wait'],
    ['is done once the target votes and the source is gone', moveReplica(3, 4), range({ epoch: 8, voters: [1, 2, 4] }), {}, 'done'],
    ['removes a source still voting after the target was promoted', moveReplica(3, 4), range({ epoch: 7, voters: [1, 2, 3, 4] }), {}, step({ kind: 'removeNode', node: 3 })],
    ['moves the lead off a source still voting before removing it', moveReplica(3, 4), range({ epoch: 7, voters: [1, 2, 3, 4], leader: 3, match: { 4: 100, 1: 90, 2: 90 } }), {}, step({ kind: 'transferLeader', to: 4 })],
    ['removes a source that is only a learner once the target votes', moveReplica(3, 4), range({ epoch: 7, voters: [1, 2, 4], learners: [3] }), {}, step({ kind: 'removeNode', node: 3 })],
    ['promotes the target when the source already left', moveReplica(3, 4), range({ epoch: 7, voters: [1, 2], learners: [4] }), {}, step({ kind: 'promote', node: 4 })],
    ['promotes the target before removing a source that is a learner', moveReplica(3, 4), range({ epoch: 7, voters: [1, 2], learners: [3, 4] }), {}, step({ kind: 'promote', node: 4 })],
    ['a sole voter leading (factor one): promotes the target first', moveReplica(1, 4), range({ voters: [1], epoch: 6, learners: [4] }), {}, step({ kind: 'promote', node: 4 })],
    ['a sole voter leading, once the target votes: hands it the lead', moveReplica(1, 4), range({ voters: [1, 4], epoch: 7 }), {}, step({ kind: 'transferLeader', to: 4 })],
    ['a sole voter, once it no longer leads: removes it', moveReplica(1, 4), range({ voters: [1, 4], epoch: 7, leader: 4 }), {}, step({ kind: 'removeNode', node: 1 })],
    ['repairs off a down node: swaps it out in one joint change', moveReplica(3, 4), range({ epoch: 6, learners: [4] }), { 3: 'down' }, step({ kind: 'replaceVoter', add: 4, remove: 3 })],
  ])('%s', (...c) => check(c));
});

describe('nextStep: removeReplica', () => {
  it.each<Case>([
    ['is done once the node holds nothing', removeReplica(4), range(), {}, 'done'],
    ['removes a learner', removeReplica(4), range({ learners: [4] }), {}, step({ kind: 'removeNode', node: 4 })],
    ['removes a voter that does not lead', removeReplica(4), range({ voters: [1, 2, 3, 4] }), {}, step({ kind: 'removeNode', node: 4 })],
    ['moves the lead off the voter first', removeReplica(1), range({ voters: [1, 2, 3, 4], match: { 2: 80, 3: 95, 4: 95 } }), {}, step({ kind: 'transferLeader', to: 3 })],
    ['waits when no other voter can lead', removeReplica(1), range({ voters: [1, 2, 3, 4], match: { 2: 10, 3: 10 } }), { 4: 'down' }, 'wait'],
    ['removes a voter on a down node', removeReplica(4), range({ voters: [1, 2, 3, 4] }), { 4: 'down' }, step({ kind: 'removeNode', node: 4 })],
    ['never removes a voter when the rest would lack a majority of up nodes', removeReplica(3), range(), { 2: 'suspect' }, 'wait'],
    ['never removes a voter when the rest lack a majority of up nodes, leader or not', removeReplica(1), range(), { 2: 'down' }, 'wait'],
    [
      'removes a voter on a down node while the rest are suspect (the live voters stay, the majority shrinks)',
      removeReplica(4),
      range({ voters: [1, 2, 3, 4] }),
      { 2: 'suspect', 3: 'suspect', 4: 'down' },
      step({ kind: 'removeNode', node: 4 }),
    ],
    ['never removes a voter on a down node when the rest lack a live majority', removeReplica(4), range({ voters: [1, 2, 3, 4] }), { 2: 'down', 3: 'down', 4: 'down' }, 'wait'],
    ['never removes the last voter', removeReplica(1), range({ voters: [1] }), {}, 'wait'],
    ['removes down to two voters when both are up', removeReplica(3), range(), {}, step({ kind: 'removeNode', node: 3 })],
  ])('%s', (...c) => check(c));
});

describe('nextStep: transferLeader', () => {
  it.each<Case>([
    ['transfers from the expected leader', transferLeader(1, 2), range(), {}, step({ kind: 'transferLeader', to: 2 })],
    ['is done once the target leads', transferLeader(1, 2), range({ leader: 2 }), {}, 'done'],
    ['abandons a target that no longer votes', transferLeader(1, 2), range({ voters: [1, 3, 4], epoch: 6 }), {}, 'abandon'],
    ['abandons when someone else leads now', transferLeader(1, 2), range({ leader: 3 }), {}, 'abandon'],
    ['abandons a target that is not up', transferLeader(1, 2), range(), { 2: 'suspect' }, 'abandon'],
  ])('%s', (...c) => check(c));
});

describe('nextStep: leaveJoint', () => {
  it.each<Case>([
    ['leaves a joint configuration', leaveJoint, range({ voters: [1, 2, 4], outgoing: [1, 2, 3] }), {}, step({ kind: 'leaveJoint' })],
    ['is done once out of it', leaveJoint, range({ voters: [1, 2, 4], epoch: 6 }), {}, 'done'],
    ['waits for a leader', leaveJoint, range({ voters: [1, 2, 4], outgoing: [1, 2, 3], leader: 0 }), {}, 'wait'],
  ])('%s', (...c) => check(c));
});

describe('nextStep: the safety net under every kind', () => {
  it('never promotes a voter that would leave a joint half without a live majority', () => {
    // An admin addReplica onto a range whose outgoing half lost its majority: no step commits there, and none is sent.
    const r = range({ voters: [1, 2, 3], learners: [4] });
    expect(decide(addReplica(4), r, { 2: 'down', 3: 'down' }).kind).toBe('wait');
  });

  it('says why it waits', () => {
    const decision = decide(removeReplica(3), range(), { 2: 'suspect' });
    expect(decision).toEqual({ kind: 'wait', why: 'removing node 3 would leave range 7 with 1 of 2 voters up' });
  });
});

describe('nextStep: merge', () => {
  // Source: range 7, [b, m) (range()); target: range 3, [a, b), epoch 9, the same voters.
  const target = (spec: { epoch?: number; end?: string | null; voters?: number[]; leader?: number; learners?: number[] } = {}): RangeInfo => ({
    ...range({ voters: spec.voters ?? [1, 2, 3], leader: spec.leader ?? 2, learners: spec.learners ?? [] }),
    rangeId: 3,
    start: key('a'),
    end: spec.end === null ? null : key(spec.end ?? 'b'),
    epoch: spec.epoch ?? 9,
  });
  const merge: Operator = { kind: 'merge', rangeId: 7, epoch: 5, targetId: 3, targetEpoch: 9, reason: 'size' };
  const FROZEN = { targetRangeId: 3, index: 120, term: 4, epoch: 6 };
  const frozenSource = (spec: RangeSpec = {}): RangeInfo => ({ ...range({ epoch: 6, ...spec }), frozen: FROZEN });

  function decideMerge(
    source: RangeInfo | undefined,
    t: RangeInfo | undefined,
    options: { states?: Record<number, NodeState>; applied?: Record<number, number>; endingAt?: (k: Uint8Array) => RangeInfo | undefined } = {},
  ): StepDecision {
    return nextStep(merge, source, {
      catchUpLagEntriesMax: CATCH_UP_LAG_ENTRIES_MAX,
      nodeState: (n) => options.states?.[n] ?? (n <= 9 ? 'up' : undefined),
      rangeOf: (id) => (id === 3 ? t : undefined),
      replicaEpoch: (node, id) => (id === 7 ? (options.applied?.[node] ?? source?.epoch) : undefined),
      ...(options.endingAt === undefined ? {} : { rangeEndingAt: options.endingAt }),
    });
  }

  it('freezes the source against the target it was planned with', () => {
    expect(decideMerge(range(), target())).toEqual({ kind: 'step', step: { kind: 'freeze', start: key('b'), epoch: 5, targetId: 3, voters: [1, 2, 3] } });
  });

  it('abandons before the freeze when either range changed or they do not fit', () => {
    expect(decideMerge(range(), target({ epoch: 10 })).kind).toBe('abandon');
    expect(decideMerge(range({ epoch: 6 }), target()).kind).toBe('abandon');
    expect(decideMerge(range(), target({ end: 'c' })).kind).toBe('abandon');
    expect(decideMerge(range(), target({ voters: [1, 2, 4] })).kind).toBe('abandon');
    expect(decideMerge(range({ learners: [4] }), target()).kind).toBe('abandon');
    expect(decideMerge(range(), target(), { states: { 3: 'suspect' } }).kind).toBe('abandon');
  });

  it('commits once every voter applied the freeze, with the freeze as proof', () => {
    expect(decideMerge(frozenSource(), target(), { applied: { 3: 5 } })).toEqual({ kind: 'wait', why: 'replicas of range 7 on nodes 3 have not applied the freeze' });
    expect(decideMerge(frozenSource(), target())).toEqual({
      kind: 'step',
      step: { kind: 'commitMerge', targetId: 3, targetStart: key('a'), targetEpoch: 9, sourceEnd: key('m'), sourceEpoch: 6, freezeIndex: 120, freezeTerm: 4, voters: [1, 2, 3] },
    });
    // A suspect node is waited for, not rolled back over.
    expect(decideMerge(frozenSource(), target(), { states: { 3: 'suspect' }, applied: { 3: 5 } }).kind).toBe('wait');
  });

  it('is done once the target covers the source, or the source left the view', () => {
    expect(decideMerge(frozenSource(), target({ end: 'm', epoch: 10 }))).toEqual({ kind: 'done' });
    expect(decideMerge(undefined, target({ end: 'm', epoch: 10 }))).toEqual({ kind: 'done' });
  });

  it('rolls back a merge that cannot finish: fences the target first, then unfreezes the source', () => {
    // A voter down: the freeze would never reach it.
    expect(decideMerge(frozenSource(), target(), { states: { 3: 'down' }, applied: { 3: 5 } })).toEqual({
      kind: 'step',
      step: { kind: 'fenceMerge', targetId: 3, targetStart: key('a'), targetEpoch: 9 },
    });
    // The target moved past the planned epoch without taking the source in: no commit can apply any more.
    expect(decideMerge(frozenSource(), target({ epoch: 10 }), { states: { 3: 'down' } })).toEqual({ kind: 'step', step: { kind: 'rollbackMerge', start: key('b'), epoch: 6, targetId: 3 } });
    expect(decideMerge(frozenSource(), target({ epoch: 11, voters: [1, 2, 4] }))).toEqual({ kind: 'step', step: { kind: 'rollbackMerge', start: key('b'), epoch: 6, targetId: 3 } });
    // Unfrozen by the rollback: the operator ends.
    expect(decideMerge(range({ epoch: 7 }), target({ epoch: 10 })).kind).toBe('abandon');
  });

  it('waits for a target leader to fence, and for a frozen source whose target is unknown', () => {
    expect(decideMerge(frozenSource(), target({ leader: 0 }), { states: { 3: 'down' } }).kind).toBe('wait');
    expect(decideMerge(frozenSource(), undefined).kind).toBe('wait');
    expect(decideMerge(range(), undefined).kind).toBe('abandon');
  });

  it('unfreezes, without a fence, a source whose target is gone and another range now ends where the source starts', () => {
    // Range 2 took the target in (node simulation seed 659): it ends at the source's start, b.
    const left: RangeInfo = { ...target({ epoch: 12 }), rangeId: 2 };
    expect(decideMerge(frozenSource(), undefined, { endingAt: (k) => (Buffer.compare(k, key('b')) === 0 ? left : undefined) })).toEqual({
      kind: 'step',
      step: { kind: 'rollbackMerge', start: key('b'), epoch: 6, targetId: 3 },
    });
    // Nothing known to end there (the view is missing ranges): it waits.
    expect(decideMerge(frozenSource(), undefined, { endingAt: () => undefined }).kind).toBe('wait');
    // Frozen for another target: not this operator's to undo.
    const other = { ...range({ epoch: 6 }), frozen: { ...FROZEN, targetRangeId: 9 } };
    expect(decideMerge(other, undefined, { endingAt: () => left }).kind).toBe('wait');
  });
});
