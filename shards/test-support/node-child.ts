// A Flotilla node in its own process, for integration tests and benchmarks:
// a TcpTransport and a Host (worker-thread cores) on one data directory,
// driven over the IPC channel of `child_process.fork`.
//
//   fork('shards/dist-support/node-child.js', [JSON.stringify(config)])
//
// Config (NodeChildConfig below): { nodeId, dir, port, peers: { [id]: port },
// coreCount, tickIntervalMs, compactionTriggerEntries?, compactionKeepEntries?,
// logLevel?, reconnectDelayMsMax? }. Everything listens on and connects to
// 127.0.0.1. `port` 0 picks a free port (reported in `ready`). Logs are pino
// JSON on stderr at `logLevel` (default 'warn'); stdout stays unused.
//
// Child → parent, once:
//   { type: 'ready', nodeId, port, pid }              transport listening, Host ticking
//   { type: 'startFailed', code, message }            then exit 1 (e.g. EADDRINUSE, DATA_DIR_*)
//
// Parent → child requests, answered in any order, matched by `id`:
//   { id, op, ...args }  →  { id, ok: true, value }  |  { id, ok: false, error: { code, message, retryable, leaderHint? } }
//
//   op            args                                              value
//   createShards  shardIds, voters, bounds?: {start, end|null}      null (bounds default: defaultShardBounds(n); explicit bounds need one shard id)
//   propose       shardId, key, value?, delete?, ifVersion?         KvResult: {ok: true, version} | {ok: false, code, ...}
//   get           shardId, key, consistency ('linearizable'|'stale') {value, version} | null
//   shards        —                                                 ShardStatus[] (every replica on this node)
//   stats         —                                                 NodeChildStats
//   load          LoadArgs (below)                                  LoadResult
//   leaders       shardIdFirst, count                               LeadersView (below): cheap, from the Host's shard table
//   close         —                                                 null, sent after host.close(); then exit 0
//
// Keys and values are lowercase hex strings both ways. Error codes are the
// Host's (`NOT_LEADER` with `leaderHint`, 0 = unknown; `PROPOSAL_DROPPED`;
// `REQUEST_TIMEOUT`; `SHARD_NOT_FOUND`; `KEY_OUT_OF_RANGE`; ...) plus
// `BAD_REQUEST` (the request did not parse) and `INTERNAL` (an uncoded error).
//
// `load` runs a bounded write load inside this process, so a benchmark does
// not measure IPC: `concurrency` lanes propose puts round-robin to those of
// `shardIds` whose local replica leads (a shard led elsewhere is skipped: a
// hint cannot be followed from inside one node), until `count` proposals were
// issued or `durationMsMax` passed, then wait for the ones in flight. Keys are
// `defaultShardPrefix(shard) + tag + '/' + n`, n < keyCountPerShard (default:
// every write its own key), so it needs shards with the default bounds.
// Each value is unique (tag and sequence number, padded to valueBytes).
// The result (LoadResult) carries this node's exact latency percentiles and a
// histogram of the same latencies in fixed log buckets (LatencyHistogram), so
// a parent can merge several nodes' loads by adding counts: percentiles of
// per-node percentiles are not percentiles of the whole.
//
// Exit codes: 0 after `close` or when the parent disconnects; 70 when a worker
// core dies (onFatal); 1 when start fails.
import { pino, type Logger } from 'pino';
import { Host, type ShellLogger } from '@flotilla/shards';
import { TcpTransport } from '@flotilla/transport';
import { NODE_CHILD_CLUSTER_ID } from './node-cluster.js';
import type { GroupId } from '@flotilla/core';

export interface NodeChildConfig {
  readonly nodeId: number;
  readonly dir: string;
  /** 0: any free port (see the `ready` message). */
  readonly port: number;
  /** Every other node's id → its port on 127.0.0.1. */
  readonly peers: Readonly<Record<string, number>>;
  readonly coreCount: number;
  readonly tickIntervalMs: number;
  readonly compactionTriggerEntries?: number;
  readonly compactionKeepEntries?: number;
  /** pino level for this process and its worker cores. Default 'warn'. */
  readonly logLevel?: string;
  /** Ceiling of the transport's reconnect backoff (default 5 s): tests restart nodes and want peers back quickly. */
  readonly reconnectDelayMsMax?: number;
}

