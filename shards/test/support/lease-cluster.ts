// Hosts with node leases under one virtual clock (test/host/node-leases.test.ts,
// test/host/local-reads.test.ts): the test owns time as well as delivery.
import type { Clock, Timer } from '@flotilla/core';
import type { HostOptions } from '../../src/host/options.js';
import { RATE_WINDOW_LONG_MS } from '../../src/host/node-leases.js';
import { HostCluster } from './host-cluster.js';

export const TICK_MS = 100;

/** Virtual time for every node of a cluster: advanced one tick's worth per tick. */
export class VirtualClock implements Clock {
  private now = 1_000;
  private timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  nowMs(): number {
    return this.now;
  }
  setTimer(ms: number, fn: () => void): Timer {
    const t = { at: this.now + Math.max(0, ms), fn, cancelled: false };
    this.timers.push(t);
    return { cancel: () => void (t.cancelled = true) };
  }
  advance(ms: number): void {
    this.now += ms;
    const due = this.timers.filter((t) => t.at <= this.now && !t.cancelled);
    this.timers = this.timers.filter((t) => t.at > this.now && !t.cancelled);
    for (const t of due) t.fn();
  }
}

/**
 * Three nodes, one core each, sharing `clock`, with `shardIds` created and
 * ticked past the clock-rate window, so every pair of nodes has measured the
 * other's clock and leases can be held.
 */
export async function leasedCluster(o: { seed: number; shardIds: readonly number[]; clock?: VirtualClock; host?: Partial<HostOptions>; hostFor?: (id: number) => Partial<HostOptions> }): Promise<{ c: HostCluster; clock: VirtualClock; tick: (n: number) => Promise<void> }> {
  const clock = o.clock ?? new VirtualClock();
  const c = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: o.seed, host: { clock, ...o.host }, ...(o.hostFor === undefined ? {} : { hostFor: o.hostFor }) });
  const tick = async (n: number) => {
    for (let i = 0; i < n; i++) {
      clock.advance(TICK_MS);
      await c.tick();
    }
  };
  await c.createShards(o.shardIds);
  await tick(RATE_WINDOW_LONG_MS / TICK_MS + 30);
  return { c, clock, tick };
}
