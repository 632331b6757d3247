import { FlotillaError, groupId } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { META_RANGE_ID } from '@flotilla/placement';
import { ATOMIC_BATCH_OPS_MAX, NotLeaderError, decodeCommand, encodeCommand, type KvCommand, type ChecksumAnswer, type ChecksumBlockAnswer, type Consistency, type Host, type KvResult, type MembershipChange } from '@flotilla/shards';

/**
 * One operation on one range, as run on the node that leads it: locally, or
 * forwarded there over the transport (Host.forward) by a node that does not.
 * The wire form is a msgpack tuple; every field is validated on receipt.
 */
export type RangeOp =
  | { readonly kind: 'get'; readonly rangeId: number; readonly key: Uint8Array; readonly consistency: Consistency }
  | { readonly kind: 'put'; readonly rangeId: number; readonly key: Uint8Array; readonly value: Uint8Array; readonly ifVersion: number | undefined; readonly contentType?: string }
  | { readonly kind: 'delete'; readonly rangeId: number; readonly key: Uint8Array; readonly ifVersion: number | undefined }
  /** Puts and deletes of keys of this range, applied all or none (one Raft entry: AtomicBatchCommand). */
  | { readonly kind: 'atomicBatch'; readonly rangeId: number; readonly ops: readonly BatchWrite[] }
  /** Deletes every key of [start, end), which must lie within the range (one Raft entry: DeleteRangeCommand). */
  | { readonly kind: 'deleteRange'; readonly rangeId: number; readonly start: Uint8Array; readonly end: Uint8Array | null }
  | { readonly kind: 'split'; readonly rangeId: number; readonly key: Uint8Array; readonly newShardId: number; readonly epoch: number }
  /** A membership change on the range's leader (the placement driver's steps). */
  | { readonly kind: 'membership'; readonly rangeId: number; readonly epoch: number; readonly changes: readonly MembershipChange[] }
  | { readonly kind: 'transferLeader'; readonly rangeId: number; readonly to: number }
  /**
   * Creates an empty replica of the range on the node it is sent to, for its leader to catch up once
   * it adds the node (the driver sends it before adding a learner). Explicit, so it is created even
   * where a removed replica left a tombstone, which traffic alone never overrides.
   */
  | {
      readonly kind: 'prepareReplica';
      readonly rangeId: number;
      /** A neighbouring range this node holds: the new replica goes into that one's store, so the two can merge later. */
      readonly colocateWith?: number;
    }
  /** A merge's command on the range's leader (the placement driver's merge steps: shards kv/merge.ts). */
  | { readonly kind: 'mergeStep'; readonly rangeId: number; readonly command: MergeStepCommand }
  /** A request for the placement driver, which runs where the meta range is led (`rangeId` is always META_RANGE_ID). */
  | { readonly kind: 'placement'; readonly rangeId: number; readonly payload: Uint8Array }
  /** Starts a consistency check on the range's leader: checksum entry `checksumId` through Raft (answers KvResult with `checksum`). */
  | { readonly kind: 'checksum'; readonly rangeId: number; readonly checksumId: number }
  /** The replica on the node it is sent to (never forwarded on to a leader): its result for the check at `index`. */
  | { readonly kind: 'checksumResult'; readonly rangeId: number; readonly index: number; readonly checksumId: number; readonly withBlocks: boolean }
  /** The replica on the node it is sent to: one block's keys and per-key digests from that check's snapshot. */
  | { readonly kind: 'checksumBlock'; readonly rangeId: number; readonly index: number; readonly checksumId: number; readonly block: number }
  | {
      readonly kind: 'scan';
      readonly rangeId: number;
      readonly start: Uint8Array;
      readonly end: Uint8Array | null;
      readonly limit: number;
      readonly consistency: Consistency;
      /** The span's last `limit` keys, from the last down. */
      readonly reverse?: boolean;
    };

/** The commands a merge step proposes. */
export type MergeStepCommand = Extract<KvCommand, { op: 'prepareMerge' | 'commitMerge' | 'fenceMerge' | 'rollbackMerge' }>;
const MERGE_STEP_OPS: readonly string[] = ['prepareMerge', 'commitMerge', 'fenceMerge', 'rollbackMerge'] satisfies readonly MergeStepCommand['op'][];

