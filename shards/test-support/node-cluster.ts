// Parent side of node-child.ts, shared by the TCP cluster tests
// (test/host/tcp-harness.ts) and the host benchmark (bench/src/host-bench.ts):
// node processes forked over IPC, a cluster of them on 127.0.0.1 with fresh
// data directories, a client that follows leader hints, and helpers to merge
// the latency histograms of several nodes' `load` results.
//
// Built to dist-support/node-cluster.js and exported as
// `@flotilla/shards/test-support/node-cluster`. It forks
// dist-support/node-child.js, so `npm run build` in shards/ must have run.
//
// Every child is tracked so a test's afterEach or a benchmark's finally can
// SIGKILL exactly the processes this module started (by pid); every wait is
// bounded in time and in iterations.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ShardStatus } from '@flotilla/shards';
import type {
  LatencyHistogram,
  LeadersView,
  LoadArgs,
  LoadResult,
  NodeChildConfig,
  NodeChildReady,
  NodeChildReply,
  NodeChildRequest,
  NodeChildStartFailed,
  NodeChildStats,
  WireErrorHex,
} from './node-child.js';

export type { LatencyHistogram, LeadersView, LoadArgs, LoadResult, NodeChildConfig, NodeChildStats, WireErrorHex } from './node-child.js';

/** dist-support/node-child.js, from the built module next to it or from this source under a test runner. */
function nodeChildEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const dir = dirname(here);
  return here.endsWith('.ts') ? resolve(dir, '../dist-support/node-child.js') : resolve(dir, 'node-child.js');
}

export const NODE_CHILD_ENTRY = nodeChildEntry();
/** The cluster id every node-child process is in (their hellos carry it; a raw socket's hello must too). */
export const NODE_CHILD_CLUSTER_ID = '6e6f64652d6368696c642d636c757374';

/** Process start, module load, two worker threads and their LMDB environments: ~300 ms here; 20 s means stuck. */
const NODE_START_TIMEOUT_MS = 20_000;
/** A request the child does not answer in this long is failed (IPC_TIMEOUT); Host requests time out far sooner (50 ticks). */
const IPC_REQUEST_TIMEOUT_MS = 30_000;
/** After SIGKILL or a close, the exit event follows within milliseconds; 10 s means something is wrong. */
const NODE_EXIT_TIMEOUT_MS = 10_000;
/** stderr kept per child for failure messages. */
const STDERR_TAIL_BYTES_MAX = 64 * 1024;
/** Tries per client write or read (hint hops and retries together). */
const CLIENT_ATTEMPTS_MAX = 400;
/** Wait between client retries that got no usable hint: ~one tick at the tests' 20 ms tick. */
const CLIENT_RETRY_WAIT_MS = 20;
/** Consecutive hint hops before a retry waits anyway (two replicas pointing at each other during an election). */
const CLIENT_HINT_HOPS_MAX = 3;
/** A client write not acknowledged within this is a failure: far beyond an election (10 ticks) and a request timeout (50). */
export const CLIENT_DEADLINE_MS_DEFAULT = 15_000;

