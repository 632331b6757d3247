// The Host's side of node leases (src/host/node-leases.ts): two tables
// exchanging segments over a virtual network, each on its own virtual clocks,
// which the tests make run fast, step back, or restart.
import { describe, expect, it } from 'vitest';
import { CLOCK_STEP_TOLERANCE_MS, NodeLeaseTable, RATE_WINDOW_LONG_MS, clockStepBuffer, leaseMsOf, type LeaseSegment } from '../src/host/node-leases.js';
import { nodeId } from '@flotilla/core';
import { CoreLeases } from '../src/host/core-leases.js';

const TICK_MS = 100;
const PROMISE_TICKS = 10;
const DRIFT_MAX = 0.25;
const LEASE_MS = leaseMsOf({ promiseTicks: PROMISE_TICKS, tickMs: TICK_MS, driftMax: DRIFT_MAX });

/** One node: its table, its clocks (running at `rate` times real time), its tick count. */
class Node {
  mono = 1_000;
  wall = 1_700_000_000_000;
  tick = 0;
  rate = 1;
  /** Shared by its table and any CoreLeases copy a test makes (as a Host shares it with its cores). */
  readonly clockSteps = clockStepBuffer();
  table: NodeLeaseTable;
  constructor(
    readonly id: number,
    private incarnation: number,
  ) {
    this.table = this.fresh();
  }
  private fresh(): NodeLeaseTable {
    return new NodeLeaseTable({ incarnation: this.incarnation, promiseTicks: PROMISE_TICKS, tickMs: TICK_MS, driftMax: DRIFT_MAX, clocks: { monoMs: () => this.mono, wallMs: () => this.wall }, clockSteps: this.clockSteps });
  }
  restart(): void {
    this.incarnation++;
    this.tick = 0;
    this.table = this.fresh();
  }
}

/** Runs `realMs` of real time in 100 ms steps; every second tick each node sends the other a segment (unless dropped). */
function run(a: Node, b: Node, realMs: number, drop: { ab?: boolean; ba?: boolean } = {}): void {
  for (let t = 0; t < realMs; t += TICK_MS) {
    const out: [Node, Node, LeaseSegment][] = [];
    for (const [n, peer, dropped] of [
      [a, b, drop.ab],
      [b, a, drop.ba],
    ] as const) {
      n.mono += TICK_MS * n.rate;
      n.wall += TICK_MS * n.rate;
      n.tick++;
      if (n.tick % 2 === 0 && dropped !== true) out.push([n, peer, n.table.segmentFor(peer.id, n.tick)]);
    }
    for (const [from, to, s] of out) to.table.onSegment(from.id, s, to.tick);
  }
}

