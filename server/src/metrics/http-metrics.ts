import { Histogram, type Registry } from 'prom-client';
import { LATENCY_BUCKET_BOUNDS_SECONDS } from '@flotilla/shards';

/** The label `route` takes for a request no route matched (404 ROUTE_NOT_FOUND, 405): one series, not one per URL. */
export const UNMATCHED_ROUTE = 'unmatched';

/** Records one answered request; app.ts makes one per route (routeRecorder) when it adds the route. */
export type RequestRecorder = (statusCode: number, seconds: number) => void;

/**
 * The HTTP server's latency histogram, by route pattern (`/kv/*`, never the
 * URL: keys would make a series each), method and status code. What app.ts
 * needs of a node's metrics; absent, the server records nothing.
 */
export class HttpMetrics {
  private readonly duration: Histogram<'route' | 'method' | 'status_code'>;
  private readonly unmatched = new Map<string, RequestRecorder>();

  constructor(registry: Registry) {
    this.duration = new Histogram({
      name: 'flotilla_http_request_duration_seconds',
      help: 'HTTP requests answered by this node, from the request arriving to the reply written, by route pattern, method and status code.',
      labelNames: ['route', 'method', 'status_code'],
      buckets: [...LATENCY_BUCKET_BOUNDS_SECONDS],
      registers: [registry],
    });
  }

  /**
   * The recorder of one route: its labelled series are looked up once per
   * status code it answers, then each request costs prom-client's observe
   * and nothing else.
   */
  routeRecorder(route: string, method: string): RequestRecorder {
    const byStatus = new Map<number, { observe(seconds: number): void }>();
    return (statusCode, seconds) => {
      let series = byStatus.get(statusCode);
      if (series === undefined) {
        series = this.duration.labels({ route, method, status_code: statusCode });
        byStatus.set(statusCode, series);
      }
      series.observe(seconds);
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
