import { AssertionError, assert, type Clock } from '@flotilla/core';
import {
  FIRST_ALLOCATED_RANGE_ID,
  KEYED_ID_MAX,
  META_RANGE_ID,
  NODE_KEYS,
  PLACEMENT_SETTINGS_KEY,
  RANGE_ID_ALLOCATOR_KEY,
  RANGE_END_KEYS,
  RANGE_KEYS,
  decodeCounter,
  decodeNodeRecord,
  decodePlacementSettings,
  decodeRangeDescriptor,
  decodeRangeEndEntry,
  encodeCounter,
  encodeNodeRecord,
  encodePlacementSettings,
  encodeRangeDescriptor,
  encodeRangeEndEntry,
  nodeKey,
  rangeEndKey,
  rangeEndKeyAfter,
  rangeKey,
  type NodeRecord,
  type PlacementSettings,
  type RangeDescriptor,
  type RangeTable,
} from '@flotilla/placement';
import { ATOMIC_BATCH_BYTES_MAX, ATOMIC_BATCH_OPS_MAX, KEY_BYTES_MAX, type KvResult, type ShardStatus, type ShardViewChanges } from '@flotilla/shards';
import { closedOr, type HostCalls } from './host-calls.js';
import { RangeLookups, isIndexable } from './range-lookup.js';
import type { BatchWrite, RangeOp, RangeOpResult } from './range-ops.js';
import type { MetaRead } from './route-target.js';
import { KvError, REQUEST_DEADLINE_MS_DEFAULT, RETRY_AFTER_MS, SCAN_LIMIT_MAX, type Deadline, type VersionedValue } from './store.js';

/**
 * Least time between the starts of two reads of the descriptors from the
 * meta range. Every request routed to a stale or dead range asks for one;
 * one read in flight serves them all, and this keeps a node whose meta range
 * has no leader from re-reading it back to back. A quarter second: a route
 * that changed (a split, a move) is learned well within one request's budget.
 */
const META_REFRESH_INTERVAL_MS_MIN = 250;
/** Compare-and-set rounds on one meta key before giving up (only contention loses one). */
const CAS_RETRIES_MAX = 16;
/** Range ids a node takes from the allocator at once (allocateRangeId). */
const RANGE_ID_BLOCK = 64;
/** Stale descriptors one sweep deletes at most (one atomic batch; the next sweep takes the rest). */
const SWEEP_DELETES_MAX = 256;
/** Descriptors reportDescriptors records at once: the meta range's leader takes a turn's writes in one entry. */
const DESCRIPTOR_WRITES_IN_FLIGHT_MAX = 32;
/**
 * Stale range end entries inside a range's span that one recording deletes
 * at most (range-lookup.ts, rule W2). Only a merge leaves any, one per range
 * it took in since the range was last recorded; one left over costs a
 * lookup its fallback, never a wrong route.
 */
const INSIDE_ENTRIES_DELETED_MAX = 16;

assert(INSIDE_ENTRIES_DELETED_MAX + 2 <= ATOMIC_BATCH_OPS_MAX, 'a recording (descriptor, end entry, deletions) must fit one atomic batch');
assert((INSIDE_ENTRIES_DELETED_MAX + 2) * (KEY_BYTES_MAX + 64) + 4096 <= ATOMIC_BATCH_BYTES_MAX, 'a recording must fit one atomic batch in bytes');

assert(META_REFRESH_INTERVAL_MS_MIN < REQUEST_DEADLINE_MS_DEFAULT, 'a request must be able to wait out the refresh interval within its default budget');

export interface MetaClientOptions {
  /** The routing table refresh brings up to date. */
  readonly ranges: RangeTable;
  readonly calls: HostCalls;
  /** What refresh intervals and the age of cachedNodes run on. */
  readonly clock: Clock;
  /**
   * Runs one op on the meta range's leader (Router.execute). Meta-range ops
   * never refresh the table, so a refresh, which runs them, never recurses.
   */
  readonly run: (op: RangeOp, deadline: Deadline) => Promise<RangeOpResult>;
  /** This node's replicas changed since `cursor` (Host.shardChanges), given up at the deadline. */
  readonly localReplicaChanges: (cursor: number, deadline: Deadline) => Promise<ShardViewChanges>;
  /** Throws CLOSED once the store is closed. */
  readonly checkOpen: () => void;
}

