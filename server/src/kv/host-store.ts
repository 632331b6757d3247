import { SYSTEM_CLOCK, groupId, type Clock } from '@flotilla/core';
import { META_RANGE_ID, USER_KEY_MIN, compareKeys, isSystemKey, rangeContains, type NodeRecord, type PlacementSettings, type RangeDescriptor, type RangeTable } from '@flotilla/placement';
import { ATOMIC_BATCH_OPS_MAX, KEY_BYTES_MAX, VALUE_BYTES_MAX, invalidContentType, type Consistency, type Host, type KvResult, type ShardStatus, type SplitOutcome } from '@flotilla/shards';
import { ForwardServer } from './forward-server.js';
import { HostCalls } from './host-calls.js';
import { MetaClient } from './meta-client.js';
import { runLocally, type PlacementHandler, type RangeOp, type RangeOpResult } from './range-ops.js';
import { Router, StaleRouteError } from './router.js';
import {
  Deadline,
  KvError,
  REQUEST_DEADLINE_MS_DEFAULT,
  SCAN_LIMIT_MAX,
  type BatchOutcome,
  type BatchWrite,
  type ClearOptions,
  type ClearResult,
  type KvStore,
  type PutResult,
  type ScanOptions,
  type ScanPage,
  type VersionedValue,
  type WithDeadline,
} from './store.js';

/** Budget of the local status read behind readiness (only this node's cores answer it: no quorum is involved). */
const LOCAL_STATUS_BUDGET_MS = 2_000;
/** Reasons readiness lists at most (a node may hold thousands of ranges); the last one says how many more. */
const READINESS_REASONS_MAX = 16;
const CURSOR_PREFIX = 'v1.';
const REVERSE_CURSOR_PREFIX = 'r1.';
/** Times a split looks its range up again after the range moved on under it. */
const ROUTE_RETRIES_MAX = 3;

export interface HostKvStoreOptions {
  readonly host: Host;
  readonly ranges: RangeTable;
  /** Budget of a call that names no deadline of its own (API calls, the meta duties); REQUEST_DEADLINE_MS_DEFAULT otherwise. */
  readonly requestDeadlineMs?: number;
  /** The clock deadlines, retries and refresh intervals run on; SYSTEM_CLOCK otherwise. */
  readonly clock?: Clock;
  /** Called once the store is closed (the owner closes the Host there). */
  readonly onClose?: () => Promise<void>;
}

/**
 * What the store has in flight. Each count is bounded by the callers'
 * concurrency (and refreshes by one), whatever the cluster does; the
 * quorum-loss test and /metrics read them.
 */
export interface HostKvStoreStats {
  /** Calls into the store not answered yet. */
  readonly requestsInFlight: number;
  /** Host calls (a request to a local core, or one forwarded to a peer) awaited now: at most one per call into the store. */
  readonly hostCallsInFlight: number;
  /**
   * Host calls given up at their request's deadline whose Host request has
   * not settled yet: the Host keeps each until its own timeout
   * (requestTimeoutTicks), so these are bounded by the request rate times it.
   */
  readonly hostCallsAbandoned: number;
  /** 0 or 1: every caller shares the one read of the meta range in flight. */
  readonly refreshesInFlight: number;
  /** Reads of every descriptor from the meta range started so far (at most one per META_REFRESH_INTERVAL_MS_MIN, meta-client.ts). */
  readonly metaRefreshesStarted: number;
  /** Routing misses looked up in the meta range: by key in its range end index (one bounded read, at most one descriptor read; range-lookup.ts), or by range id (one descriptor read). */
  readonly metaLookupsStarted: number;
  /** Rounds of those lookups that fell back to reading every descriptor. */
  readonly metaLookupFallbacks: number;
}

/** Whether this node can serve linearizable traffic, and if not, why (see readiness). */
export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

/**
 * The KvStore over the ranges of this node's Host: it routes each key by the
 * range table, runs the operation on the range's leader — here, or forwarded
 * over the transport to the leader's node, following leader hints — and
 * retries while a range has no leader, until the call's deadline. Any node
 * serves any key of a range it knows; stale reads are served by the local
 * replica without a leader.
 *
 * Every call has one deadline (WithDeadline), passed down through routing,
 * refreshes and Host calls; nothing below it starts a budget of its own, and
 * every Host call is given up when it passes.
 *
 * The parts, each with its own state: the Router (which range, which
 * leader, the retry of one op), the MetaClient (the meta range's records,
 * and refreshing the range table from them), the ForwardServer (ops other
 * nodes forward here) and HostCalls (Host calls and pauses under a
 * deadline). This class checks arguments, counts calls and wires them.
 */
