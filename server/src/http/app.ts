// The HTTP API over a KvStore (fastify). Routes:
//
//   GET    /health                      200 { status: 'ok' } while the process serves HTTP (liveness: asks no quorum)
//   GET    /ready, /health?ready=1      200 { ready: true, reasons: [] } when this node can serve linearizable
//                                       traffic (HostKvStore.readiness); 503 NOT_READY with Retry-After and
//                                       { ready: false, reasons: [...], error } otherwise. Without a cluster view: ready.
//   GET    /kv/:key                     200 raw value bytes, ETag "<version>"; 404 NOT_FOUND
//   PUT    /kv/:key                     200 { version }, ETag; the body (any Content-Type, absent = empty) is the value
//   DELETE /kv/:key                     204 (deleting an absent key succeeds)
//   GET    /kv?start=&end=&limit=&cursor=&encoding=&consistency=
//                                       200 { encoding, items: [{ key, value, version }], cursor: string | null }
//
// Keys are bytes: the path after /kv/ and the `start`/`end` parameters are
// percent-decoded by us into bytes (any byte may be escaped; `+` is a space
// only in the query string, as in HTML forms). Conditional requests: If-Match:
// "<version>" and If-None-Match: * on writes (412 PRECONDITION_FAILED with the
// current version otherwise); on GET also If-None-Match: "<version>" (304).
// Every error is JSON { error: { code, message } } with its status from the
// one table in errors.ts.
//
// Every request has one deadline, requestDeadlineMs from when its handler
// starts, which every store call it makes shares (a scan page may take
// several). Past it the request answers 503 with Retry-After: UNAVAILABLE
// (nothing was written), or TIMEOUT for a write handed to a replica that did
// not answer (its outcome is unknown). Stale reads, /health, /ready, /cluster
// and /ranges need no quorum and answer from this node's own knowledge.
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX, type Consistency } from '@flotilla/shards';
import { Deadline, REQUEST_DEADLINE_MS_DEFAULT, SCAN_LIMIT_MAX, type KvStore, type ScanOptions, type ScanPage } from '../kv/store.js';
import { HttpError, clientErrorResponse, errorReply, type ErrorContext } from './errors.js';

/** Items per scan page when the client names no limit. */
export const SCAN_LIMIT_DEFAULT = 100;
/**
 * Key and value bytes one scan response may hold. The store bounds a page by
 * item count only, and 10,000 items of 1 MiB would be a 13 GB JSON string; so
 * the page is fetched in store calls of at most (bytes left / largest item)
 * items and ends early (with a cursor) when the next call could overflow.
 * 32 MiB of raw bytes is about 90 MB of JSON in memory per request.
 */
export const SCAN_PAGE_BYTES_MAX = 32 * 1024 * 1024;
const KEY_PATH_PREFIX = '/kv/';

export interface HttpServerOptions {
  /** The store to serve; the server owns it and closes it on close(). */
  readonly store: KvStore;
  readonly logger: Logger;
  /** Default KEY_BYTES_MAX; requests with longer keys get 413 KEY_TOO_LARGE without reaching the store. */
  readonly keyBytesMax?: number;
  /** Default VALUE_BYTES_MAX; also fastify's bodyLimit, so a bigger body is refused while it arrives. */
  readonly valueBytesMax?: number;
  /** Default SCAN_PAGE_BYTES_MAX. */
  readonly scanPageBytesMax?: number;
  /** Each request's budget, from when its handler starts; default REQUEST_DEADLINE_MS_DEFAULT. */
  readonly requestDeadlineMs?: number;
  /** A cluster node's view of itself: serves /cluster, /ranges and /metrics (absent when embedded). */
  readonly cluster?: ClusterView;
}

/** What /ready reports: whether this node can serve linearizable traffic, and if not, why (one line per reason). */
export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

/**
 * What a node tells about itself over HTTP. `cluster`, `ranges`, `metrics`
 * and `ready` answer from what the node knows locally, at once, whatever the
 * cluster's state; the others may need the meta range and take a deadline.
 */
