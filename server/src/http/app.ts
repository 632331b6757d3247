// The HTTP API over a KvStore (fastify): the KV API (kv-routes.ts), the
// operations and admin API (admin-routes.ts), the dashboard at /ui
// (ui-routes.ts), and GET /openapi.json, the OpenAPI 3 description
// generated from the routes' JSON schemas.
//
// Every error is JSON { error: { code, message } } with its status from the
// one table in errors.ts: the handlers' own errors, fastify's (body too
// large, bad URL, a request that fails its route's schema), unknown routes
// (404 ROUTE_NOT_FOUND) and known paths with another method (405
// METHOD_NOT_ALLOWED with Allow).
//
// Every request has one deadline, requestDeadlineMs from when its handler
// starts, which every store call it makes shares (a scan page may take
// several). Past it the request answers 503 with Retry-After: UNAVAILABLE
// (nothing was written), or TIMEOUT for a write handed to a replica that did
// not answer (its outcome is unknown). Stale reads, /health, /ready, /cluster
// and /ranges need no quorum and answer from this node's own knowledge.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type onResponseHookHandler } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from 'pino';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from '@flotilla/shards';
import { REQUEST_DEADLINE_MS_DEFAULT, type Deadline, type KvStore } from '../kv/store.js';
import type { HttpMetrics } from '../metrics/http-metrics.js';
import { adminRoutes, type ClusterView } from './admin-routes.js';
import { ERROR_BODY_SCHEMA, ERROR_RESPONSE, HttpError, clientErrorResponse, errorReply, schemaError, truncate, type ErrorContext } from './errors.js';
import { SCAN_PAGE_BYTES_MAX, kvRoutes } from './kv-routes.js';
import { routableUrl, splitTarget } from './kv-url.js';
import { REQUEST_ID_HEADER, requestIdOf } from './request-id.js';
import { uiRoutes } from './ui-routes.js';

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
  /** Where each request's latency is recorded (by route, method and status); default the cluster view's, if any. */
  readonly metrics?: HttpMetrics;
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

