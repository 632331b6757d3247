// The safety checker on hand-built states: each property must fail when its
// rule is broken, or the simulator's passing seeds would prove nothing.
import { nodeId, RawNode, SeededRng, type ConfState, type Entry, type NodeId } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { SafetyChecker, SafetyViolation, SimDisk, StateMachine, type CheckedNode, type ViolationCode } from '../src/sim/index.js';

const encoder = new TextEncoder();
const VOTERS: ConfState = { voters: [1, 2, 3].map(nodeId), votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

interface Fixture {
  readonly checker: SafetyChecker;
  node(id: number): CheckedNode;
}

function fixture(): Fixture {
  const checker = new SafetyChecker(VOTERS);
  const nodes = new Map<number, CheckedNode>();
  return {
    checker,
    node(id: number): CheckedNode {
      let n = nodes.get(id);
      if (n === undefined) {
        const disk = new SimDisk(VOTERS, StateMachine.empty().image());
        const raw = new RawNode({ id: nodeId(id), storage: disk, rng: new SeededRng(id) });
        n = { id: nodeId(id), incarnation: 1, raw, sm: StateMachine.empty() };
        nodes.set(id, n);
        checker.onStart(n, disk);
      }
      return n;
    },
  };
}

const entry = (index: number, term: number, value: string): Entry => ({ index, term, type: 'normal', data: encoder.encode(value) });

function violationOf(fn: () => void): ViolationCode | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof SafetyViolation) return err.code;
    throw err;
  }
}

function makeLeader(n: CheckedNode, term: number): void {
  n.raw.raft.term = term;
  n.raw.raft.role = 'leader';
}

describe('safety checker', () => {
  it('flags two leaders in one term (Election Safety, §5.2)', () => {
    const f = fixture();
    makeLeader(f.node(1), 3);
    f.checker.observe(f.node(1));
    makeLeader(f.node(2), 4);
    f.checker.observe(f.node(2));
    makeLeader(f.node(3), 3);
    expect(violationOf(() => f.checker.observe(f.node(3)))).toBe('ELECTION_SAFETY');
  });

  it('flags two logs holding different entries at one (index, term) (Log Matching, §5.3)', () => {
    const f = fixture();
    f.node(1).raw.raft.log.append([entry(1, 1, 'a')]);
    f.checker.observe(f.node(1));
    f.node(2).raw.raft.log.append([entry(1, 1, 'b')]);
    expect(violationOf(() => f.checker.observe(f.node(2)))).toBe('LOG_MATCHING');
  });

  it('flags an (index, term) that follows different terms in two logs (Log Matching, §5.3)', () => {
    const f = fixture();
    f.node(1).raw.raft.log.append([entry(1, 1, 'a'), entry(2, 2, 'x')]);
    f.checker.observe(f.node(1));
    f.node(2).raw.raft.log.append([entry(1, 2, 'c'), entry(2, 2, 'x')]);
    expect(violationOf(() => f.checker.observe(f.node(2)))).toBe('LOG_MATCHING');
  });

  it('flags a leader missing an entry committed in an earlier term (Leader Completeness, §5.4)', () => {
    const f = fixture();
    const follower = f.node(1);
    follower.raw.raft.term = 1;
    follower.raw.raft.log.append([entry(1, 1, 'a')]);
    follower.raw.raft.log.commitTo(1);
    f.checker.observe(follower);
    const leader = f.node(2);
    leader.raw.raft.log.append([entry(1, 2, 'b')]);
    makeLeader(leader, 2);
    expect(violationOf(() => f.checker.observe(leader))).toBe('LEADER_COMPLETENESS');
  });

  it('flags two nodes applying different entries at one index (State Machine Safety, §5.4.3)', () => {
    const f = fixture();
    for (const [id, value, term] of [
      [1, 'a', 1],
      [2, 'b', 2],
    ] as const) {
      const n = f.node(id);
      n.raw.raft.term = term;
      n.raw.raft.log.append([entry(1, term, value)]);
      n.raw.raft.log.commitTo(1);
    }
    f.checker.observe(f.node(1));
    f.checker.onApply(f.node(1), entry(1, 1, 'a'));
    // Node 2 saw index 1 committed at another term: caught when its commit index moves.
    expect(violationOf(() => f.checker.observe(f.node(2)))).toBe('COMMITTED_ENTRY_CHANGED');
    expect(violationOf(() => f.checker.onApply(f.node(2), entry(1, 2, 'b')))).toBe('APPLIED_UNCOMMITTED');
  });

  it('flags entries applied out of order', () => {
    const f = fixture();
    const n = f.node(1);
    n.raw.raft.log.append([entry(1, 1, 'a'), entry(2, 1, 'b')]);
    n.raw.raft.log.commitTo(2);
    f.checker.observe(n);
    expect(violationOf(() => f.checker.onApply(n, entry(2, 1, 'b')))).toBe('APPLY_ORDER');
  });

  it('flags a read index below a write acknowledged before the read', () => {
    const f = fixture();
    const read = { id: 1 as NodeId, context: 'r1', readIndex: 4, requiredIndex: 5 };
    expect(violationOf(() => f.checker.checkReadIndex(read))).toBe('STALE_READ');
    expect(violationOf(() => f.checker.checkReadIndex({ ...read, readIndex: 5 }))).toBeUndefined();
  });

  it('flags a commit index that goes backwards on a live node', () => {
    const f = fixture();
    const n = f.node(1);
    n.raw.raft.log.append([entry(1, 1, 'a')]);
    n.raw.raft.log.commitTo(1);
    f.checker.observe(n);
    n.raw.raft.log.committed = 0;
    expect(violationOf(() => f.checker.observe(n))).toBe('COMMIT_REGRESSED');
  });

  it('flags nodes that disagree on the membership after a conf change', () => {
    const f = fixture();
    f.checker.onConfChangeApplied(nodeId(1), 4, { ...VOTERS, learners: [nodeId(4)] });
    expect(violationOf(() => f.checker.onConfChangeApplied(nodeId(2), 4, { ...VOTERS, voters: [...VOTERS.voters, nodeId(4)] }))).toBe(
      'CONFIG_DIVERGED',
    );
  });

  it('flags a restart that forgot a vote it had promised', () => {
    const checker = new SafetyChecker(VOTERS);
    checker.onSent({ type: 'voteResponse', from: nodeId(1), to: nodeId(2), term: 3, reject: false });
    const disk = new SimDisk(VOTERS, StateMachine.empty().image());
    disk.log.setHardState({ term: 3, vote: nodeId(3), commit: 0 });
    const raw = new RawNode({ id: nodeId(1), storage: disk, rng: new SeededRng(1) });
    expect(violationOf(() => checker.onStart({ id: nodeId(1), incarnation: 2, raw, sm: StateMachine.empty() }, disk))).toBe('PROMISE_BROKEN');
  });
});
