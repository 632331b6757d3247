import { assert, type GroupId, type Term } from '@flotilla/core';
import { CONTENT_TYPE_OVERHEAD_BYTES } from '../kv/command.js';
import { WHOLE_KEY_SPACE, decodeShardRange } from '../kv/range.js';
import { SNAPSHOT_PAIR_BYTES_MAX, SNAPSHOT_PAIR_OVERHEAD_BYTES, decodeConfState, type RangeBounds } from '../storage/codec.js';
import { CorruptRecordError } from '../storage/errors.js';
import type { NodeStore } from '../storage/node-store.js';
import { SNAPSHOT_FORMAT, encodeChunk, type SnapshotHeader, type SnapshotPair } from './chunk.js';

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
    const header: SnapshotHeader = { format: SNAPSHOT_FORMAT, shardId, index: index as number, term, confState, bounds, epoch };
    let pairs: SnapshotPair[] = [];
    let bytes = 0;
    let seq = 0;
    const range = store.data.getRange({
      start: Buffer.from(bounds.start),
      ...(bounds.end === null ? {} : { end: Buffer.from(bounds.end) }),
      transaction: txn,
    });
    for (const { key, value } of range) {
      // A record is [version, bytes] or [version, bytes, contentType] (state-machine.ts); the pair carries the same.
      const [version, data, contentType] = value as [number, Buffer, string | undefined];
      const pairBytes = key.byteLength + data.byteLength + SNAPSHOT_PAIR_OVERHEAD_BYTES + (contentType === undefined ? 0 : contentType.length + CONTENT_TYPE_OVERHEAD_BYTES);
      assert(pairBytes <= SNAPSHOT_PAIR_BYTES_MAX, () => `shard ${shardId}: pair of ${pairBytes} B exceeds the snapshot pair limit ${SNAPSHOT_PAIR_BYTES_MAX}`);
      if (bytes + pairBytes > SNAPSHOT_PAIR_BYTES_MAX) {
        yield encodeChunk({ header, seq: seq++, last: false, pairs });
        pairs = [];
        bytes = 0;
      }
      pairs.push(contentType === undefined ? [key, version, data] : [key, version, data, contentType]);
      bytes += pairBytes;
    }
    yield encodeChunk({ header, seq, last: true, pairs });
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
  if (entry === undefined) throw new CorruptRecordError(`shard ${shardId}: applied entry ${index} is missing from the log`);
  return entry[0];
}
