import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from '@flotilla/shards';
import { KvError, SCAN_LIMIT_MAX, type KvStore, type ScanOptions, type ScanPage, type VersionedValue } from '../kv/store.js';

const CURSOR_PREFIX = 'm1.';

interface Entry {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly version: number;
}

/**
 * A KvStore in a Map, deliberately naive, for tests of the layers above the
 * store and for the benchmarks' no-consensus baseline (the HTTP stack over
 * it: the ceiling a cluster's HTTP API can reach on a machine). It keeps the interface's contract exactly: versions start at 1 and
 * grow per key, and a key that is deleted and written again continues from
 * its last version (so an old ETag never matches a new value); ifVersion 0
 * means absent; scans are in byte order over [start, end), at most `limit`,
 * with an opaque cursor that is absent on the last page.
 */
export class MemoryKvStore implements KvStore {
  /** By the key's bytes as a latin1 string: one UTF-16 unit per byte, so string order is byte order. */
  private readonly entries = new Map<string, Entry>();
  /** The last version of each deleted key. */
  private readonly deletedVersions = new Map<string, number>();
  private closed = false;
  closeCount = 0;

  async get(key: Uint8Array): Promise<VersionedValue | undefined> {
    this.checkOpen();
    checkKey(key);
    const entry = this.entries.get(mapKey(key));
    return entry === undefined ? undefined : { value: Buffer.from(entry.value), version: entry.version };
  }

  async put(key: Uint8Array, value: Uint8Array, options: { ifVersion?: number } = {}): Promise<{ version: number }> {
    this.checkOpen();
    checkKey(key);
    if (value.byteLength > VALUE_BYTES_MAX) throw new KvError('VALUE_TOO_LARGE', `value of ${value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`);
    const k = mapKey(key);
    this.checkVersion(k, options.ifVersion);
    const version = (this.entries.get(k)?.version ?? this.deletedVersions.get(k) ?? 0) + 1;
    this.entries.set(k, { key: Buffer.from(key), value: Buffer.from(value), version });
    this.deletedVersions.delete(k);
    return { version };
  }

  async delete(key: Uint8Array, options: { ifVersion?: number } = {}): Promise<void> {
    this.checkOpen();
    checkKey(key);
    const k = mapKey(key);
    this.checkVersion(k, options.ifVersion);
    const entry = this.entries.get(k);
    if (entry === undefined) return;
    this.entries.delete(k);
    this.deletedVersions.set(k, entry.version);
  }

  async scan(options: ScanOptions): Promise<ScanPage> {
    this.checkOpen();
    if (!Number.isSafeInteger(options.limit) || options.limit < 1 || options.limit > SCAN_LIMIT_MAX) {
      throw new KvError('INVALID_ARGUMENT', `scan limit ${options.limit} is not an integer in [1, ${SCAN_LIMIT_MAX}]`);
    }
    const start = options.cursor !== undefined ? decodeCursor(options.cursor) : mapKey(options.start ?? new Uint8Array(0));
    const end = options.end === undefined ? undefined : mapKey(options.end);
    const inRange = [...this.entries.keys()].filter((k) => k >= start && (end === undefined || k < end)).sort();
    const items = inRange.slice(0, options.limit).map((k) => {
      const entry = this.entries.get(k)!;
      return { key: Buffer.from(entry.key), value: Buffer.from(entry.value), version: entry.version };
    });
    if (inRange.length <= options.limit) return { items };
    return { items, cursor: CURSOR_PREFIX + Buffer.from(inRange[options.limit]!, 'latin1').toString('base64url') };
  }

  async close(): Promise<void> {
    this.closeCount++;
    this.closed = true;
  }

  private checkVersion(k: string, ifVersion: number | undefined): void {
    if (ifVersion === undefined) return;
    if (!Number.isSafeInteger(ifVersion) || ifVersion < 0) throw new KvError('INVALID_ARGUMENT', `ifVersion ${ifVersion} is not a non-negative integer`);
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

/** The cursor names the first key of the next page. */
function decodeCursor(cursor: string): string {
  const encoded = cursor.slice(CURSOR_PREFIX.length);
  const key = Buffer.from(encoded, 'base64url');
  if (!cursor.startsWith(CURSOR_PREFIX) || key.byteLength === 0 || key.toString('base64url') !== encoded) {
    throw new KvError('INVALID_ARGUMENT', 'scan cursor is malformed (pass back the cursor of the previous page unchanged)');
  }
  return key.toString('latin1');
}
