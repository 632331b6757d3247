// The safety checker: Raft's guarantees (Raft paper Figure 3) plus what the
// shell relies on, checked after every simulator step. It keeps its own
// history across crashes and restarts, so a property that only breaks when a
// node forgets something is still caught.
//
// Checks run incrementally where a full check would be O(log) per step:
// - Log Matching through a global identity per (index, term): the entry's
//   content and the term of the entry before it. If every log agrees with
//   that table, any two logs that share (i, t) share entry i-1's term too,
//   and so by induction are identical up to i. New entries are checked while
//   they sit in the unstable log (every entry of every log passes through
//   it); deepCheck() re-checks whole logs and disks periodically.
// - Leader Completeness when a leader appears (all committed entries) and
//   when an entry is first seen committed (all current leaders).
import type { ConfState, Entry, LogIndex, Message, NodeId, RawNode, ReadContext, Snapshot, Term } from '@flotilla/core';
import type { SimDisk } from './disk.js';
import { decodeText, StateMachine, type AppliedValue } from './state-machine.js';

export type ViolationCode =
  /** Two leaders in one term (§5.2). */
  | 'ELECTION_SAFETY'
  /** Two logs share an (index, term) but differ at or before it (§5.3). */
  | 'LOG_MATCHING'
  /** A leader lacks an entry committed in an earlier term (§5.4). */
  | 'LEADER_COMPLETENESS'
  /** Two nodes applied different entries at one index (§5.4.3). */
  | 'STATE_MACHINE_SAFETY'
  /** An index known committed later held a different entry: a committed entry was lost. */
  | 'COMMITTED_ENTRY_CHANGED'
  /** A live node's commit index went backwards. */
  | 'COMMIT_REGRESSED'
  /** A live node's term went backwards. */
  | 'TERM_REGRESSED'
  /** Applied past the commit index, or applied an entry never seen committed. */
  | 'APPLIED_UNCOMMITTED'
  /** Committed entries handed to the application out of order, twice, or with a gap. */
  | 'APPLY_ORDER'
  /** Two nodes disagree on the membership at one log index. */
  | 'CONFIG_DIVERGED'
  /** A read missed a write acknowledged before it was issued. */
  | 'STALE_READ'
  /** Persisted state contradicts a message sent as "after persist" (a vote or a term). */
  | 'PROMISE_BROKEN'
  /** The disk contradicts itself (commit past the log, applied past commit...). */
  | 'DISK_INCONSISTENT'
  /** After healing, no leader committed a fresh proposal (or served a read) on every live node in time. */
  | 'LIVENESS'
  /** The core threw where it must not (an assertion, a corrupt-state error on restart...). */
  | 'CORE_ERROR';

/** The codes of Raft's own safety properties, as opposed to the shell's bookkeeping. */
export const RAFT_SAFETY_CODES: ReadonlySet<ViolationCode> = new Set<ViolationCode>([
  'ELECTION_SAFETY',
  'LOG_MATCHING',
  'LEADER_COMPLETENESS',
  'STATE_MACHINE_SAFETY',
  'COMMITTED_ENTRY_CHANGED',
  'STALE_READ',
  'CONFIG_DIVERGED',
]);

export class SafetyViolation extends Error {
  constructor(
    readonly code: ViolationCode,
    detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'SafetyViolation';
  }
}

/** What the checker needs to see of a running node. */
export interface CheckedNode {
  readonly id: NodeId;
  readonly incarnation: number;
  readonly raw: RawNode;
  readonly sm: StateMachine;
}

interface Observation {
  incarnation: number;
  term: Term;
  commit: LogIndex;
}

interface EntryIdentity {
  readonly key: string;
  readonly prevTerm: Term;
  readonly firstSeenBy: NodeId;
}

interface Promises {
  /** Highest term this node sent in a message that promises durable state. */
  termMax: Term;
  /** term → the candidate this node told it voted for (its own id for its own vote requests). */
  readonly votes: Map<Term, NodeId>;
}

/** Terms stay far below this in a run; the bound keeps (index, term) packable in one safe integer. */
const TERM_LIMIT = 1_000_000;

const entryKeys = new WeakMap<Entry, string>();

/** A ConfState in a comparable form (member lists sorted). */
export function confStateKey(cs: ConfState): string {
  const ids = (xs: readonly NodeId[]): string => [...xs].sort((a, b) => a - b).join(',');
  return `in=${ids(cs.voters)} out=${ids(cs.votersOutgoing)} learners=${ids(cs.learners)} next=${ids(cs.learnersNext)}${cs.autoLeave ? ' auto' : ''}`;
}

