import { assert, type ConfState, type GroupId, type LogIndex, type Term } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { KEY_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MAX, decodeConfState, encodeConfState, type RangeBounds } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';

// A snapshot's wire format: chunks of at most SNAPSHOT_CHUNK_BYTES_MAX, each
// carrying the whole header, so every chunk can be checked against the
// snapshot it claims to belong to. reader.ts produces them from the store,
// installer.ts stages and installs them.

/** Chunks of another format are refused (decodeChunk): a node never installs a layout it does not know. */
export const SNAPSHOT_FORMAT = 1;

export interface SnapshotHeader {
  readonly format: number;
  readonly shardId: GroupId;
  readonly index: LogIndex;
  readonly term: Term;
  readonly confState: ConfState;
  readonly bounds: RangeBounds;
  /** The range's epoch at the snapshot (kv/range.ts). */
  readonly epoch: number;
}

/** A key's record in a chunk: [key, version, value], or with the value's content type [key, version, value, contentType]. */
export type SnapshotPair = [Uint8Array, number, Uint8Array] | [Uint8Array, number, Uint8Array, string];

interface Chunk {
  readonly header: SnapshotHeader;
  readonly seq: number;
  readonly last: boolean;
  /** Pairs in key order. */
  readonly pairs: readonly SnapshotPair[];
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeChunk(c: Chunk): Uint8Array {
  const h = c.header;
  const bytes = packr.pack([h.format, h.shardId, h.index, h.term, encodeConfState(h.confState), [h.bounds.start, h.bounds.end, h.epoch], c.seq, c.last, c.pairs]);
  assert(bytes.byteLength <= SNAPSHOT_CHUNK_BYTES_MAX, () => `snapshot chunk of ${bytes.byteLength} B exceeds ${SNAPSHOT_CHUNK_BYTES_MAX}`);
  return bytes;
}

/** Decodes and validates one chunk from the network; throws CorruptRecordError on anything malformed. */
export function decodeChunk(bytes: Uint8Array): Chunk {
  if (bytes.byteLength > SNAPSHOT_CHUNK_BYTES_MAX) throw new CorruptRecordError(`snapshot chunk of ${bytes.byteLength} B exceeds ${SNAPSHOT_CHUNK_BYTES_MAX}`);
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    throw new CorruptRecordError(`undecodable snapshot chunk (${(err as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length !== 9) throw new CorruptRecordError('snapshot chunk is not a 9-tuple');
  const [format, shardId, index, term, conf, bounds, seq, last, pairs] = raw as unknown[];
  if (format !== SNAPSHOT_FORMAT) throw new CorruptRecordError(`snapshot format ${String(format)}; expected ${SNAPSHOT_FORMAT}`);
  for (const [name, n] of [['shardId', shardId], ['index', index], ['term', term], ['seq', seq]] as const) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new CorruptRecordError(`snapshot chunk ${name} ${String(n)}`);
  }
  if (typeof last !== 'boolean') throw new CorruptRecordError('snapshot chunk lacks the last flag');
  if (
    !Array.isArray(bounds) ||
    bounds.length !== 3 ||
    !(bounds[0] instanceof Uint8Array) ||
    !(bounds[1] === null || bounds[1] instanceof Uint8Array) ||
    !Number.isSafeInteger(bounds[2]) ||
    (bounds[2] as number) < 1
  ) {
    throw new CorruptRecordError('snapshot chunk bounds are malformed');
  }
  if (!Array.isArray(pairs)) throw new CorruptRecordError('snapshot chunk pairs are not a list');
  const start = bounds[0] as Uint8Array;
  const end = bounds[1] as Uint8Array | null;
  let previous: Uint8Array | undefined;
  for (const [i, p] of (pairs as unknown[]).entries()) {
    if (!Array.isArray(p) || (p.length !== 3 && !(p.length === 4 && typeof p[3] === 'string')) || !(p[0] instanceof Uint8Array) || !Number.isSafeInteger(p[1]) || !(p[2] instanceof Uint8Array)) {
      throw new CorruptRecordError(`snapshot chunk ${String(seq)} holds a malformed pair at ${i}`);
    }
    const [key, version] = p as SnapshotPair;
    // Installing a key outside the range would overwrite another range's data on this node.
    if (key.byteLength === 0 || key.byteLength > KEY_BYTES_MAX) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} has a key of ${key.byteLength} B`);
    if (compareBytes(key, start) < 0 || (end !== null && compareBytes(key, end) >= 0)) {
      throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} key ${hex(key)} is outside [${hex(start)}, ${end === null ? '∞' : hex(end)})`);
    }
    if (previous !== undefined && compareBytes(previous, key) >= 0) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} key ${hex(key)} is not after ${hex(previous)}`);
    if (version < 1) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} has version ${version}`);
    previous = key;
  }
  return {
    header: {
      format,
      shardId: shardId as GroupId,
      index: index as number,
      term: term as number,
      confState: decodeConfState(conf),
      bounds: { start: bounds[0] as Uint8Array, end: bounds[1] as Uint8Array | null },
      epoch: bounds[2] as number,
    },
    seq: seq as number,
    last,
    pairs: pairs as SnapshotPair[],
  };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export function sameHeader(a: SnapshotHeader, b: SnapshotHeader): boolean {
  const sameBytes = (x: Uint8Array | null, y: Uint8Array | null) => (x === null || y === null ? x === y : compareBytes(x, y) === 0);
  return (
    a.format === b.format &&
    a.shardId === b.shardId &&
    a.index === b.index &&
    a.term === b.term &&
    JSON.stringify(encodeConfState(a.confState)) === JSON.stringify(encodeConfState(b.confState)) &&
    sameBytes(a.bounds.start, b.bounds.start) &&
    sameBytes(a.bounds.end, b.bounds.end) &&
    a.epoch === b.epoch
  );
}
