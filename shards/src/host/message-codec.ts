import type { ConfState, Entry, GroupId, Message, NodeId, ReadContext } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { decodeConfState, encodeConfState } from '../storage/codec.js';

/**
 * The wire form of a batch of Raft messages for many shards: what the Host
 * hands to `Transport.send()` once per peer per loop turn. msgpackr arrays,
 * no field names: [[shardId, typeCode, from, to, term, ...fields], ...].
 * Decoding validates every field; anything malformed rejects the whole batch
 * (bad network input is counted and dropped by the caller, never asserted).
 */
export interface Envelope {
  readonly shardId: GroupId;
  readonly message: Message;
}

export class BatchDecodeError extends Error {
  readonly code = 'BATCH_MALFORMED';
  readonly retryable = false;
  constructor(detail: string) {
    super(`malformed message batch: ${detail}`);
    this.name = 'BatchDecodeError';
  }
}

const TYPE_CODES = {
  append: 1,
  appendResponse: 2,
  vote: 3,
  preVote: 4,
  voteResponse: 5,
  preVoteResponse: 6,
  heartbeat: 7,
  heartbeatResponse: 8,
  snapshot: 9,
  propose: 10,
  readIndex: 11,
  readIndexResponse: 12,
  transferLeader: 13,
  timeoutNow: 14,
} as const;
type NetworkType = keyof typeof TYPE_CODES;
const TYPE_BY_CODE = new Map<number, NetworkType>(Object.entries(TYPE_CODES).map(([t, c]) => [c, t as NetworkType]));

/** More messages than this in one batch is not something our Host produces: reject as malformed. */
export const BATCH_MESSAGE_COUNT_MAX = 1 << 20;

const packr = new Packr({ useRecords: false, moreTypes: false });

type EncodedEntry = [index: number, term: number, type: 0 | 1, data: Uint8Array];

function encodeEntries(entries: readonly Entry[]): EncodedEntry[] {
  return entries.map((e) => [e.index, e.term, e.type === 'normal' ? 0 : 1, e.data]);
}

function encodeMessage(shardId: GroupId, m: Message): unknown[] {
  const head = (code: number): unknown[] => [shardId, code, m.from, m.to, m.term];
  switch (m.type) {
    case 'append':
      return [...head(TYPE_CODES.append), m.index, m.logTerm, m.commit, encodeEntries(m.entries)];
    case 'appendResponse':
      return [...head(TYPE_CODES.appendResponse), m.index, m.reject, m.rejectHint, m.logTerm, m.incarnation];
    case 'vote':
    case 'preVote':
      return [...head(TYPE_CODES[m.type]), m.index, m.logTerm, m.transfer];
    case 'voteResponse':
    case 'preVoteResponse':
      return [...head(TYPE_CODES[m.type]), m.reject];
    case 'heartbeat':
      return [...head(TYPE_CODES.heartbeat), m.commit, m.round];
    case 'heartbeatResponse':
      return [...head(TYPE_CODES.heartbeatResponse), m.round];
    case 'snapshot': {
      const md = m.snapshot.metadata;
      return [...head(TYPE_CODES.snapshot), md.index, md.term, encodeConfState(md.confState), m.snapshot.data];
    }
    case 'propose':
      return [...head(TYPE_CODES.propose), encodeEntries(m.entries)];
    case 'readIndex':
      return [...head(TYPE_CODES.readIndex), m.contexts];
    case 'readIndexResponse':
      return [...head(TYPE_CODES.readIndexResponse), m.index, m.contexts];
    case 'transferLeader':
      return [...head(TYPE_CODES.transferLeader), m.transferee];
    case 'timeoutNow':
      return [...head(TYPE_CODES.timeoutNow)];
    default:
      throw new Error(`message type ${m.type} never crosses the network`);
  }
}

export function encodeBatch(envelopes: readonly Envelope[]): Uint8Array {
  return packr.pack(envelopes.map((e) => encodeMessage(e.shardId, e.message)));
}

/** Decodes and validates a batch from the network; throws BatchDecodeError on anything malformed. */
export function decodeBatch(bytes: Uint8Array): Envelope[] {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    throw new BatchDecodeError(`undecodable (${(err as Error).message})`);
  }
  if (!Array.isArray(raw)) throw new BatchDecodeError('not a list');
  if (raw.length > BATCH_MESSAGE_COUNT_MAX) throw new BatchDecodeError(`${raw.length} messages exceed ${BATCH_MESSAGE_COUNT_MAX}`);
  return raw.map((item, i) => decodeMessage(item, i));
}