export type NodeChildReady = { readonly type: 'ready'; readonly nodeId: number; readonly port: number; readonly pid: number };
export type NodeChildStartFailed = { readonly type: 'startFailed'; readonly code: string; readonly message: string };

export interface BoundsHex {
  readonly start: string;
  /** null: to the end of the key space. */
  readonly end: string | null;
}

export interface LoadArgs {
  readonly shardIds: readonly number[];
  /** Proposals to issue at most (each counted once it is issued, whatever its outcome). */
  readonly count: number;
  /** Proposals in flight at most. */
  readonly concurrency: number;
  readonly valueBytes: number;
  /** No new proposal after this long; the ones in flight still finish (bounded by the request timeout). */
  readonly durationMsMax: number;
  /** Distinct keys per shard; writes beyond it overwrite. Default: unbounded (one key per write). */
  readonly keyCountPerShard?: number;
  /** Part of every key and value, so loads never collide. Default: node id, pid and a per-process sequence. */
  readonly tag?: string;
  /** 'list' (default): every acknowledged write; 'count': only how many (benchmarks). */
  readonly ackedAs?: 'list' | 'count';
}

/** [shardId, key hex, value hex, version]. */
export type AckedWrite = readonly [shardId: number, key: string, value: string, version: number];
/** [shardId, key hex, value hex]: a write that may or may not have been applied (timeout, dropped). */
export type UnknownWrite = readonly [shardId: number, key: string, value: string];

/**
 * Latencies in fixed logarithmic buckets: bucket 0 holds those below `lowMs`,
 * bucket i ≥ 1 those in [lowMs·2^((i-1)/bucketsPerOctave), lowMs·2^(i/bucketsPerOctave)).
 * The boundaries are the same in every load (LATENCY_HISTOGRAM_LOW_MS,
 * LATENCY_HISTOGRAM_BUCKETS_PER_OCTAVE), so histograms merge by adding counts;
 * a bucket is 4.4 % wide at 16 per octave.
 */
export interface LatencyHistogram {
  readonly lowMs: number;
  readonly bucketsPerOctave: number;
  /** [bucket index, count] for every non-empty bucket, in ascending bucket order. */
  readonly counts: readonly (readonly [bucket: number, count: number])[];
}

export interface LoadResult {
  readonly acked: readonly AckedWrite[] | number;
  /** Only with ackedAs 'list'. */
  readonly unknownOutcome?: readonly UnknownWrite[];
  /** Proposals issued. */
  readonly ops: number;
  readonly durationMs: number;
  /** Over acknowledged proposals only: from the call to host.propose until it resolved (nearest rank; 0 when none). */
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** The same latencies, bucketed for merging across loads. */
  readonly latencyHistogram: LatencyHistogram;
  readonly errorsByCode: Readonly<Record<string, number>>;
}

export interface NodeChildStats {
  readonly cores: Awaited<ReturnType<Host['coreStats']>>;
  /** Sum of every counter over the cores. */
  readonly coreTotals: Readonly<Record<string, number>>;
  readonly transport: ReturnType<Host['transportStats']>;
  readonly host: Host['stats'];
  /** Peers this node's liveness tracker considers up. */
  readonly livePeers: readonly number[];
  readonly cpuUsage: NodeJS.CpuUsage;
  readonly memoryUsage: NodeJS.MemoryUsage;
}

/**
 * Every shard id in [shardIdFirst, shardIdFirst + count): the leader this node's replica last
 * reported (0: unknown, -1: no replica here), read from the Host's shard table on the main thread
 * without asking the cores, so a benchmark can poll it while the cores are busy (re-elections) at
 * 100,000 shards, where the `shards` op's full statuses would stall the node for a second.
 */
export interface LeadersView {
  readonly leaders: readonly number[];
  /** Peers this node's liveness tracker considers up. */
  readonly livePeers: readonly number[];
  /** This process (every thread), as process.cpuUsage(). */
  readonly cpuUsage: NodeJS.CpuUsage;
}

/** Shard ids one `leaders` request covers at most (answers stay a few hundred KB). */
const LEADERS_COUNT_MAX = 1_000_000;

