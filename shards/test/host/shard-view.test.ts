// The main thread's view of a node's replicas (host/shard-view.ts): what a duty that keeps a cursor
// reads is what changed since, and the view always equals what a full read of the cores says.
import { groupId, nodeId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { Host } from '../../src/host/host.js';
import { ShardChangeTracker, type ShardChange } from '../../src/host/shard-changes.js';
import type { Group } from '../../src/host/group.js';
import { ShardView } from '../../src/host/shard-view.js';
import type { ShardStatus } from '../../src/host/core-protocol.js';
import { useTempStores } from '../support/fixtures.js';
import { HostCluster, key, shardKey } from '../support/host-cluster.js';

useTempStores();

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const change = (shardId: number, commit: number): ShardChange => ({
  status: { shardId, role: 'follower', leader: 2, term: 1, commit, applied: commit, lastIndex: commit, firstIndex: 1, quiesced: false, voters: [1, 2], learners: [], start: new Uint8Array(0), end: null, epoch: 1 } satisfies ShardStatus,
  report: null,
});
const ids = (changes: readonly ShardChange[]) => changes.map((c) => c.status.shardId).sort((a, b) => a - b);

describe('ShardView', () => {
  it('answers the changes after a cursor, each replica once, as it is now', () => {
    const view = new ShardView();
    view.apply({ changed: [change(1, 1), change(2, 1), change(3, 1)], removed: [] });
    const first = view.since(0);
    expect([first.full, ids(first.changed)]).toEqual([true, [1, 2, 3]]);
    view.apply({ changed: [change(2, 5), change(2, 6)], removed: [3] });
    const next = view.since(first.cursor);
    expect([next.full, next.changed.map((c) => [c.status.shardId, c.status.commit]), next.removed]).toEqual([false, [[2, 6]], [3]]);
    expect(view.since(next.cursor)).toEqual({ cursor: next.cursor, full: false, changed: [], removed: [] });
    // A cursor from another view (ahead of this one): everything.
    expect(view.since(next.cursor + 5).full).toBe(true);
  });

  it('a full read replaces the view: replicas no core named are removed', () => {
    const view = new ShardView();
    view.apply({ changed: [change(1, 1), change(2, 1)], removed: [] });
    const cursor = view.cursor;
    view.replaceAll([{ changed: [change(1, 1)] }, { changed: [change(4, 1)] }]);
    const d = view.since(cursor);
    expect([ids(d.changed), d.removed]).toEqual([[1, 4], [2]]);
  });

  it('keeps a bounded journal: a caller too far behind gets everything', () => {
    const view = new ShardView();
    view.apply({ changed: [change(1, 1), change(2, 1)], removed: [] });
    const old = view.cursor;
    let recent = 0;
    for (let i = 0; i < 5_000; i++) {
      if (i === 4_990) recent = view.cursor;
      view.apply({ changed: [change(1, i + 2)], removed: [] });
    }
    expect(view.since(old).full).toBe(true);
    const d = view.since(recent);
    expect([d.full, ids(d.changed)]).toEqual([false, [1]]);
    expect((view as unknown as { journal: number[] }).journal.length).toBeLessThanOrEqual(2 * view.size + 1024);
  });
});

describe('ShardChangeTracker', () => {
  it('answers every replica, once, after it forgot more removed ids than it keeps', () => {
    const tracker = new ShardChangeTracker();
    const live = {
      id: 1,
      removed: false,
      isLeader: false,
      quiesced: true,
      bounds: { start: new Uint8Array(0), end: null, epoch: 1 },
      storage: { firstIndex: () => 1 },
      loaded: true,
      raw: { status: () => ({ softState: { role: 'follower', leader: 2 }, hardState: { term: 1, commit: 5 }, applied: 5, lastIndex: 5, config: { voters: [1, 2], learners: [] } }) },
    } as unknown as Group;
    const groups = new Map<number, Group>([[1, live]]);
    for (let id = 2; id <= 65_538; id++) tracker.forget({ id, removed: true } as unknown as Group);
    const sm = { scan: () => [] } as never;
    const first = tracker.take(groups, sm, { self: nodeId(1), splitKeyMinBytes: 1, full: false });
    expect([first.full, first.changed.map((c) => c.status.shardId), first.removed]).toEqual([true, [1], []]);
    expect(tracker.take(groups, sm, { self: nodeId(1), splitKeyMinBytes: 1, full: false })).toEqual({ changed: [], removed: [], full: false });
  });
});

/** What the view says (every replica) against a full read of the cores. */
async function expectViewMatches(h: Host): Promise<void> {
  const view = await h.shardChanges(0);
  const [statuses, reports] = await Promise.all([h.shards(), h.rangeReports({ splitKeyMinBytes: 1 })]);
  const byId = (a: { shardId: number }, b: { shardId: number }) => a.shardId - b.shardId;
  expect(view.changed.map((c) => c.status).sort(byId)).toEqual(statuses);
  expect(view.changed.flatMap((c) => (c.report === null ? [] : [c.report])).sort((a, b) => a.rangeId - b.rangeId)).toEqual(reports);
}

async function allQuiesced(c: HostCluster): Promise<boolean> {
  for (const h of c.hosts.values()) if ((await h.coreStats()).some((s) => s.activeGroupCount > 0)) return false;
  return true;
}

describe('Host.shardChanges', () => {
  it('reads nothing while every group sleeps, only the shard written, a destroyed one as removed; and matches a full read', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 2, seed: 8, host: { splitKeyMinBytes: 1 } }));
    const shardIds = Array.from({ length: 40 }, (_, i) => i + 1);
    await c.createShards(shardIds);
    await c.tickUntil('every shard elected a leader', async () => (await c.agreedLeaders(shardIds)) !== undefined, 100);
    await c.tickUntil('every group quiesced', () => allQuiesced(c), 60);
    const h = c.host(1);
    const first = await h.shardChanges(0);
    expect([first.full, ids(first.changed)]).toEqual([true, shardIds]);
    for (const host of c.hosts.values()) await expectViewMatches(host);

    await c.tick(20);
    const idle = await h.shardChanges(first.cursor);
    expect([idle.full, idle.changed, idle.removed]).toEqual([false, [], []]);

    expect(await c.write(17, { op: 'put', key: shardKey(17, 'k'), value: key('v') })).toMatchObject({ ok: true });
    const written = await h.shardChanges(idle.cursor);
    expect(ids(written.changed)).toEqual([17]);
    await c.tickUntil('the written group quiesced again', () => allQuiesced(c), 60);
    for (const host of c.hosts.values()) await expectViewMatches(host);

    // A read counts in its leader's report.
    const leader = c.host((await c.agreedLeaders([5]))!.get(5)!);
    const before = await leader.shardChanges(0);
    const readsBefore = before.changed.find((x) => x.status.shardId === 5)!.report!.readCount;
    await leader.get(groupId(5), shardKey(5, 'k'), { consistency: 'stale' });
    const read = await leader.shardChanges(before.cursor);
    expect(read.changed.map((x) => [x.status.shardId, x.report?.readCount])).toEqual([[5, readsBefore + 1]]);

    await h.removeShard(groupId(23));
    const removed = await h.shardChanges(written.cursor);
    expect(removed.removed).toEqual([23]);
    expect(ids(removed.changed)).not.toContain(23);
    await expectViewMatches(h);
  });
});
