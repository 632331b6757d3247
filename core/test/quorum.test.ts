// Quorum arithmetic: tables for the cases worth naming, and property tests
// against oracles that decide by brute force instead of sorting.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JointConfig, MajorityConfig, type VoteResult } from '../src/quorum/quorum.js';
import { nodeId, type LogIndex, type NodeId } from '../src/types.js';

const majority = (...ids: number[]): MajorityConfig => new MajorityConfig(ids.map(nodeId));
const joint = (incoming: number[], outgoing: number[]): JointConfig => new JointConfig(majority(...incoming), majority(...outgoing));
const ackedBy =
  (acked: Record<number, LogIndex>) =>
  (id: NodeId): LogIndex | undefined =>
    acked[id];
const ids = (voters: readonly number[]): string => `(${voters.join(' ')})`;
const pairs = (record: Record<number, unknown>): string =>
  Object.entries(record)
    .map(([id, value]) => `${id}:${String(value)}`)
    .join(' ') || 'none';
const votesOf = (votes: Record<number, boolean>): Map<NodeId, boolean> =>
  new Map(Object.entries(votes).map(([id, granted]) => [nodeId(Number(id)), granted]));

/** What the empty config "commits": everything, so a joint config with an empty half is decided by the other half. */
const COMMIT_ALL = Number.MAX_SAFE_INTEGER;

describe('MajorityConfig.committedIndex', () => {
  const cases: Array<{ voters: number[]; acked: Record<number, LogIndex>; committed: LogIndex }> = [
    { voters: [], acked: {}, committed: COMMIT_ALL },
    { voters: [1], acked: {}, committed: 0 },
    { voters: [1], acked: { 1: 5 }, committed: 5 },
    { voters: [1, 2], acked: { 1: 5 }, committed: 0 },
    { voters: [1, 2], acked: { 1: 5, 2: 3 }, committed: 3 },
    { voters: [1, 2, 3], acked: { 1: 5 }, committed: 0 },
    { voters: [1, 2, 3], acked: { 1: 5, 2: 5 }, committed: 5 },
    { voters: [1, 2, 3], acked: { 1: 5, 2: 3, 3: 1 }, committed: 3 },
    { voters: [3, 1, 2], acked: { 1: 1, 2: 3, 3: 5 }, committed: 3 },
    // Acknowledgements from outside the config count for nothing.
    { voters: [1, 2, 3], acked: { 1: 5, 4: 9, 5: 9 }, committed: 0 },
    { voters: [1, 2, 3, 4], acked: { 1: 9, 2: 8, 3: 7, 4: 6 }, committed: 7 },
    { voters: [1, 2, 3, 4, 5], acked: { 1: 9, 2: 8, 3: 7, 4: 6, 5: 5 }, committed: 7 },
    { voters: [1, 2, 3, 4, 5], acked: { 1: 9, 2: 9 }, committed: 0 },
  ];
  for (const { voters, acked, committed } of cases) it(`${ids(voters)} acks ${pairs(acked)} commits ${committed === COMMIT_ALL ? 'everything' : committed}`, () => {
    expect(majority(...voters).committedIndex(ackedBy(acked))).toBe(committed);
  });
});

describe('JointConfig.committedIndex', () => {
  const cases: Array<{ incoming: number[]; outgoing: number[]; acked: Record<number, LogIndex>; committed: LogIndex }> = [
    { incoming: [], outgoing: [], acked: {}, committed: COMMIT_ALL },
    { incoming: [1, 2, 3], outgoing: [], acked: { 1: 5, 2: 3, 3: 1 }, committed: 3 },
    { incoming: [1, 2, 3], outgoing: [1, 2, 3], acked: { 1: 5, 2: 3, 3: 1 }, committed: 3 },
    // Both halves must agree: the lagging one decides.
    { incoming: [1, 2, 3], outgoing: [4, 5, 6], acked: { 1: 9, 2: 9, 3: 9, 4: 2, 5: 2, 6: 2 }, committed: 2 },
    { incoming: [1, 2, 3], outgoing: [4, 5, 6], acked: { 1: 2, 2: 2, 3: 2, 4: 9, 5: 9, 6: 9 }, committed: 2 },
    { incoming: [1, 2, 3], outgoing: [3, 4, 5], acked: { 1: 1, 2: 1, 3: 9, 4: 9, 5: 9 }, committed: 1 },
    { incoming: [1, 2, 3], outgoing: [3, 4, 5], acked: { 1: 7, 3: 7, 4: 7 }, committed: 7 },
    { incoming: [1, 2, 3], outgoing: [3, 4, 5], acked: { 1: 7, 2: 7 }, committed: 0 },
  ];
  for (const { incoming, outgoing, acked, committed } of cases) it(`${ids(incoming)}&&${ids(outgoing)} acks ${pairs(acked)} commits ${committed === COMMIT_ALL ? 'everything' : committed}`, () => {
    expect(joint(incoming, outgoing).committedIndex(ackedBy(acked))).toBe(committed);
  });
});

