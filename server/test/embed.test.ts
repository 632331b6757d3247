import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { ShellLogger } from '@flotilla/shards';
import { open, type EmbeddedStore } from '../src/embed.js';

const dirs: string[] = [];
const stores: EmbeddedStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const b = (s: string) => Buffer.from(s);

async function openAt(dir: string): Promise<EmbeddedStore> {
  const store = await open({ dir, logger });
  stores.push(store);
  return store;
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

  it('iterates every key in order across pages, and runs batches reporting each write', async () => {
    const store = await openAt(tempDir());
    const keys = Array.from({ length: 300 }, (_, i) => `it/${String(i).padStart(4, '0')}`);
    const results = await store.batch(keys.map((k) => ({ op: 'put' as const, key: b(k), value: b(k) })));
    expect(results.every((r) => r.ok)).toBe(true);
    const seen: string[] = [];
    for await (const item of store.iterate({ start: b('it/'), end: b('it0'), pageLimit: 64 })) seen.push(Buffer.from(item.key).toString());
    expect(seen).toEqual(keys);
    const mixed = await store.batch([
      { op: 'put', key: b('it/0000'), value: b('x'), ifVersion: 0 },
      { op: 'delete', key: b('it/0001') },
      { op: 'put', key: new Uint8Array(0), value: b('x') },
    ]);
    expect(mixed[0]).toMatchObject({ ok: false, error: { code: 'PRECONDITION_FAILED' } });
    expect(mixed[1]).toEqual({ ok: true, version: 0 });
    expect(mixed[2]).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await store.get(b('it/0001'))).toBeUndefined();
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
    for (let i = 0; i < 12; i++) for (const db of dbs) expect((await db.get(b(`k${i}`)))?.value.toString()).toBe(`v${i}`);
    await dbs[2]!.close();
    await put(dbs[0]!, 'while-away', 'x');
    const back = await member(2);
    stores.push(back);
    expect((await back.get(b('while-away')))?.value.toString()).toBe('x');
    const keys: string[] = [];
    for await (const { key } of back.iterate()) keys.push(Buffer.from(key).toString());
    expect(keys).toEqual([...Array.from({ length: 12 }, (_, i) => `k${i}`), 'while-away'].sort());
  }, 60_000);
});
