#!/usr/bin/env node
// `npm run faults -- [flags]`: fault runs against real node processes (test/README.md, "Fault suite").
// Prints the seed and the command that replays each run; exit code 1 if any check failed, 2 on bad flags.
import { randomInt } from 'node:crypto';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { findLibfaketime } from '../nemesis/clock.js';
import { ADMIN_KINDS, FAULT_KINDS, type AdminKind, type FaultKind } from '../nemesis/schedule.js';
import { runFaults, type RunOptions } from './run.js';

const USAGE = `usage: npm run faults -- [--seed N] [--seeds COUNT] [--nodes 3|5] [--duration SECONDS]
         [--faults all|${FAULT_KINDS.join(',')}] [--admin all|none|${ADMIN_KINDS.join(',')}]
         [--clients N] [--keys N] [--ops-per-key N] [--rate OPS_PER_SEC] [--request-timeout-ms MS] [--value-bytes N]
         [--ranges N] [--tick-ms MS] [--rss-max-mb MB] [--dir DIR] [--keep] [--node-log-level warn]
  --seed      first seed (default: random, printed); --seeds runs that many seeds from it
  --duration  fault phase in seconds (default 30); healing and checks come after
  --faults    default all; clock needs libfaketime (Debian's faketime package)
  --value-bytes  pad every value to about N bytes (default: a short unique name), so lagging peers lag in bytes`;

class UsageError extends Error {}

/** Defaults per cluster size: enough clients to keep every node busy, few enough for a 2-core machine. */
const DEFAULTS = {
  durationSec: 30,
  clientsPer3: 8,
  clientsPer5: 10,
  keys: 6,
  opsPerKey: 120,
  opsPerSec: 150,
  requestTimeoutMs: 8_000,
  ranges: 4,
  tickMs: 50,
  rssMaxMb: 1_024,
  /**
   * Search steps per key: a violation among many unknown writes can take the search long to prove, and a
   * key left undecided fails the run anyway — a short bound keeps a bad run short.
   */
  checkerStepsMax: 10_000_000,
} as const;

