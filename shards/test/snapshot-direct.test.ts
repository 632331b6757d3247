// A replica that owns no keys receives its snapshot straight into the data
// sub-database (installer.ts, direct mode): each chunk's records land in the
// chunk's own transaction, a receiving marker claims their bounds, and the
// install only flips the metadata. These tests hold the claims and the
// cleanups to what a transfer may never do: leave records nobody owns
// (after a crash, an abort, a newer transfer, a destroy), or let another
// snapshot, split or install delete or overlap what it wrote.
import { EMPTY_CONF_STATE, SILENT_LOGGER, groupId, nodeId, type Entry, type GroupId, type HardState, type Message } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { zeroCoreStats } from '../src/host/core-protocol.js';
import { Group } from '../src/host/group.js';
import { encodeCommand } from '../src/kv/command.js';
import { UNINITIALIZED, decodeShardRange, encodeShardRange, type ShardRange } from '../src/kv/range.js';
import { KvStateMachine } from '../src/kv/state-machine.js';
import type { ShellLogger } from '../src/shell-logger.js';
import type { RangeBounds } from '../src/storage/codec.js';
import { boundsOutside, ownedBoundsOf, type NodeStore } from '../src/storage/node-store.js';
import { CoreClaims, storeClaims, type RangeClaims } from '../src/snapshot/claims.js';
import { IncomingSnapshots } from '../src/snapshot/incoming.js';
import { SnapshotInstaller } from '../src/snapshot/installer.js';
import { readSnapshot } from '../src/snapshot/reader.js';
import { asyncErrorCode, bytes, commitAndApply, confState, openStore, reopen, tempDir, useTempStores } from './support/fixtures.js';

useTempStores();

/** The receiving replica, empty until its snapshot installs, and its neighbours on the target node. */
const RECEIVER = groupId(1);
const LEFT = groupId(2);
const RIGHT = groupId(3);
/** Another empty replica on the target, for snapshots that must be kept out. */
const OTHER = groupId(4);
const CONF = confState({ voters: [1, 2, 3] });
const TERM = 2;
/** The snapshot's range and its neighbours': adjacent, so a key either side of every boundary exists. */
const RANGE: ShardRange = { start: bytes('k'), end: bytes('l'), epoch: 3 };
const LEFT_RANGE: ShardRange = { start: bytes('j'), end: bytes('k'), epoch: 1 };
const RIGHT_RANGE: ShardRange = { start: bytes('l'), end: bytes('m'), epoch: 1 };
/** ~3 MiB of values: three chunks, so a transfer can stop between them. */
const KEY_COUNT = 3000;
const VALUE_BYTES = 1000;

const rangeKey = (i: number) => bytes(`k${String(i).padStart(6, '0')}`);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function valueFor(i: number, salt: number): Uint8Array {
  const v = new Uint8Array(VALUE_BYTES);
  for (let j = 0; j < v.length; j++) v[j] = (i * 13 + j * 7 + salt) & 0xff;
  return v;
}

async function applyPuts(store: NodeStore, shardId: GroupId, pairs: readonly (readonly [Uint8Array, Uint8Array])[]): Promise<void> {
  for (let from = 0; from < pairs.length; from += 500) {
    const first = store.storage(shardId).lastIndex() + 1;
    const batch: Entry[] = pairs.slice(from, from + 500).map(([key, value], j) => ({ index: first + j, term: TERM, type: 'normal', data: encodeCommand({ op: 'put', key, value }) }));
    await commitAndApply(store, shardId, batch);
  }
}

