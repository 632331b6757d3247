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
});
