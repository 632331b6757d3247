// Range snapshots: read as bounded chunks from one LMDB read transaction,
// staged chunk by chunk on the receiver, installed in one transaction.
import { SeededRng, groupId, nodeId, type ConfState, type Entry, type GroupId, type HardState } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { encodeCommand } from '../src/kv/command.js';
import { KvStateMachine } from '../src/kv/state-machine.js';
import { CorruptRecordError } from '../src/storage/errors.js';
import type { NodeStore } from '../src/storage/node-store.js';
import { SNAPSHOT_CHUNK_BYTES_MAX, type RangeBounds } from '../src/storage/codec.js';
import { ChunkBodyWriter, decodeChunk, forEachPair, type SnapshotHeader } from '../src/snapshot/chunk.js';
import { SnapshotInstaller } from '../src/snapshot/installer.js';
import { readSnapshot } from '../src/snapshot/reader.js';
import {
  SHARD,
  asyncErrorCode,
  bytes,
  commitAndApply,
  confState,
  deleteEntry,
  openStore,
  putEntry,
  reopen,
  tempDir,
  useTempStores,
} from './support/fixtures.js';

useTempStores();

const BOUNDS: RangeBounds = { start: bytes('k'), end: bytes('l') };
const SOURCE_CONF = confState({ voters: [1, 2, 3], learners: [4] });
const TERM = 3;
/** 7000 values of ~1 KiB: about 7 MiB, so several chunks. */
const KEY_COUNT = 7000;
const VALUE_BYTES = 1000;

const rangeKey = (i: number) => bytes(`k${String(i).padStart(6, '0')}`);

function valueFor(i: number, salt: number): Uint8Array {
  const v = new Uint8Array(VALUE_BYTES);
  for (let j = 0; j < v.length; j++) v[j] = (i * 13 + j * 7 + salt) & 0xff;
  return v;
}

/** Commits and applies `make(index)` entries in batches, continuing the shard's log. */
async function applyAll(store: NodeStore, shardId: GroupId, count: number, make: (i: number, index: number) => Entry, options: { confState?: ConfState } = {}): Promise<void> {
  for (let from = 0; from < count; from += 500) {
    const first = store.storage(shardId).lastIndex() + 1;
    const batch = Array.from({ length: Math.min(500, count - from) }, (_, j) => make(from + j, first + j));
    await commitAndApply(store, shardId, batch, from === 0 ? options : {});
  }
}

/** Enough for three chunks: what the rejection cases need, at less than half the cost. */
const KEY_COUNT_SMALL = 3000;

/** A source node whose shard 1 holds `keyCount` keys in BOUNDS, plus keys just outside it that a snapshot must not carry. */
async function sourceStore(keyCount = KEY_COUNT): Promise<NodeStore> {
  const store = await openStore(tempDir(), 1);
  await store.createShard(SHARD, { confState: confState({ voters: [1, 2, 3] }) });
  // 'j…', 'l' (the exclusive end) and 'm…' are outside; 'k' itself is the inclusive start.
  const outside = ['j', 'jzzz', 'l', 'l0', 'm'];
  const edge = [...outside, 'k'];
  const first = store.storage(SHARD).lastIndex() + 1;
  await commitAndApply(store, SHARD, edge.map((k, i) => putEntry(first + i, TERM, bytes(k), bytes(`edge-${k}`))));
  await applyAll(store, SHARD, keyCount, (i, index) => putEntry(index, TERM, rangeKey(i), valueFor(i, 0)), { confState: SOURCE_CONF });
  return store;
}

type Pair = [key: string, version: number, value: string];

function pairsIn(store: NodeStore, bounds: RangeBounds): Pair[] {
  const kv = new KvStateMachine(store);
  return [...kv.scan({ start: bounds.start, end: bounds.end ?? undefined, limit: Number.MAX_SAFE_INTEGER })].map((r) => [
    r.key.toString('hex'),
    r.version,
    r.value.toString('hex'),
  ]);
}

function allPairs(store: NodeStore): Pair[] {
  return pairsIn(store, { start: new Uint8Array([0]), end: null });
}