/** Outcomes after which a write may or may not have been applied: retried, and remembered as possibly applied. */
const UNKNOWN_OUTCOME_CODES = new Set(['PROPOSAL_DROPPED', 'REQUEST_TIMEOUT', 'NODE_EXITED', 'IPC_TIMEOUT', 'HOST_CLOSED', 'CORE_CRASHED']);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `condition` every `intervalMs` until it returns a value other than undefined; throws after `timeoutMs`. */
export async function waitUntil<T>(what: string, condition: () => Promise<T | undefined> | T | undefined, options: { timeoutMs: number; intervalMs?: number }): Promise<T> {
  const intervalMs = options.intervalMs ?? 50;
  const deadline = performance.now() + options.timeoutMs;
  const roundsMax = Math.ceil(options.timeoutMs / intervalMs) + 1;
  for (let round = 0; round < roundsMax; round++) {
    const value = await condition();
    if (value !== undefined) return value;
    if (performance.now() > deadline) break;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what}`);
}

/** Runs `fn` over `items` with at most `concurrency` calls in flight. */
export async function forEachConcurrent<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
}

export const hexOf = (text: string): string => Buffer.from(text, 'utf8').toString('hex');
export const textOf = (hex: string): string => Buffer.from(hex, 'hex').toString('utf8');

/** A request answered with an error (the child's WireErrorHex), or one that never got an answer. */
export class NodeRequestError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly leaderHint: number;
  constructor(
    readonly nodeId: number,
    wire: WireErrorHex,
  ) {
    super(`node ${nodeId}: ${wire.code}: ${wire.message}`);
    this.name = 'NodeRequestError';
    this.code = wire.code;
    this.retryable = wire.retryable;
    this.leaderHint = wire.leaderHint ?? 0;
  }
}

// ---------------------------------------------------------------- one node process

/** Children alive right now, so a test or benchmark can end exactly the processes this module started. */
const liveChildren = new Set<ChildProcess>();

/** SIGKILLs (by pid) every child still running; returns how many. */
export function killLeftoverNodes(): number {
  let killed = 0;
  for (const child of liveChildren) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, 'SIGKILL');
      killed++;
    }
  }
  liveChildren.clear();
  return killed;
}

/** A request to a node child without its id (NodeProcess numbers them). */
export type RequestArgs = NodeChildRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export interface NodeProcessOptions {
  /** Node flags for the child (e.g. ['--cpu-prof', '--cpu-prof-dir', dir]). Default: fork's, which is this process's own. */
  readonly execArgv?: readonly string[];
  /** Fails the start if the child is not ready by then (default NODE_START_TIMEOUT_MS): a node reopening 100,000 replicas takes longer. */
  readonly startTimeoutMs?: number;
}

interface PendingIpc {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class NodeProcess {
  private nextId = 1;
  private readonly pending = new Map<number, PendingIpc>();
  private stderrTail = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly config: NodeChildConfig,
    private readonly child: ChildProcess,
  ) {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      if (process.env['FLOTILLA_TEST_LOG'] !== undefined) process.stderr.write(chunk);
      this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_BYTES_MAX);
    });
    child.on('message', (m: NodeChildReply | NodeChildReady | NodeChildStartFailed) => {
      if (!('id' in m)) return;
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.value);
      else p.reject(new NodeRequestError(this.nodeId, m.error));
    });
    this.exited = new Promise((resolvePromise) => {
      child.on('exit', (code, signal) => {
        liveChildren.delete(child);
        const gone: WireErrorHex = { code: 'NODE_EXITED', message: `node process ${child.pid} exited (code ${code}, signal ${signal}) before answering`, retryable: true };
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new NodeRequestError(this.nodeId, gone));
        }
        this.pending.clear();
        resolvePromise({ code, signal });
      });
    });
  }

  /** Forks a node and resolves once it listens (`ready`); rejects with its stderr if it fails to start. */
  static async start(config: NodeChildConfig, options: NodeProcessOptions = {}): Promise<NodeProcess> {
    if (!existsSync(NODE_CHILD_ENTRY)) throw new Error(`${NODE_CHILD_ENTRY} is missing; run \`npm run build\` in shards/ first`);
    const child = fork(NODE_CHILD_ENTRY, [JSON.stringify(config)], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      ...(options.execArgv === undefined ? {} : { execArgv: [...options.execArgv] }),
    });
    liveChildren.add(child);
    const node = new NodeProcess(config, child);
    const startTimeoutMs = options.startTimeoutMs ?? NODE_START_TIMEOUT_MS;
    const ready = await new Promise<NodeChildReady>((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`node ${config.nodeId} not ready within ${startTimeoutMs} ms:\n${node.stderrTail}`)), startTimeoutMs);
      child.on('message', (m: NodeChildReply | NodeChildReady | NodeChildStartFailed) => {
        if ('id' in m) return;
        clearTimeout(timer);
        if (m.type === 'ready') resolvePromise(m);
        else reject(new Error(`node ${config.nodeId} failed to start: ${m.code}: ${m.message}`));
      });
      void node.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`node ${config.nodeId} exited while starting (code ${code}, signal ${signal}):\n${node.stderrTail}`));
      });
    }).catch(async (err: unknown) => {
      await node.kill();
      throw err;
    });
    if (config.port !== 0 && ready.port !== config.port) throw new Error(`node ${config.nodeId} listens on ${ready.port}, asked for ${config.port}`);
    return node;
  }

  get nodeId(): number {
    return this.config.nodeId;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  stderr(): string {
    return this.stderrTail;
  }

  request<T>(args: RequestArgs, timeoutMs = IPC_REQUEST_TIMEOUT_MS): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolvePromise, reject) => {
      if (!this.running || !this.child.connected) {
        reject(new NodeRequestError(this.nodeId, { code: 'NODE_EXITED', message: `node process ${this.child.pid} is not running`, retryable: true }));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new NodeRequestError(this.nodeId, { code: 'IPC_TIMEOUT', message: `${args.op} not answered within ${timeoutMs} ms`, retryable: true }));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolvePromise as (v: unknown) => void, reject, timer });
      this.child.send({ id, ...args }, (err) => {
        if (err === null || err === undefined) return;
        const p = this.pending.get(id);
        if (p === undefined) return;
        this.pending.delete(id);
        clearTimeout(p.timer);
        reject(new NodeRequestError(this.nodeId, { code: 'NODE_EXITED', message: `IPC send failed: ${err.message}`, retryable: true }));
      });
    });
  }

  shards(): Promise<ShardStatus[]> {
    return this.request<ShardStatus[]>({ op: 'shards' });
  }

  /** `collectGarbage`: every thread of the node runs a full GC first, if the node runs with --expose-gc (heap numbers then count live objects only). */
  stats(options: { collectGarbage?: boolean } = {}): Promise<NodeChildStats> {
    return this.request<NodeChildStats>({ op: 'stats', ...(options.collectGarbage === true ? { collectGarbage: true } : {}) });
  }

  /** The leader this node's replica of each shard in [shardIdFirst, shardIdFirst + count) last reported (0 unknown, -1 no replica), its live peers and its CPU. */
  leaders(shardIdFirst: number, count: number): Promise<LeadersView> {
    return this.request<LeadersView>({ op: 'leaders', shardIdFirst, count });
  }

  load(args: LoadArgs): Promise<LoadResult> {
    return this.request<LoadResult>({ op: 'load', ...args }, args.durationMsMax + IPC_REQUEST_TIMEOUT_MS);
  }

  /** kill -9, by pid; resolves once the process is gone. */
  async kill(): Promise<void> {
    if (this.running) process.kill(this.child.pid!, 'SIGKILL');
    await this.waitExit();
  }

  /** Graceful: the child closes its Host and exits 0; SIGKILL if it does not within the bound. */
  async close(): Promise<void> {
    if (!this.running) return;
    try {
      await this.request({ op: 'close' }, NODE_EXIT_TIMEOUT_MS);
    } catch {
      // An unanswered close is handled below: the exit wait kills it.
    }
    await this.waitExit();
  }

  private async waitExit(): Promise<void> {
    const timeout = sleep(NODE_EXIT_TIMEOUT_MS).then(() => 'timeout' as const);
    if ((await Promise.race([this.exited, timeout])) === 'timeout') {
      if (this.running) process.kill(this.child.pid!, 'SIGKILL');
      await Promise.race([this.exited, sleep(NODE_EXIT_TIMEOUT_MS)]);
    }
  }
}

