import { describe, expect, it } from 'vitest';
import {
  ABORT_REASON_BYTES_MAX,
  CLUSTER_ID_BYTES,
  FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FRAME_KIND_CODES,
  FRAME_VERSION,
  FrameDecoder,
  FrameError,
  SNAPSHOT_CHUNK_BYTES_MAX,
  encodeFrame,
  encodeFrames,
  encodedFrameBytes,
  isClusterId,
  type Frame,
  type FrameErrorCode,
} from '../src/frame.js';

/** mulberry32: a tiny seeded PRNG so every fuzz case replays from its seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function randomBytes(next: () => number, byteCount: number): Buffer {
  const out = Buffer.allocUnsafe(byteCount);
  for (let i = 0; i < byteCount; i++) out[i] = next() & 0xff;
  return out;
}

function decodeAll(chunks: readonly Uint8Array[], decoder = new FrameDecoder()): Frame[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) decoder.push(chunk, (f) => frames.push(f));
  decoder.finish();
  return frames;
}

/** Frames compare by value; decoded payloads are Buffers, encoded ones may be plain Uint8Arrays. */
function normalize(frame: Frame): unknown {
  const out: Record<string, unknown> = { ...frame };
  for (const [key, value] of Object.entries(out)) if (value instanceof Uint8Array) out[key] = Buffer.from(value).toString('hex');
  return out;
}

const bytes = (...values: number[]) => Uint8Array.from(values);
const CLUSTER = '00112233445566778899aabbccddeeff';

const EVERY_KIND: readonly Frame[] = [
  { kind: 'hello', nodeId: 7, clusterId: CLUSTER },
  { kind: 'hello', nodeId: 0xffff_ffff, clusterId: 'ff'.repeat(CLUSTER_ID_BYTES) },
  { kind: 'batch', batch: bytes(1, 2, 3) },
  { kind: 'batch', batch: new Uint8Array(0) },
  { kind: 'snapshot-open', streamId: 1, header: bytes(9, 8, 7) },
  { kind: 'snapshot-open', streamId: 2, header: new Uint8Array(0) },
  { kind: 'snapshot-chunk', streamId: 3, chunk: bytes(0xff, 0) },
  { kind: 'snapshot-end', streamId: 4 },
  { kind: 'snapshot-abort', streamId: 5, reason: 'disk full on node 3 — ünïcode' },
  { kind: 'snapshot-abort', streamId: 6, reason: '' },
  { kind: 'snapshot-credit', streamId: 7, chunkCount: 4 },
  { kind: 'snapshot-done', streamId: 8 },
];

describe('frame codec round trip', () => {
  it('covers every kind', () => {
    const kinds = new Set(EVERY_KIND.map((f) => f.kind));
    expect([...kinds].sort()).toEqual(Object.keys(FRAME_KIND_CODES).sort());
  });

  it.each(EVERY_KIND.map((f) => [f.kind, f] as const))('round-trips %s', (_kind, frame) => {
    const encoded = encodeFrame(frame);
    expect(encoded.length).toBe(encodedFrameBytes(frame));
    expect(encoded.readUInt32BE(0)).toBe(encoded.length - 4);
    expect(encoded[4]).toBe(FRAME_VERSION);
    expect(encoded[5]).toBe(FRAME_KIND_CODES[frame.kind]);
    expect(decodeAll([encoded]).map(normalize)).toEqual([normalize(frame)]);
  });

  it('decodes every frame from one coalesced buffer, in order', () => {
    const encoded = encodeFrames(EVERY_KIND);
    expect(decodeAll([encoded]).map(normalize)).toEqual(EVERY_KIND.map(normalize));
  });

  it('decodes when fed one byte at a time', () => {
    const encoded = encodeFrames(EVERY_KIND);
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    for (let i = 0; i < encoded.length; i++) decoder.push(encoded.subarray(i, i + 1), (f) => frames.push(f));
    decoder.finish();
    expect(frames.map(normalize)).toEqual(EVERY_KIND.map(normalize));
  });

  it('decodes under every two-way split and random multi-way splits (seeded)', () => {
    const encoded = encodeFrames(EVERY_KIND);
    for (let cut = 0; cut <= encoded.length; cut++) {
      expect(decodeAll([encoded.subarray(0, cut), encoded.subarray(cut)]).map(normalize)).toEqual(EVERY_KIND.map(normalize));
    }
    const next = prng(42);
    for (let round = 0; round < 200; round++) {
      const chunks: Buffer[] = [];
      let at = 0;
      while (at < encoded.length) {
        const take = 1 + (next() % 17);
        chunks.push(encoded.subarray(at, at + take));
        at += take;
      }
      expect(decodeAll(chunks).map(normalize)).toEqual(EVERY_KIND.map(normalize));
    }
  });

  it('hands out a payload within one chunk as a view, without copying', () => {
    const encoded = encodeFrame({ kind: 'batch', batch: bytes(1, 2, 3, 4) });
    const [frame] = decodeAll([encoded]);
    expect(frame?.kind).toBe('batch');
    if (frame?.kind !== 'batch') return;
    expect(frame.batch.buffer).toBe(encoded.buffer);
  });

  it('carries a maximal snapshot chunk', () => {
    const chunk = randomBytes(prng(1), SNAPSHOT_CHUNK_BYTES_MAX);
    const frames = decodeAll([encodeFrame({ kind: 'snapshot-chunk', streamId: 1, chunk })]);
    expect(frames[0]?.kind === 'snapshot-chunk' && Buffer.from(frames[0].chunk).equals(chunk)).toBe(true);
  });
});

