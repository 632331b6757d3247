import { KEY_BYTES_MAX, VALUE_BYTES_MAX, invalidContentType } from '@flotilla/shards';
import {
  KvError,
  SCAN_LIMIT_MAX,
  type BatchOutcome,
  type BatchWrite,
  type ClearOptions,
  type ClearResult,
  type KvStore,
  type PutResult,
  type ScanOptions,
  type ScanPage,
  type VersionedValue,
} from '../kv/store.js';

const CURSOR_PREFIX = 'm1.';
const REVERSE_CURSOR_PREFIX = 'mr1.';

interface Entry {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly version: number;
  readonly contentType?: string;
}

/**
 * A KvStore in a Map, deliberately naive, for tests of the layers above the
 * store and for the benchmarks' no-consensus baseline (the HTTP stack over
 * it: the ceiling a cluster's HTTP API can reach on a machine). It keeps the
 * interface's contract exactly: versions start at 1 and grow per key, and a
 * key that is deleted and written again continues from its last version (so
 * an old ETag never matches a new value); ifVersion 0 means absent; scans
 * are in byte order over [start, end), at most `limit`, with an opaque
 * cursor that is absent on the last page. It has no ranges: the whole key
 * space is one (id 0), so every batch fits and every clear is one part.
 */
export class MemoryKvStore implements KvStore {
  /** By the key's bytes as a latin1 string: one UTF-16 unit per byte, so string order is byte order. */
  private entries = new Map<string, Entry>();
  /** The last version of each deleted key. */
  private deletedVersions = new Map<string, number>();
  private closed = false;
  closeCount = 0;

  async get(key: Uint8Array): Promise<VersionedValue | undefined> {
    this.checkOpen();
    checkKey(key);
    const entry = this.entries.get(mapKey(key));
    if (entry === undefined) return undefined;
    return { value: Buffer.from(entry.value), version: entry.version, ...(entry.contentType === undefined ? {} : { contentType: entry.contentType }) };
  }

  async put(key: Uint8Array, value: Uint8Array, options: { ifVersion?: number; contentType?: string } = {}): Promise<PutResult> {
    this.checkOpen();
    checkWrite({ op: 'put', key, value, ...options });
    const k = mapKey(key);
    this.checkVersion(k, options.ifVersion);
    return this.apply(k, { op: 'put', key, value, ...options });
  }

  async delete(key: Uint8Array, options: { ifVersion?: number } = {}): Promise<void> {
    this.checkOpen();
    checkWrite({ op: 'delete', key, ...options });
    const k = mapKey(key);
    this.checkVersion(k, options.ifVersion);
    this.apply(k, { op: 'delete', key });
  }

  async scan(options: ScanOptions): Promise<ScanPage> {
    this.checkOpen();
    if (!Number.isSafeInteger(options.limit) || options.limit < 1 || options.limit > SCAN_LIMIT_MAX) {
      throw new KvError('INVALID_ARGUMENT', `scan limit ${options.limit} is not an integer in [1, ${SCAN_LIMIT_MAX}]`);
    }
    checkBounds('scan', options);
    const reverse = options.reverse === true;
    let start = mapKey(options.start ?? new Uint8Array(0));
    let end = options.end === undefined ? undefined : mapKey(options.end);
    if (options.cursor !== undefined) {
      // A forward cursor names the next page's first key; a reverse one its exclusive upper bound.
      if (reverse) end = decodeCursor(options.cursor, REVERSE_CURSOR_PREFIX);
      else start = decodeCursor(options.cursor, CURSOR_PREFIX);
    }
    const inRange = [...this.entries.keys()].filter((k) => k >= start && (end === undefined || k < end)).sort();
    if (reverse) inRange.reverse();
    const items = inRange.slice(0, options.limit).map((k) => {
      const entry = this.entries.get(k)!;
      return { key: Buffer.from(entry.key), value: Buffer.from(entry.value), version: entry.version };
    });
    if (inRange.length <= options.limit) return { items };
    const next = reverse ? inRange[options.limit - 1]! : inRange[options.limit]!;
    return { items, cursor: (reverse ? REVERSE_CURSOR_PREFIX : CURSOR_PREFIX) + Buffer.from(next, 'latin1').toString('base64url') };
  }

  async clear(options: ClearOptions): Promise<ClearResult> {
    this.checkOpen();
    checkBounds('clear', options);
    const start = mapKey(options.start ?? new Uint8Array(0));
    const end = options.end === undefined ? undefined : mapKey(options.end);
    let deletedCount = 0;
    for (const k of [...this.entries.keys()]) {
      if (k < start || (end !== undefined && k >= end)) continue;
      this.apply(k, { op: 'delete', key: this.entries.get(k)!.key });
      deletedCount++;
    }
    return { deletedCount, ranges: [{ rangeId: 0, start: Buffer.from(start, 'latin1'), end: end === undefined ? null : Buffer.from(end, 'latin1'), deletedCount }] };
  }

