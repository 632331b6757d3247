import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino, type Logger } from 'pino';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX, type ShellLogger } from '@flotilla/shards';
import { openKvStore } from '../src/embed.js';
import { createHttpServer, type HttpServer } from '../src/http/app.js';
import { HttpError, STATUS_BY_CODE, errorReply, type ErrorCode } from '../src/http/errors.js';
import { SCAN_LIMIT_DEFAULT } from '../src/http/kv-routes.js';
import { KvError, SCAN_LIMIT_MAX, type KvErrorCode, type KvStore } from '../src/kv/store.js';
import { MemoryKvStore } from '../src/testing/memory-store.js';
import { ScriptedStore } from './support/scripted-store.js';

const silent = pino({ level: 'silent' });
const b = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Escapes every byte except [A-Za-z0-9_~-], so no '.' or '/' is left for inject's URL normalisation to touch. */
function encodeKey(bytes: Uint8Array, options: { lowerCase?: boolean } = {}): string {
  let text = '';
  for (const byte of bytes) {
    const char = String.fromCharCode(byte);
    const hex = byte.toString(16).padStart(2, '0');
    text += /^[A-Za-z0-9_~-]$/.test(char) ? char : `%${options.lowerCase === true ? hex : hex.toUpperCase()}`;
  }
  return text;
}
const keyUrl = (key: Uint8Array): string => `/kv/${encodeKey(key)}`;
const etag = (version: number): string => `"${version}"`;

/** Each test writes under its own prefix, so tests sharing one store never see each other's keys. */
let prefixCount = 0;
const freshPrefix = (name: string): Buffer => b(`${name}-${prefixCount++}/`);
/** The smallest key after every key that starts with `prefix` (its last byte is never 0xFF here). */
const prefixEnd = (prefix: Buffer): Buffer => Buffer.concat([prefix.subarray(0, -1), Buffer.of(prefix[prefix.length - 1]! + 1)]);

interface ErrorJson {
  readonly code: string;
  readonly message: string;
  readonly currentVersion?: number;
}
function errorOf(response: LightMyRequestResponse): ErrorJson {
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  const body = response.json<{ error: ErrorJson }>();
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  return body.error;
}

interface ScanJson {
  readonly encoding: string;
  readonly items: readonly { readonly key: string; readonly value: string; readonly version: number }[];
  readonly cursor: string | null;
}

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const STORES: readonly { readonly name: string; readonly open: () => Promise<KvStore> }[] = [
  { name: 'in-memory store', open: async () => new MemoryKvStore() },
  {
    name: 'embedded engine',
    open: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'flotilla-http-'));
      tempDirs.push(dir);
      return openKvStore({ dir, logger: silent as unknown as ShellLogger });
    },
  },
];

