// The helper the "driver stopped mid-move" tests rely on (support/move-in-flight.ts): it returns only a
// move whose range already changed under it, asks again when a move finishes unseen, and gives up after
// its attempts rather than let a test kill a driver with nothing in flight.
import { describe, expect, it } from 'vitest';
import { untilMoveInFlight, type OperatorView } from './support/move-in-flight.js';

const move = (rangeId: number, o: Partial<OperatorView> = {}): OperatorView => ({ kind: 'moveReplica', rangeId, epoch: 4, from: 1, to: 2, lastStep: 'addLearner(2)', ageMs: 0, ...o });

/** A driver whose status is scripted look by look (the last look repeats), and ranges whose epochs are fixed. */
function scripted(looks: readonly (readonly OperatorView[])[], epochs: Readonly<Record<number, number>>) {
  let look = 0;
  const started: number[] = [];
  return {
    started,
    options: {
      operators: async () => looks[Math.min(look++, looks.length - 1)]!,
      epochOf: async (rangeId: number) => epochs[rangeId] ?? 0,
      startMove: async () => {
        started.push(10 + started.length);
        return 10 + started.length - 1;
      },
      attemptsMax: 3,
      timeoutMs: 5_000,
    },
  };
}

describe('untilMoveInFlight', () => {
  it('returns a move once a step of it has been applied (the epoch moved), not before', async () => {
    const s = scripted([[], [move(10, { lastStep: null })], [move(10)]], {});
    // The learner is added on the third look at the range's epoch.
    let epochLooks = 0;
    const found = await untilMoveInFlight({ ...s.options, epochOf: async () => (++epochLooks >= 3 ? 5 : 4) });
    expect(found).toMatchObject({ rangeId: 10, epoch: 4, epochNow: 5, lastStep: 'addLearner(2)', attempts: 1 });
    expect(epochLooks).toBe(3);
    expect(s.started).toEqual([10]);
  });

  it('asks for another move when the one asked for finished unseen, and takes any move of a replica in flight', async () => {
    // Range 10's move is gone before a look caught it; the second ask is refused, yet the scheduler's move of range 7 is under way.
    const s = scripted([[], [], [move(7, { epoch: 2 })]], { 7: 3 });
    await expect(untilMoveInFlight(s.options)).resolves.toMatchObject({ rangeId: 7, epochNow: 3, attempts: 2 });
    expect(s.started).toEqual([10, 11]);
  });

  it('fails after its attempts when no move is ever seen in flight', async () => {
    const s = scripted([[]], {});
    await expect(untilMoveInFlight(s.options)).rejects.toThrow('no move seen in flight in 3 moves asked for');
    expect(s.started).toEqual([10, 11, 12]);
  });

  it('does not count a move that changed nothing yet, or an operator of another kind', async () => {
    const s = scripted([[move(10, { kind: 'transferLeader' }), move(11, { epoch: 9 })]], { 10: 9, 11: 9 });
    await expect(untilMoveInFlight({ ...s.options, timeoutMs: 300 })).rejects.toThrow('no move seen in flight');
  });
});