/** A printable identity of an entry's content: type and payload text. */
export function entryKey(e: Entry): string {
  let k = entryKeys.get(e);
  if (k === undefined) {
    k = `${e.type === 'normal' ? 'n' : 'c'}:${decodeText(e.data)}`;
    entryKeys.set(e, k);
  }
  return k;
}

export class SafetyChecker {
  private readonly leaderOfTerm = new Map<Term, NodeId>();
  /** Nodes that are leader right now, with their term. */
  private readonly currentLeaders = new Map<NodeId, { term: Term; node: CheckedNode }>();
  private readonly identities = new Map<number, EntryIdentity>();
  /** committedTerm[i]: the term of the entry committed at i; committedSeenTerm[i]: the lowest term of a node that saw it committed. */
  private readonly committedTerm: Term[] = [];
  private readonly committedSeenTerm: Term[] = [];
  private readonly applied: ({ term: Term; key: string } | undefined)[] = [];
  private readonly observations = new Map<NodeId, Observation>();
  private readonly promises = new Map<NodeId, Promises>();
  /** The membership after each applied conf change, by index (ascending; index 0 is the bootstrap). */
  private readonly configs: { index: LogIndex; key: string }[];
  /** Whether restarts are checked against the after-persist messages sent before the crash. */
  checkPromises = true;
  /** Highest index applied by any node, ever: every write up to it is acknowledged. */
  maxAppliedIndex: LogIndex = 0;
  leaderCount = 0;

  constructor(bootstrap: ConfState) {
    this.configs = [{ index: 0, key: confStateKey(bootstrap) }];
  }

  // ---------------------------------------------------------------------------
  // Node lifecycle

  /** A node (re)started: its commit index restarts from what it persisted. */
  onStart(node: CheckedNode, disk: SimDisk): void {
    const r = node.raw.raft;
    this.observations.set(node.id, { incarnation: node.incarnation, term: r.term, commit: r.log.firstIndex() - 1 });
    this.currentLeaders.delete(node.id);
    if (this.checkPromises) this.checkPromisesKept(node.id, disk);
    this.observe(node);
  }

  onStop(id: NodeId): void {
    this.currentLeaders.delete(id);
    this.observations.delete(id);
  }

  /** Records what an outbound message promises is durable (votes, terms). */
  onSent(m: Message): void {
    if (m.type !== 'vote' && m.type !== 'voteResponse' && m.type !== 'appendResponse' && m.type !== 'heartbeatResponse') return;
    let p = this.promises.get(m.from);
    if (p === undefined) this.promises.set(m.from, (p = { termMax: 0, votes: new Map() }));
    p.termMax = Math.max(p.termMax, m.term);
    if (m.type === 'vote') p.votes.set(m.term, m.from);
    if (m.type === 'voteResponse' && !m.reject) p.votes.set(m.term, m.to);
  }

  private checkPromisesKept(id: NodeId, disk: SimDisk): void {
    const p = this.promises.get(id);
    if (p === undefined) return;
    const hs = disk.hardState();
    if (hs.term < p.termMax) {
      throw new SafetyViolation('PROMISE_BROKEN', `node ${id} restarted at term ${hs.term} but had sent durable messages at term ${p.termMax}`);
    }
    const promised = p.votes.get(hs.term);
    if (promised !== undefined && hs.vote !== promised) {
      throw new SafetyViolation('PROMISE_BROKEN', `node ${id} restarted with vote ${hs.vote} in term ${hs.term} but had promised its vote to ${promised}`);
    }
  }

  // ---------------------------------------------------------------------------
  // After every step

