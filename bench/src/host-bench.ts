// End-to-end benchmarks of the per-node Host (@flotilla/shards): node
// processes (shards/test-support/node-child.ts: a Host with worker-thread
// cores and a TcpTransport) over TCP on 127.0.0.1, each on a fresh data dir
// under os.tmpdir(), driven over IPC from this process.
//
//   throughput  replicated durable writes/s and p50/p99 commit latency for
//               1, 8 and 64 shards × 16 B and 256 B values × coreCount 1 and 2.
//               The load runs inside every node process at once (the `load`
//               op), each node proposing to the shards it leads with a fixed
//               number in flight, so IPC is not measured. Baselines in the same
//               run: the same on one node with single-voter shards (÷1-node:
//               the cost of replication), and coreCount 1 (÷cores=1: what the
//               second worker core buys).
//   idle        CPU and memory of 3 nodes holding quiesced shards: one cluster
//               per core count, measured over an idle window with no shard
//               (liveness pings only), then grown to 1,000 and to 10,000
//               shards per node (created in batches, every batch elected and
//               quiesced before the next) and measured again at each size.
//               Memory per replica: the V8 heap in use (the node's main thread
//               plus its worker cores', via the `stats` op) and RSS, over the
//               0-shard window and over the previous size.
//   failover    3 nodes grown to each size of quiesced shards (one cluster per
//   + restart   core count): the node leading the most is SIGKILLed and the
//               survivors are polled (the `leaders` op: each Host's shard table)
//               until every shard it led has a leader on a survivor that both
//               name: when they saw it down, when the first, half, 90 % and all
//               of its shards were re-elected, the survivors' CPU over that
//               window and its busiest second, liveness flaps, other shards
//               that lost their leader. Then the node is started again on its
//               data dir (restart after kill -9), closed gracefully and started
//               again (restart after close): time to `ready` (every stored
//               replica opened, the Host started), to a stale read served by
//               it, to every replica of it knowing its leader, and to every
//               group quiesced again.
//
//   node dist/host-bench.js                          full run (about five minutes on 2 cores)
//   node dist/host-bench.js --quick                  tiny inputs, under a minute (CI, npm test)
//   ... --filter '3-node cores=2 s=64'               only matching cases (and their baselines)
//   ... --concurrency 64                             proposals in flight per loading node
//   ... --idle-shards 1000,10000 --creation-batch 1000  shards per node in the idle section (ascending sizes), and per createShards request
//   ... --failover-shards 1000,10000,100000 --failover-cores 1  sizes and core counts of the failover section
//   ... --cpu-prof-dir /tmp/prof                     every node process (and its worker cores) runs under --cpu-prof
//   ... --node-flags=--compact-on-every-full-gc      more flags for every node process (space-separated)
//   ... --compare results/host-<timestamp>.json      ratios against an earlier run (e.g. the base branch)
//
// After every measured load the bench waits until every replica of every
// shard applied the same index, and checks that the leaders took at least the
// acknowledged writes and that the shards' applied indexes grew by at least
// the entries those writes went into (a leader folds one turn's writes of a
// shard into one entry): that sum and a hash of the per-shard applied indexes
// are the checksum. Every node process is killed by
// pid in a finally (and on SIGINT/SIGTERM); the temp dir is removed.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { TICK_INTERVAL_MS_DEFAULT, type ShardStatus } from '@flotilla/shards';
import {
  TcpCluster,
  histogramCount,
  histogramQuantileMs,
  hexOf,
  killLeftoverNodes,
  mergeLatencyHistograms,
  sleep,
  waitUntil,
  type LeadersView,
  type LoadResult,
  type NodeChildStats,
} from '@flotilla/shards/test-support/node-cluster';
import { benchArgs, FlagError, flagsOrExit, positiveInt, positiveInts, type BenchUsage } from './flags.js';
import { commandLine, fileSystemOf, fmt, hex32, loadAverageText, machineInfo, printTable, progress, ratio, sampleCpu, writeResults, type CpuSample } from './report.js';

type Topology = '1-node' | '3-node';
const TOPOLOGIES: readonly Topology[] = ['1-node', '3-node'];

interface HostBenchParameters {
  readonly mode: 'full' | 'quick';
  /** The Host's default tick (elections after 10–20 ticks, liveness pings every 2). */
  readonly tickIntervalMs: number;
  readonly throughput: {
    readonly shardCounts: readonly number[];
    readonly valueBytesList: readonly number[];
    readonly coreCounts: readonly number[];
    /** Proposals in flight per loading node (a node that leads no shard does not load). */
    readonly concurrencyPerNode: number;
    /** Discarded load before every measured one, same shards and values. */
    readonly warmupMs: number;
    readonly runMs: number;
    /** A load also stops after this many proposals per node. */
    readonly countPerNodeMax: number;
  };
  readonly idle: {
    readonly nodeCount: number;
    /** Shards per node, ascending: one cluster per core count grows through them, with a window at 0 and after each. */
    readonly shardCounts: readonly number[];
    readonly coreCounts: readonly number[];
    /** Shards created per createShards request; each batch is elected and quiesced before the next. */
    readonly creationBatch: number;
    /** After every group quiesced (or, without shards, after start), before the window opens. */
    readonly settleMs: number;
    /**
     * And not before the node processes are this old: V8's memory reducer runs a
     * major GC some 8–12 s after start, which would land in a baseline's window.
     */
    readonly nodeAgeMinMs: number;
    readonly windowMs: number;
    /** Between the full GCs after a window and reading RSS. */
    readonly unmapSettleMs: number;
  };
  readonly failover: {
    readonly nodeCount: number;
    /** Shards per node, ascending: one cluster per core count grows through them; at each, a node is killed and restarted twice. */
    readonly shardCounts: readonly number[];
    readonly coreCounts: readonly number[];
    readonly creationBatch: number;
    /** After a size's shards quiesced, before the kill. */
    readonly settleMs: number;
    /** Between polls of the survivors' leader views (and of a restarted node's). */
    readonly pollIntervalMs: number;
    /** Give up waiting for re-election (or, after a restart, for every leader to be known) after this long: the rest is reported, not thrown. */
    readonly reelectTimeoutMs: number;
    /** Give up waiting for every group to quiesce again after this long. */
    readonly quiesceTimeoutMs: number;
    /** A restarted node must be ready within this (it opens every stored replica first). */
    readonly startTimeoutMs: number;
  };
}

// Full: 12 clusters × 2 payloads × (1 s warm-up + 5 s run) ≈ 2.5 min, idle ≈ 1.5 min (2 core counts × one cluster grown 0 → 1k → 10k shards, a window at each); ~4.5 min in all.
const FULL: HostBenchParameters = {
  mode: 'full',
  tickIntervalMs: TICK_INTERVAL_MS_DEFAULT,
  throughput: { shardCounts: [1, 8, 64], valueBytesList: [16, 256], coreCounts: [1, 2], concurrencyPerNode: 64, warmupMs: 1_000, runMs: 5_000, countPerNodeMax: 1_000_000 },
  idle: { nodeCount: 3, shardCounts: [1_000, 10_000], coreCounts: [1, 2], creationBatch: 1_000, settleMs: 3_000, nodeAgeMinMs: 15_000, windowMs: 10_000, unmapSettleMs: 2_000 },
  failover: { nodeCount: 3, shardCounts: [1_000, 10_000], coreCounts: [1], creationBatch: 1_000, settleMs: 3_000, pollIntervalMs: 250, reelectTimeoutMs: 300_000, quiesceTimeoutMs: 300_000, startTimeoutMs: 300_000 },
};

// Quick: every code path with tiny inputs, so CI keeps the bench from rotting.
const QUICK: HostBenchParameters = {
  mode: 'quick',
  tickIntervalMs: TICK_INTERVAL_MS_DEFAULT,
  throughput: { shardCounts: [1, 8], valueBytesList: [16, 256], coreCounts: [1, 2], concurrencyPerNode: 64, warmupMs: 200, runMs: 500, countPerNodeMax: 50_000 },
  idle: { nodeCount: 3, shardCounts: [100, 300], coreCounts: [2], creationBatch: 1_000, settleMs: 300, nodeAgeMinMs: 1_000, windowMs: 1_000, unmapSettleMs: 300 },
  failover: { nodeCount: 3, shardCounts: [30], coreCounts: [2], creationBatch: 1_000, settleMs: 300, pollIntervalMs: 100, reelectTimeoutMs: 30_000, quiesceTimeoutMs: 30_000, startTimeoutMs: 20_000 },
};

/** First elections of ≤ 64 shards take a round trip; with CPU starved by neighbours, seconds. */
const LEADERS_TIMEOUT_MS = 30_000;
/** One creation batch elected and quiesced: generous, since a whole batch's first elections compete for the CPU. */
const BATCH_CONVERGE_TIMEOUT_MS = 60_000;
/** After a load every replica applies what was committed within a few rounds. */
const REPLICAS_CONVERGE_TIMEOUT_MS = 15_000;
/** While waiting for every group to quiesce after a failover or a restart: each poll asks every core. */
const FAILOVER_QUIESCE_POLL_MS = 500;
/** A histogram percentile is within half a 4.4 % bucket of the exact one; checked where one node loaded alone. */
const HISTOGRAM_TOLERANCE = 0.05;

const perSecond = (count: number, ms: number): number => count / (ms / 1_000);
const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const cpuMicros = (s: NodeChildStats): number => s.cpuUsage.user + s.cpuUsage.system;

