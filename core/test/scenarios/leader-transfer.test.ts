// Leadership transfer (Raft thesis §3.10): the leader brings the target up to
// date, sends TimeoutNow, and the target campaigns at once in a vote that
// leases do not block. Ports the intent of etcd-raft's TestLeaderTransfer*.
import { describe, expect, it } from 'vitest';
import { ProposalDroppedError } from '../../src/errors.js';
import { nodeId } from '../../src/types.js';
import { bytes } from '../helpers.js';
import { Cluster, confChange } from './rawnode-cluster.js';

function electedCluster(options: { learners?: number[] } = {}): Cluster {
  // Check-quorum is on so every transfer here also shows that the forced vote passes the followers' leases.
  const cluster = new Cluster({ voters: [1, 2, 3], learners: options.learners, config: { checkQuorum: true, preVote: true } });
  cluster.campaign(1);
  expect(cluster.leader()).toBe(1);
  cluster.propose(1, 'a');
  return cluster;
}

function expectTransferFinished(cluster: Cluster, options: { leader: number; oldLeader: number }): void {
  expect(cluster.leader()).toBe(options.leader);
  expect(cluster.raft(options.oldLeader).role).toBe('follower');
  expect(cluster.raft(options.oldLeader).lead).toBe(options.leader);
  expect(cluster.raft(options.leader).leadTransferee).toBe(0);
  expect(cluster.raft(options.oldLeader).leadTransferee).toBe(0);
}

