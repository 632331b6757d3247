import { Packr } from 'msgpackr';

/**
 * The header of a snapshot stream between nodes: which shard, from which
 * leader, in which term. The sending core encodes it (snapshot/outgoing.ts);
 * the receiving Host decodes it to route the stream to the shard's core.
 */
export interface SnapshotStreamHeader {
  readonly shardId: number;
  readonly from: number;
  readonly term: number;
}

const headerPackr = new Packr({ useRecords: false, moreTypes: false });

export function encodeSnapshotStreamHeader(h: SnapshotStreamHeader): Uint8Array {
  return headerPackr.pack([h.shardId, h.from, h.term]);
}

/** The header, or undefined when the bytes (from the network) are not one. */
export function decodeSnapshotStreamHeader(bytes: Uint8Array): SnapshotStreamHeader | undefined {
  let raw: unknown;
  try {
    raw = headerPackr.unpack(bytes);
  } catch {
    return undefined;
  }
  if (!Array.isArray(raw) || raw.length !== 3 || !raw.every((n) => Number.isSafeInteger(n) && (n as number) > 0)) return undefined;
  const [shardId, from, term] = raw as number[];
  return { shardId: shardId!, from: from!, term: term! };
}
