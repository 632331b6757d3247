/**
 * The wire format: a pure codec, bytes in and frames out, no I/O (the shape of
 * node-postgres's pg-protocol parser). Connection management lives in
 * tcp-transport.ts.
 *
 *   u32 BE length (bytes that follow) | u8 version | u8 kind | payload
 *
 * The encoder asserts (a bad frame we build is our bug); the decoder validates
 * (a bad frame we receive is bad network input) and throws `FrameError`.
 */
import { FlotillaError, assert, unreachable } from '@flotilla/core';

/**
 * Version 2: the hello carries the sender's cluster id. A node refuses any
 * other version, so a node of an earlier release (whose hello names only a
 * node id) is refused at its first frame and counted (TcpTransport stats,
 * `hellosRefusedVersion`): every member of a cluster runs the same version.
 */
export const FRAME_VERSION = 2;
/** u32 length prefix. */
export const FRAME_LENGTH_BYTES = 4;
/** Length prefix + version byte + kind byte. */
export const FRAME_HEADER_BYTES = FRAME_LENGTH_BYTES + 2;
/**
 * Largest value of the length field (version + kind + payload). A batch frame
 * carries everything one node sends another in one loop turn; Raft's
 * appendBytesMax is 1 MiB per append, so 16 MiB fits ~15 groups each sending a
 * full append in the same turn plus heartbeats. It also bounds what one
 * connection can make us buffer before we can reject it.
 */
export const FRAME_BYTES_MAX = 16 * 1024 * 1024;
/** Bytes of one snapshot chunk: the shards layer's SNAPSHOT_CHUNK_BYTES_MAX (1 MiB). */
export const SNAPSHOT_CHUNK_BYTES_MAX = 1024 * 1024;
/** Bytes of a snapshot header (range descriptor, conf state, indexes): small, 1 MiB is generous. */
export const SNAPSHOT_HEADER_BYTES_MAX = 1024 * 1024;
/** Bytes of a cluster id: 128 bits of a hash, so independently made clusters never share one. */
export const CLUSTER_ID_BYTES = 16;
/** u32 node id + cluster id. */
const HELLO_PAYLOAD_BYTES = 4 + CLUSTER_ID_BYTES;
/** UTF-8 bytes of an abort reason: a log line, not a document. */
export const ABORT_REASON_BYTES_MAX = 1024;
/** Largest batch payload that fits one frame (length field minus version and kind). */
export const BATCH_BYTES_MAX = FRAME_BYTES_MAX - 2;
/** u32 stream id that starts every snapshot payload. */
const STREAM_ID_BYTES = 4;
const U32_MAX = 0xffff_ffff;

assert(FRAME_BYTES_MAX <= U32_MAX, 'FRAME_BYTES_MAX must fit the u32 length prefix');
assert(SNAPSHOT_CHUNK_BYTES_MAX + STREAM_ID_BYTES + 2 <= FRAME_BYTES_MAX, 'a full snapshot chunk must fit one frame');
assert(SNAPSHOT_HEADER_BYTES_MAX + STREAM_ID_BYTES + 2 <= FRAME_BYTES_MAX, 'a full snapshot header must fit one frame');
assert(ABORT_REASON_BYTES_MAX + STREAM_ID_BYTES + 2 <= FRAME_BYTES_MAX, 'a full abort reason must fit one frame');

/** Kind byte on the wire. Never renumber: add new kinds (and bump FRAME_VERSION if old peers must refuse them). */
export const FRAME_KIND_CODES = {
  hello: 1,
  batch: 2,
  'snapshot-open': 3,
  'snapshot-chunk': 4,
  'snapshot-end': 5,
  'snapshot-abort': 6,
  'snapshot-credit': 7,
  'snapshot-done': 8,
} as const;

export type FrameKind = keyof typeof FRAME_KIND_CODES;

const FRAME_KINDS_BY_CODE: ReadonlyMap<number, FrameKind> = new Map(
  (Object.entries(FRAME_KIND_CODES) as [FrameKind, number][]).map(([kind, code]) => [code, kind]),
);

/**
 * A cluster's identity, fixed when it is bootstrapped: CLUSTER_ID_BYTES as
 * lowercase hex. A node talks only to nodes that present its own.
 */
export type ClusterId = string;

/** Whether `value` is a well-formed cluster id (lowercase hex of CLUSTER_ID_BYTES bytes). */
export function isClusterId(value: unknown): value is ClusterId {
  return typeof value === 'string' && value.length === CLUSTER_ID_BYTES * 2 && /^[0-9a-f]+$/.test(value);
}