/**
 * What this node reads from and writes to the meta range: the range
 * descriptors (into the routing table: refresh), the node records, the
 * placement settings and the range id allocator. Every call runs under its
 * caller's deadline; writes are compare-and-sets retried on lost races.
 */
export class MetaClient {
  /** The read of the meta range's descriptors in flight, shared by every refresh meanwhile; it never rejects. */
  private refreshInFlight: Promise<void> | undefined;
  private refreshStartMs = Number.NEGATIVE_INFINITY;
  private refreshCount = 0;
  /** What reportDescriptors last recorded per range ("epoch/replicas"). */
  private readonly reported = new Map<number, string>();
  /** Where reportDescriptors left off in the node's view of its replicas, and the led ones it has still to record. */
  private reportCursor = 0;
  /** Routing misses looked up in the meta range's end index (range-lookup.ts). */
  private readonly lookups: RangeLookups;
  /** Reads of one range's descriptor in flight, by range id (readRange), and how many started. */
  private readonly rangeReads = new Map<number, Promise<void>>();
  private rangeReadCount = 0;
  /** Where refreshFromReplicas left off in the node's view of its replicas. */
  private routeCursor = 0;
  /** Range ids this node took from the allocator and has not used yet: [next, end). */
  private idBlock = { next: 0, end: 0 };
  private idBlockRead: Promise<void> | undefined;
  private readonly toReport = new Map<number, ShardStatus>();
  /** The node records the last successful nodes() read returned, and when: what /cluster lists without a quorum. */
  private nodesRead: { readonly nodes: readonly NodeRecord[]; readonly atMs: number } | undefined;

  constructor(private readonly o: MetaClientOptions) {
    this.lookups = new RangeLookups({ ranges: o.ranges, calls: o.calls, run: o.run, readAll: (deadline) => this.readAll(deadline) });
  }

  /** 0 or 1: every caller shares the one read of the meta range in flight. */
  get refreshesInFlight(): number {
    return this.refreshInFlight === undefined ? 0 : 1;
  }

  /** Reads of every descriptor from the meta range started so far (at most one per META_REFRESH_INTERVAL_MS_MIN). */
  get refreshesStarted(): number {
    return this.refreshCount;
  }

  /**
   * Routing misses looked up so far: by key in the range end index (one
   * bounded read, then at most one descriptor read), or by range id (one
   * descriptor read).
   */
  get lookupsStarted(): number {
    return this.lookups.lookupsStarted + this.rangeReadCount;
  }

  /** Rounds of lookups that fell back to reading every descriptor (no agreeing entry, or the route that had just failed). */
  get lookupFallbacks(): number {
    return this.lookups.fallbacks;
  }

  /**
   * Brings the range table up to date: this node's own replicas at once,
   * then what `read` asks of the meta range — the range of a routing miss,
   * found in the range end index (range-lookup.ts: one bounded read and one
   * descriptor, concurrent misses in one range sharing one lookup); one
   * range's descriptor by id (concurrent reads of one id sharing one); or
   * every descriptor — then the replicas again over what it found (fresher
   * for the ranges held here; a newer epoch evicts the stale descriptors it
   * overlaps). Reads of every descriptor are single-flight — a caller joins
   * the one in flight, waiting no longer than its own deadline — and start
   * at most once per META_REFRESH_INTERVAL_MS_MIN (a caller waits out the
   * rest of it). They are meta-range operations, which never refresh, so a
   * refresh never recurses. A refresh takes at most half of what is left of
   * its request's budget: the rest is the request's own, to ask the replicas
   * it learned of (or, with the meta range unreachable, the ones it knew).
   * Throws only CLOSED: a meta range that cannot answer leaves the table as
   * it was.
   */
  async refresh(request: Deadline, read: MetaRead): Promise<void> {
    const deadline = request.within(request.remainingMs() / 2);
    try {
      await this.refreshFromReplicas(deadline);
    } catch (err) {
      this.o.checkOpen();
      if (err instanceof KvError && err.code === 'CLOSED') throw err;
      return;
    }
    switch (read.kind) {
      case 'none':
        return;
      case 'miss':
        await this.lookups.lookUp(read.miss, deadline);
        break;
      case 'range':
        await this.readRange(read.rangeId, deadline);
        break;
      case 'all':
        await this.readAll(deadline);
        break;
      default:
        return unreachable(read);
    }
    this.o.checkOpen();
    await this.refreshFromReplicas(deadline).catch(() => undefined);
  }

