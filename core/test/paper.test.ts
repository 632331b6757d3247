// One test per rule of the Raft paper (Ongaro & Ousterhout, "In Search of an
// Understandable Consensus Algorithm", §5.1–§5.5 and §6), in the spirit of
// etcd-raft's raft_paper_test.go. Each test sets up one replica, steps the
// messages the rule is about, and checks the state and the messages it sends.
//
// Differences from etcd-raft that shape these tests:
// - outbound messages are split into `msgs` (may leave now: the leader's
//   appends and heartbeats) and `msgsAfterPersist` (votes and acks);
// - the leader counts its own log toward a majority only once persisted, so a
//   test that expects the leader to commit calls `persist(r)`;
// - role transitions are private: replicas get there by stepping `hup` and
//   vote responses, as they do in production.
import { describe, expect, it } from 'vitest';
import { ProposalDroppedError } from '../src/errors.js';
import { encodeConfChange } from '../src/membership/codec.js';
import type { Raft } from '../src/raft.js';
import {
  NONE,
  nodeId,
  type AppendMessage,
  type AppendResponseMessage,
  type ConfChange,
  type Entry,
  type HardState,
  type LogIndex,
  type Message,
  type StateRole,
  type Term,
  type VoteMessage,
  type VoteResponseMessage,
} from '../src/types.js';
import { Network, bytes, newRaft, persist, readMessages, storageWith } from './helpers.js';

const ELECTION_TICKS = 10;

// ---------------------------------------------------------------------------
// Builders

const ID = nodeId;
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
const votersUpTo = (size: number): number[] => range(1, size + 1);

const entry = (index: LogIndex, term: Term, data = ''): Entry => ({ index, term, type: 'normal', data: bytes(data) });
/** Entries at consecutive indexes from `first`, one per term given. */
const entries = (first: LogIndex, ...terms: Term[]): Entry[] => terms.map((term, i) => entry(first + i, term));
const proposal = (data: string): Entry => ({ index: 0, term: 0, type: 'normal', data: bytes(data) });

function appendMsg(o: { from: number; to: number; term: Term; index?: LogIndex; logTerm?: Term; entries?: Entry[]; commit?: LogIndex }): AppendMessage {
  return { type: 'append', from: ID(o.from), to: ID(o.to), term: o.term, index: o.index ?? 0, logTerm: o.logTerm ?? 0, entries: o.entries ?? [], commit: o.commit ?? 0 };
}
function voteMsg(o: { from: number; to: number; term: Term; index?: LogIndex; logTerm?: Term }): VoteMessage {
  return { type: 'vote', from: ID(o.from), to: ID(o.to), term: o.term, index: o.index ?? 0, logTerm: o.logTerm ?? 0, transfer: false };
}
function voteResponseMsg(o: { from: number; to: number; term: Term; reject: boolean }): VoteResponseMessage {
  return { type: 'voteResponse', from: ID(o.from), to: ID(o.to), term: o.term, reject: o.reject };
}
function appendResponseMsg(o: { from: number; to: number; term: Term; index: LogIndex; reject?: boolean; rejectHint?: LogIndex; logTerm?: Term; incarnation?: number }): AppendResponseMessage {
  return { type: 'appendResponse', from: ID(o.from), to: ID(o.to), term: o.term, index: o.index, reject: o.reject ?? false, rejectHint: o.rejectHint ?? 0, logTerm: o.logTerm ?? 0, incarnation: o.incarnation ?? 0 };
}

/** A replica whose storage already holds `log` and `hardState`, as after a restart. */
function raftWith(id: number, options: { voters: number[]; log?: Entry[]; hardState?: Partial<HardState> } & Omit<NonNullable<Parameters<typeof newRaft>[1]>, 'storage'>): Raft {
  const storage = storageWith({ voters: options.voters });
  storage.append(options.log ?? []);
  if (options.hardState !== undefined) storage.setHardState({ term: 0, vote: NONE, commit: 0, ...options.hardState });
  return newRaft(id, { ...options, storage });
}

// ---------------------------------------------------------------------------
// Driving a replica

function hup(r: Raft): void {
  r.step({ type: 'hup', from: r.id, to: r.id, term: 0, transfer: false });
}

/** Campaigns and collects granted votes from the other voters, in id order, until elected. */
function electLeader(r: Raft): void {
  hup(r);
  for (const id of r.tracker.voterNodes()) {
    if (r.role === 'leader') break;
    if (id !== r.id) r.step(voteResponseMsg({ from: id, to: r.id, term: r.term, reject: false }));
  }
  expect(r.role).toBe('leader');
}

/** The follower's success response to an append: it now matches through the last entry sent. */
function acceptAndReply(m: Message): AppendResponseMessage {
  if (m.type !== 'append') throw new Error(`expected an append, got ${m.type}`);
  return appendResponseMsg({ from: m.to, to: m.from, term: m.term, index: m.index + m.entries.length });
}

const appendsIn = (messages: readonly Message[]): AppendMessage[] => messages.filter((m): m is AppendMessage => m.type === 'append');

/**
 * Lets the followers in `acceptors` (default: all) accept every append until
 * the leader has nothing more to send, persisting the leader each round.
 */
function replicate(r: Raft, acceptors?: readonly number[]): void {
  for (let round = 0; round < 20; round++) {
    persist(r);
    const sent = appendsIn(readMessages(r)).filter((m) => acceptors === undefined || acceptors.includes(m.to));
    if (sent.length === 0) return;
    for (const m of sent) r.step(acceptAndReply(m));
  }
  throw new Error('replication did not quiesce');
}