/** The leader's node: the shard's range `range` holding `keyCount` keys (every `skip`-th left out), values salted by `salt`. */
async function sourceStore(o: { shardId?: GroupId; range?: ShardRange; keyCount?: number; skip?: number; salt?: number } = {}): Promise<NodeStore> {
  const range = o.range ?? RANGE;
  const shardId = o.shardId ?? RECEIVER;
  const store = await openStore(tempDir(), 9);
  await store.createShard(shardId, { confState: CONF, descriptor: encodeShardRange(range) });
  const pairs: [Uint8Array, Uint8Array][] = [];
  for (let i = 0; i < (o.keyCount ?? KEY_COUNT); i++) {
    if (o.skip !== undefined && i % o.skip === 0) continue;
    const key = rangeKey(i);
    if (Buffer.compare(key, range.start) >= 0 && (range.end === null || Buffer.compare(key, range.end) < 0)) pairs.push([key, valueFor(i, o.salt ?? 0)]);
  }
  await applyPuts(store, shardId, pairs);
  return store;
}

function chunksOf(source: NodeStore, shardId = RECEIVER): Uint8Array[] {
  // Copied: a chunk is a view into the reader's buffer only until the next one.
  return [...readSnapshot(source, shardId)].map((c) => Uint8Array.from(c));
}

/**
 * The receiving node: RECEIVER empty (range epoch 0), LEFT and RIGHT owning
 * the ranges either side of the snapshot's, with keys at their edges.
 */
async function targetStore(): Promise<NodeStore> {
  const store = await openStore(tempDir(), 1);
  await store.createShard(RECEIVER, { confState: EMPTY_CONF_STATE, descriptor: encodeShardRange(UNINITIALIZED) });
  await store.createShard(OTHER, { confState: EMPTY_CONF_STATE, descriptor: encodeShardRange(UNINITIALIZED) });
  await store.createShard(LEFT, { confState: CONF, descriptor: encodeShardRange(LEFT_RANGE) });
  await store.createShard(RIGHT, { confState: CONF, descriptor: encodeShardRange(RIGHT_RANGE) });
  await applyPuts(store, LEFT, ['j', 'jzzz', 'j\u00ff\u00ff'].map((k) => [bytes(k), bytes(`left-${k}`)] as const));
  await applyPuts(store, RIGHT, ['l', 'l0', 'lzzz'].map((k) => [bytes(k), bytes(`right-${k}`)] as const));
  return store;
}

/** Records in [start, end) as [key, record] hex pairs, exactly as stored. */
function recordsIn(store: NodeStore, bounds: RangeBounds): [string, string][] {
  const range = store.dataRecords.getRange({ start: Buffer.from(bounds.start), ...(bounds.end === null ? {} : { end: Buffer.from(bounds.end) }) });
  return [...range].map(({ key, value }) => [key.toString('hex'), value.toString('hex')]);
}

const EVERYTHING: RangeBounds = { start: new Uint8Array(0), end: null };
const outsideRange = (store: NodeStore) => [...recordsIn(store, { start: new Uint8Array(0), end: RANGE.start }), ...recordsIn(store, { start: RANGE.end!, end: null })];

const INSTALL_STATE: HardState = { term: TERM, vote: nodeId(0), commit: 0 };

