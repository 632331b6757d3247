// Routing misses looked up by key in the meta range's range end index, against an in-memory meta range
// that counts what reaches it: one bounded index read and one descriptor read per lookup, the full read of
// every descriptor only when the index does not agree, concurrent misses in one range sharing a lookup;
// and a property test against a naive oracle (the newest recorded descriptor holding the key) over random
// histories of splits, merges and membership changes recorded in any order.
import { RangeTable, decodeRangeDescriptor, encodeRangeDescriptor, encodeRangeEndEntry, rangeContains, rangeEndKey, rangeKey, type RangeDescriptor } from '@flotilla/placement';
import { describe, expect, it } from 'vitest';
import type { MetaClient } from '../src/kv/meta-client.js';
import type { RouteTarget } from '../src/kv/route-target.js';
import { Deadline } from '../src/kv/store.js';
import { fakeMeta, ledStatus, metaClient, record, type FakeMeta } from './support/fake-meta.js';

const b = (...bytes: number[]) => Uint8Array.from(bytes);
const hex = (key: Uint8Array) => Buffer.from(key).toString('hex');
const key = (...bytes: number[]): RouteTarget => ({ kind: 'key', key: b(...bytes) });

/** Ranges [10, 40) id 2 at epoch 2, [40, ∞) id 3 at epoch 2 (range 2 split at 40), recorded with their entries. */
async function splitRecorded(): Promise<FakeMeta> {
  const meta = fakeMeta();
  await record(meta, [ledStatus({ shardId: 2, start: b(0x10), end: b(0x40), epoch: 2 }), ledStatus({ shardId: 3, start: b(0x40), end: null, epoch: 2 })]);
  return meta;
}

/** Looks `target` up from a node whose table knows nothing; what it cost, and where the table routes it then. */
async function lookUp(meta: FakeMeta, target: RouteTarget, o: { client?: MetaClient; ranges?: RangeTable; failed?: RangeDescriptor } = {}) {
  const ranges = o.ranges ?? new RangeTable();
  const client = o.client ?? metaClient(meta, { ranges });
  const before = { ...meta.ops };
  await client.refresh(Deadline.after(5_000), { kind: 'miss', miss: { target, failed: o.failed } });
  const found = target.kind === 'key' ? ranges.lookup(target.key) : ranges.all().find((r) => r.end === null);
  return { found, fullReads: client.refreshesStarted, fallbacks: client.lookupFallbacks, lookups: client.lookupsStarted, scans: meta.ops.scan - before.scan, gets: meta.ops.get - before.get };
}

