// The soak run's parts that can be wrong without a cluster: the trend and its growth rule (synthetic
// series with a seeded noise), reading a node's /metrics, /proc and data directory, the per-interval rates, and the
// load generator's fixed offered rate and delete operation (against a target in memory).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { SeededRng } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { run, type Target } from '../src/load/runner.js';
import { dirBytes, metricsSampleOf, parsePrometheus, procSampleOf, seriesOf, SOAK_METRICS, type NodeSample } from '../src/soak/sample.js';
import { firstAndLastWindowMeans, fitLine, trendOf, windowMeans, type GrowthRule, type Point } from '../src/soak/trend.js';
import { WORKLOADS } from '../src/workload/mix.js';

const MIB = 1024 * 1024;
const WARMUP_MS = 60_000;
const RUN_MS = WARMUP_MS + 10 * 60_000;
const RULE: GrowthRule = { growthPerHourMin: 0.2, lastOverFirstMin: 1.05, riseMin: MIB };

/** One point a second over a 60 s warm-up and 10 minutes, the value a function of the time in minutes plus seeded noise of ±`noise`. */
function series(valueAtMin: (min: number) => number, noise = 0, seed = 1): Point[] {
  const rng = new SeededRng(seed);
  return Array.from({ length: RUN_MS / 1000 + 1 }, (_, s) => ({ atMs: s * 1000, value: valueAtMin(s / 60) + (rng.nextFloat() * 2 - 1) * noise }));
}

const trend = (points: Point[], rule = RULE) => trendOf(points, { warmFromMs: WARMUP_MS, windowMs: 60_000, rule })!;

describe('fitLine', () => {
  it.each([
    { name: 'an exact line', points: [0, 1, 2, 3].map((x) => ({ atMs: x * 1000, value: 5 + 2 * x })), slopePerMs: 0.002, intercept: 5 },
    { name: 'a level line', points: [0, 10, 20].map((x) => ({ atMs: x, value: 7 })), slopePerMs: 0, intercept: 7 },
    { name: 'symmetric noise around a line', points: [{ atMs: 0, value: 1 }, { atMs: 0, value: 3 }, { atMs: 2, value: 5 }, { atMs: 2, value: 7 }], slopePerMs: 2, intercept: 2 },
    { name: 'large times (no lost digits)', points: [1e9, 1e9 + 1000].map((x) => ({ atMs: x, value: x / 1000 })), slopePerMs: 0.001, intercept: 0 },
  ])('$name', ({ points, slopePerMs, intercept }) => {
    const fit = fitLine(points)!;
    expect(fit.slopePerMs).toBeCloseTo(slopePerMs, 9);
    expect(fit.intercept).toBeCloseTo(intercept, 6);
  });

  it('has no line through fewer than two points or through one instant', () => {
    expect(fitLine([])).toBeUndefined();
    expect(fitLine([{ atMs: 1, value: 1 }])).toBeUndefined();
    expect(fitLine([{ atMs: 1, value: 1 }, { atMs: 1, value: 2 }])).toBeUndefined();
  });
});

describe('trendOf: what counts as growing after the warm-up', () => {
  it.each([
    { name: 'flat RSS with ±2 MiB of noise', points: series(() => 120 * MIB, 2 * MIB), growing: false },
    { name: 'a GC sawtooth (16 MiB → 40 MiB every 7 s) around a flat level', points: series((min) => (16 + 24 * (((min * 60) % 7) / 7)) * MIB), growing: false },
    { name: 'growth during the warm-up only', points: series((min) => Math.min(min, 1) * 50 * MIB + 50 * MIB, MIB), growing: false },
    { name: 'a leak of 1 MiB a minute on 100 MiB, under ±3 MiB of noise', points: series((min) => (100 + min) * MIB, 3 * MIB), growing: true },
    { name: 'a slow drift (2 % an hour) below the rule', points: series((min) => 100 * MIB * (1 + (0.02 * min) / 60), 0.5 * MIB), growing: false },
    { name: 'falling', points: series((min) => (200 - 2 * min) * MIB, MIB), growing: false },
  ])('$name: growing $growing', ({ points, growing }) => {
    expect(trend(points).growing).toBe(growing);
  });

  it('a descriptor leaked every minute on 50 open ones is growing; one at a flat 50 is not', () => {
    const countRule = { ...RULE, riseMin: 1 };
    expect(trend(series((min) => 50 + Math.floor(min)), countRule).growing).toBe(true);
    expect(trend(series(() => 50), countRule).growing).toBe(false);
  });

  it('each condition of the rule alone can stop the flag', () => {
    const leak = series((min) => (100 + min) * MIB);
    expect(trend(leak).growing).toBe(true);
    expect(trend(leak, { ...RULE, growthPerHourMin: 1 }).growing).toBe(false); // +60 MiB/h on ~105 MiB: 57 %/h
    expect(trend(leak, { ...RULE, lastOverFirstMin: 1.2 }).growing).toBe(false); // last ÷ first = 110 / 101
    expect(trend(leak, { ...RULE, riseMin: 10 * MIB }).growing).toBe(false); // rise 9 MiB
  });

  it('reports the values at the warm-up end and at the end, min, max, the slope per minute and the windows', () => {
    const t = trend(series((min) => 100 + 2 * min));
    expect(t.sampleCount).toBe(601);
    expect(t.atWarmEnd).toBeCloseTo(102, 9);
    expect(t.atEnd).toBeCloseTo(122, 9);
    expect(t.min).toBeCloseTo(102, 9);
    expect(t.max).toBeCloseTo(122, 9);
    expect(t.slopePerMin).toBeCloseTo(2, 9);
    expect(t.growthPerHour).toBeCloseTo(120 / 112, 9);
    // The first window holds seconds 60..119 (mean at 89.5 s), the last 601..660 (mean at 630.5 s).
    expect(t.firstWindowMean).toBeCloseTo(100 + (2 * 89.5) / 60, 9);
    expect(t.lastWindowMean).toBeCloseTo(100 + (2 * 630.5) / 60, 9);
    expect(t.lastOverFirst).toBeCloseTo(t.lastWindowMean / t.firstWindowMean, 12);
  });

  it('has no trend from fewer than two warm samples, and refuses an empty window', () => {
    expect(trendOf([{ atMs: 0, value: 1 }, { atMs: 70_000, value: 2 }], { warmFromMs: WARMUP_MS, windowMs: 60_000, rule: RULE })).toBeUndefined();
    expect(() => trendOf([], { warmFromMs: 0, windowMs: 0, rule: RULE })).toThrow(RangeError);
  });
});

