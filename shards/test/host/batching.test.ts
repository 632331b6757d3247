// Writes of one shard that reach its leader in one turn share one Raft entry: each is still answered
// with its own result, in arrival order, on every replica alike.
import { groupId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { KvResult } from '../../src/kv/command.js';
import { HostCluster, key, shardKey, text } from '../support/host-cluster.js';

const SHARD = 1;

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function answered<T>(c: HostCluster, requests: Promise<T>[]): Promise<T[]> {
  let done: PromiseSettledResult<T>[] | undefined;
  void Promise.allSettled(requests).then((r) => (done = r));
  await c.settle();
  for (let t = 0; done === undefined && t < 300; t++) await c.tick();
  if (done === undefined) throw new Error('requests got no answer within 300 ticks');
  return done.map((r) => {
    if (r.status === 'rejected') throw r.reason;
    return r.value;
  });
}

describe('write batching', () => {
  it('folds one turn of writes into one entry, answering each with its own result in order', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 41 }));
    await c.createShards([SHARD]);
    let leaderId = 0;
    await c.tickUntil('a leader', async () => (leaderId = (await c.agreedLeaders([SHARD]))?.get(SHARD) ?? 0) !== 0, 100);
    const leader = c.host(leaderId);
    const entriesBefore = (await leader.coreStats())[0]!;

    // Two creates of each key (ifVersion 0): the first in arrival order wins, the second sees its version.
    // Then an unconditional put and a delete of the same key, which must apply after both.
    const names = Array.from({ length: 8 }, (_, i) => `k${i}`);
    const requests: Promise<KvResult>[] = [];
    for (const n of names) {
      requests.push(leader.propose(groupId(SHARD), { op: 'put', key: shardKey(SHARD, n), value: key(`${n}-first`), ifVersion: 0 }));
      requests.push(leader.propose(groupId(SHARD), { op: 'put', key: shardKey(SHARD, n), value: key(`${n}-second`), ifVersion: 0 }));
    }
    requests.push(leader.propose(groupId(SHARD), { op: 'put', key: shardKey(SHARD, 'k0'), value: key('k0-last') }));
    requests.push(leader.propose(groupId(SHARD), { op: 'delete', key: shardKey(SHARD, 'k1') }));
    const results = await answered(c, requests);

    for (let i = 0; i < names.length; i++) {
      const first = results[2 * i]!;
      const second = results[2 * i + 1]!;
      expect(first).toMatchObject({ ok: true });
      expect(second).toEqual({ ok: false, code: 'VERSION_MISMATCH', currentVersion: (first as { version: number }).version });
    }
    const last = results[16]!;
    expect(last).toMatchObject({ ok: true });
    // Versions only grow, within one entry too.
    expect((last as { version: number }).version).toBeGreaterThan((results[0] as { version: number }).version);
    expect(results[17]).toEqual({ ok: true, version: 0 });

    const after = (await leader.coreStats())[0]!;
    expect(after.proposals - entriesBefore.proposals).toBe(18);
    // All 18 arrived in one turn of the core: one entry.
    expect(after.proposalEntries - entriesBefore.proposalEntries).toBe(1);

    // Every replica applied the same outcome.
    await c.tickUntil('every replica applied', async () => {
      for (const h of c.hosts.values()) {
        const v = await h.get(groupId(SHARD), shardKey(SHARD, 'k7'), { consistency: 'stale' }).catch(() => undefined);
        if (v === undefined) return false;
      }
      return true;
    }, 100);
    for (const h of c.hosts.values()) {
      expect(text((await h.get(groupId(SHARD), shardKey(SHARD, 'k0'), { consistency: 'stale' }))!.value)).toBe('k0-last');
      expect(await h.get(groupId(SHARD), shardKey(SHARD, 'k1'), { consistency: 'stale' })).toBeUndefined();
      for (const n of names.slice(2)) expect(text((await h.get(groupId(SHARD), shardKey(SHARD, n), { consistency: 'stale' }))!.value)).toBe(`${n}-first`);
    }
  });

  it('proposes the pending writes before a checksum, so the check covers them', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 1, coreCount: 1, seed: 42 }));
    await c.createShards([SHARD]);
    await c.tickUntil('a leader', async () => (await c.agreedLeaders([SHARD])) !== undefined, 100);
    const h = c.host(1);
    const writes = Array.from({ length: 5 }, (_, i) => h.propose(groupId(SHARD), { op: 'put', key: shardKey(SHARD, `c${i}`), value: key('v') }));
    const check = h.proposeChecksum(groupId(SHARD), 7);
    const results = await answered(c, [...writes, check]);
    const writeIndexes = results.slice(0, 5).map((r) => (r as { version: number }).version);
    const checksum = results[5] as { checksum: { index: number } };
    // The batch entry's index (every write's version) is below the checksum entry's.
    for (const v of writeIndexes) expect(v).toBeLessThan(checksum.checksum.index);
  });
});
