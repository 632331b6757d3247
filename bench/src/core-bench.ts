// Micro benchmarks of the consensus core (tinybench): proposals committed and
// messages stepped per second through 3-replica groups of RawNodes driven by
// one synchronous in-memory loop, for several payload sizes and group counts,
// next to two baselines measured in the same run:
//   - copy: the same payloads copied into three per-replica buffers and
//     applied from there by the same apply function, with no Raft (the floor);
//   - raft-1-voter: single-voter groups, so Raft without replication.
//
//   node --expose-gc dist/core-bench.js            full run (about a minute)
//   node --expose-gc dist/core-bench.js --quick    tiny inputs, seconds (CI, npm test)
//   ... --compare results/core-<timestamp>.json    ratios against an earlier run (e.g. the base branch)
//   ... --filter 'g=1024 p=16B'                    only matching tasks (and their baselines), e.g. under --cpu-prof
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SeededRng, assert } from '@flotilla/core';
import { Bench, type Task } from 'tinybench';
import { Cluster, applyPayload, emptyChecksum, type ApplyChecksum } from './cluster.js';
import { commandLine, finishRun, fmt, gc, hex32, printTable, ratio, startRun, writeResults } from './report.js';

type TaskKind = 'copy' | 'raft-1-voter' | 'raft-3-replica';
const TASK_KINDS: readonly TaskKind[] = ['copy', 'raft-1-voter', 'raft-3-replica'];

interface BenchParameters {
  readonly mode: 'full' | 'quick';
  readonly groupCounts: readonly number[];
  readonly payloadBytesList: readonly number[];
  /** Proposals per group per iteration, proposed as one batch on the leader. */
  readonly batchCount: number;
  readonly taskTimeMs: number;
  readonly taskIterationsMin: number;
  readonly warmupTimeMs: number;
  readonly warmupIterationsMin: number;
  readonly seed: number;
}

// Full: 18 tasks × (2 s + 0.5 s warm-up) plus setup, about a minute on 2 cores.
const FULL: BenchParameters = {
  mode: 'full',
  groupCounts: [1, 64, 1024],
  payloadBytesList: [16, 256],
  batchCount: 16,
  taskTimeMs: 2_000,
  taskIterationsMin: 10,
  warmupTimeMs: 500,
  warmupIterationsMin: 5,
  seed: 1,
};

// Quick: every code path with tiny inputs, so CI keeps the bench from rotting.
const QUICK: BenchParameters = {
  mode: 'quick',
  groupCounts: [1, 8],
  payloadBytesList: [16, 256],
  batchCount: 4,
  taskTimeMs: 20,
  taskIterationsMin: 3,
  warmupTimeMs: 5,
  warmupIterationsMin: 2,
  seed: 1,
};

/** Distinct payloads per size; a multiple of every batchCount above, so batches tile it. */
const PAYLOAD_POOL_COUNT = 1_024;

interface TaskSpec {
  readonly name: string;
  readonly kind: TaskKind;
  readonly groupCount: number;
  readonly payloadBytes: number;
}

/** Counters for one phase (warm-up or run) of one task. */
interface TaskState {
  iterationCount: number;
  messagesSteppedCount: number;
  readyCount: number;
  checksum: ApplyChecksum;
}

interface TaskResultRow extends TaskSpec {
  readonly replicaCount: number;
  readonly batchCount: number;
  readonly proposalsPerIteration: number;
  readonly messagesPerIteration: number;
  readonly readiesPerIteration: number;
  readonly sampleCount: number;
  readonly iterationMsMean: number;
  readonly iterationMsP50: number;
  readonly rmePercent: number;
  /** Proposals applied on every replica per second. */
  readonly opsPerSecond: number;
  readonly messagesPerSecond: number;
  readonly checksum: ApplyChecksum;
  ratioToCopy?: number;
  ratioToSingleVoter?: number;
  ratioToOneGroup?: number;
}

// ---------------------------------------------------------------------------
// Workloads

