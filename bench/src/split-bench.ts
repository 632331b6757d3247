// Growth by splits (issue 19): 3 nodes start with one user range and a small split size; clients write
// random keys until the placement driver's size-based splits have made `--target` ranges. Reports the
// time to get there, splits per second over the run and over its last tenth, and client ops/s and p99
// while the ranges multiply against the same load with the driver paused, before the growth (one user
// range) and after it (all the ranges grown). Nodes run in this process (worker-thread cores, TCP on loopback), so the
// clients compete with them for the same CPUs in both phases.
//
//   node dist/split-bench.js                              1,000 ranges, 16 KiB split size
//   node dist/split-bench.js --target 5000 --split-kib 8   more, smaller
//   node dist/split-bench.js --quick                      CI: 24 ranges
//   node dist/split-bench.js --merge-back 60              then merges for 60 s under the same load
//
// --merge-back restarts the nodes with splits off and every range counted cold, so the driver merges
// neighbours as fast as its merge rules allow (mergesInFlightMax at a time, each waiting for every
// replica to apply its freeze): merges/s, and the clients' ops/s and p99 against the grown cluster's.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { FlotillaNode } from '@flotilla/server';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { pino } from 'pino';
import { benchArgs, flagsOrExit, positiveInt } from './flags.js';
import { commandLine, fmt, loadAverageText, machineInfo, printTable, ratio, writeResults } from './report.js';

const USAGE = {
  name: 'split-bench',
  text: `split-bench: 3 nodes grow from one range to --target ranges by the driver's size splits under a write load; time, splits/s, client ops/s and p99.

  --target <n>        ranges to grow to (default 1000; quick: 24)
  --split-kib <n>     the driver's split size in KiB (default 16)
  --value-bytes <n>   size of each written value (default 512)
  --merge-back <s>    then restart with merges on (every range cold, no splits) and merge for s seconds
  --quick             CI: tiny and short
  -h, --help          this text`,
};
const { values } = benchArgs(USAGE, { options: { quick: { type: 'boolean', default: false }, target: { type: 'string' }, 'split-kib': { type: 'string' }, 'value-bytes': { type: 'string' }, 'merge-back': { type: 'string' } }, strict: true });
const QUICK = values.quick === true;
const { TARGET, SPLIT_BYTES, VALUE_BYTES, MERGE_BACK_SECONDS } = flagsOrExit(USAGE, () => ({
  TARGET: values.target === undefined ? (QUICK ? 24 : 1_000) : positiveInt(values.target, '--target'),
  SPLIT_BYTES: (values['split-kib'] === undefined ? 16 : positiveInt(values['split-kib'], '--split-kib')) * 1024,
  VALUE_BYTES: values['value-bytes'] === undefined ? 512 : positiveInt(values['value-bytes'], '--value-bytes'),
  MERGE_BACK_SECONDS: values['merge-back'] === undefined ? 0 : positiveInt(values['merge-back'], '--merge-back'),
}));
const CLIENT_COUNT = 32;
const BASELINE_MS = QUICK ? 1_000 : 5_000;
/** A growth that takes longer is reported as not finished (and the run fails). */
const GROWTH_TIMEOUT_MS = QUICK ? 90_000 : 1_200_000;
/** Writes per client at most, over both phases: the load stays bounded whatever happens. */
const WRITES_PER_CLIENT_MAX = 1_000_000;
const LATENCY_SAMPLES_MAX = 1_000_000;

const logger = pino({ level: process.env['FLOTILLA_BENCH_LOG'] ?? 'silent' });
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface DriverView {
  rangeCount: number;
  nodes: { nodeId: number; replicaCount: number; leaderCount: number }[];
}

