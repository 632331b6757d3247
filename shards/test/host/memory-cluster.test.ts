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

const SHARD_COUNT = 100;
const shardIds = Array.from({ length: SHARD_COUNT }, (_, i) => i + 1);

/** Every running replica of every shard has applied the same last index, and reads the same value for `k`. */
async function expectConverged(c: HostCluster, k: string, expected: (shardId: number) => string): Promise<void> {
  const statuses = await c.statuses();
  for (const shardId of shardIds) {
    const applied = new Set<number>();
    for (const list of statuses.values()) {
      const s = list.find((x) => x.shardId === shardId)!;
      expect(s.applied, `shard ${shardId}: applied reaches commit`).toBe(s.commit);
      applied.add(s.applied);
    }
    expect([...applied], `shard ${shardId}: every replica applied the same index`).toHaveLength(1);
    for (const [node, host] of c.hosts) {
      const v = await host.get(groupId(shardId), shardKey(shardId, k), { consistency: 'stale' });
      expect(text(v?.value), `shard ${shardId} on node ${node}`).toBe(expected(shardId));
    }
  }
}

describe('3 nodes × 100 shards over the in-memory network', () => {
  it('elects, replicates, survives a partition of the node with most leaders, heals and converges', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 2, seed: 7 }));
    await c.createShards(shardIds);
    await c.tickUntil('every shard has one agreed leader', async () => (await c.agreedLeaders(shardIds)) !== undefined, 100);

    for (const shardId of shardIds) {
      const r = await c.write(shardId, { op: 'put', key: shardKey(shardId, 'k'), value: key(`v1-${shardId}`) });
      expect(r.ok).toBe(true);
    }
    // Linearizable reads through each shard's leader.
    const leaders = (await c.agreedLeaders(shardIds))!;
    for (const shardId of shardIds) {
      const read = c.host(leaders.get(shardId)!).get(groupId(shardId), shardKey(shardId, 'k'));
      await c.settle();
      expect(text((await read)?.value)).toBe(`v1-${shardId}`);
    }
    await c.tick(3);
    await expectConverged(c, 'k', (s) => `v1-${s}`);

    // Partition away the node that leads the most shards.
    const counts = new Map<number, number>();
    for (const l of leaders.values()) counts.set(l, (counts.get(l) ?? 0) + 1);
    const isolated = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    c.network.isolate(isolated);
    const majority = c.nodeIds.filter((id) => id !== isolated);
    const majorityAgrees = async (): Promise<boolean> => {
      const statuses = await c.statuses();
      return shardIds.every((shardId) => {
        const views = majority.map((n) => statuses.get(n)!.find((s) => s.shardId === shardId)!);
        return views.every((v) => v.leader !== 0 && v.leader !== isolated && v.leader === views[0]!.leader);
      });
    };
    await c.tickUntil('the majority elects new leaders for every shard', majorityAgrees, 300);

    for (const shardId of shardIds) {
      const r = await c.write(shardId, { op: 'put', key: shardKey(shardId, 'k'), value: key(`v2-${shardId}`) });
      expect(r.ok).toBe(true);
    }
    // The isolated node still holds the old values: it cannot have learned of the new writes.
    const stale = await c.host(isolated).get(groupId(1), shardKey(1, 'k'), { consistency: 'stale' });
    expect(text(stale?.value)).toBe('v1-1');

    c.network.rejoin(isolated);
    await c.tickUntil('every shard agrees on a leader after healing', async () => (await c.agreedLeaders(shardIds)) !== undefined, 300);
    // Lagging replicas catch up on the next append or heartbeat.
    await c.tickUntil(
      'every replica applied everything',
      async () => {
        const statuses = await c.statuses();
        return shardIds.every((shardId) => {
          const views = [...statuses.values()].map((l) => l.find((s) => s.shardId === shardId)!);
          return views.every((v) => v.applied === v.commit && v.commit === views[0]!.commit);
        });
      },
      300,
    );
    await expectConverged(c, 'k', (s) => `v2-${s}`);
  }, 240_000);
});