  /** Range `rangeId`'s descriptor into the table: one read, shared by every caller meanwhile. Never rejects. */
  private readRange(rangeId: number, deadline: Deadline): Promise<void> {
    // An id no key can hold names no recorded range: nothing to read.
    if (!Number.isSafeInteger(rangeId) || rangeId < 1 || rangeId > KEYED_ID_MAX) return Promise.resolve();
    let read = this.rangeReads.get(rangeId);
    if (read === undefined) {
      this.rangeReadCount++;
      read = this.get(rangeKey(rangeId), deadline)
        .then(async (stored) => {
          if (stored !== undefined) return void this.o.ranges.upsert(decodeRangeDescriptor(stored.value));
          // No descriptor: the range was merged into a neighbour (its descriptor deleted), or is too new to be
          // recorded. Whatever holds its first key now says which, and replaces it in the table if it is gone.
          const held = this.o.ranges.get(rangeId);
          if (held !== undefined) await this.lookups.lookUp({ target: { kind: 'key', key: held.start }, failed: held }, deadline);
        })
        .catch(() => undefined)
        .finally(() => this.rangeReads.delete(rangeId));
      // Bounded by the callers' concurrency: each request reads at most one range at a time.
      this.rangeReads.set(rangeId, read);
    }
    return this.o.calls.waitAtMost(deadline, read);
  }

  /** Every descriptor into the table: the read in flight, or a new one once META_REFRESH_INTERVAL_MS_MIN passed. Never rejects. */
  private async readAll(deadline: Deadline): Promise<void> {
    if (this.refreshInFlight === undefined) {
      await this.o.calls.pause(deadline, this.refreshStartMs + META_REFRESH_INTERVAL_MS_MIN - this.o.clock.nowMs());
      if (deadline.expired) return;
    }
    await this.o.calls.waitAtMost(deadline, this.refreshInFlight ?? this.startRefresh(deadline));
  }

  /** Every range descriptor recorded in the meta range, in range id order (linearizable). */
  async rangeDescriptors(deadline: Deadline): Promise<RangeDescriptor[]> {
    return (await this.scan(RANGE_KEYS, deadline)).map((value) => decodeRangeDescriptor(value));
  }

  /**
   * Records in the meta range the descriptor of every range this node leads
   * whose epoch or replicas moved since this node last recorded it (the
   * first call records them all), with its range end index entry
   * (recordDescriptor): a descriptor is never moved to a lower epoch, so
   * reporters racing each other, or a stale leader, never move meta
   * backwards. Returns how many ranges it wrote for. TiKV's region
   * heartbeats to PD, pulled by the node's own timer.
   */
  async reportDescriptors(deadline: Deadline): Promise<number> {
    // Only replicas changed since the last call are looked at: a node with many quiet ranges reads a few.
    const changes = await this.o.localReplicaChanges(this.reportCursor, deadline);
    this.reportCursor = changes.cursor;
    if (changes.full) this.toReport.clear();
    for (const shardId of changes.removed) this.toReport.delete(shardId);
    for (const { status: s } of changes.changed) {
      // A frozen range is merged away or unfrozen soon: it serves nothing meanwhile, and its descriptor
      // recorded late would bring back one the merge deleted (recordingOps).
      if (s.role === 'leader' && s.frozen === undefined && this.reported.get(s.shardId) !== fingerprintOf(s)) this.toReport.set(s.shardId, s);
      else this.toReport.delete(s.shardId);
    }
    let written = 0;
    // Several at a time (each two reads and one conditional batch): a node that split or moved many ranges
    // records them in a few meta rounds, not one round trip each. A write that fails throws once the
    // others settle, with what is left still to record: the next call tries it again.
    const record = async (shardId: number, s: ShardStatus): Promise<void> => {
      if (await this.recordDescriptor(descriptorOf(s), deadline)) written++;
      this.reported.set(shardId, fingerprintOf(s));
      // Only if no newer status replaced it meanwhile.
      if (this.toReport.get(shardId) === s) this.toReport.delete(shardId);
    };
    const pending = [...this.toReport];
    const workers = Array.from({ length: Math.min(DESCRIPTOR_WRITES_IN_FLIGHT_MAX, pending.length) }, async () => {
      for (let next = pending.shift(); next !== undefined; next = pending.shift()) await record(...next);
    });
    const failed = (await Promise.allSettled(workers)).find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    return written;
  }

