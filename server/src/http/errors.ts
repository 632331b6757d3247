import { STATUS_CODES } from 'node:http';
import { FlotillaError } from '@flotilla/core';
import type { FastifySchemaValidationError } from 'fastify';
import { KvError, type KvErrorCode } from '../kv/store.js';

/** Codes only the HTTP layer produces; every other code comes from KvStore (KvErrorCode). */
export type HttpOnlyErrorCode =
  | 'NOT_FOUND' // the key does not exist
  | 'ROUTE_NOT_FOUND' // no such path
  | 'METHOD_NOT_ALLOWED' // a known path, another method (the reply's Allow header lists the right ones)
  | 'REQUEST_TIMEOUT' // the client did not send its request in time (Node's requestTimeout)
  | 'HEADERS_TOO_LARGE' // the request line and headers exceed Node's header limit (a key of many KiB in the URL lands here)
  | 'NOT_READY' // GET /ready: this node cannot serve linearizable traffic now (the reply lists why)
  | 'INTERNAL'; // our bug: the client sees a generic message, the log gets the error

export type ErrorCode = KvErrorCode | HttpOnlyErrorCode;

/**
 * The one table from error codes to HTTP statuses. Every status the API
 * answers with apart from 2xx/304 comes from here; `satisfies` makes a new
 * KvErrorCode a compile error until it has a row. Every 503 carries
 * Retry-After. TIMEOUT is a 503 too, not a 504: the server is no gateway,
 * and the client's move is the same as for UNAVAILABLE — retry later —
 * except that the write it sent may have been applied (its message says so).
 */
export const STATUS_BY_CODE = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  PRECONDITION_FAILED: 412,
  // No HTTP route answers it yet (the embedding API's atomic batch does); a batch route would send 400 too.
  BATCH_SPANS_RANGES: 400,
  KEY_TOO_LARGE: 413,
  VALUE_TOO_LARGE: 413,
  HEADERS_TOO_LARGE: 431,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  CLOSED: 503,
  TIMEOUT: 503,
  NOT_READY: 503,
  // 507 Insufficient Storage (RFC 4918): the request was fine, the server cannot store it now; Retry-After as for 503.
  DISK_FULL: 507,
} as const satisfies Record<ErrorCode, number>;

/** What a 503 tells the client to wait when the error does not say (one election timeout is well under a second). */
export const RETRY_AFTER_MS_DEFAULT = 1_000;

/** The message of every INTERNAL reply: the client learns nothing about our internals, the log line has the error. */
const INTERNAL_MESSAGE = 'internal error (logged on the server)';

/** An expected failure found by the HTTP layer itself (bad escape, unknown route, …). */
export class HttpError extends FlotillaError {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: { readonly allow?: readonly string[]; readonly currentVersion?: number; readonly retryAfterMs?: number } = {},
  ) {
    super(message);
  }

  /** The same request can succeed later only when the node was not ready or the client was too slow to send it. */
  get retryable(): boolean {
    return this.code === 'NOT_READY' || this.code === 'REQUEST_TIMEOUT';
  }
}

/** The JSON body of every error reply. `currentVersion` only on PRECONDITION_FAILED (0: the key is absent). */
export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly currentVersion?: number };
}

/**
 * ErrorBody as a JSON schema, shared by every route (app.ts adds it) so
 * /openapi.json lists the codes once; routes name it by ERROR_RESPONSE.
 */
export const ERROR_BODY_SCHEMA = {
  $id: 'ErrorBody',
  description: 'An error. Its code decides the status (one table); every 503 and 507 carries Retry-After, a 405 carries Allow.',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', enum: Object.keys(STATUS_BY_CODE) },
        message: { type: 'string' },
        currentVersion: { type: 'integer', minimum: 0, description: "PRECONDITION_FAILED only: the key's version now (0: the key is absent)" },
      },
    },
  },
} as const;

/** Every route's `default` response: an ErrorBody. */
export const ERROR_RESPONSE = { $ref: `${ERROR_BODY_SCHEMA.$id}#` } as const;

export interface ErrorReply {
  readonly statusCode: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: ErrorBody;
  /** True when no row of the table explains the error: a bug, to be logged with `err`. */
  readonly unexpected: boolean;
}

/** Limits that error messages quote. */
export interface ErrorContext {
  readonly valueBytesMax: number;
}

/**
 * fastify's own errors that a client can cause, by fastify code. Others
 * that carry a 4xx status (stream errors while reading a body, say) become
 * INVALID_ARGUMENT; anything else is INTERNAL.
 */