describe('windowMeans', () => {
  it('averages each window from the start on, the last one shorter, and marks an empty one', () => {
    const points = [0, 500, 1000, 1500, 2000, 4100].map((atMs) => ({ atMs, value: atMs / 100 }));
    expect(windowMeans(points, { fromMs: 500, windowMs: 1000 })).toEqual([7.5, 17.5, NaN, 41]);
    expect(windowMeans([], { fromMs: 0, windowMs: 1000 })).toEqual([]);
    expect(() => windowMeans(points, { fromMs: 0, windowMs: 0 })).toThrow(RangeError);
  });

  it('firstAndLastWindowMeans: the first window from the first point on, the last up to the last point', () => {
    const points = [4100, 0, 500, 1000, 1500, 2000].map((atMs) => ({ atMs, value: atMs / 100 }));
    expect(firstAndLastWindowMeans(points, { fromMs: 500, windowMs: 1000 })).toEqual([7.5, 41]);
    expect(firstAndLastWindowMeans(points, { fromMs: 5000, windowMs: 1000 })).toBeUndefined();
  });
});

const METRICS_TEXT = `# HELP nodejs_heap_size_used_bytes Process heap size used from Node.js in bytes.
# TYPE nodejs_heap_size_used_bytes gauge
nodejs_heap_size_used_bytes 20971520
nodejs_heap_size_total_bytes 33554432
nodejs_external_memory_bytes 1048576
nodejs_array_buffers_bytes 524288

nodejs_active_resources{type="TCPSocketWrap"} 7
nodejs_active_resources{type="Timeout"} 3
nodejs_eventloop_active_seconds_total 1.5
nodejs_eventloop_idle_seconds_total 8.5
flotilla_core_rounds_total{core="0"} 12
process_open_fds 41
`;

