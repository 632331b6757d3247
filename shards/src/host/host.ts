import { randomInt } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { SYSTEM_CLOCK, assert, groupId, nodeId, type Clock, type GroupId } from '@flotilla/core';
import { BATCH_BYTES_MAX, type TransportStats } from '@flotilla/transport';
import { CoreCrashedError, HostClosedError } from '../errors.js';
import { encodeCommand, type KvCommand, type KvResult } from '../kv/command.js';
import type { ChecksumAnswer, ChecksumBlockAnswer } from '../kv/consistency.js';
import type { StoredValue } from '../kv/state-machine.js';
import { childLogger, type ShellLogger } from '../shell-logger.js';
import { InlineCoreChannel, startCoreChannels, type CoreChannel } from './core-channel.js';
import type { RangeReport } from '@flotilla/placement';
import type { MembershipChange, CoreEvent, CoreOutEvent, CoreOutput, CoreRequest, CoreStatsReport, RangeBoundsWire, ReadOp, ShardStatus, Consistency } from './core-protocol.js';
import { invalidReadOp } from './input-checks.js';
import { Liveness } from './liveness.js';
import { LocalReads, localReadBuffer } from './local-reads.js';
import { BatchDecodeError } from './message-codec.js';
import { SEGMENT_BYTES_MAX, decodeFrame, encodeLeaseSegment, joinSegments, splitSegment, type DecodedFrame, type Segment } from './node-batch.js';
import { NodeLeaseTable, clockStepBuffer, type LeaseChanges } from './node-leases.js';
import { lockNodeDir, markNodeDirReady, prepareNodeDir } from './node-dir.js';
import {
  LEASE_DRIFT_MAX,
  LEASE_INTERVAL_TICKS,
  LIVENESS_INTERVAL_TICKS_DEFAULT,
  LIVENESS_TIMEOUT_TICKS_DEFAULT,
  REQUEST_TIMEOUT_TICKS_DEFAULT,
  SPLIT_KEY_MIN_BYTES_DEFAULT,
  TICK_INTERVAL_MS_DEFAULT,
  checkHostOptions,
  coreSettingsOf,
  leaseClocksOf,
  leaseSettingsOf,
  tickMsOf,
  type HostOptions,
} from './options.js';
import { PendingRequests } from './pending-requests.js';
import { NodeRpc, RequestIds, type RequestHandler } from './rpc.js';
import type { CoreChanges } from './shard-changes.js';
import { ShardTable } from './shard-table.js';
import { ShardView, type ShardViewChanges } from './shard-view.js';
import type { HostStats } from './stats.js';
import { ReplicaAdoption } from '../replica/adoption.js';
import { SnapshotRelay } from '../snapshot/relay.js';
import type { DirLock } from '../storage/dir-lock.js';
import { StoreDataReader } from '../storage/data-reader.js';

/**
 * Bytes sent to one peer per turn of the Host's loop, over every core and
 * the RPC outbox: two frames, what the transport queues for a peer. A peer
 * that was cut off or paused comes back to every shard's leader catching it
 * up at once; this (with each core's per-flush append budget, outbox.ts) is
 * what keeps that burst from growing without bound.
 */
export const PEER_TURN_BYTES_MAX = 2 * BATCH_BYTES_MAX;
assert(SEGMENT_BYTES_MAX <= PEER_TURN_BYTES_MAX, 'one full segment must fit a peer\'s turn');

/** What goes to one peer this turn (Host.outbound). */
interface OutboundBox {
  segments: Uint8Array[];
  bytes: number;
  dropped?: boolean;
  requests?: Map<Uint8Array, readonly number[]>;
}

interface CoreQueue {
  ticks: number;
  inbound: [number, Segment][];
  leases: [number, LeaseChanges][];
  requests: CoreRequest[];
  events: CoreEvent[];
}

const emptyQueue = (): CoreQueue => ({ ticks: 0, inbound: [], leases: [], requests: [], events: [] });

/** Local reads served in one turn of the event loop at most; the rest go through their cores (see localRead). */
const LOCAL_READS_PER_TURN_MAX = 256;

/**
 * The per-node host of every shard replica (ARCHITECTURE.md, "shards: the
 * Host and its worker cores"): one tick loop for all groups, the mux between
 * the transport and the worker cores, node liveness, and the entry point for
 * proposals and reads. Requests between nodes (rpc.ts), the snapshot relay
 * (snapshot/relay.ts) and replica adoption (replica/adoption.ts) are classes
 * of their own, each reaching the Host through a small port.
 *
 * Per loop turn the Host posts at most one message to each core (ticks,
 * inbound traffic, requests and events together) and sends at most one frame
 * to each peer (every core's outbound segments for it, concatenated).
 */
