import { RangeTable, compareKeys, type RangeDescriptor } from '@flotilla/placement';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX, type Consistency, type Host, type KvResult } from '@flotilla/shards';
import { decodeRangeOp, decodeRangeOpResult, encodeRangeOp, encodeRangeOpResult, runLocally, type RangeOp, type RangeOpResult } from './range-ops.js';
import { KvError, SCAN_LIMIT_MAX, type KvStore, type ScanOptions, type ScanPage, type VersionedValue } from './store.js';

/** How long a request keeps retrying a range without a leader before it fails UNAVAILABLE (two election timeouts at the default tick, and then some). */
export const UNAVAILABLE_AFTER_MS_DEFAULT = 5_000;
/** Pause between retries of a range that has no leader yet. */
const RETRY_DELAY_MS = 10;
/** What a 503 tells the client to wait. */
const RETRY_AFTER_MS = 1_000;
const CURSOR_PREFIX = 'v1.';
/** Leader hints followed in a row before pausing: hints chase a moving leadership, not a loop. */
const HINT_HOPS_MAX = 3;

export interface HostKvStoreOptions {
  readonly host: Host;
  readonly ranges: RangeTable;
  readonly unavailableAfterMs?: number;
  /** Called once the store is closed (the owner closes the Host there). */
  readonly onClose?: () => Promise<void>;
}

/**
 * The KvStore over the ranges of this node's Host: it routes each key by the
 * range table, runs the operation on the range's leader — here, or forwarded
 * over the transport to the leader's node, following leader hints — and
 * retries while a range has no leader. Any node serves any key of a range it
 * knows; stale reads are served by the local replica.
 */
export class HostKvStore implements KvStore {
  private closed = false;
  private readonly unavailableAfterMs: number;

  constructor(private readonly options: HostKvStoreOptions) {
    this.unavailableAfterMs = options.unavailableAfterMs ?? UNAVAILABLE_AFTER_MS_DEFAULT;
    // Serve what other nodes forward here: run it on the local replica, which answers NOT_LEADER
    // with its hint if leadership moved; the sender follows the hint.
    options.host.setRequestHandler(async (_from, payload) => encodeRangeOpResult(await runLocally(options.host, decodeRangeOp(payload))));
  }

  async get(key: Uint8Array, options: { consistency?: Consistency } = {}): Promise<VersionedValue | undefined> {
    checkKey(key);
    const range = this.route(key);
    return (await this.execute({ kind: 'get', rangeId: range.rangeId, key, consistency: options.consistency ?? 'linearizable' })) as VersionedValue | undefined;
  }

  async put(key: Uint8Array, value: Uint8Array, options: { ifVersion?: number } = {}): Promise<{ version: number }> {
    checkKey(key);
    if (value.byteLength > VALUE_BYTES_MAX) throw new KvError('VALUE_TOO_LARGE', `value of ${value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`);
    checkIfVersion(options.ifVersion);
    const range = this.route(key);
    return { version: await this.write({ kind: 'put', rangeId: range.rangeId, key, value, ifVersion: options.ifVersion }) };
  }

  async delete(key: Uint8Array, options: { ifVersion?: number } = {}): Promise<void> {
    checkKey(key);
    checkIfVersion(options.ifVersion);
    const range = this.route(key);
    await this.write({ kind: 'delete', rangeId: range.rangeId, key, ifVersion: options.ifVersion });
  }

