import { FlotillaError } from '@flotilla/core';
import type { ClusterSnapshot, FrozenInfo, NodeInfo, NodeState, Operator, RangeInfo, SchedulerConfig, Step } from './cluster.js';
import { compareKeys, rangeContains } from './range.js';
import type { HeartbeatAnswer, RangeReport, ReplicaBounds, StoreHeartbeat } from './heartbeat.js';
import type { NodeAdminState, PlacementSettings } from './meta.js';
import { keyStrictlyInside, nextStep } from './operator.js';
import { plan, replicasTarget } from './scheduler.js';

/**
 * The placement driver: the meta range's leader runs one. It keeps the
 * cluster as heartbeats report it (in memory only, like PD's cache: a new
 * driver rebuilds it from the next heartbeats and waits a `downAfterMs`
 * before calling anything down), plans with the pure scheduler, and carries
 * out operators one step at a time through `ports.runStep` — each step a
 * Raft command on the range, so a driver that dies mid-operator leaves a
 * valid range, and the next driver's plan finishes or undoes the change
 * (scheduler.ts, stray learners and joint configurations). Time comes in as
 * `nowMs` arguments: no clocks here.
 */

export interface DriverConfig {
  /** Scheduler thresholds and limits; `paused` and `replicationFactor` come from the settings. */
  readonly scheduler: Omit<SchedulerConfig, 'paused' | 'replicationFactor'>;
  /** A node silent this long is suspect (nothing moves for it yet)... */
  readonly suspectAfterMs: number;
  /** ...and this long, down: its replicas are rebuilt elsewhere. */
  readonly downAfterMs: number;
  /** An operator not done by then is dropped (the next pass re-plans from what the range is). */
  readonly operatorTimeoutMs: number;
  /** The same step is not sent again for this long unless the range reports a change. */
  readonly stepRetryMs: number;
  /**
   * A range's load rates count for this long after its last report. Leaders
   * report a range only when it changed, and any write or read does change
   * it: a range not reported for longer has had no load since.
   */
  readonly rateFreshMs: number;
}

/** A pass plans at least this often, changed or not (disk use, which every heartbeat carries, does not count as a change). */
const PLAN_INTERVAL_MAX_MS = 10_000;

/**
 * Plans are at least one millisecond apart per this many ranges (none apart below it), unless node states
 * (a member's admin state among them) or settings changed. A plan reads every range, about a microsecond
 * each (`npm run bench:plan`: 6 ms at 10,000 ranges, 96 ms at 100,000), and runs on the main thread of the
 * node leading the meta range; during growth by splits every step applied asks for one. At most one plan per range-count ÷ 100
 * ms keeps the driver near a tenth of that thread (split-bench at 8,000 ranges had it at two thirds).
 */
const PLAN_RANGES_PER_MS = 100;

export const DRIVER_CONFIG_DEFAULTS: Omit<DriverConfig, 'scheduler'> = {
  suspectAfterMs: 5_000,
  downAfterMs: 30_000,
  operatorTimeoutMs: 120_000,
  stepRetryMs: 3_000,
  rateFreshMs: 3_000,
};

/** What a step changed, when the range's leader answered with it: a membership change's outcome, or a split's. */
export type StepOutcome = MembershipStepOutcome | SplitStepOutcome | MergeStepOutcome;

/** A merge step's answer: the source froze or unfroze, the target took it in or was fenced. */
export type MergeStepOutcome =
  | { readonly frozen: FrozenInfo }
  | { readonly unfrozen: { readonly epoch: number } }
  | { readonly merged: { readonly targetId: number; readonly end: Uint8Array | null; readonly epoch: number } }
  | { readonly fenced: { readonly targetId: number; readonly epoch: number } };

export interface MembershipStepOutcome {
  readonly epoch: number;
  readonly voters: readonly number[];
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
}

/** The range's left half keeps its id; the right half is a new range. */
export interface SplitStepOutcome {
  readonly split: { readonly left: { readonly end: Uint8Array; readonly epoch: number } };
}

export interface DriverPorts {
  /** Runs one step on the range's leader; resolves once applied there. */
  runStep(rangeId: number, step: Step, at: { epoch: number; leader: number }): Promise<StepOutcome | undefined>;
  /**
   * A step was applied: the shell runs another pass soon rather than at its
   * next duty tick, so an operator whose next step needs no new report (a
   * promotion's joint change, leaving it) takes it at once, and a finished
   * one frees its slot for the next move while others stream.
   */
  stepApplied?(): void;
  readonly log: {
    info(fields: Record<string, unknown>, message: string): void;
    warn(fields: Record<string, unknown>, message: string): void;
    debug(fields: Record<string, unknown>, message: string): void;
  };
}

interface NodeRecordView {
  readonly nodeId: number;
  readonly state: NodeAdminState;
}

interface TrackedNode {
  heardMs: number | undefined;
  usedBytes: number;
  availableBytes: number;
  /** The node's replicas and the epoch each applied, as its heartbeats told them. */
  replicas: Map<number, number>;
  /** The worker core holding each of its replicas, where not core 0 (merges need both ranges in one store). */
  cores: Map<number, number>;
  /** The heartbeat session and the last seq taken from it (deltas build on it). */
  session: number | undefined;
  seq: number;
  /** Its empty replicas of ranges that do not have it, and since when (see collectable). */
  emptySince: Map<number, number>;
  /** Ranges whose configuration dropped the node since its last heartbeat: its replica there may be collectable. */
  dropped: Set<number>;
  /** Its replicas with data of ranges this driver does not know, and since when (see collectable). */
  unknownSince: Map<number, number>;
  /** Its replicas of ranges merged away that the target's replica here may still need (see collectable). */
  mergeWaiting: Set<number>;
  /** The key ranges of those the node described (HeartbeatAnswer.describe). */
  described: Map<number, ReplicaBounds>;
  /** Its heartbeats carry `described`: it may be asked to describe replicas (a node built before does not). */
  describes: boolean;
}

/** Merged-away ranges the driver remembers, to collect replicas of them left behind (a node down through the merge). */
const MERGED_AWAY_REMEMBERED_MAX = 65_536;

