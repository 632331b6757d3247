// The node's log tail (storage/log-tail.ts): group commits write every shard's
// entries and hard state as one record, checkpoints move them into the
// per-shard records. Seeded runs of appends (conflicting suffixes included),
// hard-state-only rounds, compactions, checkpoints (half of them compacting
// shards they move), cache releases,
// destroy-and-recreate and reopens over several shards must leave the store
// reading exactly what core's MemoryStorage and a plain hard-state model
// read, before and after every reopen.
import { MemoryStorage, SeededRng, groupId, nodeId, type Entry, type GroupId, type HardState, type Storage } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import type { NodeStore } from '../src/storage/node-store.js';
import { commitAndApplyStored, confState, entries, openStore, reopen, tempDir, useTempStores } from './support/fixtures.js';

useTempStores();

interface Model {
  memory: MemoryStorage;
  hard: HardState;
}

const SHARDS = [1, 2, 3, 4, 5, 6].map(groupId);
const CONF = confState({ voters: [1, 2, 3] });

function view(s: Storage): { first: number; last: number; terms: number[]; payloads: string[] } {
  const first = s.firstIndex();
  const last = s.lastIndex();
  const terms: number[] = [];
  for (let i = first - 1; i <= last; i++) terms.push(s.term(i));
  const payloads = s.entries(first, last + 1, Number.POSITIVE_INFINITY).map((e) => `${e.index}/${e.term}/${Buffer.from(e.data).toString('hex')}`);
  return { first, last, terms, payloads };
}

function check(store: NodeStore, models: Map<GroupId, Model>, where: string): void {
  expect(store.shardIds(), where).toEqual([...models.keys()].sort((a, b) => a - b));
  for (const [shardId, m] of models) {
    const s = store.storage(shardId);
    expect(view(s), `${where}: shard ${shardId} log`).toEqual(view(m.memory));
    expect(s.initialState().hardState, `${where}: shard ${shardId} hard state`).toEqual(m.hard);
  }
}

/** A write Raft could make: a suffix from above the commit index, terms never below what precedes it. */
function randomAppend(rand: () => number, m: Model): Entry[] {
  const last = m.memory.lastIndex();
  const lowest = Math.max(m.memory.firstIndex(), m.hard.commit + 1);
  const from = lowest + Math.floor(rand() * (last + 2 - lowest));
  const conflicting = from <= last;
  let term = Math.max(m.hard.term, m.memory.term(from - 1)) + (conflicting ? 1 : rand() < 0.2 ? 1 : 0);
  const terms: number[] = [];
  const count = 1 + Math.floor(rand() * 6);
  for (let i = 0; i < count; i++) {
    terms.push(term);
    if (rand() < 0.1) term++;
  }
  // Now and then big enough to go straight into the per-shard log (persist's direct writes).
  return entries(from, terms, rand() < 0.2 ? 2000 + Math.floor(rand() * 2000) : 1 + Math.floor(rand() * 40));
}