export type NodeChildRequest =
  | { readonly id: number; readonly op: 'createShards'; readonly shardIds: readonly number[]; readonly voters: readonly number[]; readonly bounds?: BoundsHex }
  | { readonly id: number; readonly op: 'propose'; readonly shardId: number; readonly key: string; readonly value?: string; readonly delete?: boolean; readonly ifVersion?: number }
  | { readonly id: number; readonly op: 'get'; readonly shardId: number; readonly key: string; readonly consistency: 'linearizable' | 'stale' }
  | { readonly id: number; readonly op: 'shards' }
  | { readonly id: number; readonly op: 'stats'; readonly collectGarbage?: boolean }
  | ({ readonly id: number; readonly op: 'load' } & LoadArgs)
  | { readonly id: number; readonly op: 'leaders'; readonly shardIdFirst: number; readonly count: number }
  | { readonly id: number; readonly op: 'close' };

export interface WireErrorHex {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  readonly leaderHint?: number;
}

export type NodeChildReply = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly error: WireErrorHex };

/** The key prefix of shard n under the default bounds: `s` + n zero-padded to 6 digits + `/`. */
export function defaultShardPrefix(shardId: number): string {
  return `s${String(shardId).padStart(6, '0')}/`;
}

/** [prefix, prefix with '/' → '0'): every key that starts with the prefix, nothing else; disjoint between shards. */
export function defaultShardBounds(shardId: number): { start: Buffer; end: Buffer } {
  const prefix = defaultShardPrefix(shardId);
  return { start: Buffer.from(prefix), end: Buffer.from(`${prefix.slice(0, -1)}0`) };
}

/** Shard ids fit in 6 digits so the default prefixes sort like the ids and stay disjoint. */
const SHARD_ID_MAX = 999_999;
/** One load's proposals at most: its latency array and acked list stay a few tens of MB. */
const LOAD_COUNT_MAX = 1_000_000;
/** Acked writes a 'list' load may return: one IPC message of ~100 B per write, ~20 MB at most. */
const LOAD_ACKED_LIST_MAX = 200_000;
/** In-flight proposals per load at most: more only queues in the Host. */
const LOAD_CONCURRENCY_MAX = 4_096;
/** A load runs 10 minutes at most. */
const LOAD_DURATION_MS_MAX = 600_000;
/** Value bytes per load write at most (KV allows far more; a load of huge values is not a load test). */
const LOAD_VALUE_BYTES_MAX = 1024 * 1024;
/** Lower edge of the latency histogram's first log bucket: 1 µs. */
const LATENCY_HISTOGRAM_LOW_MS = 0.001;
/** Buckets per doubling of latency: each 2^(1/16) − 1 = 4.4 % wide. */
const LATENCY_HISTOGRAM_BUCKETS_PER_OCTAVE = 16;
/** 1 µs · 2^(480/16) ≈ 18 min, past LOAD_DURATION_MS_MAX: the last bucket is never reached in practice, and clamps. */
const LATENCY_HISTOGRAM_BUCKET_COUNT = 481;
/** A load lane with no locally led shard waits this long before looking again. */
const LOAD_IDLE_WAIT_MS = 5;
/** After the parent disconnects, close gracefully but exit after this long regardless. */
const ORPHAN_EXIT_MS_MAX = 5_000;
const EXIT_FATAL = 70;

class BadRequestError extends Error {
  readonly code = 'BAD_REQUEST';
  readonly retryable = false;
  constructor(message: string) {
    super(`bad request: ${message}`);
    this.name = 'BadRequestError';
  }
}

// ---------------------------------------------------------------- validation of requests

function fail(message: string): never {
  throw new BadRequestError(message);
}

function integerArg(r: Record<string, unknown>, name: string, options: { min: number; max: number }): number {
  const v = r[name];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < options.min || v > options.max) fail(`${name} must be an integer in [${options.min}, ${options.max}], got ${JSON.stringify(v)}`);
  return v;
}

function shardIdArg(r: Record<string, unknown>): GroupId {
  return integerArg(r, 'shardId', { min: 1, max: SHARD_ID_MAX }) as GroupId;
}