export class HostKvStore implements KvStore {
  private closed = false;
  private readonly requestDeadlineMs: number;
  private readonly nowMs: () => number;
  private readonly clock: Clock;
  private readonly ranges: RangeTable;
  private readonly calls: HostCalls;
  private readonly router: Router;
  private readonly meta: MetaClient;
  private placement: PlacementHandler | undefined;
  /** learnPeer calls in flight by node id: a burst of requests from an unknown node reads its record once. */
  private readonly learning = new Map<number, Promise<void>>();
  private requestsInFlight = 0;

  /** The node's Host (its metrics read the cores' counters through it). */
  get host(): Host {
    return this.options.host;
  }

  constructor(private readonly options: HostKvStoreOptions) {
    this.requestDeadlineMs = options.requestDeadlineMs ?? REQUEST_DEADLINE_MS_DEFAULT;
    if (!Number.isSafeInteger(this.requestDeadlineMs) || this.requestDeadlineMs < 1) throw new RangeError(`requestDeadlineMs ${this.requestDeadlineMs} is not a positive integer`);
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.nowMs = () => this.clock.nowMs();
    this.ranges = options.ranges;
    const host = options.host;
    const calls = (this.calls = new HostCalls(this.clock));
    const checkOpen = () => this.checkOpen();
    // The placement handler of the moment: set and cleared as this node gains and loses the meta range's lead.
    const runHere = (op: RangeOp) => runLocally(host, op, this.placement);
    this.router = new Router({ host, ranges: this.ranges, calls, runHere, refresh: (deadline, o) => this.meta.refresh(deadline, o), checkOpen });
    this.meta = new MetaClient({ ranges: this.ranges, calls, clock: this.clock, run: (op, deadline) => this.router.execute(op, deadline), localReplicaChanges: (cursor, deadline) => this.calls.run(deadline, 'read the local replicas', () => this.options.host.shardChanges(cursor)), checkOpen });
    const forwarded = new ForwardServer({ runHere, knowsPeer: (nodeId) => host.hasPeer(nodeId), learnPeer: (nodeId) => this.learnPeer(nodeId) });
    host.setRequestHandler((from, payload) => forwarded.answer(from, payload));
  }

  get stats(): HostKvStoreStats {
    return {
      requestsInFlight: this.requestsInFlight,
      hostCallsInFlight: this.calls.inFlightCount,
      hostCallsAbandoned: this.calls.abandonedCount,
      refreshesInFlight: this.meta.refreshesInFlight,
      metaRefreshesStarted: this.meta.refreshesStarted,
      metaLookupsStarted: this.meta.lookupsStarted,
      metaLookupFallbacks: this.meta.lookupFallbacks,
    };
  }

  /** A deadline `requestDeadlineMs` (the store's default budget) from now, on the store's clock. */
  deadline(): Deadline {
    return Deadline.after(this.requestDeadlineMs, this.nowMs);
  }

  async get(key: Uint8Array, options: { consistency?: Consistency } & WithDeadline = {}): Promise<VersionedValue | undefined> {
    checkUserKey(key);
    const consistency = options.consistency ?? 'linearizable';
    return this.call(options.deadline, (deadline) =>
      this.router.routed(key, deadline, { stale: consistency === 'stale' }, async (range) => (await this.router.execute({ kind: 'get', rangeId: range.rangeId, key, consistency }, deadline)) as VersionedValue | undefined),
    );
  }

  async put(key: Uint8Array, value: Uint8Array, options: { ifVersion?: number; contentType?: string } & WithDeadline = {}): Promise<PutResult> {
    checkWrite({ op: 'put', key, value, ...options });
    return this.call(options.deadline, async (deadline) => {
      const result = await this.write(key, deadline, (rangeId) => ({ kind: 'put', rangeId, key, value, ifVersion: options.ifVersion, ...(options.contentType === undefined ? {} : { contentType: options.contentType }) }));
      return { version: result.version, created: 'created' in result && result.created === true };
    });
  }

