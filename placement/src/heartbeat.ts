import { Packr } from 'msgpackr';
import { MetaRecordError } from './meta.js';

/**
 * What every node tells the placement driver once per heartbeat interval
 * (TiKV's store heartbeat with its region heartbeats folded in: one message
 * per node, not one per range): its disk, its replicas (so the driver can
 * collect ones the range has dropped), and the ranges it leads.
 *
 * A full heartbeat (`base` 0) carries every replica and every led range.
 * The rest carry only what changed since heartbeat `base` of the same
 * `session` (a node's run of heartbeats to one driver): a node with 100,000
 * quiesced replicas sends a few bytes, and the driver's work per heartbeat
 * follows what changed. What changed since `base` is also what changed
 * since any later heartbeat, so the driver takes a delta whose base is at or
 * before the last heartbeat it took (one whose answer was lost is sent again
 * from the same base); a delta it cannot place (another session, a driver
 * that never saw the base: a new one) is answered `resync`, and the node
 * sends a full heartbeat.
 */
export interface StoreHeartbeat {
  readonly nodeId: number;
  /** Bytes of user data in its stores. */
  readonly usedBytes: number;
  /** Bytes free on the file system of its data directory. */
  readonly availableBytes: number;
  /** The node's current run of heartbeats (a new one per process, and whenever it starts over). */
  readonly session: number;
  /** This heartbeat's place in the session: ascending. */
  readonly seq: number;
  /** 0: full. Otherwise the seq of an earlier heartbeat this one carries the changes since. */
  readonly base: number;
  /**
   * Replicas on the node (changed ones in a delta), the epoch each has applied (0: empty, waiting for a
   * snapshot), and on a node of several worker cores the core whose store holds it (absent: 0). Two
   * ranges merge only where they share a store on every node (shards kv/merge.ts).
   */
  readonly replicas: readonly { readonly rangeId: number; readonly epoch: number; readonly core?: number }[];
  /** Ranges the node leads (in a delta: led and changed; a changed replica not among them does not lead). */
  readonly leading: readonly RangeReport[];
  /** A delta's replicas destroyed since its base (empty in a full heartbeat). */
  readonly removed: readonly number[];
  /**
   * The key ranges of replicas the driver asked about (HeartbeatAnswer.describe) that the node still
   * holds. Absent from a node built before it: the driver asks only nodes that send it (empty or not).
   */
  readonly described?: readonly ReplicaBounds[];
}

/** A replica's key range as the replica applied it, and the epoch it applied. */
export interface ReplicaBounds {
  readonly rangeId: number;
  readonly epoch: number;
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
}

/** A range as its leader sees it. */
export interface RangeReport {
  readonly rangeId: number;
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
  readonly epoch: number;
  /** The leader's term: of two reports of one epoch, the higher term is the newer leader. */
  readonly term: number;
  readonly voters: readonly number[];
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
  readonly lastIndex: number;
  readonly progress: readonly { readonly nodeId: number; readonly match: number }[];
  readonly keyCount: number;
  readonly sizeBytes: number;
  /** Counters since the replica became leader-capable on that node; the driver takes rates from successive reports. */
  readonly writeCount: number;
  readonly readCount: number;
  readonly sizeSplitKey?: Uint8Array | undefined;
  readonly loadSplitKey?: Uint8Array | undefined;
  /** Present while the range is frozen for a merge into its left neighbour `targetRangeId` (the freeze entry's index and term, the epoch it moved the range to). */
  readonly frozen?: { readonly targetRangeId: number; readonly index: number; readonly term: number; readonly epoch: number } | undefined;
}

/**
 * The driver's answer: replicas the node should destroy (their range removed them); `resync`: the delta
 * was not taken, send a full heartbeat; `describe`: replicas of ranges the driver does not know, whose
 * key ranges the next heartbeat should carry (`described`), so it can tell one merged away from one
 * whose range has no leader to report it.
 */
export interface HeartbeatAnswer {
  readonly collect: readonly number[];
  readonly resync: boolean;
  readonly describe: readonly number[];
}

