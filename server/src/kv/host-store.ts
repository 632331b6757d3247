import { groupId } from '@flotilla/core';
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
import { KvError, SCAN_LIMIT_MAX, type KvStore, type ScanOptions, type ScanPage, type VersionedValue } from './store.js';

/** How long a request keeps retrying a range without a leader before it fails UNAVAILABLE (two election timeouts at the default tick, and then some). */
export const UNAVAILABLE_AFTER_MS_DEFAULT = 5_000;
/** Pause between retries of a range that has no leader yet. */
const RETRY_DELAY_MS = 10;
/** What a 503 tells the client to wait. */
const RETRY_AFTER_MS = 1_000;
const CURSOR_PREFIX = 'v1.';
/** Leader hints followed in a row before pausing: hints chase a moving leadership, not a loop. */
const HINT_HOPS_MAX = 3;
/** Times a split looks its range up again after the range moved on under it. */
const ROUTE_RETRIES_MAX = 3;
/** Compare-and-set rounds on one meta key before giving up (only contention loses one). */
const CAS_RETRIES_MAX = 16;

export interface HostKvStoreOptions {
  readonly host: Host;
  readonly ranges: RangeTable;
  readonly unavailableAfterMs?: number;
  /** Called once the store is closed (the owner closes the Host there). */
  readonly onClose?: () => Promise<void>;
}

/**
 * The KvStore over the ranges of this node's Host: it routes each key by the
 * range table, runs the operation on the range's leader — here, or forwarded
 * over the transport to the leader's node, following leader hints — and
 * retries while a range has no leader. Any node serves any key of a range it
 * knows; stale reads are served by the local replica.
 */
export class HostKvStore implements KvStore {
  private closed = false;
  private readonly unavailableAfterMs: number;
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