/**
 * A replica with data of a range the driver does not know is described (its key range asked of its node)
 * once it stayed unknown this long: a split's right half is unknown only until its leader's first report.
 */
const UNKNOWN_DESCRIBE_AFTER_MS = 10_000;

/** Replicas one heartbeat answer asks a node to describe, at most. */
const DESCRIBE_PER_ANSWER_MAX = 1_000;

const untracked = (): TrackedNode => ({
  heardMs: undefined,
  usedBytes: 0,
  availableBytes: 0,
  replicas: new Map(),
  cores: new Map(),
  mergeWaiting: new Set(),
  session: undefined,
  seq: 0,
  emptySince: new Map(),
  dropped: new Set(),
  unknownSince: new Map(),
  described: new Map(),
  describes: false,
});

interface TrackedRange {
  report: RangeReport;
  leader: number;
  heardMs: number;
  writesPerSec: number;
  readsPerSec: number;
  hotSinceMs: number | undefined;
  /** Since when its load has stayed at or below mergeLoadOpsPerSec (undefined: loaded at its last report). */
  coldSinceMs: number | undefined;
}

interface TrackedOperator {
  readonly op: Operator;
  readonly startedMs: number;
  pending: boolean;
  /** The last step sent, at which epoch and when: not repeated within stepRetryMs. */
  last: { key: string; epoch: number; sentMs: number } | undefined;
}

export interface DriverStatus {
  readonly settings: PlacementSettings;
  readonly nodes: readonly (NodeInfo & {
    readonly replicaCount: number;
    readonly leaderCount: number;
    /** Writes and reads per second the ranges it leads serve (the node's load). */
    readonly writesPerSec: number;
    readonly readsPerSec: number;
    readonly silentMs: number | null;
  })[];
  readonly rangeCount: number;
  readonly operators: readonly (Operator & { readonly ageMs: number; readonly lastStep: string | null })[];
}

export class PlacementDriver {
  private readonly nodes = new Map<number, TrackedNode>();
  private readonly admin = new Map<number, NodeAdminState>();
  private readonly ranges = new Map<number, TrackedRange>();
  private readonly operators = new Map<number, TrackedOperator>();
  /** Ranges merged away, by id: the target and its epoch once merged (bounded: the oldest go first). */
  private readonly mergedAway = new Map<number, { readonly targetId: number; readonly epoch: number }>();
  /** What pass reads changed since its last plan (see pass). */
  private planDirty = true;
  /** Settings changed since the last plan: the next pass plans at once, however recent the last (a member's admin state is in the node states it compares). */
  private planUrgent = true;
  private plannedStates = '';
  private lastPlanMs = Number.NEGATIVE_INFINITY;
  /** Range ids in ascending order for snapshot(), kept as ranges join (undefined: sort again, once one left). */
  private idsSorted: number[] | undefined;
  /** When a range report was last taken: load rates expire rateFreshMs after their report. */
  private lastReportMs = Number.NEGATIVE_INFINITY;
  private plans = 0;
  private settings: PlacementSettings;
  /** Ranges reported over the split size since a pass last looked: the candidates of startSizeSplits. */
  private readonly oversized = new Set<number>();
  /** Tracked ranges whose report says frozen for a merge (their targets are held: startSizeSplits). */
  private frozenCount = 0;

  constructor(
    private readonly o: { startMs: number; config: DriverConfig; ports: DriverPorts; settings: PlacementSettings },
  ) {
    this.settings = o.settings;
  }

  setSettings(settings: PlacementSettings): void {
    if (settings.paused !== this.settings.paused || settings.replicationFactor !== this.settings.replicationFactor) {
      this.o.ports.log.info({ ...settings }, 'placement settings changed');
      this.planDirty = true;
      this.planUrgent = true;
    }
    this.settings = settings;
  }

  /** The nodes the meta range records, with their administrative state. A node never heard from counts as silent since the driver started. */
  setMembers(records: readonly NodeRecordView[]): void {
    for (const r of records) {
      if (this.admin.get(r.nodeId) !== r.state) this.planDirty = true;
      this.admin.set(r.nodeId, r.state);
      if (!this.nodes.has(r.nodeId)) this.nodes.set(r.nodeId, untracked());
    }
  }

  /**
   * Takes in one node's heartbeat (full, or the changes since one taken
   * before: heartbeat.ts); answers which of its replicas to destroy (their
   * range removed them), or `resync` for a delta it cannot place. Work
   * follows what the heartbeat carries: the node's other replicas are
   * looked at only when a range's report drops the node (`dropped`), or
   * while they stay empty.
   */
  onHeartbeat(h: StoreHeartbeat, nowMs: number): HeartbeatAnswer {
    const known = this.nodes.get(h.nodeId);
    const full = h.base === 0;
    if (!full && (known === undefined || known.session !== h.session || h.base > known.seq)) return { collect: [], resync: true, describe: [] };
    const n = known ?? untracked();
    this.nodes.set(h.nodeId, n);
    n.heardMs = nowMs;
    n.usedBytes = h.usedBytes;
    n.availableBytes = h.availableBytes;
    n.session = h.session;
    n.seq = Math.max(full ? 0 : n.seq, h.seq);
    const leads = new Set<number>();
    for (const report of h.leading) {
      leads.add(report.rangeId);
      this.onRangeReport(h.nodeId, report, nowMs);
    }
    if (full) {
      n.replicas = new Map(h.replicas.map((r) => [r.rangeId, r.epoch]));
      n.cores = new Map(h.replicas.flatMap((r) => (r.core === undefined || r.core === 0 ? [] : [[r.rangeId, r.core] as [number, number]])));
      n.emptySince = new Map([...n.emptySince].filter(([rangeId]) => n.replicas.get(rangeId) === 0));
      n.unknownSince = new Map([...n.unknownSince].filter(([rangeId]) => (n.replicas.get(rangeId) ?? 0) !== 0));
      n.mergeWaiting = new Set([...n.mergeWaiting].filter((rangeId) => n.replicas.has(rangeId)));
    } else {
      for (const rangeId of h.removed) {
        n.replicas.delete(rangeId);
        n.cores.delete(rangeId);
      }
      for (const r of h.replicas) {
        n.replicas.set(r.rangeId, r.epoch);
        if (r.core === undefined || r.core === 0) n.cores.delete(r.rangeId);
        else n.cores.set(r.rangeId, r.core);
      }
    }
    // A replica the node reports without leading it: a range this node led has another leader (or none yet).
    for (const { rangeId } of h.replicas) {
      const t = this.ranges.get(rangeId);
      if (t !== undefined && t.leader === h.nodeId && !leads.has(rangeId)) {
        t.leader = 0;
        this.planDirty = true;
      }
    }
    n.describes = h.described !== undefined;
    for (const d of h.described ?? []) n.described.set(d.rangeId, d);
    const candidates = new Set([...h.replicas.map((r) => r.rangeId), ...n.dropped, ...n.emptySince.keys(), ...n.unknownSince.keys(), ...n.mergeWaiting]);
    n.dropped.clear();
    const collect: number[] = [];
    const describe: number[] = [];
    for (const rangeId of candidates) {
      const verdict = this.collectable(h.nodeId, n, rangeId, nowMs);
      if (verdict === true) collect.push(rangeId);
      else if (verdict === 'describe' && describe.length < DESCRIBE_PER_ANSWER_MAX) describe.push(rangeId);
    }
    for (const rangeId of n.described.keys()) if (!n.unknownSince.has(rangeId)) n.described.delete(rangeId);
    if (collect.length > 0) this.o.ports.log.info({ holder: h.nodeId, rangeIds: collect }, 'replicas whose ranges no longer include them: collected');
    return { collect, resync: false, describe };
  }

