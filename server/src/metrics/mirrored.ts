// Metrics whose values are counted elsewhere — in a worker core, the transport, the KV store — and read
// when /metrics is scraped: prom-client's Counter and Gauge with a collect() callback, and a histogram
// fed with bucket counts (prom-client's Histogram only counts its own observations).
import { Counter, Gauge, type Metric, type Registry } from 'prom-client';
import { LATENCY_BUCKET_BOUNDS_SECONDS, type LatencyBuckets } from '@flotilla/shards';

export type Labels = Readonly<Record<string, string | number>>;

/** One series of a metric: its labels (none: the metric's only series) and its value. */
export interface Sample {
  readonly labels?: Labels;
  readonly value: number;
}

export interface MirroredOptions {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
  /** The series now; called once per scrape, after NodeMetrics refreshed what it reads. */
  readonly samples: () => Iterable<Sample>;
}

/**
 * A counter mirroring a total counted elsewhere. Counter has no set: each
 * scrape resets it and adds the totals (scrape-time work only).
 */
export function mirroredCounter(registry: Registry, o: MirroredOptions): Counter {
  return new Counter({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames ?? [],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of o.samples()) {
        if (s.labels === undefined) this.inc(s.value);
        else this.inc(s.labels, s.value);
      }
    },
  });
}

/** A gauge read at scrape time; a series that no longer has a sample (a label value gone) disappears. */
export function mirroredGauge(registry: Registry, o: MirroredOptions): Gauge {
  return new Gauge({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames ?? [],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of o.samples()) {
        if (s.labels === undefined) this.set(s.value);
        else this.set(s.labels, s.value);
      }
    },
  });
}

/** A histogram's series: bucket counts per LATENCY_BUCKET_BOUNDS_SECONDS plus one over the largest bound (not cumulative), and their sum. */
export interface BucketSample {
  readonly labels?: Labels;
  readonly buckets: LatencyBuckets;
}

type MetricJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

/**
 * A histogram whose bucket counts come from elsewhere (the worker cores
 * count theirs: shards/src/host/latency.ts). It answers the registry as
 * prom-client's own Histogram does (`_bucket` with `le`, cumulative, then
 * `_sum` and `_count`), so the exposition, getMetricsAsJSON and its readers
 * cannot tell the difference.
 */
export class BucketHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly samples: () => Iterable<BucketSample>,
  ) {}

  register(registry: Registry): this {
    // The registry calls get() (and reads name, help, type, aggregator) and nothing else of a metric.
    registry.registerMetric(this as unknown as Metric);
    return this;
  }

  async get(): Promise<MetricJson> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const bounds = LATENCY_BUCKET_BOUNDS_SECONDS;
    for (const s of this.samples()) {
      const labels = s.labels ?? {};
      const { counts, sumSeconds } = s.buckets;
      let cumulative = 0;
      for (let i = 0; i < bounds.length; i++) {
        cumulative += counts[i] ?? 0;
        values.push({ labels: { ...labels, le: bounds[i]! }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      cumulative += counts[bounds.length] ?? 0;
      values.push({ labels: { ...labels, le: '+Inf' }, value: cumulative, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...labels }, value: sumSeconds, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: cumulative, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator } as unknown as MetricJson;
  }
}

/** Element-wise sum of several cores' buckets (a node-wide histogram). */
export function sumBuckets(all: Iterable<LatencyBuckets>): LatencyBuckets {
  const counts = new Array<number>(LATENCY_BUCKET_BOUNDS_SECONDS.length + 1).fill(0);
  let sumSeconds = 0;
  for (const b of all) {
    for (let i = 0; i < counts.length; i++) counts[i]! += b.counts[i] ?? 0;
    sumSeconds += b.sumSeconds;
  }
  return { counts, sumSeconds };
}
