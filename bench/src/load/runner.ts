import { assert, SeededRng } from '@flotilla/core';
import hdr, { type Histogram } from 'hdr-histogram-js';
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
  /** Measured operations by load thread (one entry when the run was in this thread): how evenly a pool shared the load. */
  readonly opsByThread: readonly number[];
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

/**
 * The counters every thread of one run shares: an Int32Array over a SharedArrayBuffer, updated with
 * Atomics (a run in one thread uses the same). Besides the start, only a run that needs one touches it:
 * the measured count with `opCountMax`, the next slot with a rate; a plain run pays one load of the
 * state per operation.
 */
const SHARED_STATE = 0;
/** Shares that are ready (target open, clients set up). */
const SHARED_ARRIVED = 1;
/** When the window started, in µs after `RunWindow.beganProcessMs`: written by the last share to arrive, before the state turns RUNNING. */
const SHARED_START_US = 2;
const SHARED_MEASURED = 3;
const SHARED_NEXT_SLOT = 4;
const SHARED_LENGTH = 5;
/** SHARED_STATE: waiting for every share; running (the window has started); stopped (a thread failed: every client stops). */
const STATE_GATHERING = 0;
const STATE_RUNNING = 1;
const STATE_STOPPED = 2;
/** What an Int32Array slot holds: the bound on `opCountMax` (plus the clients' overshoot), on the slots of a rate, on the start in µs. */
const SHARED_COUNT_MAX = 2 ** 31 - 1;
/**
 * How long the shares may take to get ready: pool threads open their own connections (leader routing
 * reads /cluster and /ranges first) and set up their clients (a zipfian client computes ζ(n) once, O(n)).
 */
const GATHER_TIMEOUT_MS = 60_000;
const GATHER_POLL_MS = 1;
assert(GATHER_TIMEOUT_MS * 1000 < SHARED_COUNT_MAX, 'the start in µs fits the shared slot');

/**
 * Milliseconds on the process's monotonic clock (uv_hrtime), which every thread reads alike:
 * `performance.now()` counts from each thread's own start, so times crossing threads are on this clock.
 */
export const processMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** One run's shared counters, made before any share starts; the same for every thread. */
export interface RunWindow {
  /** processMs() when the run was begun; the window (its warm-up first) starts once every share is ready. */
  readonly beganProcessMs: number;
  /** How many shares run: the window starts when this many arrived. */
  readonly shareCount: number;
  readonly shared: Int32Array;
}

/** The options a share of the clients runs with: plain data, so it crosses to a pool thread. */
export type ShareOptions = Omit<RunOptions, 'onProgress'>;

/** What one thread runs: some of the run's clients, over the run's common window. */
export interface RunShare {
  readonly options: ShareOptions;
  /** Client numbers in [0, concurrency): client c takes the seed's c-th fork, whichever thread runs it. */
  readonly clients: readonly number[];
  readonly window: RunWindow;
}

/** What one share did. The histogram lives in the share's thread; `encodePart` is how it crosses. */
export interface RunPart {
  readonly histogram: Histogram;
  /** The exact largest latency (µs): a histogram decoded from its encoding rounds it up to its bucket's top. */
  readonly latencyMaxUs: number;
  readonly measured: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly conflicts: number;
  readonly byOp: Readonly<Partial<Record<OpKind, number>>>;
  readonly checksum: number;
  /** processMs() when the run's measured count reached `opCountMax` in this share; undefined if not in this one. */
  readonly countReachedProcessMs: number | undefined;
}

