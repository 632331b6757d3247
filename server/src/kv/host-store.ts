import { SYSTEM_CLOCK, assert, groupId, sleep, type Clock, type Timer } from '@flotilla/core';
import {
  FIRST_ALLOCATED_RANGE_ID,
  META_RANGE_ID,
  RANGE_ID_ALLOCATOR_KEY,
  NODE_KEYS,
  RANGE_KEYS,
  RangeTable,
  decodeNodeRecord,
  encodeNodeRecord,
  nodeKey,
  type NodeRecord,
  decodeRangeDescriptor,
  encodeRangeDescriptor,
  rangeKey,
  USER_KEY_MIN,
  compareKeys,
  decodeCounter,
  encodeCounter,
  isSystemKey,
  type RangeDescriptor,
  PLACEMENT_SETTINGS_KEY,
  decodePlacementSettings,
  encodePlacementSettings,
  type PlacementSettings,
} from '@flotilla/placement';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX, type Consistency, type Host, type KvResult, type ShardStatus, type SplitOutcome } from '@flotilla/shards';
import { decodeRangeOp, decodeRangeOpResult, encodeRangeOp, encodeRangeOpResult, runLocally, type PlacementHandler, type RangeOp, type RangeOpResult } from './range-ops.js';
import { Deadline, KvError, REQUEST_DEADLINE_MS_DEFAULT, SCAN_LIMIT_MAX, type KvStore, type ScanOptions, type ScanPage, type VersionedValue, type WithDeadline } from './store.js';

/** First pause between rounds of asking a range's replicas while none of them leads it; doubles each round. */
const RETRY_DELAY_MS_MIN = 10;
/**
 * Longest pause between rounds: a leader elected meanwhile is found within
 * it, and a request to a range that has none costs a few Host calls a second
 * (one per round per reachable replica), not one per round trip.
 */
const RETRY_DELAY_MS_MAX = 250;
/** What a 503 tells the client to wait. */
const RETRY_AFTER_MS = 1_000;
/**
 * Least time between the starts of two reads of the descriptors from the
 * meta range. Every request routed to a stale or dead range asks for one;
 * one read in flight serves them all, and this keeps a node whose meta range
 * has no leader from re-reading it back to back. A quarter second: a route
 * that changed (a split, a move) is learned well within one request's budget.
 */
const META_REFRESH_INTERVAL_MS_MIN = 250;
/** Budget of the local status read behind readiness (only this node's cores answer it: no quorum is involved). */
const LOCAL_STATUS_BUDGET_MS = 2_000;
/** Reasons readiness lists at most (a node may hold thousands of ranges); the last one says how many more. */
const READINESS_REASONS_MAX = 16;
const CURSOR_PREFIX = 'v1.';
/** Times a split looks its range up again after the range moved on under it. */
const ROUTE_RETRIES_MAX = 3;
/** Compare-and-set rounds on one meta key before giving up (only contention loses one). */
const CAS_RETRIES_MAX = 16;
/** Failures of one attempt worth asking another replica, or the same one next round, about. */
const RETRYABLE_CODES: ReadonlySet<string> = new Set(['NOT_LEADER', 'PROPOSAL_DROPPED', 'REQUEST_TIMEOUT', 'SHARD_NOT_FOUND', 'OVERLOADED', 'NO_HANDLER', 'DISK_FULL']);

assert(RETRY_DELAY_MS_MIN > 0, 'the first retry delay must be positive');
assert(RETRY_DELAY_MS_MIN <= RETRY_DELAY_MS_MAX, 'the first retry delay must not exceed the longest');
assert(META_REFRESH_INTERVAL_MS_MIN < REQUEST_DEADLINE_MS_DEFAULT, 'a request must be able to wait out the refresh interval within its default budget');

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
  /** Reads of the descriptors from the meta range started so far (at most one per META_REFRESH_INTERVAL_MS_MIN). */
  readonly metaRefreshesStarted: number;
}

/** Whether this node can serve linearizable traffic, and if not, why (see readiness). */
export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

/** One round of asking a range's replicas (askRound): the answer, or why nobody gave one. */
type RoundOutcome =
  | { readonly answered: true; readonly result: RangeOpResult }
  | { readonly answered: false; readonly someoneHolds: boolean; readonly failure: string; readonly diskFull?: string };

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
 */
export class HostKvStore implements KvStore {
  private closed = false;
  private readonly requestDeadlineMs: number;
  private readonly nowMs: () => number;
  private readonly clock: Clock;
  private readonly ranges: RangeTable;
  /** What reportDescriptors last recorded per range ("epoch/replicas"). */
  private readonly reported = new Map<number, string>();
  private placement: PlacementHandler | undefined;
  /**
   * The node last seen leading each range (it answered, or a replica's hint named it): asked first, so an
   * operation is not sent to a follower only to be told where to go. A hint, never trusted: a node that
   * no longer leads answers NOT_LEADER and the usual walk over the replicas follows.
   */
  private readonly leaderHints = new Map<number, number>();
  /** The read of the meta range's descriptors in flight, shared by every refresh meanwhile; it never rejects. */
  private metaRefresh: Promise<void> | undefined;
  private metaRefreshStartMs = Number.NEGATIVE_INFINITY;
  /** learnPeer calls in flight by node id: a burst of requests from an unknown node reads its record once. */
  private readonly learning = new Map<number, Promise<void>>();
  /** The node records the last successful metaNodes read returned, and when: what /cluster lists without a quorum. */
  private metaNodesRead: { readonly nodes: readonly NodeRecord[]; readonly atMs: number } | undefined;
  private requestsInFlight = 0;
  private hostCallsInFlight = 0;
  private hostCallsAbandoned = 0;
  private metaRefreshesStarted = 0;

