import type { KvCommand } from './command.js';
import type { RangeBounds } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';

/**
 * The key range a shard owns and its epoch: [start, end), `end` null for the
 * end of the key space. The epoch grows by one with every split (both halves
 * take the parent's epoch + 1) and every membership change, so of two
 * overlapping descriptors of different ranges the lower epoch is stale.
 * Applying entries keeps it (state-machine.ts); it is stored as the shard's
 * descriptor and carried by its snapshots.
 */
export interface ShardRange extends RangeBounds {
  readonly epoch: number;
}

export const WHOLE_KEY_SPACE: ShardRange = { start: new Uint8Array(0), end: null, epoch: 1 };

/**
 * The range of a replica that holds no data yet (created to receive a
 * snapshot: a joining replica, or one made on the first message from a
 * leader this node had no replica for). It owns no key until its first
 * snapshot installs; epoch 0 says so.
 */
export const UNINITIALIZED: ShardRange = { start: new Uint8Array(0), end: new Uint8Array(0), epoch: 0 };

export function isInitialized(r: ShardRange): boolean {
  return r.epoch > 0;
}

/** Whether two ranges share a key (an uninitialized range shares none). */
export function overlaps(a: ShardRange, b: ShardRange): boolean {
  if (!isInitialized(a) || !isInitialized(b)) return false;
  const aEndsBeforeB = a.end !== null && Buffer.compare(a.end, b.start) <= 0;
  const bEndsBeforeA = b.end !== null && Buffer.compare(b.end, a.start) <= 0;
  return !aEndsBeforeB && !bEndsBeforeA;
}

/** The stored form: [start, end, epoch]. */
export function encodeShardRange(r: ShardRange): [Uint8Array, Uint8Array | null, number] {
  return [r.start, r.end, r.epoch];
}

/** Reads a stored descriptor; a shard created without one owns the whole key space, one stored as [start, end] is at epoch 1. */
export function decodeShardRange(shardId: number, stored: unknown): ShardRange {
  if (stored === undefined) return WHOLE_KEY_SPACE;
  if (Array.isArray(stored) && stored.length === 2 && stored[0] instanceof Uint8Array && (stored[1] === null || stored[1] instanceof Uint8Array)) {
    return { start: stored[0], end: stored[1], epoch: 1 };
  }
  if (
    Array.isArray(stored) &&
    stored.length === 3 &&
    stored[0] instanceof Uint8Array &&
    (stored[1] === null || stored[1] instanceof Uint8Array) &&
    Number.isSafeInteger(stored[2]) &&
    (stored[2] as number) >= 1
  ) {
    return { start: stored[0], end: stored[1], epoch: stored[2] as number };
  }
  if (Array.isArray(stored) && stored.length === 3 && stored[2] === 0 && isEmptyBytes(stored[0]) && isEmptyBytes(stored[1])) return UNINITIALIZED;
  throw new CorruptRecordError(`shard ${shardId}: range descriptor is malformed`);
}

function isEmptyBytes(v: unknown): boolean {
  return v instanceof Uint8Array && v.byteLength === 0;
}

export function inRange(r: RangeBounds, key: Uint8Array): boolean {
  return Buffer.compare(key, r.start) >= 0 && (r.end === null || Buffer.compare(key, r.end) < 0);
}

/** Whether [start, end) lies within the range (`end` null: to the end of the key space). */
export function coversSpan(r: RangeBounds, start: Uint8Array, end: Uint8Array | null): boolean {
  if (Buffer.compare(start, r.start) < 0) return false;
  if (r.end === null) return true;
  return end !== null && Buffer.compare(end, r.end) <= 0;
}

/**
 * What of a command lies outside the range, or undefined if it all lies
 * within: a key it writes, or a range delete's span (`end` set). Checked
 * when a write is proposed and again when it applies (a split may have
 * applied in between).
 */
export function commandOutsideRange(r: RangeBounds, c: KvCommand): { readonly key: Uint8Array; readonly end?: Uint8Array | null } | undefined {
  switch (c.op) {
    case 'deleteRange':
      return coversSpan(r, c.key, c.end) ? undefined : { key: c.key, end: c.end };
    case 'atomicBatch': {
      const outside = c.ops.find((op) => !inRange(r, op.key));
      return outside === undefined ? undefined : { key: outside.key };
    }
    default:
      return inRange(r, c.key) ? undefined : { key: c.key };
  }
}

/** A key (or a range end) for messages: hex, ∞ for the end of the key space. */
export function hexKey(b: Uint8Array | null): string {
  return b === null ? '∞' : Buffer.from(b).toString('hex');
}

export function describeRange(r: RangeBounds): string {
  return `[${hexKey(r.start)}, ${hexKey(r.end)})`;
}