/** Checks the options and makes the shared counters of a run of `shareCount` shares. */
export function beginRun(o: RunOptions, shareCount: number, beganProcessMs = processMs()): RunWindow {
  checkWorkload(o.workload);
  if (o.rateOpsPerSec !== undefined && !(o.rateOpsPerSec > 0 && Number.isFinite(o.rateOpsPerSec))) throw new RangeError(`rate ${o.rateOpsPerSec} ops/s must be a positive number`);
  if (o.opCountMax !== undefined && !(Number.isSafeInteger(o.opCountMax) && o.opCountMax >= 1 && o.opCountMax + o.concurrency <= SHARED_COUNT_MAX)) {
    throw new RangeError(`op count ${o.opCountMax} must be a positive integer at most ${SHARED_COUNT_MAX - o.concurrency} (the shared counter is 32-bit)`);
  }
  const slotCount = o.rateOpsPerSec === undefined ? 0 : (o.rateOpsPerSec * (o.warmupMs + o.durationMs)) / 1000;
  if (slotCount + o.concurrency > SHARED_COUNT_MAX) throw new RangeError(`rate ${o.rateOpsPerSec} ops/s over ${o.warmupMs + o.durationMs} ms is ${slotCount} slots, more than the shared counter holds (${SHARED_COUNT_MAX})`);
  assert(Number.isSafeInteger(shareCount) && shareCount >= 1, () => `a run of ${shareCount} shares`);
  assert(shareCount <= o.concurrency, () => `${shareCount} shares of ${o.concurrency} clients: a share without clients`);
  return { beganProcessMs, shareCount, shared: new Int32Array(new SharedArrayBuffer(SHARED_LENGTH * Int32Array.BYTES_PER_ELEMENT)) };
}

/** processMs() when the window of a run whose every share returned, none failing, started. */
export function startedAt(window: RunWindow): number {
  const startProcessMs = windowStartProcessMs(window);
  assert(startProcessMs !== undefined, 'every share returned and none failed, so the window started and was not stopped');
  return startProcessMs;
}

/** Runs every client in this thread. */
export async function run(target: Target, o: RunOptions): Promise<RunResult> {
  const window = beginRun(o, 1);
  const progress = reportProgress(o, window);
  const { onProgress: _, ...options } = o;
  try {
    const part = await runShare(target, { options, clients: Array.from({ length: o.concurrency }, (_, c) => c), window });
    try {
      return resultOf(o, startedAt(window), [part]);
    } finally {
      part.histogram.destroy();
    }
  } finally {
    progress.stop();
  }
}

/** Calls `o.onProgress` about every 100 ms with the share of the run done (by time, or by count with `opCountMax`). */
export function reportProgress(o: RunOptions, window: RunWindow): { stop(): void } {
  if (o.onProgress === undefined) return { stop: () => undefined };
  const onProgress = o.onProgress;
  const timer = setInterval(() => {
    const startProcessMs = windowStartProcessMs(window);
    const byTime = startProcessMs === undefined ? 0 : (processMs() - startProcessMs) / (o.warmupMs + o.durationMs);
    const byCount = o.opCountMax === undefined ? 0 : Atomics.load(window.shared, SHARED_MEASURED) / o.opCountMax;
    onProgress(Math.max(byTime, byCount));
  }, 100);
  return { stop: () => clearInterval(timer) };
}

/** Tells every share of the run to stop at its clients' next operation, or not to start. */
export function stopRun(window: RunWindow): void {
  Atomics.store(window.shared, SHARED_STATE, STATE_STOPPED);
}

/** processMs() when the window started (the warm-up's start); undefined until every share is ready, or if the run was stopped. */
function windowStartProcessMs(window: RunWindow): number | undefined {
  // START_US is written before the state turns RUNNING (both seq-cst), so it is there once RUNNING is.
  if (Atomics.load(window.shared, SHARED_STATE) !== STATE_RUNNING) return undefined;
  return window.beganProcessMs + Atomics.load(window.shared, SHARED_START_US) / 1000;
}

/**
 * Waits until every share of the run is ready; the last to arrive starts the window for all, so no
 * thread's clients start late (its share of the load would be missing from the start of the window)
 * however long a thread took to open its connections. Resolves to the window's start, or undefined if
 * the run was stopped first.
 */
