import { getHeapStatistics } from 'node:v8';
import { ProposalDroppedError, assert, groupId, nodeId, type GroupId, type Message, type NodeId } from '@flotilla/core';
import { ReplicaChecksums } from '../kv/consistency.js';
import { isInitialized, type ShardRange } from '../kv/range.js';
import { KvStateMachine, type ApplyOutcome, type ApplyResults } from '../kv/state-machine.js';
import { ReplicaLifecycle } from '../replica/lifecycle.js';
import { childLogger, raftLogger, type ShellLogger } from '../shell-logger.js';
import { CoreClaims } from '../snapshot/claims.js';
import { IncomingSnapshots } from '../snapshot/incoming.js';
import { OutgoingSnapshots } from '../snapshot/outgoing.js';
import { isOutOfSpace } from '../storage/disk-space.js';
import type { NodeStore, ShardWrite } from '../storage/node-store.js';
import { ApplyPlan, segmentBatches, segmentBytes, type GroupReady } from './apply-plan.js';
import { MergeGate } from './merge-gate.js';
import { decodeFrozen } from '../kv/merge.js';
import { CoreOutputBuffer } from './core-output.js';
import { zeroCoreStats, type CoreEvent, type CoreInput, type CoreOutput, type CoreRequest, type CoreStats, type CoreStatsReport } from './core-protocol.js';
import { DiskGuard, writeBytes } from './disk-guard.js';
import { Group, type GroupOptions, type GroupRaftOptions } from './group.js';
import { CoreLeases } from './core-leases.js';
import { InboundTraffic } from './inbound.js';
import { LocalReadPublisher } from './local-reads.js';
import { PROCESS_LEASE_CLOCKS, type LeaseClocks } from './node-leases.js';
import { rangeReports } from './range-reports.js';
import { ShardChangeTracker } from './shard-changes.js';
import { Quiescence } from './quiescence.js';
import { copyCoreLatencies, emptyCoreLatencies, observeLatency } from './latency.js';
import { ShardRequests } from './shard-requests.js';

export interface ShardCoreOptions {
  readonly nodeId: number;
  readonly coreIndex: number;
  readonly coreCount: number;
  readonly store: NodeStore;
  readonly raft: GroupRaftOptions;
  /** Idle, fully replicated groups stop ticking (see `Group.canQuiesce` and quiescence.ts). */
  readonly quiesce: boolean;
  /**
   * Queued groups campaigned, and queued groups woken, per tick: after a peer went down or came back,
   * and after a restart. Spreads elections out instead of a storm.
   */
  readonly wakeCountPerTickMax: number;
  /** Compact a shard's log once it holds this many applied entries... */
  readonly compactionTriggerEntries: number;
  /** ...keeping this many recent ones for followers that lag a little (the rest catch up by snapshot). */
  readonly compactionKeepEntries: number;
  readonly seed: number;
  readonly logger: ShellLogger;
  /** Called with everything the core has for the Host; at most twice per round. */
  readonly emit: (output: CoreOutput) => void;
  /** The loop failed (an assertion, a storage error): the node must stop; its groups recover from disk. */
  readonly onFatal: (err: unknown) => void;
  /**
   * Below this many free bytes on the store's file system the core refuses
   * new writes (DISK_FULL) while Raft goes on: the rest is room for the hard
   * states and the entries its leaders replicate, so the disk fills as late
   * as possible and never in the middle of a client's write.
   */
  readonly diskReserveBytes: number;
  /** Keys a consistency check hashes per tick (kv/consistency.ts CHECKSUM_CHUNK_KEY_COUNT_DEFAULT). */
  readonly checksumChunkKeyCount: number;
  /** Ticks a finished check keeps its snapshot for block details (CHECKSUM_HOLD_TICKS_DEFAULT). */
  readonly checksumHoldTicks: number;
  /** Node leases (node-leases.ts): how long a lease and a promise last. Undefined: off (reads confirm with a heartbeat round). */
  readonly nodeLeases?: { readonly leaseMs: number; readonly promiseTicks: number; readonly clockSteps?: SharedArrayBuffer };
  /** The clocks leases are checked against: the Host's, which must read the same (default: the process's monotonic and wall clocks). */
  readonly leaseClocks?: LeaseClocks;
  /** Where the core publishes the shards whose reads the Host may serve itself (local-reads.ts); undefined: it serves them all. */
  readonly localReads?: SharedArrayBuffer;
}