function shardIdsArg(r: Record<string, unknown>, name: string): number[] {
  const v = r[name];
  if (!Array.isArray(v) || v.length === 0) fail(`${name} must be a non-empty array`);
  return v.map((id, i) => integerArg({ [`${name}[${i}]`]: id }, `${name}[${i}]`, { min: 1, max: SHARD_ID_MAX }));
}

function hexArg(value: unknown, name: string): Buffer {
  if (typeof value !== 'string' || value.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(value)) fail(`${name} must be a hex string, got ${JSON.stringify(value)}`);
  return Buffer.from(value, 'hex');
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

// ---------------------------------------------------------------- errors on the wire

function errorToWire(err: unknown): WireErrorHex {
  const e = err as Partial<{ code: unknown; message: unknown; retryable: unknown; leaderHint: unknown }>;
  if (err instanceof Error && typeof e.code === 'string') {
    return { code: e.code, message: err.message, retryable: e.retryable === true, ...(typeof e.leaderHint === 'number' ? { leaderHint: e.leaderHint } : {}) };
  }
  return { code: 'INTERNAL', message: err instanceof Error ? (err.stack ?? err.message) : String(err), retryable: false };
}

function codeOf(err: unknown): string {
  return errorToWire(err).code;
}

// ---------------------------------------------------------------- the node

class NodeChild {
  private loadSeq = 0;
  private closing = false;

  constructor(
    private readonly config: NodeChildConfig,
    private readonly host: Host,
    private readonly log: Logger,
  ) {}

  /** Dispatch: one function per op. */
  handle(raw: unknown): Promise<unknown> {
    if (typeof raw !== 'object' || raw === null) return Promise.reject(new BadRequestError('request is not an object'));
    const r = raw as Record<string, unknown>;
    const op = r['op'] as NodeChildRequest['op'];
    switch (op) {
      case 'createShards':
        return this.onCreateShards(r);
      case 'propose':
        return this.onPropose(r);
      case 'get':
        return this.onGet(r);
      case 'shards':
        return this.host.shards();
      case 'stats':
        return this.onStats(r);
      case 'load':
        return this.onLoad(r);
      case 'leaders':
        return Promise.resolve().then(() => this.onLeaders(r));
      case 'close':
        return this.onClose();
      default: {
        const never: never = op;
        return Promise.reject(new BadRequestError(`unknown op ${JSON.stringify(never)}`));
      }
    }
  }

  private async onCreateShards(r: Record<string, unknown>): Promise<null> {
    const shardIds = shardIdsArg(r, 'shardIds');
    const voters = shardIdsArg(r, 'voters');
    let bounds: { start: Uint8Array; end: Uint8Array | null } | undefined;
    if (r['bounds'] !== undefined) {
      if (shardIds.length !== 1) fail(`explicit bounds need exactly one shard id (ranges on a node are disjoint), got ${shardIds.length}`);
      const b = r['bounds'] as Record<string, unknown>;
      bounds = { start: hexArg(b['start'], 'bounds.start'), end: b['end'] === null ? null : hexArg(b['end'], 'bounds.end') };
    }
    await Promise.all(shardIds.map((shardId) => this.host.createShard({ shardId: shardId as GroupId, voters, bounds: bounds ?? defaultShardBounds(shardId) })));
    return null;
  }

  private onPropose(r: Record<string, unknown>): Promise<unknown> {
    const shardId = shardIdArg(r);
    const key = hexArg(r['key'], 'key');
    const ifVersion = r['ifVersion'] === undefined ? {} : { ifVersion: integerArg(r, 'ifVersion', { min: 0, max: Number.MAX_SAFE_INTEGER }) };
    if (r['delete'] === true) return this.host.propose(shardId, { op: 'delete', key, ...ifVersion });
    return this.host.propose(shardId, { op: 'put', key, value: hexArg(r['value'], 'value'), ...ifVersion });
  }

  private async onGet(r: Record<string, unknown>): Promise<{ value: string; version: number } | null> {
    const shardId = shardIdArg(r);
    const key = hexArg(r['key'], 'key');
    const consistency = r['consistency'];
    if (consistency !== 'linearizable' && consistency !== 'stale') fail(`consistency must be "linearizable" or "stale", got ${JSON.stringify(consistency)}`);
    const v = await this.host.get(shardId, key, { consistency });
    return v === undefined ? null : { value: hex(v.value), version: v.version };
  }

  private async onStats(r: Record<string, unknown>): Promise<NodeChildStats> {
    const collectGarbage = r['collectGarbage'] ?? false;
    if (typeof collectGarbage !== 'boolean') fail(`collectGarbage must be a boolean, got ${JSON.stringify(collectGarbage)}`);
    if (collectGarbage) (globalThis as { gc?: () => void }).gc?.();
    const cores = await this.host.coreStats({ collectGarbage });
    const coreTotals: Record<string, number> = {};
    for (const c of cores) for (const [name, n] of Object.entries(c)) coreTotals[name] = (coreTotals[name] ?? 0) + n;
    return { cores, coreTotals, transport: this.host.transportStats(), host: { ...this.host.stats }, livePeers: this.host.livePeers(), cpuUsage: process.cpuUsage(), memoryUsage: process.memoryUsage() };
  }

  private async onLoad(r: Record<string, unknown>): Promise<LoadResult> {
    const shardIds = shardIdsArg(r, 'shardIds');
    const ackedAs = r['ackedAs'] ?? 'list';
    if (ackedAs !== 'list' && ackedAs !== 'count') fail(`ackedAs must be "list" or "count", got ${JSON.stringify(ackedAs)}`);
    const count = integerArg(r, 'count', { min: 0, max: ackedAs === 'list' ? LOAD_ACKED_LIST_MAX : LOAD_COUNT_MAX });
    const concurrency = integerArg(r, 'concurrency', { min: 1, max: LOAD_CONCURRENCY_MAX });
    const valueBytes = integerArg(r, 'valueBytes', { min: 1, max: LOAD_VALUE_BYTES_MAX });
    const durationMsMax = integerArg(r, 'durationMsMax', { min: 0, max: LOAD_DURATION_MS_MAX });
    const keyCountPerShard = r['keyCountPerShard'] === undefined ? Number.POSITIVE_INFINITY : integerArg(r, 'keyCountPerShard', { min: 1, max: LOAD_COUNT_MAX });
    const tag = r['tag'] === undefined ? `n${this.config.nodeId}p${process.pid}l${++this.loadSeq}` : r['tag'];
    if (typeof tag !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(tag)) fail(`tag must be 1–64 characters of [A-Za-z0-9_.-], got ${JSON.stringify(tag)}`);
    return runLoad(this.host, { nodeId: this.config.nodeId, shardIds, count, concurrency, valueBytes, durationMsMax, keyCountPerShard, tag, ackedAs });
  }

  private onLeaders(r: Record<string, unknown>): LeadersView {
    const first = integerArg(r, 'shardIdFirst', { min: 1, max: SHARD_ID_MAX });
    const count = integerArg(r, 'count', { min: 0, max: Math.min(LEADERS_COUNT_MAX, SHARD_ID_MAX - first + 1) });
    const leaders = new Array<number>(count);
    for (let i = 0; i < count; i++) {
      const shardId = (first + i) as GroupId;
      // A replica a restart reopened has reported no leader yet: unknown (0), not absent.
      leaders[i] = this.host.hasShard(shardId) ? (this.host.leaderOf(shardId) ?? 0) : -1;
    }
    return { leaders, livePeers: this.host.livePeers(), cpuUsage: process.cpuUsage() };
  }

  private async onClose(): Promise<null> {
    await this.shutdown('close requested');
    return null;
  }

  async shutdown(reason: string): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.log.info({ reason }, 'node closing');
    await this.host.close();
  }
}

