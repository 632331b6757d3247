import { SeededRng, groupId, nodeId, type Message } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { BatchDecodeError, decodeBatch, encodeBatch, type Envelope } from '../src/host/message-codec.js';

const n = nodeId;
const h = { from: n(1), to: n(2), term: 7 };
const entry = (index: number, type: 'normal' | 'confChange' = 'normal') => ({ index, term: 7, type, data: Uint8Array.of(index, 1, 2) });
const confState = { voters: [n(1), n(2), n(3)], votersOutgoing: [], learners: [n(4)], learnersNext: [], autoLeave: false };

const EVERY_NETWORK_MESSAGE: Message[] = [
  { type: 'append', ...h, index: 10, logTerm: 6, commit: 9, entries: [entry(11), entry(12, 'confChange')] },
  { type: 'append', ...h, index: 10, logTerm: 6, commit: 9, entries: [] },
  { type: 'appendResponse', ...h, index: 12, reject: true, rejectHint: 8, logTerm: 5, incarnation: 3 },
  { type: 'vote', ...h, index: 12, logTerm: 7, transfer: true },
  { type: 'preVote', ...h, term: 8, index: 12, logTerm: 7, transfer: false },
  { type: 'voteResponse', ...h, reject: false },
  { type: 'preVoteResponse', ...h, reject: true },
  { type: 'heartbeat', ...h, commit: 11, round: 99 },
  { type: 'heartbeatResponse', ...h, round: 99 },
  { type: 'snapshot', ...h, snapshot: { metadata: { index: 40, term: 6, confState }, data: Uint8Array.of(9, 9) } },
  { type: 'propose', ...h, term: 0, entries: [entry(0)] },
  { type: 'readIndex', ...h, term: 0, contexts: ['r1', 'r2'] },
  { type: 'readIndexResponse', ...h, index: 12, contexts: ['r1'] },
  { type: 'transferLeader', ...h, transferee: n(3) },
  { type: 'timeoutNow', ...h },
];

describe('message batch codec', () => {
  it('round-trips every network message type, many shards in one batch', () => {
    const batch: Envelope[] = EVERY_NETWORK_MESSAGE.map((message, i) => ({ shardId: groupId(100 + i), message }));
    // msgpackr hands bytes back as Buffers (a Uint8Array subclass): compare contents.
    const plain = (value: unknown): unknown =>
      value instanceof Uint8Array ? Array.from(value) : Array.isArray(value) ? value.map(plain) : value !== null && typeof value === 'object' ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)])) : value;
    expect(plain(decodeBatch(encodeBatch(batch)))).toEqual(plain(batch));
  });

  it('refuses to encode local message types', () => {
    expect(() => encodeBatch([{ shardId: groupId(1), message: { type: 'hup', ...h, transfer: false } }])).toThrow(/never crosses the network/);
  });

  const packr = new Packr({ useRecords: false, moreTypes: false });
  const bad: [string, unknown][] = [
    ['not a list', { a: 1 }],
    ['a message that is not a tuple', [5]],
    ['an unknown type code', [[1, 99, 1, 2, 3]]],
    ['shard id 0', [[0, 8, 1, 2, 3, 4]]],
    ['a negative term', [[1, 8, 1, 2, -3, 4]]],
    ['a fractional index', [[1, 2, 1, 2, 3, 1.5, false, 0, 0]]],
    ['a missing field', [[1, 7, 1, 2, 3, 4]]],
    ['an extra field', [[1, 8, 1, 2, 3, 4, 5]]],
    ['a string where a boolean belongs', [[1, 5, 1, 2, 3, 'no']]],
    ['entries that are not a list', [[1, 1, 1, 2, 3, 4, 5, 6, 'x']]],
    ['an entry with a bad type', [[1, 1, 1, 2, 3, 4, 5, 6, [[1, 1, 7, new Uint8Array(0)]]]]],
    ['an entry without bytes', [[1, 1, 1, 2, 3, 4, 5, 6, [[1, 1, 0, 'text']]]]],
    ['read contexts that are numbers', [[1, 11, 1, 2, 0, [1, 2]]]],
    ['a malformed snapshot conf state', [[1, 9, 1, 2, 3, 4, 5, { voters: 'all' }, new Uint8Array(0)]]],
  ];
  it.each(bad)('rejects %s with BATCH_MALFORMED', (_name, value) => {
    expect(() => decodeBatch(packr.pack(value))).toThrow(BatchDecodeError);
  });

  it('rejects garbage bytes and mutated batches with BatchDecodeError only (seeded fuzz)', () => {
    const rng = new SeededRng(2026);
    const valid = encodeBatch(EVERY_NETWORK_MESSAGE.map((message, i) => ({ shardId: groupId(i + 1), message })));
    let rejected = 0;
    for (let round = 0; round < 2000; round++) {
      let bytes: Uint8Array;
      if (round % 2 === 0) {
        bytes = new Uint8Array(rng.intBelow(64));
        for (let i = 0; i < bytes.length; i++) bytes[i] = rng.intBelow(256);
      } else {
        bytes = valid.slice(0, 1 + rng.intBelow(valid.length));
        for (let k = 0; k < 3; k++) bytes[rng.intBelow(bytes.length)] = rng.intBelow(256);
      }
      try {
        decodeBatch(bytes);
      } catch (err) {
        expect(err).toBeInstanceOf(BatchDecodeError);
        rejected++;
      }
    }
    // Almost every mutation must be caught; a few can decode into another valid batch.
    expect(rejected).toBeGreaterThan(1500);
  });
});
