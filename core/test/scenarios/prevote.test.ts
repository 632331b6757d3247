// Pre-vote (Raft thesis §9.6): a node first asks whether it could win before
// it takes a new term, so a partitioned or lagging node cannot disrupt a
// working cluster. Ports the intent of etcd-raft's TestPreVote*,
// TestDisruptiveFollowerPreVote and TestNodeWithSmallerTermCanCompleteElection.
import { describe, expect, it } from 'vitest';
import { Cluster } from './rawnode-cluster.js';

function electedCluster(options: { checkQuorum?: boolean; preVote?: boolean } = {}): Cluster {
  const cluster = new Cluster({ voters: [1, 2, 3], config: { checkQuorum: options.checkQuorum ?? true, preVote: options.preVote ?? true } });
  cluster.campaign(1);
  expect(cluster.leader()).toBe(1);
  return cluster;
}

describe('pre-vote (thesis §9.6)', () => {
  it('a partitioned node keeps its term while it cannot win a pre-vote, and rejoins without an election', () => {
    const cluster = electedCluster();
    const term = cluster.raft(1).term;
    cluster.isolate(3);
    cluster.clearTrace();

    cluster.tick({ count: 100 });

    // Node 3 kept trying (several pre-vote rounds) but never took a new term.
    expect(cluster.sent((m) => m.type === 'preVote' && m.from === 3).length).toBeGreaterThanOrEqual(2 * 4);
    expect(cluster.sent((m) => m.type === 'vote')).toEqual([]);
    expect(cluster.raft(3).term).toBe(term);
    expect(cluster.raft(1).role).toBe('leader');
    expect(cluster.raft(1).term).toBe(term);

    cluster.heal();
    cluster.tick();

    expect(cluster.raft(3).role).toBe('follower');
    expect(cluster.raft(3).lead).toBe(1);
    for (const id of [1, 2, 3]) expect(cluster.raft(id).term).toBe(term);
    expect(cluster.sent((m) => m.type === 'vote')).toEqual([]);
    // And it catches up on what it missed.
    cluster.propose(1, 'after-rejoin');
    expect(cluster.replica(3).stateMachine).toEqual(['after-rejoin']);
  });

  it('without pre-vote the same partition makes the rejoining node depose the leader (contrast)', () => {
    const cluster = electedCluster({ preVote: false });
    const term = cluster.raft(1).term;
    cluster.isolate(3);

    cluster.tick({ count: 100 });
    expect(cluster.raft(3).term).toBeGreaterThan(term + 1);

    cluster.heal();
    cluster.tick();

    // The leader's heartbeat reached a node with a higher term: the stale-term
    // response makes it step down, and the cluster moves to 3's term or later.
    expect(cluster.raft(1).term).toBeGreaterThanOrEqual(cluster.raft(3).term);
    expect(cluster.raft(1).term).toBeGreaterThan(term + 1);
  });

  it('a pre-vote from a node whose log is behind is rejected and changes no term (§5.4.1)', () => {
    // Without check-quorum the voters judge the request on the log alone.
    const cluster = electedCluster({ checkQuorum: false });
    cluster.isolate(3);
    for (const data of ['a', 'b', 'c']) cluster.propose(1, data);
    cluster.heal();
    const term = cluster.raft(1).term;
    // Keep the leader's heartbeats away so 3 cannot catch up before it campaigns.
    cluster.dropType('heartbeat', 'append');
    cluster.clearTrace();

    cluster.campaign(3);

    const responses = cluster.sent((m) => m.type === 'preVoteResponse' && m.to === 3);
    expect(responses.map((m) => [m.from, m.type === 'preVoteResponse' && m.reject])).toEqual([
      [1, true],
      [2, true],
    ]);
    expect(cluster.raft(3).role).toBe('follower');
    expect(cluster.sent((m) => m.type === 'vote')).toEqual([]);
    for (const id of [1, 2, 3]) expect(cluster.raft(id).term).toBe(term);
    expect(cluster.raft(1).role).toBe('leader');
  });

  it('a pre-vote from an up-to-date node is granted and leads to a real election (contrast)', () => {
    const cluster = electedCluster({ checkQuorum: false });
    cluster.propose(1, 'a');
    const term = cluster.raft(1).term;

    cluster.campaign(3);

    expect(cluster.leader()).toBe(3);
    expect(cluster.raft(3).term).toBe(term + 1);
  });

  it('a pre-candidate that hears of a higher term becomes a follower in that term', () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    // Two transfers move the rest of the cluster two terms ahead.
    cluster.transferLeader(1, 2);
    cluster.transferLeader(2, 1);
    expect(cluster.leader()).toBe(1);
    const term = cluster.raft(1).term;
    expect(cluster.raft(3).term).toBe(term - 2);
    cluster.tick({ ids: [3], count: 20 });
    expect(cluster.raft(3).role).toBe('preCandidate');

    cluster.heal();
    cluster.dropType('heartbeat', 'append');
    cluster.clearTrace();
    cluster.campaign(3);

    // Its pre-vote at term-1 is stale: the voters answer with their term, and 3 adopts it.
    expect(cluster.sent((m) => m.type === 'preVoteResponse' && m.to === 3).every((m) => m.term === term)).toBe(true);
    expect(cluster.raft(3).role).toBe('follower');
    expect(cluster.raft(3).term).toBe(term);
    expect(cluster.raft(1).role).toBe('leader');
    expect(cluster.raft(1).term).toBe(term);
  });

  it("a pre-candidate becomes a follower of the leader whose heartbeat it receives", () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    cluster.transferLeader(1, 2);
    const term = cluster.raft(2).term;
    cluster.tick({ ids: [3], count: 20 });
    expect(cluster.raft(3).role).toBe('preCandidate');

    cluster.heal();
    cluster.tick({ ids: [2] });

    expect(cluster.raft(3).role).toBe('follower');
    expect(cluster.raft(3).lead).toBe(2);
    expect(cluster.raft(3).term).toBe(term);
    expect(cluster.raft(2).role).toBe('leader');
  });

  it('with check-quorum, followers in a leader lease ignore pre-votes, yet the cluster elects once the leader is gone', () => {
    const cluster = electedCluster();
    const term = cluster.raft(1).term;
    cluster.isolate(1);
    cluster.clearTrace();

    // Node 2 still has a live leader: it does not even answer 3's pre-vote.
    cluster.campaign(3);
    expect(cluster.sent((m) => m.type === 'preVoteResponse' && m.from === 2)).toEqual([]);
    expect(cluster.raft(3).role).toBe('preCandidate');
    expect(cluster.raft(3).term).toBe(term);

    // Node 3 forgot its leader when it started campaigning, so it grants 2's pre-vote and vote.
    cluster.campaign(2);
    expect(cluster.raft(2).role).toBe('leader');
    expect(cluster.raft(2).term).toBe(term + 1);
    expect(cluster.raft(3).lead).toBe(2);

    // The old leader notices within two check-quorum rounds that its quorum is gone,
    // steps down (§6.2), and follows 2 once healed.
    cluster.tick({ ids: [1], count: 20 });
    expect(cluster.raft(1).role).toBe('follower');
    cluster.heal();
    cluster.tick({ ids: [2] });
    expect(cluster.raft(1).lead).toBe(2);
    expect(cluster.raft(1).term).toBe(term + 1);
  });

  it('a node with a smaller term can complete an election when it rejoins as the leader fails', () => {
    const cluster = electedCluster({ checkQuorum: false });
    cluster.partition([1, 2], [3]);
    cluster.campaign(3);
    expect(cluster.raft(3).role).toBe('preCandidate');
    cluster.campaign(2);
    expect(cluster.leader()).toBe(2);
    const term = cluster.raft(2).term;
    expect(cluster.raft(3).term).toBe(term - 1);

    // 3 comes back just as 2 fails.
    cluster.heal();
    cluster.stop(2);
    cluster.campaign(3);
    cluster.campaign(1);

    const leader = cluster.leader();
    expect(leader === 1 || leader === 3).toBe(true);
    expect(cluster.raft(leader!).term).toBeGreaterThan(term);
  });
});