/** Drains the generator, returning its chunks and its return value. */
function readAll(store: NodeStore, shardId: GroupId, bounds: RangeBounds): { chunks: Uint8Array[]; header: SnapshotHeader } {
  const chunks: Uint8Array[] = [];
  const it = readSnapshot(store, shardId, bounds);
  for (;;) {
    const next = it.next();
    if (next.done) return { chunks, header: next.value };
    chunks.push(next.value);
  }
}

/** A header with its bounds as hex: decoded bounds are Buffers, the caller's are whatever it passed. */
function plainHeader(h: SnapshotHeader) {
  const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));
  return { ...h, bounds: { start: hex(h.bounds.start), end: hex(h.bounds.end) } };
}

function decodedPairs(chunks: readonly Uint8Array[]): Pair[] {
  return chunks.flatMap((c) => chunkPairs(decodeChunk(c).body).map(([k, version, v]): Pair => [Buffer.from(k).toString('hex'), version, Buffer.from(v).toString('hex')]));
}

/** A key's record, decoded: [key, version, value], or with the value's content type [key, version, value, contentType]. */
type SnapshotPair = [Uint8Array, number, Uint8Array] | [Uint8Array, number, Uint8Array, string];
const recordPackr = new Packr({ useRecords: false, moreTypes: false });

/** A chunk body's pairs decoded (the install path never decodes a record; these tests do). */
function chunkPairs(body: Uint8Array): SnapshotPair[] {
  const pairs: SnapshotPair[] = [];
  forEachPair(body, (key, record) => {
    const [version, value, contentType] = recordPackr.unpack(record) as [number, Uint8Array, string | undefined];
    pairs.push(contentType === undefined ? [key, version, value] : [key, version, value, contentType]);
  });
  return pairs;
}

/** A chunk body holding `pairs`, their records encoded as the data sub-database stores them. */
function encodePairsBody(pairs: readonly SnapshotPair[]): Uint8Array {
  const writer = new ChunkBodyWriter();
  for (const [key, version, value, contentType] of pairs) writer.add(key, recordPackr.pack(contentType === undefined ? [version, value] : [version, value, contentType]));
  return Uint8Array.from(writer.take());
}

/** `source`'s snapshot of SHARD staged and installed into a new store holding an empty replica of it. */
async function transferredFrom(source: NodeStore): Promise<NodeStore> {
  const { chunks } = readAll(source, SHARD, BOUNDS);
  const target = await openStore(tempDir(), 2);
  await target.createShard(SHARD, { confState: confState({ voters: [1, 2, 3] }) });
  const installer = new SnapshotInstaller(target, SHARD);
  for (const c of chunks) await installer.addChunk(c);
  await installer.install({ term: TERM, vote: nodeId(1), commit: 0 });
  return target;
}