/** First frame on every connection: who is talking, and in which cluster. */
export interface HelloFrame { readonly kind: 'hello'; readonly nodeId: number; readonly clusterId: ClusterId }
/** Opaque bytes for the shards layer (one per send()). */
export interface BatchFrame { readonly kind: 'batch'; readonly batch: Uint8Array }
export interface SnapshotOpenFrame { readonly kind: 'snapshot-open'; readonly streamId: number; readonly header: Uint8Array }
export interface SnapshotChunkFrame { readonly kind: 'snapshot-chunk'; readonly streamId: number; readonly chunk: Uint8Array }
/** Sender → receiver: no more chunks. */
export interface SnapshotEndFrame { readonly kind: 'snapshot-end'; readonly streamId: number }
/** Either direction: the stream is abandoned. */
export interface SnapshotAbortFrame { readonly kind: 'snapshot-abort'; readonly streamId: number; readonly reason: string }
/** Receiver → sender: the sender may send `chunkCount` more chunks. */
export interface SnapshotCreditFrame { readonly kind: 'snapshot-credit'; readonly streamId: number; readonly chunkCount: number }
/** Receiver → sender: every chunk and the end were consumed. */
export interface SnapshotDoneFrame { readonly kind: 'snapshot-done'; readonly streamId: number }

export type Frame =
  | HelloFrame
  | BatchFrame
  | SnapshotOpenFrame
  | SnapshotChunkFrame
  | SnapshotEndFrame
  | SnapshotAbortFrame
  | SnapshotCreditFrame
  | SnapshotDoneFrame;

export type FrameErrorCode =
  | 'FRAME_TOO_LARGE'
  | 'FRAME_VERSION_UNKNOWN'
  | 'FRAME_KIND_UNKNOWN'
  | 'FRAME_MALFORMED'
  /** A well-formed frame the connection's state does not allow (e.g. a batch before hello). Raised by the connection layer. */
  | 'FRAME_UNEXPECTED';

