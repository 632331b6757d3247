import type { Database } from 'lmdb';
import { CorruptRecordError } from '../storage/errors.js';

/**
 * Reading the KV data of a store: what a core's state machine serves, and
 * what the Host's thread serves itself under a node lease (host/local-reads.ts)
 * from the same LMDB environment. One reader for both, so a record reads
 * back the same whichever thread serves it.
 */

/**
 * A key's record: its value, its version and, if the writer gave one, the
 * value's content type. Stored as [version, value] or, with a content type,
 * [version, value, contentType]: records written before content types
 * existed read back unchanged.
 */
export interface StoredValue {
  readonly value: Buffer;
  readonly version: number;
  readonly contentType?: string;
}

/** [start, end) in order, at most `limit`, skipping the first `offset`; `end` undefined: to the end of the key space. `reverse`: the same keys from the last down. */
export interface ScanOptions {
  readonly start: Uint8Array;
  readonly end?: Uint8Array | undefined;
  readonly limit: number;
  readonly offset?: number;
  readonly reverse?: boolean;
}

/** The data sub-database: user key → record (default lmdb-js value encoding). */
export type DataDb = Database<unknown, Buffer>;

export function readStored(data: DataDb, key: Uint8Array): StoredValue | undefined {
  const k = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const raw = data.get(k);
  return raw === undefined ? undefined : decodeStoredValue(k, raw);
}

/** A scan request's records: [start, end) (`end` null: to the end of the key space), none when the span is empty. */
export function readSpan(data: DataDb, span: { readonly start: Uint8Array; readonly end: Uint8Array | null; readonly limit: number; readonly reverse?: boolean }): { key: Buffer; value: Buffer; version: number }[] {
  if (span.end !== null && Buffer.compare(span.start, span.end) >= 0) return [];
  return [...scanStored(data, { start: span.start, end: span.end ?? undefined, limit: span.limit, reverse: span.reverse === true })];
}

export function* scanStored(data: DataDb, options: ScanOptions): Generator<{ key: Buffer; value: Buffer; version: number }> {
  const start = Buffer.from(options.start);
  const end = options.end === undefined ? undefined : Buffer.from(options.end);
  if (options.reverse !== true) {
    const range = data.getRange({ start, ...(end === undefined ? {} : { end }), limit: options.limit, ...(options.offset === undefined ? {} : { offset: options.offset }) });
    for (const { key, value } of range) {
      const stored = decodeStoredValue(key, value);
      yield { key, value: stored.value, version: stored.version };
    }
    return;
  }
  // lmdb-js walks a reverse range from its `start` (inclusive) down to its `end` (exclusive): the opposite
  // of ours. So it starts at our `end` (skipped when present: ours is exclusive) and runs, lazily, until a
  // key below our `start`. Its default reverse end excludes the key 0x00; the empty key (which LMDB never
  // stores) excludes nothing.
  let skipCount = options.offset ?? 0;
  let yieldedCount = 0;
  for (const { key, value } of data.getRange({ ...(end === undefined ? {} : { start: end }), end: EMPTY_KEY, reverse: true })) {
    if (end !== undefined && Buffer.compare(key, end) >= 0) continue;
    if (Buffer.compare(key, start) < 0 || yieldedCount === options.limit) return;
    if (skipCount > 0) {
      skipCount--;
      continue;
    }
    const stored = decodeStoredValue(key, value);
    yieldedCount++;
    yield { key, value: stored.value, version: stored.version };
  }
}

/** A data record as read back from LMDB: [version, bytes] or [version, bytes, contentType], checked so damage fails loudly. */
export function decodeStoredValue(key: Buffer, raw: unknown): StoredValue {
  if (!Array.isArray(raw) || (raw.length !== 2 && raw.length !== 3) || !Number.isSafeInteger(raw[0]) || (raw[0] as number) < 1 || !(raw[1] instanceof Uint8Array)) {
    throw new CorruptRecordError(`data record for key ${key.toString('hex')} is malformed`);
  }
  if (raw.length === 3) {
    if (typeof raw[2] !== 'string') throw new CorruptRecordError(`data record for key ${key.toString('hex')} has a content type that is not a string`);
    return { version: raw[0] as number, value: raw[1] as Buffer, contentType: raw[2] };
  }
  return { version: raw[0] as number, value: raw[1] as Buffer };
}

const EMPTY_KEY = Buffer.alloc(0);
