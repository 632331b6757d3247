// Storage benchmarks of @flotilla/shards on the disk under os.tmpdir():
//
//   persist   durable entries/s through NodeStore.persist (group commit: one
//             LMDB transaction, resolved once flushed) for 1/16/256/4096
//             entries per commit, 64 B and 1 KiB entries, spread over 1, 64
//             and 1024 shards; next to the raw write+fsync rate of the same
//             bytes per commit to a plain file in the same directory, measured
//             in the same run just before (the physical limit), as a ratio.
//   snapshot  readSnapshot over one range (64 MiB; 4 MiB quick) and
//             SnapshotInstaller (stage every chunk, then the atomic swap), MB/s.
//   env       2 worker threads each persisting group commits for their own
//             shards into one LMDB env each (env per core, the layout
//             Flotilla uses), against one worker alone; aggregate durable
//             entries/s. A shared env per node is no longer measured:
//             NodeStore's log tail belongs to one NodeStore per environment.
//
//   node --expose-gc dist/storage-bench.js             full run (a few minutes)
//   node --expose-gc dist/storage-bench.js --quick     tiny inputs, seconds (CI, npm test)
//   ... --section persist,env                          only some sections
//   ... --compare results/storage-<timestamp>.json     ratios against an earlier run (e.g. the base branch)
//
// Every store a task wrote is closed, reopened and read back before its
// numbers count: the entry count and a hash of each shard's last entry must
// match what was acknowledged (the checksum column). Temp dirs are removed.
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { NONE, assert, groupId, type Entry, type GroupId } from '@flotilla/core';
import { KvStateMachine, NodeStore, SnapshotInstaller, encodeCommand, readSnapshot, type RangeBounds } from '@flotilla/shards';
import { commandLine, cpuShare, cpuShareText, fileSystemOf, fmt, gc, hex32, loadAverageText, machineInfo, printTable, progress, ratio, sampleCpu, writeResults, type CpuShare } from './report.js';
import {
  BENCH_CONF_STATE,
  BENCH_NODE_ID,
  CommitPlanner,
  addChecksums,
  fnv1a,
  latencySummary,
  payloadPool,
  persistLoop,
  rawFsyncLoop,
  readStoreChecksum,
  shardIdsFrom,
  type EnvMainMessage,
  type EnvWorkerMessage,
  type EnvWorkerTask,
  type LatencySummary,
  type LoopLimits,
  type LoopResult,
  type StoreChecksum,
} from './storage-workload.js';

const MIB = 1024 * 1024;
const SECTIONS = ['persist', 'snapshot', 'env'] as const;
type Section = (typeof SECTIONS)[number];

interface StorageBenchParameters {
  readonly mode: 'full' | 'quick';
  readonly seed: number;
  readonly persist: {
    readonly payloadBytesList: readonly number[];
    readonly entriesPerCommitList: readonly number[];
    readonly shardCounts: readonly number[];
    readonly warmup: LoopLimits;
    readonly run: LoopLimits;
  };
  readonly snapshot: {
    /** Key plus value bytes in the range. */
    readonly rangeBytes: number;
    readonly keyBytes: number;
    readonly valueBytes: number;
    /** Puts per persist + apply while filling the source range. */
    readonly fillEntriesPerCommit: number;
  };
  readonly env: {
    readonly workerCount: number;
    readonly shardsPerWorker: number;
    readonly payloadBytesList: readonly number[];
    readonly entriesPerCommitList: readonly number[];
    readonly warmup: LoopLimits;
    readonly run: LoopLimits;
    /** Each layout runs this many times, alternating order, so a drifting disk or neighbour hits all layouts alike. */
    readonly roundCount: number;
  };
}

// Full: 32 persist cells and 48 env runs of ~1.7 s each, a 64 MiB snapshot: about three minutes on 2 cores.
const FULL: StorageBenchParameters = {
  mode: 'full',
  seed: 1,
  persist: {
    payloadBytesList: [64, 1024],
    entriesPerCommitList: [1, 16, 256, 4096],
    shardCounts: [1, 64, 1024],
    warmup: { timeMs: 200, commitsMin: 3, payloadBytesMax: 16 * MIB },
    // 256 MiB bounds the disk one cell fills (its log is never compacted): at 4 MiB per commit, the largest
    // cells would write gigabytes within timeMs on a fast disk.
    run: { timeMs: 1_500, commitsMin: 10, payloadBytesMax: 256 * MIB },
  },
  snapshot: { rangeBytes: 64 * MIB, keyBytes: 16, valueBytes: 1_008, fillEntriesPerCommit: 1_024 },
  env: {
    workerCount: 2,
    shardsPerWorker: 64,
    payloadBytesList: [64, 1024],
    entriesPerCommitList: [1, 16, 256, 4096],
    warmup: { timeMs: 200, commitsMin: 3, payloadBytesMax: 16 * MIB },
    run: { timeMs: 1_500, commitsMin: 10, payloadBytesMax: 256 * MIB },
    roundCount: 2,
  },
};

