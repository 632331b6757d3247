// `ycsb-bench`: the workloads of issue 7 (write-only, YCSB A, B, C, F, scan-heavy; uniform or zipfian keys)
// against a target — the embedded API in this process, or a running cluster over HTTP — at one or more
// concurrencies. Prints a table (ops/s, errors by kind, conflicts, latency p50/p90/p99/p99.9/max from an
// HDR histogram) and writes the JSON with the machine and the load average before and during each run.
//
//   node dist/ycsb-bench.js --target embedded --workloads write,a,b,c,f,scan --concurrency 1,16,64
//   node dist/ycsb-bench.js --target embedded-replicated --workloads write --concurrency 512   (3 members in this process)
//   node dist/ycsb-bench.js --target http --url http://127.0.0.1:8101,http://127.0.0.1:8102 --route leaders --workloads a
//   node dist/ycsb-bench.js --target etcd --url http://127.0.0.1:2379 --workloads a   (etcd v3's JSON gateway)
//   node dist/ycsb-bench.js --quick          (CI: every workload, tiny, embedded)
//   flotilla bench ...                       (the same, through the CLI)
//
// --route leaders sends each operation to its range's leader (read from /ranges); the default spreads
// them over the URLs and lets the nodes forward. --threads deals the clients of an http or etcd run out
// over load threads (load/pool.ts); embedded targets run in this process. The side-by-side run against
// etcd is compare-bench.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { assert } from '@flotilla/core';
import { open } from '@flotilla/server';
import { pino } from 'pino';
import { loadKeys, run, type RunOptions, type RunResult, type Target } from './load/runner.js';
import { freePorts } from './compare/systems.js';
import { kvStoreTarget, openTarget, type TargetSpec } from './load/targets.js';
import { LOAD_THREADS_MAX, LoadPool, loadThreadsDefault } from './load/pool.js';
import { benchArgs, distributionOf, FlagError, flagsOrExit, httpUrl, positiveInt, positiveInts, workloadsOf, type BenchUsage } from './flags.js';
import { WORKLOADS } from './workload/mix.js';
import { commandLine, fmt, machineHeadline, machineInfo, markdownTable, printTable, ProgressBar, writeResults } from './report.js';
import { compareChartSvg, type ChartRow } from './compare/chart.js';

const USAGE: BenchUsage = {
  name: 'ycsb-bench',
  text: `ycsb-bench (flotilla bench): the workloads against one target at one or more concurrencies; prints
the table and writes JSON, Markdown and SVG to bench/results/ (bench/README.md explains every column).

  --target <t>          embedded (default), embedded-replicated (3 members in this process),
                        http (a running cluster, --url), etcd (etcd v3's JSON gateway, --url)
  --url <URL,...>       the target's HTTP addresses (http, etcd)
  --route <r>           http: any (default; nodes forward) or leaders (each op to its range's leader)
  --threads <n>         http, etcd: load threads the clients are dealt over (default: half the cores,
                        1 to 4; here ${loadThreadsDefault()}); embedded targets run in this process (1 only)
  --workloads <list>    ${Object.keys(WORKLOADS).join(',')} (default write,a,b,c,f,scan)
  --concurrency <list>  clients, e.g. 1,16,64 (default 1,16,64; quick: 4)
  --dist <d>            uniform or zipfian (default zipfian)
  --keys <n>            keys loaded first (default 100000; quick: 1000)
  --value-bytes <n>     value size (default 16)
  --duration-ms <ms>    measured time per row (default 10000; quick: 300)
  --warmup-ms <ms>      unmeasured time before each row (default 2000; quick: 100)
  --ops <n>             stop a row after this many operations
  --ranges <n>          embedded-replicated: ranges (default 16)
  --seed <n>            the workload's seed (default 1)
  --quick               CI: every workload, tiny, embedded
  -h, --help            this text`,
};

const { values } = benchArgs(USAGE, {
  options: {
    quick: { type: 'boolean', default: false },
    target: { type: 'string', default: 'embedded' },
    url: { type: 'string' },
    route: { type: 'string', default: 'any' },
    workloads: { type: 'string', default: 'write,a,b,c,f,scan' },
    dist: { type: 'string', default: 'zipfian' },
    keys: { type: 'string' },
    'value-bytes': { type: 'string', default: '16' },
    concurrency: { type: 'string' },
    'duration-ms': { type: 'string' },
    'warmup-ms': { type: 'string' },
    ops: { type: 'string' },
    seed: { type: 'string', default: '1' },
    ranges: { type: 'string', default: '16' },
    threads: { type: 'string' },
  },
  strict: true,
});

