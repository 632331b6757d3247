// Check-quorum and the leader lease on votes (Raft thesis §6.2 and §4.2.3),
// and the stale-term append response that keeps them from wedging the
// cluster (etcd-raft issue 5451). Ports the intent of etcd-raft's
// TestLeaderStepdownWhenQuorum*, TestLeaderSupersedingWithCheckQuorum,
// TestFreeStuckCandidateWithCheckQuorum and TestDisruptiveFollower.
import { describe, expect, it } from 'vitest';
import { Cluster } from './rawnode-cluster.js';

function electedCluster(configFor?: (id: number) => { preVote?: boolean }): Cluster {
  const cluster = new Cluster({ voters: [1, 2, 3], config: { checkQuorum: true, preVote: true }, configFor });
  cluster.campaign(1);
  expect(cluster.leader()).toBe(1);
  return cluster;
}

describe('check-quorum (thesis §6.2)', () => {
  it('a leader that hears from no quorum for a whole election timeout steps down', () => {
    const cluster = electedCluster();
    const term = cluster.raft(1).term;
    cluster.isolate(1);

    // The first check (tick 10) still counts the followers' answers from before the
    // partition; the second finds nobody active besides the leader itself.
    cluster.tick({ ids: [1], count: 19 });
    expect(cluster.raft(1).role).toBe('leader');
    cluster.tick({ ids: [1] });

    expect(cluster.raft(1).role).toBe('follower');
    expect(cluster.raft(1).lead).toBe(0);
    expect(cluster.raft(1).term).toBe(term);
  });

  it('a leader that keeps a quorum stays leader however long a minority is gone', () => {
    const cluster = electedCluster();
    const term = cluster.raft(1).term;
    cluster.isolate(3);

    cluster.tick({ count: 100 });

    expect(cluster.raft(1).role).toBe('leader');
    expect(cluster.raft(1).term).toBe(term);
  });

  it('a deposed leader fails the proposals it had not committed and keeps everything committed', () => {
    const cluster = electedCluster();
    cluster.propose(1, 'committed');
    cluster.isolate(1);
    cluster.propose(1, 'uncommitted');
    cluster.tick({ ids: [1], count: 20 });
    expect(cluster.raft(1).role).toBe('follower');

    // The majority elects a new leader and moves on.
    cluster.tick({ ids: [2, 3], count: 30 });
    const leader = cluster.leader()!;
    expect([2, 3]).toContain(leader);
    cluster.propose(leader, 'new-term');

    cluster.heal();
    cluster.tick({ count: 3 });

    for (const id of [1, 2, 3]) expect(cluster.replica(id).stateMachine).toEqual(['committed', 'new-term']);
    expect(cluster.entries(1).map((e) => e.term)).toEqual(cluster.entries(leader).map((e) => e.term));
  });
});

describe('leader lease on votes (thesis §4.2.3)', () => {
  it('followers and the leader ignore a higher-term vote request while they hear from the leader', () => {
    // Node 3 campaigns without pre-vote so its request carries a higher term.
    const cluster = electedCluster((id) => (id === 3 ? { preVote: false } : {}));
    const term = cluster.raft(1).term;
    // Keep the leader's messages from reaching 3, so only the vote requests matter here.
    cluster.drop((m) => m.from === 1 && m.to === 3);
    cluster.clearTrace();

    cluster.campaign(3);

    expect(cluster.sent((m) => m.type === 'vote' && m.from === 3).length).toBe(2);
    expect(cluster.sent((m) => m.type === 'voteResponse')).toEqual([]);
    expect(cluster.raft(3).role).toBe('candidate');
    expect(cluster.raft(3).term).toBe(term + 1);
    expect(cluster.raft(1).role).toBe('leader');
    expect(cluster.raft(1).term).toBe(term);
    expect(cluster.raft(2).term).toBe(term);
  });

  it('a follower grants the vote once it has not heard from the leader for an election timeout', () => {
    const cluster = electedCluster((id) => (id === 3 ? { preVote: false } : {}));
    const term = cluster.raft(1).term;
    cluster.drop((m) => m.from === 1);
    cluster.tick({ ids: [2], count: cluster.raft(2).config.electionTimeoutTicks });
    cluster.clearTrace();

    cluster.campaign(3);

    const granted = cluster.sent((m) => m.type === 'voteResponse' && !m.reject);
    expect(granted.map((m) => m.from)).toEqual([2]);
    expect(cluster.leader()).toBe(3);
    expect(cluster.raft(3).term).toBeGreaterThan(term);
  });
});

describe('stale-term append response (etcd-raft issue 5451)', () => {
  it('a candidate stuck at a higher term makes the leader step down, then wins the next election', () => {
    const cluster = electedCluster((id) => (id === 3 ? { preVote: false } : {}));
    const term = cluster.raft(1).term;
    cluster.isolate(1);

    // 2 is in 1's lease, so 3 cannot win however often it tries.
    cluster.campaign(3);
    cluster.campaign(3);
    expect(cluster.raft(3).role).toBe('candidate');
    expect(cluster.raft(3).term).toBe(term + 2);
    expect(cluster.raft(2).term).toBe(term);

    cluster.heal();
    cluster.clearTrace();
    cluster.tick({ ids: [1] });

    // 3 ignores the lower-term heartbeat but answers it at its own term, which deposes 1.
    const stale = cluster.sent((m) => m.type === 'appendResponse' && m.from === 3 && m.to === 1);
    expect(stale.map((m) => m.term)).toEqual([term + 2]);
    expect(cluster.raft(1).role).toBe('follower');
    expect(cluster.raft(1).term).toBe(term + 2);

    cluster.campaign(3);
    expect(cluster.leader()).toBe(3);
    expect(cluster.raft(3).term).toBe(term + 3);
    cluster.tick({ ids: [3] });
    expect(cluster.raft(2).lead).toBe(3);
  });

  it('a stale leader that reconnects steps down on the answer of a node in the newer term', () => {
    const cluster = electedCluster();
    const term = cluster.raft(1).term;
    cluster.isolate(1);
    // The majority elects a new leader; 1 is not ticked, so it still believes it leads.
    cluster.tick({ ids: [2, 3], count: 30 });
    const leader = cluster.leader()!;
    expect([2, 3]).toContain(leader);
    const newTerm = cluster.raft(leader).term;
    expect(newTerm).toBeGreaterThan(term);
    expect(cluster.raft(1).role).toBe('leader');

    cluster.heal();
    cluster.clearTrace();
    cluster.tick({ ids: [1] });

    expect(cluster.sent((m) => m.type === 'appendResponse' && m.to === 1 && m.term === newTerm).length).toBe(2);
    expect(cluster.raft(1).role).toBe('follower');
    expect(cluster.raft(1).term).toBe(newTerm);
    cluster.tick({ ids: [leader] });
    expect(cluster.raft(1).lead).toBe(leader);
  });

  it('without check-quorum and pre-vote a lower-term heartbeat is simply ignored', () => {
    const cluster = new Cluster({ voters: [1, 2, 3], config: { checkQuorum: false, preVote: false } });
    cluster.campaign(1);
    cluster.isolate(1);
    cluster.campaign(2);
    expect(cluster.raft(2).role).toBe('leader');
    cluster.heal();
    cluster.clearTrace();

    cluster.inject({ type: 'heartbeat', from: cluster.raft(1).id, to: cluster.raft(3).id, term: cluster.raft(1).term, commit: 0, round: 1 });
    cluster.stabilize();

    expect(cluster.sent((m) => m.from === 3)).toEqual([]);
  });
});
