/**
 * What one whole-node simulation run does, derived from its seed: cluster
 * shape, fault mix, workload. Everything random in a run comes from
 * `SeededRng(seed)` forks, so `--seed N` replays it.
 */
import { SeededRng } from '@flotilla/core';

/**
 * A deliberately broken build, patched into the production classes for one
 * run (bugs.ts), to show the simulation catches it:
 * - `ackBeforePersist`: a Ready's messagesAfterPersist (append acks, votes)
 *   go out with its messages, before the write is durable;
 * - `staleLeaderRead`: a leader serves a linearizable read at once, without
 *   confirming it still leads (a deposed leader answers stale data);
 * - `applyBeforeCommit`: replicas apply every persisted entry, committed or
 *   not;
 * - `splitLosesRightHalf`: a split's right half starts without the data it
 *   had in the left;
 * - `leaseOutlivesPromise`: a node lease never runs out once granted (on
 *   the cores and on the Host, whose local reads check it).
 */
export const SIM_BUGS = ['none', 'ackBeforePersist', 'staleLeaderRead', 'applyBeforeCommit', 'splitLosesRightHalf', 'leaseOutlivesPromise'] as const;
export type SimBug = (typeof SIM_BUGS)[number];

export interface NodeSimOptions {
  readonly seed: number;
  readonly nodeCount: number;
  /** Ranges a static bootstrap makes besides the meta range. */
  readonly initialRangeCount: number;
  readonly coreCount: number;
  /** Ticks of clients and faults; then the cluster heals and is checked. */
  readonly faultTicks: number;
  /** After healing: ticks within which every range must have one leader and converged replicas. */
  readonly healTicksMax: number;
  readonly clientCount: number;
  readonly keyCount: number;
  /** Chance per tick that the nemesis starts a fault episode (when none is running). */
  readonly faultChance: number;
  /** Chance per tick of an admin operation (split, move, leader transfer). */
  readonly adminChance: number;
  /** Compaction thresholds: small, so lagging replicas need snapshots. */
  readonly compactionTriggerEntries: number;
  readonly compactionKeepEntries: number;
  /**
   * `mixed`: every kind of fault, a majority kept up most of the time.
   * `crashes`: crashes at store writes one after another, overlapping, the
   * quorum often lost (what catches a write acknowledged before it is durable).
   */
  readonly profile: 'mixed' | 'crashes';
  /**
   * Writes a client may issue at once (1: one at a time). Above 1, a plain
   * put sometimes goes out with up to this many more, to the same node,
   * together: the leader folds writes that arrive in one turn into one
   * entry (shards ShardRequests), and several in flight from one node are
   * what exercises that. Off unless asked for (--write-bursts), so the
   * seeds CI pins as regressions keep their runs.
   */
  readonly writeBurstMax: number;
  /**
   * Half the crashes armed at a store write strike right after it commits
   * instead of before it: the write survives, and nothing that depended on
   * it — append acknowledgements, votes, answers — went out. Off unless
   * asked for (--crash-after-writes), as writeBurstMax.
   */
  readonly crashAfterWrites: boolean;
  /**
   * Node clocks that run fast or slow (their ticks too) and step forward or
   * back, a node at a time (node-sim.ts clockStep): node leases must stay
   * safe. Off unless asked for (--clock-faults), as writeBurstMax.
   */
  readonly clockFaults: boolean;
  /**
   * Range merges: the placement driver merges any two neighbours cold for a
   * few seconds (the workload barely counts as load), and now and then an
   * admin merge is asked for, on a random stream of its own — so they
   * interleave with the admin splits and every fault. Off unless asked for
   * (--merges), as writeBurstMax.
   */
  readonly merges: boolean;
  readonly bug: SimBug;
}

export interface NodeSimOverrides {
  readonly nodeCount?: number;
  readonly faultTicks?: number;
  readonly writeBurstMax?: number;
  readonly crashAfterWrites?: boolean;
  readonly clockFaults?: boolean;
  readonly merges?: boolean;
  readonly bug?: SimBug;
}

/** Virtual milliseconds per Host tick: the production default (TICK_INTERVAL_MS_DEFAULT). */
export const TICK_MS = 100;

/** Fault-phase length CI uses: 30 s of virtual time, about two dozen fault episodes. */
export const FAULT_TICKS_DEFAULT = 300;

const OPTIONS_SALT = 0x0d51_3e0f;

export function nodeSimOptionsForSeed(seed: number, o: NodeSimOverrides = {}): NodeSimOptions {
  const rng = new SeededRng((seed ^ OPTIONS_SALT) >>> 0);
  const pick = <T>(xs: readonly T[]): T => xs[rng.intBelow(xs.length)]!;
  // Drawn even when overridden, so an override changes only itself: the replay
  // command names the node count, and must draw the rest exactly as the run did.
  const nodeCount = pick([3, 3, 5]);
  const options: NodeSimOptions = {
    seed,
    nodeCount: o.nodeCount ?? nodeCount,
    initialRangeCount: pick([1, 2, 4]),
    coreCount: pick([1, 1, 2]),
    faultTicks: o.faultTicks ?? FAULT_TICKS_DEFAULT,
    healTicksMax: 600,
    clientCount: pick([3, 4, 6]),
    keyCount: pick([4, 8, 16]),
    faultChance: pick([0.05, 0.1, 0.2]),
    adminChance: pick([0.01, 0.03, 0.06]),
    compactionTriggerEntries: pick([20, 50, 200]),
    compactionKeepEntries: pick([2, 10]),
    profile: 'mixed',
    writeBurstMax: o.writeBurstMax ?? 1,
    crashAfterWrites: o.crashAfterWrites ?? false,
    clockFaults: o.clockFaults ?? false,
    merges: o.merges ?? false,
    bug: o.bug ?? 'none',
  };
  // Every fourth seed: the crash profile (a fault episode starts on a quarter of the ticks).
  return seed % 4 === 0 ? { ...options, profile: 'crashes', faultChance: 0.25 } : options;
}

/** The one command that replays a run. */
export function replayCommand(o: NodeSimOptions): string {
  const bursts = o.writeBurstMax > 1 ? ` --write-bursts ${o.writeBurstMax}` : '';
  const afterWrites = `${o.crashAfterWrites ? ' --crash-after-writes' : ''}${o.clockFaults ? ' --clock-faults' : ''}${o.merges ? ' --merges' : ''}`;
  return `npm run sim -- --seed ${o.seed} --nodes ${o.nodeCount} --fault-ticks ${o.faultTicks}${bursts}${afterWrites}${o.bug === 'none' ? '' : ` --bug ${o.bug}`}`;
}
