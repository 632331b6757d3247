import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  FIRST_ALLOCATED_NODE_ID,
  FIRST_ALLOCATED_RANGE_ID,
  KEYED_ID_MAX,
  META_RANGE_END,
  META_RANGE_ID,
  META_RANGE_START,
  MetaRecordError,
  NODE_ID_ALLOCATOR_KEY,
  NODE_KEYS,
  RANGE_END_KEYS,
  RANGE_ID_ALLOCATOR_KEY,
  RANGE_KEYS,
  SYSTEM_PREFIX,
  USER_KEY_MIN,
  decodeCounter,
  decodeNodeRecord,
  decodeRangeDescriptor,
  decodeRangeEndEntry,
  decodeRangeEndKey,
  encodeCounter,
  encodeNodeRecord,
  encodeRangeDescriptor,
  encodeRangeEndEntry,
  isSystemKey,
  nodeKey,
  rangeEndKey,
  rangeEndKeyAfter,
  rangeKey,
  type NodeRecord,
} from '../src/meta.js';
import { compareKeys, type RangeDescriptor } from '../src/range.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
const bytes = (...b: number[]) => Uint8Array.from(b);
const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');
const within = (key: Uint8Array, span: { start: Uint8Array; end: Uint8Array }) => compareKeys(key, span.start) >= 0 && compareKeys(key, span.end) < 0;