  /**
   * Records `local`, a range's descriptor as its leader holds it, and its
   * range end index entry: reads the stored descriptor and the index
   * entries over its span, then writes what recordingOps decides in one
   * atomic batch, each write conditional on the version read (retried on a
   * lost race). One batch, so no crash leaves the descriptor written and its
   * entry not (range-lookup.ts, rule W1, says why that matters). A node
   * restarted on a data dir from before the index records every range it
   * leads on its first call: that fills the index in. Resolves to whether it
   * wrote anything.
   */
  private async recordDescriptor(local: RangeDescriptor, deadline: Deadline): Promise<boolean> {
    const what = `record range ${local.rangeId}`;
    for (let attempt = 0; attempt < CAS_RETRIES_MAX; attempt++) {
      const [stored, index] = await Promise.all([this.get(rangeKey(local.rangeId), deadline), isIndexable(local) ? this.indexOver(local, deadline) : undefined]);
      // No descriptor recorded: a new range (a split's right half), or one a merge took in and deleted. If
      // another range's descriptor holds this one's first key at a higher epoch, it is the latter: the
      // epochs of a key's holders only grow (a split's halves and a merge go past their parents), so this
      // leader is behind, and recording would bring back what the merge deleted. (The index only points at
      // the candidate: its descriptor decides.) Only here, so a recorded range's updates cost no more reads.
      if (stored === undefined && (await this.heldByFresher(local, deadline))) return false;
      // Ranges the index names inside this one's span or at its end, at a lower epoch: taken in by a merge,
      // their descriptors are read so recordingOps can delete those this range now covers.
      const candidates = index === undefined ? [] : mergedCandidates(local, index);
      const covered = await Promise.all(candidates.map(async (rangeId) => ({ rangeId, stored: await this.get(rangeKey(rangeId), deadline) })));
      const ops = recordingOps(local, stored, index, covered);
      if (ops.length === 0) return false;
      const result = (await this.o.run({ kind: 'atomicBatch', rangeId: META_RANGE_ID, ops }, deadline)) as KvResult;
      if (result.ok) return true;
      if (result.code !== 'VERSION_MISMATCH') throw new KvError('UNAVAILABLE', `the meta range refused to ${what}: ${result.code}`, { retryAfterMs: RETRY_AFTER_MS });
    }
    throw new KvError('UNAVAILABLE', `could not ${what} in ${CAS_RETRIES_MAX} tries (contention)`, { retryAfterMs: RETRY_AFTER_MS });
  }

  /** Whether another range's recorded descriptor holds `local`'s first key at a higher epoch (found through the index's first entry ending past it). */
  private async heldByFresher(local: RangeDescriptor, deadline: Deadline): Promise<boolean> {
    const page = (await this.o.run({ kind: 'scan', rangeId: META_RANGE_ID, start: rangeEndKeyAfter(local.start), end: RANGE_END_KEYS.end, limit: 1, consistency: 'linearizable' }, deadline)) as IndexEntryRead[];
    const owner = page[0] === undefined ? undefined : entryOf(page[0]);
    if (owner === undefined || owner.rangeId === 0 || owner.rangeId === local.rangeId || owner.epoch <= local.epoch) return false;
    const held = await this.get(rangeKey(owner.rangeId), deadline);
    const d = held === undefined ? undefined : decodeRangeDescriptor(held.value);
    return d !== undefined && d.epoch > local.epoch && keyInside(d, local.start);
  }