// ---------------------------------------------------------------- the cluster

export interface TcpClusterOptions {
  readonly nodeCount: number;
  readonly coreCount: number;
  readonly tickIntervalMs: number;
  readonly compactionTriggerEntries?: number;
  readonly compactionKeepEntries?: number;
  readonly reconnectDelayMsMax?: number;
  /** Default: $FLOTILLA_TEST_LOG, else 'warn'. */
  readonly logLevel?: string;
  /** Where the nodes' fresh data directories are made (default: os.tmpdir()); each is removed by `close()`. */
  readonly dataDirParent?: string;
  /** Node flags for every child (see NodeProcessOptions). */
  readonly execArgv?: readonly string[];
}

/** Receives the outcome of every client write attempt (the tests' WriteLog is one). */
export interface WriteRecorder {
  acked(shardId: number, key: string, value: string, version: number): void;
  unknownOutcome(shardId: number, key: string, value: string): void;
}

export interface ReadValue {
  readonly value: string;
  readonly version: number;
}

/**
 * Ports for test servers, below Linux's ephemeral range (32768–60999 by
 * default): a port the kernel hands out for outgoing connections (our own
 * transports dialing peers, in this or a concurrent test process) can never
 * collide with one picked here — the race that port 0, noted and freed, has.
 */