function payloadBatches(options: { payloadBytes: number; batchCount: number; seed: number }): Uint8Array[][] {
  const rng = new SeededRng(options.seed * 1_000_003 + options.payloadBytes);
  const pool = Array.from({ length: PAYLOAD_POOL_COUNT }, () => {
    const p = new Uint8Array(options.payloadBytes);
    for (let i = 0; i < p.length; i++) p[i] = rng.nextUint32() & 0xff;
    return p;
  });
  assert(PAYLOAD_POOL_COUNT % options.batchCount === 0, () => `batchCount ${options.batchCount} must divide ${PAYLOAD_POOL_COUNT}`);
  const batches: Uint8Array[][] = [];
  for (let i = 0; i < PAYLOAD_POOL_COUNT; i += options.batchCount) batches.push(pool.slice(i, i + options.batchCount));
  return batches;
}

/** One iteration: each group proposes one batch and the loop runs until every replica applied it. */
type Iteration = () => void;

function raftWorkload(spec: TaskSpec, params: BenchParameters, state: TaskState): { iterate: Iteration; finish: () => void } {
  const replicaCount = spec.kind === 'raft-1-voter' ? 1 : 3;
  const cluster = new Cluster({ groupCount: spec.groupCount, replicaCount, seed: params.seed });
  cluster.electLeaders();
  const messagesAtStart = cluster.messagesSteppedCount;
  const readiesAtStart = cluster.readyCount;
  const batches = payloadBatches({ payloadBytes: spec.payloadBytes, batchCount: params.batchCount, seed: params.seed });
  let next = 0;
  return {
    iterate: () => {
      const batch = batches[next]!;
      next = (next + 1) % batches.length;
      for (let g = 0; g < spec.groupCount; g++) cluster.propose(g, batch);
      cluster.runUntilQuiet();
      cluster.compactLogs();
      state.iterationCount++;
    },
    finish: () => {
      state.messagesSteppedCount = cluster.messagesSteppedCount - messagesAtStart;
      state.readyCount = cluster.readyCount - readiesAtStart;
      state.checksum = cluster.verify(() => state.iterationCount * params.batchCount);
    },
  };
}

/**
 * The floor: per group and replica, copy the batch into a reused log buffer
 * (what persisting or encoding a frame costs at least) and apply it from
 * there with the same apply function. No Raft, no per-entry allocation.
 */
function copyWorkload(spec: TaskSpec, params: BenchParameters, state: TaskState): { iterate: Iteration; finish: () => void } {
  const replicaCount = 3;
  const batchBytes = params.batchCount * spec.payloadBytes;
  const logs = Array.from({ length: spec.groupCount * replicaCount }, () => ({ buffer: new Uint8Array(batchBytes), lastIndex: 0, checksum: emptyChecksum() }));
  const batches = payloadBatches({ payloadBytes: spec.payloadBytes, batchCount: params.batchCount, seed: params.seed });
  let next = 0;
  return {
    iterate: () => {
      const batch = batches[next]!;
      next = (next + 1) % batches.length;
      for (const log of logs) {
        let offset = 0;
        for (const p of batch) {
          log.buffer.set(p, offset);
          offset += p.length;
        }
        offset = 0;
        for (const p of batch) {
          applyPayload(log.checksum, ++log.lastIndex, log.buffer, offset, offset + p.length);
          offset += p.length;
        }
      }
      state.iterationCount++;
    },
    finish: () => {
      const total = emptyChecksum();
      for (let g = 0; g < spec.groupCount; g++) {
        const c = logs[g * replicaCount]!.checksum;
        assert(c.appliedProposalCount === state.iterationCount * params.batchCount, () => `copy group ${g}: applied ${c.appliedProposalCount} payloads`);
        total.appliedEntryCount += c.appliedEntryCount;
        total.appliedProposalCount += c.appliedProposalCount;
        total.appliedIndexSum = (total.appliedIndexSum + c.appliedIndexSum) | 0;
        total.payloadXor = (total.payloadXor + c.payloadXor) | 0;
      }
      state.checksum = total;
    },
  };
}