describe('frame encoder asserts on frames we must never build', () => {
  it.each<[string, Frame]>([
    ['hello node id 0', { kind: 'hello', nodeId: 0, clusterId: CLUSTER }],
    ['fractional node id', { kind: 'hello', nodeId: 1.5, clusterId: CLUSTER }],
    ['short cluster id', { kind: 'hello', nodeId: 1, clusterId: 'abcd' }],
    ['uppercase cluster id', { kind: 'hello', nodeId: 1, clusterId: CLUSTER.toUpperCase() }],
    ['stream id 0', { kind: 'snapshot-end', streamId: 0 }],
    ['credit of 0', { kind: 'snapshot-credit', streamId: 1, chunkCount: 0 }],
    ['oversized chunk', { kind: 'snapshot-chunk', streamId: 1, chunk: new Uint8Array(SNAPSHOT_CHUNK_BYTES_MAX + 1) }],
    ['oversized reason', { kind: 'snapshot-abort', streamId: 1, reason: 'x'.repeat(ABORT_REASON_BYTES_MAX + 1) }],
  ])('%s', (_name, frame) => {
    expect(() => encodeFrame(frame)).toThrow(/ASSERTION|must|exceeds|integer|hex/);
  });
});

/** A raw frame: length computed unless given, then version, kind, payload. */
function rawFrame(options: { version?: number; kind: number; payload?: number[]; length?: number }): Buffer {
  const payload = Buffer.from(options.payload ?? []);
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(options.length ?? payload.length + 2, 0);
  header[4] = options.version ?? FRAME_VERSION;
  header[5] = options.kind;
  return Buffer.concat([header, payload]);
}

const K = FRAME_KIND_CODES;
const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const clusterBytes = [...Buffer.from(CLUSTER, 'hex')];