export async function createHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const keyBytesMax = options.keyBytesMax ?? KEY_BYTES_MAX;
  const valueBytesMax = options.valueBytesMax ?? VALUE_BYTES_MAX;
  const scanPageBytesMax = options.scanPageBytesMax ?? SCAN_PAGE_BYTES_MAX;
  const requestDeadlineMs = options.requestDeadlineMs ?? REQUEST_DEADLINE_MS_DEFAULT;
  for (const [name, n] of [['keyBytesMax', keyBytesMax], ['valueBytesMax', valueBytesMax], ['scanPageBytesMax', scanPageBytesMax], ['requestDeadlineMs', requestDeadlineMs]] as const) {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${name} ${n} is not a positive integer`);
  }
  const errorContext: ErrorContext = { valueBytesMax };
  const log = options.logger;
  let closing = false;

  const httpMetrics = options.metrics ?? options.cluster?.httpMetrics;

  const app = fastify({
    // fastify's own info lines ("listening at", one per address) would repeat ours: it gets warnings and errors only.
    loggerInstance: (log.isLevelEnabled('info') ? log.child({}, { level: 'warn' }) : log) as FastifyBaseLogger,
    // Request logs are ours, at debug, with the route pattern instead of the URL.
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: pino's child() serialises its bindings on every call, a few µs per
    // request for a reqId binding that only our own lines use; they name request.id themselves.
    childLoggerFactory: (logger) => logger,
    // fastify refuses a body over the limit with FST_ERR_CTP_BODY_TOO_LARGE (→ 413 VALUE_TOO_LARGE), from
    // Content-Length before reading or while a chunked body streams in; a body of exactly valueBytesMax passes.
    bodyLimit: valueBytesMax,
    // fastify's 503 during close has its own body, not our JSON error. Without it, a request that still
    // arrives on an open connection while draining is served like an in-flight one (the store closes last).
    return503OnClosing: false,
    rewriteUrl: (req) => routableUrl(req.url ?? '/'),
    // The caller's x-request-id if it is acceptable, else a fresh one (request-id.ts); onSend answers it.
    requestIdHeader: false,
    genReqId: requestIdOf,
    frameworkErrors: (err, request, reply) => sendError(err, request, reply),
    clientErrorHandler: (err: Error & { code?: string }, socket: Socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      log.debug({ err }, 'malformed request on connection');
      if (socket.writable) socket.write(clientErrorResponse(err));
      socket.destroy(err);
    },
    // A schema is the contract as written: no coercion ("5" is no number in a JSON body; path and query
    // values stay strings, checked by pattern), and an unknown field is refused rather than dropped.
    // `verbose` gives errors their schema, whose description the error message quotes (schemaError).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, verbose: true } },
    schemaErrorFormatter: (errors, dataVar) => schemaError(errors, dataVar),
  });

  // Collects every route before any is added; also gives /openapi.json its content.
  await app.register(swagger, {
    openapi: { openapi: '3.0.3', info: { title: 'Flotilla HTTP API', version: SERVER_VERSION } },
    // fastify answers HEAD on every GET route; the document lists them too.
    exposeHeadRoutes: true,
    // Shared schemas keep their $id as their name under components.schemas.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`) },
  });
  app.addSchema(ERROR_BODY_SCHEMA);
  const routes = new RouteTable();
  app.addHook('onRoute', (route) => {
    routes.add(route.method, route.url);
    // Each route records into its own series, known when it is added: per request, no lookup of the
    // route (request.routeOptions builds an object per read) and nothing but the histogram's observe.
    if (httpMetrics !== undefined) {
      for (const method of typeof route.method === 'string' ? [route.method] : route.method) {
        const record = httpMetrics.routeRecorder(route.url, method);
        const hook: onResponseHookHandler = (request, reply, done) => {
          if (request.method === method) record(reply.statusCode, reply.elapsedTime / 1e3);
          done();
        };
        route.onResponse = [...toArray(route.onResponse), hook];
      }
    }
  });

  app.removeAllContentTypeParsers();
  // Values are bytes whatever the client calls them: every media type parses to the raw body as a Buffer.
  // Admin routes parse theirs as JSON (admin-routes.ts).
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  // Response schemas document the replies; replies are written with JSON.stringify, not fastify's schema
  // serializer, which would drop any field a schema does not list (the views' JSON is theirs).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
    const mapped = errorReply(err, errorContext);
    if (mapped.unexpected) log.error({ reqId: request.id, err }, 'request failed unexpectedly');
    else log.debug({ reqId: request.id, code: mapped.body.error.code, statusCode: mapped.statusCode }, 'request failed');
    // Also here: a request refused before routing (frameworkErrors, a bad URL) runs no onSend hook.
    void reply.code(mapped.statusCode).headers(mapped.headers).header(REQUEST_ID_HEADER, request.id).send(mapped.body);
  }
  app.setErrorHandler((err, request, reply) => sendError(err, request, reply));
  app.setNotFoundHandler(async (request) => onUnknownRoute(routes, request));

  // The two hooks every request runs take a callback rather than returning a promise: an async hook costs
  // fastify a promise and a microtask turn per request, for work that is synchronous.
  app.addHook('onSend', (request, reply, payload, done) => {
    void reply.header(REQUEST_ID_HEADER, request.id);
    // Otherwise an idle keep-alive connection after an in-flight reply holds close() open until the client hangs up.
    if (closing) void reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    // Matched routes record themselves (onRoute above); is404 reads the route context, no allocation.
    if (httpMetrics !== undefined && request.is404) httpMetrics.recordUnmatched(request.method, reply.statusCode, reply.elapsedTime / 1e3);
    // request.routeOptions builds a fresh object on every read: only when the line is written.
    if (log.isLevelEnabled('debug')) {
      log.debug({ reqId: request.id, method: request.method, route: request.routeOptions.url ?? null, statusCode: reply.statusCode, durationMs: reply.elapsedTime }, 'request completed');
    }
    done();
  });
  app.addHook('preClose', async () => {
    closing = true;
    log.debug({}, 'http server closing');
  });
  // onClose runs once the server has closed and in-flight requests have finished.
  app.addHook('onClose', async () => {
    await options.store.close();
    log.debug({}, 'http server closed');
  });

  app.get('/openapi.json', { schema: OPENAPI_SCHEMA }, async () => app.swagger());
  await app.register(kvRoutes, { store: options.store, keyBytesMax, valueBytesMax, scanPageBytesMax, requestDeadlineMs });
  await app.register(adminRoutes, { view: options.cluster, keyBytesMax, valueBytesMax, requestDeadlineMs });
  // The dashboard reads /cluster, /placement and /metrics: only a cluster node serves it.
  if (options.cluster !== undefined) await app.register(uiRoutes);
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

