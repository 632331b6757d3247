// The forwarded form of a prepared replica's store hint, and of a merge step: one range's merge command, carried in its Raft form and checked on
// arrival as an entry is; anything else in its place is refused as malformed.
import { Packr } from 'msgpackr';
import { encodeCommand } from '@flotilla/shards';
import { describe, expect, it } from 'vitest';
import { decodeRangeOp, encodeRangeOp, type RangeOp } from '../src/kv/range-ops.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
const b = (s: string) => Buffer.from(s);

describe('range op codec: merge steps', () => {
  it.each<RangeOp>([
    { kind: 'mergeStep', rangeId: 9, command: { op: 'prepareMerge', key: b('m'), targetShardId: 8, epoch: 3, voters: [1, 2, 3] } },
    { kind: 'mergeStep', rangeId: 8, command: { op: 'commitMerge', key: b('a'), epoch: 4, sourceShardId: 9, sourceEnd: null, sourceEpoch: 4, freezeIndex: 30, freezeTerm: 2, voters: [1, 2, 3] } },
    { kind: 'mergeStep', rangeId: 8, command: { op: 'fenceMerge', key: b('a'), epoch: 4 } },
    { kind: 'mergeStep', rangeId: 9, command: { op: 'rollbackMerge', key: b('m'), epoch: 4, targetShardId: 8 } },
  ])('round-trips a $command.op', (op) => {
    const back = decodeRangeOp(encodeRangeOp(op));
    expect(JSON.parse(JSON.stringify(back))).toEqual(JSON.parse(JSON.stringify(op)));
  });

  it.each<[string, unknown[]]>([
    ['a put in a merge step', ['mergeStep', 9, encodeCommand({ op: 'put', key: b('k'), value: b('v') })]],
    ['undecodable command bytes', ['mergeStep', 9, Uint8Array.of(1, 2, 3)]],
    ['a command that is not bytes', ['mergeStep', 9, 'prepareMerge']],
    ['a missing command', ['mergeStep', 9]],
  ])('refuses %s as RANGE_OP_MALFORMED', (_name, raw) => {
    expect(() => decodeRangeOp(packr.pack(raw))).toThrow(expect.objectContaining({ code: 'RANGE_OP_MALFORMED' }) as Error);
  });
});

describe('range op codec: a replica prepared next to a neighbour', () => {
  it('round-trips the hint, and the form without one', () => {
    expect(decodeRangeOp(encodeRangeOp({ kind: 'prepareReplica', rangeId: 9, colocateWith: 8 }))).toEqual({ kind: 'prepareReplica', rangeId: 9, colocateWith: 8 });
    expect(decodeRangeOp(encodeRangeOp({ kind: 'prepareReplica', rangeId: 9 }))).toEqual({ kind: 'prepareReplica', rangeId: 9 });
  });

  it.each<[string, unknown]>([
    ['a range id of 0', 0],
    ['a negative one', -3],
    ['a string', '8'],
  ])('refuses a hint that is %s', (_name, hint) => {
    expect(() => decodeRangeOp(packr.pack(['prepareReplica', 9, hint]))).toThrow(expect.objectContaining({ code: 'RANGE_OP_MALFORMED' }) as Error);
  });
});
