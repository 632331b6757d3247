// The fault suite's short version, as CI runs it: the built runner (dist/runner/cli.js, what `npm run
// faults` runs) against 3- and 5-node clusters of real `flotilla start` processes, a few seeds of ~25 s
// of every fault (clock faults included: CI installs libfaketime), and one run of clock faults met with
// cuts of the clock node. Every check of a run must pass; a failure prints the seed and the command that
// replays it.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const RUNNER = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'runner', 'cli.js');
/** Fault phase per run; with startup, healing and the checks a run takes about 10 s more. */
const DURATION_SEC = 25;
/** A run's budget: the fault phase, recovery and convergence waits (60 s each at most), checks. */
const RUN_TIMEOUT_MS = 240_000;
/** After SIGTERM, the runner's time to stop its node processes before it is killed. */
const STOP_GRACE_MS = 10_000;

/** CI's seeds; FLOTILLA_FAULT_SEEDS="7,8" runs others (each on both cluster sizes). */
const SEEDS_3 = process.env['FLOTILLA_FAULT_SEEDS']?.split(',').map(Number) ?? [1, 2];
const SEEDS_5 = process.env['FLOTILLA_FAULT_SEEDS']?.split(',').map(Number) ?? [3, 4];
/**
 * The clock run: a leader cut off from its followers while its clock steps back must not answer from a
 * lease stretched by the step. Seed 52 meets two such cuts in 40 s (the schedule is a pure function of
 * the seed); a build whose lease check ignores a clock stepped back fails about half of such cuts
 * (test/README.md, "Clock faults"). FLOTILLA_CLOCK_FAULT_SEEDS="21" runs others.
 */
const CLOCK_SEEDS = process.env['FLOTILLA_CLOCK_FAULT_SEEDS']?.split(',').map(Number) ?? [52];
const CLOCK_DURATION_SEC = 40;
const CLOCK_FAULTS = 'clock,isolate,partition';

/** Runs the runner; past `timeoutMs` it is told to stop (SIGTERM: it stops its node processes first), then killed. */
function runFaults(args: readonly string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUNNER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const term = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    const kill = setTimeout(() => child.kill('SIGKILL'), timeoutMs + STOP_GRACE_MS);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve({ code, output });
    });
  });
}

describe('fault suite against node processes (short)', () => {
  it('has a built runner (turbo builds before it tests)', () => {
    expect(existsSync(RUNNER), `${RUNNER} is missing: npx turbo run build`).toBe(true);
  });

  const runPasses = async (seed: number, args: readonly string[]) => {
    const { code, output } = await runFaults(['--seed', String(seed), ...args], RUN_TIMEOUT_MS);
    // The whole report, pass or fail: it starts with the seed and the command that replays it.
    console.log(output);
    const tail = output.split('\n').filter((l) => l.startsWith('===') || l.startsWith('  - ')).join('\n');
    expect(code, `fault run failed (exit ${code}):\n${tail}`).toBe(0);
    expect(output).toContain(`=== fault run, seed ${seed} — replay: npm run faults -- --seed ${seed}`);
    return output;
  };

  for (const [nodes, seeds] of [[3, SEEDS_3], [5, SEEDS_5]] as const) {
    for (const seed of seeds) {
      it(`${nodes} nodes, seed ${seed}: linearizable, nothing lost, replicas agree, no node died unkilled, memory bounded`, async () => {
        await runPasses(seed, ['--nodes', String(nodes), '--duration', String(DURATION_SEC)]);
      }, RUN_TIMEOUT_MS + 2 * STOP_GRACE_MS);
    }
  }

  for (const seed of CLOCK_SEEDS) {
    it(`3 nodes, seed ${seed}, clock faults met with cuts: no stale read from a leader whose clock stepped back`, async () => {
      const output = await runPasses(seed, ['--nodes', '3', '--duration', String(CLOCK_DURATION_SEC), '--faults', CLOCK_FAULTS]);
      // The run met what it is for: a clock stepped back on the cut-off node it had just made leader.
      expect(output).toMatch(/nemesis: gathering on node \d+ the lead/);
      expect(output).toMatch(/nemesis: clock: node \d+'s clock steps back/);
    }, RUN_TIMEOUT_MS + 2 * STOP_GRACE_MS);
  }
});