describe('MajorityConfig.voteResult', () => {
  const cases: Array<{ voters: number[]; votes: Record<number, boolean>; result: VoteResult }> = [
    { voters: [], votes: {}, result: 'won' },
    { voters: [1], votes: {}, result: 'pending' },
    { voters: [1], votes: { 1: true }, result: 'won' },
    { voters: [1], votes: { 1: false }, result: 'lost' },
    { voters: [1, 2], votes: { 1: true }, result: 'pending' },
    { voters: [1, 2], votes: { 1: true, 2: false }, result: 'lost' },
    { voters: [1, 2], votes: { 1: true, 2: true }, result: 'won' },
    { voters: [1, 2, 3], votes: { 1: true, 2: true }, result: 'won' },
    { voters: [1, 2, 3], votes: { 1: true, 2: false }, result: 'pending' },
    { voters: [1, 2, 3], votes: { 1: false, 2: false }, result: 'lost' },
    // Votes from outside the config count for nothing.
    { voters: [1, 2, 3], votes: { 4: true, 5: true }, result: 'pending' },
    { voters: [1, 2, 3, 4], votes: { 1: true, 2: true }, result: 'pending' },
    { voters: [1, 2, 3, 4], votes: { 1: true, 2: false, 3: false }, result: 'lost' },
    { voters: [1, 2, 3, 4, 5], votes: { 1: true, 2: true, 3: true }, result: 'won' },
  ];
  for (const { voters, votes, result } of cases) it(`${ids(voters)} votes ${pairs(votes)}: ${result}`, () => {
    expect(majority(...voters).voteResult(votesOf(votes))).toBe(result);
  });
});

describe('JointConfig.voteResult', () => {
  const cases: Array<{ incoming: number[]; outgoing: number[]; votes: Record<number, boolean>; result: VoteResult }> = [
    { incoming: [], outgoing: [], votes: {}, result: 'won' },
    { incoming: [1, 2, 3], outgoing: [], votes: { 1: true, 2: true }, result: 'won' },
    { incoming: [1, 2, 3], outgoing: [4, 5, 6], votes: { 1: true, 2: true, 3: true }, result: 'pending' },
    { incoming: [1, 2, 3], outgoing: [4, 5, 6], votes: { 1: true, 2: true, 4: true, 5: true }, result: 'won' },
    { incoming: [1, 2, 3], outgoing: [4, 5, 6], votes: { 1: true, 2: true, 4: false, 5: false }, result: 'lost' },
    { incoming: [1, 2, 3], outgoing: [4, 5, 6], votes: { 1: false, 2: false, 4: true, 5: true }, result: 'lost' },
    { incoming: [1, 2, 3], outgoing: [3, 4, 5], votes: { 1: true, 3: true, 4: true }, result: 'won' },
    { incoming: [1, 2, 3], outgoing: [3, 4, 5], votes: { 3: true }, result: 'pending' },
    { incoming: [1, 2, 3], outgoing: [3, 4, 5], votes: { 1: false, 3: false }, result: 'lost' },
  ];
  for (const { incoming, outgoing, votes, result } of cases) it(`${ids(incoming)}&&${ids(outgoing)} votes ${pairs(votes)}: ${result}`, () => {
    expect(joint(incoming, outgoing).voteResult(votesOf(votes))).toBe(result);
  });
});

// ---------------------------------------------------------------------------
// Naive oracles. They never sort: they try every candidate answer and count.

const ID_MAX = 9;
const INDEX_MAX = 20;

/** Whether more than half of `voters` acknowledged at least `index` (vacuously true for no voters). */
function majorityAcked(voters: readonly number[], acked: readonly (LogIndex | undefined)[], index: LogIndex): boolean {
  if (voters.length === 0) return true;
  const count = voters.filter((id) => (acked[id] ?? 0) >= index).length;
  return 2 * count > voters.length;
}

