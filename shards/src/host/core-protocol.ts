import { Packr } from 'msgpackr';
import type { WireError } from '../errors.js';
import type { Segment } from './node-batch.js';
import type { LeaseChanges } from './node-leases.js';
import type { CoreLatencies } from './latency.js';
import type { FrozenRange } from '../kv/command.js';

/**
 * What crosses between the Host (main thread) and a worker core: one
 * `CoreInput` per core per loop turn (ticks, inbound traffic, requests and
 * events together, so a tick costs one message per core, not one per group)
 * and `CoreOutput`s back. Both cross as one msgpack-encoded ArrayBuffer that
 * is transferred, never structured-cloned: a transfer hands the buffer over
 * without a copy, where a clone copies every batch, and a small Buffer that
 * views a larger pool (as msgpackr's decoded ones do) drags the whole pool
 * along (ARCHITECTURE.md, the Host and its worker cores).
 */

export interface RangeBoundsWire {
  readonly start: Uint8Array;
  /** null: to the end of the key space. */
  readonly end: Uint8Array | null;
}

export type ReadOp =
  | { readonly op: 'get'; readonly key: Uint8Array }
  /** `reverse`: the span's last `limit` keys, from the last down. */
  | { readonly op: 'scan'; readonly start: Uint8Array; readonly end: Uint8Array | null; readonly limit: number; readonly reverse?: boolean };

export type Consistency = 'linearizable' | 'stale';

export type CoreRequest =
  | { readonly kind: 'propose'; readonly id: number; readonly shardId: number; readonly command: Uint8Array }
  | { readonly kind: 'read'; readonly id: number; readonly shardId: number; readonly read: ReadOp; readonly consistency: Consistency }
  | {
      readonly kind: 'createShard';
      readonly id: number;
      readonly shardId: number;
      readonly voters: readonly number[];
      readonly learners: readonly number[];
      readonly bounds: RangeBoundsWire;
      /** A replica joining an existing group: empty configuration, no range (UNINITIALIZED), caught up by the leader's snapshot. */
      readonly join: boolean;
      /** What the shard's replicas removed from the node's other cores left (their claim answers): the new one starts from their last term and vote, past their incarnation. */
      readonly tombstone?: { readonly term: number; readonly vote: number; readonly incarnation: number };
    }
  | { readonly kind: 'removeShard'; readonly id: number; readonly shardId: number }
  /**
   * The Host is about to create a replica of `shardId` in some core's store. Answers `here` (this
   * core has it, or a split being applied is creating it); else, after durably marking it away so no
   * split applied here creates it a second time (see NodeStore.markAway; the core that creates it
   * clears its mark), `{ removed }` with the term, vote and incarnation the tombstone of a replica
   * removed here kept (messages for it are stale), and `mergeSource` if a replica here is frozen for a merge into
   * it; or `free`.
   */
  | { readonly kind: 'claimShard'; readonly id: number; readonly shardId: number }
  /**
   * A membership change on the shard's leader, refused unless the range is at `epoch` (what the
   * caller planned against). No changes: leave a joint configuration. Answered when applied.
   */
  | { readonly kind: 'changeMembership'; readonly id: number; readonly shardId: number; readonly epoch: number; readonly changes: readonly MembershipChange[] }
  /** What placement needs of every shard this core leads (placement's RangeReport). */
  | { readonly kind: 'rangeReports'; readonly id: number; readonly splitKeyMinBytes: number }
  | { readonly kind: 'status'; readonly id: number }
  /** The replicas changed since the last 'changes' (all with `full`), with their reports where led here (shard-changes.ts CoreChanges). */
  | { readonly kind: 'changes'; readonly id: number; readonly splitKeyMinBytes: number; readonly full: boolean }
  | { readonly kind: 'transferLeader'; readonly id: number; readonly shardId: number; readonly to: number }
  /** collectGarbage: a full GC first, where the process exposes one (node --expose-gc: benchmarks), so heapUsedBytes is the live heap. */
  | { readonly kind: 'stats'; readonly id: number; readonly collectGarbage?: boolean }
  /** On the shard's leader: propose checksum entry `checksumId`; answered once applied here (KvResult with `checksum`). */
  | { readonly kind: 'checksumPropose'; readonly id: number; readonly shardId: number; readonly checksumId: number }
  /** This replica's result for the checksum entry at `index` (kv/consistency.ts ChecksumAnswer); `withBlocks` adds the block digests. */
  | { readonly kind: 'checksumResult'; readonly id: number; readonly shardId: number; readonly index: number; readonly checksumId: number; readonly withBlocks: boolean }
  /** One block's keys and per-key digests from that check's held snapshot (ChecksumBlockAnswer). */
  | { readonly kind: 'checksumBlock'; readonly id: number; readonly shardId: number; readonly index: number; readonly checksumId: number; readonly block: number };

export interface MembershipChange {
  readonly type: 'addNode' | 'removeNode' | 'addLearner';
  readonly nodeId: number;
}

