/**
 * The whole-node simulation: N production nodes (FlotillaNode: the Host
 * with inline cores, NodeStore over LMDB, the KV service's routing and
 * forwarding, meta duties, the placement driver) in one thread, on one
 * virtual clock and the seeded MemoryNetwork. Only time and the network are
 * simulated; see test/README.md "Whole-node simulation".
 *
 * A run: start the cluster; `faultTicks` ticks of clients and the nemesis
 * (crashes at any store write, pauses, partitions, lossy links, splits,
 * moves, leader transfers); heal; wait until every range has one leader and
 * converged replicas; final reads; then the checks. The first broken check
 * throws a SimFailure naming the seed and the command that replays it.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeededRng } from '@flotilla/core';
import { META_RANGE_ID, type RangeDescriptor } from '@flotilla/placement';
import { FlotillaNode, KvError } from '@flotilla/server';
import type { ShellLogger, ShardStatus } from '@flotilla/shards';
import type { SnapshotSender, Transport, TransportHandlers } from '@flotilla/transport';
import { MemoryNetwork, NO_LINK_FAULTS } from '@flotilla/transport/testing';
import { pino } from 'pino';
import { checkRegisterHistory, describeVerdict, type KeyedOperation, type RegisterInput, type RegisterOutput } from '../lin/index.js';
import { installBug } from './bugs.js';
import { TICK_MS, replayCommand, type NodeSimOptions } from './options.js';
import { NodeClock, Skew, VirtualClock } from './virtual-clock.js';

/** Event-loop turns a store write takes (see beforeWrite). */
/** Log tail records between checkpoints in every simulated store (NodeStore default 256). */
const SIM_TAIL_RECORDS_MAX = 8;
const WRITE_LATENCY_TURNS = 3;
/** Event-loop turns one settle may take before the run is declared livelocked. */
const SETTLE_TURNS_MAX = 20_000;
/** Virtual budget of a client call: the store's default (REQUEST_DEADLINE_MS_DEFAULT). */
const REQUEST_DEADLINE_MS = 5_000;
/** Salts the stream that picks crash points (see afterWrite). */
const CRASH_POINT_SALT = 0x6166_7472;
/** Salts a client's burst stream (see client). */
const BURST_SALT = 0x6b75_7273;
/** Seeds the clock faults' own stream (options.clockFaults): a run without them draws exactly as before. */
const CLOCK_SALT = 0x636c_6f63;
const MERGE_SALT = 0x6d65_7267;
/** Chance per tick of an admin merge (options.merges). */
const ADMIN_MERGE_CHANCE = 0.03;
/** Chance per tick that a node's clock starts running fast or slow, or steps (options.clockFaults). */
const CLOCK_FAULT_CHANCE = 0.03;
/** Virtual time clients think between operations: up to this. */
const THINK_MS_MAX = 300;
/** A fault episode lasts this many ticks at most (a crashed node stays down, a partition stands...). */
const EPISODE_TICKS_MAX = 60;
/** Bounds on what a node may hold at any sample: past them something grows without bound. */
const HOST_PENDING_MAX = 2_000;
const STORE_REQUESTS_IN_FLIGHT_MAX = 200;
const NETWORK_PENDING_MAX = 50_000;
const TIMERS_PENDING_MAX = 20_000;
/** Ticks a range may be without a leader after convergence (a few election timeouts). */
const LEADER_WAIT_TICKS = 100;
/** Attempts of a request after healing (final reads, consistency checks), RETRY_PAUSE_TICKS apart. */
const RETRY_ATTEMPTS_AFTER_HEALING = 10;
const RETRY_PAUSE_TICKS = 10;
/** How often (ticks) every running replica's status is sampled for the safety checks. */
const STATUS_SAMPLE_TICKS = 5;

export class SimFailure extends Error {
  constructor(
    readonly options: NodeSimOptions,
    readonly check: string,
    detail: string,
  ) {
    super(`node simulation seed ${options.seed} failed (${check}): ${detail}\n  replay: ${replayCommand(options)}`);
    this.name = 'SimFailure';
  }
}

export interface NodeSimStats {
  readonly ticks: number;
  readonly operations: number;
  readonly unknownOutcomes: number;
  readonly crashes: number;
  readonly pauses: number;
  readonly partitions: number;
  readonly lossyEpisodes: number;
  readonly adminOk: number;
  readonly adminFailed: number;
  readonly ranges: number;
  readonly snapshotsSent: number;
  /** Linearizable reads answered under a node lease (no heartbeat round), by the nodes running at the end. */
  readonly leaseReads: number;
  /** Of those, the ones the Host served on its own thread (shards/src/host/local-reads.ts). */
  readonly localReads: number;
}

export interface NodeSimResult {
  readonly stats: NodeSimStats;
  /** Every operation with its outcome, in invocation order: two runs of one seed must agree on it exactly. */
  readonly trace: readonly string[];
}

/** One process lifetime of a node. */
interface Incarnation {
  readonly clock: NodeClock;
  node: FlotillaNode | undefined;
  dead: boolean;
  /** Stores writes left until the crash (armed by the nemesis); undefined: not armed. */
  writesUntilCrash: number | undefined;
  /** The armed crash lets its write commit and strikes right after it (see afterWrite). */
  crashAfterWrite: boolean;
  /** Resolves when this incarnation dies: an operation still waiting then has an unknown outcome. */
  readonly died: Promise<void>;
  markDied: () => void;
  closing: Promise<void> | undefined;
}

interface SimNode {
  readonly id: number;
  readonly dir: string;
  state: 'up' | 'paused' | 'down';
  inc: Incarnation | undefined;
  /** Ticks left in its current down or paused episode. */
  episodeTicksLeft: number;
  /** Incarnations started so far. */
  starts: number;
  /** Highest applied index ever seen per range on this node (applied state is durable: it never goes back). */
  readonly appliedSeen: Map<number, number>;
  /** The machine's clock against the run's (clock faults); its processes' clocks and ticks follow it. */
  readonly skew: Skew;
  /** Ticks owed at its clock's rate: a node whose clock runs fast ticks more often than the run. */
  tickDebt: number;
  /** Ticks left until its clock runs at the run's rate again (0: it does). */
  clockTicksLeft: number;
}

class SimulatedCrash extends Error {
  constructor(nodeId: number) {
    super(`node ${nodeId} crashed (simulated)`);
    this.name = 'SimulatedCrash';
  }
}

/** Silent unless FLOTILLA_TEST_LOG names a level; each line then carries the simulation's time (`simMs`), to line up with the trace. */
const silentLogger = (nowMs: () => number): ShellLogger => pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent', timestamp: () => `,"simMs":${nowMs()}` }) as unknown as ShellLogger;

/** Where run directories go: tmpfs when there is one (the store never syncs in a simulation anyway). */
function simRoot(): string {
  const base = process.env['FLOTILLA_SIM_DIR'] ?? '/dev/shm';
  try {
    mkdirSync(base, { recursive: true });
    return mkdtempSync(join(base, 'flotilla-node-sim-'));
  } catch {
    return mkdtempSync(join(tmpdir(), 'flotilla-node-sim-'));
  }
}

