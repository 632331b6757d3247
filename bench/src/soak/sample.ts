// What a soak run samples from each node process once a second: from /proc (RSS, CPU, open descriptors,
// threads — the whole process, worker threads included), the size of its data directory, and from the
// node's own /metrics (the main thread's heap, external memory, active resources and event-loop
// utilization; worker threads' heaps are not visible there).
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { processesCpuMs } from '../report.js';

export interface NodeSample {
  /** Since the run started (warm-up included). */
  readonly atMs: number;
  /** From /proc; undefined once the process is gone (or where there is no /proc). */
  readonly proc: ProcSample | undefined;
  /** From /metrics; undefined when the scrape failed. */
  readonly metrics: MetricsSample | undefined;
  /** How long the /metrics request took: the node's main thread answering under load. */
  readonly scrapeMs: number | undefined;
  /** Bytes of the files in the node's data directory (LMDB's store files among them). */
  readonly dataBytes: number | undefined;
  /** Requests the load sent to the whole cluster so far (answered, errors included), and errors. */
  readonly requestCount: number;
  readonly errorCount: number;
}

export interface ProcSample {
  readonly rssBytes: number;
  /**
   * RSS split as the kernel counts it (Linux 4.5+): anonymous memory (heaps, malloc, stacks) apart from
   * file pages mapped in (LMDB's memory map, the node binary), which grow as the store file does.
   */
  readonly rssAnonBytes: number | undefined;
  readonly rssFileBytes: number | undefined;
  /** User + system, every thread, since the process started. */
  readonly cpuMs: number;
  readonly openFdCount: number;
  readonly threadCount: number;
}

export interface MetricsSample {
  readonly heapUsedBytes: number;
  readonly heapTotalBytes: number;
  readonly externalBytes: number;
  readonly arrayBuffersBytes: number;
  /** process.getActiveResourcesInfo() counted by type (Timeout: timers). */
  readonly activeResources: Readonly<Record<string, number>>;
  /** Cumulative event-loop time running callbacks and waiting, since the process started. */
  readonly loopActiveMs: number;
  readonly loopIdleMs: number;
}

/** RSS, CPU, descriptors and threads of `pid`; undefined when it is gone or /proc is unreadable. */
export function procSampleOf(pid: number): ProcSample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const cpuMs = processesCpuMs([pid]);
    const rssKb = fieldOfStatus(status, 'VmRSS');
    const threadCount = fieldOfStatus(status, 'Threads');
    if (cpuMs === undefined || rssKb === undefined || threadCount === undefined) return undefined;
    const kib = (name: string) => {
      const v = fieldOfStatus(status, name);
      return v === undefined ? undefined : v * 1024;
    };
    return { rssBytes: rssKb * 1024, rssAnonBytes: kib('RssAnon'), rssFileBytes: kib('RssFile'), cpuMs, openFdCount: readdirSync(`/proc/${pid}/fd`).length, threadCount };
  } catch {
    return undefined;
  }
}

/** Bytes of every regular file under `dir` (links not followed); undefined when it cannot be read. */
export function dirBytes(dir: string): number | undefined {
  try {
    let total = 0;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) total += dirBytes(path) ?? 0;
      else if (entry.isFile()) total += lstatSync(path).size;
    }
    return total;
  } catch {
    return undefined;
  }
}

/** `Name:\t<number>[ kB]` from /proc/<pid>/status. */
function fieldOfStatus(status: string, name: string): number | undefined {
  const match = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status);
  return match === null ? undefined : Number(match[1]);
}

export interface PrometheusSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * The samples of a Prometheus text exposition by metric name: enough of the format for what a node
 * writes (`name{a="x",b="y"} value` lines, `#` comments); a line it cannot read is skipped.
 */
export function parsePrometheus(text: string): Map<string, PrometheusSample[]> {
  const byName = new Map<string, PrometheusSample[]>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (match === null) continue;
    const value = Number(match[3]);
    if (Number.isNaN(value)) continue;
    const labels: Record<string, string> = {};
    for (const l of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const list = byName.get(match[1]!) ?? [];
    list.push({ labels, value });
    byName.set(match[1]!, list);
  }
  return byName;
}

