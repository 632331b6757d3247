// A replica that missed a split gets both halves: by snapshot of the left half past the split (its log
// compacted away) plus an empty right-half replica made on the first message of that half's leader; or,
// when the right half's leader reaches it before it applies the split, without a second copy of the right
// half anywhere on the node. One store, or two cores' stores.
import { groupId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { ShardStatus } from '../../src/host/core-protocol.js';
import { HostCluster, key, shardBounds, shardKey, text } from '../support/host-cluster.js';

const LEFT = 1;
const RIGHT = 100;
const SPLIT_KEY = shardKey(LEFT, 'k10');
const KEY_COUNT = 20;
const name = (i: number) => `k${String(i).padStart(2, '0')}`;
/** Key i of the range, left half below 10, right half from 10. */
const rangeKey = (i: number) => shardKey(LEFT, name(i));
const halfOf = (i: number) => (i < 10 ? LEFT : RIGHT);

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function leaderOf(c: HostCluster, shardId: number): Promise<number> {
  let leader = 0;
  await c.tickUntil(`a leader for shard ${shardId}`, async () => {
    leader = (await c.agreedLeaders([shardId]))?.get(shardId) ?? 0;
    return leader !== 0;
  }, 200);
  return leader;
}

async function statusOf(c: HostCluster, node: number, shardId: number): Promise<ShardStatus | undefined> {
  return (await c.host(node).shards()).find((s) => s.shardId === shardId);
}

/** Stale reads of every key of the range on `node`, each through the half that owns it. */
async function readAll(c: HostCluster, node: number): Promise<string[]> {
  const h = c.host(node);
  const reads = Array.from({ length: KEY_COUNT }, (_, i) => h.get(groupId(halfOf(i)), rangeKey(i), { consistency: 'stale' }));
  let done: PromiseSettledResult<Awaited<(typeof reads)[number]>>[] | undefined;
  void Promise.allSettled(reads).then((r) => (done = r));
  for (let t = 0; done === undefined && t < 100; t++) await c.tick();
  return done!.map((r) => (r.status === 'fulfilled' ? (text(r.value?.value) ?? 'missing') : `error ${(r.reason as { code?: string }).code}`));
}

async function expectHalves(c: HostCluster, node: number): Promise<void> {
  const { start, end } = shardBounds(LEFT);
  const shards = await c.host(node).shards();
  expect(shards.map((s) => s.shardId)).toEqual([LEFT, RIGHT]);
  const [l, r] = shards as [ShardStatus, ShardStatus];
  expect([text(l.start), text(l.end!), l.epoch]).toEqual([text(start), text(SPLIT_KEY), 2]);
  expect([text(r.start), text(r.end!), r.epoch]).toEqual([text(SPLIT_KEY), text(end), 2]);
  expect(r.voters).toEqual([1, 2, 3]);
}

/** Ticks (with writes to both halves, which wake dormant groups) until `node` holds both halves as applied as their leaders. */
async function untilCaughtUp(c: HostCluster, node: number, what: string): Promise<void> {
  await c.tickUntil(what, async () => {
    for (const shardId of [LEFT, RIGHT]) {
      const leader = (await c.agreedLeaders([shardId]))?.get(shardId);
      const mine = await statusOf(c, node, shardId);
      if (leader === undefined || mine === undefined) return false;
      const theirs = (await statusOf(c, leader, shardId))!;
      if (mine.epoch !== 2 || mine.applied !== theirs.applied) return false;
    }
    return true;
  }, 400);
}

async function snapshotsInstalled(c: HostCluster, node: number): Promise<number> {
  return (await c.host(node).coreStats()).reduce((n, s) => n + s.snapshotsInstalled, 0);
}

describe.each([1, 2])('a replica that missed a split (%i core(s) per node)', (coreCount) => {
  it('gets the left half by snapshot past the split and the right half from its leader, with the data of both', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount, seed: 11, host: { compactionTriggerEntries: 16, compactionKeepEntries: 4 } }));
    await c.createShards([LEFT]);
    for (let i = 0; i < KEY_COUNT; i++) expect(await c.write(LEFT, { op: 'put', key: rangeKey(i), value: key(`v${i}`) })).toMatchObject({ ok: true });
    const leader = await leaderOf(c, LEFT);
    const down = c.nodeIds.find((id) => id !== leader)!;
    await c.stopNode(down);

    expect(await c.write(LEFT, { op: 'split', key: SPLIT_KEY, newShardId: RIGHT, epoch: 1 })).toMatchObject({ ok: true });
    const splitIndex = (await statusOf(c, leader, LEFT))!.applied;
    await leaderOf(c, RIGHT);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < KEY_COUNT; i++) expect(await c.write(halfOf(i), { op: 'put', key: rangeKey(i), value: key(`r${round}`) })).toMatchObject({ ok: true });
    }
    // Both logs moved on past what the returning replica holds: the split entry is gone from the left half's.
    expect((await statusOf(c, leader, LEFT))!.firstIndex).toBeGreaterThan(splitIndex + 1);
    expect((await statusOf(c, leader, RIGHT))!.firstIndex).toBeGreaterThan(6);

    await c.startNode(down);
    const installedBefore = await snapshotsInstalled(c, down);
    await untilCaughtUp(c, down, 'the returning replica holds both halves, caught up');
    await expectHalves(c, down);
    expect((await snapshotsInstalled(c, down)) - installedBefore).toBe(2);
    expect(await readAll(c, down)).toEqual(Array.from({ length: KEY_COUNT }, () => 'r2'));
    // The left half no longer serves the right half's keys here.
    const misrouted = c.host(down).get(groupId(LEFT), rangeKey(15), { consistency: 'stale' }).catch((err: unknown) => err);
    await c.settle();
    expect(await misrouted).toMatchObject({ code: 'KEY_OUT_OF_RANGE' });

    // From its own store after a restart, each half once.
    await c.stopNode(down);
    await c.startNode(down);
    await expectHalves(c, down);
    expect(await readAll(c, down)).toEqual(Array.from({ length: KEY_COUNT }, () => 'r2'));
  });

  it('makes no second right half when that half\'s leader reaches it before it applies the split', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount, seed: 12 }));
    await c.createShards([LEFT]);
    for (let i = 0; i < KEY_COUNT; i++) expect(await c.write(LEFT, { op: 'put', key: rangeKey(i), value: key(`v${i}`) })).toMatchObject({ ok: true });
    const a = await leaderOf(c, LEFT);
    const [lagging, b] = c.nodeIds.filter((id) => id !== a) as [number, number];
    // The lagging replica hears nothing from the left half's leader, so it does not learn of the split...
    c.network.cut(a, lagging);
    c.network.cut(lagging, a);
    expect(await c.write(LEFT, { op: 'split', key: SPLIT_KEY, newShardId: RIGHT, epoch: 1 })).toMatchObject({ ok: true });
    await c.tickUntil('the right half on both connected nodes', async () => (await statusOf(c, a, RIGHT)) !== undefined && (await statusOf(c, b, RIGHT)) !== undefined, 100);
    // ...while the right half, led from the other node, reaches it.
    if ((await leaderOf(c, RIGHT)) !== b) {
      await c.host(a).transferLeader(groupId(RIGHT), b);
      await c.tickUntil('the right half led by the connected follower', async () => (await statusOf(c, b, RIGHT))?.role === 'leader', 100);
    }
    for (let i = 10; i < KEY_COUNT; i++) expect(await c.write(RIGHT, { op: 'put', key: rangeKey(i), value: key('later') })).toMatchObject({ ok: true });
    await c.tickUntil('an empty right-half replica on the lagging node', async () => (await statusOf(c, lagging, RIGHT)) !== undefined, 100);
    await c.tick(60);
    const early = (await statusOf(c, lagging, RIGHT))!;
    const stale = (await statusOf(c, lagging, LEFT))!;
    expect(stale.epoch).toBe(1); // still the whole range, split not applied
    if (coreCount === 1) {
      // Same store as the stale left half, whose range covers it: the right half's snapshot must wait.
      expect(early.epoch).toBe(0);
      expect(early.applied).toBe(0);
    } else {
      // Another core's store: nothing overlaps there, so the right half catches up at once.
      expect(early.epoch).toBe(2);
      expect(early.applied).toBe((await statusOf(c, b, RIGHT))!.applied);
    }

    c.network.heal(a, lagging);
    c.network.heal(lagging, a);
    await untilCaughtUp(c, lagging, 'the lagging replica applies the split and holds both halves');
    await expectHalves(c, lagging);
    const expected = Array.from({ length: KEY_COUNT }, (_, i) => (i < 10 ? `v${i}` : 'later'));
    expect(await readAll(c, lagging)).toEqual(expected);

    // One copy of each half across the node's cores: a restart would refuse two (Host.start asserts it).
    await c.stopNode(lagging);
    await c.startNode(lagging);
    await expectHalves(c, lagging);
    expect(await readAll(c, lagging)).toEqual(expected);
  });
});