describe('an empty replica receives its snapshot straight into the data', () => {
  it('each chunk\'s records are in the data once its transaction returns; the install only flips the metadata, and survives reopen', async () => {
    const source = await sourceStore();
    const chunks = chunksOf(source);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    let target = await targetStore();
    const neighbours = outsideRange(target);
    const installer = new SnapshotInstaller(target, RECEIVER);
    let received = 0;
    for (const c of chunks) {
      await installer.addChunk(c);
      expect(installer.receiveMode).toBe('direct');
      const now = recordsIn(target, RANGE).length;
      expect(now).toBeGreaterThan(received);
      received = now;
      // Only the marker is staged; nothing for the install to copy.
      expect([...target.staging.getKeys()]).toEqual([[RECEIVER, -1]]);
      expect(installer.stagedBytes).toBe(0);
    }
    expect(recordsIn(target, RANGE)).toEqual(recordsIn(source, RANGE));
    expect(target.receiving().get(RECEIVER)).toBeDefined();
    const header = await installer.install(INSTALL_STATE);

    const check = (store: NodeStore) => {
      expect(recordsIn(store, RANGE)).toEqual(recordsIn(source, RANGE));
      expect(outsideRange(store)).toEqual(neighbours);
      expect(decodeShardRange(RECEIVER, store.descriptor(RECEIVER))).toEqual({ start: Buffer.from(RANGE.start), end: Buffer.from(RANGE.end!), epoch: RANGE.epoch });
      expect(store.storage(RECEIVER).applied).toBe(header.index);
      expect(store.staging.getKeysCount()).toBe(0);
      expect(store.receiving().size).toBe(0);
    };
    check(target);
    target = await reopen(target);
    check(target);
  });

  it('a replica that owns keys stages, and so does an empty one whose snapshot takes over another replica here: nothing of the snapshot shows before the install', async () => {
    const source = await sourceStore();
    const chunks = chunksOf(source);
    // Lagging: RECEIVER owns the range at an older epoch, with data of its own there.
    const lagging = await targetStore();
    await lagging.write(() => lagging.meta.putSync([RECEIVER, 'desc'], encodeShardRange({ ...RANGE, epoch: 2 })));
    await applyPuts(lagging, RECEIVER, [[rangeKey(1), bytes('old')], [bytes('k-only-here'), bytes('old')]]);
    const laggingBefore = recordsIn(lagging, EVERYTHING);
    const catchUp = new SnapshotInstaller(lagging, RECEIVER);
    for (const c of chunks) await catchUp.addChunk(c);
    expect(catchUp.receiveMode).toBe('staged');
    expect(recordsIn(lagging, EVERYTHING)).toEqual(laggingBefore);
    await catchUp.install(INSTALL_STATE);
    expect(recordsIn(lagging, RANGE)).toEqual(recordsIn(source, RANGE));

    const target = await targetStore();
    // A replica of a range the snapshot's merged in (epoch 1 < 3, inside it): the install takes it over.
    const mergedIn: ShardRange = { start: bytes('k5'), end: bytes('k6'), epoch: 1 };
    await target.createShard(groupId(5), { confState: CONF, descriptor: encodeShardRange(mergedIn) });
    await applyPuts(target, groupId(5), [[bytes('k50'), bytes('merged-in')]]);
    const before = recordsIn(target, EVERYTHING);
    const installer = new SnapshotInstaller(target, RECEIVER);
    for (const c of chunks) await installer.addChunk(c);
    expect(installer.receiveMode).toBe('staged');
    expect(recordsIn(target, EVERYTHING)).toEqual(before);
    expect(target.receiving().size).toBe(0);
    await installer.install(INSTALL_STATE);
    expect(recordsIn(target, RANGE)).toEqual(recordsIn(source, RANGE));
  });

  it('reopening in the middle of a transfer deletes what it received and nothing of the neighbours', async () => {
    const source = await sourceStore();
    const chunks = chunksOf(source);
    let target = await targetStore();
    const before = recordsIn(target, EVERYTHING);
    const installer = new SnapshotInstaller(target, RECEIVER);
    await installer.addChunk(chunks[0]!);
    await installer.addChunk(chunks[1]!);
    expect(recordsIn(target, RANGE).length).toBeGreaterThan(0);
    target = await reopen(target); // as after a crash between chunks: the install never happened
    expect(recordsIn(target, EVERYTHING)).toEqual(before);
    expect(target.staging.getKeysCount()).toBe(0);
    expect(target.receiving().size).toBe(0);
    expect(decodeShardRange(RECEIVER, target.descriptor(RECEIVER))).toEqual(UNINITIALIZED);
  });

  it('an aborted transfer\'s clear deletes its records, sparing keys another replica owns', async () => {
    const source = await sourceStore();
    const chunks = chunksOf(source);
    const target = await targetStore();
    const before = recordsIn(target, EVERYTHING);
    let installer = new SnapshotInstaller(target, RECEIVER);
    await installer.addChunk(chunks[0]!);
    await installer.clear();
    expect(recordsIn(target, EVERYTHING)).toEqual(before);
    expect(target.staging.getKeysCount()).toBe(0);
    expect(target.receiving().size).toBe(0);

    // Keys a replica here owns are never a transfer's to delete, however they came to lie in its bounds
    // (here: LEFT's descriptor moved over part of them behind the claims' back).
    installer = new SnapshotInstaller(target, RECEIVER);
    await installer.addChunk(chunks[0]!);
    await installer.addChunk(chunks[1]!);
    const leftGrown: ShardRange = { start: LEFT_RANGE.start, end: rangeKey(1000), epoch: 2 };
    await target.write(() => target.meta.putSync([LEFT, 'desc'], encodeShardRange(leftGrown)));
    const spared = recordsIn(target, { start: RANGE.start, end: leftGrown.end });
    expect(spared.length).toBe(1000);
    await installer.clear();
    expect(recordsIn(target, RANGE)).toEqual(spared);
    expect(recordsIn(target, { start: LEFT_RANGE.start, end: RANGE.start })).toEqual(before.filter(([k]) => Buffer.from(k, 'hex').toString('latin1') < 'k'));
  });

  it('a newer transfer\'s first chunk deletes what an older one received, under other bounds too', async () => {
    const wide = await sourceStore();
    // The leader retried after a split: the range is narrower, and some keys were deleted since.
    const narrow: ShardRange = { start: RANGE.start, end: rangeKey(1500), epoch: 4 };
    const later = await sourceStore({ range: narrow, skip: 7, salt: 1 });
    const target = await targetStore();
    const neighbours = outsideRange(target);
    const older = new SnapshotInstaller(target, RECEIVER);
    const wideChunks = chunksOf(wide);
    for (const c of wideChunks.slice(0, -1)) await older.addChunk(c);
    expect(recordsIn(target, { start: narrow.end!, end: RANGE.end }).length).toBeGreaterThan(0);

    const newer = new SnapshotInstaller(target, RECEIVER);
    for (const c of chunksOf(later)) await newer.addChunk(c);
    const marked = target.receiving().get(RECEIVER)!;
    expect([hex(marked.start), hex(marked.end!)]).toEqual([hex(narrow.start), hex(narrow.end!)]);
    await newer.install(INSTALL_STATE);
    expect(recordsIn(target, RANGE)).toEqual(recordsIn(later, narrow));
    expect(outsideRange(target)).toEqual(neighbours);
  });

  it('records that lay in the bounds before the transfer (nobody\'s) do not pass for the snapshot\'s', async () => {
    const source = await sourceStore({ skip: 3 });
    const target = await targetStore();
    const stray = [rangeKey(0), rangeKey(3), bytes('k-stray')];
    await target.write(() => stray.forEach((k) => target.data.putSync(Buffer.from(k), [1, Buffer.from('stray')])));
    const installer = new SnapshotInstaller(target, RECEIVER);
    for (const c of chunksOf(source)) await installer.addChunk(c);
    await installer.install(INSTALL_STATE);
    expect(recordsIn(target, RANGE)).toEqual(recordsIn(source, RANGE));
  });

  it('another snapshot over claimed keys is refused before it writes anything: an empty replica\'s, and a lagging neighbour\'s', async () => {
    const source = await sourceStore();
    const target = await targetStore();
    const installer = new SnapshotInstaller(target, RECEIVER);
    const chunks = chunksOf(source);
    await installer.addChunk(chunks[0]!);
    const snapshotOf = async (shardId: GroupId, range: ShardRange): Promise<Uint8Array[]> => {
      const store = await openStore(tempDir(), 8);
      await store.createShard(shardId, { confState: CONF, descriptor: encodeShardRange(range) });
      await applyPuts(store, shardId, [[range.start, bytes('theirs')]]);
      return [...readSnapshot(store, shardId)].map((c) => Uint8Array.from(c));
    };
    const dump = () => ({ data: recordsIn(target, EVERYTHING), staging: [...target.staging.getKeys()] });
    const before = dump();
    // The empty OTHER, sent a range reaching into the claimed bounds.
    const [otherChunk] = await snapshotOf(OTHER, { start: bytes('k5'), end: bytes('m'), epoch: 5 });
    expect(await asyncErrorCode(() => new SnapshotInstaller(target, OTHER).addChunk(otherChunk!))).toBe('SNAPSHOT_OVERLAP');
    // RIGHT (owning keys: it stages) caught up past a merge that widened its range over the claimed bounds.
    const [rightChunk] = await snapshotOf(RIGHT, { start: bytes('k5'), end: bytes('m'), epoch: 5 });
    expect(await asyncErrorCode(() => new SnapshotInstaller(target, RIGHT).addChunk(rightChunk!))).toBe('SNAPSHOT_OVERLAP');
    expect(dump()).toEqual(before);
    // The transfer goes on untouched.
    for (const c of chunks.slice(1)) await installer.addChunk(c);
    await installer.install(INSTALL_STATE);
    expect(recordsIn(target, RANGE)).toEqual(recordsIn(source, RANGE));
  });

  it('a split applied here that would delete claimed records is an assertion failure, and deletes nothing', async () => {
    // RECEIVER is the right half of PARENT's split, adopted here before PARENT applied the split. The claims
    // keep its snapshot out while PARENT owns the keys; with them bypassed, the store's fence still holds.
    const source = await sourceStore();
    const target = await openStore(tempDir(), 1);
    const parent = groupId(6);
    await target.createShard(RECEIVER, { confState: EMPTY_CONF_STATE, descriptor: encodeShardRange(UNINITIALIZED) });
    await target.createShard(parent, { confState: CONF, descriptor: encodeShardRange({ start: bytes('j'), end: bytes('m'), epoch: 2 }) });
    await applyPuts(target, parent, [[bytes('j1'), bytes('parent')]]);
    const noClaims: RangeClaims = { forEachOther: () => undefined };
    const installer = new SnapshotInstaller(target, RECEIVER, { claims: noClaims });
    await installer.addChunk(chunksOf(source)[0]!);
    const before = { data: recordsIn(target, EVERYTHING), applied: target.storage(parent).applied };
    expect(before.data.length).toBeGreaterThan(1);

    const index = target.storage(parent).lastIndex() + 1;
    const split: Entry = { index, term: TERM, type: 'normal', data: encodeCommand({ op: 'split', key: RANGE.start, newShardId: RECEIVER, epoch: 2 }) };
    await target.persist([{ shardId: parent, entries: [split], hardState: { term: TERM, vote: nodeId(0), commit: index } }]);
    const apply = new KvStateMachine(target).stage([{ shardId: parent, entries: [split] }]);
    expect(await asyncErrorCode(() => target.persist([], { alsoInTransaction: () => void apply.write() }))).toBe('ASSERTION_FAILED');
    expect({ data: recordsIn(target, EVERYTHING), applied: target.storage(parent).applied }).toEqual(before);
  });
});