  async delete(key: Uint8Array, options: { ifVersion?: number } & WithDeadline = {}): Promise<void> {
    checkWrite({ op: 'delete', key, ...options });
    await this.call(options.deadline, (deadline) => this.write(key, deadline, (rangeId) => ({ kind: 'delete', rangeId, key, ifVersion: options.ifVersion })));
  }

  async scan(options: ScanOptions): Promise<ScanPage> {
    this.checkOpen();
    if (!Number.isSafeInteger(options.limit) || options.limit < 1 || options.limit > SCAN_LIMIT_MAX) {
      throw new KvError('INVALID_ARGUMENT', `scan limit ${options.limit} is not an integer in [1, ${SCAN_LIMIT_MAX}]`);
    }
    checkBounds('scan', options);
    if (options.reverse === true) return this.scanReverse(options);
    const requested = options.cursor !== undefined ? decodeCursor(options.cursor, 'forward') : (options.start ?? USER_KEY_MIN);
    return this.call(options.deadline, async (deadline) => {
      // System keys (the meta range) are not the user's: a scan starts at the first user key at the earliest.
      let position = compareKeys(requested, USER_KEY_MIN) < 0 ? USER_KEY_MIN : requested;
      const end = options.end ?? null;
      const consistency = options.consistency ?? 'linearizable';
      const items: { key: Uint8Array; value: Uint8Array; version: number }[] = [];
      // One range at a time from `position`; a range that split under us answers KEY_OUT_OF_RANGE and is looked up again.
      while (end === null || compareKeys(position, end) < 0) {
        const from = position;
        const { page, rangeEnd } = await this.router.routed(from, deadline, { stale: consistency === 'stale' }, async (range) => {
          const rangeEnd = end === null ? range.end : range.end === null || compareKeys(end, range.end) < 0 ? end : range.end;
          const limit = options.limit - items.length;
          const page = (await this.router.execute({ kind: 'scan', rangeId: range.rangeId, start: from, end: rangeEnd, limit, consistency }, deadline)) as { key: Uint8Array; value: Uint8Array; version: number }[];
          return { page, rangeEnd };
        });
        items.push(...page);
        if (items.length === options.limit) {
          // The next page starts just after the last key returned (the smallest key greater than it).
          const last = items[items.length - 1]!.key;
          const next = Buffer.concat([last, Buffer.of(0)]);
          const more = end === null || compareKeys(next, end) < 0;
          return more ? { items, cursor: encodeCursor(next, 'forward') } : { items };
        }
        if (rangeEnd === null) break;
        position = rangeEnd;
      }
      return { items };
    });
  }

  /**
   * scan with `reverse`: one range at a time from the upper bound down, each
   * range's part read from its last key down. The cursor is the last key
   * returned: the next page's exclusive upper bound.
   */
  private async scanReverse(options: ScanOptions): Promise<ScanPage> {
    const requestedLower = options.start ?? USER_KEY_MIN;
    // System keys (the meta range) are not the user's: a scan stops at the first user key at the latest.
    const lower = compareKeys(requestedLower, USER_KEY_MIN) < 0 ? USER_KEY_MIN : requestedLower;
    let upper: Uint8Array | null = options.cursor !== undefined ? decodeCursor(options.cursor, 'reverse') : (options.end ?? null);
    const consistency = options.consistency ?? 'linearizable';
    return this.call(options.deadline, async (deadline) => {
      const items: { key: Uint8Array; value: Uint8Array; version: number }[] = [];
      while (upper === null || compareKeys(lower, upper) < 0) {
        const below: Uint8Array | null = upper;
        const { page, rangeStart } = await this.router.routedBelow(below, deadline, { stale: consistency === 'stale' }, async (range) => {
          const start = compareKeys(lower, range.start) > 0 ? lower : range.start;
          const limit = options.limit - items.length;
          const page = (await this.router.execute({ kind: 'scan', rangeId: range.rangeId, start, end: below, limit, consistency, reverse: true }, deadline)) as { key: Uint8Array; value: Uint8Array; version: number }[];
          return { page, rangeStart: range.start };
        });
        items.push(...page);
        if (items.length === options.limit) {
          const last = items[items.length - 1]!.key;
          return compareKeys(lower, last) < 0 ? { items, cursor: encodeCursor(last, 'reverse') } : { items };
        }
        if (compareKeys(rangeStart, lower) <= 0) break;
        upper = rangeStart;
      }
      return { items };
    });
  }

