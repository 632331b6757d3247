// What one pass of the placement driver costs at many ranges (issue 19: the
// driver must not become the bottleneck of growth by splits). The driver runs
// on the main thread of the node leading the meta range, so a pass that reads
// every range stalls that node's HTTP and transport for as long as it takes,
// and during growth by splits a pass runs after every step applied.
//
// For each size, a PlacementDriver in this process takes full heartbeats from
// 3 nodes (every range on all three, leaders dealt round-robin, 1 % of ranges
// over the split size so splits are planned; merges on, every range hot, so
// none is due), then runs passes that must plan: before each, one range's
// leader reports again (what a split's halves or a heartbeat do). Operators the
// plans start get a port that never answers, so they stay in flight and later
// passes plan around them, as during growth. Timed, per pass: the whole pass,
// and, on their own, building the snapshot and plan() over it.
//
//   node dist/plan-bench.js                       1,000 / 10,000 / 100,000 ranges
//   node dist/plan-bench.js --ranges 20000 --passes 50
//   node dist/plan-bench.js --quick               CI: 1,000 ranges, a few passes
import { PlacementDriver, SCHEDULER_CONFIG_DEFAULTS, plan, type DriverConfig, type RangeReport, type StoreHeartbeat } from '@flotilla/placement';
import { benchArgs, flagsOrExit, positiveInt, positiveInts } from './flags.js';
import { commandLine, finishRun, fmt, printTable, startRun, writeResults } from './report.js';

const USAGE = {
  name: 'plan-bench',
  text: `plan-bench: milliseconds per placement driver pass (snapshot + plan) at many ranges.

  --ranges <list>     range counts (default 1000,10000,100000; quick: 1000)
  --passes <n>        passes timed per size (default 30; quick: 3)
  --quick             CI: tiny
  -h, --help          this text`,
};
const { values: args } = benchArgs(USAGE, { options: { ranges: { type: 'string' }, passes: { type: 'string' }, quick: { type: 'boolean', default: false } }, strict: true });
const QUICK = args.quick === true;
const { SIZES, PASSES } = flagsOrExit(USAGE, () => ({
  SIZES: positiveInts(args.ranges ?? (QUICK ? '1000' : '1000,10000,100000'), '--ranges'),
  PASSES: args.passes === undefined ? (QUICK ? 3 : 30) : positiveInt(args.passes, '--passes'),
}));

const { paused: _p, replicationFactor: _r, ...scheduler } = SCHEDULER_CONFIG_DEFAULTS;
const CONFIG: DriverConfig = { scheduler, suspectAfterMs: 3_000, downAfterMs: 10_000, operatorTimeoutMs: 600_000, stepRetryMs: 1_000, rateFreshMs: 60_000 };
const SPLIT_BYTES = CONFIG.scheduler.splitSizeBytes;
const NODES = [1, 2, 3];

/** Range `id` of `count`: keys `k<id, 8 digits>`, the last one open-ended; every 100th over the split size. */
function report(id: number, count: number, term: number, nowWrites: number): RangeReport {
  const key = (i: number) => Buffer.from(`k${String(i).padStart(8, '0')}`);
  const big = id % 100 === 0;
  return {
    rangeId: id,
    start: id === 1 ? Buffer.alloc(0) : key(id),
    end: id === count ? null : key(id + 1),
    epoch: 2,
    term,
    voters: NODES,
    votersOutgoing: [],
    learners: [],
    lastIndex: 100,
    progress: NODES.map((nodeId) => ({ nodeId, match: 100 })),
    keyCount: 100,
    sizeBytes: big ? SPLIT_BYTES * 2 : 4_096,
    // Writes growing with every report: each range stays hot, so no merge is due.
    writeCount: nowWrites,
    readCount: 0,
    sizeSplitKey: Buffer.concat([key(id), Buffer.from('m')]),
  };
}

interface SizeResult {
  readonly ranges: number;
  readonly passes: number;
  readonly passMs: { readonly median: number; readonly p90: number; readonly max: number };
  readonly snapshotMsMedian: number;
  readonly planMsMedian: number;
  readonly operatorsInFlight: number;
}

