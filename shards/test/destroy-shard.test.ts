// Destroying a shard's replica on a node: its log, metadata, staged snapshot
// chunks and its range's data go in one durable transaction; every other
// shard's records, and every key outside the range, stay byte for byte.
import { AssertionError, EMPTY_HARD_STATE, groupId, nodeId, type GroupId } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { KvStateMachine } from '../src/kv/state-machine.js';
import type { NodeStore } from '../src/storage/node-store.js';
import type { RangeBounds } from '../src/storage/codec.js';
import { SnapshotInstaller } from '../src/snapshot/installer.js';
import { readSnapshot } from '../src/snapshot/reader.js';
import { bytes, closeStore, commitAndApply, confState, entries, openStore, putEntry, reopen, tempDir, useTempStores } from './support/fixtures.js';

useTempStores();

const LOW = groupId(1);
const VICTIM = groupId(2);
const HIGH = groupId(3);
/** Three neighbouring ranges; the victim's start is inclusive, its end exclusive. */
const LOW_BOUNDS: RangeBounds = { start: new Uint8Array(0), end: bytes('b') };
const VICTIM_BOUNDS: RangeBounds = { start: bytes('b'), end: bytes('m') };
const HIGH_BOUNDS: RangeBounds = { start: bytes('m'), end: null };
const CONF = confState({ voters: [1, 2, 3] });
/** Enough keys for the victim's range to span many LMDB pages. */
const VICTIM_KEY_COUNT = 2000;

const META_FIELDS = ['hard', 'conf', 'applied', 'snap', 'desc', 'inc'] as const;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const inBounds = (key: Uint8Array, b: RangeBounds) => Buffer.compare(key, b.start) >= 0 && (b.end === null || Buffer.compare(key, b.end) < 0);

/** Everything in the store, sub-database by sub-database, as comparable rows. */
function dump(store: NodeStore) {
  return {
    log: [...store.log.getRange({})].map(({ key, value }) => ({ key, value })),
    meta: [...store.meta.getRange({})].map(({ key, value }) => ({ key, value })),
    staging: [...store.staging.getRange({})].map(({ key, value }) => ({ key, value })),
    data: [...store.data.getRange({})].map(({ key, value }) => ({ key: hex(key), value })),
  };
}

/** What must remain of `before` once `shardId` is destroyed (with its data in `bounds`, if given). */
function withoutShard(before: ReturnType<typeof dump>, shardId: GroupId, bounds?: RangeBounds): ReturnType<typeof dump> {
  return {
    log: before.log.filter((row) => row.key[0] !== shardId),
    meta: before.meta.filter((row) => row.key[0] !== shardId),
    staging: before.staging.filter((row) => row.key[0] !== shardId),
    data: bounds === undefined ? before.data : before.data.filter((row) => !inBounds(Buffer.from(row.key, 'hex'), bounds)),
  };
}

async function putKeys(store: NodeStore, shardId: GroupId, keys: readonly string[]): Promise<void> {
  const first = store.storage(shardId).lastIndex() + 1;
  await commitAndApply(store, shardId, keys.map((key, i) => putEntry(first + i, 2, bytes(key), bytes(`${key}@${shardId}`))));
}

/**
 * A node with three adjacent ranges, keys on both sides of every boundary,
 * compacted and unapplied log entries, descriptors, and a snapshot chunk
 * staged for the victim and for its low neighbour.
 */
async function threeShardStore(): Promise<NodeStore> {
  const store = await openStore(tempDir(), 1);
  for (const [shardId, bounds] of [[LOW, LOW_BOUNDS], [VICTIM, VICTIM_BOUNDS], [HIGH, HIGH_BOUNDS]] as const) {
    await store.createShard(shardId, { confState: CONF, descriptor: [bounds.start, bounds.end] });
  }
  await putKeys(store, LOW, ['a', 'azzz', 'a\u00ff']);
  const victimKeys = Array.from({ length: VICTIM_KEY_COUNT }, (_, i) => `b${String(i).padStart(5, '0')}`);
  for (let from = 0; from < victimKeys.length; from += 500) await putKeys(store, VICTIM, victimKeys.slice(from, from + 500));
  await putKeys(store, VICTIM, ['b', 'lzzz', 'l\u00ff\u00ff']);
  await putKeys(store, HIGH, ['m', 'm0', 'z']);
  await store.compact(VICTIM, 100);
  // Persisted, not yet committed: log entries past the applied index.
  await store.persist([{ shardId: VICTIM, entries: entries(store.storage(VICTIM).lastIndex() + 1, [2, 2, 2]) }]);
  await store.persist([{ shardId: LOW, entries: entries(store.storage(LOW).lastIndex() + 1, [2, 2]) }]);
  await stageChunk(store, { shardId: VICTIM, bounds: VICTIM_BOUNDS, key: 'bstaged' });
  await stageChunk(store, { shardId: LOW, bounds: LOW_BOUNDS, key: 'astaged' });
  return store;
}

