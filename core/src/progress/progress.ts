import { assert } from '../assert.js';
import type { LogIndex } from '../types.js';
import { Inflights } from './inflights.js';

/**
 * How the leader replicates to one follower:
 * - `probe`: the match point is unknown; one append per heartbeat interval until one is accepted;
 * - `replicate`: streaming optimistically, bounded by the inflight window;
 * - `snapshot`: the follower needs a snapshot; nothing else is sent until it reports back.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** The leader's view of one follower (etcd-raft's tracker.Progress). */
export class Progress {
  /** Highest index known to be durably replicated on the follower. Invariant: match < next. */
  match: LogIndex;
  /** Index of the next entry to send. */
  next: LogIndex;
  state: ProgressState = 'probe';
  /** In `snapshot` state: the index of the snapshot in flight. */
  pendingSnapshot: LogIndex = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** In `probe` state: an append is outstanding, so hold further ones until a response or heartbeat. */
  probeSent = false;
  /** Highest heartbeat round the follower acknowledged in this term. */
  ackedRound = 0;
  /** NodeLeases.ackMark of the follower's node at its latest response in this term; -1: none yet. */
  leaseMark = -1;
  /** The follower's replica's incarnation (RaftConfig.incarnation) as of its latest append response; 0: none heard yet. */
  incarnation = 0;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(options: { next: LogIndex; match?: LogIndex; inflightCountMax: number; inflightBytesMax: number; isLearner: boolean }) {
    this.next = options.next;
    this.match = options.match ?? 0;
    this.inflights = new Inflights(options.inflightCountMax, options.inflightBytesMax);
    this.isLearner = options.isLearner;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot the follower is known to have at least the snapshot's index.
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  /**
   * The follower's node answers from a new replica (a higher incarnation):
   * nothing the replica before it acknowledged is there. Back to probing
   * from no match, the next probe at `next`.
   */
  restartFor(incarnation: number, next: LogIndex): void {
    this.incarnation = incarnation;
    this.match = 0;
    this.resetState('probe');
    this.next = next;
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: LogIndex): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** Accounts for an append carrying `entryCount` entries ending before `nextIndex`. */
  sentEntries(options: { entryCount: number; bytes: number; lastIndex: LogIndex }): void {
    switch (this.state) {
      case 'replicate':
        if (options.entryCount > 0) {
          assert(options.lastIndex >= this.next, () => `append last index ${options.lastIndex} below next ${this.next}`);
          this.next = options.lastIndex + 1;
          this.inflights.add(options.lastIndex, options.bytes);
        }
        return;
      case 'probe':
        // One probe at a time: wait for its response (or the next heartbeat response) before another.
        this.probeSent = true;
        return;
      case 'snapshot':
        assert(false, 'append sent to a follower in snapshot state');
    }
  }

  /** A successful append response up to `index`. Returns whether match moved (stale responses are ignored). */
  maybeUpdate(index: LogIndex): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejected append at `rejected`, with the follower's hint `matchHint` of
   * where the logs may agree. Returns false for a stale rejection.
   */
  maybeDecreaseTo(rejected: LogIndex, matchHint: LogIndex): boolean {
    if (this.state === 'replicate') {
      // Stale: we already know the follower matches past the rejected index.
      if (rejected <= this.match) return false;
      // Optimistic sends went wrong: restart from the known match.
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the rejection of the last probe counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Whether the leader should hold back appends to this follower. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  toString(): string {
    const parts = [`${this.state} match=${this.match} next=${this.next}`];
    if (this.isLearner) parts.push('learner');
    if (this.isPaused()) parts.push('paused');
    if (this.pendingSnapshot > 0) parts.push(`pendingSnap=${this.pendingSnapshot}`);
    if (!this.recentActive) parts.push('inactive');
    if (this.inflights.size > 0) parts.push(`inflight=${this.inflights.size}`);
    return parts.join(' ');
  }
}
