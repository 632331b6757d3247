// `soak-bench` (npm run bench:soak, flotilla bench soak): a healthy 3-node cluster under a fixed offered
// load for a long time, watched for anything that keeps growing once warm (issue 14). Starts three
// `flotilla start` processes on loopback (fresh temp data dirs, removed at the end), loads the keys, then
// runs the soak mix (reads, updates, read-then-conditional-writes, deletes) at `--rate` operations per
// second for the warm-up and the measured time, while once a second it samples every node process: RSS
// (and its anonymous and file-backed parts), CPU, open descriptors and threads from /proc, the size of
// its data directory, and the main thread's heap, external memory, timers and other active resources
// and event-loop utilization from the node's /metrics (soak/sample.ts). Reports per node and metric the
// value when the warm-up ended and at the end, min and max, the least-squares slope per minute over the
// warm samples and the last window's mean over the first warm one, and flags what grows (soak/trend.ts
// has the rule), each flagged metric with its mean per window; also the load achieved, errors, latency,
// and who used the machine's CPU. Writes results/soak-<timestamp>.json (every sample) and .md (the table).
//
//   npm run bench:soak                                   (500 ops/s, 60 s warm-up, 10 minutes measured)
//   node dist/soak-bench.js --rate 1000 --duration-ms 1800000 --value-bytes 1024
//   node dist/soak-bench.js --quick                      (CI: 20 s at 100 ops/s; proves the bench works)
import os from 'node:os';
import { writeFileSync } from 'node:fs';
import { startFlotilla, type RunningSystem } from './compare/systems.js';
import { loadKeys, run, type RunResult, type Target } from './load/runner.js';
import { HttpClient, httpTarget } from './load/targets.js';
import { benchArgs, distributionOf, flagsOrExit, positiveInt, workloadsOf, type BenchUsage } from './flags.js';
import { WORKLOADS } from './workload/mix.js';
import { commandLine, fmt, machineHeadline, machineInfo, markdownTable, printTable, ProgressBar, ratio, sampleCpu, writeResults } from './report.js';
import { dirBytes, metricsSampleOf, procSampleOf, seriesOf, SOAK_METRICS, type MetricUnit, type NodeSample, type SoakMetric } from './soak/sample.js';
import { firstAndLastWindowMeans, trendOf, windowMeans, type GrowthRule, type Point, type Trend } from './soak/trend.js';

const USAGE: BenchUsage = {
  name: 'soak-bench',
  text: `soak-bench (flotilla bench soak): a 3-node cluster under a fixed offered load for a long time, every
node process sampled once a second and watched for growth; writes JSON and Markdown to bench/results/
(bench/README.md explains the rule and the table).

  --rate <n>            offered operations per second (default 500; quick: 100)
  --duration-ms <ms>    measured time (default 600000; quick: 15000)
  --warmup-ms <ms>      the same load, unmeasured, first (default 60000; quick: 5000)
  --value-bytes <n>     value size (default 256)
  --keys <n>            keys loaded first (default 10000; quick: 500)
  --concurrency <n>     clients in flight at most (default 64; quick: 16)
  --workload <w>        ${Object.keys(WORKLOADS).join(', ')} (default soak)
  --dist <d>            uniform or zipfian (default zipfian)
  --ranges <n>          ranges (default 16)
  --cores <n>           worker cores per node (default 1)
  --sample-ms <ms>      sampling interval (default 1000)
  --seed <n>            the workload's seed (default 1)
  --fail-on-growth      exit 1 when a metric grows
  --node-args <args>    added to every node's flotilla start, e.g. '--node-args=--consistency-check-ms 0'
  --quick               CI: about 30 s
  -h, --help            this text`,
};

const { values } = benchArgs(USAGE, {
  options: {
    quick: { type: 'boolean', default: false },
    rate: { type: 'string' },
    'duration-ms': { type: 'string' },
    'warmup-ms': { type: 'string' },
    'value-bytes': { type: 'string', default: '256' },
    keys: { type: 'string' },
    concurrency: { type: 'string' },
    workload: { type: 'string', default: 'soak' },
    dist: { type: 'string', default: 'zipfian' },
    ranges: { type: 'string', default: '16' },
    cores: { type: 'string', default: '1' },
    'sample-ms': { type: 'string', default: '1000' },
    seed: { type: 'string', default: '1' },
    'fail-on-growth': { type: 'boolean', default: false },
    'node-args': { type: 'string', default: '' },
  },
  strict: true,
});