  constructor(private readonly options: HostKvStoreOptions) {
    this.requestDeadlineMs = options.requestDeadlineMs ?? REQUEST_DEADLINE_MS_DEFAULT;
    if (!Number.isSafeInteger(this.requestDeadlineMs) || this.requestDeadlineMs < 1) throw new RangeError(`requestDeadlineMs ${this.requestDeadlineMs} is not a positive integer`);
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.nowMs = () => this.clock.nowMs();
    this.ranges = options.ranges;
    // Serve what other nodes forward here: run it on the local replica, which answers NOT_LEADER
    // with its hint if leadership moved; the sender follows the hint.
    options.host.setRequestHandler(async (from, payload) => {
      const result = encodeRangeOpResult(await runLocally(options.host, decodeRangeOp(payload), this.placement));
      // A node that joined since this one last read the members: learn its address, or the answer cannot reach it.
      if (!options.host.hasPeer(from)) await this.learnPeer(from).catch(() => undefined);
      return result;
    });
  }

  get stats(): HostKvStoreStats {
    return {
      requestsInFlight: this.requestsInFlight,
      hostCallsInFlight: this.hostCallsInFlight,
      hostCallsAbandoned: this.hostCallsAbandoned,
      refreshesInFlight: this.metaRefresh === undefined ? 0 : 1,
      metaRefreshesStarted: this.metaRefreshesStarted,
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
      this.routed(key, deadline, { stale: consistency === 'stale' }, async (range) => (await this.execute({ kind: 'get', rangeId: range.rangeId, key, consistency }, deadline)) as VersionedValue | undefined),
    );
  }

  async put(key: Uint8Array, value: Uint8Array, options: { ifVersion?: number } & WithDeadline = {}): Promise<{ version: number }> {
    checkUserKey(key);
    if (value.byteLength > VALUE_BYTES_MAX) throw new KvError('VALUE_TOO_LARGE', `value of ${value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`);
    checkIfVersion(options.ifVersion);
    return this.call(options.deadline, async (deadline) => ({ version: await this.write(key, deadline, (rangeId) => ({ kind: 'put', rangeId, key, value, ifVersion: options.ifVersion })) }));
  }

  async delete(key: Uint8Array, options: { ifVersion?: number } & WithDeadline = {}): Promise<void> {
    checkUserKey(key);
    checkIfVersion(options.ifVersion);
    await this.call(options.deadline, (deadline) => this.write(key, deadline, (rangeId) => ({ kind: 'delete', rangeId, key, ifVersion: options.ifVersion })));
  }