  constructor(private readonly options: HostKvStoreOptions) {
    this.unavailableAfterMs = options.unavailableAfterMs ?? UNAVAILABLE_AFTER_MS_DEFAULT;
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

  async get(key: Uint8Array, options: { consistency?: Consistency } = {}): Promise<VersionedValue | undefined> {
    checkUserKey(key);
    const consistency = options.consistency ?? 'linearizable';
    return (await this.routed(key, (range) => this.execute({ kind: 'get', rangeId: range.rangeId, key, consistency }))) as VersionedValue | undefined;
  }

  async put(key: Uint8Array, value: Uint8Array, options: { ifVersion?: number } = {}): Promise<{ version: number }> {
    checkUserKey(key);
    if (value.byteLength > VALUE_BYTES_MAX) throw new KvError('VALUE_TOO_LARGE', `value of ${value.byteLength} B exceeds ${VALUE_BYTES_MAX} B`);
    checkIfVersion(options.ifVersion);
    return { version: await this.write(key, (rangeId) => ({ kind: 'put', rangeId, key, value, ifVersion: options.ifVersion })) };
  }

  async delete(key: Uint8Array, options: { ifVersion?: number } = {}): Promise<void> {
    checkUserKey(key);
    checkIfVersion(options.ifVersion);
    await this.write(key, (rangeId) => ({ kind: 'delete', rangeId, key, ifVersion: options.ifVersion }));
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
    // System keys (the meta range) are not the user's: a scan starts at the first user key at the earliest.
    let position = compareKeys(requested, USER_KEY_MIN) < 0 ? USER_KEY_MIN : requested;
    const end = options.end ?? null;
    const consistency = options.consistency ?? 'linearizable';
    const items: { key: Uint8Array; value: Uint8Array; version: number }[] = [];
    // One range at a time from `position`; a range that split under us answers KEY_OUT_OF_RANGE and is looked up again.
    while (end === null || compareKeys(position, end) < 0) {
      const from = position;
      const { page, rangeEnd } = await this.routed(from, async (range) => {
        const rangeEnd = end === null ? range.end : range.end === null || compareKeys(end, range.end) < 0 ? end : range.end;
        const limit = options.limit - items.length;
        const page = (await this.execute({ kind: 'scan', rangeId: range.rangeId, start: from, end: rangeEnd, limit, consistency })) as { key: Uint8Array; value: Uint8Array; version: number }[];
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
  }

  /**
   * Splits range `rangeId` at `key` (the right half's first key): a new range
   * id from the meta range's allocator, then one Raft command on the range,
   * proposed against the epoch this node knows (refreshed and retried if the
   * range moved on). Both halves serve as soon as it applies.
   */
  async split(rangeId: number, key: Uint8Array): Promise<SplitOutcome> {
    checkUserKey(key);
    for (let attempt = 0; ; attempt++) {
      const range = this.ranges.get(rangeId);
      if (range === undefined) throw new KvError('NOT_FOUND', `range ${rangeId} is not known to node ${this.options.host.nodeId}`);
      if (compareKeys(key, range.start) <= 0 || (range.end !== null && compareKeys(key, range.end) >= 0)) {
        throw new KvError('INVALID_ARGUMENT', `split key ${Buffer.from(key).toString('hex')} is not strictly inside range ${rangeId} [${Buffer.from(range.start).toString('hex')}, ${range.end === null ? '∞' : Buffer.from(range.end).toString('hex')})`);
      }
      const newShardId = await this.allocateRangeId();
      const result = (await this.execute({ kind: 'split', rangeId, key, newShardId, epoch: range.epoch })) as KvResult;
      if (result.ok && 'split' in result) {
        const { left, right } = result.split;
        this.ranges.upsert({ rangeId: left.shardId, start: left.start, end: left.end, epoch: left.epoch, replicas: range.replicas });
        this.ranges.upsert({ rangeId: right.shardId, start: right.start, end: right.end, epoch: right.epoch, replicas: range.replicas });
        return result.split;
      }
      // The range split or changed membership since we looked: look again (the allocated id is simply not used).
      if (!result.ok && (result.code === 'EPOCH_MISMATCH' || result.code === 'KEY_OUT_OF_RANGE') && attempt < ROUTE_RETRIES_MAX) {
        await this.refresh();
        continue;
      }
      throw new KvError('INVALID_ARGUMENT', `range ${rangeId} refused the split: ${!result.ok ? result.code : 'unexpected answer'}`);
    }
  }

  /**
   * Records in the meta range the descriptor of every range this node leads
   * whose epoch or replicas moved since this node last recorded it (the
   * first call records them all): a compare-and-set that keeps whichever
   * descriptor has the higher epoch, so reporters racing each other, or a
   * stale leader, never move meta backwards. Returns how many it wrote.
   * TiKV's region heartbeats to PD, pulled by the node's own timer.
   */
  async reportDescriptors(): Promise<number> {
    let written = 0;
    for (const s of await this.options.host.shards()) {
      if (s.role !== 'leader') continue;
      const local = descriptorOf(s);
      const fingerprint = `${local.epoch}/${local.replicas.join(',')}`;
      if (this.reported.get(s.shardId) === fingerprint) continue;
      const wrote = await this.metaCompareAndSet(rangeKey(s.shardId), `record range ${s.shardId}`, (stored) => {
        const current = stored === undefined ? undefined : decodeRangeDescriptor(stored.value);
        if (current !== undefined && (current.epoch > local.epoch || (current.epoch === local.epoch && current.replicas.join(',') === local.replicas.join(',')))) return undefined;
        return encodeRangeDescriptor(local);
      });
      if (wrote) written++;
      this.reported.set(s.shardId, fingerprint);
    }
    return written;
  }

  /** Every range descriptor recorded in the meta range, in range id order (linearizable). */
  async metaDescriptors(): Promise<RangeDescriptor[]> {
    return (await this.metaScan(RANGE_KEYS)).map((value) => decodeRangeDescriptor(value));
  }

  /** Every node recorded in the meta range, in node id order (linearizable). */
  async metaNodes(): Promise<NodeRecord[]> {
    return (await this.metaScan(NODE_KEYS)).map((value) => decodeNodeRecord(value));
  }

  /**
   * Records a node in the meta range: a compare-and-set that refuses a node
   * id recorded with another transport address (two processes claiming one
   * id would split its replicas' identity). Writes only when it changed.
   */
  async recordNode(record: NodeRecord): Promise<void> {
    await this.metaCompareAndSet(nodeKey(record.nodeId), `record node ${record.nodeId}`, (stored) => {
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
  async setNodeState(nodeId: number, state: NodeRecord['state']): Promise<NodeRecord> {
    let updated: NodeRecord | undefined;
    await this.metaCompareAndSet(nodeKey(nodeId), `set node ${nodeId} ${state}`, (stored) => {
      if (stored === undefined) throw new KvError('NOT_FOUND', `node ${nodeId} is not recorded in the meta range`);
      const current = decodeNodeRecord(stored.value);
      updated = { ...current, state };
      return current.state === state ? undefined : encodeNodeRecord(updated);
    });
    return updated!;
  }

  /** The placement driver's settings as the meta range holds them (defaults until first set). */
  async placementSettings(defaults: PlacementSettings): Promise<PlacementSettings> {
    const stored = (await this.execute({ kind: 'get', rangeId: META_RANGE_ID, key: PLACEMENT_SETTINGS_KEY, consistency: 'linearizable' })) as VersionedValue | undefined;
    return stored === undefined ? defaults : decodePlacementSettings(stored.value);
  }

  async updatePlacementSettings(defaults: PlacementSettings, change: Partial<PlacementSettings>): Promise<PlacementSettings> {
    let next: PlacementSettings = defaults;
    await this.metaCompareAndSet(PLACEMENT_SETTINGS_KEY, 'update the placement settings', (stored) => {
      next = { ...(stored === undefined ? defaults : decodePlacementSettings(stored.value)), ...change };
      return encodePlacementSettings(next);
    });
    return next;
  }

  /**
   * One compare-and-set on a meta range key, retried while it loses races:
   * `decide` sees the stored value (undefined when absent) and returns what
   * to write, or undefined to leave it as it is. Resolves to whether it wrote.
   */
  private async metaCompareAndSet(key: Uint8Array, what: string, decide: (stored: VersionedValue | undefined) => Uint8Array | undefined): Promise<boolean> {
    for (let attempt = 0; attempt < CAS_RETRIES_MAX; attempt++) {
      const stored = (await this.execute({ kind: 'get', rangeId: META_RANGE_ID, key, consistency: 'linearizable' })) as VersionedValue | undefined;
      const value = decide(stored);
      if (value === undefined) return false;
      const result = (await this.execute({ kind: 'put', rangeId: META_RANGE_ID, key, value, ifVersion: stored?.version ?? 0 })) as KvResult;
      if (result.ok) return true;
      if (result.code !== 'VERSION_MISMATCH') throw new KvError('UNAVAILABLE', `the meta range refused to ${what}: ${result.code}`, { retryAfterMs: RETRY_AFTER_MS });
    }
    throw new KvError('UNAVAILABLE', `could not ${what} in ${CAS_RETRIES_MAX} tries (contention)`, { retryAfterMs: RETRY_AFTER_MS });
  }

  /** Points the transport at every node recorded in the meta range. */
  /** Learns every recorded node's address; `nodes`: the records already read this duty tick. */
  async learnPeers(nodes: Promise<NodeRecord[]> = this.metaNodes()): Promise<void> {
    const host = this.options.host;
    for (const n of await nodes) if (n.nodeId !== host.nodeId && n.state !== 'decommissioned') host.setPeer(n.nodeId, n.address);
  }

  /** Learns one node's address from its record (one read, not a scan: a reply to it is waiting). */
  async learnPeer(nodeId: number): Promise<void> {
    const stored = (await this.execute({ kind: 'get', rangeId: META_RANGE_ID, key: nodeKey(nodeId), consistency: 'linearizable' })) as VersionedValue | undefined;
    if (stored === undefined) return;
    const n = decodeNodeRecord(stored.value);
    if (n.state !== 'decommissioned') this.options.host.setPeer(n.nodeId, n.address);
  }

  private async metaScan(span: { start: Uint8Array; end: Uint8Array }): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    let start = span.start;
    for (;;) {
      const page = (await this.execute({ kind: 'scan', rangeId: META_RANGE_ID, start, end: span.end, limit: SCAN_LIMIT_MAX, consistency: 'linearizable' })) as { key: Uint8Array; value: Uint8Array }[];
      out.push(...page.map((p) => p.value));
      if (page.length < SCAN_LIMIT_MAX) return out;
      start = Buffer.concat([page[page.length - 1]!.key, Buffer.of(0)]);
    }
  }

  /** The known ranges, in key order (the meta range first). */
  knownRanges(): readonly RangeDescriptor[] {
    return this.ranges.all();
  }

  knownRange(rangeId: number): RangeDescriptor | undefined {
    return this.ranges.get(rangeId);
  }

  /**
   * A fresh range id from the meta range: a compare-and-set on the
   * allocator key, retried on a lost race. Ids below FIRST_ALLOCATED_RANGE_ID
   * belong to the bootstrap ranges.
   */
  private async allocateRangeId(): Promise<number> {
    let next = FIRST_ALLOCATED_RANGE_ID;
    await this.metaCompareAndSet(RANGE_ID_ALLOCATOR_KEY, 'allocate a range id', (stored) => {
      next = stored === undefined ? FIRST_ALLOCATED_RANGE_ID : decodeCounter(stored.value);
      return encodeCounter(next + 1);
    });
    return next;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.options.onClose?.();
  }

  private async write(key: Uint8Array, opFor: (rangeId: number) => Extract<RangeOp, { kind: 'put' | 'delete' }>): Promise<number> {
    return this.routed(key, async (range) => {
      const op = opFor(range.rangeId);
      const result = (await this.execute(op)) as KvResult;
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
   * again, until unavailableAfterMs.
   */
  private async routed<T>(key: Uint8Array, run: (range: RangeDescriptor) => Promise<T>): Promise<T> {
    const deadlineMs = performance.now() + this.unavailableAfterMs;
    for (;;) {
      this.checkOpen();
      const range = this.ranges.lookup(key);
      try {
        if (range === undefined) throw new StaleRouteError(`no known range holds key ${Buffer.from(key).toString('hex')}`);
        return await run(range);
      } catch (err) {
        // KEY_OUT_OF_RANGE: a replica (here or forwarded) says the key is not its range's any more.
        if (!(err instanceof StaleRouteError) && (err as { code?: string }).code !== 'KEY_OUT_OF_RANGE') throw err;
        if (performance.now() >= deadlineMs) {
          throw new KvError('UNAVAILABLE', `no range reachable from node ${this.options.host.nodeId} holds key ${Buffer.from(key).toString('hex')} (${(err as Error).message})`, { retryAfterMs: RETRY_AFTER_MS });
        }
        await this.refresh();
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
      }
    }
  }

  /**
   * Refreshes the range table from the descriptors recorded in the meta
   * range, then from this node's own replicas (fresher for the ranges it
   * holds); a newer epoch evicts the stale descriptors it overlaps.
   */
  private async refresh(): Promise<void> {
    try {
      for (const d of await this.metaDescriptors()) this.ranges.upsert(d);
    } catch (err) {
      // Meta unreachable right now: this node's own replicas are still news.
      if ((err as { code?: string }).code === 'CLOSED') throw err;
    }
    // A replica still waiting for its first snapshot (epoch 0) owns no keys yet.
    for (const s of await this.options.host.shards()) if (s.epoch > 0) this.ranges.upsert(descriptorOf(s));
  }

  /**
   * Runs `op` where its range is led: here, or forwarded to the node the
   * replicas name as leader (following hints), retrying while the range has
   * no leader, until unavailableAfterMs. A write that timed out is not
   * retried: it may have been applied. Stale reads run on the local replica.
   */
  /** Serves `placement` requests here while this node leads the meta range (PlacementService). */
  setPlacementHandler(handler: PlacementHandler | undefined): void {
    this.placement = handler;
  }

  /** Runs one operation on one node (here, or forwarded): what the placement driver sends a node that is to hold a replica. */
  async runOnNode(nodeId: number, op: RangeOp): Promise<RangeOpResult> {
    const host = this.options.host;
    this.checkOpen();
    if (nodeId === host.nodeId) return runLocally(host, op, this.placement);
    return decodeRangeOpResult(op, await host.forward(nodeId, encodeRangeOp(op)));
  }

  /** Runs one operation on a range's leader (execute): what the placement driver's steps and heartbeats go through. */
  runOnRange(op: RangeOp): Promise<RangeOpResult> {
    return this.execute(op);
  }

  private async execute(op: RangeOp): Promise<RangeOpResult> {
    const host = this.options.host;
    const deadlineMs = performance.now() + this.unavailableAfterMs;
    let refreshed = false;
    // Every other replica this table names is on a node that is down: the range was moved (or repaired)
    // since, most likely. Re-read meta before asking, rather than forward to a dead node (a write would
    // time out with an unknown outcome, and is not retried).
    if (op.rangeId !== META_RANGE_ID && this.onlyDownReplicasKnown(op.rangeId)) {
      refreshed = true;
      await this.refresh().catch(() => undefined);
    }
    let home = this.homeOf(op.rangeId);
    if (home.length === 0) throw new StaleRouteError(`range ${op.rangeId} has no known replica`);
    let turn = 0;
    const leaderRun = !(op.kind === 'get' && op.consistency === 'stale');
    const likely = leaderRun ? this.likelyLeader(op.rangeId) : undefined;
    let target = likely ?? home[0]!;
    // Whether the likely leader was asked first and gave no hint: the walk over `home` then starts at its head.
    let walkUnstarted = likely !== undefined && likely !== home[0];
    // Whether nobody asked this round could point at a leader — no replica there, or an empty one that knows
    // none (the placement driver moved the range; this table is stale) — and whether we re-read meta for it.
    let noneHeld = true;
    for (let hops = 0; ; hops++) {
      this.checkOpen();
      try {
        const result = target === host.nodeId ? await runLocally(host, op, this.placement) : decodeRangeOpResult(op, await host.forward(target, encodeRangeOp(op)));
        if (leaderRun) this.leaderHints.set(op.rangeId, target);
        return result;
      } catch (err) {
        const e = err as { code?: string; leaderHint?: number; message?: string };
        if (leaderRun) {
          if (e.code === 'NOT_LEADER' && e.leaderHint !== undefined && e.leaderHint !== 0) this.leaderHints.set(op.rangeId, e.leaderHint);
          else this.leaderHints.delete(op.rangeId);
        }
        const isWrite = op.kind === 'put' || op.kind === 'delete' || op.kind === 'split' || op.kind === 'membership';
        if (e.code === 'REQUEST_TIMEOUT' && isWrite) throw new KvError('TIMEOUT', `range ${op.rangeId} did not answer in time; the write's outcome is unknown`);
        if (e.code === 'HOST_CLOSED' || e.code === 'CORE_CRASHED') throw new KvError('CLOSED', `the store is closed (${e.message})`);
        if (e.code === 'COMMAND_INVALID') throw new KvError('INVALID_ARGUMENT', e.message ?? 'invalid command');
        // A key no longer this range's (it split): the caller routes again.
        if (e.code === 'KEY_OUT_OF_RANGE') throw err;
        const retryable = e.code === 'NOT_LEADER' || e.code === 'PROPOSAL_DROPPED' || e.code === 'REQUEST_TIMEOUT' || e.code === 'SHARD_NOT_FOUND';
        if (!retryable) throw err;
        if (performance.now() >= deadlineMs) {
          throw new KvError('UNAVAILABLE', `range ${op.rangeId} has no leader reachable from node ${host.nodeId} (${e.message})`, { retryAfterMs: RETRY_AFTER_MS });
        }
        const hint = e.code === 'NOT_LEADER' ? (e.leaderHint ?? 0) : 0;
        if (e.code !== 'SHARD_NOT_FOUND' && !(e.code === 'NOT_LEADER' && hint === 0)) noneHeld = false;
        // Follow a fresh hint at once (a bounded number of times); otherwise wait and start over here.
        if (hint !== 0 && hint !== target && hops < HINT_HOPS_MAX) {
          target = hint;
          continue;
        }
        if (walkUnstarted) {
          walkUnstarted = false;
          target = home[0]!;
          continue;
        }
        turn++;
        hops = 0;
        if (turn % home.length === 0) {
          // Nobody we know of holds it any more: its replicas moved. Learn where from meta, once.
          if (noneHeld && !refreshed) {
            refreshed = true;
            await this.refresh().catch(() => undefined);
            home = this.homeOf(op.rangeId);
            if (home.length === 0) throw new StaleRouteError(`range ${op.rangeId} has no known replica`);
          }
          noneHeld = true;
          await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
        }
        target = home[turn % home.length]!;
      }
    }
  }

  /**
   * Where to run an operation on a range: the local replica, else the
   * range's replicas in turn (a stale read runs on whichever answers). The
   * meta range moves like any other, and its own descriptor lives in it: so
   * every live peer is asked too, after its known replicas (a replica
   * answers with a leader hint, anyone else with SHARD_NOT_FOUND).
   */
  private homeOf(rangeId: number): number[] {
    const host = this.options.host;
    const live = new Set(host.livePeers());
    // Peers the liveness tracker calls down are left out while any other is known: a write forwarded
    // to one times out with an unknown outcome and is not retried, and a stale table (one naming a
    // dead replica) is re-read only after a round of asking found no leader.
    const replicas = (this.ranges.get(rangeId)?.replicas ?? []).filter((n) => n !== host.nodeId);
    const reachable = replicas.filter((n) => live.has(n));
    const known = reachable.length > 0 ? reachable : replicas;
    const others = rangeId === META_RANGE_ID ? [...new Set([...reachable, ...live])] : known;
    // The local replica first, but not alone: an empty one (being added, not caught up yet) knows no leader.
    return host.hasShard(groupId(rangeId)) ? [host.nodeId, ...others] : others;
  }

  /**
   * Where the range is most likely led: what this node's replica last heard, else the last node seen
   * leading it — if that node is this one or a live peer. Undefined: start with homeOf's order.
   */
  private likelyLeader(rangeId: number): number | undefined {
    const host = this.options.host;
    const leader = host.leaderOf(groupId(rangeId)) || this.leaderHints.get(rangeId);
    if (leader === undefined || leader === 0) return undefined;
    return leader === host.nodeId || host.livePeers().includes(leader) ? leader : undefined;
  }

  private onlyDownReplicasKnown(rangeId: number): boolean {
    const host = this.options.host;
    const others = (this.ranges.get(rangeId)?.replicas ?? []).filter((n) => n !== host.nodeId);
    if (others.length === 0) return false;
    const live = new Set(host.livePeers());
    return others.every((n) => !live.has(n));
  }

  private checkOpen(): void {
    if (this.closed) throw new KvError('CLOSED', 'the store is closed');
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