  /**
   * Whether the node's replica of the range (if it holds one) is one the range removed, and may go;
   * `describe`: the range is unknown here, and the replica's key range (asked of its node) would tell.
   */
  private collectable(nodeId: number, n: TrackedNode, rangeId: number, nowMs: number): boolean | 'describe' {
    const epoch = n.replicas.get(rangeId);
    const r = this.ranges.get(rangeId);
    if (r !== undefined || epoch === undefined || epoch === 0) n.unknownSince.delete(rangeId);
    n.mergeWaiting.delete(rangeId);
    if (epoch === undefined || (r !== undefined && holds(r.report, nodeId))) {
      n.emptySince.delete(rangeId);
      return false;
    }
    // A range not reported yet (a new driver) decides little: one with data is looked at again when the
    // report comes (noteStrays), and an empty replica stays watched (its report may drop the node).
    if (r === undefined) {
      // Merged away: its data is the target's. A replica left where the target's replica is past the merge
      // (or where there is none) has nothing to wait for; one the target's merge may still need stays.
      const merged = this.mergedAway.get(rangeId);
      if (merged !== undefined) {
        if ((n.replicas.get(merged.targetId) ?? merged.epoch) >= merged.epoch) return true;
        // Looked at again on every heartbeat until the target's replica here passes the merge or goes: the
        // replica, quiet, is in no delta again (node simulation seed 79303 kept one for ever).
        n.mergeWaiting.add(rangeId);
        return false;
      }
      if (epoch !== 0) return this.unknownWithData(nodeId, n, rangeId, epoch, nowMs);
      // Empty, and no leader reported its range to this driver, warm, for an operator's lifetime: the range
      // was merged away before this driver started (mergedAway is memory), or has had no leader that long.
      // Either way the replica holds no entry and no data (a snapshot would have given it an epoch); its
      // tombstone keeps its term and vote, and a split applied here later creates it again from its parent
      // (NodeStore.writeShardRecords). Kept, it would stay forever: nothing else names it.
      const since = n.emptySince.get(rangeId) ?? nowMs;
      n.emptySince.set(rangeId, since);
      return this.isWarm(nowMs) && nowMs - since > this.o.config.operatorTimeoutMs;
    }
    // A replica an operator is adding here is wanted, whatever the range's last report says: the
    // report may predate the change, and a replica destroyed now would be missing from the group
    // the change makes (its leader's traffic then meets a tombstone and creates nothing).
    const op = this.operators.get(rangeId)?.op;
    if (op !== undefined && ((op.kind === 'moveReplica' && op.to === nodeId) || (op.kind === 'addReplica' && op.node === nodeId))) {
      n.emptySince.delete(rangeId);
      return false;
    }
    if (epoch === 0) {
      // An empty replica may be a learner about to be added (prepared before the change): only one
      // that stayed empty and unclaimed past an operator's lifetime goes.
      const since = n.emptySince.get(rangeId) ?? nowMs;
      n.emptySince.set(rangeId, since);
      return nowMs - since > this.o.config.operatorTimeoutMs;
    }
    n.emptySince.delete(rangeId);
    // A replica that applied an epoch older than the range's, which no longer has it.
    return epoch < r.report.epoch;
  }

  /**
   * A replica with data of a range this driver does not know: the last live copy of a range whose
   * other replicas are down (no leader to report it), or a replica of a range merged away while its
   * node was down, which the driver that saw the merge (mergedAway is memory) did not live to collect
   * (node simulation seed 40030). Its key range tells them apart: a range's start key never changes
   * (a split keeps the left part, a merge keeps the target's start), and a key leaves a range only by a
   * merge into its left neighbour, for good (ids are not reused). So another range reported holding
   * the replica's first key at a higher epoch than the replica applied took it in: the replica's range
   * is gone, its data the other's. Kept while the node holds a replica, left of that key, behind its
   * range: it may be the merge's target waiting for this one to catch up (merge-gate.ts).
   */
  private unknownWithData(nodeId: number, n: TrackedNode, rangeId: number, epoch: number, nowMs: number): boolean | 'describe' {
    const since = n.unknownSince.get(rangeId) ?? nowMs;
    n.unknownSince.set(rangeId, since);
    if (!n.describes || !this.isWarm(nowMs) || nowMs - since < UNKNOWN_DESCRIBE_AFTER_MS) return false;
    const d = n.described.get(rangeId);
    if (d === undefined || d.epoch !== epoch) return 'describe';
    let cover: RangeReport | undefined;
    for (const t of this.ranges.values()) {
      if (rangeContains(t.report, d.start)) {
        cover = t.report;
        break;
      }
    }
    // Kept: looked at again only after as long once more (each look is a pass over the ranges and the node's replicas).
    const keep = (): false => {
      n.unknownSince.set(rangeId, nowMs);
      return false;
    };
    if (cover === undefined || cover.epoch <= d.epoch) return keep();
    for (const [id, replicaEpoch] of n.replicas) {
      const t = this.ranges.get(id);
      if (t !== undefined && replicaEpoch < t.report.epoch && compareKeys(t.report.start, d.start) < 0) return keep();
    }
    this.o.ports.log.info({ holder: nodeId, rangeId, epoch, byRangeId: cover.rangeId, byEpoch: cover.epoch }, 'replica of a range merged away while its node was down: collected');
    return true;
  }

