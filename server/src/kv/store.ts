import type { Consistency } from '@flotilla/shards';

/**
 * The range-partitioned KV store as every edge sees it (HTTP routes, the
 * embedding API, the CLI): keys and values are bytes, every key has a
 * version (its ETag over HTTP) that grows with every write, and writes can
 * be made conditional on it. Implementations route each key to its range
 * and that range's leader; callers never see ranges.
 */
export interface KvStore {
  /** Linearizable unless `consistency: 'stale'` (then served by whichever replica answers, possibly behind). */
  get(key: Uint8Array, options?: { consistency?: Consistency }): Promise<VersionedValue | undefined>;
  /**
   * `ifVersion`: 0 = only if the key does not exist, n > 0 = only if its current version is n;
   * otherwise throws PreconditionFailedError carrying the current version (0: absent).
   */
  put(key: Uint8Array, value: Uint8Array, options?: { ifVersion?: number }): Promise<{ version: number }>;
  /** Deleting an absent key succeeds (unless `ifVersion` says otherwise). */
  delete(key: Uint8Array, options?: { ifVersion?: number }): Promise<void>;
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

export interface ScanOptions {
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
 * Expected failures of KvStore calls, one stable code each; the HTTP layer
 * maps codes to statuses in one table (http/errors.ts).
 */
export const KV_ERROR_CODES = [
  'INVALID_ARGUMENT', // malformed request: empty key, bad cursor, limit out of range
  'NOT_FOUND', // an admin call named a range that does not exist
  'KEY_TOO_LARGE',
  'VALUE_TOO_LARGE',
  'PRECONDITION_FAILED', // ifVersion did not match
  'UNAVAILABLE', // the range has no leader or quorum right now; retry later
  'TIMEOUT', // no answer in time; a write's outcome is unknown
  'CLOSED', // the store is shutting down
] as const;

export type KvErrorCode = (typeof KV_ERROR_CODES)[number];

export class KvError extends Error {
  constructor(
    readonly code: KvErrorCode,
    message: string,
    readonly details: { readonly currentVersion?: number; readonly retryAfterMs?: number } = {},
  ) {
    super(message);
    this.name = 'KvError';
  }

  get retryable(): boolean {
    return this.code === 'UNAVAILABLE' || this.code === 'TIMEOUT';
  }
}
