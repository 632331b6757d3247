// `flotilla bench` as a user meets it: --help prints the benchmark's flags, a bad flag one line naming it
// and exit code 2 — never a stack trace. Runs the built CLI, which runs the built benchmarks.
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = join(dirname(fileURLToPath(import.meta.resolve('@flotilla/server'))), 'cli.js');
/** Each run parses its flags and exits before any work: seconds at most on a loaded machine. */
const RUN_TIMEOUT_MS = 30_000;

function flotilla(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: RUN_TIMEOUT_MS }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
    });
  });
}

describe('flotilla bench: help and usage errors', () => {
  it.each([
    [['bench', '--help'], 'ycsb-bench (flotilla bench)'],
    [['bench', '-h'], 'ycsb-bench (flotilla bench)'],
    [['bench', 'compare', '--help'], 'compare-bench (flotilla bench compare)'],
    [['bench', 'soak', '--help'], 'soak-bench (flotilla bench soak)'],
  ])('flotilla %j prints the usage and exits 0', async (args, heading) => {
    const run = await flotilla(args);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.startsWith(heading)).toBe(true);
    expect(run.stdout).toContain('--quick');
  }, RUN_TIMEOUT_MS);

  it.each([
    [['bench', '--target', 'nope'], 'ycsb-bench: --target is embedded, embedded-replicated, http, etcd, got "nope"'],
    [['bench', '--target', 'http'], 'ycsb-bench: --target http needs --url URL[,URL...]'],
    [['bench', '--target', 'http', '--url', 'ftp://x'], 'ycsb-bench: --url takes http://HOST:PORT addresses, got "ftp://x"'],
    [['bench', '--workloads', 'a,zz'], 'ycsb-bench: unknown workload "zz"'],
    [['bench', '--concurrency', '0'], 'ycsb-bench: --concurrency must be a positive integer, got "0"'],
    [['bench', '--nope'], "ycsb-bench: Unknown option '--nope'"],
    [['bench', '--threads', '2'], 'ycsb-bench: --target embedded runs in this process: --threads must be 1, got 2'],
    [['bench', '--target', 'http', '--url', 'http://127.0.0.1:1', '--threads', '65'], 'ycsb-bench: --threads is at most 64, got 65'],
    [['bench', 'compare', '--systems', 'flotilla,zz'], 'compare-bench: --systems lists flotilla, etcd, baseline; got "zz"'],
    [['bench', 'compare', '--threads', '0'], 'compare-bench: --threads must be a positive integer, got "0"'],
    [['bench', 'soak', '--rate', 'fast'], 'soak-bench: --rate must be a positive integer, got "fast"'],
  ])('flotilla %j is a usage error: one line, exit code 2', async (args, message) => {
    const run = await flotilla(args);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr.startsWith(message)).toBe(true);
    expect(run.stderr).toMatch(/\(\S+ --help lists its flags\)\n$/);
    expect(run.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  }, RUN_TIMEOUT_MS);
});