  async scan(options: ScanOptions): Promise<ScanPage> {
    this.checkOpen();
    if (!Number.isSafeInteger(options.limit) || options.limit < 1 || options.limit > SCAN_LIMIT_MAX) {
      throw new KvError('INVALID_ARGUMENT', `scan limit ${options.limit} is not an integer in [1, ${SCAN_LIMIT_MAX}]`);
    }
    for (const [name, bound] of [['start', options.start], ['end', options.end]] as const) {
      if (bound !== undefined && bound.byteLength > KEY_BYTES_MAX) throw new KvError('KEY_TOO_LARGE', `scan ${name} of ${bound.byteLength} B exceeds ${KEY_BYTES_MAX} B`);
    }
    const start = options.cursor !== undefined ? decodeCursor(options.cursor) : (options.start ?? new Uint8Array(0));
    const end = options.end ?? null;
    const items: { key: Uint8Array; value: Uint8Array; version: number }[] = [];
    if (end !== null && compareKeys(start, end) >= 0) return { items };
    for (const range of this.options.ranges.overlapping(start, end)) {
      const rangeStart = compareKeys(start, range.start) > 0 ? start : range.start;
      const rangeEnd = end === null ? range.end : range.end === null || compareKeys(end, range.end) < 0 ? end : range.end;
      const limit = options.limit - items.length;
      const page = (await this.execute({ kind: 'scan', rangeId: range.rangeId, start: rangeStart, end: rangeEnd, limit, consistency: options.consistency ?? 'linearizable' })) as {
        key: Uint8Array;
        value: Uint8Array;
        version: number;
      }[];
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

  private async write(op: Extract<RangeOp, { kind: 'put' | 'delete' }>): Promise<number> {
    const result = (await this.execute(op)) as KvResult;
    if (result.ok) return result.version;
    if (result.code === 'VERSION_MISMATCH') {
      throw new KvError('PRECONDITION_FAILED', `key's version is ${result.currentVersion}, not ${op.ifVersion}`, { currentVersion: result.currentVersion });
    }
    throw new KvError('INVALID_ARGUMENT', result.reason);
  }

  private route(key: Uint8Array): RangeDescriptor {
    this.checkOpen();
    const range = this.options.ranges.lookup(key);
    if (range === undefined) throw new KvError('UNAVAILABLE', `no known range holds key ${Buffer.from(key).toString('hex')}`, { retryAfterMs: RETRY_AFTER_MS });
    return range;
  }

  /**
   * Runs `op` where its range is led: here, or forwarded to the node the
   * replicas name as leader (following hints), retrying while the range has
   * no leader, until unavailableAfterMs. A write that timed out is not
   * retried: it may have been applied. Stale reads run on the local replica.
   */
  private async execute(op: RangeOp): Promise<RangeOpResult> {
    const host = this.options.host;
    const deadlineMs = performance.now() + this.unavailableAfterMs;
    const stale = (op.kind === 'get' || op.kind === 'scan') && op.consistency === 'stale';
    let target = host.nodeId;
    for (let hops = 0; ; hops++) {
      this.checkOpen();
      try {
        if (target === host.nodeId || stale) return await runLocally(host, op);
        return decodeRangeOpResult(op, await host.forward(target, encodeRangeOp(op)));
      } catch (err) {
        const e = err as { code?: string; leaderHint?: number; message?: string };
        const isWrite = op.kind === 'put' || op.kind === 'delete';
        if (e.code === 'REQUEST_TIMEOUT' && isWrite) throw new KvError('TIMEOUT', `range ${op.rangeId} did not answer in time; the write's outcome is unknown`);
        if (e.code === 'HOST_CLOSED' || e.code === 'CORE_CRASHED') throw new KvError('CLOSED', `the store is closed (${e.message})`);
        if (e.code === 'COMMAND_INVALID') throw new KvError('INVALID_ARGUMENT', e.message ?? 'invalid command');
        const retryable = e.code === 'NOT_LEADER' || e.code === 'PROPOSAL_DROPPED' || e.code === 'REQUEST_TIMEOUT' || e.code === 'SHARD_NOT_FOUND';
        if (!retryable) throw err;
        if (performance.now() >= deadlineMs) {
          throw new KvError('UNAVAILABLE', `range ${op.rangeId} has no leader reachable from node ${host.nodeId} (${e.message})`, { retryAfterMs: RETRY_AFTER_MS });
        }
        const hint = e.code === 'NOT_LEADER' ? (e.leaderHint ?? 0) : 0;
        // Follow a fresh hint at once (a bounded number of times); otherwise wait and start over here.
        if (hint !== 0 && hint !== target && hops < HINT_HOPS_MAX) {
          target = hint;
          continue;
        }
        target = host.nodeId;
        hops = 0;
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