function fnvNumbers(values: readonly number[], hash = 0x811c9dc5): number {
  let h = hash;
  for (const v of values) {
    for (let shift = 0; shift < 32; shift += 8) {
      h ^= (v >>> shift) & 0xff;
      h = Math.imul(h, 0x01000193);
    }
  }
  return h >>> 0;
}

// ---------------------------------------------------------------------------
// Cases and the filter

interface ThroughputCase {
  readonly name: string;
  readonly topology: Topology;
  readonly coreCount: number;
  readonly shardCount: number;
  readonly valueBytes: number;
}

interface IdleCase {
  readonly name: string;
  readonly coreCount: number;
  readonly shardCount: number;
}

const throughputName = (c: Omit<ThroughputCase, 'name'>): string => `${c.topology} cores=${c.coreCount} s=${c.shardCount} v=${c.valueBytes}B`;
const idleName = (c: Omit<IdleCase, 'name'>, nodeCount: number): string => `idle ${nodeCount}-node cores=${c.coreCount} s=${c.shardCount}`;

function plan(params: HostBenchParameters, filter: readonly string[] | undefined): { throughput: ThroughputCase[]; idle: IdleCase[]; failover: FailoverCase[] } {
  const t = params.throughput;
  const throughput: ThroughputCase[] = [];
  for (const coreCount of t.coreCounts) {
    for (const shardCount of t.shardCounts) {
      for (const topology of TOPOLOGIES) {
        for (const valueBytes of t.valueBytesList) throughput.push({ name: throughputName({ topology, coreCount, shardCount, valueBytes }), topology, coreCount, shardCount, valueBytes });
      }
    }
  }
  const idle: IdleCase[] = [];
  for (const coreCount of params.idle.coreCounts) {
    for (const shardCount of [0, ...params.idle.shardCounts]) idle.push({ name: idleName({ coreCount, shardCount }, params.idle.nodeCount), coreCount, shardCount });
  }
  const failover: FailoverCase[] = [];
  for (const coreCount of params.failover.coreCounts) {
    for (const shardCount of params.failover.shardCounts) failover.push({ name: failoverName({ coreCount, shardCount }, params.failover.nodeCount), coreCount, shardCount });
  }
  if (filter === undefined) return { throughput, idle, failover };
  const matches = (name: string) => filter.some((f) => name.includes(f));
  // A filtered run keeps the baselines of what it selected, so every ratio still has a denominator.
  const keptT = throughput.filter((c) => matches(c.name));
  const isBaselineT = (c: ThroughputCase) =>
    keptT.some((k) => k.shardCount === c.shardCount && k.valueBytes === c.valueBytes && ((k.coreCount === c.coreCount && c.topology === '1-node') || (k.topology === c.topology && c.coreCount === t.coreCounts[0])));
  const keptI = idle.filter((c) => matches(c.name));
  return {
    throughput: throughput.filter((c) => keptT.includes(c) || isBaselineT(c)),
    idle: idle.filter((c) => keptI.includes(c) || (c.shardCount === 0 && keptI.some((k) => k.coreCount === c.coreCount))),
    failover: failover.filter((c) => matches(c.name)),
  };
}

// ---------------------------------------------------------------------------
// Machine-wide CPU next to the node processes' own

interface CpuWindow {
  /** Every node process (all threads) over wall time: 100 = one core. */
  readonly nodesPercentOfCore: number;
  /** Per node, same unit. */
  readonly perNodePercentOfCore: readonly number[];
  /** Every core's busy time as a share of all cores (from /proc/stat). */
  readonly machineBusyPercent: number | undefined;
  /** What neither the nodes nor this process used, as a share of all cores: the neighbours. */
  readonly othersBusyPercent: number | undefined;
}

function cpuWindow(from: { sample: CpuSample; stats: Map<number, NodeChildStats> }, to: { sample: CpuSample; stats: Map<number, NodeChildStats> }): CpuWindow {
  const wallMs = Math.max(1e-3, to.sample.atMs - from.sample.atMs);
  const perNodeMs = [...to.stats].map(([id, s]) => (cpuMicros(s) - cpuMicros(from.stats.get(id)!)) / 1_000);
  const perNodePercentOfCore = perNodeMs.map((ms) => (ms / wallMs) * 100);
  const nodesPercentOfCore = sum(perNodePercentOfCore);
  const a = from.sample.machine;
  const b = to.sample.machine;
  if (a === undefined || b === undefined || b.totalTicks === a.totalTicks) return { nodesPercentOfCore, perNodePercentOfCore, machineBusyPercent: undefined, othersBusyPercent: undefined };
  const machineBusyPercent = ((b.busyTicks - a.busyTicks) / (b.totalTicks - a.totalTicks)) * 100;
  const ownMs = (to.sample.own.user - from.sample.own.user + to.sample.own.system - from.sample.own.system) / 1_000;
  const oursPercentOfMachine = ((sum(perNodeMs) + ownMs) / wallMs / os.cpus().length) * 100;
  return { nodesPercentOfCore, perNodePercentOfCore, machineBusyPercent, othersBusyPercent: Math.max(0, machineBusyPercent - oursPercentOfMachine) };
}

async function sampleWindowEdge(cluster: TcpCluster): Promise<{ sample: CpuSample; stats: Map<number, NodeChildStats> }> {
  const stats = await cluster.stats();
  return { sample: sampleCpu(), stats };
}

// ---------------------------------------------------------------------------
// throughput

interface NodeLoadRow {
  readonly nodeId: number;
  readonly ledShardCount: number;
  readonly ops: number;
  readonly acked: number;
  readonly durationMs: number;
  /** This node's exact percentiles (node-child, nearest rank). */
  readonly latencyMs: LoadResult['latencyMs'];
  readonly errorsByCode: Readonly<Record<string, number>>;
}

interface ThroughputRow extends ThroughputCase {
  readonly nodeCount: number;
  readonly concurrencyPerNode: number;
  /** Shards each node led during the measured load (node 1 first). */
  readonly leadersPerNode: readonly number[];
  readonly loadingNodeCount: number;
  readonly inFlightTotal: number;
  readonly warmup: { readonly acked: number; readonly durationMs: number };
  readonly ops: number;
  readonly acked: number;
  readonly errors: number;
  readonly errorsByCode: Readonly<Record<string, number>>;
  /** The longest node's load, from its first proposal to its last answer. */
  readonly spanMs: number;
  readonly writesPerSecond: number;
  /** Merged over every loading node's histogram (nearest rank, ±2.2 %); max is exact. */
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly nodes: readonly NodeLoadRow[];
  readonly cpu: CpuWindow;
  readonly loadAverageBefore: readonly number[];
  readonly loadAverageAfter: readonly number[];
  /** Σ applied index over the shards (after every replica converged) grew by this much: ≥ the entries the writes went into. */
  readonly appliedDelta: number;
  readonly checksum: { readonly acked: number; readonly appliedHash: number };
  /** writesPerSecond ÷ the 1-node row of the same cores, shards and value size. */
  ratioTo1Node?: number;
  /** writesPerSecond ÷ the cores=1 row of the same topology, shards and value size. */
  ratioToCores1?: number;
}

/** Applied index per shard once every replica applied up to its commit and all replicas agree. */
async function convergedApplied(cluster: TcpCluster, shardIds: readonly number[]): Promise<Map<number, number>> {
  return waitUntil(
    'every replica of every shard applied the same, committed, index',
    async () => {
      const statuses = await cluster.statuses();
      const byNode = [...statuses.values()].map((list) => new Map(list.map((s) => [s.shardId, s] as const)));
      const applied = new Map<number, number>();
      for (const shardId of shardIds) {
        const replicas = byNode.map((m) => m.get(shardId));
        const first = replicas[0];
        if (first === undefined || replicas.some((s: ShardStatus | undefined) => s === undefined || s.applied !== s.commit || s.applied !== first.applied)) return undefined;
        applied.set(shardId, first.applied);
      }
      return applied;
    },
    { timeoutMs: REPLICAS_CONVERGE_TIMEOUT_MS, intervalMs: 20 },
  );
}

async function runLoads(cluster: TcpCluster, shardIds: readonly number[], args: { valueBytes: number; durationMs: number; countPerNodeMax: number; concurrency: number; tag: string }) {
  const leaders = await waitUntil('every shard has an agreed leader', () => cluster.agreedLeaders(shardIds), { timeoutMs: LEADERS_TIMEOUT_MS, intervalMs: 20 });
  const loads = await Promise.all(
    cluster.nodeIds.map(async (nodeId) => {
      const led = shardIds.filter((s) => leaders.get(s) === nodeId);
      if (led.length === 0) return undefined;
      const result = await cluster.node(nodeId).load({
        shardIds: led,
        count: args.countPerNodeMax,
        concurrency: args.concurrency,
        valueBytes: args.valueBytes,
        durationMsMax: args.durationMs,
        ackedAs: 'count',
        tag: `${args.tag}n${nodeId}`,
      });
      return { nodeId, led, result };
    }),
  );
  const leadersPerNode = cluster.nodeIds.map((id) => shardIds.filter((s) => leaders.get(s) === id).length);
  return { leadersPerNode, loads: loads.filter((l) => l !== undefined) };
}