export type CoreEvent =
  /** The node liveness tracker declared a peer down: wake quiesced groups it led (rate-limited). */
  | { readonly kind: 'peerDown'; readonly peer: number }
  /** A peer declared down was heard from again: groups it led that have not woken yet stay quiesced. */
  | { readonly kind: 'peerUp'; readonly peer: number }
  /** The transport could not deliver to a peer. */
  | { readonly kind: 'unreachable'; readonly peer: number }
  /** Outgoing snapshot stream: the Host wrote the last chunk; send the next. */
  | { readonly kind: 'snapshotCredit'; readonly streamId: number }
  /** Outgoing snapshot stream finished (the receiver acknowledged the end) or failed. */
  | { readonly kind: 'snapshotDone'; readonly streamId: number; readonly ok: boolean }
  /** Incoming snapshot stream opened by a peer's leader replica. */
  | { readonly kind: 'snapshotIncoming'; readonly streamId: number; readonly shardId: number; readonly from: number; readonly term: number }
  | { readonly kind: 'snapshotChunk'; readonly streamId: number; readonly bytes: Uint8Array }
  /** Incoming stream ended: `ok` after the last chunk, false when it broke. */
  | { readonly kind: 'snapshotEnd'; readonly streamId: number; readonly ok: boolean }
  /** Linearizable reads the Host served itself (local-reads.ts): per shard, how many and a sample of their keys. */
  | { readonly kind: 'localReads'; readonly reads: readonly (readonly [shardId: number, count: number, keys: readonly Uint8Array[]])[] };

export interface CoreInput {
  readonly ticks: number;
  readonly inbound: readonly (readonly [from: number, segment: Segment])[];
  /** Node lease changes, each to apply after the first `after` inbound segments: in the order their frames arrived. */
  readonly leases: readonly (readonly [after: number, changes: LeaseChanges])[];
  readonly requests: readonly CoreRequest[];
  readonly events: readonly CoreEvent[];
}

export type CoreReply = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly error: WireError };

export type CoreOutEvent =
  | { readonly kind: 'snapshotOpen'; readonly streamId: number; readonly to: number; readonly header: Uint8Array }
  | { readonly kind: 'snapshotChunk'; readonly streamId: number; readonly bytes: Uint8Array }
  | { readonly kind: 'snapshotEnd'; readonly streamId: number }
  | { readonly kind: 'snapshotAbort'; readonly streamId: number; readonly reason: string }
  /** Incoming stream: the chunk was staged (or refused: `error`); the Host may pull the next one. */
  | { readonly kind: 'snapshotChunkAck'; readonly streamId: number; readonly error?: string }
  /** A replica's view of its group's leader changed (for leader hints and routing). */
  | { readonly kind: 'leader'; readonly shardId: number; readonly leader: number; readonly term: number }
  /** Applying a split created this shard on the core (next to `parent`). */
  | { readonly kind: 'shardCreated'; readonly shardId: number; readonly parent: number }
  /** A peer's replica of a shard this core does not have sent it Raft traffic (the Host may create the replica: ReplicaAdoption.onUnknownShard, replica/adoption.ts). */
  | { readonly kind: 'unknownShard'; readonly shardId: number; readonly from: number }
  /** This replica applied its own removal from the shard and destroyed itself (a tombstone remains). */
  | { readonly kind: 'shardRemoved'; readonly shardId: number }
  /** The core's view of its store's disk changed: `full` (a group commit failed for want of space), `low` (below the reserve: writes refused). */
  | { readonly kind: 'disk'; readonly full: boolean; readonly low: boolean; readonly freeBytes: number }
  /** The bounds the core published a shard for local reads under `version` (local-reads.ts); version 0: the shard left the core. */
  | { readonly kind: 'readBounds'; readonly shardId: number; readonly version: number; readonly start: Uint8Array; readonly end: Uint8Array | null };

/** `mergeSource`: a replica on the core is frozen for a merge into the shard, whose replica must then share its store. */
export type ClaimAnswer = 'here' | 'free' | { readonly removed?: { readonly term: number; readonly vote: number; readonly incarnation: number }; readonly mergeSource?: true };

export interface CoreOutput {
  /** Per destination node: one encoded segment (see node-batch.ts). */
  readonly outbound: readonly (readonly [to: number, segment: Uint8Array])[];
  readonly replies: readonly CoreReply[];
  readonly events: readonly CoreOutEvent[];
}

/** One shard's state as reported by `status`. */
export interface ShardStatus {
  readonly shardId: number;
  readonly role: string;
  readonly leader: number;
  readonly term: number;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly quiesced: boolean;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  /** The key range the replica owns: [start, end), end null for the end of the key space. */
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
  /** Grows with every split and membership change (kv/range.ts). */
  readonly epoch: number;
  /** Present while the replica is frozen for a merge (kv/merge.ts): into which range, from which index. */
  readonly frozen?: FrozenRange;
}