export class NodeSim {
  readonly clock = new VirtualClock();
  readonly network: MemoryNetwork;
  private readonly rng: SeededRng;
  private readonly nemesisRng: SeededRng;
  /** Whether an armed crash strikes after its write (options.crashAfterWrites). */
  private readonly crashPointRng: SeededRng;
  private readonly clockRng: SeededRng;
  /** Admin merges' own stream (options.merges): runs without merges draw exactly as before. */
  private readonly mergeRng: SeededRng;
  private readonly root: string;
  private readonly nodes: SimNode[] = [];
  private readonly keys: string[];
  private readonly ops: KeyedOperation[] = [];
  /** Stale reads, checked apart: each must return a value some put of that key wrote (or nothing). */
  private readonly staleReads: { key: string; value: string | null; completeMs: number }[] = [];
  /** Every value each key was ever asked to hold, with when the put was invoked. */
  private readonly putsByKey = new Map<string, Map<string, number>>();
  private nextOpId = 1;
  private tickCount = 0;
  private phase: 'faults' | 'healing' | 'done' = 'faults';
  private failure: SimFailure | undefined;
  /** (range, term) → the node that led it then: two leaders in one term break Election Safety. */
  private readonly leadersByTerm = new Map<string, { node: number; seen: string }>();
  private episode: { kind: string; ticksLeft: number; heal: () => void } | undefined;
  /** A node cut off from the rest that half the clients keep using (the 'isolate' fault): reads there meet a deposed leader. */
  private focus: number | undefined;
  private readonly counts = { crashes: 0, pauses: 0, partitions: 0, lossyEpisodes: 0, adminOk: 0, adminFailed: 0, unknown: 0 };
  /** Every operation with its outcome and every fault, in order (NodeSimResult.trace; kept on failure too). */
  readonly trace: string[] = [];
  /** Called with each trace line as it is added: a seed that never ends still shows how far it got (cli --trace). */
  onTrace: ((line: string) => void) | undefined;
  private uninstallBug: (() => void) | undefined;

  constructor(readonly options: NodeSimOptions) {
    this.rng = new SeededRng(options.seed);
    this.crashPointRng = new SeededRng((Math.imul(options.seed, 0x9e3779b1) ^ CRASH_POINT_SALT) >>> 0);
    this.clockRng = new SeededRng((Math.imul(options.seed, 0x9e3779b1) ^ CLOCK_SALT) >>> 0);
    this.mergeRng = new SeededRng((Math.imul(options.seed, 0x9e3779b1) ^ MERGE_SALT) >>> 0);
    this.network = new MemoryNetwork({ rng: this.rng.fork(), verify: false });
    this.nemesisRng = this.rng.fork();
    this.root = simRoot();
    this.keys = Array.from({ length: options.keyCount }, (_, i) => simKey(i, options.keyCount));
  }

  /** Runs the whole scenario; throws SimFailure on the first broken check. */
  async run(): Promise<NodeSimResult> {
    this.uninstallBug = installBug(this.options.bug);
    // A rejection nobody handles would end a real node's process: a failure of the run, not of this one.
    const onUnhandled = (reason: unknown) => void this.fail('unhandled rejection', (reason as Error)?.stack ?? String(reason));
    process.on('unhandledRejection', onUnhandled);
    try {
      for (let id = 1; id <= this.options.nodeCount; id++) {
        const dir = join(this.root, `n${id}`);
        this.nodes.push({ id, dir, state: 'down', inc: undefined, episodeTicksLeft: 0, starts: 0, appliedSeen: new Map(), skew: new Skew(this.clock), tickDebt: 0, clockTicksLeft: 0 });
      }
      for (const n of this.nodes) await this.start(n);
      await this.untilTicks('every range has a leader', 300, async () => (await this.rangesWithoutLeader()).length === 0);
      const clients = Array.from({ length: this.options.clientCount }, (_, i) => this.client(i + 1, this.rng.fork()));
      for (let t = 0; t < this.options.faultTicks; t++) {
        await this.nemesisStep();
        await this.tick();
      }
      this.phase = 'healing';
      await this.heal();
      await this.untilDone('clients finish', Promise.all(clients), 200);
      await this.converge();
      await this.finalReads();
      this.checkHistory();
      this.phase = 'done';
      return { stats: await this.stats(), trace: this.trace };
    } catch (err) {
      throw this.failure ?? (err instanceof SimFailure ? err : new SimFailure(this.options, 'run', (err as Error).stack ?? String(err)));
    } finally {
      this.phase = 'done';
      await this.closeAll();
      this.uninstallBug?.();
      process.off('unhandledRejection', onUnhandled);
      rmSync(this.root, { recursive: true, force: true });
    }
  }

  // ---------------------------------------------------------------------------
  // Time

  /** Runs the event loop until nothing is left to do now: deliveries, core rounds, flushes, promise chains. */
  private async settle(): Promise<void> {
    let quiet = 0;
    for (let turn = 0; turn < SETTLE_TURNS_MAX; turn++) {
      if (this.failure !== undefined) throw this.failure;
      await new Promise<void>((resolve) => setImmediate(resolve));
      const delivered = this.network.deliver();
      const busy = this.nodes.some((n) => n.inc?.node !== undefined && !n.inc.dead && n.inc.node.host.isBusy);
      quiet = delivered === 0 && !busy ? quiet + 1 : 0;
      if (quiet >= 2) return;
    }
    throw this.fail('livelock', `the cluster did not settle within ${SETTLE_TURNS_MAX} event-loop turns at ${this.clock.nowMs()} ms`);
  }

  /** One Host tick of virtual time: timers due meanwhile fire in order, then every running node ticks. */
  private async tick(): Promise<void> {
    const target = this.clock.nowMs() + TICK_MS;
    while (this.clock.fireNext(target)) await this.settle();
    this.network.advance(1);
    this.tickCount++;
    for (const n of this.nodes) {
      if (n.state !== 'up' || n.inc?.node === undefined || n.inc.dead) continue;
      // At its clock's rate: a fast clock's tick timer fires more often, a slow one's less.
      for (n.tickDebt += n.skew.rate; n.tickDebt >= 1; n.tickDebt--) n.inc.node.host.tick();
    }
    await this.settle();
    this.checkBounds();
    if (this.tickCount % STATUS_SAMPLE_TICKS === 0) await this.sampleStatuses();
  }

  /** Ticks until `done` holds (it may tick itself), at most `ticksMax` ticks here. */
  private async untilTicks(what: string, ticksMax: number, done: () => Promise<boolean>): Promise<void> {
    for (let t = 0; t <= ticksMax; t++) {
      if (await done()) return;
      await this.tick();
    }
    throw this.fail('liveness', `${what}: not within ${ticksMax} ticks`);
  }

  /** Ticks until `work` settles (at most `ticksMax`), returning its value. */
  private async untilDone<T>(what: string, work: Promise<T>, ticksMax: number): Promise<T> {
    const outcome = watch(work);
    await this.settle();
    for (let t = 0; outcome() === undefined && t < ticksMax; t++) await this.tick();
    return valueOf(outcome(), () => this.fail('liveness', `${what}: not within ${ticksMax} ticks`));
  }

  /** Awaits work that needs no time (a status read), turning the event loop meanwhile. */
  private async pumped<T>(work: Promise<T>): Promise<T> {
    const outcome = watch(work);
    for (let turn = 0; outcome() === undefined && turn <= SETTLE_TURNS_MAX; turn++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.network.deliver();
    }
    return valueOf(outcome(), () => this.fail('livelock', 'work that needs no time did not finish without time passing'));
  }