  async clear(options: ClearOptions): Promise<ClearResult> {
    this.checkOpen();
    checkBounds('clear', options);
    const requested = options.start ?? USER_KEY_MIN;
    const lower = compareKeys(requested, USER_KEY_MIN) < 0 ? USER_KEY_MIN : requested;
    const end = options.end ?? null;
    return this.call(options.deadline, async (deadline) => {
      const ranges: ClearResult['ranges'][number][] = [];
      // One range's part at a time from `position`; a range that split since the table was read refuses
      // its part whole (KEY_OUT_OF_RANGE) and the part is routed again, now ending at the split.
      for (let position = lower; end === null || compareKeys(position, end) < 0; ) {
        const from = position;
        const part = await this.router.routed(from, deadline, { stale: false }, async (range) => {
          const to = end === null ? range.end : range.end === null || compareKeys(end, range.end) < 0 ? end : range.end;
          const result = (await this.router.execute({ kind: 'deleteRange', rangeId: range.rangeId, start: from, end: to }, deadline)) as KvResult;
          if (result.ok && 'deletedCount' in result) return { rangeId: range.rangeId, start: from, end: to, deletedCount: result.deletedCount };
          if (!result.ok && (result.code === 'KEY_OUT_OF_RANGE' || result.code === 'RANGE_MERGING')) throw new StaleRouteError(result.reason);
          throw new KvError('INVALID_ARGUMENT', `range ${range.rangeId} refused the clear: ${result.ok ? 'unexpected answer' : 'reason' in result ? result.reason : result.code}`);
        });
        ranges.push(part);
        if (part.end === null) break;
        position = part.end;
      }
      return { deletedCount: ranges.reduce((sum, r) => sum + r.deletedCount, 0), ranges };
    });
  }

  async batch(ops: readonly BatchWrite[], options: WithDeadline = {}): Promise<BatchOutcome> {
    this.checkOpen();
    if (ops.length > ATOMIC_BATCH_OPS_MAX) throw new KvError('INVALID_ARGUMENT', `a batch of ${ops.length} ops exceeds ${ATOMIC_BATCH_OPS_MAX}`);
    for (const [i, op] of ops.entries()) checkWrite(op, `op ${i}: `);
    if (ops.length === 0) return { versions: [] };
    return this.call(options.deadline, (deadline) => {
      // A batch that spans ranges by this node's table is checked against a fresh table once before it is
      // refused: the table may hold a range that has split (then the batch may fit one half) or miss one.
      let refreshed = false;
      return this.router.routed(ops[0]!.key, deadline, { stale: false }, async (range) => {
        if (ops.some((op) => !rangeContains(range, op.key))) {
          if (!refreshed) {
            refreshed = true;
            throw new StaleRouteError(`batch spans ranges by node ${this.options.host.nodeId}'s table`);
          }
          throw this.spansRanges(ops);
        }
        const result = (await this.router.execute({ kind: 'atomicBatch', rangeId: range.rangeId, ops }, deadline)) as KvResult;
        if (result.ok && 'versions' in result) return { versions: result.versions };
        if (result.ok) throw new KvError('INVALID_ARGUMENT', `range ${range.rangeId} answered the batch without versions`);
        if (result.code === 'VERSION_MISMATCH') {
          const opIndex = result.opIndex ?? 0;
          const op = ops[opIndex]!;
          throw new KvError('PRECONDITION_FAILED', `batch op ${opIndex} (${op.op} of key ${hexOf(op.key)}): the key's version is ${result.currentVersion}, not ${op.ifVersion}; nothing was written`, {
            currentVersion: result.currentVersion,
            opIndex,
          });
        }
        if (result.code === 'KEY_OUT_OF_RANGE' || result.code === 'RANGE_MERGING') throw new StaleRouteError(result.reason);
        throw new KvError('INVALID_ARGUMENT', 'reason' in result ? result.reason : result.code);
      });
    });
  }