/** The process figures of a node's /metrics; undefined when a series is missing (a node that does not report them). */
export function metricsSampleOf(text: string): MetricsSample | undefined {
  const all = parsePrometheus(text);
  const one = (name: string) => all.get(name)?.[0]?.value;
  const heapUsedBytes = one('nodejs_heap_size_used_bytes');
  const heapTotalBytes = one('nodejs_heap_size_total_bytes');
  const externalBytes = one('nodejs_external_memory_bytes');
  const arrayBuffersBytes = one('nodejs_array_buffers_bytes');
  const loopActiveSec = one('nodejs_eventloop_active_seconds_total');
  const loopIdleSec = one('nodejs_eventloop_idle_seconds_total');
  const resources = all.get('nodejs_active_resources');
  if (heapUsedBytes === undefined || heapTotalBytes === undefined || externalBytes === undefined || arrayBuffersBytes === undefined || loopActiveSec === undefined || loopIdleSec === undefined || resources === undefined) return undefined;
  const activeResources: Record<string, number> = {};
  for (const r of resources) activeResources[r.labels.type ?? '?'] = r.value;
  return { heapUsedBytes, heapTotalBytes, externalBytes, arrayBuffersBytes, activeResources, loopActiveMs: loopActiveSec * 1e3, loopIdleMs: loopIdleSec * 1e3 };
}

export type MetricUnit = 'bytes' | 'count' | 'percent' | 'ms';

/**
 * A series the soak run follows per node: its value at a sample (some from the difference with the
 * sample before: CPU and loop utilization over that second), its unit, and the least rise that counts
 * as growth in that unit (GrowthRule.riseMin).
 */
export interface SoakMetric {
  readonly name: string;
  readonly unit: MetricUnit;
  readonly riseMin: number;
  valueOf(sample: NodeSample, previous: NodeSample | undefined): number | undefined;
}

const MIB = 1024 * 1024;

/** `part` in percent of `whole` (an interval's wall time, or its busy plus idle time); undefined for an empty interval. */
const percentOf = (part: number, whole: number): number | undefined => (whole > 0 ? (part / whole) * 100 : undefined);

export const SOAK_METRICS: readonly SoakMetric[] = [
  { name: 'rss', unit: 'bytes', riseMin: MIB, valueOf: (s) => s.proc?.rssBytes },
  { name: 'rss anon', unit: 'bytes', riseMin: MIB, valueOf: (s) => s.proc?.rssAnonBytes },
  { name: 'rss file', unit: 'bytes', riseMin: MIB, valueOf: (s) => s.proc?.rssFileBytes },
  { name: 'heap used', unit: 'bytes', riseMin: MIB, valueOf: (s) => s.metrics?.heapUsedBytes },
  { name: 'heap total', unit: 'bytes', riseMin: MIB, valueOf: (s) => s.metrics?.heapTotalBytes },
  { name: 'external', unit: 'bytes', riseMin: MIB, valueOf: (s) => s.metrics?.externalBytes },
  { name: 'array buffers', unit: 'bytes', riseMin: MIB, valueOf: (s) => s.metrics?.arrayBuffersBytes },
  {
    name: 'cpu',
    unit: 'percent',
    riseMin: 2,
    valueOf: (s, p) => (s.proc === undefined || p?.proc === undefined ? undefined : percentOf(s.proc.cpuMs - p.proc.cpuMs, s.atMs - p.atMs)),
  },
  {
    name: 'loop busy',
    unit: 'percent',
    riseMin: 2,
    valueOf: (s, p) => {
      if (s.metrics === undefined || p?.metrics === undefined) return undefined;
      const active = s.metrics.loopActiveMs - p.metrics.loopActiveMs;
      return percentOf(active, active + s.metrics.loopIdleMs - p.metrics.loopIdleMs);
    },
  },
  { name: 'open fds', unit: 'count', riseMin: 1, valueOf: (s) => s.proc?.openFdCount },
  { name: 'threads', unit: 'count', riseMin: 1, valueOf: (s) => s.proc?.threadCount },
  { name: 'timers', unit: 'count', riseMin: 1, valueOf: (s) => (s.metrics === undefined ? undefined : (s.metrics.activeResources.Timeout ?? 0)) },
  { name: 'active resources', unit: 'count', riseMin: 1, valueOf: (s) => (s.metrics === undefined ? undefined : Object.values(s.metrics.activeResources).reduce((a, n) => a + n, 0)) },
  { name: 'metrics scrape', unit: 'ms', riseMin: 5, valueOf: (s) => s.scrapeMs },
  { name: 'data on disk', unit: 'bytes', riseMin: MIB, valueOf: (s) => s.dataBytes },
];

/** A metric's values over a node's samples, in time order, where defined. */
export function seriesOf(metric: SoakMetric, samples: readonly NodeSample[]): { atMs: number; value: number }[] {
  const points: { atMs: number; value: number }[] = [];
  for (let i = 0; i < samples.length; i++) {
    const value = metric.valueOf(samples[i]!, samples[i - 1]);
    if (value !== undefined && Number.isFinite(value)) points.push({ atMs: samples[i]!.atMs, value });
  }
  return points;
}