  async scan(options: ScanOptions): Promise<ScanPage> {
    this.checkOpen();
    if (!Number.isSafeInteger(options.limit) || options.limit < 1 || options.limit > SCAN_LIMIT_MAX) {
      throw new KvError('INVALID_ARGUMENT', `scan limit ${options.limit} is not an integer in [1, ${SCAN_LIMIT_MAX}]`);
    }
    for (const [name, bound] of [['start', options.start], ['end', options.end]] as const) {
      if (bound !== undefined && bound.byteLength > KEY_BYTES_MAX) throw new KvError('KEY_TOO_LARGE', `scan ${name} of ${bound.byteLength} B exceeds ${KEY_BYTES_MAX} B`);
    }
    const requested = options.cursor !== undefined ? decodeCursor(options.cursor) : (options.start ?? USER_KEY_MIN);
    return this.call(options.deadline, async (deadline) => {
      // System keys (the meta range) are not the user's: a scan starts at the first user key at the earliest.
      let position = compareKeys(requested, USER_KEY_MIN) < 0 ? USER_KEY_MIN : requested;
      const end = options.end ?? null;
      const consistency = options.consistency ?? 'linearizable';
      const items: { key: Uint8Array; value: Uint8Array; version: number }[] = [];
      // One range at a time from `position`; a range that split under us answers KEY_OUT_OF_RANGE and is looked up again.
      while (end === null || compareKeys(position, end) < 0) {
        const from = position;
        const { page, rangeEnd } = await this.routed(from, deadline, { stale: consistency === 'stale' }, async (range) => {
          const rangeEnd = end === null ? range.end : range.end === null || compareKeys(end, range.end) < 0 ? end : range.end;
          const limit = options.limit - items.length;
          const page = (await this.execute({ kind: 'scan', rangeId: range.rangeId, start: from, end: rangeEnd, limit, consistency }, deadline)) as { key: Uint8Array; value: Uint8Array; version: number }[];
          return { page, rangeEnd };
        });
        items.push(...page);
        if (items.length === options.limit) {
          // The next page starts just after the last key returned (the smallest key greater than it).
          const last = items[items.length - 1]!.key;
          const next = Buffer.concat([last, Buffer.of(0)]);
          const more = end === null || compareKeys(next, end) < 0;
          return more ? { items, cursor: encodeCursor(next) } : { items };
        }
        if (rangeEnd === null) break;
        position = rangeEnd;
      }
      return { items };
    });
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
        const newShardId = await this.allocateRangeId(deadline);
        const result = (await this.execute({ kind: 'split', rangeId, key, newShardId, epoch: range.epoch }, deadline)) as KvResult;
        if (result.ok && 'split' in result) {
          const { left, right } = result.split;
          this.ranges.upsert({ rangeId: left.shardId, start: left.start, end: left.end, epoch: left.epoch, replicas: range.replicas });
          this.ranges.upsert({ rangeId: right.shardId, start: right.start, end: right.end, epoch: right.epoch, replicas: range.replicas });
          return result.split;
        }
        // The range split or changed membership since we looked: look again (the allocated id is simply not used).
        if (!result.ok && (result.code === 'EPOCH_MISMATCH' || result.code === 'KEY_OUT_OF_RANGE') && attempt < ROUTE_RETRIES_MAX) {
          await this.refresh(deadline, { fromMeta: true });
          continue;
        }
        throw new KvError('INVALID_ARGUMENT', `range ${rangeId} refused the split: ${!result.ok ? result.code : 'unexpected answer'}`);
      }
    });
  }

  /**
   * Records in the meta range the descriptor of every range this node leads
   * whose epoch or replicas moved since this node last recorded it (the
   * first call records them all): a compare-and-set that keeps whichever
   * descriptor has the higher epoch, so reporters racing each other, or a
   * stale leader, never move meta backwards. Returns how many it wrote.
   * TiKV's region heartbeats to PD, pulled by the node's own timer.
   */
  async reportDescriptors(options: WithDeadline = {}): Promise<number> {
    return this.call(options.deadline, async (deadline) => {
      let written = 0;
      for (const s of await this.hostCall(deadline, 'read the local replicas', () => this.options.host.shards())) {
        if (s.role !== 'leader') continue;
        const local = descriptorOf(s);
        const fingerprint = `${local.epoch}/${local.replicas.join(',')}`;
        if (this.reported.get(s.shardId) === fingerprint) continue;
        const wrote = await this.metaCompareAndSet(rangeKey(s.shardId), `record range ${s.shardId}`, deadline, (stored) => {
          const current = stored === undefined ? undefined : decodeRangeDescriptor(stored.value);
          if (current !== undefined && (current.epoch > local.epoch || (current.epoch === local.epoch && current.replicas.join(',') === local.replicas.join(',')))) return undefined;
          return encodeRangeDescriptor(local);
        });
        if (wrote) written++;
        this.reported.set(s.shardId, fingerprint);
      }
      return written;
    });
  }

  /** Every range descriptor recorded in the meta range, in range id order (linearizable). */
  async metaDescriptors(options: WithDeadline = {}): Promise<RangeDescriptor[]> {
    return this.call(options.deadline, async (deadline) => (await this.metaScan(RANGE_KEYS, deadline)).map((value) => decodeRangeDescriptor(value)));
  }

  /** Every node recorded in the meta range, in node id order (linearizable); remembered for cachedMetaNodes. */
  async metaNodes(options: WithDeadline = {}): Promise<NodeRecord[]> {
    return this.call(options.deadline, async (deadline) => {
      const nodes = (await this.metaScan(NODE_KEYS, deadline)).map((value) => decodeNodeRecord(value));
      this.metaNodesRead = { nodes, atMs: this.nowMs() };
      return nodes;
    });
  }

  /** The node records the last successful metaNodes read returned and how old that read is; undefined before the first. No quorum needed. */
  cachedMetaNodes(): { readonly nodes: readonly NodeRecord[]; readonly ageMs: number } | undefined {
    const read = this.metaNodesRead;
    return read === undefined ? undefined : { nodes: read.nodes, ageMs: this.nowMs() - read.atMs };
  }

  /**
   * Records a node in the meta range: a compare-and-set that refuses a node
   * id recorded with another transport address (two processes claiming one
   * id would split its replicas' identity). Writes only when it changed.
   */
  async recordNode(record: NodeRecord, options: WithDeadline = {}): Promise<void> {
    await this.call(options.deadline, (deadline) =>
      this.metaCompareAndSet(nodeKey(record.nodeId), `record node ${record.nodeId}`, deadline, (stored) => {
        const current = stored === undefined ? undefined : decodeNodeRecord(stored.value);
        if (current !== undefined && current.address !== record.address) {
          throw new KvError('PRECONDITION_FAILED', `node ${record.nodeId} is recorded at ${current.address}, not ${record.address}`, { currentVersion: stored!.version });
        }
        // The state is the operator's (decommissioning): a node recording its addresses keeps it.
        if (current !== undefined && current.httpAddress === record.httpAddress) return undefined;
        return encodeNodeRecord(current === undefined ? record : { ...record, state: current.state });
      }),
    );
  }

  /** Sets a recorded node's administrative state (decommissioning); NOT_FOUND for a node never recorded. */
  async setNodeState(nodeId: number, state: NodeRecord['state'], options: WithDeadline = {}): Promise<NodeRecord> {
    let updated: NodeRecord | undefined;
    await this.call(options.deadline, (deadline) =>
      this.metaCompareAndSet(nodeKey(nodeId), `set node ${nodeId} ${state}`, deadline, (stored) => {
        if (stored === undefined) throw new KvError('NOT_FOUND', `node ${nodeId} is not recorded in the meta range`);
        const current = decodeNodeRecord(stored.value);
        updated = { ...current, state };
        return current.state === state ? undefined : encodeNodeRecord(updated);
      }),
    );
    return updated!;
  }

  /** The placement driver's settings as the meta range holds them (defaults until first set). */
  async placementSettings(defaults: PlacementSettings, options: WithDeadline = {}): Promise<PlacementSettings> {
    return this.call(options.deadline, async (deadline) => {
      const stored = (await this.execute({ kind: 'get', rangeId: META_RANGE_ID, key: PLACEMENT_SETTINGS_KEY, consistency: 'linearizable' }, deadline)) as VersionedValue | undefined;
      return stored === undefined ? defaults : decodePlacementSettings(stored.value);
    });
  }

  async updatePlacementSettings(defaults: PlacementSettings, change: Partial<PlacementSettings>, options: WithDeadline = {}): Promise<PlacementSettings> {
    let next: PlacementSettings = defaults;
    await this.call(options.deadline, (deadline) =>
      this.metaCompareAndSet(PLACEMENT_SETTINGS_KEY, 'update the placement settings', deadline, (stored) => {
        next = { ...(stored === undefined ? defaults : decodePlacementSettings(stored.value)), ...change };
        return encodePlacementSettings(next);
      }),
    );
    return next;
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
        const stored = (await this.execute({ kind: 'get', rangeId: META_RANGE_ID, key: nodeKey(nodeId), consistency: 'linearizable' }, deadline)) as VersionedValue | undefined;
        if (stored === undefined) return;
        const n = decodeNodeRecord(stored.value);
        if (n.state !== 'decommissioned') this.options.host.setPeer(n.nodeId, n.address);
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
    const live = this.liveNodes();
    const reasons: string[] = [];
    const nameOf = (rangeId: number) => (rangeId === META_RANGE_ID ? `the meta range (range ${rangeId})` : `range ${rangeId}`);
    const disk = host.diskStatus();
    if (disk.full) reasons.push(`the disk of node ${host.nodeId} is full (${disk.freeBytesMin ?? 0} B free): it persists nothing until space returns`);
    const shards = await this.call(deadline, (d) => this.hostCall(d, 'read the local replicas', () => host.shards()));
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
      const leader = this.leaderHints.get(META_RANGE_ID);
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
    return this.call(options.deadline, (deadline) => this.runOn(nodeId, op, deadline));
  }

  /** Runs one operation on a range's leader (execute): what the placement driver's steps and heartbeats go through. */
  runOnRange(op: RangeOp, options: WithDeadline = {}): Promise<RangeOpResult> {
    return this.call(options.deadline, (deadline) => this.execute(op, deadline));
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

  /**
   * Awaits one Host call, but no longer than `deadline`: past it the call is
   * given up with DeadlineExceededError (the Host keeps its request until its
   * own timeout, counted meanwhile in hostCallsAbandoned).
   */
  private async hostCall<T>(deadline: Deadline, what: string, call: () => Promise<T>): Promise<T> {
    const remainingMs = deadline.remainingMs();
    if (remainingMs <= 0) throw new DeadlineExceededError(what, { handedOver: false });
    this.hostCallsInFlight++;
    let timer: Timer | undefined;
    let pending: Promise<T> | undefined;
    try {
      pending = call();
      const cutOff = new Promise<never>((_, reject) => {
        timer = this.clock.setTimer(remainingMs, () => reject(new DeadlineExceededError(what, { handedOver: true })));
      });
      return await Promise.race([pending, cutOff]);
    } catch (err) {
      if (err instanceof DeadlineExceededError && pending !== undefined) {
        this.hostCallsAbandoned++;
        const settled = () => {
          this.hostCallsAbandoned--;
        };
        // Only the count waits for it; its outcome has no one left to tell (race already observed any rejection).
        void pending.then(settled, settled);
      }
      throw err;
    } finally {
      timer?.cancel();
      this.hostCallsInFlight--;
    }
  }

  /**
   * A fresh range id from the meta range: a compare-and-set on the
   * allocator key, retried on a lost race. Ids below FIRST_ALLOCATED_RANGE_ID
   * belong to the bootstrap ranges.
   */
  private async allocateRangeId(deadline: Deadline): Promise<number> {
    let next = FIRST_ALLOCATED_RANGE_ID;
    await this.metaCompareAndSet(RANGE_ID_ALLOCATOR_KEY, 'allocate a range id', deadline, (stored) => {
      next = stored === undefined ? FIRST_ALLOCATED_RANGE_ID : decodeCounter(stored.value);
      return encodeCounter(next + 1);
    });
    return next;
  }

  /**
   * One compare-and-set on a meta range key, retried while it loses races:
   * `decide` sees the stored value (undefined when absent) and returns what
   * to write, or undefined to leave it as it is. Resolves to whether it wrote.
   */
  private async metaCompareAndSet(key: Uint8Array, what: string, deadline: Deadline, decide: (stored: VersionedValue | undefined) => Uint8Array | undefined): Promise<boolean> {
    for (let attempt = 0; attempt < CAS_RETRIES_MAX; attempt++) {
      const stored = (await this.execute({ kind: 'get', rangeId: META_RANGE_ID, key, consistency: 'linearizable' }, deadline)) as VersionedValue | undefined;
      const value = decide(stored);
      if (value === undefined) return false;
      const result = (await this.execute({ kind: 'put', rangeId: META_RANGE_ID, key, value, ifVersion: stored?.version ?? 0 }, deadline)) as KvResult;
      if (result.ok) return true;
      if (result.code !== 'VERSION_MISMATCH') throw new KvError('UNAVAILABLE', `the meta range refused to ${what}: ${result.code}`, { retryAfterMs: RETRY_AFTER_MS });
    }
    throw new KvError('UNAVAILABLE', `could not ${what} in ${CAS_RETRIES_MAX} tries (contention)`, { retryAfterMs: RETRY_AFTER_MS });
  }

  private async metaScan(span: { start: Uint8Array; end: Uint8Array }, deadline: Deadline): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    let start = span.start;
    for (;;) {
      const page = (await this.execute({ kind: 'scan', rangeId: META_RANGE_ID, start, end: span.end, limit: SCAN_LIMIT_MAX, consistency: 'linearizable' }, deadline)) as { key: Uint8Array; value: Uint8Array }[];
      out.push(...page.map((p) => p.value));
      if (page.length < SCAN_LIMIT_MAX) return out;
      start = Buffer.concat([page[page.length - 1]!.key, Buffer.of(0)]);
    }
  }

  private async write(key: Uint8Array, deadline: Deadline, opFor: (rangeId: number) => Extract<RangeOp, { kind: 'put' | 'delete' }>): Promise<number> {
    return this.routed(key, deadline, { stale: false }, async (range) => {
      const op = opFor(range.rangeId);
      const result = (await this.execute(op, deadline)) as KvResult;
      if (result.ok) return result.version;
      if (result.code === 'VERSION_MISMATCH') {
        throw new KvError('PRECONDITION_FAILED', `key's version is ${result.currentVersion}, not ${op.ifVersion}`, { currentVersion: result.currentVersion });
      }
      // Refused at apply (a split applied first): nothing was written, so it is safe to route again.
      if (result.code === 'KEY_OUT_OF_RANGE') throw new StaleRouteError(result.reason);
      throw new KvError('INVALID_ARGUMENT', 'reason' in result ? result.reason : result.code);
    });
  }

  /**
   * Runs `run` on the range that holds `key` by this node's table; when the
   * range answers that the key is not its own (it split, or the table is
   * stale) or the range is gone, the table is refreshed and the key routed
   * again, until the deadline. `stale` reads refresh from this node's own
   * replicas only: they need no quorum, so they never wait on the meta range.
   */
  private async routed<T>(key: Uint8Array, deadline: Deadline, o: { stale: boolean }, run: (range: RangeDescriptor) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      this.checkOpen();
      const range = this.ranges.lookup(key);
      try {
        if (range === undefined) throw new StaleRouteError(`no known range holds key ${Buffer.from(key).toString('hex')}`);
        return await run(range);
      } catch (err) {
        // KEY_OUT_OF_RANGE: a replica (here or forwarded) says the key is not its range's any more.
        if (!(err instanceof StaleRouteError) && (err as { code?: string }).code !== 'KEY_OUT_OF_RANGE') throw err;
        await this.refresh(deadline, { fromMeta: !o.stale });
        await this.pause(deadline, retryDelayMs(attempt));
        if (deadline.expired) {
          throw new KvError('UNAVAILABLE', `no range reachable from node ${this.options.host.nodeId} holds key ${Buffer.from(key).toString('hex')} (${(err as Error).message})`, { retryAfterMs: RETRY_AFTER_MS });
        }
      }
    }
  }

  /**
   * Brings the range table up to date: this node's own replicas at once, and
   * with `fromMeta` the descriptors recorded in the meta range, then the
   * replicas again over them (fresher for the ranges held here; a newer
   * epoch evicts the stale descriptors it overlaps). Meta reads are
   * single-flight — a caller joins the one in flight, waiting no longer than
   * its own deadline — and start at most once per
   * META_REFRESH_INTERVAL_MS_MIN (a caller waits out the rest of it). They
   * are meta-range operations, which never refresh, so a refresh never
   * recurses. A refresh takes at most half of what is left of its request's
   * budget: the rest is the request's own, to ask the replicas it learned of
   * (or, with the meta range unreachable, the ones it knew). Throws only
   * CLOSED: a meta range that cannot answer leaves the table as it was.
   */
  private async refresh(request: Deadline, o: { fromMeta: boolean }): Promise<void> {
    const deadline = request.within(request.remainingMs() / 2);
    try {
      await this.refreshFromReplicas(deadline);
    } catch (err) {
      this.checkOpen();
      if (err instanceof KvError && err.code === 'CLOSED') throw err;
      return;
    }
    if (!o.fromMeta) return;
    if (this.metaRefresh === undefined) {
      await this.pause(deadline, this.metaRefreshStartMs + META_REFRESH_INTERVAL_MS_MIN - this.nowMs());
      if (deadline.expired) return;
      this.checkOpen();
    }
    await this.waitAtMost(deadline, this.metaRefresh ?? this.startMetaRefresh(deadline));
  }

  /** Starts the shared read of the descriptors (see refresh); the promise never rejects: a failed read changes nothing. */
  private startMetaRefresh(deadline: Deadline): Promise<void> {
    this.metaRefreshStartMs = this.nowMs();
    this.metaRefreshesStarted++;
    const read = this.refreshFromMeta(deadline)
      .catch(() => undefined)
      .finally(() => (this.metaRefresh = undefined));
    this.metaRefresh = read;
    return read;
  }

  private async refreshFromMeta(deadline: Deadline): Promise<void> {
    for (const value of await this.metaScan(RANGE_KEYS, deadline)) this.ranges.upsert(decodeRangeDescriptor(value));
    await this.refreshFromReplicas(deadline);
  }

  private async refreshFromReplicas(deadline: Deadline): Promise<void> {
    const shards = await this.hostCall(deadline, 'read the local replicas', () => this.options.host.shards()).catch((err: unknown) => {
      throw closedOr(err);
    });
    // A replica still waiting for its first snapshot (epoch 0) owns no keys yet.
    for (const s of shards) if (s.epoch > 0) this.ranges.upsert(descriptorOf(s));
  }

  /**
   * Runs `op` where its range is led — here, or forwarded to the node the
   * replicas name as leader — in rounds until the deadline (askRound), the
   * rounds backing off from RETRY_DELAY_MS_MIN to RETRY_DELAY_MS_MAX. When
   * nobody asked holds a replica that knows a leader (the range moved, or
   * every replica this table names is down: then nobody was asked), the
   * table is refreshed once;
   * the meta range never refreshes (its descriptor lives in it, and every
   * live peer is asked anyway), so reading meta cannot recurse into reading
   * meta. A write whose replica did not answer is not retried: it may have
   * been applied (TIMEOUT). Stale reads go to executeStale.
   */
  private async execute(op: RangeOp, deadline: Deadline): Promise<RangeOpResult> {
    if ((op.kind === 'get' || op.kind === 'scan') && op.consistency === 'stale') return this.executeStale(op, deadline);
    const host = this.options.host;
    let refreshed = op.rangeId === META_RANGE_ID;
    for (let round = 0; ; round++) {
      this.checkOpen();
      if (this.ranges.get(op.rangeId) === undefined && !host.hasShard(groupId(op.rangeId))) {
        // A range made since this node last read the meta range (a split elsewhere): the placement
        // driver names ranges by id, not by key, so nothing else would make this node look it up.
        if (!refreshed) {
          refreshed = true;
          await this.refresh(deadline, { fromMeta: true });
          continue;
        }
        throw new StaleRouteError(`range ${op.rangeId} has no known replica`);
      }
      const outcome = await this.askRound(op, deadline);
      if (outcome.answered) return outcome.result;
      if (!outcome.someoneHolds && !refreshed) {
        refreshed = true;
        await this.refresh(deadline, { fromMeta: true });
        continue;
      }
      await this.pause(deadline, retryDelayMs(round));
      if (deadline.expired) {
        // The range's leader is on a full disk and no other replica took over yet: say so, it is not a quorum problem.
        if (outcome.diskFull !== undefined) {
          throw new KvError('DISK_FULL', `range ${op.rangeId} is led on a node whose disk is full (${outcome.diskFull}); nothing was written`, { retryAfterMs: RETRY_AFTER_MS });
        }
        throw new KvError('UNAVAILABLE', `range ${op.rangeId} has no leader reachable from node ${host.nodeId} (${outcome.failure}); nothing was written`, { retryAfterMs: RETRY_AFTER_MS });
      }
    }
  }

  /**
   * One round of asking for `op`: the range's likely leader, then every
   * replica this node can reach (homeOf), each node at most once, a live
   * node named by a NOT_LEADER hint next. Peers the liveness tracker calls
   * down are never asked: a write sent to one times out with an unknown
   * outcome. Throws what is not worth another try.
   */
  private async askRound(op: RangeOp, deadline: Deadline): Promise<RoundOutcome> {
    const live = this.liveNodes();
    const home = this.homeOf(op.rangeId, live);
    const likely = this.likelyLeader(op.rangeId, live);
    const queue = likely === undefined ? [...home] : [likely, ...home];
    const asked = new Set<number>();
    let someoneHolds = false;
    let failure = home.length === 0 ? `its replicas, on nodes ${(this.ranges.get(op.rangeId)?.replicas ?? []).join(', ')}, are down` : 'nobody asked';
    /** The last node that refused for want of disk space, if any did this round. */
    let diskFull: string | undefined;
    for (let target = queue.shift(); target !== undefined; target = queue.shift()) {
      if (asked.has(target)) continue;
      asked.add(target);
      try {
        const result = await this.runOn(target, op, deadline);
        this.leaderHints.set(op.rangeId, target);
        return { answered: true, result };
      } catch (err) {
        const e = this.retryableFailure(op, target, err);
        const hint = e.code === 'NOT_LEADER' ? (e.leaderHint ?? 0) : 0;
        if (hint !== 0) this.leaderHints.set(op.rangeId, hint);
        else this.leaderHints.delete(op.rangeId);
        if (e.code !== 'SHARD_NOT_FOUND' && !(e.code === 'NOT_LEADER' && hint === 0)) someoneHolds = true;
        failure = `node ${target}: ${e.code}`;
        if (e.code === 'DISK_FULL') diskFull = failure;
        if (hint !== 0 && !asked.has(hint) && live.has(hint)) queue.unshift(hint);
      }
    }
    return { answered: false, someoneHolds, failure, ...(diskFull === undefined ? {} : { diskFull }) };
  }

  /**
   * A stale read: this node's replica answers at once if it has one — no
   * leader, no quorum, no meta read. Otherwise (or if that replica no longer
   * holds the key: it split, or it is an empty replica being added) each live
   * node the table names as a replica is asked once, within the deadline.
   */
  private async executeStale(op: Extract<RangeOp, { kind: 'get' | 'scan' }>, deadline: Deadline): Promise<RangeOpResult> {
    const host = this.options.host;
    const live = this.liveNodes();
    const replicas = this.ranges.get(op.rangeId)?.replicas ?? [];
    const targets = [...(host.hasShard(groupId(op.rangeId)) ? [host.nodeId] : []), ...replicas.filter((n) => n !== host.nodeId && live.has(n))];
    if (targets.length === 0) {
      if (replicas.length === 0) throw new StaleRouteError(`range ${op.rangeId} has no known replica`);
      throw new KvError('UNAVAILABLE', `range ${op.rangeId} has no replica on node ${host.nodeId}, and its replicas, on nodes ${replicas.join(', ')}, are down`, { retryAfterMs: RETRY_AFTER_MS });
    }
    let outOfRange: unknown;
    let failure = '';
    for (const target of targets) {
      try {
        return await this.runOn(target, op, deadline);
      } catch (err) {
        if ((err as { code?: string }).code === 'KEY_OUT_OF_RANGE') {
          outOfRange = err;
          continue;
        }
        failure = `node ${target}: ${this.retryableFailure(op, target, err).code}`;
      }
    }
    // Every replica asked says the key is not its range's: the router looks the key up again.
    if (outOfRange !== undefined && failure === '') throw outOfRange;
    throw new KvError('UNAVAILABLE', `no replica of range ${op.rangeId} answered a stale read (${failure})`, { retryAfterMs: RETRY_AFTER_MS });
  }

  /** Runs `op` on one node's replica: here, or forwarded; given up at the deadline. */
  private runOn(target: number, op: RangeOp, deadline: Deadline): Promise<RangeOpResult> {
    const host = this.options.host;
    return this.hostCall(deadline, `range ${op.rangeId} on node ${target}`, async () =>
      target === host.nodeId ? runLocally(host, op, this.placement) : decodeRangeOpResult(op, await host.forward(target, encodeRangeOp(op))),
    );
  }

  /**
   * What one failed attempt means: thrown at once when another try cannot
   * help (as the KvError the caller gets; KEY_OUT_OF_RANGE as it is, for the
   * router), else returned with its code for the next try.
   */
  private retryableFailure(op: RangeOp, target: number, err: unknown): { code: string; leaderHint?: number } {
    const e = err as { code?: string; leaderHint?: number; message?: string };
    const isWrite = op.kind === 'put' || op.kind === 'delete' || op.kind === 'split' || op.kind === 'membership';
    if (err instanceof DeadlineExceededError) {
      if (isWrite && err.handedOver) throw new KvError('TIMEOUT', `range ${op.rangeId}: node ${target} did not answer the ${op.kind} by its deadline; the write's outcome is unknown`, { retryAfterMs: RETRY_AFTER_MS });
      throw err;
    }
    if (e.code === 'REQUEST_TIMEOUT' && isWrite) {
      throw new KvError('TIMEOUT', `range ${op.rangeId}: node ${target} did not answer the ${op.kind} in time; the write's outcome is unknown`, { retryAfterMs: RETRY_AFTER_MS });
    }
    if (e.code === 'HOST_CLOSED' || e.code === 'CORE_CRASHED') throw closedOr(err);
    if (e.code === 'COMMAND_INVALID') throw new KvError('INVALID_ARGUMENT', e.message ?? 'invalid command');
    if (e.code === undefined || !RETRYABLE_CODES.has(e.code)) throw err;
    return e as { code: string; leaderHint?: number };
  }

  /** Sleeps `ms`, cut short by the deadline. */
  private async pause(deadline: Deadline, ms: number): Promise<void> {
    const sleepMs = Math.min(ms, deadline.remainingMs());
    if (sleepMs > 0) await sleep(this.clock, sleepMs);
  }

  /** Waits for `work` until the deadline at the latest; `work` never rejects (refresh's shared read). */
  private async waitAtMost(deadline: Deadline, work: Promise<void>): Promise<void> {
    let timer: Timer | undefined;
    try {
      await Promise.race([work, new Promise<void>((resolve) => (timer = this.clock.setTimer(deadline.remainingMs(), resolve)))]);
    } finally {
      timer?.cancel();
    }
  }

  /** This node and every peer the liveness tracker calls up. */
  private liveNodes(): Set<number> {
    const host = this.options.host;
    return new Set([host.nodeId, ...host.livePeers()]);
  }

  /**
   * Where to run an operation on a range: the local replica first (but not
   * alone: an empty one, being added, knows no leader), then the range's
   * replicas on live nodes. The meta range moves like any other, and its own
   * descriptor lives in it: so every live peer is asked too (a replica
   * answers with a leader hint, anyone else with SHARD_NOT_FOUND).
   */
  private homeOf(rangeId: number, live: ReadonlySet<number>): number[] {
    const host = this.options.host;
    const replicas = (this.ranges.get(rangeId)?.replicas ?? []).filter((n) => n !== host.nodeId && live.has(n));
    const others = rangeId === META_RANGE_ID ? [...new Set([...replicas, ...[...live].filter((n) => n !== host.nodeId)])] : replicas;
    return host.hasShard(groupId(rangeId)) ? [host.nodeId, ...others] : others;
  }

  /**
   * Where the range is most likely led: what this node's replica last heard, else the last node seen
   * leading it — if that node is this one or a live peer. Undefined: start with homeOf's order.
   */
  private likelyLeader(rangeId: number, live: ReadonlySet<number>): number | undefined {
    const leader = this.options.host.leaderOf(groupId(rangeId)) || this.leaderHints.get(rangeId);
    return leader !== undefined && leader !== 0 && live.has(leader) ? leader : undefined;
  }

  private checkOpen(): void {
    if (this.closed) throw new KvError('CLOSED', 'the store is closed');
  }
}

