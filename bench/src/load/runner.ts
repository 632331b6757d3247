import { SeededRng } from '@flotilla/core';
import hdr from 'hdr-histogram-js';
import { keyOf, scrambledZipfianKeys, uniformKeys, type KeyChooser } from '../workload/keys.js';
import { checkWorkload, pick, type OpKind, type Workload } from '../workload/mix.js';

/**
 * What a benchmark drives: the operations of the workloads, against the
 * in-process API, a cluster over HTTP, or etcd. A conditional put that
 * loses its race answers `{ ok: false }` (counted as a conflict, not an
 * error: YCSB F's expected outcome under contention).
 */
export interface Target {
  readonly name: string;
  get(key: Uint8Array): Promise<{ readonly version: number } | undefined>;
  put(key: Uint8Array, value: Uint8Array, options?: { readonly ifVersion?: number }): Promise<{ readonly ok: boolean }>;
  /** Reads up to `limit` keys from `start` on; resolves to how many came back. */
  scan(start: Uint8Array, limit: number): Promise<number>;
  /** Deleting an absent key succeeds. */
  delete(key: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export interface RunOptions {
  readonly workload: Workload;
  readonly distribution: 'uniform' | 'zipfian';
  readonly keyCount: number;
  readonly valueBytes: number;
  /** Clients, each with one operation in flight. */
  readonly concurrency: number;
  /** Measured time; ends early once `opCountMax` operations were measured. */
  readonly durationMs: number;
  readonly opCountMax?: number;
  /** Run, but not measured, before the measured time. */
  readonly warmupMs: number;
  /**
   * A fixed offered load (operations per second over all clients, warm-up included); the clients bound
   * how many are in flight. Without it each client sends its next operation as soon as the last answered.
   */
  readonly rateOpsPerSec?: number;
  readonly scanLength?: number;
  readonly seed: number;
  /** Called about every 100 ms with the share of the run (warm-up included) done, for a progress bar. */
  readonly onProgress?: (fraction: number) => void;
}

export interface RunResult {
  readonly ops: number;
  readonly opsPerSec: number;
  readonly durationMs: number;
  /** By kind: the error's code (or message class), conflicts of conditional writes apart. */
  readonly errors: Readonly<Record<string, number>>;
  readonly conflicts: number;
  readonly byOp: Readonly<Partial<Record<OpKind, number>>>;
  /** Milliseconds, from an HDR histogram of microseconds (3 significant digits). */
  readonly latencyMs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly p999: number; readonly max: number };
  /** Sum of versions and scan counts seen: the work was done. */
  readonly checksum: number;
}

/** Latencies above this (µs) are recorded as this: a minute. */
const LATENCY_US_MAX = 60_000_000;
const SCAN_LENGTH_DEFAULT = 10;

/** Writes every key once so reads find values (YCSB's load phase); `concurrency` at a time. */
export async function loadKeys(target: Target, o: { keyCount: number; valueBytes: number; concurrency: number }): Promise<void> {
  const value = valueOf(o.valueBytes, 0);
  let next = 0;
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      for (let i = next++; i < o.keyCount; i = next++) {
        for (let attempt = 0; ; attempt++) {
          try {
            await target.put(keyOf(i), value);
            break;
          } catch (err) {
            if (attempt >= 5) throw err;
          }
        }
      }
    }),
  );
}