export interface ClusterView {
  /** JSON: this node, its peers and their liveness, every range it holds with its leader. */
  cluster(): Promise<unknown>;
  /** JSON: every range this node holds a replica of. */
  ranges(): Promise<unknown>;
  /** Prometheus text exposition format 0.0.4. */
  metrics(): Promise<string>;
  /** Whether this node can serve linearizable traffic now. */
  ready(): Promise<Readiness>;
  /** Splits a range at `key` (the right half's first key); JSON: both halves. */
  split(rangeId: number, key: Uint8Array, deadline: Deadline): Promise<unknown>;
  /** Records a joining node in the meta range; JSON: the membership it starts with. */
  join(node: { nodeId: number; address: string; httpAddress: string | null }, deadline: Deadline): Promise<unknown>;
  /** JSON: the placement driver's view (nodes with their state, operators in flight, settings), from wherever it runs. */
  placement(): Promise<unknown>;
  /** Changes the driver's settings (kept in the meta range); JSON: the settings now. */
  placementSettings(change: { paused?: boolean; replicationFactor?: number }, deadline: Deadline): Promise<unknown>;
  /** Sets a node's administrative state: `decommissioning` moves its replicas off, `up` stops that. */
  nodeState(nodeId: number, state: 'up' | 'decommissioning', deadline: Deadline): Promise<unknown>;
  /** Asks the driver to move a replica, or a range's lead; JSON: the operator started. */
  operator(op: { kind: 'moveReplica'; rangeId: number; from: number; to: number } | { kind: 'transferLeader'; rangeId: number; to: number }): Promise<unknown>;
  /**
   * Checks that every replica of the range holds the same data as of one
   * Raft index (server/src/consistency.ts); JSON: the report, mismatch or
   * not. Runs on the check's own budget, not requestDeadlineMs (replicas
   * hash a big range over many ticks). Absent: no such route.
   */
  consistencyCheck?(rangeId: number): Promise<unknown>;
}

export interface HttpServer {
  /** The fastify instance, ready (routes are fixed); for `app.inject` in tests. */
  readonly app: FastifyInstance;
  /** Starts accepting connections; resolves to the URL it listens on (port 0 picks a free port). */
  listen(options: { readonly host: string; readonly port: number }): Promise<string>;
  /**
   * Stops accepting connections, lets in-flight requests finish (each reply
   * then closes its connection), then closes the store. Idempotent.
   */
  close(): Promise<void>;
}

/** What route handlers share. */
interface Context extends ErrorContext {
  readonly store: KvStore;
  readonly keyBytesMax: number;
  readonly scanPageBytesMax: number;
  readonly requestDeadlineMs: number;
  /** Absent without a cluster view: the server is then ready while it is up. */
  readonly readiness: (() => Promise<Readiness>) | undefined;
}

