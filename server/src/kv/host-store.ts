import { groupId } from '@flotilla/core';
import { RangeTable, compareKeys, type RangeDescriptor } from '@flotilla/placement';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX, type Consistency, type Host, type KvCommand, type KvResult } from '@flotilla/shards';
import { KvError, SCAN_LIMIT_MAX, type KvStore, type ScanOptions, type ScanPage, type VersionedValue } from './store.js';

/** How long a request keeps retrying a range without a leader before it fails UNAVAILABLE (two election timeouts at the default tick, and then some). */
export const UNAVAILABLE_AFTER_MS_DEFAULT = 5_000;
/** Pause between retries of a range that has no leader yet. */
const RETRY_DELAY_MS = 10;
/** What a 503 tells the client to wait. */
const RETRY_AFTER_MS = 1_000;
const CURSOR_PREFIX = 'v1.';

export interface HostKvStoreOptions {
  readonly host: Host;
  readonly ranges: RangeTable;
  readonly unavailableAfterMs?: number;
  /** Called once the store is closed (the owner closes the Host there). */
  readonly onClose?: () => Promise<void>;
}

/**
 * The KvStore over the ranges of this node's Host (every range with a
 * replica here). It routes each key by the range table and retries a range
 * that has no leader yet; a range led elsewhere is not served here yet —
 * forwarding to the leader's node arrives with the cluster router.
 */
export class HostKvStore implements KvStore {
  private closed = false;
  private readonly unavailableAfterMs: number;

  constructor(private readonly options: HostKvStoreOptions) {
    this.unavailableAfterMs = options.unavailableAfterMs ?? UNAVAILABLE_AFTER_MS_DEFAULT;
  }

  async get(key: Uint8Array, options: { consistency?: Consistency } = {}): Promise<VersionedValue | undefined> {
    checkKey(key);
    const range = this.route(key);
    const v = await this.retry(range, () => this.options.host.get(groupId(range.rangeId), key, options));
    return v === undefined ? undefined : { value: v.value, version: v.version };
  }

  async put(key: Uint8Array, value: Uint8Array, options: { ifVersion?: number } = {}): Promise<{ version: number }> {
    checkKey(key);
    if (value.byteLength > VALUE_BYTES_MAX) throw new KvError('VALUE_TOO_LARGE', `value of ${value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`);
    checkIfVersion(options.ifVersion);
    const result = await this.write({ op: 'put', key, value, ...(options.ifVersion === undefined ? {} : { ifVersion: options.ifVersion }) });
    return { version: result };
  }

  async delete(key: Uint8Array, options: { ifVersion?: number } = {}): Promise<void> {
    checkKey(key);
    checkIfVersion(options.ifVersion);
    await this.write({ op: 'delete', key, ...(options.ifVersion === undefined ? {} : { ifVersion: options.ifVersion }) });
  }

  async scan(options: ScanOptions): Promise<ScanPage> {
    this.checkOpen();
    if (!Number.isSafeInteger(options.limit) || options.limit < 1 || options.limit > SCAN_LIMIT_MAX) {
      throw new KvError('INVALID_ARGUMENT', `scan limit ${options.limit} is not an integer in [1, ${SCAN_LIMIT_MAX}]`);
    }
    const start = options.cursor !== undefined ? decodeCursor(options.cursor) : (options.start ?? new Uint8Array(0));
    const end = options.end ?? null;
    const items: { key: Uint8Array; value: Uint8Array; version: number }[] = [];
    if (end !== null && compareKeys(start, end) >= 0) return { items };
    for (const range of this.options.ranges.overlapping(start, end)) {
      const rangeStart = compareKeys(start, range.start) > 0 ? start : range.start;
      const rangeEnd = end === null ? range.end : range.end === null || compareKeys(end, range.end) < 0 ? end : range.end;
      const limit = options.limit - items.length;
      const page = await this.retry(range, () =>
        this.options.host.scan(groupId(range.rangeId), { start: rangeStart, end: rangeEnd, limit }, options.consistency === undefined ? {} : { consistency: options.consistency }),
      );
      items.push(...page);
      if (items.length === options.limit) {
        // The next page starts just after the last key returned (the smallest key greater than it).
        const last = items[items.length - 1]!.key;
        const next = Buffer.concat([last, Buffer.of(0)]);
        const more = end === null || compareKeys(next, end) < 0;
        return more ? { items, cursor: encodeCursor(next) } : { items };
      }
    }
    return { items };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.options.onClose?.();
  }