/**
 * The shards of one worker core and the loop that drives them. Inputs
 * (messages, events, ticks, requests) are stepped synchronously as they
 * arrive; the loop then runs rounds: take every ready group's Ready → send
 * what may leave at once → one transaction for all of them holding their
 * new entries, hard states and the apply of their committed entries
 * (synced when Raft needs it: NodeStore.persist) →
 * send what depended on it → answer proposals and reads → advance. The same
 * class runs inside a worker thread (core-worker.ts) or inline for
 * deterministic tests.
 *
 * The rest lives in parts that own their state and see the core through a
 * small port:
 * - quiescence.ts: which groups tick — idle groups quiesce, traffic and a
 *   peer's going down or coming back wake them, a few per tick;
 * - inbound.ts: the Raft traffic peers send, checked and stepped;
 * - shard-requests.ts: a shard's writes, reads, checks, membership changes
 *   and leadership transfers, and the answers the round settles;
 * - apply-plan.ts: the round's committed entries cut into apply
 *   transactions, and what each commit changed besides data;
 * - replica/lifecycle.ts: a replica's opening at start, creation, claim,
 *   removal and destroy;
 * - snapshot/incoming.ts, snapshot/outgoing.ts: snapshot streams each way;
 * - disk-guard.ts: free space, and rounds that wait for it;
 * - core-output.ts: what goes to the Host, buffered until the loop flushes.
 */
/**
 * Quiesced replicas whose cached entries wait for a log tail checkpoint
 * (NodeStore.releasesWaiting) before the core makes one of its own: they
 * commit nothing more, so no group commit would come to free them.
 */
const TAIL_RELEASES_CHECKPOINT_MIN = 64;
/** Campaigns a new group (created, or a split's right half) tries on successive ticks while it has no leader (Quiescence.campaignSoon). */
const NEW_GROUP_CAMPAIGN_ATTEMPTS = 3;

export class ShardCore {
  readonly stats: CoreStats = zeroCoreStats();
  /** Counted as rounds and proposals go; sent with the stats (latency.ts). */
  private readonly latencies = emptyCoreLatencies();
  private readonly self: NodeId;
  private readonly log: ShellLogger;
  /** The parent of every replica's Raft logger: the core's identity without `component: 'core'` (see childLogger). */
  private readonly raftLog: ShellLogger;
  /** Every replica in this core's store, a removed one until its destroy is durable. */
  private readonly groups = new Map<GroupId, Group>();
  /** Groups that got input since the last round and may have a Ready. */
  private readonly touched = new Set<Group>();
  /** Replicas whose status or report changed since the Host last asked (a superset of every touched group). */
  private readonly changes = new ShardChangeTracker();
  /** What every group's Raft node is built with, one object for all (Group.raw). */
  private readonly groupOptions: GroupOptions;
  /** The keys each replica here owns or claims, indexed (snapshot/claims.ts). */
  private readonly claims: CoreClaims;
  /** Groups here whose Raft node was built: CoreStats.loadedGroupCount. */
  private loadedGroupCount = 0;
  /** Ticks seen: the clock of the disk guard, the consistency checks and the unknown-shard reports. */
  private tickCount = 0;
  /** A log tail checkpoint for quiesced replicas' caches is scheduled (see TAIL_RELEASES_CHECKPOINT_MIN). */
  private tailCheckpointScheduled = false;
  /** This core's copy of the node's leases (undefined: node leases off). */
  private readonly leases: CoreLeases | undefined;
  private readonly localReads: LocalReadPublisher | undefined;

  private readonly sm: KvStateMachine;
  /** Consistency check results and the passes computing them, one chunk per tick (kv/consistency.ts). */
  private readonly checksums: ReplicaChecksums;
  private readonly out: CoreOutputBuffer;
  private readonly quiescence: Quiescence;
  private readonly inbound: InboundTraffic;
  private readonly disk: DiskGuard;
  private readonly requests: ShardRequests;
  private readonly replicas: ReplicaLifecycle;
  private readonly snapshotsOut: OutgoingSnapshots;
  private readonly snapshotsIn: IncomingSnapshots;
  private readonly applyPlan: ApplyPlan;
  private readonly mergeGate: MergeGate;