const TEST_PORT_MIN = 20_000;
const TEST_PORT_MAX = 32_000;
/** Tries before giving up on finding a free run of ports. */
const FREE_PORT_ATTEMPTS_MAX = 50;

function canBind(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const s = createServer();
    s.once('error', () => resolvePromise(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolvePromise(true)));
  });
}

/** `count` consecutive free ports (base + 1 .. base + count); returns them. */
export async function freePorts(count: number): Promise<number[]> {
  return (await freePortRun(count)).ports;
}

/** A base such that base + 1 .. base + count are free (`flotilla dev` numbers nodes from base + 1). */
export async function freePortRun(count: number): Promise<{ base: number; ports: number[] }> {
  for (let attempt = 0; attempt < FREE_PORT_ATTEMPTS_MAX; attempt++) {
    const base = TEST_PORT_MIN + Math.floor(Math.random() * (TEST_PORT_MAX - TEST_PORT_MIN - count - 1));
    const ports = Array.from({ length: count }, (_, i) => base + i + 1);
    if ((await Promise.all(ports.map(canBind))).every(Boolean)) return { base, ports };
  }
  throw new Error(`no run of ${count} free ports in [${TEST_PORT_MIN}, ${TEST_PORT_MAX}) after ${FREE_PORT_ATTEMPTS_MAX} tries`);
}

export class TcpCluster {
  /** Running nodes only. */
  readonly nodes = new Map<number, NodeProcess>();
  readonly configs = new Map<number, NodeChildConfig>();
  private readonly dirs: string[] = [];
  /** Last node that acknowledged a write or read per shard: the first one a client tries. */
  private readonly leaderGuess = new Map<number, number>();

  private constructor(readonly options: TcpClusterOptions) {}

  /** `nodeCount` nodes with ids 1..n, each on a fresh data directory and a free port, every one the others' peer. */
  static async start(options: TcpClusterOptions): Promise<TcpCluster> {
    // Another process may take a port between the check and the bind: start over on fresh ports.
    for (let attempt = 1; ; attempt++) {
      try {
        return await TcpCluster.startOnce(options);
      } catch (err) {
        if (!String((err as Error).message).includes('EADDRINUSE') || attempt >= 3) throw err;
      }
    }
  }