// Quick: every code path with tiny inputs, so CI keeps the bench from rotting.
const QUICK: StorageBenchParameters = {
  mode: 'quick',
  seed: 1,
  persist: {
    payloadBytesList: [64, 1024],
    entriesPerCommitList: [1, 16, 256],
    shardCounts: [1, 64],
    warmup: { timeMs: 0, commitsMin: 1, payloadBytesMax: MIB },
    run: { timeMs: 20, commitsMin: 3, payloadBytesMax: 4 * MIB },
  },
  snapshot: { rangeBytes: 4 * MIB, keyBytes: 16, valueBytes: 1_008, fillEntriesPerCommit: 1_024 },
  env: {
    workerCount: 2,
    shardsPerWorker: 8,
    payloadBytesList: [64],
    entriesPerCommitList: [16],
    warmup: { timeMs: 0, commitsMin: 1, payloadBytesMax: MIB },
    run: { timeMs: 100, commitsMin: 3, payloadBytesMax: 4 * MIB },
    roundCount: 1,
  },
};

const mbPerSecond = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1_000);
const perSecond = (count: number, ms: number): number => count / (ms / 1_000);

/** A fresh directory for each task under the run's temp dir, removed when the task ends. */
class WorkDir {
  private taskCount = 0;
  constructor(readonly root: string) {}
  next(label: string): string {
    return join(this.root, `${String(this.taskCount++).padStart(3, '0')}-${label}`);
  }
}

// ---------------------------------------------------------------------------
// persist: group commits vs raw write+fsync

interface PersistRow {
  readonly name: string;
  readonly kind: 'raw-fsync' | 'persist';
  readonly payloadBytes: number;
  readonly entriesPerCommit: number;
  /** 0 for raw-fsync. */
  readonly shardCount: number;
  readonly shardsPerCommit: number;
  readonly payloadBytesPerCommit: number;
  readonly warmupCommitCount: number;
  readonly commitCount: number;
  readonly entryCount: number;
  readonly elapsedMs: number;
  readonly commitsPerSecond: number;
  readonly entriesPerSecond: number;
  readonly payloadMBPerSecond: number;
  readonly latency: LatencySummary;
  /** Over the measured loop: this process (main thread and lmdb's write thread) and everyone else on the machine. */
  readonly cpu: CpuShare;
  /** Read back after the run (reopened store, or the file's last commit), warm-up included. */
  readonly checksum: StoreChecksum;
  /** entriesPerSecond over the raw-fsync row of the same payload and entries per commit. */
  ratioToRaw?: number;
}

type PersistRowBase = Omit<PersistRow, 'commitsPerSecond' | 'entriesPerSecond' | 'payloadMBPerSecond' | 'latency' | 'elapsedMs' | 'commitCount' | 'entryCount' | 'cpu'>;

function persistRow(base: PersistRowBase, measured: { run: LoopResult; cpu: CpuShare }): PersistRow {
  const { run, cpu } = measured;
  return {
    ...base,
    cpu,
    commitCount: run.commitCount,
    entryCount: run.entryCount,
    elapsedMs: run.elapsedMs,
    commitsPerSecond: perSecond(run.commitCount, run.elapsedMs),
    entriesPerSecond: perSecond(run.entryCount, run.elapsedMs),
    payloadMBPerSecond: mbPerSecond(run.payloadBytes, run.elapsedMs),
    latency: latencySummary(run.latenciesMs),
  };
}