const TARGETS = ['embedded', 'embedded-replicated', 'http', 'etcd'] as const;
const QUICK = values.quick;
const { keyCount, valueBytes, concurrencies, durationMs, warmupMs, rangeCount, opCountMax, distribution, workloads, seed, urls, threadCount } = flagsOrExit(USAGE, () => {
  if (!(TARGETS as readonly string[]).includes(values.target)) throw new FlagError(`--target is ${TARGETS.join(', ')}, got "${values.target}"`);
  if (values.route !== 'any' && values.route !== 'leaders') throw new FlagError(`--route is any or leaders, got "${values.route}"`);
  const needsUrl = values.target === 'http' || values.target === 'etcd';
  if (needsUrl && values.url === undefined) throw new FlagError(`--target ${values.target} needs --url URL[,URL...]`);
  const urls = needsUrl ? values.url!.split(',').map((u) => httpUrl(u, '--url')) : [];
  const threadCount = values.threads === undefined ? (needsUrl ? loadThreadsDefault() : 1) : positiveInt(values.threads, '--threads');
  if (threadCount > LOAD_THREADS_MAX) throw new FlagError(`--threads is at most ${LOAD_THREADS_MAX}, got ${threadCount}`);
  if (!needsUrl && threadCount !== 1) throw new FlagError(`--target ${values.target} runs in this process: --threads must be 1, got ${threadCount}`);
  return {
    keyCount: positiveInt(values.keys ?? (QUICK ? '1000' : '100000'), '--keys'),
    valueBytes: positiveInt(values['value-bytes'], '--value-bytes'),
    concurrencies: positiveInts(values.concurrency ?? (QUICK ? '4' : '1,16,64'), '--concurrency'),
    durationMs: positiveInt(values['duration-ms'] ?? (QUICK ? '300' : '10000'), '--duration-ms'),
    warmupMs: positiveInt(values['warmup-ms'] ?? (QUICK ? '100' : '2000'), '--warmup-ms'),
    rangeCount: positiveInt(values.ranges, '--ranges'),
    opCountMax: values.ops === undefined ? undefined : positiveInt(values.ops, '--ops'),
    distribution: distributionOf(values.dist),
    workloads: workloadsOf(values.workloads),
    seed: positiveInt(values.seed, '--seed'),
    urls,
    threadCount,
  };
});