type Handler = (context: Context, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

interface Route {
  /** fastify's pattern; also what request logs show instead of the URL (keys stay out of logs). */
  readonly url: string;
  /** Whether a path (no query) names this route; decides 405 versus 404 for other methods. */
  readonly matches: (path: string) => boolean;
  readonly methods: Readonly<Partial<Record<'GET' | 'PUT' | 'DELETE' | 'POST', Handler>>>;
}

const ROUTES: readonly Route[] = [
  { url: '/health', matches: (path) => path === '/health', methods: { GET: onHealth } },
  { url: '/ready', matches: (path) => path === '/ready', methods: { GET: onReady } },
  { url: '/kv', matches: (path) => path === '/kv', methods: { GET: onScan } },
  // One wildcard: a key may contain '/'. The path is rewritten before routing (routableUrl) so any escape matches.
  { url: `${KEY_PATH_PREFIX}*`, matches: (path) => path.startsWith(KEY_PATH_PREFIX), methods: { GET: onGetKey, PUT: onPutKey, DELETE: onDeleteKey } },
];

export async function createHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const keyBytesMax = options.keyBytesMax ?? KEY_BYTES_MAX;
  const valueBytesMax = options.valueBytesMax ?? VALUE_BYTES_MAX;
  const scanPageBytesMax = options.scanPageBytesMax ?? SCAN_PAGE_BYTES_MAX;
  const requestDeadlineMs = options.requestDeadlineMs ?? REQUEST_DEADLINE_MS_DEFAULT;
  for (const [name, n] of [['keyBytesMax', keyBytesMax], ['valueBytesMax', valueBytesMax], ['scanPageBytesMax', scanPageBytesMax], ['requestDeadlineMs', requestDeadlineMs]] as const) {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${name} ${n} is not a positive integer`);
  }
  const view = options.cluster;
  const context: Context = { store: options.store, keyBytesMax, valueBytesMax, scanPageBytesMax, requestDeadlineMs, readiness: view === undefined ? undefined : () => view.ready() };
  const log = options.logger;
  let closing = false;

  const app = fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Request logs are ours, at debug, with the route pattern instead of the URL.
    logController: new LogController({ disableRequestLogging: true }),
    // fastify refuses a body over the limit with FST_ERR_CTP_BODY_TOO_LARGE (→ 413 VALUE_TOO_LARGE), from
    // Content-Length before reading or while a chunked body streams in; a body of exactly valueBytesMax passes.
    bodyLimit: valueBytesMax,
    // fastify's 503 during close has its own body, not our JSON error. Without it, a request that still
    // arrives on an open connection while draining is served like an in-flight one (the store closes last).
    return503OnClosing: false,
    rewriteUrl: (req) => routableUrl(req.url ?? '/'),
    frameworkErrors: (err, request, reply) => sendError(err, request, reply),
    clientErrorHandler: (err: Error & { code?: string }, socket: Socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      log.debug({ err }, 'malformed request on connection');
      if (socket.writable) socket.write(clientErrorResponse(err));
      socket.destroy(err);
    },
  });

  const routes: Route[] = [...ROUTES];
  if (view !== undefined) {
    routes.push(
      { url: '/cluster', matches: (path) => path === '/cluster', methods: { GET: async (_c, request) => (parseQuery(request, []), view.cluster()) } },
      { url: '/ranges', matches: (path) => path === '/ranges', methods: { GET: async (_c, request) => (parseQuery(request, []), view.ranges()) } },
      { url: '/cluster/join', matches: (path) => path === '/cluster/join', methods: { POST: async (c, request) => (parseQuery(request, []), view.join(joinRequestOf(request), deadlineOf(c))) } },
      {
        url: '/ranges/:id/split',
        matches: (path) => /^\/ranges\/[^/]*\/split$/.test(path),
        methods: { POST: async (c, request) => (parseQuery(request, []), view.split(rangeIdOf(request), splitKeyOf(c, request), deadlineOf(c))) },
      },
      { url: '/placement', matches: (path) => path === '/placement', methods: { GET: async (_c, request) => (parseQuery(request, []), view.placement()) } },
      {
        url: '/placement/settings',
        matches: (path) => path === '/placement/settings',
        methods: { PUT: async (c, request) => (parseQuery(request, []), view.placementSettings(settingsOf(request), deadlineOf(c))) },
      },
      {
        url: '/nodes/:id/:action',
        matches: (path) => /^\/nodes\/[^/]*\/(decommission|recommission)$/.test(path),
        methods: {
          POST: async (c, request) => {
            parseQuery(request, []);
            const { id, action } = request.params as { id: string; action: string };
            if (action !== 'decommission' && action !== 'recommission') throw new HttpError('NOT_FOUND', `no route ${request.url}`);
            return view.nodeState(positiveIdOf(id, 'node id'), action === 'decommission' ? 'decommissioning' : 'up', deadlineOf(c));
          },
        },
      },
      {
        url: '/ranges/:id/move',
        matches: (path) => /^\/ranges\/[^/]*\/move$/.test(path),
        methods: {
          POST: async (_c, request) => {
            parseQuery(request, []);
            const body = jsonObjectOf(request, 'move body must be JSON: {"from": N, "to": N}', ['from', 'to']);
            return view.operator({ kind: 'moveReplica', rangeId: rangeIdOf(request), from: positiveIdOf(body['from'], 'from'), to: positiveIdOf(body['to'], 'to') });
          },
        },
      },
      {
        url: '/ranges/:id/transfer-leader',
        matches: (path) => /^\/ranges\/[^/]*\/transfer-leader$/.test(path),
        methods: {
          POST: async (_c, request) => {
            parseQuery(request, []);
            const body = jsonObjectOf(request, 'transfer body must be JSON: {"to": N}', ['to']);
            return view.operator({ kind: 'transferLeader', rangeId: rangeIdOf(request), to: positiveIdOf(body['to'], 'to') });
          },
        },
      },
      ...(view.consistencyCheck === undefined
        ? []
        : [
            {
              url: '/ranges/:id/consistency-check',
              matches: (path: string) => /^\/ranges\/[^/]*\/consistency-check$/.test(path),
              methods: { POST: async (_c: Context, request: FastifyRequest) => (parseQuery(request, []), view.consistencyCheck!(rangeIdOf(request))) },
            },
          ]),
      {
        url: '/metrics',
        matches: (path) => path === '/metrics',
        methods: {
          GET: async (_c, request, reply) => {
            parseQuery(request, []);
            return reply.type('text/plain; version=0.0.4; charset=utf-8').send(await view.metrics());
          },
        },
      },
    );
  }
  app.removeAllContentTypeParsers();
  // Values are bytes whatever the client calls them: every media type parses to the raw body as a Buffer.
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
    const mapped = errorReply(err, context);
    if (mapped.unexpected) request.log.error({ err }, 'request failed unexpectedly');
    else request.log.debug({ code: mapped.body.error.code, statusCode: mapped.statusCode }, 'request failed');
    void reply.code(mapped.statusCode).headers(mapped.headers).send(mapped.body);
  }
  app.setErrorHandler((err, request, reply) => sendError(err, request, reply));
  app.setNotFoundHandler(async (request) => onUnknownRoute(routes, request));

  app.addHook('onSend', async (_request, reply) => {
    // Otherwise an idle keep-alive connection after an in-flight reply holds close() open until the client hangs up.
    if (closing) void reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug({ method: request.method, route: request.routeOptions.url ?? null, statusCode: reply.statusCode, durationMs: reply.elapsedTime }, 'request completed');
  });
  app.addHook('preClose', async () => {
    closing = true;
    log.info('http server closing');
  });
  // onClose runs once the server has closed and in-flight requests have finished.
  app.addHook('onClose', async () => {
    await options.store.close();
    log.info('http server closed');
  });

  for (const route of routes) {
    for (const [method, handler] of Object.entries(route.methods)) {
      app.route({ method, url: route.url, handler: (request, reply) => handler(context, request, reply) });
    }
  }
  await app.ready();

  let closed: Promise<void> | undefined;
  return {
    app,
    async listen({ host, port }) {
      const url = await app.listen({ host, port, listenTextResolver: () => 'http server bound' });
      log.info({ url }, 'http server listening');
      return url;
    },
    close() {
      closed ??= app.close();
      return closed;
    },
  };
}

/** A join request: {"nodeId": N, "address": "host:port", "httpAddress": "host:port" | null}. */
function joinRequestOf(request: FastifyRequest): { nodeId: number; address: string; httpAddress: string | null } {
  const body = request.body;
  let o: { nodeId?: unknown; address?: unknown; httpAddress?: unknown } | null;
  try {
    o = JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : '') as typeof o;
  } catch {
    throw new HttpError('INVALID_ARGUMENT', 'join body must be JSON: {"nodeId": N, "address": "host:port", "httpAddress": "host:port"}');
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new HttpError('INVALID_ARGUMENT', 'join body must be a JSON object');
  const hostPort = (v: unknown) => typeof v === 'string' && v.length <= 300 && /^[^\s:/]+:([1-9][0-9]{0,4})$/.test(v) && Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535;
  if (typeof o.nodeId !== 'number' || !Number.isSafeInteger(o.nodeId) || o.nodeId < 1 || o.nodeId > 0xffff_ffff) throw new HttpError('INVALID_ARGUMENT', 'join nodeId must be an integer in [1, 2^32)');
  if (!hostPort(o.address)) throw new HttpError('INVALID_ARGUMENT', 'join address must be "host:port" of the node\'s transport');
  if (!(o.httpAddress === undefined || o.httpAddress === null || hostPort(o.httpAddress))) throw new HttpError('INVALID_ARGUMENT', 'join httpAddress must be "host:port" or null');
  return { nodeId: o.nodeId, address: o.address as string, httpAddress: (o.httpAddress as string | null | undefined) ?? null };
}

/** A JSON object body with only the given fields. */
function jsonObjectOf(request: FastifyRequest, usage: string, fields: readonly string[]): Record<string, unknown> {
  const body = request.body;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : '');
  } catch {
    throw new HttpError('INVALID_ARGUMENT', usage);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new HttpError('INVALID_ARGUMENT', usage);
  const extra = Object.keys(parsed).filter((k) => !fields.includes(k));
  if (extra.length > 0) throw new HttpError('INVALID_ARGUMENT', `unknown field ${JSON.stringify(extra[0]!.slice(0, 40))}; ${usage}`);
  return parsed as Record<string, unknown>;
}

/** A node or range id: an integer in [1, 2^32), as a JSON number or a path segment. */
function positiveIdOf(v: unknown, what: string): number {
  const n = typeof v === 'string' ? (/^[1-9][0-9]{0,9}$/.test(v) ? Number(v) : NaN) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > 0xffff_ffff) throw new HttpError('INVALID_ARGUMENT', `${what} ${JSON.stringify(typeof v === 'string' ? v.slice(0, 40) : v)} is not an integer in [1, 2^32)`);
  return n;
}

function settingsOf(request: FastifyRequest): { paused?: boolean; replicationFactor?: number } {
  const usage = 'settings body must be JSON: {"paused": true|false, "replicationFactor": 1..7} (either or both)';
  const o = jsonObjectOf(request, usage, ['paused', 'replicationFactor']);
  const change: { paused?: boolean; replicationFactor?: number } = {};
  if (o['paused'] !== undefined) {
    if (typeof o['paused'] !== 'boolean') throw new HttpError('INVALID_ARGUMENT', usage);
    change.paused = o['paused'];
  }
  if (o['replicationFactor'] !== undefined) {
    const rf = o['replicationFactor'];
    if (typeof rf !== 'number' || !Number.isSafeInteger(rf) || rf < 1 || rf > 7) throw new HttpError('INVALID_ARGUMENT', usage);
    change.replicationFactor = rf;
  }
  if (Object.keys(change).length === 0) throw new HttpError('INVALID_ARGUMENT', usage);
  return change;
}

/** The :id of /ranges/:id/split: a positive decimal integer. */
function rangeIdOf(request: FastifyRequest): number {
  return positiveIdOf((request.params as { id?: string }).id ?? '', 'range id');
}

/** The split point from a JSON body: {"key": "<UTF-8 text>"} or {"keyBase64": "<base64>"}, exactly one. */
function splitKeyOf(context: Context, request: FastifyRequest): Uint8Array {
  const o = jsonObjectOf(request, 'split body must be JSON: {"key": "<text>"} or {"keyBase64": "<base64>"}', ['key', 'keyBase64']) as { key?: unknown; keyBase64?: unknown };
  let key: Buffer;
  if (typeof o.key === 'string' && o.keyBase64 === undefined) key = Buffer.from(o.key, 'utf8');
  else if (typeof o.keyBase64 === 'string' && o.key === undefined && /^[A-Za-z0-9+/]*={0,2}$/.test(o.keyBase64)) key = Buffer.from(o.keyBase64, 'base64');
  else throw new HttpError('INVALID_ARGUMENT', 'split body needs exactly one of "key" (a string) or "keyBase64" (base64)');
  if (key.byteLength === 0) throw new HttpError('INVALID_ARGUMENT', 'split key is empty');
  if (key.byteLength > context.keyBytesMax) throw new HttpError('KEY_TOO_LARGE', `split key of ${key.byteLength} B exceeds ${context.keyBytesMax} B`);
  return key;
}

/** The request's one deadline, made when its handler starts; every store call it makes gets this one. */
function deadlineOf(context: Context): Deadline {
  return Deadline.after(context.requestDeadlineMs);
}

/** Liveness: the process answers HTTP. `?ready=1` (or `true`) asks for readiness instead, as /ready. */
async function onHealth(context: Context, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const query = parseQuery(request, ['ready']);
  if (flagOf(query, 'ready')) return readinessReply(context, reply);
  return { status: 'ok' };
}

async function onReady(context: Context, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  parseQuery(request, []);
  return readinessReply(context, reply);
}

/** 200 when ready; otherwise NOT_READY's status from the table (503, with Retry-After), the reasons, and the usual error object. */
async function readinessReply(context: Context, reply: FastifyReply): Promise<unknown> {
  const readiness = context.readiness === undefined ? { ready: true, reasons: [] } : await context.readiness();
  if (readiness.ready) return { ready: true, reasons: [] };
  const mapped = errorReply(new HttpError('NOT_READY', `this node cannot serve linearizable traffic: ${readiness.reasons.join('; ')}`), context);
  return reply.code(mapped.statusCode).headers(mapped.headers).send({ ready: false, reasons: readiness.reasons, ...mapped.body });
}

async function onGetKey(context: Context, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const key = keyOf(context, request);
  const query = parseQuery(request, ['consistency']);
  const consistency = consistencyOf(query);
  const conditions = parseConditions(request.headers);
  const deadline = deadlineOf(context);
  const found = await context.store.get(key, consistency === undefined ? { deadline } : { consistency, deadline });
  const currentVersion = found?.version ?? 0;
  // RFC 9110 §13.2.2: If-Match first, then If-None-Match (which, on a GET, means 304 rather than 412).
  if (conditions.ifMatch !== undefined && (currentVersion === 0 || (conditions.ifMatch !== '*' && conditions.ifMatch !== currentVersion))) {
    throw preconditionFailed(currentVersion, `If-Match ${formatCondition(conditions.ifMatch)}`);
  }
  if (found === undefined) throw new HttpError('NOT_FOUND', 'key not found');
  if (conditions.ifNoneMatch === '*' || conditions.ifNoneMatch === currentVersion) {
    return reply.code(304).header('etag', etagOf(currentVersion)).send();
  }
  return reply.header('etag', etagOf(found.version)).type('application/octet-stream').send(asBuffer(found.value));
}

async function onPutKey(context: Context, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const key = keyOf(context, request);
  parseQuery(request, []);
  const ifVersion = writeCondition(parseConditions(request.headers));
  const body = request.body;
  const value = body === undefined || body === null ? Buffer.alloc(0) : body;
  if (!Buffer.isBuffer(value)) throw new Error(`PUT body parsed as ${typeof value}, not a Buffer`);
  if (value.byteLength > context.valueBytesMax) throw new HttpError('VALUE_TOO_LARGE', `value of ${value.byteLength} B exceeds ${context.valueBytesMax} B`);
  const deadline = deadlineOf(context);
  const { version } = await context.store.put(key, value, ifVersion === undefined ? { deadline } : { ifVersion, deadline });
  return reply.header('etag', etagOf(version)).send({ version });
}

async function onDeleteKey(context: Context, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const key = keyOf(context, request);
  parseQuery(request, []);
  const ifVersion = writeCondition(parseConditions(request.headers));
  const deadline = deadlineOf(context);
  await context.store.delete(key, ifVersion === undefined ? { deadline } : { ifVersion, deadline });
  return reply.code(204).send();
}

type Encoding = 'base64' | 'utf8';
const ENCODINGS: readonly Encoding[] = ['base64', 'utf8'];
const CONSISTENCIES: readonly Consistency[] = ['linearizable', 'stale'];
const SCAN_PARAMETERS = ['start', 'end', 'limit', 'cursor', 'encoding', 'consistency'] as const;

async function onScan(context: Context, request: FastifyRequest): Promise<unknown> {
  const query = parseQuery(request, SCAN_PARAMETERS);
  const start = boundOf(context, query, 'start');
  const end = boundOf(context, query, 'end');
  const limit = limitOf(query);
  const cursor = query.has('cursor') ? textOf(query, 'cursor') : undefined;
  const encoding = enumOf(query, 'encoding', ENCODINGS) ?? 'base64';
  const consistency = consistencyOf(query);
  const page = await scanBounded(context, { start, end, limit, cursor, consistency, deadline: deadlineOf(context) });
  const encode = encoding === 'base64' ? encodeBase64 : encodeUtf8;
  const items = page.items.map((item, index) => ({ key: encode(item.key, `key of item ${index}`), value: encode(item.value, `value of item ${index}`), version: item.version }));
  return { encoding, items, cursor: page.cursor ?? null };
}

/** One scan page within scanPageBytesMax, in as many store calls as that bound needs (see SCAN_PAGE_BYTES_MAX). */
async function scanBounded(context: Context, options: ScanOptions): Promise<ScanPage> {
  const itemBytesMax = context.keyBytesMax + context.valueBytesMax;
  const items: ScanPage['items'][number][] = [];
  let bytes = 0;
  let cursor = options.cursor;
  // Every pass adds at least one item or returns, so there are at most `limit` passes.
  for (;;) {
    const limit = Math.min(options.limit - items.length, Math.max(1, Math.floor((context.scanPageBytesMax - bytes) / itemBytesMax)));
    const page = await context.store.scan({ ...options, limit, cursor });
    items.push(...page.items);
    for (const item of page.items) bytes += item.key.byteLength + item.value.byteLength;
    if (page.cursor === undefined) return { items };
    const full = items.length >= options.limit || bytes + itemBytesMax > context.scanPageBytesMax;
    if (full || page.items.length === 0) return { items, cursor: page.cursor };
    cursor = page.cursor;
  }
}

function encodeBase64(bytes: Uint8Array): string {
  return asBuffer(bytes).toString('base64');
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function encodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    throw new HttpError('INVALID_ARGUMENT', `${what} is not valid UTF-8; ask for encoding=base64`);
  }
}

function onUnknownRoute(routes: readonly Route[], request: FastifyRequest): never {
  const path = splitTarget(request.originalUrl).path;
  const route = routes.find((r) => r.matches(path));
  if (route === undefined) throw new HttpError('ROUTE_NOT_FOUND', `no route for ${request.method} ${truncate(path)}`);
  const allow = allowedMethods(route);
  throw new HttpError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${route.url} (allowed: ${allow.join(', ')})`, { allow });
}

