import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { BatchDecodeError } from '../src/host/message-codec.js';
import { RPC_SEGMENT_FORMAT, SEGMENT_FORMAT, decodeFrame, encodeRpcSegment, encodeSegment, splitSegment } from '../src/host/node-batch.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
const concat = (...parts: Uint8Array[]) => Buffer.concat(parts);

describe('node frames', () => {
  it('carry several cores’ segments and an rpc segment in one payload, decoded in order', () => {
    const a = encodeSegment({ heartbeats: [4, 7, 10, 3, 1], heartbeatResponses: [5, 7, 2], sections: [4, Uint8Array.of(1, 2)], wakes: [9], notLeading: [] });
    const b = encodeSegment({ heartbeats: [], heartbeatResponses: [], sections: [], wakes: [6], notLeading: [] });
    const r = encodeRpcSegment({ requests: [1, Uint8Array.of(7)], responses: [2, 1, Uint8Array.of(8)] });
    const frame = decodeFrame(concat(a, r, b));
    expect(frame.segments.map((s) => s.wakes)).toEqual([[9], [6]]);
    expect(frame.segments[0]!.heartbeats).toEqual([4, 7, 10, 3, 1]);
    expect(frame.rpcs).toHaveLength(1);
    expect(frame.rpcs[0]!.requests[0]).toBe(1);
    expect(decodeFrame(new Uint8Array(0))).toEqual({ segments: [], rpcs: [], leases: [] });
  });

  it('splits a segment by the core that owns each shard', () => {
    const s = { heartbeats: [1, 5, 5, 1, 0, 2, 5, 5, 1, 0], heartbeatResponses: [2, 5, 1], sections: [1, Uint8Array.of(1), 2, Uint8Array.of(2)], wakes: [1], notLeading: [] };
    const parts = splitSegment(s, (shard) => shard % 2, 2);
    expect(parts[1]!.heartbeats).toEqual([1, 5, 5, 1, 0]);
    expect(parts[0]!.heartbeats).toEqual([2, 5, 5, 1, 0]);
    expect(parts[0]!.heartbeatResponses).toEqual([2, 5, 1]);
    expect(parts[1]!.wakes).toEqual([1]);
  });

  it.each([
    ['garbage', Uint8Array.of(0xc1, 0xff, 0x00)],
    ['a segment of the wrong shape', packr.pack([SEGMENT_FORMAT, [], []])],
    ['an unknown format', packr.pack([7, [], [], [], []])],
    ['a heartbeat tuple cut short', packr.pack([SEGMENT_FORMAT, [1, 2, 3], [], [], []])],
    ['a heartbeat for shard 0', packr.pack([SEGMENT_FORMAT, [0, 1, 1, 1, 0], [], [], []])],
    ['a quiesce flag of 2', packr.pack([SEGMENT_FORMAT, [1, 1, 1, 1, 2], [], [], []])],
    ['a section body that is not bytes', packr.pack([SEGMENT_FORMAT, [], [], [3, 'x'], []])],
    ['a negative wake', packr.pack([SEGMENT_FORMAT, [], [], [], [-1]])],
    ['an rpc request without payload', packr.pack([RPC_SEGMENT_FORMAT, [1], []])],
    ['an rpc request id of 0', packr.pack([RPC_SEGMENT_FORMAT, [0, Uint8Array.of(1)], []])],
    ['an rpc response status of 3', packr.pack([RPC_SEGMENT_FORMAT, [], [1, 3, Uint8Array.of(1)]])],
  ])('refuse %s with BATCH_MALFORMED', (_name, bytes) => {
    expect(() => decodeFrame(bytes)).toThrow(BatchDecodeError);
  });
});
