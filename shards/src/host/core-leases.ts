import { NONE, type NodeId, type NodeLeases } from '@flotilla/core';
import { ClockSteps, leaseHeld, type LeaseChanges, type LeaseClocks } from './node-leases.js';

/**
 * A core's copy of its node's leases (node-leases.ts keeps them on the
 * Host's thread), as Raft asks about them (core/src/read/node-leases.ts).
 * The Host posts changes in the order its frames arrived, between the Raft
 * traffic before and after them, so an acknowledgement is stamped with the
 * lease epoch that was current when it arrived. A copy behind the Host's
 * errs safe: its promises end no later (they are in ticks the core counts
 * behind the Host's), its leases end no later (they only grow).
 */
export class CoreLeases implements NodeLeases {
  private readonly promises = new Map<number, number>();
  private readonly held = new Map<number, { epoch: number; untilMonoMs: number; untilWallMs: number; steps: number }>();
  private readonly steps: ClockSteps;

  constructor(
    private readonly o: {
      readonly clocks: LeaseClocks;
      readonly leaseMs: number;
      /** Ticks a promise lasts: also how long a young node refuses every vote. */
      readonly promiseTicks: number;
      /** The core's tick count: the Host's ticks it has stepped. */
      readonly nowTick: () => number;
      /** The node's clock steps (node-leases.ts clockStepBuffer), shared with its Host; a buffer of its own if not given. */
      readonly clockSteps?: SharedArrayBuffer;
    },
  ) {
    this.steps = new ClockSteps(o.clockSteps);
  }

  apply(changes: LeaseChanges): void {
    for (const [node, untilTick] of changes.promises) this.promises.set(node, untilTick);
    for (const [node, epoch, untilMonoMs, untilWallMs, steps] of changes.holds) this.held.set(node, { epoch, untilMonoMs, untilWallMs, steps });
  }

  ackMark(voter: NodeId): number {
    return this.held.get(voter)?.epoch ?? 0;
  }

  holds(voter: NodeId, mark: number): boolean {
    const h = this.held.get(voter);
    if (h === undefined || h.epoch !== mark) return false;
    return leaseHeld(h, this.o.clocks.monoMs(), this.o.clocks.wallMs(), this.o.leaseMs, this.steps);
  }

  promised(leader: NodeId): boolean {
    const now = this.o.nowTick();
    // Young: the promises made before a restart are forgotten, and may still run.
    if (now < this.o.promiseTicks) return true;
    return leader !== NONE && now < (this.promises.get(leader) ?? 0);
  }
}