/** The largest index every half has on a majority, trying each candidate index. */
function naiveCommitted(halves: readonly (readonly number[])[], acked: readonly (LogIndex | undefined)[]): LogIndex {
  if (halves.every((h) => h.length === 0)) return COMMIT_ALL;
  let best = 0;
  for (let index = 0; index <= INDEX_MAX; index++) {
    if (halves.every((h) => majorityAcked(h, acked, index))) best = index;
  }
  return best;
}

/**
 * Decides an election by trying every way the missing votes could still come
 * in: won if every completion wins in all halves, lost if none does.
 */
function naiveVoteResult(halves: readonly (readonly number[])[], votes: readonly (boolean | undefined)[]): VoteResult {
  const voters = [...new Set(halves.flat())];
  const missing = voters.filter((id) => votes[id] === undefined);
  let anyWin = false;
  let anyLoss = false;
  for (let mask = 0; mask < 1 << missing.length; mask++) {
    const completed = [...votes];
    missing.forEach((id, bit) => (completed[id] = (mask & (1 << bit)) !== 0));
    const wins = halves.every((h) => h.length === 0 || 2 * h.filter((id) => completed[id] === true).length > h.length);
    if (wins) anyWin = true;
    else anyLoss = true;
  }
  if (!anyLoss) return 'won';
  if (!anyWin) return 'lost';
  return 'pending';
}

const votersArb = fc.uniqueArray(fc.integer({ min: 1, max: ID_MAX }), { maxLength: 7 });
/** acked[id] for ids 0..ID_MAX; undefined means the voter acknowledged nothing. */
const ackedArb = fc.array(fc.option(fc.integer({ min: 0, max: INDEX_MAX }), { nil: undefined }), { minLength: ID_MAX + 1, maxLength: ID_MAX + 1 });
/** votes[id] for ids 0..ID_MAX, including ids outside any config. */
const votesArb = fc.array(fc.constantFrom(true, false, undefined), { minLength: ID_MAX + 1, maxLength: ID_MAX + 1 });

const indexer = (acked: readonly (LogIndex | undefined)[]) => (id: NodeId) => acked[id];
const voteMap = (votes: readonly (boolean | undefined)[]): Map<NodeId, boolean> => {
  const m = new Map<NodeId, boolean>();
  votes.forEach((v, id) => {
    if (v !== undefined) m.set(nodeId(id), v);
  });
  return m;
};

const PROPERTY_RUNS = { seed: 42, numRuns: 2000 };

describe('quorum properties against brute-force oracles', () => {
  it('majority committed index is the largest index a majority has acknowledged', () => {
    fc.assert(
      fc.property(votersArb, ackedArb, (voters, acked) => {
        expect(majority(...voters).committedIndex(indexer(acked))).toBe(naiveCommitted([voters], acked));
      }),
      PROPERTY_RUNS,
    );
  });

  it('joint committed index is the largest index both halves have on a majority', () => {
    fc.assert(
      fc.property(votersArb, votersArb, ackedArb, (incoming, outgoing, acked) => {
        expect(joint(incoming, outgoing).committedIndex(indexer(acked))).toBe(naiveCommitted([incoming, outgoing], acked));
      }),
      PROPERTY_RUNS,
    );
  });

  it('majority vote result agrees with trying every completion of the missing votes', () => {
    fc.assert(
      fc.property(votersArb, votesArb, (voters, votes) => {
        expect(majority(...voters).voteResult(voteMap(votes))).toBe(naiveVoteResult([voters], votes));
      }),
      PROPERTY_RUNS,
    );
  });

  it('joint vote result agrees with trying every completion of the missing votes', () => {
    fc.assert(
      fc.property(votersArb, votersArb, votesArb, (incoming, outgoing, votes) => {
        expect(joint(incoming, outgoing).voteResult(voteMap(votes))).toBe(naiveVoteResult([incoming, outgoing], votes));
      }),
      PROPERTY_RUNS,
    );
  });

  it('raising one acknowledgement never lowers the committed index', () => {
    fc.assert(
      fc.property(votersArb, votersArb, ackedArb, fc.integer({ min: 1, max: ID_MAX }), (incoming, outgoing, acked, id) => {
        const config = joint(incoming, outgoing);
        const before = config.committedIndex(indexer(acked));
        const raised = [...acked];
        raised[id] = (raised[id] ?? 0) + 1;
        expect(config.committedIndex(indexer(raised))).toBeGreaterThanOrEqual(before);
      }),
      PROPERTY_RUNS,
    );
  });
});
