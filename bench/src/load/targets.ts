import http from 'node:http';
import { unreachable } from '@flotilla/core';
import type { KvStore } from '@flotilla/server';
import type { Target } from './runner.js';

/**
 * HTTP/1.1 with keep-alive over node:http. Not fetch: fetch (undici inside Node 20) spends so much CPU
 * per request that one process's load tops out far below what the server serves (bench/README.md, "The
 * load generator", has the figures); the client must not be what a benchmark measures.
 */
export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

export class HttpClient {
  private readonly agent: http.Agent;
  private readonly bases: { host: string; port: number }[];
  private next = 0;

  constructor(urls: readonly string[], private readonly requestTimeoutMs: number) {
    if (urls.length === 0) throw new RangeError('an HTTP target needs at least one URL');
    this.bases = urls.map((u) => {
      const url = new URL(u);
      if (url.protocol !== 'http:') throw new RangeError(`only http:// URLs are supported, got "${u}"`);
      return { host: url.hostname, port: Number(url.port || 80) };
    });
    this.agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, scheduling: 'lifo' });
  }

  get urlCount(): number {
    return this.bases.length;
  }

  /** One request to URL number `to`, or else to the next URL in turn (round-robin over the endpoints). */
  request(method: string, path: string, body?: Uint8Array | string, headers: Record<string, string | number> = {}, to?: number): Promise<HttpResponse> {
    const base = this.bases[to ?? this.next++ % this.bases.length]!;
    return new Promise((resolve, reject) => {
      const req = http.request({ host: base.host, port: base.port, method, path, agent: this.agent, timeout: this.requestTimeoutMs, headers: body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer in ${this.requestTimeoutMs} ms`), { code: 'CLIENT_TIMEOUT' })));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Every byte percent-escaped: binary keys in paths and query strings. */
const escaped = (key: Uint8Array): string => Array.from(key, (b) => `%${b.toString(16).padStart(2, '0')}`).join('');

/** A KvStore in this process: the embedded API (`open()`, whose reads and writes take KvStore's arguments) or a node's own store. */
export function kvStoreTarget(name: string, store: Pick<KvStore, 'get' | 'put' | 'scan' | 'delete'>, close: () => Promise<void>): Target {
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
    delete: async (key) => store.delete(key),
    close,
  };
}

/**
 * Which of the target's URLs leads the range holding a key, from the cluster's own `/ranges` (and each
 * URL's node id from `/cluster`), refreshed every `refreshMs`: a client that sends each operation to its
 * range's leader, as TiKV's and CockroachDB's clients do, instead of letting the node it reached forward
 * it. Only a hint: a stale one costs a forward on the server side, never a wrong answer.
 */
export class LeaderRoutes {
  private starts: Buffer[] = [];
  private urlIndexes: (number | undefined)[] = [];
  private readonly timer: NodeJS.Timeout;

  private constructor(private readonly client: HttpClient, private readonly byNode: Map<number, number>, refreshMs: number) {
    this.timer = setInterval(() => void this.refresh().catch(() => undefined), refreshMs);
    this.timer.unref();
  }

  static async start(client: HttpClient, refreshMs: number): Promise<LeaderRoutes> {
    const byNode = new Map<number, number>();
    for (let i = 0; i < client.urlCount; i++) {
      const res = await client.request('GET', '/cluster', undefined, {}, i);
      if (res.status !== 200) throw new Error(`GET /cluster on URL ${i} answered ${res.status}`);
      byNode.set((JSON.parse(res.body.toString('utf8')) as { nodeId: number }).nodeId, i);
    }
    const routes = new LeaderRoutes(client, byNode, refreshMs);
    await routes.refresh();
    return routes;
  }

  /** The URL index to send `key` to; undefined: any. */
  urlFor(key: Uint8Array): number | undefined {
    // The last range starting at or before the key (ranges tile the key space in start order).
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (Buffer.compare(this.starts[mid]!, key) <= 0) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found < 0 ? undefined : this.urlIndexes[found];
  }

  async refresh(): Promise<void> {
    const res = await this.client.request('GET', '/ranges');
    if (res.status !== 200) return;
    const ranges = (JSON.parse(res.body.toString('utf8')) as { ranges: { start: string; leader: number }[] }).ranges
      .map((r) => ({ start: Buffer.from(r.start, 'hex'), url: this.byNode.get(r.leader) }))
      .sort((a, b) => Buffer.compare(a.start, b.start));
    this.starts = ranges.map((r) => r.start);
    this.urlIndexes = ranges.map((r) => r.url);
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** How often a leader-routing client re-reads where ranges are led. */
const LEADER_ROUTES_REFRESH_MS = 1_000;

/**
 * A cluster over its HTTP API (or the baseline server), requests spread round-robin over `urls`, or
 * with `routeToLeaders` each sent to its range's leader (see LeaderRoutes).
 */
export async function httpTarget(urls: readonly string[], o: { requestTimeoutMs: number; name?: string; routeToLeaders?: boolean }): Promise<Target> {
  const client = new HttpClient(urls, o.requestTimeoutMs);
  const routes = o.routeToLeaders === true ? await LeaderRoutes.start(client, LEADER_ROUTES_REFRESH_MS) : undefined;
  const to = (key: Uint8Array) => routes?.urlFor(key);
  const fail = (res: HttpResponse): never => {
    let code = `HTTP_${res.status}`;
    try {
      code = (JSON.parse(res.body.toString('utf8')) as { error?: { code?: string } }).error?.code ?? code;
    } catch {
      // not our JSON error body: the status says it
    }
    throw Object.assign(new Error(`${res.status} ${code}`), { code });
  };
  return {
    name: o.name ?? 'http',
    get: async (key) => {
      const res = await client.request('GET', `/kv/${escaped(key)}`, undefined, {}, to(key));
      if (res.status === 404) return undefined;
      if (res.status !== 200) return fail(res);
      return { version: Number(String(res.headers.etag ?? '"0"').replace(/"/g, '')) };
    },
    put: async (key, value, options) => {
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
      if (options?.ifVersion !== undefined) {
        if (options.ifVersion === 0) headers['if-none-match'] = '*';
        else headers['if-match'] = `"${options.ifVersion}"`;
      }
      const res = await client.request('PUT', `/kv/${escaped(key)}`, value, headers, to(key));
      if (res.status === 412) return { ok: false };
      if (res.status < 200 || res.status >= 300) return fail(res);
      return { ok: true };
    },
    scan: async (start, limit) => {
      const res = await client.request('GET', `/kv?start=${escaped(start)}&limit=${limit}`, undefined, {}, to(start));
      if (res.status !== 200) return fail(res);
      return (JSON.parse(res.body.toString('utf8')) as { items: unknown[] }).items.length;
    },
    delete: async (key) => {
      const res = await client.request('DELETE', `/kv/${escaped(key)}`, undefined, {}, to(key));
      if (res.status < 200 || res.status >= 300) fail(res);
    },
    close: async () => {
      routes?.close();
      client.close();
    },
  };
}

/**
 * A network target as values: what a pool thread needs to open its own connections to it (a Target's
 * sockets and timers belong to the thread that made them). The embedded targets have none: they are a
 * store in this process.
 */
export type TargetSpec =
  | { readonly kind: 'http'; readonly urls: readonly string[]; readonly requestTimeoutMs: number; readonly name?: string; readonly routeToLeaders?: boolean }
  | { readonly kind: 'etcd'; readonly urls: readonly string[]; readonly requestTimeoutMs: number };

export async function openTarget(spec: TargetSpec): Promise<Target> {
  switch (spec.kind) {
    case 'http':
      return httpTarget(spec.urls, spec);
    case 'etcd':
      return etcdTarget(spec.urls, spec);
    default:
      return unreachable(spec, 'target spec');
  }
}

/**
 * etcd v3 through its JSON gateway (`/v3/kv/put`, `/v3/kv/range`, `/v3/kv/txn`), requests spread over
 * `urls`. The version a read reports is the key's mod_revision; YCSB F's conditional write is a txn
 * comparing it (a create when the key had none), like Flotilla's If-Match.
 */
export function etcdTarget(urls: readonly string[], o: { requestTimeoutMs: number }): Target {
  const client = new HttpClient(urls, o.requestTimeoutMs);
  const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
  const post = async <T>(path: string, body: unknown): Promise<T> => {
    const res = await client.request('POST', path, JSON.stringify(body), { 'content-type': 'application/json' });
    let json: T & { code?: number; message?: string; error?: string };
    try {
      json = JSON.parse(res.body.toString('utf8')) as typeof json;
    } catch {
      throw Object.assign(new Error(`etcd ${res.status}: not JSON`), { code: `ETCD_${res.status}` });
    }
    if (res.status !== 200) throw Object.assign(new Error(`etcd ${res.status}: ${json.message ?? json.error ?? ''}`), { code: `ETCD_${res.status}` });
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
    delete: async (key) => {
      await post('/v3/kv/deleterange', { key: b64(key) });
    },
    close: async () => client.close(),
  };
}
