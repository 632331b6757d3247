// The client commands' one way to talk to a node over HTTP: every failure becomes a CliError that names
// the address and the cause, with the exit code of its class (exit-codes.ts).
import { CliError, EXIT, EXIT_BY_ERROR_CODE, exitCodeOfStatus, type ExitCode } from './exit-codes.js';

/**
 * Budget of one request of a client command. The node answers within its own request deadline (5 s by
 * default, 503 after it), so this only ends a wait on a hung or overloaded process.
 */
export const REQUEST_TIMEOUT_MS = 15_000;

/** What a node answered (any status). */
export interface NodeAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
}

/** What undici's connection errors (err.cause.code) mean, in words. */
const CONNECT_FAILURES: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_SOCKET: 'the connection closed before an answer',
  EPIPE: 'the connection closed before an answer',
};

export class NodeClient {
  constructor(
    /** http(s)://HOST:PORT without a trailing slash. */
    readonly base: string,
  ) {}

  /** One request; throws CliError (unavailable) when there is no answer. Any status is an answer. */
  async request(method: string, path: string, o: { body?: string | Buffer; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<NodeAnswer> {
    const timeoutMs = o.timeoutMs ?? REQUEST_TIMEOUT_MS;
    let response: Response;
    let body: Buffer;
    try {
      response = await fetch(`${this.base}${path}`, { method, ...(o.body === undefined ? {} : { body: o.body }), headers: o.headers ?? {}, signal: AbortSignal.timeout(timeoutMs) });
      body = Buffer.from(await response.arrayBuffer());
    } catch (err) {
      throw new CliError(EXIT.unavailable, unreachableMessage(this.base, err, timeoutMs));
    }
    return { status: response.status, headers: response.headers, body };
  }

  /** A JSON request whose answer must be a 2xx with a JSON body; anything else throws the error it says. */
  async json(method: string, path: string, o: { body?: unknown; what: string; timeoutMs?: number }): Promise<unknown> {
    const answer = await this.request(method, path, {
      ...(o.body === undefined ? {} : { body: JSON.stringify(o.body), headers: { 'content-type': 'application/json' } }),
      ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
    });
    this.check(answer, o.what);
    return parseJson(answer, this.base, o.what);
  }

  /** Throws the CliError a non-2xx answer means; `what` names the operation ("get greeting"). */
  check(answer: NodeAnswer, what: string): void {
    if (answer.status >= 200 && answer.status < 300) return;
    throw answerError(answer, this.base, what);
  }
}

/** "cannot reach URL: cause (hint)" for a request that got no answer. */
export function unreachableMessage(base: string, err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return `${base} did not answer within ${timeoutMs} ms (is the node overloaded or stopped? --url chooses the node)`;
  const code = e.cause?.code;
  // fetch refuses the ports browsers block (1, 7, 9, ..., 6000) before connecting, saying only "bad port".
  if (e.cause?.message === 'bad port') return `cannot reach ${base}: fetch does not connect to that port (one browsers block); run the node on another`;
  const cause = (code === undefined ? undefined : CONNECT_FAILURES[code]) ?? e.cause?.message ?? e.message ?? String(err);
  return `cannot reach ${base}: ${cause} (is a node running there? --url chooses the node)`;
}

/** The CliError of an error answer: the node's code and message when it sent Flotilla's error body. */
export function answerError(answer: NodeAnswer, base: string, what: string): CliError {
  const error = errorBodyOf(answer.body);
  const retryAfter = answer.headers.get('retry-after');
  const retry = retryAfter === null ? '' : `; retry after ${retryAfter} s`;
  if (error === undefined) {
    const text = answer.body.toString('utf8').trim().slice(0, 200);
    return new CliError(exitCodeOfStatus(answer.status), `${what}: ${base} answered ${answer.status}${text.length > 0 ? ` ${text}` : ''}${retry}`);
  }
  const exitCode: ExitCode = (EXIT_BY_ERROR_CODE as Readonly<Record<string, ExitCode>>)[error.code] ?? exitCodeOfStatus(answer.status);
  return new CliError(exitCode, `${what}: ${error.message} (${error.code} from ${base}${retry})`);
}

function errorBodyOf(body: Buffer): { code: string; message: string } | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } };
    const { code, message } = parsed.error ?? {};
    return typeof code === 'string' && typeof message === 'string' ? { code, message } : undefined;
  } catch {
    return undefined;
  }
}

export function parseJson(answer: NodeAnswer, base: string, what: string): unknown {
  try {
    return JSON.parse(answer.body.toString('utf8')) as unknown;
  } catch {
    throw new CliError(EXIT.internal, `${what}: ${base} answered ${answer.status} with a body that is not JSON (is --url a Flotilla node?)`);
  }
}