describe('readSnapshot', () => {
  it('yields chunks within SNAPSHOT_CHUNK_BYTES_MAX, in order, carrying the applied index, term, conf state and only keys in bounds', async () => {
    const store = await sourceStore();
    const applied = store.storage(SHARD).applied;
    const { chunks, header } = readAll(store, SHARD, BOUNDS);

    expect(chunks.length).toBeGreaterThanOrEqual(6);
    for (const c of chunks) expect(c.byteLength).toBeLessThanOrEqual(SNAPSHOT_CHUNK_BYTES_MAX);
    // Chunks are filled, not one pair each: all but the last hold most of a chunk's worth.
    for (const c of chunks.slice(0, -1)) expect(c.byteLength).toBeGreaterThan(SNAPSHOT_CHUNK_BYTES_MAX * 0.9);

    const decoded = chunks.map(decodeChunk);
    expect(decoded.map((d) => d.seq)).toEqual(chunks.map((_, i) => i));
    expect(decoded.map((d) => d.last)).toEqual(chunks.map((_, i) => i === chunks.length - 1));
    for (const d of decoded) {
      expect(plainHeader(d.header)).toEqual(plainHeader(header));
      expect(d.header).toMatchObject({ shardId: SHARD, index: applied, term: TERM, confState: SOURCE_CONF });
    }
    const pairs = decodedPairs(chunks);
    expect(pairs).toHaveLength(KEY_COUNT + 1); // the range keys plus 'k' itself
    expect(pairs).toEqual(pairsIn(store, BOUNDS));
  });

  it('an empty range yields one last chunk with no pairs', async () => {
    const store = await sourceStore(KEY_COUNT_SMALL);
    const { chunks } = readAll(store, SHARD, { start: bytes('x'), end: bytes('y') });
    expect(chunks).toHaveLength(1);
    const only = decodeChunk(chunks[0]!);
    expect(only).toMatchObject({ seq: 0, last: true, firstKey: undefined, lastKey: undefined });
    expect(chunkPairs(only.body)).toEqual([]);
  });

  it('an unbounded range reaches the end of the key space', async () => {
    const store = await sourceStore(KEY_COUNT_SMALL);
    const { chunks } = readAll(store, SHARD, { start: bytes('l'), end: null });
    expect(decodedPairs(chunks).map(([k]) => Buffer.from(k, 'hex').toString())).toEqual(['l', 'l0', 'm']);
  });

  it('reflects the state when it started although writes commit while it is consumed (one read transaction)', async () => {
    const store = await sourceStore();
    const before = pairsIn(store, BOUNDS);
    const appliedBefore = store.storage(SHARD).applied;
    const it = readSnapshot(store, SHARD, BOUNDS);
    const chunks: Uint8Array[] = [];
    let round = 0;
    for (let next = it.next(); !next.done; next = it.next()) {
      chunks.push(next.value);
      // Between chunks: overwrite keys ahead of and behind the cursor, delete some, add new ones.
      round++;
      const first = store.storage(SHARD).lastIndex() + 1;
      await commitAndApply(store, SHARD, [
        putEntry(first, TERM, rangeKey(round * 997 % KEY_COUNT), valueFor(round, 99)),
        putEntry(first + 1, TERM, rangeKey(KEY_COUNT - round), valueFor(round, 98)),
        deleteEntry(first + 2, TERM, rangeKey(round * 31)),
        putEntry(first + 3, TERM, bytes(`k${String(round).padStart(6, '0')}x`), bytes('new')),
      ]);
    }
    expect(round).toBeGreaterThanOrEqual(6);
    expect(store.storage(SHARD).applied).toBe(appliedBefore + 4 * round);
    expect(pairsIn(store, BOUNDS)).not.toEqual(before); // the writes landed
    expect(decodedPairs(chunks)).toEqual(before); // the snapshot did not see them
    expect(decodeChunk(chunks[chunks.length - 1]!).header.index).toBe(appliedBefore);
  });

  it('a generator returned early releases its read transaction (writes and close still work)', async () => {
    const store = await sourceStore(KEY_COUNT_SMALL);
    const it = readSnapshot(store, SHARD, BOUNDS);
    it.next();
    it.return(undefined as never);
    const first = store.storage(SHARD).lastIndex() + 1;
    await commitAndApply(store, SHARD, [putEntry(first, TERM, bytes('k-after'), bytes('x'))]);
    expect(new KvStateMachine(store).get(bytes('k-after'))).toBeDefined();
  });
});