describe('a removed replica', () => {
  it('is not re-created by its leader\'s traffic, even after a restart; created again when asked, at its last term', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 2, seed: 13 }));
    await c.createShards([LEFT]);
    expect(await c.write(LEFT, { op: 'put', key: rangeKey(1), value: key('one') })).toMatchObject({ ok: true });
    const leader = await leaderOf(c, LEFT);
    const victim = c.nodeIds.find((id) => id !== leader)!;
    const term = (await statusOf(c, victim, LEFT))!.term;
    await c.host(victim).removeShard(groupId(LEFT));
    // Restarted, the node remembers the removal only through its tombstone. The leader, never told
    // (no membership change here), keeps sending to it: writes, heartbeats; nothing comes back.
    await c.stopNode(victim);
    await c.startNode(victim);
    for (let i = 0; i < 5; i++) expect(await c.write(LEFT, { op: 'put', key: rangeKey(i), value: key('more') })).toMatchObject({ ok: true });
    await c.tick(100);
    expect(await statusOf(c, victim, LEFT)).toBeUndefined();
    // Asked to (placement re-adding it), it comes back empty, owning no keys, at the term it had
    // reached: it may have voted in that term and must not vote again in it.
    await c.host(victim).createShard({ shardId: groupId(LEFT), voters: [], join: true });
    const back = (await statusOf(c, victim, LEFT))!;
    expect(term).toBeGreaterThan(0);
    expect(back.term).toBe(term);
    expect([back.epoch, back.applied, back.voters]).toEqual([0, 0, []]);
    await expect(c.host(victim).createShard({ shardId: groupId(LEFT), voters: [], join: true })).rejects.toMatchObject({ code: 'SHARD_EXISTS' });
  });
});