async function startTogether(window: RunWindow): Promise<number | undefined> {
  const shared = window.shared;
  if (Atomics.add(shared, SHARED_ARRIVED, 1) + 1 === window.shareCount) {
    Atomics.store(shared, SHARED_START_US, Math.round((processMs() - window.beganProcessMs) * 1000));
    Atomics.compareExchange(shared, SHARED_STATE, STATE_GATHERING, STATE_RUNNING);
  }
  const deadlineMs = performance.now() + GATHER_TIMEOUT_MS;
  while (Atomics.load(shared, SHARED_STATE) === STATE_GATHERING) {
    if (performance.now() > deadlineMs) {
      stopRun(window);
      throw new Error(`${Atomics.load(shared, SHARED_ARRIVED)} of ${window.shareCount} load threads were ready within ${GATHER_TIMEOUT_MS} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, GATHER_POLL_MS));
  }
  return windowStartProcessMs(window);
}

/** The clients of one share, each with one operation in flight, until the window ends, the count is reached, or the run is stopped. */
export async function runShare(target: Target, share: RunShare): Promise<RunPart> {
  const { options: o, window } = share;
  const shared = window.shared;
  const histogram = newHistogram();
  const errors: Record<string, number> = {};
  const byOp: Partial<Record<OpKind, number>> = {};
  let conflicts = 0;
  let checksum = 0;
  let measured = 0;
  let countReachedMs: number | undefined;
  // Set up before the window: a zipfian chooser computes ζ(n) once per client, O(n).
  const clients = clientRngs(o.seed, share.clients).map((rng, s) => {
    const keys: KeyChooser = o.distribution === 'uniform' ? uniformKeys(o.keyCount, rng) : scrambledZipfianKeys(o.keyCount, rng);
    return { client: share.clients[s]!, rng, keys };
  });
  const startProcessMs = await startTogether(window);
  // This thread's performance.now() is processMs() plus a constant: read both once, then only the cheap one.
  const startMs = startProcessMs === undefined ? -Infinity : startProcessMs + (performance.now() - processMs());
  const measureFromMs = startMs + o.warmupMs;
  const endMs = measureFromMs + o.durationMs;
  const countMax = o.opCountMax;
  const nextSlot = o.rateOpsPerSec === undefined ? undefined : offeredLoad(startMs, o.rateOpsPerSec, shared);
  const done = () => performance.now() >= endMs || Atomics.load(shared, SHARED_STATE) === STATE_STOPPED || (countMax !== undefined && Atomics.load(shared, SHARED_MEASURED) >= countMax);
  await Promise.all(
    clients.map(async ({ client, rng, keys }) => {
      for (let i = 0; !done(); i++) {
        if (nextSlot !== undefined) {
          await nextSlot();
          if (done()) break;
        }
        const op = pick(o.workload, rng.nextFloat());
        const key = keyOf(keys.next());
        const t0 = performance.now();
        try {
          // Awaited first: `checksum + (await …)` would read the sum before the await and drop every
          // other client's additions made meanwhile.
          const work = await runOp(target, op, key, valueOf(o.valueBytes, client * 1_000_003 + i), o.scanLength ?? SCAN_LENGTH_DEFAULT, () => conflicts++);
          checksum = (checksum + work) >>> 0;
          if (t0 >= measureFromMs && t0 < endMs) {
            histogram.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round((performance.now() - t0) * 1000))));
            measured++;
            byOp[op] = (byOp[op] ?? 0) + 1;
            if (countMax !== undefined && Atomics.add(shared, SHARED_MEASURED, 1) + 1 === countMax) countReachedMs = performance.now();
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
  return {
    histogram,
    latencyMaxUs: histogram.maxValue,
    measured,
    errors,
    conflicts,
    byOp,
    checksum,
    countReachedProcessMs: countReachedMs === undefined || startProcessMs === undefined ? undefined : countReachedMs - startMs + startProcessMs,
  };
}

/**
 * The run's result from every share's part: counts summed, histograms added, so ops/s and every
 * percentile are over all the clients, however many threads ran them. Call once every share returned.
 */
export function resultOf(o: RunOptions, startProcessMs: number, parts: readonly RunPart[]): RunResult {
  const measureFromProcessMs = startProcessMs + o.warmupMs;
  const endProcessMs = Math.min(measureFromProcessMs + o.durationMs, processMs(), ...parts.map((p) => p.countReachedProcessMs ?? Infinity));
  const durationMs = Math.max(1, endProcessMs - measureFromProcessMs);
  const histogram = newHistogram();
  const errors: Record<string, number> = {};
  const byOp: Partial<Record<OpKind, number>> = {};
  let measured = 0;
  let conflicts = 0;
  let checksum = 0;
  let latencyMaxUs = 0;
  for (const p of parts) {
    histogram.add(p.histogram);
    measured += p.measured;
    conflicts += p.conflicts;
    checksum = (checksum + p.checksum) >>> 0;
    latencyMaxUs = Math.max(latencyMaxUs, p.latencyMaxUs);
    for (const [kind, n] of Object.entries(p.errors)) errors[kind] = (errors[kind] ?? 0) + n;
    for (const [op, n] of Object.entries(p.byOp) as [OpKind, number][]) byOp[op] = (byOp[op] ?? 0) + n;
  }
  assert(histogram.totalCount === measured, () => `the merged histogram holds ${histogram.totalCount} latencies, ${measured} operations were measured`);
  const at = (p: number) => histogram.getValueAtPercentile(p) / 1000;
  const result: RunResult = {
    ops: measured,
    opsPerSec: (measured / durationMs) * 1000,
    durationMs,
    errors,
    conflicts,
    byOp,
    latencyMs: { p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: latencyMaxUs / 1000 },
    checksum,
    opsByThread: parts.map((p) => p.measured),
  };
  histogram.destroy();
  return result;
}

/** A part as it crosses threads: the histogram in HDR's compressed encoding, the rest as is. */
export type EncodedPart = Omit<RunPart, 'histogram'> & { readonly histogramBase64: string };

export function encodePart(part: RunPart): EncodedPart {
  const { histogram, ...rest } = part;
  return { ...rest, histogramBase64: hdr.encodeIntoCompressedBase64(histogram) };
}

export function decodePart(encoded: EncodedPart): RunPart {
  const { histogramBase64, ...rest } = encoded;
  return { ...rest, histogram: hdr.decodeFromCompressedBase64(histogramBase64) };
}

function newHistogram(): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 });
}

/** The seed's forks of the given clients: client c's generator is the c-th fork, as when one thread forks for every client in turn. */
function clientRngs(seed: number, clients: readonly number[]): SeededRng[] {
  const seedRng = new SeededRng(seed);
  const forks = Array.from({ length: clients.reduce((max, c) => Math.max(max, c), -1) + 1 }, () => seedRng.fork());
  return clients.map((c) => forks[c]!);
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
 * whichever client asks next, in any thread of the run (the slot counter is shared), which waits for it.
 * The schedule never slips: after a stall that kept every client busy, the slots already past are sent
 * at once (a burst no larger than the clients allow), so the achieved rate says whether the target kept up.
 */
function offeredLoad(startMs: number, rateOpsPerSec: number, shared: Int32Array): () => Promise<void> {
  return async () => {
    const slot = Atomics.add(shared, SHARED_NEXT_SLOT, 1);
    const waitMs = startMs + (slot * 1000) / rateOpsPerSec - performance.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
  };
}

/** A value of `bytes` bytes that differs per write (so nothing can be deduplicated). */
function valueOf(bytes: number, salt: number): Uint8Array {
  const v = Buffer.alloc(bytes, 0x61);
  if (bytes >= 4) v.writeUInt32BE(salt >>> 0, 0);
  return v;
}
