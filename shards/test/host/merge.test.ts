// Merging two neighbouring ranges (kv/merge.ts): the right one freezes, the left one takes it in once
// every replica of the right applied the freeze. Nothing is lost, nothing served stale, and a replica
// behind holds the merge on its node until it caught up.
import { join } from 'node:path';
import { groupId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import { coreDirName } from '../../src/host/node-dir.js';
import { NodeStore } from '../../src/storage/node-store.js';
import type { CommitMergeCommand, FrozenRange, KvResult } from '../../src/kv/command.js';
import type { ShardStatus } from '../../src/host/core-protocol.js';
import { HostCluster, key, shardBounds, shardKey, text, withSend, withoutShard, type HostClusterOptions } from '../support/host-cluster.js';

const LEFT = 1;
const RIGHT = 100;
const SPLIT_KEY = shardKey(LEFT, 'k10');
const name = (i: number) => `k${String(i).padStart(2, '0')}`;
/** Where the range ended before its split, and the merged range ends again. */
const END = shardBounds(LEFT).end;
const sameEnd = (a: Uint8Array | null) => (a === null || END === null ? a === END : Buffer.compare(a, END) === 0);

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** Three nodes, one range split in two, 20 keys written across both halves. */
async function splitCluster(options: Partial<HostClusterOptions> = {}): Promise<HostCluster> {
  cluster = await HostCluster.start({ nodeCount: 3, coreCount: 2, seed: 11, ...options });
  const c = cluster;
  await c.createShards([LEFT]);
  await c.tickUntil('a leader for the range', async () => (await c.agreedLeaders([LEFT])) !== undefined, 100);
  for (let i = 0; i < 20; i++) expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(i)), value: key(`v${i}`) })).toMatchObject({ ok: true });
  expect(await c.write(LEFT, { op: 'split', key: SPLIT_KEY, newShardId: RIGHT, epoch: 1 })).toMatchObject({ ok: true });
  await c.tickUntil('a leader for the right half', async () => (await c.agreedLeaders([RIGHT])) !== undefined, 100);
  for (let i = 10; i < 20; i++) expect(await c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(i)), value: key(`r${i}`) })).toMatchObject({ ok: true });
  return c;
}

async function statusOn(c: HostCluster, node: number, shardId: number): Promise<ShardStatus | undefined> {
  return (await c.host(node).shards()).find((s) => s.shardId === shardId);
}

/** Any running replica's status of the shard (they agree on range and members once settled). */
async function anyStatus(c: HostCluster, shardId: number): Promise<ShardStatus> {
  for (const id of c.hosts.keys()) {
    const s = await statusOn(c, id, shardId);
    if (s !== undefined) return s;
  }
  throw new Error(`no replica of shard ${shardId}`);
}

async function freeze(c: HostCluster): Promise<FrozenRange> {
  const right = await anyStatus(c, RIGHT);
  const result = await c.write(RIGHT, { op: 'prepareMerge', key: right.start, targetShardId: LEFT, epoch: right.epoch, voters: [...right.voters].sort((a, b) => a - b) });
  expect(result).toMatchObject({ ok: true });
  return (result as Extract<KvResult, { frozen: FrozenRange }>).frozen;
}

async function commitCommand(c: HostCluster, frozen: FrozenRange): Promise<CommitMergeCommand> {
  const left = await anyStatus(c, LEFT);
  const right = await anyStatus(c, RIGHT);
  return { op: 'commitMerge', key: left.start, epoch: left.epoch, sourceShardId: RIGHT, sourceEnd: right.end, sourceEpoch: frozen.epoch, freezeIndex: frozen.index, freezeTerm: frozen.term, voters: [...left.voters].sort((a, b) => a - b) };
}

async function untilEveryReplicaFrozen(c: HostCluster, frozen: FrozenRange): Promise<void> {
  await c.tickUntil('every replica of the right half applied the freeze', async () => {
    for (const id of c.hosts.keys()) {
      const s = await statusOn(c, id, RIGHT);
      if (s === undefined || s.frozen?.index !== frozen.index || s.applied < frozen.index) return false;
    }
    return true;
  }, 100);
}

