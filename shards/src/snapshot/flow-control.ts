import { assert } from '@flotilla/core';

/**
 * Buckets per doubling of the latency sketch: 8 gives ~9 % steps, finer
 * than the interval-to-interval noise of a latency quantile.
 */
const SKETCH_BUCKETS_PER_OCTAVE = 8;
/** The sketch's lowest bucket bound: below a loopback round trip, so nothing real falls under it. */
const SKETCH_LATENCY_MS_MIN = 0.01;
/** 24 doublings above 0.01 ms: ~168 s, past any request deadline; longer samples count in the last bucket. */
const SKETCH_BUCKET_COUNT = 24 * SKETCH_BUCKETS_PER_OCTAVE;

/**
 * Latencies of one interval as a log-scale histogram: O(1) per sample, a
 * fixed 192 counters however many requests an interval sees, and a
 * quantile within one bucket (~9 %) of the exact one.
 */
export class LatencySketch {
  private readonly counts = new Uint32Array(SKETCH_BUCKET_COUNT);
  private total = 0;

  get count(): number {
    return this.total;
  }

  observe(latencyMs: number): void {
    if (!(latencyMs >= 0)) return; // NaN or negative (a clock stepping back): not a latency
    const index = latencyMs <= SKETCH_LATENCY_MS_MIN ? 0 : Math.min(SKETCH_BUCKET_COUNT - 1, Math.floor(Math.log2(latencyMs / SKETCH_LATENCY_MS_MIN) * SKETCH_BUCKETS_PER_OCTAVE));
    this.counts[index]!++;
    this.total++;
  }

  /** The upper bound of the bucket holding the `q` quantile (nearest rank); undefined when empty. */
  quantileMs(q: number): number | undefined {
    assert(q > 0 && q <= 1, () => `quantile ${q} is not in (0, 1]`);
    if (this.total === 0) return undefined;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let i = 0; i < SKETCH_BUCKET_COUNT; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return SKETCH_LATENCY_MS_MIN * 2 ** ((i + 1) / SKETCH_BUCKETS_PER_OCTAVE);
    }
    throw new Error(`latency sketch counted ${this.total} samples but its buckets hold ${seen}`);
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
  }
}

export interface SnapshotFlowSettings {
  /** The ceiling: the node's configured snapshot bandwidth (snapshotBytesPerSecMax). */
  readonly bytesPerSecMax: number;
  /** The floor: a move always progresses, however loaded the node is. */
  readonly bytesPerSecMin: number;
  /** How often the rate is reconsidered. */
  readonly intervalMs: number;
  /** Added to the rate after an interval that was limited by it and whose foreground latency was fine. */
  readonly increaseBytesPerSec: number;
  /** What the rate is multiplied by after an interval whose foreground latency was too high. */
  readonly decreaseFactor: number;
  /** Foreground latency is too high above this multiple of its baseline: the rate drops. */
  readonly decreaseAboveRatio: number;
  /** Foreground latency is fine below this multiple of its baseline: the rate may grow. Between the two it holds, so the rate does not probe into every bit of congestion (TCP Vegas's band). */
  readonly increaseBelowRatio: number;
  /** Which quantile of an interval's foreground latencies is its signal. */
  readonly latencyQuantile: number;
  /** Fewer foreground samples than this in an interval: nothing to protect (or too few to tell), never a decrease. */
  readonly samplesPerIntervalMin: number;
}

/** One interval's verdict (what the relay logs at debug and tests check). */
export interface SnapshotFlowDecision {
  readonly action: 'increase' | 'decrease' | 'hold';
  readonly reason: 'latencyHigh' | 'latencyRaised' | 'latencyFine' | 'tooFewSamples' | 'notLimited' | 'noBaseline' | 'afterDecrease' | 'atLimit';
  /** The rate from now on. */
  readonly bytesPerSec: number;
  /** The interval's foreground latency quantile, if it had enough samples. */
  readonly signalMs: number | undefined;
  readonly baselineMs: number | undefined;
  /** Snapshot bytes let through in the interval. */
  readonly sentBytes: number;
}