  /** Checks one node after a step that touched it. */
  observe(node: CheckedNode): void {
    const r = node.raw.raft;
    const obs = this.observations.get(node.id);
    if (obs === undefined || obs.incarnation !== node.incarnation) {
      throw new Error(`checker: node ${node.id} incarnation ${node.incarnation} observed before onStart`);
    }
    if (r.term < obs.term) throw new SafetyViolation('TERM_REGRESSED', `node ${node.id} term ${r.term} after ${obs.term}`);
    obs.term = r.term;

    if (r.role === 'leader') this.observeLeader(node);
    else this.currentLeaders.delete(node.id);

    const commit = r.log.committed;
    if (commit < obs.commit) throw new SafetyViolation('COMMIT_REGRESSED', `node ${node.id} commit index ${commit} after ${obs.commit}`);
    for (let i = obs.commit + 1; i <= commit; i++) {
      const t = r.log.term(i);
      // Below a restored snapshot only the snapshot's own index has a known term.
      if (t !== undefined) this.recordCommitted({ index: i, term: t, seenTerm: r.term, by: node.id });
    }
    obs.commit = commit;

    if (r.log.applied > commit) {
      throw new SafetyViolation('APPLIED_UNCOMMITTED', `node ${node.id} raft applied ${r.log.applied} exceeds commit ${commit}`);
    }
    if (node.sm.appliedIndex > commit) {
      throw new SafetyViolation('APPLIED_UNCOMMITTED', `node ${node.id} state machine applied ${node.sm.appliedIndex} exceeds commit ${commit}`);
    }
    for (const e of r.log.unstable.entries) this.checkIdentity(node.id, e, r.log.termOrZero(e.index - 1));
  }

  private observeLeader(node: CheckedNode): void {
    const term = node.raw.raft.term;
    const prev = this.leaderOfTerm.get(term);
    if (prev !== undefined && prev !== node.id) {
      throw new SafetyViolation('ELECTION_SAFETY', `nodes ${prev} and ${node.id} were both leader in term ${term}`);
    }
    const current = this.currentLeaders.get(node.id);
    if (current !== undefined && current.term === term) return;
    if (prev === undefined) this.leaderCount++;
    this.leaderOfTerm.set(term, node.id);
    this.currentLeaders.set(node.id, { term, node });
    this.checkLeaderHasCommitted(node);
  }

  private recordCommitted(c: { index: LogIndex; term: Term; seenTerm: Term; by: NodeId }): void {
    const known = this.committedTerm[c.index];
    if (known !== undefined) {
      if (known !== c.term) {
        throw new SafetyViolation(
          'COMMITTED_ENTRY_CHANGED',
          `node ${c.by} has index ${c.index} committed at term ${c.term}, but the entry committed there earlier has term ${known}`,
        );
      }
      if (c.seenTerm < this.committedSeenTerm[c.index]!) this.committedSeenTerm[c.index] = c.seenTerm;
      return;
    }
    this.committedTerm[c.index] = c.term;
    this.committedSeenTerm[c.index] = c.seenTerm;
    for (const { term, node } of this.currentLeaders.values()) {
      if (term > c.seenTerm) this.checkLeaderHasEntry(node, c.index);
    }
  }

  /** Leader Completeness (§5.4): a leader holds every entry committed in an earlier term. */
  private checkLeaderHasCommitted(leader: CheckedNode): void {
    for (let i = 1; i < this.committedTerm.length; i++) {
      const seen = this.committedSeenTerm[i];
      if (seen !== undefined && seen < leader.raw.raft.term) this.checkLeaderHasEntry(leader, i);
    }
  }

  private checkLeaderHasEntry(leader: CheckedNode, index: LogIndex): void {
    const log = leader.raw.raft.log;
    const want = this.committedTerm[index]!;
    const t = log.term(index);
    if (t === undefined) {
      // Compacted into the leader's snapshot, which only ever holds committed state.
      if (index < log.firstIndex() - 1) return;
      throw new SafetyViolation(
        'LEADER_COMPLETENESS',
        `leader ${leader.id} of term ${leader.raw.raft.term} lacks index ${index} (committed at term ${want}; its log ends at ${log.lastIndex()})`,
      );
    }
    if (t !== want) {
      throw new SafetyViolation(
        'LEADER_COMPLETENESS',
        `leader ${leader.id} of term ${leader.raw.raft.term} has term ${t} at index ${index}, where term ${want} was committed`,
      );
    }
  }

  private checkIdentity(by: NodeId, e: Entry, prevTerm: Term): void {
    if (e.term >= TERM_LIMIT) throw new Error(`checker: term ${e.term} exceeds ${TERM_LIMIT}`);
    const id = e.index * TERM_LIMIT + e.term;
    const key = entryKey(e);
    const known = this.identities.get(id);
    if (known === undefined) {
      this.identities.set(id, { key, prevTerm, firstSeenBy: by });
      return;
    }
    if (known.key !== key) {
      throw new SafetyViolation(
        'LOG_MATCHING',
        `index ${e.index} term ${e.term} holds ${JSON.stringify(key)} on node ${by} but ${JSON.stringify(known.key)} on node ${known.firstSeenBy}`,
      );
    }
    if (known.prevTerm !== prevTerm) {
      throw new SafetyViolation(
        'LOG_MATCHING',
        `entry (index ${e.index}, term ${e.term}) follows term ${prevTerm} on node ${by} but term ${known.prevTerm} on node ${known.firstSeenBy}`,
      );
    }
  }