/** Every follower acknowledges the new leader's empty entry; the leader persists, commits and applies it. */
function commitNoopEntry(r: Raft): void {
  expect(r.role).toBe('leader');
  for (const m of appendsIn(readMessages(r))) {
    expect(m.entries.map((e) => [e.term, e.data.byteLength])).toEqual([[r.term, 0]]);
    r.step(acceptAndReply(m));
  }
  persist(r);
  expect(r.log.committed).toBe(r.log.lastIndex());
  r.appliedTo(r.log.committed);
  readMessages(r);
}

const allEntries = (r: Raft): Entry[] => r.log.slice(r.log.firstIndex(), r.log.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
const voteRequestsIn = (messages: readonly Message[]): Message[] => messages.filter((m) => m.type === 'vote' || m.type === 'preVote');

// ---------------------------------------------------------------------------

describe('§5.1 terms', () => {
  for (const role of ['follower', 'candidate', 'leader'] as StateRole[]) it(`a ${role} takes the higher term of an incoming message and becomes follower (§5.1)`, () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    if (role === 'follower') r.becomeFollower(1, ID(2));
    if (role === 'candidate') hup(r);
    if (role === 'leader') electLeader(r);
    expect(r.role).toBe(role);
    expect(r.term).toBe(1);

    r.step(appendMsg({ from: 2, to: 1, term: 2 }));

    expect(r.term).toBe(2);
    expect(r.role).toBe('follower');
    expect(r.lead).toBe(ID(2));
    expect(r.vote).toBe(NONE);
  });

  const higherTermMessages: Array<{ name: string; message: Message; leader: number }> = [
    { name: 'append', message: appendMsg({ from: 2, to: 1, term: 5 }), leader: 2 },
    { name: 'heartbeat', message: { type: 'heartbeat', from: ID(2), to: ID(1), term: 5, commit: 0, round: 1 }, leader: 2 },
    { name: 'vote request', message: voteMsg({ from: 2, to: 1, term: 5 }), leader: NONE },
    { name: 'vote response', message: voteResponseMsg({ from: 2, to: 1, term: 5, reject: true }), leader: NONE },
    { name: 'append response', message: appendResponseMsg({ from: 2, to: 1, term: 5, index: 0 }), leader: NONE },
    { name: 'heartbeat response', message: { type: 'heartbeatResponse', from: ID(2), to: ID(1), term: 5, round: 1 }, leader: NONE },
  ];
  for (const { name, message, leader } of higherTermMessages) it(`a leader steps down on a higher-term ${name} (§5.1)`, () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    electLeader(r);
    r.step(message);
    expect(r.term).toBe(5);
    expect(r.role).toBe('follower');
    // Only a message a leader sends tells who the new leader is.
    expect(r.lead).toBe(ID(leader));
  });

  const staleMessages: Array<{ name: string; message: Message }> = [
    { name: 'append', message: appendMsg({ from: 2, to: 1, term: 1, entries: entries(1, 1), commit: 1 }) },
    { name: 'heartbeat', message: { type: 'heartbeat', from: ID(2), to: ID(1), term: 1, commit: 0, round: 1 } },
    { name: 'vote request', message: voteMsg({ from: 2, to: 1, term: 1, index: 5, logTerm: 1 }) },
  ];
  for (const { name, message } of staleMessages) it(`a replica ignores a stale-term ${name} (§5.1)`, () => {
    const r = raftWith(1, { voters: [1, 2, 3], hardState: { term: 2 } });
    r.step(message);
    expect(r.term).toBe(2);
    expect(r.lead).toBe(NONE);
    expect(r.vote).toBe(NONE);
    expect(r.log.lastIndex()).toBe(0);
    expect(readMessages(r)).toEqual([]);
  });

  it('a stale leader learns the current term from a follower reply and steps down (§5.1)', () => {
    // With check-quorum the follower answers a stale append at its own term,
    // so a leader cut off by a partition learns it has been replaced.
    const follower = raftWith(2, { voters: [1, 2, 3], hardState: { term: 2 }, checkQuorum: true });
    const staleLeader = newRaft(1, { voters: [1, 2, 3] });
    electLeader(staleLeader);
    expect(staleLeader.term).toBe(1);

    const [appendToFollower] = appendsIn(readMessages(staleLeader)).filter((m) => m.to === ID(2));
    follower.step(appendToFollower!);
    const replies = readMessages(follower);
    expect(replies).toEqual([appendResponseMsg({ from: 2, to: 1, term: 2, index: 0 })]);

    staleLeader.step(replies[0]!);
    expect(staleLeader.role).toBe('follower');
    expect(staleLeader.term).toBe(2);
  });
});

