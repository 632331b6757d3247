// @flotilla/shards: where shards live — the Host and its worker cores, the node's LMDB stores, the KV state machine.
export { NodeStore, ShardStorage, ENTRY_CACHE_COUNT_MAX, DURABLE_IO, type ShardWrite, type StoreIo, type TailLimits } from './storage/node-store.js';
export { prepareDataDir, markDataDirReady, checkStoreFile, DATA_FORMAT_VERSION, IDENTITY_FILE, STORE_FILE, STORE_LOCK_FILE } from './storage/data-dir.js';
export { DataDirError, DataDirLockedError, CorruptRecordError, type DataDirErrorCode } from './storage/errors.js';
export { DirLock, LOCK_FILE } from './storage/dir-lock.js';
export { writeFileDurably, writeJsonDurably, fsyncDir, makeDirDurably, tempFileName, NODE_FS, type DurableFs } from './storage/durable-file.js';
export { SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_PAIR_BYTES_MAX, SNAPSHOT_PAIR_OVERHEAD_BYTES, type RangeBounds } from './storage/codec.js';
export { decodeChunk, type SnapshotHeader } from './snapshot/chunk.js';
export { readSnapshot } from './snapshot/reader.js';
export { SnapshotInstaller } from './snapshot/installer.js';
export { KvStateMachine, type ApplyBatch, type ApplyOutcome, type ApplyResults, type CreatedShard, type StagedApply, type StoredValue } from './kv/state-machine.js';
export { WHOLE_KEY_SPACE, type ShardRange } from './kv/range.js';
export { encodeCommand, decodeCommand, validateCommand, invalidContentType, KEY_BYTES_MAX, VALUE_BYTES_MAX, CONTENT_TYPE_BYTES_MAX, ATOMIC_BATCH_OPS_MAX, ATOMIC_BATCH_BYTES_MAX, INITIAL_LOG_INDEX, INITIAL_LOG_TERM, type KvCommand, type KvResult, type PutCommand, type DeleteCommand, type AtomicBatchCommand, type DeleteRangeCommand, type SplitCommand, type SplitOutcome, type PrepareMergeCommand, type CommitMergeCommand, type FrozenRange, type MergeOutcome, type MembershipOutcome, type ChecksumApplied } from './kv/command.js';
export {
  digestPairs,
  firstDifferentBlock,
  firstDifferentKey,
  CHECKSUM_BLOCK_KEY_COUNT,
  CHECKSUM_BLOCK_DIGEST_BYTES,
  CHECKSUM_KEY_DIGEST_BYTES,
  CHECKSUM_CHUNK_KEY_COUNT_DEFAULT,
  CHECKSUM_HOLD_TICKS_DEFAULT,
  type BlockDetail,
  type ChecksumAnswer,
  type ChecksumBlockAnswer,
  type RangeDigest,
} from './kv/consistency.js';
export { encodeBatch, decodeBatch, BatchDecodeError, BATCH_MESSAGE_COUNT_MAX, type Envelope } from './host/message-codec.js';
export { openNodeStores, lockNodeDir, prepareNodeDir, markNodeDirReady, coreDirName, CORE_COUNT_MAX, NODE_DIR_FORMAT_VERSION, NODE_FILE, type NodeDirOptions } from './host/node-dir.js';
export { Host } from './host/host.js';
/** A core's view of the node leases: exported for the simulation's deliberately broken builds (test/src/node-sim/bugs.ts). */
export { CoreLeases } from './host/core-leases.js';
/** The Host's side of node leases (its local reads check them): exported for the same broken builds. */
export { NodeLeaseTable } from './host/node-leases.js';
export type { HostStats } from './host/stats.js';
export { TICK_INTERVAL_MS_DEFAULT, REQUEST_TIMEOUT_TICKS_DEFAULT, type HostOptions, type SnapshotFlowMode } from './host/options.js';
export type { ShardStatus, CoreStats, CoreStatsReport, Consistency, RangeBoundsWire, MembershipChange } from './host/core-protocol.js';
export type { ShardChange } from './host/shard-changes.js';
export type { ShardViewChanges } from './host/shard-view.js';
export { LATENCY_BUCKET_BOUNDS_SECONDS, emptyLatencyBuckets, observeLatency, type LatencyBuckets, type CoreLatencies } from './host/latency.js';
export { childLogger, type ShellLogger } from './shell-logger.js';
export { prettyLogDestination } from './pretty-log.js';
export { NotLeaderError, ShardNotFoundError, ShardExistsError, KeyOutOfRangeError, EpochMismatchError, RequestTimeoutError, HostClosedError, CoreCrashedError, RangeMergingError, ShardRemovingError, OverloadedError, PeerUnreachableError, OutcomeUnknownError, DiskFullError, RemoteError, InvalidCommandError } from './errors.js';