  /** BATCH_SPANS_RANGES for `ops`, naming each range its keys lie in by this node's table. */
  private spansRanges(ops: readonly BatchWrite[]): KvError {
    const byRange = new Map<number, { range: RangeDescriptor | undefined; keyCount: number }>();
    for (const op of ops) {
      const range = this.ranges.lookup(op.key);
      const id = range?.rangeId ?? 0;
      const entry = byRange.get(id) ?? { range, keyCount: 0 };
      entry.keyCount++;
      byRange.set(id, entry);
    }
    const named = [...byRange.values()].map(({ range, keyCount }) =>
      range === undefined ? `${keyCount} in no known range` : `${keyCount} in range ${range.rangeId} [${hexOf(range.start)}, ${range.end === null ? '∞' : hexOf(range.end)})`,
    );
    const rangeIds = [...byRange.keys()].filter((id) => id !== 0).sort((a, b) => a - b);
    return new KvError(
      'BATCH_SPANS_RANGES',
      `an atomic batch must stay within one range, but its ${ops.length} keys lie in ${byRange.size} (${named.join('; ')}); nothing was written — send one batch per range, or the writes one by one`,
      { rangeIds },
    );
  }

  /**
   * Splits range `rangeId` at `key` (the right half's first key): a new range
   * id from the meta range's allocator, then one Raft command on the range,
   * proposed against the epoch this node knows (refreshed and retried if the
   * range moved on). Both halves serve as soon as it applies.
   */
  async split(rangeId: number, key: Uint8Array, options: WithDeadline = {}): Promise<SplitOutcome> {
    checkUserKey(key);
    return this.call(options.deadline, async (deadline) => {
      for (let attempt = 0; ; attempt++) {
        const range = this.ranges.get(rangeId);
        if (range === undefined) throw new KvError('NOT_FOUND', `range ${rangeId} is not known to node ${this.options.host.nodeId}`);
        if (compareKeys(key, range.start) <= 0 || (range.end !== null && compareKeys(key, range.end) >= 0)) {
          throw new KvError('INVALID_ARGUMENT', `split key ${Buffer.from(key).toString('hex')} is not strictly inside range ${rangeId} [${Buffer.from(range.start).toString('hex')}, ${range.end === null ? '∞' : Buffer.from(range.end).toString('hex')})`);
        }
        const newShardId = await this.meta.allocateRangeId(deadline);
        const result = (await this.router.execute({ kind: 'split', rangeId, key, newShardId, epoch: range.epoch }, deadline)) as KvResult;
        if (result.ok && 'split' in result) {
          const { left, right } = result.split;
          this.ranges.upsert({ rangeId: left.shardId, start: left.start, end: left.end, epoch: left.epoch, replicas: range.replicas });
          this.ranges.upsert({ rangeId: right.shardId, start: right.start, end: right.end, epoch: right.epoch, replicas: range.replicas });
          return result.split;
        }
        // The range split or changed membership since we looked: look again (the allocated id is simply not used).
        if (!result.ok && (result.code === 'EPOCH_MISMATCH' || result.code === 'KEY_OUT_OF_RANGE') && attempt < ROUTE_RETRIES_MAX) {
          await this.meta.refresh(deadline, { kind: 'range', rangeId });
          continue;
        }
        throw new KvError('INVALID_ARGUMENT', `range ${rangeId} refused the split: ${!result.ok ? result.code : 'unexpected answer'}`);
      }
    });
  }

  /**
   * Records in the meta range the descriptor of every range this node leads
   * whose epoch or replicas moved since this node last recorded it
   * (MetaClient.reportDescriptors). Returns how many it wrote.
   */
  async reportDescriptors(options: WithDeadline = {}): Promise<number> {
    return this.call(options.deadline, (deadline) => this.meta.reportDescriptors(deadline));
  }

  /** Deletes descriptors another overlaps at a higher epoch (MetaClient.sweepStaleDescriptors); how many went. */
  async sweepStaleDescriptors(options: WithDeadline = {}): Promise<number> {
    return this.call(options.deadline, (deadline) => this.meta.sweepStaleDescriptors(deadline));
  }

