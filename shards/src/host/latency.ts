import { assert } from '@flotilla/core';

/**
 * Upper bounds of the latency histograms' buckets, in seconds (Prometheus's
 * `le`): 100 µs to 10 s in 1-2.5-5 steps. A synced LMDB commit takes 0.1 ms
 * on tmpfs to tens of ms on a disk; a request waiting out an election takes
 * seconds. The HTTP histogram uses the same bounds, so a write's stages and
 * its whole round trip read against one another.
 */
export const LATENCY_BUCKET_BOUNDS_SECONDS: readonly number[] = Object.freeze([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);

for (let i = 1; i < LATENCY_BUCKET_BOUNDS_SECONDS.length; i++) {
  assert(LATENCY_BUCKET_BOUNDS_SECONDS[i - 1]! < LATENCY_BUCKET_BOUNDS_SECONDS[i]!, 'latency bucket bounds must ascend');
}

/**
 * A histogram as Flotilla counts it: a fixed array of counts, one per
 * bucket of LATENCY_BUCKET_BOUNDS_SECONDS plus a last one for what exceeds
 * the largest bound. Not cumulative (the exposition sums them): an
 * observation is one increment, and cores' arrays add up element-wise. A
 * worker core's reach the main thread with its other stats, when asked for
 * them: no message per observation. The HTTP server counts its requests
 * the same way (server/src/metrics/http-metrics.ts).
 */
export interface LatencyBuckets {
  readonly counts: number[];
  sumSeconds: number;
}

/** The histograms a core keeps (CoreStats.latencies). */
export interface CoreLatencies {
  /** A tracked proposal (a write batch, a split, a check, a membership change), from its proposal on the leader to the round that takes its entry as committed. */
  readonly proposalToCommit: LatencyBuckets;
  /** The same proposal from that round's start to its apply being committed to the store (answered). */
  readonly commitToApply: LatencyBuckets;
  /** A group commit made durable (NodeStore.persist synced: new entries, a term or a vote). */
  readonly storeCommitSynced: LatencyBuckets;
  /** A group commit of commit indexes and applies only (not synced). */
  readonly storeCommitUnsynced: LatencyBuckets;
}

export function emptyLatencyBuckets(): LatencyBuckets {
  return { counts: new Array<number>(LATENCY_BUCKET_BOUNDS_SECONDS.length + 1).fill(0), sumSeconds: 0 };
}

export function emptyCoreLatencies(): CoreLatencies {
  return { proposalToCommit: emptyLatencyBuckets(), commitToApply: emptyLatencyBuckets(), storeCommitSynced: emptyLatencyBuckets(), storeCommitUnsynced: emptyLatencyBuckets() };
}

/** Counts one duration: a scan over 16 bounds, no allocation. */
export function observeLatency(h: LatencyBuckets, seconds: number): void {
  const bounds = LATENCY_BUCKET_BOUNDS_SECONDS;
  let i = 0;
  while (i < bounds.length && seconds > bounds[i]!) i++;
  h.counts[i]!++;
  h.sumSeconds += seconds;
}

/** A copy to send or keep: the live arrays go on counting. */
export function copyCoreLatencies(l: CoreLatencies): CoreLatencies {
  const copy = (h: LatencyBuckets): LatencyBuckets => ({ counts: [...h.counts], sumSeconds: h.sumSeconds });
  return { proposalToCommit: copy(l.proposalToCommit), commitToApply: copy(l.commitToApply), storeCommitSynced: copy(l.storeCommitSynced), storeCommitUnsynced: copy(l.storeCommitUnsynced) };
}