export class Host {
  private readonly cores: CoreChannel[] = [];
  /** Each core's last report on its store's disk (`disk` events); undefined until a core reports a problem. */
  private readonly disks: ({ full: boolean; low: boolean; freeBytes: number } | undefined)[] = [];
  private readonly queues: CoreQueue[];
  /**
   * Segments for each peer this turn, their bytes, whether one was dropped over the bound (see queueOutbound), and the
   * forwarded requests each RPC segment carries (failed at once if their frame is refused: they were never sent).
   */
  private readonly outbound = new Map<number, OutboundBox>();
  /** Frames the transport accepted that carry forwarded requests, with their ids: failed at once if it drops them unsent. */
  private readonly framesWithRequests = new WeakMap<Uint8Array, readonly number[]>();
  private readonly pending: PendingRequests;
  private readonly shardTable: ShardTable;
  /** Every replica's status and report as the cores last told them (shardChanges). */
  private readonly view = new ShardView();
  private viewLoaded = false;
  private viewRefresh: Promise<void> | undefined;
  private readonly peerIds = new Set<number>();
  private readonly liveness: Liveness;
  /** Node leases (undefined: off): promises this node made and leases it holds (node-leases.ts). */
  private readonly leases: NodeLeaseTable | undefined;
  /** Linearizable reads served on this thread under the node lease (local-reads.ts); undefined: off. */
  private readonly localReads: LocalReads | undefined;
  private readonly localReadBuffers: SharedArrayBuffer[] | undefined;
  /** Backward steps of the lease clocks, seen by this thread and the cores' (node-leases.ts ClockSteps). */
  private readonly clockSteps = clockStepBuffer();
  /** Per core, its store opened for local reads (after the cores started; closed before they close). */
  private readonly dataReaders: (StoreDataReader | undefined)[] = [];
  /** Local reads served since the event loop last turned (LOCAL_READS_PER_TURN_MAX). */
  private localReadsThisTurn = 0;
  private readonly rpc: NodeRpc;
  private readonly snapshots: SnapshotRelay;
  private readonly adoption: ReplicaAdoption;
  private flushScheduled = false;
  private nowTick = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private failure: Error | undefined;
  /** The data directory's lock, from start until close (or a failed start) released it. */
  private dirLock: DirLock | undefined;
  private readonly log: ShellLogger;
  private lastDropLogMs = Number.NEGATIVE_INFINITY;
  private readonly clock: Clock;
  readonly stats: HostStats = { framesDropped: 0, pingsSent: 0, leaseSegmentsSent: 0, corePosts: 0, requestsTimedOut: 0, rpcResponsesDropped: 0, rpcRequestsDuplicate: 0, segmentsDropped: 0, segmentBytesDropped: 0, peerTurnBytesMax: 0, requestsRefused: 0, localReads: 0 };
  readonly coreCount: number;

  private constructor(private readonly options: HostOptions) {
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.coreCount = options.coreCount ?? availableParallelism();
    this.shardTable = new ShardTable({ nodeId: options.nodeId, coreCount: this.coreCount });
    this.queues = Array.from({ length: this.coreCount }, emptyQueue);
    this.log = childLogger(options.logger, { component: 'host', nodeId: options.nodeId });
    const requestTimeoutTicks = options.requestTimeoutTicks ?? REQUEST_TIMEOUT_TICKS_DEFAULT;
    // Requests to cores and forwarded ones take their ids from one counter (see RequestIds).
    const ids = new RequestIds(options.seed);
    this.pending = new PendingRequests({ nodeId: options.nodeId, requestTimeoutTicks, ids, stats: this.stats });
    this.liveness = new Liveness({
      intervalTicks: options.livenessIntervalTicks ?? LIVENESS_INTERVAL_TICKS_DEFAULT,
      timeoutTicks: options.livenessTimeoutTicks ?? LIVENESS_TIMEOUT_TICKS_DEFAULT,
    });
    if (options.nodeLeases !== false) {
      this.leases = new NodeLeaseTable({
        // In [2^31, 2^32): a fixed encoded size, so a simulated run's frames do not vary in size with it.
        incarnation: randomInt(2 ** 31, 2 ** 32),
        ...leaseSettingsOf(options),
        tickMs: tickMsOf(options),
        driftMax: LEASE_DRIFT_MAX,
        clocks: leaseClocksOf(options, this.clock),
        clockSteps: this.clockSteps,
      });
    }
    if (this.leases !== undefined && options.localReads !== false) {
      const leases = this.leases;
      this.localReadBuffers = Array.from({ length: this.coreCount }, localReadBuffer);
      this.localReads = new LocalReads({
        buffers: this.localReadBuffers,
        self: nodeId(options.nodeId),
        holds: (voter, mark) => leases.holdsIn(voter, mark),
        data: (core) => this.dataReaders[core],
      });
    }
    const nowTick = () => this.nowTick;
    const isClosed = () => this.closed;
    this.rpc = new NodeRpc({
      nodeId: options.nodeId,
      log: this.log,
      requestTimeoutTicks,
      ids,
      stats: this.stats,
      nowTick,
      isClosed,
      wakePeer: (to) => this.queueOutbound(to, undefined),
    });
    this.snapshots = new SnapshotRelay({
      log: this.log,
      clock: this.clock,
      bytesPerSecMax: options.snapshotBytesPerSecMax,
      flowControl: options.snapshotFlowControl,
      transport: options.transport,
      coreOf: (shardId) => this.coreOf(shardId),
      postEvent: (core, e) => this.postEvent(core, e),
      isClosed,
    });
    this.adoption = new ReplicaAdoption({
      nodeId: options.nodeId,
      log: this.log,
      coreCount: this.coreCount,
      request: (shardId, make, core) => this.request(shardId, make, core),
      shards: this.shardTable,
      hasPeer: (id) => this.peerIds.has(id),
      nowTick,
    });
  }