describe('meta key layout', () => {
  it('builds range and node keys as prefix, family byte, 4-byte big-endian id', () => {
    expect(hex(rangeKey(1))).toBe('00007200000001');
    expect(hex(rangeKey(0x01020304))).toBe('00007201020304');
    expect(hex(nodeKey(7))).toBe('00006e00000007');
    expect(hex(RANGE_ID_ALLOCATOR_KEY)).toBe(hex(Buffer.concat([SYSTEM_PREFIX, Buffer.from('arange')])));
    expect(hex(NODE_ID_ALLOCATOR_KEY)).toBe(hex(Buffer.concat([SYSTEM_PREFIX, Buffer.from('anode')])));
  });

  it('orders range keys by id, as bytes', () => {
    const ordered = [1, 2, 255, 256, 65_536, FIRST_ALLOCATED_RANGE_ID * 1000, KEYED_ID_MAX].map(rangeKey);
    for (let i = 1; i < ordered.length; i++) expect(compareKeys(ordered[i - 1]!, ordered[i]!), `${i}`).toBeLessThan(0);
    expect(compareKeys(rangeKey(1), rangeKey(2))).toBeLessThan(0);
    expect(compareKeys(rangeKey(2), rangeKey(256))).toBeLessThan(0);
  });

  it('keeps each key family inside its scan bounds and out of the other', () => {
    for (const id of [1, 2, 256, FIRST_ALLOCATED_RANGE_ID, KEYED_ID_MAX]) {
      expect(within(rangeKey(id), RANGE_KEYS), `range ${id}`).toBe(true);
      expect(within(rangeKey(id), NODE_KEYS), `range ${id}`).toBe(false);
      expect(within(nodeKey(id), NODE_KEYS), `node ${id}`).toBe(true);
      expect(within(nodeKey(id), RANGE_KEYS), `node ${id}`).toBe(false);
    }
    for (const key of [RANGE_ID_ALLOCATOR_KEY, NODE_ID_ALLOCATOR_KEY]) {
      expect(within(key, RANGE_KEYS)).toBe(false);
      expect(within(key, NODE_KEYS)).toBe(false);
    }
  });

  it('puts every system key below USER_KEY_MIN, inside the meta range', () => {
    const keys = [rangeKey(1), rangeKey(KEYED_ID_MAX), nodeKey(1), nodeKey(KEYED_ID_MAX), RANGE_ID_ALLOCATOR_KEY, NODE_ID_ALLOCATOR_KEY, RANGE_KEYS.end, NODE_KEYS.end];
    for (const key of keys) {
      expect(compareKeys(key, USER_KEY_MIN), hex(key)).toBeLessThan(0);
      expect(isSystemKey(key), hex(key)).toBe(true);
      expect(compareKeys(key, META_RANGE_START) >= 0 && compareKeys(key, META_RANGE_END) < 0, hex(key)).toBe(true);
    }
    expect(hex(META_RANGE_END)).toBe(hex(USER_KEY_MIN));
    expect(META_RANGE_ID).toBeLessThan(FIRST_ALLOCATED_RANGE_ID);
    expect(FIRST_ALLOCATED_NODE_ID).toBe(1024);
  });

  it.each([
    ['', true],
    ['00', true],
    ['0000', true],
    ['0000ffffffff', true],
    ['0001', false],
    ['000100', false],
    ['0002', false],
    ['01', false],
    ['61', false],
    ['ff', false],
  ])('isSystemKey(0x%s) is %s', (key, system) => {
    expect(isSystemKey(Buffer.from(key, 'hex'))).toBe(system);
  });

  it('builds range end keys as prefix, family, tag 01 and the end; the end of the key space as tag 02 alone', () => {
    expect(hex(rangeEndKey(bytes(0x00, 0x01)))).toBe('0000650100' + '01');
    expect(hex(rangeEndKey(bytes(0xff)))).toBe('00006501ff');
    expect(hex(rangeEndKey(null))).toBe('00006502');
    expect(hex(rangeEndKeyAfter(bytes(0x40)))).toBe('0000650140' + '00');
  });

  it('orders range end keys as their ends, the end of the key space after every finite end', () => {
    // Ends that a naive byte concatenation could misorder: prefixes, 0x00 and 0xff tails, and long keys.
    const ends: (Uint8Array | null)[] = [bytes(0x00), bytes(0x00, 0x01), bytes(0x00, 0x01, 0x00), bytes(0x01), bytes(0x01, 0x00), bytes(0x02), bytes(0xff), bytes(0xff, 0xff), new Uint8Array(1900).fill(0xff), null];
    const keys = ends.map((end) => rangeEndKey(end));
    for (let i = 1; i < keys.length; i++) expect(compareKeys(keys[i - 1]!, keys[i]!), `${i}`).toBeLessThan(0);
    for (const [i, key] of keys.entries()) {
      expect(within(key, RANGE_END_KEYS), `${i}`).toBe(true);
      expect(isSystemKey(key), `${i}`).toBe(true);
      const end = decodeRangeEndKey(key);
      expect(end === null ? null : hex(end), `${i}`).toBe(ends[i] === null ? null : hex(ends[i]!));
    }
    for (const key of [rangeKey(1), rangeKey(KEYED_ID_MAX), nodeKey(1), RANGE_ID_ALLOCATOR_KEY, NODE_ID_ALLOCATOR_KEY]) expect(within(key, RANGE_END_KEYS), hex(key)).toBe(false);
  });

  // The lookup's scan: from rangeEndKeyAfter(k), the first end key is the first end strictly after k.
  it.each([
    ['a key below every end', '10', '20'],
    ['a key equal to an end (its range starts there)', '20', '2000'],
    ['a key just below an end', '1fff', '20'],
    ['a key between an end and its extension', '2000', '200001'],
    ['a key past every finite end', 'ff', null],
  ] as const)('the first end key at or past rangeEndKeyAfter is the first end after the key: %s', (_case, key, firstEnd) => {
    const ends: (Uint8Array | null)[] = [bytes(0x20), bytes(0x20, 0x00), bytes(0x20, 0x00, 0x01), bytes(0x80), null];
    const from = rangeEndKeyAfter(Buffer.from(key, 'hex'));
    const first = ends.map((end) => rangeEndKey(end)).find((k) => compareKeys(k, from) >= 0)!;
    const end = decodeRangeEndKey(first);
    expect(end === null ? null : hex(end)).toBe(firstEnd);
  });

  it.each([
    ['another family', rangeKey(3)],
    ['no tag', Buffer.from('000065', 'hex')],
    ['an unknown tag', Buffer.from('0000650340', 'hex')],
    ['a finite tag without an end', Buffer.from('00006501', 'hex')],
    ['the infinite tag with bytes after it', Buffer.from('0000650200', 'hex')],
  ])('refuses a range end key with %s', (_case, key) => {
    expect(() => decodeRangeEndKey(key)).toThrow(MetaRecordError);
  });

  it('asserts that a keyed id fits in 4 bytes (a caller bug, not input)', () => {
    for (const id of [0, -1, 1.5, KEYED_ID_MAX + 1, Number.NaN]) {
      expect(() => rangeKey(id), `${id}`).toThrow(/range id/);
      expect(() => nodeKey(id), `${id}`).toThrow(/node id/);
    }
  });
});