  /**
   * A range's report or a step's answer was taken: the nodes whose replica of it the configuration does
   * not name are looked at for collection on their next heartbeat (their replica, quiet, may never be in
   * a delta again). Work per node, not per replica.
   */
  private noteStrays(rangeId: number, r: RangeMembers): void {
    for (const [nodeId, n] of this.nodes) if (n.replicas.has(rangeId) && !holds(r, nodeId)) n.dropped.add(rangeId);
  }

  /**
   * A node a range's configuration names is a node, whether or not it has
   * recorded itself or sent a heartbeat yet: unknown, the scheduler would
   * count the cluster smaller and call its replicas excess.
   */
  private noteReferenced(report: RangeReport): void {
    for (const nodeId of [...report.voters, ...report.votersOutgoing, ...report.learners]) {
      if (!this.nodes.has(nodeId)) this.nodes.set(nodeId, untracked());
    }
  }

  private onRangeReport(from: number, report: RangeReport, nowMs: number): void {
    this.noteReferenced(report);
    const known = this.ranges.get(report.rangeId);
    if (known !== undefined && (report.epoch < known.report.epoch || (report.epoch === known.report.epoch && report.term < known.report.term))) return;
    let writesPerSec = 0;
    let readsPerSec = 0;
    if (known !== undefined && known.leader === from && known.report.term === report.term && nowMs > known.heardMs) {
      const seconds = (nowMs - known.heardMs) / 1000;
      writesPerSec = Math.max(0, report.writeCount - known.report.writeCount) / seconds;
      readsPerSec = Math.max(0, report.readCount - known.report.readCount) / seconds;
    }
    const hot = writesPerSec + readsPerSec >= this.o.config.scheduler.splitLoadOpsPerSec;
    const hotSinceMs = hot ? (known?.hotSinceMs ?? nowMs) : undefined;
    const cold = writesPerSec + readsPerSec <= this.o.config.scheduler.mergeLoadOpsPerSec;
    const coldSinceMs = cold ? (known?.coldSinceMs ?? nowMs) : undefined;
    this.noteStrays(report.rangeId, report);
    if (known === undefined && this.idsSorted !== undefined) insertSorted(this.idsSorted, report.rangeId);
    this.ranges.set(report.rangeId, { report, leader: from, heardMs: nowMs, writesPerSec, readsPerSec, hotSinceMs, coldSinceMs });
    this.frozenCount += Number(report.frozen !== undefined) - Number(known?.report.frozen !== undefined);
    if (report.sizeBytes >= this.o.config.scheduler.splitSizeBytes) this.oversized.add(report.rangeId);
    if (known !== undefined && endsPast(report.end, known.report.end)) this.dropMergedInto(report);
    this.lastReportMs = nowMs;
    this.planDirty = true;
    // A split's halves report separately; the parent's entry is replaced by the left half (same id).
  }

  /** The cluster as the scheduler sees it now. */
  snapshot(nowMs: number): ClusterSnapshot {
    this.idsSorted ??= [...this.ranges.keys()].sort((a, b) => a - b);
    // Node states once, not per range: every range's leader is looked up in them.
    const down = new Set([...this.nodes.keys()].filter((nodeId) => this.nodeState(nodeId, nowMs) === 'down'));
    const ranges = this.idsSorted.map((id) => this.rangeInfo(this.ranges.get(id)!, nowMs, down));
    return { nodes: this.nodeInfos(nowMs), ranges, sameStore: (nodeId, a, b) => this.sameStore(nodeId, a, b) };
  }

  private nodeInfos(nowMs: number): NodeInfo[] {
    return [...this.nodes.entries()]
      .sort(([a], [b]) => a - b)
      .map(([nodeId, n]) => ({ nodeId, state: this.nodeState(nodeId, nowMs), usedBytes: n.usedBytes, availableBytes: n.availableBytes }));
  }

  private rangeInfo(t: TrackedRange, nowMs: number, down?: ReadonlySet<number>): RangeInfo {
    const r = t.report;
    // A quiet range is not reported: its leader's liveness is its node's.
    const leaderLive = this.leadsLive(t, nowMs, down);
    const loaded = this.ratesFresh(t, nowMs);
    const overSize = r.sizeBytes >= this.o.config.scheduler.splitSizeBytes;
    const info: RangeInfo & { frozen?: FrozenInfo } = {
      rangeId: r.rangeId,
      start: r.start,
      end: r.end,
      epoch: r.epoch,
      voters: r.voters,
      votersOutgoing: r.votersOutgoing,
      learners: r.learners,
      leader: leaderLive ? t.leader : 0,
      lastIndex: r.lastIndex,
      progress: r.progress,
      sizeBytes: r.sizeBytes,
      keyCount: r.keyCount,
      writesPerSec: loaded ? t.writesPerSec : 0,
      readsPerSec: loaded ? t.readsPerSec : 0,
      hotForSec: t.hotSinceMs === undefined || !loaded ? 0 : (nowMs - t.hotSinceMs) / 1000,
      splitKey: overSize ? r.sizeSplitKey : r.loadSplitKey,
      // A quiet range is not reported: once its rates expired it has been cold since then, at the latest.
      coldForSec: Math.max(0, nowMs - (t.coldSinceMs ?? (loaded ? nowMs : t.heardMs + this.o.config.rateFreshMs))) / 1000,
    };
    // Added to the few frozen ones only: a spread in the literal cost every range an object and a clone.
    if (r.frozen !== undefined) info.frozen = { targetRangeId: r.frozen.targetRangeId, index: r.frozen.index, term: r.frozen.term, epoch: r.frozen.epoch };
    return info;
  }