function allowedMethods(route: Route): string[] {
  const methods = Object.keys(route.methods);
  return methods.includes('GET') ? ['GET', 'HEAD', ...methods.filter((m) => m !== 'GET')] : methods;
}

// ---- URLs and keys ----

/**
 * The URL fastify routes by. find-my-way decodeURI()s the path before
 * matching and answers 400 for any escape that is not UTF-8 (`%FF`), so a
 * binary key could never reach its route: under /kv/ every '%' becomes
 * '%25', the router sees plain text, and keyOf decodes the original URL.
 */
function routableUrl(url: string): string {
  const { path, query } = splitTarget(url);
  if (!path.startsWith(KEY_PATH_PREFIX)) return url;
  return KEY_PATH_PREFIX + path.slice(KEY_PATH_PREFIX.length).replaceAll('%', '%25') + (query === undefined ? '' : `?${query}`);
}

/** The path and query of a request target, origin-form or absolute-form (RFC 9112 §3.2), still percent-encoded. */
function splitTarget(url: string): { path: string; query: string | undefined } {
  const authority = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(url);
  const target = authority === null ? url : url.slice(authority[0].length) || '/';
  const queryAt = target.indexOf('?');
  return queryAt === -1 ? { path: target, query: undefined } : { path: target.slice(0, queryAt), query: target.slice(queryAt + 1) };
}