async function run(seed: number, steps: number): Promise<void> {
  const rng = new SeededRng(seed);
  const rand = () => rng.nextFloat();
  let store = await openStore(tempDir());
  const models = new Map<GroupId, Model>();
  const create = async (shardId: GroupId) => {
    await store.createShard(shardId, { confState: CONF });
    models.set(shardId, { memory: new MemoryStorage(), hard: store.storage(shardId).initialState().hardState });
  };
  for (const shardId of SHARDS) await create(shardId);
  const pick = () => SHARDS[Math.floor(rand() * SHARDS.length)]!;
  let checkpointCompactions = 0;
  /** Commits and applies the shard's log up to a random index it holds, if any: the index. */
  const applySome = async (shardId: GroupId): Promise<number | undefined> => {
    const m = models.get(shardId)!;
    const first = m.memory.firstIndex();
    const last = m.memory.lastIndex();
    if (last < first) return undefined;
    const upTo = first + Math.floor(rand() * (last - first + 1));
    await commitAndApplyStored(store, shardId, upTo);
    m.hard = { ...m.hard, commit: Math.max(m.hard.commit, upTo) };
    return upTo;
  };
  for (let step = 0; step < steps; step++) {
    const r = rand();
    const where = `seed ${seed} step ${step}`;
    if (r < 0.55) {
      // One group commit over a few shards, each with entries, a hard state, or both.
      const chosen = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 4) }, pick))];
      const writes = chosen.map((shardId) => {
        const m = models.get(shardId)!;
        const appended = rand() < 0.8 ? randomAppend(rand, m) : [];
        const last = appended.length > 0 ? appended[appended.length - 1]!.index : m.memory.lastIndex();
        const term = Math.max(m.hard.term, ...appended.map((e) => e.term));
        const commit = Math.min(last, m.hard.commit + (rand() < 0.5 ? Math.floor(rand() * 3) : 0));
        const vote = term === m.hard.term ? m.hard.vote : nodeId(1 + Math.floor(rand() * 3));
        return { shardId, entries: appended, hardState: appended.length === 0 || rand() < 0.7 ? { term, vote, commit } : undefined };
      });
      await store.persist(writes);
      for (const w of writes) {
        const m = models.get(w.shardId)!;
        if (w.entries.length > 0) m.memory.append(w.entries);
        if (w.hardState !== undefined) m.hard = w.hardState;
      }
    } else if (r < 0.65) {
      const shardId = pick();
      const upTo = await applySome(shardId);
      if (upTo !== undefined) {
        await store.compact(shardId, upTo);
        models.get(shardId)!.memory.compact(upTo);
      }
    } else if (r < 0.75) {
      // Half the checkpoints may compact the shards they move (setCheckpointCompaction), each up to an
      // index picked here from its compaction point to one past what it applied (the store clamps to that).
      const asked = new Map<GroupId, number>();
      if (rand() < 0.5) {
        await applySome(pick());
        store.setCheckpointCompaction((id) => {
          const point = models.get(id)!.memory.firstIndex() - 1;
          const upTo = point + Math.floor(rand() * (store.storage(id).applied - point + 2));
          asked.set(id, upTo);
          return upTo;
        });
      }
      expect(await store.checkpointTail(), where).toBe(true);
      store.setCheckpointCompaction(undefined);
      for (const [id, upTo] of asked) {
        const m = models.get(id)!;
        const point = Math.min(upTo, store.storage(id).applied);
        if (point < m.memory.firstIndex()) continue;
        m.memory.compact(point);
        checkpointCompactions++;
      }
    } else if (r < 0.85) {
      store.storage(pick()).releaseCache();
    } else if (r < 0.9) {
      // Gone and made again under the same id before any checkpoint: the old replica's tail records are not the new one's.
      const shardId = pick();
      await store.destroyShard(shardId);
      models.delete(shardId);
      await create(shardId);
    } else {
      store = await reopen(store);
    }
    check(store, models, where);
  }
  store = await reopen(store);
  check(store, models, `seed ${seed} final reopen`);
  expect(await store.checkpointTail()).toBe(true);
  store = await reopen(store);
  check(store, models, `seed ${seed} reopen after the last checkpoint`);
  expect(checkpointCompactions, `seed ${seed}: checkpoints that compacted a shard`).toBeGreaterThan(0);
}

describe('log tail: seeded runs against MemoryStorage', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: every shard reads the same log and hard state, reopened or not`, async () => {
      await run(seed, 400);
    });
  }

  it('checkpoints by itself once the tail holds enough records, and replays what came after', async () => {
    const store0 = await openStore(tempDir());
    const shardId = SHARDS[0]!;
    await store0.createShard(shardId, { confState: CONF });
    const memory = new MemoryStorage();
    for (let i = 1; i <= 600; i++) {
      const batch = entries(i, [1]);
      await store0.persist([{ shardId, entries: batch, hardState: { term: 1, vote: nodeId(1), commit: i - 1 } }]);
      memory.append(batch);
    }
    // 600 records at 256 a checkpoint: most of the log is in the per-shard records already.
    expect(store0.tail.getKeysCount()).toBeLessThan(256);
    expect(store0.log.getKeysCount()).toBeGreaterThanOrEqual(512);
    const reopened = await reopen(store0);
    expect(view(reopened.storage(shardId))).toEqual(view(memory));
    expect(reopened.storage(shardId).initialState().hardState).toEqual({ term: 1, vote: 1, commit: 599 });
  });
});
