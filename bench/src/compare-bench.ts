// `compare-bench` (npm run bench:compare): Flotilla side by side with etcd, and both against the
// no-consensus baseline, in one run on one machine. Starts a local 3-node Flotilla cluster (`flotilla
// start` processes), a local 3-node etcd cluster (if etcd is installed; otherwise says how to install it
// and skips that side) and the baseline (Flotilla's HTTP stack over an in-memory map), all on loopback;
// loads the same keys into each; then for every workload and concurrency runs each system in turn — the
// order alternating from cell to cell so slow drift of the machine does not favour one — and prints
// per workload ops/s and p99 of each, Flotilla ÷ etcd (ops/s and p99) and Flotilla ÷ baseline. Writes the
// JSON (machine, load average before and during every cell, every result), a Markdown table and an SVG
// chart of throughput and p99 against concurrency to bench/results/. Next to each system's numbers: the CPU
// its processes spent per operation (from /proc; the bench's own client is not counted), which says
// whether a system is slower because it waits or because it works more. For Flotilla also, from its
// nodes' /metrics over each cell: synced commits per second per node, entries per synced commit, and Raft
// messages per operation (what batching and the lazy commit broadcast change).
//
//   npm run bench:compare                              (write, A, B, C, F, scan at 1, 16, 64, 256 clients)
//   node dist/compare-bench.js --workloads write,c --concurrency 64 --duration-ms 20000
//   node dist/compare-bench.js --rounds 3              (every cell three times; the median round is reported)
//   node dist/compare-bench.js --quick                 (CI: tiny, etcd only if installed)
//   node dist/compare-bench.js --threads 4             (the load from 4 threads; default: half the cores, 1 to 4)
//
// Each system is driven the way its own clients do: Flotilla's requests go to the leader of the key's
// range (read from /ranges, refreshed every second; TiKV's and CockroachDB's clients route the same
// way), etcd's are spread over its members (one Raft group: followers forward to the one leader), the
// baseline has one process. Reads are linearizable on both (ReadIndex).
import os from 'node:os';
import { writeFileSync } from 'node:fs';
import { compareChartSvg, type ChartRow } from './compare/chart.js';
import { ETCD_INSTALL_HINT, etcdBinary, startBaseline, startEtcd, startFlotilla, type RunningSystem } from './compare/systems.js';
import { loadKeys, run, type RunOptions, type RunResult, type Target } from './load/runner.js';
import { HttpClient, openTarget, type TargetSpec } from './load/targets.js';
import { LOAD_THREADS_MAX, LoadPool, loadThreadsDefault } from './load/pool.js';
import { commandLine, fmt, machineHeadline, machineInfo, markdownTable, printTable, processesCpuMs, ProgressBar, ratio, writeResults } from './report.js';
import { WORKLOADS, type Workload } from './workload/mix.js';
import { benchArgs, distributionOf, FlagError, flagsOrExit, positiveInt, positiveInts, workloadsOf, type BenchUsage } from './flags.js';

const USAGE: BenchUsage = {
  name: 'compare-bench',
  text: `compare-bench (flotilla bench compare): Flotilla side by side with etcd and a no-consensus baseline,
each started locally on loopback; every workload at every concurrency on each system in turn. Writes
JSON, Markdown and an SVG chart to bench/results/ (bench/README.md explains the table).

  --workloads <list>    ${Object.keys(WORKLOADS).join(',')} (default write,a,b,c,f,scan; quick: write,c,f)
  --concurrency <list>  clients, e.g. 1,16,64,256 (the default; quick: 1,8)
  --systems <list>      flotilla,etcd,baseline (default all three; etcd only if installed)
  --rounds <n>          every cell n times, the median round reported (default 1)
  --dist <d>            uniform or zipfian (default zipfian)
  --keys <n>            keys loaded first (default 10000; quick: 200)
  --value-bytes <n>     value size (default 16)
  --duration-ms <ms>    measured time per cell (default 5000; quick: 300)
  --warmup-ms <ms>      unmeasured time before each cell (default 1000; quick: 100)
  --ranges <n>          Flotilla's ranges (default 16)
  --cores <n>           worker cores per Flotilla node (default 1)
  --threads <n>         load threads the clients are dealt over (default: half the cores, 1 to 4;
                        here ${loadThreadsDefault()}; quick: 2, so CI runs the pool)
  --seed <n>            the workload's seed (default 1)
  --quick               CI: tiny
  -h, --help            this text`,
};