// ---------------------------------------------------------------- the in-process load

interface LoadPlan {
  readonly nodeId: number;
  readonly shardIds: readonly number[];
  readonly count: number;
  readonly concurrency: number;
  readonly valueBytes: number;
  readonly durationMsMax: number;
  readonly keyCountPerShard: number;
  readonly tag: string;
  readonly ackedAs: 'list' | 'count';
}

/** Codes after which the write certainly did not happen: refused before it reached the log. */
const NOT_APPLIED_CODES = new Set(['NOT_LEADER', 'SHARD_NOT_FOUND', 'KEY_OUT_OF_RANGE', 'COMMAND_INVALID', 'HOST_CLOSED']);

function loadValue(tag: string, seq: number, valueBytes: number): Buffer {
  const value = Buffer.alloc(valueBytes, '.');
  value.write(`${tag}:${seq}:`, 0, 'latin1');
  return value;
}

function latencyBucket(ms: number): number {
  if (!(ms >= LATENCY_HISTOGRAM_LOW_MS)) return 0;
  const i = 1 + Math.floor(Math.log2(ms / LATENCY_HISTOGRAM_LOW_MS) * LATENCY_HISTOGRAM_BUCKETS_PER_OCTAVE);
  return Math.min(i, LATENCY_HISTOGRAM_BUCKET_COUNT - 1);
}