  /** Every range descriptor recorded in the meta range, in range id order (linearizable). */
  async metaDescriptors(options: WithDeadline = {}): Promise<RangeDescriptor[]> {
    return this.call(options.deadline, (deadline) => this.meta.rangeDescriptors(deadline));
  }

  /** Every node recorded in the meta range, in node id order (linearizable); remembered for cachedMetaNodes. */
  async metaNodes(options: WithDeadline = {}): Promise<NodeRecord[]> {
    return this.call(options.deadline, (deadline) => this.meta.nodes(deadline));
  }

  /** The node records the last successful metaNodes read returned and how old that read is; undefined before the first. No quorum needed. */
  cachedMetaNodes(): { readonly nodes: readonly NodeRecord[]; readonly ageMs: number } | undefined {
    return this.meta.cachedNodes();
  }

  /** Records a node in the meta range (MetaClient.recordNode): PRECONDITION_FAILED if its id is recorded with another transport address. */
  async recordNode(record: NodeRecord, options: WithDeadline = {}): Promise<void> {
    await this.call(options.deadline, (deadline) => this.meta.recordNode(record, deadline));
  }

  /** Sets a recorded node's administrative state (decommissioning); NOT_FOUND for a node never recorded. */
  async setNodeState(nodeId: number, state: NodeRecord['state'], options: WithDeadline = {}): Promise<NodeRecord> {
    return this.call(options.deadline, (deadline) => this.meta.setNodeState(nodeId, state, deadline));
  }

  /** The placement driver's settings as the meta range holds them (defaults until first set). */
  async placementSettings(defaults: PlacementSettings, options: WithDeadline = {}): Promise<PlacementSettings> {
    return this.call(options.deadline, (deadline) => this.meta.placementSettings(defaults, deadline));
  }

  async updatePlacementSettings(defaults: PlacementSettings, change: Partial<PlacementSettings>, options: WithDeadline = {}): Promise<PlacementSettings> {
    return this.call(options.deadline, (deadline) => this.meta.updatePlacementSettings(defaults, change, deadline));
  }

  /** Learns every recorded node's address; `nodes`: the records already read this duty tick. */
  async learnPeers(nodes: Promise<NodeRecord[]> = this.metaNodes()): Promise<void> {
    const host = this.options.host;
    for (const n of await nodes) if (n.nodeId !== host.nodeId && n.state !== 'decommissioned') host.setPeer(n.nodeId, n.address);
  }

  /**
   * Learns one node's address from its record (one read, not a scan: a reply
   * to it is waiting). One read per node at a time: every caller meanwhile
   * waits for the one in flight (bounded by the first caller's deadline).
   */
  learnPeer(nodeId: number, options: WithDeadline = {}): Promise<void> {
    let learning = this.learning.get(nodeId);
    if (learning === undefined) {
      learning = this.call(options.deadline, async (deadline) => {
        const n = await this.meta.node(nodeId, deadline);
        if (n !== undefined && n.state !== 'decommissioned') this.options.host.setPeer(n.nodeId, n.address);
      }).finally(() => this.learning.delete(nodeId));
      this.learning.set(nodeId, learning);
    }
    return learning;
  }

  /** The known ranges, in key order (the meta range first). */
  knownRanges(): readonly RangeDescriptor[] {
    return this.ranges.all();
  }

  knownRange(rangeId: number): RangeDescriptor | undefined {
    return this.ranges.get(rangeId);
  }