async function runThroughputCluster(
  cases: readonly ThroughputCase[],
  params: HostBenchParameters,
  options: { dataDirParent: string; execArgv: readonly string[]; concurrency: number; runIndex: { n: number } },
): Promise<ThroughputRow[]> {
  const { topology, coreCount, shardCount } = cases[0]!;
  const nodeCount = topology === '1-node' ? 1 : 3;
  const shardIds = Array.from({ length: shardCount }, (_, i) => i + 1);
  const t = params.throughput;
  const rows: ThroughputRow[] = [];
  const cluster = await TcpCluster.start({ nodeCount, coreCount, tickIntervalMs: params.tickIntervalMs, dataDirParent: options.dataDirParent, execArgv: options.execArgv });
  try {
    await cluster.createShards(shardIds);
    for (const c of cases) {
      const tag = `r${options.runIndex.n++}`;
      const loadArgs = { valueBytes: c.valueBytes, countPerNodeMax: t.countPerNodeMax, concurrency: options.concurrency };
      const warmup = (await runLoads(cluster, shardIds, { ...loadArgs, durationMs: t.warmupMs, tag: `${tag}w` })).loads;
      const appliedBefore = await convergedApplied(cluster, shardIds);
      const loadAverageBefore = os.loadavg();
      const from = await sampleWindowEdge(cluster);
      const { loads, leadersPerNode } = await runLoads(cluster, shardIds, { ...loadArgs, durationMs: t.runMs, tag: `${tag}m` });
      const to = await sampleWindowEdge(cluster);
      const loadAverageAfter = os.loadavg();
      const appliedAfter = await convergedApplied(cluster, shardIds);

      const acked = sum(loads.map((l) => l.result.acked as number));
      const ops = sum(loads.map((l) => l.result.ops));
      const errorsByCode: Record<string, number> = {};
      for (const l of loads) for (const [code, n] of Object.entries(l.result.errorsByCode)) errorsByCode[code] = (errorsByCode[code] ?? 0) + n;
      const appliedDelta = sum(shardIds.map((s) => appliedAfter.get(s)! - appliedBefore.get(s)!));
      // Leaders fold the writes of one turn into one entry, so entries and writes are counted apart.
      const proposedDelta = (field: 'proposals' | 'proposalEntries') => sum([...to.stats.values()].flatMap((n) => n.cores.map((core) => core[field]))) - sum([...from.stats.values()].flatMap((n) => n.cores.map((core) => core[field])));
      const proposed = proposedDelta('proposals');
      const proposedEntries = proposedDelta('proposalEntries');
      if (proposed < acked) throw new Error(`${c.name}: ${acked} writes were acknowledged, but the leaders took only ${proposed}`);
      if (appliedDelta < proposedEntries) throw new Error(`${c.name}: the shards applied ${appliedDelta} entries during the run, but the leaders proposed ${proposedEntries} entries of writes`);
      const histogram = mergeLatencyHistograms(loads.map((l) => l.result.latencyHistogram));
      if (histogramCount(histogram) !== acked) throw new Error(`${c.name}: latency histograms hold ${histogramCount(histogram)} samples for ${acked} acknowledged writes`);
      const maxMs = Math.max(0, ...loads.map((l) => l.result.latencyMs.max));
      const latencyMs = { p50: histogramQuantileMs(histogram, 0.5, maxMs), p99: histogramQuantileMs(histogram, 0.99, maxMs), max: maxMs };
      if (loads.length === 1) checkHistogram(c.name, latencyMs, loads[0]!.result.latencyMs);
      const spanMs = Math.max(...loads.map((l) => l.result.durationMs));
      const row: ThroughputRow = {
        ...c,
        nodeCount,
        concurrencyPerNode: options.concurrency,
        leadersPerNode,
        loadingNodeCount: loads.length,
        inFlightTotal: loads.length * options.concurrency,
        warmup: { acked: sum(warmup.map((l) => l.result.acked as number)), durationMs: Math.max(...warmup.map((l) => l.result.durationMs)) },
        ops,
        acked,
        errors: ops - acked,
        errorsByCode,
        spanMs,
        writesPerSecond: perSecond(acked, spanMs),
        latencyMs,
        nodes: loads.map((l) => ({
          nodeId: l.nodeId,
          ledShardCount: l.led.length,
          ops: l.result.ops,
          acked: l.result.acked as number,
          durationMs: l.result.durationMs,
          latencyMs: l.result.latencyMs,
          errorsByCode: l.result.errorsByCode,
        })),
        cpu: cpuWindow(from, to),
        loadAverageBefore,
        loadAverageAfter,
        appliedDelta,
        checksum: { acked, appliedHash: fnvNumbers(shardIds.flatMap((s) => [s, appliedAfter.get(s)!])) },
      };
      rows.push(row);
      progress(
        c.name,
        `${fmt(row.writesPerSecond)} writes/s, p50 ${fmt(latencyMs.p50, 2)} ms, p99 ${fmt(latencyMs.p99, 2)} ms, nodes CPU ${fmt(row.cpu.nodesPercentOfCore)} %` +
          (row.errors > 0 ? `, errors ${JSON.stringify(errorsByCode)}` : ''),
      );
    }
  } catch (err) {
    const tails = [...cluster.nodes.values()].map((n) => `node ${n.nodeId} stderr:\n${n.stderr().slice(-2_000)}`).join('\n');
    throw new Error(`${String(err)}\n${tails}`);
  } finally {
    await cluster.close();
  }
  return rows;
}

/** Where one node loaded alone, the histogram's percentiles must match its exact ones to within a bucket. */
function checkHistogram(name: string, merged: { p50: number; p99: number }, exact: { p50: number; p99: number }): void {
  for (const q of ['p50', 'p99'] as const) {
    const tolerance = exact[q] * HISTOGRAM_TOLERANCE + 0.002;
    if (Math.abs(merged[q] - exact[q]) > tolerance) throw new Error(`${name}: histogram ${q} ${merged[q]} ms is not within ${HISTOGRAM_TOLERANCE * 100} % of the exact ${exact[q]} ms`);
  }
}

async function runThroughputSection(cases: readonly ThroughputCase[], params: HostBenchParameters, options: { dataDirParent: string; execArgv: readonly string[]; concurrency: number }): Promise<ThroughputRow[]> {
  const rows: ThroughputRow[] = [];
  const runIndex = { n: 0 };
  // One cluster per (cores, shards, topology), both value sizes on it; the 1-node baseline runs right before its 3-node row.
  const clusters = new Map<string, ThroughputCase[]>();
  for (const c of cases) {
    const key = `${c.coreCount}/${c.shardCount}/${c.topology}`;
    clusters.set(key, [...(clusters.get(key) ?? []), c]);
  }
  for (const group of clusters.values()) rows.push(...(await runThroughputCluster(group, params, { ...options, runIndex })));
  for (const r of rows) {
    const oneNode = rows.find((b) => b.topology === '1-node' && b.coreCount === r.coreCount && b.shardCount === r.shardCount && b.valueBytes === r.valueBytes);
    if (r.topology === '3-node' && oneNode !== undefined) r.ratioTo1Node = r.writesPerSecond / oneNode.writesPerSecond;
    const cores1 = rows.find((b) => b.coreCount === 1 && b.topology === r.topology && b.shardCount === r.shardCount && b.valueBytes === r.valueBytes);
    if (r.coreCount !== 1 && cores1 !== undefined) r.ratioToCores1 = r.writesPerSecond / cores1.writesPerSecond;
  }
  return rows;
}

function printThroughput(rows: readonly ThroughputRow[]): void {
  printTable(
    ['task', 'leaders/node', 'in flight', 'writes/s', 'p50 ms', 'p99 ms', 'max ms', '÷1-node', '÷cores=1', 'CPU %', 'others %', 'errors', 'checksum (acked/applied)'],
    rows.map((r) => [
      r.name,
      r.leadersPerNode.join('/'),
      fmt(r.inFlightTotal),
      fmt(r.writesPerSecond),
      fmt(r.latencyMs.p50, 2),
      fmt(r.latencyMs.p99, 2),
      fmt(r.latencyMs.max, 1),
      ratio(r.ratioTo1Node),
      ratio(r.ratioToCores1),
      fmt(r.cpu.nodesPercentOfCore),
      r.cpu.othersBusyPercent === undefined ? '-' : fmt(r.cpu.othersBusyPercent),
      fmt(r.errors),
      `${r.checksum.acked}/${hex32(r.checksum.appliedHash)}`,
    ]),
  );
}

// ---------------------------------------------------------------------------
// idle

interface IdleRow extends IdleCase {
  readonly nodeCount: number;
  /** From this size's first createShards (after the previous size's window) to every group on every node quiesced. */
  readonly convergeMs: number;
  readonly creationBatchCount: number;
  readonly windowMs: number;
  readonly cpu: CpuWindow;
  /** Mean over the nodes, % of one core. */
  readonly cpuPercentPerNode: number;
  /** Over the window, summed over the nodes: group ticks (0 when every group stayed quiesced), wakes, Raft messages sent, liveness pings. */
  readonly groupTicks: number;
  readonly wakes: number;
  readonly messagesSent: number;
  readonly pingsSent: number;
  readonly frames: number;
  readonly activeGroupCountAfter: number;
  /** After the window: unmapSettleMs after every thread of the node ran a full GC. */
  readonly rssBytesPerNode: readonly number[];
  /** V8 heap in use then (live objects), per node: its main thread's plus every worker core's. */
  readonly heapBytesPerNode: readonly number[];
  readonly mainHeapBytesPerNode: readonly number[];
  readonly loadAverageBefore: readonly number[];
  readonly loadAverageAfter: readonly number[];
  /** Replicas and the sum of their applied indexes at the end of the window: what the nodes hold. */
  readonly checksum: { readonly replicaCount: number; readonly appliedSum: number };
  /** cpuPercentPerNode ÷ the 0-shard row of the same cores. */
  ratioToNoShards?: number;
  /** Mean over the nodes of (this row − the 0-shard row of the same cluster) ÷ replicas per node. */
  heapBytesPerReplica?: number;
  rssBytesPerReplica?: number;
  /** The same against the previous size of the same cluster: what one more replica costs, fixed costs left out. */
  heapBytesPerReplicaAdded?: number;
  rssBytesPerReplicaAdded?: number;
}

