// Per-read linearizability checks for a load in which each key has one writer that writes increasing
// integers, one write at a time. For such a register a read is linearizable (taken alone) exactly when
// it returns
// - a value written to the key, by a write invoked before the read completed (nothing from the future),
// - not a write the store refused (UNAVAILABLE: nothing was written),
// - and nothing older than the last write acknowledged before the read was invoked — unless that older
//   value is a write whose outcome is unknown (a timeout): such a write may take effect at any point
//   after it was invoked, also after later writes, so reading it late is allowed (and counted).
// Absent (0) is the value before the first write.

/** What became of a write. */
export type WriteOutcome = 'pending' | 'acknowledged' | 'unknown' | 'refused';

interface Register {
  /** Every value written to the key, by its outcome; values only grow (one writer, increasing). */
  readonly writes: Map<number, WriteOutcome>;
  lastInvoked: number;
  lastAcknowledged: number;
}

/** A read in flight: what had been acknowledged when it was invoked. */
export interface ReadStart {
  readonly key: string;
  readonly acknowledgedAtInvoke: number;
}

export class MonotonicRegisters {
  private readonly registers = new Map<string, Register>();
  /** Reads that returned an older write of unknown outcome: allowed, reported. */
  lateUnknownReads = 0;
  readCount = 0;

  private register(key: string): Register {
    let r = this.registers.get(key);
    if (r === undefined) this.registers.set(key, (r = { writes: new Map(), lastInvoked: 0, lastAcknowledged: 0 }));
    return r;
  }

  writeInvoked(key: string, value: number): void {
    const r = this.register(key);
    if (!(Number.isSafeInteger(value) && value > r.lastInvoked)) throw new Error(`${key}: write of ${value} after ${r.lastInvoked} (one writer per key, increasing values)`);
    for (const [v, outcome] of r.writes) if (outcome === 'pending') throw new Error(`${key}: write of ${value} while ${v} is in flight (one write at a time)`);
    r.writes.set(value, 'pending');
    r.lastInvoked = value;
  }

  writeCompleted(key: string, value: number, outcome: Exclude<WriteOutcome, 'pending'>): void {
    const r = this.register(key);
    if (r.writes.get(value) !== 'pending') throw new Error(`${key}: write of ${value} completed twice or never invoked`);
    r.writes.set(value, outcome);
    if (outcome === 'acknowledged') r.lastAcknowledged = value;
  }

  readInvoked(key: string): ReadStart {
    return { key, acknowledgedAtInvoke: this.register(key).lastAcknowledged };
  }

  /** Checks a completed read; returns what is wrong with it, or undefined. `seen` 0: the key was absent. */
  readCompleted(start: ReadStart, seen: number): string | undefined {
    this.readCount++;
    const r = this.register(start.key);
    const { acknowledgedAtInvoke } = start;
    if (seen === 0) return acknowledgedAtInvoke === 0 ? undefined : `${start.key}: read absent after ${acknowledgedAtInvoke} was acknowledged`;
    const outcome = r.writes.get(seen);
    if (outcome === undefined) return `${start.key}: read ${seen}, which no write invoked before the read completed wrote (last invoked: ${r.lastInvoked})`;
    if (outcome === 'refused') return `${start.key}: read ${seen}, whose write was refused (nothing written)`;
    if (seen < acknowledgedAtInvoke) {
      if (outcome !== 'unknown') return `${start.key}: read ${seen} after ${acknowledgedAtInvoke} was acknowledged before the read began`;
      this.lateUnknownReads++;
    }
    return undefined;
  }

  /** What each key may hold once every write completed: its last acknowledged write, or any write of unknown outcome (it may have taken effect last). */
  finalValueProblem(key: string, seen: number): string | undefined {
    const r = this.register(key);
    if (seen === r.lastAcknowledged || r.writes.get(seen) === 'unknown') return undefined;
    return `${key}: holds ${seen === 0 ? 'nothing' : seen}, expected ${r.lastAcknowledged} (the last acknowledged write) or a write of unknown outcome`;
  }

  keys(): string[] {
    return [...this.registers.keys()];
  }

  /** Keys with at least one acknowledged write. */
  acknowledgedKeys(): string[] {
    return [...this.registers].filter(([, r]) => r.lastAcknowledged > 0).map(([key]) => key);
  }
}

/** A write's outcome from the store's error: UNAVAILABLE says nothing was written; anything else may have been. */
export function outcomeOfWriteError(err: unknown): 'unknown' | 'refused' {
  return (err as { code?: string }).code === 'UNAVAILABLE' ? 'refused' : 'unknown';
}
