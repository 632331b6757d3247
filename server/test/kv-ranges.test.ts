// What is atomic per range meets a split: a range delete and a reverse scan
// across a split boundary, and an atomic batch that spans two ranges, on the
// real engine (one node, its range split in two), through the store, the
// embedding API and HTTP.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { RangeTable, rangeContains, type RangeDescriptor } from '@flotilla/placement';
import { Host, type ShellLogger } from '@flotilla/shards';
import { NoNetworkTransport } from '@flotilla/transport';
import { EmbeddedKvStore } from '../src/embedded/embedded-store.js';
import { createHttpServer } from '../src/http/app.js';
import { HostKvStore } from '../src/kv/host-store.js';
import { bootstrapRanges } from '../src/node.js';

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const b = (text: string): Buffer => Buffer.from(text);
const keyName = (i: number): string => `k/${String(i).padStart(3, '0')}`;
const KEY_COUNT = 40;
/** The split point: keys k/000..k/019 stay left, k/020..k/039 go right. */
const SPLIT_KEY = keyName(20);

const dirs: string[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A one-node store holding KEY_COUNT keys, its user range split at SPLIT_KEY; with the descriptors of both halves and of the range before the split. */
async function splitStore(): Promise<{ store: HostKvStore; host: Host; left: RangeDescriptor; right: RangeDescriptor; parent: RangeDescriptor }> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-ranges-'));
  dirs.push(dir);
  // As open() makes it, keeping the Host for a second store over it.
  const host = await Host.start({ nodeId: 1, dir, transport: new NoNetworkTransport({ nodeId: 1 }), coreCount: 1, logger });
  const store = new HostKvStore({ host, ranges: await bootstrapRanges(host, [1], 1), onClose: () => host.close() });
  closers.push(() => store.close());
  for (let i = 0; i < KEY_COUNT; i++) await store.put(b(keyName(i)), b(`v${i}`));
  const parent = store.knownRanges().find((r) => rangeContains(r, b(SPLIT_KEY)))!;
  const { left, right } = await store.split(parent.rangeId, b(SPLIT_KEY));
  const descriptor = (id: number) => store.knownRange(id)!;
  expect(Buffer.from(descriptor(right.shardId).start).toString()).toBe(SPLIT_KEY);
  return { store, host, left: descriptor(left.shardId), right: descriptor(right.shardId), parent };
}

async function keysOf(store: HostKvStore): Promise<string[]> {
  const page = await store.scan({ start: b('k/'), end: b('k0'), limit: 1000 });
  return page.items.map((i) => Buffer.from(i.key).toString());
}

describe('a static bootstrap', () => {
  it('puts neighbouring ranges in one core\'s store, in one run per core, so that they can merge', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-ranges-'));
    dirs.push(dir);
    const host = await Host.start({ nodeId: 1, dir, transport: new NoNetworkTransport({ nodeId: 1 }), coreCount: 2, logger });
    closers.push(() => host.close());
    const table = await bootstrapRanges(host, [1], 9);
    // The meta range and 9 user ranges, by start key: the first five in one store, the other five in the other.
    const byKey = [...table.all()].sort((x, y) => Buffer.compare(Buffer.from(x.start), Buffer.from(y.start))).map((r) => r.rangeId);
    expect(byKey).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(byKey.map((id) => host.coreOf(id))).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
  }, 60_000);
});