function positive(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, got "${value}"`);
  return n;
}

function listOf<T extends string>(value: string | undefined, flag: string, all: readonly T[], fallback: readonly T[]): T[] {
  if (value === undefined) return [...fallback];
  if (value === 'all') return [...all];
  if (value === 'none') return [];
  const items = value.split(',').filter((s) => s.length > 0);
  for (const i of items) if (!all.includes(i as T)) throw new UsageError(`${flag}: unknown "${i}" (known: ${all.join(', ')})`);
  return items as T[];
}

export interface CliRun {
  readonly options: Omit<RunOptions, 'log'>;
  readonly seeds: number[];
  /** The flags that differ from the defaults, to replay a seed with. */
  readonly replayFlags: string[];
}

export function parseCli(argv: readonly string[]): CliRun {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seed: { type: 'string' },
      seeds: { type: 'string' },
      nodes: { type: 'string' },
      duration: { type: 'string' },
      faults: { type: 'string' },
      admin: { type: 'string' },
      clients: { type: 'string' },
      keys: { type: 'string' },
      'ops-per-key': { type: 'string' },
      rate: { type: 'string' },
      'request-timeout-ms': { type: 'string' },
      'value-bytes': { type: 'string' },
      ranges: { type: 'string' },
      'tick-ms': { type: 'string' },
      'rss-max-mb': { type: 'string' },
      dir: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'node-log-level': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) throw new UsageError('');
  const nodeCount = positive(values.nodes, '--nodes', 3);
  if (nodeCount < 3) throw new UsageError(`--nodes must be at least 3, got ${nodeCount}`);
  const first = values.seed === undefined ? randomInt(1, 2 ** 31) : positive(values.seed, '--seed', 1);
  const seedCount = positive(values.seeds, '--seeds', 1);
  const replayFlags: string[] = [];
  for (const [flag, value] of Object.entries(values)) {
    if (['seed', 'seeds', 'keep', 'help', 'dir'].includes(flag) || value === undefined) continue;
    replayFlags.push(`--${flag}`, String(value));
  }
  return {
    seeds: Array.from({ length: seedCount }, (_, i) => first + i),
    replayFlags,
    options: {
      seed: first,
      nodeCount,
      durationMs: positive(values.duration, '--duration', DEFAULTS.durationSec) * 1000,
      faults: listOf(values.faults, '--faults', FAULT_KINDS, FAULT_KINDS),
      admin: listOf(values.admin, '--admin', ADMIN_KINDS, ADMIN_KINDS),
      clientCount: positive(values.clients, '--clients', nodeCount >= 5 ? DEFAULTS.clientsPer5 : DEFAULTS.clientsPer3),
      slotCount: positive(values.keys, '--keys', DEFAULTS.keys),
      opsPerKey: positive(values['ops-per-key'], '--ops-per-key', DEFAULTS.opsPerKey),
      opsPerSec: positive(values.rate, '--rate', DEFAULTS.opsPerSec),
      requestTimeoutMs: positive(values['request-timeout-ms'], '--request-timeout-ms', DEFAULTS.requestTimeoutMs),
      valuePaddingBytes: values['value-bytes'] === undefined ? 0 : positive(values['value-bytes'], '--value-bytes', 1),
      rangeCount: positive(values.ranges, '--ranges', DEFAULTS.ranges),
      tickMs: positive(values['tick-ms'], '--tick-ms', DEFAULTS.tickMs),
      rssBytesMax: positive(values['rss-max-mb'], '--rss-max-mb', DEFAULTS.rssMaxMb) * 1024 * 1024,
      dir: values.dir ?? tmpdir(),
      keepDir: values.keep,
      nodeLogLevel: values['node-log-level'] ?? 'warn',
      checkerStepsMax: DEFAULTS.checkerStepsMax,
    },
  };
}

export function replayCommand(seed: number, replayFlags: readonly string[]): string {
  return ['npm run faults --', '--seed', String(seed), ...replayFlags].join(' ');
}

async function main(argv: string[]): Promise<number> {
  let cli: CliRun;
  try {
    cli = parseCli(argv);
  } catch (err) {
    const message = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? (err as Error).message : undefined;
    if (message === undefined) throw err;
    console.error(`${message.length > 0 ? `faults: ${message}\n\n` : ''}${USAGE}`);
    return 2;
  }
  if (cli.options.faults.includes('clock')) {
    try {
      findLibfaketime();
    } catch (err) {
      const others = FAULT_KINDS.filter((k) => k !== 'clock' && cli.options.faults.includes(k));
      console.error(`faults: ${(err as Error).message}${others.length === 0 ? '' : `\n(or leave clock faults out: --faults ${others.join(',')})`}`);
      return 2;
    }
  }
  // SIGINT / SIGTERM: stop the node processes and unmount before exiting, not leave them behind.
  const abort = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    console.log(`=== ${signal}: stopping`);
    abort.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const failed: number[] = [];
  for (const seed of cli.seeds) {
    if (abort.signal.aborted) break;
    const replay = replayCommand(seed, cli.replayFlags);
    console.log(`=== fault run, seed ${seed} — replay: ${replay}`);
    const report = await runFaults({ ...cli.options, seed, log: (line) => console.log(line), signal: abort.signal });
    if (report.ok) console.log(`=== seed ${seed}: PASSED (${report.operationCount} operations, ${report.unknownCount} with unknown outcome)`);
    else {
      failed.push(seed);
      console.log(`=== seed ${seed}: FAILED — ${report.failures.length} problem(s):`);
      for (const f of report.failures) console.log(`  - ${f.split('\n').join('\n    ')}`);
      console.log(`=== replay: ${replay}${report.dir === null ? '' : `   (node data and logs kept in ${report.dir})`}`);
    }
  }
  if (cli.seeds.length > 1) console.log(`=== ${cli.seeds.length - failed.length} of ${cli.seeds.length} seeds passed${failed.length > 0 ? `; failed: ${failed.join(', ')}` : ''}`);
  return failed.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`faults: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