/** Bad bytes from the network. Never retryable on the same connection: it is closed. */
export class FrameError extends FlotillaError {
  readonly retryable = false;
  constructor(
    readonly code: FrameErrorCode,
    message: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------- encoding

function payloadBytes(frame: Frame): number {
  switch (frame.kind) {
    case 'hello':
      return HELLO_PAYLOAD_BYTES;
    case 'batch':
      return frame.batch.byteLength;
    case 'snapshot-open':
      return STREAM_ID_BYTES + frame.header.byteLength;
    case 'snapshot-chunk':
      return STREAM_ID_BYTES + frame.chunk.byteLength;
    case 'snapshot-end':
    case 'snapshot-done':
      return STREAM_ID_BYTES;
    case 'snapshot-abort':
      return STREAM_ID_BYTES + Buffer.byteLength(frame.reason, 'utf8');
    case 'snapshot-credit':
      return STREAM_ID_BYTES + 4;
    default:
      return unreachable(frame, 'frame kind');
  }
}

function assertU32Positive(value: number, what: string): void {
  assert(Number.isInteger(value), () => `${what} ${value} is not an integer`);
  assert(value > 0, () => `${what} ${value} must be positive`);
  assert(value <= U32_MAX, () => `${what} ${value} exceeds u32`);
}

function assertEncodable(frame: Frame): void {
  switch (frame.kind) {
    case 'hello':
      assertU32Positive(frame.nodeId, 'hello node id');
      assert(isClusterId(frame.clusterId), () => `hello cluster id ${JSON.stringify(frame.clusterId)} is not ${CLUSTER_ID_BYTES} bytes of lowercase hex`);
      return;
    case 'batch':
      assert(frame.batch.byteLength <= BATCH_BYTES_MAX, () => `batch of ${frame.batch.byteLength} bytes exceeds BATCH_BYTES_MAX ${BATCH_BYTES_MAX}`);
      return;
    case 'snapshot-open':
      assertU32Positive(frame.streamId, 'stream id');
      assert(frame.header.byteLength <= SNAPSHOT_HEADER_BYTES_MAX, () => `snapshot header of ${frame.header.byteLength} bytes exceeds SNAPSHOT_HEADER_BYTES_MAX ${SNAPSHOT_HEADER_BYTES_MAX}`);
      return;
    case 'snapshot-chunk':
      assertU32Positive(frame.streamId, 'stream id');
      assert(frame.chunk.byteLength <= SNAPSHOT_CHUNK_BYTES_MAX, () => `snapshot chunk of ${frame.chunk.byteLength} bytes exceeds SNAPSHOT_CHUNK_BYTES_MAX ${SNAPSHOT_CHUNK_BYTES_MAX}`);
      return;
    case 'snapshot-end':
    case 'snapshot-done':
      assertU32Positive(frame.streamId, 'stream id');
      return;
    case 'snapshot-abort':
      assertU32Positive(frame.streamId, 'stream id');
      assert(Buffer.byteLength(frame.reason, 'utf8') <= ABORT_REASON_BYTES_MAX, () => `abort reason of ${Buffer.byteLength(frame.reason, 'utf8')} bytes exceeds ABORT_REASON_BYTES_MAX ${ABORT_REASON_BYTES_MAX}`);
      return;
    case 'snapshot-credit':
      assertU32Positive(frame.streamId, 'stream id');
      assertU32Positive(frame.chunkCount, 'credit chunk count');
      return;
    default:
      unreachable(frame, 'frame kind');
  }
}

/** Bytes `frame` takes on the wire, length prefix included. */
export function encodedFrameBytes(frame: Frame): number {
  return FRAME_HEADER_BYTES + payloadBytes(frame);
}

/** Writes `frame` into `target` at `offset` and returns the offset after it. */
export function writeFrame(frame: Frame, target: Buffer, offset: number): number {
  assertEncodable(frame);
  const payloadLength = payloadBytes(frame);
  const end = offset + FRAME_HEADER_BYTES + payloadLength;
  assert(end <= target.length, () => `frame of ${end - offset} bytes does not fit target (${target.length - offset} bytes left)`);
  target.writeUInt32BE(2 + payloadLength, offset);
  target[offset + 4] = FRAME_VERSION;
  target[offset + 5] = FRAME_KIND_CODES[frame.kind];
  let at = offset + FRAME_HEADER_BYTES;
  switch (frame.kind) {
    case 'hello':
      at = target.writeUInt32BE(frame.nodeId, at);
      target.write(frame.clusterId, at, CLUSTER_ID_BYTES, 'hex');
      break;
    case 'batch':
      target.set(frame.batch, at);
      break;
    case 'snapshot-open':
      at = target.writeUInt32BE(frame.streamId, at);
      target.set(frame.header, at);
      break;
    case 'snapshot-chunk':
      at = target.writeUInt32BE(frame.streamId, at);
      target.set(frame.chunk, at);
      break;
    case 'snapshot-end':
    case 'snapshot-done':
      target.writeUInt32BE(frame.streamId, at);
      break;
    case 'snapshot-abort':
      at = target.writeUInt32BE(frame.streamId, at);
      target.write(frame.reason, at, 'utf8');
      break;
    case 'snapshot-credit':
      at = target.writeUInt32BE(frame.streamId, at);
      target.writeUInt32BE(frame.chunkCount, at);
      break;
    default:
      unreachable(frame, 'frame kind');
  }
  return end;
}

export function encodeFrame(frame: Frame): Buffer {
  const target = Buffer.allocUnsafe(encodedFrameBytes(frame));
  const end = writeFrame(frame, target, 0);
  assert(end === target.length, () => `encoded ${end} bytes, expected ${target.length}`);
  return target;
}

/** Encodes several frames into one Buffer (one allocation, one socket write). */
export function encodeFrames(frames: readonly Frame[]): Buffer {
  let total = 0;
  for (const frame of frames) total += encodedFrameBytes(frame);
  const target = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const frame of frames) offset = writeFrame(frame, target, offset);
  assert(offset === total, () => `encoded ${offset} bytes, expected ${total}`);
  return target;
}

// ---------------------------------------------------------------- decoding

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });

function malformed(kind: FrameKind, detail: string): FrameError {
  return new FrameError('FRAME_MALFORMED', `${kind} frame: ${detail}`);
}

function readStreamId(kind: FrameKind, payload: Buffer): number {
  if (payload.length < STREAM_ID_BYTES) throw malformed(kind, `payload of ${payload.length} bytes is shorter than the ${STREAM_ID_BYTES}-byte stream id`);
  const streamId = payload.readUInt32BE(0);
  if (streamId === 0) throw malformed(kind, 'stream id 0 (must be positive)');
  return streamId;
}

function expectPayloadBytes(kind: FrameKind, payload: Buffer, expected: number): void {
  if (payload.length !== expected) throw malformed(kind, `payload of ${payload.length} bytes, expected ${expected}`);
}

