/**
 * Virtual time for the whole-node simulation: one clock for the run, and a
 * view of it per node incarnation. Nothing here reads a real clock; the
 * simulation moves time with `advanceTo`, firing due timers in (due time,
 * creation order), so a seed replays a run exactly.
 *
 * A node's view can be paused (its timers due meanwhile fire on resume, late,
 * as after a stall) and killed (its timers never fire: the process is gone).
 */
import { assert, type Clock, type Timer } from '@flotilla/core';

interface Entry {
  readonly dueMs: number;
  readonly seq: number;
  readonly fn: () => void;
  readonly owner: NodeClock | undefined;
  cancelled: boolean;
}

export class VirtualClock implements Clock {
  private now = 0;
  private seq = 0;
  /** A binary heap on (dueMs, seq). */
  private readonly heap: Entry[] = [];

  nowMs(): number {
    return this.now;
  }

  setTimer(ms: number, fn: () => void): Timer {
    return this.schedule(ms, fn, undefined);
  }

  /** @internal */
  schedule(ms: number, fn: () => void, owner: NodeClock | undefined): Timer {
    // A zero delay still fires later, never inside this call (as setTimeout).
    const entry: Entry = { dueMs: this.now + Math.max(0, Number.isFinite(ms) ? ms : 0), seq: this.seq++, fn, owner, cancelled: false };
    this.push(entry);
    return { cancel: () => void (entry.cancelled = true) };
  }

  /** Due time of the next live timer, or undefined. */
  nextDueMs(): number | undefined {
    while (this.heap.length > 0 && this.heap[0]!.cancelled) this.pop();
    return this.heap[0]?.dueMs;
  }

  /**
   * Moves time to the next timer due at or before `limitMs` and fires every
   * timer due then; returns false (and moves to `limitMs`) when none is.
   */
  fireNext(limitMs: number): boolean {
    const due = this.nextDueMs();
    if (due === undefined || due > limitMs) {
      assert(limitMs >= this.now, () => `time cannot go back from ${this.now} to ${limitMs}`);
      this.now = limitMs;
      return false;
    }
    this.now = Math.max(this.now, due);
    while (this.heap.length > 0 && this.heap[0]!.dueMs <= this.now) {
      const e = this.pop();
      if (e.cancelled) continue;
      if (e.owner === undefined) e.fn();
      else e.owner.fire(e);
    }
    return true;
  }

  /** Live timers (the simulation's queue-growth check). */
  get pendingCount(): number {
    return this.heap.filter((e) => !e.cancelled).length;
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): Entry {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);
}

/** One node incarnation's view of the clock: same time, timers it can pause and lose. */
/**
 * A machine's clock against the run's: it may run at another rate, and be
 * stepped forward or back (a clock fault). Kept per simulated node across its
 * incarnations, as a machine's clock outlives its processes.
 */
export class Skew {
  private anchorRunMs = 0;
  private anchorLocalMs = 0;
  rate = 1;

  constructor(private readonly clock: VirtualClock) {}

  nowMs(): number {
    return this.anchorLocalMs + (this.clock.nowMs() - this.anchorRunMs) * this.rate;
  }

  setRate(rate: number): void {
    this.anchorLocalMs = this.nowMs();
    this.anchorRunMs = this.clock.nowMs();
    this.rate = rate;
  }

  step(ms: number): void {
    this.anchorLocalMs += ms;
  }
}

export class NodeClock implements Clock {
  private paused = false;
  private killed = false;
  private readonly deferred: (() => void)[] = [];

  constructor(
    private readonly clock: VirtualClock,
    private readonly skew?: Skew,
  ) {}

  nowMs(): number {
    return this.skew === undefined ? this.clock.nowMs() : this.skew.nowMs();
  }

  /** `ms` of this node's time: longer or shorter in the run's while its clock runs slow or fast. */
  setTimer(ms: number, fn: () => void): Timer {
    if (this.killed) return { cancel: () => undefined };
    const rate = this.skew?.rate ?? 1;
    // Whole microseconds of the run's time, at least one for a positive wait: a timer re-armed for the
    // float residue of a skewed clock (`deadline - now`, a few ulps) must still move time, or it fires
    // at the same run time for ever. At rate 1 too: a clock stepped back or forward keeps its offset's
    // residue, and a router backing off for a deadline's last 1e-10 ms looped for ever at one instant
    // (seed 9542 with clock faults and merges). A real timer waits at least a millisecond.
    return this.clock.schedule(ms <= 0 ? ms : Math.max(0.001, Math.ceil((ms / rate) * 1000) / 1000), fn, this);
  }

  /** @internal */
  fire(e: { fn: () => void }): void {
    if (this.killed) return;
    if (this.paused) this.deferred.push(e.fn);
    else e.fn();
  }

  pause(): void {
    this.paused = true;
  }

  /** Timers that came due while paused fire now, on a later timer turn, in the order they came due. */
  resume(): void {
    this.paused = false;
    for (const fn of this.deferred.splice(0)) this.clock.schedule(0, fn, this);
  }

  kill(): void {
    this.killed = true;
    this.deferred.length = 0;
  }
}
