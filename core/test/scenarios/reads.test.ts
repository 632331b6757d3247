// Linearizable reads without writing to the log (Raft thesis §6.4): ReadIndex
// confirmed by a heartbeat round, and leader leases (§6.4.1). Driven through
// RawNode so Ready-level batching is visible. Ports the intent of etcd-raft's
// TestReadOnlyOptionSafe, TestReadOnlyOptionLease and TestReadOnlyForNewLeader.
import { describe, expect, it } from 'vitest';
import type { ReadMode } from '../../src/raft.js';
import type { Message } from '../../src/types.js';
import { Cluster } from './rawnode-cluster.js';

const isHeartbeat = (m: Message): boolean => m.type === 'heartbeat';

function electedCluster(readMode: ReadMode = 'safe'): Cluster {
  const cluster = new Cluster({ voters: [1, 2, 3], config: { checkQuorum: true, preVote: true, readMode } });
  if (readMode === 'lease') {
    // Lease mode keeps every replica out of elections for its first election timeout
    // (a lease granted before a restart may still run); let it pass with the network down.
    const restore = cluster.drop(() => true);
    cluster.tick({ count: cluster.raft(1).config.electionTimeoutTicks });
    restore();
  }
  cluster.campaign(1);
  expect(cluster.leader()).toBe(1);
  cluster.propose(1, 'a');
  return cluster;
}

describe('ReadIndex (readMode "safe", thesis §6.4)', () => {
  it('the leader answers only after a quorum acknowledged a heartbeat round sent after the read', () => {
    const cluster = electedCluster();
    const commit = cluster.raft(1).log.committed;
    cluster.clearTrace();

    cluster.readIndex(1, 'r1', { stabilize: false });
    cluster.processReadys();

    // The Ready carries the round, not the answer.
    const round = cluster.sent(isHeartbeat);
    expect(round.map((m) => m.to)).toEqual([2, 3]);
    expect(cluster.replica(1).readStates).toEqual([]);

    cluster.deliver(); // heartbeats reach the followers
    cluster.processReadys(); // they answer
    expect(cluster.replica(1).readStates).toEqual([]);
    cluster.stabilize(); // the answers reach the leader

    expect(cluster.replica(1).readStates).toEqual([{ index: commit, context: 'r1' }]);
  });

  it('one acknowledgement besides its own is a quorum of three', () => {
    const cluster = electedCluster();
    cluster.isolate(3);

    cluster.readIndex(1, 'r1');

    expect(cluster.replica(1).readStates.map((r) => r.context)).toEqual(['r1']);
  });

  it('reads registered between two Readys share one heartbeat round', () => {
    const cluster = electedCluster();
    const commit = cluster.raft(1).log.committed;
    cluster.clearTrace();

    for (let i = 0; i < 10; i++) cluster.readIndex(1, `r${i}`, { stabilize: false });
    cluster.stabilize();

    const heartbeats = cluster.sent(isHeartbeat);
    expect(heartbeats.length).toBe(2);
    expect(new Set(heartbeats.map((m) => m.type === 'heartbeat' && m.round)).size).toBe(1);
    expect(cluster.replica(1).readStates).toEqual(Array.from({ length: 10 }, (_, i) => ({ index: commit, context: `r${i}` })));
  });

  it('reads separated by a Ready take one round each (contrast)', () => {
    const cluster = electedCluster();
    cluster.clearTrace();

    cluster.readIndex(1, 'r1', { stabilize: false });
    cluster.processReadys();
    cluster.readIndex(1, 'r2', { stabilize: false });
    cluster.stabilize();

    const rounds = cluster.sent(isHeartbeat).map((m) => m.type === 'heartbeat' && m.round);
    expect(rounds.length).toBe(4);
    expect(new Set(rounds).size).toBe(2);
    expect(cluster.replica(1).readStates.map((r) => r.context)).toEqual(['r1', 'r2']);
  });

  it('a read at a follower is forwarded to the leader and answered with readIndexResponse', () => {
    const cluster = electedCluster();
    const commit = cluster.raft(1).log.committed;
    cluster.clearTrace();

    cluster.readIndex(2, 'f1');

    expect(cluster.sent((m) => m.type === 'readIndex').map((m) => [m.from, m.to])).toEqual([[2, 1]]);
    const responses = cluster.sent((m) => m.type === 'readIndexResponse');
    expect(responses.map((m) => [m.from, m.to])).toEqual([[1, 2]]);
    expect(cluster.sent(isHeartbeat).length).toBe(2);
    expect(cluster.replica(2).readStates).toEqual([{ index: commit, context: 'f1' }]);
    expect(cluster.replica(1).readStates).toEqual([]);
  });

  it('a new leader holds reads until it has committed an entry of its own term', () => {
    const cluster = new Cluster({ voters: [1, 2, 3], config: { checkQuorum: true, preVote: true } });
    cluster.campaign(1);
    cluster.propose(1, 'a');
    // 2 takes over, but its empty entry cannot reach anyone yet.
    const stopAppends = cluster.dropType('append');
    cluster.transferLeader(1, 2);
    expect(cluster.leader()).toBe(2);
    const term = cluster.raft(2).term;
    expect(cluster.raft(2).log.termOrZero(cluster.raft(2).log.committed)).toBeLessThan(term);
    cluster.clearTrace();

    cluster.readIndex(2, 'early');

    expect(cluster.replica(2).readStates).toEqual([]);
    expect(cluster.sent(isHeartbeat)).toEqual([]);

    stopAppends();
    cluster.tick({ ids: [2] });

    const log = cluster.raft(2).log;
    expect(log.termOrZero(log.committed)).toBe(term);
    expect(cluster.replica(2).readStates).toEqual([{ index: log.committed, context: 'early' }]);
  });

  it('a leader cut off from its quorum never answers; the read is dropped when it steps down', () => {
    const cluster = electedCluster();
    cluster.isolate(1);

    cluster.readIndex(1, 'lost');
    cluster.tick({ ids: [1], count: 19 });
    expect(cluster.raft(1).role).toBe('leader');
    expect(cluster.replica(1).readStates).toEqual([]);
    expect(cluster.replica(1).droppedReads).toEqual([]);
    cluster.tick({ ids: [1] });

    expect(cluster.raft(1).role).toBe('follower');
    expect(cluster.replica(1).readStates).toEqual([]);
    expect(cluster.replica(1).droppedReads).toEqual(['lost']);
  });
});