  /**
   * The range end index over `d`'s span: the entry at its end, and up to
   * INSIDE_ENTRIES_DELETED_MAX entries strictly inside it (highest first),
   * in one reverse scan from the end entry down to just past the start's.
   */
  private async indexOver(d: RangeDescriptor, deadline: Deadline): Promise<IndexOverSpan> {
    const endKey = rangeEndKey(d.end);
    const page = (await this.o.run(
      { kind: 'scan', rangeId: META_RANGE_ID, start: rangeEndKeyAfter(d.start), end: Buffer.concat([endKey, Buffer.of(0)]), limit: INSIDE_ENTRIES_DELETED_MAX + 1, consistency: 'linearizable', reverse: true },
      deadline,
    )) as IndexEntryRead[];
    const atEnd = page[0] !== undefined && Buffer.compare(page[0].key, endKey) === 0 ? page[0] : undefined;
    return { atEnd, inside: (atEnd === undefined ? page : page.slice(1)).slice(0, INSIDE_ENTRIES_DELETED_MAX) };
  }

  /**
   * A fresh range id. Ids come from the allocator key a block at a time (a
   * compare-and-set, retried on a lost race), as PD's id allocator hands
   * them out: a node splitting many ranges reads and writes the meta range
   * once per RANGE_ID_BLOCK splits, not twice per split. Ids a node took and
   * had not used when it stopped are never used: they need only be unique.
   * Ids below FIRST_ALLOCATED_RANGE_ID belong to the bootstrap ranges.
   */
  async allocateRangeId(deadline: Deadline): Promise<number> {
    for (;;) {
      if (this.idBlock.next < this.idBlock.end) return this.idBlock.next++;
      this.idBlockRead ??= this.takeIdBlock(deadline).finally(() => (this.idBlockRead = undefined));
      await this.idBlockRead;
    }
  }

  /** The next RANGE_ID_BLOCK ids from the allocator, for this node's splits to take one at a time. */
  private async takeIdBlock(deadline: Deadline): Promise<void> {
    let next = FIRST_ALLOCATED_RANGE_ID;
    await this.compareAndSet(RANGE_ID_ALLOCATOR_KEY, 'allocate range ids', deadline, (stored) => {
      next = stored === undefined ? FIRST_ALLOCATED_RANGE_ID : decodeCounter(stored.value);
      return encodeCounter(next + RANGE_ID_BLOCK);
    });
    this.idBlock = { next, end: next + RANGE_ID_BLOCK };
  }

  /** Every node recorded, in node id order (linearizable); remembered for cachedNodes. */
  async nodes(deadline: Deadline): Promise<NodeRecord[]> {
    const nodes = (await this.scan(NODE_KEYS, deadline)).map((value) => decodeNodeRecord(value));
    this.nodesRead = { nodes, atMs: this.o.clock.nowMs() };
    return nodes;
  }

  /** The node records the last successful nodes() read returned and how old that read is; undefined before the first. No quorum needed. */
  cachedNodes(): { readonly nodes: readonly NodeRecord[]; readonly ageMs: number } | undefined {
    const read = this.nodesRead;
    return read === undefined ? undefined : { nodes: read.nodes, ageMs: this.o.clock.nowMs() - read.atMs };
  }

  /** One node's record (one read, not a scan); undefined if it was never recorded. */
  async node(nodeId: number, deadline: Deadline): Promise<NodeRecord | undefined> {
    const stored = await this.get(nodeKey(nodeId), deadline);
    return stored === undefined ? undefined : decodeNodeRecord(stored.value);
  }

  /**
   * Records a node: a compare-and-set that refuses a node id recorded with
   * another transport address (two processes claiming one id would split its
   * replicas' identity). Writes only when it changed.
   */
  async recordNode(record: NodeRecord, deadline: Deadline): Promise<void> {
    await this.compareAndSet(nodeKey(record.nodeId), `record node ${record.nodeId}`, deadline, (stored) => {
      const current = stored === undefined ? undefined : decodeNodeRecord(stored.value);
      if (current !== undefined && current.address !== record.address) {
        throw new KvError('PRECONDITION_FAILED', `node ${record.nodeId} is recorded at ${current.address}, not ${record.address}`, { currentVersion: stored!.version });
      }
      // The state is the operator's (decommissioning): a node recording its addresses keeps it.
      if (current !== undefined && current.httpAddress === record.httpAddress) return undefined;
      return encodeNodeRecord(current === undefined ? record : { ...record, state: current.state });
    });
  }