describe.each(STORES)('HTTP API over the $name', (factory) => {
  let server: HttpServer;
  const inject = (options: InjectOptions): Promise<LightMyRequestResponse> => server.app.inject(options);
  const put = async (key: Uint8Array, value: Uint8Array | string, headers: Record<string, string> = {}): Promise<number> => {
    const response = await inject({ method: 'PUT', url: keyUrl(key), payload: Buffer.from(value), headers });
    // 201 when the put created the key, 200 when it overwrote it (tested on its own below).
    expect([200, 201], response.body).toContain(response.statusCode);
    const { version } = response.json<{ version: number }>();
    expect(response.headers.etag).toBe(etag(version));
    return version;
  };
  const scanAll = async (query: string, limit: number): Promise<{ pages: ScanJson[]; items: ScanJson['items'] }> => {
    const pages: ScanJson[] = [];
    let cursor: string | null = null;
    do {
      const response = await inject({ method: 'GET', url: `/kv?${query}&limit=${limit}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}` });
      expect(response.statusCode, response.body).toBe(200);
      const page = response.json<ScanJson>();
      expect(page.items.length).toBeLessThanOrEqual(limit);
      pages.push(page);
      cursor = page.cursor;
      expect(pages.length, 'scan never ends').toBeLessThan(10_000);
    } while (cursor !== null);
    return { pages, items: pages.flatMap((p) => p.items) };
  };
  const rangeQuery = (prefix: Buffer): string => `start=${encodeKey(prefix)}&end=${encodeKey(prefixEnd(prefix))}`;

  beforeAll(async () => {
    server = await createHttpServer({ store: await factory.open(), logger: silent });
  });
  afterAll(async () => {
    await server.close();
  });

  it('GET /health answers ok', async () => {
    const response = await inject({ method: 'GET', url: '/health' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
  });

  it('round-trips keys of every byte value 0..255, in upper- or lower-case escapes, and a key of all 256 bytes', async () => {
    const prefix = freshPrefix('bytes');
    const versions: number[] = [];
    for (let byte = 0; byte < 256; byte++) {
      versions.push(await put(Buffer.concat([prefix, Buffer.of(byte)]), Buffer.of(byte, 255 - byte)));
    }
    for (let byte = 0; byte < 256; byte++) {
      const response = await inject({ method: 'GET', url: `/kv/${encodeKey(Buffer.concat([prefix, Buffer.of(byte)]), { lowerCase: true })}` });
      expect(response.statusCode, `byte ${byte}`).toBe(200);
      expect([...response.rawPayload], `byte ${byte}`).toEqual([byte, 255 - byte]);
      expect(response.headers.etag).toBe(etag(versions[byte]!));
      expect(response.headers['content-type']).toBe('application/octet-stream');
    }
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const allKey = Buffer.concat([prefix, everyByte]);
    await put(allKey, everyByte);
    const got = await inject({ method: 'GET', url: keyUrl(allKey) });
    expect(got.rawPayload.equals(everyByte)).toBe(true);

    const { items } = await scanAll(rangeQuery(prefix), 1_000);
    const expected = [...Array.from({ length: 256 }, (_, byte) => Buffer.concat([prefix, Buffer.of(byte)])), allKey].sort(Buffer.compare);
    expect(items.map((i) => Buffer.from(i.key, 'base64').toString('hex'))).toEqual(expected.map((k) => k.toString('hex')));
    const allItem = items.find((i) => Buffer.from(i.key, 'base64').equals(allKey))!;
    expect(Buffer.from(allItem.value, 'base64').equals(everyByte)).toBe(true);
  });

  it("takes unescaped characters as their own bytes: '/' and '+' in the path are part of the key", async () => {
    const prefix = freshPrefix('literal');
    await put(Buffer.concat([prefix, b('a/b+c~*')]), 'literal');
    const response = await inject({ method: 'GET', url: `/kv/${encodeKey(prefix)}a/b+c~*` });
    expect(response.statusCode).toBe(200);
    expect(response.body).toBe('literal');
    const spaced = await inject({ method: 'GET', url: `/kv/${encodeKey(prefix)}a%2Fb%2Bc%7E%2A` });
    expect(spaced.body).toBe('literal');
  });

  it('stores any body as raw bytes whatever its Content-Type, gives the Content-Type back, and an absent body as the empty value', async () => {
    const prefix = freshPrefix('content');
    for (const contentType of ['application/json', 'text/plain', 'text/plain; charset=utf-8', 'image/png', 'application/x-www-form-urlencoded']) {
      await put(Buffer.concat([prefix, b(contentType)]), '{not json', { 'content-type': contentType });
      const response = await inject({ method: 'GET', url: keyUrl(Buffer.concat([prefix, b(contentType)])) });
      expect(response.body).toBe('{not json');
      expect(response.headers['content-type']).toBe(contentType);
    }
    const emptyKey = Buffer.concat([prefix, b('empty')]);
    const created = await inject({ method: 'PUT', url: keyUrl(emptyKey) });
    expect(created.statusCode).toBe(201);
    const empty = await inject({ method: 'GET', url: keyUrl(emptyKey) });
    expect(empty.statusCode).toBe(200);
    expect(empty.rawPayload.byteLength).toBe(0);
    // Written without a Content-Type: read back as bytes.
    expect(empty.headers['content-type']).toBe('application/octet-stream');
    // An overwrite without one drops the old one.
    const typedKey = Buffer.concat([prefix, b('retyped')]);
    await put(typedKey, '{}', { 'content-type': 'application/json' });
    await put(typedKey, 'raw');
    expect((await inject({ method: 'GET', url: keyUrl(typedKey) })).headers['content-type']).toBe('application/octet-stream');
  });

  it('answers 201 to a PUT that creates the key and 200 to one that overwrites it', async () => {
    const key = Buffer.concat([freshPrefix('created'), b('k')]);
    const first = await inject({ method: 'PUT', url: keyUrl(key), payload: 'one' });
    expect(first.statusCode, first.body).toBe(201);
    const second = await inject({ method: 'PUT', url: keyUrl(key), payload: 'two' });
    expect(second.statusCode, second.body).toBe(200);
    expect(second.json<{ version: number }>().version).toBeGreaterThan(first.json<{ version: number }>().version);
    expect((await inject({ method: 'DELETE', url: keyUrl(key) })).statusCode).toBe(204);
    const again = await inject({ method: 'PUT', url: keyUrl(key), payload: 'three', headers: { 'if-none-match': '*' } });
    expect(again.statusCode, again.body).toBe(201);
  });

  it('DELETE /kv?start=&end= deletes every key of the interval and says how many, and nothing outside it', async () => {
    const prefix = freshPrefix('clear');
    const keys = ['a', 'b', 'b/1', 'b/2', 'c', 'd'].map((k) => Buffer.concat([prefix, b(k)]));
    for (const key of keys) await put(key, 'v');
    const response = await inject({ method: 'DELETE', url: `/kv?start=${encodeKey(Buffer.concat([prefix, b('b')]))}&end=${encodeKey(Buffer.concat([prefix, b('d')]))}` });
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json<{ deletedCount: number; ranges: { rangeId: number; start: string; end: string | null; deletedCount: number }[] }>();
    expect(body.deletedCount).toBe(4);
    expect(body.ranges.reduce((sum, r) => sum + r.deletedCount, 0)).toBe(4);
    expect(Buffer.from(body.ranges[0]!.start, 'base64').equals(Buffer.concat([prefix, b('b')]))).toBe(true);
    const { items } = await scanAll(rangeQuery(prefix), 10);
    expect(items.map((i) => Buffer.from(i.key, 'base64').subarray(prefix.length).toString())).toEqual(['a', 'd']);
    // Deleting again is idempotent: nothing left to delete.
    const again = await inject({ method: 'DELETE', url: `/kv?${rangeQuery(prefix)}` });
    expect(again.json<{ deletedCount: number }>().deletedCount).toBe(2);
  });

  it('scans from the last key down with reverse=true, paging with the cursor', async () => {
    const prefix = freshPrefix('reverse');
    const names = Array.from({ length: 7 }, (_, i) => `k${i}`);
    for (const name of names) await put(Buffer.concat([prefix, b(name)]), name);
    const { pages, items } = await scanAll(`${rangeQuery(prefix)}&reverse=true&encoding=utf8`, 3);
    expect(pages.length).toBe(3);
    expect(items.map((i) => i.value)).toEqual([...names].reverse());
  });

  it('accepts a key of exactly KEY_BYTES_MAX bytes and a value of exactly VALUE_BYTES_MAX bytes', async () => {
    const prefix = freshPrefix('limits');
    const key = Buffer.concat([prefix, Buffer.alloc(KEY_BYTES_MAX - prefix.length, 0xfe)]);
    const value = Buffer.alloc(VALUE_BYTES_MAX, 0x5a);
    await put(key, value);
    const response = await inject({ method: 'GET', url: keyUrl(key) });
    expect(response.rawPayload.equals(value)).toBe(true);
  });

  it('makes the version the ETag, and conditional writes on If-Match / If-None-Match (412 with the current version)', async () => {
    const key = Buffer.concat([freshPrefix('etag'), b('k')]);
    const url = keyUrl(key);

    const absentMatch = await inject({ method: 'PUT', url, payload: 'x', headers: { 'if-match': '"1"' } });
    expect(absentMatch.statusCode).toBe(412);
    expect(errorOf(absentMatch)).toMatchObject({ code: 'PRECONDITION_FAILED', currentVersion: 0 });

    const v1 = await put(key, 'one', { 'if-none-match': '*' });
    const again = await inject({ method: 'PUT', url, payload: 'x', headers: { 'if-none-match': '*' } });
    expect(again.statusCode).toBe(412);
    expect(errorOf(again)).toMatchObject({ code: 'PRECONDITION_FAILED', currentVersion: v1 });

    const v2 = await put(key, 'two', { 'if-match': etag(v1) });
    expect(v2).toBeGreaterThan(v1);
    const stale = await inject({ method: 'PUT', url, payload: 'x', headers: { 'if-match': etag(v1) } });
    expect(stale.statusCode).toBe(412);
    expect(errorOf(stale)).toMatchObject({ code: 'PRECONDITION_FAILED', currentVersion: v2 });
    expect((await inject({ method: 'GET', url })).body).toBe('two');

    const read = await inject({ method: 'GET', url });
    expect(read.headers.etag).toBe(etag(v2));
    const head = await inject({ method: 'HEAD', url });
    expect(head.statusCode).toBe(200);
    expect(head.headers.etag).toBe(etag(v2));
    expect(head.body).toBe('');
    const notModified = await inject({ method: 'GET', url, headers: { 'if-none-match': etag(v2) } });
    expect(notModified.statusCode).toBe(304);
    expect(notModified.headers.etag).toBe(etag(v2));
    expect((await inject({ method: 'GET', url, headers: { 'if-none-match': etag(v1) } })).statusCode).toBe(200);
    const readStale = await inject({ method: 'GET', url, headers: { 'if-match': etag(v1) } });
    expect(readStale.statusCode).toBe(412);
    expect(errorOf(readStale)).toMatchObject({ code: 'PRECONDITION_FAILED', currentVersion: v2 });

    const deleteStale = await inject({ method: 'DELETE', url, headers: { 'if-match': etag(v1) } });
    expect(deleteStale.statusCode).toBe(412);
    expect(errorOf(deleteStale)).toMatchObject({ code: 'PRECONDITION_FAILED', currentVersion: v2 });
    const deleted = await inject({ method: 'DELETE', url, headers: { 'if-match': etag(v2) } });
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe('');
    const missing = await inject({ method: 'GET', url });
    expect(missing.statusCode).toBe(404);
    expect(errorOf(missing).code).toBe('NOT_FOUND');
    expect((await inject({ method: 'DELETE', url })).statusCode).toBe(204);

    // A key written again after a delete gets a version above its old one, so an old ETag cannot match the new value.
    const v3 = await put(key, 'three', { 'if-none-match': '*' });
    expect(v3).toBeGreaterThan(v2);
  });

  it('pages a scan of many keys with limit and cursor, in byte order, and honours start and end', async () => {
    const prefix = freshPrefix('scan');
    const count = 250;
    const keys = Array.from({ length: count }, (_, i) => Buffer.concat([prefix, b(`k${String(i).padStart(4, '0')}`)]));
    for (const [i, key] of keys.entries()) await put(key, `value ${i}`);
    await put(prefixEnd(prefix), 'just past the range');

    const { pages, items } = await scanAll(`${rangeQuery(prefix)}&encoding=utf8`, 7);
    expect(pages.length).toBeGreaterThanOrEqual(Math.ceil(count / 7));
    expect(pages.every((p) => p.encoding === 'utf8')).toBe(true);
    expect(items.map((i) => i.key)).toEqual(keys.map((k) => k.toString('latin1')));
    expect(items.map((i) => i.value)).toEqual(keys.map((_, i) => `value ${i}`));
    expect(items.every((i) => Number.isSafeInteger(i.version) && i.version >= 1)).toBe(true);

    const first = await inject({ method: 'GET', url: `/kv?${rangeQuery(prefix)}` });
    const page = first.json<ScanJson>();
    expect(page.encoding).toBe('base64');
    expect(page.items).toHaveLength(SCAN_LIMIT_DEFAULT);
    expect(page.cursor).not.toBeNull();
    expect(Buffer.from(page.items[0]!.key, 'base64').equals(keys[0]!)).toBe(true);

    const window = await inject({ method: 'GET', url: `/kv?start=${encodeKey(keys[10]!)}&end=${encodeKey(keys[20]!)}&limit=50&encoding=utf8&consistency=stale` });
    expect(window.json<ScanJson>().items.map((i) => i.key)).toEqual(keys.slice(10, 20).map((k) => k.toString('latin1')));
    expect(window.json<ScanJson>().cursor).toBeNull();

    // Empty parameters count as absent, as an HTML form sends them.
    const open = await inject({ method: 'GET', url: `/kv?start=${encodeKey(keys[count - 1]!)}&end=&limit=2&cursor=&encoding=` });
    expect(open.statusCode).toBe(200);
    expect(Buffer.from(open.json<ScanJson>().items[0]!.key, 'base64').equals(keys[count - 1]!)).toBe(true);
  });

  it('continues a scan past keys of the maximum length', async () => {
    const prefix = freshPrefix('longscan');
    const long = [0x01, 0x02].map((last) => Buffer.concat([prefix, Buffer.alloc(KEY_BYTES_MAX - prefix.length - 1, 0xff), Buffer.of(last)]));
    for (const key of long) await put(key, 'long');
    const { items } = await scanAll(rangeQuery(prefix), 1);
    expect(items.map((i) => Buffer.from(i.key, 'base64').toString('hex'))).toEqual(long.map((k) => k.toString('hex')));
  });

  it('says when a utf8 scan page holds bytes that are not UTF-8 (400), and base64 carries them', async () => {
    const prefix = freshPrefix('utf8');
    await put(Buffer.concat([prefix, Buffer.of(0xff)]), Buffer.of(0xc3));
    const response = await inject({ method: 'GET', url: `/kv?${rangeQuery(prefix)}&encoding=utf8` });
    expect(response.statusCode).toBe(400);
    expect(errorOf(response).code).toBe('INVALID_ARGUMENT');
    const base64 = await inject({ method: 'GET', url: `/kv?${rangeQuery(prefix)}` });
    expect(base64.json<ScanJson>().items.map((i) => Buffer.from(i.value, 'base64').toString('hex'))).toEqual(['c3']);
  });

  describe('refuses bad input with the right status and JSON error code', () => {
    const tooLongKey = encodeKey(Buffer.alloc(KEY_BYTES_MAX + 1, 0x6b));
    const KEY = '/kv/bad-input-key';
    const rows: readonly {
      readonly name: string;
      readonly request: InjectOptions;
      readonly status: number;
      readonly code: ErrorCode;
      readonly allow?: string;
    }[] = [
      // malformed percent-escapes, in the key and in the query
      { name: 'GET key with %ZZ', request: { method: 'GET', url: '/kv/a%ZZ' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'GET key ending in %', request: { method: 'GET', url: '/kv/a%' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'GET key ending in %4', request: { method: 'GET', url: '/kv/a%4' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'PUT key with %g1', request: { method: 'PUT', url: '/kv/%g1', payload: 'x' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'DELETE key with %-1', request: { method: 'DELETE', url: '/kv/%-1' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan start with %ZZ', request: { method: 'GET', url: '/kv?start=%ZZ' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan end with a lone %', request: { method: 'GET', url: '/kv?end=abc%' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'a path outside /kv with %ZZ', request: { method: 'GET', url: '/health%ZZ' }, status: 400, code: 'INVALID_ARGUMENT' },
      // empty key
      { name: 'GET empty key', request: { method: 'GET', url: '/kv/' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'PUT empty key', request: { method: 'PUT', url: '/kv/', payload: 'x' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'DELETE empty key', request: { method: 'DELETE', url: '/kv/' }, status: 400, code: 'INVALID_ARGUMENT' },
      // oversized key and value
      { name: 'GET key of KEY_BYTES_MAX + 1', request: { method: 'GET', url: `/kv/${tooLongKey}` }, status: 413, code: 'KEY_TOO_LARGE' },
      { name: 'PUT key of KEY_BYTES_MAX + 1', request: { method: 'PUT', url: `/kv/${tooLongKey}`, payload: 'x' }, status: 413, code: 'KEY_TOO_LARGE' },
      { name: 'DELETE key of KEY_BYTES_MAX + 1', request: { method: 'DELETE', url: `/kv/${tooLongKey}` }, status: 413, code: 'KEY_TOO_LARGE' },
      { name: 'scan start of KEY_BYTES_MAX + 1', request: { method: 'GET', url: `/kv?start=${tooLongKey}` }, status: 413, code: 'KEY_TOO_LARGE' },
      // An end bound over LMDB's key limit crashed the engine's worker core when it reached the store.
      { name: 'scan end of KEY_BYTES_MAX + 1', request: { method: 'GET', url: `/kv?end=${tooLongKey}` }, status: 413, code: 'KEY_TOO_LARGE' },
      { name: 'PUT value of VALUE_BYTES_MAX + 1', request: { method: 'PUT', url: KEY, payload: Buffer.alloc(VALUE_BYTES_MAX + 1) }, status: 413, code: 'VALUE_TOO_LARGE' },
      { name: 'PUT value far over the limit', request: { method: 'PUT', url: KEY, payload: Buffer.alloc(4 * VALUE_BYTES_MAX) }, status: 413, code: 'VALUE_TOO_LARGE' },
      // wrong methods on known paths
      { name: 'POST key', request: { method: 'POST', url: KEY, payload: 'x' }, status: 405, code: 'METHOD_NOT_ALLOWED', allow: 'GET, HEAD, PUT, DELETE' },
      { name: 'PATCH key', request: { method: 'PATCH', url: KEY, payload: 'x' }, status: 405, code: 'METHOD_NOT_ALLOWED', allow: 'GET, HEAD, PUT, DELETE' },
      { name: 'OPTIONS key', request: { method: 'OPTIONS', url: KEY }, status: 405, code: 'METHOD_NOT_ALLOWED', allow: 'GET, HEAD, PUT, DELETE' },
      { name: 'POST empty key', request: { method: 'POST', url: '/kv/' }, status: 405, code: 'METHOD_NOT_ALLOWED', allow: 'GET, HEAD, PUT, DELETE' },
      { name: 'PUT /kv', request: { method: 'PUT', url: '/kv', payload: 'x' }, status: 405, code: 'METHOD_NOT_ALLOWED', allow: 'GET, HEAD, DELETE' },
      { name: 'POST /kv', request: { method: 'POST', url: '/kv?start=a' }, status: 405, code: 'METHOD_NOT_ALLOWED', allow: 'GET, HEAD, DELETE' },
      // range deletes: bounds as for scans, and at least one of them
      { name: 'DELETE /kv without bounds', request: { method: 'DELETE', url: '/kv' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'DELETE /kv with empty bounds', request: { method: 'DELETE', url: '/kv?start=&end=' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'DELETE /kv start after end', request: { method: 'DELETE', url: '/kv?start=zz-bad&end=zz-bac' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'DELETE /kv start with %ZZ', request: { method: 'DELETE', url: '/kv?start=%ZZ' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'DELETE /kv end of KEY_BYTES_MAX + 1', request: { method: 'DELETE', url: `/kv?start=a&end=${tooLongKey}` }, status: 413, code: 'KEY_TOO_LARGE' },
      { name: 'DELETE /kv with a scan parameter', request: { method: 'DELETE', url: '/kv?start=zz-bad&limit=5' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan start after end', request: { method: 'GET', url: '/kv?start=b&end=a' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan reverse=yes', request: { method: 'GET', url: '/kv?reverse=yes' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan with a reverse cursor, forwards', request: { method: 'GET', url: '/kv?cursor=r1.YQ' }, status: 400, code: 'INVALID_ARGUMENT' },
      {
        name: 'PUT Content-Type too long to store',
        request: { method: 'PUT', url: KEY, payload: 'x', headers: { 'content-type': `text/plain; x=${'y'.repeat(300)}` } },
        status: 400,
        code: 'INVALID_ARGUMENT',
      },
      { name: 'POST /health', request: { method: 'POST', url: '/health' }, status: 405, code: 'METHOD_NOT_ALLOWED', allow: 'GET, HEAD' },
      // bad conditional headers
      ...['3', '"abc"', 'W/"3"', '"1", "2"', '"0"', '"-1"', '"1.5"', '"99999999999999999999"', '""', '"3'].flatMap((value) => [
        { name: `PUT If-Match: ${value}`, request: { method: 'PUT', url: KEY, payload: 'x', headers: { 'if-match': value } }, status: 400, code: 'INVALID_ARGUMENT' } as const,
        { name: `DELETE If-Match: ${value}`, request: { method: 'DELETE', url: KEY, headers: { 'if-match': value } }, status: 400, code: 'INVALID_ARGUMENT' } as const,
        { name: `GET If-Match: ${value}`, request: { method: 'GET', url: KEY, headers: { 'if-match': value } }, status: 400, code: 'INVALID_ARGUMENT' } as const,
      ]),
      { name: 'GET If-None-Match: 3', request: { method: 'GET', url: KEY, headers: { 'if-none-match': '3' } }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'PUT If-Match: *', request: { method: 'PUT', url: KEY, payload: 'x', headers: { 'if-match': '*' } }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'PUT If-None-Match: "3"', request: { method: 'PUT', url: KEY, payload: 'x', headers: { 'if-none-match': '"3"' } }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'PUT with If-Match and If-None-Match', request: { method: 'PUT', url: KEY, payload: 'x', headers: { 'if-match': '"3"', 'if-none-match': '*' } }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'PUT Content-Type that is no media type', request: { method: 'PUT', url: KEY, payload: 'x', headers: { 'content-type': ';;;' } }, status: 400, code: 'INVALID_ARGUMENT' },
      // bad query parameters
      ...['0', '-1', String(SCAN_LIMIT_MAX + 1), '99999999999', 'abc', '1e3', '1.5', '+5', '0x10', '%FF'].map(
        (limit) => ({ name: `scan limit=${limit}`, request: { method: 'GET', url: `/kv?limit=${limit}` }, status: 400, code: 'INVALID_ARGUMENT' }) as const,
      ),
      { name: 'scan with a forged cursor', request: { method: 'GET', url: '/kv?cursor=not-a-cursor' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan with a cursor of binary junk', request: { method: 'GET', url: '/kv?cursor=%FF%FE' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan encoding=hex', request: { method: 'GET', url: '/kv?encoding=hex' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan consistency=strong', request: { method: 'GET', url: '/kv?consistency=strong' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan with an unknown parameter', request: { method: 'GET', url: '/kv?limt=5' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'scan with limit twice', request: { method: 'GET', url: '/kv?limit=1&limit=2' }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'GET key with a scan parameter', request: { method: 'GET', url: `${KEY}?limit=1` }, status: 400, code: 'INVALID_ARGUMENT' },
      { name: 'PUT key with a query parameter', request: { method: 'PUT', url: `${KEY}?consistency=stale`, payload: 'x' }, status: 400, code: 'INVALID_ARGUMENT' },
      // unknown routes, including the cluster routes that do not exist yet
      ...['/', '/nope', '/kv2', '/kvx/a', '/health/', '/health/x', '/KV/a', '/admin', '/admin/ranges', '/cluster', '/cluster/x', '/ranges', '/ranges/1', '/ranges/1/split', '/metrics', '/nodes/1/decommission'].map(
        (url) => ({ name: `GET ${url}`, request: { method: 'GET', url }, status: 404, code: 'ROUTE_NOT_FOUND' }) as const,
      ),
      { name: 'POST /ranges/1/split', request: { method: 'POST', url: '/ranges/1/split' }, status: 404, code: 'ROUTE_NOT_FOUND' },
      { name: 'GET missing key', request: { method: 'GET', url: '/kv/never-written' }, status: 404, code: 'NOT_FOUND' },
    ];

    it.each(rows)('$name → $status $code', async ({ request, status, code, allow }) => {
      const response = await inject(request);
      expect(response.statusCode, response.body).toBe(status);
      expect(errorOf(response).code).toBe(code);
      if (allow !== undefined) expect(response.headers.allow).toBe(allow);
    });

    it('still serves normal requests after the table', async () => {
      expect((await inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
      const key = Buffer.concat([freshPrefix('after'), b('k')]);
      const version = await put(key, 'fine');
      const response = await inject({ method: 'GET', url: keyUrl(key) });
      expect(response.body).toBe('fine');
      expect(response.headers.etag).toBe(etag(version));
    });
  });
});

describe('errors thrown by the store', () => {
  const cases: readonly { readonly error: unknown; readonly status: number; readonly code: string; readonly retryAfter?: string }[] = [
    { error: new KvError('UNAVAILABLE', 'range 3 has no leader', { retryAfterMs: 2_500 }), status: 503, code: 'UNAVAILABLE', retryAfter: '3' },
    { error: new KvError('UNAVAILABLE', 'range 3 has no leader'), status: 503, code: 'UNAVAILABLE', retryAfter: '1' },
    { error: new KvError('CLOSED', 'the store is closed'), status: 503, code: 'CLOSED', retryAfter: '1' },
    { error: new KvError('TIMEOUT', 'range 3 did not answer; the write\'s outcome is unknown'), status: 503, code: 'TIMEOUT', retryAfter: '1' },
    { error: new KvError('DISK_FULL', 'range 3 is led on a node whose disk is full', { retryAfterMs: 1_000 }), status: 507, code: 'DISK_FULL', retryAfter: '1' },
    { error: new KvError('INVALID_ARGUMENT', 'nope'), status: 400, code: 'INVALID_ARGUMENT' },
    { error: new KvError('KEY_TOO_LARGE', 'too long'), status: 413, code: 'KEY_TOO_LARGE' },
    { error: new TypeError('cannot read properties of undefined (secret internals)'), status: 500, code: 'INTERNAL' },
  ];

  it.each(cases)('$code from the store → $status', async ({ error, status, code, retryAfter }) => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const store = new ScriptedStore();
    const server = await createHttpServer({ store, logger });
    store.before = () => {
      throw error;
    };
    for (const request of [{ method: 'GET', url: '/kv/k' }, { method: 'PUT', url: '/kv/k', payload: 'v' }, { method: 'DELETE', url: '/kv/k' }, { method: 'GET', url: '/kv' }] as const) {
      const response = await server.app.inject(request);
      expect(response.statusCode).toBe(status);
      expect(errorOf(response).code).toBe(code);
      expect(response.headers['retry-after']).toBe(retryAfter);
      if (code === 'INTERNAL') expect(response.body).not.toContain('secret');
    }
    const failures = lines.filter((l) => l['msg'] === 'request failed unexpectedly');
    if (code === 'INTERNAL') {
      expect(failures).toHaveLength(4);
      expect(failures[0]).toMatchObject({ level: 50, err: { type: 'TypeError', message: expect.stringContaining('secret') } });
    } else {
      expect(failures).toHaveLength(0);
    }
    await server.close();
  });
});

describe('the error table', () => {
  const context = { valueBytesMax: 1_000 };

  it('gives every code a status, and every KvError code maps through it', () => {
    const kvCodes: readonly KvErrorCode[] = ['INVALID_ARGUMENT', 'KEY_TOO_LARGE', 'VALUE_TOO_LARGE', 'PRECONDITION_FAILED', 'UNAVAILABLE', 'TIMEOUT', 'DISK_FULL', 'CLOSED'];
    for (const code of kvCodes) {
      const reply = errorReply(new KvError(code, 'm'), context);
      expect(reply.statusCode).toBe(STATUS_BY_CODE[code]);
      expect(reply.body.error.code).toBe(code);
      expect(reply.unexpected).toBe(false);
    }
    for (const [code, status] of Object.entries(STATUS_BY_CODE)) {
      expect(errorReply(new HttpError(code as ErrorCode, 'm'), context).statusCode).toBe(status);
    }
  });

  it.each([
    { name: 'fastify body too large', error: Object.assign(new Error('x'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }), status: 413, code: 'VALUE_TOO_LARGE' },
    { name: 'fastify invalid media type', error: Object.assign(new Error('x'), { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', statusCode: 415 }), status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'fastify bad URL', error: Object.assign(new URIError('x'), { code: 'FST_ERR_BAD_URL', statusCode: 400 }), status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'a body stream error (fastify sets 400)', error: Object.assign(new Error('aborted'), { code: 'ECONNRESET', statusCode: 400 }), status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'a plain Error', error: new Error('bug'), status: 500, code: 'INTERNAL' },
    { name: 'a thrown string', error: 'bug', status: 500, code: 'INTERNAL' },
    { name: 'null', error: null, status: 500, code: 'INTERNAL' },
  ])('maps $name to $status $code', ({ error, status, code }) => {
    const reply = errorReply(error, context);
    expect(reply.statusCode).toBe(status);
    expect(reply.body.error.code).toBe(code);
    expect(reply.unexpected).toBe(code === 'INTERNAL');
  });
});

describe('HTTP API limits below the engine limits', () => {
  it('refuses a body over valueBytesMax before the store sees it, and takes exactly valueBytesMax', async () => {
    const store = new ScriptedStore();
    const server = await createHttpServer({ store, logger: silent, keyBytesMax: 10, valueBytesMax: 1_000 });
    expect((await server.app.inject({ method: 'PUT', url: '/kv/k', payload: Buffer.alloc(1_000) })).statusCode).toBe(201);
    const over = await server.app.inject({ method: 'PUT', url: '/kv/k', payload: Buffer.alloc(1_001) });
    expect(over.statusCode).toBe(413);
    expect(errorOf(over).code).toBe('VALUE_TOO_LARGE');
    const longKey = await server.app.inject({ method: 'PUT', url: '/kv/01234567890', payload: 'x' });
    expect(longKey.statusCode).toBe(413);
    expect(errorOf(longKey).code).toBe('KEY_TOO_LARGE');
    expect(store.events.filter((e) => e === 'put')).toHaveLength(1);
    await server.close();
  });

  it('ends a scan page early, with a cursor, once it could exceed scanPageBytesMax', async () => {
    const store = new ScriptedStore();
    // A largest item is 10 + 1,000 B, so a 10,000 B page fetches at most 9 items per store call.
    const server = await createHttpServer({ store, logger: silent, keyBytesMax: 10, valueBytesMax: 1_000, scanPageBytesMax: 10_000 });
    for (let i = 0; i < 40; i++) await store.inner.put(b(`k${String(i).padStart(2, '0')}`), Buffer.alloc(i % 2 === 0 ? 10 : 1_000, i));
    const keys: string[] = [];
    let cursor: string | null = null;
    do {
      const response: LightMyRequestResponse = await server.app.inject({ method: 'GET', url: `/kv?limit=100&encoding=base64${cursor === null ? '' : `&cursor=${cursor}`}` });
      const page: ScanJson = response.json<ScanJson>();
      const bytes = page.items.reduce((sum, item) => sum + Buffer.from(item.key, 'base64').length + Buffer.from(item.value, 'base64').length, 0);
      expect(bytes).toBeLessThanOrEqual(10_000);
      expect(page.items.length).toBeGreaterThan(0);
      keys.push(...page.items.map((i) => Buffer.from(i.key, 'base64').toString()));
      cursor = page.cursor;
    } while (cursor !== null);
    expect(keys).toEqual(Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(2, '0')}`));
    expect(Math.max(...store.scanLimits)).toBe(9);
    await server.close();
  });
});

describe('HTTP API logging', () => {
  it('logs each request at debug with its route pattern, never the key', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const server = await createHttpServer({ store: new MemoryKvStore(), logger });
    await server.app.inject({ method: 'PUT', url: '/kv/secret-key-name', payload: 'v' });
    await server.app.inject({ method: 'GET', url: '/nowhere' });
    const completed = lines.filter((l) => l['msg'] === 'request completed');
    expect(completed).toHaveLength(2);
    expect(completed[0]).toMatchObject({ level: 20, method: 'PUT', route: '/kv/*', statusCode: 201, durationMs: expect.any(Number) });
    expect(completed[1]).toMatchObject({ level: 20, method: 'GET', route: null, statusCode: 404 });
    expect(JSON.stringify(lines)).not.toContain('secret-key-name');
    await server.close();
    // Info lines are for the node's state; the HTTP server's closing is debug detail.
    expect(lines.filter((l) => l['level'] === 30).map((l) => l['msg'])).toEqual([]);
    expect(lines.filter((l) => l['level'] === 20 && String(l['msg']).startsWith('http server')).map((l) => l['msg'])).toEqual(['http server closing', 'http server closed']);
  });
});

describe('request ids', () => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  it('answers every request with an x-request-id, made fresh when the caller sent none, and logs it as reqId', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const server = await createHttpServer({ store: new MemoryKvStore(), logger });
    const responses = [
      await server.app.inject({ method: 'PUT', url: '/kv/k', payload: 'v' }),
      await server.app.inject({ method: 'GET', url: '/kv/k' }),
      await server.app.inject({ method: 'GET', url: '/kv/absent' }),
      await server.app.inject({ method: 'GET', url: '/nowhere' }),
      await server.app.inject({ method: 'GET', url: '/health%ZZ' }),
    ];
    const ids = responses.map((r) => r.headers['x-request-id']);
    for (const [i, id] of ids.entries()) expect(String(id), `response ${i}`).toMatch(UUID);
    expect(new Set(ids).size).toBe(ids.length);
    expect(lines.filter((l) => l['msg'] === 'request completed').map((l) => l['reqId'])).toEqual(ids.slice(0, 4));
    // Refused before routing (a bad URL): no completion line, but its failure line names it.
    expect(lines.filter((l) => l['msg'] === 'request failed').map((l) => l['reqId'])).toContain(ids[4]);
    await server.close();
  });

  it("echoes the caller's id when it is acceptable, and replaces one that is not", async () => {
    const server = await createHttpServer({ store: new MemoryKvStore(), logger: silent });
    const idOf = async (id: string) => (await server.app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': id } })).headers['x-request-id'];
    for (const good of ['abc', 'f47ac10b-58cc-4372-a567-0e02b2c3d479', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8', 'x'.repeat(128)]) {
      expect(await idOf(good)).toBe(good);
    }
    for (const bad of ['', 'x'.repeat(129), 'has space', 'quote"d', 'new\tline', 'comma,separated', 'é']) {
      expect(await idOf(bad), JSON.stringify(bad)).toMatch(UUID);
    }
    await server.close();
  });
});

/** One request on its own connection (no keep-alive pool), so a test decides which connection carries what. */
function send(url: string, options: { method: string; headers?: Record<string, string>; body?: Buffer | string; chunked?: boolean }): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: options.method, agent: false, headers: options.headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.on('error', reject);
    if (options.body !== undefined && options.chunked !== true) request.setHeader('content-length', Buffer.byteLength(options.body));
    if (options.body !== undefined) request.write(options.body);
    request.end();
  });
}

/** Writes raw bytes on a fresh connection and reads until the server closes it. */
function sendRaw(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => socket.end(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', reject);
  });
}

describe('HTTP API on a real socket', () => {
  it('listens on 127.0.0.1 port 0, serves binary keys, answers malformed HTTP with the JSON error, and closes', async () => {
    const store = new MemoryKvStore();
    const server = await createHttpServer({ store, logger: silent });
    const url = await server.listen({ host: '127.0.0.1', port: 0 });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const put = await fetch(`${url}/kv/%00%FF%2F%25`, { method: 'PUT', body: Buffer.of(1, 2, 3), headers: { 'content-type': 'application/json' } });
    expect(put.status).toBe(201);
    const { version } = (await put.json()) as { version: number };
    const got = await fetch(`${url}/kv/%00%ff/%25`);
    expect(got.status).toBe(200);
    expect(got.headers.get('etag')).toBe(etag(version));
    expect([...new Uint8Array(await got.arrayBuffer())]).toEqual([1, 2, 3]);

    const oversizedChunked = await send(`${url}/kv/chunked`, { method: 'PUT', body: Buffer.alloc(VALUE_BYTES_MAX + 1), chunked: true });
    expect(oversizedChunked.status).toBe(413);
    expect(JSON.parse(oversizedChunked.body.toString())).toMatchObject({ error: { code: 'VALUE_TOO_LARGE' } });

    const hugeHeader = await sendRaw(url, `GET /kv/${'%41'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(hugeHeader).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(hugeHeader.slice(hugeHeader.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'HEADERS_TOO_LARGE' } });
    const garbage = await sendRaw(url, 'NOT HTTP AT ALL\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(garbage.slice(garbage.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });

    expect((await fetch(`${url}/health`)).status).toBe(200);
    await server.close();
    expect(store.closeCount).toBe(1);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });

  /** A store whose puts wait for release(); `inFlight` resolves once a put has reached it. */
  function holdingPuts(): { store: ScriptedStore; inFlight: Promise<void>; release: () => void } {
    const store = new ScriptedStore();
    let release = (): void => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered = (): void => {};
    const inFlight = new Promise<void>((resolve) => (entered = resolve));
    store.before = async (operation) => {
      if (operation !== 'put') return;
      entered();
      await held;
    };
    return { store, inFlight, release };
  }

  async function untilNotListening(server: HttpServer): Promise<void> {
    for (let i = 0; i < 1_000 && server.app.server.listening; i++) await new Promise((resolve) => setTimeout(resolve, 1));
    expect(server.app.server.listening).toBe(false);
  }

  it('close() stops accepting, lets an in-flight request finish, then closes the store', async () => {
    const { store, inFlight, release } = holdingPuts();
    const server = await createHttpServer({ store, logger: silent });
    const url = await server.listen({ host: '127.0.0.1', port: 0 });

    const slowPut = send(`${url}/kv/slow`, { method: 'PUT', body: 'value' });
    await inFlight;
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    await untilNotListening(server);
    await expect(send(`${url}/health`, { method: 'GET' })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(closed).toBe(false);
    expect(store.events).not.toContain('close');

    release();
    const response = await slowPut;
    expect(response.status).toBe(201);
    await closing;
    expect(store.events).toEqual(['put', 'put done', 'close']);
    await expect(store.inner.get(b('slow'))).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('does not let a keep-alive connection hold close() open: the in-flight reply says Connection: close', async () => {
    const { store, inFlight, release } = holdingPuts();
    const server = await createHttpServer({ store, logger: silent });
    const { hostname, port } = new URL(await server.listen({ host: '127.0.0.1', port: 0 }));
    const socket = connect({ host: hostname, port: Number(port) });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    const socketClosed = new Promise((resolve) => socket.on('close', resolve));
    socket.write('PUT /kv/slow HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nv');
    await inFlight;
    const closing = server.close();
    await untilNotListening(server);
    release();
    await socketClosed;
    await closing;
    const response = Buffer.concat(chunks).toString('latin1');
    expect(response).toMatch(/^HTTP\/1\.1 201 /);
    expect(response.toLowerCase()).toContain('connection: close');
    expect(store.events).toEqual(['put', 'put done', 'close']);
  });
});