function keyOf(context: Context, request: FastifyRequest): Buffer {
  const path = splitTarget(request.originalUrl).path;
  const key = percentDecode(path.slice(KEY_PATH_PREFIX.length), 'key', { plusIsSpace: false });
  if (key.byteLength === 0) throw new HttpError('INVALID_ARGUMENT', 'key is empty (the path is /kv/<percent-encoded key>)');
  if (key.byteLength > context.keyBytesMax) throw new HttpError('KEY_TOO_LARGE', `key of ${key.byteLength} B exceeds ${context.keyBytesMax} B`);
  return key;
}

function hexValue(charCode: number): number {
  if (charCode >= 0x30 && charCode <= 0x39) return charCode - 0x30;
  if (charCode >= 0x41 && charCode <= 0x46) return charCode - 0x41 + 10;
  if (charCode >= 0x61 && charCode <= 0x66) return charCode - 0x61 + 10;
  return -1;
}

/**
 * Percent-decodes (RFC 3986 §2.1) into bytes, so `%FF` is the byte 0xFF
 * rather than a broken UTF-8 sequence. Printable ASCII other than '%' and
 * '#' stands for itself; anything else must have been escaped.
 */
function percentDecode(text: string, what: string, options: { readonly plusIsSpace: boolean }): Buffer {
  const bytes = new Uint8Array(text.length);
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x25) {
      const high = hexValue(text.charCodeAt(i + 1));
      const low = hexValue(text.charCodeAt(i + 2));
      if (high < 0 || low < 0) throw new HttpError('INVALID_ARGUMENT', `${what} has a malformed percent-escape at offset ${i} (expected % and two hex digits)`);
      bytes[length++] = high * 16 + low;
      i += 2;
    } else if (c === 0x2b && options.plusIsSpace) {
      bytes[length++] = 0x20;
    } else if (c > 0x20 && c < 0x7f && c !== 0x23) {
      bytes[length++] = c;
    } else {
      throw new HttpError('INVALID_ARGUMENT', `${what} has a character at offset ${i} that must be percent-encoded`);
    }
  }
  return Buffer.from(bytes.buffer, 0, length);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function truncate(text: string): string {
  const lengthMax = 100;
  return text.length <= lengthMax ? text : `${text.slice(0, lengthMax)}…`;
}

