import { Registry, collectDefaultMetrics } from 'prom-client';
import { mirroredCounter, mirroredGauge } from './mirrored.js';

/**
 * The process's metrics: prom-client's defaults (CPU, resident memory, open
 * descriptors, heap by space, event-loop lag, GC durations, active handles
 * and resources) plus the event loop's busy and idle time and ArrayBuffer
 * memory, which they lack and a soak run follows (bench/src/soak/sample.ts).
 *
 * Kept once per process, unlike everything else in /metrics, which is per
 * node: they describe the process, which two nodes of one test process
 * share, and collectDefaultMetrics starts a GC observer and an event-loop
 * delay sampler that nothing stops — one per node would pile up over a test
 * run. Each node's registry adds these same metric objects (NodeMetrics),
 * so every node's /metrics shows them.
 *
 * Heap, GC and the event loop are the main thread's: the worker cores have
 * their own, which the process's RSS and CPU time include.
 */
let shared: Registry | undefined;

export function processMetricsRegistry(): Registry {
  shared ??= createProcessRegistry();
  return shared;
}

function createProcessRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  mirroredGauge(registry, {
    name: 'nodejs_array_buffers_bytes',
    help: 'Memory of ArrayBuffers and Buffers (main thread), part of nodejs_external_memory_bytes.',
    samples: () => [{ value: process.memoryUsage().arrayBuffers }],
  });
  // Cumulative, so two scrapes give the loop's busy share over any interval without a histogram.
  mirroredCounter(registry, {
    name: 'nodejs_eventloop_active_seconds_total',
    help: 'Time the main event loop spent running callbacks; its rate over the rate of it plus nodejs_eventloop_idle_seconds_total is the busy share.',
    samples: () => [{ value: performance.eventLoopUtilization().active / 1e3 }],
  });
  mirroredCounter(registry, {
    name: 'nodejs_eventloop_idle_seconds_total',
    help: 'Time the main event loop spent waiting for events.',
    samples: () => [{ value: performance.eventLoopUtilization().idle / 1e3 }],
  });
  return registry;
}