describe('meta record codecs', () => {
  const descriptors: RangeDescriptor[] = [
    { rangeId: META_RANGE_ID, start: META_RANGE_START, end: META_RANGE_END, epoch: 1, replicas: [1, 2, 3] },
    { rangeId: 2, start: USER_KEY_MIN, end: bytes(0x80), epoch: 7, replicas: [3] },
    { rangeId: KEYED_ID_MAX, start: bytes(0x80), end: null, epoch: Number.MAX_SAFE_INTEGER, replicas: [] },
  ];

  it.each(descriptors.map((d) => [d.rangeId, d] as const))('round-trips range descriptor %i', (_id, d) => {
    const back = decodeRangeDescriptor(encodeRangeDescriptor(d));
    expect(back.rangeId).toBe(d.rangeId);
    expect(hex(back.start)).toBe(hex(d.start));
    expect(back.end === null ? null : hex(back.end)).toBe(d.end === null ? null : hex(d.end));
    expect(back.epoch).toBe(d.epoch);
    expect(back.replicas).toEqual(d.replicas);
  });

  const nodes: NodeRecord[] = [
    { nodeId: 1, address: '10.0.0.1:7001', httpAddress: '10.0.0.1:8080', state: 'up' },
    { nodeId: FIRST_ALLOCATED_NODE_ID, address: 'node-a.example:65535', httpAddress: null, state: 'decommissioned' },
    { nodeId: KEYED_ID_MAX, address: '[::1]:1', httpAddress: '[fe80::1]:80', state: 'up' },
  ];

  it.each(nodes.map((n) => [n.nodeId, n] as const))('round-trips node record %i', (_id, n) => {
    expect(decodeNodeRecord(encodeNodeRecord(n))).toEqual(n);
  });

  it.each([
    [{ rangeId: 1, epoch: 1 }],
    [{ rangeId: KEYED_ID_MAX, epoch: Number.MAX_SAFE_INTEGER }],
  ])('round-trips range end entry %o', (e) => {
    expect(decodeRangeEndEntry(encodeRangeEndEntry(e))).toEqual(e);
  });

  it.each([
    ['not a pair', packr.pack([5, 1, 2])],
    ['range id 0', packr.pack([0, 1])],
    ['epoch 0', packr.pack([5, 0])],
    ['a text epoch', packr.pack([5, '1'])],
  ])('refuses a range end entry that is %s', (_case, value) => {
    expect(() => decodeRangeEndEntry(value)).toThrow(MetaRecordError);
  });

  it.each([1, 1024, 2 ** 32, Number.MAX_SAFE_INTEGER])('round-trips counter %i', (n) => {
    expect(decodeCounter(encodeCounter(n))).toBe(n);
  });

  it('asserts before encoding a record it could not decode (a caller bug, not input)', () => {
    expect(() => encodeRangeDescriptor({ ...descriptors[1]!, end: bytes(0x00) })).toThrow(/does not precede/);
    expect(() => encodeNodeRecord({ ...nodes[0]!, address: 'nohost' })).toThrow(/address/);
    expect(() => encodeCounter(0)).toThrow(/counter 0/);
  });

  const good = { id: 5, start: bytes(0x10), end: bytes(0x20) as Uint8Array | null, epoch: 3, replicas: [1, 2] as unknown };
  const malformedDescriptors: [string, Uint8Array, RegExp][] = [
    ['undecodable bytes', bytes(0x93, 0x01), /undecodable/],
    ['empty input', new Uint8Array(0), /undecodable/],
    ['trailing bytes', Buffer.concat([packr.pack([5, good.start, good.end, 3, [1]]), bytes(0x01)]), /undecodable/],
    ['not an array', packr.pack({ rangeId: 5 }), /not a 5-tuple/],
    ['too short', packr.pack([5, good.start, good.end, 3]), /not a 5-tuple/],
    ['too long', packr.pack([5, good.start, good.end, 3, [1], 0]), /not a 5-tuple/],
    ['range id 0', packr.pack([0, good.start, good.end, 3, [1]]), /range id 0/],
    ['negative range id', packr.pack([-5, good.start, good.end, 3, [1]]), /range id -5/],
    ['fractional range id', packr.pack([1.5, good.start, good.end, 3, [1]]), /range id 1.5/],
    ['range id beyond 4 bytes', packr.pack([KEYED_ID_MAX + 1, good.start, good.end, 3, [1]]), /range id 4294967296/],
    ['string range id', packr.pack(['5', good.start, good.end, 3, [1]]), /range id "5"/],
    ['start not bytes', packr.pack([5, 'a', good.end, 3, [1]]), /start "a" is not bytes/],
    ['start null', packr.pack([5, null, good.end, 3, [1]]), /start null is not bytes/],
    ['end a number', packr.pack([5, good.start, 7, 3, [1]]), /end 7 is neither bytes nor null/],
    ['start equal to end', packr.pack([5, good.start, good.start, 3, [1]]), /start 10 does not precede end 10/],
    ['start after end', packr.pack([5, good.end, good.start, 3, [1]]), /start 20 does not precede end 10/],
    ['epoch 0', packr.pack([5, good.start, good.end, 0, [1]]), /epoch 0/],
    ['unsafe epoch', packr.pack([5, good.start, good.end, 2 ** 53, [1]]), /epoch 9007199254740992/],
    ['epoch missing', packr.pack([5, good.start, good.end, null, [1]]), /epoch null/],
    ['replicas not an array', packr.pack([5, good.start, good.end, 3, 1]), /replicas 1 is not an array/],
    ['replica id 0', packr.pack([5, good.start, good.end, 3, [1, 0]]), /replica node id 0/],
    ['replica id a string', packr.pack([5, good.start, good.end, 3, ['1']]), /replica node id "1"/],
    ['duplicate replica', packr.pack([5, good.start, good.end, 3, [1, 2, 1]]), /replica node id 1 appears twice/],
  ];

  it.each(malformedDescriptors)('rejects a range descriptor with %s', (_what, record, message) => {
    expectMalformed(() => decodeRangeDescriptor(record), message);
  });

  const node = (nodeId: unknown, address: unknown, httpAddress: unknown, state: unknown) => packr.pack([nodeId, address, httpAddress, state]);
  const malformedNodes: [string, Uint8Array, RegExp][] = [
    ['undecodable bytes', bytes(0x94), /undecodable/],
    ['not a 4-tuple', packr.pack([1, 'a:1', null]), /not a 4-tuple/],
    ['node id 0', node(0, 'a:1', null, 'up'), /node id 0/],
    ['node id beyond 4 bytes', node(KEYED_ID_MAX + 1, 'a:1', null, 'up'), /node id 4294967296/],
    ['address not a string', node(1, 7001, null, 'up'), /address 7001/],
    ['address without a port', node(1, 'host', null, 'up'), /address "host"/],
    ['address without a host', node(1, ':7001', null, 'up'), /address ":7001"/],
    ['port 0', node(1, 'host:0', null, 'up'), /address "host:0"/],
    ['port 65536', node(1, 'host:65536', null, 'up'), /address "host:65536"/],
    ['port with a leading zero', node(1, 'host:080', null, 'up'), /address "host:080"/],
    ['port not decimal', node(1, 'host:0x50', null, 'up'), /address "host:0x50"/],
    ['empty port', node(1, 'host:', null, 'up'), /address "host:"/],
    ['unbracketed IPv6 host', node(1, '::1:7001', null, 'up'), /address "::1:7001"/],
    ['whitespace in the host', node(1, 'my host:7001', null, 'up'), /address "my host:7001"/],
    ['malformed http address', node(1, 'a:1', 'http://a:80/', 'up'), /http address "http:\/\/a:80\/"/],
    ['http address not a string', node(1, 'a:1', 80, 'up'), /http address 80/],
    ['unknown state', node(1, 'a:1', null, 'down'), /state "down"/],
    ['state missing', node(1, 'a:1', null, null), /state null/],
  ];

  it.each(malformedNodes)('rejects a node record with %s', (_what, record, message) => {
    expectMalformed(() => decodeNodeRecord(record), message);
  });

  const malformedCounters: [string, Uint8Array, RegExp][] = [
    ['undecodable bytes', bytes(0xcb, 0x00), /undecodable/],
    ['zero', packr.pack(0), /counter 0/],
    ['a negative number', packr.pack(-1), /counter -1/],
    ['a fraction', packr.pack(2.5), /counter 2.5/],
    ['an unsafe integer', packr.pack(2 ** 53), /counter 9007199254740992/],
    ['a string', packr.pack('7'), /counter "7"/],
    ['an array', packr.pack([7]), /counter 7/],
  ];

  it.each(malformedCounters)('rejects a counter that is %s', (_what, record, message) => {
    expectMalformed(() => decodeCounter(record), message);
  });

  it('quotes only the start of a long bad value', () => {
    const error = catchError(() => decodeNodeRecord(node(1, `${'x'.repeat(10_000)}:0`, null, 'up')));
    expect(error.message.length).toBeLessThan(300);
  });
});

function catchError(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

function expectMalformed(decode: () => unknown, message: RegExp): void {
  const error = catchError(decode);
  expect(error).toBeInstanceOf(MetaRecordError);
  expect((error as MetaRecordError).code).toBe('META_RECORD_MALFORMED');
  expect((error as MetaRecordError).retryable).toBe(false);
  expect(error.message).toMatch(message);
}