describe('a routing miss looks its range up in the range end index', () => {
  it('finds a key in each half of a split with one index read and one descriptor read, never the full read', async () => {
    const meta = await splitRecorded();
    for (const [k, rangeId] of [
      [b(0x10), 2],
      [b(0x3f, 0xff), 2],
      [b(0x40), 3],
      [b(0xff, 0xff), 3],
    ] as const) {
      const cost = await lookUp(meta, { kind: 'key', key: k });
      expect(cost.found?.rangeId, hex(k)).toBe(rangeId);
      expect(cost, hex(k)).toMatchObject({ fullReads: 0, fallbacks: 0, lookups: 1, scans: 1, gets: 1 });
    }
  });

  it('finds the range holding the keys below an end (a reverse scan), the last range for no end', async () => {
    const meta = await splitRecorded();
    const last = await lookUp(meta, { kind: 'below', end: null });
    expect(last.found?.rangeId).toBe(3);
    expect(last).toMatchObject({ fullReads: 0, lookups: 1 });
    const ranges = new RangeTable();
    const below = await lookUp(meta, { kind: 'below', end: b(0x40) }, { ranges });
    expect(ranges.all().map((r) => r.rangeId)).toEqual([2]);
    expect(below).toMatchObject({ fullReads: 0, lookups: 1 });
  });

  it('falls back to the full read when the entry is stale (its range moved on), and routes right', async () => {
    const meta = await splitRecorded();
    // Range 3 split again at 80 (epoch 3), its new descriptor recorded by a writer that left the index as it was.
    meta.poke(rangeKey(3), encodeRangeDescriptor({ rangeId: 3, start: b(0x40), end: b(0x80), epoch: 3, replicas: [1, 2, 3] }));
    meta.poke(rangeKey(4), encodeRangeDescriptor({ rangeId: 4, start: b(0x80), end: null, epoch: 3, replicas: [1, 2, 3] }));
    const cost = await lookUp(meta, key(0x90));
    expect(cost.found?.rangeId, 'the ∞ entry still names range 3, which no longer ends there').toBe(4);
    expect(cost).toMatchObject({ fullReads: 1, fallbacks: 1, lookups: 1 });
  });

  it('falls back to the full read when the entry is missing (a descriptor recorded before the index)', async () => {
    const meta = fakeMeta();
    meta.poke(rangeKey(2), encodeRangeDescriptor({ rangeId: 2, start: b(0x10), end: null, epoch: 1, replicas: [1] }));
    const cost = await lookUp(meta, key(0x20));
    expect(cost.found?.rangeId).toBe(2);
    expect(cost).toMatchObject({ fullReads: 1, fallbacks: 1, lookups: 1 });
    // Its leader's next recording fills the entry in; then no fallback.
    await record(meta, [ledStatus({ shardId: 2, start: b(0x10), end: null, epoch: 1, voters: [1] })]);
    expect(await lookUp(meta, key(0x20))).toMatchObject({ fullReads: 0, fallbacks: 0, lookups: 1 });
  });

  it('falls back to the full read when the lookup answers the route that just failed', async () => {
    const meta = await splitRecorded();
    const failed = decodeRangeDescriptor(meta.data.get(hex(rangeKey(3)))!.value);
    const cost = await lookUp(meta, key(0x50), { failed });
    expect(cost).toMatchObject({ fullReads: 1, fallbacks: 1, lookups: 1 });
  });

  it('falls back to the full read for a key too long to index', async () => {
    const meta = await splitRecorded();
    const target = { kind: 'key', key: new Uint8Array(1_976).fill(0x50) } as const;
    const ranges = new RangeTable();
    const cost = await lookUp(meta, target, { ranges });
    expect(ranges.lookup(target.key)?.rangeId).toBe(3);
    expect(cost).toMatchObject({ fullReads: 1, fallbacks: 1, lookups: 0 });
  });

  it('falls back when an entry left inside a range names that range (more than a recording deletes), not routing by it', async () => {
    const meta = await splitRecorded();
    // Range 3 split at 80 (epoch 3); only the right half, range 4, recorded so far: range 3's descriptor still runs to ∞.
    await record(meta, [ledStatus({ shardId: 4, start: b(0x80), end: null, epoch: 3 })]);
    // A leftover entry at 90 naming range 3 at its recorded epoch: the first entry past 85, but range 3 does not end there.
    meta.poke(rangeEndKey(b(0x90)), encodeRangeEndEntry({ rangeId: 3, epoch: 2 }));
    const ranges = new RangeTable();
    const cost = await lookUp(meta, key(0x85), { ranges });
    expect(ranges.lookup(b(0x85))?.rangeId, 'range 4, at epoch 3, is the newer').toBe(4);
    expect(cost).toMatchObject({ fullReads: 1, fallbacks: 1 });
  });

  it('falls back when an entry and the descriptor it names disagree on the epoch (a descriptor recorded again, older)', async () => {
    const meta = await splitRecorded();
    // Range 5 [60, ∞) at epoch 3 recorded; the ∞ entry names range 3 at epoch 3, its descriptor still says epoch 2.
    meta.poke(rangeKey(5), encodeRangeDescriptor({ rangeId: 5, start: b(0x60), end: null, epoch: 3, replicas: [1, 2, 3] }));
    meta.poke(rangeEndKey(null), encodeRangeEndEntry({ rangeId: 3, epoch: 3 }));
    const ranges = new RangeTable();
    const cost = await lookUp(meta, key(0x70), { ranges });
    expect(ranges.lookup(b(0x70))?.rangeId).toBe(5);
    expect(cost).toMatchObject({ fullReads: 1, fallbacks: 1 });
  });

  it('never takes an entry naming a descriptor that does not hold the key', async () => {
    const meta = await splitRecorded();
    // An entry at 30 naming range 3 ([40, ∞)): a key at 20 finds it first, and must not be routed by it.
    meta.poke(rangeEndKey(b(0x30)), encodeRangeEndEntry({ rangeId: 3, epoch: 2 }));
    const cost = await lookUp(meta, key(0x20));
    expect(cost.found?.rangeId).toBe(2);
    expect(cost).toMatchObject({ fullReads: 1, fallbacks: 1 });
  });
});