export async function run(target: Target, o: RunOptions): Promise<RunResult> {
  checkWorkload(o.workload);
  if (o.rateOpsPerSec !== undefined && !(o.rateOpsPerSec > 0 && Number.isFinite(o.rateOpsPerSec))) throw new RangeError(`rate ${o.rateOpsPerSec} ops/s must be a positive number`);
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 });
  const errors: Record<string, number> = {};
  const byOp: Partial<Record<OpKind, number>> = {};
  let conflicts = 0;
  let checksum = 0;
  let measured = 0;
  const seedRng = new SeededRng(o.seed);
  const startMs = performance.now();
  const measureFromMs = startMs + o.warmupMs;
  const endMs = measureFromMs + o.durationMs;
  const nextSlot = o.rateOpsPerSec === undefined ? undefined : offeredLoad(startMs, o.rateOpsPerSec);
  let measuredEndMs = endMs;
  const done = () => {
    const now = performance.now();
    if (now >= endMs) return true;
    if (o.opCountMax !== undefined && measured >= o.opCountMax) {
      measuredEndMs = Math.min(measuredEndMs, now);
      return true;
    }
    return false;
  };
  const progress =
    o.onProgress === undefined
      ? undefined
      : setInterval(() => {
          const byTime = (performance.now() - startMs) / (o.warmupMs + o.durationMs);
          const byCount = o.opCountMax === undefined ? 0 : measured / o.opCountMax;
          o.onProgress!(Math.max(byTime, byCount));
        }, 100);
  await Promise.all(
    Array.from({ length: o.concurrency }, async (_, client) => {
      const rng = seedRng.fork();
      const keys: KeyChooser = o.distribution === 'uniform' ? uniformKeys(o.keyCount, rng) : scrambledZipfianKeys(o.keyCount, rng);
      for (let i = 0; !done(); i++) {
        if (nextSlot !== undefined) {
          await nextSlot();
          if (done()) break;
        }
        const op = pick(o.workload, rng.nextFloat());
        const key = keyOf(keys.next());
        const t0 = performance.now();
        try {
          checksum = (checksum + (await runOp(target, op, key, valueOf(o.valueBytes, client * 1_000_003 + i), o.scanLength ?? SCAN_LENGTH_DEFAULT, () => conflicts++))) >>> 0;
          if (t0 >= measureFromMs && t0 < endMs) {
            histogram.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round((performance.now() - t0) * 1000))));
            measured++;
            byOp[op] = (byOp[op] ?? 0) + 1;
          }
        } catch (err) {
          if (t0 < measureFromMs) continue;
          const code = (err as { code?: unknown }).code;
          const kind = typeof code === 'string' ? code : (err as Error).name ?? 'Error';
          errors[kind] = (errors[kind] ?? 0) + 1;
        }
      }
    }),
  );
  if (progress !== undefined) clearInterval(progress);
  const durationMs = Math.max(1, Math.min(measuredEndMs, performance.now()) - measureFromMs);
  const at = (p: number) => histogram.getValueAtPercentile(p) / 1000;
  const result: RunResult = {
    ops: measured,
    opsPerSec: (measured / durationMs) * 1000,
    durationMs,
    errors,
    conflicts,
    byOp,
    latencyMs: { p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: histogram.maxValue / 1000 },
    checksum,
  };
  histogram.destroy();
  return result;
}

async function runOp(target: Target, op: OpKind, key: Uint8Array, value: Uint8Array, scanLength: number, conflict: () => void): Promise<number> {
  switch (op) {
    case 'read':
      return (await target.get(key))?.version ?? 0;
    case 'update':
    case 'insert':
      await target.put(key, value);
      return 1;
    case 'readModifyWrite': {
      // YCSB F: read, then write back conditioned on the version read (a lost race is a conflict).
      const current = await target.get(key);
      const { ok } = await target.put(key, value, { ifVersion: current?.version ?? 0 });
      if (!ok) conflict();
      return ok ? 1 : 0;
    }
    case 'scan':
      return target.scan(key, scanLength);
    case 'delete':
      await target.delete(key);
      return 1;
  }
}

/**
 * The start times of a fixed offered load: slot n at `startMs + n × 1000 / rate`, handed out in order to
 * whichever client asks next, which waits for it. The schedule never slips: after a stall that kept every
 * client busy, the slots already past are sent at once (a burst no larger than the clients allow), so
 * the achieved rate says whether the target kept up.
 */
function offeredLoad(startMs: number, rateOpsPerSec: number): () => Promise<void> {
  let slot = 0;
  return async () => {
    const waitMs = startMs + (slot++ * 1000) / rateOpsPerSec - performance.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
  };
}

/** A value of `bytes` bytes that differs per write (so nothing can be deduplicated). */
function valueOf(bytes: number, salt: number): Uint8Array {
  const v = Buffer.alloc(bytes, 0x61);
  if (bytes >= 4) v.writeUInt32BE(salt >>> 0, 0);
  return v;
}
