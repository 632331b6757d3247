// The Raft log on LMDB (NodeStore + ShardStorage) against core's MemoryStorage,
// the reference for log semantics (core/src/log/storage.ts): the same appends
// and compactions must leave both with the same first/last index, terms and
// entries. Where the two deliberately differ (a gap is UnavailableError here,
// an assertion there) the case says so.
import {
  CompactedError,
  MemoryStorage,
  UnavailableError,
  groupId,
  nodeId,
  type Entry,
  type GroupId,
  type HardState,
  type Storage,
} from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { ENTRY_CACHE_COUNT_MAX, type NodeStore } from '../src/storage/node-store.js';
import {
  SHARD,
  asyncErrorCode,
  commitAndApplyStored,
  confState,
  entries,
  entry,
  errorCode,
  openStore,
  reopen,
  tempDir,
  useTempStores,
} from './support/fixtures.js';

useTempStores();

type Step = { readonly append: readonly Entry[] } | { readonly compact: number };

interface LogCase {
  readonly name: string;
  readonly setup: readonly Step[];
  readonly op: Step;
  /** The log after `op`: its first index and the terms of (firstIndex-1 .. lastIndex]. */
  readonly expected: { readonly first: number; readonly terms: readonly number[] } | { readonly code: string };
}

const FIVE: Step = { append: entries(1, [1, 1, 2, 2, 3]) };

const cases: LogCase[] = [
  { name: 'an append to an empty log starts at index 1', setup: [], op: { append: entries(1, [1, 1, 1]) }, expected: { first: 1, terms: [0, 1, 1, 1] } },
  { name: 'an append at lastIndex+1 extends the log', setup: [{ append: entries(1, [1, 1, 2]) }], op: { append: entries(4, [2, 3]) }, expected: { first: 1, terms: [0, 1, 1, 2, 2, 3] } },
  { name: 'an overlapping append with the same terms is a no-op', setup: [FIVE], op: { append: entries(3, [2, 2, 3]) }, expected: { first: 1, terms: [0, 1, 1, 2, 2, 3] } },
  { name: 'an overlapping append with the same terms appends its new tail', setup: [FIVE], op: { append: entries(4, [2, 3, 3, 3]) }, expected: { first: 1, terms: [0, 1, 1, 2, 2, 3, 3, 3] } },
  { name: 'a conflicting term truncates the suffix and replaces it (§5.3)', setup: [FIVE], op: { append: entries(3, [4, 4]) }, expected: { first: 1, terms: [0, 1, 1, 4, 4] } },
  { name: 'a conflict at index 1 replaces the whole log', setup: [FIVE], op: { append: entries(1, [5, 5]) }, expected: { first: 1, terms: [0, 5, 5] } },
  {
    // The Ready's entries are the new suffix (core/README.md): like MemoryStorage, whatever
    // follows them is dropped even when the overlapping terms agree.
    name: 'a same-term append that ends early drops what followed it, as MemoryStorage does',
    setup: [FIVE],
    op: { append: entries(2, [1, 2]) },
    expected: { first: 1, terms: [0, 1, 1, 2] },
  },
  { name: 'truncate then append continues from the replaced entry', setup: [FIVE, { append: entries(3, [4]) }], op: { append: entries(4, [4, 4, 5]) }, expected: { first: 1, terms: [0, 1, 1, 4, 4, 4, 5] } },
  { name: 'an append past lastIndex+1 is refused (LOG_UNAVAILABLE)', setup: [{ append: entries(1, [1, 1, 2]) }], op: { append: entries(5, [2, 2]) }, expected: { code: 'LOG_UNAVAILABLE' } },
  { name: 'the first append into an empty log cannot start past index 1', setup: [], op: { append: entries(2, [1]) }, expected: { code: 'LOG_UNAVAILABLE' } },
  { name: 'compact moves firstIndex and keeps the term of the compaction point', setup: [FIVE], op: { compact: 3 }, expected: { first: 4, terms: [2, 2, 3] } },
  { name: 'compact to lastIndex leaves an empty log after the compaction point', setup: [FIVE], op: { compact: 5 }, expected: { first: 6, terms: [3] } },
  { name: 'entries at or below the compaction point are skipped, the rest appended', setup: [FIVE, { compact: 3 }], op: { append: entries(2, [1, 2, 7]) }, expected: { first: 4, terms: [2, 7] } },
  { name: 'an append wholly below the compaction point is a no-op', setup: [FIVE, { compact: 3 }], op: { append: entries(1, [1, 1, 2]) }, expected: { first: 4, terms: [2, 2, 3] } },
  { name: 'an append after compacting everything continues the log', setup: [FIVE, { compact: 5 }], op: { append: entries(6, [3, 4]) }, expected: { first: 6, terms: [3, 3, 4] } },
  { name: 'an append past lastIndex+1 after compacting everything is refused', setup: [FIVE, { compact: 5 }], op: { append: entries(7, [3]) }, expected: { code: 'LOG_UNAVAILABLE' } },
];