describe('leader lease (readMode "lease", thesis §6.4.1)', () => {
  it('requires check-quorum', () => {
    expect(() => new Cluster({ voters: [1], config: { checkQuorum: false, readMode: 'lease' } })).toThrow(/requires checkQuorum/);
  });

  it('is not held before a quorum acknowledged a heartbeat of this term', () => {
    const cluster = electedCluster('lease');

    expect(cluster.node(1).status().leaseValid).toBe(false);
    cluster.tick({ ids: [1] });
    expect(cluster.node(1).status().leaseValid).toBe(true);
  });

  it('a read is served at once while the lease is valid, without a heartbeat round', () => {
    const cluster = electedCluster('lease');
    cluster.tick({ ids: [1] });
    const commit = cluster.raft(1).log.committed;
    cluster.clearTrace();

    cluster.readIndex(1, 'l1', { stabilize: false });
    cluster.processReadys();

    expect(cluster.replica(1).readStates).toEqual([{ index: commit, context: 'l1' }]);
    expect(cluster.sent()).toEqual([]);
  });

  it('a follower read is answered at once from the leader lease', () => {
    const cluster = electedCluster('lease');
    cluster.tick({ ids: [1] });
    cluster.clearTrace();

    cluster.readIndex(3, 'f1');

    expect(cluster.sent().map((m) => m.type)).toEqual(['readIndex', 'readIndexResponse']);
    expect(cluster.replica(3).readStates.map((r) => r.context)).toEqual(['f1']);
  });

  it('falls back to a heartbeat round once the lease has expired', () => {
    const cluster = electedCluster('lease');
    cluster.tick({ ids: [1] });
    const { electionTimeoutTicks, leaseMarginTicks } = cluster.raft(1).config;
    const stopHeartbeats = cluster.dropType('heartbeat');

    // Valid for electionTimeoutTicks - leaseMarginTicks from the acknowledged round's send tick.
    cluster.tick({ ids: [1], count: electionTimeoutTicks - leaseMarginTicks - 1 });
    expect(cluster.node(1).status().leaseValid).toBe(true);
    cluster.readIndex(1, 'inside', { stabilize: false });
    cluster.processReadys();
    expect(cluster.replica(1).readStates.map((r) => r.context)).toEqual(['inside']);

    cluster.tick({ ids: [1] });
    expect(cluster.node(1).status().leaseValid).toBe(false);
    expect(cluster.raft(1).role).toBe('leader');
    stopHeartbeats();
    cluster.clearTrace();
    cluster.readIndex(1, 'outside', { stabilize: false });
    cluster.processReadys();
    expect(cluster.replica(1).readStates.map((r) => r.context)).toEqual(['inside']);
    expect(cluster.sent(isHeartbeat).length).toBe(2);

    cluster.stabilize();
    expect(cluster.replica(1).readStates.map((r) => r.context)).toEqual(['inside', 'outside']);
    // The round that answered the read renewed the lease.
    expect(cluster.node(1).status().leaseValid).toBe(true);
  });

  it('is revoked once TimeoutNow was sent, even if the transfer is then abandoned', () => {
    const cluster = electedCluster('lease');
    cluster.tick({ ids: [1] });
    expect(cluster.node(1).status().leaseValid).toBe(true);
    cluster.hold((m) => m.type === 'timeoutNow');

    cluster.transferLeader(1, 2);
    expect(cluster.sent((m) => m.type === 'timeoutNow').length).toBe(1);
    expect(cluster.node(1).status().leaseValid).toBe(false);

    cluster.clearTrace();
    cluster.readIndex(1, 'during-transfer', { stabilize: false });
    cluster.processReadys();
    expect(cluster.replica(1).readStates).toEqual([]);
    expect(cluster.sent(isHeartbeat).length).toBe(2);
    cluster.stabilize();
    expect(cluster.replica(1).readStates.map((r) => r.context)).toEqual(['during-transfer']);

    // The transfer times out, but the TimeoutNow may still arrive: no lease for the rest of this term.
    cluster.tick({ count: cluster.raft(1).config.electionTimeoutTicks });
    expect(cluster.raft(1).leadTransferee).toBe(0);
    expect(cluster.raft(1).role).toBe('leader');
    expect(cluster.node(1).status().leaseValid).toBe(false);

    // And it does arrive: 2 wins a vote that ignores 3's lease.
    cluster.heal();
    cluster.release();
    cluster.stabilize();
    expect(cluster.leader()).toBe(2);
  });

  it('a campaign forced on followers inside the lease is refused, so the lease read stays linearizable', () => {
    const cluster = electedCluster('lease');
    cluster.tick({ ids: [1] });
    cluster.isolate(1);

    // Each follower acknowledged a round of the lease: it promised not to vote, for itself
    // either, until an election timeout has passed since it last heard from the leader.
    cluster.campaign(3);
    cluster.campaign(2);

    expect(cluster.raft(2).role).toBe('follower');
    expect(cluster.raft(3).role).toBe('follower');
    expect(cluster.raft(3).lead).toBe(1);
    expect(cluster.leader()).toBe(1);
    expect(cluster.node(1).status().leaseValid).toBe(true);
    // Nothing can commit elsewhere, so the lease read at 1 is up to date.
    cluster.readIndex(1, 'lease-read');
    expect(cluster.replica(1).readStates).toEqual([{ index: cluster.raft(2).log.committed, context: 'lease-read' }]);
  });

  it('no other leader is elected while the partitioned leader still holds its lease', () => {
    const cluster = electedCluster('lease');
    cluster.tick({ ids: [1] });
    cluster.isolate(1);
    let leaseTicks = 0;

    for (let i = 0; i < 60; i++) {
      cluster.tick();
      const newLeader = [2, 3].find((id) => cluster.raft(id).role === 'leader');
      if (cluster.node(1).status().leaseValid) {
        leaseTicks++;
        expect(newLeader).toBeUndefined();
      }
    }

    // The lease ran for a while, and the majority did elect a leader after it.
    expect(leaseTicks).toBeGreaterThan(0);
    expect([2, 3]).toContain(cluster.leader());
  });
});
