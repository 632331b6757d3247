import type { LogIndex, NodeId } from '../types.js';

export type VoteResult = 'pending' | 'lost' | 'won';

/** Looks up the index a voter has acknowledged; `undefined` when it has acknowledged nothing. */
export type AckedIndexer = (id: NodeId) => LogIndex | undefined;

/**
 * A simple majority over a set of voters. The empty config commits everything
 * and wins every vote, which is what makes a joint config with an empty
 * outgoing half behave like its incoming half alone.
 */
export class MajorityConfig {
  /**
   * The empty config, shared: every group that is not joint has an empty
   * outgoing half, and configs are never changed in place (the changer builds
   * new ones), so one instance serves them all (~120 B a replica).
   */
  static readonly EMPTY = new MajorityConfig();

  readonly voters: ReadonlySet<NodeId>;

  constructor(voters: Iterable<NodeId> = []) {
    this.voters = new Set(voters);
  }

  /** A config over `voters`: the shared EMPTY when there are none. */
  static of(voters: ReadonlySet<NodeId>): MajorityConfig {
    return voters.size === 0 ? MajorityConfig.EMPTY : new MajorityConfig(voters);
  }

  get size(): number {
    return this.voters.size;
  }

  has(id: NodeId): boolean {
    return this.voters.has(id);
  }

  sorted(): NodeId[] {
    return [...this.voters].sort((a, b) => a - b);
  }

  /**
   * The largest index acknowledged by a majority: sort the acked indexes
   * descending and take the one at position ⌊n/2⌋ (voters that acked nothing count as 0).
   */
  committedIndex(acked: AckedIndexer): LogIndex {
    const n = this.voters.size;
    if (n === 0) return Number.MAX_SAFE_INTEGER;
    const indexes: LogIndex[] = [];
    for (const id of this.voters) indexes.push(acked(id) ?? 0);
    indexes.sort((a, b) => b - a);
    return indexes[Math.floor(n / 2)]!;
  }

  voteResult(votes: ReadonlyMap<NodeId, boolean>): VoteResult {
    if (this.voters.size === 0) return 'won';
    let granted = 0;
    let missing = 0;
    for (const id of this.voters) {
      const v = votes.get(id);
      if (v === undefined) missing++;
      else if (v) granted++;
    }
    const quorum = Math.floor(this.voters.size / 2) + 1;
    if (granted >= quorum) return 'won';
    if (granted + missing >= quorum) return 'pending';
    return 'lost';
  }

  toString(): string {
    return `(${this.sorted().join(' ')})`;
  }
}

/**
 * Joint consensus (Raft thesis §4.3): a decision needs a majority of the
 * incoming config and, while joint, also of the outgoing config.
 */
export class JointConfig {
  constructor(
    readonly incoming: MajorityConfig = MajorityConfig.EMPTY,
    readonly outgoing: MajorityConfig = MajorityConfig.EMPTY,
  ) {}

  get isJoint(): boolean {
    return this.outgoing.size > 0;
  }

  /** Every voter of either half, each once. */
  ids(): Set<NodeId> {
    const all = new Set<NodeId>(this.incoming.voters);
    for (const id of this.outgoing.voters) all.add(id);
    return all;
  }

  has(id: NodeId): boolean {
    return this.incoming.has(id) || this.outgoing.has(id);
  }

  committedIndex(acked: AckedIndexer): LogIndex {
    return Math.min(this.incoming.committedIndex(acked), this.outgoing.committedIndex(acked));
  }

  voteResult(votes: ReadonlyMap<NodeId, boolean>): VoteResult {
    const a = this.incoming.voteResult(votes);
    const b = this.outgoing.voteResult(votes);
    if (a === b) return a;
    if (a === 'lost' || b === 'lost') return 'lost';
    return 'pending';
  }

  toString(): string {
    return this.isJoint ? `${this.incoming}&&${this.outgoing}` : this.incoming.toString();
  }
}
