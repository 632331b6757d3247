// Lookups by key against the real meta range of nodes in this process over TCP: the index the nodes'
// meta duties record, a split found in each half with one index read and one descriptor, a stale or
// missing entry costing the full read and still routing right, a node with no replica of a split range
// routing into its new half with one lookup, and a data dir from before the index routing by the full
// read until its leaders' recordings fill the index in.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { META_RANGE_ID, RANGE_END_KEYS, RangeTable, decodeRangeEndEntry, encodeRangeEndEntry, rangeEndKey, type RangeEndEntry } from '@flotilla/placement';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostCalls } from '../src/kv/host-calls.js';
import { MetaClient } from '../src/kv/meta-client.js';
import { runLocally, type RangeOp, type RangeOpResult } from '../src/kv/range-ops.js';
import { Deadline, type VersionedValue } from '../src/kv/store.js';
import { FlotillaNode, initialRanges } from '../src/node.js';
import { testClock, noChanges } from './support/fake-meta.js';
import { InProcessCluster, testLogger, untilTrue } from './support/in-process-cluster.js';
import { until } from './support/until.js';

const b = (s: string) => Buffer.from(s);

/** Runs `op` on the meta range where it is led: the others refuse (NOT_LEADER), and are not asked twice in a row. */
function onMeta(nodes: () => readonly FlotillaNode[]) {
  return (op: RangeOp): Promise<RangeOpResult> =>
    until(`the meta range's leader answers a ${op.kind}`, 10_000, async () => {
      for (const n of nodes()) {
        try {
          return { result: await runLocally(n.host, op) };
        } catch {
          // Not its leader (or electing): the next node.
        }
      }
      return undefined;
    }).then((r) => r.result);
}

/** A node that knows no range: a MetaClient over the real meta range with an empty table, its lookups counted. */
function coldClient(run: (op: RangeOp) => Promise<RangeOpResult>) {
  const ranges = new RangeTable();
  const client = new MetaClient({ ranges, calls: new HostCalls(testClock), clock: testClock, run, localReplicaChanges: async () => noChanges(), checkOpen: () => undefined });
  const lookUp = async (key: Uint8Array) => {
    await client.refresh(Deadline.after(10_000), { kind: 'miss', miss: { target: { kind: 'key', key }, failed: undefined } });
    return { rangeId: ranges.lookup(key)?.rangeId, lookups: client.lookupsStarted, fallbacks: client.lookupFallbacks, fullReads: client.refreshesStarted };
  };
  return { lookUp };
}

async function entryAt(run: (op: RangeOp) => Promise<RangeOpResult>, end: Uint8Array | null): Promise<(RangeEndEntry & { version: number }) | undefined> {
  const stored = (await run({ kind: 'get', rangeId: META_RANGE_ID, key: rangeEndKey(end), consistency: 'linearizable' })) as VersionedValue | undefined;
  return stored === undefined ? undefined : { ...decodeRangeEndEntry(stored.value), version: stored.version };
}