  /** Whether the range's last reporting leader leads it still: a leader on a node that is down leads nothing the driver can use. */
  private leadsLive(t: TrackedRange, nowMs: number, down?: ReadonlySet<number>): boolean {
    return t.leader !== 0 && !(down?.has(t.leader) ?? this.nodeState(t.leader, nowMs) === 'down');
  }

  /** Whether the rates of the range's last report still hold: they expire rateFreshMs after it. */
  private ratesFresh(t: TrackedRange, nowMs: number): boolean {
    return nowMs - t.heardMs <= this.o.config.rateFreshMs;
  }

  /** The range as the scheduler would see it now (undefined: never reported). */
  range(rangeId: number, nowMs: number): RangeInfo | undefined {
    const t = this.ranges.get(rangeId);
    return t === undefined ? undefined : this.rangeInfo(t, nowMs);
  }

  private nodeState(nodeId: number, nowMs: number): NodeState {
    const admin = this.admin.get(nodeId) ?? 'up';
    if (admin === 'decommissioned') return 'decommissioned';
    const n = this.nodes.get(nodeId);
    const silentMs = nowMs - (n?.heardMs ?? this.o.startMs);
    if (silentMs >= this.o.config.downAfterMs) return 'down';
    if (admin === 'decommissioning') return 'decommissioning';
    if (silentMs >= this.o.config.suspectAfterMs) return 'suspect';
    return 'up';
  }

  /**
   * A range next to `rangeId` that `nodeId` holds a replica of: a replica
   * of `rangeId` created there goes into that one's store, so the two can
   * merge later. The neighbour a move aligns the range with for a merge
   * first, then the left one; never one that takes part in no merge (the
   * meta range). O(ranges): asked once per replica added, not per pass.
   */
  neighbourOn(rangeId: number, nodeId: number): number | undefined {
    const r = this.ranges.get(rangeId)?.report;
    const held = this.nodes.get(nodeId)?.replicas;
    if (r === undefined || held === undefined) return undefined;
    const op = this.operators.get(rangeId)?.op;
    if (op?.kind === 'moveReplica' && op.mergeWith !== undefined && held.has(op.mergeWith)) return op.mergeWith;
    const unsplittable = this.o.config.scheduler.unsplittable;
    let right: number | undefined;
    for (const [id, t] of this.ranges) {
      if (id === rangeId || !held.has(id) || unsplittable.includes(id)) continue;
      if (t.report.end !== null && compareKeys(t.report.end, r.start) === 0) return id;
      if (r.end !== null && compareKeys(t.report.start, r.end) === 0) right = id;
    }
    return right;
  }

  /** Whether a node holds its replicas of ranges `a` and `b` in one store (the same worker core). */
  sameStore(nodeId: number, a: number, b: number): boolean {
    const cores = this.nodes.get(nodeId)?.cores;
    return (cores?.get(a) ?? 0) === (cores?.get(b) ?? 0);
  }

  /** Starts an operator an operator asked for (admin API); refused while the range has one. */
  submit(op: Operator, nowMs: number): void {
    const existing = this.operators.get(op.rangeId);
    if (existing !== undefined) throw new OperatorConflictError(`range ${op.rangeId} already has a ${existing.op.kind} operator in flight`);
    if (!this.ranges.has(op.rangeId)) throw new OperatorConflictError(`range ${op.rangeId} has not been reported by its leader`);
    // A merge holds its target too, and a frozen range its target until merged or rolled back (as the
    // scheduler's rule): an operator on either would change what the merge checked.
    const held = this.mergeHolding(op.rangeId);
    if (held !== undefined) throw new OperatorConflictError(`range ${op.rangeId} is held by ${held}`);
    if (op.kind === 'merge') {
      if (this.operators.has(op.targetId)) throw new OperatorConflictError(`range ${op.targetId} already has a ${this.operators.get(op.targetId)!.op.kind} operator in flight`);
      const targetHeld = this.mergeHolding(op.targetId);
      if (targetHeld !== undefined) throw new OperatorConflictError(`range ${op.targetId} is held by ${targetHeld}`);
    }
    this.start(op, nowMs);
  }

  /** What merge holds range `rangeId` as its target, or it as a frozen source, if any: said in a refusal. */
  private mergeHolding(rangeId: number): string | undefined {
    for (const t of this.operators.values()) if (t.op.kind === 'merge' && t.op.targetId === rangeId) return `the merge of range ${t.op.rangeId} into it`;
    for (const t of this.ranges.values()) {
      const frozen = t.report.frozen;
      if (frozen === undefined) continue;
      if (t.report.rangeId === rangeId) return `its freeze for a merge into range ${frozen.targetRangeId}`;
      if (frozen.targetRangeId === rangeId) return `range ${t.report.rangeId}, frozen for a merge into it`;
    }
    return undefined;
  }

  private start(op: Operator, nowMs: number): void {
    this.operators.set(op.rangeId, { op, startedMs: nowMs, pending: false, last: undefined });
    this.planDirty = true;
    this.o.ports.log.info({ ...describeOperator(op) }, 'operator started');
  }

  /**
   * Whether the driver has heard from every node it knows (or waited out
   * the down timeout): before that its view lacks the ranges the silent
   * nodes lead, and a plan from it would "balance" what only looks uneven.
   * PD's prepare checker waits the same way.
   */
  isWarm(nowMs: number): boolean {
    if (nowMs - this.o.startMs >= this.o.config.downAfterMs) return true;
    for (const [nodeId, n] of this.nodes) if (n.heardMs === undefined && this.admin.get(nodeId) !== 'decommissioned') return false;
    return true;
  }

