// The meta range client's writes, against an in-memory meta range that counts what reaches it: range ids
// come a block per compare-and-set, and descriptors are recorded only for replicas that changed, several
// at a time, a failed one kept for the next call, each with its range end index entry in one batch.
import { RANGE_ID_ALLOCATOR_KEY, decodeCounter, decodeRangeDescriptor, decodeRangeEndEntry, encodeRangeDescriptor, encodeRangeEndEntry, rangeEndKey, rangeKey, type RangeDescriptor } from '@flotilla/placement';
import type { ShardViewChanges } from '@flotilla/shards';
import { describe, expect, it } from 'vitest';
import { recordingOps, type IndexOverSpan } from '../src/kv/meta-client.js';
import { Deadline } from '../src/kv/store.js';
import { fakeMeta, ledStatus, metaClient, record } from './support/fake-meta.js';

const b = (...bytes: number[]) => Uint8Array.from(bytes);
const hex = (key: Uint8Array) => Buffer.from(key).toString('hex');
const led = (shardId: number, epoch: number, voters = [1, 2, 3]) => ledStatus({ shardId, start: b(shardId), end: b(shardId + 1), epoch, voters });

describe('MetaClient', () => {
  it('hands out range ids from blocks: one compare-and-set per 64, unique across clients and concurrent callers', async () => {
    const meta = fakeMeta();
    const a = metaClient(meta);
    const c = metaClient(meta);
    const deadline = Deadline.after(5_000);
    const ids = await Promise.all([...Array.from({ length: 100 }, () => a.allocateRangeId(deadline)), ...Array.from({ length: 10 }, () => c.allocateRangeId(deadline))]);
    expect(new Set(ids).size).toBe(110);
    expect(Math.min(...ids)).toBeGreaterThanOrEqual(1024);
    // Client a needed two blocks, c one: three taken (a and c race for the key: a lost race is tried again).
    expect(decodeCounter(meta.data.get(hex(RANGE_ID_ALLOCATOR_KEY))!.value)).toBe(1024 + 3 * 64);
    expect(meta.ops.put).toBeLessThanOrEqual(6);
  });

  it('records the descriptors of led replicas that changed, several at once; one whose write failed is tried on the next call', async () => {
    const failing = new Set<string>([hex(rangeKey(7))]);
    const meta = fakeMeta({ failPutsTo: (key) => failing.has(key.toString('hex')) });
    let next: ShardViewChanges = { cursor: 5, full: true, changed: Array.from({ length: 40 }, (_, i) => ({ status: led(i + 1, 1), report: null })), removed: [] };
    const c = metaClient(meta, { changes: () => next });
    const deadline = Deadline.after(5_000);
    await expect(c.reportDescriptors(deadline)).rejects.toThrow('meta write failed');
    const descriptorCount = () => [...meta.data.keys()].filter((k) => k.startsWith(hex(rangeKey(1)).slice(0, 6))).length;
    expect(descriptorCount()).toBe(39);
    expect(meta.ops.inFlightMax).toBeGreaterThan(1);
    // Nothing changed since, but range 7 is still to record; range 3 moved to epoch 2.
    failing.clear();
    next = { cursor: 6, full: false, changed: [{ status: led(3, 2), report: null }], removed: [] };
    const batches = meta.ops.batch;
    expect(await c.reportDescriptors(deadline)).toBe(2);
    expect(meta.ops.batch - batches).toBe(2);
    expect(decodeRangeDescriptor(meta.data.get(hex(rangeKey(3)))!.value).epoch).toBe(2);
    // Then only what changes: nothing.
    next = { cursor: 7, full: false, changed: [], removed: [] };
    const gets = meta.ops.get;
    expect(await c.reportDescriptors(deadline)).toBe(0);
    expect(meta.ops.get).toBe(gets);
  });

  it('records each descriptor with its range end index entry, in one atomic batch', async () => {
    const meta = fakeMeta();
    await record(meta, [led(3, 2), ledStatus({ shardId: 9, start: b(0x80), end: null, epoch: 4 })]);
    expect(meta.ops.put).toBe(0);
    expect(meta.ops.batch).toBe(2);
    expect(decodeRangeEndEntry(meta.data.get(hex(rangeEndKey(b(4))))!.value)).toEqual({ rangeId: 3, epoch: 2 });
    expect(decodeRangeEndEntry(meta.data.get(hex(rangeEndKey(null)))!.value)).toEqual({ rangeId: 9, epoch: 4 });
  });

  it('writes a descriptor and its entry together or not at all: no crash leaves one without the other', async () => {
    // The index entry's write fails (as a crash after the descriptor's would leave it, were they two writes).
    const meta = fakeMeta({ failPutsTo: (key) => key.toString('hex') === hex(rangeEndKey(b(4))) });
    await expect(record(meta, [led(3, 2)])).rejects.toThrow('meta write failed');
    expect(meta.data.has(hex(rangeKey(3))), 'the descriptor').toBe(false);
    expect(meta.data.has(hex(rangeEndKey(b(4)))), 'the entry').toBe(false);
  });

  it('fills the index in for descriptors recorded before it existed (a data dir from the previous version)', async () => {
    const meta = fakeMeta();
    // As the previous version left it: the descriptor, no index entry.
    meta.poke(rangeKey(3), encodeRangeDescriptor({ rangeId: 3, start: b(3), end: b(4), epoch: 2, replicas: [1, 2, 3] }));
    const versionBefore = meta.data.get(hex(rangeKey(3)))!.version;
    expect(await record(meta, [led(3, 2)])).toBe(1);
    expect(meta.data.get(hex(rangeKey(3)))!.version, 'the descriptor, unchanged, is not rewritten').toBe(versionBefore);
    expect(decodeRangeEndEntry(meta.data.get(hex(rangeEndKey(b(4))))!.value)).toEqual({ rangeId: 3, epoch: 2 });
  });
  it('sweeps away descriptors another overlaps at a higher epoch, and only those', async () => {
    const meta = fakeMeta();
    const d = (rangeId: number, start: number, end: number | null, epoch: number): RangeDescriptor => ({ rangeId, start: b(start), end: end === null ? null : b(end), epoch, replicas: [1, 2, 3] });
    // Range 5 took ranges 6 and 7 in; 7's descriptor was missed. Range 8 is a neighbour, untouched.
    for (const r of [d(5, 0x10, 0x40, 9), d(7, 0x30, 0x40, 4), d(8, 0x40, null, 2)]) meta.poke(rangeKey(r.rangeId), encodeRangeDescriptor(r));
    const client = metaClient(meta);
    expect(await client.sweepStaleDescriptors(Deadline.after(5_000))).toBe(1);
    expect([5, 7, 8].map((id) => meta.data.has(hex(rangeKey(id))))).toEqual([true, false, true]);
    // Nothing stale left: a second sweep writes nothing.
    expect(await client.sweepStaleDescriptors(Deadline.after(5_000))).toBe(0);
  });
});