// ---------------------------------------------------------------------------
// Running

function taskSpecs(params: BenchParameters, filter: string | undefined): TaskSpec[] {
  const specs: TaskSpec[] = [];
  for (const payloadBytes of params.payloadBytesList) {
    for (const groupCount of params.groupCounts) {
      for (const kind of TASK_KINDS) specs.push({ name: `${kind} g=${groupCount} p=${payloadBytes}B`, kind, groupCount, payloadBytes });
    }
  }
  // A filtered run (e.g. for --cpu-prof) keeps the baselines so the ratios still have a denominator.
  if (filter === undefined) return specs;
  const kept = specs.filter((s) => s.name.includes(filter));
  const isBaselineOfKept = (s: TaskSpec) => kept.some((k) => k.groupCount === s.groupCount && k.payloadBytes === s.payloadBytes);
  return specs.filter((s) => kept.includes(s) || (s.kind !== 'raft-3-replica' && isBaselineOfKept(s)));
}

async function runTasks(params: BenchParameters, filter: string | undefined): Promise<TaskResultRow[]> {
  const bench = new Bench({
    name: 'core',
    time: params.taskTimeMs,
    iterations: params.taskIterationsMin,
    warmupTime: params.warmupTimeMs,
    warmupIterations: params.warmupIterationsMin,
    throws: true,
  });
  const runStates = new Map<string, TaskState>();
  const specs = taskSpecs(params, filter);
  for (const spec of specs) {
    let state: TaskState = { iterationCount: 0, messagesSteppedCount: 0, readyCount: 0, checksum: emptyChecksum() };
    let workload: { iterate: Iteration; finish: () => void } | undefined;
    bench.add(spec.name, () => workload!.iterate(), {
      async: false,
      beforeAll: () => {
        state = { iterationCount: 0, messagesSteppedCount: 0, readyCount: 0, checksum: emptyChecksum() };
        workload = spec.kind === 'copy' ? copyWorkload(spec, params, state) : raftWorkload(spec, params, state);
        gc?.();
      },
      afterAll: (mode) => {
        workload!.finish();
        workload = undefined;
        if (mode === 'run') runStates.set(spec.name, state);
      },
    });
  }
  await bench.run();
  return specs.map((spec) => resultRow(spec, params, runStates.get(spec.name)!, bench.getTask(spec.name)!));
}

function resultRow(spec: TaskSpec, params: BenchParameters, state: TaskState, task: Task): TaskResultRow {
  const r = task.result;
  assert(r.state === 'completed', () => `task ${spec.name} ended ${r.state}`);
  const proposalsPerIteration = spec.groupCount * params.batchCount;
  const messagesPerIteration = state.messagesSteppedCount / state.iterationCount;
  const iterationsPerSecond = 1_000 / r.period;
  return {
    ...spec,
    replicaCount: spec.kind === 'raft-1-voter' ? 1 : 3,
    batchCount: params.batchCount,
    proposalsPerIteration,
    messagesPerIteration,
    readiesPerIteration: state.readyCount / state.iterationCount,
    sampleCount: r.latency.samplesCount,
    iterationMsMean: r.period,
    iterationMsP50: r.latency.p50,
    rmePercent: r.latency.rme,
    opsPerSecond: proposalsPerIteration * iterationsPerSecond,
    messagesPerSecond: messagesPerIteration * iterationsPerSecond,
    // Unsigned in the report, as printed; the hot path keeps int32 (see applyPayload).
    checksum: { ...state.checksum, appliedIndexSum: state.checksum.appliedIndexSum >>> 0, payloadXor: state.checksum.payloadXor >>> 0 },
  };
}