/** Shards whose replicas do not all name the same leader, or whose leader's replica does not call itself leader. */
function shardsWithoutAgreedLeader(statuses: ReadonlyMap<number, readonly ShardStatus[]>): number[] {
  const byShard = new Map<number, { node: number; status: ShardStatus }[]>();
  for (const [node, list] of statuses) for (const status of list) byShard.set(status.shardId, [...(byShard.get(status.shardId) ?? []), { node, status }]);
  return [...byShard]
    .filter(([, replicas]) => {
      const leader = replicas[0]!.status.leader;
      return leader === 0 || replicas.some((r) => r.status.leader !== leader) || replicas.find((r) => r.node === leader)?.status.role !== 'leader';
    })
    .map(([shardId]) => shardId);
}

const activeGroups = (stats: Map<number, NodeChildStats>): number => sum([...stats.values()].map((s) => s.coreTotals['activeGroupCount'] ?? 0));
const totalOf = (stats: Map<number, NodeChildStats>, name: string): number => sum([...stats.values()].map((s) => s.coreTotals[name] ?? 0));
const heapOf = (s: NodeChildStats): number => s.memoryUsage.heapUsed + sum(s.cores.map((c) => c.heapUsedBytes));
const mean = (xs: readonly number[]): number => sum(xs) / xs.length;
/** A long creation says how far it got every this many batches (a 100,000-shard run takes many minutes). */
const CREATION_PROGRESS_EVERY_BATCHES = 10;

/**
 * Creates shards from + 1 .. to on every node in batches, each batch elected and quiesced on every
 * node before the next: how the idle and failover sections grow their clusters.
 */
async function growShards(cluster: TcpCluster, o: { from: number; to: number; batch: number; name: string }): Promise<{ convergeMs: number; batches: number }> {
  const started = performance.now();
  let created = o.from;
  let batches = 0;
  while (created < o.to) {
    const ids = Array.from({ length: Math.min(o.batch, o.to - created) }, (_, i) => created + 1 + i);
    const batchStarted = performance.now();
    await cluster.createShards(ids);
    batches++;
    // Every replica quiesced: each was told so by a leader that quiesced. Whether all agree on their
    // leaders is checked after the size's window: every shard's status is a big answer at 100,000
    // shards, and building it stalls a node's main thread (its pings) for a second or more.
    await waitUntil(`every group on every node quiesced (after shards ${ids[0]}–${ids.at(-1)})`, async () => (activeGroups(await cluster.stats()) === 0 ? true : undefined), {
      timeoutMs: BATCH_CONVERGE_TIMEOUT_MS,
      intervalMs: 100,
    });
    created += ids.length;
    if (batches % CREATION_PROGRESS_EVERY_BATCHES === 0 && created < o.to) {
      const stats = await cluster.stats();
      progress(o.name, `${fmt(created)} shards elected and quiesced after ${fmt((performance.now() - started) / 1_000, 1)} s (last batch ${fmt((performance.now() - batchStarted) / 1_000, 1)} s), heap ${[...stats.values()].map((s) => fmt(heapOf(s) / 1e6)).join('/')} MB/node`);
    }
  }
  const convergeMs = performance.now() - started;
  if (o.to > o.from) progress(o.name, `${fmt(o.to)} shards (${batches} more batch(es)) elected and quiesced in ${fmt(convergeMs / 1_000, 1)} s`);
  return { convergeMs, batches };
}

/**
 * One cluster per core count, grown through the sizes in ascending order: the
 * 0-shard window first, then each size's shards created (in batches, each
 * elected and quiesced before the next) and its window measured. A size's
 * memory is compared with the 0-shard window and with the size before it.
 */
async function runIdleCluster(cases: readonly IdleCase[], params: HostBenchParameters, options: { dataDirParent: string; execArgv: readonly string[] }): Promise<IdleRow[]> {
  const p = params.idle;
  const coreCount = cases[0]!.coreCount;
  const clusterStartedMs = performance.now();
  // --expose-gc: after each window every thread of every node collects its garbage before its heap is read.
  const execArgv = [...options.execArgv, '--expose-gc'];
  const cluster = await TcpCluster.start({ nodeCount: p.nodeCount, coreCount, tickIntervalMs: params.tickIntervalMs, dataDirParent: options.dataDirParent, execArgv });
  const rows: IdleRow[] = [];
  try {
    let created = 0;
    for (const c of cases) {
      const { convergeMs, batches } = await growShards(cluster, { from: created, to: c.shardCount, batch: p.creationBatch, name: c.name });
      created = c.shardCount;
      rows.push(await measureIdleWindow(cluster, c, { params, convergeMs, batches, clusterStartedMs }));
    }
  } catch (err) {
    const tails = [...cluster.nodes.values()].map((n) => `node ${n.nodeId} stderr:\n${n.stderr().slice(-2_000)}`).join('\n');
    throw new Error(`${String(err)}\n${tails}`);
  } finally {
    await cluster.close();
  }
  const base = rows.find((r) => r.shardCount === 0);
  rows.forEach((r, i) => {
    if (r.shardCount === 0) return;
    const perReplica = (bytes: (x: IdleRow) => readonly number[], from: IdleRow) => (mean(bytes(r)) - mean(bytes(from))) / (r.shardCount - from.shardCount);
    if (base !== undefined) {
      r.ratioToNoShards = r.cpuPercentPerNode / base.cpuPercentPerNode;
      r.heapBytesPerReplica = perReplica((x) => x.heapBytesPerNode, base);
      r.rssBytesPerReplica = perReplica((x) => x.rssBytesPerNode, base);
    }
    const previous = rows[i - 1];
    if (previous !== undefined && previous.shardCount > 0) {
      r.heapBytesPerReplicaAdded = perReplica((x) => x.heapBytesPerNode, previous);
      r.rssBytesPerReplicaAdded = perReplica((x) => x.rssBytesPerNode, previous);
    }
  });
  return rows;
}

async function measureIdleWindow(cluster: TcpCluster, c: IdleCase, o: { params: HostBenchParameters; convergeMs: number; batches: number; clusterStartedMs: number }): Promise<IdleRow> {
  const p = o.params.idle;
  await new Promise((r) => setTimeout(r, Math.max(p.settleMs, p.nodeAgeMinMs - (performance.now() - o.clusterStartedMs))));
  const loadAverageBefore = os.loadavg();
  const from = await sampleWindowEdge(cluster);
  await new Promise((r) => setTimeout(r, p.windowMs));
  const to = await sampleWindowEdge(cluster);
  const loadAverageAfter = os.loadavg();
  const cpu = cpuWindow(from, to);
  // After the window, so the collections' CPU is not in it; RSS a little later, once V8's background
  // unmapper returned the pages the collections freed (read at once, RSS was tens of MB higher).
  const collected = await cluster.stats({ collectGarbage: true });
  await new Promise((r) => setTimeout(r, p.unmapSettleMs));
  const memory = await cluster.stats();
  const statuses = await cluster.statuses();
  const replicas = [...statuses.values()].flat();
  const transportFrames = (s: Map<number, NodeChildStats>) => sum([...s.values()].map((x) => x.transport.batchesReceived));
  const row: IdleRow = {
    ...c,
    nodeCount: p.nodeCount,
    convergeMs: o.convergeMs,
    creationBatchCount: o.batches,
    windowMs: to.sample.atMs - from.sample.atMs,
    cpu,
    cpuPercentPerNode: cpu.nodesPercentOfCore / p.nodeCount,
    groupTicks: totalOf(to.stats, 'groupTicks') - totalOf(from.stats, 'groupTicks'),
    wakes: totalOf(to.stats, 'wakes') - totalOf(from.stats, 'wakes'),
    messagesSent: totalOf(to.stats, 'messagesSent') - totalOf(from.stats, 'messagesSent'),
    pingsSent: sum([...to.stats].map(([id, s]) => s.host.pingsSent - from.stats.get(id)!.host.pingsSent)),
    frames: transportFrames(to.stats) - transportFrames(from.stats),
    activeGroupCountAfter: activeGroups(to.stats),
    rssBytesPerNode: [...memory.values()].map((s) => s.memoryUsage.rss),
    heapBytesPerNode: [...collected.values()].map(heapOf),
    mainHeapBytesPerNode: [...collected.values()].map((s) => s.memoryUsage.heapUsed),
    loadAverageBefore,
    loadAverageAfter,
    checksum: { replicaCount: replicas.length, appliedSum: sum(replicas.map((s) => s.applied)) },
  };
  if (row.checksum.replicaCount !== c.shardCount * p.nodeCount) throw new Error(`${c.name}: the nodes hold ${row.checksum.replicaCount} replicas, expected ${c.shardCount * p.nodeCount}`);
  const disagreeing = shardsWithoutAgreedLeader(statuses);
  if (disagreeing.length > 0) throw new Error(`${c.name}: ${disagreeing.length} shard(s) without a leader every replica agrees on, e.g. ${disagreeing.slice(0, 5).join(', ')}`);
  progress(
    c.name,
    `${fmt(row.cpuPercentPerNode, 2)} % of a core per node (${cpu.perNodePercentOfCore.map((x) => fmt(x, 2)).join(' / ')}), group ticks ${row.groupTicks}, pings ${row.pingsSent}, ` +
      `heap ${row.heapBytesPerNode.map((b) => fmt(b / 1e6)).join('/')} MB, RSS ${row.rssBytesPerNode.map((b) => fmt(b / 1e6)).join('/')} MB per node`,
  );
  return row;
}

