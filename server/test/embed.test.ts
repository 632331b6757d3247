import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { ShellLogger } from '@flotilla/shards';
import { AbortError, open, type EmbeddedStore, type Encoding } from '../src/embed.js';

const dirs: string[] = [];
const stores: EmbeddedStore<Encoding, Encoding>[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const b = (s: string) => Buffer.from(s);

async function openAt<K extends Encoding = 'binary', V extends Encoding = 'binary'>(dir: string, encodings: { keyEncoding?: K; valueEncoding?: V } = {}): Promise<EmbeddedStore<K, V>> {
  const store = await open<K, V>({ dir, logger, ...encodings });
  stores.push(store);
  return store;
}

async function toArray<T>(iterator: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterator) items.push(item);
  return items;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flotilla-embed-'));
  dirs.push(d);
  return d;
}

describe('open() — the embedded single-node store', () => {
  it('puts, gets, deletes and scans with versions, and survives close and reopen', async () => {
    const dir = tempDir();
    const store = await openAt(dir);
    const v1 = await store.put(b('apple'), b('red'));
    const v2 = await store.put(b('apple'), b('green'));
    expect(v2.version).toBeGreaterThan(v1.version);
    await store.put(b('banana'), b('yellow'));
    await store.put(b('cherry'), b('dark'));
    await store.delete(b('cherry'));
    expect(await store.get(b('cherry'))).toBeUndefined();
    expect(Buffer.from((await store.get(b('apple')))!.value).toString()).toBe('green');
    expect((await store.get('apple', { valueEncoding: 'utf8' }))?.value).toBe('green');
    const page = await store.scan({ limit: 10 });
    expect(page.items.map((i) => Buffer.from(i.key).toString())).toEqual(['apple', 'banana']);
    expect(page.cursor).toBeUndefined();
    await store.close();
    stores.length = 0;

    const again = await openAt(dir);
    const apple = await again.get(b('apple'));
    expect(Buffer.from(apple!.value).toString()).toBe('green');
    expect(apple!.version).toBe(v2.version);
    expect(await again.get(b('cherry'))).toBeUndefined();
  }, 30_000);

  it('gives the same metrics a server node shows at /metrics, as values', async () => {
    const store = await openAt(tempDir(), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const sample = async (name: string) => (await store.metrics()).find((f) => f.name === name)?.samples.reduce((n, s) => n + s.value, 0);
    const before = (await sample('flotilla_core_proposals_total')) ?? 0;
    for (let i = 0; i < 5; i++) await store.put(`m${i}`, 'v');
    expect(await sample('flotilla_core_proposals_total')).toBeGreaterThanOrEqual(before + 5);
    const families = await store.metrics();
    const commit = families.find((f) => f.name === 'flotilla_raft_proposal_commit_duration_seconds');
    expect(commit?.type).toBe('histogram');
    expect(commit!.samples.find((s) => s.name.endsWith('_count'))!.value).toBeGreaterThanOrEqual(5);
    expect(families.some((f) => f.name.startsWith('process_') || f.name.startsWith('nodejs_'))).toBe(true);
  });

  it('makes conditional writes on the version and says the current one on a mismatch', async () => {
    const store = await openAt(tempDir());
    const created = await store.put(b('k'), b('1'), { ifVersion: 0 });
    await expect(store.put(b('k'), b('2'), { ifVersion: 0 })).rejects.toMatchObject({ code: 'PRECONDITION_FAILED', details: { currentVersion: created.version } });
    const next = await store.put(b('k'), b('2'), { ifVersion: created.version });
    await expect(store.delete(b('k'), { ifVersion: created.version })).rejects.toMatchObject({ code: 'PRECONDITION_FAILED', details: { currentVersion: next.version } });
    await store.delete(b('k'), { ifVersion: next.version });
    expect(await store.get(b('k'))).toBeUndefined();
  }, 30_000);

  it('pages a scan with a cursor, exactly once per key, in order', async () => {
    const store = await openAt(tempDir());
    const keys = Array.from({ length: 57 }, (_, i) => `key/${String(i).padStart(3, '0')}`);
    await Promise.all(keys.map((k) => store.put(b(k), b(k.toUpperCase()))));
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 20; pages++) {
      const page = await store.scan({ start: b('key/'), end: b('key0'), limit: 10, ...(cursor === undefined ? {} : { cursor }) });
      seen.push(...page.items.map((i) => Buffer.from(i.key).toString()));
      cursor = page.cursor;
      if (cursor === undefined) break;
    }
    expect(seen).toEqual(keys);
    await expect(store.scan({ limit: 10, cursor: 'not-a-cursor' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.scan({ limit: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  }, 30_000);

  it('refuses empty and oversized keys and values with their own codes, and keeps serving', async () => {
    const store = await openAt(tempDir());
    await expect(store.put(new Uint8Array(0), b('v'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.put(Buffer.alloc(5000, 1), b('v'))).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    await expect(store.put(b('k'), Buffer.alloc(2 * 1024 * 1024))).rejects.toMatchObject({ code: 'VALUE_TOO_LARGE' });
    await expect(store.put(b('k'), b('v'), { ifVersion: -3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // Scan bounds past LMDB's key limit are refused, not passed to LMDB (which once took the core down).
    await expect(store.scan({ end: Buffer.alloc(1979, 1), limit: 5 })).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    await expect(store.scan({ start: Buffer.alloc(4000, 1), limit: 5 })).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    expect((await store.put(b('k'), b('v'))).version).toBeGreaterThan(0);
  }, 30_000);

  it('refuses a foreign data directory without touching it', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'notes.txt'), 'my files');
    await expect(open({ dir, logger })).rejects.toMatchObject({ code: 'DATA_DIR_FOREIGN' });
  });

  it('iterates every key in order across pages, and writes a batch in one entry', async () => {
    const store = await openAt(tempDir());
    const keys = Array.from({ length: 300 }, (_, i) => `it/${String(i).padStart(4, '0')}`);
    const { versions } = await store.batch(keys.map((k) => ({ op: 'put' as const, key: k, value: k })));
    // One Raft entry: every put of the batch has the same version, its index.
    expect(new Set(versions).size).toBe(1);
    const seen: string[] = [];
    for await (const item of store.iterate({ start: b('it/'), end: b('it0'), pageLimit: 64 })) seen.push(Buffer.from(item.key).toString());
    expect(seen).toEqual(keys);
  }, 30_000);
});

describe('keys and values: strings or bytes in, one form out', () => {
  it('takes a string and its UTF-8 bytes as the same key, and gives plain Uint8Arrays (never Buffers) from every call', async () => {
    const store = await openAt(tempDir());
    await store.put('café', 'crème');
    const asBytes = await store.get(new TextEncoder().encode('café'));
    expect(asBytes?.value).toEqual(new TextEncoder().encode('crème'));
    const fromGet = asBytes!.value;
    const [fromMany] = await store.getMany(['café']);
    const [fromIterate] = await toArray(store.iterate());
    const [fromKeys] = await toArray(store.keys());
    const [fromValues] = await toArray(store.values());
    const fromScan = (await store.scan({ limit: 1 })).items[0]!;
    for (const bytes of [fromGet, fromMany!.value, fromIterate!.key, fromIterate!.value, fromKeys!, fromValues!, fromScan.key, fromScan.value]) {
      expect(Object.getPrototypeOf(bytes)).toBe(Uint8Array.prototype);
    }
  }, 30_000);

  it('answers strings for a store opened with utf8 encodings, and per call when asked', async () => {
    const dir = tempDir();
    const text = await openAt(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    await text.put('k1', 'v1');
    await text.put(Uint8Array.of(0x6b, 0x32), Uint8Array.of(0xff, 0x61)); // 'k2', and a value that is not UTF-8
    expect(await text.get('k1')).toMatchObject({ value: 'v1' });
    expect(await text.get('k2')).toMatchObject({ value: '\ufffda' });
    expect((await text.get('k2', { valueEncoding: 'binary' }))?.value).toEqual(Uint8Array.of(0xff, 0x61));
    expect((await toArray(text.iterate())).map(({ key, value }) => [key, value])).toEqual([
      ['k1', 'v1'],
      ['k2', '\ufffda'],
    ]);
    expect(await toArray(text.keys({ keyEncoding: 'binary' }))).toEqual([Uint8Array.of(0x6b, 0x31), Uint8Array.of(0x6b, 0x32)]);
  }, 30_000);

  it('refuses arguments of the wrong type with a TypeError naming the argument, and keeps serving', async () => {
    const store = await openAt(tempDir());
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      ['a number as key', () => store.put(42 as never, 'v'), /^put: key must be a string or a Uint8Array, got number 42$/],
      ['null as value', () => store.put('k', null as never), /^put: value must be a string or a Uint8Array, got null$/],
      ['an object as key', () => store.get({} as never), /^get: key must be a string or a Uint8Array, got an object \(Object\)$/],
      ['an array as key', () => store.delete([1, 2] as never), /^delete: key must be a string or a Uint8Array, got an array$/],
      ['a string ifVersion', () => store.put('k', 'v', { ifVersion: '3' as never }), /^put: ifVersion must be a number, got string "3"$/],
      ['options that are not an object', () => store.get('k', 'stale' as never), /^get: options must be an object/],
      ['an unknown consistency', () => store.get('k', { consistency: 'eventual' as never }), /consistency must be 'linearizable' or 'stale'/],
      ['an unknown encoding', () => store.get('k', { valueEncoding: 'json' as never }), /valueEncoding must be 'binary' or 'utf8'/],
      ['a batch that is no array', () => store.batch('put' as never), /^batch: ops must be an array/],
      ['a batch op that is unknown', () => store.batch([{ op: 'upsert', key: 'k' } as never]), /^batch: op 0: op must be 'put' or 'delete', got "upsert"$/],
      ['a batch op with a numeric key', () => store.batch([{ op: 'delete', key: 7 } as never]), /^batch: op 0: key must be a string or a Uint8Array, got number 7$/],
      ['getMany of no array', () => store.getMany('k' as never), /^getMany: keys must be an array/],
      ['a signal that is no AbortSignal', () => store.get('k', { signal: {} as never }), /signal must be an AbortSignal/],
      ['a clear bound that is a number', () => store.clear({ start: 1 as never }), /^clear: start must be a string or a Uint8Array, got number 1$/],
    ];
    for (const [name, call, message] of cases) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, name).toBeInstanceOf(TypeError);
      expect((err as Error).message, name).toMatch(message);
    }
    // Iteration checks its options when it is called, not at the first next().
    expect(() => store.iterate({ limit: 0 })).toThrow(/^iterate: limit must be a positive integer, got number 0$/);
    expect(() => store.keys({ reverse: 'yes' as never })).toThrow(TypeError);
    // Values of the right type that the store cannot take are its KvErrors, not TypeErrors.
    await expect(store.put('', 'v')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.put('k', 'v', { ifVersion: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.put('k'.repeat(5000), 'v')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    expect((await store.put('k', 'v')).created).toBe(true);
  }, 30_000);
});

describe('iteration: reverse, limit, prefix, keys() and values()', () => {
  async function filled(): Promise<EmbeddedStore<'utf8', 'utf8'>> {
    const store = await openAt(tempDir(), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    await store.batch(['a', 'b/1', 'b/2', 'b/3', 'b0', 'c'].map((key) => ({ op: 'put' as const, key, value: key.toUpperCase() })));
    return store;
  }

  it('walks forwards or backwards, within [start, end), at most limit, across pages', async () => {
    const store = await filled();
    expect(await toArray(store.keys())).toEqual(['a', 'b/1', 'b/2', 'b/3', 'b0', 'c']);
    expect(await toArray(store.keys({ reverse: true, pageLimit: 2 }))).toEqual(['c', 'b0', 'b/3', 'b/2', 'b/1', 'a']);
    expect(await toArray(store.keys({ start: 'b/2', end: 'c' }))).toEqual(['b/2', 'b/3', 'b0']);
    expect(await toArray(store.keys({ start: 'b/2', end: 'c', reverse: true }))).toEqual(['b0', 'b/3', 'b/2']);
    expect(await toArray(store.keys({ limit: 2, pageLimit: 1 }))).toEqual(['a', 'b/1']);
    expect(await toArray(store.keys({ limit: 2, reverse: true }))).toEqual(['c', 'b0']);
    expect(await toArray(store.values({ start: 'c' }))).toEqual(['C']);
    expect(await toArray(store.keys({ start: 'x' }))).toEqual([]);
    expect(() => store.keys({ start: 'c', end: 'a' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  }, 30_000);

  it('narrows to a prefix, with or without bounds, and ends a 0xFF prefix at the key space\'s end', async () => {
    const store = await filled();
    expect(await toArray(store.keys({ prefix: 'b/' }))).toEqual(['b/1', 'b/2', 'b/3']);
    expect(await toArray(store.keys({ prefix: 'b/', reverse: true, limit: 2 }))).toEqual(['b/3', 'b/2']);
    expect(await toArray(store.keys({ prefix: 'b', start: 'b/2' }))).toEqual(['b/2', 'b/3', 'b0']);
    expect(await toArray(store.keys({ prefix: 'b/', end: 'b/3' }))).toEqual(['b/1', 'b/2']);
    expect(await toArray(store.keys({ prefix: 'b/', start: 'c' }))).toEqual([]);
    await store.put(Uint8Array.of(0xff, 0xff), 'top');
    expect(await toArray(store.values({ prefix: Uint8Array.of(0xff) }))).toEqual(['top']);
  }, 30_000);

  it('getMany answers in the order asked, undefined where absent', async () => {
    const store = await filled();
    const found = await store.getMany(['c', 'nope', 'a', 'a']);
    expect(found.map((f) => f?.value)).toEqual(['C', undefined, 'A', 'A']);
    expect(await store.getMany([])).toEqual([]);
  }, 30_000);
});

describe('batch() and clear(): atomic writes', () => {
  it('applies a batch all or none: one failing ifVersion changes nothing and names the op', async () => {
    const store = await openAt(tempDir(), { valueEncoding: 'utf8' });
    const a = await store.put('a', 'old');
    await store.put('b', 'old');
    const before = await toArray(store.iterate());
    const err = await store
      .batch([
        { op: 'put', key: 'a', value: 'new', ifVersion: a.version },
        { op: 'delete', key: 'b' },
        { op: 'put', key: 'c', value: 'new', ifVersion: 5 },
      ])
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PRECONDITION_FAILED', details: { opIndex: 2, currentVersion: 0 } });
    expect((err as Error).message).toMatch(/op 2 .*nothing was written/);
    expect(await toArray(store.iterate())).toEqual(before);
    // The same batch with the right condition applies whole; each condition sees the ops before it.
    const { versions } = await store.batch([
      { op: 'put', key: 'a', value: 'new', ifVersion: a.version },
      { op: 'delete', key: 'b' },
      { op: 'put', key: 'c', value: 'new', ifVersion: 0 },
      { op: 'put', key: 'c', value: 'newer' },
    ]);
    expect(versions[1]).toBe(0);
    expect(versions[3]).toBe(versions[2]! + 1);
    expect((await toArray(store.iterate())).map(({ key, value }) => [Buffer.from(key).toString(), value])).toEqual([
      ['a', 'new'],
      ['c', 'newer'],
    ]);
    expect(await store.batch([])).toEqual({ versions: [] });
    // A condition sees the ops before it in the batch: after the first put, x exists.
    await expect(
      store.batch([
        { op: 'put', key: 'x', value: '1', ifVersion: 0 },
        { op: 'put', key: 'x', value: '2', ifVersion: 0 },
      ]),
    ).rejects.toMatchObject({ code: 'PRECONDITION_FAILED', details: { opIndex: 1 } });
    expect(await store.get('x')).toBeUndefined();
  }, 30_000);

  it('clears [start, end) or a prefix, answers how many keys went, and leaves the rest', async () => {
    const store = await openAt(tempDir(), { keyEncoding: 'utf8' });
    await store.batch(['a', 'b/1', 'b/2', 'b0', 'c', 'd'].map((key) => ({ op: 'put' as const, key, value: 'v' })));
    expect(await store.clear({ prefix: 'b/' })).toMatchObject({ deletedCount: 2, ranges: [{ deletedCount: 2 }] });
    expect(await store.clear({ start: 'c', end: 'd' })).toMatchObject({ deletedCount: 1 });
    expect(await toArray(store.keys())).toEqual(['a', 'b0', 'd']);
    await expect(store.clear({ start: 'd', end: 'a' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await store.clear({ prefix: 'zz' })).toMatchObject({ deletedCount: 0 });
    expect(await store.clear()).toMatchObject({ deletedCount: 3 });
    expect(await toArray(store.keys())).toEqual([]);
  }, 30_000);
});

describe('signals and disposal', () => {
  it('rejects a call whose signal is aborted already with an AbortError, and writes nothing', async () => {
    const store = await openAt(tempDir());
    const reason = new Error('caller gave up');
    const err = await store.put('k', 'v', { signal: AbortSignal.abort(reason) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(err).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: reason });
    expect(await store.get('k')).toBeUndefined();
    await expect(store.batch([{ op: 'put', key: 'k', value: 'v' }], { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await expect(store.clear({ signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
  }, 30_000);

  it('rejects a call in flight as soon as its signal aborts', async () => {
    const store = await openAt(tempDir());
    const controller = new AbortController();
    const pending = store.get('k', { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortError);
    // The store is unharmed.
    await store.put('k', 'v');
    expect(await store.get('k')).toBeDefined();
  }, 30_000);

  it('stops an iteration between pages when its signal aborts', async () => {
    const store = await openAt(tempDir(), { keyEncoding: 'utf8' });
    await store.batch(['a', 'b', 'c', 'd'].map((key) => ({ op: 'put' as const, key, value: key })));
    const controller = new AbortController();
    const seen: string[] = [];
    const err = await (async () => {
      for await (const key of store.keys({ pageLimit: 2, signal: controller.signal })) {
        seen.push(key);
        controller.abort();
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    // The first page was fetched before the abort and is yielded whole; the second is never fetched.
    expect(seen).toEqual(['a', 'b']);
  }, 30_000);

  it('closes on Symbol.asyncDispose (await using), after which calls fail CLOSED', async () => {
    const store = await open({ dir: tempDir(), logger });
    await store.put('k', 'v');
    await store[Symbol.asyncDispose]();
    await expect(store.get('k')).rejects.toMatchObject({ code: 'CLOSED' });
    await store.close(); // idempotent
  }, 30_000);
});

describe('open() with peers — three embedded members of one cluster', () => {
  it('each process-local store serves every key, and a member reopened on its directory reads what the others wrote', async () => {
    const { freePorts } = await import('@flotilla/shards/test-support/node-cluster');
    const ports = await freePorts(3);
    const dirsOf = [tempDir(), tempDir(), tempDir()];
    const member = (i: number) =>
      open({
        dir: dirsOf[i]!,
        logger,
        cluster: {
          nodeId: i + 1,
          listen: { host: '127.0.0.1', port: ports[i]! },
          peers: Object.fromEntries([0, 1, 2].filter((j) => j !== i).map((j) => [j + 1, `127.0.0.1:${ports[j]}`])),
          initialRangeCount: 2,
          tickIntervalMs: 20,
        },
      });
    const dbs = await Promise.all([0, 1, 2].map(member));
    stores.push(dbs[0]!, dbs[1]!);
    // The first writes race the first elections and may time out (outcome unknown): a client retries them; these puts are idempotent.
    const put = async (db: EmbeddedStore, k: string, v: string) => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await db.put(b(k), b(v));
        } catch (err) {
          if (attempt >= 5 || !['TIMEOUT', 'UNAVAILABLE'].includes((err as { code?: string }).code ?? '')) throw err;
        }
      }
    };
    for (let i = 0; i < 12; i++) await put(dbs[i % 3]!, `k${i}`, `v${i}`);
    for (let i = 0; i < 12; i++) for (const db of dbs) expect((await db.get(b(`k${i}`), { valueEncoding: 'utf8' }))?.value).toBe(`v${i}`);
    await dbs[2]!.close();
    await put(dbs[0]!, 'while-away', 'x');
    const back = await member(2);
    stores.push(back);
    expect((await back.get(b('while-away'), { valueEncoding: 'utf8' }))?.value).toBe('x');
    const keys: string[] = [];
    for await (const { key } of back.iterate()) keys.push(Buffer.from(key).toString());
    expect(keys).toEqual([...Array.from({ length: 12 }, (_, i) => `k${i}`), 'while-away'].sort());
  }, 60_000);
});