describe('§5.2 leader election', () => {
  it('replicas start as followers (§5.2)', () => {
    const fresh = newRaft(1, { voters: [1, 2, 3] });
    expect([fresh.role, fresh.term, fresh.lead, fresh.vote]).toEqual(['follower', 0, NONE, NONE]);
    // After a restart too, keeping the persisted term and vote.
    const restarted = raftWith(1, { voters: [1, 2, 3], hardState: { term: 5, vote: ID(2) } });
    expect([restarted.role, restarted.term, restarted.lead, restarted.vote]).toEqual(['follower', 5, NONE, ID(2)]);
  });

  it('a leader sends heartbeats to every follower each heartbeat interval, without waiting for its disk (§5.2)', () => {
    const r = newRaft(1, { voters: [1, 2, 3], heartbeat: 2 });
    electLeader(r);
    for (let i = 0; i < 10; i++) r.propose([proposal(`entry ${i}`)]);
    readMessages(r);

    r.tick();
    expect(readMessages(r)).toEqual([]);
    r.tick();
    expect(r.msgs).toEqual([
      { type: 'heartbeat', from: ID(1), to: ID(2), term: 1, commit: 0, round: 1 },
      { type: 'heartbeat', from: ID(1), to: ID(3), term: 1, commit: 0, round: 1 },
    ]);
    expect(r.msgsAfterPersist).toEqual([]);
  });

  it('heartbeats carry the commit index, capped at what each follower has (§5.3)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    electLeader(r);
    // Only follower 2 acknowledges the empty entry; with the leader it is a majority.
    replicate(r, [2]);
    expect(r.log.committed).toBe(1);

    r.tick();
    expect(readMessages(r)).toEqual([
      { type: 'heartbeat', from: ID(1), to: ID(2), term: 1, commit: 1, round: 1 },
      // Follower 3 may not have entry 1: it must not be told to commit it.
      { type: 'heartbeat', from: ID(1), to: ID(3), term: 1, commit: 0, round: 1 },
    ]);
  });

  for (const role of ['follower', 'candidate'] as StateRole[]) it(`a ${role} that hears nothing for an election timeout starts an election (§5.2)`, () => {
    const r = newRaft(1, { voters: [1, 2, 3], election: ELECTION_TICKS });
    if (role === 'follower') r.becomeFollower(1, ID(2));
    else hup(r);
    expect(r.term).toBe(1);
    readMessages(r);

    // The randomized timeout is below 2T, so 2T-1 ticks always reach it (and only once).
    for (let i = 1; i < 2 * ELECTION_TICKS; i++) r.tick();

    expect(r.term).toBe(2);
    expect(r.role).toBe('candidate');
    expect(r.vote).toBe(r.id);
    expect(r.tracker.tallyVotes()).toEqual({ granted: 1, rejected: 0, result: 'pending' });
    // Vote requests leave only once the candidate's own vote is on disk.
    expect(r.msgs).toEqual([]);
    expect(r.msgsAfterPersist).toEqual([voteMsg({ from: 1, to: 2, term: 2 }), voteMsg({ from: 1, to: 3, term: 2 })]);
  });

  const oneRound: Array<{ name: string; size: number; votes: Record<number, boolean>; role: StateRole }> = [
    // Win with a majority of votes.
    { name: 'alone', size: 1, votes: {}, role: 'leader' },
    { name: 'all of 3', size: 3, votes: { 2: true, 3: true }, role: 'leader' },
    { name: '2 of 3', size: 3, votes: { 2: true }, role: 'leader' },
    { name: 'all of 5', size: 5, votes: { 2: true, 3: true, 4: true, 5: true }, role: 'leader' },
    { name: '4 of 5', size: 5, votes: { 2: true, 3: true, 4: true }, role: 'leader' },
    { name: '3 of 5', size: 5, votes: { 2: true, 3: true }, role: 'leader' },
    // Lose to a majority of rejections.
    { name: '2 of 3 against', size: 3, votes: { 2: false, 3: false }, role: 'follower' },
    { name: '4 of 5 against', size: 5, votes: { 2: false, 3: false, 4: false, 5: false }, role: 'follower' },
    { name: '3 of 5 against', size: 5, votes: { 2: true, 3: false, 4: false, 5: false }, role: 'follower' },
    // Neither: keep waiting.
    { name: 'no answers of 3', size: 3, votes: {}, role: 'candidate' },
    { name: '2 of 5 for', size: 5, votes: { 2: true }, role: 'candidate' },
    { name: '2 of 5 against', size: 5, votes: { 2: false, 3: false }, role: 'candidate' },
    { name: 'no answers of 5', size: 5, votes: {}, role: 'candidate' },
  ];
  for (const { name, size, votes, role } of oneRound) it(`after one round of votes (${name}) the candidate is ${role} (§5.2)`, () => {
    const r = newRaft(1, { voters: votersUpTo(size) });
    hup(r);
    for (const [from, granted] of Object.entries(votes)) {
      r.step(voteResponseMsg({ from: Number(from), to: 1, term: r.term, reject: !granted }));
    }
    expect(r.role).toBe(role);
    expect(r.term).toBe(1);
  });

  const followerVotes: Array<{ votedFor: number; candidate: number; reject: boolean }> = [
    { votedFor: NONE, candidate: 2, reject: false },
    { votedFor: NONE, candidate: 3, reject: false },
    // A repeated request from the candidate we voted for is granted again.
    { votedFor: 2, candidate: 2, reject: false },
    { votedFor: 3, candidate: 3, reject: false },
    { votedFor: 2, candidate: 3, reject: true },
    { votedFor: 3, candidate: 2, reject: true },
  ];
  for (const { votedFor, candidate, reject } of followerVotes) it(`a follower that voted for ${votedFor === NONE ? 'nobody' : votedFor} in this term ${reject ? 'rejects' : 'grants'} candidate ${candidate} (§5.2)`, () => {
    const r = raftWith(1, { voters: [1, 2, 3], hardState: { term: 1, vote: ID(votedFor) } });
    r.step(voteMsg({ from: candidate, to: 1, term: 1 }));
    expect(r.msgs).toEqual([]);
    expect(r.msgsAfterPersist).toEqual([voteResponseMsg({ from: 1, to: candidate, term: 1, reject })]);
    expect(r.vote).toBe(ID(reject ? votedFor : candidate));
  });

  it('a follower votes for the first candidate that asks in a term and no other (§5.2)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    r.step(voteMsg({ from: 2, to: 1, term: 1 }));
    r.step(voteMsg({ from: 3, to: 1, term: 1 }));
    expect(readMessages(r)).toEqual([voteResponseMsg({ from: 1, to: 2, term: 1, reject: false }), voteResponseMsg({ from: 1, to: 3, term: 1, reject: true })]);
    // A new term frees the vote.
    r.step(voteMsg({ from: 3, to: 1, term: 2 }));
    expect(readMessages(r)).toEqual([voteResponseMsg({ from: 1, to: 3, term: 2, reject: false })]);
  });

  for (const term of [1, 2]) it(`a candidate returns to follower on an append from a leader of term ${term} >= its own (§5.2)`, () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    hup(r);
    expect([r.role, r.term]).toEqual(['candidate', 1]);

    r.step(appendMsg({ from: 2, to: 1, term }));

    expect(r.role).toBe('follower');
    expect(r.term).toBe(term);
    expect(r.lead).toBe(ID(2));
  });

  for (const role of ['follower', 'candidate'] as StateRole[]) it(`a ${role} election timeout is randomized over [T, 2T) (§5.2)`, () => {
    const r = newRaft(1, { voters: [1, 2, 3], election: ELECTION_TICKS });
    const seen = new Set<number>();
    for (let round = 0; round < 50 * ELECTION_TICKS; round++) {
      if (role === 'follower') r.becomeFollower(r.term + 1, ID(2));
      else hup(r);
      readMessages(r);
      let ticks = 0;
      while (readMessages(r).length === 0) {
        r.tick();
        ticks++;
        expect(ticks, 'election timeout').toBeLessThan(2 * ELECTION_TICKS);
      }
      seen.add(ticks);
    }
    expect([...seen].sort((a, b) => a - b)).toEqual(range(ELECTION_TICKS, 2 * ELECTION_TICKS));
  });

  for (const role of ['follower', 'candidate'] as StateRole[]) it(`${role} election timeouts rarely expire on the same tick (§5.2)`, () => {
    const voters = votersUpTo(5);
    const rafts = voters.map((id) => newRaft(id, { voters, election: ELECTION_TICKS }));
    const rounds = 1000;
    let conflicts = 0;
    for (let round = 0; round < rounds; round++) {
      for (const r of rafts) {
        if (role === 'follower') r.becomeFollower(r.term + 1, NONE);
        else hup(r);
        readMessages(r);
      }
      let timedOut = 0;
      while (timedOut === 0) {
        for (const r of rafts) {
          r.tick();
          if (readMessages(r).length > 0) timedOut++;
        }
      }
      if (timedOut > 1) conflicts++;
    }
    // etcd-raft's bound; with a fixed timeout every round would conflict.
    expect(conflicts / rounds).toBeLessThanOrEqual(0.3);
  });

  const leaderMessages: Array<{ name: string; message: (round: number) => Message }> = [
    { name: 'heartbeats', message: (round) => ({ type: 'heartbeat', from: ID(2), to: ID(1), term: 1, commit: 0, round }) },
    { name: 'appends', message: () => appendMsg({ from: 2, to: 1, term: 1 }) },
  ];
  for (const { name, message } of leaderMessages) it(`a follower that keeps receiving ${name} from the leader never starts an election (§5.2)`, () => {
    const r = newRaft(1, { voters: [1, 2, 3], election: ELECTION_TICKS });
    r.becomeFollower(1, ID(2));
    for (let round = 1; round <= 20; round++) {
      for (let i = 0; i < ELECTION_TICKS - 1; i++) r.tick();
      r.step(message(round));
    }
    expect(voteRequestsIn(readMessages(r))).toEqual([]);
    expect([r.role, r.term]).toEqual(['follower', 1]);
  });

  it('granting a vote restarts the election timer (§5.2, Figure 2)', () => {
    const r = newRaft(1, { voters: [1, 2, 3], election: ELECTION_TICKS });
    r.becomeFollower(1, NONE);
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < ELECTION_TICKS - 1; i++) r.tick();
      // The candidate retries; we granted it before, so we grant it again.
      r.step(voteMsg({ from: 2, to: 1, term: 1 }));
    }
    expect(voteRequestsIn(readMessages(r))).toEqual([]);
    expect([r.role, r.term, r.vote]).toEqual(['follower', 1, ID(2)]);
  });

  it('a new leader appends an empty entry of its term and sends it to every follower at once (§5.2, §8)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    hup(r);
    readMessages(r);
    r.step(voteResponseMsg({ from: 2, to: 1, term: 1, reject: false }));
    expect(r.role).toBe('leader');
    expect(r.lead).toBe(ID(1));
    expect(r.log.unstableEntries()).toEqual([entry(1, 1)]);
    expect(r.msgs).toEqual([
      appendMsg({ from: 1, to: 2, term: 1, index: 0, logTerm: 0, entries: [entry(1, 1)], commit: 0 }),
      appendMsg({ from: 1, to: 3, term: 1, index: 0, logTerm: 0, entries: [entry(1, 1)], commit: 0 }),
    ]);
  });
});

