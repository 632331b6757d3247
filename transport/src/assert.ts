/**
 * Raised when one of our own invariants breaks (a caller bug, never bad
 * network input). Never caught. Transport does not depend on `@flotilla/core`,
 * so it carries its own copy of the helper with the same code.
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
