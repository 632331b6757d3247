// Membership changes through the Host, as the placement driver makes them: a learner added on a node
// without the shard is created there by its leader's traffic and caught up by snapshot, promoted, and a
// voter replaced through a joint configuration; the replica removed destroys itself. And the leader
// reports placement plans from: sizes, load, split keys.
import { groupId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { ShardStatus } from '../../src/host/core-protocol.js';
import { HostCluster, key, shardKey, text } from '../support/host-cluster.js';

const SHARD = 1;
const name = (i: number) => `k${String(i).padStart(3, '0')}`;

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function leaderOf(c: HostCluster): Promise<number> {
  let leader = 0;
  await c.tickUntil('a leader', async () => {
    leader = (await c.agreedLeaders([SHARD]))?.get(SHARD) ?? 0;
    return leader !== 0;
  }, 200);
  return leader;
}

async function statusOf(c: HostCluster, node: number): Promise<ShardStatus | undefined> {
  return (await c.host(node).shards()).find((s) => s.shardId === SHARD);
}

/** Runs a Host request to completion while the cluster ticks. */
async function run<T>(c: HostCluster, request: Promise<T>): Promise<T> {
  let outcome: { ok: true; value: T } | { ok: false; err: unknown } | undefined;
  void request.then((value) => (outcome = { ok: true, value }), (err: unknown) => (outcome = { ok: false, err }));
  await c.settle();
  for (let t = 0; outcome === undefined && t < 300; t++) await c.tick();
  if (outcome === undefined) throw new Error('no answer within 300 ticks');
  if (!outcome.ok) throw outcome.err;
  return outcome.value;
}

describe('membership changes', () => {
  it('adds a learner where the shard is not, then promotes it while removing a voter in one joint change; the removed replica destroys itself', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 4, coreCount: 2, seed: 21 }));
    await c.createShards([SHARD], { voters: [1, 2, 3] });
    for (let i = 0; i < 30; i++) expect(await c.write(SHARD, { op: 'put', key: shardKey(SHARD, name(i)), value: key(`v${i}`) })).toMatchObject({ ok: true });
    let leader = await leaderOf(c);
    const epoch = (await statusOf(c, leader))!.epoch;

    // A plan made against another epoch is refused, and changes nothing.
    await expect(run(c, c.host(leader).changeMembership(groupId(SHARD), { epoch: epoch + 1, changes: [{ type: 'addLearner', nodeId: 4 }] }))).rejects.toMatchObject({ code: 'EPOCH_MISMATCH' });
    // Not the leader: a hint.
    const follower = [1, 2, 3].find((n) => n !== leader)!;
    await expect(run(c, c.host(follower).changeMembership(groupId(SHARD), { epoch, changes: [{ type: 'addLearner', nodeId: 4 }] }))).rejects.toMatchObject({ code: 'NOT_LEADER', leaderHint: leader });

    const added = await run(c, c.host(leader).changeMembership(groupId(SHARD), { epoch, changes: [{ type: 'addLearner', nodeId: 4 }] }));
    expect(added).toMatchObject({ ok: true, membership: { epoch: epoch + 1, voters: [1, 2, 3], learners: [4] } });
    await c.tickUntil('node 4 holds a caught-up learner', async () => {
      const s = await statusOf(c, 4);
      return s !== undefined && s.epoch === epoch + 1 && s.applied === (await statusOf(c, leader))!.applied;
    }, 300);
    expect((await statusOf(c, 4))!.learners).toEqual([4]);

    // Move node `leaving`'s voter to node 4 in one joint change (add before remove), led from elsewhere.
    const leaving = [1, 2, 3].find((n) => n !== leader)!;
    const moved = await run(c, c.host(leader).changeMembership(groupId(SHARD), { epoch: epoch + 1, changes: [{ type: 'addNode', nodeId: 4 }, { type: 'removeNode', nodeId: leaving }] }));
    expect(moved).toMatchObject({ ok: true, membership: { epoch: epoch + 2, votersOutgoing: [1, 2, 3] } });
    await c.tickUntil('the joint configuration left and the leaving replica gone', async () => {
      const s = await statusOf(c, leader);
      return s !== undefined && s.voters.length === 3 && s.voters.includes(4) && !s.voters.includes(leaving) && (await statusOf(c, leaving)) === undefined;
    }, 300);
    expect(c.host(leaving).hasShard(groupId(SHARD))).toBe(false);

    // The group goes on with node 4 as a voter: a write, then node 4 reads it and everything before.
    expect(await c.write(SHARD, { op: 'put', key: shardKey(SHARD, name(99)), value: key('after') })).toMatchObject({ ok: true });
    leader = await leaderOf(c);
    await c.tickUntil('node 4 applied the write', async () => (await statusOf(c, 4))!.applied === (await statusOf(c, leader))!.applied, 100);
    const reads = await run(c, Promise.all([0, 29, 99].map((i) => c.host(4).get(groupId(SHARD), shardKey(SHARD, name(i)), { consistency: 'stale' }))));
    expect(reads.map((r) => text(r?.value))).toEqual(['v0', 'v29', 'after']);
    // The removed node was told nothing but its own removal: its traffic-created copy does not come back.
    await c.tick(50);
    expect(c.host(leaving).hasShard(groupId(SHARD))).toBe(false);
  });

  it('a replica that applies its own removal while its log already adds its node back is kept, and catches up', async () => {
    // One committed entry per apply round: the cut-off replica catching up applies its removal in one
    // round and the change adding it back in a later one. It may have acknowledged entries past that
    // change by then, which its leader counts once the change applies there: destroying it lost them.
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 22, host: { raft: { applyBytesMax: 1 } } }));
    await c.createShards([SHARD], { voters: [1, 2, 3] });
    for (let i = 0; i < 5; i++) expect(await c.write(SHARD, { op: 'put', key: shardKey(SHARD, name(i)), value: key(`v${i}`) })).toMatchObject({ ok: true });
    const leader = await leaderOf(c);
    const victim = [1, 2, 3].find((n) => n !== leader)!;
    const other = [1, 2, 3].find((n) => n !== leader && n !== victim)!;
    await c.tickUntil('every replica applied the writes', async () => (await statusOf(c, victim))?.applied === (await statusOf(c, leader))?.applied, 100);
    const epoch = (await statusOf(c, leader))!.epoch;

    c.network.partition(victim, [leader, other]);
    expect(await run(c, c.host(leader).changeMembership(groupId(SHARD), { epoch, changes: [{ type: 'removeNode', nodeId: victim }] }))).toMatchObject({ ok: true });
    expect(await run(c, c.host(leader).changeMembership(groupId(SHARD), { epoch: epoch + 1, changes: [{ type: 'addLearner', nodeId: victim }] }))).toMatchObject({ ok: true, membership: { learners: [victim] } });
    expect(await c.write(SHARD, { op: 'put', key: shardKey(SHARD, name(5)), value: key('after') })).toMatchObject({ ok: true });
    c.network.healAll();

    await c.tickUntil('the replica cut off caught up as a learner', async () => {
      const s = await statusOf(c, victim);
      return s !== undefined && s.learners.includes(victim) && s.applied === (await statusOf(c, leader))!.applied;
    }, 300);
    const read = await run(c, c.host(victim).get(groupId(SHARD), shardKey(SHARD, name(5)), { consistency: 'stale' }));
    expect(text(read?.value)).toBe('after');
  });

  it('leader reports carry sizes kept current by apply, a middle key past a size, and a load split key', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 22 }));
    await c.createShards([SHARD]);
    let bytes = 0;
    for (let i = 0; i < 40; i++) {
      const k = shardKey(SHARD, name(i));
      const v = key(`value-${i}`);
      bytes += k.byteLength + v.byteLength;
      expect(await c.write(SHARD, { op: 'put', key: k, value: v })).toMatchObject({ ok: true });
    }
    const leader = c.host(await leaderOf(c));
    const first = (await leader.rangeReports({ splitKeyMinBytes: 1 })).find((r) => r.rangeId === SHARD)!;
    expect([first.keyCount, first.sizeBytes]).toEqual([40, bytes]);
    expect(text(first.sizeSplitKey)).toBe(text(shardKey(SHARD, name(20))));
    expect(first.progress.map((p) => p.nodeId).sort()).toEqual([1, 2, 3].filter((n) => n !== leader.nodeId));
    expect(first.writeCount).toBeGreaterThanOrEqual(40);

    // Overwrites and deletes move the counts without a rescan; below the size threshold no middle key.
    const k0 = shardKey(SHARD, name(0));
    expect(await c.write(SHARD, { op: 'delete', key: k0 })).toMatchObject({ ok: true });
    const k1 = shardKey(SHARD, name(1));
    expect(await c.write(SHARD, { op: 'put', key: k1, value: key('a-much-longer-value-1') })).toMatchObject({ ok: true });
    const second = (await leader.rangeReports({ splitKeyMinBytes: bytes * 10 })).find((r) => r.rangeId === SHARD)!;
    const expectedBytes = bytes - (k0.byteLength + key('value-0').byteLength) + (key('a-much-longer-value-1').byteLength - key('value-1').byteLength);
    expect([second.keyCount, second.sizeBytes, second.sizeSplitKey]).toEqual([39, expectedBytes, undefined]);

    // Load concentrated on keys 30..39: the load split key lies among them.
    for (let round = 0; round < 20; round++) {
      await run(c, Promise.all(Array.from({ length: 10 }, (_, i) => leader.get(groupId(SHARD), shardKey(SHARD, name(30 + i))))));
    }
    const third = (await leader.rangeReports({ splitKeyMinBytes: Number.MAX_SAFE_INTEGER })).find((r) => r.rangeId === SHARD)!;
    const loadKey = text(third.loadSplitKey)!;
    expect(loadKey >= text(shardKey(SHARD, name(30)))! && loadKey <= text(shardKey(SHARD, name(39)))!).toBe(true);
    expect(third.readCount).toBeGreaterThanOrEqual(200);
  });
});