/** Validates and decodes one frame's payload. Payload bytes are views into `payload`, not copies. */
function decodePayload(kind: FrameKind, payload: Buffer): Frame {
  switch (kind) {
    case 'hello': {
      expectPayloadBytes(kind, payload, HELLO_PAYLOAD_BYTES);
      const nodeId = payload.readUInt32BE(0);
      if (nodeId === 0) throw malformed(kind, 'node id 0 (must be positive)');
      const clusterId = payload.toString('hex', 4, HELLO_PAYLOAD_BYTES);
      assert(isClusterId(clusterId), () => `decoded cluster id ${clusterId} is not ${CLUSTER_ID_BYTES} bytes of hex`);
      return { kind, nodeId, clusterId };
    }
    case 'batch':
      return { kind, batch: payload };
    case 'snapshot-open': {
      const streamId = readStreamId(kind, payload);
      const header = payload.subarray(STREAM_ID_BYTES);
      if (header.length > SNAPSHOT_HEADER_BYTES_MAX) throw new FrameError('FRAME_TOO_LARGE', `snapshot header of ${header.length} bytes exceeds ${SNAPSHOT_HEADER_BYTES_MAX}`);
      return { kind, streamId, header };
    }
    case 'snapshot-chunk': {
      const streamId = readStreamId(kind, payload);
      const chunk = payload.subarray(STREAM_ID_BYTES);
      if (chunk.length > SNAPSHOT_CHUNK_BYTES_MAX) throw new FrameError('FRAME_TOO_LARGE', `snapshot chunk of ${chunk.length} bytes exceeds ${SNAPSHOT_CHUNK_BYTES_MAX}`);
      return { kind, streamId, chunk };
    }
    case 'snapshot-end':
    case 'snapshot-done': {
      expectPayloadBytes(kind, payload, STREAM_ID_BYTES);
      return { kind, streamId: readStreamId(kind, payload) };
    }
    case 'snapshot-abort': {
      const streamId = readStreamId(kind, payload);
      const reasonBytes = payload.subarray(STREAM_ID_BYTES);
      if (reasonBytes.length > ABORT_REASON_BYTES_MAX) throw new FrameError('FRAME_TOO_LARGE', `abort reason of ${reasonBytes.length} bytes exceeds ${ABORT_REASON_BYTES_MAX}`);
      let reason: string;
      try {
        reason = utf8Fatal.decode(reasonBytes);
      } catch {
        throw malformed(kind, 'reason is not valid UTF-8');
      }
      return { kind, streamId, reason };
    }
    case 'snapshot-credit': {
      expectPayloadBytes(kind, payload, STREAM_ID_BYTES + 4);
      const streamId = readStreamId(kind, payload);
      const chunkCount = payload.readUInt32BE(STREAM_ID_BYTES);
      if (chunkCount === 0) throw malformed(kind, 'credit of 0 chunks (must be positive)');
      return { kind, streamId, chunkCount };
    }
    default:
      return unreachable(kind, 'frame kind');
  }
}

function versionMismatch(version: number): string {
  if (version === 1) return `frame version 1, expected ${FRAME_VERSION}: the sender runs an earlier release, whose hello carries no cluster id (every member must run this version)`;
  return `frame version ${version}, expected ${FRAME_VERSION}`;
}

export interface FrameDecoderOptions {
  /** Largest length field accepted; defaults to FRAME_BYTES_MAX and may only be lower. */
  readonly frameBytesMax?: number;
}

/**
 * Incremental decoder: feed it socket chunks split or coalesced anyhow and it
 * calls `onFrame` for each complete frame, in order. Header fields are checked
 * as soon as their bytes arrive, so an oversized length or an unknown version
 * is refused before its payload is buffered. After the first FrameError the
 * decoder is dead: every later push throws the same error.
 *
 * Payloads handed out are views into the pushed chunks (no copy) when a frame
 * arrives within one chunk; a frame spread over chunks is copied once.
 */
export class FrameDecoder {
  private readonly frameBytesMax: number;
  /** Received chunks; those before `headIndex` are consumed, and chunks[headIndex] is consumed up to `headOffset`. */
  private chunks: Buffer[] = [];
  private headIndex = 0;
  private headOffset = 0;
  private buffered = 0;
  private failure: FrameError | null = null;

  constructor(options: FrameDecoderOptions = {}) {
    this.frameBytesMax = options.frameBytesMax ?? FRAME_BYTES_MAX;
    assert(this.frameBytesMax >= 2 && this.frameBytesMax <= FRAME_BYTES_MAX, () => `frameBytesMax ${this.frameBytesMax} must be in [2, ${FRAME_BYTES_MAX}]`);
  }