async function runIdleSection(cases: readonly IdleCase[], params: HostBenchParameters, options: { dataDirParent: string; execArgv: readonly string[] }): Promise<IdleRow[]> {
  const rows: IdleRow[] = [];
  for (const coreCount of params.idle.coreCounts) {
    const ofCores = cases.filter((c) => c.coreCount === coreCount).sort((a, b) => a.shardCount - b.shardCount);
    if (ofCores.length > 0) rows.push(...(await runIdleCluster(ofCores, params, options)));
  }
  return rows;
}

const kb = (bytes: number | undefined): string => (bytes === undefined ? '-' : fmt(bytes / 1_000, 1));

function printIdle(rows: readonly IdleRow[]): void {
  printTable(
    ['task', 'converged s', 'window s', 'CPU %/node', 'per node', '÷0 shards', 'group ticks', 'msgs sent', 'pings', 'frames in', 'heap MB/node', 'RSS MB/node', 'heap KB/replica', 'RSS KB/replica', 'heap KB/added', 'RSS KB/added', 'others %', 'checksum (replicas/applied)'],
    rows.map((r) => [
      r.name,
      r.shardCount === 0 ? '-' : fmt(r.convergeMs / 1_000, 1),
      fmt(r.windowMs / 1_000, 1),
      fmt(r.cpuPercentPerNode, 2),
      r.cpu.perNodePercentOfCore.map((x) => fmt(x, 2)).join(' / '),
      ratio(r.ratioToNoShards),
      fmt(r.groupTicks),
      fmt(r.messagesSent),
      fmt(r.pingsSent),
      fmt(r.frames),
      r.heapBytesPerNode.map((b) => fmt(b / 1e6)).join('/'),
      r.rssBytesPerNode.map((b) => fmt(b / 1e6)).join('/'),
      kb(r.heapBytesPerReplica),
      kb(r.rssBytesPerReplica),
      kb(r.heapBytesPerReplicaAdded),
      kb(r.rssBytesPerReplicaAdded),
      r.cpu.othersBusyPercent === undefined ? '-' : fmt(r.cpu.othersBusyPercent),
      `${r.checksum.replicaCount}/${r.checksum.appliedSum}`,
    ]),
  );
}

// ---------------------------------------------------------------------------
// failover and restart

interface FailoverCase {
  readonly name: string;
  readonly coreCount: number;
  readonly shardCount: number;
}

const failoverName = (c: Omit<FailoverCase, 'name'>, nodeCount: number): string => `failover ${nodeCount}-node cores=${c.coreCount} s=${c.shardCount}`;

/** Milliseconds after the kill until this share of the dead node's shards had a leader on a survivor (undefined: never within the timeout). */
interface ReelectedAt {
  readonly first: number | undefined;
  readonly half: number | undefined;
  readonly p90: number | undefined;
  readonly all: number | undefined;
}

interface FailoverRow extends FailoverCase {
  readonly nodeCount: number;
  /** Growing the cluster to this size (from the previous one). */
  readonly convergeMs: number;
  /** Shards each node led before the kill (every replica agreeing), node 1 first. */
  readonly leadersPerNode: readonly number[];
  readonly victim: number;
  readonly victimPid: number;
  readonly victimLedCount: number;
  /** Per survivor: when its liveness tracker declared the dead node down (undefined: not seen by a poll). */
  readonly downDetectedMs: readonly (number | undefined)[];
  readonly reelectedMs: ReelectedAt;
  /** Dead node's shards with no leader both survivors agree on when the wait ended. */
  readonly notReelected: number;
  /** Most shards at any poll that the dead node did not lead and that had lost their agreed, surviving leader. */
  readonly othersDisturbedMax: number;
  /** Polls in which a survivor did not count the other survivor live (liveness flapping under load). */
  readonly livenessFlaps: number;
  /** From the kill to every shard re-elected (or to the timeout). */
  readonly windowMs: number;
  /** Per survivor over the window, % of one core (every thread of the process). */
  readonly cpuPercentPerSurvivor: readonly number[];
  /** Per survivor, the busiest second of the window. */
  readonly cpuPeakPercentPerSurvivor: readonly number[];
  readonly cpuMsPerSurvivor: readonly number[];
  readonly machineBusyPercent: number | undefined;
  /** Over the window, summed over the survivors. */
  readonly wakes: number;
  readonly groupTicks: number;
  readonly messagesSent: number;
  /** From the kill until every group on the survivors quiesced again (undefined: not within the timeout). */
  readonly quiescedAgainMs: number | undefined;
  readonly activeGroupsAtEnd: number;
}

interface RestartRow extends FailoverCase {
  readonly nodeCount: number;
  readonly node: number;
  readonly how: 'after kill -9' | 'after close';
  /** The graceful close, from the request to the process's exit. */
  readonly closeMs: number | undefined;
  /** fork → `ready`: the process loaded, every core opened its store and every stored replica, the Host started and listens. */
  readonly readyMs: number;
  /** The process's CPU (every thread) from its start to just after `ready`. */
  readonly startCpuMs: number;
  /** fork → a stale read of shard 1 answered by this node's own replica. */
  readonly staleReadMs: number;
  /** fork → every replica on the node knows its leader (undefined: not within the timeout). */
  readonly leadersKnownMs: number | undefined;
  readonly leadersUnknownAtEnd: number;
  /** The restarted process's CPU from `ready` to leaders known, % of one core. */
  readonly cpuPercentUntilKnown: number;
  /** fork → every group on every node quiesced again. */
  readonly quiescedMs: number | undefined;
  /** After it all: shards whose replicas do not agree on a live leader (full statuses). */
  readonly shardsWithoutAgreedLeader: number;
}

const restartName = (c: Omit<FailoverCase, 'name'>, nodeCount: number, how: RestartRow['how']): string => `restart ${nodeCount}-node cores=${c.coreCount} s=${c.shardCount} ${how}`;

const cpuMsOf = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1_000;

/** Each running node's view of shards 1..count. */
async function leaderViews(cluster: TcpCluster, count: number, nodeIds: readonly number[] = [...cluster.nodes.keys()]): Promise<Map<number, LeadersView & { atMs: number }>> {
  const entries = await Promise.all(nodeIds.map(async (id) => [id, { ...(await cluster.node(id).leaders(1, count)), atMs: performance.now() }] as const));
  return new Map(entries);
}

/** The leader every given view names for the shard at index i, if they agree, it is not 0 and it is among `live`; else 0. */
function agreedLeaderAt(views: readonly LeadersView[], i: number, live: ReadonlySet<number>): number {
  const leader = views[0]!.leaders[i]!;
  if (leader <= 0 || !live.has(leader)) return 0;
  for (const v of views) if (v.leaders[i] !== leader) return 0;
  return leader;
}

/** The busiest `spanMs` (or more) between two samples of a cumulative CPU counter, % of one core. */
function peakPercent(samples: readonly { atMs: number; cpuMs: number }[], spanMs: number): number {
  let peak = 0;
  let j = 0;
  for (let i = 1; i < samples.length; i++) {
    while (j + 1 < i && samples[i]!.atMs - samples[j + 1]!.atMs >= spanMs) j++;
    const wall = samples[i]!.atMs - samples[j]!.atMs;
    if (wall >= spanMs) peak = Math.max(peak, ((samples[i]!.cpuMs - samples[j]!.cpuMs) / wall) * 100);
  }
  if (peak === 0 && samples.length > 1) {
    const a = samples[0]!;
    const b = samples.at(-1)!;
    peak = ((b.cpuMs - a.cpuMs) / Math.max(1e-3, b.atMs - a.atMs)) * 100;
  }
  return peak;
}

async function waitQuiesced(cluster: TcpCluster, timeoutMs: number, name: string): Promise<{ quiesced: boolean; active: number }> {
  let active = Number.NaN;
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    active = activeGroups(await cluster.stats());
    if (active === 0) return { quiesced: true, active };
    await sleep(FAILOVER_QUIESCE_POLL_MS);
  }
  // Which replicas still tick, for the report: a few of them, with what they think.
  const statuses = await cluster.statuses();
  const ticking = [...statuses].flatMap(([node, list]) => list.filter((x) => !x.quiesced).map((x) => ({ node, shard: x.shardId, role: x.role, leader: x.leader, term: x.term, commit: x.commit, last: x.lastIndex })));
  progress(name, `${ticking.length} replica(s) still not quiesced after ${timeoutMs / 1_000} s, e.g. ${JSON.stringify(ticking.slice(0, 6))}`);
  return { quiesced: false, active };
}

/**
 * SIGKILLs the node leading the most shards and watches the survivors re-elect
 * them: polls both survivors' leader views (the `leaders` op: the Host's shard
 * table, not the busy cores) until every shard it led has a leader on a
 * survivor that both name, sampling their CPU at every poll.
 */