  private async write(command: KvCommand): Promise<number> {
    const range = this.route(command.key);
    const result: KvResult = await this.retry(range, () => this.options.host.propose(groupId(range.rangeId), command));
    if (result.ok) return result.version;
    if (result.code === 'VERSION_MISMATCH') {
      throw new KvError('PRECONDITION_FAILED', `key's version is ${result.currentVersion}, not ${command.ifVersion}`, { currentVersion: result.currentVersion });
    }
    throw new KvError('INVALID_ARGUMENT', result.reason);
  }

  private route(key: Uint8Array): RangeDescriptor {
    this.checkOpen();
    const range = this.options.ranges.lookup(key);
    if (range === undefined) throw new KvError('UNAVAILABLE', `no known range holds key ${Buffer.from(key).toString('hex')}`, { retryAfterMs: RETRY_AFTER_MS });
    return range;
  }

  /** Runs `call` against the range, retrying while it has no leader here, until unavailableAfterMs. */
  private async retry<T>(range: RangeDescriptor, call: () => Promise<T>): Promise<T> {
    const deadlineMs = performance.now() + this.unavailableAfterMs;
    for (;;) {
      this.checkOpen();
      try {
        return await call();
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'REQUEST_TIMEOUT') throw new KvError('TIMEOUT', `range ${range.rangeId} did not answer in time; a write's outcome is unknown`);
        if (code === 'HOST_CLOSED' || code === 'CORE_CRASHED') throw new KvError('CLOSED', `the store is closed (${(err as Error).message})`);
        if (code === 'COMMAND_INVALID') throw new KvError('INVALID_ARGUMENT', (err as Error).message);
        const waiting = code === 'NOT_LEADER' || code === 'PROPOSAL_DROPPED';
        if (!waiting) throw err;
        if (performance.now() >= deadlineMs) {
          throw new KvError('UNAVAILABLE', `range ${range.rangeId} has no leader reachable from this node (${(err as Error).message})`, { retryAfterMs: RETRY_AFTER_MS });
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
      }
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new KvError('CLOSED', 'the store is closed');
  }
}

function checkKey(key: Uint8Array): void {
  if (key.byteLength === 0) throw new KvError('INVALID_ARGUMENT', 'key is empty');
  if (key.byteLength > KEY_BYTES_MAX) throw new KvError('KEY_TOO_LARGE', `key of ${key.byteLength} B exceeds ${KEY_BYTES_MAX} B`);
}

function checkIfVersion(v: number | undefined): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new KvError('INVALID_ARGUMENT', `ifVersion ${v} is not a non-negative integer`);
}

export function encodeCursor(next: Uint8Array): string {
  return CURSOR_PREFIX + Buffer.from(next).toString('base64url');
}

export function decodeCursor(cursor: string): Uint8Array {
  if (!cursor.startsWith(CURSOR_PREFIX) || !/^[A-Za-z0-9_-]+$/.test(cursor.slice(CURSOR_PREFIX.length))) {
    throw new KvError('INVALID_ARGUMENT', 'scan cursor is malformed (pass back the cursor of the previous page unchanged)');
  }
  const key = Buffer.from(cursor.slice(CURSOR_PREFIX.length), 'base64url');
  if (key.byteLength === 0 || key.byteLength > KEY_BYTES_MAX + 1) throw new KvError('INVALID_ARGUMENT', 'scan cursor is malformed');
  return key;
}