describe('a range an op names but the table lacks is read by id', () => {
  it('reads that one descriptor, once for concurrent callers, never every descriptor', async () => {
    const meta = await splitRecorded();
    const ranges = new RangeTable();
    const client = metaClient(meta, { ranges });
    const gets = meta.ops.get;
    const deadline = Deadline.after(5_000);
    await Promise.all(Array.from({ length: 10 }, () => client.refresh(deadline, { kind: 'range', rangeId: 3 })));
    expect(hex(ranges.get(3)!.start)).toBe('40');
    expect(ranges.get(2), 'only the range asked for').toBeUndefined();
    expect(meta.ops.get - gets).toBe(1);
    expect({ lookups: client.lookupsStarted, fullReads: client.refreshesStarted }).toEqual({ lookups: 1, fullReads: 0 });
    // A range never recorded, or an id no key can hold: nothing read into the table, and no full read.
    await client.refresh(deadline, { kind: 'range', rangeId: 77 });
    await client.refresh(deadline, { kind: 'range', rangeId: 2 ** 40 });
    expect(ranges.size).toBe(1);
    expect(client.refreshesStarted).toBe(0);
  });
});

describe('concurrent routing misses share lookups', () => {
  it('misses for keys in one range share one lookup, in two ranges two', async () => {
    const meta = await splitRecorded();
    const ranges = new RangeTable();
    const client = metaClient(meta, { ranges });
    const deadline = Deadline.after(5_000);
    const keys = Array.from({ length: 20 }, (_, i) => b(0x40 + i * 8));
    await Promise.all(keys.map((k) => client.refresh(deadline, { kind: 'miss', miss: { target: { kind: 'key', key: k }, failed: undefined } })));
    for (const k of keys) expect(ranges.lookup(k)?.rangeId, hex(k)).toBe(3);
    expect(client.lookupsStarted).toBe(1);
    expect(meta.ops.scan).toBe(5); // the two recordings' index scans (over the span, and, with no descriptor recorded yet, for the range holding its start), and the one lookup's
    const other = Array.from({ length: 10 }, (_, i) => [b(0x11 + i), b(0xa0 + i)]).flat();
    const fresh = metaClient(meta, { ranges: new RangeTable() });
    await Promise.all(other.map((k) => fresh.refresh(deadline, { kind: 'miss', miss: { target: { kind: 'key', key: k }, failed: undefined } })));
    expect(fresh.lookupsStarted).toBe(2);
    expect(fresh.refreshesStarted).toBe(0);
  });
});