  /** Store writes that run in the loop, between rounds (see schedule). */
  private readonly tasks: (() => Promise<void>)[] = [];
  /** A loop is queued or running: a kick only flushes. */
  private looping = false;
  /** No input is taken any more: the core is closing, or its loop failed. */
  private closed = false;
  /** close() was called: it runs once. */
  private closing = false;
  /** Callers of idle() waiting for the loop to stop. */
  private readonly idleWaiters: (() => void)[] = [];
  /** What ended the loop; idle() rethrows it. */
  private failure: unknown;

  constructor(private readonly options: ShardCoreOptions) {
    assert(options.wakeCountPerTickMax > 0, 'wakeCountPerTickMax must be positive');
    assert(options.compactionKeepEntries < options.compactionTriggerEntries, () => `compactionKeepEntries ${options.compactionKeepEntries} must be below compactionTriggerEntries ${options.compactionTriggerEntries}`);
    const { store } = options;
    this.self = nodeId(options.nodeId);
    this.sm = new KvStateMachine(store);
    this.log = childLogger(options.logger, { component: 'core', nodeId: options.nodeId, core: options.coreIndex });
    this.raftLog = childLogger(options.logger, { component: 'raft', nodeId: options.nodeId, core: options.coreIndex });
    this.out = new CoreOutputBuffer(options.emit);
    const nl = options.nodeLeases;
    this.leases = nl === undefined ? undefined : new CoreLeases({ ...nl, clocks: options.leaseClocks ?? PROCESS_LEASE_CLOCKS, nowTick: () => this.tickCount });
    this.claims = new CoreClaims(store);
    this.localReads =
      options.localReads === undefined || this.leases === undefined
        ? undefined
        : new LocalReadPublisher(options.localReads, (shardId, version, b) => this.out.event({ kind: 'readBounds', shardId, version, start: b.start, end: b.end }));
    this.groupOptions = {
      nodeId: this.self,
      seed: options.seed,
      raft: options.raft,
      nodeLeases: this.leases,
      logger: (id) => raftLogger(this.raftLog, { rangeId: id }),
      onLoad: () => void this.loadedGroupCount++,
      // Only a group the core still holds: one forgotten (destroyed) must not come back into the claims.
      claimsChanged: (g) => {
        if (this.groups.get(g.id) === g) this.claims.track(g);
      },
    };
    this.checksums = new ReplicaChecksums(store, { chunkKeyCount: options.checksumChunkKeyCount, holdTicks: options.checksumHoldTicks }, (fields, message) => this.log.error(fields, message));
    // What the parts share: who we are, what we count and log, where answers go, the replicas and the
    // loop. Each part's port names what it takes of it.
    const shared = {
      self: this.self,
      stats: this.stats,
      latencies: this.latencies,
      log: this.log,
      out: this.out,
      store,
      groups: this.groups,
      claims: this.claims,
      touch: (g: Group): void => void this.touched.add(g),
      /** Quietly: a follower's wake does not ask its leader to wake too. */
      wake: (g: Group): void => this.quiescence.wake(g, { notifyLeader: false }),
      schedule: (task: () => Promise<void>): void => this.schedule(task),
    };
    const start = (g: Group, { campaignSoon }: { campaignSoon: boolean }): void => {
      this.quiescence.start(g);
      if (campaignSoon) this.quiescence.campaignSoon(g, NEW_GROUP_CAMPAIGN_ATTEMPTS);
      this.touched.add(g);
    };
    const addGroup = (shardId: GroupId, bounds: ShardRange): Group => this.addGroup(shardId, bounds);
    this.quiescence = new Quiescence({ ...shared, quiesce: options.quiesce, wakeCountPerTickMax: options.wakeCountPerTickMax });
    this.inbound = new InboundTraffic({ ...shared, quiescence: this.quiescence, tickCount: () => this.tickCount });
    this.disk = new DiskGuard({ ...shared, dir: store.dir, reserveBytes: options.diskReserveBytes, active: this.quiescence.ticking, downPeers: this.quiescence.downPeers });
    this.snapshotsOut = new OutgoingSnapshots({
      ...shared,
      coreIndex: options.coreIndex,
      coreCount: options.coreCount,
      onReported: (g) => {
        this.touched.add(g);
        this.kick();
      },
    });
    this.snapshotsIn = new IncomingSnapshots({ ...shared, disk: this.disk, step: (g, m) => this.inbound.step(g, m), supersede: (g, outside) => this.replicas.noteMergedAway(g, outside) });
    this.requests = new ShardRequests({ ...shared, sm: this.sm, checksums: this.checksums, disk: this.disk });
    this.replicas = new ReplicaLifecycle({
      ...shared,
      sm: this.sm,
      requests: this.requests,
      snapshotsOut: this.snapshotsOut,
      snapshotsIn: this.snapshotsIn,
      quiescence: this.quiescence,
      addGroup,
      start,
      stop: (g) => {
        this.localReads?.withdraw(g.id);
        this.quiescence.stop(g);
        this.touched.delete(g);
        this.checksums.dropShard(g.id);
      },
      forget: (g) => {
        this.localReads?.forget(g.id, g.bounds);
        this.groups.delete(g.id);
        this.claims.forget(g);
        if (g.loaded) this.loadedGroupCount--;
        this.changes.forget(g);
      },
    });
    this.applyPlan = new ApplyPlan({ ...shared, checksums: this.checksums, replicas: this.replicas, addGroup, start });
    this.mergeGate = new MergeGate(shared);
    store.setCheckpointCompaction((shardId) => this.checkpointCompaction(shardId));
    this.replicas.openStored();
    this.replicas.destroyRemovedByApply();
    // Per core: the Host's 'host started' says how many there are.
    this.log.debug({ replicaCount: this.groups.size }, 'core started');
  }

