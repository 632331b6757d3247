import type { GroupId, Term } from '@flotilla/core';
import { decodeFrozen } from '../kv/merge.js';
import { WHOLE_KEY_SPACE, decodeShardRange } from '../kv/range.js';
import { decodeConfState, type RangeBounds } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';
import type { NodeStore } from '../storage/node-store.js';
import { ChunkBodyWriter, SNAPSHOT_FORMAT, encodeChunk, type SnapshotHeader } from './chunk.js';

/**
 * Reads a consistent snapshot of one shard — its data in its range (the stored descriptor; `fallback` for a shard without one), applied
 * index, term and conf state — from a single LMDB read transaction, and
 * yields it as chunks of at most SNAPSHOT_CHUNK_BYTES_MAX. Memory use is one
 * chunk, whatever the range's size. The read transaction is held until the
 * generator finishes or is returned early.
 */
export function* readSnapshot(store: NodeStore, shardId: GroupId, fallback: RangeBounds = WHOLE_KEY_SPACE): Generator<Uint8Array, SnapshotHeader> {
  const txn = store.env.useReadTransaction();
  try {
    const at = { transaction: txn };
    // The range as of the same transaction as the data and applied index: a split applied since the
    // transfer was asked for must not leave a snapshot claiming the old bounds at the new index.
    const stored = store.meta.get([shardId, 'desc'], at);
    const { epoch, ...bounds } = stored === undefined ? { ...fallback, epoch: 1 } : decodeShardRange(shardId, stored);
    const index = store.meta.get([shardId, 'applied'], at);
    if (!Number.isSafeInteger(index)) throw new CorruptRecordError(`shard ${shardId}: applied index ${String(index)}`);
    const confState = decodeConfState(store.meta.get([shardId, 'conf'], at));
    const term = termAt(store, shardId, index as number, txn);
    const frozen = decodeFrozen(shardId, store.meta.get([shardId, 'merge'], at));
    const header: SnapshotHeader = { format: SNAPSHOT_FORMAT, shardId, index: index as number, term, confState, bounds, epoch, ...(frozen === undefined ? {} : { frozen }) };
    const body = new ChunkBodyWriter();
    let seq = 0;
    // The records' bytes as stored: a chunk copies them, nothing decodes them (chunk.ts).
    const range = store.dataRecords.getRange({
      start: Buffer.from(bounds.start),
      ...(bounds.end === null ? {} : { end: Buffer.from(bounds.end) }),
      transaction: txn,
    });
    for (const { key, value } of range) {
      if (!body.fits(key, value)) yield encodeChunk({ header, seq: seq++, last: false, body: body.take() });
      body.add(key, value);
    }
    yield encodeChunk({ header, seq, last: true, body: body.take() });
    return header;
  } finally {
    txn.done();
  }
}

function termAt(store: NodeStore, shardId: GroupId, index: number, txn: ReturnType<NodeStore['env']['useReadTransaction']>): Term {
  if (index === 0) return 0;
  const snap = store.meta.get([shardId, 'snap'], { transaction: txn }) as [number, number];
  if (snap[0] === index) return snap[1];
  const entry = store.log.get([shardId, index], { transaction: txn }) as [number, number, Uint8Array] | undefined;
  if (entry !== undefined) return entry[0];
  // Not yet moved out of the log tail (storage/log-tail.ts): an applied entry's term never changes, so the live view may answer.
  const term = store.termIfHeld(shardId, index);
  if (term === undefined) throw new CorruptRecordError(`shard ${shardId}: applied entry ${index} is missing from the log`);
  return term;
}