function latencyHistogram(latenciesMs: readonly number[]): LatencyHistogram {
  const counts = new Array<number>(LATENCY_HISTOGRAM_BUCKET_COUNT).fill(0);
  for (const ms of latenciesMs) counts[latencyBucket(ms)]!++;
  const nonEmpty: [number, number][] = [];
  for (let i = 0; i < counts.length; i++) if (counts[i]! > 0) nonEmpty.push([i, counts[i]!]);
  return { lowMs: LATENCY_HISTOGRAM_LOW_MS, bucketsPerOctave: LATENCY_HISTOGRAM_BUCKETS_PER_OCTAVE, counts: nonEmpty };
}

async function runLoad(host: Host, plan: LoadPlan): Promise<LoadResult> {
  const startedMs = performance.now();
  const deadlineMs = startedMs + plan.durationMsMax;
  const acked: AckedWrite[] = [];
  const unknownOutcome: UnknownWrite[] = [];
  let ackedCount = 0;
  const latenciesMs: number[] = [];
  const errorsByCode: Record<string, number> = {};
  const perShardSeq = new Map<number, number>();
  let issued = 0;
  let cursor = 0;

  /** The next shard led here, round-robin; undefined when none is. */
  const nextLedShard = (): number | undefined => {
    for (let tried = 0; tried < plan.shardIds.length; tried++) {
      const shardId = plan.shardIds[cursor++ % plan.shardIds.length]!;
      if (host.leaderOf(shardId as GroupId) === plan.nodeId) return shardId;
    }
    return undefined;
  };

  const lane = async (): Promise<void> => {
    while (issued < plan.count && performance.now() < deadlineMs) {
      const shardId = nextLedShard();
      if (shardId === undefined) {
        await new Promise((resolve) => setTimeout(resolve, LOAD_IDLE_WAIT_MS));
        continue;
      }
      const seq = issued++;
      const shardSeq = perShardSeq.get(shardId) ?? 0;
      perShardSeq.set(shardId, shardSeq + 1);
      const key = Buffer.from(`${defaultShardPrefix(shardId)}${plan.tag}/${shardSeq % plan.keyCountPerShard}`);
      const value = loadValue(plan.tag, seq, plan.valueBytes);
      const sentMs = performance.now();
      try {
        const result = await host.propose(shardId as GroupId, { op: 'put', key, value });
        if (!result.ok) {
          errorsByCode[result.code] = (errorsByCode[result.code] ?? 0) + 1;
          continue;
        }
        latenciesMs.push(performance.now() - sentMs);
        ackedCount++;
        if (plan.ackedAs === 'list') acked.push([shardId, key.toString('hex'), value.toString('hex'), result.version]);
      } catch (err) {
        const code = codeOf(err);
        errorsByCode[code] = (errorsByCode[code] ?? 0) + 1;
        if (!NOT_APPLIED_CODES.has(code) && plan.ackedAs === 'list') unknownOutcome.push([shardId, key.toString('hex'), value.toString('hex')]);
        if (code === 'HOST_CLOSED' || code === 'CORE_CRASHED') return;
      }
    }
  };

  await Promise.all(Array.from({ length: plan.concurrency }, lane));
  latenciesMs.sort((a, b) => a - b);
  const at = (q: number): number => (latenciesMs.length === 0 ? 0 : latenciesMs[Math.min(latenciesMs.length - 1, Math.floor(q * latenciesMs.length))]!);
  const round = (ms: number): number => Math.round(ms * 1000) / 1000;
  return {
    acked: plan.ackedAs === 'list' ? acked : ackedCount,
    ...(plan.ackedAs === 'list' ? { unknownOutcome } : {}),
    ops: issued,
    durationMs: round(performance.now() - startedMs),
    latencyMs: { p50: round(at(0.5)), p99: round(at(0.99)), max: round(latenciesMs[latenciesMs.length - 1] ?? 0) },
    latencyHistogram: latencyHistogram(latenciesMs),
    errorsByCode,
  };
}

