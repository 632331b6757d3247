import type { ConfState, Entry, EntryType, HardState, NodeId } from '@flotilla/core';
import { CorruptRecordError } from './errors.js';

// Records as stored in LMDB (values are msgpack-encoded by lmdb-js). Arrays,
// not objects: no field names repeated in every log entry. Every decoder
// checks shape, so a damaged record fails loudly instead of propagating.

/** LMDB's key size limit as compiled into lmdb-js 3.5.6 (measured: 1978 B stored, 1979 B refused); LMDB also refuses empty keys. */
export const KEY_BYTES_MAX = 1978;

/**
 * A span of keys in the data sub-database: [start, end), `end` null for "to
 * the end of the key space". What a shard owns, and what the store reads
 * for a snapshot and deletes when a range leaves this node.
 */
export interface RangeBounds {
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
}

// Snapshot chunks: the unit a snapshot travels in and the record a staged
// chunk is in the staging sub-database. The largest pair a chunk holds also
// bounds the largest value a range may store, so these limits sit with the
// key limit rather than with the chunk format.

/** Largest snapshot chunk on the wire: bounds memory on both sides and keeps chunks interleavable with heartbeats. */
export const SNAPSHOT_CHUNK_BYTES_MAX = 1024 * 1024;
/** Room for a chunk's header and msgpack framing within SNAPSHOT_CHUNK_BYTES_MAX. */
const CHUNK_HEADER_BYTES_MAX = 16 * 1024;
/** A single key/value pair must fit one chunk. */
export const SNAPSHOT_PAIR_BYTES_MAX = SNAPSHOT_CHUNK_BYTES_MAX - CHUNK_HEADER_BYTES_MAX;
/**
 * msgpack framing counted per pair: fixarray 1 + key header ≤ 3 + version ≤ 9 +
 * value header ≤ 3 for pairs under 64 KiB; bigger pairs (bin32, 2 more bytes
 * each) are few per chunk and fit in the header allowance.
 */
export const SNAPSHOT_PAIR_OVERHEAD_BYTES = 16;

export type StoredEntry = [term: number, type: 0 | 1, data: Uint8Array];
export type StoredHardState = [term: number, vote: number, commit: number];

const TYPE_CODE: Record<EntryType, 0 | 1> = { normal: 0, confChange: 1 };

export function encodeEntry(e: Entry): StoredEntry {
  return [e.term, TYPE_CODE[e.type], e.data];
}

export function decodeEntry(index: number, raw: unknown): Entry {
  if (!Array.isArray(raw) || raw.length !== 3) throw new CorruptRecordError(`log entry ${index} is not a 3-tuple`);
  const [term, type, data] = raw as unknown[];
  if (typeof term !== 'number' || !Number.isSafeInteger(term) || term < 0) throw new CorruptRecordError(`log entry ${index} has term ${String(term)}`);
  if (type !== 0 && type !== 1) throw new CorruptRecordError(`log entry ${index} has type ${String(type)}`);
  if (!(data instanceof Uint8Array)) throw new CorruptRecordError(`log entry ${index} has no byte payload`);
  return { index, term, type: type === 0 ? 'normal' : 'confChange', data };
}

export function encodeHardState(hs: HardState): StoredHardState {
  return [hs.term, hs.vote, hs.commit];
}

export function decodeHardState(raw: unknown): HardState {
  if (!Array.isArray(raw) || raw.length !== 3 || !raw.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw new CorruptRecordError(`hard state ${JSON.stringify(raw)} is not [term, vote, commit]`);
  }
  const [term, vote, commit] = raw as number[];
  return { term: term!, vote: vote! as NodeId, commit: commit! };
}

/** A tombstone (node-store.ts Tombstone) as stored: [term, vote, commit, incarnation]; stores from before incarnations wrote the hard state alone. */
export function encodeTombstone(t: { term: number; vote: NodeId; incarnation: number }): number[] {
  return [t.term, t.vote, 0, t.incarnation];
}

export function decodeTombstone(raw: unknown): { term: number; vote: NodeId; incarnation: number } {
  if (Array.isArray(raw) && raw.length === 4) {
    const [term, vote, commit, incarnation] = raw as unknown[];
    const { term: t, vote: v } = decodeHardState([term, vote, commit]);
    if (!Number.isSafeInteger(incarnation) || (incarnation as number) < 0) throw new CorruptRecordError(`tombstone ${JSON.stringify(raw)} has incarnation ${String(incarnation)}`);
    return { term: t, vote: v, incarnation: incarnation as number };
  }
  const { term, vote } = decodeHardState(raw);
  return { term, vote, incarnation: 0 };
}

export function decodeConfState(raw: unknown): ConfState {
  const c = raw as Partial<Record<keyof ConfState, unknown>> | null;
  const isIds = (v: unknown): v is NodeId[] => Array.isArray(v) && v.every((n) => Number.isSafeInteger(n) && n > 0);
  if (c === null || typeof c !== 'object' || !isIds(c.voters) || !isIds(c.votersOutgoing) || !isIds(c.learners) || !isIds(c.learnersNext) || typeof c.autoLeave !== 'boolean') {
    throw new CorruptRecordError(`conf state ${JSON.stringify(raw)} is malformed`);
  }
  return compactConfState({ voters: c.voters, votersOutgoing: c.votersOutgoing, learners: c.learners, learnersNext: c.learnersNext, autoLeave: c.autoLeave });
}

const NO_NODE_IDS: readonly NodeId[] = Object.freeze([]);

/**
 * The same conf state with its empty lists replaced by one shared frozen
 * array: a replica's state keeps its conf state in memory for its whole
 * life, and most have no outgoing voters and no learners (~100 B a replica).
 * Conf states are never changed in place.
 */
export function compactConfState(cs: ConfState): ConfState {
  const compact = (ids: readonly NodeId[]): readonly NodeId[] => (ids.length === 0 ? NO_NODE_IDS : ids);
  return { voters: compact(cs.voters), votersOutgoing: compact(cs.votersOutgoing), learners: compact(cs.learners), learnersNext: compact(cs.learnersNext), autoLeave: cs.autoLeave };
}

export function encodeConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], votersOutgoing: [...cs.votersOutgoing], learners: [...cs.learners], learnersNext: [...cs.learnersNext], autoLeave: cs.autoLeave };
}