  // ---------------------------------------------------------------------------
  // Applying

  /** State Machine Safety (§5.4.3) and apply order, for an entry the shell is about to apply. */
  onApply(node: CheckedNode, e: Entry): void {
    if (e.index !== node.sm.appliedIndex + 1) {
      throw new SafetyViolation('APPLY_ORDER', `node ${node.id} got entry ${e.index} to apply after applying ${node.sm.appliedIndex}`);
    }
    const committed = this.committedTerm[e.index];
    if (committed !== e.term) {
      throw new SafetyViolation(
        'APPLIED_UNCOMMITTED',
        `node ${node.id} applies index ${e.index} term ${e.term}, but ${committed === undefined ? 'nothing was seen committed there' : `term ${committed} was committed there`}`,
      );
    }
    this.recordApplied(node.id, e);
  }

  /** A restarted node replays its persisted log into its state machine: it must be what was applied before. */
  onReplay(id: NodeId, e: Entry): void {
    const known = this.applied[e.index];
    if (known === undefined || known.term !== e.term || known.key !== entryKey(e)) {
      throw new SafetyViolation('STATE_MACHINE_SAFETY', `node ${id} replays index ${e.index} term ${e.term} from its disk, which differs from what was applied there`);
    }
  }

  private recordApplied(id: NodeId, e: Entry): void {
    const key = entryKey(e);
    const known = this.applied[e.index];
    if (known === undefined) {
      this.applied[e.index] = { term: e.term, key };
      if (e.index > this.maxAppliedIndex) this.maxAppliedIndex = e.index;
      return;
    }
    if (known.term !== e.term || known.key !== key) {
      throw new SafetyViolation(
        'STATE_MACHINE_SAFETY',
        `node ${id} applies ${JSON.stringify(key)} (term ${e.term}) at index ${e.index}, where ${JSON.stringify(known.key)} (term ${known.term}) was applied`,
      );
    }
  }

  /** A state machine restored from a snapshot must hold exactly the values applied up to its index, and its membership. */
  onSnapshotInstalled(id: NodeId, snapshot: Snapshot, sm: StateMachine): void {
    this.checkStateMachine(id, sm, snapshot.metadata.index);
    this.checkConfigAt({ id, index: snapshot.metadata.index, cs: snapshot.metadata.confState, what: 'snapshot' });
  }

  /** Every node that applies the conf change at `index` must arrive at the same membership. */
  onConfChangeApplied(id: NodeId, index: LogIndex, cs: ConfState): void {
    const last = this.configs[this.configs.length - 1]!;
    if (index > last.index) {
      this.configs.push({ index, key: confStateKey(cs) });
      return;
    }
    const known = this.configs.find((c) => c.index === index);
    if (known === undefined) {
      throw new SafetyViolation('CONFIG_DIVERGED', `node ${id} applied a conf change at ${index}, where no other node saw one`);
    }
    const key = confStateKey(cs);
    if (known.key !== key) {
      throw new SafetyViolation('CONFIG_DIVERGED', `node ${id} has membership ${key} after index ${index}, others ${known.key}`);
    }
  }

  /** The membership in effect after applying everything up to `index`. */
  configAt(index: LogIndex): string {
    let lo = 0;
    let hi = this.configs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.configs[mid]!.index <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.configs[lo]!.key;
  }

  checkConfigAt(options: { id: NodeId; index: LogIndex; cs: ConfState; what: string }): void {
    const want = this.configAt(options.index);
    const got = confStateKey(options.cs);
    if (got !== want) {
      throw new SafetyViolation('CONFIG_DIVERGED', `node ${options.id} ${options.what} at ${options.index} has membership ${got}, expected ${want}`);
    }
  }

  /** The values a state machine must hold after applying everything up to `index`. */
  canonicalValues(index: LogIndex): AppliedValue[] {
    const values: AppliedValue[] = [];
    for (let i = 1; i <= index; i++) {
      const a = this.applied[i];
      if (a === undefined) throw new SafetyViolation('STATE_MACHINE_SAFETY', `index ${i} ≤ ${index} was never applied anywhere`);
      if (a.key.startsWith('n:') && a.key.length > 2) values.push({ index: i, value: a.key.slice(2) });
    }
    return values;
  }

