// Replica consistency checks (kv/consistency.ts): a checksum entry through Raft, each replica hashing its
// range exactly as of that entry, one chunk per tick, and the block/key digests that name the first key
// where a replica diverged.
import { join } from 'node:path';
import { groupId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { KvResult } from '../../src/kv/command.js';
import {
  CHECKSUM_BLOCK_KEY_COUNT,
  digestPairs,
  firstDifferentBlock,
  firstDifferentKey,
  type BlockDetail,
  type ChecksumAnswer,
} from '../../src/kv/consistency.js';
import { coreDirName } from '../../src/host/node-dir.js';
import { NodeStore } from '../../src/storage/node-store.js';
import { HostCluster, key, shardBounds, shardKey } from '../support/host-cluster.js';

const SHARD = 1;
/** Another range's key, on no replica of SHARD. */
const OUTSIDE = shardKey(2, 'stray');
const name = (i: number) => `k${String(i).padStart(4, '0')}`;

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function started(host: { checksumChunkKeyCount?: number } = {}): Promise<HostCluster> {
  cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 11, host });
  await cluster.createShards([SHARD]);
  await cluster.tickUntil('a leader for the range', async () => (await cluster!.agreedLeaders([SHARD])) !== undefined, 100);
  return cluster;
}

/** The node whose replica leads (a restarted follower learns the leader only when the quiesced leader next speaks). */
async function leaderOf(c: HostCluster): Promise<number> {
  let leader = 0;
  await c.tickUntil('a leader', async () => {
    for (const [node, list] of await c.statuses()) if (list.find((s) => s.shardId === SHARD)?.role === 'leader') leader = node;
    return leader !== 0;
  }, 100);
  return leader;
}

/** Writes `count` keys through the leader, 50 in flight at a time, and returns what every replica must hold: key → [version, value]. */
async function load(c: HostCluster, count: number): Promise<Map<string, [number, Uint8Array]>> {
  const expected = new Map<string, [number, Uint8Array]>();
  const leader = c.host(await leaderOf(c));
  for (let from = 0; from < count; from += 50) {
    const batch = Array.from({ length: Math.min(50, count - from) }, (_, j) => {
      const k = shardKey(SHARD, name(from + j));
      const value = key(`v${from + j}`);
      return leader.propose(groupId(SHARD), { op: 'put', key: k, value }).then((r) => {
        if (!r.ok) throw new Error(`write ${from + j} failed: ${JSON.stringify(r)}`);
        expected.set(Buffer.from(k).toString('hex'), [r.version, value]);
      });
    });
    let done = false;
    void Promise.all(batch).then(() => (done = true));
    await c.tickUntil(`writes ${from}.. applied`, () => done, 100);
    await Promise.all(batch);
  }
  return expected;
}