const { values } = benchArgs(USAGE, {
  options: {
    quick: { type: 'boolean', default: false },
    workloads: { type: 'string' },
    concurrency: { type: 'string' },
    dist: { type: 'string', default: 'zipfian' },
    keys: { type: 'string' },
    'value-bytes': { type: 'string', default: '16' },
    'duration-ms': { type: 'string' },
    'warmup-ms': { type: 'string' },
    ranges: { type: 'string', default: '16' },
    cores: { type: 'string', default: '1' },
    systems: { type: 'string', default: 'flotilla,etcd,baseline' },
    seed: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '1' },
    threads: { type: 'string' },
  },
  strict: true,
});

const QUICK = values.quick;
const { workloads, concurrencies, distribution, keyCount, valueBytes, durationMs, warmupMs, rangeCount, coreCount, seed, rounds, wanted, threadCount } = flagsOrExit(USAGE, () => {
  const wanted = new Set(values.systems.split(','));
  for (const s of wanted) if (!['flotilla', 'etcd', 'baseline'].includes(s)) throw new FlagError(`--systems lists flotilla, etcd, baseline; got "${s}"`);
  const threadCount = values.threads === undefined ? (QUICK ? 2 : loadThreadsDefault()) : positiveInt(values.threads, '--threads');
  if (threadCount > LOAD_THREADS_MAX) throw new FlagError(`--threads is at most ${LOAD_THREADS_MAX}, got ${threadCount}`);
  return {
    workloads: workloadsOf(values.workloads ?? (QUICK ? 'write,c,f' : 'write,a,b,c,f,scan')),
    concurrencies: positiveInts(values.concurrency ?? (QUICK ? '1,8' : '1,16,64,256'), '--concurrency'),
    distribution: distributionOf(values.dist),
    keyCount: positiveInt(values.keys ?? (QUICK ? '200' : '10000'), '--keys'),
    valueBytes: positiveInt(values['value-bytes'], '--value-bytes'),
    durationMs: positiveInt(values['duration-ms'] ?? (QUICK ? '300' : '5000'), '--duration-ms'),
    warmupMs: positiveInt(values['warmup-ms'] ?? (QUICK ? '100' : '1000'), '--warmup-ms'),
    rangeCount: positiveInt(values.ranges, '--ranges'),
    coreCount: positiveInt(values.cores, '--cores'),
    seed: positiveInt(values.seed, '--seed'),
    rounds: positiveInt(values.rounds, '--rounds'),
    wanted,
    threadCount,
  };
});

/** The baseline's map scans by sorting every key (it is a test double): its scan numbers would say nothing. */
const baselineServes = (w: Workload) => !w.name.startsWith('scan');

interface Cell {
  round: number;
  workload: string;
  concurrency: number;
  system: string;
  loadAverageDuring: number[];
  /** CPU the system's processes used per measured operation (warm-up included in the CPU, so a slight overestimate). */
  cpuMsPerOp: number | undefined;
  /** Flotilla only: its nodes' Raft counters over the cell (raftCounters). */
  raft?: { syncsPerSecPerNode: number; entriesPerSync: number; messagesPerOp: number } | undefined;
  result: RunResult;
}

interface Side {
  readonly system: RunningSystem;
  /** Opened in this thread (loading the keys, one load thread); the pool's threads open their own from `spec`. */
  readonly target: Target;
  readonly spec: TargetSpec;
}