async function newShard(store: NodeStore, shardId: GroupId = SHARD): Promise<void> {
  await store.createShard(shardId, { confState: confState({ voters: [1, 2, 3] }) });
}

async function stepStore(store: NodeStore, step: Step, shardId: GroupId = SHARD): Promise<void> {
  if ('append' in step) {
    await store.persist([{ shardId, entries: step.append }]);
  } else {
    await commitAndApplyStored(store, shardId, step.compact);
    await store.compact(shardId, step.compact);
  }
}

function stepMemory(memory: MemoryStorage, step: Step): void {
  if ('append' in step) memory.append(step.append);
  else memory.compact(step.compact);
}

/** Entries as comparable records: LMDB hands payloads back as Buffers, MemoryStorage as the Uint8Arrays it was given. */
function plain(list: readonly Entry[]): string[] {
  return list.map((e) => `${e.index}/${e.term}/${e.type}/${Buffer.from(e.data).toString('hex')}`);
}

/** Everything Storage exposes about the log, in a form toEqual can compare. */
function logState(s: Storage): { first: number; last: number; terms: number[]; payloads: string[] } {
  const first = s.firstIndex();
  const last = s.lastIndex();
  const terms: number[] = [];
  for (let i = first - 1; i <= last; i++) terms.push(s.term(i));
  const payloads = plain(s.entries(first, last + 1, Number.POSITIVE_INFINITY));
  return { first, last, terms, payloads };
}

describe('log semantics on LMDB mirror MemoryStorage', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const store = await openStore(tempDir());
      await newShard(store);
      const memory = new MemoryStorage();
      for (const step of c.setup) {
        await stepStore(store, step);
        stepMemory(memory, step);
      }
      const storage = store.storage(SHARD);
      const before = logState(storage);
      expect(before).toEqual(logState(memory));

      if ('code' in c.expected) {
        expect(await asyncErrorCode(() => stepStore(store, c.op))).toBe(c.expected.code);
        expect(logState(storage)).toEqual(before);
        expect(logState((await reopen(store)).storage(SHARD))).toEqual(before);
        return;
      }
      await stepStore(store, c.op);
      stepMemory(memory, c.op);
      const after = logState(storage);
      expect({ first: after.first, terms: after.terms }).toEqual(c.expected);
      expect(after).toEqual(logState(memory));
      // What reads back after a restart is what was acknowledged.
      expect(logState((await reopen(store)).storage(SHARD))).toEqual(after);
    });
  }

  it('a batch with a hole in it is an assertion failure and writes nothing', async () => {
    const store = await openStore(tempDir());
    await newShard(store);
    await store.persist([{ shardId: SHARD, entries: entries(1, [1, 1]) }]);
    const before = logState(store.storage(SHARD));
    expect(await asyncErrorCode(() => store.persist([{ shardId: SHARD, entries: [entry(3, 1), entry(5, 1)] }]))).toBe('ASSERTION_FAILED');
    expect(logState(store.storage(SHARD))).toEqual(before);
  });

  it('compacting at or below the compaction point is a no-op', async () => {
    const store = await openStore(tempDir());
    await newShard(store);
    await stepStore(store, FIVE);
    await stepStore(store, { compact: 3 });
    const before = logState(store.storage(SHARD));
    await store.compact(SHARD, 3);
    await store.compact(SHARD, 1);
    expect(logState(store.storage(SHARD))).toEqual(before);
  });

  it('compacting past the applied index is an assertion failure', async () => {
    const store = await openStore(tempDir());
    await newShard(store);
    await stepStore(store, FIVE);
    await commitAndApplyStored(store, SHARD, 2);
    expect(await asyncErrorCode(() => store.compact(SHARD, 3))).toBe('ASSERTION_FAILED');
    expect(store.storage(SHARD).firstIndex()).toBe(1);
  });
});