  private addGroup(shardId: GroupId, bounds: ShardRange): Group {
    const g = new Group(shardId, this.options.store.storage(shardId), bounds, this.groupOptions);
    g.frozen = decodeFrozen(shardId, this.options.store.frozen(shardId));
    this.groups.set(shardId, g);
    this.claims.track(g);
    return g;
  }

  // ---------------------------------------------------------------------------
  // Inputs

  /** Steps one batch of inputs from the Host, then runs rounds until nothing is ready. */
  onInput(input: CoreInput): void {
    if (this.closed) return;
    // Messages before ticks: a core that fell behind must not fire election timeouts against
    // heartbeats it already holds.
    // Lease changes between the segments that arrived before and after them: an acknowledgement is
    // stamped with the lease epoch current when it arrived (core-leases.ts).
    let leaseAt = 0;
    const applyLeases = (upTo: number): void => {
      for (; leaseAt < input.leases.length && input.leases[leaseAt]![0] <= upTo; leaseAt++) this.leases?.apply(input.leases[leaseAt]![1]);
    };
    input.inbound.forEach(([from, segment], i) => {
      applyLeases(i);
      // Nothing stepped now could be persisted, and leaders resend what a follower has not acknowledged.
      if (this.disk.isFull) this.stats.segmentsDroppedDiskFull++;
      else this.inbound.onSegment(nodeId(from), segment);
    });
    applyLeases(Number.POSITIVE_INFINITY);
    for (const e of input.events) this.onEvent(e);
    for (let t = 0; t < input.ticks; t++) this.onTick();
    for (const r of input.requests) this.onRequest(r);
    this.kick();
  }

  private onTick(): void {
    this.tickCount++;
    // Hashing advances with time, not with rounds: one chunk per tick keeps a big range's check from stalling the loop.
    this.checksums.onTick(this.tickCount);
    this.disk.onTick(this.tickCount);
    // No group ticks: a node that cannot persist must not campaign, and its leaders must not look alive.
    if (this.disk.isFull) return;
    if (!this.tailCheckpointScheduled && this.options.store.releasesWaiting() >= TAIL_RELEASES_CHECKPOINT_MIN) {
      this.tailCheckpointScheduled = true;
      this.schedule(async () => {
        try {
          await this.options.store.checkpointTail();
        } finally {
          this.tailCheckpointScheduled = false;
        }
      });
    }
    for (const g of this.quiescence.ticking) {
      if (this.quiescence.maybeQuiesceLeader(g)) continue;
      g.raw.tick();
      this.stats.groupTicks++;
      this.touched.add(g);
      // Held from campaigning by a promise to the leader's node: ask that node for its replica (it wakes, or
      // answers that it has none and we forget it: inbound.ts).
      if (g.raw.raft.takeHeldByPromise()) this.out.outbox.wake(g.raw.raft.lead, g.id);
    }
    this.quiescence.wakeQueued();
  }