async function sideOf(system: RunningSystem, spec: TargetSpec): Promise<Side> {
  return { system, target: await openTarget(spec), spec };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadBefore = os.loadavg();
  const skipped: string[] = [];
  const sides: Side[] = [];
  const etcd = wanted.has('etcd') ? etcdBinary() : undefined;
  if (wanted.has('etcd') && etcd === undefined) {
    console.log(`${ETCD_INSTALL_HINT}; skipping the etcd side.`);
    skipped.push('etcd (not installed)');
  }
  const cells: Cell[] = [];
  let flotillaRangesAtEnd: string | undefined;
  let pool: LoadPool | undefined;
  try {
    if (wanted.has('flotilla')) {
      const system = await startFlotilla({ members: 3, ranges: rangeCount, cores: coreCount });
      sides.push(await sideOf(system, { kind: 'http', urls: system.urls, requestTimeoutMs: 10_000, name: 'flotilla', routeToLeaders: true }));
    }
    if (etcd !== undefined) {
      const system = await startEtcd({ members: 3, binary: etcd });
      sides.push(await sideOf(system, { kind: 'etcd', urls: system.urls, requestTimeoutMs: 10_000 }));
    }
    if (wanted.has('baseline')) {
      const system = await startBaseline();
      sides.push(await sideOf(system, { kind: 'http', urls: system.urls, requestTimeoutMs: 10_000, name: 'baseline' }));
    }
    for (const s of sides) console.log(`${s.system.name}: ${s.system.urls.join(' ')} (pids ${s.system.pids.join(' ')})`);
    for (const s of sides) await loadKeys(s.target, { keyCount, valueBytes, concurrency: 64 });
    if (threadCount > 1) pool = await LoadPool.start(threadCount);

    const plan: { round: number; workload: Workload; concurrency: number; side: Side }[] = [];
    let flip = false;
    for (let round = 0; round < rounds; round++) {
      for (const workload of workloads) {
        for (const concurrency of concurrencies) {
          const here = sides.filter((s) => s.system.name !== 'baseline' || baselineServes(workload));
          for (const side of flip ? [...here].reverse() : here) plan.push({ round, workload, concurrency, side });
          flip = !flip;
        }
      }
    }
    const bar = new ProgressBar(plan.length);
    for (const [i, { round, workload, concurrency, side }] of plan.entries()) {
      const label = `${rounds > 1 ? `round ${round + 1}: ` : ''}${side.system.name} ${workload.name} × ${concurrency}`;
      bar.update(i, 0, label);
      let loadAverageDuring: number[] = [];
      const sampler = setTimeout(() => (loadAverageDuring = os.loadavg()), warmupMs + durationMs / 2);
      const isFlotilla = side.system.name === 'flotilla';
      const raftBefore = isFlotilla ? await raftCounters(side.system.urls) : undefined;
      const cpuBefore = processesCpuMs(side.system.pids);
      const options: RunOptions = { workload, distribution, keyCount, valueBytes, concurrency, durationMs, warmupMs, seed, onProgress: (f) => bar.update(i, f, label) };
      const result = await (pool === undefined ? run(side.target, options) : pool.run(side.spec, options));
      const cpuAfter = processesCpuMs(side.system.pids);
      const raftAfter = isFlotilla ? await raftCounters(side.system.urls) : undefined;
      clearTimeout(sampler);
      // The CPU of the whole run over the measured ops, scaled to the measured share of the run.
      const measuredShare = result.durationMs / (result.durationMs + warmupMs);
      const cpuMsPerOp = cpuBefore === undefined || cpuAfter === undefined || result.ops === 0 ? undefined : ((cpuAfter - cpuBefore) * measuredShare) / result.ops;
      let raft: Cell['raft'];
      if (raftBefore !== undefined && raftAfter !== undefined && result.ops > 0) {
        const syncs = raftAfter.syncs - raftBefore.syncs;
        raft = {
          syncsPerSecPerNode: syncs / ((result.durationMs + warmupMs) / 1000) / side.system.urls.length,
          entriesPerSync: syncs === 0 ? 0 : (raftAfter.entries - raftBefore.entries) / syncs,
          messagesPerOp: ((raftAfter.messages - raftBefore.messages) * measuredShare) / result.ops,
        };
      }
      cells.push({ round, workload: workload.name, concurrency, system: side.system.name, loadAverageDuring, cpuMsPerOp, raft, result });
    }
    bar.done();
    // The placement driver runs as it would for a user (it may split a range under load or move leaders):
    // what it did shows here.
    const flotilla = sides.find((s) => s.system.name === 'flotilla');
    if (flotilla !== undefined) flotillaRangesAtEnd = await rangesSummary(flotilla.system.urls);
  } finally {
    await pool?.close();
    for (const s of sides) await s.target.close();
    await Promise.all(sides.map((s) => s.system.stop()));
  }

  const systems = sides.map((s) => s.system.name);
  // With several rounds, each cell reports its median round by ops/s (the JSON keeps every round).
  const fullCellOf = (workload: string, concurrency: number, system: string) => {
    const all = cells.filter((c) => c.workload === workload && c.concurrency === concurrency && c.system === system).sort((a, b) => a.result.opsPerSec - b.result.opsPerSec);
    return all[Math.floor((all.length - 1) / 2)];
  };
  const cellOf = (workload: string, concurrency: number, system: string) => fullCellOf(workload, concurrency, system)?.result;
  const headline = machineHeadline(loadBefore);
  const setup = `${fmt(keyCount)} keys (${distribution}), ${valueBytes} B values, ${fmt(warmupMs)} ms warm-up + ${fmt(durationMs)} ms per cell${rounds > 1 ? `, median of ${rounds} rounds` : ''}; ${threadCount} load thread${threadCount === 1 ? '' : 's'}; Flotilla: 3 nodes, ${rangeCount} ranges, ${coreCount} core${coreCount === 1 ? '' : 's'} each`;
  console.log(`\ncompare bench${QUICK ? ' (quick)' : ''}: ${headline}`);
  console.log(setup);
  if (skipped.length > 0) console.log(`skipped: ${skipped.join(', ')}`);
  if (flotillaRangesAtEnd !== undefined) console.log(`Flotilla at the end: ${flotillaRangesAtEnd}`);

  const headers = ['workload', 'clients', ...systems.flatMap((s) => [`${s} ops/s`, `${s} p99 ms`, `${s} CPU µs/op`]), ...(systems.includes('etcd') ? ['÷etcd ops/s', '÷etcd p99'] : []), ...(systems.includes('baseline') ? ['÷baseline ops/s'] : []), 'errors'];
  const rows: string[][] = [];
  for (const workload of workloads) {
    for (const concurrency of concurrencies) {
      const f = cellOf(workload.name, concurrency, 'flotilla');
      const e = cellOf(workload.name, concurrency, 'etcd');
      const b = cellOf(workload.name, concurrency, 'baseline');
      const errors = systems
        .map((s) => {
          const r = cellOf(workload.name, concurrency, s);
          const n = r === undefined ? 0 : Object.values(r.errors).reduce((a, x) => a + x, 0);
          return n === 0 ? '' : `${s}:${Object.entries(r!.errors).map(([k, v]) => `${k}=${v}`).join('/')}`;
        })
        .filter((x) => x !== '')
        .join(' ');
      rows.push([
        workload.name,
        String(concurrency),
        ...systems.flatMap((s) => {
          const c = fullCellOf(workload.name, concurrency, s);
          if (c === undefined) return ['—', '—', '—'];
          return [fmt(c.result.opsPerSec), fmt(c.result.latencyMs.p99, 2), c.cpuMsPerOp === undefined ? '' : fmt(c.cpuMsPerOp * 1000)];
        }),
        ...(systems.includes('etcd') ? [f && e ? ratio(f.opsPerSec / e.opsPerSec) : '', f && e ? ratio(f.latencyMs.p99 / e.latencyMs.p99) : ''] : []),
        ...(systems.includes('baseline') ? [f && b ? ratio(f.opsPerSec / b.opsPerSec) : ''] : []),
        errors || '0',
      ]);
    }
  }
  printTable(headers, rows);
  const raftRows = workloads.flatMap((w) =>
    concurrencies.flatMap((c) => {
      const raft = fullCellOf(w.name, c, 'flotilla')?.raft;
      return raft === undefined ? [] : [[w.name, String(c), fmt(raft.syncsPerSecPerNode), fmt(raft.entriesPerSync, 1), fmt(raft.messagesPerOp, 1)]];
    }),
  );
  if (raftRows.length > 0) {
    console.log('\nFlotilla\'s write path (/metrics of every node over the cell, warm-up included):');
    printTable(['workload', 'clients', 'syncs/s per node', 'entries per sync', 'Raft messages per op'], raftRows);
  }
  if (systems.includes('flotilla') && systems.includes('etcd')) console.log('÷etcd: Flotilla over etcd (ops/s: above 1 is faster; p99: below 1 is lower).');
  if (systems.includes('flotilla') && systems.includes('baseline')) console.log('÷baseline: Flotilla over its own HTTP stack with no consensus (the HTTP ceiling of this machine).');
  console.log(`checksum ${cells.reduce((a, c) => (a + c.result.checksum) >>> 0, 0)}`);

  const file = writeResults('compare', startedAt, {
    command: commandLine(),
    machine: machineInfo(),
    loadAverageBefore: loadBefore,
    loadAverageAfter: os.loadavg(),
    parameters: { workloads: workloads.map((w) => w.name), concurrencies, threadCount, distribution, keyCount, valueBytes, durationMs, warmupMs, rangeCount, coreCount, rounds, systems, skipped },
    flotillaRangesAtEnd,
    cells,
  });
  const markdown = [
    `**compare bench** — ${headline}  `,
    `${setup}  `,
    ...(flotillaRangesAtEnd === undefined ? [] : [`Flotilla at the end: ${flotillaRangesAtEnd}  `]),
    `command: \`${commandLine()}\``,
    '',
    markdownTable(headers, rows),
    '',
    ...(raftRows.length === 0 ? [] : ["Flotilla's write path (/metrics of every node over the cell, warm-up included):", '', markdownTable(['workload', 'clients', 'syncs/s per node', 'entries per sync', 'Raft messages per op'], raftRows), '']),
  ].join('\n');
  writeFileSync(file.replace(/\.json$/, '.md'), markdown);
  const chartRows: ChartRow[] = workloads.map((w) => ({
    workload: w.name,
    series: systems.map((system) => ({
      system,
      points: concurrencies.flatMap((c) => {
        const r = cellOf(w.name, c, system);
        return r === undefined ? [] : [[c, r.opsPerSec, r.latencyMs.p99] as const];
      }),
    })),
  }));
  writeFileSync(file.replace(/\.json$/, '.svg'), compareChartSvg({ title: 'Flotilla vs etcd vs the no-consensus baseline', subtitle: `${headline}. ${setup}`, concurrencies, rows: chartRows }));
  console.log(`results: ${file} (and .md, .svg)`);
}

