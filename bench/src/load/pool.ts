import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { assert } from '@flotilla/core';
import { Piscina } from 'piscina';
import type { PoolAnswer, PoolTask } from './pool-worker.js';
import { beginRun, decodePart, reportProgress, resultOf, startedAt, stopRun, type RunOptions, type RunPart, type RunResult, type RunShare } from './runner.js';
import type { TargetSpec } from './targets.js';

/**
 * Load threads for a network target: one process's event loop tops out near 30,000 HTTP requests/s of
 * node:http client work, below what the write path is meant to serve, so a run's clients are dealt out
 * over a piscina pool, one long task per thread per run. Each thread opens its own connections (from a
 * TargetSpec), runs its share of the clients over the run's common window and returns its counts and
 * HDR histogram; this thread adds them up (runner.ts `resultOf`), so ops/s and every percentile are
 * exact over all the clients. Client c runs on thread c mod n and takes the seed's c-th fork, as it
 * would in one thread: which keys and values each client sends does not depend on the thread count.
 * The shared counters (`opCountMax`, a rate's slots, stop) live in a SharedArrayBuffer.
 *
 * Embedded targets cannot use it: their store is in this process.
 */
export class LoadPool {
  private constructor(
    private readonly piscina: Piscina<PoolTask, PoolAnswer>,
    readonly threadCount: number,
  ) {}

  /** Starts `threadCount` threads and returns once every one has loaded the worker module and answered. */
  static async start(threadCount: number): Promise<LoadPool> {
    if (!(Number.isSafeInteger(threadCount) && threadCount >= 1 && threadCount <= LOAD_THREADS_MAX)) throw new RangeError(`load threads ${threadCount} must be an integer in [1, ${LOAD_THREADS_MAX}]`);
    const piscina = new Piscina<PoolTask, PoolAnswer>({
      filename: workerPath(),
      minThreads: threadCount,
      maxThreads: threadCount,
      // One task per thread at a time: a run gives each thread exactly one.
      concurrentTasksPerWorker: 1,
      // Not 'sync' (the default): it parks a thread in Atomics.wait between tasks, with its event loop
      // stopped; a run's sockets close asynchronously after its task answered.
      atomics: 'disabled',
    });
    const pool = new LoadPool(piscina, threadCount);
    try {
      // A barrier: each `ready` task waits until all have arrived, so each is on its own thread; and every
      // thread has booted and loaded its modules before the first run (whose window waits for all).
      const arrived = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
      const answers = await Promise.all(Array.from({ length: threadCount }, () => piscina.run({ kind: 'ready', arrived, threadCount, timeoutMs: READY_TIMEOUT_MS })));
      const threadIds = new Set(answers.map((a) => a.threadId));
      assert(threadIds.size === threadCount, () => `${threadCount} ready tasks ran on ${threadIds.size} threads`);
    } catch (err) {
      await piscina.destroy();
      throw err;
    }
    return pool;
  }

  /**
   * One run (runner.ts `run`'s options and result) over the pool's threads; with fewer clients than
   * threads, some threads sit it out. If a thread fails, the others are stopped and the error thrown.
   */
  async run(spec: TargetSpec, o: RunOptions): Promise<RunResult> {
    const { onProgress: _, ...options } = o;
    const shareCount = Math.min(this.threadCount, o.concurrency);
    const window = beginRun(o, shareCount);
    const shares: RunShare[] = Array.from({ length: shareCount }, (_, t) => {
      const clients: number[] = [];
      for (let c = t; c < o.concurrency; c += shareCount) clients.push(c);
      return { options, clients, window };
    });
    const progress = reportProgress(o, window);
    try {
      const settled = await Promise.allSettled(
        shares.map(async (share) => {
          try {
            const answer = await this.piscina.run({ kind: 'run', spec, share });
            assert(answer.kind === 'run', () => `a run task answered ${answer.kind}`);
            return { threadId: answer.threadId, part: decodePart(answer.part) };
          } catch (err) {
            stopRun(window);
            throw err;
          }
        }),
      );
      const parts: RunPart[] = [];
      const threadIds = new Set<number>();
      let failure: unknown;
      for (const s of settled) {
        if (s.status === 'rejected') failure ??= s.reason;
        else {
          parts.push(s.value.part);
          threadIds.add(s.value.threadId);
        }
      }
      try {
        if (failure !== undefined) throw failure;
        assert(threadIds.size === shares.length, () => `${shares.length} shares ran on ${threadIds.size} threads`);
        return resultOf(o, startedAt(window), parts);
      } finally {
        for (const p of parts) p.histogram.destroy();
      }
    } finally {
      progress.stop();
    }
  }

  async close(): Promise<void> {
    await this.piscina.destroy();
  }
}

/**
 * The default load thread count for a network target: half the cores, at least 1 and at most 4. The
 * benchmarks usually run beside the servers they drive (compare-bench and soak-bench start them here),
 * and a load thread the servers cannot keep busy only takes CPU from them: on 2 shared cores a second
 * thread bought no requests/s and cost more client CPU per request (bench/README.md, "The load
 * generator"). Against a cluster elsewhere, give --threads the cores.
 */
export function loadThreadsDefault(): number {
  return Math.max(1, Math.min(LOAD_THREADS_DEFAULT_MAX, Math.floor(os.availableParallelism() / 2)));
}

const LOAD_THREADS_DEFAULT_MAX = 4;
/** More threads than any machine this runs on has cores; a bound so a typo cannot start thousands. */
export const LOAD_THREADS_MAX = 64;
/** How long the threads may take to boot and load the bench's modules (~100 ms each when idle). */
const READY_TIMEOUT_MS = 30_000;

/** dist/load/pool-worker.js, also when this module runs from src/ under a test runner (worker threads run JavaScript). */
function workerPath(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return fileURLToPath(new URL('../../dist/load/pool-worker.js', import.meta.url));
  return fileURLToPath(new URL('./pool-worker.js', import.meta.url));
}
