import type { ConfState, Entry, EntryType, HardState, NodeId } from '@flotilla/core';
import { CorruptRecordError } from './errors.js';

// Records as stored in LMDB (values are msgpack-encoded by lmdb-js). Arrays,
// not objects: no field names repeated in every log entry. Every decoder
// checks shape, so a damaged record fails loudly instead of propagating.

/** LMDB's key size limit as compiled into lmdb-js 3.5.6 (measured: 1978 B stored, 1979 B refused); LMDB also refuses empty keys. */
export const KEY_BYTES_MAX = 1978;

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

export function decodeConfState(raw: unknown): ConfState {
  const c = raw as Partial<Record<keyof ConfState, unknown>> | null;
  const isIds = (v: unknown): v is NodeId[] => Array.isArray(v) && v.every((n) => Number.isSafeInteger(n) && n > 0);
  if (c === null || typeof c !== 'object' || !isIds(c.voters) || !isIds(c.votersOutgoing) || !isIds(c.learners) || !isIds(c.learnersNext) || typeof c.autoLeave !== 'boolean') {
    throw new CorruptRecordError(`conf state ${JSON.stringify(raw)} is malformed`);
  }
  return { voters: c.voters, votersOutgoing: c.votersOutgoing, learners: c.learners, learnersNext: c.learnersNext, autoLeave: c.autoLeave };
}

export function encodeConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], votersOutgoing: [...cs.votersOutgoing], learners: [...cs.learners], learnersNext: [...cs.learnersNext], autoLeave: cs.autoLeave };
}