describe('§5.3 log replication', () => {
  it('a leader appends a proposal and sends it with the index and term of the entry before it (§5.3)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    electLeader(r);
    commitNoopEntry(r);
    const li = r.log.lastIndex();

    r.propose([proposal('some data')]);

    expect(r.log.lastIndex()).toBe(li + 1);
    expect(r.log.committed).toBe(li);
    const expected = entry(li + 1, 1, 'some data');
    // Appends go out in parallel with the leader's own write (thesis §10.2.1).
    expect(r.msgs).toEqual([
      appendMsg({ from: 1, to: 2, term: 1, index: li, logTerm: 1, entries: [expected], commit: li }),
      appendMsg({ from: 1, to: 3, term: 1, index: li, logTerm: 1, entries: [expected], commit: li }),
    ]);
    expect(r.msgsAfterPersist).toEqual([]);
    expect(r.log.unstableEntries()).toEqual([expected]);
  });

  it('a leader commits an entry once a majority stores it and tells the followers (§5.3)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    electLeader(r);
    commitNoopEntry(r);
    const li = r.log.lastIndex();
    r.propose([proposal('some data')]);

    for (const m of readMessages(r)) r.step(acceptAndReply(m));

    expect(r.log.committed).toBe(li + 1);
    expect(r.log.nextCommittedEntries()).toEqual([entry(li + 1, 1, 'some data')]);
    const sent = readMessages(r);
    expect(sent.map((m) => [m.type, m.to])).toEqual([
      ['append', ID(2)],
      ['append', ID(3)],
    ]);
    for (const m of appendsIn(sent)) expect(m.commit).toBe(li + 1);
  });

  const acknowledgements: Array<{ size: number; acceptors: number[]; committed: boolean }> = [
    { size: 1, acceptors: [], committed: true },
    { size: 3, acceptors: [], committed: false },
    { size: 3, acceptors: [2], committed: true },
    { size: 3, acceptors: [2, 3], committed: true },
    { size: 5, acceptors: [], committed: false },
    { size: 5, acceptors: [2], committed: false },
    { size: 5, acceptors: [2, 3], committed: true },
    { size: 5, acceptors: [2, 3, 4], committed: true },
    { size: 5, acceptors: [2, 3, 4, 5], committed: true },
  ];
  for (const { size, acceptors, committed } of acknowledgements) it(`of ${size} replicas, the leader plus followers (${acceptors.join(' ')}) storing an entry ${committed ? 'commit' : 'do not commit'} it (§5.3)`, () => {
    const r = newRaft(1, { voters: votersUpTo(size) });
    electLeader(r);
    commitNoopEntry(r);
    const li = r.log.lastIndex();
    r.propose([proposal('some data')]);

    for (const m of appendsIn(readMessages(r))) if (acceptors.includes(m.to)) r.step(acceptAndReply(m));
    persist(r);

    expect(r.log.committed > li).toBe(committed);
  });

  it('a leader counts its own log only once it is persisted (§5.3, thesis §10.2.1)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    electLeader(r);
    commitNoopEntry(r);
    const li = r.log.lastIndex();
    r.propose([proposal('some data')]);

    const toFollower2 = appendsIn(readMessages(r)).find((m) => m.to === ID(2))!;
    r.step(acceptAndReply(toFollower2));
    // Follower 2 and the leader's unsynced write are not yet a majority.
    expect(r.log.committed).toBe(li);

    persist(r);
    expect(r.log.committed).toBe(li + 1);
  });

  it('a majority of followers commits an entry before the leader has persisted it (thesis §10.2.1)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    electLeader(r);
    commitNoopEntry(r);
    const li = r.log.lastIndex();
    r.propose([proposal('some data')]);

    for (const m of appendsIn(readMessages(r))) r.step(acceptAndReply(m));

    expect(r.log.unstableEntries().map((e) => e.index)).toEqual([li + 1]);
    expect(r.log.committed).toBe(li + 1);
  });

  const precedingLogs: Array<{ name: string; log: Entry[] }> = [
    { name: 'an empty log', log: [] },
    { name: 'an entry of term 2', log: entries(1, 2) },
    { name: 'entries of terms 1 and 2', log: entries(1, 1, 2) },
    { name: 'an entry of term 1', log: entries(1, 1) },
  ];
  for (const { name, log } of precedingLogs) it(`committing an entry commits every one before it, including earlier terms: ${name} (§5.3)`, () => {
    const r = raftWith(1, { voters: [1, 2, 3], log, hardState: { term: 2 } });
    electLeader(r);
    expect(r.term).toBe(3);
    r.propose([proposal('some data')]);

    replicate(r);

    const li = log.length;
    expect(r.log.nextCommittedEntries()).toEqual([...log, entry(li + 1, 3), entry(li + 2, 3, 'some data')]);
  });

  const followerCommits: Array<{ name: string; sent: Entry[]; commit: LogIndex }> = [
    { name: 'one entry, committed', sent: [entry(1, 1, 'some data')], commit: 1 },
    { name: 'two entries, both committed', sent: [entry(1, 1, 'some data'), entry(2, 1, 'some data2')], commit: 2 },
    { name: 'two other entries, both committed', sent: [entry(1, 1, 'some data2'), entry(2, 1, 'some data')], commit: 2 },
    { name: 'two entries, the first committed', sent: [entry(1, 1, 'some data'), entry(2, 1, 'some data2')], commit: 1 },
  ];
  for (const { name, sent, commit } of followerCommits) it(`a follower applies what the leader reports committed, in log order: ${name} (§5.3)`, () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    r.becomeFollower(1, ID(2));

    r.step(appendMsg({ from: 2, to: 1, term: 1, entries: sent, commit }));

    expect(r.log.committed).toBe(commit);
    expect(r.log.nextCommittedEntries()).toEqual(sent.slice(0, commit));
  });

  const consistencyChecks: Array<{ name: string; index: LogIndex; logTerm: Term; response: Partial<AppendResponseMessage> }> = [
    // The follower holds (1, term 1) committed and (2, term 2) uncommitted.
    { name: 'matches the start of the log', index: 0, logTerm: 0, response: { index: 1 } },
    { name: 'matches a committed entry', index: 1, logTerm: 1, response: { index: 1 } },
    { name: 'matches an uncommitted entry', index: 2, logTerm: 2, response: { index: 2 } },
    // The hint is the highest entry that might still match: index <= 2 with term <= 1.
    { name: 'term differs at an existing entry', index: 2, logTerm: 1, response: { index: 2, reject: true, rejectHint: 1, logTerm: 1 } },
    { name: 'entry missing', index: 3, logTerm: 3, response: { index: 3, reject: true, rejectHint: 2, logTerm: 2 } },
  ];
  for (const { name, index, logTerm, response } of consistencyChecks) it(`a follower checks the entry before an append (log matching): ${name} (§5.3)`, () => {
    const r = raftWith(1, { voters: [1, 2, 3], log: entries(1, 1, 2), hardState: { commit: 1 } });
    r.becomeFollower(2, ID(2));

    r.step(appendMsg({ from: 2, to: 1, term: 2, index, logTerm }));

    expect(readMessages(r)).toEqual([{ ...appendResponseMsg({ from: 1, to: 2, term: 2, index: 0 }), ...response }]);
    expect(r.log.lastIndex()).toBe(2);
  });

  const followerAppends: Array<{ name: string; index: LogIndex; logTerm: Term; sent: Entry[]; log: Entry[]; unstable: Entry[] }> = [
    // The follower holds terms 1, 2 at 1..2.
    { name: 'new entry after the last', index: 2, logTerm: 2, sent: entries(3, 3), log: entries(1, 1, 2, 3), unstable: entries(3, 3) },
    { name: 'conflict deletes the entry and all after it', index: 1, logTerm: 1, sent: entries(2, 3, 4), log: entries(1, 1, 3, 4), unstable: entries(2, 3, 4) },
    { name: 'entries already present change nothing', index: 0, logTerm: 0, sent: entries(1, 1), log: entries(1, 1, 2), unstable: [] },
    { name: 'conflict at the first entry replaces the log', index: 0, logTerm: 0, sent: entries(1, 3), log: entries(1, 3), unstable: entries(1, 3) },
  ];
  for (const { name, index, logTerm, sent, log, unstable } of followerAppends) it(`a follower deletes conflicting entries and appends new ones: ${name} (§5.3)`, () => {
    const r = raftWith(1, { voters: [1, 2, 3], log: entries(1, 1, 2) });
    r.becomeFollower(2, ID(2));

    r.step(appendMsg({ from: 2, to: 1, term: 2, index, logTerm, entries: sent }));

    expect(allEntries(r)).toEqual(log);
    expect(r.log.unstableEntries()).toEqual(unstable);
  });

  // Figure 7: the leader for term 8 holds terms 1 1 1 4 4 5 5 6 6 6 at 1..10.
  const figure7: Array<{ name: string; follower: Term[] }> = [
    { name: '(a) missing one entry', follower: [1, 1, 1, 4, 4, 5, 5, 6, 6] },
    { name: '(b) missing many entries', follower: [1, 1, 1, 4] },
    { name: '(c) one extra entry of the same term', follower: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6] },
    { name: '(d) extra entries of a later term', follower: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7] },
    { name: '(e) missing entries and extra ones of an old term', follower: [1, 1, 1, 4, 4, 4, 4] },
    { name: '(f) many extra entries of old terms', follower: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3] },
  ];
  for (const { name, follower: followerTerms } of figure7) it(`a leader brings the follower log of Figure 7 ${name} into line with its own (§5.3)`, () => {
    const leaderLog = entries(1, 1, 1, 1, 4, 4, 5, 5, 6, 6, 6);
    const leaderTerm = 8;
    const leader = raftWith(1, { voters: [1, 2, 3], log: leaderLog, hardState: { term: leaderTerm, commit: leaderLog.length } });
    const follower = raftWith(2, { voters: [1, 2, 3], log: entries(1, ...followerTerms), hardState: { term: leaderTerm - 1 } });
    // Replica 3 is silent but for its vote: the follower may have the more up-to-date log and refuse.
    const net = new Network([leader, follower]);
    net.campaign(1);
    net.send(voteResponseMsg({ from: 3, to: 1, term: leaderTerm + 1, reject: false }));
    expect(leader.role).toBe('leader');

    net.send({ type: 'propose', from: ID(1), to: ID(1), term: 0, entries: [proposal('')] });

    expect(allEntries(follower)).toEqual(allEntries(leader));
    expect(follower.log.committed).toBe(leader.log.committed);
    expect(leader.log.committed).toBe(leader.log.lastIndex());
  });

  it('a repeated append is acknowledged again and changes nothing (§5.5)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    r.becomeFollower(1, ID(2));
    const m = appendMsg({ from: 2, to: 1, term: 1, entries: entries(1, 1, 1), commit: 0 });

    r.step(m);
    persist(r);
    const first = readMessages(r);
    r.step(m);

    expect(readMessages(r)).toEqual(first);
    expect(first).toEqual([appendResponseMsg({ from: 1, to: 2, term: 1, index: 2 })]);
    expect(r.log.unstableEntries()).toEqual([]);
    expect(allEntries(r)).toEqual(entries(1, 1, 1));
  });

  it('an append from before the commit index is acknowledged up to the commit index only (§5.5)', () => {
    const r = newRaft(1, { voters: [1, 2, 3] });
    r.becomeFollower(1, ID(2));
    r.step(appendMsg({ from: 2, to: 1, term: 1, entries: entries(1, 1, 1, 1), commit: 2 }));
    persist(r);
    readMessages(r);

    // A delayed copy of an older append: everything up to our commit index matches the leader.
    r.step(appendMsg({ from: 2, to: 1, term: 1, entries: entries(1, 1), commit: 0 }));

    expect(readMessages(r)).toEqual([appendResponseMsg({ from: 1, to: 2, term: 1, index: 2 })]);
    expect(allEntries(r)).toEqual(entries(1, 1, 1, 1));
    expect(r.log.committed).toBe(2);
  });
});