/** One write of an atomic batch. */
export type BatchWrite =
  | { readonly op: 'put'; readonly key: Uint8Array; readonly value: Uint8Array; readonly ifVersion?: number; readonly contentType?: string }
  | { readonly op: 'delete'; readonly key: Uint8Array; readonly ifVersion?: number };

export type RangeOpResult =
  | { value: Uint8Array; version: number; contentType?: string }
  | undefined
  | KvResult
  | { key: Uint8Array; value: Uint8Array; version: number }[]
  | Uint8Array
  | ChecksumAnswer
  | ChecksumBlockAnswer;

/** Serves `placement` requests on the node leading the meta range (the placement driver); absent: this node serves none. */
export type PlacementHandler = (payload: Uint8Array) => Promise<Uint8Array>;

/** Runs `op` on this node's replica (which answers NOT_LEADER with a hint if it does not lead). */
export async function runLocally(host: Host, op: RangeOp, placement?: PlacementHandler): Promise<RangeOpResult> {
  const shard = groupId(op.rangeId);
  switch (op.kind) {
    case 'membership':
      return host.changeMembership(shard, { epoch: op.epoch, changes: op.changes });
    case 'transferLeader':
      await host.transferLeader(shard, op.to);
      return undefined;
    case 'prepareReplica': {
      // Next to the neighbour it may merge with, if this node still holds that one (it may have moved off since).
      const colocateWith = op.colocateWith !== undefined && host.hasShard(groupId(op.colocateWith)) ? groupId(op.colocateWith) : undefined;
      await host.createShard({ shardId: shard, voters: [], join: true, ...(colocateWith === undefined ? {} : { colocateWith }) }).catch((err: unknown) => {
        if ((err as { code?: string }).code !== 'SHARD_EXISTS') throw err;
      });
      return undefined;
    }
    case 'placement': {
      // The driver runs next to the meta range's leader: elsewhere, point the caller there.
      const leader = host.leaderOf(groupId(META_RANGE_ID));
      if (leader !== host.nodeId || placement === undefined) throw new NotLeaderError(META_RANGE_ID, host.nodeId, leader === host.nodeId ? 0 : (leader ?? 0));
      return placement(op.payload);
    }
    case 'get': {
      const v = await host.get(shard, op.key, { consistency: op.consistency });
      if (v === undefined) return undefined;
      return v.contentType === undefined ? { value: v.value, version: v.version } : { value: v.value, version: v.version, contentType: v.contentType };
    }
    case 'put':
      return host.propose(shard, {
        op: 'put',
        key: op.key,
        value: op.value,
        ...(op.ifVersion === undefined ? {} : { ifVersion: op.ifVersion }),
        ...(op.contentType === undefined ? {} : { contentType: op.contentType }),
      });
    case 'delete':
      return host.propose(shard, { op: 'delete', key: op.key, ...(op.ifVersion === undefined ? {} : { ifVersion: op.ifVersion }) });
    case 'atomicBatch':
      if (op.ops.length === 0) throw new MalformedRangeOpError('atomic batch without ops');
      return host.propose(shard, { op: 'atomicBatch', key: op.ops[0]!.key, ops: op.ops });
    case 'deleteRange':
      return host.propose(shard, { op: 'deleteRange', key: op.start, end: op.end });
    case 'split':
      return host.propose(shard, { op: 'split', key: op.key, newShardId: op.newShardId, epoch: op.epoch });
    case 'mergeStep':
      return host.propose(shard, op.command);
    case 'scan':
      return host.scan(shard, { start: op.start, end: op.end, limit: op.limit, ...(op.reverse === true ? { reverse: true } : {}) }, { consistency: op.consistency });
    case 'checksum':
      return host.proposeChecksum(shard, op.checksumId);
    case 'checksumResult':
      return host.checksumResult(shard, { index: op.index, checksumId: op.checksumId, withBlocks: op.withBlocks });
    case 'checksumBlock':
      return host.checksumBlock(shard, { index: op.index, checksumId: op.checksumId, block: op.block });
    default: {
      const never: never = op;
      throw new Error(`unknown range op ${JSON.stringify(never)}`);
    }
  }
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeRangeOp(op: RangeOp): Uint8Array {
  switch (op.kind) {
    case 'get':
      return packr.pack(['get', op.rangeId, op.key, op.consistency]);
    case 'put':
      return packr.pack(op.contentType === undefined ? ['put', op.rangeId, op.key, op.value, op.ifVersion ?? -1] : ['put', op.rangeId, op.key, op.value, op.ifVersion ?? -1, op.contentType]);
    case 'delete':
      return packr.pack(['delete', op.rangeId, op.key, op.ifVersion ?? -1]);
    case 'atomicBatch':
      // The first op's key sits where every keyed op has its key; each op is [op, key, value|null, ifVersion|-1, contentType|null].
      return packr.pack([
        'atomicBatch',
        op.rangeId,
        op.ops[0]?.key ?? new Uint8Array(0),
        op.ops.map((w) => [w.op, w.key, w.op === 'put' ? w.value : null, w.ifVersion ?? -1, w.op === 'put' ? (w.contentType ?? null) : null]),
      ]);
    case 'deleteRange':
      return packr.pack(['deleteRange', op.rangeId, op.start, op.end]);
    case 'split':
      return packr.pack(['split', op.rangeId, op.key, op.newShardId, op.epoch]);
    case 'scan':
      return packr.pack(op.reverse === true ? ['scan', op.rangeId, op.start, op.end, op.limit, op.consistency, true] : ['scan', op.rangeId, op.start, op.end, op.limit, op.consistency]);
    case 'membership':
      return packr.pack(['membership', op.rangeId, op.epoch, op.changes.flatMap((c) => [c.type, c.nodeId])]);
    case 'transferLeader':
      return packr.pack(['transferLeader', op.rangeId, op.to]);
    case 'prepareReplica':
      return packr.pack(['prepareReplica', op.rangeId, op.colocateWith ?? null]);
    case 'placement':
      return packr.pack(['placement', op.rangeId, op.payload]);
    case 'mergeStep':
      // The command in its Raft form: decoded and checked on arrival as an entry is (decodeCommand).
      return packr.pack(['mergeStep', op.rangeId, encodeCommand(op.command)]);
    case 'checksum':
      return packr.pack(['checksum', op.rangeId, op.checksumId]);
    case 'checksumResult':
      return packr.pack(['checksumResult', op.rangeId, op.index, op.checksumId, op.withBlocks]);
    case 'checksumBlock':
      return packr.pack(['checksumBlock', op.rangeId, op.index, op.checksumId, op.block]);
  }
}

const CHANGE_TYPES: readonly string[] = ['addNode', 'removeNode', 'addLearner'] satisfies readonly MembershipChange['type'][];
const positive = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
const nonNegative = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** The kinds without a key: the placement driver's. */
function decodeAdminOp(raw: unknown[]): RangeOp | undefined {
  const [kind, rangeId] = raw;
  if (!positive(rangeId)) return undefined;
  switch (kind) {
    case 'membership': {
      const [, , epoch, flat] = raw;
      if (raw.length !== 4 || !positive(epoch) || !Array.isArray(flat) || flat.length % 2 !== 0 || flat.length > 16) throw new MalformedRangeOpError('membership');
      const changes: MembershipChange[] = [];
      for (let i = 0; i < flat.length; i += 2) {
        const [type, nodeId] = [flat[i], flat[i + 1]];
        if (typeof type !== 'string' || !CHANGE_TYPES.includes(type) || !positive(nodeId)) throw new MalformedRangeOpError('membership change');
        changes.push({ type: type as MembershipChange['type'], nodeId });
      }
      return { kind, rangeId, epoch, changes };
    }
    case 'transferLeader':
      if (raw.length !== 3 || !positive(raw[2])) throw new MalformedRangeOpError('transferLeader');
      return { kind, rangeId, to: raw[2] };
    case 'prepareReplica':
      if (raw.length !== 3 || !(raw[2] === null || positive(raw[2]))) throw new MalformedRangeOpError('prepareReplica');
      return raw[2] === null ? { kind, rangeId } : { kind, rangeId, colocateWith: raw[2] };
    case 'placement':
      if (raw.length !== 3 || !(raw[2] instanceof Uint8Array) || rangeId !== META_RANGE_ID) throw new MalformedRangeOpError('placement');
      return { kind, rangeId, payload: raw[2] };
    case 'mergeStep': {
      if (raw.length !== 3 || !(raw[2] instanceof Uint8Array)) throw new MalformedRangeOpError('mergeStep');
      let command: KvCommand;
      try {
        command = decodeCommand(0, raw[2]);
      } catch {
        throw new MalformedRangeOpError('mergeStep command');
      }
      if (!MERGE_STEP_OPS.includes(command.op)) throw new MalformedRangeOpError(`mergeStep of a ${command.op}`);
      return { kind, rangeId, command: command as MergeStepCommand };
    }
    case 'checksum':
      if (raw.length !== 3 || !positive(raw[2])) throw new MalformedRangeOpError('checksum');
      return { kind, rangeId, checksumId: raw[2] };
    case 'checksumResult': {
      const [, , index, checksumId, withBlocks] = raw;
      if (raw.length !== 5 || !positive(index) || !positive(checksumId) || typeof withBlocks !== 'boolean') throw new MalformedRangeOpError('checksumResult');
      return { kind, rangeId, index, checksumId, withBlocks };
    }
    case 'checksumBlock': {
      const [, , index, checksumId, block] = raw;
      if (raw.length !== 5 || !positive(index) || !positive(checksumId) || !nonNegative(block)) throw new MalformedRangeOpError('checksumBlock');
      return { kind, rangeId, index, checksumId, block };
    }
    default:
      return undefined;
  }
}

/** A forwarded request that does not decode: the sender's bug or bad input; answered with this code. */
export class MalformedRangeOpError extends FlotillaError {
  readonly code = 'RANGE_OP_MALFORMED';
  readonly retryable = false;
  constructor(detail: string) {
    super(`malformed forwarded request: ${detail}`);
  }
}

export function decodeRangeOp(bytes: Uint8Array): RangeOp {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch {
    throw new MalformedRangeOpError('undecodable');
  }
  if (!Array.isArray(raw) || raw.length < 3) throw new MalformedRangeOpError('not a tuple');
  const admin = decodeAdminOp(raw as unknown[]);
  if (admin !== undefined) return admin;
  const [kind, rangeId, key] = raw as unknown[];
  if (typeof rangeId !== 'number' || !Number.isSafeInteger(rangeId) || rangeId <= 0) throw new MalformedRangeOpError('range id');
  if (!(key instanceof Uint8Array)) throw new MalformedRangeOpError('key is not bytes');
  const consistencyAt = (i: number): Consistency => {
    const c = raw[i];
    if (c !== 'linearizable' && c !== 'stale') throw new MalformedRangeOpError('consistency');
    return c;
  };
  const ifVersionAt = (i: number): number | undefined => {
    const v = raw[i];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1) throw new MalformedRangeOpError('ifVersion');
    return v === -1 ? undefined : v;
  };
  switch (kind) {
    case 'get':
      if (raw.length !== 4) throw new MalformedRangeOpError('get arity');
      return { kind, rangeId, key, consistency: consistencyAt(3) };
    case 'put': {
      if ((raw.length !== 5 && raw.length !== 6) || !(raw[3] instanceof Uint8Array)) throw new MalformedRangeOpError('put');
      const contentType = raw[5];
      if (raw.length === 6 && typeof contentType !== 'string') throw new MalformedRangeOpError('put content type');
      return { kind, rangeId, key, value: raw[3], ifVersion: ifVersionAt(4), ...(typeof contentType === 'string' ? { contentType } : {}) };
    }
    case 'delete':
      if (raw.length !== 4) throw new MalformedRangeOpError('delete arity');
      return { kind, rangeId, key, ifVersion: ifVersionAt(3) };
    case 'atomicBatch': {
      const writes = raw[3];
      if (raw.length !== 4 || !Array.isArray(writes) || writes.length === 0 || writes.length > ATOMIC_BATCH_OPS_MAX) throw new MalformedRangeOpError('atomicBatch');
      return { kind, rangeId, ops: writes.map(decodeBatchWrite) };
    }
    case 'deleteRange': {
      const end = raw[3];
      if (raw.length !== 4 || !(end === null || end instanceof Uint8Array)) throw new MalformedRangeOpError('deleteRange');
      return { kind, rangeId, start: key, end };
    }
    case 'split': {
      const [, , , newShardId, epoch] = raw as unknown[];
      if (raw.length !== 5 || !positive(newShardId) || !positive(epoch)) throw new MalformedRangeOpError('split');
      return { kind, rangeId, key, newShardId: newShardId as number, epoch: epoch as number };
    }
    case 'scan': {
      const [, , , end, limit, , reverse] = raw as unknown[];
      if ((raw.length !== 6 && !(raw.length === 7 && reverse === true)) || !(end === null || end instanceof Uint8Array) || typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
        throw new MalformedRangeOpError('scan');
      }
      return { kind, rangeId, start: key, end, limit, consistency: consistencyAt(5), ...(reverse === true ? { reverse: true } : {}) };
    }
    default:
      throw new MalformedRangeOpError(`kind ${String(kind)}`);
  }
}

