// Command-line values the workload benchmarks (ycsb-bench, compare-bench, soak-bench) share: each checked,
// with the flag named in the error; and their --help and usage errors (benchArgs, flagsOrExit).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { RunOptions } from './load/runner.js';
import { WORKLOADS, type Workload } from './workload/mix.js';

/** A flag with a value the benchmark cannot take: a usage error (exit code 2), never a stack trace. */
export class FlagError extends RangeError {
  readonly code = 'FLAG_INVALID';
}

export function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new FlagError(`${flag} must be a positive integer, got "${value}"`);
  return n;
}

/** A comma-separated list of positive integers (e.g. --concurrency 1,16,64). */
export function positiveInts(list: string, flag: string): number[] {
  return list.split(',').map((v) => positiveInt(v, flag));
}

export function distributionOf(value: string): RunOptions['distribution'] {
  if (value === 'uniform' || value === 'zipfian') return value;
  throw new FlagError(`--dist is uniform or zipfian, got "${value}"`);
}

/** An http:// URL (the load's HTTP client speaks plain HTTP only). */
export function httpUrl(value: string, flag: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== 'http:') throw new FlagError(`${flag} takes http://HOST:PORT addresses, got "${value}"`);
  return value;
}

/** A comma-separated list of workload names (see WORKLOADS). */
export function workloadsOf(list: string): Workload[] {
  return list.split(',').map((w) => {
    const found = WORKLOADS[w];
    if (found === undefined) throw new FlagError(`unknown workload "${w}"; known: ${Object.keys(WORKLOADS).join(', ')}`);
    return found;
  });
}

/** The exit code of a usage error, as `flotilla` uses it (server/src/cli/exit-codes.ts). */
const USAGE_EXIT_CODE = 2;

/** What a benchmark prints for --help, and names itself by in a usage error. */
export interface BenchUsage {
  /** e.g. "ycsb-bench". */
  readonly name: string;
  /** The whole --help text: what it runs, then every flag. */
  readonly text: string;
}

/**
 * parseArgs for a benchmark's command line: --help (or -h) prints the usage and exits 0; an unknown flag
 * or a missing value prints one line naming it and exits 2.
 */
export function benchArgs<T extends ParseArgsConfig>(usage: BenchUsage, config: T): ReturnType<typeof parseArgs<T>> {
  const args = config.args ?? process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(usage.text);
    process.exit(0);
  }
  try {
    return parseArgs<T>({ ...config, args });
  } catch (err) {
    if (String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) usageExit(usage, (err as Error).message);
    throw err;
  }
}

/** Runs `read` (the flags' values, checked); a FlagError it throws is a usage error: one line, exit 2. */
export function flagsOrExit<R>(usage: BenchUsage, read: () => R): R {
  try {
    return read();
  } catch (err) {
    if (err instanceof FlagError) usageExit(usage, err.message);
    throw err;
  }
}

function usageExit(usage: BenchUsage, message: string): never {
  console.error(`${usage.name}: ${message}\n(${usage.name} --help lists its flags)`);
  process.exit(USAGE_EXIT_CODE);
}
