/**
 * Histories as plain records: what a client invoked, when, and what it saw.
 * Nothing here knows HTTP or Raft; the fault runner and the simulator both
 * record operations in this shape.
 */

/**
 * One client operation. Times are any monotonic clock in ms (equal times are
 * concurrent: only `a.completeMs < b.invokeMs` orders a before b).
 *
 * `completeMs === null` (and `output === null`) is an operation whose outcome
 * is unknown — a write that timed out or lost its connection after it was
 * sent. It may have taken effect at any moment after `invokeMs`, or never.
 * An operation that definitely had no effect and observed nothing (a 400, a
 * read that failed) does not belong in the history at all.
 */
export interface Operation<I, O> {
  /** Unique within the history; reports name operations by it. */
  readonly id: number;
  /** Who issued it; each client has at most one operation in flight. */
  readonly clientId: number;
  readonly invokeMs: number;
  readonly completeMs: number | null;
  readonly input: I;
  readonly output: O | null;
}

/**
 * A sequential specification. The checker explores orders of operations and
 * asks the model whether each step is legal; states must be immutable values.
 */
export interface Model<S, I, O> {
  readonly init: S;
  /**
   * The state after `input` answered `output` in `state`, or undefined if that
   * answer is impossible there. `output === undefined` means the outcome is
   * unknown: return the state after the operation *took effect* (undefined if
   * it cannot take effect in `state`). Not taking effect at all is always
   * allowed for such an operation and is the checker's business, not the
   * model's.
   */
  step(state: S, input: I, output: O | undefined): S | undefined;
  /** Equal states must have equal keys, different states different keys (the memo is keyed by it). */
  stateKey(state: S): string;
  /**
   * Equal keys for equal inputs (optional). Operations with an unknown
   * outcome and equal inputs are interchangeable — the model cannot tell
   * them apart — so the search places them in the order they were invoked
   * and never tries the later one first.
   */
  inputKey?(input: I): string;
  /**
   * Optional, together: `subsumes(a, b)` says every operation legal in `b`
   * is legal in `a` with a resulting state that subsumes `b`'s (so whatever
   * history can follow `b` can follow `a`); states that may subsume one
   * another must share a `stateGroupKey`. Without them subsumption is
   * equality of stateKey.
   */
  stateGroupKey?(state: S): string;
  subsumes?(a: S, b: S): boolean;
  describeOperation(op: Operation<I, O>): string;
  describeState(state: S): string;
}

export type HistoryErrorCode =
  /** Two operations share an id. */
  | 'DUPLICATE_OPERATION_ID'
  /** A time that is not a finite number, or completion before invocation. */
  | 'BAD_OPERATION_TIME'
  /** Exactly one of completeMs and output is null. */
  | 'OUTCOME_MISMATCH'
  /** The model refuses the pairing of input and output (a get answered as a write, say). */
  | 'BAD_OPERATION_OUTPUT';

/** A history that cannot be checked as given: the recorder's bug, not the system's. */
export class HistoryError extends Error {
  constructor(
    readonly code: HistoryErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HistoryError';
  }
}

/** Checks the shape every checker relies on; throws HistoryError naming the first bad operation. */
export function validateOperations<I, O>(ops: readonly Operation<I, O>[]): void {
  const ids = new Set<number>();
  for (const op of ops) {
    if (ids.has(op.id)) throw new HistoryError('DUPLICATE_OPERATION_ID', `operation id ${op.id} appears twice`);
    ids.add(op.id);
    if (!Number.isFinite(op.invokeMs)) throw new HistoryError('BAD_OPERATION_TIME', `operation ${op.id}: invokeMs ${op.invokeMs} is not a finite number`);
    if ((op.completeMs === null) !== (op.output === null)) {
      throw new HistoryError('OUTCOME_MISMATCH', `operation ${op.id}: completeMs ${op.completeMs} and output ${JSON.stringify(op.output)} must both be null (unknown outcome) or both set`);
    }
    if (op.completeMs !== null && (!Number.isFinite(op.completeMs) || op.completeMs < op.invokeMs)) {
      throw new HistoryError('BAD_OPERATION_TIME', `operation ${op.id}: completeMs ${op.completeMs} is not a finite time at or after invokeMs ${op.invokeMs}`);
    }
  }
}
