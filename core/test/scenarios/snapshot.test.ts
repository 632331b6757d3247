// Log compaction and InstallSnapshot (Raft §7, thesis §5): a follower that
// needs entries the leader has compacted gets the leader's snapshot and
// restores it, configuration included. Ports the intent of etcd-raft's
// TestSendingSnapshotSetPendingSnapshot, TestSnapshotFailure/Succeed/Abort,
// TestRestoreIgnoreSnapshot, TestSlowNodeRestore and
// TestLeaderTransferAfterSnapshot.
import { describe, expect, it } from 'vitest';
import type { Message, SnapshotMessage } from '../../src/types.js';
import { nodeId } from '../../src/types.js';
import { ids, storageWith } from '../helpers.js';
import { Cluster, confChange } from './rawnode-cluster.js';

const isSnapshot = (m: Message): m is SnapshotMessage => m.type === 'snapshot';

function electedCluster(): Cluster {
  const config = { checkQuorum: true, preVote: true };
  const cluster = new Cluster({ voters: [1, 2, 3], config });
  cluster.campaign(1);
  expect(cluster.leader()).toBe(1);
  cluster.propose(1, 'a');
  return cluster;
}

/** Node 3 misses `payloads` while the leader compacts its log past them. */
function laggingFollower(cluster: Cluster, payloads: string[]): void {
  const rejoin = cluster.isolate(3);
  for (const p of payloads) cluster.propose(1, p);
  cluster.compact(1);
  rejoin();
}

