// Node leases (read/node-leases.ts): the leases a shell keeps per node, which
// Raft counts per group. A fake NodeLeases per replica stands for the shell:
// the test says which voters' leases hold, in which epoch, and whom each node
// promised; Raft must serve reads, refuse votes and stamp acknowledgements by
// those answers alone.
import { describe, expect, it } from 'vitest';
import { NONE, type NodeId } from '../../src/types.js';
import type { NodeLeases } from '../../src/read/node-leases.js';
import type { Message } from '../../src/types.js';
import { Cluster, confChange } from './rawnode-cluster.js';

class FakeLeases implements NodeLeases {
  /** Per voter, its node's current lease epoch (what ackMark stamps). */
  readonly epochs = new Map<number, number>();
  /** Voters whose leases to this node hold now. */
  readonly holding = new Set<number>();
  /** Nodes this node promised. */
  readonly promisedTo = new Set<number>();
  young = false;

  ackMark(voter: NodeId): number {
    return this.epochs.get(voter) ?? 1;
  }
  holds(voter: NodeId, mark: number): boolean {
    return this.holding.has(voter) && this.ackMark(voter) === mark;
  }
  promised(leader: NodeId): boolean {
    return this.young || (leader !== NONE && this.promisedTo.has(leader));
  }
}

const isHeartbeat = (m: Message): boolean => m.type === 'heartbeat';

function elected(): { cluster: Cluster; leases: Map<number, FakeLeases> } {
  const leases = new Map([1, 2, 3].map((id) => [id, new FakeLeases()]));
  const cluster = new Cluster({ voters: [1, 2, 3], config: { checkQuorum: true, preVote: true }, configFor: (id) => ({ nodeLeases: leases.get(id)! }) });
  cluster.campaign(1);
  expect(cluster.leader()).toBe(1);
  cluster.propose(1, 'a'); // the followers answer appends of term 1: acknowledgements stamped with epoch 1
  return { cluster, leases };
}

/** A read on the leader, with the Ready processed but nothing delivered: answered at once, or waiting for a round. */
function readAtOnce(cluster: Cluster, context: string): boolean {
  cluster.clearTrace();
  cluster.readIndex(1, context, { stabilize: false });
  cluster.processReadys();
  return cluster.replica(1).readStates.some((r) => r.context === context);
}

