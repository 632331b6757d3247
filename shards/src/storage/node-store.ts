import {
  CompactedError,
  EMPTY_CONF_STATE,
  EMPTY_HARD_STATE,
  NONE,
  UnavailableError,
  assert,
  entrySizeBytes,
  type ConfState,
  type Entry,
  type GroupId,
  type HardState,
  type LogIndex,
  type Snapshot,
  type Storage,
  type Term,
} from '@flotilla/core';
import { open, type Database, type DatabaseOptions, type Key, type RootDatabase } from 'lmdb';
import { compactConfState, decodeConfState, decodeEntry, decodeHardState, decodeTombstone, encodeConfState, encodeEntry, encodeHardState, encodeTombstone, type RangeBounds } from './codec.js';
import { fsyncDir, markDataDirReady, prepareDataDir } from './data-dir.js';
import { CorruptRecordError, DataDirError } from './errors.js';
import { decodeTailRecord, encodeTailWrite, payloadBytes, tailWriteBytes, type TailShardWrite } from './log-tail.js';

/** Entries of one shard's log kept in memory, newest first to go: followers and the apply path read recent entries. */
export const ENTRY_CACHE_COUNT_MAX = 1024;
/** lmdb-js's `maxFreeSpaceToRetain` (its typings lack it): free pages kept in memory across write transactions (see open). */
const LMDB_FREE_PAGES_RETAINED = 0;
/** LMDB map grows on demand (lmdb-js resizes); start at 256 MiB so small nodes stay small. */
const MAP_SIZE_INITIAL_BYTES = 256 * 1024 * 1024;
/** See NodeStore.setCheckpointCompaction: the index a checkpoint may compact a shard up to, if any. */
export type CheckpointCompaction = (shardId: GroupId) => LogIndex | undefined;
/** What one checkpoint compacted: each shard's new compaction point. */
type Compacted = Map<GroupId, { readonly index: LogIndex; readonly term: Term }>;

/**
 * A checkpoint moves the log tail into the per-shard records once it holds
 * this many records or bytes (log-tail.ts): the per-shard pages are then
 * dirtied once per checkpoint instead of once per commit, and a restart
 * replays at most this much.
 */
export interface TailLimits {
  readonly recordsMax?: number;
  readonly bytesMax?: number;
}
const DEFAULT_TAIL_LIMITS: Required<TailLimits> = { recordsMax: 256, bytesMax: 8 * 1024 * 1024 };
/**
 * A shard write with this many payload bytes goes straight into `log` when
 * the tail holds no entries of the shard: its pages are mostly payload, so
 * the tail would save little and write the payload twice.
 */
const DIRECT_WRITE_BYTES_MIN = 8 * 1024;
/** meta [0, TAIL_NEXT]: the tail's next sequence number as of the last checkpoint (the tail may be empty then). */
const TAIL_NEXT = 'tailNext';
/** Sub-databases: log, meta, data, snapshot staging, log tail. */
export const SUB_DATABASE_COUNT_MAX = 8;
/**
 * The staging record that marks a snapshot being received straight into
 * `data` (snapshot/installer.ts, direct mode): key [shardId, RECEIVING_SEQ],
 * value [start, end], the bounds its records lie in. It is written in the
 * transaction of the transfer's first chunk, before any record, and removed
 * in the transaction that installs the snapshot or deletes its records, so
 * every received record that exists has its marker (LMDB commits in
 * order). Seq -1 sorts before the shard's chunks ([shardId, 0..]), outside
 * the range they are read and removed by.
 */
const RECEIVING_SEQ = -1;

/**
 * lmdb-js transaction flags (its `TransactionFlags` plus LMDB's per-transaction
 * MDB_NOMETASYNC, which lmdb-js passes to mdb_txn_begin). A synced commit
 * fdatasyncs the data pages, then writes and syncs the meta page. A
 * data-synced commit fdatasyncs the data pages and writes the meta page
 * without its sync: LMDB's integrity holds (the meta names only pages
 * already on disk), but a power failure may lose this transaction until the
 * next synced commit, which makes it durable too (metas are sequential).
 */
const TXN_SYNCED = 0x1 | 0x2; // ABORTABLE | SYNCHRONOUS_COMMIT: lmdb-js's default
const MDB_NOMETASYNC = 0x40000;
const TXN_DATA_SYNCED = TXN_SYNCED | MDB_NOMETASYNC;

/**
 * How the store reaches its disk. `durable` (every real node): each write
 * transaction is synced before it resolves. `simulated` (the whole-node
 * simulation, test/src/node-sim, with inline cores only): every transaction
 * commits synchronously on this thread without fsync, so writes finish in
 * an order the seed fixes; the simulation kills a node in-process, where
 * what committed is in the page cache and survives, and `beforeWrite` lets
 * it stop the node at any write (a rejection there loses that write and
 * every later one, as a crash would). It resolves on a later turn, as a
 * real write's sync does: what the caller sent meanwhile is out before the
 * write is durable, so the window a crash can fall in exists here too. Never for a real node: a power failure
 * loses what noSync did not flush.
 */
export type StoreIo =
  | { readonly kind: 'durable' }
  | {
      readonly kind: 'simulated';
      beforeWrite(): Promise<void>;
      /**
       * Called once a write committed, before the caller learns it did: a
       * throw here is a crash after the write is durable and before anything
       * that depended on it (acknowledgements, votes, answers) went out.
       */
      afterWrite?(): void;
    };

export const DURABLE_IO: StoreIo = Object.freeze({ kind: 'durable' });

/** What one group contributes to a group commit: its new entries and hard state from a Ready. */
export interface ShardWrite {
  readonly shardId: GroupId;
  /** Appended after removing any stored entries from entries[0].index on (a conflicting suffix). */
  readonly entries: readonly Entry[];
  readonly hardState?: HardState | undefined;
}

/** A shard to create: its configuration, an opaque descriptor, and where its log starts (an empty log at 0 unless given). */
export interface NewShard {
  readonly shardId: GroupId;
  readonly confState: ConfState;
  readonly descriptor?: unknown;
  /** As if restored from a snapshot at this index and term, applied and committed there (a split's right half). */
  readonly startAt?: { readonly index: LogIndex; readonly term: Term };
  /** What the shard's replicas removed from this node's other stores left (their tombstones). */
  readonly tombstone?: Tombstone;
}

/**
 * What a removed replica leaves: its last term and vote (initialHardState),
 * and its incarnation, which the next replica of the shard here exceeds
 * (RaftConfig.incarnation: the shard's leader tells the two apart).
 */
export interface Tombstone extends Pick<HardState, 'term' | 'vote'> {
  readonly incarnation: number;
}

/**
 * A new shard's hard state. A replica re-created where one was removed
 * starts from the term and vote its tombstone kept — this store's, or one
 * another store of the node kept (`spec.tombstone`), the later of the two:
 * it may have voted in that term, and a fresh hard state would let it vote
 * again (Raft's one vote per term is per node, across incarnations).
 */
function initialHardState(spec: NewShard, tombstone: Tombstone | undefined): HardState {
  const start = spec.startAt === undefined ? EMPTY_HARD_STATE : { ...EMPTY_HARD_STATE, term: spec.startAt.term, commit: spec.startAt.index };
  if (tombstone === undefined || tombstone.term <= start.term) return start;
  return { ...start, term: tombstone.term, vote: tombstone.vote };
}

/**
 * What two tombstones leave together: the later term and vote — the higher
 * term; in one term the one that voted (a node votes once a term, so two
 * that voted agree) — and the higher incarnation.
 */
export function laterTombstone(a: Tombstone | undefined, b: Tombstone | undefined): Tombstone | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  const later = a.term !== b.term ? (a.term > b.term ? a : b) : a.vote !== NONE ? a : b;
  return { term: later.term, vote: later.vote, incarnation: Math.max(a.incarnation, b.incarnation) };
}