describe('snapshots (Raft §7)', () => {
  it('the leader sends its snapshot to a follower that needs compacted entries; the follower restores it, conf state included', () => {
    const cluster = electedCluster();
    const rejoin = cluster.isolate(3);
    // A membership change that 3 misses, so only the snapshot can tell it.
    cluster.addReplica(4, { storage: storageWith({ voters: [1, 2, 3] }), config: { checkQuorum: true, preVote: true } });
    cluster.proposeConfChange(1, confChange('auto', ['addLearner', 4]));
    for (const p of ['b', 'c', 'd']) cluster.propose(1, p);
    cluster.compact(1);
    const snapshotIndex = cluster.replica(1).storage.snapshot().metadata.index;
    rejoin();
    cluster.clearTrace();

    cluster.tick({ ids: [1] });

    const snapshots = cluster.sent(isSnapshot);
    expect(snapshots.map((m) => [m.to, m.snapshot.metadata.index])).toEqual([[3, snapshotIndex]]);
    const follower = cluster.replica(3);
    expect(follower.stateMachine).toEqual(['a', 'b', 'c', 'd']);
    expect(follower.storage.firstIndex()).toBe(snapshotIndex + 1);
    expect(follower.confState.learners).toEqual([4]);
    expect(cluster.node(3).status().config).toEqual(cluster.node(1).status().config);

    // Replication continues from the snapshot with ordinary appends.
    cluster.clearTrace();
    cluster.propose(1, 'e');
    expect(cluster.sent(isSnapshot)).toEqual([]);
    expect(follower.stateMachine).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(cluster.node(1).status().progress?.get(nodeId(3))?.state).toBe('replicate');
  });

  it('a snapshot reported failed puts the follower back to probing, and the leader sends it again', () => {
    const cluster = electedCluster();
    laggingFollower(cluster, ['b', 'c']);
    const stopSnapshots = cluster.drop(isSnapshot);

    cluster.tick({ ids: [1] });
    expect(cluster.sent(isSnapshot).length).toBe(1);
    expect(cluster.node(1).status().progress?.get(nodeId(3))?.state).toBe('snapshot');
    // While the snapshot is in flight nothing else goes to 3.
    cluster.clearTrace();
    cluster.propose(1, 'd');
    expect(cluster.sent((m) => m.type === 'append' && m.to === 3)).toEqual([]);

    cluster.node(1).reportSnapshot(nodeId(3), 'failed');
    expect(cluster.node(1).status().progress?.get(nodeId(3))?.state).toBe('probe');
    stopSnapshots();
    cluster.tick({ ids: [1] });

    expect(cluster.sent(isSnapshot).length).toBe(1);
    expect(cluster.replica(3).stateMachine).toEqual(['a', 'b', 'c', 'd']);
  });

  it('a snapshot reported finished resumes probing after it', () => {
    const cluster = electedCluster();
    laggingFollower(cluster, ['b', 'c']);
    // The follower installs it, but its acknowledgement is lost.
    const stopAcks = cluster.drop((m) => m.type === 'appendResponse' && m.from === 3 && !m.reject);
    cluster.tick({ ids: [1] });
    expect(cluster.sent(isSnapshot).length).toBe(1);
    expect(cluster.node(1).status().progress!.get(nodeId(3))!.state).toBe('snapshot');
    const snapshotIndex = cluster.replica(1).storage.snapshot().metadata.index;

    cluster.node(1).reportSnapshot(nodeId(3), 'finished');

    const progress = cluster.node(1).status().progress!.get(nodeId(3))!;
    expect(progress.state).toBe('probe');
    expect(progress.next).toBe(snapshotIndex + 1);
    stopAcks();
    cluster.tick({ ids: [1] });
    cluster.propose(1, 'd');
    expect(cluster.replica(3).stateMachine).toEqual(['a', 'b', 'c', 'd']);
    expect(cluster.sent(isSnapshot).length).toBe(1);
  });

  it('a stale snapshot is ignored: the follower keeps its newer log and reports its commit index', () => {
    const cluster = electedCluster();
    const keep = cluster.hold((m) => isSnapshot(m) && m.to === 3);
    laggingFollower(cluster, ['b']);
    cluster.tick({ ids: [1] });
    const [stale] = cluster.release() as SnapshotMessage[];
    keep();
    cluster.stabilize();
    cluster.propose(1, 'c');
    cluster.propose(1, 'd');
    // The follower compacts past the old snapshot, so it cannot recognise it by its last entry.
    cluster.compact(3);
    const follower = cluster.replica(3);
    expect(follower.storage.firstIndex()).toBeGreaterThan(stale!.snapshot.metadata.index + 1);
    const before = { commit: cluster.raft(3).log.committed, lastIndex: cluster.raft(3).log.lastIndex(), firstIndex: follower.storage.firstIndex() };
    cluster.clearTrace();

    cluster.inject(stale!);
    cluster.stabilize();

    expect(stale!.snapshot.metadata.index).toBeLessThan(before.commit);
    expect(cluster.raft(3).log.committed).toBe(before.commit);
    expect(cluster.raft(3).log.lastIndex()).toBe(before.lastIndex);
    expect(follower.storage.firstIndex()).toBe(before.firstIndex);
    expect(follower.stateMachine).toEqual(['a', 'b', 'c', 'd']);
    const answers = cluster.sent((m) => m.type === 'appendResponse' && m.from === 3);
    expect(answers.map((m) => m.type === 'appendResponse' && [m.index, m.reject])).toEqual([[before.commit, false]]);
  });

  it('a snapshot of entries the follower already has only fast-forwards its commit index', () => {
    const cluster = electedCluster();
    // 3 receives the entries but not the messages that would tell it they committed.
    cluster.drop((m) => m.to === 3 && (m.type === 'heartbeat' || (m.type === 'append' && m.entries.length === 0)));
    cluster.propose(1, 'b');
    cluster.propose(1, 'c');
    const lastIndex = cluster.raft(1).log.lastIndex();
    expect(cluster.raft(3).log.lastIndex()).toBe(lastIndex);
    expect(cluster.raft(3).log.committed).toBeLessThan(lastIndex);
    cluster.compact(1);
    const snapshot = cluster.replica(1).storage.snapshot();
    expect(snapshot.metadata.index).toBe(lastIndex);
    let installed = false;
    cluster.onReady = (id, rd) => {
      if (id === 3 && rd.snapshot !== undefined) installed = true;
    };

    cluster.inject({ type: 'snapshot', from: nodeId(1), to: nodeId(3), term: cluster.raft(1).term, snapshot });
    cluster.stabilize();

    expect(installed).toBe(false);
    expect(cluster.raft(3).log.committed).toBe(lastIndex);
    expect(cluster.replica(3).storage.firstIndex()).toBe(1);
    expect(cluster.replica(3).stateMachine).toEqual(['a', 'b', 'c']);
  });

  it('a learner that joins after compaction catches up from a snapshot', () => {
    const cluster = electedCluster();
    // The new replica starts empty and is switched on only once the leader has compacted.
    cluster.addReplica(4, { config: { checkQuorum: true, preVote: true } });
    cluster.stop(4);
    cluster.proposeConfChange(1, confChange('auto', ['addLearner', 4]));
    for (const p of ['b', 'c']) cluster.propose(1, p);
    cluster.compact(1);
    cluster.restart(4);
    cluster.clearTrace();

    cluster.tick({ ids: [1] });
    cluster.propose(1, 'd');

    expect(cluster.sent(isSnapshot).map((m) => m.to)).toEqual([4]);
    expect(cluster.replica(4).stateMachine).toEqual(['a', 'b', 'c', 'd']);
    expect(cluster.replica(4).confState).toEqual(cluster.replica(1).confState);
    expect(cluster.raft(4).isLearner).toBe(true);
    expect(cluster.raft(4).promotable()).toBe(false);
  });

  it.each([
    ['an empty storage', false],
    ['the bootstrap configuration', true],
  ])('a learner added after the latest snapshot, started from %s, restores it and learns of its own addition from the log', (_, bootstrap) => {
    const cluster = electedCluster();
    cluster.propose(1, 'b');
    cluster.compact(1);
    const snapshot = cluster.replica(1).storage.snapshot();
    cluster.addReplica(4, { storage: bootstrap ? storageWith({ voters: [1, 2, 3] }) : undefined, config: { checkQuorum: true, preVote: true } });
    cluster.clearTrace();

    cluster.proposeConfChange(1, confChange('auto', ['addLearner', 4]));
    cluster.propose(1, 'c');

    // The snapshot predates the learner: its config does not list 4.
    expect(snapshot.metadata.confState.learners).toEqual([]);
    expect(cluster.sent(isSnapshot).map((m) => [m.to, m.snapshot.metadata.index])).toEqual([[4, snapshot.metadata.index]]);
    expect(cluster.replica(4).stateMachine).toEqual(['a', 'b', 'c']);
    expect(cluster.replica(4).confState).toEqual(cluster.replica(1).confState);
    expect(cluster.raft(4).isLearner).toBe(true);
    expect(cluster.node(1).status().progress?.get(nodeId(4))?.state).toBe('replicate');
  });

  it('a member does not restore a snapshot whose config leaves it out', () => {
    const cluster = electedCluster();
    cluster.compact(1);
    const snapshot = cluster.replica(1).storage.snapshot();
    const foreign = { ...snapshot, metadata: { ...snapshot.metadata, index: snapshot.metadata.index + 5, confState: { ...snapshot.metadata.confState, voters: ids(1, 2) } } };
    cluster.clearTrace();

    cluster.inject({ type: 'snapshot', from: nodeId(1), to: nodeId(3), term: cluster.raft(1).term, snapshot: foreign });
    cluster.stabilize();

    expect(cluster.raft(3).log.lastIndex()).toBe(cluster.raft(1).log.lastIndex());
    expect(cluster.replica(3).storage.snapshot().metadata.index).toBe(0);
    expect(cluster.node(3).status().config.voters).toEqual([1, 2, 3]);
  });

  it('a leader transfer to a follower that needs a snapshot waits for the snapshot to be installed', () => {
    const cluster = electedCluster();
    laggingFollower(cluster, ['b', 'c']);
    // Hold 3's acknowledgement of the snapshot (its first rejection still gets through).
    cluster.hold((m) => m.type === 'appendResponse' && m.from === 3 && !m.reject);

    cluster.transferLeader(1, 3);
    expect(cluster.sent(isSnapshot).map((m) => m.to)).toEqual([3]);
    expect(cluster.sent((m) => m.type === 'timeoutNow')).toEqual([]);
    expect(cluster.leader()).toBe(1);

    cluster.heal();
    cluster.release();
    cluster.stabilize();

    expect(cluster.leader()).toBe(3);
    expect(cluster.raft(1).lead).toBe(3);
  });
});