  /** Sets a recorded node's administrative state (decommissioning); NOT_FOUND for a node never recorded. */
  async setNodeState(nodeId: number, state: NodeRecord['state'], deadline: Deadline): Promise<NodeRecord> {
    let updated: NodeRecord | undefined;
    await this.compareAndSet(nodeKey(nodeId), `set node ${nodeId} ${state}`, deadline, (stored) => {
      if (stored === undefined) throw new KvError('NOT_FOUND', `node ${nodeId} is not recorded in the meta range`);
      const current = decodeNodeRecord(stored.value);
      updated = { ...current, state };
      return current.state === state ? undefined : encodeNodeRecord(updated);
    });
    return updated!;
  }

  /** The placement driver's settings as the meta range holds them (defaults until first set). */
  async placementSettings(defaults: PlacementSettings, deadline: Deadline): Promise<PlacementSettings> {
    const stored = await this.get(PLACEMENT_SETTINGS_KEY, deadline);
    return stored === undefined ? defaults : decodePlacementSettings(stored.value);
  }

  async updatePlacementSettings(defaults: PlacementSettings, change: Partial<PlacementSettings>, deadline: Deadline): Promise<PlacementSettings> {
    let next: PlacementSettings = defaults;
    await this.compareAndSet(PLACEMENT_SETTINGS_KEY, 'update the placement settings', deadline, (stored) => {
      next = { ...(stored === undefined ? defaults : decodePlacementSettings(stored.value)), ...change };
      return encodePlacementSettings(next);
    });
    return next;
  }

  /** Starts the shared read of the descriptors (see refresh); the promise never rejects: a failed read changes nothing. */
  private startRefresh(deadline: Deadline): Promise<void> {
    this.refreshStartMs = this.o.clock.nowMs();
    this.refreshCount++;
    const read = this.refreshFromMeta(deadline)
      .catch(() => undefined)
      .finally(() => (this.refreshInFlight = undefined));
    this.refreshInFlight = read;
    return read;
  }

  private async refreshFromMeta(deadline: Deadline): Promise<void> {
    this.o.ranges.upsertMany((await this.scan(RANGE_KEYS, deadline)).map((value) => decodeRangeDescriptor(value)));
    await this.refreshFromReplicas(deadline);
  }

  /** The replicas changed here since the last call (all at first): the table takes the descriptors they hold. */
  private async refreshFromReplicas(deadline: Deadline): Promise<void> {
    const changes = await this.o.localReplicaChanges(this.routeCursor, deadline).catch((err: unknown) => {
      throw closedOr(err);
    });
    // Callers at once read from the same cursor; what each takes in is current, so the latest cursor stands.
    this.routeCursor = Math.max(this.routeCursor, changes.cursor);
    // A replica still waiting for its first snapshot (epoch 0) owns no keys yet.
    for (const { status: s } of changes.changed) if (s.epoch > 0) this.o.ranges.upsert(descriptorOf(s));
  }

  private async get(key: Uint8Array, deadline: Deadline): Promise<VersionedValue | undefined> {
    return (await this.o.run({ kind: 'get', rangeId: META_RANGE_ID, key, consistency: 'linearizable' }, deadline)) as VersionedValue | undefined;
  }

  /**
   * One compare-and-set on a meta range key, retried while it loses races:
   * `decide` sees the stored value (undefined when absent) and returns what
   * to write, or undefined to leave it as it is. Resolves to whether it wrote.
   */
  private async compareAndSet(key: Uint8Array, what: string, deadline: Deadline, decide: (stored: VersionedValue | undefined) => Uint8Array | undefined): Promise<boolean> {
    for (let attempt = 0; attempt < CAS_RETRIES_MAX; attempt++) {
      const stored = await this.get(key, deadline);
      const value = decide(stored);
      if (value === undefined) return false;
      const result = (await this.o.run({ kind: 'put', rangeId: META_RANGE_ID, key, value, ifVersion: stored?.version ?? 0 }, deadline)) as KvResult;
      if (result.ok) return true;
      if (result.code !== 'VERSION_MISMATCH') throw new KvError('UNAVAILABLE', `the meta range refused to ${what}: ${result.code}`, { retryAfterMs: RETRY_AFTER_MS });
    }
    throw new KvError('UNAVAILABLE', `could not ${what} in ${CAS_RETRIES_MAX} tries (contention)`, { retryAfterMs: RETRY_AFTER_MS });
  }

