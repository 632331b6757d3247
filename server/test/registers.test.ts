// The per-read check of the load tests (support/registers.ts) against hand-written histories of one key:
// each row writes, reads and says what the read's check must answer.
import { describe, expect, it } from 'vitest';
import { MonotonicRegisters, outcomeOfWriteError, type WriteOutcome } from './support/registers.js';

type Step = { write: number; outcome?: Exclude<WriteOutcome, 'pending'> } | { invokeWrite: number } | { readStart: true } | { readEnd: number };

const ROWS: readonly { readonly name: string; readonly steps: readonly Step[]; readonly problem: string | undefined }[] = [
  { name: 'absent before any write', steps: [{ readStart: true }, { readEnd: 0 }], problem: undefined },
  { name: 'the last acknowledged write', steps: [{ write: 1 }, { write: 2 }, { readStart: true }, { readEnd: 2 }], problem: undefined },
  { name: 'a write still in flight when the read completes', steps: [{ write: 1 }, { readStart: true }, { invokeWrite: 2 }, { readEnd: 2 }], problem: undefined },
  { name: 'a write acknowledged while the read ran', steps: [{ write: 1 }, { readStart: true }, { write: 2 }, { readEnd: 1 }], problem: undefined },
  { name: 'stale: older than acknowledged before the read began', steps: [{ write: 1 }, { write: 2 }, { readStart: true }, { readEnd: 1 }], problem: 'read 1 after 2 was acknowledged' },
  { name: 'stale: absent after an acknowledged write', steps: [{ write: 1 }, { readStart: true }, { readEnd: 0 }], problem: 'read absent after 1' },
  { name: 'from the future: a value not yet written', steps: [{ write: 1 }, { readStart: true }, { readEnd: 2 }], problem: 'which no write invoked before the read completed wrote' },
  { name: 'a refused write is never read', steps: [{ write: 1 }, { write: 2, outcome: 'refused' }, { readStart: true }, { readEnd: 2 }], problem: 'was refused' },
  { name: 'a write of unknown outcome may take effect late', steps: [{ write: 1, outcome: 'unknown' }, { write: 2 }, { readStart: true }, { readEnd: 1 }], problem: undefined },
];

describe('MonotonicRegisters: one writer per key, increasing values', () => {
  for (const row of ROWS) {
    it(row.name, () => {
      const registers = new MonotonicRegisters();
      let start: ReturnType<MonotonicRegisters['readInvoked']> | undefined;
      let problem: string | undefined = 'the read never ended';
      for (const step of row.steps) {
        if ('write' in step) {
          registers.writeInvoked('k', step.write);
          registers.writeCompleted('k', step.write, step.outcome ?? 'acknowledged');
        } else if ('invokeWrite' in step) registers.writeInvoked('k', step.invokeWrite);
        else if ('readStart' in step) start = registers.readInvoked('k');
        else problem = registers.readCompleted(start!, step.readEnd);
      }
      if (row.problem === undefined) expect(problem).toBeUndefined();
      else expect(problem).toContain(row.problem);
    });
  }

  it('refuses a history that is not one increasing writer', () => {
    const registers = new MonotonicRegisters();
    registers.writeInvoked('k', 2);
    expect(() => registers.writeInvoked('k', 3)).toThrow('while 2 is in flight');
    registers.writeCompleted('k', 2, 'acknowledged');
    expect(() => registers.writeInvoked('k', 2)).toThrow('one writer per key, increasing values');
  });

  it('accepts as final value the last acknowledged write or one of unknown outcome, nothing else', () => {
    const registers = new MonotonicRegisters();
    for (const [value, outcome] of [[1, 'unknown'], [2, 'acknowledged'], [3, 'refused'], [4, 'unknown']] as const) {
      registers.writeInvoked('k', value);
      registers.writeCompleted('k', value, outcome);
    }
    expect([0, 1, 2, 3, 4, 5].map((v) => registers.finalValueProblem('k', v) === undefined)).toEqual([false, true, true, false, true, false]);
  });

  it('takes UNAVAILABLE as nothing written and every other failure as unknown', () => {
    expect([{ code: 'UNAVAILABLE' }, { code: 'TIMEOUT' }, { code: 'CLOSED' }, new Error('x')].map(outcomeOfWriteError)).toEqual(['refused', 'unknown', 'unknown', 'unknown']);
  });
});