/**
 * Interval signals the baseline is the median of: the last 64 quiet
 * intervals (no snapshot bytes sent in them or the one before), 16 s at
 * 250 ms. A median of many, not a minimum: an interval's quantile is noisy,
 * and the minimum of 64 noisy values sits far below a typical quiet one.
 */
export const BASELINE_INTERVALS_MAX = 64;
/** Quiet intervals needed before the baseline is trusted; until then the median of all recent intervals' signals stands in. */
export const BASELINE_INTERVALS_MIN = 4;
/** An interval counts as limited by the rate when at least this share of its allowance went out (below that the streams, not the rate, set the pace). */
const LIMITED_SHARE_MIN = 0.5;

/**
 * A snapshot rate (one for sending, one for staging what arrives), adapted
 * to the node's foreground latency (AIMD,
 * as TCP adapts to loss and LEDBAT to queueing delay): every interval the
 * latency of the node's own client writes is compared with its baseline,
 * the same quantile in intervals when no snapshot was sending. Too high
 * (above decreaseAboveRatio × baseline) while snapshots were sending: the
 * rate drops to decreaseFactor × what was actually sent, and the next
 * interval waits to see the effect. Fine (below increaseBelowRatio ×
 * baseline, or too few writes to tell), and the rate was what held the
 * streams back: the rate grows by increaseBytesPerSec. Always within
 * [bytesPerSecMin, bytesPerSecMax]. Pure: time and latencies come in as
 * numbers (ARCHITECTURE.md, "Snapshot flow control (issue 19)").
 */
export class SnapshotFlowControl {
  private rate: number;
  private readonly sketch = new LatencySketch();
  private intervalStartMs: number;
  private sentBytes = 0;
  private sentBytesBefore = 0;
  /** Quiet intervals' signals, oldest first, at most BASELINE_INTERVALS_MAX. */
  private readonly quiet: number[] = [];
  /** Every interval's signal, oldest first, at most BASELINE_INTERVALS_MAX: the stand-in baseline's source. */
  private readonly recent: number[] = [];
  private decreasedLast = false;

  constructor(
    private readonly settings: SnapshotFlowSettings,
    startMs: number,
  ) {
    const s = settings;
    if (!(s.bytesPerSecMin > 0) || !(s.bytesPerSecMax >= s.bytesPerSecMin)) throw new RangeError(`snapshot rate floor ${s.bytesPerSecMin} B/s must be positive and at most the ceiling ${s.bytesPerSecMax} B/s`);
    if (!(s.intervalMs > 0)) throw new RangeError(`snapshot flow interval ${s.intervalMs} ms must be positive`);
    if (!(s.decreaseFactor > 0 && s.decreaseFactor < 1)) throw new RangeError(`snapshot rate decrease factor ${s.decreaseFactor} must be in (0, 1)`);
    if (!(s.increaseBytesPerSec > 0)) throw new RangeError(`snapshot rate increase ${s.increaseBytesPerSec} B/s must be positive`);
    if (!(s.increaseBelowRatio >= 1 && s.decreaseAboveRatio >= s.increaseBelowRatio)) throw new RangeError(`latency ratios: increase below ${s.increaseBelowRatio} must be at least 1 and at most decrease above ${s.decreaseAboveRatio}`);
    if (!(s.latencyQuantile > 0 && s.latencyQuantile <= 1)) throw new RangeError(`latency quantile ${s.latencyQuantile} must be in (0, 1]`);
    this.rate = s.bytesPerSecMax;
    this.intervalStartMs = startMs;
  }

  /** The rate snapshots may be sent at now. */
  get bytesPerSec(): number {
    return this.rate;
  }

  /** The latency foreground work is judged against, once there is one. */
  get baselineMs(): number | undefined {
    return this.baseline();
  }

  /** A foreground operation (a client write this node led) took `latencyMs`. */
  observeForeground(latencyMs: number): void {
    this.sketch.observe(latencyMs);
  }

