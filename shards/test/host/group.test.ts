// A group's pending-request and snapshot-stream containers: made by the first write, read without being
// made, and dropped once empty when the group quiesces, so a quiesced replica holds none of its own
// (ARCHITECTURE.md, "Memory per replica"); and its Raft node, built on first use.
import { SILENT_LOGGER, groupId, nodeId, type ReadContext } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { Group } from '../../src/host/group.js';
import { statusOf } from '../../src/host/shard-changes.js';
import { WHOLE_KEY_SPACE } from '../../src/kv/range.js';
import { confState, openStore, tempDir, useTempStores } from '../support/fixtures.js';

useTempStores();

async function twoGroups(): Promise<[Group, Group]> {
  const store = await openStore(tempDir());
  const make = async (id: number): Promise<Group> => {
    await store.createShard(groupId(id), { confState: confState({ voters: [1, 2, 3] }) });
    return new Group(groupId(id), store.storage(groupId(id)), WHOLE_KEY_SPACE, {
      nodeId: nodeId(1),
      seed: 7,
      raft: {},
      nodeLeases: undefined,
      logger: () => SILENT_LOGGER,
    });
  };
  return [await make(1), await make(2)];
}

const READ = { requestId: 9, read: { op: 'get', key: Uint8Array.of(1) } } as const;

describe('Group request containers', () => {
  it('reads nothing into being: a fresh group shows the shared empty ones', async () => {
    const [a, b] = await twoGroups();
    expect([a.proposals.size, a.reads.size, a.readsAwaitingApply.length, a.snapshotsOut.size, a.batchedCount]).toEqual([0, 0, 0, 0, 0]);
    expect(a.takeReadApplied(100)).toBeUndefined();
    expect(a.takeBatch()).toEqual({ requestIds: [], commands: [] });
    expect(a.hasPendingRequests()).toBe(false);
    expect([a.proposals, a.reads, a.readsAwaitingApply, a.snapshotsOut]).toEqual([b.proposals, b.reads, b.readsAwaitingApply, b.snapshotsOut]);
    expect(a.proposals).toBe(b.proposals);
    expect(a.reads).toBe(b.reads);
    expect(a.readsAwaitingApply).toBe(b.readsAwaitingApply);
    expect(a.snapshotsOut).toBe(b.snapshotsOut);
  });

  it('keeps what is written, in order, and gives a batch back once', async () => {
    const [a, b] = await twoGroups();
    a.setProposal(5, { requestIds: [1, 2], term: 3, proposedAtMs: 0 });
    a.setRead('c1' as ReadContext, READ);
    a.awaitApply({ index: 8, read: READ });
    a.awaitApply({ index: 9, read: { ...READ, requestId: 10 } });
    a.setSnapshotOut(nodeId(2), 44);
    const batch = a.batch();
    batch.requestIds.push(3);
    batch.commands.push(Uint8Array.of(7));
    expect(b.proposals.size + b.reads.size + b.readsAwaitingApply.length + b.snapshotsOut.size + b.batchedCount).toBe(0);
    expect([a.proposals.get(5)?.requestIds, a.reads.size, a.snapshotsOut.get(nodeId(2)), a.batchedCount]).toEqual([[1, 2], 1, 44, 1]);
    expect(a.hasPendingRequests()).toBe(true);
    expect(a.takeReadApplied(7)).toBeUndefined();
    expect(a.takeReadApplied(9)?.requestId).toBe(9);
    expect(a.takeReadApplied(9)?.requestId).toBe(10);
    expect(a.takeReadApplied(9)).toBeUndefined();
    expect(a.takeBatch()).toMatchObject({ requestIds: [3], commands: [Uint8Array.of(7)] });
    expect(a.batchedCount).toBe(0);
    a.releaseIdle();
    // Not empty: kept.
    expect([a.proposals.size, a.reads.size, a.snapshotsOut.size]).toEqual([1, 1, 1]);
    a.clearRequests();
    expect(a.hasPendingRequests()).toBe(false);
    expect(a.snapshotsOut.size).toBe(1);
  });

  it('drops its emptied containers when it quiesces, and makes them again on the next write', async () => {
    const [a, b] = await twoGroups();
    a.setProposal(5, { requestIds: [1], term: 3, proposedAtMs: 0 });
    a.setRead('c1' as ReadContext, READ);
    a.awaitApply({ index: 1, read: READ });
    a.setSnapshotOut(nodeId(3), 1);
    a.deleteProposal(5);
    a.deleteRead('c1' as ReadContext);
    a.takeReadApplied(1);
    a.deleteSnapshotOut(nodeId(3));
    a.batch();
    expect(a.proposals).not.toBe(b.proposals);
    a.releaseIdle();
    expect(a.proposals).toBe(b.proposals);
    expect(a.reads).toBe(b.reads);
    expect(a.readsAwaitingApply).toBe(b.readsAwaitingApply);
    expect(a.snapshotsOut).toBe(b.snapshotsOut);
    a.setProposal(6, { requestIds: [2], term: 3, proposedAtMs: 0 });
    expect(a.proposals.size).toBe(1);
    expect(b.proposals.size).toBe(0);
  });
});

describe('Group Raft node, built on first use', () => {
  it('a replica not built reports what its freshly built node reports, and building it is counted once', async () => {
    const store = await openStore(tempDir());
    const id = groupId(4);
    // Stored as a split's right half: applied, committed and at a term, so the store's answers are not all zero.
    await store.createShard(id, { confState: confState({ voters: [1, 2, 3], learners: [4] }), startAt: { index: 12, term: 3 } });
    let loads = 0;
    const g = new Group(id, store.storage(id), WHOLE_KEY_SPACE, { nodeId: nodeId(1), seed: 7, raft: {}, nodeLeases: undefined, logger: () => SILENT_LOGGER, onLoad: () => loads++ });
    const lazy = statusOf(g);
    expect([g.loaded, g.isLeader, g.leader, loads]).toEqual([false, false, 0, 0]);
    expect(lazy).toMatchObject({ role: 'follower', leader: 0, applied: 12, lastIndex: 12, voters: [1, 2, 3], learners: [4] });
    expect(g.raw).toBe(g.raw);
    expect([g.loaded, loads]).toEqual([true, 1]);
    expect(statusOf(g)).toEqual(lazy);
  });
});
