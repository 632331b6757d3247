// Local reads (src/host/local-reads.ts): what a core publishes and when the
// Host may serve a shard's linearizable read itself. Each refusal here is a
// read that would otherwise be answered from a slot, a range or a lease the
// shard does not have now.
import { groupId, nodeId, type GroupId, type NodeId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import { LOCAL_READ_SLOTS, LocalReadPublisher, LocalReads, localReadBuffer } from '../src/host/local-reads.js';
import type { RangeBounds } from '../src/storage/codec.js';
import { StoreDataReader } from '../src/storage/data-reader.js';
import type { NodeStore } from '../src/storage/node-store.js';
import { bytes, openStore, tempDir, useTempStores } from './support/fixtures.js';

useTempStores();

const readers: StoreDataReader[] = [];
afterEach(async () => {
  for (const r of readers.splice(0)) await r.close();
});

const SELF = nodeId(1);
const RANGE: RangeBounds = { start: bytes('b'), end: bytes('m') };

interface Setup {
  store: NodeStore;
  publisher: LocalReadPublisher;
  reads: LocalReads;
  /** Voters whose lease this node holds, in which epoch. */
  held: Map<number, number>;
  put(key: string, value: string): void;
}

async function setup(options: { deliverBounds?: boolean } = {}): Promise<Setup> {
  const dir = tempDir();
  const store = await openStore(dir);
  const reader = StoreDataReader.open(dir)!;
  readers.push(reader);
  const buffer = localReadBuffer();
  const held = new Map<number, number>();
  const reads: LocalReads = new LocalReads({ buffers: [buffer], self: SELF, holds: (voter, mark) => held.get(voter) === mark, data: () => reader });
  // The core's bounds event reaches the Host with its next output (deliverBounds false: not yet).
  const publisher = new LocalReadPublisher(buffer, (shardId, version, b) => {
    if (options.deliverBounds !== false) reads.onBounds(0, shardId, version, b);
  });
  const put = (key: string, value: string): void => {
    store.env.transactionSync(() => store.data.putSync(Buffer.from(key), [1, Buffer.from(value)]));
    reads.onOutput(0);
  };
  return { store, publisher, reads, held, put };
}

const voters = (...marks: [number, number][]): (readonly [NodeId, number])[] => marks.map(([id, mark]) => [nodeId(id), mark] as const);
const get = (s: Setup, shard: GroupId, key: string): string | null | undefined => {
  const v = s.reads.get(0, shard, bytes(key));
  return v === undefined || v === null ? v : v.value.toString();
};

describe('local reads', () => {
  it('serve a published shard while its voters with this node make a majority of leases held in their marks', async () => {
    const s = await setup();
    s.put('c', 'one');
    const shard = groupId(7);
    expect(get(s, shard, 'c')).toBeUndefined(); // never published
    s.publisher.set(shard, RANGE, voters([1, 0], [2, 3], [3, 5]));
    expect(get(s, shard, 'c')).toBeUndefined(); // no lease held: only this node of three
    s.held.set(2, 2); // held, but in another epoch than node 2 acknowledged in
    expect(get(s, shard, 'c')).toBeUndefined();
    s.held.set(3, 5);
    expect(get(s, shard, 'c')).toBe('one');
    expect(get(s, shard, 'd')).toBeNull(); // in range, absent
    // Five voters need three: this node and one lease are not enough.
    s.publisher.set(shard, RANGE, voters([1, 0], [2, 3], [3, 5], [4, 1], [5, 1]));
    expect(get(s, shard, 'c')).toBeUndefined();
    s.held.set(5, 1);
    expect(get(s, shard, 'c')).toBe('one');
    // A voter without an acknowledgement of this term (mark -1) never counts.
    s.publisher.set(shard, RANGE, voters([1, 0], [2, -1], [3, -1]));
    s.held.set(2, -1);
    expect(get(s, shard, 'c')).toBeUndefined();
  });

  it('send keys outside the range, and spans past it, to the core', async () => {
    const s = await setup();
    s.put('c', 'one');
    s.put('x', 'far');
    s.held.set(2, 1);
    const shard = groupId(7);
    s.publisher.set(shard, RANGE, voters([1, 0], [2, 1], [3, 1]));
    expect(get(s, shard, 'x')).toBeUndefined();
    expect(get(s, shard, 'a')).toBeUndefined();
    expect(s.reads.scan(0, shard, { start: bytes('b'), end: bytes('m'), limit: 10 })?.map((p) => Buffer.from(p.value).toString())).toEqual(['one']);
    expect(s.reads.scan(0, shard, { start: bytes('b'), end: null, limit: 10 })).toBeUndefined();
    expect(s.reads.scan(0, shard, { start: bytes('c'), end: bytes('z'), limit: 10 })).toBeUndefined();
  });

  it('wait for the bounds a publication names: a split published before its bounds arrive reads through the core', async () => {
    let deliver = true;
    const dir = tempDir();
    const store = await openStore(dir);
    const reader = StoreDataReader.open(dir)!;
    readers.push(reader);
    const buffer = localReadBuffer();
    const reads = new LocalReads({ buffers: [buffer], self: SELF, holds: () => true, data: () => reader });
    const pending: (() => void)[] = [];
    const publisher = new LocalReadPublisher(buffer, (shardId, version, b) => {
      const send = () => reads.onBounds(0, shardId, version, b);
      if (deliver) send();
      else pending.push(send);
    });
    store.env.transactionSync(() => store.data.putSync(Buffer.from('p'), [1, Buffer.from('v')]));
    const shard = groupId(9);
    publisher.set(shard, { start: bytes('a'), end: null }, voters([1, 0], [2, 1], [3, 1]));
    expect(reads.get(0, shard, bytes('p'))?.value.toString()).toBe('v');
    // A split: the range now ends at 'm'; the core publishes, the bounds are still on their way.
    deliver = false;
    publisher.set(shard, { start: bytes('a'), end: bytes('m') }, voters([1, 0], [2, 1], [3, 1]));
    expect(reads.get(0, shard, bytes('p'))).toBeUndefined();
    expect(reads.get(0, shard, bytes('c'))).toBeUndefined();
    for (const send of pending) send();
    expect(reads.get(0, shard, bytes('p'))).toBeUndefined(); // moved to the right half
    expect(reads.get(0, shard, bytes('c'))).toBeNull();
    // The same bounds again are not sent again.
    const sentBefore = pending.length;
    publisher.set(shard, { start: bytes('a'), end: bytes('m') }, voters([1, 0], [2, 1], [3, 1]));
    expect(pending.length).toBe(sentBefore + 1); // a new bounds object: a new version
  });

  it('stop at a withdrawal, at a shard that took the slot over, and at a slot being written', async () => {
    const s = await setup();
    s.put('c', 'one');
    s.held.set(2, 1);
    const shard = groupId(7);
    const v = voters([1, 0], [2, 1], [3, 1]);
    s.publisher.set(shard, RANGE, v);
    expect(get(s, shard, 'c')).toBe('one');
    s.publisher.set(shard, RANGE, undefined);
    expect(get(s, shard, 'c')).toBeUndefined();
    s.publisher.set(shard, RANGE, v);
    // Another shard in the same slot: the first reads through its core from now on.
    const other = groupId(7 + LOCAL_READ_SLOTS);
    s.publisher.set(other, RANGE, v);
    expect(get(s, shard, 'c')).toBeUndefined();
    expect(get(s, other, 'c')).toBe('one');
    // Withdrawing the first does not touch the other.
    s.publisher.withdraw(shard);
    expect(get(s, other, 'c')).toBe('one');
    // A writer mid-way (odd sequence number): nothing is read from the slot.
    const slots = new Int32Array((s.publisher as unknown as { slots: Int32Array }).slots.buffer);
    const at = (other % LOCAL_READ_SLOTS) * (slots.length / LOCAL_READ_SLOTS);
    Atomics.add(slots, at, 1);
    expect(get(s, other, 'c')).toBeUndefined();
    Atomics.add(slots, at, 1);
    expect(get(s, other, 'c')).toBe('one');
    // Forgotten (the shard left the core): withdrawn, and the Host drops its bounds.
    s.publisher.forget(other, RANGE);
    expect(get(s, other, 'c')).toBeUndefined();
    expect((s.reads as unknown as { bounds: Map<number, unknown>[] }).bounds[0]!.has(other)).toBe(false);
  });

  it("see every commit made before the core's output they follow", async () => {
    const s = await setup();
    s.held.set(2, 1);
    const shard = groupId(7);
    s.publisher.set(shard, RANGE, voters([1, 0], [2, 1], [3, 1]));
    for (let i = 0; i < 50; i++) {
      get(s, shard, 'c'); // keeps lmdb-js's read transaction of this turn open
      s.put('c', String(i)); // commits, then the output arrives (onOutput)
      expect(get(s, shard, 'c')).toBe(String(i));
    }
  });

  it('count what they served per shard, with a sample of the keys, for the core', async () => {
    const s = await setup();
    s.put('c', 'one');
    s.held.set(2, 1);
    const shard = groupId(7);
    s.publisher.set(shard, RANGE, voters([1, 0], [2, 1], [3, 1]));
    expect(s.reads.takeCounts(0)).toBeUndefined();
    for (let i = 0; i < 20; i++) get(s, shard, 'c');
    get(s, shard, 'z'); // not served: not counted
    const counts = s.reads.takeCounts(0)!;
    expect(counts.get(shard)?.count).toBe(20);
    expect(counts.get(shard)?.keys.map((k) => Buffer.from(k).toString())).toEqual(['c', 'c', 'c']);
    expect(s.reads.takeCounts(0)).toBeUndefined();
  });
});