/** The pause before retry `attempt` (0-based): doubling from RETRY_DELAY_MS_MIN, capped at RETRY_DELAY_MS_MAX. */
function retryDelayMs(attempt: number): number {
  return Math.min(RETRY_DELAY_MS_MAX, RETRY_DELAY_MS_MIN * 2 ** Math.min(attempt, 16));
}

/** A Host error that means this node is shutting down, as CLOSED; anything else as it is. */
function closedOr(err: unknown): unknown {
  const code = (err as { code?: string }).code;
  if (code === 'HOST_CLOSED' || code === 'CORE_CRASHED') return new KvError('CLOSED', `the store is closed (${(err as Error).message})`);
  return err;
}

/**
 * A Host call not made, or given up, at its request's deadline: UNAVAILABLE;
 * a write that was handed over (`handedOver`) becomes TIMEOUT (outcome unknown).
 */
class DeadlineExceededError extends KvError {
  readonly handedOver: boolean;
  constructor(what: string, o: { handedOver: boolean }) {
    super('UNAVAILABLE', `${what}: no answer by the request's deadline`, { retryAfterMs: RETRY_AFTER_MS });
    this.handedOver = o.handedOver;
  }
}

/** The routing table's view of a replica here: its range, epoch and voters (sorted). */
export function descriptorOf(s: ShardStatus): RangeDescriptor {
  return { rangeId: s.shardId, start: s.start, end: s.end, epoch: s.epoch, replicas: [...s.voters].sort((a, b) => a - b) };
}