  /**
   * One pass: advance every operator in flight, then plan new ones (unless
   * paused, or not warm yet) and take their first steps. Planning reads
   * every range, so it runs only when something it reads may have changed
   * since the last plan — a report taken, an operator started or ended,
   * settings, members, a node's state, load rates expiring — or once every
   * PLAN_INTERVAL_MAX_MS (disk use, which every heartbeat carries): a pass
   * over a quiet cluster of 100,000 ranges costs work per node, not per range.
   */
  pass(nowMs: number): void {
    this.advance(nowMs);
    if (!this.isWarm(nowMs)) return;
    this.startSizeSplits(nowMs);
    const nodes = this.nodeInfos(nowMs);
    const states = nodes.map((n) => `${n.nodeId}:${n.state}`).join(',');
    // The latest report's load rates expired since the last plan (earlier reports' went before them: close enough).
    const expiryMs = this.lastReportMs + this.o.config.rateFreshMs;
    const ratesExpired = this.lastPlanMs <= expiryMs && nowMs > expiryMs;
    const statesChanged = states !== this.plannedStates;
    if (!this.planDirty && !statesChanged && !ratesExpired && nowMs - this.lastPlanMs < PLAN_INTERVAL_MAX_MS) return;
    // Dirty, but planned just now: the pass a step applied or the next duty tick asks for plans then. A
    // clock that went back since the last plan waits for nothing (it may have gone back by seconds).
    const spacingMs = Math.floor(this.ranges.size / PLAN_RANGES_PER_MS);
    const sinceMs = nowMs - this.lastPlanMs;
    if (!this.planUrgent && !statesChanged && sinceMs >= 0 && sinceMs < spacingMs) return;
    this.planDirty = false;
    this.planUrgent = false;
    this.plannedStates = states;
    this.lastPlanMs = nowMs;
    this.plans++;
    const config: SchedulerConfig = { ...this.o.config.scheduler, paused: this.settings.paused, replicationFactor: this.settings.replicationFactor };
    this.dropStaleFrozen();
    const planned = plan(this.snapshot(nowMs), config, [...this.operators.values()].map((t) => t.op));
    for (const op of planned) if (!this.operators.has(op.rangeId)) this.start(op, nowMs);
    if (planned.length > 0) this.advance(nowMs);
  }

  /**
   * Size splits started as their ranges report, between plans. A plan reads
   * every range, so plans are spaced by the range count (PLAN_RANGES_PER_MS);
   * with splits only planned, a cluster of n ranges could split at most
   * splitsInFlightMax times per n/100 ms — 16 a second at 100,000 ranges,
   * however fast its ranges grow. A range over the split size splits here,
   * within the same budget, when the split is the only rule that could want
   * it: every node up, its voters complete and settled, a leader, no
   * operator, no merge holding it. Anything else waits for the plan, which
   * applies the rules in their order. Work per reported oversized range.
   */
  private startSizeSplits(nowMs: number): void {
    if (this.oversized.size === 0 || this.settings.paused) return;
    const config = this.o.config.scheduler;
    let room = config.splitsInFlightMax;
    const held = new Set<number>();
    for (const t of this.operators.values()) {
      if (t.op.kind === 'split') room--;
      if (t.op.kind === 'merge') held.add(t.op.targetId);
    }
    // Candidates stay for a later pass while the budget is spent or a node is not up (the plan may take them first).
    if (room <= 0) return;
    const nodes = this.nodeInfos(nowMs);
    if (nodes.some((n) => n.state !== 'up' && n.state !== 'decommissioned')) return;
    if (this.frozenCount > 0) for (const t of this.ranges.values()) if (t.report.frozen !== undefined) held.add(t.report.frozen.targetRangeId);
    const target = replicasTarget(nodes, this.settings);
    let started = 0;
    for (const rangeId of this.oversized) {
      if (room === 0) break;
      this.oversized.delete(rangeId);
      const t = this.ranges.get(rangeId);
      if (t === undefined || this.operators.has(rangeId) || held.has(rangeId) || config.unsplittable.includes(rangeId)) continue;
      const r = t.report;
      const key = r.sizeSplitKey;
      if (r.sizeBytes < config.splitSizeBytes || key === undefined || !keyStrictlyInside(r, key) || r.frozen !== undefined || t.leader === 0) continue;
      if (r.voters.length !== target || r.votersOutgoing.length > 0 || r.learners.length > 0) continue;
      this.start({ kind: 'split', rangeId, epoch: r.epoch, key, reason: 'size' }, nowMs);
      room--;
      started++;
    }
    if (started > 0) this.advance(nowMs);
  }

  /** Plans made so far (pass plans only when something it reads changed). */
  get planCount(): number {
    return this.plans;
  }

  private advance(nowMs: number): void {
    const states = new Map<number, NodeState>();
    const nodeState = (id: number) => {
      if (!this.nodes.has(id)) return undefined;
      if (!states.has(id)) states.set(id, this.nodeState(id, nowMs));
      return states.get(id);
    };
    for (const [rangeId, t] of this.operators) {
      if (nowMs - t.startedMs > this.o.config.operatorTimeoutMs) {
        this.endOperator(rangeId);
        this.o.ports.log.warn({ ...describeOperator(t.op), ageMs: nowMs - t.startedMs }, 'operator timed out; the next pass plans again');
        continue;
      }
      const range = this.range(rangeId, nowMs);
      const decision = nextStep(t.op, range, {
        catchUpLagEntriesMax: this.o.config.scheduler.catchUpLagEntriesMax,
        nodeState,
        rangeOf: (id) => this.range(id, nowMs),
        replicaEpoch: (nodeId, id) => this.nodes.get(nodeId)?.replicas.get(id),
        sameStore: (nodeId, a, b) => this.sameStore(nodeId, a, b),
        // O(ranges), asked only by a merge whose target left the view.
        rangeEndingAt: (key) => {
          for (const [id, t] of this.ranges) if (t.report.end !== null && compareKeys(t.report.end, key) === 0) return this.range(id, nowMs);
          return undefined;
        },
      });
      if (decision.kind === 'done' || decision.kind === 'abandon') {
        this.endOperator(rangeId);
        // A merge done: its target covers the source, which may still be in the view (a driver that started
        // after the merge heard the source's last report, and the target's with nothing to compare it to).
        const target = t.op.kind === 'merge' && decision.kind === 'done' ? this.ranges.get(t.op.targetId) : undefined;
        if (target !== undefined) this.dropMergedInto(target.report);
        this.o.ports.log.info({ ...describeOperator(t.op), ageMs: nowMs - t.startedMs, ...(decision.kind === 'abandon' ? { why: decision.why } : {}) }, decision.kind === 'done' ? 'operator finished' : 'operator abandoned');
        continue;
      }
      if (decision.kind === 'wait' || t.pending || range === undefined) continue;
      const key = stepKey(decision.step);
      if (t.last !== undefined && t.last.key === key && t.last.epoch === range.epoch && nowMs - t.last.sentMs < this.o.config.stepRetryMs) continue;
      t.pending = true;
      t.last = { key, epoch: range.epoch, sentMs: nowMs };
      this.o.ports.log.debug({ rangeId, step: key, epoch: range.epoch, leader: range.leader }, 'operator step sent');
      this.o.ports
        .runStep(rangeId, decision.step, { epoch: range.epoch, leader: range.leader })
        .then(
          (outcome) => {
            if (outcome !== undefined) this.applyOutcome(rangeId, outcome);
            // Cleared here, not in a `finally`: the pass stepApplied asks for may send this operator's next step
            // before a `finally` would run, which would then clear that step's flag.
            t.pending = false;
            this.o.ports.stepApplied?.();
          },
          (err: unknown) => {
            t.pending = false;
            this.o.ports.log.debug({ rangeId, step: key, err }, 'operator step failed; retried on a later pass');
          },
        );
    }
  }