const BAD_INPUTS: readonly [string, Buffer, FrameErrorCode][] = [
  ['length above FRAME_BYTES_MAX', Buffer.from(u32(FRAME_BYTES_MAX + 1)), 'FRAME_TOO_LARGE'],
  ['length 0xffffffff', Buffer.from([0xff, 0xff, 0xff, 0xff]), 'FRAME_TOO_LARGE'],
  ['snapshot chunk above SNAPSHOT_CHUNK_BYTES_MAX', rawFrame({ kind: K['snapshot-chunk'], payload: [...u32(1), ...new Array<number>(SNAPSHOT_CHUNK_BYTES_MAX + 1).fill(0)] }), 'FRAME_TOO_LARGE'],
  ['abort reason above ABORT_REASON_BYTES_MAX', rawFrame({ kind: K['snapshot-abort'], payload: [...u32(1), ...new Array<number>(ABORT_REASON_BYTES_MAX + 1).fill(0x61)] }), 'FRAME_TOO_LARGE'],
  ['version 0', rawFrame({ version: 0, kind: K.batch }), 'FRAME_VERSION_UNKNOWN'],
  ['version 1 (the hello without a cluster id)', rawFrame({ version: 1, kind: K.hello, payload: u32(1) }), 'FRAME_VERSION_UNKNOWN'],
  ['version 3', rawFrame({ version: 3, kind: K.batch }), 'FRAME_VERSION_UNKNOWN'],
  ['version 255', rawFrame({ version: 255, kind: K.hello, payload: u32(1) }), 'FRAME_VERSION_UNKNOWN'],
  ['kind 0', rawFrame({ kind: 0 }), 'FRAME_KIND_UNKNOWN'],
  ['kind 9', rawFrame({ kind: 9 }), 'FRAME_KIND_UNKNOWN'],
  ['kind 255', rawFrame({ kind: 255 }), 'FRAME_KIND_UNKNOWN'],
  ['length 0', Buffer.from([0, 0, 0, 0]), 'FRAME_MALFORMED'],
  ['length 1', Buffer.from([0, 0, 0, 1, FRAME_VERSION]), 'FRAME_MALFORMED'],
  ['hello without node id', rawFrame({ kind: K.hello }), 'FRAME_MALFORMED'],
  ['hello with 3-byte node id', rawFrame({ kind: K.hello, payload: [0, 0, 1] }), 'FRAME_MALFORMED'],
  ['hello without cluster id (the version 1 layout)', rawFrame({ kind: K.hello, payload: u32(1) }), 'FRAME_MALFORMED'],
  ['hello with a short cluster id', rawFrame({ kind: K.hello, payload: [...u32(1), ...clusterBytes.slice(1)] }), 'FRAME_MALFORMED'],
  ['hello with node id 0', rawFrame({ kind: K.hello, payload: [...u32(0), ...clusterBytes] }), 'FRAME_MALFORMED'],
  ['hello with trailing bytes', rawFrame({ kind: K.hello, payload: [...u32(1), ...clusterBytes, 0] }), 'FRAME_MALFORMED'],
  ['snapshot-open without stream id', rawFrame({ kind: K['snapshot-open'], payload: [0, 1] }), 'FRAME_MALFORMED'],
  ['snapshot-chunk with stream id 0', rawFrame({ kind: K['snapshot-chunk'], payload: [...u32(0), 1] }), 'FRAME_MALFORMED'],
  ['snapshot-end with trailing bytes', rawFrame({ kind: K['snapshot-end'], payload: [...u32(1), 0] }), 'FRAME_MALFORMED'],
  ['snapshot-done too short', rawFrame({ kind: K['snapshot-done'], payload: [0, 0, 1] }), 'FRAME_MALFORMED'],
  ['snapshot-credit of 0 chunks', rawFrame({ kind: K['snapshot-credit'], payload: [...u32(1), ...u32(0)] }), 'FRAME_MALFORMED'],
  ['snapshot-credit too short', rawFrame({ kind: K['snapshot-credit'], payload: u32(1) }), 'FRAME_MALFORMED'],
  ['snapshot-abort with invalid UTF-8', rawFrame({ kind: K['snapshot-abort'], payload: [...u32(1), 0xc3, 0x28] }), 'FRAME_MALFORMED'],
];

