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
