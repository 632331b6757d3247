import type { KvStore } from '@flotilla/server';
import type { Target } from './runner.js';

/** Every byte percent-escaped: binary keys in paths and query strings. */
const escaped = (key: Uint8Array): string => Array.from(key, (b) => `%${b.toString(16).padStart(2, '0')}`).join('');

/** A KvStore in this process: the embedded API (`open()`) or a node's own store. */
export function kvStoreTarget(name: string, store: KvStore, close: () => Promise<void>): Target {
  return {
    name,
    get: async (key) => store.get(key),
    put: async (key, value, options) => {
      try {
        await store.put(key, value, options?.ifVersion === undefined ? {} : { ifVersion: options.ifVersion });
        return { ok: true };
      } catch (err) {
        if ((err as { code?: string }).code === 'PRECONDITION_FAILED') return { ok: false };
        throw err;
      }
    },
    scan: async (start, limit) => (await store.scan({ start, limit })).items.length,
    close,
  };
}

/** A cluster over its HTTP API, requests spread round-robin over `urls`. */
export function httpTarget(urls: readonly string[], o: { requestTimeoutMs: number }): Target {
  if (urls.length === 0) throw new RangeError('the http target needs at least one URL');
  let next = 0;
  const base = () => urls[next++ % urls.length]!.replace(/\/+$/, '');
  const fail = async (res: Response): Promise<never> => {
    let code = `HTTP_${res.status}`;
    try {
      code = ((await res.json()) as { error?: { code?: string } }).error?.code ?? code;
    } catch {
      // not our JSON error body: the status says it
    }
    throw Object.assign(new Error(`${res.status} ${code}`), { code });
  };
  return {
    name: 'http',
    get: async (key) => {
      const res = await fetch(`${base()}/kv/${escaped(key)}`, { signal: AbortSignal.timeout(o.requestTimeoutMs) });
      if (res.status !== 404 && !res.ok) return fail(res);
      await res.arrayBuffer();
      if (res.status === 404) return undefined;
      return { version: Number((res.headers.get('etag') ?? '"0"').replace(/"/g, '')) };
    },
    put: async (key, value, options) => {
      const headers: Record<string, string> = {};
      if (options?.ifVersion !== undefined) {
        if (options.ifVersion === 0) headers['if-none-match'] = '*';
        else headers['if-match'] = `"${options.ifVersion}"`;
      }
      const res = await fetch(`${base()}/kv/${escaped(key)}`, { method: 'PUT', body: value, headers, signal: AbortSignal.timeout(o.requestTimeoutMs) });
      if (res.status !== 412 && !res.ok) return fail(res);
      await res.arrayBuffer();
      return { ok: res.status !== 412 };
    },
    scan: async (start, limit) => {
      const res = await fetch(`${base()}/kv?start=${escaped(start)}&limit=${limit}`, { signal: AbortSignal.timeout(o.requestTimeoutMs) });
      if (!res.ok) return fail(res);
      return ((await res.json()) as { items: unknown[] }).items.length;
    },
    close: async () => undefined,
  };
}

/**
 * etcd v3 through its JSON gateway (`/v3/kv/put`, `/v3/kv/range`, `/v3/kv/txn`), requests spread over
 * `urls`. The version a read reports is the key's mod_revision; YCSB F's conditional write is a txn
 * comparing it (a create when the key had none), like Flotilla's If-Match.
 */
export function etcdTarget(urls: readonly string[], o: { requestTimeoutMs: number }): Target {
  if (urls.length === 0) throw new RangeError('the etcd target needs at least one URL');
  let next = 0;
  const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
  const post = async <T>(path: string, body: unknown): Promise<T> => {
    const res = await fetch(`${urls[next++ % urls.length]!.replace(/\/+$/, '')}${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
      signal: AbortSignal.timeout(o.requestTimeoutMs),
    });
    const json = (await res.json()) as T & { code?: number; message?: string };
    if (!res.ok) throw Object.assign(new Error(`etcd ${res.status}: ${json.message ?? ''}`), { code: `ETCD_${res.status}` });
    return json;
  };
  return {
    name: 'etcd',
    get: async (key) => {
      const r = await post<{ kvs?: { mod_revision?: string }[] }>('/v3/kv/range', { key: b64(key) });
      const kv = r.kvs?.[0];
      return kv === undefined ? undefined : { version: Number(kv.mod_revision ?? 0) };
    },
    put: async (key, value, options) => {
      if (options?.ifVersion === undefined) {
        await post('/v3/kv/put', { key: b64(key), value: b64(value) });
        return { ok: true };
      }
      const compare =
        options.ifVersion === 0
          ? { key: b64(key), target: 'CREATE', result: 'EQUAL', create_revision: '0' }
          : { key: b64(key), target: 'MOD', result: 'EQUAL', mod_revision: String(options.ifVersion) };
      const r = await post<{ succeeded?: boolean }>('/v3/kv/txn', { compare: [compare], success: [{ request_put: { key: b64(key), value: b64(value) } }] });
      return { ok: r.succeeded === true };
    },
    scan: async (start, limit) => {
      // To the end of the key space: range_end "\0" (etcd's "all keys >= key").
      const r = await post<{ kvs?: unknown[] }>('/v3/kv/range', { key: b64(start), range_end: b64(Uint8Array.of(0)), limit: String(limit) });
      return r.kvs?.length ?? 0;
    },
    close: async () => undefined,
  };
}