  private onEvent(e: CoreEvent): void {
    switch (e.kind) {
      case 'peerDown':
        return this.quiescence.onPeerDown(nodeId(e.peer));
      case 'peerUp':
        return this.quiescence.onPeerUp(nodeId(e.peer));
      case 'unreachable':
        return this.onUnreachable(nodeId(e.peer));
      case 'snapshotCredit':
        return this.snapshotsOut.onCredit(e.streamId);
      case 'snapshotDone':
        return this.snapshotsOut.onDone(e.streamId, e.ok);
      case 'snapshotIncoming':
        return this.snapshotsIn.onIncoming(e.streamId, groupId(e.shardId), nodeId(e.from), e.term);
      case 'snapshotChunk':
        return this.snapshotsIn.onChunk(e.streamId, e.bytes);
      case 'snapshotEnd':
        return this.snapshotsIn.onEnd(e.streamId, e.ok);
      case 'localReads':
        return this.requests.onLocalReads(e.reads);
      default: {
        const never: never = e;
        throw new Error(`unknown core event ${JSON.stringify(never)}`);
      }
    }
  }

  /**
   * The Host dropped traffic to the peer: our leaders stop counting what they sent it as in flight and
   * probe it, then resend from its match.
   */
  private onUnreachable(peer: NodeId): void {
    for (const g of this.quiescence.ticking) {
      if (g.isLeader && g.raw.raft.tracker.progress.has(peer)) {
        g.raw.reportUnreachable(peer);
        this.touched.add(g);
      }
    }
  }

  // ---------------------------------------------------------------------------
  // Requests

  private onRequest(r: CoreRequest): void {
    // A request to a replica changes what it reports (a write or a read counted). Each such path touches
    // or wakes the group today; marking here keeps the view right if one stops doing so.
    if ('shardId' in r) {
      const g = this.groups.get(groupId(r.shardId));
      if (g !== undefined) this.changes.mark(g);
    }
    switch (r.kind) {
      case 'propose':
        return this.requests.onPropose(r.id, groupId(r.shardId), r.command);
      case 'read':
        return this.requests.onRead(r.id, groupId(r.shardId), { requestId: r.id, read: r.read }, r.consistency);
      case 'createShard':
        return this.replicas.onCreateShard(r);
      case 'removeShard':
        return this.replicas.onRemoveShard(r.id, groupId(r.shardId));
      case 'claimShard':
        return this.replicas.onClaimShard(r.id, groupId(r.shardId));
      case 'changeMembership':
        return this.requests.onChangeMembership(r.id, groupId(r.shardId), r.epoch, r.changes);
      case 'rangeReports':
        return this.out.reply(r.id, rangeReports(this.groups.values(), this.sm, { self: this.self, splitKeyMinBytes: r.splitKeyMinBytes }));
      case 'status':
        return this.requests.onStatus(r.id);
      case 'changes':
        for (const g of this.touched) this.changes.mark(g);
        return this.out.reply(r.id, this.changes.take(this.groups, this.sm, { self: this.self, splitKeyMinBytes: r.splitKeyMinBytes, full: r.full }));
      case 'transferLeader':
        return this.requests.onTransferLeader(r.id, groupId(r.shardId), nodeId(r.to));
      case 'stats':
        this.stats.groupCount = this.groups.size;
        this.stats.activeGroupCount = this.quiescence.ticking.size;
        this.stats.loadedGroupCount = this.loadedGroupCount;
        this.stats.checksumPasses = this.checksums.stats.passes;
        this.stats.checksumPassesRefused = this.checksums.stats.passesRefused;
        this.stats.checksumPassesFailed = this.checksums.stats.passesFailed;
        this.stats.checksumChunks = this.checksums.stats.chunks;
        this.stats.storeUsedBytes = storeUsedBytes(this.options.store);
        const tail = this.options.store.tailStats();
        this.stats.tailRecords = tail.records;
        this.stats.tailCheckpoints = tail.checkpoints;
        this.stats.tailCompactions = tail.compactions;
        this.stats.tailCachesWaiting = this.options.store.releasesWaiting();
        if (r.collectGarbage === true) (globalThis as { gc?: () => void }).gc?.();
        this.stats.heapUsedBytes = getHeapStatistics().used_heap_size;
        return this.out.reply(r.id, { ...this.stats, latencies: copyCoreLatencies(this.latencies) } satisfies CoreStatsReport);
      case 'checksumPropose':
        return this.requests.onChecksumPropose(r.id, groupId(r.shardId), r.checksumId);
      case 'checksumResult':
      case 'checksumBlock':
        return this.requests.onChecksumQuery(r);
      default: {
        const never: never = r;
        throw new Error(`unknown core request ${JSON.stringify(never)}`);
      }
    }
  }