async function measureFailover(cluster: TcpCluster, c: FailoverCase, o: { params: HostBenchParameters; convergeMs: number }): Promise<FailoverRow> {
  const f = o.params.failover;
  const n = c.shardCount;
  const all = new Set(cluster.nodeIds);
  const before = await leaderViews(cluster, n);
  const leaders = Array.from({ length: n }, (_, i) => agreedLeaderAt([...before.values()], i, all));
  const leadersPerNode = cluster.nodeIds.map((id) => leaders.filter((l) => l === id).length);
  const unagreed = leaders.filter((l) => l === 0).length;
  if (unagreed > 0) throw new Error(`${c.name}: ${unagreed} shard(s) without an agreed leader before the kill`);
  const victim = cluster.nodeIds[leadersPerNode.indexOf(Math.max(...leadersPerNode))]!;
  const survivors = cluster.nodeIds.filter((id) => id !== victim);
  const survivorSet = new Set(survivors);
  const victimLed = leaders.flatMap((l, i) => (l === victim ? [i] : []));
  const othersLed = leaders.flatMap((l, i) => (l !== victim ? [i] : []));
  const statsBefore = await cluster.stats();
  const victimPid = cluster.node(victim).pid;

  const machineFrom = sampleCpu();
  const killedAt = performance.now();
  await cluster.kill(victim);
  const cpuSamples = new Map<number, { atMs: number; cpuMs: number }[]>(survivors.map((id) => [id, [{ atMs: before.get(id)!.atMs, cpuMs: cpuMsOf(before.get(id)!.cpuUsage) }]]));
  const downDetectedMs = new Map<number, number>();
  const milestones: { first?: number; half?: number; p90?: number; all?: number } = {};
  let reelected = 0;
  let othersDisturbedMax = 0;
  let livenessFlaps = 0;
  let lastAt = killedAt;
  while (performance.now() - killedAt < f.reelectTimeoutMs) {
    await sleep(f.pollIntervalMs);
    const views = await leaderViews(cluster, n, survivors);
    const list = [...views.values()];
    lastAt = performance.now();
    const atMs = lastAt - killedAt;
    for (const [id, v] of views) {
      cpuSamples.get(id)!.push({ atMs: v.atMs, cpuMs: cpuMsOf(v.cpuUsage) });
      if (!downDetectedMs.has(id) && !v.livePeers.includes(victim)) downDetectedMs.set(id, v.atMs - killedAt);
      if (survivors.some((other) => other !== id && !v.livePeers.includes(other))) livenessFlaps++;
    }
    reelected = victimLed.filter((i) => agreedLeaderAt(list, i, survivorSet) !== 0).length;
    othersDisturbedMax = Math.max(othersDisturbedMax, othersLed.filter((i) => agreedLeaderAt(list, i, survivorSet) === 0).length);
    if (reelected > 0) milestones.first ??= atMs;
    if (reelected * 2 >= victimLed.length) milestones.half ??= atMs;
    if (reelected * 10 >= victimLed.length * 9) milestones.p90 ??= atMs;
    if (reelected === victimLed.length) {
      milestones.all = atMs;
      break;
    }
  }
  const machineTo = sampleCpu();
  const statsAfter = await cluster.stats();
  const windowMs = lastAt - killedAt;
  const delta = (name: string) => sum(survivors.map((id) => (statsAfter.get(id)!.coreTotals[name] ?? 0) - (statsBefore.get(id)!.coreTotals[name] ?? 0)));
  const cpuMsPerSurvivor = survivors.map((id) => {
    const s = cpuSamples.get(id)!;
    return s.at(-1)!.cpuMs - s[0]!.cpuMs;
  });
  const cpuPercentPerSurvivor = survivors.map((id, k) => {
    const s = cpuSamples.get(id)!;
    return (cpuMsPerSurvivor[k]! / Math.max(1e-3, s.at(-1)!.atMs - s[0]!.atMs)) * 100;
  });
  const machineBusyPercent =
    machineFrom.machine === undefined || machineTo.machine === undefined || machineTo.machine.totalTicks === machineFrom.machine.totalTicks
      ? undefined
      : ((machineTo.machine.busyTicks - machineFrom.machine.busyTicks) / (machineTo.machine.totalTicks - machineFrom.machine.totalTicks)) * 100;
  const quiet = await waitQuiesced(cluster, f.quiesceTimeoutMs, c.name);
  const row: FailoverRow = {
    ...c,
    nodeCount: cluster.nodeIds.length,
    convergeMs: o.convergeMs,
    leadersPerNode,
    victim,
    victimPid,
    victimLedCount: victimLed.length,
    downDetectedMs: survivors.map((id) => downDetectedMs.get(id)),
    reelectedMs: { first: milestones.first, half: milestones.half, p90: milestones.p90, all: milestones.all },
    notReelected: victimLed.length - reelected,
    othersDisturbedMax,
    livenessFlaps,
    windowMs,
    cpuPercentPerSurvivor,
    cpuPeakPercentPerSurvivor: survivors.map((id) => peakPercent(cpuSamples.get(id)!, 1_000)),
    cpuMsPerSurvivor,
    machineBusyPercent,
    wakes: delta('wakes'),
    groupTicks: delta('groupTicks'),
    messagesSent: delta('messagesSent'),
    quiescedAgainMs: quiet.quiesced ? performance.now() - killedAt : undefined,
    activeGroupsAtEnd: quiet.active,
  };
  progress(
    c.name,
    `killed node ${victim} (pid ${victimPid}, led ${fmt(victimLed.length)} of ${fmt(n)}; leaders ${leadersPerNode.join('/')}): ` +
      `down seen after ${row.downDetectedMs.map((x) => (x === undefined ? '-' : fmt(x / 1_000, 1))).join('/')} s, re-elected first/half/90 %/all after ${[row.reelectedMs.first, row.reelectedMs.half, row.reelectedMs.p90, row.reelectedMs.all].map(secondsText).join('/')} s` +
      `${row.notReelected > 0 ? ` (${fmt(row.notReelected)} NOT re-elected)` : ''}, survivors' CPU ${cpuPercentPerSurvivor.map((x) => fmt(x)).join('/')} % (peak ${row.cpuPeakPercentPerSurvivor.map((x) => fmt(x)).join('/')} %), ` +
      `wakes ${fmt(row.wakes)}, quiesced again after ${secondsText(row.quiescedAgainMs)} s`,
  );
  return row;
}

const secondsText = (ms: number | undefined): string => (ms === undefined ? '-' : fmt(ms / 1_000, 1));

/**
 * Starts a stopped node again on its data dir and times it: to `ready` (the
 * Host started: every stored replica opened), to a stale read served by its
 * own replica, to every replica knowing its leader (a restart leaves them
 * dormant; each campaigns once, a few per tick, which wakes the live leader),
 * and to every group in the cluster quiesced again.
 */
async function measureRestart(cluster: TcpCluster, c: FailoverCase, node: number, how: RestartRow['how'], o: { params: HostBenchParameters; closeMs: number | undefined }): Promise<RestartRow> {
  const f = o.params.failover;
  const n = c.shardCount;
  const name = restartName(c, cluster.nodeIds.length, how);
  const startedAt = performance.now();
  const proc = await cluster.restart(node, { startTimeoutMs: f.startTimeoutMs });
  const readyMs = performance.now() - startedAt;
  const first = await proc.leaders(1, n);
  // A key of shard 1 under node-child's default bounds (`s` + the id in 6 digits + `/`); absent, so null.
  await proc.request({ op: 'get', shardId: 1, key: hexOf('s000001/cold-start'), consistency: 'stale' });
  const staleReadMs = performance.now() - startedAt;
  let view = first;
  let leadersKnownMs: number | undefined;
  const knownDeadline = performance.now() + f.reelectTimeoutMs;
  for (;;) {
    if (view.leaders.length !== n || view.leaders.includes(-1)) throw new Error(`${name}: node ${node} holds ${view.leaders.filter((l) => l !== -1).length} of ${n} replicas after restart`);
    if (!view.leaders.includes(0)) {
      leadersKnownMs = performance.now() - startedAt;
      break;
    }
    if (performance.now() > knownDeadline) break;
    await sleep(f.pollIntervalMs);
    view = await proc.leaders(1, n);
  }
  const cpuPercentUntilKnown = ((cpuMsOf(view.cpuUsage) - cpuMsOf(first.cpuUsage)) / Math.max(1, performance.now() - startedAt - readyMs)) * 100;
  const quiet = await waitQuiesced(cluster, f.quiesceTimeoutMs, name);
  const quiescedMs = quiet.quiesced ? performance.now() - startedAt : undefined;
  const statuses = await cluster.statuses();
  const row: RestartRow = {
    ...c,
    name,
    nodeCount: cluster.nodeIds.length,
    node,
    how,
    closeMs: o.closeMs,
    readyMs,
    startCpuMs: cpuMsOf(first.cpuUsage),
    staleReadMs,
    leadersKnownMs,
    leadersUnknownAtEnd: view.leaders.filter((l) => l === 0).length,
    cpuPercentUntilKnown,
    quiescedMs,
    shardsWithoutAgreedLeader: shardsWithoutAgreedLeader(statuses).length,
  };
  progress(
    name,
    `${o.closeMs === undefined ? '' : `closed in ${secondsText(o.closeMs)} s; `}ready after ${secondsText(readyMs)} s (CPU ${fmt(row.startCpuMs)} ms), stale read ${secondsText(staleReadMs)} s, ` +
      `every leader known ${secondsText(leadersKnownMs)} s (CPU ${fmt(cpuPercentUntilKnown)} %), all quiesced ${secondsText(quiescedMs)} s` +
      `${row.shardsWithoutAgreedLeader > 0 ? `, ${row.shardsWithoutAgreedLeader} shard(s) WITHOUT an agreed leader` : ''}`,
  );
  return row;
}