const QUICK = values.quick;
const { rateOpsPerSec, durationMs, warmupMs, valueBytes, keyCount, concurrency, workload, distribution, rangeCount, coreCount, sampleIntervalMs, seed } = flagsOrExit(USAGE, () => ({
  rateOpsPerSec: positiveInt(values.rate ?? (QUICK ? '100' : '500'), '--rate'),
  durationMs: positiveInt(values['duration-ms'] ?? (QUICK ? '15000' : '600000'), '--duration-ms'),
  warmupMs: positiveInt(values['warmup-ms'] ?? (QUICK ? '5000' : '60000'), '--warmup-ms'),
  valueBytes: positiveInt(values['value-bytes'], '--value-bytes'),
  keyCount: positiveInt(values.keys ?? (QUICK ? '500' : '10000'), '--keys'),
  concurrency: positiveInt(values.concurrency ?? (QUICK ? '16' : '64'), '--concurrency'),
  workload: workloadsOf(values.workload)[0]!,
  distribution: distributionOf(values.dist),
  rangeCount: positiveInt(values.ranges, '--ranges'),
  coreCount: positiveInt(values.cores, '--cores'),
  sampleIntervalMs: positiveInt(values['sample-ms'], '--sample-ms'),
  seed: positiveInt(values.seed, '--seed'),
}));
/** Added to every node's `flotilla start` (split on spaces), e.g. `--node-args='--consistency-check-ms 0'` to soak without a feature. */
const nodeArgs = values['node-args'].split(' ').filter((a) => a.length > 0);

/** Members of the soaked cluster: the smallest that replicates and keeps a quorum through one loss. */
const MEMBER_COUNT = 3;
/**
 * The trend's windows (first warm, last): a minute, long enough to average over GC cycles and the
 * once-a-second samples' noise; a third of the measured time in a shorter run.
 */
const TREND_WINDOW_MS_MAX = 60_000;
const trendWindowMs = Math.min(TREND_WINDOW_MS_MAX, durationMs / 3);
/**
 * The growth rule (soak/trend.ts) with each metric's own floor. A fifth of the level per hour and 5 %
 * between the first and last minute: loose enough that RSS and heap moving between minutes with GC and
 * the allocator do not count, tight enough that a descriptor or timer leaked every minute does within
 * minutes.
 */
const GROWTH_PER_HOUR_MIN = 0.2;
const LAST_OVER_FIRST_MIN = 1.05;
const ruleOf = (metric: SoakMetric): GrowthRule => ({ growthPerHourMin: GROWTH_PER_HOUR_MIN, lastOverFirstMin: LAST_OVER_FIRST_MIN, riseMin: metric.riseMin });
/** A scrape slower than this is recorded as failed (that second has no /metrics figures). */
const SCRAPE_TIMEOUT_MS = 5_000;
/** The load's own requests, as the other benches give them: long enough never to cut a slow answer short. */
const REQUEST_TIMEOUT_MS = 10_000;
/** How often a line with the latest figures is printed (a run in the background has no progress bar). */
const PROGRESS_LINE_MS = 60_000;

interface RequestCounts {
  requests: number;
  errors: number;
}

/** The target with every request counted as it answers, so the samples carry the load over time. */
function counted(target: Target, counts: RequestCounts): Target {
  const count = async <T>(request: Promise<T>): Promise<T> => {
    try {
      return await request;
    } catch (err) {
      counts.errors++;
      throw err;
    } finally {
      counts.requests++;
    }
  };
  return {
    name: target.name,
    get: (key) => count(target.get(key)),
    put: (key, value, options) => count(target.put(key, value, options)),
    scan: (start, limit) => count(target.scan(start, limit)),
    delete: (key) => count(target.delete(key)),
    close: () => target.close(),
  };
}