// ---- query parameters ----

/**
 * The query string as decoded bytes per parameter, decoded by us for the
 * same reason as keys. A parameter with an empty value counts as absent (so
 * `?start=&end=` is the whole key space); unknown and repeated ones are 400.
 */
function parseQuery(request: FastifyRequest, allowed: readonly string[]): Map<string, Buffer> {
  const query = splitTarget(request.originalUrl).query;
  const values = new Map<string, Buffer>();
  if (query === undefined) return values;
  const seen = new Set<string>();
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const equalsAt = pair.indexOf('=');
    const name = percentDecode(equalsAt === -1 ? pair : pair.slice(0, equalsAt), 'query parameter name', { plusIsSpace: true }).toString('latin1');
    if (!allowed.includes(name)) {
      const expected = allowed.length === 0 ? 'this route takes none' : `expected ${allowed.join(', ')}`;
      throw new HttpError('INVALID_ARGUMENT', `unknown query parameter ${JSON.stringify(truncate(name))} (${expected})`);
    }
    if (seen.has(name)) throw new HttpError('INVALID_ARGUMENT', `query parameter ${name} is given twice`);
    seen.add(name);
    const value = percentDecode(equalsAt === -1 ? '' : pair.slice(equalsAt + 1), `query parameter ${name}`, { plusIsSpace: true });
    if (value.byteLength > 0) values.set(name, value);
  }
  return values;
}