/** The target; for http and etcd also its spec, from which load threads open their own connections. */
async function targetOf(): Promise<{ target: Target; spec?: TargetSpec; cleanup: () => void }> {
  if (values.target === 'http' || values.target === 'etcd') {
    const spec: TargetSpec = values.target === 'http' ? { kind: 'http', urls, requestTimeoutMs: 10_000, routeToLeaders: values.route === 'leaders' } : { kind: 'etcd', urls, requestTimeoutMs: 10_000 };
    return { target: await openTarget(spec), spec, cleanup: () => undefined };
  }
  const dir = mkdtempSync(join(os.tmpdir(), 'flotilla-ycsb-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const logger = pino({ level: 'warn' }) as never;
  if (values.target === 'embedded') {
    const store = await open({ dir, logger });
    return { target: kvStoreTarget('embedded', store, () => store.close()), cleanup };
  }
  assert(values.target === 'embedded-replicated', () => `--target ${values.target} passed the flag checks`);
  // Three members of one cluster in this process (open() with \`cluster\`), each with its own worker core,
  // over TCP on loopback; the operations go through member 1's store, which forwards to the range leaders.
  const ports = await freePorts(3);
  const peersOf = (id: number) => Object.fromEntries([1, 2, 3].filter((p) => p !== id).map((p) => [p, `127.0.0.1:${ports[p - 1]}`]));
  const members = await Promise.all(
    [1, 2, 3].map((id) => open({ dir: join(dir, `node-${id}`), logger, cluster: { nodeId: id, listen: { host: '127.0.0.1', port: ports[id - 1]! }, peers: peersOf(id), initialRangeCount: rangeCount } })),
  );
  const close = async () => {
    await Promise.all(members.map((m) => m.close()));
  };
  return { target: kvStoreTarget('embedded-replicated', members[0]!, close), cleanup };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadBefore = os.loadavg();
  const { target, spec, cleanup } = await targetOf();
  const runs: { workload: string; distribution: string; concurrency: number; loadAverageDuring: number[]; result: RunResult }[] = [];
  let pool: LoadPool | undefined;
  try {
    await loadKeys(target, { keyCount, valueBytes, concurrency: 32 });
    // One load thread is this one: no pool, the clients run beside the progress bar as before.
    if (spec !== undefined && threadCount > 1) pool = await LoadPool.start(threadCount);
    const runRow = (o: RunOptions) => (pool === undefined || spec === undefined ? run(target, o) : pool.run(spec, o));
    const bar = new ProgressBar(workloads.length * concurrencies.length);
    for (const workload of workloads) {
      for (const concurrency of concurrencies) {
        const step = runs.length;
        const label = `${workload.name} × ${concurrency}`;
        let loadAverageDuring: number[] = [];
        const sampler = setTimeout(() => (loadAverageDuring = os.loadavg()), warmupMs + durationMs / 2);
        const result = await runRow({ workload, distribution, keyCount, valueBytes, concurrency, durationMs, warmupMs, seed, onProgress: (f) => bar.update(step, f, label), ...(opCountMax === undefined ? {} : { opCountMax }) });
        clearTimeout(sampler);
        runs.push({ workload: workload.name, distribution, concurrency, loadAverageDuring, result });
      }
    }
    bar.done();
  } finally {
    await pool?.close();
    await target.close();
    cleanup();
  }
  const headline = `ycsb bench${QUICK ? ' (quick)' : ''} → ${target.name}: ${machineHeadline(loadBefore)}`;
  const setup = `${fmt(keyCount)} keys (${distribution}), ${valueBytes} B values; ${fmt(warmupMs)} ms warm-up, ${fmt(durationMs)} ms measured per row; ${threadCount} load thread${threadCount === 1 ? '' : 's'}`;
  console.log(headline);
  console.log(setup);
  const headers = ['workload', 'clients', 'ops/s', 'errors', 'conflicts', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'load avg'];
  const rows = runs.map(({ workload, concurrency, loadAverageDuring, result: r }) => [
    workload,
    String(concurrency),
    fmt(r.opsPerSec),
    Object.entries(r.errors).map(([k, n]) => `${k}:${n}`).join(' ') || '0',
    fmt(r.conflicts),
    fmt(r.latencyMs.p50, 2),
    fmt(r.latencyMs.p90, 2),
    fmt(r.latencyMs.p99, 2),
    fmt(r.latencyMs.p999, 2),
    fmt(r.latencyMs.max, 1),
    loadAverageDuring.length === 0 ? '' : loadAverageDuring[0]!.toFixed(2),
  ]);
  printTable(headers, rows);
  console.log(`checksum ${runs.reduce((a, r) => (a + r.result.checksum) >>> 0, 0)}`);
  const file = writeResults('ycsb', startedAt, { command: commandLine(), machine: machineInfo(), loadAverageBefore: loadBefore, loadAverageAfter: os.loadavg(), parameters: { target: target.name, threadCount, keyCount, valueBytes, distribution, durationMs, warmupMs, opCountMax }, runs });
  writeFileSync(file.replace(/\.json$/, '.md'), `**${headline}**  \n${setup}  \ncommand: \`${commandLine()}\`\n\n${markdownTable(headers, rows)}\n`);
  const chartRows: ChartRow[] = workloads.map((w) => ({
    workload: w.name,
    series: [{ system: target.name, points: runs.filter((r) => r.workload === w.name).map((r) => [r.concurrency, r.result.opsPerSec, r.result.latencyMs.p99] as const) }],
  }));
  writeFileSync(file.replace(/\.json$/, '.svg'), compareChartSvg({ title: `ycsb → ${target.name}`, subtitle: `${headline}. ${setup}`, concurrencies, rows: chartRows }));
  console.log(`results: ${file} (and .md, .svg)`);
}

await main();