  async batch(ops: readonly BatchWrite[]): Promise<BatchOutcome> {
    this.checkOpen();
    for (const op of ops) checkWrite(op);
    // All or none: the ops run on copies, each condition against the ops before it; the copies replace the maps only if all held.
    const scratch = new MemoryKvStore();
    for (const [k, entry] of this.entries) scratch.entries.set(k, entry);
    for (const [k, version] of this.deletedVersions) scratch.deletedVersions.set(k, version);
    const versions = ops.map((op, opIndex) => {
      const k = mapKey(op.key);
      try {
        scratch.checkVersion(k, op.ifVersion);
      } catch (err) {
        const { currentVersion } = (err as KvError).details;
        throw new KvError('PRECONDITION_FAILED', `batch op ${opIndex}: the key's version is ${currentVersion}, not ${op.ifVersion}; nothing was written`, { currentVersion, opIndex });
      }
      return scratch.apply(k, op).version;
    });
    this.entries = scratch.entries;
    this.deletedVersions = scratch.deletedVersions;
    return { versions };
  }

  async close(): Promise<void> {
    this.closeCount++;
    this.closed = true;
  }

  /** Writes a checked op; a put's version continues from the key's last one, deleted or not. */
  private apply(k: string, op: BatchWrite): PutResult {
    const entry = this.entries.get(k);
    if (op.op === 'delete') {
      if (entry !== undefined) {
        this.entries.delete(k);
        this.deletedVersions.set(k, entry.version);
      }
      return { version: 0, created: false };
    }
    const version = (entry?.version ?? this.deletedVersions.get(k) ?? 0) + 1;
    this.entries.set(k, { key: Buffer.from(op.key), value: Buffer.from(op.value), version, ...(op.contentType === undefined ? {} : { contentType: op.contentType }) });
    this.deletedVersions.delete(k);
    return { version, created: entry === undefined };
  }

  private checkVersion(k: string, ifVersion: number | undefined): void {
    if (ifVersion === undefined) return;
    const currentVersion = this.entries.get(k)?.version ?? 0;
    if (ifVersion !== currentVersion) {
      throw new KvError('PRECONDITION_FAILED', `key's version is ${currentVersion}, not ${ifVersion}`, { currentVersion });
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new KvError('CLOSED', 'the store is closed');
  }
}

function mapKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function checkKey(key: Uint8Array): void {
  if (key.byteLength === 0) throw new KvError('INVALID_ARGUMENT', 'key is empty');
  if (key.byteLength > KEY_BYTES_MAX) throw new KvError('KEY_TOO_LARGE', `key of ${key.byteLength} B exceeds ${KEY_BYTES_MAX} B`);
}

function checkWrite(op: BatchWrite): void {
  checkKey(op.key);
  if (op.ifVersion !== undefined && (!Number.isSafeInteger(op.ifVersion) || op.ifVersion < 0)) throw new KvError('INVALID_ARGUMENT', `ifVersion ${op.ifVersion} is not a non-negative integer`);
  if (op.op !== 'put') return;
  if (op.value.byteLength > VALUE_BYTES_MAX) throw new KvError('VALUE_TOO_LARGE', `value of ${op.value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`);
  const invalid = op.contentType === undefined ? undefined : invalidContentType(op.contentType);
  if (invalid !== undefined) throw new KvError('INVALID_ARGUMENT', invalid);
}

function checkBounds(what: string, bounds: { readonly start?: Uint8Array; readonly end?: Uint8Array }): void {
  for (const [name, bound] of [['start', bounds.start], ['end', bounds.end]] as const) {
    if (bound !== undefined && bound.byteLength > KEY_BYTES_MAX) throw new KvError('KEY_TOO_LARGE', `${what} ${name} of ${bound.byteLength} B exceeds ${KEY_BYTES_MAX} B`);
  }
  if (bounds.start !== undefined && bounds.end !== undefined && Buffer.compare(bounds.start, bounds.end) > 0) throw new KvError('INVALID_ARGUMENT', `${what} start is after its end`);
}

/** The cursor names the next page's first key (forward) or its exclusive upper bound (reverse). */
function decodeCursor(cursor: string, prefix: string): string {
  const encoded = cursor.slice(prefix.length);
  const key = Buffer.from(encoded, 'base64url');
  if (!cursor.startsWith(prefix) || key.byteLength === 0 || key.toString('base64url') !== encoded) {
    throw new KvError('INVALID_ARGUMENT', 'scan cursor is malformed (pass back the cursor of the previous page unchanged)');
  }
  return key.toString('latin1');
}