describe('reading a node', () => {
  it('parses the Prometheus text a node writes', () => {
    const all = parsePrometheus(`${METRICS_TEXT}garbage line\nno_labels 4\nescaped{a="x\\"y",b="z"} 1e3\n`);
    expect(all.get('flotilla_core_rounds_total')).toEqual([{ labels: { core: '0' }, value: 12 }]);
    expect(all.get('no_labels')).toEqual([{ labels: {}, value: 4 }]);
    expect(all.get('escaped')).toEqual([{ labels: { a: 'x\\"y', b: 'z' }, value: 1000 }]);
    expect(all.has('garbage')).toBe(false);
  });

  it('takes the process figures from /metrics, and nothing from a node that does not report them', () => {
    expect(metricsSampleOf(METRICS_TEXT)).toEqual({
      heapUsedBytes: 20 * MIB,
      heapTotalBytes: 32 * MIB,
      externalBytes: MIB,
      arrayBuffersBytes: MIB / 2,
      activeResources: { TCPSocketWrap: 7, Timeout: 3 },
      loopActiveMs: 1500,
      loopIdleMs: 8500,
    });
    expect(metricsSampleOf(METRICS_TEXT.replace(/^nodejs_heap_size_used_bytes.*$/m, ''))).toBeUndefined();
  });

  it('turns cumulative CPU and loop time into shares of each interval, and counts timers and resources', () => {
    const base = metricsSampleOf(METRICS_TEXT)!;
    const at = (atMs: number, cpuMs: number, loopActiveMs: number, loopIdleMs: number): NodeSample => ({
      atMs,
      proc: { rssBytes: 100 * MIB, rssAnonBytes: 60 * MIB, rssFileBytes: 40 * MIB, cpuMs, openFdCount: 41, threadCount: 12 },
      metrics: { ...base, loopActiveMs, loopIdleMs },
      scrapeMs: 2,
      dataBytes: atMs,
      requestCount: 0,
      errorCount: 0,
    });
    const samples = [at(0, 1000, 1500, 8500), at(1000, 1250, 1800, 9200), at(2000, 2000, 1800, 10_200)];
    const values = (name: string) => seriesOf(SOAK_METRICS.find((m) => m.name === name)!, samples).map((p) => p.value);
    expect(values('cpu')).toEqual([25, 75]);
    expect(values('loop busy')).toEqual([30, 0]);
    expect(values('timers')).toEqual([3, 3, 3]);
    expect(values('active resources')).toEqual([10, 10, 10]);
    expect(values('rss')).toEqual([100 * MIB, 100 * MIB, 100 * MIB]);
    expect(values('rss file')).toEqual([40 * MIB, 40 * MIB, 40 * MIB]);
    expect(values('data on disk')).toEqual([0, 1000, 2000]);
    // A second without a scrape has no figures from /metrics, and the next one no rate from it.
    samples[1] = { ...samples[1]!, metrics: undefined, scrapeMs: undefined };
    expect(values('loop busy')).toEqual([]);
    expect(values('heap used')).toEqual([20 * MIB, 20 * MIB]);
  });

  it('reads this process from /proc, and nothing for a process that does not exist', () => {
    const own = procSampleOf(process.pid);
    if (own === undefined) return expect(process.platform).not.toBe('linux');
    expect(own.rssBytes).toBeGreaterThan(MIB);
    if (own.rssAnonBytes !== undefined) expect(own.rssAnonBytes).toBeLessThanOrEqual(own.rssBytes);
    expect(own.openFdCount).toBeGreaterThan(2);
    expect(own.threadCount).toBeGreaterThanOrEqual(1);
    expect(own.cpuMs).toBeGreaterThan(0);
    expect(procSampleOf(2 ** 22 + 12345)).toBeUndefined();
  });

  it('adds up the files under a data directory, and says undefined for one that does not exist', () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'soak-test-'));
    try {
      writeFileSync(join(dir, 'FLOTILLA'), 'x'.repeat(66));
      mkdirSync(join(dir, 'core-0'));
      writeFileSync(join(dir, 'core-0', 'store.mdb'), Buffer.alloc(4096));
      expect(dirBytes(dir)).toBe(66 + 4096);
      expect(dirBytes(join(dir, 'absent'))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the load generator at a fixed offered rate', () => {
  /** A target in memory answering at once: without a rate, clients would send thousands of operations. */
  function memoryTarget() {
    const data = new Map<string, number>();
    const calls = { get: 0, put: 0, delete: 0, scan: 0 };
    let version = 0;
    const target: Target = {
      name: 'memory',
      get: async (key) => {
        calls.get++;
        const v = data.get(Buffer.from(key).toString('hex'));
        return v === undefined ? undefined : { version: v };
      },
      put: async (key, _value, options) => {
        calls.put++;
        const k = Buffer.from(key).toString('hex');
        if (options?.ifVersion !== undefined && (data.get(k) ?? 0) !== options.ifVersion) return { ok: false };
        data.set(k, ++version);
        return { ok: true };
      },
      scan: async () => {
        calls.scan++;
        return 0;
      },
      delete: async (key) => {
        calls.delete++;
        data.delete(Buffer.from(key).toString('hex'));
      },
      close: async () => undefined,
    };
    return { target, calls };
  }

  it('starts no more operations than the schedule allows, and the soak mix deletes', async () => {
    const { target, calls } = memoryTarget();
    const rateOpsPerSec = 200;
    const warmupMs = 100;
    const durationMs = 400;
    const result = await run(target, { workload: WORKLOADS.soak!, distribution: 'uniform', keyCount: 50, valueBytes: 8, concurrency: 8, durationMs, warmupMs, seed: 3, rateOpsPerSec });
    // Slots 0..100 fall within the 500 ms the run lasts; a late timer can only make it fewer.
    const slotCount = (rateOpsPerSec * (warmupMs + durationMs)) / 1000 + 1;
    expect(result.ops).toBeGreaterThan(0);
    expect(result.ops).toBeLessThanOrEqual(slotCount);
    // Warm-up included: a read-modify-write is two calls, every other operation one.
    expect(calls.get + calls.put + calls.delete).toBeLessThanOrEqual(2 * slotCount);
    expect(calls.delete).toBeGreaterThan(0);
    expect(calls.scan).toBe(0);
  });

  it('refuses a rate that is not a positive number', async () => {
    const { target } = memoryTarget();
    await expect(run(target, { workload: WORKLOADS.soak!, distribution: 'uniform', keyCount: 5, valueBytes: 8, concurrency: 1, durationMs: 10, warmupMs: 0, seed: 1, rateOpsPerSec: 0 })).rejects.toThrow(RangeError);
  });
});