  /** Every value under `span`, page after page (linearizable). */
  private async scan(span: { start: Uint8Array; end: Uint8Array }, deadline: Deadline): Promise<Uint8Array[]> {
    return (await this.scanVersioned(span, deadline)).map((p) => p.value);
  }

  private async scanVersioned(span: { start: Uint8Array; end: Uint8Array }, deadline: Deadline): Promise<IndexEntryRead[]> {
    const out: IndexEntryRead[] = [];
    let start = span.start;
    for (;;) {
      const page = (await this.o.run({ kind: 'scan', rangeId: META_RANGE_ID, start, end: span.end, limit: SCAN_LIMIT_MAX, consistency: 'linearizable' }, deadline)) as IndexEntryRead[];
      out.push(...page);
      if (page.length < SCAN_LIMIT_MAX) return out;
      start = Buffer.concat([page[page.length - 1]!.key, Buffer.of(0)]);
    }
  }

  /**
   * Deletes every recorded descriptor that another one overlaps at a higher
   * epoch: the stale one's range split or was merged away since, and the
   * recording that should have deleted it (a merge's target, through the
   * range end index) missed it. Each delete is conditional on the version
   * read. Reads every descriptor: the placement driver runs it rarely
   * (SWEEP_INTERVAL in placement-service.ts). Resolves to how many went.
   */
  async sweepStaleDescriptors(deadline: Deadline): Promise<number> {
    const all = (await this.scanVersioned(RANGE_KEYS, deadline)).flatMap((read) => {
      try {
        return [{ read, d: decodeRangeDescriptor(read.value) }];
      } catch {
        return [];
      }
    });
    all.sort((a, b) => Buffer.compare(a.d.start, b.d.start));
    const stale = new Set<IndexEntryRead>();
    // Sorted by start, a descriptor can only overlap those after it that start before it ends.
    for (let i = 0; i < all.length; i++) {
      const a = all[i]!;
      for (let j = i + 1; j < all.length && (a.d.end === null || Buffer.compare(all[j]!.d.start, a.d.end) < 0); j++) {
        const b = all[j]!;
        if (a.d.epoch < b.d.epoch) stale.add(a.read);
        else if (b.d.epoch < a.d.epoch) stale.add(b.read);
      }
    }
    const ops: BatchWrite[] = [...stale].slice(0, SWEEP_DELETES_MAX).map((read) => ({ op: 'delete', key: read.key, ifVersion: read.version }));
    if (ops.length === 0) return 0;
    const result = (await this.o.run({ kind: 'atomicBatch', rangeId: META_RANGE_ID, ops }, deadline)) as KvResult;
    return result.ok ? ops.length : 0;
  }
}

/** One range end index entry as read: its key, value and version. */
interface IndexEntryRead {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly version: number;
}

/** The range end index over a range's span (MetaClient.indexOver). */
export interface IndexOverSpan {
  /** The entry at the range's end, if there is one. */
  readonly atEnd: IndexEntryRead | undefined;
  /** Entries strictly inside the span (only a merge leaves any). */
  readonly inside: readonly IndexEntryRead[];
}

/**
 * What recording `local` writes, given the stored descriptor of its range and
 * the index over its span (undefined: its bounds are too long to index), each
 * write conditional on the version read:
 * - nothing at all if a newer descriptor of the range is recorded (this
 *   leader is stale; its entry would point lookups at a range that moved on);
 * - the descriptor if it is absent, older, or at the same epoch with other
 *   replicas;
 * - the end entry if it is absent or older (a higher epoch there is a fresher
 *   range that ends where this one does: kept);
 * - while the end entry is, or becomes, this range's at this epoch, a
 *   conditional delete of every entry inside the span with a lower epoch
 *   (rule W2 in range-lookup.ts).
 * An index entry that does not decode counts as the lowest epoch: replaced.
 */