/** Per-shard metadata kept in memory, mirroring the `meta` sub-database after each commit. */
interface ShardState {
  hardState: HardState;
  confState: ConfState;
  applied: LogIndex;
  /** The compaction point: the entry at snapshotIndex is no longer stored, only its term. */
  snapshotIndex: LogIndex;
  snapshotTerm: Term;
  lastIndex: LogIndex;
  /** Recent entries, contiguous, ending at lastIndex; they include every entry from tailFrom on. */
  cache: Entry[];
  /**
   * The first index whose entry is only in the log tail, not yet in `log`;
   * NO_TAIL (0) when the tail holds no entry of the shard. Not Infinity: a
   * field holding a non-small integer costs a boxed number per replica.
   */
  tailFrom: number;
  /** The hard state in `meta` is older than this one: the tail holds the newer. */
  hardInTail: boolean;
}

/** ShardState.tailFrom when the tail holds no entry of the shard (log indices start at 1). */
const NO_TAIL = 0;

/** Every field in one order, so all replicas' states share one compact object shape (memory per replica). */
function shardStateOf(f: Omit<ShardState, 'cache' | 'tailFrom' | 'hardInTail'>): ShardState {
  return {
    hardState: f.hardState,
    confState: f.confState,
    applied: f.applied,
    snapshotIndex: f.snapshotIndex,
    snapshotTerm: f.snapshotTerm,
    lastIndex: f.lastIndex,
    cache: [],
    tailFrom: NO_TAIL,
    hardInTail: false,
  };
}

/**
 * Per-shard records, plus two that outlive a shard here: `tomb` (the hard
 * state of a replica removed from this store; see initialHardState) and
 * `away` (the shard lives in another core's store on this node: a split
 * applied here must not create it a second time).
 */
/** `tailFloor`: tail records below this sequence number predate the shard's creation or last snapshot install (replay skips them). */
/** `inc`: the replica's incarnation (Tombstone); absent in stores from before incarnations, read as 0. */
type MetaField = 'hard' | 'conf' | 'applied' | 'snap' | 'desc' | 'tomb' | 'away' | 'merge' | 'tailFloor' | 'inc';
type MetaKey = [shardId: number, field: MetaField];
/** Every per-shard meta record: destroyShard removes exactly these. */
const META_FIELDS: readonly MetaField[] = ['hard', 'conf', 'applied', 'snap', 'desc', 'merge', 'tailFloor', 'inc'];
type LogKey = [shardId: number, index: number];
type SubDatabases = Pick<NodeStore, 'log' | 'meta' | 'data' | 'dataRecords' | 'staging' | 'tail'>;

/**
 * One LMDB environment per node holding every shard's Raft log, metadata and
 * user data (ARCHITECTURE.md: "storage"). Writes go through `persist` (group
 * commit: many shards in one transaction, resolved only when durable);
 * reads are synchronous, as the core's Storage interface requires.
 */
