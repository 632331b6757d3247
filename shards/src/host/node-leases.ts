import { assert } from '@flotilla/core';

/**
 * Node leases, the Host's side (core/src/read/node-leases.ts states the
 * rule Raft keeps). Every `intervalTicks` this node sends each peer a lease
 * segment: "I am incarnation `inc`; this is my `seq`-th segment to you; the
 * newest of yours I received was `ackSeq` (of your incarnation `ackInc`),
 * and on it I promised (`promised`); my clocks read `monoMs` / `wallMs`".
 *
 * - **Promising (follower side).** On a peer's segment, this node promises
 *   the peer for `promiseTicks` of its own ticks — if the peer hears us (it
 *   acknowledged a segment we sent within that time; otherwise the peer has
 *   no lease to protect, and a promise would only keep an asymmetric
 *   partition from electing anyone else). Ticks, not a clock: a tick loop
 *   that stalls, or a clock that jumps forward, makes a promise last longer,
 *   never shorter.
 * - **Holding (leader side).** A peer's acknowledgement of our segment `s`,
 *   promised, gives us a lease from it until `sent(s) + leaseMs` on both our
 *   monotonic and our wall clock, each checked on its own; a lease further
 *   than `leaseMs` in the future is as void as an expired one, so a clock
 *   stepped forward, or back while a lease runs, ends it instead of
 *   stretching it. A clock stepped back also ends every lease whose
 *   segment was sent before the step (ClockSteps): read against the
 *   stepped-back clock, a lease that had run out would be live again (node
 *   simulation seed 79550: an isolated leader, its clock stepped back 2.5
 *   s, served reads older than writes its successor had acknowledged).
 *   `leaseMs` is the promise shortened by a peer clock up to `driftMax`
 *   fast, less two ticks for tick granularity and the step tolerance.
 * - **Clock rates.** A promise counted in a peer's ticks is shorter in real
 *   time if the peer's clock runs fast. From the peer's monotonic readings
 *   against ours we hold no lease from a peer whose clock ran more than
 *   `driftMax` fast over the last rate window, or more than `RATE_DRIFT_LONG_MAX`
 *   over `RATE_WINDOW_LONG_MS`; until a long window is measured, none at all.
 * - **Epochs.** A lease that lapsed, or a peer that restarted (new
 *   incarnation), starts a new epoch: Raft stamps acknowledgements with the
 *   epoch (NodeLeases.ackMark), and one from an older epoch proves nothing
 *   about what the peer's replica follows now.
 */

/** Wire form of a lease segment (node-batch.ts LEASE_SEGMENT_FORMAT). */
export interface LeaseSegment {
  readonly inc: number;
  readonly seq: number;
  readonly ackInc: number;
  readonly ackSeq: number;
  readonly promised: boolean;
  readonly monoMs: number;
  readonly wallMs: number;
}

/** What the cores need: promises made (until a main-loop tick), and leases held (epoch, until on each clock). */
export interface LeaseChanges {
  readonly promises: (readonly [node: number, untilTick: number])[];
  readonly holds: (readonly [node: number, epoch: number, untilMonoMs: number, untilWallMs: number, steps: number])[];
}

/** The two clocks a lease is checked against. */
export interface LeaseClocks {
  monoMs(): number;
  wallMs(): number;
}

/** Readings this far behind the furthest one are a clock stepped back; a step back by less may stretch a lease by as much (leaseMsOf takes it off). */
export const CLOCK_STEP_TOLERANCE_MS = 5;
const CLOCK_STEP_TOLERANCE_US = BigInt(CLOCK_STEP_TOLERANCE_MS * 1_000);

/** Cells of a ClockSteps buffer: the furthest monotonic and wall readings (µs), and the steps back seen. */
const STEP_CELLS = 3;

/** A ClockSteps buffer, shared by a node's Host and its cores (they may run on other threads). */
export function clockStepBuffer(): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(STEP_CELLS * BigInt64Array.BYTES_PER_ELEMENT);
  const cells = new BigInt64Array(buffer);
  cells[0] = cells[1] = -(2n ** 63n);
  return buffer;
}

