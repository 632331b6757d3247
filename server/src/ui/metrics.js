// The dashboard's arithmetic over a node's /metrics, with no DOM: parse the
// Prometheus text, pick the KV traffic out of the HTTP latency histogram,
// and from two scrapes take rates and a p99. Plain ES module, loaded by the
// browser as it is (no build); metrics.d.ts gives the tests its types.
//
// Rates and quantiles come from differences of two scrapes, as Prometheus'
// rate() and histogram_quantile() over a window would: the counters are
// totals since the node started, so one scrape alone says nothing about now.

/** The histogram every HTTP request is recorded in (server/src/metrics/http-metrics.ts). */
const HTTP_HISTOGRAM = 'flotilla_http_request_duration_seconds';

/** Methods on the KV routes that change data; GET and HEAD read. */
const WRITE_METHODS = new Set(['PUT', 'DELETE', 'POST', 'PATCH']);
const READ_METHODS = new Set(['GET', 'HEAD']);

/**
 * Every sample line of a text exposition (format 0.0.4) as { name, labels, value }.
 * Comments and blank lines are skipped; a line that does not parse is skipped
 * too (a dashboard shows what it can rather than nothing).
 * @param {string} text
 * @returns {{ name: string, labels: Record<string, string>, value: number }[]}
 */
export function parsePrometheusText(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sample = parseSampleLine(line);
    if (sample !== undefined) samples.push(sample);
  }
  return samples;
}

/**
 * @param {string} line
 * @returns {{ name: string, labels: Record<string, string>, value: number } | undefined}
 */
function parseSampleLine(line) {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (nameMatch === null) return undefined;
  const name = nameMatch[0];
  let at = name.length;
  /** @type {Record<string, string>} */
  const labels = {};
  if (line[at] === '{') {
    at++;
    for (;;) {
      while (line[at] === ' ' || line[at] === ',') at++;
      if (line[at] === '}') {
        at++;
        break;
      }
      const labelMatch = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(at));
      if (labelMatch === null) return undefined;
      at += labelMatch[0].length;
      let value = '';
      // Label values escape backslash, double quote and newline.
      for (;;) {
        const c = line[at];
        if (c === undefined) return undefined;
        if (c === '"') break;
        if (c === '\\') {
          const next = line[at + 1];
          value += next === 'n' ? '\n' : (next ?? '');
          at += 2;
        } else {
          value += c;
          at++;
        }
      }
      at++;
      labels[/** @type {string} */ (labelMatch[1])] = value;
    }
  }
  // The value, then an optional timestamp.
  const fields = line.slice(at).trim().split(/\s+/);
  const value = parseNumber(fields[0] ?? '');
  if (value === undefined) return undefined;
  return { name, labels, value };
}

/**
 * @param {string} text
 * @returns {number | undefined}
 */