describe('the storage side of received records', () => {
  it('boundsOutside: the parts of a range no kept range covers', () => {
    const b = (start: string, end: string | null): RangeBounds => ({ start: bytes(start), end: end === null ? null : bytes(end) });
    const show = (parts: RangeBounds[]) => parts.map((p) => `[${Buffer.from(p.start).toString()},${p.end === null ? '∞' : Buffer.from(p.end).toString()})`).join(' ');
    const table: [RangeBounds, RangeBounds[], string][] = [
      [b('c', 'm'), [], '[c,m)'],
      [b('c', 'm'), [b('a', 'b'), b('n', 'p')], '[c,m)'],
      [b('c', 'm'), [b('a', 'c'), b('m', null)], '[c,m)'],
      [b('c', 'm'), [b('e', 'g')], '[c,e) [g,m)'],
      [b('c', 'm'), [b('h', 'j'), b('a', 'd'), b('f', 'g')], '[d,f) [g,h) [j,m)'],
      [b('c', 'm'), [b('a', null)], ''],
      [b('c', null), [b('d', 'e'), b('e', 'f')], '[c,d) [f,∞)'],
      [b('c', null), [b('x', null)], '[c,x)'],
      [b('c', 'm'), [b('d', 'h'), b('e', 'f')], '[c,d) [h,m)'],
      [b('c', 'c'), [], ''],
      [b('c', 'm'), [b('e', 'e')], '[c,m)'],
    ];
    for (const [bounds, keep, expected] of table) expect(show(boundsOutside(bounds, keep))).toBe(expected);
  });

  it('boundsOutside agrees with a key-by-key oracle on random ranges', () => {
    // Keys of one or two letters from a small alphabet: every boundary case is within reach.
    const letters = 'abcdef';
    const keys = [...letters].flatMap((x) => [x, ...[...letters].map((y) => x + y)]);
    const inside = (key: string, r: RangeBounds) => key >= Buffer.from(r.start).toString() && (r.end === null || key < Buffer.from(r.end).toString());
    let seed = 17;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % 1_000_003;
    const anyRange = (): RangeBounds => {
      const start = keys[next() % keys.length]!;
      const end = next() % 5 === 0 ? null : keys[next() % keys.length]!;
      return { start: bytes(start), end: end === null ? null : bytes(end) };
    };
    for (let round = 0; round < 500; round++) {
      const bounds = anyRange();
      const keep = Array.from({ length: next() % 4 }, anyRange);
      const parts = boundsOutside(bounds, keep);
      for (const key of keys) {
        const expected = inside(key, bounds) && !keep.some((k) => inside(key, k));
        expect(parts.some((p) => inside(key, p)), `key ${key}, round ${round}`).toBe(expected);
      }
      for (let i = 1; i < parts.length; i++) expect(Buffer.compare(parts[i - 1]!.end!, parts[i]!.start)).toBeLessThan(0);
    }
  });

  it('ownedBoundsOf reads a stored descriptor as kv/range.ts decodeShardRange does', () => {
    const stored: unknown[] = [undefined, [bytes('a'), bytes('b')], [bytes('a'), null, 4], [new Uint8Array(0), bytes('b'), 1], encodeShardRange(UNINITIALIZED)];
    for (const s of stored) {
      const range = decodeShardRange(1, s);
      expect(ownedBoundsOf(1, s)).toEqual(range.epoch === 0 ? undefined : { start: range.start, end: range.end });
    }
    for (const bad of [[bytes('a')], [bytes('a'), bytes('b'), -1], [bytes('a'), bytes('b'), 0], 'x']) {
      expect(() => decodeShardRange(1, bad)).toThrow();
      expect(() => ownedBoundsOf(1, bad)).toThrow();
    }
  });
});