/** The document's info.version: this package's version. */
const SERVER_VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

const OPENAPI_SCHEMA = {
  tags: ['operations'],
  summary: 'This description of the API (OpenAPI 3.0), generated from the routes this server serves',
  operationId: 'openapi',
  querystring: { type: 'object', additionalProperties: false, properties: {} },
  response: { 200: { description: 'The OpenAPI document', type: 'object', additionalProperties: true }, default: ERROR_RESPONSE },
} as const;

/**
 * Every route's URL pattern and methods as fastify's onRoute hook reports
 * them: decides 405 (with Allow) versus 404 for a request no route took.
 */
class RouteTable {
  private readonly byUrl = new Map<string, { readonly pattern: RegExp; readonly methods: string[] }>();

  add(method: string | readonly string[], url: string): void {
    let route = this.byUrl.get(url);
    if (route === undefined) {
      route = { pattern: patternOf(url), methods: [] };
      this.byUrl.set(url, route);
    }
    // fastify adds a HEAD route for every GET; Allow lists it after GET.
    for (const m of typeof method === 'string' ? [method] : method) if (m !== 'HEAD' && !route.methods.includes(m)) route.methods.push(m);
  }

  /** The first route whose pattern matches a path (still percent-encoded, as the client sent it), with its methods for Allow. */
  find(path: string): { readonly url: string; readonly allow: readonly string[] } | undefined {
    for (const [url, route] of this.byUrl) {
      if (!route.pattern.test(path)) continue;
      const allow = route.methods.includes('GET') ? ['GET', 'HEAD', ...route.methods.filter((m) => m !== 'GET')] : route.methods;
      return { url, allow };
    }
    return undefined;
  }
}

/** A fastify URL pattern as a regular expression over paths: `:name` is one segment (maybe empty), a final `*` anything. */
function patternOf(url: string): RegExp {
  const segments = url.split('/').map((segment, index, all) => {
    if (segment === '*' && index === all.length - 1) return '.*';
    if (/^:[A-Za-z_][A-Za-z0-9_]*$/.test(segment)) return '[^/]*';
    if (/[:*(]/.test(segment)) throw new Error(`route ${url}: segment ${segment} is a pattern RouteTable does not read`);
    return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  return new RegExp(`^${segments.join('/')}$`);
}

function onUnknownRoute(routes: RouteTable, request: FastifyRequest): never {
  const path = splitTarget(request.originalUrl).path;
  const route = routes.find(path);
  if (route === undefined) throw new HttpError('ROUTE_NOT_FOUND', `no route for ${request.method} ${truncate(path)}`);
  throw new HttpError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${route.url} (allowed: ${route.allow.join(', ')})`, { allow: route.allow });
}

/** A route option that fastify takes as one hook or several. */
function toArray<T>(value: T | readonly T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? [...(value as readonly T[])] : [value as T];
}