  // ---------------------------------------------------------------------------
  // The loop: store tasks first, then rounds while groups are ready

  /** Runs a store write in the loop, before the next round (a creation, a claim, a destroy, a snapshot chunk). */
  private schedule(task: () => Promise<void>): void {
    this.tasks.push(task);
    this.kick();
  }

  /** Starts the loop unless it runs or the core closed; then only what waits for the Host goes out now. */
  private kick(): void {
    if (this.looping || this.closed) {
      this.out.flush();
      return;
    }
    this.looping = true;
    queueMicrotask(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        while (this.tasks.length > 0) await this.runTask(this.tasks.shift()!);
        // The writes this turn brought, one entry per shard, before their Readys are taken.
        this.requests.proposeBatches();
        const ready: Group[] = [];
        for (const g of this.touched) {
          this.changes.mark(g);
          if (!g.removed && g.raw.hasReady()) ready.push(g);
        }
        this.touched.clear();
        if (ready.length === 0 || this.disk.isAbandoning) break;
        await this.round(ready);
        // Let the input that arrived during the round (its commit blocks this thread) be handled first, so
        // the next round carries it too: otherwise rounds run back to back on what the last one touched,
        // one entry each, while requests wait behind them.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      this.failure = err;
      this.closed = true;
      this.log.error({ err }, 'core loop failed; the node must stop');
      for (const w of this.idleWaiters.splice(0)) w();
      this.options.onFatal(err);
      return;
    }
    this.looping = false;
    this.out.flush();
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * A task that failed for want of space (a claim, a destroy, a staging
   * clear) is given up, logged and counted, not the node's end: each leaves
   * the store as it was, and whoever asked times out and may ask again.
   */
  private async runTask(task: () => Promise<void>): Promise<void> {
    try {
      await task();
    } catch (err) {
      if (!isOutOfSpace(err, this.options.store.dir)) throw err;
      this.stats.storeWritesFailedDiskFull++;
      this.log.error({ dir: this.options.store.dir, err }, 'a store write failed: the disk is full');
    }
  }

  // ---------------------------------------------------------------------------
  // The round

  /** One round over every ready group (see the class comment for the order and why). */
  private async round(groups: Group[]): Promise<void> {
    this.stats.rounds++;
    // A merge's commit waits here until this node's replica of its source caught up (merge-gate.ts).
    const items: GroupReady[] = groups.map((g) => ({ g, rd: this.mergeGate.check(g, g.raw.ready()) }));
    // When the round took its Readys: the commit time of the entries they carry as committed (latency.ts).
    const readyAtMs = performance.now();
    // Before anything this round sends: a commit index it carries is not applied yet (local-reads.ts).
    for (const { g } of items) this.publishLocalRead(g);
    // What does not depend on this round's writes: a leader's appends go out while it persists.
    for (const { g, rd } of items) {
      if (rd.softState !== undefined || rd.hardState !== undefined) this.noteLeader(g);
      this.route(g, rd.messages);
    }
    this.out.flush();

    // Each write waits while the disk is full. The core closing meanwhile abandons the Ready, as a crash
    // would (the log replays it): the round ends there.
    let installed = false;
    for (const { g, rd } of items) {
      if (rd.snapshot === undefined) continue;
      if (!(await this.disk.untilWritten(() => this.snapshotsIn.install(g, rd), 2 * (g.accepted?.stagedBytes ?? 0)))) return;
      installed = true;
    }
    // A replica a snapshot just took over (a range merged into the snapshot's) applies, answers and serves
    // nothing more: its keys are the snapshot's now. It is destroyed after the round.
    const live = installed ? items.filter(({ g }) => !this.replicas.isMergedAway(g)) : items;
    const writes = this.logWrites(items);
    // Committed entries are applied in the group commit's own transaction: they are committed by a
    // quorum already, and one transaction per round instead of two halves the syncs a round waits for.
    // A checksum entry ends its transaction (ApplyPlan.segments): the entries after it apply in another one.
    const results: ApplyResults = new Map();
    const segments = this.applyPlan.segments(live);
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      // Staged only now: each segment starts where the one before it left the store and the groups' ranges.
      const apply = this.sm.stage(segmentBatches(segment));
      const logWrites = i === 0 ? writes : [];
      let outcome: ApplyOutcome | undefined;
      if (logWrites.length > 0 || !apply.isEmpty) {
        const bytes = 2 * (writeBytes(logWrites) + segmentBytes(segment));
        const persisted = await this.disk.untilWritten(async () => {
          const startMs = performance.now();
          const synced = await this.options.store.persist(logWrites, { alsoInTransaction: () => (outcome = apply.write()) });
          const seconds = (performance.now() - startMs) / 1e3;
          if (synced) {
            this.stats.commitsSynced++;
            observeLatency(this.latencies.storeCommitSynced, seconds);
          } else {
            this.stats.commitsUnsynced++;
            observeLatency(this.latencies.storeCommitUnsynced, seconds);
          }
        }, bytes);
        if (!persisted) return;
      }
      apply.committed();
      this.applyPlan.onCommitted(segment, outcome, results);
    }
    this.replicas.destroyRemovedByApply();

    // What promises what was just written (votes, acknowledgements), then the answers.
    for (const { g, rd } of items) this.route(g, rd.messagesAfterPersist);
    this.out.flush();
    const times = { readyAtMs, appliedAtMs: performance.now() };
    for (const { g, rd } of live) this.requests.settleProposals(g, rd.committedEntries, results.get(g.id), times);
    for (const { g, rd } of live) this.requests.answerReads(g, rd);
    for (const { g } of items) {
      g.raw.advance();
      this.touched.add(g);
      // Applied and committed to the store: its reads may be served by the Host again.
      this.publishLocalRead(g);
    }
    this.mergeGate.afterRound();
    for (const { g } of items) await this.maybeCompact(g);
  }