describe('§5.4 safety', () => {
  const voteRequests: Array<{ log: Entry[]; term: Term }> = [
    { log: entries(1, 1), term: 2 },
    { log: entries(1, 1, 2), term: 3 },
  ];
  for (const { log, term } of voteRequests) it(`a vote request in term ${term} carries the candidate's last log index and term (§5.4.1)`, () => {
    const r = newRaft(1, { voters: [1, 2, 3], election: ELECTION_TICKS });
    r.step(appendMsg({ from: 2, to: 1, term: term - 1, entries: log }));
    readMessages(r);

    for (let i = 1; i < 2 * ELECTION_TICKS; i++) r.tick();

    const last = log[log.length - 1]!;
    expect(readMessages(r)).toEqual([
      voteMsg({ from: 1, to: 2, term, index: last.index, logTerm: last.term }),
      voteMsg({ from: 1, to: 3, term, index: last.index, logTerm: last.term }),
    ]);
  });

  const voters: Array<{ name: string; log: Entry[]; logTerm: Term; index: LogIndex; reject: boolean }> = [
    { name: 'same last term, same length', log: entries(1, 1), logTerm: 1, index: 1, reject: false },
    { name: 'same last term, candidate longer', log: entries(1, 1), logTerm: 1, index: 2, reject: false },
    { name: 'same last term, voter longer', log: entries(1, 1, 1), logTerm: 1, index: 1, reject: true },
    { name: 'candidate later term, same length', log: entries(1, 1), logTerm: 2, index: 1, reject: false },
    { name: 'candidate later term, longer', log: entries(1, 1), logTerm: 2, index: 2, reject: false },
    { name: 'candidate later term, shorter', log: entries(1, 1, 1), logTerm: 2, index: 1, reject: false },
    { name: 'voter later term, same length', log: entries(1, 2), logTerm: 1, index: 1, reject: true },
    { name: 'voter later term, candidate longer', log: entries(1, 2), logTerm: 1, index: 2, reject: true },
    { name: 'voter later term, voter longer', log: entries(1, 2, 2), logTerm: 1, index: 1, reject: true },
  ];
  for (const { name, log, logTerm, index, reject } of voters) it(`a voter denies a candidate whose log is less up to date: ${name} (§5.4.1)`, () => {
    const r = raftWith(1, { voters: [1, 2], log });

    r.step(voteMsg({ from: 2, to: 1, term: 3, index, logTerm }));

    expect(readMessages(r)).toEqual([voteResponseMsg({ from: 1, to: 2, term: 3, reject })]);
    expect(r.vote).toBe(reject ? NONE : ID(2));
  });

  const currentTermCommits: Array<{ ackedIndex: LogIndex; committed: LogIndex }> = [
    // Entries 1 (term 1) and 2 (term 2) are from earlier terms: replicas alone cannot commit them.
    { ackedIndex: 1, committed: 0 },
    { ackedIndex: 2, committed: 0 },
    // Entry 3 is the new leader's own (term 3): committing it commits 1 and 2 too.
    { ackedIndex: 3, committed: 3 },
  ];
  for (const { ackedIndex, committed } of currentTermCommits) it(`a leader commits only entries of its current term by counting replicas (follower has ${ackedIndex}) (§5.4.2)`, () => {
    const r = raftWith(1, { voters: [1, 2], log: entries(1, 1, 2), hardState: { term: 2 } });
    electLeader(r);
    expect(r.term).toBe(3);
    readMessages(r);
    r.propose([proposal('')]);
    persist(r);

    r.step(appendResponseMsg({ from: 2, to: 1, term: 3, index: ackedIndex }));

    expect(r.log.committed).toBe(committed);
  });
});

