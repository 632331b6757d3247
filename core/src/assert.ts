/**
 * Raised when one of our own invariants breaks. Never caught: the worker that
 * hosts the group dies and the group recovers from what it persisted.
 */
export class AssertionError extends Error {
  readonly code = 'ASSERTION_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === 'string' ? message : message());
}

export function unreachable(value: never, what: string): never {
  throw new AssertionError(`unreachable: unexpected ${what} ${JSON.stringify(value)}`);
}