async function untilMergedEverywhere(c: HostCluster): Promise<void> {
  await c.tickUntil('every node took the right half in', async () => {
    for (const id of c.hosts.keys()) {
      const shards = await c.host(id).shards();
      const left = shards.find((s) => s.shardId === LEFT);
      if (shards.some((s) => s.shardId === RIGHT) || left === undefined || !sameEnd(left.end)) return false;
    }
    return true;
  }, 200);
}

/** Ticks until every running node's replica of `shardId` reads `value` at `k` (followers apply a commit from the next heartbeat). */
async function untilEveryNodeReads(c: HostCluster, shardId: number, k: Uint8Array, value: string): Promise<void> {
  await c.tickUntil(`every node reads ${value}`, async () => {
    for (const id of c.hosts.keys()) if ((await staleValue(c, id, shardId, k)) !== value) return false;
    return true;
  }, 50);
}

async function staleValue(c: HostCluster, node: number, shardId: number, k: Uint8Array): Promise<string | undefined> {
  let value: string | undefined | null = null;
  void c.host(node).get(groupId(shardId), k, { consistency: 'stale' }).then((v) => (value = v === undefined ? undefined : text(v.value)));
  await c.settle();
  for (let t = 0; value === null && t < 50; t++) await c.tick();
  return value ?? undefined;
}