function decodeMessage(raw: unknown, position: number): Envelope {
  const fail = (what: string): never => {
    throw new BatchDecodeError(`message ${position}: ${what}`);
  };
  if (!Array.isArray(raw) || raw.length < 5) return fail('not a tuple');
  const f = new Fields(raw, fail);
  const shardId = f.id(0, 'shard id') as GroupId;
  const type = TYPE_BY_CODE.get(f.count(1, 'type'));
  if (type === undefined) return fail(`unknown type code ${String(raw[1])}`);
  const from = f.id(2, 'from') as NodeId;
  const to = f.id(3, 'to') as NodeId;
  const term = f.count(4, 'term');
  const h = { from, to, term };
  const expect = (n: number): void => {
    if (raw.length !== 5 + n) fail(`${type} has ${raw.length - 5} fields, expected ${n}`);
  };
  let message: Message;
  switch (type) {
    case 'append':
      expect(4);
      message = { type, ...h, index: f.count(5, 'index'), logTerm: f.count(6, 'logTerm'), commit: f.count(7, 'commit'), entries: f.entries(8) };
      break;
    case 'appendResponse':
      expect(5);
      message = { type, ...h, index: f.count(5, 'index'), reject: f.bool(6, 'reject'), rejectHint: f.count(7, 'rejectHint'), logTerm: f.count(8, 'logTerm'), incarnation: f.count(9, 'incarnation') };
      break;
    case 'vote':
    case 'preVote':
      expect(3);
      message = { type, ...h, index: f.count(5, 'index'), logTerm: f.count(6, 'logTerm'), transfer: f.bool(7, 'transfer') };
      break;
    case 'voteResponse':
    case 'preVoteResponse':
      expect(1);
      message = { type, ...h, reject: f.bool(5, 'reject') };
      break;
    case 'heartbeat':
      expect(2);
      message = { type, ...h, commit: f.count(5, 'commit'), round: f.count(6, 'round') };
      break;
    case 'heartbeatResponse':
      expect(1);
      message = { type, ...h, round: f.count(5, 'round') };
      break;
    case 'snapshot': {
      expect(4);
      let confState: ConfState;
      try {
        confState = decodeConfState(raw[7]);
      } catch {
        return fail('snapshot conf state is malformed');
      }
      message = { type, ...h, snapshot: { metadata: { index: f.count(5, 'index'), term: f.count(6, 'term'), confState }, data: f.bytes(8, 'data') } };
      break;
    }
    case 'propose':
      expect(1);
      message = { type, ...h, entries: f.entries(5) };
      break;
    case 'readIndex':
      expect(1);
      message = { type, ...h, contexts: f.contexts(5) };
      break;
    case 'readIndexResponse':
      expect(2);
      message = { type, ...h, index: f.count(5, 'index'), contexts: f.contexts(6) };
      break;
    case 'transferLeader':
      expect(1);
      message = { type, ...h, transferee: f.id(5, 'transferee') as NodeId };
      break;
    case 'timeoutNow':
      expect(0);
      message = { type, ...h };
      break;
  }
  return { shardId, message };
}

/** Typed field readers over one decoded tuple; each failure names the field. */
class Fields {
  constructor(
    private readonly raw: unknown[],
    private readonly fail: (what: string) => never,
  ) {}

  count(i: number, name: string): number {
    const v = this.raw[i];
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : this.fail(`${name} ${String(v)} is not a non-negative integer`);
  }

  id(i: number, name: string): number {
    const v = this.count(i, name);
    return v > 0 ? v : this.fail(`${name} must be positive`);
  }

  bool(i: number, name: string): boolean {
    const v = this.raw[i];
    return typeof v === 'boolean' ? v : this.fail(`${name} is not a boolean`);
  }

  bytes(i: number, name: string): Uint8Array {
    const v = this.raw[i];
    return v instanceof Uint8Array ? v : this.fail(`${name} is not bytes`);
  }

  contexts(i: number): ReadContext[] {
    const v = this.raw[i];
    if (!Array.isArray(v) || !v.every((c) => typeof c === 'string')) return this.fail('read contexts are not strings');
    return v as ReadContext[];
  }

  entries(i: number): Entry[] {
    const v = this.raw[i];
    if (!Array.isArray(v)) return this.fail('entries are not a list');
    return v.map((e: unknown, k) => {
      if (!Array.isArray(e) || e.length !== 4) return this.fail(`entry ${k} is not a 4-tuple`);
      const [index, term, type, data] = e as unknown[];
      if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) return this.fail(`entry ${k} index`);
      if (typeof term !== 'number' || !Number.isSafeInteger(term) || term < 0) return this.fail(`entry ${k} term`);
      if (type !== 0 && type !== 1) return this.fail(`entry ${k} type`);
      if (!(data instanceof Uint8Array)) return this.fail(`entry ${k} data`);
      return { index, term, type: type === 0 ? 'normal' : 'confChange', data };
    });
  }
}
