import { FlotillaError } from '@flotilla/core';
import type { Consistency } from '@flotilla/shards';

/**
 * The range-partitioned KV store as every edge sees it (HTTP routes, the
 * embedding API, the CLI): keys and values are bytes, every key has a
 * version (its ETag over HTTP) that grows with every write, and writes can
 * be made conditional on it. Implementations route each key to its range
 * and that range's leader; callers never see ranges, except where a call
 * is atomic per range only (clear) or within one range only (batch).
 *
 * A version is the Raft log index of the entry that wrote the value (or,
 * if the key's previous version was already at or past that index — it
 * moved to a range with a younger log — the previous version + 1). So it
 * grows with every write of the key, but not by one: the range's other
 * writes and Raft's own entries take indexes too, and a first put may
 * answer 7. Compare versions of one key, and pass them back as `ifVersion`;
 * never count on their spacing.
 */
export interface KvStore {
  /**
   * Linearizable unless `consistency: 'stale'` (then served by this node's replica if it has one,
   * else by one live replica, possibly behind; no leader or quorum needed).
   */
  get(key: Uint8Array, options?: { consistency?: Consistency } & WithDeadline): Promise<VersionedValue | undefined>;
  /**
   * `ifVersion`: 0 = only if the key does not exist, n > 0 = only if its current version is n;
   * otherwise throws a KvError with code PRECONDITION_FAILED whose `details.currentVersion` is the
   * key's current version (0: absent), and nothing is written. `contentType` (a media type, at most
   * CONTENT_TYPE_BYTES_MAX visible ASCII characters) is stored with the value and read back by get;
   * a put without one stores none.
   */
  put(key: Uint8Array, value: Uint8Array, options?: { ifVersion?: number; contentType?: string } & WithDeadline): Promise<PutResult>;
  /** Deleting an absent key succeeds (unless `ifVersion` says otherwise: then PRECONDITION_FAILED as for put). */
  delete(key: Uint8Array, options?: { ifVersion?: number } & WithDeadline): Promise<void>;
  /**
   * Keys in [start, end) in order across ranges, at most `limit` (`reverse`: the last ones, from the
   * last down). `cursor` continues a previous page of a scan in the same direction (it is opaque, and
   * replaces `start`, or `end` when reverse); the result's `cursor` is absent on the last page.
   */
  scan(options: ScanOptions): Promise<ScanPage>;
  /**
   * Deletes every key in [start, end) (absent bounds: from the first user key, to the end of the key
   * space). Atomic per range, not across ranges: each range's part is one Raft entry, applied whole or
   * not at all, and the parts run one after another; a failure part way leaves the ranges before it
   * cleared. Clearing is idempotent, so the caller retries the whole call. Answers how many keys each
   * range's part deleted.
   */
  clear(options: ClearOptions): Promise<ClearResult>;
  /**
   * Runs puts and deletes as one atomic write: one Raft entry, applied all or none. Each op's
   * `ifVersion` is checked against the key as the ops before it in the batch left it; if any fails,
   * nothing is written and the call throws PRECONDITION_FAILED (`details.opIndex`, and
   * `details.currentVersion` of that op's key). Every key must lie in one range: otherwise
   * BATCH_SPANS_RANGES, naming the ranges (`details.rangeIds`), and nothing is written. Answers each
   * op's new version in order (0 for a delete).
   */
  batch(ops: readonly BatchWrite[], options?: WithDeadline): Promise<BatchOutcome>;
  close(): Promise<void>;
}

export interface VersionedValue {
  readonly value: Uint8Array;
  /** The Raft log index of the write that produced the value (see KvStore). */
  readonly version: number;
  /** What the writer said the value is (put's `contentType`); absent if it said nothing. */
  readonly contentType?: string;
}

/** What a put answers. */
export interface PutResult {
  /** The value's version (see KvStore). */
  readonly version: number;
  /** The key did not exist before this put. */
  readonly created: boolean;
}

/** The span a clear deletes. */
export interface ClearOptions extends WithDeadline {
  /** Inclusive; absent: the first user key. */
  readonly start?: Uint8Array;
  /** Exclusive; absent: to the end of the key space. */
  readonly end?: Uint8Array;
}

/** What a clear answers: the keys deleted, in total and by range. */
export interface ClearResult {
  /** Keys deleted, over every range. */
  readonly deletedCount: number;
  /** Each range's part, in key order: the span it covered and the keys it deleted. */
  readonly ranges: readonly {
    /** The range this part ran in (as in `details.rangeIds`); 0 in a store without ranges (the in-memory KvStore of ./testing). */
    readonly rangeId: number;
    /** The part's first key, inclusive: the later of the clear's start and the range's first key. */
    readonly start: Uint8Array;
    /** The key the part stopped before, exclusive: the earlier of the clear's end and the range's end; null: the end of the key space. */
    readonly end: Uint8Array | null;
    /** Keys this part deleted (absent keys are not counted). */
    readonly deletedCount: number;
  }[];
}

/** One write of an atomic batch (KvStore.batch). */
export type BatchWrite =
  | { readonly op: 'put'; readonly key: Uint8Array; readonly value: Uint8Array; readonly ifVersion?: number; readonly contentType?: string }
  | { readonly op: 'delete'; readonly key: Uint8Array; readonly ifVersion?: number };

/** What an atomic batch answers once applied. */
export interface BatchOutcome {
  /** Each op's new version, in the batch's order; 0 for a delete. */
  readonly versions: readonly number[];
}

