// Command-line values the workload benchmarks (ycsb-bench, compare-bench) share: each checked, with the
// flag named in the error.
import type { RunOptions } from './load/runner.js';
import { WORKLOADS, type Workload } from './workload/mix.js';

export function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${flag} must be a positive integer, got "${value}"`);
  return n;
}

/** A comma-separated list of positive integers (e.g. --concurrency 1,16,64). */
export function positiveInts(list: string, flag: string): number[] {
  return list.split(',').map((v) => positiveInt(v, flag));
}

export function distributionOf(value: string): RunOptions['distribution'] {
  if (value === 'uniform' || value === 'zipfian') return value;
  throw new RangeError(`--dist is uniform or zipfian, got "${value}"`);
}

/** A comma-separated list of workload names (see WORKLOADS). */
export function workloadsOf(list: string): Workload[] {
  return list.split(',').map((w) => {
    const found = WORKLOADS[w];
    if (found === undefined) throw new RangeError(`unknown workload "${w}"; known: ${Object.keys(WORKLOADS).join(', ')}`);
    return found;
  });
}
