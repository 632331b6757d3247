// The deterministic cluster simulator: 3- or 5-node Raft clusters of RawNodes
// on one thread, with a virtual clock, a seeded PRNG, a faulty network, a
// fake durable disk per node, clients, a membership operator and crashes.
//
// A run is a fault phase (everything goes wrong at the profile's rates) then
// a liveness phase (network healed, crashed nodes restarted, no new faults)
// that must commit a fresh proposal on every live node and serve a read in a
// bounded number of ticks. The SafetyChecker runs after every step.
//
// Time: the simulator advances in steps; every STEPS_PER_TICK steps every
// running node ticks. One step: tick (on tick boundaries), inject faults,
// restart nodes that are due, client requests, deliver the messages due now
// in random order, then drive each node's Ready pipeline by a stage or more.
import {
  decodeConfChange,
  FlotillaError,
  RawNode,
  SnapshotTemporarilyUnavailableError,
  SeededRng,
  nodeId,
  type ConfChange,
  type ConfState,
  type Entry,
  type Logger,
  type Message,
  type NodeId,
  type ReadContext,
  type Ready,
} from '@flotilla/core';
import { SafetyChecker, SafetyViolation, type CheckedNode, type ViolationCode } from './checker.js';
import { SimDisk } from './disk.js';
import { chooseConfChange, DEFAULT_MEMBERSHIP_LIMITS, describeConfChange, describeConfState, invalidConfChange, membersOf } from './membership.js';
import { NO_NETWORK_FAULTS, shuffle, SimNetwork, type Envelope } from './network.js';
import { describeOptions, replayCommand, STEPS_PER_TICK, type SimOptions } from './options.js';
import { encodeValue, StateMachine } from './state-machine.js';
import { NO_TRACE, type Tracer } from './trace.js';
import { describeMessage, describeReady } from './describe.js';

/** Full-log checks of every node and disk run this often (steps); incremental checks run every step. */
const DEEP_CHECK_INTERVAL_STEPS = 64;

/** Readys one node may take in one step; bounds the pipeline loop if a node always has more to do. */
const READY_COUNT_PER_STEP_MAX = 4;

/** Liveness phase: re-propose (or re-read) if the previous attempt has not completed in this many ticks. */
const LIVENESS_RETRY_TICKS = 30;

/** With shellBug `sendBeforePersist`: chance to crash in the window the bug opens, per Ready. */
const BUGGY_SHELL_CRASH_RATE = 0.08;

/** When the core asks for a snapshot to send: chance that storage says one is being built (fault phase only)... */
const SNAPSHOT_UNAVAILABLE_RATE = 0.2;
/** ...and chance that the shell builds a fresh one first; otherwise the latest one goes out, even if stale. */
const SNAPSHOT_FRESH_RATE = 0.5;

/** A node removed from the config keeps running up to this long (it may not know yet) before it stops. */
const REMOVED_NODE_LINGER_TICKS_MAX = 20;

/** Share of the operator's membership proposals that are invalid (remove every voter): the leader must refuse them. */
const INVALID_CONF_CHANGE_RATE = 0.05;

/** Share of client proposals sent as one batch of 2-3 values (RawNode.proposeBatch). */
const BATCH_PROPOSAL_RATE = 0.2;

/** Chance that the transport notices a cut link when a message is lost on it (reportUnreachable). */
const UNREACHABLE_REPORT_RATE = 0.5;

type Phase = 'fault' | 'liveness';

/**
 * Where a node is in handling its current Ready (see the contract on Ready):
 * taken → messages sent → persisted → messagesAfterPersist sent → applied → advanced.
 */
type Stage = 'taken' | 'sent' | 'persisted' | 'sentAfterPersist' | 'applied';

interface ClientRead {
  /** Everything up to this index was applied somewhere when the read was issued. */
  readonly requiredIndex: number;
  readIndex: number | undefined;
}

interface SimNode {
  readonly id: NodeId;
  readonly disk: SimDisk;
  status: 'up' | 'down' | 'removed';
  /** Bumped on every start; messages and transport feedback carry it. */
  incarnation: number;
  raw: RawNode | undefined;
  sm: StateMachine | undefined;
  pipeline: { readonly rd: Ready; stage: Stage } | undefined;
  readonly reads: Map<ReadContext, ClientRead>;
  restartAtStep: number;
  /** While paused (a GC or VM stall): the step it resumes at, else -1. */
  pausedUntilStep: number;
  /** Ticks missed while paused, caught up on resume. */
  missedTickCount: number;
  /** Transport feedback that arrived while paused, handled on resume. */
  readonly deferred: (() => void)[];
  /** This node's disk speed: chance to stop at each Ready stage boundary (some disks are slower). */
  readonly readyStallRate: number;
  /** Removed from the config: the step at which it stops for good, else -1. */
  leaveAtStep: number;
}

type RunningNode = SimNode & { raw: RawNode; sm: StateMachine };

export interface SimStats {
  steps: number;
  ticks: number;
  /** Ticks the liveness phase took to commit a fresh proposal everywhere and serve a read. */
  livenessTicks: number;
  leaders: number;
  proposals: number;
  proposalsDropped: number;
  appliedIndexMax: number;
  reads: number;
  readsServed: number;
  crashes: number;
  crashesInReady: number;
  pauses: number;
  partitions: number;
  snapshotsCreated: number;
  snapshotsInstalled: number;
  confChangesProposed: number;
  confChangesApplied: number;
  nodesAdded: number;
  nodesRemoved: number;
  transfers: number;
  messagesSent: number;
  messagesDropped: number;
}