  private endOperator(rangeId: number): void {
    this.operators.delete(rangeId);
    this.planDirty = true;
  }

  /** What a step's answer says of the range, taken in before its leader's next report. */
  private applyOutcome(rangeId: number, outcome: StepOutcome): void {
    if ('split' in outcome) return this.applySplit(rangeId, outcome.split.left);
    if ('frozen' in outcome || 'unfrozen' in outcome || 'merged' in outcome || 'fenced' in outcome) return this.applyMergeOutcome(rangeId, outcome);
    const t = this.ranges.get(rangeId);
    if (t === undefined || outcome.epoch <= t.report.epoch) return;
    // Progress is kept only for replicas that stay: one the change added (or removed and added back) has
    // shown nothing yet. A match kept from a removed learner's earlier life counted its re-added, empty
    // replica as caught up, and it was promoted before it held the range (node simulation seed 7106).
    const before = new Set([...t.report.voters, ...t.report.votersOutgoing, ...t.report.learners]);
    const after = new Set([...outcome.voters, ...outcome.votersOutgoing, ...outcome.learners]);
    const progress = t.report.progress.filter((p) => before.has(p.nodeId) && after.has(p.nodeId));
    const report = { ...t.report, epoch: outcome.epoch, voters: outcome.voters, votersOutgoing: outcome.votersOutgoing, learners: outcome.learners, progress };
    this.noteStrays(rangeId, report);
    t.report = report;
    this.planDirty = true;
    this.noteReferenced(t.report);
  }

  /**
   * A split's answer: the range is its left half now, and its operator is done at the next pass rather
   * than when the leader next reports (a heartbeat later: that wait set how fast a cluster could split).
   * The right half joins the view with its leader's first report; until then nothing plans on it. The
   * halves' sizes are the parent's halved and their split keys unknown until reported.
   */
  private applySplit(rangeId: number, left: SplitStepOutcome['split']['left']): void {
    const t = this.ranges.get(rangeId);
    if (t === undefined || left.epoch <= t.report.epoch) return;
    const r = t.report;
    t.report = { ...r, end: left.end, epoch: left.epoch, keyCount: Math.floor(r.keyCount / 2), sizeBytes: Math.floor(r.sizeBytes / 2), sizeSplitKey: undefined, loadSplitKey: undefined };
    t.hotSinceMs = undefined;
    this.planDirty = true;
  }

  /** A merge step's answer, taken in before the ranges' next reports (as applySplit). */
  private applyMergeOutcome(rangeId: number, outcome: MergeStepOutcome): void {
    this.planDirty = true;
    if ('merged' in outcome || 'fenced' in outcome) {
      const { targetId, epoch } = 'merged' in outcome ? outcome.merged : outcome.fenced;
      const t = this.ranges.get(targetId);
      if (t === undefined || epoch <= t.report.epoch) return;
      t.report = { ...t.report, epoch, ...('merged' in outcome ? { end: outcome.merged.end } : {}) };
      if ('merged' in outcome) this.dropMergedInto(t.report);
      return;
    }
    const t = this.ranges.get(rangeId);
    if (t === undefined) return;
    if ('frozen' in outcome) {
      if (outcome.frozen.epoch <= t.report.epoch) return;
      if (t.report.frozen === undefined) this.frozenCount++;
      t.report = { ...t.report, epoch: outcome.frozen.epoch, frozen: { targetRangeId: outcome.frozen.targetRangeId, index: outcome.frozen.index, term: outcome.frozen.term, epoch: outcome.frozen.epoch } };
    } else if (outcome.unfrozen.epoch > t.report.epoch) {
      if (t.report.frozen !== undefined) this.frozenCount--;
      t.report = { ...t.report, epoch: outcome.unfrozen.epoch, frozen: undefined };
    }
  }

  /**
   * Ranges a merged range took in leave the view: every range it now
   * covers at a lower epoch (ranges grow only by a merge, so each of them
   * was merged in). Runs only when a range's end moved right: O(ranges) per
   * merge, not per report.
   */
  /**
   * A frozen range no operator owns whose first key another range holds at a higher epoch is gone: a range's
   * start key never changes, and a key leaves a range only by a merge (unknownWithData), so the other one,
   * or one it split from, took it in. The view missed that merge (the target split again before it
   * reported; node simulation seed 82065), and resuming the freeze would step a range that is no more,
   * one timed-out operator after another, each holding merge budget. Work per frozen range, only when
   * planning, and none while no range is frozen (a visit of every range was 1.4 % of the driver's thread
   * in split-bench at 40,000 ranges).
   */
  private dropStaleFrozen(): void {
    if (this.frozenCount === 0) return;
    for (const [id, t] of this.ranges) {
      if (t.report.frozen === undefined || this.operators.has(id)) continue;
      for (const [coverId, c] of this.ranges) {
        if (coverId === id || c.report.epoch <= t.report.epoch || !rangeContains(c.report, t.report.start)) continue;
        this.dropStale(id, coverId, c.report.epoch);
        break;
      }
    }
  }