/**
 * Every call answers by its deadline: the caller's, when it passes one (an
 * HTTP request passes the one it started with to every call it makes), else
 * the store's default budget from the call's start. Past it the call fails
 * UNAVAILABLE, or TIMEOUT when a write was handed to a replica and its
 * outcome is unknown; helpers inside the store use what is left of it and
 * never start a budget of their own.
 */
export interface WithDeadline {
  readonly deadline?: Deadline;
}

export interface ScanOptions extends WithDeadline {
  readonly start?: Uint8Array;
  /** Exclusive; absent: to the end of the key space. */
  readonly end?: Uint8Array;
  readonly limit: number;
  readonly cursor?: string;
  readonly consistency?: Consistency;
  /** From the last key down; the cursor of a reverse page continues downwards. */
  readonly reverse?: boolean;
}

export interface ScanPage {
  readonly items: readonly { readonly key: Uint8Array; readonly value: Uint8Array; readonly version: number }[];
  readonly cursor?: string;
}

/** Largest scan page; a bigger `limit` is a client error (INVALID_ARGUMENT), not silently clipped. */
export const SCAN_LIMIT_MAX = 10_000;

/**
 * A request's budget when its caller names none: two election timeouts at
 * the default tick (1 s each) for a leader to be elected, and then some.
 */
export const REQUEST_DEADLINE_MS_DEFAULT = 5_000;

/**
 * The instant a request must be answered by, on a monotonic clock. Made once
 * where the request enters (an HTTP request, an API call, a duty run) and
 * passed down unchanged, so nested work shares one budget. A caller's
 * AbortSignal (withSignal) ends it early: once aborted it has no time left,
 * so the store's retries and pauses stop at their next step.
 */
export class Deadline {
  private constructor(
    /** On `nowMs`'s clock. */
    readonly atMs: number,
    private readonly nowMs: () => number,
    private readonly signal?: AbortSignal,
  ) {}

  /** `budgetMs` from now; `nowMs` is the clock (performance.now unless a test injects one). */
  static after(budgetMs: number, nowMs: () => number = () => performance.now()): Deadline {
    if (!(budgetMs >= 0) || !Number.isFinite(budgetMs)) throw new RangeError(`deadline budget ${budgetMs} ms is not a finite non-negative number`);
    return new Deadline(nowMs() + budgetMs, nowMs);
  }

  remainingMs(): number {
    if (this.signal?.aborted === true) return 0;
    return Math.max(0, this.atMs - this.nowMs());
  }

  get expired(): boolean {
    return this.signal?.aborted === true || this.nowMs() >= this.atMs;
  }

  /** The earlier of this deadline and `budgetMs` from now: a step may take less than its request, never more. */
  within(budgetMs: number): Deadline {
    return new Deadline(Math.min(this.atMs, this.nowMs() + budgetMs), this.nowMs, this.signal);
  }

  /** This deadline, ended early when `signal` aborts (as if it had passed). */
  withSignal(signal: AbortSignal): Deadline {
    return new Deadline(this.atMs, this.nowMs, signal);
  }
}

/**
 * Expected failures of KvStore calls, one stable code each; the HTTP layer
 * maps codes to statuses in one table (http/errors.ts).
 */
export const KV_ERROR_CODES = [
  'INVALID_ARGUMENT', // malformed request: empty key, bad cursor, limit out of range
  'NOT_FOUND', // an admin call named a range that does not exist
  'KEY_TOO_LARGE',
  'VALUE_TOO_LARGE',
  'PRECONDITION_FAILED', // ifVersion did not match
  'BATCH_SPANS_RANGES', // an atomic batch's keys lie in more than one range; nothing was written
  'UNAVAILABLE', // the range has no leader or quorum right now, or none answered by the deadline; nothing was written; retry later
  'TIMEOUT', // a write was handed to a replica and no answer came by the deadline: its outcome is unknown
  'DISK_FULL', // the range is led on a node whose disk is full (or below its reserve) and leadership has not moved yet; nothing was written
  'CLOSED', // the store is shutting down
] as const;

/** A KvError's stable code: one of KV_ERROR_CODES. */
export type KvErrorCode = (typeof KV_ERROR_CODES)[number];

/** What the store's retryable errors (UNAVAILABLE, TIMEOUT, DISK_FULL) tell the client to wait (`details.retryAfterMs`: the reply's Retry-After). */
export const RETRY_AFTER_MS = 1_000;

/** What some KvErrors carry besides their message. */
export interface KvErrorDetails {
  /** PRECONDITION_FAILED: the key's version now (0: absent). */
  readonly currentVersion?: number;
  /** PRECONDITION_FAILED of an atomic batch: the op whose ifVersion did not match. */
  readonly opIndex?: number;
  /** BATCH_SPANS_RANGES: the ranges the batch's keys lie in. */
  readonly rangeIds?: readonly number[];
  /** UNAVAILABLE, TIMEOUT, DISK_FULL: how long to wait before retrying. */
  readonly retryAfterMs?: number;
}

/** An expected failure of a KvStore call; branch on `code` (KV_ERROR_CODES), never on the message. */
export class KvError extends FlotillaError {
  constructor(
    /** What failed, stable across versions (KV_ERROR_CODES). */
    readonly code: KvErrorCode,
    /** For people: names the object, the values and the expectation. */
    message: string,
    /** What some codes carry besides the message. */
    readonly details: KvErrorDetails = {},
  ) {
    super(message);
  }

  /** The same call may succeed later (UNAVAILABLE, TIMEOUT, DISK_FULL): wait `details.retryAfterMs`, then retry. */
  get retryable(): boolean {
    return this.code === 'UNAVAILABLE' || this.code === 'TIMEOUT' || this.code === 'DISK_FULL';
  }
}