  /**
   * Whether this node can serve linearizable traffic now, judged from what
   * it knows locally (it asks no quorum, so it answers at once whatever the
   * cluster's state): for every range it holds a replica of — the meta range
   * among them — a majority of the voters is on live nodes (this one or peers
   * the liveness tracker calls up) and the leader is known and live. A
   * dormant range (quiesced, no leader known: a node that restarted) with a
   * live majority counts as ready, since a request wakes it and it elects at
   * once. A node holding no replica of the meta range needs to have seen its
   * leader, live. Empty replicas waiting for their first snapshot are skipped.
   * A full disk makes a node unready (its cores persist nothing: no vote, no
   * entry); a disk only below its reserve does not (its leads move away and
   * it forwards writes to them).
   */
  async readiness(options: WithDeadline = {}): Promise<Readiness> {
    const host = this.options.host;
    const deadline = options.deadline ?? Deadline.after(LOCAL_STATUS_BUDGET_MS, this.nowMs);
    const live = this.router.liveNodes();
    const reasons: string[] = [];
    const nameOf = (rangeId: number) => (rangeId === META_RANGE_ID ? `the meta range (range ${rangeId})` : `range ${rangeId}`);
    const disk = host.diskStatus();
    if (disk.full) reasons.push(`the disk of node ${host.nodeId} is full (${disk.freeBytesMin ?? 0} B free): it persists nothing until space returns`);
    const shards = await this.call(deadline, (d) => this.localReplicas(d));
    for (const s of shards) {
      if (s.epoch === 0) continue;
      const liveVoters = s.voters.filter((v) => live.has(v));
      if (liveVoters.length * 2 <= s.voters.length) {
        reasons.push(`no quorum for ${nameOf(s.shardId)}: ${liveVoters.length} of its ${s.voters.length} voters (nodes ${s.voters.join(', ')}) are live`);
      } else if (s.leader === 0) {
        if (!s.quiesced) reasons.push(`${nameOf(s.shardId)} has no leader (electing one)`);
      } else if (!live.has(s.leader)) {
        reasons.push(`${nameOf(s.shardId)}'s leader, node ${s.leader}, is down`);
      }
    }
    if (!host.hasShard(groupId(META_RANGE_ID))) {
      const leader = this.router.lastSeenLeader(META_RANGE_ID);
      if (leader === undefined) reasons.push(`the meta range's leader is unknown to node ${host.nodeId} (it holds no replica of it and has not reached it)`);
      else if (!live.has(leader)) reasons.push(`the meta range's leader, node ${leader}, is down`);
    }
    if (reasons.length > READINESS_REASONS_MAX) reasons.splice(READINESS_REASONS_MAX - 1, reasons.length, `and ${reasons.length - READINESS_REASONS_MAX + 1} more`);
    return { ready: reasons.length === 0, reasons };
  }

  /** Serves `placement` requests here while this node leads the meta range (PlacementService). */
  setPlacementHandler(handler: PlacementHandler | undefined): void {
    this.placement = handler;
  }

  /** Runs one operation on one node (here, or forwarded): what the placement driver sends a node that is to hold a replica. */
  async runOnNode(nodeId: number, op: RangeOp, options: WithDeadline = {}): Promise<RangeOpResult> {
    return this.call(options.deadline, (deadline) => this.router.runOn(nodeId, op, deadline));
  }

  /** Runs one operation on a range's leader (Router.execute): what the placement driver's steps and heartbeats go through. */
  runOnRange(op: RangeOp, options: WithDeadline = {}): Promise<RangeOpResult> {
    return this.call(options.deadline, (deadline) => this.router.execute(op, deadline));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.options.onClose?.();
  }

  /** One call into the store: counted while in flight, under the caller's deadline or a fresh one of the default budget. */
  private async call<T>(deadline: Deadline | undefined, run: (deadline: Deadline) => Promise<T>): Promise<T> {
    this.checkOpen();
    this.requestsInFlight++;
    try {
      return await run(deadline ?? this.deadline());
    } finally {
      this.requestsInFlight--;
    }
  }

  /** This node's replicas as its cores report them, given up at the deadline. */
  private localReplicas(deadline: Deadline): Promise<ShardStatus[]> {
    return this.calls.run(deadline, 'read the local replicas', () => this.options.host.shards());
  }

  private async write(key: Uint8Array, deadline: Deadline, opFor: (rangeId: number) => Extract<RangeOp, { kind: 'put' | 'delete' }>): Promise<Extract<KvResult, { ok: true }>> {
    return this.router.routed(key, deadline, { stale: false }, async (range) => {
      const op = opFor(range.rangeId);
      const result = (await this.router.execute(op, deadline)) as KvResult;
      if (result.ok) return result;
      if (result.code === 'VERSION_MISMATCH') {
        throw new KvError('PRECONDITION_FAILED', `key's version is ${result.currentVersion}, not ${op.ifVersion}`, { currentVersion: result.currentVersion });
      }
      // Refused at apply (a split applied first, or a freeze for a merge): nothing was written, so it is safe to route again.
      if (result.code === 'KEY_OUT_OF_RANGE' || result.code === 'RANGE_MERGING') throw new StaleRouteError(result.reason);
      throw new KvError('INVALID_ARGUMENT', 'reason' in result ? result.reason : result.code);
    });
  }