describe('node leases between two nodes', () => {
  it('a lease holds only once the peer was measured over the long rate window, then for as long as segments flow', () => {
    const a = new Node(1, 11);
    const b = new Node(2, 22);
    run(a, b, RATE_WINDOW_LONG_MS - 2_000);
    expect(a.table.holds(2)).toBe(false);
    run(a, b, 4_000);
    expect(a.table.holds(2)).toBe(true);
    expect(b.table.holds(1)).toBe(true);
    expect(a.table.rateOf(2)).toBeCloseTo(1, 2);
    run(a, b, 60_000);
    expect(a.table.holds(2)).toBe(true);
  });

  it('lapses within a lease once the peer falls silent, and a lease is no longer than the promise behind it, shortened for drift', () => {
    const a = new Node(1, 11);
    const b = new Node(2, 22);
    run(a, b, 15_000);
    expect(a.table.holds(2)).toBe(true);
    // The last acknowledgement was of a segment sent up to two ticks (one interval) before the silence began.
    run(a, b, LEASE_MS - 3 * TICK_MS, { ba: true });
    expect(a.table.holds(2)).toBe(true);
    run(a, b, 3 * TICK_MS, { ba: true });
    expect(a.table.holds(2)).toBe(false);
    // A promise covers PROMISE_TICKS of the promiser's ticks; a lease is that at the fastest drift allowed, less two
    // ticks and the clock step tolerance.
    expect(LEASE_MS).toBe(Math.floor((PROMISE_TICKS * TICK_MS) / (1 + DRIFT_MAX)) - 2 * TICK_MS - CLOCK_STEP_TOLERANCE_MS);
    expect(LEASE_MS * (1 + DRIFT_MAX)).toBeLessThan(PROMISE_TICKS * TICK_MS);
  });

  it('gives no lease from a peer whose clock runs fast, and takes back one it held when the peer speeds up', () => {
    const a = new Node(1, 11);
    const b = new Node(2, 22);
    b.rate = 1.5;
    run(a, b, 30_000);
    expect(a.table.holds(2)).toBe(false);
    // The other way round the fast node's leases are fine: a slower promiser only promises longer.
    expect(b.table.holds(1)).toBe(true);

    const c = new Node(3, 33);
    const d = new Node(4, 44);
    run(c, d, 15_000);
    expect(c.table.holds(4)).toBe(true);
    d.rate = 2;
    run(c, d, 2_400); // one rate sample later at most
    expect(c.table.holds(4)).toBe(false);
  });

  it('a little drift (NTP slewing, 0.05 %) keeps the lease', () => {
    const a = new Node(1, 11);
    const b = new Node(2, 22);
    b.rate = 1.0005;
    run(a, b, 60_000);
    expect(a.table.holds(2)).toBe(true);
  });

  it('a clock stepped back or forward voids the lease at once, on either clock', () => {
    for (const step of [
      (n: Node) => (n.mono -= 60_000),
      (n: Node) => (n.mono += 60_000),
      (n: Node) => (n.wall -= 60_000),
      (n: Node) => (n.wall += 60_000),
    ]) {
      const a = new Node(1, 11);
      const b = new Node(2, 22);
      run(a, b, 15_000);
      expect(a.table.holds(2)).toBe(true);
      step(a);
      expect(a.table.holds(2)).toBe(false);
    }
  });

  it('a clock stepped back ends the leases given before the step, though it reads within a lease of them again', () => {
    // Node simulation seed 79550: a leader cut off from its peers, its clocks (monotonic too, as libfaketime
    // fakes it) stepped back 2.5 s; read against them, a lease that had run out was live again, and the
    // leader served reads older than writes its successor had acknowledged.
    for (const back of [LEASE_MS, 2 * LEASE_MS - 3 * TICK_MS]) {
      const a = new Node(1, 11);
      const b = new Node(2, 22);
      run(a, b, 15_000);
      const core = new CoreLeases({ clocks: { monoMs: () => a.mono, wallMs: () => a.wall }, leaseMs: LEASE_MS, promiseTicks: PROMISE_TICKS, nowTick: () => a.tick, clockSteps: a.clockSteps });
      core.apply(a.table.takeChanges()!);
      const mark = core.ackMark(nodeId(2));
      expect([a.table.holds(2), core.holds(nodeId(2), mark)]).toEqual([true, true]);
      run(a, b, LEASE_MS + TICK_MS, { ba: true });
      expect([a.table.holds(2), core.holds(nodeId(2), mark)]).toEqual([false, false]);
      a.mono -= back;
      a.wall -= back;
      // Run out, now less than a lease ahead of the clocks again: void all the same, in the core's copy too.
      expect(core.holds(nodeId(2), mark)).toBe(false);
      expect(a.table.holds(2)).toBe(false);
      run(a, b, 2 * TICK_MS, { ba: true });
      expect([a.table.holds(2), core.holds(nodeId(2), mark)]).toEqual([false, false]);
      // Segments flowing again give a new lease, in a new epoch, once the peer's rate is measured again.
      run(a, b, RATE_WINDOW_LONG_MS + 4_000);
      core.apply(a.table.takeChanges()!);
      expect(a.table.holds(2)).toBe(true);
      expect(core.ackMark(nodeId(2))).toBeGreaterThan(mark);
      expect(core.holds(nodeId(2), core.ackMark(nodeId(2)))).toBe(true);
    }
  });

  it("a peer's restart starts a new epoch: acknowledgements its replicas gave before count for nothing", () => {
    const a = new Node(1, 11);
    const b = new Node(2, 22);
    run(a, b, 15_000);
    const core = new CoreLeases({ clocks: { monoMs: () => a.mono, wallMs: () => a.wall }, leaseMs: LEASE_MS, promiseTicks: PROMISE_TICKS, nowTick: () => a.tick });
    core.apply(a.table.takeChanges()!);
    const mark = core.ackMark(nodeId(2));
    expect(core.holds(nodeId(2), mark)).toBe(true);
    b.restart();
    run(a, b, 400);
    core.apply(a.table.takeChanges()!);
    expect(core.holds(nodeId(2), mark)).toBe(false);
    // Measured again from the restart: a lease again after a long window, in a newer epoch.
    run(a, b, 15_000);
    const changes = a.table.takeChanges();
    if (changes !== undefined) core.apply(changes);
    expect(core.holds(nodeId(2), mark)).toBe(false);
    expect(core.holds(nodeId(2), core.ackMark(nodeId(2)))).toBe(true);
  });

  it('promises only to a peer that hears us: an asymmetric partition leaves nobody promised', () => {
    const a = new Node(1, 11);
    const b = new Node(2, 22);
    run(a, b, 15_000);
    const bCore = new CoreLeases({ clocks: { monoMs: () => b.mono, wallMs: () => b.wall }, leaseMs: LEASE_MS, promiseTicks: PROMISE_TICKS, nowTick: () => b.tick });
    bCore.apply(b.table.takeChanges()!);
    expect(bCore.promised(nodeId(1))).toBe(true);
    // b's segments stop reaching a; a's still reach b. a holds no lease from b, so b's promise would only
    // keep b's replicas from electing anyone else: b stops renewing it.
    run(a, b, 3_000, { ba: true });
    const changes = b.table.takeChanges();
    if (changes !== undefined) bCore.apply(changes);
    expect(a.table.holds(2)).toBe(false);
    expect(bCore.promised(nodeId(1))).toBe(false);
  });

  it('a young core (just started) is promised to everyone, then only to whom it promised', () => {
    let tick = 0;
    const core = new CoreLeases({ clocks: { monoMs: () => 0, wallMs: () => 0 }, leaseMs: LEASE_MS, promiseTicks: PROMISE_TICKS, nowTick: () => tick });
    expect(core.promised(nodeId(0))).toBe(true);
    expect(core.promised(nodeId(7))).toBe(true);
    tick = PROMISE_TICKS;
    expect(core.promised(nodeId(0))).toBe(false);
    core.apply({ promises: [[7, PROMISE_TICKS + 3]], holds: [] });
    expect(core.promised(nodeId(7))).toBe(true);
    tick = PROMISE_TICKS + 3;
    expect(core.promised(nodeId(7))).toBe(false);
  });
});
