// Splitting a range as a Raft command: both halves serve at once on every replica, writes in
// flight are neither lost nor applied twice, and the split survives restarts and lagging replicas.
import { groupId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { KvResult } from '../../src/kv/command.js';
import { HostCluster, key, shardBounds, shardKey, text } from '../support/host-cluster.js';

const LEFT = 1;
const RIGHT = 100;
const SPLIT_KEY = shardKey(LEFT, 'k10');
const name = (i: number) => `k${String(i).padStart(2, '0')}`;

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function started(): Promise<HostCluster> {
  cluster = await HostCluster.start({ nodeCount: 3, coreCount: 2, seed: 7 });
  await cluster.createShards([LEFT]);
  await cluster.tickUntil('a leader for the range', async () => (await cluster!.agreedLeaders([LEFT])) !== undefined, 100);
  return cluster;
}

async function leaderOf(c: HostCluster, shardId: number): Promise<number> {
  let leader = 0;
  await c.tickUntil(`a leader for shard ${shardId}`, async () => {
    leader = (await c.agreedLeaders([shardId]))?.get(shardId) ?? 0;
    return leader !== 0;
  }, 100);
  return leader;
}

/** Runs `start` (which issues requests) and keeps the cluster ticking until every request answered. */
async function answered<T>(c: HostCluster, requests: Promise<T>[]): Promise<PromiseSettledResult<T>[]> {
  let done: PromiseSettledResult<T>[] | undefined;
  void Promise.allSettled(requests).then((r) => (done = r));
  await c.settle();
  for (let t = 0; done === undefined && t < 300; t++) await c.tick();
  if (done === undefined) throw new Error('requests got no answer within 300 ticks');
  return done;
}

describe('split', () => {
  it("elects the right half's leader within a few ticks, not an election timeout: it campaigns once the followers hold it", async () => {
    const c = await started();
    for (let i = 0; i < 20; i++) expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(i)), value: key(`v${i}`) })).toMatchObject({ ok: true });
    const leader = c.host(await leaderOf(c, LEFT));
    const [split] = await answered(c, [leader.propose(groupId(LEFT), { op: 'split', key: SPLIT_KEY, newShardId: RIGHT, epoch: 1 })]);
    expect(split).toMatchObject({ status: 'fulfilled', value: { ok: true } });
    // Campaigning in the round that applied the split, its vote requests reached followers that had not
    // applied it yet (no replica to vote with): the right half then waited out an election timeout.
    const ticks = await c.tickUntil('a leader for the right half', async () => (await c.agreedLeaders([RIGHT])) !== undefined, 100);
    expect(ticks).toBeLessThanOrEqual(3);
  });

  it('splits a range under writes: both halves serve, writes after the split point are refused once and land on the right half', async () => {
    const c = await started();
    for (let i = 0; i < 20; i++) expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(i)), value: key(`v${i}`) })).toMatchObject({ ok: true });
    const leader = c.host(await leaderOf(c, LEFT));
    const statusBefore = (await leader.shards()).find((s) => s.shardId === LEFT)!;
    expect(statusBefore.epoch).toBe(1);

    // Writes to keys on both sides, some proposed before and some after the split, all in flight together.
    const before = Array.from({ length: 10 }, (_, i) => leader.propose(groupId(LEFT), { op: 'put', key: shardKey(LEFT, name(i * 2)), value: key('before') }));
    const split = leader.propose(groupId(LEFT), { op: 'split', key: SPLIT_KEY, newShardId: RIGHT, epoch: 1 });
    const after = Array.from({ length: 10 }, (_, i) => leader.propose(groupId(LEFT), { op: 'put', key: shardKey(LEFT, name(i * 2 + 1)), value: key('after') }));
    const results = await answered(c, [...before, split, ...after]);
    const outcome = (r: PromiseSettledResult<KvResult>): KvResult => {
      if (r.status === 'rejected') throw r.reason;
      return r.value;
    };
    for (const r of results.slice(0, 10)) expect(outcome(r)).toMatchObject({ ok: true });
    expect(outcome(results[10]!)).toMatchObject({ ok: true, split: { left: { shardId: LEFT, epoch: 2 }, right: { shardId: RIGHT, epoch: 2 } } });
    const refused: number[] = [];
    results.slice(11).forEach((r, i) => {
      const k = i * 2 + 1;
      const o = outcome(r);
      // Left-half keys apply on the left; right-half keys proposed after the split are refused, deterministically.
      if (k < 10) expect(o).toMatchObject({ ok: true });
      else {
        expect(o).toMatchObject({ ok: false, code: 'KEY_OUT_OF_RANGE' });
        refused.push(k);
      }
    });
    expect(refused).toEqual([11, 13, 15, 17, 19]);

    // Every replica has both halves, epoch 2, all three voters.
    await c.tickUntil('the right half on every node', async () => {
      for (const h of c.hosts.values()) if (!(await h.shards()).some((s) => s.shardId === RIGHT)) return false;
      return true;
    }, 50);
    const { start, end } = shardBounds(LEFT);
    for (const h of c.hosts.values()) {
      const shards = await h.shards();
      const l = shards.find((s) => s.shardId === LEFT)!;
      const r = shards.find((s) => s.shardId === RIGHT)!;
      expect([text(l.start), text(l.end!), l.epoch]).toEqual([text(start), text(SPLIT_KEY), 2]);
      expect([text(r.start), text(r.end!), r.epoch]).toEqual([text(SPLIT_KEY), text(end), 2]);
      expect(r.voters).toEqual([1, 2, 3]);
    }

    // The right half elects and serves its keys with the values written before the split; the refused writes never landed.
    const rightLeader = c.host(await leaderOf(c, RIGHT));
    const readRight = (i: number) => rightLeader.get(groupId(RIGHT), shardKey(LEFT, name(i)));
    const values = await answered(c, Array.from({ length: 10 }, (_, i) => readRight(10 + i)));
    expect(values.map((v) => (v.status === 'fulfilled' ? text(v.value?.value) : 'error'))).toEqual([
      'before', 'v11', 'before', 'v13', 'before', 'v15', 'before', 'v17', 'before', 'v19',
    ]);
    for (const k of refused) expect(await c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(k)), value: key('after') })).toMatchObject({ ok: true });

    // The left half refuses what is no longer its own, at proposal and at serving time.
    await expect(answered(c, [leader.get(groupId(LEFT), shardKey(LEFT, name(15)))])).resolves.toMatchObject([{ status: 'rejected', reason: { code: 'KEY_OUT_OF_RANGE' } }]);
    const scans = await answered(c, [
      leader.scan(groupId(LEFT), { start, end, limit: 100 }),
      leader.scan(groupId(LEFT), { start, end: SPLIT_KEY, limit: 100 }),
    ]);
    expect(scans[0]).toMatchObject({ status: 'rejected', reason: { code: 'KEY_OUT_OF_RANGE' } });
    expect(scans[1]!.status === 'fulfilled' ? scans[1]!.value.map((p) => text(p.key)) : []).toEqual(Array.from({ length: 10 }, (_, i) => text(shardKey(LEFT, name(i)))));

    // A split against an old epoch, or at a key outside the range, changes nothing.
    expect(await c.write(LEFT, { op: 'split', key: shardKey(LEFT, 'k05'), newShardId: 101, epoch: 1 })).toMatchObject({ ok: false, code: 'EPOCH_MISMATCH', currentEpoch: 2 });
    await expect(c.write(LEFT, { op: 'split', key: SPLIT_KEY, newShardId: 101, epoch: 2 })).rejects.toMatchObject({ code: 'KEY_OUT_OF_RANGE' });
    expect(await c.write(LEFT, { op: 'split', key: start, newShardId: 101, epoch: 2 })).toMatchObject({ ok: false, code: 'KEY_OUT_OF_RANGE' });
    for (const h of c.hosts.values()) expect((await h.shards()).map((s) => s.shardId)).toEqual([LEFT, RIGHT]);

    // Restart every node: both halves come back from LMDB with their ranges, epochs and data.
    for (const id of c.nodeIds) await c.stopNode(id);
    for (const id of c.nodeIds) await c.startNode(id);
    // Groups restart dormant and wake on demand: a write to the right half elects it.
    expect(await c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(18)), value: key('again') })).toMatchObject({ ok: true });
    const again = c.host(await leaderOf(c, RIGHT));
    const reread = await answered(c, [again.get(groupId(RIGHT), shardKey(LEFT, name(19))), again.get(groupId(RIGHT), shardKey(LEFT, name(18)))]);
    expect(reread.map((r) => (r.status === 'fulfilled' ? text(r.value?.value) : 'error'))).toEqual(['after', 'again']);
    for (const h of c.hosts.values()) {
      const r = (await h.shards()).find((s) => s.shardId === RIGHT)!;
      expect([text(r.start), r.epoch]).toEqual([text(SPLIT_KEY), 2]);
    }
  });

  it('a replica down during the split creates the right half when it applies the split on return, and catches up', async () => {
    const c = await started();
    for (let i = 0; i < 20; i++) expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(i)), value: key(`v${i}`) })).toMatchObject({ ok: true });
    const leaderId = await leaderOf(c, LEFT);
    const down = c.nodeIds.find((id) => id !== leaderId)!;
    await c.stopNode(down);
    expect(await c.write(LEFT, { op: 'split', key: SPLIT_KEY, newShardId: RIGHT, epoch: 1 })).toMatchObject({ ok: true });
    await leaderOf(c, RIGHT);
    for (let i = 10; i < 20; i++) expect(await c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(i)), value: key('later') })).toMatchObject({ ok: true });

    await c.startNode(down);
    const back = c.host(down);
    await c.tickUntil('the returning node applies the split and catches up the right half', async () => {
      const shards = await back.shards();
      const right = shards.find((s) => s.shardId === RIGHT);
      const others = (await c.host(leaderId).shards()).find((s) => s.shardId === RIGHT);
      // Writes to both halves wake the returning node's groups (they start dormant).
      void c.host(leaderId).propose(groupId(LEFT), { op: 'put', key: shardKey(LEFT, 'k00'), value: key('poke') }).catch(() => undefined);
      return right !== undefined && others !== undefined && right.applied === others.applied && right.applied > 5;
    }, 200);
    const stale = await answered(c, Array.from({ length: 10 }, (_, i) => back.get(groupId(RIGHT), shardKey(LEFT, name(10 + i)), { consistency: 'stale' })));
    expect(stale.map((v) => (v.status === 'fulfilled' ? text(v.value?.value) : 'error'))).toEqual(Array.from({ length: 10 }, () => 'later'));
  });
});