describe('SnapshotInstaller', () => {
  /** The receiving node: its shard 1 has older, different data in the range, plus data outside it, and a log. */
  async function targetStore(): Promise<NodeStore> {
    const store = await openStore(tempDir(), 2);
    await store.createShard(SHARD, { confState: confState({ voters: [1, 2, 3] }) });
    await applyAll(store, SHARD, 60, (i, index) => {
      if (i < 20) return putEntry(index, 1, rangeKey(i * 50), bytes(`stale-${i}`)); // overwritten by the snapshot
      if (i < 40) return putEntry(index, 1, bytes(`k-only-here-${i}`), bytes('gone')); // in range, not in the snapshot
      return putEntry(index, 1, bytes(i % 2 === 0 ? `a-${i}` : `z-${i}`), bytes('outside')); // other ranges: kept
    });
    await store.persist([{ shardId: SHARD, entries: [], hardState: { term: 2, vote: nodeId(1), commit: 60 } }]);
    return store;
  }

  /** Everything about shard 1 that an install may change or a failed one must not. */
  function stateOf(store: NodeStore) {
    const s = store.storage(SHARD);
    return {
      initial: s.initialState(),
      applied: s.applied,
      first: s.firstIndex(),
      last: s.lastIndex(),
      entries: s.entries(s.firstIndex(), s.lastIndex() + 1, Number.POSITIVE_INFINITY).map((e) => `${e.index}/${e.term}`),
      data: allPairs(store),
      staged: store.staging.getKeysCount(),
    };
  }

  const CURRENT: HardState = { term: 3, vote: nodeId(1), commit: 60 };

  it('installs a snapshot: range data replaced, other ranges kept, log emptied, applied and conf state restored; survives reopen', async () => {
    const source = await sourceStore();
    const { chunks, header } = readAll(source, SHARD, BOUNDS);
    let target = await targetStore();
    const outsideBefore = [...pairsIn(target, { start: bytes('a'), end: bytes('b') }), ...pairsIn(target, { start: bytes('z'), end: null })];

    const installer = new SnapshotInstaller(target, SHARD);
    for (const [i, c] of chunks.entries()) expect(await installer.addChunk(c)).toBe(i === chunks.length - 1);
    expect(target.staging.getKeysCount()).toBe(chunks.length);
    expect(plainHeader(await installer.install(CURRENT))).toEqual(plainHeader(header));

    const check = (store: NodeStore) => {
      const s = store.storage(SHARD);
      expect(pairsIn(store, BOUNDS)).toEqual(pairsIn(source, BOUNDS));
      expect([...pairsIn(store, { start: bytes('a'), end: bytes('b') }), ...pairsIn(store, { start: bytes('z'), end: null })]).toEqual(outsideBefore);
      expect(s.firstIndex()).toBe(header.index + 1);
      expect(s.lastIndex()).toBe(header.index);
      expect(s.term(header.index)).toBe(TERM);
      expect(s.entries(header.index + 1, header.index + 1, 0)).toEqual([]);
      expect(s.applied).toBe(header.index);
      expect(s.initialState().confState).toEqual(SOURCE_CONF);
      expect(s.initialState().hardState.commit).toBeGreaterThanOrEqual(header.index);
      expect(s.initialState().hardState).toMatchObject({ term: CURRENT.term, vote: CURRENT.vote });
      expect(s.snapshot().metadata).toEqual({ index: header.index, term: TERM, confState: SOURCE_CONF });
      expect(store.staging.getKeysCount()).toBe(0);
    };
    check(target);
    target = await reopen(target);
    check(target);

    // The log continues after the snapshot point.
    await target.persist([{ shardId: SHARD, entries: [putEntry(header.index + 1, TERM, bytes('k-next'), bytes('1'))] }]);
    expect(target.storage(SHARD).lastIndex()).toBe(header.index + 1);
  });

  it('replaces entries only the log tail held: a reopen does not bring back what came before the install', async () => {
    const source = await sourceStore(KEY_COUNT_SMALL);
    const { chunks, header } = readAll(source, SHARD, BOUNDS);
    let target = await targetStore();
    // An old leader's uncommitted suffix reaching past the snapshot point, in the tail only (no checkpoint since).
    const stale = Array.from({ length: header.index + 3 - 60 }, (_, i) => putEntry(61 + i, 2, bytes(`stale-tail-${i}`), bytes('x')));
    await target.persist([{ shardId: SHARD, entries: stale }]);
    expect(target.tail.getKeysCount()).toBeGreaterThan(0);
    const installer = new SnapshotInstaller(target, SHARD);
    for (const c of chunks) await installer.addChunk(c);
    await installer.install(CURRENT);
    const check = (store: NodeStore) => {
      const s = store.storage(SHARD);
      expect([s.firstIndex(), s.lastIndex(), s.term(header.index)]).toEqual([header.index + 1, header.index, TERM]);
      expect(s.initialState().hardState).toEqual({ ...CURRENT, commit: header.index });
    };
    check(target);
    target = await reopen(target);
    check(target);
    expect(await target.checkpointTail()).toBe(true);
    check(await reopen(target));
  });

  it('carries a value\'s content type: the installed record has it, a record without one stays without', async () => {
    const source = await openStore(tempDir(), 1);
    await source.createShard(SHARD, { confState: confState({ voters: [1, 2, 3] }) });
    const first = source.storage(SHARD).lastIndex() + 1;
    await commitAndApply(source, SHARD, [
      { index: first, term: TERM, type: 'normal', data: encodeCommand({ op: 'put', key: bytes('k-typed'), value: bytes('{}'), contentType: 'application/json' }) },
      putEntry(first + 1, TERM, bytes('k-plain'), bytes('x')),
    ]);
    const target = await transferredFrom(source);
    const kv = new KvStateMachine(target);
    expect(kv.get(bytes('k-typed'))).toMatchObject({ contentType: 'application/json', version: first });
    expect(kv.get(bytes('k-plain'))).not.toHaveProperty('contentType');
  });

  it('passes every record shape the store writes, byte for byte: versions of every integer width, long content types, large values', async () => {
    // Records travel as stored bytes, checked by their msgpack shape (chunk.ts recordProblem): each
    // encoding lmdb-js picks must pass — fixint, uint8/16/32, a float64 for versions past 2^32; fixstr,
    // str8 and the str16 msgpackr gives a string it sizes at 3 B a character.
    const source = await openStore(tempDir(), 1);
    await source.createShard(SHARD, { confState: confState({ voters: [1, 2, 3] }), startAt: { index: 5, term: TERM } });
    const versions = [1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER];
    const records = versions.map((version, i) => [version, Buffer.alloc(i === 3 ? 70_000 : i * 10, i), ...(i % 3 === 0 ? [] : ['t'.repeat([0, 5, 31, 32, 100, 255][i % 6]!)])]);
    await source.write(() => records.forEach((r, i) => source.data.putSync(Buffer.from(`k${String(i).padStart(3, '0')}`), r)));
    const target = await transferredFrom(source);
    const read = (store: NodeStore) => [...store.dataRecords.getRange({})].map(({ key, value }) => [key.toString(), value.toString('hex')]);
    expect(read(target)).toEqual(read(source));
    expect(read(target)).toHaveLength(versions.length);
    const kv = new KvStateMachine(target);
    expect(versions.map((_, i) => kv.get(bytes(`k${String(i).padStart(3, '0')}`))?.version)).toEqual(versions);
  });

  it('records the commit at the snapshot point when Raft committed past it (the entries after it come in the round\'s own write)', async () => {
    const source = await sourceStore(KEY_COUNT_SMALL);
    const { chunks, header } = readAll(source, SHARD, BOUNDS);
    let target = await targetStore();
    const installer = new SnapshotInstaller(target, SHARD);
    for (const c of chunks) await installer.addChunk(c);
    const ready: HardState = { ...CURRENT, commit: header.index + 2 };
    await installer.install(ready);
    expect(target.storage(SHARD).initialState().hardState).toEqual({ ...ready, commit: header.index });
    // A crash before the round's group commit: the store opens, committed at the snapshot point.
    target = await reopen(target);
    expect(target.storage(SHARD).initialState().hardState.commit).toBe(header.index);
    expect(target.storage(SHARD).lastIndex()).toBe(header.index);
    // The group commit after the install brings the entries and the Ready's commit.
    const next = [putEntry(header.index + 1, TERM, bytes('k-next'), bytes('1')), putEntry(header.index + 2, TERM, bytes('k-next'), bytes('2'))];
    await target.persist([{ shardId: SHARD, entries: next, hardState: ready }]);
    target = await reopen(target);
    expect(target.storage(SHARD).initialState().hardState).toEqual(ready);
    expect(target.storage(SHARD).lastIndex()).toBe(header.index + 2);
  });

  it('installing a narrower range (a split since) drops what the replica owned outside it, and only that', async () => {
    const source = await sourceStore(KEY_COUNT_SMALL);
    const { chunks } = readAll(source, SHARD, BOUNDS);
    const target = await targetStore();
    // The replica still owns the range before the split: [j, n), wider than the snapshot's [k, l).
    const outsideBefore = [...pairsIn(target, { start: bytes('a'), end: bytes('b') }), ...pairsIn(target, { start: bytes('z'), end: null })];
    expect(outsideBefore.length).toBeGreaterThan(0);
    await target.env.transaction(() => target.meta.putSync([SHARD, 'desc'], [bytes('j'), bytes('n'), 1]));
    await commitAndApply(target, SHARD, ['j-old', 'l-old', 'm-old'].map((k, i) => putEntry(61 + i, 1, bytes(k), bytes('pre-split'))));
    expect(pairsIn(target, { start: bytes('l'), end: bytes('n') }).length).toBe(2);
    const installer = new SnapshotInstaller(target, SHARD);
    for (const c of chunks) await installer.addChunk(c);
    await installer.install({ ...CURRENT, commit: 63 });
    expect(pairsIn(target, BOUNDS)).toEqual(pairsIn(source, BOUNDS));
    const left = (start: string, end: string | null) => pairsIn(target, { start: bytes(start), end: end === null ? null : bytes(end) }).map(([k]) => Buffer.from(k, 'hex').toString());
    expect(left('j', 'k')).toEqual([]);
    expect(left('l', 'n')).toEqual([]);
    // Other ranges' data (outside [j, n)) is kept.
    expect([...pairsIn(target, { start: bytes('a'), end: bytes('b') }), ...pairsIn(target, { start: bytes('z'), end: null })]).toEqual(outsideBefore);
  });

  /** Re-encodes a decoded chunk after `edit`: the wire format is [format, shard, index, term, conf, [start, end, epoch], seq, last, body]. */
  function tampered(chunk: Uint8Array, edit: (fields: unknown[]) => void): Uint8Array {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const fields = packr.unpack(chunk) as unknown[];
    expect(fields).toHaveLength(9);
    edit(fields);
    return packr.pack(fields);
  }

  /** A chunk whose pairs `edit` changed, re-framed into a well-formed body. */
  function tamperedPairs(chunk: Uint8Array, edit: (pairs: SnapshotPair[]) => void): Uint8Array {
    return tampered(chunk, (f) => {
      const pairs = chunkPairs(f[8] as Uint8Array);
      edit(pairs);
      f[8] = encodePairsBody(pairs);
    });
  }

  /** A chunk whose first pair's record bytes are `record`, framed correctly: only the record is wrong. */
  function withRecord(chunk: Uint8Array, record: Uint8Array): Uint8Array {
    return tampered(chunk, (f) => {
      const key = chunkPairs(f[8] as Uint8Array)[0]![0];
      const body = Buffer.alloc(6 + key.byteLength + record.byteLength);
      body.writeUInt16BE(key.byteLength, 0);
      body.set(key, 2);
      body.writeUInt32BE(record.byteLength, 2 + key.byteLength);
      body.set(record, 6 + key.byteLength);
      f[8] = body;
    });
  }

  function garbage(seed: number, length: number): Uint8Array {
    const rng = new SeededRng(seed);
    return Uint8Array.from({ length }, () => rng.intBelow(256));
  }

  interface Rejection {
    name: string;
    /** Chunks accepted before the bad one. */
    prefix: (chunks: Uint8Array[]) => Uint8Array[];
    bad: (chunks: Uint8Array[], other: Uint8Array[]) => Uint8Array;
  }
  const rejections: Rejection[] = [
    { name: 'a first chunk that is not seq 0', prefix: () => [], bad: (c) => c[1]! },
    { name: 'a skipped chunk', prefix: (c) => [c[0]!], bad: (c) => c[2]! },
    { name: 'a repeated chunk', prefix: (c) => [c[0]!, c[1]!], bad: (c) => c[1]! },
    { name: 'a chunk of another shard', prefix: () => [], bad: (_c, other) => other[0]! },
    { name: 'a truncated chunk', prefix: (c) => [c[0]!], bad: (c) => c[1]!.subarray(0, c[1]!.byteLength >> 1) },
    { name: 'a garbage chunk', prefix: (c) => [c[0]!], bad: () => garbage(11, 4096) },
    { name: 'a garbage first chunk', prefix: () => [], bad: () => garbage(12, 100) },
    { name: 'an oversized chunk', prefix: (c) => [c[0]!], bad: (c) => new Uint8Array([...c[1]!, ...new Uint8Array(SNAPSHOT_CHUNK_BYTES_MAX)]) },
    { name: 'a chunk of another snapshot (index)', prefix: (c) => [c[0]!], bad: (c) => tampered(c[1]!, (f) => void (f[2] = (f[2] as number) + 1)) },
    { name: 'a chunk with other bounds', prefix: (c) => [c[0]!], bad: (c) => tampered(c[1]!, (f) => void (f[5] = [bytes('a'), null])) },
    { name: 'a chunk claiming a freeze the first one did not', prefix: (c) => [c[0]!], bad: (c) => tampered(c[1]!, (f) => void (f[5] = [...(f[5] as unknown[]), [7, 10, 3, 2]])) },
    { name: 'a chunk with a malformed freeze', prefix: () => [], bad: (c) => tampered(c[0]!, (f) => void (f[5] = [...(f[5] as unknown[]), [7, -1, 3]])) },
    { name: 'a chunk with another conf state', prefix: (c) => [c[0]!], bad: (c) => tampered(c[1]!, (f) => void (f[4] = { ...SOURCE_CONF, voters: [1] })) },
    { name: 'a pair outside the bounds', prefix: (c) => [c[0]!], bad: (c) => tamperedPairs(c[1]!, (p) => void p.splice(-1, 1, [bytes('zz'), 1, bytes('x')])) },
    { name: 'pairs out of key order', prefix: (c) => [c[0]!], bad: (c) => tamperedPairs(c[1]!, (p) => void p.reverse()) },
    { name: 'a pair repeating the previous chunk’s last key', prefix: (c) => [c[0]!], bad: (c) => tamperedPairs(c[1]!, (p) => void p.splice(0, 1, chunkPairs(decodeChunk(c[0]!).body).at(-1)!)) },
    { name: 'a pair with version 0', prefix: (c) => [c[0]!], bad: (c) => tamperedPairs(c[1]!, (p) => void (p[0]![1] = 0)) },
    { name: 'a pair with an empty key', prefix: (c) => [c[0]!], bad: (c) => tamperedPairs(c[1]!, (p) => void (p[0]![0] = new Uint8Array(0))) },
    // The body's framing and the records' shape: bytes that go into the data unread must be what the state machine reads.
    { name: 'a body cut inside a pair', prefix: (c) => [c[0]!], bad: (c) => tampered(c[1]!, (f) => void (f[8] = (f[8] as Uint8Array).subarray(0, 9))) },
    { name: 'a body that is not bytes', prefix: (c) => [c[0]!], bad: (c) => tampered(c[1]!, (f) => void (f[8] = [])) },
    { name: 'a record that is not an array', prefix: (c) => [c[0]!], bad: (c) => withRecord(c[1]!, new Packr().pack('value')) },
    { name: 'a record of one field', prefix: (c) => [c[0]!], bad: (c) => withRecord(c[1]!, new Packr().pack([3])) },
    { name: 'a record whose value is a string', prefix: (c) => [c[0]!], bad: (c) => withRecord(c[1]!, new Packr().pack([3, 'text'])) },
    { name: 'a record with a negative version', prefix: (c) => [c[0]!], bad: (c) => withRecord(c[1]!, new Packr().pack([-3, bytes('v')])) },
    { name: 'a record with a fractional version', prefix: (c) => [c[0]!], bad: (c) => withRecord(c[1]!, new Packr().pack([1.5, bytes('v')])) },
    { name: 'a record whose content type is not a string', prefix: (c) => [c[0]!], bad: (c) => withRecord(c[1]!, new Packr().pack([3, bytes('v'), 7])) },
    { name: 'a record with bytes after its fields', prefix: (c) => [c[0]!], bad: (c) => withRecord(c[1]!, Buffer.concat([new Packr().pack([3, bytes('v')]), Buffer.from([0])])) },
    { name: 'a record cut inside its value', prefix: (c) => [c[0]!], bad: (c) => withRecord(c[1]!, new Packr().pack([3, bytes('value')]).subarray(0, 6)) },
    { name: 'a chunk after the last one', prefix: (c) => c, bad: (c) => c[c.length - 1]! },
  ];

  for (const r of rejections) {
    it(`rejects ${r.name} with CorruptRecordError and leaves the old state intact`, async () => {
      const source = await sourceStore(KEY_COUNT_SMALL);
      const { chunks } = readAll(source, SHARD, BOUNDS);
      expect(chunks.length).toBeGreaterThanOrEqual(3);
      const otherShard = groupId(2);
      await source.createShard(otherShard, { confState: SOURCE_CONF });
      const other = readAll(source, otherShard, BOUNDS).chunks;
      const target = await targetStore();
      const before = stateOf(target);

      const installer = new SnapshotInstaller(target, SHARD);
      const prefix = r.prefix(chunks);
      for (const c of prefix) await installer.addChunk(c);
      let caught: unknown;
      try {
        await installer.addChunk(r.bad(chunks, other));
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(CorruptRecordError);
      // Only the staging area may have changed (the accepted prefix); the shard has not.
      expect({ ...stateOf(target), staged: 0 }).toEqual({ ...before, staged: 0 });
      expect(stateOf(await reopen(target))).toEqual(before);
    });
  }

  it('a rejected chunk does not spoil the transfer: the right chunks still install', async () => {
    const source = await sourceStore(KEY_COUNT_SMALL);
    const { chunks, header } = readAll(source, SHARD, BOUNDS);
    const target = await targetStore();
    const installer = new SnapshotInstaller(target, SHARD);
    await installer.addChunk(chunks[0]!);
    expect(await asyncErrorCode(() => installer.addChunk(chunks[2]!))).toBe('CORRUPT_RECORD');
    expect(await asyncErrorCode(() => installer.addChunk(garbage(5, 300)))).toBe('CORRUPT_RECORD');
    for (const c of chunks.slice(1)) await installer.addChunk(c);
    await installer.install(CURRENT);
    expect(pairsIn(target, BOUNDS)).toEqual(pairsIn(source, BOUNDS));
    expect(target.storage(SHARD).applied).toBe(header.index);
  });

  it('install before the last chunk is an assertion failure and changes nothing', async () => {
    const source = await sourceStore(KEY_COUNT_SMALL);
    const { chunks } = readAll(source, SHARD, BOUNDS);
    const target = await targetStore();
    const before = stateOf(target);
    const installer = new SnapshotInstaller(target, SHARD);
    await installer.addChunk(chunks[0]!);
    expect(await asyncErrorCode(() => installer.install(CURRENT))).toBe('ASSERTION_FAILED');
    expect({ ...stateOf(target), staged: 0 }).toEqual({ ...before, staged: 0 });
  });

  it('a snapshot older than what the shard has applied is refused (SNAPSHOT_OUT_OF_DATE) and changes nothing', async () => {
    const oldSource = await openStore(tempDir(), 3);
    await oldSource.createShard(SHARD, { confState: SOURCE_CONF });
    await applyAll(oldSource, SHARD, 10, (i, index) => putEntry(index, TERM, rangeKey(i), bytes('old')));
    const { chunks } = readAll(oldSource, SHARD, BOUNDS);
    const target = await targetStore(); // applied 60 > 10
    const before = stateOf(target);
    const installer = new SnapshotInstaller(target, SHARD);
    for (const c of chunks) await installer.addChunk(c);
    expect(await asyncErrorCode(() => installer.install(CURRENT))).toBe('SNAPSHOT_OUT_OF_DATE');
    expect({ ...stateOf(target), staged: 0 }).toEqual({ ...before, staged: 0 });
  });

  it('a store reopened after staging some chunks keeps the old state and an empty staging area', async () => {
    const source = await sourceStore(KEY_COUNT_SMALL);
    const { chunks } = readAll(source, SHARD, BOUNDS);
    let target = await targetStore();
    const before = stateOf(target);
    const installer = new SnapshotInstaller(target, SHARD);
    await installer.addChunk(chunks[0]!);
    await installer.addChunk(chunks[1]!);
    expect(target.staging.getKeysCount()).toBe(2);
    target = await reopen(target); // as after a crash between chunks: the install never happened
    expect(stateOf(target)).toEqual(before);
    expect(target.staging.getKeysCount()).toBe(0);
  });
});