  /** Opens the data directory, starts every core and the transport, and starts ticking. */
  static async start(options: HostOptions): Promise<Host> {
    const host = new Host(options);
    checkHostOptions(options);
    // One process per data directory: locked before anything in it is read or written (DATA_DIR_LOCKED otherwise).
    const dirLock = lockNodeDir(options.dir);
    host.dirLock = dirLock;
    let coreDirs: string[];
    try {
      coreDirs = prepareNodeDir({ dir: options.dir, nodeId: options.nodeId, coreCount: host.coreCount });
    } catch (err) {
      dirLock.release();
      throw err;
    }
    const handlers = (coreIndex: number) => ({
      onOutput: (output: CoreOutput) => host.onCoreOutput(coreIndex, output),
      onFatal: (err: Error) => host.onFatal(coreIndex, err),
    });
    try {
      await startCoreChannels(host.cores, {
        mode: options.coreMode ?? 'worker',
        settings: coreSettingsOf(options, host.coreCount, host.clockSteps),
        coreDirs,
        logger: options.logger,
        logFormat: options.logFormat ?? 'json',
        storeIo: options.storeIo,
        storeTail: options.storeTail,
        workerPath: options.workerPath,
        leaseClocks: leaseClocksOf(options, host.clock),
        localReads: host.localReadBuffers,
        handlers,
      });
      if (host.localReads !== undefined) for (const dir of coreDirs) host.dataReaders.push(host.openDataReader(dir));
      for (let core = 0; core < host.cores.length; core++) {
        for (const s of await host.request<ShardStatus[]>(0, (id) => ({ kind: 'status', id }), core)) host.shardTable.loaded(s.shardId, core);
      }
      // Every core's store exists: from now on a missing core directory is damage, never a fresh start.
      markNodeDirReady({ dir: options.dir, nodeId: options.nodeId, coreCount: host.coreCount });
      await options.transport.start({
        onBatch: (from, batch) => host.onBatch(from, batch),
        onUnreachable: (to) => host.broadcastEvent({ kind: 'unreachable', peer: to }),
        onDropped: (to, frames) => host.onFramesDropped(to, frames),
        onSnapshot: (stream) => void host.snapshots.onSnapshot(stream),
      });
    } catch (err) {
      host.closed = true;
      await host.closeDataReaders();
      await Promise.allSettled(host.cores.map((c) => c.close()));
      dirLock.release();
      throw err;
    }
    const ticker = options.ticker ?? { kind: 'timer', intervalMs: TICK_INTERVAL_MS_DEFAULT };
    if (ticker.kind === 'timer') host.timer = setInterval(() => host.tick(), ticker.intervalMs);
    host.log.info({ coreCount: host.coreCount, coreMode: options.coreMode ?? 'worker', dir: options.dir }, 'host started');
    return host;
  }

  get nodeId(): number {
    return this.options.nodeId;
  }

  /** The core that owns a shard (see ShardTable). */
  coreOf(shardId: number): number {
    return this.shardTable.coreOf(shardId);
  }

  /** Learns a peer's address; it is then pinged and watched for liveness. */
  setPeer(id: number, address: string): void {
    assert(id !== this.options.nodeId, () => `node ${id} cannot be its own peer`);
    this.options.transport.setPeer(id, address);
    if (!this.peerIds.has(id)) this.liveness.track(id, this.nowTick);
    this.peerIds.add(id);
  }

  removePeer(id: number): void {
    this.leases?.forget(id);
    this.postLeaseChanges();
    this.rpc.forgetPeer(id);
    this.options.transport.removePeer(id);
    this.liveness.untrack(id);
    this.peerIds.delete(id);
  }

  /** Whether this node knows where `id` listens (a reply to it can be sent). */
  hasPeer(id: number): boolean {
    return this.peerIds.has(id);
  }

  /** Peers currently considered up. */
  livePeers(): readonly number[] {
    return this.liveness.livePeers();
  }

  /**
   * Whether a frame from the peer arrived since this node learned its
   * address: the peer knows this node and accepts its connections (a
   * member refuses the hello of a node it has no address for).
   */
  hasHeardFrom(id: number): boolean {
    return this.liveness.hasHeard(id);
  }