/**
 * Counts the times a node's lease clocks were read behind their furthest
 * reading (stepped back), over every thread sharing the buffer. A lease
 * holds only while the count is what it was when its segment was sent. A
 * step back shows once some thread reads the clock before it caught up
 * again: the Host's lease segments, its cores' lease checks, every lease
 * read. A node that reads no clock for that whole time had a clock that
 * stood still, outside the bounded drift leases assume.
 */
export class ClockSteps {
  private readonly cells: BigInt64Array;

  constructor(buffer: SharedArrayBuffer = clockStepBuffer()) {
    this.cells = new BigInt64Array(buffer);
  }

  /** The steps back seen so far, these readings taken in. */
  observe(monoMs: number, wallMs: number): number {
    this.see(0, monoMs);
    this.see(1, wallMs);
    return Number(Atomics.load(this.cells, 2));
  }

  private see(cell: number, ms: number): void {
    const us = BigInt(Math.round(ms * 1_000));
    for (;;) {
      const furthest = Atomics.load(this.cells, cell);
      const back = furthest - us > CLOCK_STEP_TOLERANCE_US;
      if (!back && us <= furthest) return;
      // A step back moves the mark back with it: later readings are measured from where the clock is now.
      if (Atomics.compareExchange(this.cells, cell, furthest, us) === furthest) {
        if (back) Atomics.add(this.cells, 2, 1n);
        return;
      }
    }
  }
}

/** The process's clocks, the same on every thread (performance.now() is per thread): what worker cores and their Host check leases against. */
export const PROCESS_LEASE_CLOCKS: LeaseClocks = {
  monoMs: () => Number(process.hrtime.bigint()) / 1e6,
  wallMs: () => Date.now(),
};

/** Rate samples are at least this far apart (peer clock against ours). */
const RATE_SAMPLE_SPACING_MS = 2_000;
/** The long rate window: leases start once a peer was measured over at least this long. */
export const RATE_WINDOW_LONG_MS = 10_000;
/** Over the long window a peer's clock may run this much fast (message delay jitter included). */
const RATE_DRIFT_LONG_MAX = 0.05;
/** Segments remembered per peer for acknowledgement lookup. */
const SENT_REMEMBERED = 64;

interface Sent {
  seq: number;
  tick: number;
  monoMs: number;
  wallMs: number;
  /** ClockSteps' count when sent. */
  steps: number;
}

interface Peer {
  seq: number;
  /** Ring of what we sent, by seq % SENT_REMEMBERED. */
  readonly sent: (Sent | undefined)[];
  /** The peer's incarnation, and its newest segment we received (0: none). */
  inc: number;
  lastSeq: number;
  promisedLast: boolean;
  /** Our promise to the peer, in main-loop ticks. */
  promiseUntilTick: number;
  /** Our lease from the peer. */
  epoch: number;
  untilMonoMs: number;
  untilWallMs: number;
  /** ClockSteps' count when the segment giving the lease was sent. */
  steps: number;
  /** (our monotonic ms at receipt, the peer's monotonic ms at sending), spaced RATE_SAMPLE_SPACING_MS. */
  samples: [number, number][];
}

export interface NodeLeaseOptions {
  /** This process's incarnation: a peer seeing it change knows we restarted. Positive. */
  readonly incarnation: number;
  /** How long a promise lasts, in ticks: the Raft election timeout. */
  readonly promiseTicks: number;
  /** Milliseconds per tick (nominal). */
  readonly tickMs: number;
  /** How much faster than ours a peer's clock may run over a rate window and still give leases. */
  readonly driftMax: number;
  readonly clocks: LeaseClocks;
  /** Shared with the node's cores (clockStepBuffer); a buffer of its own if not given. */
  readonly clockSteps?: SharedArrayBuffer;
}

/** How long a lease from a peer lasts on our clocks (see the module comment). */
export function leaseMsOf(o: Pick<NodeLeaseOptions, 'promiseTicks' | 'tickMs' | 'driftMax'>): number {
  return Math.floor((o.promiseTicks * o.tickMs) / (1 + o.driftMax)) - 2 * o.tickMs - CLOCK_STEP_TOLERANCE_MS;
}

export class NodeLeaseTable {
  private readonly peers = new Map<number, Peer>();
  private readonly changedPromises = new Set<number>();
  private readonly changedHolds = new Set<number>();
  readonly leaseMs: number;
  private readonly steps: ClockSteps;