describe('reads at the boundaries', () => {
  /** Log 1..10 with terms 1,1,2,2,2,3,3,4,4,5 compacted at 4, on both storages. */
  async function compactedLog(): Promise<{ store: NodeStore; memory: MemoryStorage }> {
    const store = await openStore(tempDir());
    await newShard(store);
    const memory = new MemoryStorage();
    for (const step of [{ append: entries(1, [1, 1, 2, 2, 2, 3, 3, 4, 4, 5], 100) }, { compact: 4 }] as Step[]) {
      await stepStore(store, step);
      stepMemory(memory, step);
    }
    return { store, memory };
  }

  const termCases: { i: number; outcome: number | string }[] = [
    { i: 2, outcome: 'LOG_COMPACTED' },
    { i: 3, outcome: 'LOG_COMPACTED' },
    { i: 4, outcome: 2 }, // the compaction point: its term survives
    { i: 5, outcome: 2 },
    { i: 10, outcome: 5 },
    { i: 11, outcome: 'LOG_UNAVAILABLE' },
  ];
  for (const { i, outcome } of termCases) {
    it(`term(${i}) on a log (4, 10] is ${outcome}`, async () => {
      const { store, memory } = await compactedLog();
      for (const s of [store.storage(SHARD), memory, (await reopen(store)).storage(SHARD)]) {
        if (typeof outcome === 'number') expect(s.term(i)).toBe(outcome);
        else expect(errorCode(() => s.term(i))).toBe(outcome);
      }
    });
  }

  it('term(0) of a fresh shard is 0 and term(1) is unavailable', async () => {
    const store = await openStore(tempDir());
    await newShard(store);
    const s = store.storage(SHARD);
    expect([s.firstIndex(), s.lastIndex(), s.term(0)]).toEqual([1, 0, 0]);
    expect(errorCode(() => s.term(1))).toBe('LOG_UNAVAILABLE');
    expect(s.entries(1, 1, 0)).toEqual([]);
  });

  const rangeCases: { lo: number; hi: number; outcome: number[] | string }[] = [
    { lo: 4, hi: 6, outcome: 'LOG_COMPACTED' }, // starts at the compaction point
    { lo: 1, hi: 11, outcome: 'LOG_COMPACTED' },
    { lo: 5, hi: 11, outcome: [5, 6, 7, 8, 9, 10] },
    { lo: 5, hi: 12, outcome: 'LOG_UNAVAILABLE' },
    { lo: 7, hi: 7, outcome: [] },
    { lo: 10, hi: 11, outcome: [10] },
  ];
  for (const { lo, hi, outcome } of rangeCases) {
    it(`entries(${lo}, ${hi}) on a log (4, 10] is ${Array.isArray(outcome) ? `[${outcome.join(',')}]` : outcome}`, async () => {
      const { store, memory } = await compactedLog();
      for (const s of [store.storage(SHARD), memory, (await reopen(store)).storage(SHARD)]) {
        if (Array.isArray(outcome)) expect(s.entries(lo, hi, Number.POSITIVE_INFINITY).map((e) => e.index)).toEqual(outcome);
        else expect(errorCode(() => s.entries(lo, hi, Number.POSITIVE_INFINITY))).toBe(outcome);
      }
    });
  }

  it('a read across the compaction point names the first available index', async () => {
    const { store } = await compactedLog();
    let caught: unknown;
    try {
      store.storage(SHARD).entries(3, 8, Number.POSITIVE_INFINITY);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(CompactedError);
    expect(caught).toMatchObject({ code: 'LOG_COMPACTED', index: 3, firstIndex: 5 });
    let unavailable: unknown;
    try {
      store.storage(SHARD).term(12);
    } catch (err) {
      unavailable = err;
    }
    expect(unavailable).toBeInstanceOf(UnavailableError);
    expect(unavailable).toMatchObject({ code: 'LOG_UNAVAILABLE', index: 12, lastIndex: 10 });
  });

  // Entries carry 100 payload bytes, counted as 124 with core's per-entry overhead.
  const limitCases: { bytesMax: number; count: number }[] = [
    { bytesMax: 0, count: 1 }, // always at least one entry
    { bytesMax: 123, count: 1 },
    { bytesMax: 124, count: 1 },
    { bytesMax: 247, count: 1 },
    { bytesMax: 248, count: 2 },
    { bytesMax: 5 * 124, count: 5 },
    { bytesMax: Number.POSITIVE_INFINITY, count: 6 },
  ];
  for (const { bytesMax, count } of limitCases) {
    it(`entries(5, 11, ${bytesMax}) returns ${count} entries, from the cache and from LMDB alike`, async () => {
      const { store, memory } = await compactedLog();
      const expected = plain(memory.entries(5, 11, bytesMax));
      expect(expected).toHaveLength(count);
      expect(plain(store.storage(SHARD).entries(5, 11, bytesMax))).toEqual(expected);
      // Reopened before a checkpoint, the log tail's entries come back into the cache.
      const replayed = await reopen(store);
      expect(replayed.shardState(SHARD).cache.map((e) => e.index)).toEqual([5, 6, 7, 8, 9, 10]);
      expect(plain(replayed.storage(SHARD).entries(5, 11, bytesMax))).toEqual(expected);
      expect(await replayed.checkpointTail()).toBe(true);
      const reopened = await reopen(replayed); // after a checkpoint, a cold cache: every entry comes from LMDB
      expect(reopened.shardState(SHARD).cache).toHaveLength(0);
      expect(plain(reopened.storage(SHARD).entries(5, 11, bytesMax))).toEqual(expected);
    });
  }
});

describe('restart', () => {
  it('a reopened store returns the same hard state, conf state, bounds, terms and entries', async () => {
    const store = await openStore(tempDir());
    const conf = confState({ voters: [1, 2, 3], learners: [4] });
    await store.createShard(SHARD, { confState: conf });
    await store.persist([{ shardId: SHARD, entries: entries(1, [1, 1, 2, 3, 3, 3, 4, 4], 40) }]);
    await commitAndApplyStored(store, SHARD, 5);
    await store.compact(SHARD, 3);
    const hardState: HardState = { term: 4, vote: nodeId(2), commit: 7 };
    await store.persist([{ shardId: SHARD, entries: [], hardState }]);

    const s = store.storage(SHARD);
    const before = { initial: s.initialState(), applied: s.applied, log: logState(s) };
    expect(before.initial).toEqual({ hardState, confState: conf });
    expect(before.log.first).toBe(4);
    const after = (await reopen(store)).storage(SHARD);
    expect({ initial: after.initialState(), applied: after.applied, log: logState(after) }).toEqual(before);
  });

  it('a conf state keeps its lists through create, apply and reopen; the empty ones are one shared array', async () => {
    const store = await openStore(tempDir());
    await store.createShard(SHARD, { confState: confState({ voters: [1, 2, 3] }) });
    await store.createShard(groupId(2), { confState: confState({ voters: [1, 2], learners: [3] }) });
    const [a, b] = [store.storage(SHARD).initialState().confState, store.storage(groupId(2)).initialState().confState];
    expect(a).toEqual(confState({ voters: [1, 2, 3] }));
    expect(b).toEqual(confState({ voters: [1, 2], learners: [3] }));
    // Memory per replica: no replica keeps empty lists of its own.
    expect(new Set([a.votersOutgoing, a.learners, a.learnersNext, b.votersOutgoing, b.learnersNext]).size).toBe(1);
    store.noteApplied(SHARD, 0, { ...confState({ voters: [1, 2, 3, 4] }), votersOutgoing: [nodeId(1), nodeId(2), nodeId(3)], learnersNext: [] });
    const applied = store.storage(SHARD).initialState().confState;
    expect(applied.votersOutgoing).toEqual([1, 2, 3]);
    expect(applied.learnersNext).toBe(b.learnersNext);
    const reopened = await reopen(store);
    const [ra, rb] = [reopened.storage(SHARD).initialState().confState, reopened.storage(groupId(2)).initialState().confState];
    expect(rb).toEqual(b);
    expect(rb.votersOutgoing).toBe(ra.learners);
  });

  it('a released entry cache (the group quiesced) reads the same log from LMDB, and caches what comes next', async () => {
    const store = await openStore(tempDir());
    await newShard(store);
    await store.persist([{ shardId: SHARD, entries: entries(1, [1, 1, 2, 2, 2], 24) }]);
    const s = store.storage(SHARD);
    const cached = logState(s);
    // Entries only the log tail holds stay cached until a checkpoint has put them in the per-shard log.
    s.releaseCache();
    expect(store.shardState(SHARD).cache).toHaveLength(5);
    expect(await store.checkpointTail()).toBe(true);
    expect(store.shardState(SHARD).cache).toHaveLength(0);
    s.releaseCache();
    expect(store.shardState(SHARD).cache).toHaveLength(0);
    expect(logState(s)).toEqual(cached);
    // A conflicting suffix and a compaction after the release: the cache holds only what was written since.
    await store.persist([{ shardId: SHARD, entries: entries(4, [3, 3, 3], 24) }]);
    expect(store.shardState(SHARD).cache.map((e) => e.index)).toEqual([4, 5, 6]);
    await commitAndApplyStored(store, SHARD, 4);
    await store.compact(SHARD, 2);
    expect(logState(s)).toEqual(logState((await reopen(store)).storage(SHARD)));
  });

  it(`a log longer than the entry cache (${ENTRY_CACHE_COUNT_MAX} entries) reads the same from cache, LMDB and after reopen`, async () => {
    const store = await openStore(tempDir());
    await newShard(store);
    const memory = new MemoryStorage();
    const total = ENTRY_CACHE_COUNT_MAX + 476;
    for (let from = 1; from <= total; from += 100) {
      const terms = Array.from({ length: Math.min(100, total - from + 1) }, (_, i) => 1 + Math.floor((from + i) / 300));
      const batch = entries(from, terms, 16 + (from % 7));
      await store.persist([{ shardId: SHARD, entries: batch }]);
      memory.append(batch);
    }
    // A conflicting suffix replaced after the cache filled up.
    const replacement = entries(total - 9, [9, 9, 9, 9, 9], 3);
    await store.persist([{ shardId: SHARD, entries: replacement }]);
    memory.append(replacement);
    await commitAndApplyStored(store, SHARD, 200);
    await store.compact(SHARD, 200);
    memory.compact(200);

    // The oldest entries were evicted (the truncation above shortened the cache a little).
    const cache = store.shardState(SHARD).cache;
    expect(cache.length).toBeGreaterThan(ENTRY_CACHE_COUNT_MAX - 10);
    expect(cache.length).toBeLessThanOrEqual(ENTRY_CACHE_COUNT_MAX);
    const cacheFirst = cache[0]!.index;
    expect(cacheFirst).toBeGreaterThan(300);
    const straddling = (s: Storage) => [
      plain(s.entries(201, cacheFirst, Number.POSITIVE_INFINITY)), // evicted: LMDB only
      plain(s.entries(cacheFirst - 20, total - 4, 3000)), // LMDB then cache, cut by bytes
      plain(s.entries(total - 200, total - 4, Number.POSITIVE_INFINITY)), // cache only
    ];
    const across = store.storage(SHARD).entries(cacheFirst - 20, total - 4, 3000);
    expect(across[0]!.index).toBe(cacheFirst - 20);
    expect(across[across.length - 1]!.index).toBeGreaterThan(cacheFirst);
    expect(across.length).toBeLessThan(total - 4 - (cacheFirst - 20)); // the byte limit cut it
    const storage = store.storage(SHARD);
    expect(logState(storage)).toEqual(logState(memory));
    expect(straddling(storage)).toEqual(straddling(memory));
    const reopened = (await reopen(store)).storage(SHARD);
    expect(logState(reopened)).toEqual(logState(memory));
    expect(straddling(reopened)).toEqual(straddling(memory));
  });
});

describe('group commit', () => {
  const shards = [groupId(1), groupId(2), groupId(3)];

  async function threeShards(): Promise<NodeStore> {
    const store = await openStore(tempDir());
    for (const id of shards) await newShard(store, id);
    await store.persist(shards.map((shardId, i) => ({ shardId, entries: entries(1, Array(i + 2).fill(1)), hardState: { term: 1, vote: nodeId(1), commit: 1 } })));
    return store;
  }

  function snapshotOf(store: NodeStore) {
    return shards.map((id) => ({ initial: store.storage(id).initialState(), log: logState(store.storage(id)) }));
  }

  it('one persist carries many shards’ entries and hard states', async () => {
    const store = await threeShards();
    await store.persist([
      { shardId: shards[0]!, entries: entries(3, [2, 2, 2]), hardState: { term: 2, vote: nodeId(1), commit: 4 } },
      { shardId: shards[1]!, entries: entries(2, [3]), hardState: { term: 3, vote: nodeId(2), commit: 2 } }, // replaces 2..3
      { shardId: shards[2]!, entries: [], hardState: { term: 5, vote: nodeId(3), commit: 3 } },
    ]);
    const expected = [
      { hard: { term: 2, vote: 1, commit: 4 }, terms: [0, 1, 1, 2, 2, 2] },
      { hard: { term: 3, vote: 2, commit: 2 }, terms: [0, 1, 3] },
      { hard: { term: 5, vote: 3, commit: 3 }, terms: [0, 1, 1, 1, 1] },
    ];
    const check = (s: NodeStore) => shards.map((id) => ({ hard: s.storage(id).initialState().hardState, terms: logState(s.storage(id)).terms }));
    expect(check(store)).toEqual(expected);
    expect(check(await reopen(store))).toEqual(expected);
  });

  it('syncs only what Raft must not lose: entries, a truncation, a term or a vote; not a commit index or an apply', async () => {
    const store = await threeShards();
    const [a, b] = [shards[0]!, shards[1]!];
    const cases: { what: string; writes: Parameters<NodeStore['persist']>[0]; also?: boolean; synced: boolean }[] = [
      { what: 'a commit index alone', writes: [{ shardId: a, entries: [], hardState: { term: 1, vote: nodeId(1), commit: 2 } }], synced: false },
      { what: 'an apply alone', writes: [], also: true, synced: false },
      { what: 'a commit index with an apply', writes: [{ shardId: b, entries: [], hardState: { term: 1, vote: nodeId(1), commit: 2 } }], also: true, synced: false },
      { what: 'new entries', writes: [{ shardId: a, entries: entries(3, [1]) }], synced: true },
      { what: 'a new vote', writes: [{ shardId: a, entries: [], hardState: { term: 1, vote: nodeId(2), commit: 2 } }], synced: true },
      { what: 'a new term', writes: [{ shardId: a, entries: [], hardState: { term: 2, vote: nodeId(2), commit: 2 } }], synced: true },
      { what: 'a commit index beside new entries of another shard', writes: [{ shardId: a, entries: [], hardState: { term: 2, vote: nodeId(2), commit: 3 } }, { shardId: b, entries: entries(4, [1]) }], synced: true },
      { what: 'replacing entries (a truncation)', writes: [{ shardId: b, entries: entries(3, [2]) }], synced: true },
    ];
    const outcomes = [];
    for (const c of cases) outcomes.push({ what: c.what, synced: await store.persist(c.writes, c.also === true ? { alsoInTransaction: () => {} } : {}) });
    expect(outcomes).toEqual(cases.map((c) => ({ what: c.what, synced: c.synced })));
    // Unsynced or not, every commit is visible at once and after a clean reopen.
    const hard = (s: NodeStore) => shards.map((id) => s.storage(id).initialState().hardState);
    const before = hard(store);
    expect(before[0]).toEqual({ term: 2, vote: 2, commit: 3 });
    expect(hard(await reopen(store))).toEqual(before);
  });

  it('commits before its promise settles: a second persist for the shard, not awaiting the first, appends after it', async () => {
    const store = await threeShards();
    const first = store.persist([{ shardId: shards[0]!, entries: entries(3, [1]) }]);
    expect(store.storage(shards[0]!).lastIndex()).toBe(3);
    await store.persist([{ shardId: shards[0]!, entries: entries(4, [1]) }]);
    await first;
    expect(store.storage(shards[0]!).lastIndex()).toBe(4);
    expect(store.storage(shards[0]!).entries(3, 5, 1 << 20).map((e) => e.index)).toEqual([3, 4]);
  });

  const failing: { name: string; code: string; writes: (ok: { shardId: GroupId; entries: Entry[]; hardState: HardState }[]) => Parameters<NodeStore['persist']>[0] }[] = [
    { name: 'a gap in one shard', code: 'LOG_UNAVAILABLE', writes: ([a, , c]) => [a!, { shardId: shards[1]!, entries: entries(9, [2]) }, c!] },
    { name: 'a commit index past the last entry', code: 'ASSERTION_FAILED', writes: ([a, , c]) => [a!, { shardId: shards[1]!, entries: [], hardState: { term: 2, vote: nodeId(1), commit: 50 } }, c!] },
    { name: 'a term going backwards', code: 'ASSERTION_FAILED', writes: ([a, b, c]) => [a!, b!, { ...c!, hardState: { term: 0, vote: nodeId(1), commit: 1 } }] },
    { name: 'a shard that does not exist', code: 'Error', writes: ([a, b]) => [a!, b!, { shardId: groupId(99), entries: entries(1, [1]) }] },
    { name: 'the same shard twice', code: 'ASSERTION_FAILED', writes: ([a, b, c]) => [a!, b!, c!, { shardId: shards[0]!, entries: entries(5, [2]) }] }, // contiguous after the first write
  ];
  for (const f of failing) {
    it(`a persist whose plan fails (${f.name}) writes nothing for any shard`, async () => {
      const store = await threeShards();
      const before = snapshotOf(store);
      const ok = shards.map((shardId) => ({ shardId, entries: entries(store.storage(shardId).lastIndex() + 1, [2, 2]), hardState: { term: 2, vote: nodeId(1), commit: 2 } }));
      expect(await asyncErrorCode(() => store.persist(f.writes(ok)))).toBe(f.code);
      expect(snapshotOf(store)).toEqual(before);
      expect(snapshotOf(await reopen(store))).toEqual(before);
    });
  }
});
