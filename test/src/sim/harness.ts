// Running the simulator from tests: seeds, the environment that selects them,
// and failure reports that carry the tail of the run's trace.
import { openSync, writeSync } from 'node:fs';
import { profileByName, type ShellBug, type SimOptions, type SimOverrides } from './options.js';
import { SimFailure, Simulator, type SimResult } from './simulator.js';
import { NO_TRACE, StreamingTracer, TailTracer, type Tracer } from './trace.js';

/** Trace lines printed with a failure: enough to see the last elections and a few Ready cycles. */
const FAILURE_TRACE_LINE_COUNT = 120;

/**
 * Runs one seed. On failure the run is replayed with a trace (the same seed
 * takes the same path) so the error shows what led up to it.
 */
export function runSeed(options: SimOptions, trace: Tracer = NO_TRACE): SimResult {
  try {
    return new Simulator(options, trace).run();
  } catch (err) {
    if (!(err instanceof SimFailure) || trace.enabled) throw err;
    const tail = new TailTracer(FAILURE_TRACE_LINE_COUNT);
    let note = '';
    try {
      new Simulator(options, tail).run();
      note = ' (NOT reproduced when traced: the run is not deterministic)';
    } catch (again) {
      if (!(again instanceof SimFailure) || again.where.step !== err.where.step || again.code !== err.code) {
        note = ` (traced replay failed differently: ${again instanceof Error ? again.message.split('\n')[0] : String(again)})`;
      }
    }
    throw new SimFailure(err.code, err.options, err.where, err.detail + note, tail.lines());
  }
}

/** Simulator settings read from the environment; see test/README.md. */
export interface SimEnvironment {
  /** FLOTILLA_SEED: replay this one seed instead of the CI seed set. */
  readonly seed: number | undefined;
  /** FLOTILLA_SIM_SEEDS: long mode, run this many seeds per cluster size. */
  readonly seedCount: number | undefined;
  /** FLOTILLA_SIM_FIRST_SEED: where the seed range starts (default 0), to explore seeds CI does not run. */
  readonly firstSeed: number | undefined;
  readonly overrides: SimOverrides;
  /** FLOTILLA_SIM_TRACE: `1` prints every event of a replayed run; a path writes them to that file. */
  readonly trace: string | undefined;
}

function intFromEnv(env: NodeJS.ProcessEnv, name: string, options: { min: number; max: number }): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < options.min || n > options.max) {
    throw new RangeError(`${name} must be an integer in [${options.min}, ${options.max}], got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function simEnvironment(env: NodeJS.ProcessEnv = process.env): SimEnvironment {
  const nodeCount = intFromEnv(env, 'FLOTILLA_SIM_NODES', { min: 3, max: 5 });
  if (nodeCount !== undefined && nodeCount !== 3 && nodeCount !== 5) throw new RangeError(`FLOTILLA_SIM_NODES must be 3 or 5, got ${nodeCount}`);
  const profileName = env.FLOTILLA_SIM_PROFILE;
  const faultTicks = intFromEnv(env, 'FLOTILLA_SIM_TICKS', { min: 1, max: 1_000_000 });
  const bug = env.FLOTILLA_SIM_SHELL_BUG;
  if (bug !== undefined && bug !== '' && bug !== 'none' && bug !== 'sendBeforePersist') {
    throw new RangeError(`FLOTILLA_SIM_SHELL_BUG must be none or sendBeforePersist, got ${JSON.stringify(bug)}`);
  }
  const overrides: { -readonly [K in keyof SimOverrides]: SimOverrides[K] } = {};
  if (nodeCount !== undefined) overrides.nodeCount = nodeCount;
  if (profileName !== undefined && profileName !== '') overrides.profile = profileByName(profileName);
  if (faultTicks !== undefined) overrides.faultTicks = faultTicks;
  if (bug !== undefined && bug !== '') overrides.shellBug = bug as ShellBug;
  return {
    seed: intFromEnv(env, 'FLOTILLA_SEED', { min: 0, max: 0xffffffff }),
    seedCount: intFromEnv(env, 'FLOTILLA_SIM_SEEDS', { min: 1, max: 10_000_000 }),
    firstSeed: intFromEnv(env, 'FLOTILLA_SIM_FIRST_SEED', { min: 0, max: 0xffffffff }),
    overrides,
    trace: env.FLOTILLA_SIM_TRACE === undefined || env.FLOTILLA_SIM_TRACE === '' || env.FLOTILLA_SIM_TRACE === '0' ? undefined : env.FLOTILLA_SIM_TRACE,
  };
}

/**
 * The tracer FLOTILLA_SIM_TRACE asks for: every line to stdout (`1`) or to a
 * file (any other value, a path). Writes are synchronous: vitest forwards a
 * worker's process.stdout asynchronously and drops what is still queued
 * when the run ends.
 */
export function envTracer(e: SimEnvironment): Tracer {
  if (e.trace === undefined) return NO_TRACE;
  if (e.trace === '1') return new StreamingTracer((line) => console.log(line));
  const fd = openSync(e.trace, 'w');
  return new StreamingTracer((line) => writeSync(fd, `${line}\n`));
}