export class NodeStore {
  readonly env: RootDatabase;
  readonly log: Database<unknown, LogKey>;
  readonly meta: Database<unknown, MetaKey>;
  /** User data, keyed by user key bytes; value [version, bytes]. Ranges on one node are disjoint. */
  readonly data: Database<unknown, Buffer>;
  /**
   * The same sub-database as `data`, its records as the bytes LMDB holds:
   * snapshots copy records between stores without decoding them (snapshot/chunk.ts).
   */
  readonly dataRecords: Database<Buffer, Buffer>;
  /** Snapshot chunks received but not yet installed; cleared on open (an unfinished install never happened). */
  readonly staging: Database<unknown, [shardId: number, seq: number]>;
  /** The log tail (log-tail.ts): sequence number → one group commit's shard writes. */
  readonly tail: Database<unknown, number>;
  private readonly shards = new Map<GroupId, ShardState>();
  private readonly storages = new Map<GroupId, ShardStorage>();
  /** Shards marked `away` (see MetaField), in memory as soon as marked. */
  private readonly away = new Set<GroupId>();
  /** Shards with a destroyShard in flight: a persist for one is a bug (asserted). */
  private readonly destroying = new Set<GroupId>();
  /** The receiving markers (RECEIVING_SEQ) as of the last commit, by shard: records in these bounds belong to no replica yet. */
  private readonly receivingByShard = new Map<GroupId, RangeBounds>();
  /** The log tail's next sequence number, and what it holds since the last checkpoint. */
  private tailNext = 1;
  private tailRecords = 0;
  private tailBytes = 0;
  /** Shards with entries or a hard state only in the tail: what the next checkpoint moves. */
  private readonly inTail = new Set<GroupId>();
  /** Snapshot installs whose transaction may have run and not yet been noted: no checkpoint meanwhile (see checkpointDue). */
  private installing = 0;
  /** Quiesced shards whose cache waits for a checkpoint (the tail holds entries of theirs): see releasesWaiting. */
  private readonly releaseWanted = new Set<GroupId>();
  /** Checkpoints made since the store opened. */
  private tailCheckpoints = 0;
  /** A shard's tail entries outgrew its entry cache's bound: checkpoint at the next group commit. */
  private tailOverflow = false;
  /** How far a checkpoint may compact a shard it moves (setCheckpointCompaction). */
  private checkpointCompaction: CheckpointCompaction | undefined;
  /** Shards a checkpoint compacted instead of moving their entries, since the store opened. */
  private tailCompactions = 0;
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly nodeId: number,
    env: RootDatabase,
    databases: SubDatabases,
    private readonly io: StoreIo,
    private readonly tailLimits: Required<TailLimits>,
  ) {
    this.env = env;
    this.log = databases.log;
    this.meta = databases.meta;
    this.data = databases.data;
    this.dataRecords = databases.dataRecords;
    this.staging = databases.staging;
    this.tail = databases.tail;
  }

  /**
   * Opens (or creates) the node's store; throws DataDirError for a foreign,
   * damaged or mismatched directory. Creating is two-phase: the identity file
   * says `initializing` until the store exists durably with its node identity
   * record, so a crash in between starts over instead of leaving a directory
   * that looks damaged (see data-dir.ts).
   */
  static async open(options: { dir: string; nodeId: number; io?: StoreIo; tail?: TailLimits }): Promise<NodeStore> {
    const io = options.io ?? DURABLE_IO;
    const { storePath, created } = prepareDataDir(options.dir, options.nodeId);
    let env: RootDatabase;
    try {
      const noSync = io.kind === 'simulated';
      // maxFreeSpaceToRetain 0: lmdb-js keeps the free-page list it loaded in memory from one transaction to the
      // next and rewrites only the records it thinks changed; under heavy page churn (splits, 4 KiB values) that
      // bookkeeping aborted the process (mdb.c:4374, `freelist_written_start >= mop_len` in mdb_freelist_save;
      // lmdb-js 3.5.6; Harper reports kindred freelist failures, HarperFast/harper#685-#689). With 0 the list is dropped at the end of
      // every write transaction, as stock LMDB does, so each save writes it whole. Cost measured in ARCHITECTURE.md.
      env = open({ path: storePath, maxDbs: SUB_DATABASE_COUNT_MAX, mapSize: MAP_SIZE_INITIAL_BYTES, noMetaSync: noSync, noSync, maxFreeSpaceToRetain: LMDB_FREE_PAGES_RETAINED } as Parameters<typeof open>[0]);
    } catch (err) {
      throw new DataDirError('DATA_DIR_DAMAGED', storePath, `cannot be opened as an LMDB store (${(err as Error).message}); expected the node's LMDB store`);
    }
    let store: NodeStore;
    try {
      // Only a store being created may create sub-databases: creating one in an
      // existing store would write to a store we may be about to refuse.
      const openSub = <K extends Key>(name: string, keyEncoding?: 'binary', encoding?: 'binary'): Database<unknown, K> => {
        // `create` is an lmdb-js option its typings lack; with create: false a missing database comes back undefined.
        const dbOptions = { name, create: created, ...(keyEncoding === undefined ? {} : { keyEncoding }), ...(encoding === undefined ? {} : { encoding }) } as DatabaseOptions & { name: string };
        const db = env.openDB<unknown, K>(dbOptions) as Database<unknown, K> | undefined;
        if (db === undefined) throw new DataDirError('DATA_DIR_DAMAGED', storePath, `lacks the "${name}" sub-database; expected the LMDB store of node ${options.nodeId}`);
        return db;
      };
      const meta = openSub<MetaKey>('meta');
      await NodeStore.checkIdentity({ env, io, meta, created, storePath, nodeId: options.nodeId, dir: options.dir });
      store = new NodeStore(options.dir, options.nodeId, env, {
        meta,
        log: openSub<LogKey>('log'),
        data: openSub<Buffer>('data', 'binary'),
        dataRecords: openSub<Buffer>('data', 'binary', 'binary') as Database<Buffer, Buffer>,
        staging: openSub<[number, number]>('staging'),
        // Created in a store from before the log tail too: the identity check has passed.
        tail: env.openDB<unknown, number>({ name: 'tail', create: true } as DatabaseOptions & { name: string }),
      }, io, { ...DEFAULT_TAIL_LIMITS, ...options.tail });
      if (created) await env.flushed;
      store.loadShards();
      await store.clearStaging();
    } catch (err) {
      await env.close();
      throw err;
    }
    if (created) markDataDirReady(options.dir, options.nodeId);
    return store;
  }

  private static async checkIdentity(o: { env: RootDatabase; io: StoreIo; meta: Database<unknown, MetaKey>; created: boolean; storePath: string; nodeId: number; dir: string }): Promise<void> {
    const key = [0, 'node'] as unknown as MetaKey;
    if (o.created) {
      await writeTransaction(o.env, o.io, () => o.meta.putSync(key, { nodeId: o.nodeId }));
      fsyncDir(o.dir); // the new store.mdb's directory entry: LMDB syncs the file, not its directory
      return;
    }
    let stored: unknown;
    try {
      stored = o.meta.get(key);
    } catch (err) {
      throw new DataDirError('DATA_DIR_DAMAGED', o.storePath, `cannot be read (${(err as Error).message}); expected the node's LMDB store`);
    }
    // A ready directory's store always has the record: without it the store was replaced or reset.
    if (stored === undefined) {
      throw new DataDirError('DATA_DIR_DAMAGED', o.storePath, `has no node identity record; expected the store of node ${o.nodeId} (refusing to start on a reset store)`);
    }
    const nodeId = (stored as { nodeId?: unknown }).nodeId;
    if (nodeId !== o.nodeId) {
      throw new DataDirError('DATA_DIR_NODE_MISMATCH', o.storePath, `store belongs to node ${String(nodeId)}; expected node ${o.nodeId}`);
    }
  }

  private loadShards(): void {
    for (const { key } of this.meta.getRange({ start: [1, ''] as unknown as MetaKey })) {
      const [shardId, field] = key;
      if (field === 'away') this.away.add(shardId as GroupId);
      if (field !== 'hard') continue;
      this.shards.set(shardId as GroupId, this.readShardState(shardId as GroupId));
    }
    this.replayTail();
    for (const [shardId, state] of this.shards) this.checkShardInvariants(shardId, state);
  }

  /**
   * Rebuilds what the log tail holds on top of the per-shard records: each
   * record's shard writes in sequence order, as persist made them (entries
   * replace the log from their first index on; a hard state replaces the
   * one before). Writes for shards gone from this store, or from before a
   * shard's creation or last install (its `tailFloor` record), are skipped.
   */
  private replayTail(): void {
    const floors = new Map<GroupId, number>();
    const floorOf = (shardId: GroupId): number => {
      let floor = floors.get(shardId);
      if (floor === undefined) {
        const stored = this.meta.get([shardId, 'tailFloor']) ?? 0;
        if (!Number.isSafeInteger(stored)) throw new CorruptRecordError(`shard ${shardId} log tail floor ${String(stored)} (node ${this.nodeId}, ${this.dir})`);
        floor = stored as number;
        floors.set(shardId, floor);
      }
      return floor;
    };
    const stored = this.meta.get([0, TAIL_NEXT] as unknown as MetaKey);
    let next = stored === undefined ? 1 : (stored as number);
    if (!Number.isSafeInteger(next) || next < 1) throw new CorruptRecordError(`log tail sequence ${JSON.stringify(stored)} (node ${this.nodeId}, ${this.dir})`);
    for (const { key: seq, value } of this.tail.getRange()) {
      if (!Number.isSafeInteger(seq) || seq < 1) throw new CorruptRecordError(`log tail key ${JSON.stringify(seq)} (node ${this.nodeId}, ${this.dir})`);
      next = Math.max(next, seq + 1);
      this.tailRecords++;
      for (const w of decodeTailRecord(seq, value)) {
        const s = this.shards.get(w.shardId);
        if (s === undefined || seq < floorOf(w.shardId)) continue;
        this.tailBytes += tailWriteBytes(w.entries.length, payloadBytes(w.entries));
        if (w.hardState !== undefined) {
          s.hardState = w.hardState;
          s.hardInTail = true;
        }
        // Unfiltered by the compaction point: a record's truncation must happen even where a later compaction dropped its entries.
        if (w.entries.length > 0) this.appendToTail(w.shardId, s, w.entries, seq);
        this.inTail.add(w.shardId);
      }
    }
    this.tailNext = next;
    for (const shardId of this.inTail) {
      const s = this.shardState(shardId);
      if (s.tailFrom === NO_TAIL || s.tailFrom > s.snapshotIndex) continue;
      // Compacted since those records were written: what lies at or below the compaction point is gone.
      s.cache.splice(0, Math.min(s.cache.length, s.snapshotIndex + 1 - s.tailFrom));
      s.tailFrom = s.cache.length > 0 ? s.cache[0]!.index : s.snapshotIndex + 1;
      if (s.lastIndex < s.snapshotIndex) {
        throw new CorruptRecordError(`shard ${shardId}: the log tail ends at ${s.lastIndex}, below the compaction point ${s.snapshotIndex} (node ${this.nodeId}, ${this.dir})`);
      }
    }
  }

  /**
   * Replay: appends entries a tail record holds, replacing the log from
   * their first index on. During replay the cache holds exactly the tail's
   * entries, from tailFrom; entries in `log` from the first index on are
   * shadowed (the next checkpoint removes them).
   */
  private appendToTail(shardId: GroupId, s: ShardState, entries: readonly Entry[], seq: number): void {
    const first = entries[0]!.index;
    if (first > s.lastIndex + 1) {
      throw new CorruptRecordError(`shard ${shardId}: log tail record ${seq} appends at ${first} past the last index ${s.lastIndex} (node ${this.nodeId}, ${this.dir})`);
    }
    if (s.tailFrom === NO_TAIL || first < s.tailFrom) {
      s.tailFrom = first;
      s.cache.length = 0;
    } else {
      s.cache.length = first - s.tailFrom;
    }
    for (const e of entries) s.cache.push(e);
    s.lastIndex = entries[entries.length - 1]!.index;
  }

  private readShardState(shardId: GroupId): ShardState {
    const hardState = decodeHardState(this.meta.get([shardId, 'hard']));
    const confState = decodeConfState(this.meta.get([shardId, 'conf']));
    const applied = this.meta.get([shardId, 'applied']);
    const snap = this.meta.get([shardId, 'snap']);
    if (!Number.isSafeInteger(applied)) throw new CorruptRecordError(`shard ${shardId} applied index ${String(applied)}`);
    if (!Array.isArray(snap) || snap.length !== 2) throw new CorruptRecordError(`shard ${shardId} snapshot point ${JSON.stringify(snap)}`);
    const [snapshotIndex, snapshotTerm] = snap as [number, number];
    let lastIndex = snapshotIndex;
    for (const key of this.log.getKeys({ start: [shardId, Number.MAX_SAFE_INTEGER], end: [shardId, snapshotIndex], reverse: true, limit: 1 })) {
      lastIndex = key[1];
    }
    return shardStateOf({ hardState, confState, applied: applied as number, snapshotIndex, snapshotTerm, lastIndex });
  }

  /** What must hold for every shard after open and after every write; a violation means damaged storage. */
  private checkShardInvariants(shardId: GroupId, s: ShardState): void {
    const where = `(shard ${shardId}, node ${this.nodeId}, ${this.dir})`;
    if (s.applied < s.snapshotIndex) throw new CorruptRecordError(`applied index ${s.applied} is below the snapshot index ${s.snapshotIndex} ${where}`);
    if (s.hardState.commit < s.applied) throw new CorruptRecordError(`commit index ${s.hardState.commit} is below applied ${s.applied} ${where}`);
    if (s.hardState.commit > s.lastIndex) throw new CorruptRecordError(`commit index ${s.hardState.commit} exceeds last index ${s.lastIndex} ${where}`);
  }

  /**
   * At open: whatever was staged belongs to a transfer that can no longer
   * finish (the stream died with the process). Staged chunks go, and so do
   * the records of a snapshot that was being received straight into `data`
   * (its marker names their bounds) — except keys a shard here owns by its
   * descriptor, which no transfer may have claimed (snapshot/claims.ts), and
   * are spared all the same.
   */
  private async clearStaging(): Promise<void> {
    if (this.staging.getKeysCount() === 0) return;
    const received: RangeBounds[] = [];
    for (const key of this.staging.getKeys()) if (key[1] === RECEIVING_SEQ) received.push(decodeReceivingMarker(key[0], this.staging.get(key)));
    const owned = received.length === 0 ? [] : this.ownedRanges();
    await this.write(() => {
      for (const bounds of received) this.deleteOutside(bounds, owned);
      for (const key of this.staging.getKeys()) this.staging.removeSync(key);
    });
    assert(this.staging.getKeysCount() === 0, () => `staging not empty after the open-time cleanup (node ${this.nodeId}, ${this.dir})`);
  }

  /** Every shard's range by its stored descriptor (see ownedBoundsOf): what no cleanup of received records may delete. */
  private ownedRanges(): RangeBounds[] {
    const owned: RangeBounds[] = [];
    for (const shardId of this.shards.keys()) {
      const bounds = ownedBoundsOf(shardId, this.meta.get([shardId, 'desc']));
      if (bounds !== undefined) owned.push(bounds);
    }
    return owned;
  }

  shardIds(): GroupId[] {
    return [...this.shards.keys()].sort((a, b) => a - b);
  }

  hasShard(shardId: GroupId): boolean {
    return this.shards.has(shardId);
  }

  /**
   * Creates a shard's metadata: an empty log whose bootstrap configuration
   * is the index-0 snapshot's ConfState (see core/README.md, joining replicas).
   */
  async createShard(shardId: GroupId, options: Omit<NewShard, 'shardId'>): Promise<void> {
    await this.createShards([{ shardId, ...options }]);
  }

  /** Creates many shards in one durable transaction (a node given thousands of ranges at once). */
  async createShards(specs: readonly NewShard[]): Promise<void> {
    this.checkOpen();
    const ids = new Set<GroupId>();
    for (const { shardId } of specs) {
      if (ids.has(shardId)) throw new Error(`shard ${shardId} already exists on node ${this.nodeId}`);
      this.checkNewShard(shardId);
      ids.add(shardId);
    }
    await this.write(() => {
      for (const spec of specs) this.writeShardRecords(spec);
    });
    for (const spec of specs) this.registerShard(spec);
  }

  /**
   * @internal Writes a new shard's records inside the caller's write
   * transaction (a split creating its right half while applying); call
   * registerShard once that transaction committed.
   */
  writeShardRecords(spec: NewShard): void {
    this.checkNewShard(spec.shardId);
    const start = spec.startAt ?? { index: 0, term: 0 };
    const tombstone = laterTombstone(this.tombstone(spec.shardId), spec.tombstone);
    const hardState = initialHardState(spec, tombstone);
    this.meta.removeSync([spec.shardId, 'tomb']);
    this.meta.putSync([spec.shardId, 'inc'], (tombstone?.incarnation ?? 0) + 1);
    this.meta.removeSync([spec.shardId, 'away']);
    this.meta.putSync([spec.shardId, 'hard'], encodeHardState(hardState));
    this.meta.putSync([spec.shardId, 'conf'], encodeConfState(spec.confState));
    this.meta.putSync([spec.shardId, 'applied'], start.index);
    this.meta.putSync([spec.shardId, 'snap'], [start.index, start.term]);
    // Tail records of an earlier replica of this id, destroyed before a checkpoint, are not this one's.
    this.meta.putSync([spec.shardId, 'tailFloor'], this.tailNext);
    if (spec.descriptor !== undefined) this.meta.putSync([spec.shardId, 'desc'], spec.descriptor);
  }

  /** @internal Makes a shard whose records committed (createShards, writeShardRecords) part of the in-memory view. */
  registerShard(spec: NewShard): void {
    const start = spec.startAt ?? { index: 0, term: 0 };
    const hardState = decodeHardState(this.meta.get([spec.shardId, 'hard']));
    this.away.delete(spec.shardId);
    this.shards.set(
      spec.shardId,
      shardStateOf({
        hardState,
        confState: compactConfState(spec.confState),
        applied: start.index,
        snapshotIndex: start.index,
        snapshotTerm: start.term,
        lastIndex: start.index,
      }),
    );
  }

  private checkNewShard(shardId: GroupId): void {
    assert(shardId > 0, `shard id must be positive, got ${shardId}`);
    if (this.shards.has(shardId)) throw new Error(`shard ${shardId} already exists on node ${this.nodeId}`);
  }

  /** What a removed replica of the shard left here (destroyShard's `tombstone`), if any. */
  tombstone(shardId: GroupId): Tombstone | undefined {
    const raw = this.meta.get([shardId, 'tomb']);
    return raw === undefined ? undefined : decodeTombstone(raw);
  }

  /** The shard's replica's incarnation here (Tombstone; RaftConfig.incarnation). */
  incarnation(shardId: GroupId): number {
    this.shardState(shardId); // throws for a shard this node does not have
    const raw = this.meta.get([shardId, 'inc']);
    if (raw === undefined) return 0;
    if (!Number.isSafeInteger(raw) || (raw as number) < 1) throw new CorruptRecordError(`shard ${shardId} incarnation ${String(raw)}`);
    return raw as number;
  }

  /** Whether the shard is marked as living in another store of this node (markAway). */
  isAway(shardId: GroupId): boolean {
    return this.away.has(shardId);
  }

  /**
   * Marks a shard as living in another core's store on this node, durably: a
   * split applied here will not create it again (kv/state-machine.ts). The
   * mark holds in memory at once, before the returned promise resolves.
   */
  async markAway(shardId: GroupId): Promise<void> {
    this.checkOpen();
    if (this.away.has(shardId)) return;
    this.away.add(shardId);
    await this.write(() => this.meta.putSync([shardId, 'away'], true));
  }

  /**
   * @internal Deletes user data in [start, end) inside the caller's write
   * transaction (a split's right half that lives elsewhere, a range a
   * snapshot replaces, a destroyed replica's range). Never where a snapshot
   * is being received (asserted, before anything is deleted: call it before
   * the transaction's other writes): those records are that transfer's, and
   * its install would find keys missing.
   */
  deleteData(bounds: RangeBounds): void {
    for (const [shardId, received] of this.receivingByShard) {
      assert(!boundsOverlap(received, bounds), () => `deleting data in ${describeBounds(bounds)} would delete shard ${shardId}'s incoming snapshot records in ${describeBounds(received)} (node ${this.nodeId})`);
    }
    this.deleteRange(bounds);
  }

  private deleteRange(bounds: RangeBounds): void {
    const dataRange = { start: Buffer.from(bounds.start), ...(bounds.end === null ? {} : { end: Buffer.from(bounds.end) }) };
    for (const key of this.data.getKeys(dataRange)) this.data.removeSync(key);
  }

  /** Deletes the user data in `bounds` that lies outside every range of `keep`. */
  private deleteOutside(bounds: RangeBounds, keep: readonly RangeBounds[]): void {
    for (const part of boundsOutside(bounds, keep)) this.deleteRange(part);
  }

  /**
   * Snapshots being received straight into `data`, by shard: the bounds
   * their records lie in (see RECEIVING_SEQ), as of the last commit. No
   * other replica here may own or claim keys in them (snapshot/claims.ts).
   */
  receiving(): ReadonlyMap<GroupId, RangeBounds> {
    return this.receivingByShard;
  }

  /**
   * @internal Inside a write transaction, before the first record of a
   * snapshot received straight into `data`: marks `bounds` as receiving for
   * the shard, and deletes what the data holds there outside `keep` (the
   * ranges other replicas own or claim, none once the overlap check
   * passed): keys no replica owns are nobody's, and must not pass for the
   * snapshot's at its install. The shard must have no marker (deleteStaged
   * first, in the same transaction). Call noteReceiving once the
   * transaction committed.
   */
  markReceiving(shardId: GroupId, bounds: RangeBounds, keep: readonly RangeBounds[]): void {
    assert(this.staging.get([shardId, RECEIVING_SEQ]) === undefined, () => `shard ${shardId} already has a receiving marker (node ${this.nodeId})`);
    this.deleteOutside(bounds, keep);
    this.staging.putSync([shardId, RECEIVING_SEQ], [bounds.start, bounds.end]);
  }

  /**
   * @internal Inside a write transaction: removes the shard's receiving
   * marker, leaving its records in place (the install that makes them the
   * shard's own). Returns the marker's bounds; call noteReceiving once the
   * transaction committed.
   */
  unmarkReceiving(shardId: GroupId): RangeBounds {
    const bounds = decodeReceivingMarker(shardId, this.staging.get([shardId, RECEIVING_SEQ]));
    this.staging.removeSync([shardId, RECEIVING_SEQ]);
    return bounds;
  }

  /**
   * @internal Inside a write transaction: drops all the shard has staged —
   * its chunks, and its receiving marker with the records in its bounds,
   * except keys in the ranges `keep` names for those bounds (what other
   * replicas here own or claim). Read from the store, not from a transfer's
   * memory: whichever transfer wrote them. Every read and `keep` run before
   * the first write. Call noteReceiving(shardId, undefined) once the
   * transaction committed.
   */
  deleteStaged(shardId: GroupId, keep: (received: RangeBounds) => readonly RangeBounds[]): void {
    const marker = this.staging.get([shardId, RECEIVING_SEQ]);
    const received = marker === undefined ? undefined : decodeReceivingMarker(shardId, marker);
    const spared = received === undefined ? [] : keep(received);
    const chunks = [...this.staging.getKeys({ start: [shardId, 0], end: [shardId, Number.MAX_SAFE_INTEGER] })];
    if (received !== undefined) {
      this.deleteOutside(received, spared);
      this.staging.removeSync([shardId, RECEIVING_SEQ]);
    }
    for (const key of chunks) this.staging.removeSync(key);
  }

  /** @internal The shard's receiving marker after a commit that wrote or removed it (markReceiving, unmarkReceiving, deleteStaged). */
  noteReceiving(shardId: GroupId, bounds: RangeBounds | undefined): void {
    if (bounds === undefined) this.receivingByShard.delete(shardId);
    else this.receivingByShard.set(shardId, bounds);
  }

  /** What createShard or a snapshot install stored as the shard's descriptor; undefined if none (or no such shard). */
  descriptor(shardId: GroupId): unknown {
    this.checkOpen();
    return this.meta.get([shardId, 'desc']);
  }

  /** The shard's freeze for a merge (kv/merge.ts) as stored, or undefined when it is not frozen. */
  frozen(shardId: GroupId): unknown {
    this.checkOpen();
    return this.meta.get([shardId, 'merge']);
  }

  /** @internal Records (or with undefined clears) the shard's freeze inside the caller's write transaction: an apply, a snapshot install. */
  writeFrozen(shardId: GroupId, stored: unknown): void {
    if (stored === undefined) this.meta.removeSync([shardId, 'merge']);
    else this.meta.putSync([shardId, 'merge'], stored);
  }

  /**
   * Removes every trace of a shard in one transaction: its log entries, meta
   * records and staged snapshot chunks, and, given `bounds` (the range it
   * owned, or parts of it: a superseded stale replica's keys outside the
   * range that took it over), every user-data key in them. Resolves once that is durable; only
   * then does the shard leave the in-memory view. Afterwards the id is free
   * for createShard. A crash leaves the shard whole or gone, never half.
   *
   * The caller must have stopped the shard first: no persist, apply, compact
   * or snapshot install in flight or to come, and its RawNode and
   * ShardStorage dropped (they would keep reading the old in-memory state).
   * The bounds must be the shard's own, no other replica's here: keys there
   * are deleted whoever's they are.
   *
   * A snapshot the shard was receiving straight into `data` stays, marker
   * and records: which of its keys may go depends on the other replicas'
   * ranges, which the snapshot layer knows (IncomingSnapshots.forget clears
   * it next; after a crash, the next open does).
   */
  async destroyShard(shardId: GroupId, bounds?: RangeBounds | readonly RangeBounds[], options: { tombstone?: HardState } = {}): Promise<void> {
    this.checkOpen();
    const incarnation = this.incarnation(shardId); // throws for a shard this node does not have, before anything is written
    assert(!this.destroying.has(shardId), () => `shard ${shardId} is already being destroyed (node ${this.nodeId})`);
    const deleted: readonly RangeBounds[] = bounds === undefined ? [] : 'start' in bounds ? [bounds] : bounds;
    for (const b of deleted) {
      if (b.end !== null) assert(Buffer.compare(b.start, b.end) < 0, () => `shard ${shardId}: destroy bounds start ${hex(b.start)} is not before end ${hex(b.end!)} (node ${this.nodeId})`);
    }
    const logRange = { start: [shardId, 0] as LogKey, end: [shardId, Number.MAX_SAFE_INTEGER] as LogKey };
    const stagingRange = { start: [shardId, 0] as [number, number], end: [shardId, Number.MAX_SAFE_INTEGER] as [number, number] };
    // A persist started now would write to a shard that is going away: persist asserts against it.
    this.destroying.add(shardId);
    try {
      await this.write(() => {
        // First: its fence may refuse, and a throw in an async transaction does not roll back what came before.
        for (const b of deleted) this.deleteData(b);
        for (const key of this.log.getKeys(logRange)) this.log.removeSync(key);
        for (const field of META_FIELDS) this.meta.removeSync([shardId, field]);
        for (const key of this.staging.getKeys(stagingRange)) this.staging.removeSync(key);
        if (options.tombstone !== undefined) this.meta.putSync([shardId, 'tomb'], encodeTombstone({ term: options.tombstone.term, vote: options.tombstone.vote, incarnation }));
      });
    } finally {
      this.destroying.delete(shardId);
    }
    // Read back: a record left behind would resurrect part of the shard on the next open.
    assert(this.log.getKeysCount({ ...logRange, limit: 1 }) === 0, () => `shard ${shardId}: log entries left after destroy (node ${this.nodeId})`);
    for (const field of META_FIELDS) assert(this.meta.get([shardId, field]) === undefined, () => `shard ${shardId}: meta ${field} left after destroy (node ${this.nodeId})`);
    this.shards.delete(shardId);
    this.storages.delete(shardId);
    this.inTail.delete(shardId);
    this.releaseWanted.delete(shardId);
  }

  /** The core's Storage view of one shard. */
  storage(shardId: GroupId): ShardStorage {
    let s = this.storages.get(shardId);
    if (s === undefined) {
      const state = this.shards.get(shardId);
      if (state === undefined) throw new Error(`shard ${shardId} does not exist on node ${this.nodeId}`);
      s = new ShardStorage(this, shardId, state);
      this.storages.set(shardId, s);
    }
    return s;
  }

  /** @internal */
  shardState(shardId: GroupId): ShardState {
    const s = this.shards.get(shardId);
    if (s === undefined) throw new Error(`shard ${shardId} does not exist on node ${this.nodeId}`);
    return s;
  }

  /**
   * Group commit: writes every shard's entries and hard state in one LMDB
   * transaction. The in-memory view changes only after the commit, so a
   * failed write leaves it untouched. `alsoInTransaction` runs inside the
   * same transaction after the log writes (the Host applies committed
   * entries there: one transaction per round).
   *
   * Durable when this resolves if any write carries what Raft must not
   * lose (planNeedsSync: entries, a truncation, a new term or vote); then
   * it answers true. Otherwise (commit indexes and applied entries only) the
   * commit skips the meta page's sync and answers false: a power failure
   * may undo it, and the log it came from replays it; the next durable
   * commit makes it durable too.
   *
   * A synchronous transaction (`transactionSync`): LMDB writes the pages,
   * syncs them, then writes (and, when durable, syncs) the meta page before
   * returning — the transaction carries no MDB_NOSYNC, so lmdb-js's
   * overlapping sync does not apply to it. It blocks this thread for the commit, which the caller's
   * round waits for anyway, and spares every commit the trip to lmdb-js's
   * write thread and back that an async `transaction` + `flushed` takes:
   * less CPU and a shorter commit (ARCHITECTURE.md, storage, "Group commit";
   * `npm run bench:storage` measures persist end to end).
   */
  async persist(writes: readonly ShardWrite[], options: { alsoInTransaction?: () => void } = {}): Promise<boolean> {
    this.checkOpen();
    if (this.io.kind === 'simulated') {
      await this.io.beforeWrite();
      this.checkOpen();
    }
    // Each plan is made against the in-memory view before the commit: a second
    // write for the same shard in this call would be planned against a stale
    // last index and could leave a hole in the log. (Two calls cannot overlap:
    // the commit is synchronous, the view updated before this returns.)
    const shardIds = new Set<GroupId>();
    for (const w of writes) {
      assert(!shardIds.has(w.shardId), () => `shard ${w.shardId} appears twice in one persist (node ${this.nodeId})`);
      assert(!this.destroying.has(w.shardId), () => `shard ${w.shardId} is being destroyed (node ${this.nodeId}); stop the shard before destroying it`);
      shardIds.add(w.shardId);
    }
    const plans = writes.map((w) => this.planWrite(w));
    const mustSync = plans.some((p) => this.planNeedsSync(p));
    const record: TailShardWrite[] = [];
    let recordBytes = 0;
    const direct = new Set<WritePlan>();
    for (const p of plans) {
      const payload = payloadBytes(p.entries);
      const viaTail = p.entries.length > 0 && (this.shardState(p.shardId).tailFrom !== NO_TAIL || payload < DIRECT_WRITE_BYTES_MIN);
      if (p.entries.length > 0 && !viaTail) direct.add(p);
      if (!viaTail && p.hardState === undefined) continue;
      record.push(encodeTailWrite(p.shardId, p.hardState, viaTail ? p.entries : []));
      recordBytes += viaTail ? tailWriteBytes(p.entries.length, payload) : tailWriteBytes(0, 0);
    }
    const checkpoint = this.checkpointDue() ? [...this.inTail] : undefined;
    const seq = this.tailNext;
    let compacted: Compacted | undefined;
    this.env.transactionSync(() => {
      if (checkpoint !== undefined) compacted = this.writeCheckpoint(checkpoint, seq);
      // No tail record holds entries of these shards: `log` is their whole log.
      for (const plan of direct) {
        for (let i = plan.truncateFrom; i <= plan.previousLast; i++) this.log.removeSync([plan.shardId, i]);
        for (const e of plan.entries) this.log.putSync([plan.shardId, e.index], encodeEntry(e));
      }
      // Entries a tail record replaces stay in `log` until the next checkpoint, shadowed: the tail is read after it.
      if (record.length > 0) this.tail.putSync(seq, record);
      options.alsoInTransaction?.();
    }, mustSync ? TXN_SYNCED : TXN_DATA_SYNCED);
    if (this.io.kind === 'simulated') this.io.afterWrite?.();
    if (checkpoint !== undefined) this.noteCheckpoint(checkpoint, compacted!);
    if (record.length > 0) {
      this.tailNext = seq + 1;
      this.tailRecords++;
      this.tailBytes += recordBytes;
    }
    for (const plan of plans) this.applyPlan(plan, !direct.has(plan));
    return mustSync;
  }

  /**
   * Moves everything the log tail holds into the per-shard records now, in
   * a commit of its own (a durable one: it is the last thing before a
   * planned restart, or a test's way to reach the per-shard records).
   * Answers false, writing nothing, while a snapshot install or a destroy
   * is in flight (see checkpointDue).
   */
  async checkpointTail(): Promise<boolean> {
    this.checkOpen();
    if (this.installing > 0 || this.destroying.size > 0) return false;
    if (this.inTail.size === 0 && this.tailRecords === 0) return true;
    if (this.io.kind === 'simulated') {
      await this.io.beforeWrite();
      this.checkOpen();
      if (this.installing > 0 || this.destroying.size > 0) return false;
    }
    const shards = [...this.inTail];
    const seq = this.tailNext;
    let compacted: Compacted | undefined;
    this.env.transactionSync(() => (compacted = this.writeCheckpoint(shards, seq)), TXN_SYNCED);
    if (this.io.kind === 'simulated') this.io.afterWrite?.();
    this.noteCheckpoint(shards, compacted!);
    return true;
  }

  /** @internal ShardStorage.releaseCache: the shard's cache goes at the next checkpoint. */
  wantRelease(shardId: GroupId): void {
    this.releaseWanted.add(shardId);
  }

  /**
   * Quiesced shards whose entry cache waits for a checkpoint. Their groups
   * make no more commits, so the core asks for a checkpoint of its own once
   * there are enough of them (ShardCore's tick): memory per quiesced replica.
   */
  releasesWaiting(): number {
    return this.releaseWanted.size;
  }

  /**
   * Records in the log tail since the last checkpoint, checkpoints since the
   * store opened, and shards those checkpoints compacted instead of moving
   * their entries (setCheckpointCompaction): for /metrics.
   */
  tailStats(): { readonly records: number; readonly checkpoints: number; readonly compactions: number } {
    return { records: this.tailRecords, checkpoints: this.tailCheckpoints, compactions: this.tailCompactions };
  }

  /**
   * Lets checkpoints compact the shards they move, up to the index `upTo`
   * answers for each (clamped to what the shard applied; undefined: not this
   * one): entries no replica will ask for again are then dropped from the
   * tail instead of written to `log` first and compacted later, and a range
   * that takes a write now and then keeps no log (ARCHITECTURE.md, storage,
   * "Compaction at checkpoints"). The core answers for its quiesced replicas.
   */
  setCheckpointCompaction(upTo: CheckpointCompaction | undefined): void {
    this.checkpointCompaction = upTo;
  }

  /**
   * Whether the next group commit checkpoints the log tail: once it holds
   * `tail.recordsMax` records or `tail.bytesMax` bytes, or a shard's tail
   * outgrew its cache. Never while a snapshot install may have rewritten a
   * shard's log and not yet been noted, nor while a shard is being
   * destroyed: the checkpoint would write that shard's old entries back.
   */
  checkpointDue(): boolean {
    if (this.installing > 0 || this.destroying.size > 0 || this.inTail.size === 0) return false;
    return this.tailOverflow || this.tailRecords >= this.tailLimits.recordsMax || this.tailBytes >= this.tailLimits.bytesMax;
  }

  /**
   * Inside the group commit's transaction, before its own record: moves what
   * the tail holds for `shards` into `log` and `meta`, and deletes every
   * tail record before `seq`. Entries past the last index go from `log`:
   * a tail record that replaced a suffix left them there (persist). Entries
   * at or below the compaction point are left out; a compaction whose
   * transaction ran but is not yet noted may see some written back below
   * its point, which the next compaction of the shard removes (it clears
   * the log from its start). A shard setCheckpointCompaction's answer lets
   * go is compacted here, in the same transaction, and only its entries
   * past that point are moved.
   */
  private writeCheckpoint(shards: readonly GroupId[], seq: number): Compacted {
    const compacted: Compacted = new Map();
    for (const shardId of shards) {
      const s = this.shardState(shardId);
      const wanted = this.checkpointCompaction?.(shardId);
      const upTo = wanted === undefined ? s.snapshotIndex : Math.max(s.snapshotIndex, Math.min(wanted, s.applied));
      if (upTo > s.snapshotIndex) {
        const term = this.storage(shardId).term(upTo);
        this.writeCompaction(shardId, upTo, term);
        compacted.set(shardId, { index: upTo, term });
      }
      if (s.tailFrom !== NO_TAIL) for (let i = Math.max(s.tailFrom, upTo + 1); i <= s.lastIndex; i++) this.log.putSync([shardId, i], encodeEntry(s.cache[i - s.cache[0]!.index]!));
      for (const key of this.log.getKeys({ start: [shardId, s.lastIndex + 1], end: [shardId, Number.MAX_SAFE_INTEGER] })) this.log.removeSync(key);
      if (s.hardInTail) this.meta.putSync([shardId, 'hard'], encodeHardState(s.hardState));
    }
    for (const key of this.tail.getKeys({ end: seq })) this.tail.removeSync(key);
    this.meta.putSync([0, TAIL_NEXT] as unknown as MetaKey, seq);
    return compacted;
  }

  /** After the checkpoint's commit: nothing of those shards is only in the tail any more, and what it compacted is gone. */
  private noteCheckpoint(shards: readonly GroupId[], compacted: Compacted): void {
    for (const [shardId, point] of compacted) this.noteCompaction(this.shardState(shardId), point.index, point.term);
    this.tailCompactions += compacted.size;
    for (const shardId of shards) {
      const s = this.shardState(shardId);
      s.tailFrom = NO_TAIL;
      s.hardInTail = false;
      if (this.releaseWanted.has(shardId)) s.cache = [];
    }
    this.releaseWanted.clear();
    this.inTail.clear();
    this.tailCheckpoints++;
    this.tailRecords = 0;
    this.tailBytes = 0;
    this.tailOverflow = false;
  }

  /**
   * Raft needs a write durable before what it promises leaves: new or
   * replaced entries, and a new term or vote. A commit index and applied
   * entries need not be (they replay from the durable log after a crash).
   */
  private planNeedsSync(p: WritePlan): boolean {
    if (p.entries.length > 0 || p.truncateFrom <= p.previousLast) return true;
    if (p.hardState === undefined) return false;
    const before = this.shardState(p.shardId).hardState;
    return p.hardState.term !== before.term || p.hardState.vote !== before.vote;
  }

  private planWrite(w: ShardWrite): WritePlan {
    const s = this.shardState(w.shardId);
    // Entries at or below the compaction point are already covered by the snapshot.
    const entries = w.entries.filter((e) => e.index > s.snapshotIndex);
    for (let i = 1; i < entries.length; i++) {
      assert(entries[i]!.index === entries[i - 1]!.index + 1, () => `shard ${w.shardId}: non-contiguous append at ${entries[i]!.index}`);
    }
    let truncateFrom = Number.POSITIVE_INFINITY;
    if (entries.length > 0) {
      const first = entries[0]!.index;
      if (first > s.lastIndex + 1) {
        throw new UnavailableError(first, s.lastIndex); // a gap: the caller skipped entries
      }
      truncateFrom = first;
    }
    if (w.hardState !== undefined) {
      const last = entries.length > 0 ? entries[entries.length - 1]!.index : s.lastIndex;
      assert(w.hardState.commit <= last, () => `shard ${w.shardId}: commit ${w.hardState!.commit} beyond last index ${last}`);
      assert(w.hardState.term >= s.hardState.term, () => `shard ${w.shardId}: term going back from ${s.hardState.term} to ${w.hardState!.term}`);
    }
    return { shardId: w.shardId, entries, truncateFrom, previousLast: s.lastIndex, hardState: w.hardState };
  }

  private applyPlan(plan: WritePlan, viaTail: boolean): void {
    const s = this.shardState(plan.shardId);
    if (plan.entries.length > 0) {
      const first = plan.entries[0]!.index;
      const keep = s.cache.length - Math.max(0, s.lastIndex + 1 - first);
      s.cache.length = Math.max(0, keep);
      if (s.cache.length > 0 && s.cache[s.cache.length - 1]!.index !== first - 1) s.cache.length = 0;
      for (const e of plan.entries) s.cache.push(e);
      if (viaTail) s.tailFrom = s.tailFrom === NO_TAIL ? first : Math.min(s.tailFrom, first);
      // The cache keeps every entry only the tail holds (reads of older ones go to `log`).
      const droppable = s.tailFrom === NO_TAIL ? s.cache.length : s.tailFrom - s.cache[0]!.index;
      const over = Math.min(s.cache.length - ENTRY_CACHE_COUNT_MAX, droppable);
      if (over > 0) s.cache.splice(0, over);
      if (s.cache.length > ENTRY_CACHE_COUNT_MAX) this.tailOverflow = true;
      s.lastIndex = plan.entries[plan.entries.length - 1]!.index;
    }
    if (plan.hardState !== undefined) {
      s.hardState = plan.hardState;
      s.hardInTail = true;
    }
    if ((viaTail && plan.entries.length > 0) || plan.hardState !== undefined) this.inTail.add(plan.shardId);
  }

  /** Drops log entries up to and including `upTo` (which must be applied); its term is kept as the compaction point. */
  async compact(shardId: GroupId, upTo: LogIndex): Promise<void> {
    this.checkOpen();
    const s = this.shardState(shardId);
    if (upTo <= s.snapshotIndex) return;
    assert(upTo <= s.applied, () => `shard ${shardId}: compact ${upTo} beyond applied ${s.applied}`);
    const term = this.storage(shardId).term(upTo);
    await this.write(() => this.writeCompaction(shardId, upTo, term));
    this.noteCompaction(s, upTo, term);
  }

  /** Inside a write transaction: drops the shard's log up to `upTo` and records (upTo, term) as its compaction point. */
  private writeCompaction(shardId: GroupId, upTo: LogIndex, term: Term): void {
    // From the log's start, not the compaction point: a checkpoint may have written entries back below it (writeCheckpoint).
    for (const key of this.log.getKeys({ start: [shardId, 0], end: [shardId, upTo + 1] })) this.log.removeSync(key);
    this.meta.putSync([shardId, 'snap'], [upTo, term]);
  }

  /** After writeCompaction's transaction committed: the in-memory view follows. */
  private noteCompaction(s: ShardState, upTo: LogIndex, term: Term): void {
    s.snapshotIndex = upTo;
    s.snapshotTerm = term;
    const kept = s.cache.findIndex((e) => e.index > upTo);
    s.cache.splice(0, kept < 0 ? s.cache.length : kept);
    // Still finite past the last index: tail records hold entries of the shard until the next checkpoint (persist's direct writes wait for it).
    if (s.tailFrom !== NO_TAIL && s.tailFrom <= upTo) s.tailFrom = upTo + 1;
  }

  /** The term of the shard's entry at `index` if this store still holds it (or its compaction point), else undefined. */
  termIfHeld(shardId: GroupId, index: LogIndex): Term | undefined {
    const s = this.shards.get(shardId);
    if (s === undefined || index < s.snapshotIndex || index > s.lastIndex) return undefined;
    return this.storage(shardId).term(index);
  }

  /** @internal Called by the state machine after its apply transaction committed. */
  noteApplied(shardId: GroupId, applied: LogIndex, confState: ConfState | undefined): void {
    const s = this.shardState(shardId);
    s.applied = applied;
    if (confState !== undefined) s.confState = compactConfState(confState);
  }

  /**
   * @internal Inside a snapshot install's write transaction: empties the
   * shard's log, and makes replay skip the tail records written before it.
   * Until the matching noteInstalled (or endInstall, when the write failed)
   * no checkpoint runs: it would write the replaced entries back.
   */
  clearLogForInstall(shardId: GroupId): void {
    for (const key of this.log.getKeys({ start: [shardId, 0], end: [shardId, Number.MAX_SAFE_INTEGER] })) this.log.removeSync(key);
    this.meta.putSync([shardId, 'tailFloor'], this.tailNext);
  }

  /** @internal Before a snapshot install's write transaction: see clearLogForInstall. Call endInstall once it settled. */
  beginInstall(): void {
    this.installing++;
  }

  endInstall(): void {
    this.installing--;
  }

  /** @internal Replaces a shard's whole state after a snapshot install committed. */
  noteInstalled(shardId: GroupId, state: Omit<ShardState, 'cache' | 'tailFrom' | 'hardInTail'>): void {
    // In place: RawNodes hold the ShardStorage that reads this object.
    Object.assign(this.shardState(shardId), shardStateOf(state));
    this.inTail.delete(shardId);
    this.releaseWanted.delete(shardId);
  }

  /**
   * @internal One write transaction other than the group commit (shard
   * creation, destruction, compaction, snapshot staging and install),
   * resolved once durable.
   */
  write(body: () => void): Promise<void> {
    return writeTransaction(this.env, this.io, body);
  }

  /**
   * A transaction that resolves once committed, before its sync: for what a
   * crash may lose because opening clears it anyway (snapshot staging). The
   * durable write that later depends on it (the install) syncs it too:
   * LMDB commits in order, and a sync covers every commit before it.
   */
  writeUnsynced(body: () => void): Promise<void> {
    return writeTransaction(this.env, this.io, body, { sync: false });
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`node store ${this.dir} is closed`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.env.flushed;
    await this.env.close();
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function describeBounds(b: RangeBounds): string {
  return `[${hex(b.start)}, ${b.end === null ? '∞' : hex(b.end)})`;
}

/** Whether [start, end) holds no key. */
function isEmptyBounds(b: RangeBounds): boolean {
  return b.end !== null && Buffer.compare(b.start, b.end) >= 0;
}

/** Whether two ranges share a key (`end` null: to the end of the key space). */
export function boundsOverlap(a: RangeBounds, b: RangeBounds): boolean {
  if (isEmptyBounds(a) || isEmptyBounds(b)) return false;
  return (a.end === null || Buffer.compare(b.start, a.end) < 0) && (b.end === null || Buffer.compare(a.start, b.end) < 0);
}

/** The parts of `bounds` that no range of `keep` covers, in key order, none empty. */
export function boundsOutside(bounds: RangeBounds, keep: readonly RangeBounds[]): RangeBounds[] {
  if (isEmptyBounds(bounds)) return [];
  const cuts = keep.filter((k) => boundsOverlap(k, bounds)).sort((a, b) => Buffer.compare(a.start, b.start));
  const parts: RangeBounds[] = [];
  // The first key not yet placed in a part or a cut; null once a cut reached the end of the key space.
  let from: Uint8Array | null = bounds.start;
  for (const cut of cuts) {
    if (from === null) break;
    // An overlapping cut starts before bounds.end, so it ends this part inside the bounds.
    if (Buffer.compare(cut.start, from) > 0) parts.push({ start: from, end: cut.start });
    if (cut.end === null) from = null;
    else if (Buffer.compare(cut.end, from) > 0) from = cut.end;
  }
  if (from !== null && (bounds.end === null || Buffer.compare(from, bounds.end) < 0)) parts.push({ start: from, end: bounds.end });
  return parts;
}

function decodeReceivingMarker(shardId: number, stored: unknown): RangeBounds {
  if (!Array.isArray(stored) || stored.length !== 2 || !(stored[0] instanceof Uint8Array) || !(stored[1] === null || stored[1] instanceof Uint8Array)) {
    throw new CorruptRecordError(`shard ${shardId}: receiving snapshot marker ${JSON.stringify(stored)} is not [start, end]`);
  }
  return { start: stored[0], end: stored[1] };
}

/**
 * The keys a shard owns by its stored descriptor, read as kv/range.ts
 * decodeShardRange reads it (storage cannot import kv; a test holds the
 * two to the same answers): [start, end, epoch ≥ 1] or [start, end] own
 * [start, end); [empty, empty, 0], a replica waiting for its first
 * snapshot, owns nothing (undefined); a shard stored without one owns the
 * whole key space. Anything else is a CorruptRecordError.
 */
export function ownedBoundsOf(shardId: number, stored: unknown): RangeBounds | undefined {
  if (stored === undefined) return { start: new Uint8Array(0), end: null };
  if (Array.isArray(stored) && (stored.length === 2 || stored.length === 3) && stored[0] instanceof Uint8Array && (stored[1] === null || stored[1] instanceof Uint8Array)) {
    if (stored.length === 2) return { start: stored[0], end: stored[1] };
    const epoch: unknown = stored[2];
    if (Number.isSafeInteger(epoch) && (epoch as number) >= 1) return { start: stored[0], end: stored[1] };
    if (epoch === 0 && stored[0].byteLength === 0 && stored[1] !== null && stored[1].byteLength === 0) return undefined;
  }
  throw new CorruptRecordError(`shard ${shardId}: range descriptor is malformed`);
}

interface WritePlan {
  shardId: GroupId;
  entries: readonly Entry[];
  truncateFrom: number;
  previousLast: number;
  hardState: HardState | undefined;
}

/**
 * The core's `Storage` for one shard over the node's LMDB store. Reads the
 * in-memory mirror and the entry cache first, LMDB otherwise.
 */
export class ShardStorage implements Storage {
  constructor(
    private readonly store: NodeStore,
    readonly shardId: GroupId,
    private readonly state: ShardState,
  ) {}

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.state.hardState, confState: this.state.confState ?? EMPTY_CONF_STATE };
  }

  /**
   * Empties the entry cache (its group quiesced): reads go to LMDB until new
   * entries are persisted. A quiesced replica needs no entry until it wakes,
   * and the cache holds up to ENTRY_CACHE_COUNT_MAX of them, whose payloads
   * may be views into the larger buffers they arrived in.
   */
  releaseCache(): void {
    const s = this.state;
    if (s.tailFrom === NO_TAIL || s.tailFrom > s.lastIndex) {
      s.cache = [];
      return;
    }
    // Entries only the tail holds stay until the next checkpoint has put them in `log`.
    s.cache = s.cache.slice(s.tailFrom - s.cache[0]!.index);
    this.store.wantRelease(this.shardId);
  }

  get applied(): LogIndex {
    return this.state.applied;
  }

  /** This replica's incarnation on its node (RaftConfig.incarnation); read once, when its Raft node is built. */
  get incarnation(): number {
    return this.store.incarnation(this.shardId);
  }

  firstIndex(): LogIndex {
    return this.state.snapshotIndex + 1;
  }

  lastIndex(): LogIndex {
    return this.state.lastIndex;
  }

  term(i: LogIndex): Term {
    const s = this.state;
    if (i < s.snapshotIndex) throw new CompactedError(i, s.snapshotIndex + 1);
    if (i > s.lastIndex) throw new UnavailableError(i, s.lastIndex);
    if (i === s.snapshotIndex) return s.snapshotTerm;
    return this.entry(i).term;
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    const s = this.state;
    if (lo <= s.snapshotIndex) throw new CompactedError(lo, s.snapshotIndex + 1);
    if (hi > s.lastIndex + 1) throw new UnavailableError(hi - 1, s.lastIndex);
    const out: Entry[] = [];
    let bytes = 0;
    const cacheFirst = s.cache.length > 0 ? s.cache[0]!.index : Number.POSITIVE_INFINITY;
    let index = lo;
    if (index < cacheFirst) {
      for (const { key, value } of this.store.log.getRange({ start: [this.shardId, lo], end: [this.shardId, Math.min(hi, cacheFirst)] })) {
        const e = decodeEntry(key[1], value);
        if (e.index !== index) throw new CorruptRecordError(`shard ${this.shardId}: log hole at ${index} (found ${e.index})`);
        bytes += entrySizeBytes(e);
        if (out.length > 0 && bytes > bytesMax) return out;
        out.push(e);
        index++;
      }
      if (index < Math.min(hi, cacheFirst)) throw new CorruptRecordError(`shard ${this.shardId}: log hole at ${index}`);
    }
    for (; index < hi; index++) {
      const e = s.cache[index - cacheFirst]!;
      bytes += entrySizeBytes(e);
      if (out.length > 0 && bytes > bytesMax) return out;
      out.push(e);
    }
    return out;
  }

  /** A snapshot descriptor at the applied index; its data is streamed separately (snapshot/reader.ts). */
  snapshot(): Snapshot {
    const s = this.state;
    const index = s.applied;
    const term = index === 0 ? 0 : this.term(index);
    return { metadata: { index, term, confState: s.confState }, data: new Uint8Array(0) };
  }

  private entry(i: LogIndex): Entry {
    const cache = this.state.cache;
    if (cache.length > 0 && i >= cache[0]!.index) return cache[i - cache[0]!.index]!;
    const raw = this.store.log.get([this.shardId, i]);
    if (raw === undefined) throw new CorruptRecordError(`shard ${this.shardId}: log entry ${i} is missing (first ${this.firstIndex()}, last ${this.lastIndex()})`);
    return decodeEntry(i, raw);
  }
}

/**
 * Durable: lmdb-js's async transaction (its write thread batches them),
 * then `flushed` (synced). Simulated: a synchronous commit without sync,
 * after the simulation's crash point.
 */
async function writeTransaction(env: RootDatabase, io: StoreIo, body: () => void, options: { sync: boolean } = { sync: true }): Promise<void> {
  if (io.kind === 'simulated') {
    await io.beforeWrite();
    env.transactionSync(body);
    io.afterWrite?.();
    return;
  }
  await env.transaction(body);
  if (options.sync) await env.flushed;
}