/** Stages the first snapshot chunk of a shard from another node, as a receiver in the middle of a transfer would. */
async function stageChunk(store: NodeStore, o: { shardId: GroupId; bounds: RangeBounds; key: string }): Promise<void> {
  const { shardId, bounds } = o;
  expect(inBounds(bytes(o.key), bounds)).toBe(true);
  const source = await openStore(tempDir(), 9);
  await source.createShard(shardId, { confState: CONF });
  const first = source.storage(shardId).lastIndex() + 1;
  await commitAndApply(source, shardId, [putEntry(first, 1, bytes(o.key), bytes('v'))]);
  const [chunk] = [...readSnapshot(source, shardId, bounds)];
  await closeStore(source);
  await new SnapshotInstaller(store, shardId).addChunk(chunk!);
}

describe('destroyShard', () => {
  it('removes the shard’s log, meta records, staged chunks and the data in its bounds; everything else is untouched', async () => {
    const store = await threeShardStore();
    const before = dump(store);
    expect(before.staging.some((row) => row.key[0] === VICTIM)).toBe(true);
    expect(before.data.filter((row) => inBounds(Buffer.from(row.key, 'hex'), VICTIM_BOUNDS))).toHaveLength(VICTIM_KEY_COUNT + 3);
    const lowState = store.storage(LOW).initialState();

    await store.destroyShard(VICTIM, VICTIM_BOUNDS);

    expect(dump(store)).toEqual(withoutShard(before, VICTIM, VICTIM_BOUNDS));
    expect([...store.log.getKeys({ start: [VICTIM, 0], end: [VICTIM, Number.MAX_SAFE_INTEGER] })]).toEqual([]);
    for (const field of META_FIELDS) expect(store.meta.get([VICTIM, field])).toBeUndefined();
    expect(store.hasShard(VICTIM)).toBe(false);
    expect(store.shardIds()).toEqual([LOW, HIGH]);
    expect(() => store.storage(VICTIM)).toThrow(`shard ${VICTIM} does not exist on node 1`);
    expect(store.descriptor(VICTIM)).toBeUndefined();
    // The neighbours still work: their logs, states and data read as before.
    expect(store.storage(LOW).initialState()).toEqual(lowState);
    expect(store.storage(LOW).entries(1, store.storage(LOW).lastIndex() + 1, Number.POSITIVE_INFINITY)).toHaveLength(5);
    const kv = new KvStateMachine(store);
    expect(kv.get(bytes('lzzz'))).toBeUndefined();
    expect(kv.get(bytes('azzz'))?.value).toEqual(Buffer.from(`azzz@${LOW}`));
    expect(kv.get(bytes('m'))?.value).toEqual(Buffer.from(`m@${HIGH}`));
  });

  it('stays destroyed after a reopen', async () => {
    const store = await threeShardStore();
    const expected = withoutShard(dump(store), VICTIM, VICTIM_BOUNDS);
    await store.destroyShard(VICTIM, VICTIM_BOUNDS);
    const again = await reopen(store);
    expect(again.shardIds()).toEqual([LOW, HIGH]);
    // Reopening clears the staging area (an unfinished install never happened).
    expect(dump(again)).toEqual({ ...expected, staging: [] });
  });

  it('with an end of null removes the data up to the end of the key space', async () => {
    const store = await threeShardStore();
    const before = dump(store);
    await store.destroyShard(HIGH, HIGH_BOUNDS);
    const after = dump(store);
    expect(after).toEqual(withoutShard(before, HIGH, HIGH_BOUNDS));
    expect(after.data.map((row) => Buffer.from(row.key, 'hex').toString('utf8')).at(-1)).toBe('l\u00ff\u00ff'); // the victim's last key is the highest left
  });

  it('without bounds removes the log and meta records but no data', async () => {
    const store = await threeShardStore();
    const before = dump(store);
    await store.destroyShard(VICTIM);
    expect(dump(store)).toEqual(withoutShard(before, VICTIM));
    expect(dump(store).data).toEqual(before.data);
  });

  it('frees the id: the shard can be created again and starts from an empty log', async () => {
    const store = await threeShardStore();
    await store.destroyShard(VICTIM, VICTIM_BOUNDS);
    const secondLife = [Buffer.from(VICTIM_BOUNDS.start), Buffer.from(VICTIM_BOUNDS.end!), 2];
    await store.createShard(VICTIM, { confState: confState({ voters: [1] }), descriptor: secondLife });
    const storage = store.storage(VICTIM);
    expect(storage.initialState()).toEqual({ hardState: EMPTY_HARD_STATE, confState: confState({ voters: [1] }) });
    expect([storage.firstIndex(), storage.lastIndex(), storage.applied]).toEqual([1, 0, 0]);
    expect(store.descriptor(VICTIM)).toEqual(secondLife);

    await commitAndApply(store, VICTIM, [putEntry(1, 1, bytes('b00001'), bytes('new'))]);
    expect(new KvStateMachine(store).get(bytes('b00001'))).toEqual({ value: Buffer.from('new'), version: 1 });
    expect(new KvStateMachine(store).get(bytes('b00002'))).toBeUndefined();

    const again = await reopen(store);
    expect(again.shardIds()).toEqual([LOW, VICTIM, HIGH]);
    expect([again.storage(VICTIM).lastIndex(), again.storage(VICTIM).applied]).toEqual([1, 1]);
    expect(again.descriptor(VICTIM)).toEqual(secondLife);
  });

  it('each replica created after a destroy has a higher incarnation than the replicas any store of the node destroyed', async () => {
    const store = await threeShardStore();
    const conf = { confState: confState({ voters: [1] }) };
    expect(store.incarnation(VICTIM)).toBe(1);
    await store.destroyShard(VICTIM, VICTIM_BOUNDS, { tombstone: { term: 3, vote: nodeId(2), commit: 9 } });
    expect(store.tombstone(VICTIM)).toEqual({ term: 3, vote: 2, incarnation: 1 });
    expect(() => store.incarnation(VICTIM)).toThrow(`shard ${VICTIM} does not exist on node 1`);

    await store.createShard(VICTIM, conf);
    expect(store.storage(VICTIM).incarnation).toBe(2);
    expect(store.storage(VICTIM).initialState().hardState).toEqual({ term: 3, vote: 2, commit: 0 });
    const again = await reopen(store);
    expect(again.storage(VICTIM).incarnation).toBe(2);

    // A later replica removed from another core's store left incarnation 7 there (its claim answer says so).
    await again.destroyShard(VICTIM, VICTIM_BOUNDS, { tombstone: { term: 4, vote: nodeId(0), commit: 0 } });
    await again.createShard(VICTIM, { ...conf, tombstone: { term: 2, vote: nodeId(3), incarnation: 7 } });
    expect(again.incarnation(VICTIM)).toBe(8);
    expect(again.storage(VICTIM).initialState().hardState).toEqual({ term: 4, vote: 0, commit: 0 });
  });

  it('a tombstone from before incarnations reads as incarnation 0, and a replica created from it as 1', async () => {
    const store = await threeShardStore();
    await store.destroyShard(VICTIM, VICTIM_BOUNDS);
    await store.write(() => store.meta.putSync([VICTIM, 'tomb'], [5, 1, 0]));
    expect(store.tombstone(VICTIM)).toEqual({ term: 5, vote: 1, incarnation: 0 });
    await store.createShard(VICTIM, { confState: confState({ voters: [1] }) });
    expect(store.incarnation(VICTIM)).toBe(1);
    expect(store.storage(VICTIM).initialState().hardState).toEqual({ term: 5, vote: 1, commit: 0 });
  });

  it('an unknown shard is an error naming the shard and the node, and changes nothing', async () => {
    const store = await threeShardStore();
    const before = dump(store);
    await expect(store.destroyShard(groupId(9), VICTIM_BOUNDS)).rejects.toThrow('shard 9 does not exist on node 1');
    expect(dump(store)).toEqual(before);
  });

  it('a destroyed shard cannot be destroyed twice', async () => {
    const store = await threeShardStore();
    await store.destroyShard(VICTIM, VICTIM_BOUNDS);
    await expect(store.destroyShard(VICTIM, VICTIM_BOUNDS)).rejects.toThrow(`shard ${VICTIM} does not exist on node 1`);
  });

  it('a second destroy of a shard being destroyed is an assertion failure, and the first completes', async () => {
    const store = await threeShardStore();
    const destroying = store.destroyShard(VICTIM, VICTIM_BOUNDS);
    await expect(store.destroyShard(VICTIM, VICTIM_BOUNDS)).rejects.toThrow(AssertionError);
    await destroying;
    expect(store.hasShard(VICTIM)).toBe(false);
  });

  it('a persist started while the shard is being destroyed is an assertion failure', async () => {
    const store = await threeShardStore();
    const destroying = store.destroyShard(VICTIM, VICTIM_BOUNDS);
    await expect(store.persist([{ shardId: VICTIM, entries: [] }])).rejects.toThrow(AssertionError);
    await destroying;
    expect(store.hasShard(VICTIM)).toBe(false);
  });

  it('asserts that the bounds are a non-empty range', async () => {
    const store = await threeShardStore();
    const before = dump(store);
    await expect(store.destroyShard(VICTIM, { start: bytes('m'), end: bytes('b') })).rejects.toThrow(AssertionError);
    await expect(store.destroyShard(VICTIM, { start: bytes('b'), end: bytes('b') })).rejects.toThrow(AssertionError);
    expect(dump(store)).toEqual(before);
  });
});

describe('descriptor', () => {
  it('is what createShard stored, undefined when none was given or the shard is unknown', async () => {
    const store = await openStore(tempDir(), 1);
    await store.createShard(LOW, { confState: CONF, descriptor: { start: 'a', end: 'b' } });
    await store.createShard(VICTIM, { confState: CONF });
    expect(store.descriptor(LOW)).toEqual({ start: 'a', end: 'b' });
    expect(store.descriptor(VICTIM)).toBeUndefined();
    expect(store.descriptor(groupId(9))).toBeUndefined();
  });
});