  /** Publishes the group for the Host's local reads, or withdraws it (local-reads.ts says when either is safe). */
  private publishLocalRead(g: Group): void {
    const lr = this.localReads;
    if (lr === undefined) return;
    const servable = !g.removed && g.frozen === undefined && isInitialized(g.bounds) && !this.disk.isFull && this.groups.get(g.id) === g;
    lr.set(g.id, g.bounds, servable ? g.raw.raft.nodeLeaseReadVoters() : undefined);
  }

  /** Tells the Host when the group's leader or term changed since it last heard. */
  private noteLeader(g: Group): void {
    const r = g.raw.raft;
    if (r.lead === g.reportedLeader && r.term === g.reportedTerm) return;
    // Per range, so at debug (see raftLogger): the Host learns it from the event, and /ranges shows it.
    if (r.lead !== g.reportedLeader) this.log.debug({ rangeId: g.id, term: r.term, leaderId: r.lead, role: r.role }, 'leader changed');
    g.reportedLeader = r.lead;
    g.reportedTerm = r.term;
    this.out.event({ kind: 'leader', shardId: g.id, leader: r.lead, term: r.term });
  }

  /** Queues a group's messages for their peers; a snapshot message opens a snapshot stream instead. */
  private route(g: Group, messages: readonly Message[]): void {
    for (const m of messages) {
      if (m.type === 'snapshot') {
        this.snapshotsOut.start(g, m.to, m.term);
        continue;
      }
      if (this.out.outbox.add(g.id, m, { quiesce: m.type === 'heartbeat' && g.quiesced })) {
        this.stats.messagesSent++;
        continue;
      }
      // Over the peer's append budget for this flush: Raft must not count it as in flight, so the
      // follower drops to probing and is resent from its match once it answers.
      this.stats.appendsDeferred++;
      g.raw.reportUnreachable(m.to);
      this.touched.add(g);
    }
  }

