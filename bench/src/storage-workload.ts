// The storage bench's workload, shared by the main thread and the worker
// threads of the env-layout comparison: group commits through
// NodeStore.persist, the raw write+fsync loop they are compared with, and the
// checksum a reopened store must reproduce.
import { fsyncSync, writeSync } from 'node:fs';
import { SeededRng, assert, groupId, nodeId, type ConfState, type Entry, type GroupId, type HardState } from '@flotilla/core';
import type { NodeStore, ShardWrite } from '@flotilla/shards';

/** Distinct payloads per size; entries cycle through them, so building a commit allocates no payload bytes. */
const PAYLOAD_POOL_COUNT = 256;
/** Every bench entry is from one term of one leader: the bench measures persisting, not elections. */
const BENCH_TERM = 1;
export const BENCH_NODE_ID = nodeId(1);
export const BENCH_CONF_STATE: ConfState = { voters: [BENCH_NODE_ID], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

/** How long one measured loop runs: until timeMs and commitsMin are both reached, or payloadBytesMax is written. */
export interface LoopLimits {
  readonly timeMs: number;
  readonly commitsMin: number;
  /** Bounds the disk one loop fills (its log is not compacted); reaching it ends the loop once commitsMin is done. */
  readonly payloadBytesMax: number;
}

export interface LoopResult {
  readonly commitCount: number;
  readonly entryCount: number;
  readonly payloadBytes: number;
  readonly elapsedMs: number;
  /** Per commit: from the call until it resolved (persist) or fsync returned (raw). */
  readonly latenciesMs: number[];
}

export interface LatencySummary {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Nearest-rank percentiles: with few samples p99 is the maximum, which is what it should say. */
export function latencySummary(latenciesMs: readonly number[]): LatencySummary {
  assert(latenciesMs.length > 0, 'latency summary of no samples');
  const sorted = Float64Array.from(latenciesMs).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted[sorted.length - 1]! };
}

export function payloadPool(options: { payloadBytes: number; seed: number }): Uint8Array[] {
  const rng = new SeededRng(options.seed * 1_000_003 + options.payloadBytes);
  return Array.from({ length: PAYLOAD_POOL_COUNT }, () => {
    const p = new Uint8Array(options.payloadBytes);
    for (let i = 0; i < p.length; i += 4) {
      const word = rng.nextUint32();
      for (let b = 0; b < 4 && i + b < p.length; b++) p[i + b] = (word >>> (8 * b)) & 0xff;
    }
    return p;
  });
}

/** FNV-1a, 32 bit: cheap enough to hash what a reopened store returns, strong enough to catch a wrong byte. */
export function fnv1a(bytes: Uint8Array, hash = 0x811c9dc5): number {
  let h = hash;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function fnv1aWord(word: number, hash: number): number {
  let h = hash;
  for (let b = 0; b < 4; b++) {
    h ^= (word >>> (8 * b)) & 0xff;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * What a store holds after a run, computed the same way from what was
 * acknowledged and from what a reopened store reads back: entries per shard
 * (every log starts empty and is never compacted, so lastIndex counts them)
 * and, summed over shards so the order does not matter, a hash of each
 * shard's id, last index and last entry's payload.
 */
export interface StoreChecksum {
  entryCount: number;
  lastEntryHashSum: number;
}

function lastEntryHash(shardId: number, lastIndex: number, data: Uint8Array): number {
  return fnv1a(data, fnv1aWord(lastIndex, fnv1aWord(shardId, 0x811c9dc5)));
}

export function addChecksums(a: StoreChecksum, b: StoreChecksum): StoreChecksum {
  return { entryCount: a.entryCount + b.entryCount, lastEntryHashSum: (a.lastEntryHashSum + b.lastEntryHashSum) >>> 0 };
}

/** Reads the checksum back from a store; call it on a freshly opened store, whose entry caches are empty, so the bytes come from LMDB. */
export function readStoreChecksum(store: NodeStore): StoreChecksum {
  let checksum: StoreChecksum = { entryCount: 0, lastEntryHashSum: 0 };
  for (const shardId of store.shardIds()) {
    const storage = store.storage(shardId);
    const lastIndex = storage.lastIndex();
    assert(storage.firstIndex() === 1, () => `shard ${shardId}: bench logs are never compacted, yet the first index is ${storage.firstIndex()}`);
    if (lastIndex === 0) continue;
    const [last] = storage.entries(lastIndex, lastIndex + 1, Number.POSITIVE_INFINITY);
    assert(last !== undefined && last.index === lastIndex, () => `shard ${shardId}: last entry ${lastIndex} did not read back`);
    checksum = addChecksums(checksum, { entryCount: lastIndex, lastEntryHashSum: lastEntryHash(shardId, lastIndex, last.data) });
  }
  return checksum;
}

/**
 * Hands out group commits: each commit carries `entriesPerCommit` entries
 * spread evenly over the next `shardsPerCommit = min(shardCount,
 * entriesPerCommit)` shards in round-robin order, plus each touched shard's
 * hard state (its commit index advanced to its new last entry, as a leader
 * of a single-voter group would). So with 1024 shards and 16 entries per
 * commit, 16 shards get one entry each, and every shard is written in turn.
 */
export class CommitPlanner {
  readonly shardsPerCommit: number;
  readonly entriesPerShard: number;
  entryCount = 0;
  commitCount = 0;
  private nextShardPosition = 0;
  private nextPayload = 0;
  private readonly lastIndexes: number[];
  /** Pool position of each shard's last payload: what its last entry must read back as. */
  private readonly lastPayloads: number[];

  constructor(
    private readonly options: { shardIds: readonly GroupId[]; entriesPerCommit: number; pool: readonly Uint8Array[] },
  ) {
    const shardCount = options.shardIds.length;
    assert(shardCount > 0, 'a commit planner needs shards');
    this.shardsPerCommit = Math.min(shardCount, options.entriesPerCommit);
    this.entriesPerShard = options.entriesPerCommit / this.shardsPerCommit;
    assert(Number.isInteger(this.entriesPerShard), () => `${options.entriesPerCommit} entries per commit do not divide evenly over ${this.shardsPerCommit} shards`);
    this.lastIndexes = new Array<number>(shardCount).fill(0);
    this.lastPayloads = new Array<number>(shardCount).fill(-1);
  }

  get payloadBytesPerCommit(): number {
    return this.options.entriesPerCommit * this.options.pool[0]!.byteLength;
  }

  next(): ShardWrite[] {
    const { shardIds, pool } = this.options;
    const writes: ShardWrite[] = [];
    for (let s = 0; s < this.shardsPerCommit; s++) {
      const position = this.nextShardPosition;
      this.nextShardPosition = (position + 1) % shardIds.length;
      const entries: Entry[] = [];
      let index = this.lastIndexes[position]!;
      for (let e = 0; e < this.entriesPerShard; e++) {
        index++;
        entries.push({ term: BENCH_TERM, index, type: 'normal', data: pool[this.nextPayload]! });
        this.lastPayloads[position] = this.nextPayload;
        this.nextPayload = (this.nextPayload + 1) % pool.length;
      }
      this.lastIndexes[position] = index;
      const hardState: HardState = { term: BENCH_TERM, vote: BENCH_NODE_ID, commit: index };
      writes.push({ shardId: shardIds[position]!, entries, hardState });
    }
    this.entryCount += this.options.entriesPerCommit;
    this.commitCount++;
    return writes;
  }

  /** The checksum of everything handed out; once every commit was acknowledged, a reopened store must match it. */
  expected(): StoreChecksum {
    let checksum: StoreChecksum = { entryCount: 0, lastEntryHashSum: 0 };
    this.options.shardIds.forEach((shardId, position) => {
      const lastIndex = this.lastIndexes[position]!;
      if (lastIndex === 0) return;
      const data = this.options.pool[this.lastPayloads[position]!]!;
      checksum = addChecksums(checksum, { entryCount: lastIndex, lastEntryHashSum: lastEntryHash(shardId, lastIndex, data) });
    });
    return checksum;
  }
}

function loopDone(limits: LoopLimits, commitCount: number, payloadBytes: number, elapsedMs: number): boolean {
  if (commitCount < limits.commitsMin) return false;
  return elapsedMs >= limits.timeMs || payloadBytes >= limits.payloadBytesMax;
}

/** Group commits one after another, each awaited: the shape of one worker's loop (persist, then send, then the next pass). */
export async function persistLoop(store: NodeStore, planner: CommitPlanner, limits: LoopLimits): Promise<LoopResult> {
  const latenciesMs: number[] = [];
  const entriesAtStart = planner.entryCount;
  let payloadBytes = 0;
  const start = performance.now();
  while (!loopDone(limits, latenciesMs.length, payloadBytes, performance.now() - start)) {
    const writes = planner.next();
    const callAt = performance.now();
    await store.persist(writes);
    latenciesMs.push(performance.now() - callAt);
    payloadBytes += planner.payloadBytesPerCommit;
  }
  const elapsedMs = performance.now() - start;
  return { commitCount: latenciesMs.length, entryCount: planner.entryCount - entriesAtStart, payloadBytes, elapsedMs, latenciesMs };
}

/** The physical limit: the same payload bytes per commit appended to a plain file with write + fsync. */
export function rawFsyncLoop(fd: number, commitBytes: Uint8Array, options: { entriesPerCommit: number; limits: LoopLimits }): LoopResult {
  const latenciesMs: number[] = [];
  let payloadBytes = 0;
  const start = performance.now();
  while (!loopDone(options.limits, latenciesMs.length, payloadBytes, performance.now() - start)) {
    const callAt = performance.now();
    let written = 0;
    while (written < commitBytes.byteLength) written += writeSync(fd, commitBytes, written);
    fsyncSync(fd);
    latenciesMs.push(performance.now() - callAt);
    payloadBytes += commitBytes.byteLength;
  }
  const elapsedMs = performance.now() - start;
  return { commitCount: latenciesMs.length, entryCount: latenciesMs.length * options.entriesPerCommit, payloadBytes, elapsedMs, latenciesMs };
}

// ---------------------------------------------------------------------------
// The env-layout comparison: protocol between the main thread and storage-worker.ts

/** What one worker does: open a NodeStore on `dir`, create its shards, warm up, then persist group commits for `run`. */
export interface EnvWorkerTask {
  readonly dir: string;
  readonly nodeId: number;
  readonly shardIds: readonly number[];
  readonly entriesPerCommit: number;
  readonly payloadBytes: number;
  readonly seed: number;
  readonly warmup: LoopLimits;
  readonly run: LoopLimits;
}

export type EnvWorkerMessage =
  | { readonly type: 'ready' }
  | {
      readonly type: 'done';
      readonly commitCount: number;
      readonly entryCount: number;
      readonly elapsedMs: number;
      readonly latency: LatencySummary;
      /** Of everything this worker acknowledged, warm-up included. */
      readonly expected: StoreChecksum;
    };

export type EnvMainMessage = { readonly type: 'go' };

export const shardIdsFrom = (first: number, count: number): GroupId[] => Array.from({ length: count }, (_, i) => groupId(first + i));
