// A node's metrics through prom-client: one Registry per node (node-metrics.ts), the process's metrics
// once per process (process-metrics.ts), the HTTP latency histogram (http-metrics.ts), and the ranges'
// health as this node sees it (range-health.ts). ARCHITECTURE.md ("Metrics") lists every metric.
export { NodeMetrics, type MetricFamily, type NodeMetricsSources } from './node-metrics.js';
export { HttpMetrics, UNMATCHED_ROUTE, type RequestRecorder } from './http-metrics.js';
export { rangeHealthOf, type RangeHealth } from './range-health.js';
export { processMetricsRegistry } from './process-metrics.js';