export function recordingOps(
  local: RangeDescriptor,
  stored: VersionedValue | undefined,
  index: IndexOverSpan | undefined,
  candidates: readonly { readonly rangeId: number; readonly stored: VersionedValue | undefined }[] = [],
): BatchWrite[] {
  const current = stored === undefined ? undefined : decodeRangeDescriptor(stored.value);
  if (current !== undefined && current.epoch > local.epoch) return [];
  const ops: BatchWrite[] = [];
  const sameReplicas = current !== undefined && current.replicas.join(',') === local.replicas.join(',');
  if (current === undefined || current.epoch < local.epoch || !sameReplicas) {
    ops.push({ op: 'put', key: rangeKey(local.rangeId), value: encodeRangeDescriptor(local), ifVersion: stored?.version ?? 0 });
  }
  if (index === undefined) return ops;
  const atEnd = index.atEnd === undefined ? undefined : entryOf(index.atEnd);
  // Another range ending where this one ends, at a higher epoch: the two overlap just below the end, so
  // this range is the stale one (split or merged since). Nothing is written: a frozen range's leader
  // recording late must not bring back the descriptor a merge deleted.
  if (atEnd !== undefined && atEnd.rangeId !== local.rangeId && atEnd.epoch > local.epoch) return [];
  if (atEnd === undefined || atEnd.epoch < local.epoch) {
    ops.push({ op: 'put', key: rangeEndKey(local.end), value: encodeRangeEndEntry({ rangeId: local.rangeId, epoch: local.epoch }), ifVersion: index.atEnd?.version ?? 0 });
  } else if (atEnd.rangeId !== local.rangeId || atEnd.epoch !== local.epoch) {
    return ops;
  }
  for (const inside of index.inside) {
    if (entryOf(inside).epoch < local.epoch) ops.push({ op: 'delete', key: inside.key, ifVersion: inside.version });
  }
  // A range this one covers at a lower epoch was merged into it (ranges grow only by a merge): its
  // descriptor goes, so the meta range's descriptors tile the key space again. Conditional on the version
  // read: a newer descriptor recorded meanwhile (the range moved on) is kept.
  for (const c of candidates) {
    if (c.stored === undefined || c.rangeId === local.rangeId) continue;
    let d: RangeDescriptor;
    try {
      d = decodeRangeDescriptor(c.stored.value);
    } catch {
      continue;
    }
    if (d.epoch < local.epoch && coversSpan(local, d.start, d.end)) ops.push({ op: 'delete', key: rangeKey(c.rangeId), ifVersion: c.stored.version });
  }
  return ops;
}

/** Range ids the index names at `local`'s end or inside its span, at a lower epoch than `local`'s. */
function mergedCandidates(local: RangeDescriptor, index: IndexOverSpan): number[] {
  const ids = new Set<number>();
  for (const read of [...(index.atEnd === undefined ? [] : [index.atEnd]), ...index.inside]) {
    const e = entryOf(read);
    if (e.rangeId !== 0 && e.rangeId !== local.rangeId && e.epoch < local.epoch) ids.add(e.rangeId);
  }
  return [...ids];
}

/** Whether `key` lies in `r`. */
function keyInside(r: RangeDescriptor, key: Uint8Array): boolean {
  return Buffer.compare(key, r.start) >= 0 && (r.end === null || Buffer.compare(key, r.end) < 0);
}

/** Whether [start, end) lies within `r` (null: to the end of the key space). */
function coversSpan(r: RangeDescriptor, start: Uint8Array, end: Uint8Array | null): boolean {
  if (Buffer.compare(start, r.start) < 0) return false;
  if (r.end === null) return true;
  return end !== null && Buffer.compare(end, r.end) <= 0;
}

/** A read index entry's range and epoch; a malformed one as epoch 0, which any recording replaces. */
function entryOf(read: IndexEntryRead): { rangeId: number; epoch: number } {
  try {
    return decodeRangeEndEntry(read.value);
  } catch {
    return { rangeId: 0, epoch: 0 };
  }
}

/** The routing table's view of a replica here: its range, epoch and voters (sorted). */
export function descriptorOf(s: ShardStatus): RangeDescriptor {
  return { rangeId: s.shardId, start: s.start, end: s.end, epoch: s.epoch, replicas: [...s.voters].sort((a, b) => a - b) };
}

/** What reportDescriptors compares a recorded descriptor by: "epoch/replicas". */
function fingerprintOf(s: ShardStatus): string {
  const d = descriptorOf(s);
  return `${d.epoch}/${d.replicas.join(',')}`;
}

function unreachable(read: never): never {
  throw new AssertionError(`unknown meta read ${JSON.stringify(read)}`);
}