  // ---------------------------------------------------------------------------
  // Nodes

  private async start(n: SimNode): Promise<void> {
    let markDied = () => undefined as void;
    const died = new Promise<void>((resolve) => (markDied = resolve));
    const inc: Incarnation = { clock: new NodeClock(this.clock, n.skew), node: undefined, dead: false, writesUntilCrash: undefined, crashAfterWrite: false, died, markDied, closing: undefined };
    n.inc = inc;
    n.starts++;
    const peers = Object.fromEntries(this.nodes.filter((m) => m.id !== n.id).map((m) => [m.id, `memory:${m.id}`]));
    const node = await this.pumped(
      FlotillaNode.start({
        nodeId: n.id,
        dir: n.dir,
        listen: { host: '127.0.0.1', port: 0 },
        peers,
        initialRangeCount: this.options.initialRangeCount,
        coreCount: this.options.coreCount,
        logger: silentLogger(() => this.clock.nowMs()),
        transport: { endpoint: guarded(this.network.endpoint(n.id), () => inc.dead), address: `memory:${n.id}` },
        clock: inc.clock,
        disk: () => ({ usedBytes: 0, availableBytes: 1e12 }),
        metaDutyIntervalMs: 1_000,
        requestDeadlineMs: REQUEST_DEADLINE_MS,
        consistencyCheckIntervalMs: 0,
        placement: {
          suspectAfterMs: 3_000,
          downAfterMs: 15_000,
          stepRetryMs: 1_000,
          operatorTimeoutMs: 30_000,
          paused: false,
          // With merges: any two neighbours cold for 3 s merge (the workload is light: 1,000 ops/s counts as cold).
          ...(this.options.merges ? { scheduler: { mergeColdSec: 3, mergeLoadOpsPerSec: 1_000, mergeSizeBytes: 64 * 1024 * 1024 } } : {}),
        },
        hostOptions: {
          coreMode: 'inline',
          ticker: { kind: 'manual' },
          // Per incarnation: a restarted node's forwarded request ids start elsewhere (Host.nextRequestId).
          seed: this.options.seed * 97 + n.id + 7_919 * n.starts,
          storeIo: { kind: 'simulated', beforeWrite: () => this.beforeWrite(n, inc), afterWrite: () => this.afterWrite(n, inc) },
          // Checkpoints of the log tail every few rounds, so crashes and restarts meet them often.
          storeTail: { recordsMax: SIM_TAIL_RECORDS_MAX },
          compactionTriggerEntries: this.options.compactionTriggerEntries,
          compactionKeepEntries: this.options.compactionKeepEntries,
        },
        onFatal: (err) => {
          if (inc.dead || err instanceof SimulatedCrash || err.message.includes('crashed (simulated)')) return;
          this.fail('node died', `node ${n.id} stopped on a fatal error it was not crashed into: ${err.stack ?? err.message}`);
        },
      }),
    );
    inc.node = node;
    n.state = 'up';
  }

