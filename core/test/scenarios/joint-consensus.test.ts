// Membership changes through joint consensus (Raft thesis §4.3; etcd-raft's
// ConfChangeV2): enter C(old,new), where every decision needs a majority of
// both halves, then leave it for C(new). Applications apply a committed
// conf-change entry with rawNode.applyConfChange(decodeConfChange(e.data)),
// which the cluster driver does.
import { describe, expect, it } from 'vitest';
import { ProposalDroppedError } from '../../src/errors.js';
import { decodeConfChange } from '../../src/membership/codec.js';
import { restoreConfig } from '../../src/membership/changer.js';
import { ProgressTracker } from '../../src/progress/tracker.js';
import type { ConfState, Message } from '../../src/types.js';
import { ids, storageWith } from '../helpers.js';
import { Cluster, confChange } from './rawnode-cluster.js';

const conf = (voters: number[], votersOutgoing: number[] = [], options: { learners?: number[]; learnersNext?: number[]; autoLeave?: boolean } = {}): ConfState => ({
  voters: ids(...voters),
  votersOutgoing: ids(...votersOutgoing),
  learners: ids(...(options.learners ?? [])),
  learnersNext: ids(...(options.learnersNext ?? [])),
  autoLeave: options.autoLeave ?? false,
});

/** Voters 1–3 elected with 1 leading; `joining` replicas start from the bootstrap configuration. */
function electedCluster(options: { joining?: number[]; checkQuorum?: boolean; preVote?: boolean } = {}): Cluster {
  const config = { checkQuorum: options.checkQuorum ?? true, preVote: options.preVote ?? true };
  const cluster = new Cluster({ voters: [1, 2, 3], config });
  for (const id of options.joining ?? []) cluster.addReplica(id, { storage: storageWith({ voters: [1, 2, 3] }), config });
  cluster.campaign(1);
  expect(cluster.leader()).toBe(1);
  cluster.propose(1, 'a');
  return cluster;
}

const carriesLeaveJoint = (m: Message): boolean =>
  m.type === 'append' && m.entries.some((e) => e.type === 'confChange' && decodeConfChange(e.data).changes.length === 0);

