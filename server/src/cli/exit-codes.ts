// How `flotilla` ends: one exit code per class of outcome, so a script can tell "not there" from "try
// later" without reading the message. The codes are part of the CLI's contract (README, `flotilla --help`).
import type { ErrorCode } from '../http/errors.js';

export const EXIT = {
  /** Done. */
  ok: 0,
  /** Our bug, or an answer the CLI does not understand (a --url that is no Flotilla node, say). */
  internal: 1,
  /** The command line is wrong: an unknown command or option, a missing or extra argument, a bad value — or the node refused the request as malformed (400, 413). */
  usage: 2,
  /** The key, range or node does not exist (404). */
  notFound: 3,
  /** A condition did not hold: --if-version no longer matches, or the range already has an operator in flight or already holds that replica (412). */
  preconditionFailed: 4,
  /** The node cannot be reached, or cannot serve now: no quorum, no leader, disk full, timed out (503, 507). Retrying later may succeed. */
  unavailable: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit codes as `flotilla --help` and the README list them. */
export const EXIT_CODES_HELP = `Exit codes:
  0  ok
  1  internal error (a bug, or --url answered something that is not Flotilla)
  2  usage: unknown command or option, wrong arguments, a value the node rejected (400, 413, 431)
  3  not found: the key, range or node does not exist (404)
  4  precondition failed: --if-version did not match, or the operation conflicts with the
     cluster's state (e.g. a move onto a node that already holds the range) (412); start:
     the data directory does not fit the flags (another node's, other --cores, damaged)
  5  unavailable: the node cannot be reached, or cannot serve now (no quorum, no leader,
     timeout, disk full: 503, 507); start: the directory is in use or the port is taken;
     retrying later may succeed`;

/**
 * The exit code of every error code the HTTP API answers with (server/src/http/errors.ts). `satisfies`
 * makes a new code a compile error until it has a row here, as STATUS_BY_CODE does for statuses.
 */
export const EXIT_BY_ERROR_CODE = {
  INVALID_ARGUMENT: EXIT.usage,
  KEY_TOO_LARGE: EXIT.usage,
  VALUE_TOO_LARGE: EXIT.usage,
  // Only the embedding API's atomic batch produces it (no HTTP route does yet).
  BATCH_SPANS_RANGES: EXIT.usage,
  HEADERS_TOO_LARGE: EXIT.usage,
  NOT_FOUND: EXIT.notFound,
  PRECONDITION_FAILED: EXIT.preconditionFailed,
  UNAVAILABLE: EXIT.unavailable,
  CLOSED: EXIT.unavailable,
  TIMEOUT: EXIT.unavailable,
  NOT_READY: EXIT.unavailable,
  DISK_FULL: EXIT.unavailable,
  REQUEST_TIMEOUT: EXIT.unavailable,
  // The CLI asked for a path or method this node does not serve: the --url is not a (current) Flotilla node.
  ROUTE_NOT_FOUND: EXIT.internal,
  METHOD_NOT_ALLOWED: EXIT.internal,
  INTERNAL: EXIT.internal,
} as const satisfies Record<ErrorCode, ExitCode>;

/** An answer without a Flotilla error body (a proxy, another server): classed by its status alone. */
export function exitCodeOfStatus(status: number): ExitCode {
  if (status === 404) return EXIT.notFound;
  if (status === 409 || status === 412) return EXIT.preconditionFailed;
  if (status === 408 || status === 502 || status === 503 || status === 504 || status === 507) return EXIT.unavailable;
  // 405: the CLI used a method the server does not take, which no input of the user's can cause.
  if (status >= 400 && status < 500 && status !== 405) return EXIT.usage;
  return EXIT.internal;
}

/** A failure the CLI reports as one line, `flotilla: <message>`, and ends with `exitCode`. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
  }
}

/** A usage mistake found after parsing (two options that exclude each other, say): printed with a pointer to the command's help. */
export class UsageError extends CliError {
  constructor(
    message: string,
    /** The command whose `--help` the message points to, e.g. "start". */
    readonly command?: string,
  ) {
    super(EXIT.usage, message);
  }
}
