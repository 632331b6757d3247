/**
 * Concurrent HTTP clients doing get / put / CAS (If-Match on the version they
 * last saw) / create-only (If-None-Match: *) / delete on a few keys with
 * unique values, each operation recorded with its invoke and complete times
 * as a plain register operation for the linearizability checker.
 *
 * Keys rotate: a key takes at most `opsPerKey` operations, then its slot
 * moves on to a fresh key (Jepsen's independent keys). A key's history stays
 * short, so the checker's search stays bounded even when many writes end
 * with an unknown outcome, and over a long run many keys see the faults.
 *
 * What an answer means:
 * - 200 / 204 / 404 on a read, 200 / 204 on a write: the outcome.
 * - 412: refused with the current version (it observed the key).
 * - any other 4xx: refused before anything happened — no effect, nothing
 *   observed: left out of the history (and counted: none is expected).
 * - a connection refused before the request was sent: no effect, left out.
 * - 5xx, a timeout or a broken connection on a write: unknown outcome — it
 *   may have been applied. On a read: left out (a read has no effect).
 */
import { SeededRng } from '@flotilla/core';
import type { KeyedOperation, RegisterInput, RegisterOutput } from '../lin/index.js';

export interface WorkloadOptions {
  readonly seed: number;
  readonly clientCount: number;
  readonly slotCount: number;
  readonly opsPerKey: number;
  /** Target operations per second over all clients (each client waits clientCount / rate between its operations). */
  readonly opsPerSec: number;
  /** A request with no answer by then is abandoned (its outcome unknown if a write). */
  readonly requestTimeoutMs: number;
  /**
   * Bytes of padding after each value's unique name (0: none): big values make
   * a peer that fell behind far behind in bytes. The history knows values by
   * their names; a read whose padding is not intact keeps its whole body, so
   * it matches no write.
   */
  readonly valuePaddingBytes: number;
  /** Node ids and their HTTP URLs. */
  readonly urls: ReadonlyMap<number, string>;
  /** The run's clock, ms. */
  readonly nowMs: () => number;
}

/** Answers by HTTP status or failure kind, per node: what the faults did to clients. */
export type OutcomeCounts = Map<string, number>;

export interface WorkloadResult {
  readonly operations: KeyedOperation[];
  readonly keys: readonly WorkloadKey[];
  /** "<node> <method> <status or error>" → count. */
  readonly outcomes: OutcomeCounts;
  /** Every answer that was not a success (2xx, 404, 412), with its node and time: what the faults did to clients. */
  readonly failedAnswers: readonly FailedAnswer[];
  /** 4xx other than 404 and 412: refusals nobody should see. */
  readonly unexpectedRefusals: readonly string[];
  /** 503 / 507 answers without Retry-After (the API promises one): "<node> <method> <status> <code>". */
  readonly missingRetryAfter: readonly string[];
}

export interface FailedAnswer {
  readonly node: number;
  /** When the answer came, on the run's clock. */
  readonly atMs: number;
  /** "<method> <status> <code>" or "<method> <error>". */
  readonly what: string;
}

/** A key the workload used: its bytes and the name the history knows it by. */
export interface WorkloadKey {
  readonly bytes: Uint8Array;
  readonly name: string;
}

/** Where a slot's keys start: spread over the first byte so they fall in different ranges (ranges pre-split on it). */
function slotByte(slot: number, slotCount: number): number {
  return 0x08 + Math.floor((slot * 0xf0) / slotCount);
}