interface SoakNode {
  readonly nodeId: number;
  readonly pid: number;
  readonly url: string;
  readonly dataDir: string | undefined;
  readonly samples: NodeSample[];
  /** When /proc stopped answering for the process: it exited. */
  goneAtMs: number | undefined;
}

/** The whole machine's CPU (from /proc/stat) and the bench's own, at one round of samples. */
interface MachineSample {
  readonly atMs: number;
  /** USER_HZ ticks of all cores; undefined without /proc/stat. */
  readonly busyTicks: number | undefined;
  readonly totalTicks: number | undefined;
  /** This process (the load generator and the sampler), user + system. */
  readonly benchCpuMs: number;
}

/**
 * Samples every node every `intervalMs` from `startMs` on until stopped: /proc first, then one /metrics
 * request to each node at once; and the machine's CPU. The next round starts an interval after the last
 * one began, or at once when a round took longer (never two at a time).
 */
function startSampling(nodes: readonly SoakNode[], o: { startMs: number; intervalMs: number; counts: RequestCounts; machine: MachineSample[]; onRound: (atMs: number) => void }): { stop(): Promise<void> } {
  const client = new HttpClient(
    nodes.map((n) => n.url),
    SCRAPE_TIMEOUT_MS,
  );
  let stopped = false;
  let pause: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  const sampleNode = async (node: SoakNode, index: number, atMs: number): Promise<void> => {
    const proc = procSampleOf(node.pid);
    const dataBytes = node.dataDir === undefined ? undefined : dirBytes(node.dataDir);
    if (proc === undefined && node.goneAtMs === undefined) node.goneAtMs = atMs;
    const counts = { requestCount: o.counts.requests, errorCount: o.counts.errors };
    const t0 = performance.now();
    let metrics: NodeSample['metrics'];
    let scrapeMs: number | undefined;
    try {
      const res = await client.request('GET', '/metrics', undefined, {}, index);
      if (res.status === 200) {
        metrics = metricsSampleOf(res.body.toString('utf8'));
        scrapeMs = performance.now() - t0;
      }
    } catch {
      // A failed or slow scrape leaves this second without the node's own figures.
    }
    node.samples.push({ atMs, proc, metrics, scrapeMs, dataBytes, ...counts });
  };
  const loop = (async () => {
    for (let nextMs = performance.now(); !stopped; ) {
      const atMs = performance.now() - o.startMs;
      const cpu = sampleCpu();
      o.machine.push({ atMs, busyTicks: cpu.machine?.busyTicks, totalTicks: cpu.machine?.totalTicks, benchCpuMs: (cpu.own.user + cpu.own.system) / 1e3 });
      await Promise.all(nodes.map((n, i) => sampleNode(n, i, atMs)));
      o.onRound(atMs);
      nextMs = Math.max(nextMs + o.intervalMs, performance.now());
      if (!stopped) await new Promise<void>((resolve) => (pause = { timer: setTimeout(resolve, nextMs - performance.now()), resolve }));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      if (pause !== undefined) {
        clearTimeout(pause.timer);
        pause.resolve();
      }
      await loop;
      client.close();
    },
  };
}

interface NodeTrend {
  readonly nodeId: number;
  readonly metric: string;
  readonly unit: MetricUnit;
  readonly trend: Trend | undefined;
}

const MIB = 1024 * 1024;
const unitText: Record<MetricUnit, string> = { bytes: 'MiB', count: 'count', percent: '%', ms: 'ms' };
/** A value in the unit's display form: bytes as MiB. */
const shown = (unit: MetricUnit, v: number, digits = 1): string => fmt(unit === 'bytes' ? v / MIB : v, digits);
const mmss = (ms: number): string => `${Math.floor(ms / 60_000)}:${String(Math.floor((ms % 60_000) / 1000)).padStart(2, '0')}`;

/** One line of the latest figures of every node, for a run watched in a log. */
function progressLine(nodes: readonly SoakNode[], atMs: number, previous: { atMs: number; requests: number } | undefined, counts: RequestCounts): string {
  const latest = (name: string) => {
    const metric = SOAK_METRICS.find((m) => m.name === name)!;
    return nodes
      .map((n) => {
        const v = metric.valueOf(n.samples[n.samples.length - 1]!, n.samples[n.samples.length - 2]);
        return v === undefined ? '?' : shown(metric.unit, v, 0);
      })
      .join('/');
  };
  const requestsPerSec = previous === undefined ? undefined : ((counts.requests - previous.requests) / (atMs - previous.atMs)) * 1000;
  return `  ${mmss(atMs)}  requests/s ${requestsPerSec === undefined ? '?' : fmt(requestsPerSec)}  errors ${fmt(counts.errors)}  rss MiB ${latest('rss')} (anon ${latest('rss anon')})  heap MiB ${latest('heap used')}  cpu % ${latest('cpu')}  fds ${latest('open fds')}  timers ${latest('timers')}  disk MiB ${latest('data on disk')}`;
}

/**
 * Who used the machine's CPU in the first warm window and the last, in percent of all cores: the nodes,
 * the bench (load generator and sampler), everyone else. A node's CPU that rises with everyone else's
 * is the machine, not the node.
 */
function machineContext(machine: readonly MachineSample[], nodes: readonly SoakNode[], o: { warmFromMs: number; windowMs: number }): { text: string; windows: Record<string, [first: number, last: number]> } | undefined {
  const cores = os.cpus().length;
  const busy: Point[] = [];
  const bench: Point[] = [];
  for (let i = 1; i < machine.length; i++) {
    const [a, b] = [machine[i - 1]!, machine[i]!];
    if (a.busyTicks === undefined || b.busyTicks === undefined || a.totalTicks === undefined || b.totalTicks === undefined || b.totalTicks === a.totalTicks) continue;
    busy.push({ atMs: b.atMs, value: ((b.busyTicks - a.busyTicks) / (b.totalTicks - a.totalTicks)) * 100 });
    bench.push({ atMs: b.atMs, value: ((b.benchCpuMs - a.benchCpuMs) / (b.atMs - a.atMs) / cores) * 100 });
  }
  const cpu = SOAK_METRICS.find((m) => m.name === 'cpu')!;
  const nodesCpu = new Map<number, number>();
  for (const n of nodes) for (const p of seriesOf(cpu, n.samples)) nodesCpu.set(p.atMs, (nodesCpu.get(p.atMs) ?? 0) + p.value / cores);
  const nodesSeries = [...nodesCpu].map(([atMs, value]) => ({ atMs, value }));
  const firstLast = (points: Point[]) => firstAndLastWindowMeans(points, { fromMs: o.warmFromMs, windowMs: o.windowMs });
  const all = firstLast(busy);
  const ours = firstLast(nodesSeries);
  const client = firstLast(bench);
  if (all === undefined || ours === undefined || client === undefined) return undefined;
  const others: [number, number] = [Math.max(0, all[0] - ours[0] - client[0]), Math.max(0, all[1] - ours[1] - client[1])];
  const pair = ([a, b]: [number, number]) => `${fmt(a)} → ${fmt(b)}`;
  return {
    text: `machine CPU, % of all ${cores} cores, first warm window → last: busy ${pair(all)} (the nodes ${pair(ours)}, the load generator ${pair(client)}, everyone else ${pair(others)})`,
    windows: { busy: all, nodes: ours, loadGenerator: client, others },
  };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadBefore = os.loadavg();
  // Noted before the run: the commit the nodes were built from, not one made while it ran.
  const machineAtStart = machineInfo();
  const counts: RequestCounts = { requests: 0, errors: 0 };
  let system: RunningSystem | undefined;
  let target: Target | undefined;
  let nodes: SoakNode[] = [];
  const machine: MachineSample[] = [];
  let result: RunResult;
  // Ctrl-C still stops the nodes and removes their data (systems.ts kills them on exit, but leaves the dirs).
  process.once('SIGINT', () => {
    void (system?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
  try {
    system = await startFlotilla({ members: MEMBER_COUNT, ranges: rangeCount, cores: coreCount, tempDirPrefix: 'flotilla-soak-', nodeArgs });
    nodes = system.pids.map((pid, i) => ({ nodeId: i + 1, pid, url: system!.urls[i]!, dataDir: system!.dataDirs[i], samples: [], goneAtMs: undefined }));
    console.log(`flotilla: ${system.urls.join(' ')} (pids ${system.pids.join(' ')})`);
    target = counted(await httpTarget(system.urls, { requestTimeoutMs: REQUEST_TIMEOUT_MS, name: 'flotilla', routeToLeaders: true }), counts);
    await loadKeys(target, { keyCount, valueBytes, concurrency: 64 });
    counts.requests = 0;
    counts.errors = 0;
    console.log(`loaded ${fmt(keyCount)} keys; soak: ${fmt(rateOpsPerSec)} ops/s for ${mmss(warmupMs)} warm-up + ${mmss(durationMs)} measured`);

    const bar = new ProgressBar(1);
    const startMs = performance.now();
    let lastLine: { atMs: number; requests: number } | undefined;
    let nextLineMs = 0;
    const sampling = startSampling(nodes, {
      startMs,
      intervalMs: sampleIntervalMs,
      counts,
      machine,
      onRound: (atMs) => {
        if (atMs < nextLineMs) return;
        if (lastLine !== undefined) console.log(progressLine(nodes, atMs, lastLine, counts));
        lastLine = { atMs, requests: counts.requests };
        nextLineMs = atMs + PROGRESS_LINE_MS;
      },
    });
    try {
      result = await run(target, { workload: workload!, distribution, keyCount, valueBytes, concurrency, durationMs, warmupMs, seed, rateOpsPerSec, onProgress: (f) => bar.update(0, f, `soak ${mmss(f * (warmupMs + durationMs))}`) });
    } finally {
      await sampling.stop();
      bar.done();
    }
  } finally {
    await target?.close();
    await system?.stop();
  }

  const trends: NodeTrend[] = nodes.flatMap((n) =>
    SOAK_METRICS.map((metric) => ({ nodeId: n.nodeId, metric: metric.name, unit: metric.unit, trend: trendOf(seriesOf(metric, n.samples), { warmFromMs: warmupMs, windowMs: trendWindowMs, rule: ruleOf(metric) }) })),
  );
  const growing = trends.filter((t) => t.trend?.growing === true);
  const gone = nodes.filter((n) => n.goneAtMs !== undefined);
  const errorCount = Object.values(result.errors).reduce((a, n) => a + n, 0);

  const headline = `soak bench${QUICK ? ' (quick)' : ''}: ${machineHeadline(loadBefore)}`;
  const setup =
    `${MEMBER_COUNT} nodes (${rangeCount} ranges, ${coreCount} core${coreCount === 1 ? '' : 's'} each), workload ${workload!.name} (${workload!.description}), ` +
    `${fmt(keyCount)} keys (${distribution}), ${valueBytes} B values; offered ${fmt(rateOpsPerSec)} ops/s by at most ${concurrency} clients; ` +
    `warm-up ${fmt(warmupMs)} ms, measured ${fmt(durationMs)} ms; sampled every ${fmt(sampleIntervalMs)} ms, trend windows ${fmt(trendWindowMs / 1000)} s` +
    (nodeArgs.length === 0 ? '' : `; nodes started with ${nodeArgs.join(' ')}`);
  const load =
    `load (measured window): ${fmt(result.opsPerSec, 1)} ops/s of ${fmt(rateOpsPerSec)} offered, ${fmt(result.ops)} ops, errors ${errorCount === 0 ? '0' : Object.entries(result.errors).map(([k, n]) => `${k}=${n}`).join(' ')}, ` +
    `conflicts ${fmt(result.conflicts)}; latency p50 ${fmt(result.latencyMs.p50, 2)} ms, p99 ${fmt(result.latencyMs.p99, 2)} ms, max ${fmt(result.latencyMs.max, 1)} ms`;
  const scope = 'heap, external, array buffers, timers, active resources, loop busy: the node\'s main thread (worker threads\' heaps are not in process.memoryUsage()); rss, cpu, open fds, threads: the whole process';
  // Each flagged metric with its mean per window after the warm-up: steady growth, levelling off or a step.
  const verdictLines =
    growing.length === 0
      ? ['growing after warm-up: nothing']
      : [
          `growing after warm-up (first warm window → last; then the mean of every ${fmt(trendWindowMs / 1000)} s window):`,
          ...growing.map(({ nodeId, metric, unit, trend: t }) => {
            const soakMetric = SOAK_METRICS.find((m) => m.name === metric)!;
            const means = windowMeans(seriesOf(soakMetric, nodes.find((n) => n.nodeId === nodeId)!.samples), { fromMs: warmupMs, windowMs: trendWindowMs });
            const perHour = t!.growthPerHour === undefined ? '' : `, ${fmt(t!.growthPerHour * 100)} %/h`;
            return `- node ${nodeId} ${metric}: ${shown(unit, t!.firstWindowMean)} → ${shown(unit, t!.lastWindowMean)} ${unitText[unit]}${perHour}; ${means.map((m) => (Number.isNaN(m) ? '?' : shown(unit, m, 0))).join(' ')}`;
          }),
        ];
  const context = machineContext(machine, nodes, { warmFromMs: warmupMs, windowMs: trendWindowMs });

  const headers = ['node', 'metric', 'unit', 'warm end', 'end', 'min', 'max', 'slope/min', 'growth %/h', 'last÷first', 'growing'];
  const rows = trends.map(({ nodeId, metric, unit, trend: t }) =>
    t === undefined
      ? [String(nodeId), metric, unitText[unit], '', '', '', '', '', '', '', 'no samples']
      : [
          String(nodeId),
          metric,
          unitText[unit],
          shown(unit, t.atWarmEnd),
          shown(unit, t.atEnd),
          shown(unit, t.min),
          shown(unit, t.max),
          shown(unit, t.slopePerMin, unit === 'bytes' ? 3 : 2),
          t.growthPerHour === undefined ? '' : fmt(t.growthPerHour * 100, 1),
          ratio(t.lastOverFirst),
          t.growing ? 'GROWING' : '',
        ],
  );
  console.log(`\n${headline}`);
  console.log(setup);
  console.log(load);
  console.log(`(${scope})`);
  printTable(headers, rows);
  for (const line of verdictLines) console.log(line);
  if (context !== undefined) console.log(context.text);
  if (QUICK) console.log('quick mode: too short to be warm; the trends mean nothing, the run only proves the bench works');
  for (const n of gone) console.log(`node ${n.nodeId} (pid ${n.pid}) exited at ${mmss(n.goneAtMs!)} into the run`);
  console.log(`checksum ${result.checksum}`);

  const file = writeResults('soak', startedAt, {
    command: commandLine(),
    machine: machineAtStart,
    loadAverageBefore: loadBefore,
    loadAverageAfter: os.loadavg(),
    parameters: { rateOpsPerSec, durationMs, warmupMs, valueBytes, keyCount, concurrency, workload: workload!.name, distribution, rangeCount, coreCount, memberCount: MEMBER_COUNT, sampleIntervalMs, trendWindowMs, seed, nodeArgs },
    growthRule: { growthPerHourMin: GROWTH_PER_HOUR_MIN, lastOverFirstMin: LAST_OVER_FIRST_MIN, riseMin: Object.fromEntries(SOAK_METRICS.map((m) => [m.name, m.riseMin])) },
    result,
    trends,
    growing: growing.map(({ nodeId, metric }) => ({ nodeId, metric })),
    machineCpuPercent: context?.windows,
    machineSamples: machine,
    nodesGone: gone.map(({ nodeId, pid, goneAtMs }) => ({ nodeId, pid, goneAtMs })),
    nodes: nodes.map(({ nodeId, pid, url, dataDir, samples }) => ({ nodeId, pid, url, dataDir, samples })),
  });
  writeFileSync(file.replace(/\.json$/, '.md'), [`**${headline}**  `, `${setup}  `, `${load}  `, `(${scope})  `, `command: \`${commandLine()}\``, '', markdownTable(headers, rows), '', ...verdictLines, ...(context === undefined ? [] : ['', context.text]), ''].join('\n'));
  console.log(`results: ${file} (and .md)`);
  if (gone.length > 0 || (values['fail-on-growth'] && growing.length > 0)) process.exitCode = 1;
}

await main();
