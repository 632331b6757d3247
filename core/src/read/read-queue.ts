import { assert } from '../assert.js';
import type { LogIndex, NodeId, ReadContext } from '../types.js';

/** A read waiting for its index to be confirmed; `from` is the replica that asked (the leader itself or a follower). */
export interface PendingRead {
  readonly from: NodeId;
  readonly context: ReadContext;
}

/** Reads confirmed at `index`: serve them once the state machine has applied it. */
export interface ConfirmedReads {
  readonly index: LogIndex;
  readonly reads: readonly PendingRead[];
}

interface Round {
  readonly round: number;
  readonly index: LogIndex;
  readonly reads: PendingRead[];
}

/**
 * Pending reads confirmed with heartbeat rounds (Raft thesis §6.4, the
 * ReadIndex protocol). Every heartbeat broadcast is a numbered round; a round
 * acknowledged by a quorum proves the leader was still leader when it sent
 * the round, so every read registered before it can be served at the commit
 * index recorded then. Reads that arrive between two Readys share one round.
 *
 * The same acknowledgements drive the leader lease: the send tick of the
 * latest quorum-acknowledged round bounds when a new leader can be elected.
 */
export class ReadQueue {
  /** Reads registered since the last flush, not yet in a round. */
  private queued: PendingRead[] = [];
  private readonly rounds: Round[] = [];
  private lastRound = 0;
  /**
   * Send tick of each round not yet known to be quorum-acknowledged (oldest
   * first). Undefined until this replica leads and sends one (a follower
   * never does: ~180 B a replica), and again after a role change.
   */
  private sentTicks: Map<number, number> | undefined;
  private quorumRound = 0;
  /** Tick at which the latest quorum-acknowledged round was sent; -Infinity before any. */
  quorumSentTick = Number.NEGATIVE_INFINITY;

  /** Bounds the round→tick map when a quorum stops answering; dropping old rounds only shortens the lease. */
  static readonly SENT_ROUNDS_MAX = 256;

  enqueue(read: PendingRead): void {
    this.queued.push(read);
  }

  hasQueued(): boolean {
    return this.queued.length > 0;
  }

  pendingCount(): number {
    let n = this.queued.length;
    for (const r of this.rounds) n += r.reads.length;
    return n;
  }

  /** Starts a heartbeat round sent at `nowTick`; queued reads join it at `commitIndex` when `withReads`. */
  startRound(options: { nowTick: number; commitIndex: LogIndex; withReads: boolean }): number {
    const round = ++this.lastRound;
    const sentTicks = (this.sentTicks ??= new Map());
    sentTicks.set(round, options.nowTick);
    if (sentTicks.size > ReadQueue.SENT_ROUNDS_MAX) {
      const oldest = sentTicks.keys().next().value as number;
      sentTicks.delete(oldest);
    }
    if (options.withReads && this.queued.length > 0) {
      this.rounds.push({ round, index: options.commitIndex, reads: this.queued });
      this.queued = [];
    }
    return round;
  }

  /** Takes the queued reads out (to serve them at once, e.g. in a single-voter group or under a lease). */
  takeQueued(): PendingRead[] {
    const q = this.queued;
    this.queued = [];
    return q;
  }

  /**
   * Records that a quorum has acknowledged every round up to `round`; returns
   * the reads that this confirms, oldest first.
   */
  onQuorumAcked(round: number): ConfirmedReads[] {
    if (round <= this.quorumRound) return [];
    assert(round <= this.lastRound, () => `acked round ${round} was never sent (last ${this.lastRound})`);
    this.quorumRound = round;
    const sentTicks = this.sentTicks;
    const tick = sentTicks?.get(round);
    if (tick !== undefined) this.quorumSentTick = Math.max(this.quorumSentTick, tick);
    if (sentTicks !== undefined) {
      for (const r of [...sentTicks.keys()]) {
        if (r > round) break;
        sentTicks.delete(r);
      }
    }
    const confirmed: ConfirmedReads[] = [];
    while (this.rounds.length > 0 && this.rounds[0]!.round <= round) {
      const r = this.rounds.shift()!;
      confirmed.push({ index: r.index, reads: r.reads });
    }
    return confirmed;
  }

  /** Whether `round` could have been sent by us in this leadership (acks of others are noise). */
  isKnownRound(round: number): boolean {
    return round > 0 && round <= this.lastRound;
  }

  /** Drops everything (leadership lost); returns the reads that will never be answered here. */
  reset(): PendingRead[] {
    const dropped = [...this.queued];
    for (const r of this.rounds) dropped.push(...r.reads);
    this.queued = [];
    this.rounds.length = 0;
    this.sentTicks = undefined;
    this.lastRound = 0;
    this.quorumRound = 0;
    this.quorumSentTick = Number.NEGATIVE_INFINITY;
    return dropped;
  }
}