describe('leader transfer (thesis §3.10)', () => {
  it('to an up-to-date follower: TimeoutNow, an immediate election in the next term, the old leader follows', () => {
    const cluster = electedCluster();
    const term = cluster.raft(1).term;
    cluster.clearTrace();

    cluster.transferLeader(1, 2);

    expect(cluster.sent((m) => m.type === 'timeoutNow').map((m) => [m.from, m.to])).toEqual([[1, 2]]);
    // The target skips pre-vote and marks its requests as a transfer, so leases do not stop them.
    expect(cluster.sent((m) => m.type === 'preVote')).toEqual([]);
    const votes = cluster.sent((m) => m.type === 'vote');
    expect(votes.length).toBe(2);
    expect(votes.every((m) => m.type === 'vote' && m.transfer && m.term === term + 1)).toBe(true);
    expectTransferFinished(cluster, { leader: 2, oldLeader: 1 });
    expect(cluster.raft(2).term).toBe(term + 1);

    cluster.propose(2, 'b');
    for (const id of [1, 2, 3]) expect(cluster.replica(id).stateMachine).toEqual(['a', 'b']);
  });

  it('requested at a follower, is forwarded to the leader', () => {
    const cluster = electedCluster();
    cluster.clearTrace();

    cluster.transferLeader(3, 3);

    expect(cluster.sent((m) => m.type === 'transferLeader').map((m) => [m.from, m.to])).toEqual([[3, 1]]);
    expectTransferFinished(cluster, { leader: 3, oldLeader: 1 });
  });

  it('to a lagging follower: the leader catches it up before it sends TimeoutNow', () => {
    const cluster = electedCluster();
    const healIsolation = cluster.isolate(3);
    for (const data of ['b', 'c', 'd']) cluster.propose(1, data);
    healIsolation();
    const lastIndex = cluster.raft(1).log.lastIndex();
    expect(cluster.raft(3).log.lastIndex()).toBeLessThan(lastIndex);
    cluster.clearTrace();

    cluster.transferLeader(1, 3);

    const trace = cluster.trace.map((s) => s.message);
    const caughtUp = trace.findIndex((m) => m.type === 'appendResponse' && m.from === 3 && !m.reject && m.index === lastIndex);
    const timeoutNow = trace.findIndex((m) => m.type === 'timeoutNow');
    expect(caughtUp).toBeGreaterThanOrEqual(0);
    expect(timeoutNow).toBeGreaterThan(caughtUp);
    expectTransferFinished(cluster, { leader: 3, oldLeader: 1 });
    expect(cluster.replica(3).stateMachine).toEqual(['a', 'b', 'c', 'd']);
  });

  it.each([
    ['itself', 1],
    ['a node that is not a member', 9],
    ['a learner', 4],
  ])('to %s is ignored', (_, target) => {
    const cluster = electedCluster({ learners: [4] });
    const term = cluster.raft(1).term;
    cluster.clearTrace();

    cluster.transferLeader(1, target);

    expect(cluster.raft(1).leadTransferee).toBe(0);
    expect(cluster.sent((m) => m.type === 'timeoutNow')).toEqual([]);
    expect(cluster.leader()).toBe(1);
    expect(cluster.raft(1).term).toBe(term);
    cluster.propose(1, 'still-accepting');
    expect(cluster.replica(2).stateMachine).toEqual(['a', 'still-accepting']);
  });

  it('is aborted when it does not finish within an election timeout', () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    cluster.transferLeader(1, 3);
    expect(cluster.raft(1).leadTransferee).toBe(3);

    const electionTimeoutTicks = cluster.raft(1).config.electionTimeoutTicks;
    cluster.tick({ count: electionTimeoutTicks - 1 });
    expect(cluster.raft(1).leadTransferee).toBe(3);
    cluster.tick();

    expect(cluster.raft(1).leadTransferee).toBe(0);
    expect(cluster.leader()).toBe(1);
    cluster.propose(1, 'b');
    expect(cluster.replica(2).stateMachine).toEqual(['a', 'b']);
  });

  it('refuses proposals while it is in progress (ProposalDroppedError, PROPOSAL_DROPPED)', () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    cluster.transferLeader(1, 3);
    const lastIndex = cluster.raft(1).log.lastIndex();

    let caught: unknown;
    try {
      cluster.node(1).propose(bytes('during-transfer'));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ProposalDroppedError);
    expect((caught as ProposalDroppedError).code).toBe('PROPOSAL_DROPPED');
    expect((caught as ProposalDroppedError).retryable).toBe(true);
    expect(() => cluster.node(1).proposeConfChange(confChange('auto', ['removeNode', 3]))).toThrow(ProposalDroppedError);

    // A proposal forwarded by a follower is dropped at the leader without an error there.
    cluster.propose(2, 'forwarded-during-transfer');
    expect(cluster.sent((m) => m.type === 'propose' && m.from === 2 && m.to === 1).length).toBe(1);
    expect(cluster.raft(1).log.lastIndex()).toBe(lastIndex);
  });

  it('a second transfer to another node replaces the first', () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    cluster.transferLeader(1, 3);
    expect(cluster.raft(1).leadTransferee).toBe(3);

    cluster.transferLeader(1, 2);

    expectTransferFinished(cluster, { leader: 2, oldLeader: 1 });
  });

  it('a transfer back to the leader itself cancels the pending one', () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    cluster.transferLeader(1, 3);

    cluster.transferLeader(1, 1);

    expect(cluster.raft(1).leadTransferee).toBe(0);
    cluster.propose(1, 'b');
    expect(cluster.replica(2).stateMachine).toEqual(['a', 'b']);
  });

  it('repeating a transfer to the same node does not extend its deadline', () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    cluster.transferLeader(1, 3);
    const electionTimeoutTicks = cluster.raft(1).config.electionTimeoutTicks;
    cluster.tick({ count: 5 });

    cluster.transferLeader(1, 3);
    cluster.tick({ count: electionTimeoutTicks - 5 });

    expect(cluster.raft(1).leadTransferee).toBe(0);
  });

  it('is aborted when its target leaves the voters', () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    cluster.transferLeader(1, 3);

    // Proposals are refused during the transfer, so apply the change as if it had committed earlier.
    cluster.node(1).applyConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: nodeId(3) }] });

    expect(cluster.raft(1).leadTransferee).toBe(0);
    expect(cluster.leader()).toBe(1);
  });

  it('a higher-term election during the transfer ends it (the old leader follows the winner)', () => {
    const cluster = new Cluster({ voters: [1, 2, 3], config: { checkQuorum: false, preVote: false } });
    cluster.campaign(1);
    cluster.isolate(3);
    cluster.transferLeader(1, 3);

    cluster.campaign(2);

    expectTransferFinished(cluster, { leader: 2, oldLeader: 1 });
  });
});