describe('node leases', () => {
  it('require check-quorum', () => {
    expect(() => new Cluster({ voters: [1], config: { checkQuorum: false, nodeLeases: new FakeLeases() } })).toThrow(/requires checkQuorum/);
  });

  it('a leader serves a read at once, with no heartbeat round, while one other voter of three holds a lease and acknowledged this term', () => {
    const { cluster, leases } = elected();
    expect(readAtOnce(cluster, 'no-lease')).toBe(false);
    expect(cluster.sent(isHeartbeat).length).toBe(2);
    cluster.stabilize();

    leases.get(1)!.holding.add(3);
    expect(cluster.node(1).status().leaseValid).toBe(true);
    expect(readAtOnce(cluster, 'leased')).toBe(true);
    expect(cluster.sent()).toEqual([]);
  });

  it('an acknowledgement from before a lapse (an older epoch) counts for nothing until the voter acknowledges again', () => {
    const { cluster, leases } = elected();
    const l = leases.get(1)!;
    l.holding.add(2);
    expect(cluster.node(1).status().leaseValid).toBe(true);
    // Node 2's lease lapsed and was renewed: its replica may have followed someone else meanwhile.
    l.epochs.set(2, 2);
    expect(cluster.node(1).status().leaseValid).toBe(false);
    expect(readAtOnce(cluster, 'after-lapse')).toBe(false);
    cluster.stabilize(); // the round's acknowledgements carry epoch 2
    expect(cluster.replica(1).readStates.map((r) => r.context)).toContain('after-lapse');
    expect(cluster.node(1).status().leaseValid).toBe(true);
  });

  it('a new leader holds no lease until its own term is acknowledged and committed', () => {
    const { cluster, leases } = elected();
    for (const l of leases.values()) for (const id of [1, 2, 3]) l.holding.add(id);
    cluster.transferLeader(1, 2);
    expect(cluster.leader()).toBe(2);
    // Acknowledgements of node 2's term came with the election's appends: now it holds one.
    expect(cluster.node(2).status().leaseValid).toBe(true);
    expect(cluster.node(1).status().leaseValid).toBe(false);
  });

  it('a follower that promised its leader ignores other candidates, and does not campaign itself', () => {
    const { cluster, leases } = elected();
    leases.get(2)!.promisedTo.add(1);
    leases.get(3)!.promisedTo.add(1);
    const termBefore = cluster.raft(1).term;
    // Node 3 is forced to campaign: it refuses (it promised node 1), and node 2 would not vote for it either.
    cluster.campaign(3);
    expect(cluster.leader()).toBe(1);
    expect(cluster.raft(3).term).toBe(termBefore);
    leases.get(3)!.promisedTo.clear();
    cluster.isolate(1);
    cluster.campaign(3);
    // Node 2 still promised node 1: no vote for node 3, whatever its election timer says.
    expect(cluster.raft(2).lead).toBe(1);
    expect(cluster.raft(3).role).not.toBe('leader');
  });

  it('the promised leader itself may still win a vote (it knows its own state)', () => {
    const { cluster, leases } = elected();
    leases.get(2)!.promisedTo.add(1);
    leases.get(3)!.promisedTo.add(1);
    // The followers stop hearing heartbeats; past their election timeouts they still do not campaign (promised).
    const restore = cluster.dropType('heartbeat', 'append');
    cluster.tick({ ids: [2, 3], count: 2 * cluster.raft(2).config.electionTimeoutTicks });
    expect(cluster.raft(2).role).toBe('follower');
    expect(cluster.raft(3).role).toBe('follower');
    restore();
    // Node 1 steps down (as check-quorum would make it) and campaigns again: the promises to it do not stop it.
    const term = cluster.raft(1).term;
    cluster.raft(1).becomeFollower(term, NONE);
    cluster.campaign(1);
    expect(cluster.leader()).toBe(1);
    expect(cluster.raft(1).term).toBeGreaterThan(term);
  });

  it('a promise to a leader that is no longer a voter binds nothing: the rest elect a leader', () => {
    const { cluster, leases } = elected();
    for (const id of [2, 3]) leases.get(id)!.promisedTo.add(1);
    cluster.proposeConfChange(1, confChange('auto', ['removeNode', 1]));
    expect(cluster.raft(1).role).not.toBe('leader');
    cluster.stop(1);
    cluster.tick({ ids: [2, 3], count: 30 });
    expect([2, 3]).toContain(cluster.leader());
  });

  it('a young node (it forgot the promises it made before a restart) votes for no one', () => {
    const { cluster, leases } = elected();
    leases.get(2)!.young = true;
    leases.get(3)!.young = true;
    cluster.stop(1);
    cluster.tick({ ids: [2, 3], count: 30 });
    expect(cluster.raft(2).role).not.toBe('leader');
    expect(cluster.raft(3).role).not.toBe('leader');
    leases.get(2)!.young = false;
    leases.get(3)!.young = false;
    cluster.tick({ ids: [2, 3], count: 30 });
    expect([2, 3]).toContain(cluster.leader());
  });

  it('a leadership transfer overrides promises, and ends the lease when TimeoutNow is sent', () => {
    const { cluster, leases } = elected();
    for (const id of [2, 3]) leases.get(id)!.promisedTo.add(1);
    leases.get(1)!.holding.add(2);
    expect(cluster.node(1).status().leaseValid).toBe(true);
    cluster.hold((m) => m.type === 'timeoutNow');
    cluster.transferLeader(1, 3);
    expect(cluster.node(1).status().leaseValid).toBe(false);
    cluster.release();
    cluster.stabilize();
    expect(cluster.leader()).toBe(3);
  });
});

// What a reader outside Raft (the shell's local reads) is told it may rely on.
describe('nodeLeaseReadVoters', () => {
  it("names each voter with its acknowledgement's lease mark, on a leader whose committed entries are all applied", () => {
    const { cluster, leases } = elected();
    leases.get(1)!.epochs.set(3, 4);
    cluster.propose(1, 'b'); // node 3 acknowledges in epoch 4 now
    expect(cluster.raft(1).nodeLeaseReadVoters()).toEqual([
      [1, 0],
      [2, 1],
      [3, 4],
    ]);
    expect(cluster.raft(2).nodeLeaseReadVoters()).toBeUndefined();
  });

  it('is undefined from the moment a commit index is known until its entries are applied', () => {
    const { cluster } = elected();
    const seen: ((readonly [number, number])[] | undefined)[] = [];
    cluster.onReady = (id, rd) => {
      if (id === 1 && rd.committedEntries.length > 0) seen.push(cluster.raft(1).nodeLeaseReadVoters());
    };
    cluster.propose(1, 'c');
    expect(seen).toEqual([undefined]);
    expect(cluster.raft(1).nodeLeaseReadVoters()).toHaveLength(3);
  });

  it('is undefined while a leadership transfer is under way, and on the new leader until its term commits', () => {
    const { cluster } = elected();
    cluster.transferLeader(1, 2, { stabilize: false });
    expect(cluster.raft(1).nodeLeaseReadVoters()).toBeUndefined();
    cluster.stabilize();
    expect(cluster.leader()).toBe(2);
    expect(cluster.raft(1).nodeLeaseReadVoters()).toBeUndefined();
    expect(cluster.raft(2).nodeLeaseReadVoters()).toHaveLength(3);
  });

  it('is undefined without node leases', () => {
    const cluster = new Cluster({ voters: [1, 2, 3], config: { checkQuorum: true, preVote: true } });
    cluster.campaign(1);
    cluster.propose(1, 'a');
    expect(cluster.raft(1).nodeLeaseReadVoters()).toBeUndefined();
  });
});