/** This node's table sent the request to a range that does not hold the key (or to none): refresh and route again. */
class StaleRouteError extends Error {}

function checkUserKey(key: Uint8Array): void {
  if (key.byteLength === 0) throw new KvError('INVALID_ARGUMENT', 'key is empty');
  if (isSystemKey(key)) throw new KvError('INVALID_ARGUMENT', `key ${Buffer.from(key).toString('hex')} is reserved: keys below 0x0001 (0x00 and 0x0000…) hold the cluster's metadata`);
  if (key.byteLength > KEY_BYTES_MAX) throw new KvError('KEY_TOO_LARGE', `key of ${key.byteLength} B exceeds ${KEY_BYTES_MAX} B`);
}

function checkIfVersion(v: number | undefined): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new KvError('INVALID_ARGUMENT', `ifVersion ${v} is not a non-negative integer`);
}

export function encodeCursor(next: Uint8Array): string {
  return CURSOR_PREFIX + Buffer.from(next).toString('base64url');
}

export function decodeCursor(cursor: string): Uint8Array {
  if (!cursor.startsWith(CURSOR_PREFIX) || !/^[A-Za-z0-9_-]+$/.test(cursor.slice(CURSOR_PREFIX.length))) {
    throw new KvError('INVALID_ARGUMENT', 'scan cursor is malformed (pass back the cursor of the previous page unchanged)');
  }
  const key = Buffer.from(cursor.slice(CURSOR_PREFIX.length), 'base64url');
  if (key.byteLength === 0 || key.byteLength > KEY_BYTES_MAX + 1) throw new KvError('INVALID_ARGUMENT', 'scan cursor is malformed');
  return key;
}