export interface SimResult {
  readonly options: SimOptions;
  readonly stats: SimStats;
  readonly finalConfig: string;
}

/** A failed run: what broke, where, and how to replay it. */
export class SimFailure extends Error {
  constructor(
    readonly code: ViolationCode,
    readonly options: SimOptions,
    readonly where: { step: number; tick: number; phase: Phase },
    readonly detail: string,
    readonly traceTail: readonly string[] = [],
  ) {
    super(
      [
        `simulation failed: ${detail}`,
        `  run: ${describeOptions(options)}`,
        `  at step ${where.step} (tick ${where.tick}, ${where.phase} phase)`,
        `  replay: ${replayCommand(options)}`,
        ...(traceTail.length > 0 ? ['  last events:', ...traceTail.map((l) => `    ${l}`)] : []),
      ].join('\n'),
    );
    this.name = 'SimFailure';
  }
}

export class Simulator {
  private readonly rng: SeededRng;
  private readonly network: SimNetwork;
  readonly checker: SafetyChecker;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly bootstrapConf: ConfState;
  private step = 0;
  private tick = 0;
  private phase: Phase = 'fault';
  private partitionHealStep = -1;
  /** Highest term whose leader was considered for a churn fault, and the pending churn fault. */
  private churnTerm = 0;
  private churn: { id: NodeId; term: number; atStep: number; kind: 'crash' | 'mute' } | undefined;
  private nextNodeId: number;
  /** Highest conf-change index whose effect on membership (start/stop nodes) was acted upon. */
  private membershipIndex = 0;
  private valueCount = 0;
  private readCount = 0;
  private readonly stats: SimStats = {
    steps: 0,
    ticks: 0,
    livenessTicks: 0,
    leaders: 0,
    proposals: 0,
    proposalsDropped: 0,
    appliedIndexMax: 0,
    reads: 0,
    readsServed: 0,
    crashes: 0,
    crashesInReady: 0,
    pauses: 0,
    partitions: 0,
    snapshotsCreated: 0,
    snapshotsInstalled: 0,
    confChangesProposed: 0,
    confChangesApplied: 0,
    nodesAdded: 0,
    nodesRemoved: 0,
    transfers: 0,
    messagesSent: 0,
    messagesDropped: 0,
  };
  private readonly liveness = {
    startTick: 0,
    freshValues: [] as string[],
    nextProposeStep: 0,
    writeDone: false,
    readContexts: new Set<ReadContext>(),
    nextReadStep: 0,
    readDone: false,
  };

  constructor(
    readonly options: SimOptions,
    private readonly trace: Tracer = NO_TRACE,
  ) {
    this.rng = new SeededRng(options.seed);
    this.network = new SimNetwork(this.rng.fork(), options.profile);
    const voters = Array.from({ length: options.nodeCount }, (_, i) => nodeId(i + 1));
    this.bootstrapConf = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    this.checker = new SafetyChecker(this.bootstrapConf);
    this.nextNodeId = options.nodeCount + 1;
  }

  run(): SimResult {
    try {
      if (this.trace.enabled) this.emit(`start ${describeOptions(this.options)}`);
      for (const id of this.bootstrapConf.voters) this.createNode(id);
      for (let t = 0; t < this.options.faultTicks; t++) this.runTick();
      this.enterLiveness();
      for (let t = 0; t < this.options.livenessTicksMax && !(this.liveness.writeDone && this.liveness.readDone); t++) this.runTick();
      if (!this.liveness.writeDone || !this.liveness.readDone) {
        throw new SafetyViolation(
          'LIVENESS',
          `${this.liveness.writeDone ? 'no read served' : 'no fresh proposal applied on every live node'} within ${this.options.livenessTicksMax} ticks after healing ` +
            `(nodes: ${this.describeNodes()})`,
        );
      }
      this.finalCheck();
    } catch (err) {
      throw this.failure(err);
    }
    this.stats.steps = this.step;
    this.stats.ticks = this.tick;
    this.stats.leaders = this.checker.leaderCount;
    this.stats.appliedIndexMax = this.checker.maxAppliedIndex;
    this.stats.messagesSent = this.network.sentCount;
    this.stats.messagesDropped += this.network.droppedCount;
    const leader = this.findLeader();
    return { options: this.options, stats: this.stats, finalConfig: leader === undefined ? '?' : describeConfState(leader.raw.raft.tracker.confState()) };
  }