function textOf(query: ReadonlyMap<string, Buffer>, name: string): string {
  try {
    return utf8Decoder.decode(query.get(name));
  } catch {
    throw new HttpError('INVALID_ARGUMENT', `query parameter ${name} is not valid UTF-8`);
  }
}

function enumOf<T extends string>(query: ReadonlyMap<string, Buffer>, name: string, choices: readonly T[]): T | undefined {
  if (!query.has(name)) return undefined;
  const text = textOf(query, name);
  const choice = choices.find((c) => c === text);
  if (choice === undefined) throw new HttpError('INVALID_ARGUMENT', `${name} ${JSON.stringify(truncate(text))} is not one of ${choices.join(', ')}`);
  return choice;
}

function consistencyOf(query: ReadonlyMap<string, Buffer>): Consistency | undefined {
  return enumOf(query, 'consistency', CONSISTENCIES);
}

const FLAG_VALUES = ['1', 'true', '0', 'false'] as const;

/** A boolean parameter: 1 or true, 0 or false; absent is false. */
function flagOf(query: ReadonlyMap<string, Buffer>, name: string): boolean {
  const value = enumOf(query, name, FLAG_VALUES);
  return value === '1' || value === 'true';
}

function limitOf(query: ReadonlyMap<string, Buffer>): number {
  if (!query.has('limit')) return SCAN_LIMIT_DEFAULT;
  const text = textOf(query, 'limit');
  const limit = /^[0-9]{1,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!(limit >= 1 && limit <= SCAN_LIMIT_MAX)) throw new HttpError('INVALID_ARGUMENT', `limit ${JSON.stringify(truncate(text))} is not an integer in [1, ${SCAN_LIMIT_MAX}]`);
  return limit;
}