  private static async startOnce(options: TcpClusterOptions): Promise<TcpCluster> {
    const c = new TcpCluster(options);
    const ids = Array.from({ length: options.nodeCount }, (_, i) => i + 1);
    const ports = await freePorts(options.nodeCount);
    for (const id of ids) {
      const dir = mkdtempSync(join(options.dataDirParent ?? tmpdir(), `flotilla-tcp-node${id}-`));
      c.dirs.push(dir);
      const peers: Record<string, number> = {};
      for (const peer of ids) if (peer !== id) peers[String(peer)] = ports[peer - 1]!;
      c.configs.set(id, {
        nodeId: id,
        dir,
        port: ports[id - 1]!,
        peers,
        coreCount: options.coreCount,
        tickIntervalMs: options.tickIntervalMs,
        ...(options.compactionTriggerEntries === undefined ? {} : { compactionTriggerEntries: options.compactionTriggerEntries }),
        ...(options.compactionKeepEntries === undefined ? {} : { compactionKeepEntries: options.compactionKeepEntries }),
        ...(options.reconnectDelayMsMax === undefined ? {} : { reconnectDelayMsMax: options.reconnectDelayMsMax }),
        logLevel: options.logLevel ?? process.env['FLOTILLA_TEST_LOG'] ?? 'warn',
      });
    }
    try {
      const started = await Promise.all(ids.map((id) => c.startNode(id)));
      for (const n of started) c.nodes.set(n.nodeId, n);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private startNode(id: number, startTimeoutMs?: number): Promise<NodeProcess> {
    return NodeProcess.start(this.configs.get(id)!, {
      ...(this.options.execArgv === undefined ? {} : { execArgv: this.options.execArgv }),
      ...(startTimeoutMs === undefined ? {} : { startTimeoutMs }),
    });
  }

  get nodeIds(): number[] {
    return [...this.configs.keys()];
  }

  node(id: number): NodeProcess {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`node ${id} is not running`);
    return n;
  }

  async kill(id: number): Promise<void> {
    const n = this.node(id);
    this.nodes.delete(id);
    await n.kill();
  }

  /** Starts the node again on its data directory and port (`startTimeoutMs`: see NodeProcessOptions). */
  async restart(id: number, options: { startTimeoutMs?: number } = {}): Promise<NodeProcess> {
    if (this.nodes.has(id)) throw new Error(`node ${id} is still running`);
    const n = await this.startNode(id, options.startTimeoutMs);
    this.nodes.set(id, n);
    return n;
  }

  async createShards(shardIds: readonly number[], voters: readonly number[] = this.nodeIds): Promise<void> {
    await Promise.all(voters.map((id) => this.node(id).request({ op: 'createShards', shardIds, voters })));
  }

  async statuses(): Promise<Map<number, ShardStatus[]>> {
    const entries = await Promise.all([...this.nodes].map(async ([id, n]) => [id, await n.shards()] as const));
    return new Map(entries);
  }

  /** Every running node's stats, by node id. */
  async stats(options: { collectGarbage?: boolean } = {}): Promise<Map<number, NodeChildStats>> {
    const entries = await Promise.all([...this.nodes].map(async ([id, n]) => [id, await n.stats(options)] as const));
    return new Map(entries);
  }

  /**
   * Leader per shard when every running replica names the same leader, that
   * leader is running and calls itself leader; undefined otherwise.
   */
  async agreedLeaders(shardIds: readonly number[]): Promise<Map<number, number> | undefined> {
    const statuses = await this.statuses();
    const byNode = new Map([...statuses].map(([id, list]) => [id, new Map(list.map((s) => [s.shardId, s]))] as const));
    const leaders = new Map<number, number>();
    for (const shardId of shardIds) {
      let leader: number | undefined;
      for (const list of byNode.values()) {
        const s = list.get(shardId);
        if (s === undefined || s.leader === 0) return undefined;
        if (leader !== undefined && s.leader !== leader) return undefined;
        leader = s.leader;
      }
      const own = leader === undefined ? undefined : byNode.get(leader)?.get(shardId);
      if (leader === undefined || own?.role !== 'leader') return undefined;
      leaders.set(shardId, leader);
    }
    return leaders;
  }

  private firstTarget(shardId: number): number {
    const guess = this.leaderGuess.get(shardId);
    if (guess !== undefined && this.nodes.has(guess)) return guess;
    return [...this.nodes.keys()][shardId % this.nodes.size]!;
  }

  private nextRunning(after: number): number {
    const ids = [...this.nodes.keys()].sort((a, b) => a - b);
    if (ids.length === 0) throw new Error('no node is running');
    return ids.find((id) => id > after) ?? ids[0]!;
  }

  /**
   * Sends `op` to the shard's leader: starts at the last known one, follows
   * NOT_LEADER hints to running nodes, and moves on (after a short wait) on
   * errors that may pass. `onUnknownOutcome` hears of every attempt that may
   * have taken effect anyway.
   */
  private async leaderRequest<T>(shardId: number, args: RequestArgs, options: { deadlineMs: number; onUnknownOutcome?: () => void }): Promise<T> {
    const deadline = performance.now() + options.deadlineMs;
    let target = this.firstTarget(shardId);
    let hops = 0;
    let lastError: unknown;
    for (let attempt = 0; attempt < CLIENT_ATTEMPTS_MAX && performance.now() < deadline; attempt++) {
      const node = this.nodes.get(target);
      if (node === undefined) {
        target = this.nextRunning(target);
        continue;
      }
      try {
        const value = await node.request<T>(args);
        this.leaderGuess.set(shardId, target);
        return value;
      } catch (err) {
        if (!(err instanceof NodeRequestError)) throw err;
        lastError = err;
        if (err.code === 'NOT_LEADER' && err.leaderHint !== 0 && err.leaderHint !== target && this.nodes.has(err.leaderHint) && hops < CLIENT_HINT_HOPS_MAX) {
          hops++;
          target = err.leaderHint;
          continue;
        }
        if (err.code !== 'NOT_LEADER' && !UNKNOWN_OUTCOME_CODES.has(err.code)) throw err;
        if (UNKNOWN_OUTCOME_CODES.has(err.code)) options.onUnknownOutcome?.();
        hops = 0;
        target = err.code === 'NOT_LEADER' && err.leaderHint !== 0 && this.nodes.has(err.leaderHint) ? err.leaderHint : this.nextRunning(target);
        await sleep(CLIENT_RETRY_WAIT_MS);
      }
    }
    throw new Error(`${args.op} on shard ${shardId} got no answer from a leader within ${options.deadlineMs} ms; last error: ${String(lastError)}`);
  }

  /** An unconditional put through the leader; recorded in `log` (acknowledged, or unknown for each failed attempt). */
  async write(shardId: number, key: string, value: string, log: WriteRecorder, deadlineMs = CLIENT_DEADLINE_MS_DEFAULT): Promise<number> {
    const result = await this.leaderRequest<{ ok: boolean; version?: number; code?: string }>(
      shardId,
      { op: 'propose', shardId, key, value },
      { deadlineMs, onUnknownOutcome: () => log.unknownOutcome(shardId, key, value) },
    );
    if (!result.ok || result.version === undefined) throw new Error(`put to shard ${shardId} refused: ${JSON.stringify(result)}`);
    log.acked(shardId, key, value, result.version);
    return result.version;
  }

  /** A linearizable read through the leader. */
  read(shardId: number, key: string, deadlineMs = CLIENT_DEADLINE_MS_DEFAULT): Promise<ReadValue | null> {
    return this.leaderRequest<ReadValue | null>(shardId, { op: 'get', shardId, key, consistency: 'linearizable' }, { deadlineMs });
  }

  /** Closes every running node gracefully (SIGKILL past the bound) and removes the data directories. */
  async close(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.close()));
    this.nodes.clear();
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- latency histograms of loads

/** Adds histograms with the same bucket boundaries (every node-child load uses the same ones). */
export function mergeLatencyHistograms(histograms: readonly LatencyHistogram[]): LatencyHistogram {
  const first = histograms[0];
  if (first === undefined) return { lowMs: 0, bucketsPerOctave: 1, counts: [] };
  const counts = new Map<number, number>();
  for (const h of histograms) {
    if (h.lowMs !== first.lowMs || h.bucketsPerOctave !== first.bucketsPerOctave) {
      throw new Error(`latency histograms differ in buckets: ${h.lowMs} ms × ${h.bucketsPerOctave}/octave vs ${first.lowMs} ms × ${first.bucketsPerOctave}/octave`);
    }
    for (const [bucket, n] of h.counts) counts.set(bucket, (counts.get(bucket) ?? 0) + n);
  }
  return { lowMs: first.lowMs, bucketsPerOctave: first.bucketsPerOctave, counts: [...counts].sort((a, b) => a[0] - b[0]) };
}

export function histogramCount(h: LatencyHistogram): number {
  return h.counts.reduce((n, [, c]) => n + c, 0);
}

/**
 * The nearest-rank `q` quantile (as node-child computes its exact ones),
 * resolved to the geometric middle of its bucket, so within half a bucket
 * (±2.2 % at 16 per octave); capped at `maxMs` when given. 0 when empty.
 */
export function histogramQuantileMs(h: LatencyHistogram, q: number, maxMs = Number.POSITIVE_INFINITY): number {
  const total = histogramCount(h);
  if (total === 0) return 0;
  const rank = Math.min(total - 1, Math.floor(q * total));
  let seen = 0;
  for (const [bucket, n] of h.counts) {
    seen += n;
    if (seen > rank) {
      const middle = bucket === 0 ? h.lowMs / 2 : h.lowMs * 2 ** ((bucket - 0.5) / h.bucketsPerOctave);
      return Math.min(middle, maxMs);
    }
  }
  return Math.min(h.lowMs * 2 ** (h.counts.at(-1)![0] / h.bucketsPerOctave), maxMs);
}