describe('merge', () => {
  it('takes the right half back into the left: every key on every node, the right replicas gone, writes go on', async () => {
    const c = await splitCluster();
    const before = await anyStatus(c, LEFT);
    const frozen = await freeze(c);
    await untilEveryReplicaFrozen(c, frozen);
    const commit = await commitCommand(c, frozen);
    const result = await c.write(LEFT, commit);
    expect(result).toMatchObject({ ok: true, merged: { shardId: LEFT, end: END, sourceShardId: RIGHT, epoch: Math.max(before.epoch, frozen.epoch) + 1 } });
    await untilMergedEverywhere(c);

    // Every node holds every key, the right half's through the left range now.
    for (const id of c.hosts.keys()) {
      for (let i = 0; i < 20; i++) expect(await staleValue(c, id, LEFT, shardKey(LEFT, name(i)))).toBe(i < 10 ? `v${i}` : `r${i}`);
    }
    // Writes to the old right half go to the left range now; the right one is gone everywhere.
    expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(15)), value: key('merged') })).toMatchObject({ ok: true });
    await expect(c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(16)), value: key('x') }, 3)).rejects.toThrow();
    await untilEveryNodeReads(c, LEFT, shardKey(LEFT, name(15)), 'merged');

    // A merge proposed again (a driver retrying) is refused from the target's own state, and holds nothing.
    expect(await c.write(LEFT, commit)).toMatchObject({ ok: false, code: 'EPOCH_MISMATCH' });
    expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(3)), value: key('after-retry') })).toMatchObject({ ok: true });

    // Restarted, every node comes back with the merged range and nothing of the right half.
    for (const id of c.nodeIds) await c.stopNode(id);
    for (const id of c.nodeIds) await c.startNode(id);
    expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(19)), value: key('again') })).toMatchObject({ ok: true });
    for (const id of c.hosts.keys()) {
      expect((await c.host(id).shards()).map((s) => s.shardId)).toEqual([LEFT]);
      expect(await staleValue(c, id, LEFT, shardKey(LEFT, name(12)))).toBe('r12');
    }
  });

  it('a frozen range refuses writes, reads and membership changes; the freeze survives restarts', async () => {
    const c = await splitCluster();
    const frozen = await freeze(c);
    await untilEveryReplicaFrozen(c, frozen);
    // A freeze moves the epoch: routes planned against the range before it are stale.
    expect(frozen.epoch).toBe((await anyStatus(c, LEFT)).epoch + 1);

    await expect(c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(12)), value: key('late') })).rejects.toMatchObject({ code: 'RANGE_MERGING' });
    const leader = (await c.agreedLeaders([RIGHT]))!.get(RIGHT)!;
    await expect(c.host(leader).get(groupId(RIGHT), shardKey(LEFT, name(12)))).rejects.toMatchObject({ code: 'RANGE_MERGING' });
    await expect(c.host(leader).changeMembership(groupId(RIGHT), { epoch: frozen.epoch, changes: [{ type: 'removeNode', nodeId: leader }] })).rejects.toMatchObject({ code: 'RANGE_MERGING' });
    await expect(c.host(leader).removeShard(groupId(RIGHT))).rejects.toMatchObject({ code: 'RANGE_MERGING' });
    // A second freeze, or a split, is refused too.
    await expect(c.write(RIGHT, { op: 'split', key: shardKey(LEFT, 'k15'), newShardId: 101, epoch: frozen.epoch })).rejects.toMatchObject({ code: 'RANGE_MERGING' });
    // And the target does not freeze to merge away meanwhile (node simulation seed 659): its leader's node holds the frozen source.
    const left = await anyStatus(c, LEFT);
    await expect(c.write(LEFT, { op: 'prepareMerge', key: left.start, targetShardId: 99, epoch: left.epoch, voters: [...left.voters].sort((a, b) => a - b) })).rejects.toMatchObject({
      code: 'RANGE_MERGING',
      message: expect.stringContaining(`the target of shard ${RIGHT}'s merge`),
    });

    for (const id of c.nodeIds) await c.stopNode(id);
    for (const id of c.nodeIds) await c.startNode(id);
    await c.tickUntil('a leader for the right half after the restart', async () => (await c.agreedLeaders([RIGHT])) !== undefined, 100);
    await expect(c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(12)), value: key('late') })).rejects.toMatchObject({ code: 'RANGE_MERGING' });
    for (const id of c.hosts.keys()) expect((await statusOn(c, id, RIGHT))?.frozen).toEqual(frozen);

    // The merge completes after the restart, with the value written before the freeze.
    expect(await c.write(LEFT, await commitCommand(c, frozen))).toMatchObject({ ok: true });
    await untilMergedEverywhere(c);
    for (const id of c.hosts.keys()) expect(await staleValue(c, id, LEFT, shardKey(LEFT, name(12)))).toBe('r12');
  });

  it('a replica of the right half that never heard its freeze committed holds the merge on its node, then applies it from its own log', async () => {
    // Node `hidden` gets the right half's entries but no word of what committed (heartbeats dropped, commit
    // indexes zeroed): its replica then holds the freeze in its log, unapplied. That is where a power loss
    // leaves a replica whose commit and apply had not reached the disk (only the log is synced) — after the
    // others took their replicas of the right half in, and nobody is left to tell it.
    let hidden = 0;
    const c = await splitCluster({
      transportFor: (_from, endpoint) =>
        withSend(endpoint, (to, frame) =>
          endpoint.send(to, to !== hidden ? frame : withoutShard(frame, RIGHT, (m) => (m.type === 'heartbeat' ? undefined : 'commit' in m ? { ...m, commit: 0 } : m))),
        ),
    });
    const leaders = (await c.agreedLeaders([LEFT, RIGHT]))!;
    hidden = c.nodeIds.find((id) => id !== leaders.get(LEFT) && id !== leaders.get(RIGHT))!;
    expect(await c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(11)), value: key('hidden') })).toMatchObject({ ok: true });
    const frozen = await freeze(c);
    await c.tickUntil('the hidden replica holds the freeze in its log', async () => ((await statusOn(c, hidden, RIGHT))?.lastIndex ?? 0) >= frozen.index, 50);
    const before = (await statusOn(c, hidden, RIGHT))!;
    expect(before.commit).toBeLessThan(frozen.index);
    expect(before.frozen).toBeUndefined();

    expect(await c.write(LEFT, await commitCommand(c, frozen))).toMatchObject({ ok: true });
    await c.tickUntil('the other nodes took the right half in', async () => {
      for (const id of c.nodeIds) if (id !== hidden && (await statusOn(c, id, RIGHT)) !== undefined) return false;
      return true;
    }, 100);
    await untilMergedEverywhere(c);
    expect((await c.host(hidden).coreStats()).reduce((n, s) => n + s.mergesHeld, 0)).toBeGreaterThan(0);
    expect(await staleValue(c, hidden, LEFT, shardKey(LEFT, name(11)))).toBe('hidden');
    expect(await staleValue(c, hidden, LEFT, shardKey(LEFT, name(13)))).toBe('r13');
  });

  it('a node that missed the whole merge gets the merged range by snapshot, which supersedes its stale replica of the right half', async () => {
    const c = await splitCluster({ host: { compactionTriggerEntries: 16, compactionKeepEntries: 4 } });
    const leaders = (await c.agreedLeaders([LEFT, RIGHT]))!;
    const away = c.nodeIds.find((id) => id !== leaders.get(LEFT) && id !== leaders.get(RIGHT))!;
    await c.stopNode(away);
    expect(await c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(14)), value: key('while-away') })).toMatchObject({ ok: true });
    const frozen = await freeze(c);
    expect(await c.write(LEFT, await commitCommand(c, frozen))).toMatchObject({ ok: true });
    // Enough writes to the merged range that its log is compacted past what `away` holds.
    for (let i = 0; i < 30; i++) expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(i % 20)), value: key(`m${i}`) })).toMatchObject({ ok: true });

    await c.startNode(away);
    // Its stale replica of the right half (never frozen, at a lower epoch) overlaps the snapshot's range.
    expect((await statusOn(c, away, RIGHT))?.frozen).toBeUndefined();
    await untilMergedEverywhere(c);
    expect((await c.host(away).coreStats()).reduce((n, s) => n + s.snapshotsInstalled, 0)).toBeGreaterThan(0);
    for (let i = 0; i < 20; i++) expect(await staleValue(c, away, LEFT, shardKey(LEFT, name(i)))).toBe(`m${i < 10 ? i + 20 : i}`);
  });

  it('a node that missed the merge and a split after it: the snapshot takes over its stale right half and deletes its keys past the range', async () => {
    // Node simulation seed 47: the merged range split again inside the old right half, so the left range's
    // snapshot covered only part of the stale replica. Refused as an overlap, it was retried for ever.
    const c = await splitCluster({ host: { compactionTriggerEntries: 16, compactionKeepEntries: 4 } });
    const leaders = (await c.agreedLeaders([LEFT, RIGHT]))!;
    const away = c.nodeIds.find((id) => id !== leaders.get(LEFT) && id !== leaders.get(RIGHT))!;
    await c.stopNode(away);
    const frozen = await freeze(c);
    expect(await c.write(LEFT, await commitCommand(c, frozen))).toMatchObject({ ok: true });
    const TAIL = 200;
    const tailKey = shardKey(LEFT, name(15));
    expect(await c.write(LEFT, { op: 'split', key: tailKey, newShardId: TAIL, epoch: (await anyStatus(c, LEFT)).epoch })).toMatchObject({ ok: true });
    await c.tickUntil('a leader for the split-off tail', async () => (await c.agreedLeaders([TAIL])) !== undefined, 100);
    // The tail changes while `away` is down: a key deleted there must not come back from the stale replica's data.
    expect(await c.write(TAIL, { op: 'delete', key: shardKey(LEFT, name(16)) })).toMatchObject({ ok: true });
    expect(await c.write(TAIL, { op: 'put', key: shardKey(LEFT, name(17)), value: key('tail17') })).toMatchObject({ ok: true });
    // Enough writes to the left range that its log is compacted past what `away` holds.
    for (let i = 0; i < 30; i++) expect(await c.write(LEFT, { op: 'put', key: shardKey(LEFT, name(i % 15)), value: key(`m${i}`) })).toMatchObject({ ok: true });

    await c.startNode(away);
    await c.tickUntil('the node caught up on both ranges, its stale right half gone', async () => {
      const shards = await c.host(away).shards();
      const left = shards.find((s) => s.shardId === LEFT);
      const tail = shards.find((s) => s.shardId === TAIL);
      return !shards.some((s) => s.shardId === RIGHT) && left !== undefined && left.end !== null && Buffer.compare(left.end, tailKey) === 0 && tail !== undefined && tail.epoch > 0;
    }, 300);
    for (let i = 0; i < 15; i++) expect(await staleValue(c, away, LEFT, shardKey(LEFT, name(i)))).toBe(`m${i + 15}`);
    expect(await staleValue(c, away, TAIL, shardKey(LEFT, name(16)))).toBeUndefined();
    expect(await staleValue(c, away, TAIL, shardKey(LEFT, name(17)))).toBe('tail17');
    expect(await staleValue(c, away, TAIL, shardKey(LEFT, name(18)))).toBe('r18');
  });

  it("a target's replica made on a node holding the frozen source goes into the source's store", async () => {
    // Node simulation seed 91385: a node adopted the target's replica into the core with fewest replicas,
    // not the one holding the source frozen into it, and its merge gate waited there for ever.
    const c = await splitCluster();
    const node = 3;
    const sourceCore = c.host(node).coreOf(RIGHT);
    // The node loses its replica of the target, leaving no tombstone (it never held one here, say).
    await c.stopNode(node);
    const store = await NodeStore.open({ dir: join(c.dirs.get(node)!, coreDirName(sourceCore)), nodeId: node });
    await store.destroyShard(groupId(LEFT), shardBounds(LEFT));
    await store.close();
    await c.startNode(node);
    await freeze(c);
    await c.tickUntil('the freeze applied on the node', async () => (await statusOn(c, node, RIGHT))?.epoch === 3, 100);
    // The fewest-replicas core is the other one: only the frozen source's tells where the target goes.
    await c.host(node).createShard({ shardId: groupId(LEFT), voters: [], join: true });
    expect(c.host(node).coreOf(LEFT)).toBe(sourceCore);
  });

  it('a frozen range caught up by snapshot is frozen too', async () => {
    const c = await splitCluster({ host: { compactionTriggerEntries: 16, compactionKeepEntries: 4 } });
    const leaders = (await c.agreedLeaders([LEFT, RIGHT]))!;
    const away = c.nodeIds.find((id) => id !== leaders.get(LEFT) && id !== leaders.get(RIGHT))!;
    await c.stopNode(away);
    // The right half's log moves past what `away` holds, then freezes.
    for (let i = 0; i < 30; i++) expect(await c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(10 + (i % 10))), value: key(`w${i}`) })).toMatchObject({ ok: true });
    const frozen = await freeze(c);
    await c.startNode(away);
    await untilEveryReplicaFrozen(c, frozen);
    expect((await c.host(away).coreStats()).reduce((n, s) => n + s.snapshotsInstalled, 0)).toBeGreaterThan(0);
    expect((await statusOn(c, away, RIGHT))?.frozen).toEqual(frozen);
    await expect(c.host(away).get(groupId(RIGHT), shardKey(LEFT, name(12)), { consistency: 'stale' })).rejects.toMatchObject({ code: 'RANGE_MERGING' });
    expect(await c.write(LEFT, await commitCommand(c, frozen))).toMatchObject({ ok: true });
    await untilMergedEverywhere(c);
    for (let i = 0; i < 10; i++) expect(await staleValue(c, away, LEFT, shardKey(LEFT, name(10 + i)))).toBe(`w${20 + i}`);
  });

  it('rolls a merge back: the target fenced first (a commit planned before is refused), then the source serves again', async () => {
    const c = await splitCluster();
    const frozen = await freeze(c);
    await untilEveryReplicaFrozen(c, frozen);
    const commit = await commitCommand(c, frozen);
    const left = await anyStatus(c, LEFT);
    const rightStart = (await anyStatus(c, RIGHT)).start;
    // The commands check the freeze they undo; that the target is fenced first is the driver's rule.
    expect(await c.write(RIGHT, { op: 'rollbackMerge', key: rightStart, epoch: frozen.epoch, targetShardId: 999 })).toMatchObject({ ok: false, code: 'COMMAND_INVALID' });
    expect(await c.write(LEFT, { op: 'fenceMerge', key: left.start, epoch: left.epoch })).toMatchObject({ ok: true, fenced: { epoch: left.epoch + 1 } });
    expect(await c.write(LEFT, commit)).toMatchObject({ ok: false, code: 'EPOCH_MISMATCH' });
    expect(await c.write(RIGHT, { op: 'rollbackMerge', key: rightStart, epoch: frozen.epoch, targetShardId: LEFT })).toMatchObject({ ok: true, unfrozen: { epoch: frozen.epoch + 1 } });
    await c.tickUntil('every replica of the right half unfrozen', async () => {
      for (const id of c.hosts.keys()) if ((await statusOn(c, id, RIGHT))?.frozen !== undefined) return false;
      return true;
    }, 50);
    expect(await c.write(RIGHT, { op: 'put', key: shardKey(LEFT, name(12)), value: key('after-rollback') })).toMatchObject({ ok: true });
    await untilEveryNodeReads(c, RIGHT, shardKey(LEFT, name(12)), 'after-rollback');
    // And the pair can merge later, from the new epochs.
    const again = await freeze(c);
    await untilEveryReplicaFrozen(c, again);
    expect(await c.write(LEFT, await commitCommand(c, again))).toMatchObject({ ok: true });
    await untilMergedEverywhere(c);
  });
});