/** Counters a core keeps; `stats` returns them. Monotonic unless noted. */
export interface CoreStats {
  rounds: number;
  /** Group ticks delivered (a quiesced group gets none). */
  groupTicks: number;
  messagesStepped: number;
  messagesSent: number;
  /** Appends dropped over a peer's per-flush budget (outbox.ts); their followers probe and are resent. */
  appendsDeferred: number;
  /** Inbound segments dropped while the disk was full (nothing stepped then could be persisted). */
  segmentsDroppedDiskFull: number;
  /** Group commits that failed for want of space (each retried until one succeeds). */
  diskFullCommits: number;
  /** Other store writes (compaction, claims, destroys) given up for want of space. */
  storeWritesFailedDiskFull: number;
  /** Messages from the network that failed validation (wrong node, unknown shard, undecodable). */
  messagesRejected: number;
  proposals: number;
  /** Entries those writes went into: writes of one shard that arrive in one turn share an entry (ShardRequests). */
  proposalEntries: number;
  reads: number;
  /** Linearizable reads a leader answered under a node lease, with no heartbeat round (node-leases.ts). */
  leaseReads: number;
  entriesPersisted: number;
  entriesApplied: number;
  /** Group commits made durable (entries, a term or a vote: NodeStore.persist), and those that were not (commits and applies only). */
  commitsSynced: number;
  commitsUnsynced: number;
  quiesces: number;
  wakes: number;
  snapshotsSent: number;
  snapshotsInstalled: number;
  compactions: number;
  /** Merges this node's replica of a target held until its replica of the source caught up (merge-gate.ts). */
  mergesHeld: number;
  /** Consistency checks: passes started, refused (too many waiting), failed to read their range, and chunks hashed (kv/consistency.ts). */
  checksumPasses: number;
  checksumPassesRefused: number;
  checksumPassesFailed: number;
  checksumChunks: number;
  /** Gauges. */
  groupCount: number;
  activeGroupCount: number;
  /** Replicas whose Raft node is built: the rest were opened at start and have had no traffic since (Group.raw). */
  loadedGroupCount: number;
  /** Bytes of the core's LMDB file in use: pages up to the last one written times the page size (freed pages inside are reused, not returned). A gauge, set when stats are asked for. */
  storeUsedBytes: number;
  /**
   * The store's log tail (storage/log-tail.ts): records since its last checkpoint, checkpoints since it
   * opened, and quiesced replicas those checkpoints compacted (NodeStore.setCheckpointCompaction). Set when
   * stats are asked for.
   */
  tailRecords: number;
  tailCheckpoints: number;
  tailCompactions: number;
  /** Quiesced replicas whose cached entries wait for a tail checkpoint (NodeStore.releasesWaiting). */
  tailCachesWaiting: number;
  /**
   * V8 heap in use (live objects and garbage not yet collected) of the thread the core runs on: a
   * worker core's own isolate; an inline core shares the Host's thread, so its number is the Host's
   * heap. A gauge, set when stats are asked for (host-bench's idle section divides it by replicas).
   */
  heapUsedBytes: number;
}

/** What a core answers `stats` with: its counters, and its latency histograms (latency.ts), shipped with them rather than per observation. */
export type CoreStatsReport = CoreStats & { readonly latencies: CoreLatencies };

export function zeroCoreStats(): CoreStats {
  return {
    rounds: 0,
    groupTicks: 0,
    messagesStepped: 0,
    messagesSent: 0,
    appendsDeferred: 0,
    segmentsDroppedDiskFull: 0,
    diskFullCommits: 0,
    storeWritesFailedDiskFull: 0,
    messagesRejected: 0,
    proposals: 0,
    proposalEntries: 0,
    reads: 0,
    leaseReads: 0,
    entriesPersisted: 0,
    entriesApplied: 0,
    commitsSynced: 0,
    commitsUnsynced: 0,
    quiesces: 0,
    wakes: 0,
    snapshotsSent: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    mergesHeld: 0,
    checksumPasses: 0,
    checksumPassesRefused: 0,
    checksumPassesFailed: 0,
    checksumChunks: 0,
    groupCount: 0,
    activeGroupCount: 0,
    loadedGroupCount: 0,
    storeUsedBytes: 0,
    tailRecords: 0,
    tailCheckpoints: 0,
    tailCompactions: 0,
    tailCachesWaiting: 0,
    heapUsedBytes: 0,
  };
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/**
 * Encodes into a fresh ArrayBuffer that the sender may transfer: msgpackr's
 * output views its reusable pool, and transferring the pool would detach it.
 */
export function encodeForTransfer(value: CoreInput | CoreOutput): ArrayBuffer {
  const bytes = packr.pack(value);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

export function decodeTransferred<T extends CoreInput | CoreOutput>(buffer: ArrayBuffer): T {
  return packr.unpack(new Uint8Array(buffer)) as T;
}