  private failure(err: unknown): SimFailure {
    const where = { step: this.step, tick: this.tick, phase: this.phase };
    if (err instanceof SimFailure) return err;
    if (err instanceof SafetyViolation) return new SimFailure(err.code, this.options, where, err.message);
    const detail = err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err);
    return new SimFailure('CORE_ERROR', this.options, where, `CORE_ERROR: unexpected exception: ${detail}`);
  }

  // ---------------------------------------------------------------------------
  // The loop

  private runTick(): void {
    for (let s = 0; s < STEPS_PER_TICK; s++) {
      this.step++;
      if (s === 0) this.tickAll();
      if (this.phase === 'fault') this.injectFaults();
      else this.driveLiveness();
      this.maintain();
      this.restartDue();
      this.resumeDue();
      this.stopLeavers();
      if (this.phase === 'fault') this.clientRequests();
      this.deliverDue();
      for (const node of shuffle(this.activeNodes(), this.rng)) this.driveReady(node);
      if (this.step % DEEP_CHECK_INTERVAL_STEPS === 0) this.deepCheck();
    }
  }

  private tickAll(): void {
    this.tick++;
    for (const node of this.runningNodes()) {
      if (node.pausedUntilStep >= 0) {
        node.missedTickCount++;
        continue;
      }
      node.raw.tick();
      this.checker.observe(node);
    }
  }

  /** Nodes whose process is alive, paused or not. */
  private runningNodes(): RunningNode[] {
    const out: RunningNode[] = [];
    for (const n of this.nodes.values()) if (n.status === 'up') out.push(n as RunningNode);
    return out;
  }

  /** Nodes that are running and not paused: the ones that can act this step. */
  private activeNodes(): RunningNode[] {
    const out: RunningNode[] = [];
    for (const n of this.nodes.values()) if (n.status === 'up' && n.pausedUntilStep < 0) out.push(n as RunningNode);
    return out;
  }

  /** A node for a fault: the leader with probability leaderTargetRate, else any active node. */
  private pickVictim(): RunningNode | undefined {
    if (this.rng.chance(this.options.profile.leaderTargetRate)) {
      const leader = this.findLeader();
      if (leader !== undefined) return leader;
    }
    return this.pickActive();
  }

  private pickActive(): RunningNode | undefined {
    const active = this.activeNodes();
    return active.length === 0 ? undefined : active[this.rng.intBelow(active.length)];
  }

  private emit(line: string): void {
    this.trace.emit(`${this.step} ${line}`);
  }

  // ---------------------------------------------------------------------------
  // Node lifecycle

  private createNode(id: NodeId): void {
    const disk = new SimDisk(this.bootstrapConf, StateMachine.empty().image());
    const node: SimNode = {
      id,
      disk,
      status: 'down',
      incarnation: 0,
      raw: undefined,
      sm: undefined,
      pipeline: undefined,
      reads: new Map(),
      restartAtStep: 0,
      pausedUntilStep: -1,
      missedTickCount: 0,
      deferred: [],
      readyStallRate: Math.min(0.9, this.options.profile.readyStallRate * 2 * this.rng.nextFloat()),
      leaveAtStep: -1,
    };
    this.nodes.set(id, node);
    if (id > this.options.nodeCount) this.stats.nodesAdded++;
    this.start(node);
  }

  /** Builds a new RawNode from what the disk holds, and the state machine from its snapshot plus replay. */
  private start(node: SimNode): void {
    node.incarnation++;
    const disk = node.disk;
    const point = disk.restartPoint();
    // Resuming from a snapshot that was persisted but not installed installs it now.
    disk.appliedIndex = point.applied;
    disk.confState = point.confState;
    const raw = new RawNode({
      id: node.id,
      storage: disk,
      rng: this.rng.fork(),
      applied: point.applied,
      ...(this.trace.enabled ? { logger: this.coreLogger(node.id) } : {}),
      ...this.options.raft,
    });
    const snap = disk.log.snapshot();
    const sm = StateMachine.fromImage(snap.data, snap.metadata.index);
    if (point.applied > snap.metadata.index) {
      for (const e of disk.entries(snap.metadata.index + 1, point.applied + 1, Number.MAX_SAFE_INTEGER)) {
        this.checker.onReplay(node.id, e);
        if (e.type === 'normal') sm.applyNormal(e);
        else sm.applyConfChange(e);
      }
    }
    node.raw = raw;
    node.sm = sm;
    node.status = 'up';
    const incarnation = node.incarnation;
    disk.onSnapshotRequest = () => this.onSnapshotRequest(node, incarnation);
    node.pipeline = undefined;
    node.reads.clear();
    if (this.trace.enabled) {
      const hs = disk.hardState();
      this.emit(
        `n${node.id} start#${node.incarnation} term=${hs.term} vote=${hs.vote} commit=${hs.commit} applied=${point.applied} ` +
          `log=[${disk.firstIndex()},${disk.lastIndex()}] ${describeConfState(point.confState)}`,
      );
    }
    this.checker.onStart(node as RunningNode, disk);
  }

  private crash(node: SimNode, why: string): void {
    if (this.trace.enabled) this.emit(`n${node.id} crash (${why})`);
    this.stop(node);
    // A removed node that crashes is simply gone.
    node.status = node.leaveAtStep >= 0 ? 'removed' : 'down';
    node.restartAtStep = this.step + (1 + this.rng.intBelow(Math.max(1, this.options.profile.downTicksMax))) * STEPS_PER_TICK;
    this.stats.crashes++;
  }

  private stop(node: SimNode): void {
    node.raw = undefined;
    node.sm = undefined;
    node.pipeline = undefined;
    node.reads.clear();
    node.pausedUntilStep = -1;
    node.missedTickCount = 0;
    node.deferred.length = 0;
    this.checker.onStop(node.id);
  }

  private pause(node: RunningNode): void {
    node.pausedUntilStep = this.step + (1 + this.rng.intBelow(Math.max(1, this.options.profile.pauseTicksMax))) * STEPS_PER_TICK;
    this.stats.pauses++;
    if (this.trace.enabled) this.emit(`n${node.id} paused until step ${node.pausedUntilStep}`);
  }

  private resumeDue(): void {
    for (const node of this.runningNodes()) {
      if (node.pausedUntilStep >= 0 && node.pausedUntilStep <= this.step) this.resume(node);
    }
  }

  /** Ends a pause: the missed ticks first (the tick loop follows a monotonic clock), then deferred feedback. */
  private resume(node: RunningNode): void {
    if (this.trace.enabled) this.emit(`n${node.id} resumed, catching up ${node.missedTickCount} ticks`);
    node.pausedUntilStep = -1;
    for (; node.missedTickCount > 0; node.missedTickCount--) {
      node.raw.tick();
      this.checker.observe(node);
    }
    const deferred = node.deferred.splice(0);
    for (const fn of deferred) {
      if (node.status !== 'up') return;
      fn();
    }
  }

  private stopLeavers(): void {
    for (const node of this.nodes.values()) {
      if (node.status === 'up' && node.leaveAtStep >= 0 && node.leaveAtStep <= this.step) this.leave(node);
    }
  }

  private leave(node: SimNode): void {
    if (this.trace.enabled) this.emit(`n${node.id} stopped: removed from the cluster`);
    this.stop(node);
    node.status = 'removed';
  }

  private restartDue(): void {
    for (const node of this.nodes.values()) {
      if (node.status === 'down' && node.restartAtStep <= this.step) this.start(node);
    }
  }

  private coreLogger(id: NodeId): Logger {
    const log = (level: string) => (fields: Record<string, unknown>, message: string) => {
      const { nodeId: _ignored, ...rest } = fields;
      this.emit(`n${id} core.${level} ${message} ${JSON.stringify(rest, (_k, v: unknown) => (v instanceof Error ? v.message : v))}`);
    };
    return { debug: () => {}, info: log('info'), warn: log('warn') };
  }

  // ---------------------------------------------------------------------------
  // Faults

  private injectFaults(): void {
    const p = this.options.profile;
    const rng = this.rng;
    if (this.partitionHealStep >= 0 && this.step >= this.partitionHealStep) {
      this.network.heal();
      this.partitionHealStep = -1;
      if (this.trace.enabled) this.emit('partition healed');
    }
    if (p.partitionRate > 0 && rng.chance(p.partitionRate)) this.partition();
    if (p.crashRate > 0 && rng.chance(p.crashRate)) {
      const node = this.pickVictim();
      if (node !== undefined) this.crash(node, node.raw.raft.role === 'leader' ? 'leader' : 'random');
    }
    if (p.pauseRate > 0 && rng.chance(p.pauseRate)) {
      const node = this.pickVictim();
      if (node !== undefined) this.pause(node);
    }
    if (p.leaderChurnRate > 0) this.leaderChurn();
    if (p.membershipRate > 0 && rng.chance(p.membershipRate)) this.proposeMembershipChange({ leaveJointOnly: false });
    if (p.transferRate > 0 && rng.chance(p.transferRate)) this.transferLeadership();
    if (p.campaignRate > 0 && rng.chance(p.campaignRate)) {
      const node = this.pickActive();
      if (node !== undefined) {
        if (this.trace.enabled) this.emit(`n${node.id} campaign (forced)`);
        node.raw.campaign();
        this.checker.observe(node);
      }
    }
  }

  /** Once per new leader, maybe crash it or cut its outbound links a few steps after it won. */
  private leaderChurn(): void {
    const leader = this.findLeader();
    if (leader !== undefined && leader.raw.raft.term > this.churnTerm) {
      this.churnTerm = leader.raw.raft.term;
      if (this.rng.chance(this.options.profile.leaderChurnRate)) {
        this.churn = { id: leader.id, term: this.churnTerm, atStep: this.step + this.rng.intBelow(12), kind: this.rng.chance(0.5) ? 'crash' : 'mute' };
      }
    }
    const c = this.churn;
    if (c === undefined || this.step < c.atStep) return;
    this.churn = undefined;
    const node = this.nodes.get(c.id);
    if (node === undefined || node.status !== 'up' || node.raw!.raft.term !== c.term) return;
    if (c.kind === 'crash') {
      this.crash(node, 'leader churn');
      return;
    }
    this.network.heal();
    for (const other of this.nodes.keys()) if (other !== c.id) this.network.cutLink(c.id, other);
    this.partitionHealStep = this.step + (1 + this.rng.intBelow(Math.max(1, this.options.profile.partitionTicksMax))) * STEPS_PER_TICK;
    this.stats.partitions++;
    if (this.trace.enabled) this.emit(`partition: leader ${c.id} mute (churn) until step ${this.partitionHealStep}`);
  }

  /** Background work that also runs while healing: compaction, and leaving an explicit joint config. */
  private maintain(): void {
    const p = this.options.profile;
    if (p.compactRate > 0 && this.rng.chance(p.compactRate)) {
      const node = this.pickActive();
      if (node !== undefined) this.compact(node);
    }
  }

  private partition(): void {
    const ids = [...this.nodes.values()].filter((n) => n.status !== 'removed').map((n) => n.id);
    if (ids.length < 2) return;
    this.network.heal();
    const rng = this.rng;
    const kind = rng.intBelow(5);
    let what: string;
    if (kind === 0) {
      // Two-way split into a minority and a majority (either side may hold the leader).
      const shuffled = shuffle([...ids], rng);
      const side = new Set(shuffled.slice(0, 1 + rng.intBelow(Math.floor(ids.length / 2))));
      for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) this.network.cutLink(a, b);
      what = `split [${[...side].join(',')}] | rest`;
    } else if (kind === 1) {
      // One node can send but not receive.
      const a = this.pickVictim()?.id ?? ids[rng.intBelow(ids.length)]!;
      for (const b of ids) if (b !== a) this.network.cutLink(b, a);
      what = `one-way: ${a} deaf`;
    } else if (kind === 2) {
      // One node can receive but not send.
      const a = this.pickVictim()?.id ?? ids[rng.intBelow(ids.length)]!;
      for (const b of ids) if (b !== a) this.network.cutLink(a, b);
      what = `one-way: ${a} mute`;
    } else if (kind === 3) {
      // A partial partition: one node (often the leader) loses both ways some, not all, of its peers,
      // who still see each other, so they can elect a new leader while it keeps its old lease view.
      const a = this.pickVictim()?.id ?? ids[rng.intBelow(ids.length)]!;
      const others = shuffle(ids.filter((b) => b !== a), rng);
      const lost = others.slice(0, 1 + rng.intBelow(others.length - 1 || 1));
      for (const b of lost) {
        this.network.cutLink(a, b);
        this.network.cutLink(b, a);
      }
      what = `partial: ${a} cut from [${lost.join(',')}]`;
    } else {
      // A few random directed links (asymmetric, bridge-like topologies).
      const cuts = 1 + rng.intBelow(ids.length);
      for (let i = 0; i < cuts; i++) {
        const a = ids[rng.intBelow(ids.length)]!;
        const b = ids[rng.intBelow(ids.length)]!;
        if (a !== b) this.network.cutLink(a, b);
      }
      what = `links cut: ${this.network.cutLinks().join(' ')}`;
    }
    this.partitionHealStep = this.step + (1 + rng.intBelow(Math.max(1, this.options.profile.partitionTicksMax))) * STEPS_PER_TICK;
    this.stats.partitions++;
    if (this.trace.enabled) this.emit(`partition ${what} until step ${this.partitionHealStep}`);
  }

  private compact(node: RunningNode): void {
    // Only between Readys: entries applied but not yet advanced are still in the unstable log,
    // and the core cannot read entries below storage's first index (RaftLog.firstIndex ignores
    // unstable.offset), so compacting them away under a pending Ready hides them from the core.
    if (node.pipeline !== undefined) return;
    if (!this.snapshotNow(node)) return;
    // Keep a random tail of the log so followers are caught up by log or by snapshot.
    const disk = node.disk;
    disk.compact(disk.appliedIndex - this.rng.intBelow(8));
    if (this.trace.enabled) this.emit(`n${node.id} compacted, log now [${disk.firstIndex()},${disk.lastIndex()}]`);
    this.checker.observe(node);
  }

  /** Snapshots the state machine at its applied index, if that is past the latest snapshot. */
  private snapshotNow(node: RunningNode): boolean {
    const disk = node.disk;
    // A snapshot persisted but not yet installed is newer than the state machine.
    if (disk.appliedIndex <= disk.log.snapshot().metadata.index) return false;
    if (node.sm.appliedIndex !== disk.appliedIndex) {
      throw new Error(`simulator: node ${node.id} state machine at ${node.sm.appliedIndex} but disk applied ${disk.appliedIndex}`);
    }
    disk.createSnapshot(node.sm.image());
    this.stats.snapshotsCreated++;
    if (this.trace.enabled) this.emit(`n${node.id} snapshot at ${disk.appliedIndex}`);
    return true;
  }

  /**
   * The core wants a snapshot to send: sometimes build a fresh one, sometimes
   * say one is being built (fault phase only), otherwise hand out the latest.
   */
  private onSnapshotRequest(node: SimNode, incarnation: number): void {
    if (node.status !== 'up' || node.incarnation !== incarnation) throw new Error(`simulator: snapshot requested from a stopped node ${node.id}`);
    const roll = this.rng.nextFloat();
    if (this.phase === 'fault' && roll < SNAPSHOT_UNAVAILABLE_RATE) {
      if (this.trace.enabled) this.emit(`n${node.id} snapshot temporarily unavailable`);
      throw new SnapshotTemporarilyUnavailableError();
    }
    if (roll < SNAPSHOT_UNAVAILABLE_RATE + SNAPSHOT_FRESH_RATE) this.snapshotNow(node as RunningNode);
  }

  private findLeader(): RunningNode | undefined {
    let best: RunningNode | undefined;
    for (const n of this.activeNodes()) {
      if (n.raw.raft.role === 'leader' && (best === undefined || n.raw.raft.term > best.raw.raft.term)) best = n;
    }
    return best;
  }

  private proposeMembershipChange(options: { leaveJointOnly: boolean }): void {
    const leader = this.findLeader();
    if (leader === undefined) return;
    const r = leader.raw.raft;
    if (r.pendingConfIndex > r.log.applied) return; // would be refused: one change at a time
    const cs = r.tracker.confState();
    if (options.leaveJointOnly && (cs.votersOutgoing.length === 0 || cs.autoLeave)) return;
    const invalid = !options.leaveJointOnly && this.rng.chance(INVALID_CONF_CHANGE_RATE);
    const cc = invalid ? invalidConfChange(cs, this.rng) : chooseConfChange(cs, this.rng, () => nodeId(this.nextNodeId++), DEFAULT_MEMBERSHIP_LIMITS);
    if (cc === undefined) return;
    this.stats.confChangesProposed++;
    if (this.trace.enabled) this.emit(`n${leader.id} propose ${invalid ? 'invalid ' : ''}conf change ${describeConfChange(cc)} on ${describeConfState(cs)}`);
    try {
      this.callDroppable(leader, () => leader.raw.proposeConfChange(cc));
    } catch (err) {
      // The leader must refuse a change that cannot apply; committing it would wedge every replica.
      if (!(invalid && err instanceof FlotillaError && err.code === 'INVALID_CONF_CHANGE')) throw err;
      if (this.trace.enabled) this.emit(`n${leader.id} refused invalid conf change: ${err.message}`);
    }
  }

  private transferLeadership(): void {
    const leader = this.findLeader();
    if (leader === undefined) return;
    const voters = leader.raw.raft.tracker.voterNodes().filter((id) => id !== leader.id);
    if (voters.length === 0) return;
    const to = voters[this.rng.intBelow(voters.length)]!;
    this.stats.transfers++;
    if (this.trace.enabled) this.emit(`n${leader.id} transfer leadership to ${to}`);
    leader.raw.transferLeader(to);
    this.checker.observe(leader);
  }

  /** Runs a request the node may refuse with ProposalDroppedError (the client would retry elsewhere). */
  private callDroppable(node: RunningNode, fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (err) {
      if (err instanceof FlotillaError && err.code === 'PROPOSAL_DROPPED') {
        if (this.trace.enabled) this.emit(`n${node.id} dropped: ${err.message}`);
        return false;
      }
      throw err;
    } finally {
      this.checker.observe(node);
    }
  }

  // ---------------------------------------------------------------------------
  // Clients

  private clientRequests(): void {
    const p = this.options.profile;
    if (p.proposeRate > 0 && this.rng.chance(p.proposeRate)) {
      const node = this.pickActive();
      if (node !== undefined) {
        if (this.rng.chance(BATCH_PROPOSAL_RATE)) {
          const values = Array.from({ length: 2 + this.rng.intBelow(2) }, () => `v${++this.valueCount}`);
          this.stats.proposals += values.length;
          if (this.trace.enabled) this.emit(`n${node.id} propose batch ${values.join(',')}`);
          if (!this.callDroppable(node, () => node.raw.proposeBatch(values.map(encodeValue)))) this.stats.proposalsDropped += values.length;
        } else {
          this.propose(node, `v${++this.valueCount}`);
        }
      }
    }
    if (p.readRate > 0 && this.rng.chance(p.readRate)) {
      const node = this.pickActive();
      if (node !== undefined) this.read(node, `r${++this.readCount}`);
    }
  }

  private propose(node: RunningNode, value: string): boolean {
    this.stats.proposals++;
    if (this.trace.enabled) this.emit(`n${node.id} propose ${value}`);
    const ok = this.callDroppable(node, () => node.raw.propose(encodeValue(value)));
    if (!ok) this.stats.proposalsDropped++;
    return ok;
  }

  private read(node: RunningNode, context: ReadContext): boolean {
    this.stats.reads++;
    node.reads.set(context, { requiredIndex: this.checker.maxAppliedIndex, readIndex: undefined });
    if (this.trace.enabled) this.emit(`n${node.id} read ${context} (acknowledged up to ${this.checker.maxAppliedIndex})`);
    const ok = this.callDroppable(node, () => node.raw.readIndex(context));
    if (!ok) node.reads.delete(context);
    return ok;
  }

  // ---------------------------------------------------------------------------
  // Network

  private send(node: RunningNode, messages: readonly Message[]): void {
    for (const m of messages) {
      this.checker.onSent(m);
      if (this.trace.enabled) this.emit(`n${node.id} send ${describeMessage(m)}`);
      this.network.send(m, { nowStep: this.step, senderIncarnation: node.incarnation });
    }
  }

  private deliverDue(): void {
    for (const envelope of this.network.takeDue(this.step)) this.deliver(envelope);
  }

  private deliver(envelope: Envelope): void {
    const m = envelope.message;
    const to = this.nodes.get(m.to);
    if (envelope.lost) {
      if (this.trace.enabled) this.emit(`lost: ${describeMessage(m)}`);
      if (m.type === 'snapshot') this.transportFeedback(envelope, 'snapshotFailed');
      return;
    }
    if (to === undefined || to.status !== 'up') {
      this.stats.messagesDropped++;
      if (m.type === 'snapshot') this.transportFeedback(envelope, 'snapshotFailed');
      return;
    }
    if (this.network.isCut(m.from, m.to)) {
      this.stats.messagesDropped++;
      if (this.trace.enabled) this.emit(`lost on cut link: ${describeMessage(m)}`);
      if (m.type === 'snapshot') this.transportFeedback(envelope, 'snapshotFailed');
      else if (this.rng.chance(UNREACHABLE_REPORT_RATE)) this.transportFeedback(envelope, 'unreachable');
      return;
    }
    const node = to as RunningNode;
    if (node.pausedUntilStep >= 0) {
      this.network.postpone(envelope, node.pausedUntilStep);
      return;
    }
    if (this.trace.enabled) this.emit(`n${node.id} recv ${describeMessage(m)}`);
    try {
      node.raw.step(m);
    } catch (err) {
      // A response from a peer this node does not track (removed, or not yet known): the transport drops it.
      if (!(err instanceof FlotillaError && err.code === 'PEER_NOT_FOUND')) throw err;
      if (this.trace.enabled) this.emit(`n${node.id} refused: ${err.message}`);
    }
    this.checker.observe(node);
    if (m.type === 'snapshot') this.transportFeedback(envelope, 'snapshotFinished');
  }

  /** What a transport tells the sender about a message: snapshot outcome, or that the peer is unreachable. */
  private transportFeedback(envelope: Envelope, what: 'snapshotFinished' | 'snapshotFailed' | 'unreachable'): void {
    const m = envelope.message;
    const sender = this.nodes.get(m.from);
    if (sender === undefined || sender.status !== 'up' || sender.incarnation !== envelope.senderIncarnation) return;
    const node = sender as RunningNode;
    const report = (): void => {
      if (this.trace.enabled) this.emit(`n${node.id} transport: ${what} to ${m.to}`);
      if (what === 'unreachable') node.raw.reportUnreachable(m.to);
      else node.raw.reportSnapshot(m.to, what === 'snapshotFinished' ? 'finished' : 'failed');
      this.checker.observe(node);
    };
    if (node.pausedUntilStep >= 0) node.deferred.push(report);
    else report();
  }

  // ---------------------------------------------------------------------------
  // The Ready pipeline

  private driveReady(node: RunningNode): void {
    const p = this.options.profile;
    for (let readyCount = 0; ; ) {
      if (node.status !== 'up' || node.pausedUntilStep >= 0) return;
      if (node.pipeline === undefined) {
        if (readyCount >= READY_COUNT_PER_STEP_MAX || !node.raw.hasReady()) return;
        const rd = node.raw.ready();
        readyCount++;
        node.pipeline = { rd, stage: 'taken' };
        if (this.trace.enabled) this.emit(`n${node.id} ready ${describeReady(rd)}`);
      }
      const stageDone = this.runStage(node);
      if (node.status !== 'up') return;
      this.checker.observe(node);
      if (node.pipeline === undefined) continue;
      if (this.phase === 'fault' && p.crashInReadyRate > 0 && this.rng.chance(p.crashInReadyRate)) {
        this.stats.crashesInReady++;
        this.crash(node, `in Ready after ${stageDone}`);
        return;
      }
      if (node.readyStallRate > 0 && this.rng.chance(node.readyStallRate)) return;
    }
  }

  /** Performs the next stage of the node's Ready; returns what it did. */
  private runStage(node: RunningNode): string {
    const pipeline = node.pipeline!;
    const rd = pipeline.rd;
    switch (pipeline.stage) {
      case 'taken':
        this.send(node, rd.messages);
        pipeline.stage = 'sent';
        if (this.options.shellBug === 'sendBeforePersist' && rd.messagesAfterPersist.length > 0) {
          // The bug: promises leave before the writes that back them are durable.
          this.send(node, rd.messagesAfterPersist);
          if (this.phase === 'fault' && this.rng.chance(BUGGY_SHELL_CRASH_RATE)) {
            this.crash(node, 'buggy shell: after sending messagesAfterPersist, before persisting');
            return 'crashed';
          }
        }
        return 'send';
      case 'sent':
        this.persist(node, rd);
        pipeline.stage = 'persisted';
        return 'persist';
      case 'persisted':
        if (this.options.shellBug !== 'sendBeforePersist') this.send(node, rd.messagesAfterPersist);
        pipeline.stage = 'sentAfterPersist';
        return 'send after persist';
      case 'sentAfterPersist':
        this.apply(node, rd);
        if (node.status === 'up') pipeline.stage = 'applied';
        return 'apply';
      case 'applied':
        node.raw.advance();
        node.pipeline = undefined;
        return 'advance';
    }
  }

  private persist(node: RunningNode, rd: Ready): void {
    node.disk.write({ snapshot: rd.snapshot, entries: rd.entries, hardState: rd.hardState });
    const hs = node.disk.hardState();
    if (hs.commit > node.disk.lastIndex()) {
      throw new SafetyViolation('DISK_INCONSISTENT', `node ${node.id} persisted commit ${hs.commit} past its last persisted index ${node.disk.lastIndex()}`);
    }
  }

  private apply(node: RunningNode, rd: Ready): void {
    const disk = node.disk;
    if (rd.snapshot !== undefined) {
      const snap = rd.snapshot;
      node.sm = StateMachine.fromImage(snap.data, snap.metadata.index);
      disk.appliedIndex = snap.metadata.index;
      disk.confState = snap.metadata.confState;
      this.stats.snapshotsInstalled++;
      if (this.trace.enabled) this.emit(`n${node.id} installed snapshot at ${snap.metadata.index} ${describeConfState(snap.metadata.confState)}`);
      this.checker.onSnapshotInstalled(node.id, snap, node.sm);
      this.onMembership(snap.metadata.index, snap.metadata.confState);
    }
    const crashRate = this.phase === 'fault' ? this.options.profile.crashInReadyRate : 0;
    for (const e of rd.committedEntries) {
      this.checker.onApply(node, e);
      if (e.type === 'confChange') {
        this.applyConfChange(node, e);
        if (node.status !== 'up') return; // it applied its own removal
      } else {
        node.sm.applyNormal(e);
      }
      disk.appliedIndex = e.index;
      // Each apply is durable on its own, so a crash may land in the middle of a batch.
      if (crashRate > 0 && e !== rd.committedEntries[rd.committedEntries.length - 1] && this.rng.chance(crashRate)) {
        this.stats.crashesInReady++;
        this.crash(node, `in Ready, mid-apply after ${e.index}`);
        return;
      }
    }
    if (disk.appliedIndex > disk.hardState().commit) {
      throw new SafetyViolation(
        'DISK_INCONSISTENT',
        `node ${node.id} applied ${disk.appliedIndex} past its persisted commit ${disk.hardState().commit}: a restart would refuse it`,
      );
    }
    for (const rs of rd.readStates) {
      const read = node.reads.get(rs.context);
      if (read === undefined || read.readIndex !== undefined) continue; // another incarnation's, or a duplicate
      this.checker.checkReadIndex({ id: node.id, context: rs.context, readIndex: rs.index, requiredIndex: read.requiredIndex });
      read.readIndex = rs.index;
    }
    for (const context of rd.droppedReads) node.reads.delete(context);
    this.serveReads(node);
  }

  private applyConfChange(node: RunningNode, e: Entry): void {
    const cc: ConfChange = decodeConfChange(e.data);
    const cs = node.raw.applyConfChange(cc);
    node.sm.applyConfChange(e);
    node.disk.confState = cs;
    node.disk.appliedIndex = e.index;
    this.stats.confChangesApplied++;
    this.checker.onConfChangeApplied(node.id, e.index, cs);
    if (this.trace.enabled) this.emit(`n${node.id} applied conf change ${e.index} ${describeConfChange(cc)} -> ${describeConfState(cs)}`);
    this.onMembership(e.index, cs);
  }

  /**
   * The first time any node applies a membership change at `index`, the
   * operator acts on it: it starts nodes that were added (on a fresh disk
   * holding the bootstrap membership at index 0, like every founding node:
   * the log or a snapshot brings them the rest) and stops nodes that left.
   */
  private onMembership(index: number, cs: ConfState): void {
    if (index <= this.membershipIndex) return;
    this.membershipIndex = index;
    const members = membersOf(cs);
    for (const id of members) if (!this.nodes.has(id)) this.createNode(id);
    for (const node of this.nodes.values()) {
      if (node.status === 'removed' || node.leaveAtStep >= 0 || members.has(node.id)) continue;
      this.stats.nodesRemoved++;
      // It keeps running a while (it may not have applied its removal), except once healing.
      const lingerTicks = this.phase === 'fault' ? this.rng.intBelow(REMOVED_NODE_LINGER_TICKS_MAX + 1) : 0;
      node.leaveAtStep = this.step + lingerTicks * STEPS_PER_TICK;
      if (this.trace.enabled) this.emit(`n${node.id} removed from the cluster; stops at step ${node.leaveAtStep}`);
      if (node.status === 'down') node.status = 'removed';
      else if (lingerTicks === 0) this.leave(node);
    }
  }

  private serveReads(node: RunningNode): void {
    for (const [context, read] of node.reads) {
      if (read.readIndex === undefined || node.sm.appliedIndex < read.readIndex) continue;
      this.checker.checkReadServed({ id: node.id, context, appliedIndex: node.sm.appliedIndex, requiredIndex: read.requiredIndex });
      node.reads.delete(context);
      this.stats.readsServed++;
      if (this.trace.enabled) this.emit(`n${node.id} served read ${context} at ${node.sm.appliedIndex} (index ${read.readIndex})`);
      if (this.liveness.readContexts.has(context)) this.liveness.readDone = true;
    }
  }

  // ---------------------------------------------------------------------------
  // Liveness

  private enterLiveness(): void {
    this.phase = 'liveness';
    this.liveness.startTick = this.tick;
    this.network.heal();
    this.network.faults = NO_NETWORK_FAULTS;
    this.partitionHealStep = -1;
    if (this.trace.enabled) this.emit('liveness phase: network healed, restarting crashed nodes, resuming paused ones');
    for (const node of this.nodes.values()) if (node.status === 'down') this.start(node);
    for (const node of this.runningNodes()) {
      if (node.leaveAtStep >= 0) this.leave(node);
      else if (node.pausedUntilStep >= 0) this.resume(node);
    }
  }

  /**
   * Heal-phase driver: propose a fresh value on the leader (again if it has
   * not landed in LIVENESS_RETRY_TICKS), then issue a read on a random node.
   */
  private driveLiveness(): void {
    const l = this.liveness;
    this.proposeMembershipChange({ leaveJointOnly: true });
    if (!l.writeDone) {
      const members = this.runningNodes().filter((n) => n.leaveAtStep < 0);
      if (l.freshValues.some((v) => members.every((n) => n.sm.has(v)))) {
        l.writeDone = true;
        if (this.trace.enabled) this.emit(`liveness: fresh write applied on every live node after ${this.tick - l.startTick} ticks`);
      } else if (this.step >= l.nextProposeStep) {
        const leader = this.findLeader();
        if (leader !== undefined) {
          const value = `fresh${l.freshValues.length + 1}`;
          if (this.propose(leader, value)) {
            l.freshValues.push(value);
            l.nextProposeStep = this.step + LIVENESS_RETRY_TICKS * STEPS_PER_TICK;
          }
        }
      }
    }
    if (l.writeDone && !l.readDone && this.step >= l.nextReadStep) {
      const node = this.pickActive();
      const context = `live-r${l.readContexts.size + 1}`;
      l.readContexts.add(context);
      if (node !== undefined && this.read(node, context)) l.nextReadStep = this.step + LIVENESS_RETRY_TICKS * STEPS_PER_TICK;
    }
    if (l.writeDone && l.readDone) this.stats.livenessTicks = this.tick - l.startTick;
  }

  // ---------------------------------------------------------------------------
  // Full checks

  private deepCheck(): void {
    for (const node of this.nodes.values()) {
      if (node.status === 'up') this.checker.deepCheckLog(node as RunningNode);
      if (node.status !== 'removed') this.checker.deepCheckDisk(node.id, node.disk);
    }
  }

  /** Every live node holds exactly the values applied up to its applied index, and all hold the fresh write. */
  private finalCheck(): void {
    this.deepCheck();
    for (const node of this.runningNodes()) {
      this.checker.checkStateMachine(node.id, node.sm, node.sm.appliedIndex);
    }
  }

  private describeNodes(): string {
    return [...this.nodes.values()]
      .map((n) => {
        if (n.status !== 'up') return `${n.id}:${n.status}`;
        const r = n.raw!.raft;
        return `${n.id}:${r.role}/t${r.term}/c${r.log.committed}/a${n.sm!.appliedIndex}/last${r.log.lastIndex()}/lead${r.lead}`;
      })
      .join(' ');
  }
}