function parseNumber(text) {
  switch (text) {
    case '+Inf':
    case 'Inf':
      return Infinity;
    case '-Inf':
      return -Infinity;
    case 'NaN':
    case 'Nan':
      return NaN;
  }
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/**
 * A histogram summed over series: its cumulative buckets by upper bound
 * (ascending, ending at +Inf) and its count.
 * @typedef {{ count: number, buckets: { le: number, count: number }[] }} Histogram
 */

/**
 * What one scrape says of the node's KV traffic: the HTTP histogram over the
 * KV routes (/kv and /kv/*), summed over status codes, split into writes and
 * reads by method; and how many of those requests failed with a 5xx.
 * @param {{ name: string, labels: Record<string, string>, value: number }[]} samples
 * @returns {{ writes: Histogram, reads: Histogram, serverErrors: number }}
 */
export function kvTrafficOf(samples) {
  /** @type {Map<number, number>} */
  const writeBuckets = new Map();
  /** @type {Map<number, number>} */
  const readBuckets = new Map();
  let writeCount = 0;
  let readCount = 0;
  let serverErrors = 0;
  for (const s of samples) {
    if (!s.name.startsWith(HTTP_HISTOGRAM)) continue;
    const route = s.labels.route ?? '';
    if (route !== '/kv' && !route.startsWith('/kv/')) continue;
    const method = s.labels.method ?? '';
    const kind = WRITE_METHODS.has(method) ? 'write' : READ_METHODS.has(method) ? 'read' : undefined;
    if (kind === undefined) continue;
    const suffix = s.name.slice(HTTP_HISTOGRAM.length);
    if (suffix === '_bucket') {
      const le = parseNumber(s.labels.le ?? '');
      if (le === undefined) continue;
      const buckets = kind === 'write' ? writeBuckets : readBuckets;
      buckets.set(le, (buckets.get(le) ?? 0) + s.value);
    } else if (suffix === '_count') {
      if (kind === 'write') writeCount += s.value;
      else readCount += s.value;
      if (Number(s.labels.status_code) >= 500) serverErrors += s.value;
    }
  }
  const sorted = (/** @type {Map<number, number>} */ m) => [...m].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
  return { writes: { count: writeCount, buckets: sorted(writeBuckets) }, reads: { count: readCount, buckets: sorted(readBuckets) }, serverErrors };
}

/**
 * The q-quantile of a histogram's cumulative buckets, as Prometheus'
 * histogram_quantile computes it: find the bucket holding rank q·count and
 * interpolate linearly inside it (the first bucket starts at 0). A rank in
 * the +Inf bucket answers the highest finite bound (nothing is known above
 * it). No observations: null.
 * @param {number} q in [0, 1]
 * @param {{ le: number, count: number }[]} buckets cumulative, ascending by le
 * @returns {number | null}
 */
export function histogramQuantile(q, buckets) {
  const last = buckets[buckets.length - 1];
  if (last === undefined || !(last.count > 0)) return null;
  const rank = q * last.count;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const b of buckets) {
    if (b.count >= rank && b.count > lowerCount) {
      if (b.le === Infinity) return lowerBound;
      return lowerBound + ((b.le - lowerBound) * (rank - lowerCount)) / (b.count - lowerCount);
    }
    if (b.le !== Infinity) lowerBound = b.le;
    lowerCount = b.count;
  }
  return lowerBound;
}

/**
 * A later histogram minus an earlier one, bucket by bucket: the observations
 * made between the two scrapes. undefined if any count went down (the node
 * restarted, or the scrapes came from two nodes): no difference means anything.
 * @param {Histogram} earlier
 * @param {Histogram} later
 * @returns {Histogram | undefined}
 */
export function histogramDelta(earlier, later) {
  if (later.count < earlier.count) return undefined;
  const before = new Map(earlier.buckets.map((b) => [b.le, b.count]));
  const buckets = [];
  for (const b of later.buckets) {
    const count = b.count - (before.get(b.le) ?? 0);
    if (count < 0) return undefined;
    buckets.push({ le: b.le, count });
  }
  return { count: later.count - earlier.count, buckets };
}

/**
 * One scrape's KV traffic and when it was taken.
 * @typedef {{ atMs: number, traffic: { writes: Histogram, reads: Histogram, serverErrors: number } }} Scrape
 */

/**
 * Rates per second and p99 latencies (ms) of the KV traffic between two
 * scrapes; a p99 is null when no request of that kind was answered in
 * between. undefined if the window is empty or a counter went down.
 * @param {Scrape} earlier
 * @param {Scrape} later
 * @returns {{ writesPerSec: number, readsPerSec: number, serverErrorsPerSec: number, writeP99Ms: number | null, readP99Ms: number | null } | undefined}
 */
export function windowStats(earlier, later) {
  const seconds = (later.atMs - earlier.atMs) / 1000;
  if (!(seconds > 0)) return undefined;
  const writes = histogramDelta(earlier.traffic.writes, later.traffic.writes);
  const reads = histogramDelta(earlier.traffic.reads, later.traffic.reads);
  const serverErrors = later.traffic.serverErrors - earlier.traffic.serverErrors;
  if (writes === undefined || reads === undefined || serverErrors < 0) return undefined;
  const p99Ms = (/** @type {Histogram} */ h) => {
    const seconds99 = histogramQuantile(0.99, h.buckets);
    return seconds99 === null ? null : seconds99 * 1000;
  };
  return {
    writesPerSec: writes.count / seconds,
    readsPerSec: reads.count / seconds,
    serverErrorsPerSec: serverErrors / seconds,
    writeP99Ms: p99Ms(writes),
    readP99Ms: p99Ms(reads),
  };
}

/**
 * A metric summed over its label sets (a gauge per worker core sums to the
 * node's); undefined if the scrape has no such metric.
 * @param {{ name: string, labels: Record<string, string>, value: number }[]} samples
 * @param {string} name
 * @returns {number | undefined}
 */
export function gaugeValue(samples, name) {
  let total;
  for (const s of samples) if (s.name === name) total = (total ?? 0) + s.value;
  return total;
}