const FASTIFY_ERRORS: Readonly<Record<string, { readonly code: ErrorCode; readonly message: (context: ErrorContext) => string }>> = {
  // The body is the value, so a body over fastify's bodyLimit (= valueBytesMax) is a value too large.
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'VALUE_TOO_LARGE', message: (c) => `request body exceeds the value limit of ${c.valueBytesMax} B` },
  // Our catch-all parser takes every media type, so only a Content-Type that does not parse as one gets here.
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'INVALID_ARGUMENT', message: () => 'Content-Type header is not a valid media type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'INVALID_ARGUMENT', message: () => 'request body size does not match its Content-Length' },
  // find-my-way could not decodeURI the path (e.g. `/health%ZZ`); paths under /kv/ are decoded by us instead.
  FST_ERR_BAD_URL: { code: 'INVALID_ARGUMENT', message: () => 'URL path has a malformed percent-escape' },
  FST_ERR_INVALID_URL: { code: 'INVALID_ARGUMENT', message: () => 'URL is malformed' },
};

/** Maps anything thrown while serving a request to the reply the client gets. */
export function errorReply(err: unknown, context: ErrorContext): ErrorReply {
  if (err instanceof KvError || err instanceof HttpError) return replyFor(err.code, err.message, err.details);
  const fastifyCode = typeof (err as { code?: unknown } | null)?.code === 'string' ? (err as { code: string }).code : undefined;
  const known = fastifyCode === undefined ? undefined : FASTIFY_ERRORS[fastifyCode];
  if (known !== undefined) return replyFor(known.code, known.message(context), {});
  const statusCode = (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return replyFor('INVALID_ARGUMENT', `malformed request (${fastifyCode ?? 'client error'})`, {});
  }
  return { ...replyFor('INTERNAL', INTERNAL_MESSAGE, {}), unexpected: true };
}

/**
 * A request that fails its route's JSON schema (fastify's schemaErrorFormatter):
 * INVALID_ARGUMENT like any other bad input, so it goes through the table.
 * Names the part and field, and quotes the field's `description` when the
 * schema has one (ajv runs with `verbose` for that). `usage`, when given, is
 * what a body must look like and ends a body error's message.
 */
export function schemaError(errors: readonly FastifySchemaValidationError[], dataVar: string, usage?: string): HttpError {
  // With allErrors off ajv stops at the first failure; an anyOf/oneOf lists its branches' failures before its own.
  const error = errors.at(-1) as (FastifySchemaValidationError & { readonly data?: unknown; readonly parentSchema?: { readonly description?: unknown } }) | undefined;
  const where = `${dataVar}${error?.instancePath ?? ''}`;
  let detail = error?.message ?? 'does not match its schema';
  if (error?.keyword === 'additionalProperties') {
    detail = `has unknown ${dataVar === 'querystring' ? 'parameter' : 'field'} ${JSON.stringify(truncate(String(error.params['additionalProperty'])))}`;
  } else if (typeof error?.parentSchema?.description === 'string' && error.data !== null && typeof error.data !== 'object') {
    detail = `${JSON.stringify(typeof error.data === 'string' ? truncate(error.data) : error.data)} is not ${error.parentSchema.description}`;
  }
  return new HttpError('INVALID_ARGUMENT', usage === undefined || dataVar !== 'body' ? `${where} ${detail}` : `${where} ${detail}; ${usage}`);
}

/** Client input as error messages quote it: at most 100 characters. */
export function truncate(text: string): string {
  const lengthMax = 100;
  return text.length <= lengthMax ? text : `${text.slice(0, lengthMax)}…`;
}

function replyFor(code: ErrorCode, message: string, details: HttpError['details']): ErrorReply {
  const headers: Record<string, string> = {};
  const statusCode = STATUS_BY_CODE[code];
  if (statusCode === 503 || statusCode === 507) headers['retry-after'] = String(Math.max(1, Math.ceil((details.retryAfterMs ?? RETRY_AFTER_MS_DEFAULT) / 1_000)));
  if (code === 'METHOD_NOT_ALLOWED' && details.allow !== undefined) headers['allow'] = details.allow.join(', ');
  const error = code === 'PRECONDITION_FAILED' ? { code, message, currentVersion: details.currentVersion ?? 0 } : { code, message };
  return { statusCode, headers, body: { error }, unexpected: false };
}

/** Node's socket-level parse failures (before fastify sees a request), by Node error code. */
const CLIENT_ERRORS: Readonly<Record<string, { readonly code: ErrorCode; readonly message: string }>> = {
  HPE_HEADER_OVERFLOW: { code: 'HEADERS_TOO_LARGE', message: 'request line and headers exceed the server limit (keys are at most a few KiB)' },
  ERR_HTTP_REQUEST_TIMEOUT: { code: 'REQUEST_TIMEOUT', message: 'request was not received in time' },
};

/**
 * The raw HTTP/1.1 response for an error of the connection's parser
 * ('clientError'), written straight to the socket: malformed request lines,
 * oversized headers, timeouts. Same JSON body as every other error.
 */
export function clientErrorResponse(err: { readonly code?: string }): string {
  const known = err.code === undefined ? undefined : CLIENT_ERRORS[err.code];
  const code = known?.code ?? 'INVALID_ARGUMENT';
  const body = JSON.stringify({ error: { code, message: known?.message ?? 'malformed HTTP request' } } satisfies ErrorBody);
  const statusCode = STATUS_BY_CODE[code];
  return `HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? ''}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}