function runRawCell(spec: { payloadBytes: number; entriesPerCommit: number }, params: StorageBenchParameters, work: WorkDir): PersistRow {
  const pool = payloadPool({ payloadBytes: spec.payloadBytes, seed: params.seed });
  const commitBytes = new Uint8Array(spec.entriesPerCommit * spec.payloadBytes);
  for (let e = 0; e < spec.entriesPerCommit; e++) commitBytes.set(pool[e % pool.length]!, e * spec.payloadBytes);
  const path = `${work.next('raw')}.log`;
  const fd = openSync(path, 'w+');
  try {
    const limits = { entriesPerCommit: spec.entriesPerCommit };
    const warmup = rawFsyncLoop(fd, commitBytes, { ...limits, limits: params.persist.warmup });
    gc?.();
    const cpuFrom = sampleCpu();
    const run = rawFsyncLoop(fd, commitBytes, { ...limits, limits: params.persist.run });
    const cpu = cpuShare(cpuFrom, sampleCpu());
    // Read back what the last commit wrote, as the LMDB rows do.
    const fileBytes = fstatSync(fd).size;
    assert(fileBytes === warmup.payloadBytes + run.payloadBytes, () => `raw file holds ${fileBytes} B; wrote ${warmup.payloadBytes + run.payloadBytes} B`);
    const last = new Uint8Array(commitBytes.byteLength);
    const readBytes = readSync(fd, last, 0, last.byteLength, fileBytes - last.byteLength);
    assert(readBytes === last.byteLength, () => `raw file: read ${readBytes} of ${last.byteLength} B of the last commit`);
    const checksum = { entryCount: warmup.entryCount + run.entryCount, lastEntryHashSum: fnv1a(last) };
    assert(checksum.lastEntryHashSum === fnv1a(commitBytes), 'raw file: the last commit read back differs from what was written');
    return persistRow(
      {
        name: `raw-fsync p=${spec.payloadBytes}B e=${spec.entriesPerCommit}`,
        kind: 'raw-fsync',
        ...spec,
        shardCount: 0,
        shardsPerCommit: 0,
        payloadBytesPerCommit: commitBytes.byteLength,
        warmupCommitCount: warmup.commitCount,
        checksum,
      },
      { run, cpu },
    );
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
}

async function runPersistCell(spec: { payloadBytes: number; entriesPerCommit: number; shardCount: number }, params: StorageBenchParameters, work: WorkDir): Promise<PersistRow> {
  const dir = work.next('persist');
  try {
    const shardIds = shardIdsFrom(1, spec.shardCount);
    const planner = new CommitPlanner({ shardIds, entriesPerCommit: spec.entriesPerCommit, pool: payloadPool({ payloadBytes: spec.payloadBytes, seed: params.seed }) });
    const store = await NodeStore.open({ dir, nodeId: BENCH_NODE_ID });
    let warmup: LoopResult;
    let run: LoopResult;
    let cpu: CpuShare;
    try {
      // Created in one event turn, so lmdb-js commits them together rather than one fsync per shard.
      await Promise.all(shardIds.map((id) => store.createShard(id, { confState: BENCH_CONF_STATE })));
      warmup = await persistLoop(store, planner, params.persist.warmup);
      gc?.();
      const cpuFrom = sampleCpu();
      run = await persistLoop(store, planner, params.persist.run);
      cpu = cpuShare(cpuFrom, sampleCpu());
    } finally {
      await store.close();
    }
    const checksum = await reopenedChecksum([dir]);
    assertChecksum(checksum, planner.expected(), dir);
    return persistRow(
      {
        name: `persist p=${spec.payloadBytes}B e=${spec.entriesPerCommit} s=${spec.shardCount}`,
        kind: 'persist',
        ...spec,
        shardsPerCommit: planner.shardsPerCommit,
        payloadBytesPerCommit: planner.payloadBytesPerCommit,
        warmupCommitCount: warmup.commitCount,
        checksum,
      },
      { run, cpu },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Opens each store afresh (empty entry caches, invariants checked on open) and reads its checksum from LMDB. */
async function reopenedChecksum(dirs: readonly string[]): Promise<StoreChecksum> {
  let checksum: StoreChecksum = { entryCount: 0, lastEntryHashSum: 0 };
  for (const dir of dirs) {
    const store = await NodeStore.open({ dir, nodeId: BENCH_NODE_ID });
    try {
      checksum = addChecksums(checksum, readStoreChecksum(store));
    } finally {
      await store.close();
    }
  }
  return checksum;
}

function assertChecksum(actual: StoreChecksum, expected: StoreChecksum, where: string): void {
  assert(actual.entryCount === expected.entryCount, () => `${where}: reopened store holds ${actual.entryCount} entries; ${expected.entryCount} were acknowledged`);
  assert(
    actual.lastEntryHashSum === expected.lastEntryHashSum,
    () => `${where}: last entries read back hash to ${hex32(actual.lastEntryHashSum)}; acknowledged ones hash to ${hex32(expected.lastEntryHashSum)}`,
  );
}

async function runPersistSection(params: StorageBenchParameters, work: WorkDir): Promise<PersistRow[]> {
  const rows: PersistRow[] = [];
  for (const payloadBytes of params.persist.payloadBytesList) {
    for (const entriesPerCommit of params.persist.entriesPerCommitList) {
      // The baseline runs right before the rows it divides, so both see the same disk and neighbours.
      const raw = runRawCell({ payloadBytes, entriesPerCommit }, params, work);
      rows.push(raw);
      progress(raw.name, `${fmt(raw.entriesPerSecond)} entries/s`);
      for (const shardCount of params.persist.shardCounts) {
        const row = await runPersistCell({ payloadBytes, entriesPerCommit, shardCount }, params, work);
        row.ratioToRaw = row.entriesPerSecond / raw.entriesPerSecond;
        rows.push(row);
        progress(row.name, `${fmt(row.entriesPerSecond)} entries/s, ÷raw ${ratio(row.ratioToRaw)}`);
      }
    }
  }
  return rows;
}

function printPersist(rows: PersistRow[]): void {
  printTable(
    ['task', 'B/commit', 'shards/commit', 'commits', 'commits/s', 'entries/s', 'MB/s', 'p50 ms', 'p99 ms', '÷raw', 'CPU %', 'others %', 'checksum (entries/hash)'],
    rows.map((r) => [
      r.name,
      fmt(r.payloadBytesPerCommit),
      r.kind === 'raw-fsync' ? '-' : fmt(r.shardsPerCommit),
      fmt(r.commitCount),
      fmt(r.commitsPerSecond),
      fmt(r.entriesPerSecond),
      fmt(r.payloadMBPerSecond, 2),
      fmt(r.latency.p50Ms, 2),
      fmt(r.latency.p99Ms, 2),
      ratio(r.ratioToRaw),
      fmt(r.cpu.ownPercentOfWall),
      othersText(r.cpu),
      `${r.checksum.entryCount}/${hex32(r.checksum.lastEntryHashSum)}`,
    ]),
  );
}

const othersText = (c: CpuShare): string => (c.othersBusyPercent === undefined ? '-' : fmt(c.othersBusyPercent));

// ---------------------------------------------------------------------------
// snapshot: create (readSnapshot) and install (SnapshotInstaller)

interface SnapshotRow {
  readonly rangeBytes: number;
  readonly pairCount: number;
  readonly pairBytes: number;
  readonly chunkCount: number;
  readonly chunkBytes: number;
  /** Filling the source range through the log: persist + KvStateMachine.apply (context, not a target). */
  readonly fill: { readonly elapsedMs: number; readonly mbPerSecond: number };
  /** readSnapshot from one read transaction, every chunk encoded (page cache warm from the fill). */
  readonly create: { readonly elapsedMs: number; readonly mbPerSecond: number };
  /** addChunk for every chunk (staging), then install (the atomic swap, resolved once durable). */
  readonly install: { readonly stageMs: number; readonly swapMs: number; readonly elapsedMs: number; readonly mbPerSecond: number };
  /** Pairs and an FNV-1a hash over every key and value in key order: as filled, and as the reopened target reads back. */
  readonly checksum: { readonly pairCount: number; readonly rangeHash: number };
}

/** The node receiving the snapshot: another replica of the same range. */
const SNAPSHOT_TARGET_NODE_ID = 2;
/** First byte of every bench key: the range is [KEY_PREFIX, KEY_PREFIX + 1). */
const KEY_PREFIX = 0x6b;

function pairKey(i: number, keyBytes: number): Uint8Array {
  const key = new Uint8Array(keyBytes);
  key[0] = KEY_PREFIX;
  new DataView(key.buffer).setBigUint64(1, BigInt(i)); // big-endian: byte order is numeric order
  return key;
}

async function runSnapshotSection(params: StorageBenchParameters, work: WorkDir): Promise<SnapshotRow> {
  const { rangeBytes, keyBytes, valueBytes, fillEntriesPerCommit } = params.snapshot;
  const pairBytes = keyBytes + valueBytes;
  const pairCount = rangeBytes / pairBytes;
  assert(Number.isInteger(pairCount), () => `range of ${rangeBytes} B is not a whole number of ${pairBytes} B pairs`);
  assert(keyBytes >= 9, () => `keys of ${keyBytes} B cannot hold the prefix and an 8-byte index`);
  const shardId = groupId(1);
  const bounds: RangeBounds = { start: Uint8Array.of(KEY_PREFIX), end: Uint8Array.of(KEY_PREFIX + 1) };
  const sourceDir = work.next('snapshot-source');
  const targetDir = work.next('snapshot-target');
  try {
    const source = await NodeStore.open({ dir: sourceDir, nodeId: BENCH_NODE_ID });
    let fillMs = 0;
    let rangeHash = 0x811c9dc5;
    let createMs: number;
    const chunks: Uint8Array[] = [];
    let chunkBytes = 0;
    try {
      await source.createShard(shardId, { confState: BENCH_CONF_STATE, descriptor: [bounds.start, bounds.end] });
      const machine = new KvStateMachine(source);
      const values = payloadPool({ payloadBytes: valueBytes, seed: params.seed });
      for (let first = 0; first < pairCount; first += fillEntriesPerCommit) {
        const entries: Entry[] = [];
        for (let i = first; i < Math.min(pairCount, first + fillEntriesPerCommit); i++) {
          const key = pairKey(i, keyBytes);
          const value = values[i % values.length]!;
          rangeHash = fnv1a(value, fnv1a(key, rangeHash));
          entries.push({ term: 1, index: i + 1, type: 'normal', data: encodeCommand({ op: 'put', key, value }) });
        }
        const fillStart = performance.now();
        await source.persist([{ shardId, entries, hardState: { term: 1, vote: BENCH_NODE_ID, commit: entries[entries.length - 1]!.index } }]);
        const results = await machine.apply([{ shardId, entries }]);
        fillMs += performance.now() - fillStart;
        const applied = results.get(shardId);
        assert(applied !== undefined && applied.size === entries.length, () => `fill: applied ${applied?.size ?? 0} of ${entries.length} puts`);
      }
      gc?.();
      const createStart = performance.now();
      for (const chunk of readSnapshot(source, shardId, bounds)) {
        chunks.push(chunk);
        chunkBytes += chunk.byteLength;
      }
      createMs = performance.now() - createStart;
    } finally {
      await source.close();
    }

    const target = await NodeStore.open({ dir: targetDir, nodeId: SNAPSHOT_TARGET_NODE_ID });
    let stageMs: number;
    let swapMs: number;
    try {
      await target.createShard(shardId, { confState: BENCH_CONF_STATE });
      const installer = new SnapshotInstaller(target, shardId);
      gc?.();
      const stageStart = performance.now();
      for (let i = 0; i < chunks.length; i++) {
        const last = await installer.addChunk(chunks[i]!);
        assert(last === (i === chunks.length - 1), () => `snapshot chunk ${i} of ${chunks.length} says last=${last}`);
      }
      const swapStart = performance.now();
      const header = await installer.install({ term: 1, vote: NONE, commit: 0 });
      swapMs = performance.now() - swapStart;
      stageMs = swapStart - stageStart;
      assert(header.index === pairCount, () => `snapshot at index ${header.index}; the source applied ${pairCount}`);
    } finally {
      await target.close();
    }
    const readBack = await readRange(targetDir, shardId, bounds, pairCount);
    assert(readBack.pairCount === pairCount, () => `installed range holds ${readBack.pairCount} pairs; the source held ${pairCount}`);
    assert(readBack.rangeHash === rangeHash, () => `installed range hashes to ${hex32(readBack.rangeHash)}; the source to ${hex32(rangeHash)}`);
    const installMs = stageMs + swapMs;
    return {
      rangeBytes,
      pairCount,
      pairBytes,
      chunkCount: chunks.length,
      chunkBytes,
      fill: { elapsedMs: fillMs, mbPerSecond: mbPerSecond(rangeBytes, fillMs) },
      create: { elapsedMs: createMs, mbPerSecond: mbPerSecond(rangeBytes, createMs) },
      install: { stageMs, swapMs, elapsedMs: installMs, mbPerSecond: mbPerSecond(rangeBytes, installMs) },
      checksum: { pairCount, rangeHash },
    };
  } finally {
    rmSync(sourceDir, { recursive: true, force: true });
    rmSync(targetDir, { recursive: true, force: true });
  }
}

/** Reopens the target and hashes its range the way the fill did; checks the applied index the install recorded. */
async function readRange(dir: string, shardId: GroupId, bounds: RangeBounds, appliedExpected: number): Promise<{ pairCount: number; rangeHash: number }> {
  const store = await NodeStore.open({ dir, nodeId: SNAPSHOT_TARGET_NODE_ID });
  try {
    const storage = store.storage(shardId);
    assert(storage.applied === appliedExpected, () => `installed shard applied index ${storage.applied}; expected ${appliedExpected}`);
    assert(storage.firstIndex() === appliedExpected + 1, () => `installed shard first index ${storage.firstIndex()}; expected ${appliedExpected + 1}`);
    let pairCount = 0;
    let rangeHash = 0x811c9dc5;
    for (const { key, value, version } of new KvStateMachine(store).scan({ start: bounds.start, end: bounds.end ?? undefined, limit: Number.MAX_SAFE_INTEGER })) {
      assert(version === pairCount + 1, () => `key ${key.toString('hex')} has version ${version}; it was put at index ${pairCount + 1}`);
      rangeHash = fnv1a(value, fnv1a(key, rangeHash));
      pairCount++;
    }
    return { pairCount, rangeHash };
  } finally {
    await store.close();
  }
}

function printSnapshot(r: SnapshotRow): void {
  const range = `${fmt(r.rangeBytes / MIB)} MiB`;
  const checksum = `${r.checksum.pairCount}/${hex32(r.checksum.rangeHash)}`;
  printTable(
    ['task', 'range', 'pairs', 'chunks', 'ms', 'MB/s', 'checksum (pairs/hash)'],
    [
      ['snapshot-fill (persist+apply, context)', range, fmt(r.pairCount), '-', fmt(r.fill.elapsedMs), fmt(r.fill.mbPerSecond, 1), checksum],
      ['snapshot-create (readSnapshot)', range, fmt(r.pairCount), `${r.chunkCount} (${fmt(r.chunkBytes / MIB, 1)} MiB)`, fmt(r.create.elapsedMs), fmt(r.create.mbPerSecond, 1), checksum],
      [
        `snapshot-install (stage ${fmt(r.install.stageMs)} ms + swap ${fmt(r.install.swapMs)} ms)`,
        range,
        fmt(r.pairCount),
        String(r.chunkCount),
        fmt(r.install.elapsedMs),
        fmt(r.install.mbPerSecond, 1),
        checksum,
      ],
    ],
  );
}

// ---------------------------------------------------------------------------
// env: one LMDB env per worker core, 2 workers against one

type EnvLayout = 'env-per-core' | 'one-worker';
const ENV_LAYOUTS: readonly EnvLayout[] = ['env-per-core', 'one-worker'];
const WORKER_URL = new URL('./storage-worker.js', import.meta.url);

interface EnvRunRow {
  readonly name: string;
  readonly layout: EnvLayout;
  readonly round: number;
  readonly workerCount: number;
  readonly envCount: number;
  readonly shardsPerWorker: number;
  readonly payloadBytes: number;
  readonly entriesPerCommit: number;
  /** From posting `go` to the last worker's `done`. */
  readonly spanMs: number;
  readonly commitCount: number;
  readonly entryCount: number;
  readonly entriesPerSecond: number;
  readonly commitsPerSecond: number;
  readonly workerEntriesPerSecond: readonly number[];
  readonly workerLatency: readonly LatencySummary[];
  /** From `go` to the last `done`: this process (workers and their lmdb write threads) and everyone else. */
  readonly cpu: CpuShare;
  readonly checksum: StoreChecksum;
}

interface EnvSummaryRow {
  readonly name: string;
  readonly layout: EnvLayout;
  readonly payloadBytes: number;
  readonly entriesPerCommit: number;
  readonly workerCount: number;
  readonly envCount: number;
  readonly entriesPerSecondMean: number;
  readonly entriesPerSecondByRound: readonly number[];
  readonly commitsPerSecondMean: number;
  /** Mean of the workers' p50s, max of their p99s, over rounds. */
  readonly latencyP50MsMean: number;
  readonly latencyP99MsMax: number;
  readonly cpuPercentOfWallMean: number;
  readonly othersBusyPercentMean: number | undefined;
  ratioToOneWorker?: number;
}

interface EnvWorker {
  readonly ready: Promise<void>;
  readonly done: Promise<Extract<EnvWorkerMessage, { type: 'done' }>>;
  readonly exited: Promise<void>;
  go(): void;
}

/** Marks a promise as handled now (a worker may fail before we await it); awaiting it later still throws. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

function startWorker(task: EnvWorkerTask): EnvWorker {
  const worker = new Worker(WORKER_URL, { workerData: task });
  let fail!: (err: Error) => void;
  const failure = handled(new Promise<never>((_, reject) => (fail = reject)));
  let onReady!: () => void;
  let onDone!: (m: Extract<EnvWorkerMessage, { type: 'done' }>) => void;
  let onExit!: () => void;
  let doneReceived = false;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const done = new Promise<Extract<EnvWorkerMessage, { type: 'done' }>>((resolve) => (onDone = resolve));
  const exited = new Promise<void>((resolve) => (onExit = resolve));
  worker.on('message', (m: EnvWorkerMessage) => {
    switch (m.type) {
      case 'ready':
        onReady();
        break;
      case 'done':
        doneReceived = true;
        onDone(m);
        break;
      default: {
        const never: never = m;
        fail(new Error(`storage worker sent ${JSON.stringify(never)}`));
      }
    }
  });
  worker.on('error', (err) => fail(err));
  worker.on('exit', (code) => {
    if (code !== 0) fail(new Error(`storage worker on ${task.dir} exited with code ${code}`));
    else if (!doneReceived) fail(new Error(`storage worker on ${task.dir} exited before reporting its run`));
    else onExit();
  });
  return {
    ready: handled(Promise.race([ready, failure])),
    done: handled(Promise.race([done, failure])),
    exited: handled(Promise.race([exited, failure])),
    go: () => worker.postMessage({ type: 'go' } satisfies EnvMainMessage),
  };
}

async function runEnvCase(
  spec: { layout: EnvLayout; payloadBytes: number; entriesPerCommit: number; round: number },
  params: StorageBenchParameters,
  work: WorkDir,
): Promise<EnvRunRow> {
  const { shardsPerWorker } = params.env;
  const workerCount = spec.layout === 'one-worker' ? 1 : params.env.workerCount;
  const caseDir = work.next(spec.layout);
  // One env per worker: NodeStore's log tail belongs to one NodeStore per LMDB environment.
  const dirs = Array.from({ length: workerCount }, (_, w) => join(caseDir, `core-${w}`));
  try {
    const workers = Array.from({ length: workerCount }, (_, w) =>
      startWorker({
        dir: dirs[w]!,
        nodeId: BENCH_NODE_ID,
        shardIds: shardIdsFrom(1 + w * shardsPerWorker, shardsPerWorker),
        entriesPerCommit: spec.entriesPerCommit,
        payloadBytes: spec.payloadBytes,
        seed: params.seed + w,
        warmup: params.env.warmup,
        run: params.env.run,
      }),
    );
    await Promise.all(workers.map((w) => w.ready));
    const cpuFrom = sampleCpu();
    for (const w of workers) w.go();
    const dones = await Promise.all(workers.map((w) => w.done));
    const cpuTo = sampleCpu();
    const spanMs = cpuTo.atMs - cpuFrom.atMs;
    await Promise.all(workers.map((w) => w.exited));
    const expected = dones.reduce((sum, d) => addChecksums(sum, d.expected), { entryCount: 0, lastEntryHashSum: 0 });
    const checksum = await reopenedChecksum(dirs);
    assertChecksum(checksum, expected, caseDir);
    const entryCount = dones.reduce((n, d) => n + d.entryCount, 0);
    const commitCount = dones.reduce((n, d) => n + d.commitCount, 0);
    return {
      name: `${spec.layout} p=${spec.payloadBytes}B e=${spec.entriesPerCommit}`,
      ...spec,
      workerCount,
      envCount: dirs.length,
      shardsPerWorker,
      spanMs,
      commitCount,
      entryCount,
      entriesPerSecond: perSecond(entryCount, spanMs),
      commitsPerSecond: perSecond(commitCount, spanMs),
      workerEntriesPerSecond: dones.map((d) => perSecond(d.entryCount, d.elapsedMs)),
      workerLatency: dones.map((d) => d.latency),
      cpu: cpuShare(cpuFrom, cpuTo),
      checksum,
    };
  } finally {
    rmSync(caseDir, { recursive: true, force: true });
  }
}

async function runEnvSection(params: StorageBenchParameters, work: WorkDir): Promise<{ runs: EnvRunRow[]; summary: EnvSummaryRow[] }> {
  const runs: EnvRunRow[] = [];
  const summary: EnvSummaryRow[] = [];
  for (const payloadBytes of params.env.payloadBytesList) {
    for (const entriesPerCommit of params.env.entriesPerCommitList) {
      const configRuns: EnvRunRow[] = [];
      for (let round = 0; round < params.env.roundCount; round++) {
        const order = round % 2 === 0 ? ENV_LAYOUTS : [...ENV_LAYOUTS].reverse();
        for (const layout of order) {
          const run = await runEnvCase({ layout, payloadBytes, entriesPerCommit, round }, params, work);
          configRuns.push(run);
          progress(`${run.name} round ${round + 1}`, `${fmt(run.entriesPerSecond)} entries/s`);
        }
      }
      runs.push(...configRuns);
      const rows = ENV_LAYOUTS.map((layout) => envSummaryRow(configRuns.filter((r) => r.layout === layout)));
      const oneWorker = rows.find((r) => r.layout === 'one-worker')!;
      for (const r of rows) r.ratioToOneWorker = r.entriesPerSecondMean / oneWorker.entriesPerSecondMean;
      summary.push(...rows);
    }
  }
  return { runs, summary };
}

function envSummaryRow(runs: EnvRunRow[]): EnvSummaryRow {
  const first = runs[0]!;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const latencies = runs.flatMap((r) => r.workerLatency);
  return {
    name: first.name,
    layout: first.layout,
    payloadBytes: first.payloadBytes,
    entriesPerCommit: first.entriesPerCommit,
    workerCount: first.workerCount,
    envCount: first.envCount,
    entriesPerSecondMean: mean(runs.map((r) => r.entriesPerSecond)),
    entriesPerSecondByRound: runs.map((r) => r.entriesPerSecond),
    commitsPerSecondMean: mean(runs.map((r) => r.commitsPerSecond)),
    latencyP50MsMean: mean(latencies.map((l) => l.p50Ms)),
    latencyP99MsMax: Math.max(...latencies.map((l) => l.p99Ms)),
    cpuPercentOfWallMean: mean(runs.map((r) => r.cpu.ownPercentOfWall)),
    othersBusyPercentMean: runs.some((r) => r.cpu.othersBusyPercent === undefined) ? undefined : mean(runs.map((r) => r.cpu.othersBusyPercent!)),
  };
}

function printEnv(summary: EnvSummaryRow[], runs: EnvRunRow[]): void {
  printTable(
    ['task', 'workers/envs', 'entries/s', 'by round', 'commits/s', 'p50 ms', 'p99 ms', '÷one-worker', 'CPU %', 'others %', 'checksum (entries/hash, last round)'],
    summary.map((r) => {
      const last = runs.filter((x) => x.name === r.name).at(-1)!;
      return [
        r.name,
        `${r.workerCount}/${r.envCount}`,
        fmt(r.entriesPerSecondMean),
        r.entriesPerSecondByRound.map((x) => fmt(x)).join(' / '),
        fmt(r.commitsPerSecondMean),
        fmt(r.latencyP50MsMean, 2),
        fmt(r.latencyP99MsMax, 2),
        ratio(r.ratioToOneWorker),
        fmt(r.cpuPercentOfWallMean),
        r.othersBusyPercentMean === undefined ? '-' : fmt(r.othersBusyPercentMean),
        `${last.checksum.entryCount}/${hex32(last.checksum.lastEntryHashSum)}`,
      ];
    }),
  );
  const perCore = summary.filter((r) => r.layout === 'env-per-core').map((r) => r.ratioToOneWorker!);
  if (perCore.length > 0) {
    const geometricMean = Math.exp(perCore.reduce((a, x) => a + Math.log(x), 0) / perCore.length);
    console.log(`env per core (2 workers) ÷ one worker, aggregate entries/s: geometric mean ${ratio(geometricMean)} (range ${ratio(Math.min(...perCore))}–${ratio(Math.max(...perCore))})`);
  }
}

// ---------------------------------------------------------------------------
// Running and reporting


interface SectionTiming {
  readonly section: Section;
  readonly elapsedMs: number;
  readonly loadAverageBefore: number[];
  readonly loadAverageAfter: number[];
  readonly cpu: CpuShare;
}

interface StorageReport {
  readonly parameters: StorageBenchParameters;
  readonly machine: { readonly gitCommit?: string };
  readonly persist?: PersistRow[];
  readonly snapshot?: SnapshotRow;
  readonly env?: { runs: EnvRunRow[]; summary: EnvSummaryRow[] };
}

/** The one number per task that --compare divides: entries/s, or MB/s for snapshots. */
function headlines(report: Pick<StorageReport, 'persist' | 'snapshot' | 'env'>): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of report.persist ?? []) out.set(`${r.name} (entries/s)`, r.entriesPerSecond);
  if (report.snapshot !== undefined) {
    out.set('snapshot-create (MB/s)', report.snapshot.create.mbPerSecond);
    out.set('snapshot-install (MB/s)', report.snapshot.install.mbPerSecond);
  }
  for (const r of report.env?.summary ?? []) out.set(`${r.name} (entries/s)`, r.entriesPerSecondMean);
  return out;
}

function printComparison(now: Pick<StorageReport, 'persist' | 'snapshot' | 'env' | 'parameters'>, basePath: string): void {
  const base = JSON.parse(readFileSync(basePath, 'utf8')) as StorageReport;
  console.log(`\ncompared with ${basePath} (commit ${base.machine?.gitCommit ?? 'unknown'}): now ÷ then`);
  if (base.parameters?.mode !== now.parameters.mode) console.log(`warning: that run was in ${base.parameters?.mode ?? 'unknown'} mode, this one in ${now.parameters.mode} mode; the ratios mean little`);
  const then = headlines(base);
  printTable(
    ['task', 'then', 'now', 'now÷then'],
    [...headlines(now)].map(([name, value]) => {
      const old = then.get(name);
      return [name, old === undefined ? '-' : fmt(old, 1), fmt(value, 1), old === undefined ? '-' : ratio(value / old)];
    }),
  );
}

function parseSections(text: string | undefined): Section[] {
  if (text === undefined) return [...SECTIONS];
  const names = text.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!(SECTIONS as readonly string[]).includes(n)) throw new Error(`unknown section "${n}"; expected some of ${SECTIONS.join(', ')}`);
  }
  return names as Section[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, compare: { type: 'string' }, section: { type: 'string' } } });
  const quick = values.quick === true || process.env.FLOTILLA_BENCH_QUICK === '1';
  const params = quick ? QUICK : FULL;
  const sections = parseSections(values.section);
  const machine = machineInfo();
  const loadAverageBefore = os.loadavg();
  const startedAt = new Date();
  const cpuAtStart = sampleCpu();
  const tmpRoot = mkdtempSync(join(os.tmpdir(), 'flotilla-storage-bench-'));
  const fileSystem = fileSystemOf(tmpRoot);
  const work = new WorkDir(tmpRoot);

  console.log(`storage bench (${params.mode}): ${machine.cpuCount} × ${machine.cpuModel}, Node ${machine.nodeVersion}, ${machine.platform}`);
  console.log(`temp dir ${tmpRoot} (${fileSystem ?? 'file system unknown'}); load average before: ${loadAverageText(loadAverageBefore)}; gc between tasks: ${machine.gcExposed ? 'yes' : 'no (run with --expose-gc)'}`);
  const p = params.persist;
  console.log(
    `persist: payload ${p.payloadBytesList.join('/')} B, ${p.entriesPerCommitList.join('/')} entries per commit, ${p.shardCounts.join('/')} shards; ` +
      `per task ${p.run.timeMs} ms and ≥${p.run.commitsMin} commits (≤${p.run.payloadBytesMax / MIB} MiB) after ${p.warmup.timeMs} ms / ≥${p.warmup.commitsMin} commits of warm-up`,
  );
  const e = params.env;
  console.log(
    `env: ${e.workerCount} worker threads × ${e.shardsPerWorker} shards, payload ${e.payloadBytesList.join('/')} B, ${e.entriesPerCommitList.join('/')} entries per commit per worker, ` +
      `${e.run.timeMs} ms per run, ${e.roundCount} round(s); snapshot: ${params.snapshot.rangeBytes / MIB} MiB range of ${params.snapshot.keyBytes} B keys + ${params.snapshot.valueBytes} B values`,
  );
  console.log('entries/s = entries durable (persist resolved / fsync returned) per second; ÷raw = over write+fsync of the same bytes per commit to a plain file; MB/s = 10^6 B/s of payload.');
  console.log('CPU % = this process, all threads, over wall time (100 = one core); others % = what the rest of the machine used, as a share of all cores.\n');

  const timings: SectionTiming[] = [];
  const timed = async <T>(section: Section, run: () => Promise<T>): Promise<T | undefined> => {
    if (!sections.includes(section)) return undefined;
    console.log(`${section}:`);
    const before = os.loadavg();
    const cpuFrom = sampleCpu();
    const result = await run();
    const cpuTo = sampleCpu();
    timings.push({ section, elapsedMs: cpuTo.atMs - cpuFrom.atMs, loadAverageBefore: before, loadAverageAfter: os.loadavg(), cpu: cpuShare(cpuFrom, cpuTo) });
    return result;
  };
  let persist: PersistRow[] | undefined;
  let snapshot: SnapshotRow | undefined;
  let env: { runs: EnvRunRow[]; summary: EnvSummaryRow[] } | undefined;
  try {
    persist = await timed('persist', () => runPersistSection(params, work));
    snapshot = await timed('snapshot', () => runSnapshotSection(params, work));
    env = await timed('env', () => runEnvSection(params, work));
  } finally {
    rmSync(tmpRoot, { recursive: true, force: true });
  }
  const loadAverageAfter = os.loadavg();
  const finishedAt = new Date();
  const cpu = cpuShare(cpuAtStart, sampleCpu());
  const wallMs = finishedAt.getTime() - startedAt.getTime();

  if (persist !== undefined) {
    console.log('\npersist: group commits through NodeStore.persist vs raw write+fsync');
    printPersist(persist);
  }
  if (snapshot !== undefined) {
    console.log('\nsnapshot: create and install one range (MB/s over key + value bytes)');
    printSnapshot(snapshot);
  }
  if (env !== undefined) {
    console.log(`\nenv layout: ${params.env.workerCount} worker threads persisting their own shards into one env each (per core), against one worker alone`);
    printEnv(env.summary, env.runs);
  }
  // The load average counts this bench's own threads waiting on the disk; "others" is the CPU the rest of the machine used.
  console.log(`\nload average after: ${loadAverageText(loadAverageAfter)}; took ${(wallMs / 1_000).toFixed(1)} s; ${cpuShareText(cpu)}`);
  for (const t of timings) {
    console.log(`  ${t.section}: ${(t.elapsedMs / 1_000).toFixed(1)} s, load average ${loadAverageText(t.loadAverageBefore)} → ${loadAverageText(t.loadAverageAfter)}; ${cpuShareText(t.cpu)}`);
  }
  if (params.mode === 'quick') console.log('quick mode: inputs too small for meaningful numbers; this run checks that the bench works and every store reads back what was acknowledged.');
  const results = { persist, snapshot, env };
  if (values.compare !== undefined) printComparison({ ...results, parameters: params }, values.compare);

  const report = {
    benchmark: 'storage',
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    command: commandLine(),
    machine: { ...machine, loadAverageBefore, loadAverageAfter, cpu, tmpDir: os.tmpdir(), fileSystem, sections: timings },
    parameters: params,
    ...results,
  };
  console.log(`wrote ${writeResults('storage', startedAt, report)}`);
}

await main();