/** Clients writing random keys until `stop` resolves; ops/s and exact latency percentiles (nearest rank). */
async function clientLoad(nodes: readonly FlotillaNode[], stop: Promise<void>, written: { count: number }): Promise<{ ops: number; errors: number; seconds: number; p50Ms: number; p99Ms: number }> {
  let stopped = false;
  void stop.then(() => (stopped = true));
  const latencies: number[] = [];
  let ops = 0;
  let errors = 0;
  const value = Buffer.alloc(VALUE_BYTES, 0x62);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENT_COUNT }, async (_, c) => {
      for (let i = 0; !stopped && i < WRITES_PER_CLIENT_MAX; i++) {
        const node = nodes[(c + i) % nodes.length]!;
        // Uniform over the user key space: every range grows, and every one splits in turn.
        const key = Buffer.from(`${Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0')}/${c}/${i}`);
        const t0 = performance.now();
        try {
          await node.store.put(key, value);
          if (latencies.length < LATENCY_SAMPLES_MAX) latencies.push(performance.now() - t0);
          ops++;
          written.count++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil(q * latencies.length) - 1))] ?? 0;
  return { ops, errors, seconds, p50Ms: at(0.5), p99Ms: at(0.99) };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadBefore = os.loadavg();
  const root = mkdtempSync(join(os.tmpdir(), 'flotilla-split-bench-'));
  const ports = await freePorts(3);
  const address = (id: number) => `127.0.0.1:${ports[id - 1]}`;
  const nodes: FlotillaNode[] = [];
  const startNodes = (scheduler: NonNullable<NonNullable<Parameters<typeof FlotillaNode.start>[0]['placement']>['scheduler']>) =>
    Promise.all(
      [1, 2, 3].map((id) =>
        FlotillaNode.start({
          nodeId: id,
          dir: join(root, `n${id}`),
          listen: { host: '127.0.0.1', port: ports[id - 1]! },
          coreCount: 1,
          logger,
          peers: Object.fromEntries([1, 2, 3].filter((j) => j !== id).map((j) => [j, address(j)])),
          initialRangeCount: 1,
          placement: { paused: true, scheduler },
        }),
      ),
    );
  try {
    nodes.push(...(await startNodes({ splitSizeBytes: SPLIT_BYTES })));
    // Counts only: the view of every range, once a second, took 7 % of the main thread at 14,000 ranges.
    const view = async (): Promise<DriverView> => (await nodes[0]!.view.placement({ ranges: false })) as DriverView;
    const deadline = performance.now() + 60_000;
    while ((await view().catch(() => ({ rangeCount: 0 }))).rangeCount < 2) {
      if (performance.now() > deadline) throw new Error('the driver never saw the meta range and the user range');
      await sleep(100);
    }
    const startRanges = (await view()).rangeCount;

    // Baseline: the same load with the driver paused (nothing splits).
    const written = { count: 0 };
    const before = await clientLoad(nodes, sleep(BASELINE_MS), written);

    // Growth: unpaused, the driver splits every range that reaches the split size.
    await nodes[0]!.store.updatePlacementSettings({ paused: true, replicationFactor: 3 }, { paused: false });
    const growthStarted = performance.now();
    const samples: { seconds: number; ranges: number }[] = [{ seconds: 0, ranges: startRanges }];
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const during = clientLoad(nodes, finished, written);
    let reached = false;
    while (performance.now() - growthStarted < GROWTH_TIMEOUT_MS) {
      await sleep(1_000);
      const ranges = (await view().catch(() => undefined))?.rangeCount;
      if (ranges === undefined) continue;
      samples.push({ seconds: (performance.now() - growthStarted) / 1000, ranges });
      if (ranges >= TARGET) {
        reached = true;
        break;
      }
    }
    finish();
    const duringLoad = await during;
    const last = samples[samples.length - 1]!;
    if (!reached) throw new Error(`only ${last.ranges} of ${TARGET} ranges after ${fmt(last.seconds, 0)} s`);
    // After: the same load over the ranges grown, the driver paused again. Many ranges spread the writes
    // over many groups (less batching per group than one range had): what splitting itself costs is
    // during ÷ after, not during ÷ before.
    await nodes[0]!.store.updatePlacementSettings({ paused: true, replicationFactor: 3 }, { paused: true });
    await sleep(2_000);
    const leaders = (await view()).nodes.map((n) => n.leaderCount);
    const after = await clientLoad(nodes, sleep(BASELINE_MS), written);
    // The last tenth of the run (at least the last two samples): whether splitting slows as ranges multiply.
    const tail = samples.filter((s) => s.seconds >= last.seconds * 0.9);
    const tailFrom = tail.length >= 2 ? tail[0]! : samples[samples.length - 2]!;
    const splitsPerSec = (last.ranges - startRanges) / last.seconds;
    const tailSplitsPerSec = (last.ranges - tailFrom.ranges) / Math.max(last.seconds - tailFrom.seconds, 1e-9);

    console.log(`split bench${QUICK ? ' (quick)' : ''}: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; load average before ${loadAverageText(loadBefore)}`);
    console.log(`3 nodes, ${startRanges} ranges (meta + user) to ${TARGET}; split size ${fmt(SPLIT_BYTES / 1024)} KiB; ${CLIENT_COUNT} clients writing ${VALUE_BYTES} B values at random keys`);
    printTable(
      ['phase', 'ops/s', 'errors', 'p50 ms', 'p99 ms'],
      [
        ['before (driver paused)', fmt(before.ops / before.seconds), fmt(before.errors), fmt(before.p50Ms, 2), fmt(before.p99Ms, 2)],
        ['while splitting', fmt(duringLoad.ops / duringLoad.seconds), fmt(duringLoad.errors), fmt(duringLoad.p50Ms, 2), fmt(duringLoad.p99Ms, 2)],
        ['splitting ÷ before', ratio(duringLoad.ops / duringLoad.seconds / (before.ops / before.seconds)), '', ratio(duringLoad.p50Ms / before.p50Ms), ratio(duringLoad.p99Ms / before.p99Ms)],
        [`after (${last.ranges} ranges, paused)`, fmt(after.ops / after.seconds), fmt(after.errors), fmt(after.p50Ms, 2), fmt(after.p99Ms, 2)],
        ['splitting ÷ after', ratio(duringLoad.ops / duringLoad.seconds / (after.ops / after.seconds)), '', ratio(duringLoad.p50Ms / after.p50Ms), ratio(duringLoad.p99Ms / after.p99Ms)],
      ],
    );
    console.log(`leaders per node once grown: ${leaders.join(' / ')}`);
    console.log(`${last.ranges} ranges after ${fmt(last.seconds, 1)} s: ${fmt(splitsPerSec, 1)} splits/s over the run, ${fmt(tailSplitsPerSec, 1)} splits/s over its last tenth (from ${tailFrom.ranges} ranges)`);
    const mergeBack = MERGE_BACK_SECONDS > 0 ? await runMergeBack() : undefined;
    writeResults('split', startedAt, {
      command: commandLine(),
      machine: { ...machineInfo(), loadAverageBefore: loadBefore, loadAverageAfter: os.loadavg() },
      parameters: { target: TARGET, splitBytes: SPLIT_BYTES, valueBytes: VALUE_BYTES, clients: CLIENT_COUNT, quick: QUICK },
      before,
      during: duringLoad,
      after,
      growth: { seconds: last.seconds, startRanges, ranges: last.ranges, splitsPerSec, tailSplitsPerSec, samples },
      writes: written.count,
      leadersPerNode: leaders,
      ...(mergeBack === undefined ? {} : { mergeBack }),
    });

    /** Restarts the nodes with merges on and splits off, and merges for MERGE_BACK_SECONDS under the same load. */
    async function runMergeBack() {
      await Promise.all(nodes.splice(0).map((n) => n.close()));
      // Every range cold whatever its load, and nothing splits again: how fast the driver merges.
      nodes.push(...(await startNodes({ splitSizeBytes: 1024 ** 3, mergeSizeBytes: 512 * 1024 ** 2, mergeColdSec: 1, mergeLoadOpsPerSec: 1e12 })));
      // The new driver learns the ranges from the nodes' heartbeats: counted once the count holds for 3 s.
      const warm = performance.now() + 60_000;
      let rangesBefore = 0;
      for (let steady = 0; steady < 6 && performance.now() < warm; ) {
        await sleep(500);
        const count = (await view().catch(() => ({ rangeCount: 0 }))).rangeCount;
        steady = count === rangesBefore && count > 0 ? steady + 1 : 0;
        rangesBefore = count;
      }
      await nodes[0]!.store.updatePlacementSettings({ paused: true, replicationFactor: 3 }, { paused: false });
      const mergeStarted = performance.now();
      let stopMerging: () => void = () => undefined;
      const mergingDone = new Promise<void>((resolve) => (stopMerging = resolve));
      const load = clientLoad(nodes, mergingDone, written);
      const mergeSamples: { seconds: number; ranges: number }[] = [{ seconds: 0, ranges: rangesBefore }];
      while (performance.now() - mergeStarted < MERGE_BACK_SECONDS * 1000) {
        await sleep(1_000);
        const ranges = (await view().catch(() => undefined))?.rangeCount;
        if (ranges !== undefined) mergeSamples.push({ seconds: (performance.now() - mergeStarted) / 1000, ranges });
        if (ranges === 2) break;
      }
      stopMerging();
      const merging = await load;
      const end = mergeSamples[mergeSamples.length - 1]!;
      const mergesPerSec = (rangesBefore - end.ranges) / end.seconds;
      console.log(`merge back: ${rangesBefore} ranges to ${end.ranges} in ${fmt(end.seconds, 1)} s: ${fmt(mergesPerSec, 1)} merges/s`);
      printTable(
        ['phase', 'ops/s', 'errors', 'p50 ms', 'p99 ms'],
        [
          ['while merging', fmt(merging.ops / merging.seconds), fmt(merging.errors), fmt(merging.p50Ms, 2), fmt(merging.p99Ms, 2)],
          ['merging ÷ after growth', ratio(merging.ops / merging.seconds / (after.ops / after.seconds)), '', ratio(merging.p50Ms / after.p50Ms), ratio(merging.p99Ms / after.p99Ms)],
        ],
      );
      return { rangesBefore, ranges: end.ranges, seconds: end.seconds, mergesPerSec, load: merging, samples: mergeSamples };
    }
  } finally {
    await Promise.allSettled(nodes.map((n) => n.close()));
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
