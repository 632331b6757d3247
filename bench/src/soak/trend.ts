// Whether a metric sampled through a soak run keeps growing once the run is warm: a least-squares line
// through the warm samples, and the mean of the last window against the first warm one. Pure: samples
// in, numbers out (bench/test/soak.test.ts).

export interface Point {
  /** Since the run started (warm-up included). */
  readonly atMs: number;
  readonly value: number;
}

export interface LineFit {
  /** Change of the value per millisecond. */
  readonly slopePerMs: number;
  /** The line's value at atMs = 0. */
  readonly intercept: number;
}

/** Ordinary least squares of value on atMs; undefined below two points or when all share one time. */
export function fitLine(points: readonly Point[]): LineFit | undefined {
  const n = points.length;
  if (n < 2) return undefined;
  let meanX = 0;
  let meanY = 0;
  for (const p of points) {
    meanX += p.atMs / n;
    meanY += p.value / n;
  }
  // Centred sums: the times are large (up to ~10^6 ms) and raw sums of squares would lose digits.
  let sxx = 0;
  let sxy = 0;
  for (const p of points) {
    sxx += (p.atMs - meanX) ** 2;
    sxy += (p.atMs - meanX) * (p.value - meanY);
  }
  if (sxx === 0) return undefined;
  const slopePerMs = sxy / sxx;
  return { slopePerMs, intercept: meanY - slopePerMs * meanX };
}

/**
 * When a metric counts as growing: all three must hold.
 *
 * - The fitted line rises by at least `growthPerHourMin` of the metric's warm mean per hour (0.2: a fifth
 *   of its level in an hour). Relative, so one rule serves bytes, counts and percentages.
 * - The last window's mean is at least `lastOverFirstMin` times the first warm window's (1.05): the rise
 *   shows in the data, not only in a line a few outliers tilted.
 * - That rise is at least `riseMin` in the metric's own unit (1 MiB, one descriptor, two points of CPU):
 *   below it the difference is noise at any level (a metric near zero has no meaningful ratio).
 */
export interface GrowthRule {
  readonly growthPerHourMin: number;
  readonly lastOverFirstMin: number;
  readonly riseMin: number;
}

export interface Trend {
  /** Warm samples the trend is computed from. */
  readonly sampleCount: number;
  /** The first warm sample: the value when the warm-up ended. */
  readonly atWarmEnd: number;
  /** The last sample. */
  readonly atEnd: number;
  /** Over the warm samples. */
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly slopePerMin: number;
  /** slopePerMin × 60 / mean: the share of its level the metric would gain in an hour; undefined when the mean is 0. */
  readonly growthPerHour: number | undefined;
  readonly firstWindowMean: number;
  readonly lastWindowMean: number;
  /** lastWindowMean / firstWindowMean; undefined when the first is 0. */
  readonly lastOverFirst: number | undefined;
  readonly growing: boolean;
}

const MS_PER_MIN = 60_000;

/**
 * The trend of `points` from `warmFromMs` on (earlier points are ignored), with windows of `windowMs` at
 * the start and the end of that warm part; undefined when fewer than two warm points (or all at one time).
 */
export function trendOf(points: readonly Point[], o: { readonly warmFromMs: number; readonly windowMs: number; readonly rule: GrowthRule }): Trend | undefined {
  if (!(o.windowMs > 0)) throw new RangeError(`window ${o.windowMs} ms must be positive`);
  const warm = points.filter((p) => p.atMs >= o.warmFromMs).sort((a, b) => a.atMs - b.atMs);
  const fit = fitLine(warm);
  if (fit === undefined) return undefined;
  const first = warm[0]!;
  const last = warm[warm.length - 1]!;
  const mean = meanOf(warm);
  const [firstWindowMean, lastWindowMean] = edgeWindowMeans(warm, o.windowMs);
  const slopePerMin = fit.slopePerMs * MS_PER_MIN;
  const growthPerHour = mean === 0 ? undefined : (slopePerMin * 60) / Math.abs(mean);
  const lastOverFirst = firstWindowMean === 0 ? undefined : lastWindowMean / firstWindowMean;
  const rise = lastWindowMean - firstWindowMean;
  const growing =
    slopePerMin > 0 &&
    (growthPerHour === undefined || growthPerHour >= o.rule.growthPerHourMin) &&
    (lastOverFirst === undefined || lastOverFirst >= o.rule.lastOverFirstMin) &&
    rise >= o.rule.riseMin;
  let min = Infinity;
  let max = -Infinity;
  for (const p of warm) {
    min = Math.min(min, p.value);
    max = Math.max(max, p.value);
  }
  return { sampleCount: warm.length, atWarmEnd: first.value, atEnd: last.value, min, max, mean, slopePerMin, growthPerHour, firstWindowMean, lastWindowMean, lastOverFirst, growing };
}

/**
 * The means of the first and the last `windowMs` of the points from `fromMs` on (the first window starts
 * at the first such point, the last ends at the last one); undefined without such points.
 */
export function firstAndLastWindowMeans(points: readonly Point[], o: { readonly fromMs: number; readonly windowMs: number }): [first: number, last: number] | undefined {
  if (!(o.windowMs > 0)) throw new RangeError(`window ${o.windowMs} ms must be positive`);
  const warm = points.filter((p) => p.atMs >= o.fromMs).sort((a, b) => a.atMs - b.atMs);
  return warm.length === 0 ? undefined : edgeWindowMeans(warm, o.windowMs);
}

/** firstAndLastWindowMeans of points sorted by time, at least one. */
function edgeWindowMeans(sorted: readonly Point[], windowMs: number): [first: number, last: number] {
  const firstAtMs = sorted[0]!.atMs;
  const lastAtMs = sorted[sorted.length - 1]!.atMs;
  return [meanOf(sorted.filter((p) => p.atMs < firstAtMs + windowMs)), meanOf(sorted.filter((p) => p.atMs > lastAtMs - windowMs))];
}

function meanOf(points: readonly Point[]): number {
  let sum = 0;
  for (const p of points) sum += p.value;
  return sum / points.length;
}

/**
 * The mean of each consecutive window of `windowMs` from `fromMs` on (a last, shorter window included;
 * NaN for a window without points): the shape of a trend — steady, levelling off, a step.
 */
export function windowMeans(points: readonly Point[], o: { readonly fromMs: number; readonly windowMs: number }): number[] {
  if (!(o.windowMs > 0)) throw new RangeError(`window ${o.windowMs} ms must be positive`);
  const sums: { sum: number; count: number }[] = [];
  for (const p of points) {
    if (p.atMs < o.fromMs) continue;
    const i = Math.floor((p.atMs - o.fromMs) / o.windowMs);
    while (sums.length <= i) sums.push({ sum: 0, count: 0 });
    sums[i]!.sum += p.value;
    sums[i]!.count++;
  }
  return sums.map((w) => (w.count === 0 ? NaN : w.sum / w.count));
}
