// The embedding API's arguments as they arrive from JavaScript, where types
// are not checked: converted to bytes, or refused with a TypeError that
// names the argument and what it got. Values of the right type that the
// store cannot take (an empty key, a negative ifVersion) are the store's
// KvErrors, not TypeErrors.
import type { Consistency } from '@flotilla/shards';
import type { Encoding } from '../embed.js';

const utf8Encoder = new TextEncoder();
/** Not fatal: a value that is not UTF-8 read as 'utf8' gets U+FFFD (the Encoding contract). */
const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/**
 * A call aborted by its `signal`. Named and coded as Node's own
 * (`name` 'AbortError', `code` 'ABORT_ERR'), so code that checks for
 * those treats it alike; `cause` is the signal's reason.
 */
export class AbortError extends Error {
  /** Always 'AbortError': the name Node's and the DOM's aborted operations give, and what `err.name === 'AbortError'` checks for. */
  override readonly name = 'AbortError';
  /** Always 'ABORT_ERR', Node's code for an aborted operation; unlike KvError's codes it is no member of KV_ERROR_CODES. */
  readonly code = 'ABORT_ERR';
  /** The store makes these; `options.cause` is the signal's reason (an AbortSignal.timeout's TimeoutError, say). */
  constructor(message: string, options: { readonly cause: unknown }) {
    super(message, options);
  }
}

/** Bytes of a key or value: a Uint8Array as it is, a string as its UTF-8; TypeError for anything else. */
export function toBytes(input: unknown, what: string): Uint8Array {
  if (input instanceof Uint8Array) return input;
  if (typeof input === 'string') return utf8Encoder.encode(input);
  throw new TypeError(`${what} must be a string or a Uint8Array, got ${describe(input)}`);
}

/** Bytes of an optional bound (undefined stays undefined). */
export function toBytesOrUndefined(input: unknown, what: string): Uint8Array | undefined {
  return input === undefined ? undefined : toBytes(input, what);
}

/**
 * Bytes the store answered, as the caller asked for them: a plain
 * Uint8Array view of the same memory (never a Buffer, whichever the store
 * made), or a string.
 */
export function fromBytes(bytes: Uint8Array, encoding: Encoding): Uint8Array | string {
  if (encoding === 'utf8') return utf8Decoder.decode(bytes);
  return bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A call's options: an object or undefined; TypeError otherwise. */
export function optionsOf<T extends object>(input: T | undefined, what: string): Partial<T> {
  if (input === undefined) return {};
  if (input === null || typeof input !== 'object') throw new TypeError(`${what}: options must be an object, got ${describe(input)}`);
  return input;
}

export function checkEncoding(input: unknown, what: string): Encoding | undefined {
  if (input === undefined || input === 'binary' || input === 'utf8') return input;
  throw new TypeError(`${what} must be 'binary' or 'utf8', got ${describe(input)}`);
}

export function checkConsistency(input: unknown, what: string): Consistency | undefined {
  if (input === undefined || input === 'linearizable' || input === 'stale') return input;
  throw new TypeError(`${what}: consistency must be 'linearizable' or 'stale', got ${describe(input)}`);
}

/** `ifVersion` must be a number; whether it is a usable one (a non-negative integer) is the store's to say. */
export function checkIfVersion(input: unknown, what: string): number | undefined {
  if (input === undefined || typeof input === 'number') return input;
  throw new TypeError(`${what}: ifVersion must be a number, got ${describe(input)}`);
}

export function checkBoolean(input: unknown, what: string): boolean | undefined {
  if (input === undefined || typeof input === 'boolean') return input;
  throw new TypeError(`${what} must be a boolean, got ${describe(input)}`);
}

/** A positive integer count (a limit), or undefined; TypeError otherwise. */
export function checkCount(input: unknown, what: string): number | undefined {
  if (input === undefined) return undefined;
  if (typeof input === 'number' && Number.isSafeInteger(input) && input >= 1) return input;
  throw new TypeError(`${what} must be a positive integer, got ${describe(input)}`);
}

export function checkSignal(input: unknown, what: string): AbortSignal | undefined {
  if (input === undefined || input instanceof AbortSignal) return input;
  throw new TypeError(`${what}: signal must be an AbortSignal, got ${describe(input)}`);
}

/** The smallest key after every key that begins with `prefix`; undefined when there is none (the prefix is all 0xFF). */
export function prefixEnd(prefix: Uint8Array): Uint8Array | undefined {
  for (let i = prefix.byteLength - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      const end = prefix.slice(0, i + 1);
      end[i]!++;
      return end;
    }
  }
  return undefined;
}

/**
 * Runs `work` unless `signal` aborts first: then the returned promise
 * rejects with an AbortError at once, and whatever `work` settles with
 * later is dropped (it stops at its deadline, which the signal ends too).
 */
export function abortable<T>(signal: AbortSignal | undefined, what: string, work: () => Promise<T>): Promise<T> {
  if (signal === undefined) return work();
  if (signal.aborted) return Promise.reject(abortError(signal, what));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal, what));
    signal.addEventListener('abort', onAbort, { once: true });
    work()
      .then(resolve, reject)
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function abortError(signal: AbortSignal, what: string): AbortError {
  return new AbortError(`${what} was aborted`, { cause: signal.reason });
}

/** A value as a TypeError message shows it: its type, and the value itself when short. */
function describe(input: unknown): string {
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'an array';
  switch (typeof input) {
    case 'number':
    case 'boolean':
    case 'bigint':
      return `${typeof input} ${String(input)}`;
    case 'string':
      return `string ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`;
    case 'undefined':
      return 'undefined';
    case 'object':
      return `an object (${(input as object).constructor?.name ?? 'no prototype'})`;
    default:
      return typeof input;
  }
}