/**
 * Synced commits, entries persisted and Raft messages sent, summed over
 * every node's /metrics (each node counts its own cores); undefined if a
 * node does not answer.
 */
async function raftCounters(urls: readonly string[]): Promise<{ syncs: number; entries: number; messages: number } | undefined> {
  const totals = { syncs: 0, entries: 0, messages: 0 };
  const names: Record<string, keyof typeof totals> = {
    flotilla_core_commits_synced_total: 'syncs',
    flotilla_core_entries_persisted_total: 'entries',
    flotilla_core_messages_sent_total: 'messages',
  };
  for (const url of urls) {
    let text: string;
    try {
      const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) });
      if (!res.ok) return undefined;
      text = await res.text();
    } catch {
      return undefined;
    }
    for (const line of text.split('\n')) {
      const name = line.slice(0, line.search(/[{ ]/));
      const field = names[name];
      if (field !== undefined) totals[field] += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return totals;
}

/** How many ranges the cluster has and how their leaders spread over the nodes, from /ranges. */
async function rangesSummary(urls: readonly string[]): Promise<string | undefined> {
  const client = new HttpClient(urls, 5_000);
  try {
    const res = await client.request('GET', '/ranges');
    if (res.status !== 200) return undefined;
    const ranges = (JSON.parse(res.body.toString('utf8')) as { ranges: { leader: number }[] }).ranges;
    const byLeader = new Map<number, number>();
    for (const r of ranges) byLeader.set(r.leader, (byLeader.get(r.leader) ?? 0) + 1);
    const leaders = [...byLeader].sort((a, b) => a[0] - b[0]).map(([n, c]) => `node ${n}: ${c}`).join(', ');
    return `${ranges.length} ranges (meta included; ${rangeCount + 1} at the start), leaders ${leaders}`;
  } catch {
    return undefined;
  } finally {
    client.close();
  }
}

await main();