  /**
   * The store's crash point: an armed node dies at its chosen write, losing that write and all after it.
   * Every write first takes a turn of the event loop, as a sync takes time: what the node sent meanwhile
   * is out before the write is durable.
   */
  private async beforeWrite(n: SimNode, inc: Incarnation): Promise<void> {
    // Turns enough for the core's output to reach the Host and the Host's flush to send it.
    for (let turn = 0; turn < WRITE_LATENCY_TURNS; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
    if (inc.dead) throw new SimulatedCrash(n.id);
    if (inc.writesUntilCrash === undefined) return;
    inc.writesUntilCrash--;
    if (inc.writesUntilCrash > 0 || inc.crashAfterWrite) return;
    this.crash(n);
    throw new SimulatedCrash(n.id);
  }

  /**
   * The other crash point: the armed write committed (what it holds survives, as in the page cache)
   * and the node dies before it acts on that — no acknowledgement, vote or answer the write promised
   * goes out.
   */
  private afterWrite(n: SimNode, inc: Incarnation): void {
    if (inc.dead) throw new SimulatedCrash(n.id);
    if (inc.writesUntilCrash !== 0 || !inc.crashAfterWrite) return;
    this.crash(n);
    throw new SimulatedCrash(n.id);
  }

  /** The node is gone now: nothing it does from here reaches anyone, and its store takes no more writes. */
  private crash(n: SimNode): void {
    const inc = n.inc!;
    if (inc.dead) return;
    inc.dead = true;
    inc.clock.kill();
    inc.markDied();
    const wasPaused = n.state === 'paused';
    n.state = 'down';
    if (wasPaused) this.clogPausedLinks();
    this.counts.crashes++;
    this.note(`crash node ${n.id}`);
    // Closed on a later turn: the crash may be inside one of the node's own calls.
    inc.closing = new Promise<void>((resolve) => setImmediate(resolve)).then(() => inc.node?.close().catch(() => undefined));
  }

  private async restart(n: SimNode): Promise<void> {
    await this.pumped(n.inc?.closing ?? Promise.resolve());
    this.note(`restart node ${n.id}`);
    await this.start(n);
  }

  private pause(n: SimNode): void {
    n.state = 'paused';
    n.inc!.clock.pause();
    this.clogPausedLinks();
    this.counts.pauses++;
    this.note(`pause node ${n.id}`);
  }

  private resume(n: SimNode): void {
    n.state = 'up';
    this.clogPausedLinks();
    n.inc!.clock.resume();
    this.note(`resume node ${n.id}`);
  }

  /**
   * A link holds its traffic while either end is paused: one node's resume must not release links to
   * another still paused, and a paused node that crashes (an armed crash still fires: its core keeps
   * writing what it had) releases its own.
   */
  private clogPausedLinks(): void {
    for (const a of this.nodes) {
      for (const b of this.nodes) {
        if (a === b) continue;
        if (a.state === 'paused' || b.state === 'paused') this.network.clog(a.id, b.id);
        else this.network.unclog(a.id, b.id);
      }
    }
  }

  private running(): SimNode[] {
    return this.nodes.filter((n) => n.state === 'up');
  }

  private async closeAll(): Promise<void> {
    for (const n of this.nodes) {
      const inc = n.inc;
      if (inc === undefined) continue;
      if (!inc.dead) {
        inc.dead = true;
        inc.clock.kill();
        inc.markDied();
        inc.closing = inc.node?.close().catch(() => undefined);
      }
      // Bounded: a close that cannot finish without time is abandoned with the run's directory.
      await Promise.race([inc.closing, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    }
  }

  // ---------------------------------------------------------------------------
  // Nemesis

  private async nemesisStep(): Promise<void> {
    if (this.options.clockFaults) this.clockStep();
    if (this.options.merges && this.mergeRng.intBelow(1_000_000) < ADMIN_MERGE_CHANCE * 1_000_000) this.adminMerge();
    const rng = this.nemesisRng;
    const chance = (p: number) => rng.intBelow(1_000_000) < p * 1_000_000;
    for (const n of this.nodes) {
      if (n.state === 'up' || n.episodeTicksLeft <= 0) continue;
      if (--n.episodeTicksLeft > 0) continue;
      if (n.state === 'paused') this.resume(n);
      else await this.restart(n);
    }
    if (this.episode !== undefined && --this.episode.ticksLeft <= 0) {
      this.episode.heal();
      this.note(`heal ${this.episode.kind}`);
      this.episode = undefined;
    }
    if (chance(this.options.adminChance)) this.adminOperation(rng);
    const crashes = this.options.profile === 'crashes';
    if (!chance(this.options.faultChance)) return;
    const up = this.running();
    // Keep a majority running or paused-and-back-soon: a run that is all faults tests little.
    const majority = Math.floor(this.options.nodeCount / 2) + 1;
    const kind = crashes ? (rng.intBelow(4) === 0 ? 'crash' : 'crashAtWrite') : ['crash', 'crashAtWrite', 'pause', 'partition', 'isolate', 'oneWay', 'lossy'][rng.intBelow(7)]!;
    const ticks = crashes ? 2 + rng.intBelow(20) : 5 + rng.intBelow(EPISODE_TICKS_MAX);
    const floor = crashes ? 1 : majority - (rng.intBelow(4) === 0 ? 1 : 0);
    // While a node is isolated the rest stays whole: it must elect and write past the deposed leaders.
    if ((kind === 'crash' || kind === 'crashAtWrite' || kind === 'pause') && up.length > floor && this.focus === undefined) {
      const victim = up[rng.intBelow(up.length)]!;
      victim.episodeTicksLeft = ticks;
      if (kind === 'pause') this.pause(victim);
      else if (kind === 'crash') this.crash(victim);
      else {
        victim.inc!.writesUntilCrash = 1 + rng.intBelow(crashes ? 4 : 20);
        // Its own stream, as bursts: a run without after-write crashes draws exactly as before.
        victim.inc!.crashAfterWrite = this.options.crashAfterWrites && this.crashPointRng.intBelow(2) === 0;
        this.note(`arm crash of node ${victim.id} ${victim.inc!.crashAfterWrite ? 'after' : 'at'} write ${victim.inc!.writesUntilCrash}`);
        // Down once it crashes; until then it runs (a node that never writes again is crashed at the episode's end).
        victim.episodeTicksLeft = ticks;
      }
      return;
    }
    if (this.episode !== undefined) return;
    const ids = this.nodes.map((n) => n.id);
    if (kind === 'isolate') {
      // One node alone, its leaders deposed on the other side once that side elects, while half the
      // clients keep talking to it: a leader that serves reads without confirming it leads is caught.
      // The node leading the most ranges (ties: the lowest id): its leaders are the ones deposed.
      let alone: SimNode | undefined;
      let most = -1;
      for (const n of up) {
        const leading = ((await this.statusesOf(n)) ?? []).filter((st) => st.role === 'leader').length;
        if (leading > most) [alone, most] = [n, leading];
      }
      if (alone === undefined) return;
      this.network.partition([alone.id], ids.filter((id) => id !== alone.id));
      this.focus = alone.id;
      this.counts.partitions++;
      this.note(`isolate node ${alone.id} with half the clients`);
      this.episode = {
        kind: 'isolation',
        // Long enough for the rest to elect and write past it.
        ticksLeft: 30 + ticks,
        heal: () => {
          this.focus = undefined;
          this.healLinks();
        },
      };
    } else if (kind === 'partition') {
      const shuffled = ids.map((id) => ({ id, r: rng.intBelow(1_000_000) })).sort((a, b) => a.r - b.r || a.id - b.id).map((x) => x.id);
      const cut = 1 + rng.intBelow(ids.length - 1);
      const a = shuffled.slice(0, cut);
      const b = shuffled.slice(cut);
      this.network.partition(a, b);
      this.counts.partitions++;
      this.note(`partition ${a.join(',')} | ${b.join(',')}`);
      this.episode = { kind: 'partition', ticksLeft: ticks, heal: () => this.healLinks() };
    } else if (kind === 'oneWay') {
      const from = ids[rng.intBelow(ids.length)]!;
      const others = ids.filter((id) => id !== from);
      const cutTo = others.filter(() => rng.intBelow(2) === 0);
      for (const to of cutTo.length > 0 ? cutTo : others) this.network.cut(from, to);
      this.counts.partitions++;
      this.note(`one-way cut from node ${from}`);
      this.episode = { kind: 'one-way cut', ticksLeft: ticks, heal: () => this.healLinks() };
    } else if (kind === 'lossy') {
      const faults = {
        dropProbability: [0, 0.05, 0.2][rng.intBelow(3)]!,
        duplicateProbability: [0, 0.05, 0.2][rng.intBelow(3)]!,
        reorderWindowCount: [0, 2, 8][rng.intBelow(3)]!,
        delayTicksMin: 0,
        delayTicksMax: [0, 1, 5][rng.intBelow(3)]!,
      };
      this.network.setFaults(faults);
      this.counts.lossyEpisodes++;
      this.note(`lossy links ${JSON.stringify(faults)}`);
      this.episode = { kind: 'lossy links', ticksLeft: ticks, heal: () => this.network.setFaults(NO_LINK_FAULTS) };
    }
  }

  /** Heals cuts and partitions, keeping paused nodes' links clogged. */
  private healLinks(): void {
    this.network.healAll();
  }

  /** A running node to ask and a user range its router knows, drawn from `rng` (undefined: none yet). */
  private pickRange(rng: SeededRng): { via: FlotillaNode; range: RangeDescriptor } | undefined {
    const up = this.running();
    if (up.length === 0) return undefined;
    const via = up[rng.intBelow(up.length)]!.inc!.node!;
    const ranges = via.store.knownRanges().filter((r) => r.rangeId !== META_RANGE_ID);
    if (ranges.length === 0) return undefined;
    return { via, range: ranges[rng.intBelow(ranges.length)]! };
  }

  private adminOperation(rng: SeededRng): void {
    const picked = this.pickRange(rng);
    if (picked === undefined) return;
    const { via, range } = picked;
    const what = rng.intBelow(3);
    let work: Promise<unknown>;
    let label: string;
    if (what === 0) {
      // A split key inside the range: one of the workload's keys (so splits cut through written data), or between two.
      const inside = this.keys.map(keyBytes).filter((k) => inRange(range, k));
      if (inside.length < 2) return;
      const key = inside[1 + rng.intBelow(inside.length - 1)]!;
      label = `split range ${range.rangeId} at ${Buffer.from(key).toString('hex')}`;
      work = via.store.split(range.rangeId, key);
    } else if (what === 1 || this.options.nodeCount <= 3) {
      const to = range.replicas[rng.intBelow(range.replicas.length)]!;
      label = `transfer leader of range ${range.rangeId} to node ${to}`;
      work = via.view.operator({ kind: 'transferLeader', rangeId: range.rangeId, to });
    } else {
      const from = range.replicas[rng.intBelow(range.replicas.length)]!;
      const candidates = this.nodes.map((n) => n.id).filter((id) => !range.replicas.includes(id));
      if (candidates.length === 0) return;
      const to = candidates[rng.intBelow(candidates.length)]!;
      label = `move range ${range.rangeId} from node ${from} to node ${to}`;
      work = via.view.operator({ kind: 'moveReplica', rangeId: range.rangeId, from, to });
    }
    this.note(label);
    work.then(
      () => this.counts.adminOk++,
      () => this.counts.adminFailed++,
    );
  }

  /** An admin merge of a random range into its left neighbour, on the merges' own stream; refused (412) when they do not fit. */
  private adminMerge(): void {
    const picked = this.pickRange(this.mergeRng);
    if (picked === undefined) return;
    const { via, range } = picked;
    this.note(`merge range ${range.rangeId} into its left neighbour`);
    via.view.operator({ kind: 'merge', rangeId: range.rangeId }).then(
      () => this.counts.adminOk++,
      () => this.counts.adminFailed++,
    );
  }

  /**
   * Clock faults, on their own random stream: now and then one node's clock
   * runs 3x fast or at half speed for a while, or steps 1-5 s forward or
   * back (its processes read it, and their tick timers follow it).
   */
  private clockStep(): void {
    const rng = this.clockRng;
    for (const n of this.nodes) {
      if (n.clockTicksLeft > 0 && --n.clockTicksLeft === 0) {
        n.skew.setRate(1);
        this.note(`clock of node ${n.id} back to normal speed`);
      }
    }
    if (rng.intBelow(1_000_000) >= CLOCK_FAULT_CHANCE * 1_000_000) return;
    const n = this.nodes[rng.intBelow(this.nodes.length)]!;
    const what = rng.intBelow(4);
    if (what < 2) {
      if (n.clockTicksLeft > 0) return;
      const rate = what === 0 ? 3 : 0.5;
      n.skew.setRate(rate);
      n.clockTicksLeft = 10 + rng.intBelow(60);
      this.note(`clock of node ${n.id} runs at ${rate}x for ${n.clockTicksLeft} ticks`);
    } else {
      // A few seconds: far past a lease (600 ms), and a stepped-back clock stretches every deadline on it by as much.
      const ms = (what === 2 ? 1 : -1) * (1_000 + rng.intBelow(4_000));
      n.skew.step(ms);
      this.note(`clock of node ${n.id} steps ${ms > 0 ? '+' : ''}${ms} ms`);
    }
  }

  private async heal(): Promise<void> {
    for (const n of this.nodes) {
      if (n.clockTicksLeft === 0) continue;
      n.clockTicksLeft = 0;
      n.skew.setRate(1);
    }
    this.episode?.heal();
    this.episode = undefined;
    this.network.healAll();
    this.network.setFaults(NO_LINK_FAULTS);
    for (const n of this.nodes) {
      if (n.state === 'paused') this.resume(n);
      if (n.inc !== undefined) n.inc.writesUntilCrash = undefined;
    }
    for (const n of this.nodes) if (n.state === 'down') await this.restart(n);
    this.note('healed');
  }

  // ---------------------------------------------------------------------------
  // Clients

  private async client(clientId: number, rng: SeededRng): Promise<void> {
    let n = 0;
    // Its own stream: bursts must not shift the draws of runs without them.
    const bursts = new SeededRng((Math.imul(this.options.seed, 0x9e3779b1) ^ Math.imul(clientId, 0x85ebca6b) ^ BURST_SALT) >>> 0);
    while (this.phase === 'faults') {
      await this.sleep(rng.intBelow(THINK_MS_MAX));
      if (this.phase !== 'faults') return;
      const focus = this.focus === undefined ? undefined : this.nodes[this.focus - 1];
      const target = focus !== undefined && rng.intBelow(2) === 0 ? focus : this.nodes[rng.intBelow(this.nodes.length)]!;
      const inc = target.inc;
      if (target.state === 'down' || inc?.node === undefined || inc.dead) continue;
      const key = this.keys[rng.intBelow(this.keys.length)]!;
      // Through an isolated node, reads (what a deposed leader could get wrong); elsewhere the usual mix, writes mostly.
      const roll = target === focus ? rng.intBelow(40) : rng.intBelow(100);
      const value = `c${clientId}-${n++}`;
      if (roll < 30) await this.opGet(clientId, inc, key, rng.intBelow(5) === 0 ? 'stale' : 'linearizable');
      else if (roll < 40) await this.opScan(clientId, inc, rng, rng.intBelow(4) === 0 ? 'stale' : 'linearizable');
      else if (roll < 70) {
        const extra = this.options.writeBurstMax > 1 ? bursts.intBelow(this.options.writeBurstMax) : 0;
        // The burst's keys may repeat: writes to one key in one entry must apply in arrival order.
        const burst = Array.from({ length: extra }, (_, j) => this.opWrite(clientId, inc, this.keys[bursts.intBelow(this.keys.length)]!, { kind: 'put', value: `${value}.${j + 1}` }));
        await Promise.all([this.opWrite(clientId, inc, key, { kind: 'put', value }), ...burst]);
      }
      else if (roll < 85) await this.opWrite(clientId, inc, key, { kind: 'put', value, ifVersion: await this.guessVersion(key, rng) });
      else await this.opWrite(clientId, inc, key, rng.intBelow(2) === 0 ? { kind: 'delete' } : { kind: 'delete', ifVersion: await this.guessVersion(key, rng) });
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }

  /** A version to condition on: 0 (only if absent) or one a recent operation on the key saw. */
  private async guessVersion(key: string, rng: SeededRng): Promise<number> {
    const seen = this.ops.filter((o) => o.key === key && o.output !== null).slice(-4);
    const versions = [0, ...seen.map((o) => (o.output!.kind === 'found' || o.output!.kind === 'written' ? o.output!.version : o.output!.kind === 'refused' ? o.output!.currentVersion : 0))];
    return versions[rng.intBelow(versions.length)]!;
  }

  /** Runs `call` against an incarnation: its outcome, or `died` if the node died first. */
  private async outcomeOf<T>(inc: Incarnation, call: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; err: unknown } | { died: true }> {
    const work = call().then(
      (value) => ({ ok: true as const, value }),
      (err: unknown) => ({ ok: false as const, err }),
    );
    const o = await Promise.race([work, inc.died.then(() => ({ died: true as const }))]);
    // Answered after the node died: nobody could have received that answer.
    return inc.dead && !('died' in o) ? { died: true } : o;
  }

  private async opGet(clientId: number, inc: Incarnation, key: string, consistency: 'linearizable' | 'stale'): Promise<void> {
    const invokeMs = this.clock.nowMs();
    const o = await this.outcomeOf(inc, () => inc.node!.store.get(keyBytes(key), { consistency }));
    if ('died' in o || !o.ok) return; // a read that failed observed nothing
    const found = o.value;
    const completeMs = this.clock.nowMs();
    if (consistency === 'stale') {
      this.staleReads.push({ key, value: found === undefined ? null : text(found.value), completeMs });
      return;
    }
    this.record(clientId, key, invokeMs, completeMs, { kind: 'get' }, found === undefined ? { kind: 'absent' } : { kind: 'found', value: text(found.value), version: found.version });
  }

  /** A scan over a span of the workload's keys; a linearizable one is a get of every key in the span. */
  private async opScan(clientId: number, inc: Incarnation, rng: SeededRng, consistency: 'linearizable' | 'stale'): Promise<void> {
    const sorted = [...this.keys].sort((a, b) => Buffer.compare(keyBytes(a), keyBytes(b)));
    const from = rng.intBelow(sorted.length);
    const to = from + 1 + rng.intBelow(sorted.length - from);
    const start = keyBytes(sorted[from]!);
    const end = to < sorted.length ? keyBytes(sorted[to]!) : undefined;
    const invokeMs = this.clock.nowMs();
    const o = await this.outcomeOf(inc, () => inc.node!.store.scan({ start, ...(end === undefined ? {} : { end }), limit: 1_000, consistency }));
    if ('died' in o || !o.ok) return;
    const completeMs = this.clock.nowMs();
    const page = o.value;
    if (page.cursor !== undefined) throw this.fail('scan', `a scan of ${to - from} keys with limit 1000 returned a cursor`);
    const items = new Map(page.items.map((i) => [text(i.key), i]));
    for (const k of items.keys()) if (!sorted.slice(from, to).includes(k)) throw this.fail('scan', `a scan of [${sorted[from]}, ${sorted[to] ?? 'end'}) returned key ${k}`);
    for (const key of sorted.slice(from, to)) {
      const item = items.get(key);
      if (consistency === 'stale') this.staleReads.push({ key, value: item === undefined ? null : text(item.value), completeMs });
      else this.record(clientId, key, invokeMs, completeMs, { kind: 'get' }, item === undefined ? { kind: 'absent' } : { kind: 'found', value: text(item.value), version: item.version });
    }
  }

  private async opWrite(clientId: number, inc: Incarnation, key: string, input: Exclude<RegisterInput, { kind: 'get' }>): Promise<void> {
    const invokeMs = this.clock.nowMs();
    if (input.kind === 'put') {
      let puts = this.putsByKey.get(key);
      if (puts === undefined) this.putsByKey.set(key, (puts = new Map()));
      puts.set(input.value, invokeMs);
    }
    const condition = input.ifVersion === undefined ? {} : { ifVersion: input.ifVersion };
    const o = await this.outcomeOf(inc, async (): Promise<RegisterOutput> => {
      if (input.kind === 'put') return { kind: 'written', version: (await inc.node!.store.put(keyBytes(key), Buffer.from(input.value), condition)).version };
      await inc.node!.store.delete(keyBytes(key), condition);
      return { kind: 'deleted' };
    });
    if ('died' in o) return this.record(clientId, key, invokeMs, null, input, null);
    if (o.ok) return this.record(clientId, key, invokeMs, this.clock.nowMs(), input, o.value);
    const err = o.err;
    if (err instanceof KvError && err.code === 'PRECONDITION_FAILED') {
      return this.record(clientId, key, invokeMs, this.clock.nowMs(), input, { kind: 'refused', currentVersion: err.details.currentVersion ?? 0 });
    }
    // The store promises UNAVAILABLE and DISK_FULL wrote nothing; the simulation holds it to that.
    if (err instanceof KvError && (err.code === 'UNAVAILABLE' || err.code === 'DISK_FULL' || err.code === 'INVALID_ARGUMENT')) return;
    // TIMEOUT, CLOSED and anything else: the outcome is unknown.
    this.record(clientId, key, invokeMs, null, input, null);
  }

  private record(clientId: number, key: string, invokeMs: number, completeMs: number | null, input: RegisterInput, output: RegisterOutput | null): void {
    const op: KeyedOperation = { id: this.nextOpId++, clientId, key, invokeMs, completeMs, input, output };
    this.ops.push(op);
    if (output === null) this.counts.unknown++;
    this.traceLine(`${invokeMs}-${completeMs ?? '?'} c${clientId} ${key} ${JSON.stringify(input)} → ${JSON.stringify(output)}`);
  }

  private note(what: string): void {
    this.traceLine(`${this.clock.nowMs()} ${what}`);
  }

  private traceLine(line: string): void {
    this.trace.push(line);
    this.onTrace?.(line);
  }

  // ---------------------------------------------------------------------------
  // Checks

  private fail(check: string, detail: string): SimFailure {
    this.failure ??= new SimFailure(this.options, check, detail);
    return this.failure;
  }

  /** Every running node's queues, every tick: none may grow without bound. */
  private checkBounds(): void {
    for (const n of this.nodes) {
      const node = n.inc?.node;
      if (node === undefined || n.inc!.dead) continue;
      const pending = node.host.pendingCounts();
      if (pending.requests + pending.forwards > HOST_PENDING_MAX) throw this.fail('bounded queues', `node ${n.id} holds ${pending.requests} core requests and ${pending.forwards} forwards`);
      if (node.store.stats.requestsInFlight > STORE_REQUESTS_IN_FLIGHT_MAX) throw this.fail('bounded queues', `node ${n.id} has ${node.store.stats.requestsInFlight} store calls in flight`);
    }
    if (this.network.pendingCount() > NETWORK_PENDING_MAX) throw this.fail('bounded queues', `${this.network.pendingCount()} deliveries in flight`);
    if (this.clock.pendingCount > TIMERS_PENDING_MAX) throw this.fail('bounded queues', `${this.clock.pendingCount} timers pending`);
  }

  /** Election Safety per range, and applied indexes that never go back (applied state is durable). */
  private async sampleStatuses(): Promise<void> {
    for (const n of this.running()) {
      const statuses = await this.statusesOf(n);
      if (statuses === undefined) continue;
      for (const s of statuses) {
        if (s.role === 'leader') {
          const key = `${s.shardId}/${s.term}`;
          const seen = `node ${n.id} at ${this.clock.nowMs()} ms: epoch ${s.epoch} [${hexOf(s.start)}, ${hexOf(s.end)}) voters ${s.voters.join(',')} last ${s.lastIndex}`;
          const other = this.leadersByTerm.get(key);
          if (other !== undefined && other.node !== n.id) throw this.fail('election safety', `range ${s.shardId} has two leaders in term ${s.term}: ${other.seen}; ${seen}\n  ${await this.rangesView()}`);
          this.leadersByTerm.set(key, { node: n.id, seen });
        }
        const seen = n.appliedSeen.get(s.shardId) ?? 0;
        // A replica re-created here (moved away and back) starts at 0 and jumps to a snapshot past `seen`.
        if (s.applied > 0 && s.applied < seen) throw this.fail('durable apply', `node ${n.id} range ${s.shardId}: applied index went back from ${seen} to ${s.applied}`);
        n.appliedSeen.set(s.shardId, Math.max(seen, s.applied));
      }
      const held = new Set(statuses.map((s) => s.shardId));
      for (const rangeId of [...n.appliedSeen.keys()]) if (!held.has(rangeId)) n.appliedSeen.delete(rangeId);
    }
  }

  private async statusesOf(n: SimNode): Promise<ShardStatus[] | undefined> {
    const inc = n.inc;
    if (inc?.node === undefined || inc.dead) return undefined;
    try {
      return await this.pumped(inc.node.host.shards());
    } catch {
      return undefined;
    }
  }

  private async rangesWithoutLeader(): Promise<number[]> {
    const leaderless: number[] = [];
    const byRange = new Map<number, ShardStatus[]>();
    for (const n of this.running()) for (const s of (await this.statusesOf(n)) ?? []) byRange.set(s.shardId, [...(byRange.get(s.shardId) ?? []), s]);
    for (const [rangeId, list] of byRange) if (!list.some((s) => s.role === 'leader')) leaderless.push(rangeId);
    return leaderless;
  }

  /**
   * After healing: the meta range's descriptors tile the key space without
   * overlap; each range has one leader, and every replica the descriptor
   * names holds it at the leader's epoch, bounds and applied index; then a
   * consistency check per range proves the replicas' data equal.
   */
  private async converge(): Promise<void> {
    for (let t = 0; ; t++) {
      const problem = await this.convergenceProblem();
      if (problem === undefined) break;
      if (t >= this.options.healTicksMax) throw this.fail('convergence', `not converged within ${this.options.healTicksMax} ticks of healing: ${problem}\n  placement driver: ${await this.placementView()}\n  ${await this.rangesView()}`);
      await this.tick();
    }
    const via = this.nodes[0]!.inc!.node!;
    if (this.options.merges) {
      // With merges the driver goes on merging cold neighbours after convergence, and a range merged away (or
      // frozen) mid-check has no leader to check. Paused, it plans nothing more and finishes what it started:
      // the cluster must then converge again, with no operator left, before the checks.
      await this.untilDone('pause the placement driver', via.store.updatePlacementSettings({ paused: false, replicationFactor: 3 }, { paused: true }), 100);
      for (let t = 0; ; t++) {
        const problem = (await this.convergenceProblem()) ?? ((await this.untilDone('read the placement status', via.view.placement(), 50)) as { operators: unknown[] }).operators.length;
        if (problem === 0) break;
        if (t >= this.options.healTicksMax) throw this.fail('convergence', `not converged within ${this.options.healTicksMax} ticks of pausing the driver: ${problem}\n  placement driver: ${await this.placementView()}\n  ${await this.rangesView()}`);
        await this.tick();
      }
    }
    const descriptors = await this.untilDone('read the meta range', via.store.metaDescriptors(), 100);
    for (const d of descriptors) {
      const leader = await this.leaderOf(d.rangeId);
      const node = this.nodes.find((n) => n.id === leader)!.inc!.node!;
      const report = await this.retried(`consistency check of range ${d.rangeId}`, () => node.view.consistencyCheck!(d.rangeId) as Promise<{ ok: boolean }>);
      if (!report.ok) throw this.fail('replica consistency', `range ${d.rangeId}: replicas differ: ${JSON.stringify(report)}`);
    }
  }

  /** What every node's router believes of each range, and what each replica says, for a failure's message. */
  private async rangesView(): Promise<string> {
    const lines: string[] = [];
    for (const n of this.running()) {
      const node = n.inc!.node!;
      const known = node.store.knownRanges().map((r) => `${r.rangeId}@${r.epoch}[${hexOf(r.start)},${hexOf(r.end)}) on ${r.replicas.join(',')}`);
      const held = ((await this.statusesOf(n)) ?? []).map((s) => `${s.shardId}:${s.role}/${s.leader}@${s.epoch} t${s.term} a${s.applied} v${s.voters.join(',')}${s.learners.length > 0 ? ` l${s.learners.join(',')}` : ''}`);
      lines.push(`node ${n.id} routes ${known.join(' ')}; holds ${held.join(' ')}; hears ${node.host.livePeers().join(',')}`);
    }
    const down = this.nodes.flatMap((a) => this.nodes.filter((b) => b !== a && !this.network.isLinkUp(a.id, b.id)).map((b) => `${a.id}>${b.id}`));
    const clogged = [...((this.network as unknown as { fabric: { cloggedLinks: Set<string> } }).fabric.cloggedLinks ?? [])];
    lines.push(`links down: ${down.join(' ') || 'none'}; clogged: ${clogged.join(' ') || 'none'}`);
    return lines.join('\n  ');
  }

  /** The placement driver's view from the first running node, for a failure's message. */
  private async placementView(): Promise<string> {
    const via = this.running()[0]?.inc?.node;
    if (via === undefined) return 'no node running';
    try {
      return JSON.stringify(await this.untilDone('read the placement status', via.view.placement(), 50));
    } catch (err) {
      return `unreadable (${(err as Error).message})`;
    }
  }

  /** The range's leader, waiting out an election (the scheduler keeps moving leaders after convergence). */
  private async leaderOf(rangeId: number): Promise<number> {
    for (let t = 0; t <= LEADER_WAIT_TICKS; t++) {
      for (const n of this.running()) for (const s of (await this.statusesOf(n)) ?? []) if (s.shardId === rangeId && s.role === 'leader') return n.id;
      await this.tick();
    }
    throw this.fail('convergence', `range ${rangeId} has had no leader for ${LEADER_WAIT_TICKS} ticks after convergence\n  ${await this.rangesView()}`);
  }

  private async convergenceProblem(): Promise<string | undefined> {
    const via = this.running()[0]?.inc?.node;
    if (via === undefined) return 'no node running';
    let descriptors: RangeDescriptor[];
    try {
      descriptors = await this.untilDone('read the meta range', via.store.metaDescriptors(), 50);
    } catch (err) {
      return `meta range unreadable: ${(err as Error).message}`;
    }
    descriptors.sort((a, b) => Buffer.compare(a.start, b.start));
    for (let i = 1; i < descriptors.length; i++) {
      const prev = descriptors[i - 1]!;
      const cur = descriptors[i]!;
      if (prev.end === null || Buffer.compare(prev.end, cur.start) !== 0) return `meta ranges ${prev.rangeId} and ${cur.rangeId} do not abut (${hexOf(prev.end)} vs ${hexOf(cur.start)})`;
    }
    if (descriptors.at(-1)?.end !== null) return `the last meta range does not reach the end of the key space (${descriptors.map((d) => `${d.rangeId}@${d.epoch}[${hexOf(d.start)},${hexOf(d.end)})`).join(' ')})`;
    const statuses = new Map<number, ShardStatus[]>();
    for (const n of this.nodes) statuses.set(n.id, (await this.statusesOf(n)) ?? []);
    for (const d of descriptors) {
      const replicas = d.replicas.map((id) => ({ id, s: statuses.get(id)?.find((x) => x.shardId === d.rangeId) }));
      const missing = replicas.filter((r) => r.s === undefined);
      if (missing.length > 0) return `range ${d.rangeId}: nodes ${missing.map((r) => r.id).join(',')} named in meta hold no replica`;
      const leaders = replicas.filter((r) => r.s!.role === 'leader');
      if (leaders.length !== 1) return `range ${d.rangeId}: ${leaders.length} leaders (${replicas.map((r) => `node ${r.id}: ${r.s!.role} term ${r.s!.term} leader ${r.s!.leader} applied ${r.s!.applied}/${r.s!.commit}/${r.s!.lastIndex} voters ${r.s!.voters.join(',')} learners ${r.s!.learners.join(',')} quiesced ${r.s!.quiesced}`).join('; ')})`;
      const lead = leaders[0]!.s!;
      for (const r of replicas) {
        const s = r.s!;
        // Which leader a sleeping follower last heard of is not checked: one restarted while its group slept
        // knows none, one cut off through an election may name the old one, until the group next has work.
        if (s.epoch !== d.epoch || Buffer.compare(s.start, d.start) !== 0 || hexOf(s.end) !== hexOf(d.end)) return `range ${d.rangeId}: node ${r.id} holds epoch ${s.epoch} [${hexOf(s.start)}, ${hexOf(s.end)}), meta says epoch ${d.epoch} [${hexOf(d.start)}, ${hexOf(d.end)})`;
        if (s.applied !== lead.applied) return `range ${d.rangeId}: node ${r.id} applied/commit/last ${s.applied}/${s.commit}/${s.lastIndex} (quiesced ${s.quiesced}, term ${s.term}), leader node ${leaders[0]!.id} ${lead.applied}/${lead.commit}/${lead.lastIndex} (quiesced ${lead.quiesced}, term ${lead.term})`;
        if ([...s.voters].sort().join(',') !== [...d.replicas].sort().join(',')) return `range ${d.rangeId}: node ${r.id} has voters ${s.voters.join(',')}, meta says ${d.replicas.join(',')}`;
        if (s.learners.length > 0) return `range ${d.rangeId}: node ${r.id} still has learners ${s.learners.join(',')} (voters ${s.voters.join(',')})`;
      }
    }
    // No replica of a range the meta range does not list, nor one outside its descriptor's replicas (left behind by a move).
    for (const [id, list] of statuses) {
      for (const s of list) {
        const d = descriptors.find((x) => x.rangeId === s.shardId);
        if (d === undefined) return `node ${id} holds range ${s.shardId}, which the meta range does not list`;
        if (!d.replicas.includes(id)) return `node ${id} still holds a replica of range ${s.shardId} (replicas ${d.replicas.join(',')} at epoch ${d.epoch}; it is a ${s.role} at epoch ${s.epoch} term ${s.term} applied ${s.applied} voters ${s.voters.join(',')} learners ${s.learners.join(',')})`;
      }
    }
    // Each node's view of its replicas, kept by the cores' changes alone (what its placement heartbeats
    // carry), is what a full read of its cores says, both taken in one turn.
    for (const n of this.running()) {
      const host = n.inc?.node?.host;
      if (host === undefined || n.inc?.dead === true) continue;
      const [view, full] = await this.pumped(Promise.all([host.shardChanges(0), host.shards()]));
      const viewText = JSON.stringify(view.changed.map((c) => c.status).sort((a, b) => a.shardId - b.shardId));
      if (viewText !== JSON.stringify(full)) return `node ${n.id}: its view of its replicas differs from its cores'\n  view ${viewText}\n  full ${JSON.stringify(full)}`;
    }
    return undefined;
  }

  /** A linearizable read of every key after healing: what was acknowledged must be there. */
  private async finalReads(): Promise<void> {
    for (const key of this.keys) {
      const n = this.nodes[this.rng.intBelow(this.nodes.length)]!;
      const inc = n.inc!;
      const invokeMs = this.clock.nowMs();
      const found = await this.retried(`final read of ${key}`, () => inc.node!.store.get(keyBytes(key)));
      this.record(0, key, invokeMs, this.clock.nowMs(), { kind: 'get' }, found === undefined ? { kind: 'absent' } : { kind: 'found', value: text(found.value), version: found.version });
    }
  }

  /**
   * `call`, retried a second apart while it fails, as a client backs off: the placement driver keeps
   * balancing after convergence, and a router learns a moved range from the meta range at most once
   * per refresh interval.
   */
  private async retried<T>(what: string, call: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.untilDone(what, call(), 100);
      } catch (err) {
        if (attempt >= RETRY_ATTEMPTS_AFTER_HEALING || err instanceof SimFailure) throw this.fail('liveness', `${what} failed ${attempt} times after healing: ${(err as Error).message}\n  ${await this.rangesView()}`);
        for (let t = 0; t < RETRY_PAUSE_TICKS; t++) await this.tick();
      }
    }
  }

  private checkHistory(): void {
    const verdict = checkRegisterHistory(this.ops);
    if (verdict.kind === 'violation') throw this.fail('linearizability', describeVerdict(verdict));
    for (const r of this.staleReads) {
      if (r.value === null) continue;
      const invokedAt = this.putsByKey.get(r.key)?.get(r.value);
      if (invokedAt === undefined || invokedAt > r.completeMs) throw this.fail('stale read', `a stale read of ${r.key} returned ${r.value}, which no put of that key wrote before it completed`);
    }
  }

  private async stats(): Promise<NodeSimStats> {
    let snapshotsSent = 0;
    let leaseReads = 0;
    let localReads = 0;
    for (const n of this.nodes) {
      const node = n.inc?.node;
      if (node === undefined || n.inc!.dead) continue;
      localReads += node.host.stats.localReads;
      for (const c of await this.pumped(node.host.coreStats())) {
        snapshotsSent += c.snapshotsSent;
        leaseReads += c.leaseReads;
      }
    }
    const ranges = this.nodes[0]!.inc!.node!.store.knownRanges().length;
    return {
      ticks: this.tickCount,
      operations: this.ops.length,
      unknownOutcomes: this.counts.unknown,
      crashes: this.counts.crashes,
      pauses: this.counts.pauses,
      partitions: this.counts.partitions,
      lossyEpisodes: this.counts.lossyEpisodes,
      adminOk: this.counts.adminOk,
      adminFailed: this.counts.adminFailed,
      ranges,
      snapshotsSent,
      leaseReads,
      localReads,
    };
  }
}

type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly err: unknown };

/** How `work` settled, once it has (undefined until then), without awaiting it. */
function watch<T>(work: Promise<T>): () => Outcome<T> | undefined {
  let outcome: Outcome<T> | undefined;
  work.then(
    (value) => (outcome = { ok: true, value }),
    (err: unknown) => (outcome = { ok: false, err }),
  );
  return () => outcome;
}

/** The settled value, its error thrown, or `unsettled()` thrown when it has not settled. */
function valueOf<T>(outcome: Outcome<T> | undefined, unsettled: () => Error): T {
  if (outcome === undefined) throw unsettled();
  if (!outcome.ok) throw outcome.err;
  return outcome.value;
}

/**
 * The network endpoint as the node sees it, cut off the moment its
 * incarnation dies: a dead node sends nothing and hears nothing, even from
 * calls still unwinding inside it.
 */
function guarded(endpoint: Transport, dead: () => boolean): Transport {
  return {
    nodeId: endpoint.nodeId,
    start: (handlers: TransportHandlers) =>
      endpoint.start({
        onBatch: (from, batch) => (dead() ? undefined : handlers.onBatch(from, batch)),
        onUnreachable: (to) => (dead() ? undefined : handlers.onUnreachable?.(to)),
        onSnapshot: (stream) => (dead() ? undefined : handlers.onSnapshot?.(stream)),
      }),
    send: (to, batch) => !dead() && endpoint.send(to, batch),
    openSnapshot: (to, header): SnapshotSender => {
      if (!dead()) return endpoint.openSnapshot(to, header);
      return { write: () => Promise.reject(new Error('node crashed')), end: () => Promise.reject(new Error('node crashed')), abort: () => undefined };
    },
    setPeer: (id, address) => endpoint.setPeer(id, address),
    removePeer: (id) => endpoint.removePeer(id),
    stats: () => endpoint.stats(),
    close: () => endpoint.close(),
  };
}

/** Key i of n: first bytes spread over the user key space, so keys fall in different ranges. */
function simKey(i: number, n: number): string {
  const first = 0x10 + Math.floor((i * 0xe0) / n);
  return `${String.fromCharCode(first)}k${i}`;
}

const keyBytes = (key: string): Uint8Array => Buffer.from(key, 'latin1');
const text = (b: Uint8Array): string => Buffer.from(b).toString('latin1');
const hexOf = (b: Uint8Array | null): string => (b === null ? 'end' : Buffer.from(b).toString('hex'));

function inRange(r: RangeDescriptor, key: Uint8Array): boolean {
  return Buffer.compare(key, r.start) > 0 && (r.end === null || Buffer.compare(key, r.end) < 0);
}