/** The oracle: the digest of exactly these pairs in the shard's bounds, in one go. */
function oracleDigest(pairs: Map<string, [number, Uint8Array]>): string {
  const sorted = [...pairs].sort(([a], [b]) => Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex')));
  return digestPairs(shardBounds(SHARD) as { start: Uint8Array; end: Uint8Array }, sorted.map(([k, stored]) => ({ key: Buffer.from(k, 'hex'), stored }))).digest.toString('hex');
}

/** Proposes a check on the leader and waits for its entry to apply there. */
async function propose(c: HostCluster, checksumId: number): Promise<{ index: number; replicas: readonly number[] }> {
  const leader = c.host(await leaderOf(c));
  let result: KvResult | undefined;
  void leader.proposeChecksum(groupId(SHARD), checksumId).then((r) => (result = r));
  await c.tickUntil('the checksum entry applied on the leader', () => result !== undefined, 100);
  if (result === undefined || !result.ok || !('checksum' in result)) throw new Error(`checksum proposal answered ${JSON.stringify(result)}`);
  expect(result.checksum.id).toBe(checksumId);
  return { index: result.checksum.index, replicas: result.checksum.replicas };
}

/** Every replica's finished result, ticking until none is pending. */
async function collect(c: HostCluster, index: number, checksumId: number): Promise<Map<number, Extract<ChecksumAnswer, { state: 'done' }>>> {
  const done = new Map<number, Extract<ChecksumAnswer, { state: 'done' }>>();
  await c.tickUntil('every replica hashed its range', async () => {
    for (const node of c.nodeIds) {
      if (done.has(node)) continue;
      const a = await c.host(node).checksumResult(groupId(SHARD), { index, checksumId, withBlocks: true });
      if (a.state === 'missing') throw new Error(`node ${node}: ${a.reason}`);
      if (a.state === 'done') done.set(node, a);
    }
    return done.size === c.nodeIds.length;
  }, 200);
  return done;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Stops a node, edits its store directly (no Raft), and starts it again. */
async function corrupt(c: HostCluster, nodeId: number, edit: (store: NodeStore) => void): Promise<void> {
  await c.stopNode(nodeId);
  const store = await NodeStore.open({ dir: join(c.dirs.get(nodeId)!, coreDirName(0)), nodeId });
  await store.env.transaction(() => edit(store));
  await store.close();
  await c.startNode(nodeId);
  await c.settle();
}

/** The first key where `node`'s data differs from `reference`'s, found as the checker does: block digests, then one block's key digests. */
async function firstDifference(c: HostCluster, q: { index: number; checksumId: number }, results: Map<number, Extract<ChecksumAnswer, { state: 'done' }>>, node: number, reference: number): Promise<string | undefined> {
  const block = firstDifferentBlock(results.get(node)!.blockDigests!, results.get(reference)!.blockDigests!);
  if (block === undefined) return undefined;
  const detail = async (n: number): Promise<BlockDetail> => {
    const a = await c.host(n).checksumBlock(groupId(SHARD), { ...q, block });
    if (a.state !== 'done') throw new Error(`node ${n} block ${block}: ${a.reason}`);
    return a;
  };
  const k = firstDifferentKey(await detail(node), await detail(reference));
  return k === undefined ? undefined : Buffer.from(k).toString();
}

describe('replica consistency checks', () => {
  it('replicas that agree report the same digest, the oracle\'s, over their range only', async () => {
    const c = await started();
    const expected = await load(c, 40);
    // A key outside the range, written behind Raft's back on one replica: not the range's data, not hashed.
    await corrupt(c, 2, (store) => store.data.putSync(Buffer.from(OUTSIDE), [1, key('stray')]));
    const { index, replicas } = await propose(c, 1);
    expect([...replicas]).toEqual([1, 2, 3]);
    const results = await collect(c, index, 1);
    for (const [node, r] of results) {
      expect(hex(r.digest), `node ${node}`).toBe(oracleDigest(expected));
      expect(r.keyCount).toBe(40);
    }
  }, 60_000);

  it('a replica corrupted behind Raft\'s back disagrees, and its first differing key is named: a changed value, then an added key', async () => {
    const c = await started();
    await load(c, 200);
    const corruptedKey = shardKey(SHARD, name(170));
    await corrupt(c, 3, (store) => {
      const [version] = store.data.get(Buffer.from(corruptedKey)) as [number, Uint8Array];
      store.data.putSync(Buffer.from(corruptedKey), [version, key('bit rot')]);
    });
    const first = await propose(c, 7);
    const results = await collect(c, first.index, 7);
    expect(hex(results.get(1)!.digest)).toBe(hex(results.get(2)!.digest));
    expect(hex(results.get(3)!.digest)).not.toBe(hex(results.get(1)!.digest));
    // Block 1 of 2 (keys 128..199) holds key 170.
    expect(firstDifferentBlock(results.get(3)!.blockDigests!, results.get(1)!.blockDigests!)).toBe(Math.floor(170 / CHECKSUM_BLOCK_KEY_COUNT));
    expect(await firstDifference(c, { index: first.index, checksumId: 7 }, results, 3, 1)).toBe(Buffer.from(corruptedKey).toString());

    // A key that only node 3 has, before the changed one: now it is the first difference.
    const addedKey = shardKey(SHARD, `${name(140)}a`);
    await corrupt(c, 3, (store) => store.data.putSync(Buffer.from(addedKey), [3, key('phantom')]));
    const second = await propose(c, 8);
    const again = await collect(c, second.index, 8);
    expect(again.get(3)!.keyCount).toBe(201);
    expect(await firstDifference(c, { index: second.index, checksumId: 8 }, again, 3, 1)).toBe(Buffer.from(addedKey).toString());
    expect(await firstDifference(c, { index: second.index, checksumId: 8 }, again, 2, 1)).toBeUndefined();
  }, 120_000);

  it('hashes a big range in many chunks, one per tick, while later writes keep applying; the digest is the data as of the checksum entry', async () => {
    const c = await started({ checksumChunkKeyCount: 16 });
    const expected = await load(c, 200);
    const leader = c.host(await leaderOf(c));
    // The check between two writes proposed in the same turn: one Ready, one apply batch on every
    // replica. The round ends its transaction at the checksum entry and snapshots right after its
    // commit, so the write before it is in the snapshot and the write after it is not.
    let before: KvResult | undefined;
    let checked: KvResult | undefined;
    let sameBatch: KvResult | undefined;
    const beforeValue = key('same batch, before');
    void leader.propose(groupId(SHARD), { op: 'put', key: shardKey(SHARD, name(1)), value: beforeValue }).then((r) => (before = r));
    void leader.proposeChecksum(groupId(SHARD), 3).then((r) => (checked = r));
    void leader.propose(groupId(SHARD), { op: 'put', key: shardKey(SHARD, name(0)), value: key('same batch, after') }).then((r) => (sameBatch = r));
    await c.settle();
    expect(checked, 'applied without a tick').toMatchObject({ ok: true, checksum: { id: 3 } });
    expect(before).toMatchObject({ ok: true });
    expect(sameBatch).toMatchObject({ ok: true });
    const index = (checked as Extract<KvResult, { checksum: unknown }>).checksum.index;
    expect((before as { version: number }).version).toBe(index - 1);
    expect((sameBatch as { version: number }).version).toBe(index + 1);
    expected.set(Buffer.from(shardKey(SHARD, name(1))).toString('hex'), [index - 1, beforeValue]);

    // One tick hashes one chunk: the pass is under way on every replica.
    await c.tick();
    for (const node of c.nodeIds) expect(await c.host(node).checksumResult(groupId(SHARD), { index, checksumId: 3 })).toMatchObject({ state: 'pending', hashing: true });
    // A write proposed while the range is being hashed applies at once, before the hash finishes.
    const during = await c.write(SHARD, { op: 'put', key: shardKey(SHARD, name(199)), value: key('during') });
    expect(during).toMatchObject({ ok: true });
    for (const node of c.nodeIds) expect(await c.host(node).checksumResult(groupId(SHARD), { index, checksumId: 3 })).toMatchObject({ state: 'pending', hashing: true });

    const results = await collect(c, index, 3);
    for (const [node, r] of results) {
      expect(r.chunkCount, `node ${node}`).toBeGreaterThan(200 / 16);
      expect(hex(r.digest), `node ${node}: the write before the entry is in the hash, the ones after it are not`).toBe(oracleDigest(expected));
    }
    // The write made during hashing is in the data, and in the next check.
    expect((await leader.get(groupId(SHARD), shardKey(SHARD, name(199)), { consistency: 'stale' }))?.value.toString()).toBe('during');
    const next = await propose(c, 4);
    const nextResults = await collect(c, next.index, 4);
    expect(hex(nextResults.get(1)!.digest)).not.toBe(oracleDigest(expected));
  }, 120_000);

  it('answers pending before the entry applies and missing where no result is kept; refuses a bad id', async () => {
    const c = await started();
    await load(c, 3);
    const node = c.host(1);
    const status = (await node.shards()).find((s) => s.shardId === SHARD)!;
    expect(await node.checksumResult(groupId(SHARD), { index: status.applied + 5, checksumId: 1 })).toMatchObject({ state: 'pending' });
    expect(await node.checksumResult(groupId(SHARD), { index: status.applied, checksumId: 1 })).toMatchObject({ state: 'missing' });
    const { index } = await propose(c, 9);
    await collect(c, index, 9);
    expect(await node.checksumResult(groupId(SHARD), { index, checksumId: 10 })).toMatchObject({ state: 'missing' });
    expect(await node.checksumBlock(groupId(SHARD), { index, checksumId: 9, block: 5 })).toMatchObject({ state: 'missing' });
    const leader = c.host(await leaderOf(c));
    await expect(leader.proposeChecksum(groupId(SHARD), 0)).rejects.toMatchObject({ code: 'COMMAND_INVALID' });
    await expect(node.checksumResult(groupId(99), { index, checksumId: 9 })).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND' });
  }, 60_000);
});

describe('consistency helpers', () => {
  const detail = (pairs: [string, string][]): BlockDetail => ({ keys: pairs.map(([k]) => key(k)), digests: Buffer.concat(pairs.map(([, d]) => Buffer.from(d.padEnd(8, '.')))) });
  it.each([
    ['equal blocks', [['a', '1'], ['b', '2']], [['a', '1'], ['b', '2']], undefined],
    ['a changed value', [['a', '1'], ['b', '2']], [['a', '1'], ['b', 'X']], 'b'],
    ['a key only the first has', [['a', '1'], ['b', '2'], ['c', '3']], [['a', '1'], ['c', '3']], 'b'],
    ['a key only the second has', [['a', '1'], ['c', '3']], [['a', '1'], ['b', '2'], ['c', '3']], 'b'],
    ['an extra key at the end', [['a', '1']], [['a', '1'], ['z', '9']], 'z'],
  ] as const)('firstDifferentKey: %s', (_, a, b, expected) => {
    const k = firstDifferentKey(detail(a as unknown as [string, string][]), detail(b as unknown as [string, string][]));
    expect(k === undefined ? undefined : Buffer.from(k).toString()).toBe(expected);
  });

  it('firstDifferentBlock: the first unequal digest, else the first block only one list has', () => {
    const blocks = (...ids: number[]) => Buffer.concat(ids.map((i) => Buffer.alloc(16, i)));
    expect(firstDifferentBlock(blocks(1, 2, 3), blocks(1, 2, 3))).toBeUndefined();
    expect(firstDifferentBlock(blocks(1, 2, 3), blocks(1, 9, 3))).toBe(1);
    expect(firstDifferentBlock(blocks(1, 2), blocks(1, 2, 3))).toBe(2);
    expect(firstDifferentBlock(blocks(), blocks(1))).toBe(0);
  });

  it('digestPairs: keys, versions, values and bounds all count', () => {
    const bounds = { start: key('a'), end: key('z') };
    const base = digestPairs(bounds, [{ key: key('b'), stored: [1, key('x')] }]).digest;
    expect(digestPairs(bounds, [{ key: key('b'), stored: [1, key('x')] }]).digest.equals(base)).toBe(true);
    expect(digestPairs(bounds, [{ key: key('c'), stored: [1, key('x')] }]).digest.equals(base)).toBe(false);
    expect(digestPairs(bounds, [{ key: key('b'), stored: [2, key('x')] }]).digest.equals(base)).toBe(false);
    expect(digestPairs(bounds, [{ key: key('b'), stored: [1, key('y')] }]).digest.equals(base)).toBe(false);
    expect(digestPairs({ start: key('a'), end: null }, [{ key: key('b'), stored: [1, key('x')] }]).digest.equals(base)).toBe(false);
    // A malformed record hashes (as damage), it does not throw.
    expect(digestPairs(bounds, [{ key: key('b'), stored: 'garbage' }]).digest.equals(base)).toBe(false);
  });
});