describe('IncomingSnapshots: a core\'s streams into an empty replica', () => {
  /** A core's receiving side over a real store: its tasks run when `drain` is awaited, as the core's loop runs them. */
  async function core() {
    const store = await targetStore();
    const groups = new Map<GroupId, Group>();
    const claims = new CoreClaims(store);
    const add = (id: GroupId, range: ShardRange) => {
      const g = new Group(id, store.storage(id), range, { nodeId: nodeId(1), seed: 1, raft: {}, nodeLeases: undefined, logger: () => SILENT_LOGGER, claimsChanged: (changed) => claims.track(changed) });
      groups.set(id, g);
      claims.track(g);
    };
    add(RECEIVER, UNINITIALIZED);
    add(OTHER, UNINITIALIZED);
    add(LEFT, LEFT_RANGE);
    add(RIGHT, RIGHT_RANGE);
    const tasks: (() => Promise<void>)[] = [];
    const acks: { streamId: number; error?: string }[] = [];
    const log = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => log } as unknown as ShellLogger;
    const incoming = new IncomingSnapshots({
      store,
      self: nodeId(1),
      stats: zeroCoreStats(),
      log,
      out: {
        event: (e) => void (e.kind === 'snapshotChunkAck' && acks.push(e.error === undefined ? { streamId: e.streamId } : { streamId: e.streamId, error: e.error })),
        fail: () => undefined,
      },
      groups,
      claims,
      disk: { spaceShortfall: () => undefined },
      schedule: (task) => void tasks.push(task),
      wake: () => undefined,
      step: (_g: Group, _m: Message) => undefined,
      supersede: () => undefined,
    });
    const drain = async () => {
      while (tasks.length > 0) await tasks.shift()!();
    };
    return { store, groups, incoming, acks, drain };
  }

  it('a removed replica\'s received records go after its destroy; until then they keep other snapshots out', async () => {
    const c = await core();
    const chunks = chunksOf(await sourceStore());
    const neighbours = outsideRange(c.store);
    c.incoming.onIncoming(1, RECEIVER, nodeId(2), TERM);
    c.incoming.onChunk(1, chunks[0]!);
    c.incoming.onChunk(1, chunks[1]!);
    await c.drain();
    expect(c.acks).toEqual([{ streamId: 1 }, { streamId: 1 }]);
    expect(recordsIn(c.store, RANGE).length).toBeGreaterThan(0);

    // What ReplicaLifecycle.destroyGroup does, in its order: removed, then in its task forget and destroy (the clear
    // forget schedules runs after that task).
    const g = c.groups.get(RECEIVER)!;
    g.removed = true;
    c.incoming.forget(g);
    await c.store.destroyShard(RECEIVER, undefined, { tombstone: g.raw.raft.hardState() });
    c.groups.delete(RECEIVER);
    // Destroyed, not yet cleared: the marker still claims the records.
    const [otherChunk] = chunksOf(await sourceStore({ shardId: OTHER }), OTHER);
    expect(await asyncErrorCode(() => new SnapshotInstaller(c.store, OTHER).addChunk(otherChunk!))).toBe('SNAPSHOT_OVERLAP');
    await c.drain();
    expect(recordsIn(c.store, RANGE)).toEqual([]);
    expect(outsideRange(c.store)).toEqual(neighbours);
    expect(c.store.receiving().size).toBe(0);
    expect(c.store.staging.getKeysCount()).toBe(0);
    // The keys are free again.
    await new SnapshotInstaller(c.store, OTHER).addChunk(otherChunk!);
  });

  it('a chunk of a replaced stream writes nothing; the newer stream\'s chunks do', async () => {
    const c = await core();
    const chunks = chunksOf(await sourceStore());
    c.incoming.onIncoming(1, RECEIVER, nodeId(2), TERM);
    c.incoming.onChunk(1, chunks[0]!);
    c.incoming.onIncoming(2, RECEIVER, nodeId(3), TERM + 1);
    await c.drain();
    expect(c.acks).toHaveLength(1);
    expect(c.acks[0]!.error).toMatch(/replaced/);
    expect(recordsIn(c.store, RANGE)).toEqual([]);
    expect(c.store.staging.getKeysCount()).toBe(0);
    c.incoming.onChunk(2, chunks[0]!);
    await c.drain();
    expect(c.acks[1]).toEqual({ streamId: 2 });
    expect(recordsIn(c.store, RANGE).length).toBeGreaterThan(0);
  });

  it('a removed replica\'s range keeps a snapshot out until its destroy deleted its data', async () => {
    const c = await core();
    // OTHER, empty, is sent a range reaching into LEFT's; LEFT is removed and its destroy (which deletes
    // its range's data) has not run yet.
    c.groups.get(LEFT)!.removed = true;
    const [chunk] = chunksOf(await sourceStore({ shardId: OTHER, range: { start: bytes('j5'), end: bytes('k'), epoch: 2 }, keyCount: 1 }), OTHER);
    const before = recordsIn(c.store, EVERYTHING);
    c.incoming.onIncoming(1, OTHER, nodeId(2), TERM);
    c.incoming.onChunk(1, chunk!);
    await c.drain();
    expect(c.acks).toHaveLength(1);
    expect(c.acks[0]!.error).toMatch(/overlapping shard 2's/);
    expect(recordsIn(c.store, EVERYTHING)).toEqual(before);
    expect(c.store.staging.getKeysCount()).toBe(0);
  });
});