  constructor(private readonly o: NodeLeaseOptions) {
    assert(o.incarnation > 0, 'incarnation must be positive');
    this.steps = new ClockSteps(o.clockSteps);
    this.leaseMs = leaseMsOf(o);
    assert(this.leaseMs > 0, () => `no lease is left of a ${o.promiseTicks}-tick promise at ${o.tickMs} ms per tick and drift ${o.driftMax}`);
  }

  /** The next segment for `peer` (sent every interval whatever else goes out: it renews the leases both ways). */
  segmentFor(peer: number, nowTick: number): LeaseSegment {
    const p = this.peer(peer);
    const seq = ++p.seq;
    const monoMs = this.o.clocks.monoMs();
    const wallMs = this.o.clocks.wallMs();
    p.sent[seq % SENT_REMEMBERED] = { seq, tick: nowTick, monoMs, wallMs, steps: this.steps.observe(monoMs, wallMs) };
    return { inc: this.o.incarnation, seq, ackInc: p.inc, ackSeq: p.lastSeq, promised: p.promisedLast, monoMs, wallMs };
  }

  /** A peer's segment arrived (at main-loop tick `nowTick`). */
  onSegment(from: number, s: LeaseSegment, nowTick: number): void {
    const p = this.peer(from);
    const monoMs = this.o.clocks.monoMs();
    if (s.inc !== p.inc) {
      // A new incarnation (or the first we hear): whatever its replicas acknowledged before is void.
      p.inc = s.inc;
      p.lastSeq = 0;
      p.samples = [];
      this.lapse(from, p);
    } else if (s.seq <= p.lastSeq) {
      return; // reordered or duplicated: the newer one already counted
    }
    p.lastSeq = s.seq;
    this.sample(p, monoMs, s.monoMs);
    // Promise only to a peer that hears us: it acknowledged a segment of ours sent within a promise's time.
    const acked = s.ackInc === this.o.incarnation ? this.sentOf(p, s.ackSeq) : undefined;
    p.promisedLast = acked !== undefined && nowTick - acked.tick <= this.o.promiseTicks;
    if (p.promisedLast && nowTick + this.o.promiseTicks > p.promiseUntilTick) {
      p.promiseUntilTick = nowTick + this.o.promiseTicks;
      this.changedPromises.add(from);
    }
    if (acked === undefined || !s.promised) return;
    if (!this.rateOk(p)) {
      // Once: a lapsed lease already started a new epoch, and re-posting it to every core each segment buys nothing.
      if (p.untilMonoMs !== 0) this.lapse(from, p);
      return;
    }
    const untilMonoMs = acked.monoMs + this.leaseMs;
    const untilWallMs = acked.wallMs + this.leaseMs;
    const wallMs = this.o.clocks.wallMs();
    // Sent before a clock step: its times were read on the clock as it was, and give nothing now.
    if (acked.steps !== this.steps.observe(monoMs, wallMs)) return;
    if (!this.valid(p, monoMs, wallMs)) {
      // Lapsed (or never held): a new epoch, and only if this acknowledgement still gives a lease.
      if (untilMonoMs <= monoMs) return;
      this.lapse(from, p);
    }
    if (untilMonoMs > p.untilMonoMs) {
      p.untilMonoMs = untilMonoMs;
      p.untilWallMs = untilWallMs;
      p.steps = acked.steps;
      this.changedHolds.add(from);
    }
  }

  /** Whether we hold a lease from `peer` now (what the cores check is their copy: see CoreLeases). */
  holds(peer: number): boolean {
    const p = this.peers.get(peer);
    return p !== undefined && this.valid(p, this.o.clocks.monoMs(), this.o.clocks.wallMs());
  }

  /** Whether we hold a lease from `peer` now in lease epoch `epoch` (what CoreLeases.holds asks of its copy; local-reads.ts asks it here). */
  holdsIn(peer: number, epoch: number): boolean {
    const p = this.peers.get(peer);
    return p !== undefined && p.epoch === epoch && this.valid(p, this.o.clocks.monoMs(), this.o.clocks.wallMs());
  }

  /** The peer's measured clock rate against ours over the long window (undefined until measured). */
  rateOf(peer: number): number | undefined {
    const p = this.peers.get(peer);
    if (p === undefined || p.samples.length < 2) return undefined;
    const [l0, r0] = p.samples[0]!;
    const [l1, r1] = p.samples.at(-1)!;
    return l1 - l0 >= RATE_WINDOW_LONG_MS ? (r1 - r0) / (l1 - l0) : undefined;
  }

