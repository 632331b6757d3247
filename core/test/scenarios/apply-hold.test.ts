// Two hooks a range merge builds on (shards: a merge's entry waits on the
// merged range's replica; the freeze fences out membership changes):
// RawNode.holdApply / resumeApply and RawNode.proposeConfFence.
import { describe, expect, it } from 'vitest';
import { ProposalDroppedError } from '../../src/errors.js';
import { nodeId } from '../../src/types.js';
import { bytes, text } from '../helpers.js';
import { Cluster, confChange } from './rawnode-cluster.js';

describe('holdApply', () => {
  it('stops one replica applying at an entry while Raft commits on, and resumes in order', () => {
    const cluster = new Cluster({ voters: [1, 2, 3] });
    cluster.campaign(1);
    cluster.applyHold.set(nodeId(2), (e) => text(e.data) === 'merge');
    for (const data of ['a', 'merge', 'b']) cluster.propose(1, data);

    expect(cluster.replica(1).stateMachine).toEqual(['a', 'merge', 'b']);
    expect(cluster.replica(2).stateMachine).toEqual(['a']);
    const held = cluster.node(2);
    const mergeIndex = cluster.replica(1).appliedIndex - 1;
    expect(held.applyHeldAt).toBe(mergeIndex);
    // The log and the commit go on; only applying waits, and no Ready keeps offering the held entries
    // (stabilize would not settle if one did).
    expect(held.raft.log.committed).toBe(cluster.replica(1).appliedIndex);
    expect(cluster.replica(2).appliedIndex).toBe(mergeIndex - 1);
    expect(held.hasReady()).toBe(false);

    cluster.propose(1, 'c');
    expect(cluster.replica(2).stateMachine).toEqual(['a']);

    cluster.resumeApply(2);
    expect(held.applyHeldAt).toBeUndefined();
    // The cluster checks that every replica applies the same entry at every index.
    expect(cluster.replica(2).stateMachine).toEqual(['a', 'merge', 'b', 'c']);
  });

  it('holding at the first committed entry of a Ready applies nothing of it', () => {
    const cluster = new Cluster({ voters: [1, 2, 3] });
    cluster.campaign(1);
    cluster.applyHold.set(nodeId(3), (e) => text(e.data) === 'x');
    cluster.propose(1, 'x');
    expect(cluster.replica(3).stateMachine).toEqual([]);
    cluster.resumeApply(3);
    expect(cluster.replica(3).stateMachine).toEqual(['x']);
  });
});

describe('proposeConfFence', () => {
  it('keeps membership changes out until the fence is applied', () => {
    const cluster = new Cluster({ voters: [1, 2, 3] });
    cluster.campaign(1);
    cluster.node(1).proposeConfFence(bytes('freeze'));
    // Not applied yet (not even sent): a change proposed now would land after the fence.
    expect(() => cluster.node(1).proposeConfChange(confChange('auto', ['addNode', 4]))).toThrow(ProposalDroppedError);
    cluster.stabilize();
    expect(cluster.replica(1).stateMachine).toEqual(['freeze']);
    // Applied: the shell now decides (a frozen range refuses changes itself).
    cluster.proposeConfChange(1, confChange('auto', ['addLearner', 4]));
    expect(cluster.replica(1).confState.learners).toEqual([4]);
  });

  it('is refused while a membership change is pending, and on a follower', () => {
    const cluster = new Cluster({ voters: [1, 2, 3] });
    cluster.campaign(1);
    cluster.proposeConfChange(1, confChange('auto', ['addLearner', 4]), { stabilize: false });
    expect(() => cluster.node(1).proposeConfFence(bytes('freeze'))).toThrow(/not yet applied/);
    cluster.stabilize();
    expect(() => cluster.node(2).proposeConfFence(bytes('freeze'))).toThrow(/not the leader/);
    cluster.node(1).proposeConfFence(bytes('freeze'));
    cluster.stabilize();
    expect(cluster.replica(2).stateMachine).toEqual(['freeze']);
  });
});

describe('commitKnown', () => {
  it('commits an entry the log holds with that term, and nothing it does not hold', () => {
    const cluster = new Cluster({ voters: [1, 2, 3] });
    cluster.campaign(1);
    // 3 gets the entries but never hears that they committed.
    const release = cluster.drop((m) => m.to === 3 && (m.type === 'heartbeat' || (m.type === 'append' && m.entries.length === 0)));
    cluster.propose(1, 'a');
    cluster.propose(1, 'b');
    const r3 = cluster.raft(3);
    const last = r3.log.lastIndex();
    expect(cluster.replica(1).appliedIndex).toBe(last);
    expect(r3.log.committed).toBeLessThan(last);
    const term = r3.log.term(last)!;

    expect(cluster.node(3).commitKnown(last + 1, term)).toBe(false);
    expect(cluster.node(3).commitKnown(last, term + 1)).toBe(false);
    expect(r3.log.committed).toBeLessThan(last);
    expect(cluster.node(3).commitKnown(last, term)).toBe(true);
    cluster.stabilize();
    expect(cluster.replica(3).stateMachine).toEqual(['a', 'b']);
    release();
  });
});
