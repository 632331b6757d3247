import { JointConfig, MajorityConfig, type VoteResult } from '../quorum/quorum.js';
import type { ConfState, LogIndex, NodeId } from '../types.js';
import { Progress } from './progress.js';

/** A group's membership as the tracker sees it. */
export interface TrackerConfig {
  readonly voters: JointConfig;
  /** Leave the joint config automatically once it is committed (transition `auto`/`implicit`). */
  readonly autoLeave: boolean;
  readonly learners: ReadonlySet<NodeId>;
  /** Outgoing voters that turn into learners when the joint config is left. */
  readonly learnersNext: ReadonlySet<NodeId>;
}

/** The empty set of nodes every config without learners shares: configs are replaced, never changed in place. */
export const NO_NODES: ReadonlySet<NodeId> = new Set();

export function emptyTrackerConfig(): TrackerConfig {
  return { voters: new JointConfig(), autoLeave: false, learners: NO_NODES, learnersNext: NO_NODES };
}

export function confStateOf(config: TrackerConfig): ConfState {
  const sorted = (ids: Iterable<NodeId>): NodeId[] => [...ids].sort((a, b) => a - b);
  return {
    voters: config.voters.incoming.sorted(),
    votersOutgoing: config.voters.outgoing.sorted(),
    learners: sorted(config.learners),
    learnersNext: sorted(config.learnersNext),
    autoLeave: config.autoLeave,
  };
}

export type ProgressMap = Map<NodeId, Progress>;

const NO_VOTES: ReadonlyMap<NodeId, boolean> = new Map();

/** Tracks configuration, per-peer progress and election votes. */
export class ProgressTracker {
  config: TrackerConfig = emptyTrackerConfig();
  progress: ProgressMap = new Map();
  /** Votes of the current election; undefined outside one (most replicas, most of the time: ~180 B each saved). */
  private votes: Map<NodeId, boolean> | undefined;

  constructor(
    readonly inflightCountMax: number,
    readonly inflightBytesMax: number,
  ) {}

  confState(): ConfState {
    return confStateOf(this.config);
  }

  isSingleton(): boolean {
    return this.config.voters.incoming.size === 1 && !this.config.voters.isJoint;
  }

  /** The largest index durably replicated on a quorum. */
  committed(): LogIndex {
    return this.config.voters.committedIndex((id) => this.progress.get(id)?.match);
  }

  /** The largest heartbeat round acknowledged by a quorum (the leader acks its own rounds). */
  quorumAckedRound(): number {
    return this.config.voters.committedIndex((id) => this.progress.get(id)?.ackedRound);
  }

  /** Visits progress in ascending id order, so outputs are deterministic. */
  visit(fn: (id: NodeId, progress: Progress) => void): void {
    const ids = [...this.progress.keys()].sort((a, b) => a - b);
    for (const id of ids) fn(id, this.progress.get(id)!);
  }

  /** Whether a quorum of voters was recently active (check-quorum, §6.2 of the thesis). */
  quorumActive(): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const [id, p] of this.progress) if (!p.isLearner) votes.set(id, p.recentActive);
    return this.config.voters.voteResult(votes) === 'won';
  }

  voterNodes(): NodeId[] {
    return [...this.config.voters.ids()].sort((a, b) => a - b);
  }

  learnerNodes(): NodeId[] {
    return [...this.config.learners].sort((a, b) => a - b);
  }

  resetVotes(): void {
    this.votes = undefined;
  }

  recordVote(id: NodeId, granted: boolean): void {
    const votes = (this.votes ??= new Map());
    if (!votes.has(id)) votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    const votes: ReadonlyMap<NodeId, boolean> = this.votes ?? NO_VOTES;
    let granted = 0;
    let rejected = 0;
    for (const [id, p] of this.progress) {
      if (p.isLearner) continue;
      const v = votes.get(id);
      if (v === undefined) continue;
      if (v) granted++;
      else rejected++;
    }
    return { granted, rejected, result: this.config.voters.voteResult(votes) };
  }

  newProgress(options: { next: LogIndex; match?: LogIndex; isLearner: boolean }): Progress {
    return new Progress({
      ...options,
      inflightCountMax: this.inflightCountMax,
      inflightBytesMax: this.inflightBytesMax,
    });
  }
}

export { MajorityConfig };