  // ---------------------------------------------------------------------------
  // The tick loop and the mux

  /** One tick for every group on the node: one message per core. */
  tick(): void {
    if (this.closed) return;
    this.nowTick++;
    for (const q of this.queues) q.ticks++;
    this.postLocalReadCounts();
    const { ping, down, up } = this.liveness.onTick(this.nowTick);
    // Whatever else goes out: each segment renews the leases both ways (and proves liveness). Not while a
    // disk is full: those groups cannot act as leaders (nor campaign), and the promises our segments
    // win would keep their followers from electing anyone else.
    if (this.leases !== undefined && this.nowTick % LEASE_INTERVAL_TICKS === 0 && !this.disks.some((d) => d?.full === true)) {
      for (const peer of this.peerIds) {
        this.queueOutbound(peer, encodeLeaseSegment(this.leases.segmentFor(peer, this.nowTick)));
        this.stats.leaseSegmentsSent++;
      }
    }
    for (const peer of ping) this.queueOutbound(peer, undefined);
    for (const peer of down) {
      this.log.warn({ peer, silentTicks: this.liveness.silentTicks(peer, this.nowTick) }, 'peer down');
      this.broadcastEvent({ kind: 'peerDown', peer });
    }
    for (const peer of up) {
      this.log.info({ peer }, 'peer up');
      this.broadcastEvent({ kind: 'peerUp', peer });
    }
    this.pending.expire(this.nowTick);
    this.rpc.onTick(this.nowTick);
    this.snapshots.onTick();
    this.scheduleFlush();
  }

  private onBatch(from: number, batch: Uint8Array): void {
    if (this.closed) return;
    this.liveness.heard(from, this.nowTick);
    let frame: DecodedFrame;
    try {
      frame = decodeFrame(batch);
    } catch (err) {
      if (!(err instanceof BatchDecodeError)) throw err;
      this.stats.framesDropped++;
      const nowMs = this.clock.nowMs();
      if (nowMs - this.lastDropLogMs >= 1000) {
        this.lastDropLogMs = nowMs;
        this.log.warn({ peer: from, code: err.code, err }, 'frame dropped: undecodable batch');
      }
      return;
    }
    for (const s of frame.segments) {
      const parts = splitSegment(s, (shard) => this.coreOf(shard), this.coreCount);
      for (let i = 0; i < parts.length; i++) if (parts[i] !== undefined) this.queues[i]!.inbound.push([from, parts[i]!]);
    }
    for (const rpc of frame.rpcs) this.rpc.onSegment(from, rpc);
    if (this.leases !== undefined && frame.leases.length > 0) {
      for (const l of frame.leases) this.leases.onSegment(from, l, this.nowTick);
      // After this frame's Raft traffic: an acknowledgement in it counts under the lease as it was (core-leases.ts).
      this.postLeaseChanges();
    }
    this.scheduleFlush();
  }

  /** Hands every core the lease changes, between the traffic queued for it before and after. */
  private postLeaseChanges(): void {
    const changes = this.leases?.takeChanges();
    if (changes === undefined) return;
    for (const q of this.queues) q.leases.push([q.inbound.length, changes]);
    this.scheduleFlush();
  }

  private broadcastEvent(e: CoreEvent): void {
    if (this.closed) return;
    for (const q of this.queues) q.events.push(e);
    this.scheduleFlush();
  }

  private postEvent(core: number, e: CoreEvent): void {
    this.queues[core]!.events.push(e);
    this.scheduleFlush();
  }

  /**
   * `segment` undefined: a liveness ping (an empty frame) unless something
   * else goes out this turn. What one peer is sent per turn is bounded
   * (PEER_TURN_BYTES_MAX): past it a segment is dropped and counted, and the
   * cores hear the peer was unreachable, so their leaders probe it and resend
   * instead of counting the lost appends as in flight. Returns the peer's box
   * for this turn, or undefined if `segment` was dropped.
   */
  private queueOutbound(to: number, segment: Uint8Array | undefined): OutboundBox | undefined {
    let box = this.outbound.get(to);
    if (box === undefined) {
      box = { segments: [], bytes: 0 };
      this.outbound.set(to, box);
    }
    if (segment !== undefined) {
      if (segment.byteLength > BATCH_BYTES_MAX || (box.bytes > 0 && box.bytes + segment.byteLength > PEER_TURN_BYTES_MAX)) {
        this.stats.segmentsDropped++;
        this.stats.segmentBytesDropped += segment.byteLength;
        if (!box.dropped) {
          box.dropped = true;
          this.broadcastEvent({ kind: 'unreachable', peer: to });
        }
        this.scheduleFlush();
        return undefined;
      } else {
        box.segments.push(segment);
        box.bytes += segment.byteLength;
        if (box.bytes > this.stats.peerTurnBytesMax) this.stats.peerTurnBytesMax = box.bytes;
      }
    }
    this.scheduleFlush();
    return box;
  }