  private dropStale(id: number, intoRangeId: number, epoch: number): void {
    if (this.ranges.get(id)?.report.frozen !== undefined) this.frozenCount--;
    this.ranges.delete(id);
    this.idsSorted = undefined;
    this.mergedAway.set(id, { targetId: intoRangeId, epoch });
    if (this.mergedAway.size > MERGED_AWAY_REMEMBERED_MAX) this.mergedAway.delete(this.mergedAway.keys().next().value!);
    this.o.ports.log.info({ rangeId: id, intoRangeId }, 'range merged away');
  }

  private dropMergedInto(merged: RangeReport): void {
    for (const [id, t] of this.ranges) {
      if (id === merged.rangeId || t.report.epoch >= merged.epoch) continue;
      if (compareKeys(t.report.start, merged.start) < 0 || endsPast(t.report.end, merged.end)) continue;
      this.dropStale(id, merged.rangeId, merged.epoch);
    }
  }

  /** Nodes being decommissioned that hold no replica any more (none before the driver is warm: it may not know their replicas yet). */
  drained(nowMs: number): number[] {
    if (!this.isWarm(nowMs)) return [];
    const draining = [...this.nodes.keys()].filter((id) => this.nodeState(id, nowMs) === 'decommissioning');
    if (draining.length === 0) return [];
    const holding = new Set<number>();
    for (const t of this.ranges.values()) for (const id of [...t.report.voters, ...t.report.votersOutgoing, ...t.report.learners]) holding.add(id);
    return draining.filter((id) => !holding.has(id));
  }

  /**
   * Nodes with their replica and leader counts and load, the range count and the operators: from the
   * tracked ranges as they are, without the per-range view a snapshot builds (a status poll at 40,000
   * ranges made 40,000 objects for a few hundred bytes of answer).
   */
  status(nowMs: number): DriverStatus {
    const replicaCount = new Map<number, number>();
    const leaderCount = new Map<number, number>();
    const load = new Map<number, { writesPerSec: number; readsPerSec: number }>();
    const nodes = this.nodeInfos(nowMs);
    const down = new Set(nodes.filter((n) => n.state === 'down').map((n) => n.nodeId));
    const count = (nodeId: number) => replicaCount.set(nodeId, (replicaCount.get(nodeId) ?? 0) + 1);
    for (const t of this.ranges.values()) {
      const r = t.report;
      for (const n of r.voters) count(n);
      for (const n of r.votersOutgoing) if (!r.voters.includes(n)) count(n);
      for (const n of r.learners) if (!r.voters.includes(n) && !r.votersOutgoing.includes(n)) count(n);
      if (!this.leadsLive(t, nowMs, down)) continue;
      leaderCount.set(t.leader, (leaderCount.get(t.leader) ?? 0) + 1);
      if (!this.ratesFresh(t, nowMs)) continue;
      const l = load.get(t.leader) ?? { writesPerSec: 0, readsPerSec: 0 };
      load.set(t.leader, { writesPerSec: l.writesPerSec + t.writesPerSec, readsPerSec: l.readsPerSec + t.readsPerSec });
    }
    return {
      settings: this.settings,
      nodes: nodes.map((n) => {
        const heardMs = this.nodes.get(n.nodeId)?.heardMs;
        return {
          ...n,
          replicaCount: replicaCount.get(n.nodeId) ?? 0,
          leaderCount: leaderCount.get(n.nodeId) ?? 0,
          ...(load.get(n.nodeId) ?? { writesPerSec: 0, readsPerSec: 0 }),
          silentMs: heardMs === undefined ? null : nowMs - heardMs,
        };
      }),
      rangeCount: this.ranges.size,
      operators: [...this.operators.values()].map((t) => ({ ...t.op, ageMs: nowMs - t.startedMs, lastStep: t.last?.key ?? null })),
    };
  }
}

/** An admin operator refused: the range has one in flight, or is unknown. */
export class OperatorConflictError extends FlotillaError {
  readonly code = 'OPERATOR_CONFLICT';
  readonly retryable = true;
}

type RangeMembers = Pick<RangeReport, 'voters' | 'votersOutgoing' | 'learners'>;

function holds(r: RangeMembers, nodeId: number): boolean {
  return r.voters.includes(nodeId) || r.votersOutgoing.includes(nodeId) || r.learners.includes(nodeId);
}

function stepKey(s: Step): string {
  switch (s.kind) {
    case 'split':
      return `split@${Buffer.from(s.key).toString('hex')}`;
    case 'addLearner':
    case 'promote':
    case 'removeNode':
      return `${s.kind}(${s.node})`;
    case 'replaceVoter':
      return `replaceVoter(+${s.add},-${s.remove})`;
    case 'transferLeader':
      return `transferLeader(${s.to})`;
    case 'leaveJoint':
      return 'leaveJoint';
    case 'freeze':
      return `freeze(into ${s.targetId})`;
    case 'commitMerge':
      return `commitMerge(${s.targetId}@${s.targetEpoch})`;
    case 'fenceMerge':
      return `fenceMerge(${s.targetId}@${s.targetEpoch})`;
    case 'rollbackMerge':
      return `rollbackMerge(${s.targetId})`;
  }
}

/** Whether end `a` lies past end `b` (null: the end of the key space). */
function endsPast(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (b === null) return false;
  return a === null || compareKeys(a, b) > 0;
}

/** Log fields for an operator (keys as hex: never raw bytes in logs). */
export function describeOperator(op: Operator): Record<string, unknown> {
  return op.kind === 'split' ? { ...op, key: Buffer.from(op.key).toString('hex') } : { ...op };
}

/** Inserts `id` into ascending `ids`: new ranges mostly take ids above every other (a push). */
function insertSorted(ids: number[], id: number): void {
  let at = ids.length;
  if (at > 0 && ids[at - 1]! > id) {
    let lo = 0;
    while (lo < at) {
      const mid = (lo + at) >>> 1;
      if (ids[mid]! < id) lo = mid + 1;
      else at = mid;
    }
  }
  ids.splice(at, 0, id);
}
