import { randomInt } from 'node:crypto';
import { readdirSync, statSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { SYSTEM_CLOCK, groupId, type Clock } from '@flotilla/core';
import {
  META_RANGE_ID,
  PlacementDriver,
  decodeStoreHeartbeat,
  describeOperator,
  mergeProblem,
  encodeStoreHeartbeat,
  type DriverConfig,
  type DriverStatus,
  type HeartbeatAnswer,
  type NodeState,
  type NodeRecord,
  type Operator,
  type PlacementSettings,
  type RangeInfo,
  type Step,
  type StepOutcome,
} from '@flotilla/placement';
import { RemoteError, type Host, type KvResult, type MembershipChange, type ShellLogger } from '@flotilla/shards';
import { Packr } from 'msgpackr';
import type { HostKvStore } from './kv/host-store.js';
import type { MergeStepCommand } from './kv/range-ops.js';
import { KV_ERROR_CODES, KvError, type KvErrorCode } from './kv/store.js';

/**
 * The placement driver's shell on every node (placement/src/driver.ts is the
 * driver; this wires it to the node). Each duty tick the node sends its
 * store heartbeat to wherever the meta range is led, destroys the replicas
 * the answer names, and — on the node leading the meta range — runs one
 * driver pass. The driver lives as long as this node leads the meta range:
 * a new leader starts a fresh one that rebuilds its view from heartbeats.
 */
export interface PlacementServiceOptions {
  readonly host: Host;
  readonly store: HostKvStore;
  readonly log: ShellLogger;
  /** The node's data directory: its disk use and free space go into the heartbeat. */
  readonly dir: string;
  readonly config: DriverConfig;
  /** Settings until an operator changes them (kept in the meta range from then on). */
  readonly defaults: PlacementSettings;
  /** The driver's clock (monotonic: its times never leave this node); SYSTEM_CLOCK otherwise. */
  readonly clock?: Clock;
  /** What the heartbeat reports of the node's disk; measured in `dir` otherwise (the simulation fixes it). */
  readonly disk?: () => { usedBytes: number; availableBytes: number };
}

/** What an operator asks of the driver through the admin API. */
export type AdminOperator =
  | { readonly kind: 'moveReplica'; readonly rangeId: number; readonly from: number; readonly to: number }
  | { readonly kind: 'transferLeader'; readonly rangeId: number; readonly to: number }
  | { readonly kind: 'split'; readonly rangeId: number; readonly key: Uint8Array }
  /** Merge the range into its left neighbour. */
  | { readonly kind: 'merge'; readonly rangeId: number };

/** How often the driver sweeps the meta range for stale descriptors. */
const DESCRIPTOR_SWEEP_INTERVAL_MS = 30_000;

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Replicas (and their reports) one heartbeat carries at most: a full one from a bigger node goes in parts. */
export const HEARTBEAT_PART_ENTRIES_MAX = 10_000;

export class PlacementService {
  private driver: PlacementDriver | undefined;
  /** When the driver last swept stale descriptors (DESCRIPTOR_SWEEP_INTERVAL_MS). */
  private lastSweepMs = Number.NEGATIVE_INFINITY;
  private passQueued = false;
  /** This service's heartbeat session (heartbeat.ts): a node that restarts starts a new one. */
  private readonly session = randomInt(2 ** 31);
  private seq = 0;
  /** The last heartbeat the driver took, and where the node's view was then: the next carries what changed since. */
  private taken: { seq: number; cursor: number } | undefined;
  /** Replicas the driver asked about (HeartbeatAnswer.describe): the next heartbeat carries their key ranges. */
  private toDescribe: readonly number[] = [];
  private readonly nowMs: () => number;
  readonly defaults: PlacementSettings;

  constructor(private readonly o: PlacementServiceOptions) {
    const clock = o.clock ?? SYSTEM_CLOCK;
    this.nowMs = () => clock.nowMs();
    this.defaults = o.defaults;
    o.store.setPlacementHandler((payload) => this.handle(payload));
  }

  /** One duty tick: heartbeat, then a driver pass if this node leads the meta range (`nodes`: the meta range's node records, read this tick). */
  async tick(nodes: Promise<NodeRecord[]>): Promise<void> {
    await this.heartbeat();
    await this.drive(nodes);
  }

  private async heartbeat(): Promise<void> {
    const { host } = this.o;
    let answer = await this.sendHeartbeat(this.taken);
    // The driver could not place the delta (a new driver, or one that missed its base): everything, at once.
    if (answer.resync) answer = await this.sendHeartbeat(undefined);
    this.toDescribe = answer.describe;
    for (const rangeId of answer.collect) {
      if (!host.hasShard(groupId(rangeId))) continue;
      this.o.log.info({ rangeId }, 'replica collected: its range no longer has this node');
      await host.removeShard(groupId(rangeId));
    }
  }

  /**
   * One heartbeat: what changed since `base` (the last one the driver took), or everything without one.
   * Everything, from a node with many replicas, goes in parts of HEARTBEAT_PART_ENTRIES_MAX: a full one
   * first, then deltas each on the one before (a forwarded request's segment is at most 4 MiB, and a full
   * report of 30,000 led ranges is about that). A part that fails leaves nothing taken: all again next tick.
   */
  private async sendHeartbeat(base: { seq: number; cursor: number } | undefined): Promise<HeartbeatAnswer> {
    const { host, store } = this.o;
    const view = await host.shardChanges(base?.cursor ?? 0);
    const full = base === undefined || view.full;
    const disk = this.o.disk?.() ?? diskOf(this.o.dir);
    let previous = full ? 0 : base.seq;
    const collect: number[] = [];
    const describe: number[] = [];
    const described = this.toDescribe.flatMap((rangeId) => {
      const status = host.viewedStatus(groupId(rangeId));
      return status === undefined ? [] : [{ rangeId, epoch: status.epoch, start: status.start, end: status.end }];
    });
    for (let at = 0; at === 0 || at < view.changed.length; at += HEARTBEAT_PART_ENTRIES_MAX) {
      const part = view.changed.slice(at, at + HEARTBEAT_PART_ENTRIES_MAX);
      const seq = ++this.seq;
      const heartbeat = encodeStoreHeartbeat({
        nodeId: host.nodeId,
        ...disk,
        session: this.session,
        seq,
        base: previous,
        replicas: part.map((c) => ({ rangeId: c.status.shardId, epoch: c.status.epoch, core: host.coreOf(c.status.shardId) })),
        leading: part.flatMap((c) => (c.report === null ? [] : [c.report])),
        removed: full || at > 0 ? [] : view.removed,
        described: at === 0 ? described : [],
      });
      const answer = decodeAnswer((await store.runOnRange({ kind: 'placement', rangeId: META_RANGE_ID, payload: packr.pack(['heartbeat', heartbeat]) })) as Uint8Array);
      if (answer.resync) {
        this.taken = undefined;
        return answer;
      }
      collect.push(...answer.collect);
      describe.push(...answer.describe);
      previous = seq;
    }
    this.taken = { seq: previous, cursor: view.cursor };
    return { collect, resync: false, describe };
  }

  private async drive(nodes: Promise<NodeRecord[]>): Promise<void> {
    const { host, store } = this.o;
    if (host.leaderOf(groupId(META_RANGE_ID)) !== host.nodeId) {
      if (this.driver !== undefined) this.o.log.info({}, 'placement driver stopped: this node no longer leads the meta range');
      this.driver = undefined;
      return;
    }
    const driver = this.ensureDriver();
    driver.setSettings(await store.placementSettings(this.o.defaults));
    // Now and then, descriptors a merge's recording missed (MetaClient.sweepStaleDescriptors): a read of
    // every descriptor, so not every tick.
    if (this.nowMs() - this.lastSweepMs >= DESCRIPTOR_SWEEP_INTERVAL_MS) {
      this.lastSweepMs = this.nowMs();
      // A sweep that fails (a meta write timing out) is tried again at the next interval; the driver goes on.
      const swept = await store.sweepStaleDescriptors().catch((err: unknown) => {
        this.o.log.warn({ err }, 'sweeping stale range descriptors failed');
        return 0;
      });
      if (swept > 0) this.o.log.info({ swept }, 'stale range descriptors deleted from the meta range');
    }
    driver.setMembers(await nodes);
    const nowMs = this.nowMs();
    driver.pass(nowMs);
    // A decommissioning node whose replicas are all gone is done: recorded so, it is no longer a member.
    for (const nodeId of driver.drained(nowMs)) {
      await store.setNodeState(nodeId, 'decommissioned');
      this.o.log.info({ decommissioned: nodeId }, 'node drained and decommissioned');
    }
  }

  private ensureDriver(): PlacementDriver {
    if (this.driver !== undefined) return this.driver;
    this.o.log.info({}, 'placement driver started: this node leads the meta range');
    this.driver = new PlacementDriver({
      startMs: this.nowMs(),
      config: this.o.config,
      settings: this.o.defaults,
      ports: { runStep: (rangeId, step, at) => this.runStep(rangeId, step, at), stepApplied: () => this.passSoon(), log: this.o.log },
    });
    return this.driver;
  }

  /** One more pass once the current turn's work is done (several steps applied together share it). */
  private passSoon(): void {
    if (this.passQueued) return;
    this.passQueued = true;
    void Promise.resolve().then(() => {
      this.passQueued = false;
      if (this.driver === undefined || this.o.host.leaderOf(groupId(META_RANGE_ID)) !== this.o.host.nodeId) return;
      this.driver.pass(this.nowMs());
    });
  }

  /** Each step is one command on the range's leader, wherever it is (the router follows hints). */
  private async runStep(rangeId: number, step: Step, at: { epoch: number }): Promise<StepOutcome | undefined> {
    const { store } = this.o;
    switch (step.kind) {
      case 'split':
        return { split: await store.split(rangeId, step.key) };
      case 'transferLeader':
        await store.runOnRange({ kind: 'transferLeader', rangeId, to: step.to });
        return undefined;
      case 'freeze':
      case 'commitMerge':
      case 'fenceMerge':
      case 'rollbackMerge':
        return this.runMergeStep(rangeId, step);
      case 'addLearner':
        // The new node creates its empty replica first: traffic alone would not override a tombstone a
        // replica removed from it earlier left (its leader's messages then look stale).
        {
          // Into the store of a neighbouring range the node holds, if any: two ranges merge only where one store holds both.
          const colocateWith = this.driver?.neighbourOn(rangeId, step.node);
          await store.runOnNode(step.node, { kind: 'prepareReplica', rangeId, ...(colocateWith === undefined ? {} : { colocateWith }) });
        }
        return this.changeMembership(rangeId, step, at);
      default:
        return this.changeMembership(rangeId, step, at);
    }
  }

  /** A merge step (placement operator.ts nextMerge): the freeze and rollback on the source, the commit and fence on the target. */
  private async runMergeStep(source: number, step: Extract<Step, { kind: 'freeze' | 'commitMerge' | 'fenceMerge' | 'rollbackMerge' }>): Promise<StepOutcome | undefined> {
    const run = async (rangeId: number, command: MergeStepCommand): Promise<KvResult> => (await this.o.store.runOnRange({ kind: 'mergeStep', rangeId, command })) as KvResult;
    switch (step.kind) {
      case 'freeze': {
        const r = await run(source, { op: 'prepareMerge', key: step.start, targetShardId: step.targetId, epoch: step.epoch, voters: step.voters });
        if (!r.ok || !('frozen' in r)) return undefined;
        return { frozen: { targetRangeId: r.frozen.targetShardId, index: r.frozen.index, term: r.frozen.term, epoch: r.frozen.epoch } };
      }
      case 'commitMerge': {
        const r = await run(step.targetId, {
          op: 'commitMerge',
          key: step.targetStart,
          epoch: step.targetEpoch,
          sourceShardId: source,
          sourceEnd: step.sourceEnd,
          sourceEpoch: step.sourceEpoch,
          freezeIndex: step.freezeIndex,
          freezeTerm: step.freezeTerm,
          voters: step.voters,
        });
        if (!r.ok || !('merged' in r)) return undefined;
        this.o.log.info({ rangeId: step.targetId, sourceRangeId: source, epoch: r.merged.epoch }, 'ranges merged');
        return { merged: { targetId: step.targetId, end: r.merged.end, epoch: r.merged.epoch } };
      }
      case 'fenceMerge': {
        const r = await run(step.targetId, { op: 'fenceMerge', key: step.targetStart, epoch: step.targetEpoch });
        return r.ok && 'fenced' in r ? { fenced: { targetId: step.targetId, epoch: r.fenced.epoch } } : undefined;
      }
      case 'rollbackMerge': {
        const r = await run(source, { op: 'rollbackMerge', key: step.start, epoch: step.epoch, targetShardId: step.targetId });
        if (!r.ok || !('unfrozen' in r)) return undefined;
        this.o.log.info({ rangeId: source, targetRangeId: step.targetId }, 'merge rolled back');
        return { unfrozen: { epoch: r.unfrozen.epoch } };
      }
    }
  }

  private async changeMembership(rangeId: number, step: Exclude<Step, { kind: 'split' | 'transferLeader' | 'freeze' | 'commitMerge' | 'fenceMerge' | 'rollbackMerge' }>, at: { epoch: number }): Promise<StepOutcome | undefined> {
    const result = (await this.o.store.runOnRange({ kind: 'membership', rangeId, epoch: at.epoch, changes: changesOf(step) })) as KvResult;
    return result.ok && 'membership' in result ? result.membership : undefined;
  }

  /** Serves placement requests forwarded here (this node leads the meta range: runLocally checked). */
  private async handle(payload: Uint8Array): Promise<Uint8Array> {
    let raw: unknown;
    try {
      raw = packr.unpack(payload);
    } catch {
      throw new KvError('INVALID_ARGUMENT', 'undecodable placement request');
    }
    if (!Array.isArray(raw) || typeof raw[0] !== 'string') throw new KvError('INVALID_ARGUMENT', 'placement request is not a tagged tuple');
    const driver = this.ensureDriver();
    const nowMs = this.nowMs();
    switch (raw[0]) {
      case 'heartbeat': {
        if (!(raw[1] instanceof Uint8Array)) throw new KvError('INVALID_ARGUMENT', 'heartbeat without a body');
        let heartbeat;
        try {
          heartbeat = decodeStoreHeartbeat(raw[1]);
        } catch (err) {
          throw new KvError('INVALID_ARGUMENT', (err as Error).message);
        }
        const answer = driver.onHeartbeat(heartbeat, nowMs);
        // The third field only when asking: a node built before decodes two (and is never asked: it sends no `described`).
        return packr.pack(answer.describe.length === 0 ? [answer.collect, answer.resync] : [answer.collect, answer.resync, answer.describe]);
      }
      case 'status': {
        // Without the ranges (raw[1] === 0) the view is a few hundred bytes whatever the range count, and no
        // per-range view is built (a snapshot at 20,000 ranges is milliseconds): callers polling counts (split-bench).
        return packr.pack(JSON.stringify(statusJson(driver.status(nowMs), raw[1] === 0 ? undefined : driver.snapshot(nowMs).ranges)));
      }
      case 'operator': {
        const snapshot = driver.snapshot(nowMs);
        const op = operatorOf(raw[1], {
          rangeOf: (rangeId) => snapshot.ranges.find((r) => r.rangeId === rangeId),
          leftOf: (range) => snapshot.ranges.find((r) => r.end !== null && Buffer.compare(r.end, range.start) === 0),
          nodeState: (nodeId) => snapshot.nodes.find((n) => n.nodeId === nodeId)?.state,
          sameStore: (nodeId, a, b) => driver.sameStore(nodeId, a, b),
          unsplittable: this.o.config.scheduler.unsplittable,
          nodeIds: snapshot.nodes.map((n) => n.nodeId),
          warm: driver.isWarm(nowMs),
        });
        try {
          driver.submit(op, nowMs);
        } catch (err) {
          if ((err as { code?: string }).code === 'OPERATOR_CONFLICT') throw new KvError('PRECONDITION_FAILED', (err as Error).message);
          throw err;
        }
        driver.pass(nowMs);
        return packr.pack(JSON.stringify(describeOperator(op)));
      }
      default:
        throw new KvError('INVALID_ARGUMENT', `unknown placement request ${JSON.stringify(raw[0])}`);
    }
  }

  /** The driver's view, from whichever node runs it; without `ranges`, no list of every range. */
  status(options: { readonly ranges?: boolean } = {}): Promise<unknown> {
    return this.ask(options.ranges === false ? ['status', 0] : ['status']);
  }

  /** Hands an operator to the driver (it fills in the range's epoch); PRECONDITION_FAILED while the range has one in flight. */
  submit(op: AdminOperator): Promise<unknown> {
    const wire =
      op.kind === 'split' ? [op.kind, op.rangeId, op.key] : op.kind === 'moveReplica' ? [op.kind, op.rangeId, op.from, op.to] : op.kind === 'merge' ? [op.kind, op.rangeId, null] : [op.kind, op.rangeId, op.to];
    return this.ask(['operator', wire]);
  }

  /** One request to the driver, wherever it runs; its refusals come back as the KvErrors it threw (a 4xx, not a 500). */
  private async ask(request: unknown[]): Promise<unknown> {
    let answer: Uint8Array;
    try {
      answer = (await this.o.store.runOnRange({ kind: 'placement', rangeId: META_RANGE_ID, payload: packr.pack(request) })) as Uint8Array;
    } catch (err) {
      // The driver's node answers its KvErrors as RemoteErrors (their code kept): the same refusal here.
      if (err instanceof RemoteError && (KV_ERROR_CODES as readonly string[]).includes(err.code)) {
        throw new KvError(err.code as KvErrorCode, err.message, err.code === 'UNAVAILABLE' ? { retryAfterMs: 1_000 } : {});
      }
      throw err;
    }
    return JSON.parse(packr.unpack(answer) as string) as unknown;
  }
}

function changesOf(step: Exclude<Step, { kind: 'split' | 'transferLeader' | 'freeze' | 'commitMerge' | 'fenceMerge' | 'rollbackMerge' }>): MembershipChange[] {
  switch (step.kind) {
    case 'addLearner':
      return [{ type: 'addLearner', nodeId: step.node }];
    case 'promote':
      return [{ type: 'addNode', nodeId: step.node }];
    case 'replaceVoter':
      return [
        { type: 'addNode', nodeId: step.add },
        { type: 'removeNode', nodeId: step.remove },
      ];
    case 'removeNode':
      return [{ type: 'removeNode', nodeId: step.node }];
    case 'leaveJoint':
      return [];
  }
}

function decodeAnswer(bytes: Uint8Array): HeartbeatAnswer {
  const raw = packr.unpack(bytes) as unknown;
  const malformed = () => new KvError('UNAVAILABLE', 'malformed heartbeat answer');
  // 2 fields from a driver built before it asked nodes to describe replicas.
  if (!Array.isArray(raw) || (raw.length !== 2 && raw.length !== 3) || typeof raw[1] !== 'boolean') throw malformed();
  const [collect, resync, describe = []] = raw as [unknown, boolean, unknown];
  const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.every((n) => Number.isSafeInteger(n) && (n as number) > 0);
  if (!isIds(collect) || !isIds(describe)) throw malformed();
  return { collect, resync, describe };
}

/** What an admin operator is checked against: the driver's view of the ranges and of the nodes it knows. */
interface OperatorContext {
  rangeOf(rangeId: number): RangeInfo | undefined;
  /** The range ending where `range` starts (a merge's target). */
  leftOf(range: RangeInfo): RangeInfo | undefined;
  nodeState(nodeId: number): NodeState | undefined;
  sameStore(nodeId: number, a: number, b: number): boolean;
  /** Ranges that take part in no split or merge (the meta range). */
  readonly unsplittable: readonly number[];
  readonly nodeIds: readonly number[];
  /** Whether the driver heard from every node since it started (isWarm): before that, a range unknown to it may just be unreported. */
  readonly warm: boolean;
}

function operatorOf(raw: unknown, context: OperatorContext): Operator {
  if (!Array.isArray(raw)) throw new KvError('INVALID_ARGUMENT', 'operator is not a tuple');
  const [kind, rangeId] = raw as unknown[];
  const positive = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
  if (!positive(rangeId)) throw new KvError('INVALID_ARGUMENT', `range id ${String(rangeId)}`);
  const range = context.rangeOf(rangeId);
  if (range === undefined) {
    // A driver that just started (the meta range's lead moved, or the cluster is starting) knows only the
    // ranges whose leaders reported already: unavailable for now, not "no such range".
    if (!context.warm) throw new KvError('UNAVAILABLE', `the placement driver has not heard from every node yet, nor of range ${rangeId}; retry shortly`, { retryAfterMs: 1_000 });
    throw new KvError('NOT_FOUND', `range ${rangeId} has not been reported to the placement driver`);
  }
  const { epoch, leader } = range;
  switch (kind) {
    case 'moveReplica': {
      const [, , from, to] = raw as unknown[];
      if (!positive(from) || !positive(to) || from === to) throw new KvError('INVALID_ARGUMENT', 'a move needs two different node ids, from and to');
      // Refused here, before the driver starts it: a move onto a holder or off a non-holder would still
      // step through membership changes (each bumping the range's epoch) and end where it began.
      const holders = [...new Set([...range.voters, ...range.votersOutgoing, ...range.learners])].sort((a, b) => a - b);
      if (!holders.includes(from)) throw new KvError('PRECONDITION_FAILED', `node ${from} holds no replica of range ${rangeId} (its replicas are on nodes ${holders.join(', ')})`);
      if (holders.includes(to)) throw new KvError('PRECONDITION_FAILED', `node ${to} already holds a replica of range ${rangeId} (its replicas are on nodes ${holders.join(', ')})`);
      if (!context.nodeIds.includes(to)) throw new KvError('NOT_FOUND', `node ${to} is not a member the placement driver knows (members: ${context.nodeIds.join(', ')})`);
      return { kind, rangeId, epoch, from, to, reason: 'admin' };
    }
    case 'transferLeader': {
      const to = (raw as unknown[])[2];
      if (!positive(to)) throw new KvError('INVALID_ARGUMENT', 'a leader transfer needs a node id');
      if (!range.voters.includes(to)) throw new KvError('PRECONDITION_FAILED', `node ${to} is not a voter of range ${rangeId} (its voters are nodes ${[...range.voters].sort((a, b) => a - b).join(', ')})`);
      // Between leaders (the old one reported it no longer leads, the new one has not reported yet): ask again shortly.
      if (leader === 0) throw new KvError('UNAVAILABLE', `range ${rangeId} has no leader the placement driver knows of`, { retryAfterMs: 1_000 });
      // As a move onto a holder: accepted, it would report a transfer that changes nothing.
      if (to === leader) throw new KvError('PRECONDITION_FAILED', `node ${to} already leads range ${rangeId}`);
      return { kind, rangeId, epoch, from: leader, to, reason: 'admin' };
    }
    case 'split': {
      const key = (raw as unknown[])[2];
      if (!(key instanceof Uint8Array) || key.byteLength === 0) throw new KvError('INVALID_ARGUMENT', 'a split needs a key');
      return { kind, rangeId, epoch, key, reason: 'admin' };
    }
    case 'merge': {
      // Checked here as the driver would before its freeze, so a merge that cannot start says why.
      const target = context.leftOf(range);
      if (target === undefined) throw new KvError('PRECONDITION_FAILED', `range ${rangeId} has no left neighbour the placement driver knows of`);
      if (context.unsplittable.includes(rangeId) || context.unsplittable.includes(target.rangeId)) throw new KvError('PRECONDITION_FAILED', `range ${target.rangeId} or ${rangeId} takes part in no merge`);
      if (range.frozen !== undefined) throw new KvError('PRECONDITION_FAILED', `range ${rangeId} is already frozen for a merge into range ${range.frozen.targetRangeId}`);
      const problem = mergeProblem(target, range, context.nodeState, context.sameStore);
      if (problem !== undefined) throw new KvError('PRECONDITION_FAILED', `range ${rangeId} cannot merge into range ${target.rangeId} now: ${problem}`);
      return { kind, rangeId, epoch, targetId: target.rangeId, targetEpoch: target.epoch, reason: 'admin' };
    }
    default:
      throw new KvError('INVALID_ARGUMENT', `unknown operator ${String(kind)}`);
  }
}

/** The driver's status, and each range as its leader last reported it (bounds in hex): /ui shows their size and load. */
function statusJson(s: DriverStatus, ranges: readonly RangeInfo[] | undefined): unknown {
  const hex = (b: Uint8Array | null): string | null => (b === null ? null : Buffer.from(b).toString('hex'));
  return {
    settings: s.settings,
    rangeCount: s.rangeCount,
    nodes: s.nodes,
    operators: s.operators.map((op) => (op.kind === 'split' ? { ...op, key: Buffer.from(op.key).toString('hex') } : op)),
    keyEncoding: 'hex',
    ...(ranges === undefined ? {} : { ranges: ranges.map((r) => ({
      rangeId: r.rangeId,
      start: hex(r.start),
      end: hex(r.end),
      epoch: r.epoch,
      leader: r.leader,
      replicas: r.voters,
      votersOutgoing: r.votersOutgoing,
      learners: r.learners,
      sizeBytes: r.sizeBytes,
      keyCount: r.keyCount,
      writesPerSec: r.writesPerSec,
      readsPerSec: r.readsPerSec,
    })) }),
  };
}

/** Bytes the node's stores take and bytes free on their file system. */
function diskOf(dir: string): { usedBytes: number; availableBytes: number } {
  let usedBytes = 0;
  const walk = (path: string, depth: number) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory() && depth < 2) walk(full, depth + 1);
      else if (entry.isFile()) usedBytes += statSync(full).size;
    }
  };
  let availableBytes = 0;
  try {
    walk(dir, 0);
    const fs = statfsSync(dir);
    availableBytes = fs.bavail * fs.bsize;
  } catch {
    // A directory we cannot measure reports zero: the scheduler only prefers emptier nodes.
  }
  return { usedBytes, availableBytes };
}
