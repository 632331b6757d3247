// Log repair after leader changes (Raft §5.3, thesis §3.5 and Figure 3.7): a
// new leader forces its log onto followers whose logs miss entries, hold
// extra uncommitted entries, or both, across several terms. With the
// (index, term) reject hint the leader skips a whole term per round trip
// instead of one entry (etcd-raft's TestFastLogRejection), so even logs that
// diverge over hundreds of entries converge in a couple of round trips.
import { describe, expect, it } from 'vitest';
import { ProposalDroppedError } from '../../src/errors.js';
import { MemoryStorage } from '../../src/log/storage.js';
import { SeededRng } from '../../src/rng.js';
import { NONE, type AppendResponseMessage, type Entry, type Term } from '../../src/types.js';
import { bytes, storageWith } from '../helpers.js';
import { Cluster } from './rawnode-cluster.js';

/** Entry identity is (term, index) by Log Matching; the payload says so, which makes logs easy to compare. */
const payload = (term: Term, index: number): string => `t${term}i${index}`;

function storageWithLog(voters: number[], terms: readonly Term[], hardState: { term: Term; commit: number }): MemoryStorage {
  const storage = storageWith({ voters });
  const entries: Entry[] = terms.map((term, i) => ({ term, index: i + 1, type: 'normal', data: bytes(payload(term, i + 1)) }));
  storage.append(entries);
  storage.setHardState({ term: hardState.term, vote: NONE, commit: hardState.commit });
  return storage;
}

/** A cluster whose replicas start from the given logs, all at `term`; elections only when asked. */
function clusterWithLogs(logs: readonly (readonly Term[])[], options: { term: Term; commit: number }): Cluster {
  const cluster = new Cluster({ voters: [] });
  const voters = logs.map((_, i) => i + 1);
  logs.forEach((terms, i) => {
    cluster.addReplica(i + 1, {
      storage: storageWithLog(voters, terms, { term: options.term, commit: Math.min(options.commit, terms.length) }),
      config: { checkQuorum: false, preVote: false },
    });
  });
  cluster.stabilize();
  return cluster;
}

/** Repeats every term of `runs` (term, length) into a log. */
const log = (...runs: [Term, number][]): Term[] => runs.flatMap(([term, length]) => Array<Term>(length).fill(term));