  /** The round's new entries and hard states, one write per group that has any. */
  private logWrites(items: readonly GroupReady[]): ShardWrite[] {
    const writes: ShardWrite[] = [];
    for (const { g, rd } of items) {
      if (rd.entries.length > 0 || rd.hardState !== undefined) writes.push({ shardId: g.id, entries: rd.entries, hardState: rd.hardState });
      this.stats.entriesPersisted += rd.entries.length;
    }
    return writes;
  }

  /**
   * How far a log tail checkpoint may compact this replica's log (NodeStore.setCheckpointCompaction):
   * a quiesced one's applied entries, which no peer will ask for — a quiesced leader's followers all hold
   * them, except one on a node that is down, whose match bounds it here so it catches up from the log
   * when it returns. A quiesced follower drops them too: they would only serve its followers if it came to
   * lead while one of them lagged, and a snapshot covers that. A replica that is not quiesced keeps its
   * log until maybeCompact's trigger, as before.
   */
  private checkpointCompaction(shardId: GroupId): number | undefined {
    const g = this.groups.get(shardId);
    if (g === undefined || g.removed || !g.quiesced || !g.loaded) return undefined;
    const r = g.raw.raft;
    let upTo = g.storage.applied;
    if (r.role === 'leader') r.tracker.visit((id, p) => void (id !== r.id && (upTo = Math.min(upTo, p.match))));
    // Its status names the log's first index: the Host's view of its replicas must hear of the change.
    if (upTo >= g.storage.firstIndex()) this.changes.mark(g);
    return upTo;
  }

  private async maybeCompact(g: Group): Promise<void> {
    const applied = g.storage.applied;
    if (applied - (g.storage.firstIndex() - 1) < this.options.compactionTriggerEntries) return;
    if (this.disk.spaceShortfall(0) !== undefined) {
      this.stats.storeWritesFailedDiskFull++;
      return;
    }
    try {
      await this.options.store.compact(g.id, applied - this.options.compactionKeepEntries);
    } catch (err) {
      // Compaction only trims: the log stays longer until a later round finds space for it.
      if (!isOutOfSpace(err, this.options.store.dir)) throw err;
      this.stats.storeWritesFailedDiskFull++;
      return;
    }
    this.stats.compactions++;
  }

  // ---------------------------------------------------------------------------
  // Waiting and closing

  /** Resolves when the loop has nothing left to do (tests and close). Rejects if the loop failed. */
  async idle(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (!this.looping && this.tasks.length === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (this.failure !== undefined) throw this.failure;
  }

  get isBusy(): boolean {
    // A round waiting for disk space waits for ticks, not for work in progress.
    if (this.disk.isWaiting) return false;
    return this.looping || this.tasks.length > 0;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.disk.onClose();
    await this.idle().catch(() => undefined);
    this.closed = true;
    this.snapshotsOut.close();
    for (const g of this.groups.values()) this.requests.failPending(g, () => new ProposalDroppedError(`node ${this.self} is shutting down`));
    this.out.flush();
    this.checksums.close();
    await this.options.store.close();
  }
}

/**
 * Bytes of the store's LMDB file in use: the pages up to the last one
 * written (LMDB's high-water mark) times the page size. Read when stats are
 * asked for (a scrape), never on the write path.
 */
function storeUsedBytes(store: NodeStore): number {
  const stats = store.env.getStats() as { pageSize?: number; lastPageNumber?: number };
  if (stats.pageSize === undefined || stats.lastPageNumber === undefined) return 0;
  return (stats.lastPageNumber + 1) * stats.pageSize;
}