  /** The transport dropped frames it had accepted, before they left (their connection failed): their forwards never ran. */
  private onFramesDropped(to: number, frames: readonly Uint8Array[]): void {
    for (const frame of frames) {
      const ids = this.framesWithRequests.get(frame);
      if (ids !== undefined) this.rpc.notSent(to, ids);
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    // setImmediate: runs after this poll phase, so every socket read and core output of the turn joins one flush.
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    for (let i = 0; i < this.cores.length; i++) {
      const q = this.queues[i]!;
      if (q.ticks === 0 && q.inbound.length === 0 && q.leases.length === 0 && q.requests.length === 0 && q.events.length === 0) continue;
      this.queues[i] = emptyQueue();
      this.stats.corePosts++;
      this.cores[i]!.post(q);
    }
    this.rpc.takeSegments((to, segment, requestIds) => {
      const box = this.queueOutbound(to, segment);
      if (requestIds.length === 0) return;
      if (box === undefined) this.rpc.notSent(to, requestIds);
      else (box.requests ??= new Map()).set(segment, requestIds);
    });
    for (const [to, { segments, requests }] of this.outbound) {
      this.liveness.sent(to, this.nowTick);
      if (segments.length === 0) {
        this.stats.pingsSent++;
        this.options.transport.send(to, new Uint8Array(0));
        continue;
      }
      for (const { frame, parts } of joinSegments(segments)) {
        if (requests === undefined) {
          this.options.transport.send(to, frame);
          continue;
        }
        const ids = parts.flatMap((part) => requests.get(part) ?? []);
        if (!this.options.transport.send(to, frame)) this.rpc.notSent(to, ids);
        else if (ids.length > 0) this.framesWithRequests.set(frame, ids);
      }
    }
    this.outbound.clear();
    // This flush already gathered the turn: the sockets are written now, not one event-loop iteration later.
    this.options.transport.flush?.();
  }

  private onCoreOutput(coreIndex: number, output: CoreOutput): void {
    if (this.closed) return;
    // First: a read served from here on must see whatever this output reveals (local-reads.ts).
    this.localReads?.onOutput(coreIndex);
    for (const [to, segment] of output.outbound) this.queueOutbound(to, segment);
    for (const r of output.replies) this.pending.settle(r);
    for (const e of output.events) this.onCoreEvent(coreIndex, e);
  }

  private onCoreEvent(coreIndex: number, e: CoreOutEvent): void {
    switch (e.kind) {
      case 'leader':
        this.shardTable.setLeader(e.shardId, e.leader);
        return;
      case 'shardCreated':
        this.shardTable.createdBySplit(e.shardId, coreIndex);
        return;
      case 'disk':
        this.disks[coreIndex] = { full: e.full, low: e.low, freeBytes: e.freeBytes };
        return;
      case 'readBounds':
        this.localReads?.onBounds(coreIndex, groupId(e.shardId), e.version, { start: e.start, end: e.end });
        return;
      case 'shardRemoved':
        this.shardTable.removed(e.shardId);
        this.adoption.onRemoved(e.shardId);
        return;
      case 'unknownShard':
        this.adoption.onUnknownShard(e.shardId, e.from);
        return;
      case 'snapshotOpen':
      case 'snapshotChunk':
      case 'snapshotEnd':
      case 'snapshotAbort':
      case 'snapshotChunkAck':
        this.snapshots.onCoreEvent(coreIndex, e);
        return;
      default: {
        const never: never = e;
        throw new Error(`unknown core event ${JSON.stringify(never)}`);
      }
    }
  }

  // ---------------------------------------------------------------------------
  // Requests

  private request<T>(shardId: number, make: (id: number) => CoreRequest, core = this.coreOf(shardId)): Promise<T> {
    if (this.failure !== undefined) return Promise.reject(new CoreCrashedError(this.failure.message));
    if (this.closed) return Promise.reject(new HostClosedError(this.options.nodeId));
    return this.pending.open<T>(shardId, this.nowTick, (id) => {
      this.queues[core]!.requests.push(make(id));
      this.scheduleFlush();
    });
  }

  /**
   * Sends `payload` to `to`'s request handler and resolves with its answer. It
   * travels in the frames Raft traffic uses (coalesced per turn). Fails with
   * RequestTimeoutError after requestTimeoutTicks (the peer is down, or lost
   * the request), or with the handler's error.
   */
  forward(to: number, payload: Uint8Array): Promise<Uint8Array> {
    if (this.failure !== undefined) return Promise.reject(new CoreCrashedError(this.failure.message));
    if (this.closed) return Promise.reject(new HostClosedError(this.options.nodeId));
    return this.rpc.forward(to, payload);
  }

  /** Serves requests other nodes `forward` to this one (the KV service sets it). */
  setRequestHandler(handler: RequestHandler): void {
    this.rpc.setRequestHandler(handler);
  }

  /** Replicates a write through the shard's leader here; throws NotLeaderError (with a hint) on a follower. */
  propose(shardId: GroupId, command: KvCommand): Promise<KvResult> {
    let encoded: Uint8Array;
    try {
      encoded = encodeCommand(command);
    } catch (err) {
      return Promise.reject(err);
    }
    const startedMs = this.clock.nowMs();
    const result = this.request<KvResult>(shardId, (id) => ({ kind: 'propose', id, shardId, command: encoded }));
    // Answered writes are the foreground latency snapshot flow control protects; refusals (NOT_LEADER) say nothing of it.
    void result.then(
      () => this.snapshots.observeForeground(this.clock.nowMs() - startedMs),
      () => undefined,
    );
    return result;
  }

  /** Linearizable (on the leader: served here under the node lease when local-reads.ts allows, else by the core, under the lease or after a ReadIndex round) unless `stale`, which reads this replica as it is. */
  async get(shardId: GroupId, key: Uint8Array, options: { consistency?: Consistency } = {}): Promise<StoredValue | undefined> {
    const read: ReadOp = { op: 'get', key };
    const local = this.localRead(options.consistency, read, (lr, core) => lr.get(core, shardId, key), shardId);
    if (local !== undefined) return local ?? undefined;
    const v = await this.request<{ value: Uint8Array; version: number; contentType?: string } | null>(shardId, (id) => ({ kind: 'read', id, shardId, read, consistency: options.consistency ?? 'linearizable' }));
    if (v === null) return undefined;
    const value = Buffer.from(v.value.buffer, v.value.byteOffset, v.value.byteLength);
    return v.contentType === undefined ? { value, version: v.version } : { value, version: v.version, contentType: v.contentType };
  }

  /**
   * Keys of the shard in [start, end), in order (`reverse`: the last `limit` of them, from the last down), at
   * most `limit`; KEY_OUT_OF_RANGE unless the span lies within the shard's range when served.
   */
  async scan(shardId: GroupId, range: { start: Uint8Array; end: Uint8Array | null; limit: number; reverse?: boolean }, options: { consistency?: Consistency } = {}): Promise<{ key: Uint8Array; value: Uint8Array; version: number }[]> {
    const read: ReadOp = { op: 'scan', ...range };
    const local = this.localRead(options.consistency, read, (lr, core) => lr.scan(core, shardId, range), shardId);
    if (local !== undefined) return local;
    const pairs = await this.request<[Uint8Array, Uint8Array, number][]>(shardId, (id) => ({ kind: 'read', id, shardId, read, consistency: options.consistency ?? 'linearizable' }));
    return pairs.map(([key, value, version]) => ({ key, value, version }));
  }

  /**
   * A linearizable read served on this thread (local-reads.ts), or undefined
   * for the core to serve. Reads the core refuses (keys LMDB would refuse)
   * go to it, so they get the error every read of them gets.
   */
  private localRead<T>(consistency: Consistency | undefined, op: ReadOp, read: (lr: LocalReads, core: number) => T | undefined, shardId: GroupId): T | undefined {
    const lr = this.localReads;
    if (lr === undefined || (consistency ?? 'linearizable') !== 'linearizable' || this.closed || this.failure !== undefined) return undefined;
    if (invalidReadOp(op) !== undefined) return undefined;
    // A local read resolves without a turn of the event loop: a caller reading in a loop would starve the
    // tick, the transport and the cores' outputs (and so this node's own Raft duties) until its leases ran
    // out. Past a turn's budget, reads go through their core, which yields.
    if (this.localReadsThisTurn >= LOCAL_READS_PER_TURN_MAX) return undefined;
    if (this.localReadsThisTurn++ === 0) setImmediate(() => (this.localReadsThisTurn = 0));
    try {
      const served = read(lr, this.coreOf(shardId));
      if (served !== undefined) this.stats.localReads++;
      return served;
    } catch (err) {
      // A key LMDB refuses, or a record that does not decode: the core's read reports it properly.
      this.log.debug({ err, rangeId: shardId }, 'local read failed; the core serves it');
      return undefined;
    }
  }

  /** Tells each core how many reads of its shards were served here (placement's load signal). */
  private postLocalReadCounts(): void {
    if (this.localReads === undefined) return;
    for (let core = 0; core < this.coreCount; core++) {
      const counts = this.localReads.takeCounts(core);
      if (counts === undefined) continue;
      this.postEvent(core, { kind: 'localReads', reads: [...counts].map(([shardId, c]) => [shardId, c.count, c.keys] as const) });
    }
  }

  /** A core's store for local reads; undefined (its reads go through the core, as before) if it cannot be opened here. */
  private openDataReader(coreDir: string): StoreDataReader | undefined {
    try {
      return StoreDataReader.open(coreDir);
    } catch (err) {
      this.log.warn({ err, dir: coreDir }, "cannot open the core's store for local reads; its reads go through the core");
      return undefined;
    }
  }

  private async closeDataReaders(): Promise<void> {
    const readers = this.dataReaders.splice(0);
    await Promise.allSettled(readers.map((r) => r?.close()));
  }

  /**
   * Creates this node's replica of a shard. `join`: an empty replica, owning
   * no keys, that the group's leader catches up by snapshot (placement adds
   * it as a learner or voter); `voters`, `learners` and `bounds` are then unused.
   */
  async createShard(spec: { shardId: GroupId; voters: readonly number[]; learners?: readonly number[]; bounds?: RangeBoundsWire; join?: boolean; colocateWith?: GroupId }): Promise<void> {
    assert(spec.shardId > 0, () => `shard id must be positive, got ${spec.shardId}`);
    if (spec.join === true) {
      await this.adoption.join(spec.shardId, spec.colocateWith === undefined ? {} : { colocateWith: spec.colocateWith });
      return;
    }
    this.shardTable.assign(spec.shardId, this.shardTable.place(spec.shardId, spec.colocateWith));
    return this.request(spec.shardId, (id) => ({
      kind: 'createShard',
      id,
      shardId: spec.shardId,
      voters: spec.voters,
      learners: spec.learners ?? [],
      bounds: spec.bounds ?? { start: new Uint8Array(0), end: null },
      join: spec.join ?? false,
    }));
  }

  /** Destroys this node's replica of a shard (its log, metadata and data); a tombstone keeps its last term and vote. */
  async removeShard(shardId: GroupId): Promise<void> {
    await this.adoption.remove(shardId, async () => {
      await this.request(shardId, (id) => ({ kind: 'removeShard', id, shardId }));
      this.shardTable.removed(shardId);
    });
  }

  /**
   * Changes the shard's membership through this node's replica, which must
   * lead it, if the range is still at `epoch` (EPOCH_MISMATCH otherwise).
   * Resolves with the outcome once applied here: the new epoch and
   * configuration. More than one voter changing goes through a joint
   * configuration, left automatically. No changes: leave a joint one.
   */
  changeMembership(shardId: GroupId, change: { epoch: number; changes: readonly MembershipChange[] }): Promise<KvResult> {
    return this.request(shardId, (id) => ({ kind: 'changeMembership', id, shardId, epoch: change.epoch, changes: change.changes }));
  }

  /** Every shard this node leads, with what the placement driver plans from; a split key where a range holds at least splitKeyMinBytes. */
  async rangeReports(options: { splitKeyMinBytes: number }): Promise<RangeReport[]> {
    const all = await Promise.all(this.cores.map((_, core) => this.request<RangeReport[]>(0, (id) => ({ kind: 'rangeReports', id, splitKeyMinBytes: options.splitKeyMinBytes }), core)));
    return all.flat().sort((a, b) => a.rangeId - b.rangeId);
  }

  transferLeader(shardId: GroupId, to: number): Promise<void> {
    return this.request(shardId, (id) => ({ kind: 'transferLeader', id, shardId, to }));
  }

  /**
   * Starts a consistency check on the shard's leader here (NOT_LEADER with a
   * hint otherwise): proposes checksum entry `checksumId` and resolves once
   * it applied here, with its index and the range and replicas as of it
   * (KvResult's `checksum`). Every replica then hashes its data as of that
   * index; ask each with `checksumResult`.
   */
  proposeChecksum(shardId: GroupId, checksumId: number): Promise<KvResult> {
    return this.request(shardId, (id) => ({ kind: 'checksumPropose', id, shardId, checksumId }));
  }

  /** This node's replica's result for checksum `checksumId` at `index`: pending, done (with the block digests if asked) or missing. */
  checksumResult(shardId: GroupId, q: { index: number; checksumId: number; withBlocks?: boolean }): Promise<ChecksumAnswer> {
    return this.request(shardId, (id) => ({ kind: 'checksumResult', id, shardId, index: q.index, checksumId: q.checksumId, withBlocks: q.withBlocks ?? false }));
  }

  /** One block's keys and per-key digests, from the snapshot that check hashed (held for checksumHoldTicks after it finished). */
  checksumBlock(shardId: GroupId, q: { index: number; checksumId: number; block: number }): Promise<ChecksumBlockAnswer> {
    return this.request(shardId, (id) => ({ kind: 'checksumBlock', id, shardId, index: q.index, checksumId: q.checksumId, block: q.block }));
  }

  /**
   * The replicas changed since `cursor` (0: every one) with their reports
   * where led here, once the view took in what the cores changed since it
   * last asked (shard-view.ts): a duty that keeps its cursor reads only what
   * changed. Reports carry a size split key for ranges of at least
   * HostOptions.splitKeyMinBytes. Callers at once share one refresh.
   */
  async shardChanges(cursor: number): Promise<ShardViewChanges> {
    await this.refreshView();
    return this.view.since(cursor);
  }

  private refreshView(): Promise<void> {
    const splitKeyMinBytes = this.options.splitKeyMinBytes ?? SPLIT_KEY_MIN_BYTES_DEFAULT;
    this.viewRefresh ??= (async () => {
      const full = !this.viewLoaded;
      // A core's changes are its to give once: one refresh that fails part way lost some, and the next asks for all.
      this.viewLoaded = false;
      try {
        const all = await Promise.all(this.cores.map((_, core) => this.request<CoreChanges>(0, (id) => ({ kind: 'changes', id, splitKeyMinBytes, full }), core)));
        if (full) this.view.replaceAll(all);
        else for (const c of all) this.view.apply(c);
        // A core that lost count answered with all its replicas, but which of them went is lost: the next refresh reads every core whole.
        this.viewLoaded = full || all.every((c) => !c.full);
      } finally {
        this.viewRefresh = undefined;
      }
    })();
    return this.viewRefresh;
  }

  /** Every replica on this node, in shard order. */
  async shards(): Promise<ShardStatus[]> {
    const all = await Promise.all(this.cores.map((_, core) => this.request<ShardStatus[]>(0, (id) => ({ kind: 'status', id }), core)));
    return all.flat().sort((a, b) => a.shardId - b.shardId);
  }

  /** `collectGarbage`: each core runs a full GC before it reads its heap, where the process exposes one (node --expose-gc). */
  async coreStats(options: { collectGarbage?: boolean } = {}): Promise<CoreStatsReport[]> {
    const collectGarbage = options.collectGarbage === true;
    return Promise.all(this.cores.map((_, core) => this.request<CoreStatsReport>(0, (id) => ({ kind: 'stats', id, ...(collectGarbage ? { collectGarbage } : {}) }), core)));
  }

  /**
   * Whether this node can take writes as far as its disks go: `full` when a
   * core's group commit waits for space (that core steps no Raft traffic),
   * `low` when free space is below the reserve (writes refused, Raft goes on).
   */
  diskStatus(): { full: boolean; low: boolean; freeBytesMin: number | undefined } {
    let full = false;
    let low = false;
    let freeBytesMin: number | undefined;
    for (const d of this.disks) {
      if (d === undefined) continue;
      full ||= d.full;
      low ||= d.low;
      freeBytesMin = freeBytesMin === undefined ? d.freeBytes : Math.min(freeBytesMin, d.freeBytes);
    }
    return { full, low, freeBytesMin };
  }

  /** Requests waiting for a core's answer and forwards waiting for a peer's: each bounded (PENDING_*_MAX) and each with a deadline. */
  pendingCounts(): { requests: number; forwards: number } {
    return { requests: this.pending.size, forwards: this.rpc.pendingCount };
  }

  /** Whether this node holds a replica of the shard. */
  hasShard(shardId: GroupId): boolean {
    return this.shardTable.has(shardId);
  }

  /** The replica's status as of the last shardChanges (undefined: none here then). */
  viewedStatus(shardId: GroupId): ShardStatus | undefined {
    return this.view.get(shardId)?.status;
  }

  /** The leader last reported by this node's replica (0: unknown, undefined: no replica here). */
  leaderOf(shardId: GroupId): number | undefined {
    return this.shardTable.leaderOf(shardId);
  }

  /** The snapshot rates flow control allows now, each way (receive undefined with flow control off: received chunks are not paced). */
  snapshotBytesPerSec(): { send: number; receive: number | undefined } {
    return this.snapshots.bytesPerSec;
  }

  transportStats(): TransportStats {
    return this.options.transport.stats();
  }

  /** Whether some core has work in progress or inputs wait to be posted (tests settle on this). */
  get isBusy(): boolean {
    if (this.flushScheduled) return true;
    return this.cores.some((c) => c instanceof InlineCoreChannel && c.isBusy);
  }

  /** Stops a worker core the hard way (tests: a dead core must stop the node). */
  async killCore(coreIndex: number): Promise<void> {
    await this.cores[coreIndex]!.terminate();
  }

  private onFatal(coreIndex: number, err: Error): void {
    if (this.failure !== undefined || this.closed) return;
    this.failure = err;
    this.log.error({ err, core: coreIndex }, 'worker core crashed; the node stops');
    const crashed = new CoreCrashedError(`core ${coreIndex} of node ${this.options.nodeId}: ${err.message}`);
    this.pending.rejectAll(crashed);
    this.rpc.rejectAll(crashed);
    if (this.options.onFatal !== undefined) this.options.onFatal(crashed);
    else void this.close();
  }

  /** Stops ticking, fails what is pending, lets every core finish its round and close its store, closes the transport. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    const closing = new HostClosedError(this.options.nodeId);
    this.pending.rejectAll(closing);
    this.rpc.rejectAll(closing);
    this.snapshots.close();
    await this.options.transport.close();
    await this.closeDataReaders();
    await Promise.allSettled(this.cores.map((c) => c.close()));
    // Last: a new opener must not find a store of ours still closing.
    this.dirLock?.release();
    // The CLI's 'stopped' says it at info; this one only orders the shutdown's steps.
    this.log.debug({}, 'host closed');
  }
}