function boundOf(context: Context, query: ReadonlyMap<string, Buffer>, name: 'start' | 'end'): Buffer | undefined {
  const bound = query.get(name);
  if (bound !== undefined && bound.byteLength > context.keyBytesMax) {
    throw new HttpError('KEY_TOO_LARGE', `scan ${name} of ${bound.byteLength} B exceeds the key limit of ${context.keyBytesMax} B`);
  }
  return bound;
}

// ---- versions and conditional requests ----

function etagOf(version: number): string {
  return `"${version}"`;
}

interface Conditions {
  readonly ifMatch?: number | '*';
  readonly ifNoneMatch?: number | '*';
}

/** If-Match and If-None-Match: `*` or one strong ETag of ours ("<version>", version ≥ 1); lists and weak tags are 400. */
function parseConditions(headers: IncomingHttpHeaders): Conditions {
  const ifMatch = conditionOf(headers['if-match'], 'If-Match');
  const ifNoneMatch = conditionOf(headers['if-none-match'], 'If-None-Match');
  return { ...(ifMatch === undefined ? {} : { ifMatch }), ...(ifNoneMatch === undefined ? {} : { ifNoneMatch }) };
}

function conditionOf(header: string | string[] | undefined, name: string): number | '*' | undefined {
  if (header === undefined) return undefined;
  const text = (Array.isArray(header) ? header.join(', ') : header).trim();
  if (text === '*') return '*';
  const match = /^"([1-9][0-9]{0,15})"$/.exec(text);
  const version = match === null ? Number.NaN : Number(match[1]);
  if (!Number.isSafeInteger(version)) {
    throw new HttpError('INVALID_ARGUMENT', `${name} ${JSON.stringify(truncate(text))} is not * or one quoted version such as "3" (the ETag of a read or write)`);
  }
  return version;
}

/** The store's ifVersion for a write: If-Match "n" → n, If-None-Match * → 0 (create only). */
function writeCondition(conditions: Conditions): number | undefined {
  if (conditions.ifMatch !== undefined && conditions.ifNoneMatch !== undefined) {
    throw new HttpError('INVALID_ARGUMENT', 'a write takes If-Match or If-None-Match, not both');
  }
  if (conditions.ifMatch === '*') throw new HttpError('INVALID_ARGUMENT', 'If-Match: * is not supported on writes; send If-Match: "<version>"');
  if (conditions.ifNoneMatch !== undefined && conditions.ifNoneMatch !== '*') {
    throw new HttpError('INVALID_ARGUMENT', 'If-None-Match on a write must be * (create only if absent)');
  }
  if (conditions.ifNoneMatch === '*') return 0;
  return conditions.ifMatch;
}

function preconditionFailed(currentVersion: number, condition: string): HttpError {
  const current = currentVersion === 0 ? 'the key is absent' : `its version is ${currentVersion}`;
  return new HttpError('PRECONDITION_FAILED', `${condition} failed: ${current}`, { currentVersion });
}

function formatCondition(condition: number | '*'): string {
  return condition === '*' ? '*' : etagOf(condition);
}