describe('§6 cluster membership changes', () => {
  const removeNode = (id: number): ConfChange => ({ changes: [{ type: 'removeNode', nodeId: ID(id) }], transition: 'auto' });
  const proposeConfChange = (net: Network, leader: number, cc: ConfChange): void =>
    net.send({ type: 'propose', from: ID(leader), to: ID(leader), term: 0, entries: [{ index: 0, term: 0, type: 'confChange', data: encodeConfChange(cc) }] });
  /** Each replica applies the committed change, as the application would. */
  const applyEverywhere = (net: Network, cc: ConfChange, ids: number[]): void => {
    for (const id of ids) {
      const r = net.get(id);
      r.applyConfChange(cc);
      r.appliedTo(r.log.committed);
    }
  };

  it('a leader removed from the configuration steps down when the change applies (§6)', () => {
    const net = Network.of(3);
    net.campaign(1);
    const leader = net.get(1);
    const cc = removeNode(1);
    proposeConfChange(net, 1, cc);
    const changeIndex = leader.log.lastIndex();
    for (const id of [1, 2, 3]) expect(net.get(id).log.committed).toBe(changeIndex);
    // Committed but not yet applied: the old configuration still rules.
    expect(leader.role).toBe('leader');

    applyEverywhere(net, cc, [1, 2, 3]);

    expect(leader.role).toBe('follower');
    expect(leader.lead).toBe(NONE);
    expect(leader.term).toBe(1);
    // It never campaigns again: it is not a member.
    for (let i = 0; i < 4 * ELECTION_TICKS; i++) leader.tick();
    expect(readMessages(leader)).toEqual([]);
    expect(leader.role).toBe('follower');
    // The remaining replicas elect a leader among themselves.
    net.campaign(2);
    expect(net.get(2).role).toBe('leader');
    expect(net.get(2).tracker.voterNodes()).toEqual([ID(2), ID(3)]);
  });

  it('a leader removed through a joint configuration leads until the joint configuration is left (§6, thesis §4.3)', () => {
    const net = Network.of(3);
    net.campaign(1);
    const leader = net.get(1);
    const enter: ConfChange = { changes: [{ type: 'removeNode', nodeId: ID(1) }], transition: 'explicit' };
    proposeConfChange(net, 1, enter);
    applyEverywhere(net, enter, [1, 2, 3]);

    // (2 3)&&(1 2 3): the leader still votes in the outgoing half, so it keeps leading.
    expect(leader.tracker.config.voters.toString()).toBe('(2 3)&&(1 2 3)');
    expect(leader.role).toBe('leader');
    net.propose(1, 'during the joint configuration');
    for (const id of [1, 2, 3]) expect(net.get(id).log.committed).toBe(leader.log.lastIndex());

    const leave: ConfChange = { changes: [], transition: 'explicit' };
    proposeConfChange(net, 1, leave);
    expect(leader.role).toBe('leader');
    applyEverywhere(net, leave, [1, 2, 3]);

    expect(leader.tracker.config.voters.toString()).toBe('(2 3)');
    expect(leader.role).toBe('follower');
  });

  it('a leader demoted to learner steps down when the change applies (§6)', () => {
    const net = Network.of(3);
    net.campaign(1);
    const cc: ConfChange = { changes: [{ type: 'addLearner', nodeId: ID(1) }], transition: 'auto' };
    proposeConfChange(net, 1, cc);

    applyEverywhere(net, cc, [1]);

    const leader = net.get(1);
    expect(leader.role).toBe('follower');
    expect(leader.isLearner).toBe(true);
    expect(leader.promotable()).toBe(false);
  });

  it('with stepDownOnRemoval off, a removed leader keeps leading but refuses proposals (§6)', () => {
    const net = Network.of(3, (id, voters) => newRaft(id, { voters, stepDownOnRemoval: false }));
    net.campaign(1);
    const cc = removeNode(1);
    proposeConfChange(net, 1, cc);

    applyEverywhere(net, cc, [1]);

    const leader = net.get(1);
    expect(leader.role).toBe('leader');
    expect(() => leader.propose([proposal('x')])).toThrow(ProposalDroppedError);
  });

  it('a smaller configuration commits with its own majority as soon as it applies (§6)', () => {
    const r = newRaft(1, { voters: [1, 2] });
    electLeader(r);
    commitNoopEntry(r);
    const cc = removeNode(2);
    r.propose([{ index: 0, term: 0, type: 'confChange', data: encodeConfChange(cc) }]);
    replicate(r);
    const changeIndex = r.log.committed;
    expect(changeIndex).toBe(r.log.lastIndex());
    // Replica 2 goes silent; with two voters the leader alone cannot commit.
    r.propose([proposal('after')]);
    persist(r);
    expect(r.log.committed).toBe(changeIndex);

    r.applyConfChange(cc);

    expect(r.tracker.voterNodes()).toEqual([ID(1)]);
    expect(r.log.committed).toBe(changeIndex + 1);
  });
  it("a leader tells a node's new replica from the one the node destroyed: only the new one's answers count (§6)", () => {
    // Node ids name peers: a node removed from the group and added back holds a new, empty replica, and the
    // leader must not take a late answer of the destroyed one's for it (node simulation seed 104237).
    const r = newRaft(1, { voters: [1, 2, 3] });
    electLeader(r);
    commitNoopEntry(r);
    for (let i = 0; i < 3; i++) r.propose([proposal(`before ${i}`)]);
    persist(r);
    const sent = appendsIn(readMessages(r));
    const acked = r.log.lastIndex();
    for (const m of sent) r.step({ ...acceptAndReply(m), incarnation: 1 });
    expect(r.tracker.progress.get(ID(2))!.match).toBe(acked);
    readMessages(r);

    // Node 2 destroys its replica and creates a new one, with an empty log, which rejects the next append.
    r.propose([proposal('after')]);
    persist(r);
    const probe = appendsIn(readMessages(r)).find((m) => m.to === ID(2))!;
    expect(probe.index).toBe(acked);
    r.step(appendResponseMsg({ from: 2, to: 1, term: r.term, index: probe.index, reject: true, rejectHint: 0, incarnation: 2 }));

    // What the destroyed replica acknowledged is gone: the leader replicates to the new one from the start.
    expect(r.tracker.progress.get(ID(2))!.match).toBe(0);
    const restart = appendsIn(readMessages(r)).filter((m) => m.to === ID(2));
    expect(restart.map((m) => m.index)).toEqual([0]);
    // A late answer of the destroyed replica's changes nothing.
    r.step(appendResponseMsg({ from: 2, to: 1, term: r.term, index: acked, incarnation: 1 }));
    expect(r.tracker.progress.get(ID(2))!.match).toBe(0);
    r.step({ ...acceptAndReply(restart[0]!), incarnation: 2 });
    expect(r.tracker.progress.get(ID(2))!.match).toBe(r.log.lastIndex());
  });
});
