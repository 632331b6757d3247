// Request ids: every request has one, answered in its `x-request-id` header
// and named (as reqId) by every log line about it. A caller that sends its
// own id (a proxy, a client tracing a call across services) gets it back,
// if it is one we are willing to log and echo; otherwise a fresh one is
// made, and the reply says which.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * Characters of a caller's id at most: a UUID is 36, a W3C traceparent 55,
 * an AWS X-Amzn-Trace-Id with its parent and sampling fields under 100.
 */
export const REQUEST_ID_LENGTH_MAX = 128;

/**
 * What a caller's id may be made of: letters, digits and the punctuation
 * trace formats use. No spaces, quotes, commas or control characters: the
 * id is echoed in a header and written into log lines as it came.
 */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._~:;@+=/-]+$/;

/** The caller's id if acceptable (isValidRequestId), else a fresh UUID. fastify's genReqId. */
export function requestIdOf(request: Pick<IncomingMessage, 'headers'>): string {
  const supplied = request.headers[REQUEST_ID_HEADER];
  return typeof supplied === 'string' && isValidRequestId(supplied) ? supplied : randomUUID();
}

/** 1 to REQUEST_ID_LENGTH_MAX characters of REQUEST_ID_PATTERN. A repeated header arrives as a list and is refused. */
export function isValidRequestId(id: string): boolean {
  return id.length > 0 && id.length <= REQUEST_ID_LENGTH_MAX && REQUEST_ID_PATTERN.test(id);
}
