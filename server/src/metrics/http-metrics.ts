import type { Registry } from 'prom-client';
import { emptyLatencyBuckets, observeLatency, type LatencyBuckets } from '@flotilla/shards';
import { BucketHistogram } from './mirrored.js';

/** The label `route` takes for a request no route matched (404 ROUTE_NOT_FOUND, 405): one series, not one per URL. */
export const UNMATCHED_ROUTE = 'unmatched';

/** Records one answered request; app.ts makes one per route (routeRecorder) when it adds the route. */
export type RequestRecorder = (statusCode: number, seconds: number) => void;

/**
 * The HTTP server's latency histogram, by route pattern (`/kv/*`, never the
 * URL: keys would make a series each), method and status code. What app.ts
 * needs of a node's metrics; absent, the server records nothing.
 *
 * Counted as the worker cores count theirs (LatencyBuckets: an array of
 * bucket counts per series, exposed through BucketHistogram) rather than
 * with prom-client's Histogram, whose observe builds a label hash per
 * call: about 1 µs a request against some 30 ns, measured with
 * http-overhead-bench (ARCHITECTURE.md, "Metrics").
 */
export class HttpMetrics {
  /** Every series, in the order first answered: its labels and its buckets. */
  private readonly series: { readonly labels: Readonly<Record<string, string | number>>; readonly buckets: LatencyBuckets }[] = [];
  private readonly unmatched = new Map<string, RequestRecorder>();

  constructor(registry: Registry) {
    new BucketHistogram(
      'flotilla_http_request_duration_seconds',
      'HTTP requests answered by this node, from the request arriving to the reply written, by route pattern, method and status code.',
      () => this.series,
    ).register(registry);
  }

  /** The recorder of one route: its series are found once per status code it answers, then a request costs a bucket increment. */
  routeRecorder(route: string, method: string): RequestRecorder {
    const byStatus = new Map<number, LatencyBuckets>();
    return (statusCode, seconds) => {
      let buckets = byStatus.get(statusCode);
      if (buckets === undefined) {
        buckets = emptyLatencyBuckets();
        byStatus.set(statusCode, buckets);
        this.series.push({ labels: { route, method, status_code: statusCode }, buckets });
      }
      observeLatency(buckets, seconds);
    };
  }

  /** A request no route matched; its method is the client's, so only the common ones become label values. */
  recordUnmatched(method: string, statusCode: number, seconds: number): void {
    const known = METHODS_LABELLED.has(method) ? method : 'other';
    let recorder = this.unmatched.get(known);
    if (recorder === undefined) {
      recorder = this.routeRecorder(UNMATCHED_ROUTE, known);
      this.unmatched.set(known, recorder);
    }
    recorder(statusCode, seconds);
  }
}

/** Methods an unmatched request keeps as its label; any other is `other` (a label value per made-up method would be unbounded). */
const METHODS_LABELLED: ReadonlySet<string> = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS']);