const quantile = (xs: readonly number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

function measure(count: number): SizeResult {
  let nowMs = 0;
  let operatorsStarted = 0;
  const driver = new PlacementDriver({
    startMs: 0,
    config: CONFIG,
    settings: { paused: false, replicationFactor: 3 },
    ports: {
      runStep: () => {
        operatorsStarted++;
        return new Promise(() => undefined);
      },
      stepApplied: () => undefined,
      log: { info: () => undefined, warn: () => undefined, debug: () => undefined },
    },
  });
  let seq = 0;
  const heartbeat = (nodeId: number, leading: RangeReport[], full: boolean): StoreHeartbeat => ({
    nodeId,
    usedBytes: 0,
    availableBytes: 1e12,
    session: 1,
    seq: ++seq,
    // A delta of session 1 (base 1: any seq the driver has seen of it will do).
    base: full ? 0 : 1,
    replicas: full ? Array.from({ length: count }, (_, i) => ({ rangeId: i + 1, epoch: 2 })) : leading.map((r) => ({ rangeId: r.rangeId, epoch: r.epoch })),
    leading,
    removed: [],
  });
  // Two rounds of full heartbeats, a second apart: the second gives every range its load rate.
  for (const writes of [0, 1_000]) {
    for (const nodeId of NODES) {
      const leading: RangeReport[] = [];
      for (let id = nodeId; id <= count; id += NODES.length) leading.push(report(id, count, 6, writes));
      driver.onHeartbeat(heartbeat(nodeId, leading, true), nowMs);
    }
    nowMs += 1_000;
  }
  nowMs = CONFIG.downAfterMs;
  driver.pass(nowMs);
  const passMs: number[] = [];
  const snapshotMs: number[] = [];
  const planMs: number[] = [];
  for (let i = 0; i < PASSES; i++) {
    // Past the driver's least interval between plans (a millisecond per 100 ranges), so every pass plans.
    nowMs += Math.ceil(count / 100) + 1;
    // One range reports again (its leader's node sends a delta); its id walks so no report repeats.
    const id = 1 + ((i * 7919) % count);
    const leader = NODES[(id - 1) % NODES.length]!;
    driver.onHeartbeat(heartbeat(leader, [report(id, count, 6, 2_000 + i)], false), nowMs);
    let t = performance.now();
    driver.pass(nowMs);
    passMs.push(performance.now() - t);
    t = performance.now();
    const snapshot = driver.snapshot(nowMs);
    snapshotMs.push(performance.now() - t);
    const inFlight = driver.status(nowMs).operators.map(({ ageMs: _a, lastStep: _l, ...op }) => op);
    t = performance.now();
    plan(snapshot, { ...CONFIG.scheduler, paused: false, replicationFactor: 3 }, inFlight);
    planMs.push(performance.now() - t);
  }
  return {
    ranges: count,
    passes: PASSES,
    passMs: { median: quantile(passMs, 0.5), p90: quantile(passMs, 0.9), max: Math.max(...passMs) },
    snapshotMsMedian: quantile(snapshotMs, 0.5),
    planMsMedian: quantile(planMs, 0.5),
    operatorsInFlight: operatorsStarted,
  };
}

const run = startRun('plan bench');
const results: SizeResult[] = [];
for (const count of SIZES) results.push(measure(count));
printTable(
  ['ranges', 'passes', 'pass ms p50', 'p90', 'max', 'snapshot ms p50', 'plan() ms p50', 'operators started'],
  results.map((r) => [fmt(r.ranges), fmt(r.passes), fmt(r.passMs.median, 2), fmt(r.passMs.p90, 2), fmt(r.passMs.max, 2), fmt(r.snapshotMsMedian, 2), fmt(r.planMsMedian, 2), fmt(r.operatorsInFlight)]),
);
const finished = finishRun(run);
console.log(finished.text);
console.log(`results: ${writeResults('plan', run.startedAt, { command: commandLine(), machine: finished.machine, results })}`);