// The property: a lookup that takes a descriptor takes one that no fresher recorded descriptor holding the
// key outdoes (the full read keeps the higher epoch), and once every live range's leader recorded it, every
// lookup takes its range without a fallback. It holds for histories of splits and membership changes
// recorded in any order by current and stale leaders, and for histories with merges too while each
// recording is its range's current descriptor. (A stale leader recording after a merge can make an entry
// agree with a descriptor the full read overrules; range-lookup.ts says what that costs.)
describe('range end index property: random histories against a naive oracle', () => {
  const SEEDS = 12;
  const STEPS = 60;
  const KEYS_CHECKED_PER_STEP = 3;

  it.each([
    ['splits and membership changes, recorded by current and stale leaders', { merges: false, staleRecords: true }],
    ['splits, merges and membership changes, recorded by current leaders', { merges: true, staleRecords: false }],
  ] as const)('a lookup never takes a descriptor staler than the newest recorded one holding the key: %s', async (_case, o) => {
    // Lookups checked, and those that took a descriptor (not a fallback): the property must not hold by falling back.
    let checked = 0;
    let taken = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const random = mulberry32(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
      const meta = fakeMeta();
      const live = new Map<number, RangeDescriptor>([[2, { rangeId: 2, start: b(0x01), end: null, epoch: 1, replicas: [1] }]]);
      const versions = new Map<number, RangeDescriptor[]>([[2, [live.get(2)!]]]);
      const merged = new Set<number>();
      let nextId = 3;
      const becomes = (d: RangeDescriptor) => {
        live.set(d.rangeId, d);
        versions.set(d.rangeId, [...(versions.get(d.rangeId) ?? []), d]);
      };
      const recordAs = (d: RangeDescriptor) => record(meta, [ledStatus({ shardId: d.rangeId, start: d.start, end: d.end, epoch: d.epoch, voters: [...d.replicas] })]);
      const trace: string[] = [];
      for (let step = 0; step < STEPS; step++) {
        const ordered = [...live.values()].sort((x, y) => Buffer.compare(x.start, y.start));
        const action = random();
        if (action < 0.25) {
          // A split at a one- or two-byte key strictly inside the range.
          const r = pick(ordered);
          const at = random() < 0.5 ? b(1 + Math.floor(random() * 255)) : b(1 + Math.floor(random() * 255), Math.floor(random() * 256));
          if (Buffer.compare(at, r.start) <= 0 || (r.end !== null && Buffer.compare(at, r.end) >= 0)) continue;
          const epoch = r.epoch + 1;
          becomes({ ...r, end: at, epoch });
          becomes({ rangeId: nextId++, start: at, end: r.end, epoch, replicas: r.replicas });
          trace.push(`split ${r.rangeId} at ${hex(at)}`);
        } else if (action < 0.35) {
          if (!o.merges) continue;
          // A merge of a range and its right neighbour: the left one ends where the right one did, one epoch past both.
          const i = Math.floor(random() * (ordered.length - 1));
          const [left, right] = [ordered[i], ordered[i + 1]];
          if (left === undefined || right === undefined) continue;
          becomes({ ...left, end: right.end, epoch: Math.max(left.epoch, right.epoch) + 1 });
          live.delete(right.rangeId);
          merged.add(right.rangeId);
          trace.push(`merge ${right.rangeId} into ${left.rangeId}`);
        } else if (action < 0.45) {
          const r = pick(ordered);
          becomes({ ...r, epoch: r.epoch + 1, replicas: [r.replicas[0]! === 1 ? 2 : 1] });
          trace.push(`membership ${r.rangeId}`);
        } else if (action < 0.75 || !o.staleRecords) {
          if (action >= 0.9 && merged.size > 0) {
            // The merge protocol deletes a merged-away range's descriptor, some time after the merge.
            const gone = pick([...merged]);
            meta.poke(rangeKey(gone), undefined);
            trace.push(`delete ${gone}`);
            continue;
          }
          const r = pick(ordered);
          await recordAs(r);
          trace.push(`record ${r.rangeId}@${r.epoch}`);
        } else {
          // A stale leader records an older version of its range.
          const r = pick(ordered);
          const old = pick(versions.get(r.rangeId)!);
          await recordAs(old);
          trace.push(`stale record ${old.rangeId}@${old.epoch}`);
        }
        const recorded = [...meta.data.entries()].filter(([k]) => k.startsWith('000072')).map(([, v]) => decodeRangeDescriptor(v.value));
        for (let i = 0; i < KEYS_CHECKED_PER_STEP; i++) {
          const k = b(1 + Math.floor(random() * 255), Math.floor(random() * 256));
          const cost = await lookUp(meta, { kind: 'key', key: k });
          checked++;
          if (cost.fallbacks > 0) continue;
          taken++;
          const newest = Math.max(...recorded.filter((d) => rangeContains(d, k)).map((d) => d.epoch));
          expect(cost.found?.epoch, `seed ${seed}, step ${step}, key ${hex(k)}: took range ${cost.found?.rangeId}; ${trace.join('; ')}`).toBe(newest);
        }
      }
      // Converged: every live range recorded by its leader, every merged-away descriptor deleted.
      for (const r of live.values()) await recordAs(r);
      for (const gone of merged) meta.poke(rangeKey(gone), undefined);
      for (const r of live.values()) {
        const cost = await lookUp(meta, { kind: 'key', key: r.start });
        expect({ rangeId: cost.found?.rangeId, epoch: cost.found?.epoch, fallbacks: cost.fallbacks }, `seed ${seed}, range ${r.rangeId}; ${trace.join('; ')}`).toEqual({ rangeId: r.rangeId, epoch: r.epoch, fallbacks: 0 });
      }
    }
    expect(taken, `lookups that took a descriptor, of ${checked}`).toBeGreaterThan(checked / 2);
  }, 60_000);
});

/** A small seeded PRNG (mulberry32): the same seed replays the same history. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}
