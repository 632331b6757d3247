import { groupId, nodeId, type Entry, type Message } from '@flotilla/core';
import { BATCH_BYTES_MAX } from '@flotilla/transport';
import { describe, expect, it } from 'vitest';
import { decodeBatch } from '../src/host/message-codec.js';
import { SEGMENT_BYTES_MAX, decodeFrame, encodeRpcSegments, joinSegments } from '../src/host/node-batch.js';
import { Outbox, PEER_APPEND_BYTES_PER_FLUSH_MAX } from '../src/host/outbox.js';

const entry = (index: number, bytes: number): Entry => ({ index, term: 2, type: 'normal', data: new Uint8Array(bytes).fill(index % 251) });

function append(to: number, firstIndex: number, entryCount: number, entryBytes: number): Message {
  const entries = Array.from({ length: entryCount }, (_, i) => entry(firstIndex + i, entryBytes));
  return { type: 'append', from: nodeId(1), to: nodeId(to), term: 2, index: firstIndex - 1, logTerm: 2, entries, commit: firstIndex - 1 };
}

/** Every shard message in the frames, in order, as (shard, first entry index). */
function appendsIn(frames: readonly Uint8Array[]): [number, number][] {
  const out: [number, number][] = [];
  for (const f of frames) {
    for (const s of decodeFrame(f).segments) {
      for (let i = 0; i < s.sections.length; i += 2) {
        for (const e of decodeBatch(s.sections[i + 1] as Uint8Array)) {
          if (e.message.type === 'append') out.push([e.shardId, e.message.entries[0]!.index]);
        }
      }
    }
  }
  return out;
}

describe('outbox', () => {
  it('splits one destination’s traffic into segments no larger than SEGMENT_BYTES_MAX, heartbeats first, order kept', () => {
    const outbox = new Outbox();
    const sent: [number, number][] = [];
    // Six shards with 1.5 MiB appends each: one flush's budget takes some, the rest are refused.
    let taken = 0;
    for (let shard = 1; shard <= 6; shard++) {
      outbox.add(groupId(shard), { type: 'heartbeat', from: nodeId(1), to: nodeId(2), term: 2, commit: 4, round: 1 }, { quiesce: false });
      if (outbox.add(groupId(shard), append(2, 10, 3, 512 * 1024), { quiesce: false })) {
        sent.push([shard, 10]);
        taken++;
      }
    }
    expect(taken).toBeGreaterThan(0);
    expect(taken).toBeLessThan(6);
    const segments = outbox.take().map(([to, segment]) => {
      expect(to).toBe(2);
      return segment;
    });
    expect(segments.length).toBeGreaterThan(1);
    for (const s of segments) expect(s.byteLength).toBeLessThanOrEqual(SEGMENT_BYTES_MAX);
    const first = decodeFrame(segments[0]!).segments[0]!;
    expect(first.heartbeats.length / 5).toBe(6);
    const frames = joinSegments(segments);
    for (const f of frames) expect(f.frame.byteLength).toBeLessThanOrEqual(BATCH_BYTES_MAX);
    const parts = frames.flatMap((f) => f.parts);
    expect(parts.length === segments.length && parts.every((p, i) => p === segments[i])).toBe(true);
    expect(appendsIn(frames.map((f) => f.frame))).toEqual(sent);
    expect(outbox.isEmpty()).toBe(true);
  });

  it('always takes the first append to a peer in a flush, however large, and bounds the rest', () => {
    const outbox = new Outbox();
    expect(outbox.add(groupId(1), append(3, 1, 1, PEER_APPEND_BYTES_PER_FLUSH_MAX), { quiesce: false })).toBe(true);
    expect(outbox.add(groupId(2), append(3, 1, 1, 10), { quiesce: false })).toBe(false);
    // Other peers have budgets of their own; non-append messages are always taken.
    expect(outbox.add(groupId(2), append(2, 1, 1, 10), { quiesce: false })).toBe(true);
    expect(outbox.add(groupId(2), { type: 'appendResponse', from: nodeId(1), to: nodeId(3), term: 2, index: 4, reject: false, rejectHint: 0, logTerm: 0, incarnation: 1 }, { quiesce: false })).toBe(true);
  });

  it('splits an rpc outbox into segments that fit, keeping every request and response', () => {
    const payload = new Uint8Array(900 * 1024);
    const requests: (number | Uint8Array)[] = [];
    const responses: (number | Uint8Array)[] = [];
    for (let id = 1; id <= 20; id++) requests.push(id, payload);
    for (let id = 21; id <= 30; id++) responses.push(id, 1, payload);
    const segments = encodeRpcSegments({ requests, responses });
    for (const s of segments) expect(s.segment.byteLength).toBeLessThanOrEqual(SEGMENT_BYTES_MAX);
    const decoded = segments.map((s) => decodeFrame(s.segment).rpcs);
    // Each segment names the requests it carries (a refused frame fails exactly those).
    for (const [i, rpcs] of decoded.entries()) expect(rpcs.flatMap((r) => r.requests.filter((_, j) => j % 2 === 0))).toEqual(segments[i]!.requestIds);
    expect(decoded.flat().flatMap((r) => r.requests.filter((_, i) => i % 2 === 0))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(decoded.flat().flatMap((r) => r.responses.filter((_, i) => i % 3 === 0))).toEqual(Array.from({ length: 10 }, (_, i) => i + 21));
    expect(encodeRpcSegments({ requests: [], responses: [] })).toEqual([]);
  });
});