// ---------------------------------------------------------------- process wiring

function parseConfig(text: string | undefined): NodeChildConfig {
  if (text === undefined) throw new Error('usage: node-child.js <json config>');
  const c = JSON.parse(text) as NodeChildConfig;
  const positive = (name: string, v: unknown, min = 1): void => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new Error(`config.${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  };
  positive('nodeId', c.nodeId);
  positive('port', c.port, 0);
  positive('coreCount', c.coreCount);
  positive('tickIntervalMs', c.tickIntervalMs);
  if (typeof c.dir !== 'string' || c.dir === '') throw new Error('config.dir must be a path');
  if (typeof c.peers !== 'object' || c.peers === null) throw new Error('config.peers must be an object of node id → port');
  for (const [id, port] of Object.entries(c.peers)) {
    positive(`peers key`, Number(id));
    positive(`peers[${id}]`, port);
  }
  return c;
}

function send(message: NodeChildReply | NodeChildReady | NodeChildStartFailed, then?: () => void): void {
  if (process.connected) process.send!(message, undefined, {}, () => then?.());
  else then?.();
}

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error('node-child.js must be started with child_process.fork (it talks over IPC)');
  const config = parseConfig(process.argv[2]);
  const logger = pino({ level: config.logLevel ?? 'warn', base: { pid: process.pid, nodeId: config.nodeId } }, pino.destination(2));
  const transport = new TcpTransport({
    nodeId: config.nodeId,
    clusterId: NODE_CHILD_CLUSTER_ID,
    host: '127.0.0.1',
    port: config.port,
    logger,
    ...(config.reconnectDelayMsMax === undefined ? {} : { reconnectDelayMsMax: config.reconnectDelayMsMax }),
  });
  let host: Host;
  try {
    host = await Host.start({
      nodeId: config.nodeId,
      dir: config.dir,
      transport,
      coreCount: config.coreCount,
      logger: logger as unknown as ShellLogger,
      ticker: { kind: 'timer', intervalMs: config.tickIntervalMs },
      ...(config.compactionTriggerEntries === undefined ? {} : { compactionTriggerEntries: config.compactionTriggerEntries }),
      ...(config.compactionKeepEntries === undefined ? {} : { compactionKeepEntries: config.compactionKeepEntries }),
      onFatal: (err) => {
        logger.fatal({ err }, 'worker core died; node exits');
        process.exit(EXIT_FATAL);
      },
    });
  } catch (err) {
    const wire = errorToWire(err);
    logger.error({ err }, 'node failed to start');
    send({ type: 'startFailed', code: wire.code, message: wire.message }, () => process.exit(1));
    return;
  }
  for (const [id, port] of Object.entries(config.peers)) host.setPeer(Number(id), `127.0.0.1:${port}`);
  const node = new NodeChild(config, host, logger);

  process.on('message', (raw: unknown) => {
    const id = (raw as { id?: unknown } | null)?.id;
    if (typeof id !== 'number') {
      logger.warn({ raw }, 'request without a numeric id ignored');
      return;
    }
    const isClose = (raw as { op?: unknown }).op === 'close';
    node.handle(raw).then(
      (value) => send({ id, ok: true, value: value ?? null }, isClose ? () => process.exit(0) : undefined),
      (err: unknown) => send({ id, ok: false, error: errorToWire(err) }),
    );
  });
  // The parent went away (or forgot us): close gracefully, but never outlive it by more than ORPHAN_EXIT_MS_MAX.
  process.on('disconnect', () => {
    setTimeout(() => process.exit(0), ORPHAN_EXIT_MS_MAX).unref();
    void node.shutdown('parent disconnected').finally(() => process.exit(0));
  });
  send({ type: 'ready', nodeId: config.nodeId, port: transport.address().port, pid: process.pid });
}

main().catch((err: unknown) => {
  process.stderr.write(`node child failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
