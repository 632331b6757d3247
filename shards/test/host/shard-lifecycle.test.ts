import { join } from 'node:path';
import { EMPTY_CONF_STATE, groupId, nodeId } from '@flotilla/core';
import { encodeBatch } from '../../src/host/message-codec.js';
import { encodeSegment } from '../../src/host/node-batch.js';
import { coreDirName } from '../../src/host/node-dir.js';
import { encodeShardRange } from '../../src/kv/range.js';
import { encodeConfState } from '../../src/storage/codec.js';
import { NodeStore } from '../../src/storage/node-store.js';
import { afterEach, describe, expect, it } from 'vitest';
import { useTempStores } from '../support/fixtures.js';
import { HostCluster, key, shardBounds, shardKey, text } from '../support/host-cluster.js';

useTempStores();

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe('shards on a running node', () => {
  it('a follower answers proposals and linearizable reads with the leader as a hint', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 2, seed: 21 }));
    await c.createShards([5]);
    await c.tickUntil('leader', async () => (await c.agreedLeaders([5])) !== undefined, 100);
    const leader = (await c.agreedLeaders([5]))!.get(5)!;
    const follower = c.nodeIds.find((n) => n !== leader)!;
    const write = expect(c.host(follower).propose(groupId(5), { op: 'put', key: shardKey(5, 'k'), value: key('v') })).rejects.toMatchObject({ code: 'NOT_LEADER', leaderHint: leader, retryable: true });
    const read = expect(c.host(follower).get(groupId(5), shardKey(5, 'k'))).rejects.toMatchObject({ code: 'NOT_LEADER', leaderHint: leader });
    const outOfRange = expect(c.host(leader).propose(groupId(5), { op: 'put', key: shardKey(6, 'k'), value: key('v') })).rejects.toMatchObject({ code: 'KEY_OUT_OF_RANGE' });
    await c.settle();
    await Promise.all([write, read, outOfRange]);
  });

  it('a replica still waiting for its first snapshot sends readers on (NOT_LEADER), stale or not', async () => {
    // Found by the whole-node simulation: such a replica of the meta range answered KEY_OUT_OF_RANGE, which
    // stopped the node's meta duties, so it never heartbeat and the driver never collected the replica.
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 23 }));
    await c.host(1).createShard({ shardId: groupId(5), voters: [], join: true });
    const linearizable = expect(c.host(1).get(groupId(5), shardKey(5, 'k'))).rejects.toMatchObject({ code: 'NOT_LEADER', retryable: true });
    const stale = expect(c.host(1).get(groupId(5), shardKey(5, 'k'), { consistency: 'stale' })).rejects.toMatchObject({ code: 'NOT_LEADER', retryable: true });
    await c.settle();
    await Promise.all([linearizable, stale]);
  });

  it('a replica that applied its own removal but stopped before destroying itself is destroyed when its node starts', async () => {
    // Found by the whole-node simulation (seed 126): a crash between the round's commit (the removal
    // applied) and the destroy left a replica at the range's own epoch that nobody ever collected.
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 24 }));
    await c.createShards([5]);
    await c.tickUntil('a leader', async () => (await c.agreedLeaders([5])) !== undefined, 100);
    expect((await c.write(5, { op: 'put', key: shardKey(5, 'k'), value: key('v') })).ok).toBe(true);
    const leader = (await c.agreedLeaders([5]))!.get(5)!;
    const removed = c.nodeIds.find((n) => n !== leader)!;
    const remaining = c.nodeIds.filter((n) => n !== removed);
    // Its store as such a crash leaves it: the membership without it applied, the replica still there.
    await c.stopNode(removed);
    const store = await NodeStore.open({ dir: join(c.dirs.get(removed)!, coreDirName(0)), nodeId: removed });
    await store.write(() => store.meta.putSync([5, 'conf'], encodeConfState({ ...EMPTY_CONF_STATE, voters: remaining.map(nodeId) })));
    await store.close();
    await c.startNode(removed);
    await c.settle();
    expect((await c.host(removed).shards()).map((s) => s.shardId)).not.toContain(5);
    expect(c.host(removed).hasShard(groupId(5))).toBe(false);
  });

  it('a replica removed on request leaves the keys another replica here holds: a stale one under the range that took it in', async () => {
    // The placement driver collects a replica of a range merged away while its node was down (node
    // simulation seed 40030); the range that took its keys in may hold them on the same node.
    const c = (cluster = await HostCluster.start({ nodeCount: 1, coreCount: 1, seed: 26 }));
    await c.createShards([5]);
    await c.tickUntil('a leader', async () => (await c.agreedLeaders([5])) !== undefined, 100);
    for (const name of ['a', 'z']) expect((await c.write(5, { op: 'put', key: shardKey(5, name), value: key(name) })).ok).toBe(true);
    await c.stopNode(1);
    // Range 6 held [s000005/m, the end of range 5) at epoch 1 before range 5 took it in.
    const store = await NodeStore.open({ dir: join(c.dirs.get(1)!, coreDirName(0)), nodeId: 1 });
    await store.createShard(groupId(6), { confState: { ...EMPTY_CONF_STATE, voters: [1, 2, 3].map(nodeId) }, descriptor: encodeShardRange({ start: shardKey(5, 'm'), end: shardBounds(5).end, epoch: 1 }) });
    await store.close();
    await c.startNode(1);
    await c.host(1).removeShard(groupId(6));
    expect(c.host(1).hasShard(groupId(6))).toBe(false);
    await c.tickUntil('a leader again', async () => (await c.agreedLeaders([5])) !== undefined, 100);
    const read = async (name: string) => text((await c.host(1).get(groupId(5), shardKey(5, name)))?.value);
    expect([await read('a'), await read('z')]).toEqual(['a', 'z']);
  });

  it('a replica still waiting for its first snapshot grants no vote', async () => {
    // Found by the whole-node simulation (seed 5834): such a replica, created on a node removed earlier
    // and being added again, voted for a restarted candidate whose stale configuration still named
    // it; that candidate won a term beside the real leader of the same term.
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 25 }));
    await c.host(3).createShard({ shardId: groupId(7), voters: [], join: true });
    const termOf = async () => (await c.host(3).shards()).find((s) => s.shardId === 7)!.term;
    const rejectedOf = async () => (await c.host(3).coreStats()).reduce((n, s) => n + s.messagesRejected, 0);
    const [termBefore, rejectedBefore] = [await termOf(), await rejectedOf()];
    // A candidate on node 1 (no replica of shard 7 there: only its messages are needed) asks node 3.
    for (const type of ['preVote', 'vote'] as const) {
      const vote = { type, from: nodeId(1), to: nodeId(3), term: termBefore + 5, index: 100, logTerm: termBefore + 4, transfer: false };
      c.network.endpoint(1).send(3, encodeSegment({ heartbeats: [], heartbeatResponses: [], sections: [7, encodeBatch([{ shardId: groupId(7), message: vote }])], wakes: [], notLeading: [] }));
    }
    await c.settle();
    // Refused before Raft saw it: no vote, not even the candidate's term.
    expect(await termOf()).toBe(termBefore);
    expect(await rejectedOf()).toBe(rejectedBefore + 2);
  });

  it('makes an empty replica for a leader that keeps sending to it, never for a candidate', async () => {
    // Found by the whole-node simulation (seed 76109): a right half held only by a candidate. The other
    // nodes adopted it empty on its vote requests (which an empty replica refuses anyway) before their
    // replicas of the parent applied the split, and the split then dropped the right half's data there.
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 2, seed: 26 }));
    const send = (type: 'preVote' | 'vote' | 'append', term: number) => {
      const message = type === 'append' ? { type, from: nodeId(1), to: nodeId(3), term, index: 5, logTerm: 5, entries: [], commit: 5 } : { type, from: nodeId(1), to: nodeId(3), term, index: 5, logTerm: 5, transfer: false };
      c.network.endpoint(1).send(3, encodeSegment({ heartbeats: [], heartbeatResponses: [], sections: [9, encodeBatch([{ shardId: groupId(9), message }])], wakes: [], notLeading: [] }));
    };
    // Vote requests every few ticks, long past the Host's adoption delay (20 ticks of traffic).
    for (let t = 0; t < 30; t++) {
      send(t % 2 === 0 ? 'preVote' : 'vote', 6 + t);
      await c.tick(4);
    }
    expect(c.host(3).hasShard(groupId(9))).toBe(false);
    // A leader's appends as long: the node makes a replica for it to catch up.
    for (let t = 0; t < 30 && !c.host(3).hasShard(groupId(9)); t++) {
      send('append', 40);
      await c.tick(4);
    }
    expect(c.host(3).hasShard(groupId(9))).toBe(true);
    expect((await c.host(3).shards()).find((s) => s.shardId === 9)).toMatchObject({ epoch: 0, applied: 0 });
  });

  it('creates and removes shards while others keep serving; a removed replica drops its data and its traffic', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 2, seed: 22 }));
    await c.createShards([1, 2]);
    await c.tickUntil('leaders', async () => (await c.agreedLeaders([1, 2])) !== undefined, 100);
    expect((await c.write(1, { op: 'put', key: shardKey(1, 'a'), value: key('1') })).ok).toBe(true);
    expect((await c.write(2, { op: 'put', key: shardKey(2, 'b'), value: key('2') })).ok).toBe(true);
    await c.tick(2);

    // Shard 3 appears on the running nodes and elects while shard 1 and 2 keep working.
    await c.createShards([3]);
    await c.tickUntil('shard 3 leader', async () => (await c.agreedLeaders([3])) !== undefined, 100);
    expect((await c.write(3, { op: 'put', key: shardKey(3, 'c'), value: key('3') })).ok).toBe(true);

    // Remove shard 2 everywhere: its data is gone, shard 1 is untouched, and re-creating it starts empty.
    for (const h of c.hosts.values()) await h.removeShard(groupId(2));
    for (const h of c.hosts.values()) {
      expect((await h.shards()).map((s) => s.shardId)).toEqual([1, 3]);
      await expect(h.get(groupId(2), shardKey(2, 'b'), { consistency: 'stale' })).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND' });
      expect((await h.get(groupId(1), shardKey(1, 'a'), { consistency: 'stale' }))?.value.toString()).toBe('1');
    }
    for (const h of c.hosts.values()) await h.createShard({ shardId: groupId(2), voters: c.nodeIds, bounds: shardBounds(2) });
    await c.tickUntil('shard 2 leader again', async () => (await c.agreedLeaders([2])) !== undefined, 100);
    for (const h of c.hosts.values()) expect(await h.get(groupId(2), shardKey(2, 'b'), { consistency: 'stale' })).toBeUndefined();
    expect((await c.write(1, { op: 'put', key: shardKey(1, 'a'), value: key('1b') })).ok).toBe(true);

    // A replica removed on one node only: its peers' messages for it are dropped and counted.
    const [one] = c.nodeIds;
    const before = (await c.host(one!).coreStats()).reduce((n, s) => n + s.messagesRejected, 0);
    await c.host(one!).removeShard(groupId(3));
    for (let i = 0; i < 3; i++) await c.write(3, { op: 'put', key: shardKey(3, `x${i}`), value: key('y') });
    await c.tick(3);
    const after = (await c.host(one!).coreStats()).reduce((n, s) => n + s.messagesRejected, 0);
    expect(after).toBeGreaterThan(before);
  });

  it('creates a replica asked for while its removal is under way after the removal, not before it', async () => {
    // The placement driver collects a node's stale replica and, in the same pass, moves the range back
    // onto that node: the "prepare" must not find the doomed replica present and then lose it.
    const c = (cluster = await HostCluster.start({ nodeCount: 1, coreCount: 2, seed: 25 }));
    const h = c.host(1);
    await h.createShard({ shardId: groupId(4), voters: [1] });
    await Promise.all([h.removeShard(groupId(4)), h.createShard({ shardId: groupId(4), voters: [], join: true })]);
    const held = (await h.shards()).find((s) => s.shardId === 4);
    expect(held).toBeDefined();
    expect(held!.epoch).toBe(0); // the new, empty replica: its leader catches it up
  });

  it('a write whose entry is in the log when its replica is removed fails OUTCOME_UNKNOWN, and may still commit', async () => {
    // Found by the whole-node simulation (seed 30039, 5 nodes): such a write failed SHARD_NOT_FOUND, the router
    // retried it, and the entry committed under the next leader too, so a conditional put ran twice.
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 25 }));
    await c.createShards([5]);
    await c.tickUntil('a leader', async () => (await c.agreedLeaders([5])) !== undefined, 100);
    const leader = (await c.agreedLeaders([5]))!.get(5)!;
    const others = c.nodeIds.filter((n) => n !== leader);
    // The followers get the entry; the leader hears nothing back, so it cannot commit it.
    for (const n of others) c.network.cut(n, leader);
    let outcome: { code?: string } | undefined;
    c.host(leader)
      .propose(groupId(5), { op: 'put', key: shardKey(5, 'once'), value: key('v'), ifVersion: 0 })
      .then(() => (outcome = { code: 'ok' }), (err: { code?: string }) => (outcome = err));
    await c.tick(3);
    expect(outcome, 'not committed while the leader hears no follower').toBeUndefined();
    await c.host(leader).removeShard(groupId(5));
    await c.tickUntil('the write answered', () => outcome !== undefined, 20);
    expect(outcome).toMatchObject({ code: 'OUTCOME_UNKNOWN', retryable: true });
    // It was right not to say "not written": the followers elect one of them, which commits the entry.
    const after = await c.write(5, { op: 'put', key: shardKey(5, 'once'), value: key('w'), ifVersion: 0 });
    expect(after).toMatchObject({ ok: false, code: 'VERSION_MISMATCH' });
  });

  it('refuses a duplicate shard and removal of one that is not there', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 1, coreCount: 1, seed: 23 }));
    const h = c.host(1);
    await h.createShard({ shardId: groupId(4), voters: [1] });
    await expect(h.createShard({ shardId: groupId(4), voters: [1] })).rejects.toMatchObject({ code: 'SHARD_EXISTS' });
    await expect(h.removeShard(groupId(9))).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND' });
  });

  it('places new shards on the least loaded core, or next to the shard they colocate with, and keeps them there across a restart', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 1, coreCount: 2, seed: 24 }));
    const h = c.host(1);
    for (const shardId of [10, 12, 14]) await h.createShard({ shardId: groupId(shardId), voters: [1], bounds: shardBounds(shardId) });
    expect((await h.coreStats()).map((s) => s.groupCount).sort()).toEqual([1, 2]);
    await h.createShard({ shardId: groupId(16), voters: [1], bounds: shardBounds(16), colocateWith: groupId(10) });
    expect(h.coreOf(16)).toBe(h.coreOf(10));
    const placement = new Map([10, 12, 14, 16].map((s) => [s, h.coreOf(s)]));
    await c.stopNode(1);
    const again = await c.startNode(1);
    for (const [shardId, core] of placement) expect(again.coreOf(shardId), `shard ${shardId}`).toBe(core);
    await c.tickUntil('leaders after restart', async () => (await c.agreedLeaders([10, 12, 14, 16])) !== undefined, 100);
    expect((await c.write(16, { op: 'put', key: shardKey(16, 'k'), value: key('v') })).ok).toBe(true);
  });

  it('puts an empty replica asked for next to its neighbour, though a removed one left its tombstone in another core, and starts it from that tombstone', async () => {
    // A move that aligns two ranges' voters for a merge adds the replica next to the neighbour it merges with.
    // A tombstone pinned it to its own core, where the merge could never happen (node simulation seed 209).
    const c = (cluster = await HostCluster.start({ nodeCount: 1, coreCount: 2, seed: 26 }));
    const h = c.host(1);
    await h.createShard({ shardId: groupId(10), voters: [1], bounds: shardBounds(10) });
    await h.createShard({ shardId: groupId(12), voters: [1], bounds: shardBounds(12) });
    expect(h.coreOf(12)).not.toBe(h.coreOf(10));
    await h.createShard({ shardId: groupId(4), voters: [1], bounds: shardBounds(4), colocateWith: groupId(12) });
    await c.tickUntil('shard 4 elected', async () => (await c.agreedLeaders([4])) !== undefined, 100);
    const term = (await h.shards()).find((s) => s.shardId === 4)!.term;
    expect(term).toBeGreaterThan(0);
    await h.removeShard(groupId(4));

    await h.createShard({ shardId: groupId(4), voters: [], join: true, colocateWith: groupId(10) });
    expect(h.coreOf(4)).toBe(h.coreOf(10));
    const joined = (await h.shards()).find((s) => s.shardId === 4)!;
    expect({ term: joined.term, epoch: joined.epoch }).toEqual({ term, epoch: 0 });
    // One replica across a restart: the store holding the tombstone does not claim it too.
    await c.stopNode(1);
    const again = await c.startNode(1);
    expect(again.coreOf(4)).toBe(again.coreOf(10));
    expect((await again.shards()).filter((s) => s.shardId === 4)).toHaveLength(1);
    // Without a neighbour to join, it goes into a core holding one of its tombstones (both do now).
    await again.removeShard(groupId(4));
    await again.createShard({ shardId: groupId(4), voters: [], join: true });
    expect(again.coreOf(4)).toBe(again.coreOf(10));
  });

  it('refuses reads LMDB cannot serve (oversized keys and scan bounds) and keeps serving', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 1, coreCount: 1, seed: 25 }));
    const h = c.host(1);
    await h.createShard({ shardId: groupId(1), voters: [1] });
    await c.tickUntil('leader', async () => (await c.agreedLeaders([1])) !== undefined, 50);
    const probes = [
      expect(h.get(groupId(1), new Uint8Array(1979), { consistency: 'stale' })).rejects.toMatchObject({ code: 'COMMAND_INVALID' }),
      expect(h.get(groupId(1), new Uint8Array(0))).rejects.toMatchObject({ code: 'COMMAND_INVALID' }),
      expect(h.scan(groupId(1), { start: new Uint8Array(0), end: new Uint8Array(1979).fill(1), limit: 3 })).rejects.toMatchObject({ code: 'COMMAND_INVALID' }),
      expect(h.scan(groupId(1), { start: new Uint8Array(1981), end: null, limit: 3 })).rejects.toMatchObject({ code: 'COMMAND_INVALID' }),
    ];
    await c.settle();
    await Promise.all(probes);
    expect((await c.write(1, { op: 'put', key: key('after'), value: key('ok') })).ok).toBe(true);
  });
});