/** Replicas and led ranges in one heartbeat, at most: bounds what a peer's message can make the driver hold. */
export const HEARTBEAT_RANGE_COUNT_MAX = 100_000;

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeStoreHeartbeat(h: StoreHeartbeat): Uint8Array {
  return packr.pack([
    h.nodeId,
    h.usedBytes,
    h.availableBytes,
    h.replicas.flatMap((r) => [r.rangeId, r.epoch]),
    h.leading.map((r) => [
      r.rangeId,
      r.start,
      r.end,
      r.epoch,
      r.term,
      r.voters,
      r.votersOutgoing,
      r.learners,
      r.lastIndex,
      r.progress.flatMap((p) => [p.nodeId, p.match]),
      r.keyCount,
      r.sizeBytes,
      r.writeCount,
      r.readCount,
      r.sizeSplitKey ?? null,
      r.loadSplitKey ?? null,
      r.frozen === undefined ? null : [r.frozen.targetRangeId, r.frozen.index, r.frozen.term, r.frozen.epoch],
    ]),
    h.session,
    h.seq,
    h.base,
    h.removed,
    // Sparse: only replicas off core 0, so a single-core node sends nothing more.
    h.replicas.flatMap((r) => (r.core === undefined || r.core === 0 ? [] : [r.rangeId, r.core])),
    (h.described ?? []).flatMap((d) => [d.rangeId, d.epoch, d.start, d.end]),
  ]);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isId = (v: unknown): v is number => isCount(v) && v > 0;
const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.length <= HEARTBEAT_RANGE_COUNT_MAX && v.every(isId);
const isKeyOrNull = (v: unknown): v is Uint8Array | null => v === null || v instanceof Uint8Array;

/** Decodes a heartbeat from the network; throws MetaRecordError on anything malformed. */
export function decodeStoreHeartbeat(bytes: Uint8Array): StoreHeartbeat {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    throw new MetaRecordError(`undecodable heartbeat (${(err as Error).message})`);
  }
  const fail = (what: string): never => {
    throw new MetaRecordError(`heartbeat: ${what}`);
  };
  // 9 fields from a node built before merges, 10 with the replicas' cores, 11 with replicas described.
  if (!Array.isArray(raw) || raw.length < 9 || raw.length > 11) fail('not a 9-, 10- or 11-tuple');
  const [nodeId, usedBytes, availableBytes, replicaPairs, leading, session, seq, base, removed, corePairs, describedFlat] = raw as unknown[];
  const described = describedFlat === undefined ? undefined : decodeDescribed(describedFlat, fail);
  if (corePairs !== undefined && (!Array.isArray(corePairs) || corePairs.length % 2 !== 0 || corePairs.length > 2 * HEARTBEAT_RANGE_COUNT_MAX || !corePairs.every(isCount))) fail('replica cores');
  const cores = new Map<number, number>();
  for (let i = 0; i < ((corePairs as number[] | undefined)?.length ?? 0); i += 2) cores.set((corePairs as number[])[i]!, (corePairs as number[])[i + 1]!);
  if (!isId(nodeId)) fail(`node id ${String(nodeId)}`);
  if (!isCount(session) || !isId(seq) || !isCount(base) || (base as number) >= (seq as number)) fail(`sequence ${String(session)}/${String(seq)} from ${String(base)}`);
  if (!isIds(removed) || ((base as number) === 0 && removed.length > 0)) fail('removed replicas');
  if (!isCount(usedBytes) || !isCount(availableBytes)) fail('disk byte counts');
  if (!Array.isArray(replicaPairs) || replicaPairs.length % 2 !== 0 || replicaPairs.length > 2 * HEARTBEAT_RANGE_COUNT_MAX || !replicaPairs.every(isCount)) fail('replicas');
  const replicas: { rangeId: number; epoch: number; core?: number }[] = [];
  for (let i = 0; i < (replicaPairs as number[]).length; i += 2) {
    const [rangeId, epoch] = [(replicaPairs as number[])[i]!, (replicaPairs as number[])[i + 1]!];
    if (rangeId === 0) fail('replica of range 0');
    const core = cores.get(rangeId);
    replicas.push(core === undefined ? { rangeId, epoch } : { rangeId, epoch, core });
  }
  if (!Array.isArray(leading) || leading.length > HEARTBEAT_RANGE_COUNT_MAX) fail('led ranges');
  const reports = (leading as unknown[]).map((r, i): RangeReport => {
    // 16 fields from a node built before merges, 17 with the freeze (null when not frozen).
    if (!Array.isArray(r) || (r.length !== 16 && r.length !== 17)) fail(`led range ${i} is not a 16- or 17-tuple`);
    const [rangeId, start, end, epoch, term, voters, votersOutgoing, learners, lastIndex, progressPairs, keyCount, sizeBytes, writeCount, readCount, sizeSplitKey, loadSplitKey, frozen] = r as unknown[];
    if (frozen !== undefined && frozen !== null && !(Array.isArray(frozen) && frozen.length === 4 && frozen.every(isId))) fail(`led range ${i}: freeze`);
    const [targetRangeId, freezeIndex, freezeTerm, freezeEpoch] = Array.isArray(frozen) ? (frozen as number[]) : [];
    if (!isId(rangeId) || !isId(epoch) || !isCount(term) || !isCount(lastIndex)) fail(`led range ${i}: ids, epoch, term or index`);
    if (!(start instanceof Uint8Array) || !isKeyOrNull(end) || !isKeyOrNull(sizeSplitKey) || !isKeyOrNull(loadSplitKey)) fail(`led range ${i}: keys`);
    if (!isIds(voters) || !isIds(votersOutgoing) || !isIds(learners)) fail(`led range ${i}: configuration`);
    if (!isCount(keyCount) || !isCount(sizeBytes) || !isCount(writeCount) || !isCount(readCount)) fail(`led range ${i}: counters`);
    if (!Array.isArray(progressPairs) || progressPairs.length % 2 !== 0 || !progressPairs.every(isCount)) fail(`led range ${i}: progress`);
    const progress: { nodeId: number; match: number }[] = [];
    for (let j = 0; j < (progressPairs as number[]).length; j += 2) progress.push({ nodeId: (progressPairs as number[])[j]!, match: (progressPairs as number[])[j + 1]! });
    return {
      rangeId: rangeId as number,
      start: start as Uint8Array,
      end: end as Uint8Array | null,
      epoch: epoch as number,
      term: term as number,
      voters: voters as number[],
      votersOutgoing: votersOutgoing as number[],
      learners: learners as number[],
      lastIndex: lastIndex as number,
      progress,
      keyCount: keyCount as number,
      sizeBytes: sizeBytes as number,
      writeCount: writeCount as number,
      readCount: readCount as number,
      sizeSplitKey: (sizeSplitKey as Uint8Array | null) ?? undefined,
      loadSplitKey: (loadSplitKey as Uint8Array | null) ?? undefined,
      ...(targetRangeId === undefined ? {} : { frozen: { targetRangeId, index: freezeIndex!, term: freezeTerm!, epoch: freezeEpoch! } }),
    };
  });
  return {
    nodeId: nodeId as number,
    usedBytes: usedBytes as number,
    availableBytes: availableBytes as number,
    session: session as number,
    seq: seq as number,
    base: base as number,
    replicas,
    leading: reports,
    removed: removed as number[],
    ...(described === undefined ? {} : { described }),
  };
}

function decodeDescribed(flat: unknown, fail: (what: string) => never): ReplicaBounds[] {
  if (!Array.isArray(flat) || flat.length % 4 !== 0 || flat.length > 4 * HEARTBEAT_RANGE_COUNT_MAX) return fail('described replicas');
  const out: ReplicaBounds[] = [];
  for (let i = 0; i < flat.length; i += 4) {
    const [rangeId, epoch, start, end] = flat.slice(i, i + 4) as unknown[];
    if (!isId(rangeId) || !isCount(epoch) || !(start instanceof Uint8Array) || !isKeyOrNull(end)) fail(`described replica ${i / 4}`);
    out.push({ rangeId: rangeId as number, epoch: epoch as number, start: start as Uint8Array, end: end as Uint8Array | null });
  }
  return out;
}