describe('recordingOps: what recording a descriptor writes', () => {
  const local: RangeDescriptor = { rangeId: 5, start: b(0x10), end: b(0x20), epoch: 4, replicas: [1, 2, 3] };
  const stored = (d: Partial<RangeDescriptor>, version = 7) => ({ value: encodeRangeDescriptor({ ...local, ...d }), version });
  const entry = (end: Uint8Array | null, rangeId: number, epoch: number, version: number) => ({ key: rangeEndKey(end), value: encodeRangeEndEntry({ rangeId, epoch }), version });
  const index = (atEnd: ReturnType<typeof entry> | undefined, inside: ReturnType<typeof entry>[] = []): IndexOverSpan => ({ atEnd, inside });
  const written = (ops: ReturnType<typeof recordingOps>) => ops.map((op) => `${op.op} ${hex(op.key)}@${op.ifVersion}`);
  const DESCRIPTOR = hex(rangeKey(5));
  const END = hex(rangeEndKey(b(0x20)));

  it.each([
    ['nothing recorded: the descriptor and its entry', undefined, index(undefined), [`put ${DESCRIPTOR}@0`, `put ${END}@0`]],
    ['a newer descriptor recorded (a stale leader): nothing, its entry included', stored({ epoch: 5 }), index(undefined), []],
    ['the same descriptor and entry: nothing', stored({}), index(entry(b(0x20), 5, 4, 8)), []],
    ['the same descriptor, no entry (recorded before the index): the entry only', stored({}), index(undefined), [`put ${END}@0`]],
    ['the same epoch, other replicas: the descriptor only', stored({ replicas: [1, 2, 4] }), index(entry(b(0x20), 5, 4, 8)), [`put ${DESCRIPTOR}@7`]],
    ['an older descriptor and entry: both, at their versions', stored({ epoch: 3, end: b(0x30) }), index(entry(b(0x20), 5, 3, 8)), [`put ${DESCRIPTOR}@7`, `put ${END}@8`]],
    // The two overlap just below the shared end: this range split or merged since, and its leader is behind.
    ['a fresher range ends where this one does (this leader is stale): nothing', stored({ epoch: 3 }), index(entry(b(0x20), 6, 5, 8), [entry(b(0x18), 7, 1, 9)]), []],
    ['lower-epoch entries inside the span (a merge took them in): deleted at their versions', stored({}), index(entry(b(0x20), 5, 4, 8), [entry(b(0x18), 7, 3, 9), entry(b(0x14), 6, 2, 10)]), [`delete ${hex(rangeEndKey(b(0x18)))}@9`, `delete ${hex(rangeEndKey(b(0x14)))}@10`]],
    ['a higher-epoch entry inside the span: kept', stored({}), index(entry(b(0x20), 5, 4, 8), [entry(b(0x18), 7, 9, 9)]), []],
    ['a malformed entry at the end: replaced', stored({}), index({ key: rangeEndKey(b(0x20)), value: b(0xc1), version: 8 }), [`put ${END}@8`]],
    ['bounds too long to index: the descriptor only', undefined, undefined, [`put ${DESCRIPTOR}@0`]],
  ] as const)('%s', (_case, storedValue, indexOver, expected) => {
    expect(written(recordingOps(local, storedValue, indexOver))).toEqual(expected);
  });

  // Range 5 took range 9 ([0x18, 0x20), epoch 3) in: the end entry was 9's.
  const source = (d: Partial<RangeDescriptor>, version = 11) => ({ rangeId: 9, stored: { value: encodeRangeDescriptor({ rangeId: 9, start: b(0x18), end: b(0x20), epoch: 3, replicas: [1, 2, 3], ...d }), version } });
  it.each([
    ['a range merged in (covered, lower epoch): its descriptor deleted at its version', source({}), [`put ${END}@8`, `delete ${hex(rangeKey(9))}@11`]],
    ['a descriptor of it recorded since at a higher epoch: kept', source({ epoch: 6 }), [`put ${END}@8`]],
    ['one reaching past this range (not covered): kept', source({ end: b(0x28) }), [`put ${END}@8`]],
  ] as const)('%s', (_case, candidate, expected) => {
    expect(written(recordingOps(local, stored({}), index(entry(b(0x20), 9, 3, 8)), [candidate]))).toEqual(expected);
  });
});