describe('across a split boundary', () => {
  it('a range delete deletes every key of the interval, one part per range', async () => {
    const { store, left, right } = await splitStore();
    const result = await store.clear({ start: b(keyName(10)), end: b(keyName(30)) });
    expect(result.deletedCount).toBe(20);
    expect(result.ranges.map((r) => [r.rangeId, Buffer.from(r.start).toString(), r.end === null ? null : Buffer.from(r.end).toString(), r.deletedCount])).toEqual([
      [left.rangeId, keyName(10), SPLIT_KEY, 10],
      [right.rangeId, SPLIT_KEY, keyName(30), 10],
    ]);
    expect(await keysOf(store)).toEqual([...Array.from({ length: 10 }, (_, i) => keyName(i)), ...Array.from({ length: 10 }, (_, i) => keyName(30 + i))]);
  }, 60_000);

  it('a range delete routed by a table from before the split is refused whole by the range, routed again, and deletes everything', async () => {
    const { store, host, parent } = await splitStore();
    // A second store over the same Host whose table still holds the range as it was before the split.
    const before = store.knownRanges().filter((r) => !rangeContains(r, b(keyName(0))) && !rangeContains(r, b(SPLIT_KEY)));
    const stale = new HostKvStore({ host, ranges: new RangeTable([...before, parent]) });
    expect(stale.knownRange(parent.rangeId)?.end).toBeNull();
    const result = await stale.clear({ start: b(keyName(5)), end: b(keyName(35)) });
    expect(result.deletedCount).toBe(30);
    expect(result.ranges).toHaveLength(2);
    expect(await keysOf(store)).toEqual([...Array.from({ length: 5 }, (_, i) => keyName(i)), ...Array.from({ length: 5 }, (_, i) => keyName(35 + i))]);
  }, 60_000);

  it('an atomic batch spanning both halves is refused naming both ranges, and writes nothing; within one half it applies', async () => {
    const { store, left, right } = await splitStore();
    const err = await store
      .batch([
        { op: 'put', key: b(keyName(1)), value: b('new') },
        { op: 'delete', key: b(keyName(25)) },
      ])
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'BATCH_SPANS_RANGES', details: { rangeIds: [left.rangeId, right.rangeId].sort((x, y) => x - y) } });
    expect((err as Error).message).toContain(`range ${left.rangeId}`);
    expect((err as Error).message).toContain(`range ${right.rangeId}`);
    expect(Buffer.from((await store.get(b(keyName(1))))!.value).toString()).toBe('v1');
    expect(await store.get(b(keyName(25)))).toBeDefined();
    const { versions } = await store.batch([
      { op: 'put', key: b(keyName(21)), value: b('new') },
      { op: 'delete', key: b(keyName(25)) },
    ]);
    expect(versions).toHaveLength(2);
    expect(await store.get(b(keyName(25)))).toBeUndefined();
  }, 60_000);

  it('a reverse iteration walks down across the boundary, page by page', async () => {
    const { store } = await splitStore();
    const embedded = new EmbeddedKvStore(store, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const keys: string[] = [];
    for await (const key of embedded.keys({ prefix: 'k/', reverse: true, pageLimit: 7 })) keys.push(key);
    expect(keys).toEqual(Array.from({ length: KEY_COUNT }, (_, i) => keyName(KEY_COUNT - 1 - i)));
    const bounded: string[] = [];
    for await (const key of embedded.keys({ start: keyName(15), end: keyName(25), reverse: true, pageLimit: 3 })) bounded.push(key);
    expect(bounded).toEqual(Array.from({ length: 10 }, (_, i) => keyName(24 - i)));
  }, 60_000);

  it('DELETE /kv across the boundary answers each range part', async () => {
    const { store, left, right } = await splitStore();
    closers.pop(); // the HTTP server owns the store now and closes it
    const server = await createHttpServer({ store, logger: pino({ level: 'silent' }) });
    closers.push(() => server.close());
    const response = await server.app.inject({ method: 'DELETE', url: `/kv?start=${encodeURIComponent(keyName(0))}&end=k0` });
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json<{ deletedCount: number; ranges: { rangeId: number; deletedCount: number }[] }>();
    expect(body).toMatchObject({ deletedCount: KEY_COUNT, ranges: [{ rangeId: left.rangeId, deletedCount: 20 }, { rangeId: right.rangeId, deletedCount: 20 }] });
    expect(await keysOf(store)).toEqual([]);
  }, 60_000);
});