function commonPrefixLength(a: readonly Term[], b: readonly Term[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

const distinctTerms = (terms: readonly Term[]): number => new Set(terms).size;

/** Same log (over the range both still hold after compaction), commit index and state machine. */
function expectConverged(cluster: Cluster, leader: number, ids: readonly number[]): void {
  const leaderState = cluster.replica(leader).stateMachine;
  for (const id of ids) {
    const from = Math.max(cluster.raft(leader).log.firstIndex(), cluster.raft(id).log.firstIndex()) - 1;
    expect(cluster.raft(id).log.lastIndex(), `last index of ${id}`).toBe(cluster.raft(leader).log.lastIndex());
    expect(cluster.terms(id).slice(from), `log of ${id}`).toEqual(cluster.terms(leader).slice(from));
    expect(cluster.raft(id).log.committed, `commit of ${id}`).toBe(cluster.raft(leader).log.committed);
    expect(cluster.replica(id).stateMachine, `state machine of ${id}`).toEqual(leaderState);
  }
}

describe('divergent logs converge to the leader (§5.3)', () => {
  // Thesis Figure 3.7 with every entry repeated RUN_ENTRIES times: the leader of term 8 and
  // followers (a)–(f). Index i of the figure becomes RUN_ENTRIES entries.
  const RUN_ENTRIES = 50;
  const k = RUN_ENTRIES;
  const figure = {
    leader: log([1, 3 * k], [4, 2 * k], [5, 2 * k], [6, 3 * k]),
    a: log([1, 3 * k], [4, 2 * k], [5, 2 * k], [6, 2 * k]), // misses entries
    b: log([1, 3 * k], [4, 1 * k]), // misses many entries
    c: log([1, 3 * k], [4, 2 * k], [5, 2 * k], [6, 4 * k]), // extra uncommitted entries of the leader's term
    d: log([1, 3 * k], [4, 2 * k], [5, 2 * k], [6, 3 * k], [7, 2 * k]), // extra entries of a later term
    e: log([1, 3 * k], [4, 4 * k]), // a divergent suffix of term 4
    f: log([1, 3 * k], [2, 3 * k], [3, 5 * k]), // a long divergent suffix of terms 2 and 3
  };
  const followers = ['a', 'b', 'c', 'd', 'e', 'f'] as const;

  function electFigureLeader(): Cluster {
    // Entries of term 1 (the first 3k) are on every replica and committed.
    const cluster = clusterWithLogs([figure.leader, ...followers.map((f) => figure[f])], { term: 7, commit: 3 * k });
    cluster.clearTrace();
    cluster.campaign(1);
    expect(cluster.leader()).toBe(1);
    expect(cluster.raft(1).term).toBe(8);
    return cluster;
  }

  it('thesis Figure 3.7 scaled to hundreds of entries: every follower ends with the leader log', () => {
    const cluster = electFigureLeader();

    expectConverged(cluster, 1, [2, 3, 4, 5, 6, 7]);
    // The leader's log plus its empty entry of term 8; the extra entries of (c) and (d) are gone.
    expect(cluster.terms(4)).toEqual([...figure.leader, 8]);
    expect(cluster.terms(5)).toEqual([...figure.leader, 8]);
    // The committed prefix survived everywhere, and the whole log is now committed and applied.
    expect(cluster.replica(7).stateMachine.slice(0, 3 * k)).toEqual(figure.leader.slice(0, 3 * k).map((t, i) => payload(t, i + 1)));
    expect(cluster.replica(7).stateMachine.length).toBe(figure.leader.length);
  });

  it('each follower of Figure 3.7 needs at most one rejected probe (fast backtracking, thesis §3.5)', () => {
    const cluster = electFigureLeader();

    const rejections = Object.fromEntries(followers.map((f, i) => [f, cluster.rejections(i + 2).length]));
    // A probe at the leader's last index matches (c) and (d) outright; every other follower
    // names the last entry of a term it shares with the leader, and the second probe matches.
    expect(rejections).toEqual({ a: 1, b: 1, c: 0, d: 0, e: 1, f: 1 });
    // Backtracking one entry per round trip would have needed this many:
    const naive = Object.fromEntries(followers.map((f) => [f, Math.max(0, figure.leader.length - commonPrefixLength(figure.leader, figure[f]))]));
    expect(naive).toEqual({ a: k, b: 6 * k, c: 0, d: 0, e: 5 * k, f: 7 * k });
  });

  it.each([
    // follower, first rejection hint (index, term), next probe (index, logTerm)
    ['a', [9 * k, 6], [9 * k, 6]],
    ['b', [4 * k, 4], [4 * k, 4]],
    ['e', [7 * k, 4], [5 * k, 4]],
    ['f', [10 * k, 3], [3 * k, 1]],
  ] as const)('Figure 3.7 (%s): the hint names the follower\'s last entry that may match, and the leader probes where its own log may match it', (follower, hint, probe) => {
    const cluster = electFigureLeader();
    const id = followers.indexOf(follower) + 2;

    const [rejection] = cluster.rejections(id) as AppendResponseMessage[];
    expect([rejection!.rejectHint, rejection!.logTerm]).toEqual(hint);
    const appends = cluster.sent((m) => m.type === 'append' && m.to === id);
    const afterRejection = appends[1]!;
    expect(afterRejection.type === 'append' && [afterRejection.index, afterRejection.logTerm]).toEqual(probe);
  });
});

/**
 * A random history that obeys Log Matching: a committed prefix on every node,
 * then a few terms, each with one leader that appends entries and replicates
 * some prefix of its log to some nodes (replacing their conflicting suffix).
 */
function randomHistory(rng: SeededRng, nodeCount: number): { logs: Term[][]; committed: number; term: Term } {
  let term = 1;
  const prefix: Term[] = [];
  const prefixLength = rng.intBelow(30);
  for (let i = 0; i < prefixLength; i++) {
    if (rng.chance(0.2)) term++;
    prefix.push(term);
  }
  const logs = Array.from({ length: nodeCount }, () => [...prefix]);
  const rounds = 2 + rng.intBelow(8);
  for (let round = 0; round < rounds; round++) {
    term += 1 + rng.intBelow(2);
    const leader = logs[rng.intBelow(nodeCount)]!;
    const appended = rng.intBelow(120);
    for (let i = 0; i < appended; i++) leader.push(term);
    for (let n = 0; n < nodeCount; n++) {
      const follower = logs[n]!;
      if (follower === leader || !rng.chance(0.5)) continue;
      const upTo = prefixLength + rng.intBelow(leader.length - prefixLength + 1);
      const source = leader.slice(0, upTo);
      if (commonPrefixLength(follower, source) < upTo) logs[n] = source;
    }
  }
  return { logs, committed: prefixLength, term };
}

/** The replica an election would pick: the most up-to-date log (§5.4.1). */
function mostUpToDate(logs: readonly (readonly Term[])[]): number {
  let best = 0;
  for (let i = 1; i < logs.length; i++) {
    const a = logs[i]!;
    const b = logs[best]!;
    const aLast = a[a.length - 1] ?? 0;
    const bLast = b[b.length - 1] ?? 0;
    if (aLast > bLast || (aLast === bLast && a.length > b.length)) best = i;
  }
  return best;
}

describe('random divergent histories converge with few round trips', () => {
  it.each(Array.from({ length: 25 }, (_, i) => i + 1))('seed %i', (seed) => {
    const rng = new SeededRng(seed);
    const { logs, committed, term } = randomHistory(rng, 5);
    const leaderIndex = mostUpToDate(logs);
    const leader = leaderIndex + 1;
    const cluster = clusterWithLogs(logs, { term, commit: committed });
    cluster.clearTrace();

    cluster.campaign(leader);

    expect(cluster.leader()).toBe(leader);
    const ids = logs.map((_, i) => i + 1);
    expectConverged(cluster, leader, ids);
    expect(cluster.terms(leader)).toEqual([...logs[leaderIndex]!, term + 1]);
    // Committed entries are never lost.
    for (const id of ids) {
      expect(cluster.replica(id).stateMachine.slice(0, committed)).toEqual(logs[0]!.slice(0, committed).map((t, i) => payload(t, i + 1)));
    }
    // After a rejection the leader probes at its last entry with a term <= the hint's term; if
    // that probe fails too, the follower's entry there has a lower term (Log Matching), so the
    // terms named by successive hints, and those of successive probes, strictly decrease: a
    // follower rejects at most once per distinct term of the divergent part of either log, plus
    // the first probe. (A sweep of 2000 seeds reached the bound; none exceeded it.)
    const leaderLog = logs[leaderIndex]!;
    for (const id of ids) {
      if (id === leader) continue;
      const followerLog = logs[id - 1]!;
      const match = commonPrefixLength(leaderLog, followerLog);
      const bound = Math.min(distinctTerms(leaderLog.slice(match)), distinctTerms(followerLog.slice(match))) + 1;
      expect(cluster.rejections(id).length, `rejections by ${id} (seed ${seed})`).toBeLessThanOrEqual(bound);
    }
  });
});

describe('a randomized run with partitions, crashes, compaction and proposals', () => {
  it.each(Array.from({ length: 12 }, (_, i) => i + 1))('seed %i: after healing, all logs converge and nothing committed is lost', (seed) => {
    const rng = new SeededRng(seed);
    const ids = [1, 2, 3, 4, 5];
    const cluster = new Cluster({ voters: ids, seed, config: { checkQuorum: true, preVote: true } });
    const acknowledged: string[] = [];
    const down = new Set<number>();
    let proposals = 0;

    // Partitions last long enough (tens of ticks) for check-quorum and new elections,
    // and a minority leader keeps appending entries that a new majority will overwrite.
    for (let step = 0; step < 1500; step++) {
      const action = rng.intBelow(100);
      if (action < 3) {
        cluster.heal();
        const shuffled = ids.map((id) => ({ id, key: rng.nextFloat() })).sort((a, b) => a.key - b.key).map((x) => x.id);
        const cut = 1 + rng.intBelow(ids.length - 1);
        cluster.partition(shuffled.slice(0, cut), shuffled.slice(cut));
      } else if (action < 5) {
        cluster.heal();
      } else if (action < 7) {
        // Compaction: a replica that falls behind it later needs the snapshot.
        const id = ids[rng.intBelow(ids.length)]!;
        if (cluster.replica(id).appliedIndex >= cluster.replica(id).storage.firstIndex()) cluster.compact(id);
      } else if (action < 8) {
        // A crash (at most two at a time) or a restart from what was persisted.
        const id = ids[rng.intBelow(ids.length)]!;
        if (down.has(id)) {
          cluster.restart(id);
          down.delete(id);
        } else if (down.size < 2) {
          cluster.stop(id);
          down.add(id);
        }
      } else if (action < 40) {
        const at = ids[rng.intBelow(ids.length)]!;
        if (down.has(at)) continue;
        const data = `s${seed}p${proposals++}`;
        try {
          cluster.propose(at, data);
        } catch (err) {
          if (!(err instanceof ProposalDroppedError)) throw err;
        }
      } else {
        cluster.tick();
      }
      // Whatever a leader has applied was committed: remember it to check it survives.
      for (const id of ids) {
        if (cluster.raft(id).role === 'leader') {
          for (const p of cluster.replica(id).stateMachine) if (!acknowledged.includes(p)) acknowledged.push(p);
        }
      }
    }

    for (const id of down) cluster.restart(id);
    cluster.heal();
    cluster.tick({ count: 60 });
    const leader = cluster.leader()!;
    expect(leader).toBeDefined();
    cluster.propose(leader, 'final');

    expectConverged(cluster, leader, ids);
    const finalState = cluster.replica(leader).stateMachine;
    for (const p of acknowledged) expect(finalState).toContain(p);
    expect(finalState[finalState.length - 1]).toBe('final');
    // The run did what it is for: several leaders, and logs repaired by backtracking or snapshots.
    // (Whether a minority leader's entries get thrown away depends on the seed; the Figure 3.7
    // cases and check-quorum.test.ts pin that down deterministically.)
    expect(cluster.raft(leader).term).toBeGreaterThan(2);
    expect(cluster.sent((m) => (m.type === 'appendResponse' && m.reject) || m.type === 'snapshot').length).toBeGreaterThan(0);
  });
});