  /** Snapshot bytes went out under the current rate. */
  onSent(bytes: number): void {
    this.sentBytes += bytes;
  }

  /** Closes the interval once intervalMs have passed since it opened; returns its decision, or undefined before then. */
  onTick(nowMs: number): SnapshotFlowDecision | undefined {
    const s = this.settings;
    const elapsedMs = nowMs - this.intervalStartMs;
    if (elapsedMs < s.intervalMs) return undefined;
    const signalMs = this.sketch.count >= s.samplesPerIntervalMin ? this.sketch.quantileMs(s.latencyQuantile) : undefined;
    const sentBytes = this.sentBytes;
    const quiet = sentBytes === 0 && this.sentBytesBefore === 0;
    // The baseline the interval is judged against excludes the interval itself.
    const baselineMs = this.baseline();
    const decision = this.decide({ signalMs, baselineMs, sentBytes, elapsedMs });
    if (signalMs !== undefined) {
      if (quiet) push(this.quiet, signalMs);
      push(this.recent, signalMs);
    }
    this.decreasedLast = decision.action === 'decrease';
    this.rate = decision.bytesPerSec;
    this.sketch.reset();
    this.sentBytesBefore = sentBytes;
    this.sentBytes = 0;
    this.intervalStartMs = nowMs;
    return decision;
  }

  private decide(i: { signalMs: number | undefined; baselineMs: number | undefined; sentBytes: number; elapsedMs: number }): SnapshotFlowDecision {
    const s = this.settings;
    const hold = (reason: SnapshotFlowDecision['reason']): SnapshotFlowDecision => ({ action: 'hold', reason, bytesPerSec: this.rate, signalMs: i.signalMs, baselineMs: i.baselineMs, sentBytes: i.sentBytes });
    const sentBytesPerSec = (i.sentBytes * 1000) / i.elapsedMs;
    const latencyHigh = i.signalMs !== undefined && i.baselineMs !== undefined && i.signalMs > s.decreaseAboveRatio * i.baselineMs;
    const latencyRaised = i.signalMs !== undefined && i.baselineMs !== undefined && i.signalMs > s.increaseBelowRatio * i.baselineMs;
    if (latencyHigh && i.sentBytes > 0) {
      // The last decrease has not shown yet: the interval that saw it began before it.
      if (this.decreasedLast) return hold('afterDecrease');
      if (this.rate === s.bytesPerSecMin) return hold('atLimit');
      // From what was sent, not the rate: a rate the streams did not use would take several decreases to bite.
      const bytesPerSec = Math.max(s.bytesPerSecMin, Math.min(this.rate, sentBytesPerSec) * s.decreaseFactor);
      return { action: 'decrease', reason: 'latencyHigh', bytesPerSec, signalMs: i.signalMs, baselineMs: i.baselineMs, sentBytes: i.sentBytes };
    }
    if (latencyHigh) return hold('latencyHigh');
    if (i.signalMs !== undefined && i.baselineMs === undefined) return hold('noBaseline');
    if (latencyRaised) return hold('latencyRaised');
    // Growing a rate the streams do not fill would only make the next decrease slower to bite (RFC 7661).
    if (sentBytesPerSec < LIMITED_SHARE_MIN * this.rate) return hold('notLimited');
    if (this.rate === s.bytesPerSecMax) return hold('atLimit');
    const bytesPerSec = Math.min(s.bytesPerSecMax, this.rate + s.increaseBytesPerSec);
    return { action: 'increase', reason: i.signalMs === undefined ? 'tooFewSamples' : 'latencyFine', bytesPerSec, signalMs: i.signalMs, baselineMs: i.baselineMs, sentBytes: i.sentBytes };
  }

  private baseline(): number | undefined {
    if (this.quiet.length >= BASELINE_INTERVALS_MIN) return median(this.quiet);
    if (this.recent.length >= BASELINE_INTERVALS_MIN) return median(this.recent);
    return undefined;
  }
}

function push(ring: number[], value: number): void {
  ring.push(value);
  if (ring.length > BASELINE_INTERVALS_MAX) ring.shift();
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}