  /** Bytes received but not yet part of a complete frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array, onFrame: (frame: Frame) => void): void {
    if (this.failure !== null) throw this.failure;
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.length;
    try {
      this.drain(onFrame);
    } catch (err) {
      if (err instanceof FrameError) this.fail(err);
      throw err;
    }
  }

  /** The stream ended: throws FRAME_MALFORMED if it stopped mid-frame. */
  finish(): void {
    if (this.failure !== null) throw this.failure;
    if (this.buffered > 0) this.fail(new FrameError('FRAME_MALFORMED', `stream ended inside a frame (${this.buffered} bytes of an incomplete frame)`));
  }

  private fail(err: FrameError): never {
    this.failure = err;
    this.chunks = [];
    this.headIndex = 0;
    this.headOffset = 0;
    this.buffered = 0;
    throw err;
  }

  private drain(onFrame: (frame: Frame) => void): void {
    while (this.buffered >= FRAME_LENGTH_BYTES) {
      const header = this.peek(Math.min(this.buffered, FRAME_HEADER_BYTES));
      const length = header.readUInt32BE(0);
      if (length < 2) throw new FrameError('FRAME_MALFORMED', `frame length ${length} is shorter than version and kind (2 bytes)`);
      if (length > this.frameBytesMax) throw new FrameError('FRAME_TOO_LARGE', `frame length ${length} exceeds ${this.frameBytesMax} bytes`);
      if (header.length < FRAME_LENGTH_BYTES + 1) return;
      const version = header[FRAME_LENGTH_BYTES]!;
      if (version !== FRAME_VERSION) throw new FrameError('FRAME_VERSION_UNKNOWN', versionMismatch(version));
      if (header.length < FRAME_HEADER_BYTES) return;
      const kindCode = header[FRAME_LENGTH_BYTES + 1]!;
      const kind = FRAME_KINDS_BY_CODE.get(kindCode);
      if (kind === undefined) throw new FrameError('FRAME_KIND_UNKNOWN', `frame kind ${kindCode} is unknown (version ${version})`);
      if (this.buffered < FRAME_LENGTH_BYTES + length) return;
      const frameBytes = this.take(FRAME_LENGTH_BYTES + length);
      onFrame(decodePayload(kind, frameBytes.subarray(FRAME_HEADER_BYTES)));
    }
  }

  /** The first `byteCount` buffered bytes (byteCount ≤ FRAME_HEADER_BYTES, so copying is cheap). */
  private peek(byteCount: number): Buffer {
    const head = this.chunks[this.headIndex]!;
    if (head.length - this.headOffset >= byteCount) return head.subarray(this.headOffset, this.headOffset + byteCount);
    const out = Buffer.allocUnsafe(byteCount);
    let filled = 0;
    let offset = this.headOffset;
    for (let i = this.headIndex; i < this.chunks.length; i++) {
      const chunk = this.chunks[i]!;
      filled += chunk.copy(out, filled, offset, Math.min(chunk.length, offset + byteCount - filled));
      offset = 0;
      if (filled === byteCount) break;
    }
    assert(filled === byteCount, () => `peeked ${filled} of ${byteCount} bytes`);
    return out;
  }

  /** Removes and returns the first `byteCount` buffered bytes. */
  private take(byteCount: number): Buffer {
    assert(byteCount <= this.buffered, () => `take ${byteCount} bytes with ${this.buffered} buffered`);
    this.buffered -= byteCount;
    const head = this.chunks[this.headIndex]!;
    if (head.length - this.headOffset >= byteCount) {
      const out = head.subarray(this.headOffset, this.headOffset + byteCount);
      this.headOffset += byteCount;
      if (this.headOffset === head.length) this.advanceHead();
      return out;
    }
    const out = Buffer.allocUnsafe(byteCount);
    let filled = 0;
    while (filled < byteCount) {
      const chunk = this.chunks[this.headIndex]!;
      const copied = chunk.copy(out, filled, this.headOffset, Math.min(chunk.length, this.headOffset + byteCount - filled));
      filled += copied;
      this.headOffset += copied;
      if (this.headOffset === chunk.length) this.advanceHead();
    }
    return out;
  }

  /** Drops the fully consumed head chunk. Index-based, so byte-by-byte input stays linear; compacts once half the array is dead. */
  private advanceHead(): void {
    this.headIndex += 1;
    this.headOffset = 0;
    if (this.headIndex === this.chunks.length) {
      this.chunks = [];
      this.headIndex = 0;
    } else if (this.headIndex >= 1024 && this.headIndex * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.headIndex);
      this.headIndex = 0;
    }
  }
}