describe('frame decoder validates bad input with a stable code', () => {
  it.each(BAD_INPUTS)('%s → $2', (_name, input, code) => {
    const decoder = new FrameDecoder();
    let thrown: unknown;
    try {
      decoder.push(input, () => undefined);
      decoder.finish();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(FrameError);
    expect((thrown as FrameError).code).toBe(code);
    expect((thrown as FrameError).retryable).toBe(false);
  });

  it.each(BAD_INPUTS)('%s → $2, also when fed byte by byte', (_name, input, code) => {
    const decoder = new FrameDecoder();
    let thrown: unknown;
    try {
      for (let i = 0; i < input.length; i++) decoder.push(input.subarray(i, i + 1), () => undefined);
      decoder.finish();
    } catch (err) {
      thrown = err;
    }
    expect((thrown as FrameError).code).toBe(code);
  });

  it('refuses an oversized length before its payload arrives', () => {
    const decoder = new FrameDecoder();
    expect(() => decoder.push(Buffer.from(u32(FRAME_BYTES_MAX + 1)), () => undefined)).toThrow(FrameError);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('honours a lower frameBytesMax', () => {
    const decoder = new FrameDecoder({ frameBytesMax: 10 });
    expect(() => decoder.push(encodeFrame({ kind: 'batch', batch: new Uint8Array(9) }), () => undefined)).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }),
    );
  });

  it('reports a stream that ends mid-frame as FRAME_MALFORMED', () => {
    const encoded = encodeFrame({ kind: 'batch', batch: bytes(1, 2, 3) });
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    decoder.push(encoded.subarray(0, encoded.length - 1), (f) => frames.push(f));
    expect(frames).toEqual([]);
    expect(() => decoder.finish()).toThrow(expect.objectContaining({ code: 'FRAME_MALFORMED' }));
  });

  it('delivers the good frames before a bad one, then stays failed', () => {
    const good = encodeFrame({ kind: 'hello', nodeId: 3, clusterId: CLUSTER });
    const bad = rawFrame({ version: 9, kind: K.batch });
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    expect(() => decoder.push(Buffer.concat([good, bad]), (f) => frames.push(f))).toThrow(FrameError);
    expect(frames.map(normalize)).toEqual([normalize({ kind: 'hello', nodeId: 3, clusterId: CLUSTER })]);
    expect(() => decoder.push(good, (f) => frames.push(f))).toThrow(expect.objectContaining({ code: 'FRAME_VERSION_UNKNOWN' }));
    expect(frames).toHaveLength(1);
  });
});

describe('frame decoder fuzz (seeded)', () => {
  const SEED_COUNT = 300;

  it(`random bytes never throw anything but FrameError (${SEED_COUNT} seeds)`, () => {
    for (let seed = 1; seed <= SEED_COUNT; seed++) {
      const next = prng(seed);
      const decoder = new FrameDecoder({ frameBytesMax: 1 + (next() % 4096) + 1 });
      const input = randomBytes(next, next() % 2048);
      try {
        let at = 0;
        while (at < input.length) {
          const take = 1 + (next() % 64);
          decoder.push(input.subarray(at, at + take), () => undefined);
          at += take;
        }
        decoder.finish();
      } catch (err) {
        if (!(err instanceof FrameError)) throw new Error(`seed ${seed}: ${String(err)}`);
      }
    }
  });

  it(`mutated valid streams never throw anything but FrameError (${SEED_COUNT} seeds)`, () => {
    const valid = encodeFrames(EVERY_KIND);
    for (let seed = 1; seed <= SEED_COUNT; seed++) {
      const next = prng(seed);
      const input = Buffer.from(valid);
      const flips = 1 + (next() % 4);
      for (let i = 0; i < flips; i++) input[next() % input.length] = next() & 0xff;
      const decoder = new FrameDecoder();
      try {
        decoder.push(input, () => undefined);
        decoder.finish();
      } catch (err) {
        if (!(err instanceof FrameError)) throw new Error(`seed ${seed}: ${String(err)}`);
      }
    }
  });
});

describe('hello frame (version 2)', () => {
  it('lays out u32 node id then the 16 cluster id bytes, and decodes the id as lowercase hex', () => {
    const encoded = encodeFrame({ kind: 'hello', nodeId: 0x01020304, clusterId: CLUSTER });
    expect([...encoded]).toEqual([...u32(2 + 4 + CLUSTER_ID_BYTES), FRAME_VERSION, K.hello, 1, 2, 3, 4, ...clusterBytes]);
    expect(decodeAll([encoded])).toEqual([{ kind: 'hello', nodeId: 0x01020304, clusterId: CLUSTER }]);
  });

  it('says why a version 1 frame is refused', () => {
    expect(() => decodeAll([rawFrame({ version: 1, kind: K.hello, payload: u32(1) })])).toThrow(/version 1, expected 2: the sender runs an earlier release, whose hello carries no cluster id/);
  });

  it.each<[unknown, boolean]>([
    [CLUSTER, true],
    ['0'.repeat(32), true],
    [CLUSTER.toUpperCase(), false],
    [CLUSTER.slice(1), false],
    [`${CLUSTER}0`, false],
    ['g'.repeat(32), false],
    [42, false],
  ])('isClusterId(%j) is %s', (value, expected) => {
    expect(isClusterId(value)).toBe(expected);
  });
});