  private checkOpen(): void {
    if (this.closed) throw new KvError('CLOSED', 'the store is closed');
  }
}

function checkUserKey(key: Uint8Array): void {
  if (key.byteLength === 0) throw new KvError('INVALID_ARGUMENT', 'key is empty');
  if (isSystemKey(key)) throw new KvError('INVALID_ARGUMENT', `key ${Buffer.from(key).toString('hex')} is reserved: keys below 0x0001 (0x00 and 0x0000…) hold the cluster's metadata`);
  if (key.byteLength > KEY_BYTES_MAX) throw new KvError('KEY_TOO_LARGE', `key of ${key.byteLength} B exceeds ${KEY_BYTES_MAX} B`);
}

/** A put's or delete's arguments (alone, or op `prefix` of a batch), checked before anything is routed. */
function checkWrite(op: BatchWrite, prefix = ''): void {
  try {
    checkUserKey(op.key);
    if (op.ifVersion !== undefined && (!Number.isSafeInteger(op.ifVersion) || op.ifVersion < 0)) throw new KvError('INVALID_ARGUMENT', `ifVersion ${op.ifVersion} is not a non-negative integer`);
    if (op.op === 'put') {
      if (op.value.byteLength > VALUE_BYTES_MAX) throw new KvError('VALUE_TOO_LARGE', `value of ${op.value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`);
      const invalid = op.contentType === undefined ? undefined : invalidContentType(op.contentType);
      if (invalid !== undefined) throw new KvError('INVALID_ARGUMENT', invalid);
    }
  } catch (err) {
    if (prefix === '' || !(err instanceof KvError)) throw err;
    throw new KvError(err.code, `${prefix}${err.message}`, err.details);
  }
}

/** A scan's or clear's bounds: each at most KEY_BYTES_MAX, and start not after end. */
function checkBounds(what: string, bounds: { readonly start?: Uint8Array; readonly end?: Uint8Array }): void {
  for (const [name, bound] of [['start', bounds.start], ['end', bounds.end]] as const) {
    if (bound !== undefined && bound.byteLength > KEY_BYTES_MAX) throw new KvError('KEY_TOO_LARGE', `${what} ${name} of ${bound.byteLength} B exceeds ${KEY_BYTES_MAX} B`);
  }
  if (bounds.start !== undefined && bounds.end !== undefined && compareKeys(bounds.start, bounds.end) > 0) {
    throw new KvError('INVALID_ARGUMENT', `${what} start ${hexOf(bounds.start)} is after its end ${hexOf(bounds.end)}`);
  }
}

function hexOf(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
}

/**
 * A scan cursor: the direction and the key the next page starts from
 * (forward: its first key, inclusive; reverse: its exclusive upper bound).
 */
export function encodeCursor(next: Uint8Array, direction: 'forward' | 'reverse'): string {
  return (direction === 'forward' ? CURSOR_PREFIX : REVERSE_CURSOR_PREFIX) + Buffer.from(next).toString('base64url');
}

export function decodeCursor(cursor: string, direction: 'forward' | 'reverse'): Uint8Array {
  const prefix = direction === 'forward' ? CURSOR_PREFIX : REVERSE_CURSOR_PREFIX;
  const other = direction === 'forward' ? REVERSE_CURSOR_PREFIX : CURSOR_PREFIX;
  if (cursor.startsWith(other)) throw new KvError('INVALID_ARGUMENT', `scan cursor is from a ${direction === 'forward' ? 'reverse' : 'forward'} scan; continue it in the same direction`);
  if (!cursor.startsWith(prefix) || !/^[A-Za-z0-9_-]+$/.test(cursor.slice(prefix.length))) {
    throw new KvError('INVALID_ARGUMENT', 'scan cursor is malformed (pass back the cursor of the previous page unchanged)');
  }
  const key = Buffer.from(cursor.slice(prefix.length), 'base64url');
  if (key.byteLength === 0 || key.byteLength > KEY_BYTES_MAX + 1) throw new KvError('INVALID_ARGUMENT', 'scan cursor is malformed');
  return key;
}
