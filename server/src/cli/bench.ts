// `flotilla bench`: runs the benchmarks of @flotilla/bench (ycsb-bench, or the one BENCH_SCRIPTS names,
// e.g. compare-bench for `bench compare`) in a child process with the rest of the arguments, which the
// benchmark parses itself (`flotilla bench --help` is its usage). The bench package depends on this one,
// not the other way round: it is found where it is installed next to it (in this repository, always).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CliError, EXIT } from './exit-codes.js';

/** The benchmarks `flotilla bench <name>` runs; without a name, ycsb-bench. */
export const BENCH_SCRIPTS: ReadonlyMap<string, string> = new Map([
  ['compare', 'compare-bench.js'],
  ['soak', 'soak-bench.js'],
]);

/** Runs the benchmark; resolves with its exit code (a death by signal as a shell reports it: 128 + the signal's number). */
export async function bench(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  const named = sub === undefined ? undefined : BENCH_SCRIPTS.get(sub);
  const script = named ?? 'ycsb-bench.js';
  let path: string;
  try {
    path = fileURLToPath(new URL(`dist/${script}`, import.meta.resolve('@flotilla/bench/package.json')));
  } catch {
    throw new CliError(EXIT.internal, 'flotilla bench needs the @flotilla/bench package, which is part of the repository, not of the published packages (in the repository: npm ci && npm run build)');
  }
  if (!existsSync(path)) throw new CliError(EXIT.internal, `${path} is missing: build the benchmarks first (npm run build)`);
  const child = spawn(process.execPath, [path, ...(named === undefined ? args : rest)], { stdio: 'inherit' });
  // The benchmark owns the terminal while it runs; a Ctrl-C reaches it too (same process group) and it
  // cleans up itself, so this process only waits for its exit code.
  const ignore = () => undefined;
  process.on('SIGINT', ignore);
  try {
    return await new Promise((done) => {
      child.once('exit', (code, signal) => done(code ?? 128 + (signal === null ? 0 : constants.signals[signal])));
    });
  } finally {
    process.off('SIGINT', ignore);
  }
}
