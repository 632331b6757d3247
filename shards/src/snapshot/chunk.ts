import { assert, type ConfState, type GroupId, type LogIndex, type Term } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { CONTENT_TYPE_BYTES_MAX, CONTENT_TYPE_OVERHEAD_BYTES, VALUE_BYTES_MAX, type FrozenRange } from '../kv/command.js';
import { decodeFrozen, encodeFrozen } from '../kv/merge.js';
import { KEY_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_PAIR_BYTES_MAX, decodeConfState, encodeConfState, type RangeBounds } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';

// A snapshot's wire format: chunks of at most SNAPSHOT_CHUNK_BYTES_MAX, each
// carrying the whole header, so every chunk can be checked against the
// snapshot it claims to belong to. reader.ts produces them from the store,
// installer.ts stages and installs them.
//
// A chunk's pairs travel as one binary body of records exactly as the data
// sub-database stores them: the sender copies each record's bytes out of its
// read transaction, the receiver stages the body as one value and installs
// each record's bytes as they came. No value is decoded or encoded on the
// way (format 1 decoded and re-encoded every pair four times, and a transfer
// ran at the speed of msgpack). The receiver still checks every pair — key
// in bounds and ascending, record shaped as the state machine reads it —
// since the bytes come from the network and go into its data unread.

/** Chunks of another format are refused (decodeChunk): a node never installs a layout it does not know. */
export const SNAPSHOT_FORMAT = 2;

export interface SnapshotHeader {
  readonly format: number;
  readonly shardId: GroupId;
  readonly index: LogIndex;
  readonly term: Term;
  readonly confState: ConfState;
  readonly bounds: RangeBounds;
  /** The range's epoch at the snapshot (kv/range.ts). */
  readonly epoch: number;
  /** Present when the range is frozen for a merge (kv/merge.ts): the replica installing it is frozen too. */
  readonly frozen?: FrozenRange | undefined;
}

/**
 * A pair in a body: key length (u16, big-endian), key, record length (u32),
 * record. Beside the record's own msgpack framing (≤ 15 B: fixarray, version,
 * bin header), that is 6 B: 21 B against the 16 SNAPSHOT_PAIR_OVERHEAD_BYTES
 * that VALUE_BYTES_MAX leaves, so a body may exceed SNAPSHOT_PAIR_BYTES_MAX by
 * the difference, which the chunk header's allowance holds.
 */
const PAIR_FRAMING_BYTES = 6;
const RECORD_FRAMING_BYTES_MAX = 15;
/** Largest body: the largest pair VALUE_BYTES_MAX allows fits, and so does everything smaller. */
export const CHUNK_BODY_BYTES_MAX = SNAPSHOT_PAIR_BYTES_MAX + 16;
assert(
  PAIR_FRAMING_BYTES + KEY_BYTES_MAX + RECORD_FRAMING_BYTES_MAX + VALUE_BYTES_MAX + CONTENT_TYPE_OVERHEAD_BYTES + CONTENT_TYPE_BYTES_MAX <= CHUNK_BODY_BYTES_MAX,
  'the largest pair must fit one chunk body',
);

export interface Chunk {
  readonly header: SnapshotHeader;
  readonly seq: number;
  readonly last: boolean;
  /** Pairs in key order, framed as above. */
  readonly body: Uint8Array;
  /** Checked by decodeChunk: the body's first and last keys (undefined when it holds none). */
  readonly firstKey?: Uint8Array | undefined;
  readonly lastKey?: Uint8Array | undefined;
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeChunk(c: Chunk): Uint8Array {
  const h = c.header;
  const bytes = packr.pack([h.format, h.shardId, h.index, h.term, encodeConfState(h.confState), h.frozen === undefined ? [h.bounds.start, h.bounds.end, h.epoch] : [h.bounds.start, h.bounds.end, h.epoch, encodeFrozen(h.frozen)], c.seq, c.last, c.body]);
  assert(bytes.byteLength <= SNAPSHOT_CHUNK_BYTES_MAX, () => `snapshot chunk of ${bytes.byteLength} B exceeds ${SNAPSHOT_CHUNK_BYTES_MAX}`);
  return bytes;
}

/** Fills chunk bodies pair by pair, in one reused buffer: take() hands out a view valid until the next add. */
export class ChunkBodyWriter {
  private readonly buffer = Buffer.allocUnsafe(CHUNK_BODY_BYTES_MAX);
  private used = 0;