describe('joint consensus (thesis §4.3)', () => {
  it("replacing a voter with transition 'auto' passes through a joint config and leaves it automatically", () => {
    const cluster = electedCluster({ joining: [4] });

    cluster.proposeConfChange(1, confChange('auto', ['addNode', 4], ['removeNode', 1]));

    for (const id of [1, 2, 3, 4]) {
      expect(cluster.replica(id).confHistory).toEqual([conf([2, 3, 4], [1, 2, 3], { autoLeave: true }), conf([2, 3, 4])]);
    }
    // The leader led the whole change from the outgoing half, then stepped down as a non-member.
    expect(cluster.raft(1).role).toBe('follower');
    expect(cluster.raft(1).promotable()).toBe(false);

    cluster.tick({ count: 30 });
    const leader = cluster.leader()!;
    expect([2, 3, 4]).toContain(leader);
    cluster.propose(leader, 'b');
    for (const id of [2, 3, 4]) expect(cluster.replica(id).stateMachine).toEqual(['a', 'b']);
    expect(cluster.replica(1).stateMachine).toEqual(['a']);
  });

  it("a single change with transition 'auto' is simple: no joint phase", () => {
    const cluster = electedCluster({ joining: [4] });

    cluster.proposeConfChange(1, confChange('auto', ['addNode', 4]));

    for (const id of [1, 2, 3, 4]) expect(cluster.replica(id).confHistory).toEqual([conf([1, 2, 3, 4])]);
  });

  it("with transition 'explicit' the joint config stays until the application proposes an empty change", () => {
    const cluster = electedCluster({ joining: [4] });

    cluster.proposeConfChange(1, confChange('explicit', ['addNode', 4]));
    cluster.tick({ count: 5 });

    for (const id of [1, 2, 3, 4]) expect(cluster.replica(id).confState).toEqual(conf([1, 2, 3, 4], [1, 2, 3]));

    cluster.proposeConfChange(1, confChange('explicit'));

    for (const id of [1, 2, 3, 4]) expect(cluster.replica(id).confState).toEqual(conf([1, 2, 3, 4]));
    expect(cluster.leader()).toBe(1);
  });

  it('a second conf change is refused while one is pending, and accepted once it has applied', () => {
    const cluster = electedCluster({ joining: [4, 5] });

    cluster.proposeConfChange(1, confChange('auto', ['addNode', 4]), { stabilize: false });
    const second = (): void => cluster.proposeConfChange(1, confChange('auto', ['addNode', 5]), { stabilize: false });
    expect(second).toThrow(ProposalDroppedError);
    // Normal proposals are not held up by the pending change.
    cluster.propose(1, 'b');

    cluster.stabilize();
    second();
    cluster.stabilize();
    for (const id of [1, 2, 3, 4, 5]) expect(cluster.replica(id).confState.voters).toEqual([1, 2, 3, 4, 5]);
  });

  it('while joint only the empty change that leaves is accepted; outside a joint config it is refused', () => {
    const cluster = electedCluster({ joining: [4, 5] });
    expect(() => cluster.proposeConfChange(1, confChange('explicit'))).toThrow(ProposalDroppedError);

    cluster.proposeConfChange(1, confChange('explicit', ['addNode', 4]));

    let caught: unknown;
    try {
      cluster.proposeConfChange(1, confChange('auto', ['addNode', 5]));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ProposalDroppedError);
    expect((caught as ProposalDroppedError).code).toBe('PROPOSAL_DROPPED');
    expect((caught as ProposalDroppedError).reason).toMatch(/leave the joint configuration/);
    cluster.proposeConfChange(1, confChange('explicit'));
    expect(cluster.replica(1).confState).toEqual(conf([1, 2, 3, 4]));
  });

  it('commits need a majority of both halves while joint', () => {
    const cluster = electedCluster({ joining: [4, 5] });
    cluster.proposeConfChange(1, confChange('explicit', ['addNode', 4], ['addNode', 5], ['removeNode', 2], ['removeNode', 3]));
    expect(cluster.replica(1).confState).toEqual(conf([1, 4, 5], [1, 2, 3]));

    // The incoming half {1,4,5} is all there, the outgoing half {1,2,3} has only the leader.
    const splitOutgoing = cluster.partition([1, 4, 5], [2, 3]);
    cluster.propose(1, 'b');
    expect(cluster.replica(1).stateMachine).toEqual(['a']);
    expect(cluster.raft(4).log.lastIndex()).toBe(cluster.raft(1).log.lastIndex());
    splitOutgoing();
    cluster.tick({ ids: [1] });
    expect(cluster.replica(1).stateMachine).toEqual(['a', 'b']);

    // And the other way round.
    const splitIncoming = cluster.partition([1, 2, 3], [4, 5]);
    cluster.propose(1, 'c');
    expect(cluster.replica(1).stateMachine).toEqual(['a', 'b']);
    splitIncoming();
    cluster.tick({ ids: [1] });
    expect(cluster.replica(1).stateMachine).toEqual(['a', 'b', 'c']);
  });

  it('elections need a majority of both halves while joint', () => {
    const cluster = electedCluster({ joining: [4, 5], checkQuorum: false, preVote: false });
    cluster.proposeConfChange(1, confChange('explicit', ['addNode', 4], ['addNode', 5], ['removeNode', 2], ['removeNode', 3]));

    // {4,5} is a majority of the incoming half only.
    cluster.partition([1], [2, 3], [4, 5]);
    cluster.campaign(4);
    expect(cluster.raft(4).role).toBe('candidate');

    // With 2 and 3 it has the outgoing half too.
    cluster.heal();
    cluster.isolate(1);
    cluster.campaign(4);
    expect(cluster.raft(4).role).toBe('leader');
  });

  it('a new leader leaves an automatic joint config that its failed predecessor entered', () => {
    const cluster = electedCluster({ joining: [4] });
    // Leader 1 proposes the leave, but nobody gets it before it fails.
    cluster.drop((m) => m.from === 1 && carriesLeaveJoint(m));

    cluster.proposeConfChange(1, confChange('auto', ['addNode', 4], ['removeNode', 3]));
    expect(cluster.replica(2).confState).toEqual(conf([1, 2, 4], [1, 2, 3], { autoLeave: true }));
    cluster.stop(1);
    cluster.heal();
    // Elections may take a few rounds: a joint vote needs both halves, and a winner that is
    // only in the outgoing half (3) leaves the joint config and then steps down as a non-member.
    cluster.tick({ count: 100 });

    const leader = cluster.leader()!;
    expect([2, 4]).toContain(leader);
    for (const id of [2, 3, 4]) expect(cluster.replica(id).confState).toEqual(conf([1, 2, 4]));
    // Exactly one leave entry made it into the log.
    const leaves = cluster.entries(leader).filter((e) => e.type === 'confChange' && decodeConfChange(e.data).changes.length === 0);
    expect(leaves.length).toBe(1);
  });

  it('a leader that removes itself keeps leading until the change applies, then steps down (§6)', () => {
    const cluster = electedCluster();

    cluster.proposeConfChange(1, confChange('auto', ['removeNode', 1]), { stabilize: false });
    cluster.processReadys();
    cluster.deliver();
    cluster.processReadys();
    expect(cluster.raft(1).role).toBe('leader');

    cluster.stabilize();
    expect(cluster.raft(1).role).toBe('follower');
    for (const id of [1, 2, 3]) expect(cluster.replica(id).confState).toEqual(conf([2, 3]));

    cluster.tick({ count: 30 });
    const leader = cluster.leader()!;
    expect([2, 3]).toContain(leader);
    cluster.propose(leader, 'b');
    expect(cluster.replica(2).stateMachine).toEqual(['a', 'b']);
    expect(cluster.replica(1).stateMachine).toEqual(['a']);
  });

  it('the conf state after a restart equals the applied one, joint and demoting a voter included', () => {
    const cluster = electedCluster({ joining: [4] });
    // Demote 3 to learner while adding 4: 3 votes in the outgoing half until the joint config is left.
    cluster.proposeConfChange(1, confChange('explicit', ['addNode', 4], ['addLearner', 3]));
    const joint = conf([1, 2, 4], [1, 2, 3], { learnersNext: [3] });
    expect(cluster.replica(2).confState).toEqual(joint);

    // The persisted ConfState rebuilds the same tracker configuration.
    const tracker = new ProgressTracker(1, 1);
    const restored = restoreConfig(joint, 0, (o) => tracker.newProgress(o));
    tracker.config = restored.config;
    tracker.progress = restored.progress;
    expect(tracker.confState()).toEqual(joint);

    // Restart by replaying the log over the bootstrap configuration...
    cluster.restart(2);
    cluster.stabilize();
    expect(cluster.node(2).status().config).toEqual(joint);
    // ... and from a snapshot that carries the joint config.
    cluster.compact(3);
    cluster.restart(3);
    expect(cluster.node(3).status().config).toEqual(joint);

    cluster.proposeConfChange(1, confChange('explicit'));
    const left = conf([1, 2, 4], [], { learners: [3] });
    for (const id of [1, 2, 3, 4]) expect(cluster.replica(id).confState).toEqual(left);
    expect(cluster.raft(3).isLearner).toBe(true);
    cluster.compact(4);
    cluster.restart(4);
    expect(cluster.node(4).status().config).toEqual(left);
    cluster.propose(1, 'after-restarts');
    for (const id of [1, 2, 3, 4]) expect(cluster.replica(id).stateMachine).toEqual(['a', 'after-restarts']);
  });
});