/** One write of a forwarded atomic batch: [op, key, value|null, ifVersion|-1, contentType|null]. */
function decodeBatchWrite(raw: unknown): BatchWrite {
  if (!Array.isArray(raw) || raw.length !== 5) throw new MalformedRangeOpError('atomicBatch op');
  const [op, key, value, ifVersion, contentType] = raw as unknown[];
  if (!(key instanceof Uint8Array)) throw new MalformedRangeOpError('atomicBatch op key');
  if (typeof ifVersion !== 'number' || !Number.isSafeInteger(ifVersion) || ifVersion < -1) throw new MalformedRangeOpError('atomicBatch op ifVersion');
  const condition = ifVersion === -1 ? {} : { ifVersion };
  if (op === 'delete' && value === null && contentType === null) return { op, key, ...condition };
  if (op !== 'put' || !(value instanceof Uint8Array) || !(contentType === null || typeof contentType === 'string')) throw new MalformedRangeOpError('atomicBatch op');
  return { op, key, value, ...condition, ...(contentType === null ? {} : { contentType }) };
}

export function encodeRangeOpResult(result: RangeOpResult): Uint8Array {
  return packr.pack(result === undefined ? null : result);
}

/** Decodes what the leader's node answered; the shape was checked by whoever ran the op, so only the outer form is checked here. */
export function decodeRangeOpResult(op: RangeOp, bytes: Uint8Array): RangeOpResult {
  const raw = packr.unpack(bytes) as unknown;
  if (op.kind === 'transferLeader' || op.kind === 'prepareReplica') return undefined;
  if (op.kind === 'placement') {
    if (!(raw instanceof Uint8Array)) throw new MalformedRangeOpError('placement answer');
    return raw;
  }
  if (op.kind === 'get') {
    if (raw === null) return undefined;
    const v = raw as { value?: unknown; version?: unknown; contentType?: unknown };
    if (!(v.value instanceof Uint8Array) || typeof v.version !== 'number') throw new MalformedRangeOpError('get answer');
    if (v.contentType !== undefined && typeof v.contentType !== 'string') throw new MalformedRangeOpError('get answer content type');
    return v.contentType === undefined ? { value: v.value, version: v.version } : { value: v.value, version: v.version, contentType: v.contentType };
  }
  if (op.kind === 'scan') {
    if (!Array.isArray(raw)) throw new MalformedRangeOpError('scan answer');
    return raw as { key: Uint8Array; value: Uint8Array; version: number }[];
  }
  if (op.kind === 'checksumResult' || op.kind === 'checksumBlock') {
    const state = (raw as { state?: unknown } | null)?.state;
    if (state !== 'pending' && state !== 'done' && state !== 'missing') throw new MalformedRangeOpError(`${op.kind} answer`);
    return raw as ChecksumAnswer | ChecksumBlockAnswer;
  }
  const r = raw as KvResult;
  if (r === null || typeof r !== 'object' || typeof r.ok !== 'boolean') throw new MalformedRangeOpError('write answer');
  return r;
}