  /** Whether a pair of this key and record still fits the body. */
  fits(key: Uint8Array, record: Uint8Array): boolean {
    return this.used + PAIR_FRAMING_BYTES + key.byteLength + record.byteLength <= CHUNK_BODY_BYTES_MAX;
  }

  add(key: Uint8Array, record: Uint8Array): void {
    assert(this.fits(key, record), () => `snapshot pair of ${key.byteLength} + ${record.byteLength} B does not fit a chunk body`);
    let at = this.buffer.writeUInt16BE(key.byteLength, this.used);
    this.buffer.set(key, at);
    at = this.buffer.writeUInt32BE(record.byteLength, at + key.byteLength);
    this.buffer.set(record, at);
    this.used = at + record.byteLength;
  }

  take(): Uint8Array {
    const body = this.buffer.subarray(0, this.used);
    this.used = 0;
    return body;
  }
}

/** Calls `each` for every pair of a body, with views into it; throws CorruptRecordError where the framing is broken. */
export function forEachPair(body: Uint8Array, each: (key: Buffer, record: Buffer) => void): void {
  const b = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  let at = 0;
  while (at < b.length) {
    if (at + 2 > b.length) throw new CorruptRecordError(`snapshot chunk body ends inside a key length at ${at}`);
    const keyEnd = at + 2 + b.readUInt16BE(at);
    if (keyEnd + 4 > b.length) throw new CorruptRecordError(`snapshot chunk body ends inside a key at ${at}`);
    const recordEnd = keyEnd + 4 + b.readUInt32BE(keyEnd);
    if (recordEnd > b.length) throw new CorruptRecordError(`snapshot chunk body ends inside a record at ${keyEnd}`);
    each(b.subarray(at + 2, keyEnd), b.subarray(keyEnd + 4, recordEnd));
    at = recordEnd;
  }
}

/**
 * Why `record` is not a data record as the state machine reads it
 * (state-machine.ts: msgpack [version ≥ 1, bin] or [version, bin, str]),
 * or undefined. Read from the bytes, without decoding the value.
 */
export function recordProblem(record: Uint8Array): string | undefined {
  const b = Buffer.from(record.buffer, record.byteOffset, record.byteLength);
  if (b.length < 1 || (b[0] !== 0x92 && b[0] !== 0x93)) return 'is not a 2- or 3-element array';
  let at = 1;
  const need = (n: number) => at + n <= b.length;
  if (!need(1)) return 'ends before its version';
  const t = b[at]!;
  let version: number;
  if (t <= 0x7f) [version, at] = [t, at + 1];
  else if (t === 0xcc && need(2)) [version, at] = [b[at + 1]!, at + 2];
  else if (t === 0xcd && need(3)) [version, at] = [b.readUInt16BE(at + 1), at + 3];
  else if (t === 0xce && need(5)) [version, at] = [b.readUInt32BE(at + 1), at + 5];
  else if (t === 0xcf && need(9)) [version, at] = [Number(b.readBigUInt64BE(at + 1)), at + 9];
  else if (t === 0xcb && need(9)) [version, at] = [b.readDoubleBE(at + 1), at + 9];
  else return 'has no unsigned version';
  if (!Number.isSafeInteger(version) || version < 1) return `has version ${version}`;
  if (!need(1)) return 'ends before its value';
  const v = b[at]!;
  let length: number;
  if (v === 0xc4 && need(2)) [length, at] = [b[at + 1]!, at + 2];
  else if (v === 0xc5 && need(3)) [length, at] = [b.readUInt16BE(at + 1), at + 3];
  else if (v === 0xc6 && need(5)) [length, at] = [b.readUInt32BE(at + 1), at + 5];
  else return 'has a value that is not bytes';
  if (!need(length)) return 'ends inside its value';
  at += length;
  if (b[0] === 0x93) {
    if (!need(1)) return 'ends before its content type';
    const s = b[at]!;
    if (s >= 0xa0 && s <= 0xbf) [length, at] = [s - 0xa0, at + 1];
    else if (s === 0xd9 && need(2)) [length, at] = [b[at + 1]!, at + 2];
    // msgpackr picks a string's header from its longest UTF-8 length (3 B a character), so a short one may have a long header.
    else if (s === 0xda && need(3)) [length, at] = [b.readUInt16BE(at + 1), at + 3];
    else if (s === 0xdb && need(5)) [length, at] = [b.readUInt32BE(at + 1), at + 5];
    else return 'has a content type that is not a string';
    if (!need(length)) return 'ends inside its content type';
    at += length;
  }
  return at === b.length ? undefined : `has ${b.length - at} B after its fields`;
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
  const [format, shardId, index, term, conf, bounds, seq, last, body] = raw as unknown[];
  if (format !== SNAPSHOT_FORMAT) throw new CorruptRecordError(`snapshot format ${String(format)}; expected ${SNAPSHOT_FORMAT}`);
  for (const [name, n] of [['shardId', shardId], ['index', index], ['term', term], ['seq', seq]] as const) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new CorruptRecordError(`snapshot chunk ${name} ${String(n)}`);
  }
  if (typeof last !== 'boolean') throw new CorruptRecordError('snapshot chunk lacks the last flag');
  if (
    !Array.isArray(bounds) ||
    (bounds.length !== 3 && bounds.length !== 4) ||
    !(bounds[0] instanceof Uint8Array) ||
    !(bounds[1] === null || bounds[1] instanceof Uint8Array) ||
    !Number.isSafeInteger(bounds[2]) ||
    (bounds[2] as number) < 1
  ) {
    throw new CorruptRecordError('snapshot chunk bounds are malformed');
  }
  // A freeze rides as the bounds' fourth element (decodeFrozen throws CorruptRecordError on a bad one).
  const frozen = bounds.length === 4 ? decodeFrozen(shardId as number, bounds[3]) : undefined;
  if (!(body instanceof Uint8Array) || body.byteLength > CHUNK_BODY_BYTES_MAX) throw new CorruptRecordError('snapshot chunk body is not bytes within the body limit');
  const start = bounds[0] as Uint8Array;
  const end = bounds[1] as Uint8Array | null;
  let firstKey: Uint8Array | undefined;
  let previous: Uint8Array | undefined;
  let i = 0;
  forEachPair(body, (key, record) => {
    // Installing a key outside the range would overwrite another range's data on this node.
    if (key.byteLength === 0 || key.byteLength > KEY_BYTES_MAX) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} has a key of ${key.byteLength} B`);
    if (compareBytes(key, start) < 0 || (end !== null && compareBytes(key, end) >= 0)) {
      throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} key ${hex(key)} is outside [${hex(start)}, ${end === null ? '∞' : hex(end)})`);
    }
    if (previous !== undefined && compareBytes(previous, key) >= 0) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} key ${hex(key)} is not after ${hex(previous)}`);
    const problem = recordProblem(record);
    if (problem !== undefined) throw new CorruptRecordError(`snapshot chunk ${String(seq)} pair ${i} (key ${hex(key)}): the record ${problem}`);
    firstKey ??= key;
    previous = key;
    i++;
  });
  return {
    header: {
      format,
      shardId: shardId as GroupId,
      index: index as number,
      term: term as number,
      confState: decodeConfState(conf),
      bounds: { start: bounds[0] as Uint8Array, end: bounds[1] as Uint8Array | null },
      epoch: bounds[2] as number,
      ...(frozen === undefined ? {} : { frozen }),
    },
    seq: seq as number,
    last,
    body,
    firstKey,
    lastKey: previous,
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
    a.epoch === b.epoch &&
    JSON.stringify(a.frozen === undefined ? null : encodeFrozen(a.frozen)) === JSON.stringify(b.frozen === undefined ? null : encodeFrozen(b.frozen))
  );
}