export function keyPath(bytes: Uint8Array): string {
  return [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
}

interface Slot {
  key: WorkloadKey;
  generation: number;
  opsLeft: number;
}

/** The answer to one HTTP attempt, before it becomes a register output. */
type Answer =
  | { readonly kind: 'response'; readonly status: number; readonly etag: string | null; readonly retryAfter: string | null; readonly body: string; readonly code: string | undefined }
  /** Nothing was sent (connection refused): no effect. */
  | { readonly kind: 'not-sent'; readonly error: string }
  /** Sent, no answer (timeout, reset): unknown. */
  | { readonly kind: 'lost'; readonly error: string };

export class Workload {
  private readonly rng: SeededRng;
  private readonly slots: Slot[];
  private readonly keys: WorkloadKey[] = [];
  private readonly operations: KeyedOperation[] = [];
  private readonly outcomes: OutcomeCounts = new Map();
  private readonly unexpectedRefusals: string[] = [];
  private readonly failedAnswers: FailedAnswer[] = [];
  private readonly missingRetryAfter: string[] = [];
  /** Per client and key name: the version it last saw (0: absent). */
  private readonly knownVersions: Map<string, number>[];
  private nextOperationId = 1;
  private nextValue = 1;
  private stopped = false;
  private readonly clients: Promise<void>[] = [];

  constructor(private readonly o: WorkloadOptions) {
    this.rng = new SeededRng(o.seed ^ 0x5bd1e995);
    this.slots = Array.from({ length: o.slotCount }, (_, slot) => ({ key: this.keyOf(slot, 0), generation: 0, opsLeft: o.opsPerKey }));
    this.knownVersions = Array.from({ length: o.clientCount }, () => new Map());
  }

  private keyOf(slot: number, generation: number): WorkloadKey {
    const name = `${slot}/${generation}`;
    const key = { bytes: Buffer.concat([Uint8Array.of(slotByte(slot, this.o.slotCount)), Buffer.from(`/fault/${name}`)]), name };
    this.keys.push(key);
    return key;
  }

  start(): void {
    for (let client = 0; client < this.o.clientCount; client++) this.clients.push(this.runClient(client, this.rng.fork()));
  }

  /** Stops issuing operations; resolves when every client's last one finished or was abandoned. */
  async stop(): Promise<WorkloadResult> {
    this.stopped = true;
    await Promise.all(this.clients);
    return this.result();
  }

  result(): WorkloadResult {
    return { operations: this.operations, keys: this.keys, outcomes: this.outcomes, failedAnswers: this.failedAnswers, unexpectedRefusals: this.unexpectedRefusals, missingRetryAfter: this.missingRetryAfter };
  }

  /** Successful writes so far whose invocation came after `sinceMs`. */
  writesAcknowledgedSince(sinceMs: number): number {
    return this.operations.filter((o) => o.invokeMs >= sinceMs && (o.output?.kind === 'written' || o.output?.kind === 'deleted')).length;
  }

  private async runClient(client: number, rng: SeededRng): Promise<void> {
    const pauseMs = (this.o.clientCount * 1000) / this.o.opsPerSec;
    const nodes = [...this.o.urls.keys()];
    while (!this.stopped) {
      const slotIndex = rng.intBelow(this.slots.length);
      const slot = this.slots[slotIndex]!;
      const key = slot.key;
      if (--slot.opsLeft <= 0) {
        slot.generation++;
        slot.key = this.keyOf(slotIndex, slot.generation);
        slot.opsLeft = this.o.opsPerKey;
      }
      const node = nodes[rng.intBelow(nodes.length)]!;
      await this.runOperation(client, node, key, this.inputFor(client, key, rng));
      // Think time with jitter, so clients do not march in lockstep.
      await new Promise((r) => setTimeout(r, pauseMs * (0.5 + rng.nextFloat())));
    }
  }

  private inputFor(client: number, key: WorkloadKey, rng: SeededRng): RegisterInput {
    const roll = rng.intBelow(100);
    const value = () => `v${this.o.seed}-${client}-${this.nextValue++}`;
    if (roll < 40) return { kind: 'get' };
    if (roll < 65) return { kind: 'put', value: value() };
    const known = this.knownVersions[client]!.get(key.name);
    if (roll < 85) return known === undefined || known === 0 ? { kind: 'put', value: value(), ifVersion: 0 } : { kind: 'put', value: value(), ifVersion: known };
    if (roll < 90) return { kind: 'put', value: value(), ifVersion: 0 };
    if (roll < 95 && known !== undefined && known > 0) return { kind: 'delete', ifVersion: known };
    return { kind: 'delete' };
  }

  /** Runs one operation (also used for the final reads) and records it. */
  async runOperation(client: number, node: number, key: WorkloadKey, input: RegisterInput, options: { readonly timeoutMs?: number } = {}): Promise<RegisterOutput | null | 'no-effect'> {
    const url = `${this.o.urls.get(node)!}/kv/${keyPath(key.bytes)}`;
    const init: RequestInit = { method: input.kind === 'get' ? 'GET' : input.kind === 'put' ? 'PUT' : 'DELETE', headers: {} };
    if (input.kind === 'put') init.body = this.o.valuePaddingBytes === 0 ? input.value : `${input.value}${this.padding}`;
    if (input.kind !== 'get' && input.ifVersion !== undefined) (init.headers as Record<string, string>)[input.ifVersion === 0 ? 'if-none-match' : 'if-match'] = input.ifVersion === 0 ? '*' : `"${input.ifVersion}"`;
    const invokeMs = this.o.nowMs();
    const answer = await attempt(url, init, options.timeoutMs ?? this.o.requestTimeoutMs);
    const completeMs = this.o.nowMs();
    const outcome = this.outcomeOf(input, answer);
    const what = `${init.method} ${answer.kind === 'response' ? `${answer.status}${answer.code === undefined ? '' : ` ${answer.code}`}` : answer.error}`;
    this.count(`${node} ${what}`);
    if (answer.kind !== 'response' || !(answer.status < 300 || answer.status === 404 || answer.status === 412)) this.failedAnswers.push({ node, atMs: completeMs, what });
    if (answer.kind === 'response' && (answer.status === 503 || answer.status === 507) && answer.retryAfter === null) this.missingRetryAfter.push(`${node} ${what}`);
    if (outcome === 'no-effect') return outcome;
    if (outcome === null && input.kind === 'get') return null; // a read with no answer observed nothing
    const output = outcome;
    this.operations.push({ id: this.nextOperationId++, clientId: client, key: key.name, invokeMs, completeMs: output === null ? null : completeMs, input, output });
    if (output !== null) this.learnVersion(client, key, output);
    return output;
  }

  /** Appended to every value written: a separator no name contains, then filler. */
  private get padding(): string {
    return `|${'x'.repeat(Math.max(0, this.o.valuePaddingBytes - 1))}`;
  }

  /** A value read back, as the history names it. */
  private valueName(body: string): string {
    if (this.o.valuePaddingBytes === 0) return body;
    const bar = body.indexOf('|');
    return bar >= 0 && body.slice(bar) === this.padding ? body.slice(0, bar) : body;
  }

  private learnVersion(client: number, key: WorkloadKey, output: RegisterOutput): void {
    const known = this.knownVersions[client];
    if (known === undefined) return; // the final reads' client
    switch (output.kind) {
      case 'found':
      case 'written':
        known.set(key.name, output.version);
        return;
      case 'absent':
      case 'deleted':
        known.set(key.name, 0);
        return;
      case 'refused':
        known.set(key.name, output.currentVersion);
        return;
    }
  }

  private count(what: string): void {
    this.outcomes.set(what, (this.outcomes.get(what) ?? 0) + 1);
  }

  private outcomeOf(input: RegisterInput, answer: Answer): RegisterOutput | null | 'no-effect' {
    if (answer.kind === 'not-sent') return 'no-effect';
    if (answer.kind === 'lost') return null;
    const { status } = answer;
    if (status === 412 && input.kind !== 'get') {
      const current = (JSON.parse(answer.body) as { error?: { currentVersion?: unknown } }).error?.currentVersion;
      if (typeof current !== 'number') throw new Error(`412 without a current version: ${answer.body}`);
      return { kind: 'refused', currentVersion: current };
    }
    if (status >= 500) return null;
    if (status >= 400 && !(input.kind === 'get' && status === 404)) {
      this.unexpectedRefusals.push(`${input.kind} → ${status} ${answer.body.slice(0, 200)}`);
      return 'no-effect';
    }
    switch (input.kind) {
      case 'get':
        if (status === 404) return { kind: 'absent' };
        return { kind: 'found', value: this.valueName(answer.body), version: versionOf(answer.etag) };
      case 'put':
        return { kind: 'written', version: (JSON.parse(answer.body) as { version: number }).version };
      case 'delete':
        return { kind: 'deleted' };
    }
  }
}

function versionOf(etag: string | null): number {
  const m = etag === null ? null : /^"(\d+)"$/.exec(etag);
  if (m === null) throw new Error(`a read answered 200 with ETag ${etag}, not a quoted version`);
  return Number(m[1]);
}

/** Errors that prove the request never reached the server. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED']);

async function attempt(url: string, init: RequestInit, timeoutMs: number): Promise<Answer> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.text();
    let code: string | undefined;
    if (res.status >= 400) {
      try {
        code = (JSON.parse(body) as { error?: { code?: string } }).error?.code;
      } catch {
        code = undefined;
      }
    }
    return { kind: 'response', status: res.status, etag: res.headers.get('etag'), retryAfter: res.headers.get('retry-after'), body, code };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    const name = (err as Error).name;
    if (cause?.code !== undefined && NOT_SENT_CODES.has(cause.code)) return { kind: 'not-sent', error: cause.code };
    return { kind: 'lost', error: name === 'TimeoutError' ? 'timeout' : (cause?.code ?? name) };
  }
}