/**
 * One cluster per core count, grown through the sizes: at each, the node
 * leading the most shards is killed (failover), started again (restart after
 * kill -9), then closed gracefully and started again (restart after close), so
 * the next size grows on a whole cluster again.
 */
async function runFailoverCluster(cases: readonly FailoverCase[], params: HostBenchParameters, options: { dataDirParent: string; execArgv: readonly string[] }): Promise<{ failover: FailoverRow[]; restart: RestartRow[] }> {
  const f = params.failover;
  const coreCount = cases[0]!.coreCount;
  const cluster = await TcpCluster.start({ nodeCount: f.nodeCount, coreCount, tickIntervalMs: params.tickIntervalMs, dataDirParent: options.dataDirParent, execArgv: options.execArgv });
  const failover: FailoverRow[] = [];
  const restart: RestartRow[] = [];
  try {
    let created = 0;
    for (const c of cases) {
      const { convergeMs } = await growShards(cluster, { from: created, to: c.shardCount, batch: f.creationBatch, name: c.name });
      created = c.shardCount;
      await sleep(f.settleMs);
      const row = await measureFailover(cluster, c, { params, convergeMs });
      failover.push(row);
      restart.push(await measureRestart(cluster, c, row.victim, 'after kill -9', { params, closeMs: undefined }));
      const closeStarted = performance.now();
      const proc = cluster.node(row.victim);
      cluster.nodes.delete(row.victim);
      await proc.close();
      const exit = await proc.exited;
      if (exit.code !== 0) throw new Error(`${c.name}: node ${row.victim} did not close gracefully (code ${exit.code}, signal ${exit.signal})`);
      restart.push(await measureRestart(cluster, c, row.victim, 'after close', { params, closeMs: performance.now() - closeStarted }));
    }
  } catch (err) {
    const tails = [...cluster.nodes.values()].map((x) => `node ${x.nodeId} stderr:\n${x.stderr().slice(-2_000)}`).join('\n');
    throw new Error(`${String(err)}\n${tails}`);
  } finally {
    await cluster.close();
  }
  return { failover, restart };
}

async function runFailoverSection(cases: readonly FailoverCase[], params: HostBenchParameters, options: { dataDirParent: string; execArgv: readonly string[] }): Promise<{ failover: FailoverRow[]; restart: RestartRow[] }> {
  const out = { failover: [] as FailoverRow[], restart: [] as RestartRow[] };
  for (const coreCount of params.failover.coreCounts) {
    const ofCores = cases.filter((c) => c.coreCount === coreCount).sort((a, b) => a.shardCount - b.shardCount);
    if (ofCores.length === 0) continue;
    const r = await runFailoverCluster(ofCores, params, options);
    out.failover.push(...r.failover);
    out.restart.push(...r.restart);
  }
  return out;
}

function printFailover(rows: readonly FailoverRow[]): void {
  printTable(
    ['task', 'leaders/node', 'killed', 'its leaders', 'down seen s', 'first s', 'half s', '90 % s', 'all s', 'not re-elected', 'others lost', 'flaps', 'CPU %/survivor', 'peak 1 s %', 'machine %', 'wakes', 'group ticks', 'msgs sent', 'quiet again s'],
    rows.map((r) => [
      r.name,
      r.leadersPerNode.join('/'),
      String(r.victim),
      fmt(r.victimLedCount),
      r.downDetectedMs.map(secondsText).join('/'),
      secondsText(r.reelectedMs.first),
      secondsText(r.reelectedMs.half),
      secondsText(r.reelectedMs.p90),
      secondsText(r.reelectedMs.all),
      fmt(r.notReelected),
      fmt(r.othersDisturbedMax),
      fmt(r.livenessFlaps),
      r.cpuPercentPerSurvivor.map((x) => fmt(x)).join(' / '),
      r.cpuPeakPercentPerSurvivor.map((x) => fmt(x)).join(' / '),
      r.machineBusyPercent === undefined ? '-' : fmt(r.machineBusyPercent),
      fmt(r.wakes),
      fmt(r.groupTicks),
      fmt(r.messagesSent),
      secondsText(r.quiescedAgainMs),
    ]),
  );
}

function printRestart(rows: readonly RestartRow[]): void {
  printTable(
    ['task', 'node', 'close s', 'ready s', 'start CPU ms', 'stale read s', 'leaders known s', 'unknown at end', 'CPU % until known', 'all quiet s', 'no agreed leader'],
    rows.map((r) => [
      r.name,
      String(r.node),
      secondsText(r.closeMs),
      secondsText(r.readyMs),
      fmt(r.startCpuMs),
      secondsText(r.staleReadMs),
      secondsText(r.leadersKnownMs),
      fmt(r.leadersUnknownAtEnd),
      fmt(r.cpuPercentUntilKnown),
      secondsText(r.quiescedMs),
      fmt(r.shardsWithoutAgreedLeader),
    ]),
  );
}

// ---------------------------------------------------------------------------
// Running and reporting


interface HostReport {
  readonly parameters: HostBenchParameters;
  readonly machine?: { readonly gitCommit?: string };
  readonly throughput?: readonly ThroughputRow[];
  readonly idle?: readonly IdleRow[];
  readonly failover?: readonly FailoverRow[];
  readonly restart?: readonly RestartRow[];
}

/** The one number per row that --compare divides: writes/s, idle CPU % per node, seconds to re-elect or to start. */
function headlines(report: Pick<HostReport, 'throughput' | 'idle' | 'failover' | 'restart'>): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of report.throughput ?? []) out.set(`${r.name} (writes/s)`, r.writesPerSecond);
  for (const r of report.idle ?? []) out.set(`${r.name} (CPU %/node)`, r.cpuPercentPerNode);
  for (const r of report.failover ?? []) if (r.reelectedMs.all !== undefined) out.set(`${r.name} (s to re-elect all)`, r.reelectedMs.all / 1_000);
  for (const r of report.restart ?? []) out.set(`${r.name} (s to ready)`, r.readyMs / 1_000);
  return out;
}

function printComparison(now: HostReport, basePath: string): void {
  const base = JSON.parse(readFileSync(basePath, 'utf8')) as HostReport;
  console.log(`\ncompared with ${basePath} (commit ${base.machine?.gitCommit ?? 'unknown'}): now ÷ then`);
  if (base.parameters?.mode !== now.parameters.mode) console.log(`warning: that run was in ${base.parameters?.mode ?? 'unknown'} mode, this one in ${now.parameters.mode} mode; the ratios mean little`);
  const then = headlines(base);
  printTable(
    ['row', 'then', 'now', 'now÷then'],
    [...headlines(now)].map(([name, value]) => {
      const old = then.get(name);
      return [name, old === undefined ? '-' : fmt(old, 2), fmt(value, 2), old === undefined ? '-' : ratio(value / old)];
    }),
  );
}

const USAGE: BenchUsage = {
  name: 'host-bench',
  text: `host-bench: the per-node Host end to end — replicated write throughput, and the CPU and memory of
quiesced shards (bench/README.md explains the tables). Writes JSON to bench/results/.

  --quick                     CI: tiny inputs, under a minute
  --filter <list>             only cases whose name contains one of these (their baselines kept)
  --concurrency <n>           proposals in flight per loading node (default 64)
  --idle-shards <list>        shards per node the idle section grows through, e.g. 1000,10000,100000
                              (default 1000,10000; quick: 100,300)
  --creation-batch <n>        shards per createShards request (default 1000)
  --failover-shards <list>    shards per node the failover section grows through; at each size the
                              node leading most is killed, restarted, closed and restarted (default:
                              the idle sizes; quick: 30)
  --failover-cores <list>     core counts of the failover section, one cluster each (default 1; quick: 2)
  --cpu-prof-dir <dir>        every node process (and its worker cores) runs under --cpu-prof
  --node-flags='<flags>'      more V8/Node flags for every node process, space-separated (note the =),
                              e.g. --node-flags=--compact-on-every-full-gc (the idle section's RSS
                              without old-space fragmentation) or --node-flags=--max-semi-space-size=1
  --compare <file>            ratios against an earlier run's results JSON
  -h, --help                  this text`,
};

