// Catching a replica move in flight, for the tests that stop the placement driver in the middle of one.
// A move is a few Raft commands a duty tick or two apart (placement/src/operator.ts: add a learner, let
// it catch up, swap it in by a joint change, leave the joint configuration), so it is in flight for a
// few hundred milliseconds; a test looks often and, should a move finish between two looks, starts
// another, a bounded number of times.

/** An operator as the driver's status lists it (GET /placement, PlacementService.status). */
export interface OperatorView {
  readonly kind: string;
  readonly rangeId: number;
  /** The range's epoch when the operator was planned. */
  readonly epoch: number;
  readonly from?: number;
  readonly to?: number;
  /** The last step the driver sent for it; null before the first. */
  readonly lastStep: string | null;
  readonly ageMs: number;
}

export interface MoveInFlight extends OperatorView {
  /** The range's epoch as its replicas report it now: past `epoch`, so a step of the move has been applied. */
  readonly epochNow: number;
  /** Moves asked for before this one was seen in flight. */
  readonly attempts: number;
}

/**
 * Polls until the driver lists a moveReplica operator that is really under way — a step sent, and the
 * range's configuration already changed by it (its epoch past the operator's) while the operator is
 * still listed — and returns it. Asks for a move (`startMove`, which returns the range it asked to
 * move) first and again whenever the one asked for is no longer listed without having been seen in
 * flight; fails after `attemptsMax` moves or `timeoutMs`. The caller stops the driver at once after.
 */
export async function untilMoveInFlight(o: {
  readonly operators: () => Promise<readonly OperatorView[]>;
  /** The range's highest epoch over the replicas that can be asked. */
  readonly epochOf: (rangeId: number) => Promise<number>;
  readonly startMove: () => Promise<number>;
  readonly attemptsMax: number;
  readonly timeoutMs: number;
}): Promise<MoveInFlight> {
  const pollIntervalMs = 10;
  const deadlineMs = performance.now() + o.timeoutMs;
  let attempts = 0;
  let asked: number | undefined;
  const history: string[] = [];
  for (;;) {
    const operators = await o.operators().catch(() => undefined);
    if (operators !== undefined) {
      for (const op of operators) {
        if (op.kind !== 'moveReplica' || op.lastStep === null) continue;
        const epochNow = await o.epochOf(op.rangeId);
        if (epochNow > op.epoch) return { ...op, epochNow, attempts };
      }
      if (asked === undefined || !operators.some((op) => op.rangeId === asked)) {
        if (attempts >= o.attemptsMax) throw new Error(`no move seen in flight in ${attempts} moves asked for: ${history.join('; ')}`);
        attempts++;
        asked = await o.startMove();
        history.push(`range ${asked}`);
      }
    }
    if (performance.now() > deadlineMs) throw new Error(`no move seen in flight within ${o.timeoutMs} ms (${attempts} asked for: ${history.join('; ')})`);
    await new Promise((r) => setTimeout(r, pollIntervalMs));
  }
}
