import { FlotillaError } from '@flotilla/core';
import type { Consistency } from '@flotilla/shards';

/**
 * The range-partitioned KV store as every edge sees it (HTTP routes, the
 * embedding API, the CLI): keys and values are bytes, every key has a
 * version (its ETag over HTTP) that grows with every write, and writes can
 * be made conditional on it. Implementations route each key to its range
 * and that range's leader; callers never see ranges.
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
   * key's current version (0: absent), and nothing is written.
   */
  put(key: Uint8Array, value: Uint8Array, options?: { ifVersion?: number } & WithDeadline): Promise<{ version: number }>;
  /** Deleting an absent key succeeds (unless `ifVersion` says otherwise: then PRECONDITION_FAILED as for put). */
  delete(key: Uint8Array, options?: { ifVersion?: number } & WithDeadline): Promise<void>;
  /**
   * Keys in [start, end) in order across ranges, at most `limit`. `cursor` continues a previous
   * page (it is opaque, and replaces `start`); the result's `cursor` is absent on the last page.
   */
  scan(options: ScanOptions): Promise<ScanPage>;
  close(): Promise<void>;
}

export interface VersionedValue {
  readonly value: Uint8Array;
  readonly version: number;
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
 * passed down unchanged, so nested work shares one budget.
 */
export class Deadline {
  private constructor(
    /** On `nowMs`'s clock. */
    readonly atMs: number,
    private readonly nowMs: () => number,
  ) {}

  /** `budgetMs` from now; `nowMs` is the clock (performance.now unless a test injects one). */
  static after(budgetMs: number, nowMs: () => number = () => performance.now()): Deadline {
    if (!(budgetMs >= 0) || !Number.isFinite(budgetMs)) throw new RangeError(`deadline budget ${budgetMs} ms is not a finite non-negative number`);
    return new Deadline(nowMs() + budgetMs, nowMs);
  }

  remainingMs(): number {
    return Math.max(0, this.atMs - this.nowMs());
  }

  get expired(): boolean {
    return this.nowMs() >= this.atMs;
  }

  /** The earlier of this deadline and `budgetMs` from now: a step may take less than its request, never more. */
  within(budgetMs: number): Deadline {
    return new Deadline(Math.min(this.atMs, this.nowMs() + budgetMs), this.nowMs);
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
  'UNAVAILABLE', // the range has no leader or quorum right now, or none answered by the deadline; nothing was written; retry later
  'TIMEOUT', // a write was handed to a replica and no answer came by the deadline: its outcome is unknown
  'DISK_FULL', // the range is led on a node whose disk is full (or below its reserve) and leadership has not moved yet; nothing was written
  'CLOSED', // the store is shutting down
] as const;

export type KvErrorCode = (typeof KV_ERROR_CODES)[number];

/** What the store's retryable errors (UNAVAILABLE, TIMEOUT, DISK_FULL) tell the client to wait (`details.retryAfterMs`: the reply's Retry-After). */
export const RETRY_AFTER_MS = 1_000;

export class KvError extends FlotillaError {
  constructor(
    readonly code: KvErrorCode,
    message: string,
    readonly details: { readonly currentVersion?: number; readonly retryAfterMs?: number } = {},
  ) {
    super(message);
  }

  get retryable(): boolean {
    return this.code === 'UNAVAILABLE' || this.code === 'TIMEOUT' || this.code === 'DISK_FULL';
  }
}