  checkStateMachine(id: NodeId, sm: StateMachine, index: LogIndex): void {
    const want = this.canonicalValues(index);
    const got = sm.contents();
    const n = Math.max(want.length, got.length);
    for (let k = 0; k < n; k++) {
      const w = want[k];
      const g = got[k];
      if (w === undefined || g === undefined || w.index !== g.index || w.value !== g.value) {
        throw new SafetyViolation(
          'STATE_MACHINE_SAFETY',
          `node ${id} state machine at ${index} holds ${JSON.stringify(g)} as value #${k}, expected ${JSON.stringify(w)}`,
        );
      }
    }
  }

  // ---------------------------------------------------------------------------
  // Reads

  /**
   * A ReadState at `readIndex` for a read issued when everything up to
   * `requiredIndex` was acknowledged (applied somewhere): serving it at
   * `readIndex` must observe all of that.
   */
  checkReadIndex(options: { id: NodeId; context: ReadContext; readIndex: LogIndex; requiredIndex: LogIndex }): void {
    if (options.readIndex < options.requiredIndex) {
      throw new SafetyViolation(
        'STALE_READ',
        `node ${options.id} read ${options.context} got read index ${options.readIndex}, but writes up to ${options.requiredIndex} were acknowledged before it was issued`,
      );
    }
  }

  checkReadServed(options: { id: NodeId; context: ReadContext; appliedIndex: LogIndex; requiredIndex: LogIndex }): void {
    if (options.appliedIndex < options.requiredIndex) {
      throw new SafetyViolation(
        'STALE_READ',
        `node ${options.id} served read ${options.context} at applied index ${options.appliedIndex}, missing acknowledged writes up to ${options.requiredIndex}`,
      );
    }
  }

  // ---------------------------------------------------------------------------
  // Periodic full checks

  /** Whole logs of running nodes (persisted + unstable). */
  deepCheckLog(node: CheckedNode): void {
    const log = node.raw.raft.log;
    const first = log.firstIndex();
    const last = log.lastIndex();
    if (last >= first) {
      const entries = log.slice(first, last + 1, Number.MAX_SAFE_INTEGER);
      let prevTerm = log.termOrZero(first - 1);
      for (const e of entries) {
        this.checkIdentity(node.id, e, prevTerm);
        prevTerm = e.term;
      }
    }
    for (let i = Math.max(1, first - 1); i <= log.committed; i++) {
      const want = this.committedTerm[i];
      const t = log.term(i);
      if (want !== undefined && t !== undefined && t !== want) {
        throw new SafetyViolation('COMMITTED_ENTRY_CHANGED', `node ${node.id} holds term ${t} at committed index ${i}, where term ${want} was committed`);
      }
    }
    const leader = this.currentLeaders.get(node.id);
    if (leader !== undefined) this.checkLeaderHasCommitted(leader.node);
    // The core's membership is the one as of what the application applied (unless a snapshot is pending install).
    if (!log.hasPendingSnapshot()) {
      this.checkConfigAt({ id: node.id, index: node.sm.appliedIndex, cs: node.raw.raft.tracker.confState(), what: 'core membership' });
    }
  }

  /** A disk, running or not: its log against the identity table, and its own consistency. */
  deepCheckDisk(id: NodeId, disk: SimDisk): void {
    const first = disk.firstIndex();
    const last = disk.lastIndex();
    const hs = disk.hardState();
    if (hs.commit > last) throw new SafetyViolation('DISK_INCONSISTENT', `node ${id} disk: commit ${hs.commit} past last index ${last}`);
    if (disk.appliedIndex > hs.commit) {
      throw new SafetyViolation('DISK_INCONSISTENT', `node ${id} disk: applied ${disk.appliedIndex} past persisted commit ${hs.commit}`);
    }
    const snapIndex = disk.log.snapshot().metadata.index;
    if (snapIndex > hs.commit) throw new SafetyViolation('DISK_INCONSISTENT', `node ${id} disk: snapshot ${snapIndex} past persisted commit ${hs.commit}`);
    if (last < first) return;
    let prevTerm = disk.term(first - 1);
    for (const e of disk.entries(first, last + 1, Number.MAX_SAFE_INTEGER)) {
      this.checkIdentity(id, e, prevTerm);
      prevTerm = e.term;
    }
  }
}