describe('4 nodes, each range on 3: lookups by key in the meta range', () => {
  const nodes: FlotillaNode[] = [];
  let root: string;
  const run = onMeta(() => nodes);
  let halves: { left: { rangeId: number; start: Uint8Array; end: Uint8Array }; right: { rangeId: number; end: Uint8Array | null } };
  let outsider: FlotillaNode;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-lookup-'));
    const ports = await freePorts(4);
    const ids = [0, 1, 2, 3];
    nodes.push(
      ...(await Promise.all(
        ids.map((i) =>
          FlotillaNode.start({
            nodeId: i + 1,
            dir: join(root, `n${i + 1}`),
            listen: { host: '127.0.0.1', port: ports[i]! },
            peers: Object.fromEntries(ids.filter((j) => j !== i).map((j) => [j + 1, `127.0.0.1:${ports[j]}`])),
            initialRangeCount: 8,
            coreCount: 1,
            tickIntervalMs: 20,
            metaDutyIntervalMs: 100,
            // Routing over a fixed placement: the driver moves nothing.
            placement: { paused: true },
            logger: testLogger,
          }),
        ),
      )),
    );
    await untilTrue('every replica knows its leader', 15_000, async () => (await Promise.all(nodes.map((n) => n.host.shards()))).flat().every((s) => s.leader > 0));
    // A range node 4 holds no replica of, split through node 1, which does.
    outsider = nodes[3]!;
    const held = await Promise.all(nodes.map(async (n) => (await n.host.shards()).map((s) => s.shardId)));
    const foreign = initialRanges(8).find((r) => r.start.byteLength === 1 && !held[3]!.includes(r.rangeId) && held[0]!.includes(r.rangeId))!;
    const { left, right } = await nodes[0]!.store.split(foreign.rangeId, Uint8Array.of(foreign.start[0]! + 0x10));
    halves = { left: { rangeId: left.shardId, start: left.start, end: left.end }, right: { rangeId: right.shardId, end: right.end } };
    // Both halves' leaders record their descriptors and end entries on their next duty tick.
    await untilTrue('both halves recorded in the index', 10_000, async () => {
      const [l, r] = await Promise.all([entryAt(run, left.end), entryAt(run, right.end)]);
      return l?.rangeId === left.shardId && l.epoch === left.epoch && r?.rangeId === right.shardId && r.epoch === right.epoch;
    });
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) await n.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('finds a key in each half of a split with one lookup each, never the full read', async () => {
    const cold = coldClient(run);
    expect(await cold.lookUp(Buffer.concat([halves.left.start, b('/left')]))).toEqual({ rangeId: halves.left.rangeId, lookups: 1, fallbacks: 0, fullReads: 0 });
    expect(await cold.lookUp(Buffer.concat([halves.left.end, b('/right')]))).toEqual({ rangeId: halves.right.rangeId, lookups: 2, fallbacks: 0, fullReads: 0 });
  });

  it('a node with no replica of the split range routes into its new half with one lookup, not the full read', async () => {
    const key = Buffer.concat([halves.left.end, b('/outsider')]);
    const before = outsider.store.stats;
    await outsider.store.put(key, b('x'));
    expect(Buffer.from((await outsider.store.get(key))!.value).toString()).toBe('x');
    const after = outsider.store.stats;
    expect(after.metaLookupsStarted - before.metaLookupsStarted).toBe(1);
    expect(after.metaLookupFallbacks - before.metaLookupFallbacks).toBe(0);
    expect(after.metaRefreshesStarted - before.metaRefreshesStarted).toBe(0);
  });

  it('a stale index entry (the parent still named at the right half\'s end) costs the full read and routes right', async () => {
    const current = (await entryAt(run, halves.right.end))!;
    await run({ kind: 'put', rangeId: META_RANGE_ID, key: rangeEndKey(halves.right.end), value: encodeRangeEndEntry({ rangeId: halves.left.rangeId, epoch: 1 }), ifVersion: current.version });
    try {
      const cold = coldClient(run);
      expect(await cold.lookUp(Buffer.concat([halves.left.end, b('/stale')]))).toEqual({ rangeId: halves.right.rangeId, lookups: 1, fallbacks: 1, fullReads: 1 });
    } finally {
      await run({ kind: 'put', rangeId: META_RANGE_ID, key: rangeEndKey(halves.right.end), value: encodeRangeEndEntry(current), ifVersion: undefined });
    }
  });

  it('a missing index entry costs the full read and routes right', async () => {
    const current = (await entryAt(run, halves.right.end))!;
    await run({ kind: 'delete', rangeId: META_RANGE_ID, key: rangeEndKey(halves.right.end), ifVersion: current.version });
    try {
      const cold = coldClient(run);
      expect(await cold.lookUp(Buffer.concat([halves.left.end, b('/missing')]))).toEqual({ rangeId: halves.right.rangeId, lookups: 1, fallbacks: 1, fullReads: 1 });
    } finally {
      await run({ kind: 'put', rangeId: META_RANGE_ID, key: rangeEndKey(halves.right.end), value: encodeRangeEndEntry(current), ifVersion: 0 });
    }
  });
});

describe('a data dir from before the index', () => {
  let cluster: InProcessCluster;
  const run = onMeta(() => [...cluster.nodes.values()]);
  /** Every range's end entry, once each names its range: the meta range and the 4 user ranges. */
  const indexComplete = async () => {
    const ends = [...(await Promise.all([1, 2, 3].map((id) => cluster.nodes.get(id)?.host.shards() ?? [])))].flat();
    const entries = await Promise.all(ends.map(async (s) => ({ s, entry: await entryAt(run, s.end) })));
    return entries.length > 0 && entries.every(({ s, entry }) => entry?.rangeId === s.shardId && entry.epoch === s.epoch);
  };

  beforeAll(async () => {
    cluster = await InProcessCluster.start({ count: 3, prefix: 'flotilla-lookup-upgrade-', options: { metaDutyIntervalMs: 100, placement: { paused: true } } });
  }, 60_000);

  afterAll(async () => {
    await cluster.close();
  });

  it('routes by the full read, and its leaders fill the index in when they start on it', async () => {
    await untilTrue('the index is complete', 10_000, indexComplete);
    // As the previous version left the meta range: descriptors, no index.
    const entries = (await run({ kind: 'scan', rangeId: META_RANGE_ID, start: RANGE_END_KEYS.start, end: RANGE_END_KEYS.end, limit: 100, consistency: 'linearizable' })) as { key: Uint8Array; version: number }[];
    expect(entries.length).toBe(5);
    await run({ kind: 'atomicBatch', rangeId: META_RANGE_ID, ops: entries.map((e) => ({ op: 'delete', key: e.key, ifVersion: e.version })) });
    const key = b('\u00c0/upgraded');
    const cold = coldClient(run);
    const before = await cold.lookUp(key);
    expect(before).toMatchObject({ lookups: 1, fallbacks: 1, fullReads: 1 });
    expect(before.rangeId).toBeDefined();
    // The new version starting on that data dir: every node restarted, one at a time.
    for (const id of [1, 2, 3]) {
      await cluster.stopNode(id);
      await cluster.startNode(id);
    }
    await untilTrue('the restarted leaders filled the index in', 20_000, indexComplete);
    expect(await coldClient(run).lookUp(key)).toEqual({ rangeId: before.rangeId, lookups: 1, fallbacks: 0, fullReads: 0 });
  }, 90_000);
});
