// The KV API (fastify plugin):
//
//   GET    /kv/:key                     200 raw value bytes with the Content-Type it was written with
//                                       (application/octet-stream if none), ETag "<version>"; 404 NOT_FOUND
//   PUT    /kv/:key                     201 { version } if the key was created, 200 if it was overwritten; ETag.
//                                       The body (absent = empty) is the value, its Content-Type kept with it
//   DELETE /kv/:key                     204 (deleting an absent key succeeds)
//   GET    /kv?start=&end=&limit=&cursor=&encoding=&consistency=&reverse=
//                                       200 { encoding, items: [{ key, value, version }], cursor: string | null }
//   DELETE /kv?start=&end=              200 { deletedCount, ranges: [{ rangeId, start, end, deletedCount }] }:
//                                       every key of [start, end), atomically per range (at least one bound);
//                                       each range part's bounds in base64
//
// A version (the ETag) is the Raft log index of the write that produced the
// value: it grows with every write of the key, not by one.
//
// Keys and the scan bounds are bytes, read from the raw URL (kv-url.ts).
// Conditional requests: If-Match: "<version>" and If-None-Match: * on writes
// (412 PRECONDITION_FAILED with the current version otherwise); on GET also
// If-None-Match: "<version>" (304).
//
// The route schemas describe the API for /openapi.json but validate nothing
// (describeOnly): fastify would check its own decoding of the URL, which
// cannot carry a binary key or bound, so the handlers check the raw URL.
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, HTTPMethods } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import { CONTENT_TYPE_BYTES_MAX, invalidContentType, type Consistency } from '@flotilla/shards';
import { Deadline, SCAN_LIMIT_MAX, type KvStore, type ScanOptions, type ScanPage } from '../kv/store.js';
import { ERROR_RESPONSE, HttpError, truncate } from './errors.js';
import { KEY_PATH_PREFIX, asBuffer, enumOf, keyOf, parseQuery, textOf, utf8Decoder } from './kv-url.js';

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

type Encoding = 'base64' | 'utf8';
const ENCODINGS: readonly Encoding[] = ['base64', 'utf8'];
const CONSISTENCIES: readonly Consistency[] = ['linearizable', 'stale'];
const SCAN_PARAMETERS = ['start', 'end', 'limit', 'cursor', 'encoding', 'consistency', 'reverse'] as const;
const CLEAR_PARAMETERS = ['start', 'end'] as const;
const BOOLEANS: readonly ('true' | 'false')[] = ['true', 'false'];
/** What GET answers for a value written without a Content-Type. */
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

export interface KvRoutesOptions {
  readonly store: KvStore;
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  readonly scanPageBytesMax: number;
  /** Each request's budget, from when its handler starts. */
  readonly requestDeadlineMs: number;
}

