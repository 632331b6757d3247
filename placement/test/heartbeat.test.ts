import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeStoreHeartbeat, encodeStoreHeartbeat, type StoreHeartbeat } from '../src/heartbeat.js';

const b = (s: string) => Buffer.from(s);
const packr = new Packr({ useRecords: false, moreTypes: false });

const HEARTBEAT: StoreHeartbeat = {
  nodeId: 3,
  usedBytes: 123_456,
  availableBytes: 9_000_000,
  session: 77,
  seq: 12,
  base: 10,
  replicas: [{ rangeId: 1, epoch: 4 }, { rangeId: 7, epoch: 0 }],
  removed: [9],
  described: [{ rangeId: 5, epoch: 3, start: b('m'), end: null }],
  leading: [
    {
      rangeId: 1,
      start: b(''),
      end: b('\u0000\u0001'),
      epoch: 4,
      term: 9,
      voters: [1, 2, 3],
      votersOutgoing: [],
      learners: [4],
      lastIndex: 812,
      progress: [{ nodeId: 1, match: 812 }, { nodeId: 4, match: 0 }],
      keyCount: 10,
      sizeBytes: 700,
      writeCount: 50,
      readCount: 20,
      sizeSplitKey: b('m'),
      loadSplitKey: undefined,
    },
  ],
};

describe('store heartbeat codec', () => {
  it('round-trips', () => {
    const back = decodeStoreHeartbeat(encodeStoreHeartbeat(HEARTBEAT));
    expect({
      ...back,
      leading: back.leading.map((r) => ({ ...r, start: Buffer.from(r.start), end: r.end && Buffer.from(r.end), sizeSplitKey: r.sizeSplitKey && Buffer.from(r.sizeSplitKey) })),
      described: back.described?.map((d) => ({ ...d, start: Buffer.from(d.start) })),
    }).toEqual(HEARTBEAT);
  });

  it('takes the 10-field form of a node built before replicas were described: it says nothing of `described`', () => {
    const t = packr.unpack(encodeStoreHeartbeat(HEARTBEAT)) as unknown[];
    expect(t).toHaveLength(11);
    expect(decodeStoreHeartbeat(packr.pack(t.slice(0, 10))).described).toBeUndefined();
    expect(decodeStoreHeartbeat(encodeStoreHeartbeat({ ...HEARTBEAT, described: undefined })).described).toEqual([]);
  });

  it('carries replicas off core 0 with their core, sparsely, and takes the 9-field form of a node built before', () => {
    const withCores: StoreHeartbeat = { ...HEARTBEAT, replicas: [{ rangeId: 1, epoch: 4, core: 1 }, { rangeId: 7, epoch: 0 }] };
    const bytes = encodeStoreHeartbeat(withCores);
    expect(decodeStoreHeartbeat(bytes).replicas).toEqual(withCores.replicas);
    expect((packr.unpack(bytes) as unknown[])[9]).toEqual([1, 1]);
    const t = packr.unpack(encodeStoreHeartbeat(HEARTBEAT)) as unknown[];
    expect(t[9]).toEqual([]);
    expect(decodeStoreHeartbeat(packr.pack(t.slice(0, 9))).replicas).toEqual(HEARTBEAT.replicas);
  });

  it('round-trips a frozen range, and takes a 16-field led range from a node built before merges', () => {
    const frozen = { targetRangeId: 2, index: 30, term: 4, epoch: 5 };
    const withFreeze: StoreHeartbeat = { ...HEARTBEAT, leading: [{ ...HEARTBEAT.leading[0]!, frozen }] };
    expect(decodeStoreHeartbeat(encodeStoreHeartbeat(withFreeze)).leading[0]!.frozen).toEqual(frozen);
    const t = packr.unpack(encodeStoreHeartbeat(HEARTBEAT)) as unknown[];
    (t[4] as unknown[][])[0]!.splice(16);
    expect(decodeStoreHeartbeat(packr.pack(t)).leading[0]!.frozen).toBeUndefined();
  });

  const valid = packr.unpack(encodeStoreHeartbeat(HEARTBEAT)) as unknown[];
  const edited = (edit: (t: unknown[]) => void) => {
    const t = structuredClone(valid);
    edit(t);
    return packr.pack(t);
  };
  const led = (t: unknown[]) => (t[4] as unknown[][])[0]!;
  it.each<[string, Uint8Array]>([
    ['garbage', Uint8Array.of(0xc1)],
    ['not a tuple', packr.pack({ nodeId: 1 })],
    ['node id 0', edited((t) => (t[0] = 0))],
    ['negative bytes', edited((t) => (t[1] = -1))],
    ['odd replica list', edited((t) => (t[3] = [1, 2, 3]))],
    ['a replica of range 0', edited((t) => (t[3] = [0, 1]))],
    ['a led range of 15 fields', edited((t) => void led(t).splice(15))],
    ['odd replica core pairs', edited((t) => (t[9] = [1]))],
    ['a negative core', edited((t) => (t[9] = [1, -1]))],
    ['a freeze of three numbers', edited((t) => (led(t)[16] = [2, 30, 4]))],
    ['a freeze at index 0', edited((t) => (led(t)[16] = [2, 0, 4, 5]))],
    ['a fractional epoch', edited((t) => (led(t)[3] = 1.5))],
    ['a voter id 0', edited((t) => (led(t)[5] = [0, 1]))],
    ['a start that is not bytes', edited((t) => (led(t)[1] = 'a'))],
    ['odd progress pairs', edited((t) => (led(t)[9] = [1]))],
    ['the old 5-tuple', edited((t) => t.splice(5))],
    ['a seq of 0', edited((t) => (t[6] = 0))],
    ['a base at or after its seq', edited((t) => (t[7] = 12))],
    ['a full heartbeat with removed replicas', edited((t) => (t[7] = 0))],
    ['a removed replica of range 0', edited((t) => (t[8] = [0]))],
    ['a described replica of three fields', edited((t) => (t[10] = [5, 3, b('m')]))],
    ['a described replica whose start is not bytes', edited((t) => (t[10] = [5, 3, 'm', null]))],
    ['a described replica of range 0', edited((t) => (t[10] = [0, 3, b('m'), null]))],
    ['a 12-tuple', edited((t) => t.push([]))],
  ])('refuses %s with MetaRecordError', (_name, bytes) => {
    expect(() => decodeStoreHeartbeat(bytes)).toThrow(expect.objectContaining({ code: 'META_RECORD_MALFORMED' }) as Error);
  });
});
