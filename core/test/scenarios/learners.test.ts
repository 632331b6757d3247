// Learners (non-voting members, Raft thesis §4.2.1): they receive and apply
// the log but neither vote, nor campaign, nor count toward commitment or
// check-quorum. Ports the intent of etcd-raft's TestLearner*.
import { describe, expect, it } from 'vitest';
import { InvalidConfChangeError } from '../../src/errors.js';
import { nodeId } from '../../src/types.js';
import { storageWith } from '../helpers.js';
import { Cluster, confChange } from './rawnode-cluster.js';

function electedCluster(options: { voters?: number[]; learners?: number[]; checkQuorum?: boolean } = {}): Cluster {
  const cluster = new Cluster({
    voters: options.voters ?? [1, 2, 3],
    learners: options.learners ?? [4],
    config: { checkQuorum: options.checkQuorum ?? true, preVote: true },
  });
  cluster.campaign(1);
  expect(cluster.leader()).toBe(1);
  return cluster;
}

describe('learners (thesis §4.2.1)', () => {
  it('receive and apply committed entries', () => {
    const cluster = electedCluster();

    cluster.propose(1, 'a');
    cluster.propose(1, 'b');

    expect(cluster.raft(4).isLearner).toBe(true);
    expect(cluster.replica(4).stateMachine).toEqual(['a', 'b']);
    expect(cluster.raft(4).log.committed).toBe(cluster.raft(1).log.committed);
  });

  it('are not asked to vote, and a vote from one does not count', () => {
    const cluster = new Cluster({ voters: [1, 2], learners: [3], config: { checkQuorum: false, preVote: false } });
    cluster.isolate(2);

    cluster.campaign(1);

    expect(cluster.sent((m) => m.type === 'vote').map((m) => m.to)).toEqual([2]);
    expect(cluster.raft(1).role).toBe('candidate');
    // Even a granted vote from the learner leaves the candidate one vote short.
    cluster.inject({ type: 'voteResponse', from: nodeId(3), to: nodeId(1), term: cluster.raft(1).term, reject: false });
    cluster.stabilize();
    expect(cluster.raft(1).role).toBe('candidate');
  });

  it('never campaign, however long they hear from no leader', () => {
    const cluster = electedCluster();
    const term = cluster.raft(4).term;
    cluster.isolate(4);
    cluster.clearTrace();

    cluster.tick({ ids: [4], count: 100 });
    cluster.campaign(4);

    expect(cluster.sent((m) => m.from === 4)).toEqual([]);
    expect(cluster.raft(4).role).toBe('follower');
    expect(cluster.raft(4).term).toBe(term);
  });

  it('never become leader, even when sent TimeoutNow', () => {
    const cluster = electedCluster();
    cluster.clearTrace();

    cluster.inject({ type: 'timeoutNow', from: nodeId(1), to: nodeId(4), term: cluster.raft(1).term });
    cluster.stabilize();

    expect(cluster.sent((m) => m.from === 4)).toEqual([]);
    expect(cluster.raft(4).role).toBe('follower');
    expect(cluster.leader()).toBe(1);
  });

  it('do not count toward commitment (§5.3 counts a majority of voters)', () => {
    const cluster = electedCluster();
    cluster.propose(1, 'a');
    const commit = cluster.raft(1).log.committed;
    const healPartition = cluster.partition([1, 4], [2, 3]);

    cluster.propose(1, 'b');

    // The learner stored the entry, but it alone does not make a quorum.
    expect(cluster.raft(4).log.lastIndex()).toBe(commit + 1);
    expect(cluster.raft(1).log.committed).toBe(commit);
    expect(cluster.replica(4).stateMachine).toEqual(['a']);

    healPartition();
    cluster.tick({ ids: [1] });
    expect(cluster.raft(1).log.committed).toBe(commit + 1);
    for (const id of [1, 2, 3, 4]) expect(cluster.replica(id).stateMachine).toEqual(['a', 'b']);
  });

  it('do not count for check-quorum: a leader hearing only from learners steps down', () => {
    const cluster = electedCluster();
    cluster.partition([1, 4], [2, 3]);

    cluster.tick({ ids: [1, 4], count: 2 * cluster.raft(1).config.electionTimeoutTicks });

    expect(cluster.raft(1).role).toBe('follower');
  });

  it('is promoted to voter by a conf change, then counts, votes and can lead', () => {
    const cluster = electedCluster();

    cluster.proposeConfChange(1, confChange('auto', ['addNode', 4]));

    for (const id of [1, 2, 3, 4]) {
      expect(cluster.replica(id).confState.voters).toEqual([1, 2, 3, 4]);
      expect(cluster.replica(id).confState.learners).toEqual([]);
    }
    expect(cluster.raft(4).isLearner).toBe(false);

    // Three of four voters now commit: 4's acknowledgement is needed with 2 and 3 split off.
    cluster.cut(1, 2);
    cluster.cut(1, 3);
    cluster.propose(1, 'needs-4');
    expect(cluster.replica(1).stateMachine).toEqual([]);
    cluster.heal();
    cluster.tick({ ids: [1] });
    expect(cluster.replica(4).stateMachine).toEqual(['needs-4']);

    cluster.transferLeader(1, 4);
    expect(cluster.leader()).toBe(4);
  });

  it('a learner added later from the bootstrap configuration catches up from the log', () => {
    const cluster = electedCluster({ learners: [] });
    cluster.propose(1, 'a');
    cluster.addReplica(5, { storage: storageWith({ voters: [1, 2, 3] }), config: { checkQuorum: true, preVote: true } });

    cluster.proposeConfChange(1, confChange('auto', ['addLearner', 5]));
    cluster.propose(1, 'b');

    expect(cluster.replica(5).stateMachine).toEqual(['a', 'b']);
    expect(cluster.replica(5).confState.learners).toEqual([5]);
    expect(cluster.raft(5).isLearner).toBe(true);
  });

  it('a replica started without any configuration refuses to replay a conf change instead of inventing one', () => {
    // The bootstrap config is an index-0 snapshot, which is never sent: replaying the log from
    // index 1, an empty replica would see only "add 5" and believe it is a one-voter group.
    const cluster = electedCluster({ learners: [] });
    cluster.addReplica(5);

    expect(() => cluster.proposeConfChange(1, confChange('auto', ['addNode', 5]))).toThrow(InvalidConfChangeError);
    expect(cluster.raft(5).tracker.voterNodes()).toEqual([]);
    expect(cluster.raft(5).promotable()).toBe(false);
  });
});