type Handler = (context: KvRoutesOptions, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

export async function kvRoutes(app: FastifyInstance, context: KvRoutesOptions): Promise<void> {
  const route = (method: HTTPMethods, url: string, schema: FastifySchema, handler: Handler, openapiUrl?: string): void => {
    app.route({
      method,
      url,
      schema: { tags: ['kv'], ...schema },
      validatorCompiler: describeOnly,
      ...(openapiUrl === undefined ? {} : { config: { swaggerTransform: ({ schema: routeSchema }) => ({ schema: routeSchema, url: openapiUrl }) } }),
      handler: (request, reply) => handler(context, request, reply),
    });
  };
  route('GET', '/kv', SCAN_SCHEMA, onScan);
  route('DELETE', '/kv', CLEAR_SCHEMA, onClear);
  // One wildcard: a key may contain '/'. The path is rewritten before routing (routableUrl) so any escape matches.
  // OpenAPI has no wildcard, so the document names it {key}.
  const keyUrl = `${KEY_PATH_PREFIX}*`;
  const openapiKeyUrl = `${KEY_PATH_PREFIX}{key}`;
  route('GET', keyUrl, GET_KEY_SCHEMA, onGetKey, openapiKeyUrl);
  route('PUT', keyUrl, PUT_KEY_SCHEMA, onPutKey, openapiKeyUrl);
  route('DELETE', keyUrl, DELETE_KEY_SCHEMA, onDeleteKey, openapiKeyUrl);
}

/** The KV routes' validatorCompiler: every schema accepts everything (see the header). */
function describeOnly(): () => boolean {
  return () => true;
}

// ---- schemas (for /openapi.json) ----

const KEY_PARAMS_SCHEMA = {
  type: 'object',
  required: ['key'],
  properties: {
    key: { type: 'string', description: "The key's bytes, percent-encoded: any byte may be escaped, printable ASCII other than % and # may stand for itself ('/' too)." },
  },
} as const;

const CONSISTENCY_SCHEMA = {
  type: 'string',
  enum: CONSISTENCIES,
  description: 'linearizable (default) reads through the range leader; stale reads this node\'s replica without asking a quorum.',
} as const;

const VERSION_SCHEMA = {
  type: 'integer',
  minimum: 1,
  description: "The key's version, its ETag in double quotes: the Raft log index of the write that produced the value. It grows with every write of the key, though not by one.",
} as const;

const ETAG_HEADER = { etag: { type: 'string', description: '"<version>"' } } as const;

const CONDITION_HEADERS_SCHEMA = {
  type: 'object',
  properties: {
    'if-match': { type: 'string', description: '"<version>": answer 412 PRECONDITION_FAILED (with the current version) unless the key is at that version. GET also takes *.' },
    'if-none-match': { type: 'string', description: 'Writes: * (create only if absent, else 412). GET: * or "<version>" (304 if it matches).' },
  },
} as const;

const GET_KEY_SCHEMA = {
  summary: "Reads a key's value",
  operationId: 'getKey',
  params: KEY_PARAMS_SCHEMA,
  querystring: { type: 'object', additionalProperties: false, properties: { consistency: CONSISTENCY_SCHEMA } },
  headers: CONDITION_HEADERS_SCHEMA,
  response: {
    200: {
      description: "The value's bytes, with the Content-Type they were written with (application/octet-stream if none)",
      headers: ETAG_HEADER,
      content: { '*/*': { schema: { type: 'string', format: 'binary' } } },
    },
    304: { description: 'Not modified: If-None-Match matched', headers: ETAG_HEADER, type: 'null' },
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;

const PUT_KEY_SCHEMA = {
  summary: "Writes a key's value",
  operationId: 'putKey',
  params: KEY_PARAMS_SCHEMA,
  headers: CONDITION_HEADERS_SCHEMA,
  body: {
    content: {
      '*/*': {
        schema: {
          type: 'string',
          format: 'binary',
          description: `The value: the raw body whatever its Content-Type, which is stored with it (at most ${CONTENT_TYPE_BYTES_MAX} visible ASCII characters) and given back by GET; an absent body is the empty value.`,
        },
      },
    },
  },
  response: {
    200: { description: 'Overwritten: the key existed', headers: ETAG_HEADER, type: 'object', required: ['version'], properties: { version: VERSION_SCHEMA } },
    201: { description: 'Created: the key did not exist', headers: ETAG_HEADER, type: 'object', required: ['version'], properties: { version: VERSION_SCHEMA } },
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;

const DELETE_KEY_SCHEMA = {
  summary: 'Deletes a key',
  operationId: 'deleteKey',
  params: KEY_PARAMS_SCHEMA,
  headers: CONDITION_HEADERS_SCHEMA,
  response: {
    204: { description: 'Deleted (deleting an absent key succeeds too)', type: 'null' },
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;

const SCAN_BOUND_DESCRIPTION = 'bytes, percent-encoded as the key in /kv/{key} (+ is a space); empty counts as absent';

const SCAN_SCHEMA = {
  summary: 'Lists keys in [start, end) in byte order, a page at a time',
  operationId: 'scan',
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      start: { type: 'string', description: `The first key, inclusive (default: the first key); ${SCAN_BOUND_DESCRIPTION}.` },
      end: { type: 'string', description: `The key to stop before, exclusive (default: past the last key); ${SCAN_BOUND_DESCRIPTION}.` },
      limit: { type: 'integer', minimum: 1, maximum: SCAN_LIMIT_MAX, default: SCAN_LIMIT_DEFAULT, description: 'Items per page at most; a page may end earlier, with a cursor.' },
      cursor: { type: 'string', description: "The previous page's cursor, to continue after it." },
      encoding: { type: 'string', enum: ENCODINGS, default: 'base64', description: 'How keys and values are written; utf8 answers 400 for bytes that are not UTF-8.' },
      consistency: CONSISTENCY_SCHEMA,
      reverse: { type: 'string', enum: BOOLEANS, default: 'false', description: 'true: from the last key of [start, end) down; the cursor continues downwards.' },
    },
  },
  response: {
    200: {
      description: 'One page',
      type: 'object',
      required: ['encoding', 'items', 'cursor'],
      properties: {
        encoding: { type: 'string', enum: ENCODINGS },
        items: {
          type: 'array',
          items: { type: 'object', required: ['key', 'value', 'version'], properties: { key: { type: 'string' }, value: { type: 'string' }, version: VERSION_SCHEMA } },
        },
        cursor: { type: ['string', 'null'], description: 'null: the scan is complete; otherwise pass it to get the next page.' },
      },
    },
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;

const CLEAR_SCHEMA = {
  summary: 'Deletes every key in [start, end), atomically per range',
  description:
    'Each range the interval crosses deletes its part in one Raft entry, whole or not at all; the parts run one after another, so a failure part way leaves the earlier ranges cleared. Deleting is idempotent: repeat the request to finish. At least one bound is required.',
  operationId: 'deleteRange',
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      start: { type: 'string', description: `The first key to delete, inclusive (default: the first key); ${SCAN_BOUND_DESCRIPTION}.` },
      end: { type: 'string', description: `The key to stop before, exclusive (default: past the last key); ${SCAN_BOUND_DESCRIPTION}.` },
    },
  },
  response: {
    200: {
      description: "Deleted: how many keys, and what each range's part deleted (its bounds in base64: a range boundary need not be UTF-8)",
      type: 'object',
      required: ['deletedCount', 'ranges'],
      properties: {
        deletedCount: { type: 'integer', minimum: 0 },
        ranges: {
          type: 'array',
          items: {
            type: 'object',
            required: ['rangeId', 'start', 'end', 'deletedCount'],
            properties: {
              rangeId: { type: 'integer', minimum: 0 },
              start: { type: 'string', description: 'base64' },
              end: { type: ['string', 'null'], description: 'base64; null: to the end of the key space' },
              deletedCount: { type: 'integer', minimum: 0 },
            },
          },
        },
      },
    },
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;

// ---- handlers ----

async function onGetKey(context: KvRoutesOptions, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const key = keyOf(request.originalUrl, context.keyBytesMax);
  const query = parseQuery(request.originalUrl, ['consistency']);
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
  return reply
    .header('etag', etagOf(found.version))
    .type(found.contentType ?? DEFAULT_CONTENT_TYPE)
    .send(asBuffer(found.value));
}

async function onPutKey(context: KvRoutesOptions, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const key = keyOf(request.originalUrl, context.keyBytesMax);
  parseQuery(request.originalUrl, []);
  const ifVersion = writeCondition(parseConditions(request.headers));
  const body = request.body;
  const value = body === undefined || body === null ? Buffer.alloc(0) : body;
  if (!Buffer.isBuffer(value)) throw new Error(`PUT body parsed as ${typeof value}, not a Buffer`);
  if (value.byteLength > context.valueBytesMax) throw new HttpError('VALUE_TOO_LARGE', `value of ${value.byteLength} B exceeds ${context.valueBytesMax} B`);
  const contentType = contentTypeOf(request.headers['content-type']);
  const deadline = deadlineOf(context);
  const { version, created } = await context.store.put(key, value, { deadline, ...(ifVersion === undefined ? {} : { ifVersion }), ...(contentType === undefined ? {} : { contentType }) });
  return reply
    .code(created ? 201 : 200)
    .header('etag', etagOf(version))
    .send({ version });
}

/** The Content-Type to store with a value: the header as sent (fastify checked it parses as a media type), or none. */
function contentTypeOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const contentType = header.trim();
  if (contentType === '') return undefined;
  const invalid = invalidContentType(contentType);
  if (invalid !== undefined) throw new HttpError('INVALID_ARGUMENT', `Content-Type cannot be stored with the value: ${invalid}`);
  return contentType;
}

async function onDeleteKey(context: KvRoutesOptions, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const key = keyOf(request.originalUrl, context.keyBytesMax);
  parseQuery(request.originalUrl, []);
  const ifVersion = writeCondition(parseConditions(request.headers));
  const deadline = deadlineOf(context);
  await context.store.delete(key, ifVersion === undefined ? { deadline } : { ifVersion, deadline });
  return reply.code(204).send();
}

/** The request's one deadline, made when its handler starts; every store call it makes gets this one. */
function deadlineOf(context: KvRoutesOptions): Deadline {
  return Deadline.after(context.requestDeadlineMs);
}

// ---- scans ----

async function onScan(context: KvRoutesOptions, request: FastifyRequest): Promise<unknown> {
  const query = parseQuery(request.originalUrl, SCAN_PARAMETERS);
  const { start, end } = boundsOf(query, context.keyBytesMax);
  const limit = limitOf(query);
  const cursor = query.has('cursor') ? textOf(query, 'cursor') : undefined;
  const encoding = enumOf(query, 'encoding', ENCODINGS) ?? 'base64';
  const consistency = consistencyOf(query);
  const reverse = enumOf(query, 'reverse', BOOLEANS) === 'true';
  const page = await scanBounded(context, { start, end, limit, cursor, consistency, deadline: deadlineOf(context), ...(reverse ? { reverse } : {}) });
  const encode = encoding === 'base64' ? encodeBase64 : encodeUtf8;
  const items = page.items.map((item, index) => ({ key: encode(item.key, `key of item ${index}`), value: encode(item.value, `value of item ${index}`), version: item.version }));
  return { encoding, items, cursor: page.cursor ?? null };
}

// ---- range deletes ----

async function onClear(context: KvRoutesOptions, request: FastifyRequest): Promise<unknown> {
  const query = parseQuery(request.originalUrl, CLEAR_PARAMETERS);
  const { start, end } = boundsOf(query, context.keyBytesMax);
  // Both bounds absent would delete every key: a mistake more often than not over HTTP, so it must be spelt out.
  if (start === undefined && end === undefined) {
    throw new HttpError('INVALID_ARGUMENT', 'DELETE /kv deletes the keys of [start, end): give start, end or both (to delete every key, start=%00%01, the first user key)');
  }
  const result = await context.store.clear({ deadline: deadlineOf(context), ...(start === undefined ? {} : { start }), ...(end === undefined ? {} : { end }) });
  // base64 always: the keys are deleted by now, so the answer must not fail on a bound that is not UTF-8.
  return {
    deletedCount: result.deletedCount,
    ranges: result.ranges.map((r) => ({ rangeId: r.rangeId, start: encodeBase64(r.start), end: r.end === null ? null : encodeBase64(r.end), deletedCount: r.deletedCount })),
  };
}

/** One scan page within scanPageBytesMax, in as many store calls as that bound needs (see SCAN_PAGE_BYTES_MAX). */
async function scanBounded(context: KvRoutesOptions, options: ScanOptions): Promise<ScanPage> {
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

function consistencyOf(query: ReadonlyMap<string, Buffer>): Consistency | undefined {
  return enumOf(query, 'consistency', CONSISTENCIES);
}

function limitOf(query: ReadonlyMap<string, Buffer>): number {
  if (!query.has('limit')) return SCAN_LIMIT_DEFAULT;
  const text = textOf(query, 'limit');
  const limit = /^[0-9]{1,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!(limit >= 1 && limit <= SCAN_LIMIT_MAX)) throw new HttpError('INVALID_ARGUMENT', `limit ${JSON.stringify(truncate(text))} is not an integer in [1, ${SCAN_LIMIT_MAX}]`);
  return limit;
}

/** The `start` and `end` parameters: each at most a key long, and start not after end. */
function boundsOf(query: ReadonlyMap<string, Buffer>, keyBytesMax: number): { start: Buffer | undefined; end: Buffer | undefined } {
  for (const name of ['start', 'end'] as const) {
    const bound = query.get(name);
    if (bound !== undefined && bound.byteLength > keyBytesMax) {
      throw new HttpError('KEY_TOO_LARGE', `${name} of ${bound.byteLength} B exceeds the key limit of ${keyBytesMax} B`);
    }
  }
  const start = query.get('start');
  const end = query.get('end');
  if (start !== undefined && end !== undefined && Buffer.compare(start, end) > 0) {
    throw new HttpError('INVALID_ARGUMENT', `start ${JSON.stringify(truncate(start.toString('hex')))} (hex) is after end ${JSON.stringify(truncate(end.toString('hex')))} (hex)`);
  }
  return { start, end };
}

function encodeBase64(bytes: Uint8Array): string {
  return asBuffer(bytes).toString('base64');
}

function encodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    throw new HttpError('INVALID_ARGUMENT', `${what} is not valid UTF-8; ask for encoding=base64`);
  }
}

// ---- versions and conditional requests ----

function etagOf(version: number): string {
  return `"${version}"`;
}

interface Conditions {
  readonly ifMatch?: number | '*';
  readonly ifNoneMatch?: number | '*';
}

/** Most requests carry neither header: one shared empty answer instead of an object each. */
const NO_CONDITIONS: Conditions = Object.freeze({});

/** If-Match and If-None-Match: `*` or one strong ETag of ours ("<version>", version ≥ 1); lists and weak tags are 400. */
function parseConditions(headers: IncomingHttpHeaders): Conditions {
  if (headers['if-match'] === undefined && headers['if-none-match'] === undefined) return NO_CONDITIONS;
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