  forget(peer: number): void {
    this.peers.delete(peer);
    this.changedPromises.add(peer);
    this.changedHolds.add(peer);
  }

  /** What changed since the last call, for the cores (undefined: nothing). */
  takeChanges(): LeaseChanges | undefined {
    if (this.changedPromises.size === 0 && this.changedHolds.size === 0) return undefined;
    const changes: LeaseChanges = { promises: [], holds: [] };
    for (const id of this.changedPromises) changes.promises.push([id, this.peers.get(id)?.promiseUntilTick ?? 0]);
    for (const id of this.changedHolds) {
      const p = this.peers.get(id);
      changes.holds.push([id, p?.epoch ?? 0, p?.untilMonoMs ?? 0, p?.untilWallMs ?? 0, p?.steps ?? 0]);
    }
    this.changedPromises.clear();
    this.changedHolds.clear();
    return changes;
  }

  private valid(p: Peer, monoMs: number, wallMs: number): boolean {
    return leaseHeld(p, monoMs, wallMs, this.leaseMs, this.steps);
  }

  private lapse(id: number, p: Peer): void {
    p.epoch++;
    p.untilMonoMs = 0;
    p.untilWallMs = 0;
    this.changedHolds.add(id);
  }

  private sentOf(p: Peer, seq: number): Sent | undefined {
    const s = p.sent[seq % SENT_REMEMBERED];
    return s !== undefined && s.seq === seq ? s : undefined;
  }

  private sample(p: Peer, localMs: number, peerMs: number): void {
    const last = p.samples.at(-1);
    if (last !== undefined && (localMs < last[0] || peerMs < last[1])) {
      // A clock stepped back: the samples no longer measure a rate.
      p.samples = [];
    } else if (last !== undefined && localMs - last[0] < RATE_SAMPLE_SPACING_MS) {
      return;
    }
    p.samples.push([localMs, peerMs]);
    // Keep just over a long window: drop the oldest while the next-oldest still spans it.
    while (p.samples.length > 2 && localMs - p.samples[1]![0] >= RATE_WINDOW_LONG_MS) p.samples.shift();
  }

  /**
   * Whether the peer's clock ran no faster than ours allows: over the long
   * window (measured at all), and between the last two samples. A slower
   * peer clock is fine: its promises only last longer.
   */
  private rateOk(p: Peer): boolean {
    const n = p.samples.length;
    if (n < 2) return false;
    const [l0, r0] = p.samples[0]!;
    const [lb, rb] = p.samples[n - 2]!;
    const [l1, r1] = p.samples[n - 1]!;
    if (l1 - l0 < RATE_WINDOW_LONG_MS) return false;
    if ((r1 - r0) / (l1 - l0) > 1 + RATE_DRIFT_LONG_MAX) return false;
    return (r1 - rb) / (l1 - lb) <= 1 + this.o.driftMax;
  }

  private peer(id: number): Peer {
    let p = this.peers.get(id);
    if (p === undefined) {
      p = { seq: 0, sent: new Array<Sent | undefined>(SENT_REMEMBERED), inc: 0, lastSeq: 0, promisedLast: false, promiseUntilTick: 0, epoch: 1, untilMonoMs: 0, untilWallMs: 0, steps: 0, samples: [] };
      this.peers.set(id, p);
    }
    return p;
  }
}

/** Whether a lease held (until each clock reading, got while `steps` stood at its count) is live at these readings. */
export function leaseHeld(h: { readonly untilMonoMs: number; readonly untilWallMs: number; readonly steps: number }, monoMs: number, wallMs: number, leaseMs: number, steps: ClockSteps): boolean {
  return steps.observe(monoMs, wallMs) === h.steps && leaseLive(h.untilMonoMs, monoMs, leaseMs) && leaseLive(h.untilWallMs, wallMs, leaseMs);
}

/** A lease until `untilMs` is live at `nowMs` if it has not run out and is not further ahead than a lease can be (a clock stepped back). */
export function leaseLive(untilMs: number, nowMs: number, leaseMs: number): boolean {
  const left = untilMs - nowMs;
  return left > 0 && left <= leaseMs;
}