function addRatios(rows: TaskResultRow[]): void {
  const find = (kind: TaskKind, groupCount: number, payloadBytes: number) =>
    rows.find((r) => r.kind === kind && r.groupCount === groupCount && r.payloadBytes === payloadBytes);
  for (const row of rows) {
    row.ratioToCopy = row.opsPerSecond / find('copy', row.groupCount, row.payloadBytes)!.opsPerSecond;
    row.ratioToSingleVoter = row.opsPerSecond / find('raft-1-voter', row.groupCount, row.payloadBytes)!.opsPerSecond;
    const oneGroup = find(row.kind, 1, row.payloadBytes);
    if (oneGroup !== undefined) row.ratioToOneGroup = row.opsPerSecond / oneGroup.opsPerSecond;
  }
}

// ---------------------------------------------------------------------------
// Reporting

function printResults(rows: TaskResultRow[]): void {
  printTable(
    ['task', 'props/iter', 'msgs/iter', 'iter ms', '±%', 'ops/s', 'msgs/s', '÷copy', '÷1-voter', '÷g=1', 'checksum (index sum/payload)'],
    rows.map((r) => [
      r.name,
      fmt(r.proposalsPerIteration),
      fmt(r.messagesPerIteration, 1),
      fmt(r.iterationMsMean, 3),
      fmt(r.rmePercent, 1),
      fmt(r.opsPerSecond),
      fmt(r.messagesPerSecond),
      ratio(r.ratioToCopy),
      ratio(r.ratioToSingleVoter),
      ratio(r.ratioToOneGroup),
      `${hex32(r.checksum.appliedIndexSum)}/${hex32(r.checksum.payloadXor)}`,
    ]),
  );
}

function printComparison(rows: TaskResultRow[], basePath: string, mode: BenchParameters['mode']): void {
  const base = JSON.parse(readFileSync(basePath, 'utf8')) as { machine?: { gitCommit?: string }; parameters?: { mode?: string }; results: TaskResultRow[] };
  const byName = new Map(base.results.map((r) => [r.name, r]));
  console.log(`\ncompared with ${basePath} (commit ${base.machine?.gitCommit ?? 'unknown'}): ops/s now ÷ ops/s then`);
  if (base.parameters?.mode !== mode) console.log(`warning: that run was in ${base.parameters?.mode ?? 'unknown'} mode, this one in ${mode} mode; the ratios mean little`);
  printTable(
    ['task', 'ops/s then', 'ops/s now', 'now÷then'],
    rows.map((r) => {
      const then = byName.get(r.name);
      return [r.name, then ? fmt(then.opsPerSecond) : '-', fmt(r.opsPerSecond), then ? ratio(r.opsPerSecond / then.opsPerSecond) : '-'];
    }),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, compare: { type: 'string' }, filter: { type: 'string' } } });
  const quick = values.quick === true || process.env.FLOTILLA_BENCH_QUICK === '1';
  const params = quick ? QUICK : FULL;
  const run = startRun(`core bench (${params.mode})`);
  console.log(
    `parameters: groups ${params.groupCounts.join('/')}, payload ${params.payloadBytesList.join('/')} B, batch ${params.batchCount} proposals per group per iteration, ` +
      `${params.taskTimeMs} ms and ≥${params.taskIterationsMin} iterations per task after ${params.warmupTimeMs} ms / ≥${params.warmupIterationsMin} iterations of warm-up`,
  );
  console.log('ops/s = proposals applied on every replica per second; ÷copy, ÷1-voter, ÷g=1 = ops/s over the same-size baseline.\n');

  const rows = await runTasks(params, values.filter);
  addRatios(rows);
  const end = finishRun(run);

  printResults(rows);
  console.log(`\n${end.text}`);
  if (params.mode === 'quick') console.log('quick mode: inputs too small for meaningful numbers; this run checks that the bench works and the replicas agree.');
  if (values.compare !== undefined) printComparison(rows, values.compare, params.mode);

  const report = {
    benchmark: 'core',
    startedAt: run.startedAt.toISOString(),
    finishedAt: end.finishedAt.toISOString(),
    command: commandLine(),
    machine: end.machine,
    parameters: params,
    results: rows,
  };
  console.log(`wrote ${writeResults('core', run.startedAt, report)}`);
}

await main();
