// The KV API's URLs read as bytes. Keys are bytes: the path after /kv/ and
// the `start`/`end` parameters are percent-decoded here into bytes (any byte
// may be escaped; `+` is a space only in the query string, as in HTML forms).
// fastify's own decoding cannot do this — it yields UTF-16 strings and
// refuses escapes that are not UTF-8 — so the KV routes read the raw URL.
import { HttpError, truncate } from './errors.js';

export const KEY_PATH_PREFIX = '/kv/';

/**
 * The URL fastify routes by. find-my-way decodeURI()s the path before
 * matching and answers 400 for any escape that is not UTF-8 (`%FF`), so a
 * binary key could never reach its route: under /kv/ every '%' becomes
 * '%25', the router sees plain text, and keyOf decodes the original URL.
 */
export function routableUrl(url: string): string {
  const { path, query } = splitTarget(url);
  if (!path.startsWith(KEY_PATH_PREFIX)) return url;
  return KEY_PATH_PREFIX + path.slice(KEY_PATH_PREFIX.length).replaceAll('%', '%25') + (query === undefined ? '' : `?${query}`);
}

/** The path and query of a request target, origin-form or absolute-form (RFC 9112 §3.2), still percent-encoded. */
export function splitTarget(url: string): { path: string; query: string | undefined } {
  // Origin-form ('/…', what clients send) skips the regular expression, which every request would run up to three times.
  const authority = url.charCodeAt(0) === 0x2f ? null : /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(url);
  const target = authority === null ? url : url.slice(authority[0].length) || '/';
  const queryAt = target.indexOf('?');
  return queryAt === -1 ? { path: target, query: undefined } : { path: target.slice(0, queryAt), query: target.slice(queryAt + 1) };
}

/** The key of a /kv/<key> request, from its original (not rewritten) URL. */
export function keyOf(originalUrl: string, keyBytesMax: number): Buffer {
  const path = splitTarget(originalUrl).path;
  const key = percentDecode(path.slice(KEY_PATH_PREFIX.length), 'key', { plusIsSpace: false });
  if (key.byteLength === 0) throw new HttpError('INVALID_ARGUMENT', 'key is empty (the path is /kv/<percent-encoded key>)');
  if (key.byteLength > keyBytesMax) throw new HttpError('KEY_TOO_LARGE', `key of ${key.byteLength} B exceeds ${keyBytesMax} B`);
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

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---- query parameters ----

/**
 * The query string as decoded bytes per parameter, decoded by us for the
 * same reason as keys. A parameter with an empty value counts as absent (so
 * `?start=&end=` is the whole key space); unknown and repeated ones are 400.
 */
export function parseQuery(originalUrl: string, allowed: readonly string[]): Map<string, Buffer> {
  const query = splitTarget(originalUrl).query;
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

export const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function textOf(query: ReadonlyMap<string, Buffer>, name: string): string {
  try {
    return utf8Decoder.decode(query.get(name));
  } catch {
    throw new HttpError('INVALID_ARGUMENT', `query parameter ${name} is not valid UTF-8`);
  }
}

export function enumOf<T extends string>(query: ReadonlyMap<string, Buffer>, name: string, choices: readonly T[]): T | undefined {
  if (!query.has(name)) return undefined;
  const text = textOf(query, name);
  const choice = choices.find((c) => c === text);
  if (choice === undefined) throw new HttpError('INVALID_ARGUMENT', `${name} ${JSON.stringify(truncate(text))} is not one of ${choices.join(', ')}`);
  return choice;
}