async function main(): Promise<void> {
  const { values } = benchArgs(USAGE, {
    options: {
      quick: { type: 'boolean' },
      filter: { type: 'string' },
      concurrency: { type: 'string' },
      'idle-shards': { type: 'string' },
      'creation-batch': { type: 'string' },
      'failover-shards': { type: 'string' },
      'failover-cores': { type: 'string' },
      'cpu-prof-dir': { type: 'string' },
      'node-flags': { type: 'string' },
      compare: { type: 'string' },
    },
  });
  const quick = values.quick === true || process.env.FLOTILLA_BENCH_QUICK === '1';
  const base = quick ? QUICK : FULL;
  const { params, filter, cases, nodeFlags } = flagsOrExit(USAGE, () => {
    const concurrency = values.concurrency === undefined ? base.throughput.concurrencyPerNode : positiveInt(values.concurrency, '--concurrency');
    // Ascending, each once: the idle and failover clusters grow through them.
    const sizes = (list: string, flag: string) => [...new Set(positiveInts(list, flag))].sort((a, b) => a - b);
    const idleShardCounts = values['idle-shards'] === undefined ? base.idle.shardCounts : sizes(values['idle-shards'], '--idle-shards');
    const creationBatch = values['creation-batch'] === undefined ? base.idle.creationBatch : positiveInt(values['creation-batch'], '--creation-batch');
    const failoverShardCounts =
      values['failover-shards'] !== undefined ? sizes(values['failover-shards'], '--failover-shards') : quick || values['idle-shards'] === undefined ? base.failover.shardCounts : idleShardCounts;
    // node-child's shard ids have 6 digits (its default key bounds).
    for (const n of [...idleShardCounts, ...failoverShardCounts]) if (n > 999_999) throw new FlagError(`shards per node are at most 999999, got ${n}`);
    const params: HostBenchParameters = {
      ...base,
      throughput: { ...base.throughput, concurrencyPerNode: concurrency },
      idle: { ...base.idle, shardCounts: idleShardCounts, creationBatch },
      failover: {
        ...base.failover,
        shardCounts: failoverShardCounts,
        coreCounts: values['failover-cores'] === undefined ? base.failover.coreCounts : [...new Set(positiveInts(values['failover-cores'], '--failover-cores'))],
        creationBatch,
      },
    };
    const filter = values.filter?.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const cases = plan(params, filter);
    if (cases.throughput.length === 0 && cases.idle.length === 0 && cases.failover.length === 0) throw new FlagError(`--filter ${JSON.stringify(values.filter)} matches no case`);
    const nodeFlags = (values['node-flags'] ?? '').split(' ').filter((f) => f !== '');
    for (const f of nodeFlags) if (!/^--[a-z0-9-]+(=[A-Za-z0-9._/-]+)?$/.test(f)) throw new FlagError(`--node-flags takes flags like --name or --name=value, got ${JSON.stringify(f)}`);
    return { params, filter, cases, nodeFlags };
  });
  const concurrency = params.throughput.concurrencyPerNode;
  // Explicit, so the node processes never inherit this process's own flags (a --cpu-prof here would profile every child too).
  const execArgv: string[] = [...nodeFlags];
  if (values['cpu-prof-dir'] !== undefined) {
    const dir = resolve(values['cpu-prof-dir']);
    mkdirSync(dir, { recursive: true });
    execArgv.push('--cpu-prof', '--cpu-prof-dir', dir);
  }

  const machine = machineInfo();
  const loadAverageBefore = os.loadavg();
  const startedAt = new Date();
  const cpuAtStart = sampleCpu();
  const tmpRoot = mkdtempSync(join(os.tmpdir(), 'flotilla-host-bench-'));
  const fileSystem = fileSystemOf(tmpRoot);
  // Ctrl-C must not leave node processes behind: kill them by pid, remove the data, then exit.
  const onSignal = (signal: NodeJS.Signals) => {
    const killed = killLeftoverNodes();
    rmSync(tmpRoot, { recursive: true, force: true });
    console.error(`\n${signal}: killed ${killed} node process(es), removed ${tmpRoot}`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const t = params.throughput;
  const idle = params.idle;
  console.log(`host bench (${params.mode}): ${machine.cpuCount} × ${machine.cpuModel}, Node ${machine.nodeVersion}, ${machine.platform}`);
  console.log(`temp dir ${tmpRoot} (${fileSystem ?? 'file system unknown'}); load average before: ${loadAverageText(loadAverageBefore)}; tick ${params.tickIntervalMs} ms${execArgv.length === 0 ? '' : `; node processes run with ${execArgv.join(' ')}`}`);
  console.log(
    `throughput: ${t.shardCounts.join('/')} shards × ${t.valueBytesList.join('/')} B values × cores ${t.coreCounts.join('/')}, 3 nodes and 1 node; ` +
      `${t.concurrencyPerNode} in flight per loading node; ${t.runMs} ms (≤ ${fmt(t.countPerNodeMax)} proposals per node) after a discarded ${t.warmupMs} ms warm-up`,
  );
  console.log(
    `idle: ${idle.nodeCount} nodes × 0, then ${idle.shardCounts.map((n) => fmt(n)).join(', then ')} shards in one cluster per core count (batches of ${fmt(idle.creationBatch)}, each elected and quiesced), cores ${idle.coreCounts.join('/')}; ` +
      `${idle.windowMs} ms window after ${idle.settleMs} ms settling, nodes at least ${idle.nodeAgeMinMs} ms old`,
  );
  const fo = params.failover;
  console.log(
    `failover: ${fo.nodeCount} nodes grown to ${fo.shardCounts.map((n) => fmt(n)).join(', then ')} shards per node, cores ${fo.coreCounts.join('/')}; at each size the node leading most is killed (kill -9), ` +
      `restarted, closed and restarted; polls every ${fo.pollIntervalMs} ms, re-election waited for ≤ ${fo.reelectTimeoutMs / 1_000} s`,
  );
  if (filter !== undefined) console.log(`filter ${JSON.stringify(filter)}: ${cases.throughput.length} throughput, ${cases.idle.length} idle and ${cases.failover.length} failover case(s), baselines included`);
  console.log('writes/s = acknowledged (committed, applied, durable on a quorum) puts per second; CPU % = every node process, all threads, over wall time (100 = one core); others % = the rest of the machine, as a share of all cores.\n');

  const sections: { name: string; elapsedMs: number; loadAverageBefore: number[]; loadAverageAfter: number[] }[] = [];
  const timed = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    console.log(`${name}:`);
    const before = os.loadavg();
    const startMs = performance.now();
    const result = await run();
    sections.push({ name, elapsedMs: performance.now() - startMs, loadAverageBefore: before, loadAverageAfter: os.loadavg() });
    return result;
  };
  let throughput: ThroughputRow[] | undefined;
  let idleRows: IdleRow[] | undefined;
  let failoverRows: { failover: FailoverRow[]; restart: RestartRow[] } | undefined;
  try {
    const options = { dataDirParent: tmpRoot, execArgv };
    if (cases.throughput.length > 0) throughput = await timed('throughput', () => runThroughputSection(cases.throughput, params, { ...options, concurrency }));
    if (cases.idle.length > 0) idleRows = await timed('idle', () => runIdleSection(cases.idle, params, options));
    if (cases.failover.length > 0) failoverRows = await timed('failover', () => runFailoverSection(cases.failover, params, options));
  } finally {
    const killed = killLeftoverNodes();
    if (killed > 0) console.error(`killed ${killed} leftover node process(es)`);
    rmSync(tmpRoot, { recursive: true, force: true });
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  const loadAverageAfter = os.loadavg();
  const finishedAt = new Date();
  const cpuAtEnd = sampleCpu();
  const wallMs = finishedAt.getTime() - startedAt.getTime();

  if (throughput !== undefined) {
    console.log(`\nthroughput: durable replicated puts, load inside every node process (${t.concurrencyPerNode} in flight per node that leads a shard)`);
    printThroughput(throughput);
  }
  if (idleRows !== undefined) {
    console.log(`\nidle: CPU of ${idle.nodeCount} node processes holding quiesced shards, over ${idle.windowMs} ms (100 = one core); heap = V8 heap in use after a full GC, main thread + worker cores; per replica: over the 0-shard row, added: over the previous size`);
    printIdle(idleRows);
  }
  if (failoverRows !== undefined) {
    console.log(
      `\nfailover: the node leading most killed (SIGKILL); seconds after the kill until the survivors declared it down, and until the first, half, 90 % and all of its shards had a leader on a survivor that both survivors name; ` +
        `others lost: most shards it did not lead without an agreed leader at one poll; flaps: polls in which a survivor did not count the other live; CPU % of one core per survivor process over the re-election, and its busiest second`,
    );
    printFailover(failoverRows.failover);
    console.log(
      `\nrestart: the same node started again on its data dir, seconds from fork: ready = every stored replica opened and the Host started; stale read = answered by its own replica; ` +
        `leaders known = every replica of it knows its leader (dormant replicas campaign once, a few per tick); all quiet = every group of every node quiesced again`,
    );
    printRestart(failoverRows.restart);
  }
  const ownMs = (cpuAtEnd.own.user - cpuAtStart.own.user + cpuAtEnd.own.system - cpuAtStart.own.system) / 1_000;
  console.log(`\nload average after: ${loadAverageText(loadAverageAfter)}; took ${(wallMs / 1_000).toFixed(1)} s; this process ${((ownMs / wallMs) * 100).toFixed(0)} % of one core`);
  for (const s of sections) console.log(`  ${s.name}: ${(s.elapsedMs / 1_000).toFixed(1)} s, load average ${loadAverageText(s.loadAverageBefore)} → ${loadAverageText(s.loadAverageAfter)}`);
  if (params.mode === 'quick') console.log('quick mode: inputs too small for meaningful numbers; this run checks that the bench works and every acknowledged write was applied on every replica.');
  const results = { throughput, idle: idleRows, failover: failoverRows?.failover, restart: failoverRows?.restart };
  if (values.compare !== undefined) printComparison({ ...results, parameters: params }, values.compare);

  const report = {
    benchmark: 'host',
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    command: commandLine(),
    machine: { ...machine, loadAverageBefore, loadAverageAfter, tmpDir: os.tmpdir(), fileSystem, sections, benchProcessCpuPercentOfCore: (ownMs / wallMs) * 100 },
    parameters: params,
    filter,
    nodeExecArgv: execArgv,
    ...results,
  };
  console.log(`wrote ${writeResults('host', startedAt, report)}`);
}

await main();
