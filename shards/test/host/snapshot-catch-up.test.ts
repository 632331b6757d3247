import { groupId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import { useTempStores } from '../support/fixtures.js';
import { HostCluster, key, shardKey, text } from '../support/host-cluster.js';

useTempStores();

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const shardIds = [1, 2, 3, 4];

describe('a replica behind the compacted log', () => {
  it('catches up by snapshot streamed beside the batches, then by log', async () => {
    const c = (cluster = await HostCluster.start({
      nodeCount: 3,
      coreCount: 2,
      seed: 11,
      host: { compactionTriggerEntries: 30, compactionKeepEntries: 5 },
    }));
    await c.createShards(shardIds);
    await c.tickUntil('leaders', async () => (await c.agreedLeaders(shardIds)) !== undefined, 100);
    const leaders = (await c.agreedLeaders(shardIds))!;
    // Stop a node that is a follower of shard 1, so shard 1's leader keeps writing past it.
    const stopped = c.nodeIds.find((n) => n !== leaders.get(1))!;
    await c.stopNode(stopped);

    for (let i = 0; i < 60; i++) {
      for (const shardId of shardIds) {
        const r = await c.write(shardId, { op: 'put', key: shardKey(shardId, `k${i % 7}`), value: key(`v${i}`) });
        expect(r.ok).toBe(true);
      }
    }
    const survivors = await Promise.all([...c.hosts.values()].map((h) => h.shards()));
    for (const list of survivors) for (const s of list) expect(s.firstIndex, `shard ${s.shardId} compacted past what the stopped node has`).toBeGreaterThan(2);

    const restarted = await c.startNode(stopped);
    for (const peer of c.nodeIds) if (peer !== stopped) c.host(peer).setPeer(stopped, `memory:${stopped}`);
    await c.tickUntil(
      'the restarted node has applied everything',
      async () => {
        const all = await c.statuses();
        return shardIds.every((shardId) => {
          const views = [...all.values()].map((l) => l.find((s) => s.shardId === shardId)!);
          return views.every((v) => v.applied === views[0]!.applied && v.applied === v.commit);
        });
      },
      300,
    );
    const stats = await restarted.coreStats();
    expect(stats.reduce((n, s) => n + s.snapshotsInstalled, 0)).toBeGreaterThanOrEqual(1);
    for (const shardId of shardIds) {
      for (let k = 0; k < 7; k++) {
        const latest = [...Array(60).keys()].filter((i) => i % 7 === k).pop()!;
        const v = await restarted.get(groupId(shardId), shardKey(shardId, `k${k}`), { consistency: 'stale' });
        expect(text(v?.value), `shard ${shardId} key k${k} on the restarted node`).toBe(`v${latest}`);
      }
    }
    // And it keeps up by log afterwards.
    const r = await c.write(1, { op: 'put', key: shardKey(1, 'after'), value: key('x') });
    expect(r.ok).toBe(true);
    await c.tick(3);
    expect(text((await restarted.get(groupId(1), shardKey(1, 'after'), { consistency: 'stale' }))?.value)).toBe('x');
  }, 120_000);

  it('fails a proposal its snapshot superseded with OUTCOME_UNKNOWN: the snapshot may hold it applied', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 12, host: { compactionTriggerEntries: 30, compactionKeepEntries: 5, requestTimeoutTicks: 2000 } }));
    await c.createShards([1]);
    await c.tickUntil('a leader', async () => (await c.agreedLeaders([1])) !== undefined, 100);
    const old = (await c.agreedLeaders([1]))!.get(1)!;
    // The leader appends a write nobody else hears of, then the others move on and compact past it.
    c.network.isolate(old);
    let outcome: { code?: string } | undefined;
    c.host(old)
      .propose(groupId(1), { op: 'put', key: shardKey(1, 'ghost'), value: key('g') })
      .then(() => (outcome = { code: 'ok' }), (err: { code?: string }) => (outcome = err));
    await c.tick(2);
    const others = c.nodeIds.filter((n) => n !== old);
    const newLeader = async () => (await Promise.all(others.map((n) => c.host(n).shards()))).flat().find((s) => s.shardId === 1 && s.leader !== 0 && s.leader !== old)?.leader;
    await c.tickUntil('a new leader', async () => (await newLeader()) !== undefined, 200);
    const leader = c.host((await newLeader())!);
    for (let i = 0; i < 60; i++) {
      let done = false;
      void leader.propose(groupId(1), { op: 'put', key: shardKey(1, `k${i % 5}`), value: key(`v${i}`) }).then(() => (done = true));
      await c.tickUntil(`write ${i} on the new leader`, () => done, 20);
    }
    expect(outcome, 'still waiting while isolated').toBeUndefined();
    c.network.rejoin(old);
    await c.tickUntil('the old leader answered', () => outcome !== undefined, 300);
    expect(outcome).toMatchObject({ code: 'OUTCOME_UNKNOWN' });
    expect((await c.host(old).coreStats()).reduce((n, s) => n + s.snapshotsInstalled, 0)).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
