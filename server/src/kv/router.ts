import { AssertionError, FlotillaError, assert, groupId } from '@flotilla/core';
import { META_RANGE_ID, type RangeDescriptor, type RangeTable } from '@flotilla/placement';
import type { Host } from '@flotilla/shards';
import { DeadlineExceededError, closedOr, type HostCalls } from './host-calls.js';
import { decodeRangeOpResult, encodeRangeOp, type RangeOp, type RangeOpResult } from './range-ops.js';
import { describeTarget, locateTarget, missAnswered, type MetaRead, type RouteMiss, type RouteTarget } from './route-target.js';
import { KvError, RETRY_AFTER_MS, type Deadline } from './store.js';

/** First pause between rounds of asking a range's replicas while none of them leads it; doubles each round. */
const RETRY_DELAY_MS_MIN = 10;
/**
 * Longest pause between rounds: a leader elected meanwhile is found within
 * it, and a request to a range that has none costs a few Host calls a second
 * (one per round per reachable replica), not one per round trip.
 */
const RETRY_DELAY_MS_MAX = 250;
/** Failures of one attempt worth asking another replica, or the same one next round, about. */
const RETRYABLE_CODES: ReadonlySet<string> = new Set(['NOT_LEADER', 'PROPOSAL_DROPPED', 'REQUEST_TIMEOUT', 'SHARD_NOT_FOUND', 'OVERLOADED', 'PEER_UNREACHABLE', 'NO_HANDLER', 'DISK_FULL']);

assert(RETRY_DELAY_MS_MIN > 0, 'the first retry delay must be positive');
assert(RETRY_DELAY_MS_MIN <= RETRY_DELAY_MS_MAX, 'the first retry delay must not exceed the longest');

/** What the router needs of this node's Host: which replicas are here and whom they follow, who is up, and forwarding. */
export type RouterHost = Pick<Host, 'nodeId' | 'livePeers' | 'hasShard' | 'leaderOf' | 'forward'>;

export interface RouterOptions {
  readonly host: RouterHost;
  /** The routing table: read here, brought up to date by `refresh`. */
  readonly ranges: RangeTable;
  readonly calls: HostCalls;
  /** Runs an op on this node's replica (runLocally, with the placement handler of the moment). */
  readonly runHere: (op: RangeOp) => Promise<RangeOpResult>;
  /** Brings the table up to date (MetaClient.refresh): this node's replicas, and what `read` says of the meta range. Throws only CLOSED. */
  readonly refresh: (deadline: Deadline, read: MetaRead) => Promise<void>;
  /** Throws CLOSED once the store is closed. */
  readonly checkOpen: () => void;
}

/** This node's table sent the request to a range that does not hold the key (or to none): refresh and route again. */
export class StaleRouteError extends FlotillaError {
  readonly code = 'STALE_ROUTE';
  readonly retryable = true;
}

/**
 * Which range holds a key (the range table), who leads it (the replica
 * here, hints from the others), and the retry of one request until its
 * deadline, at two levels: `routed` looks the key up again when its range
 * turns out stale; `execute` runs one op where its range is led, across
 * NOT_LEADER hints, forwarding, unknown ranges and ranges with no leader.
 * Every Host call and pause takes what is left of the request's one
 * deadline; nothing here starts a budget of its own.
 */
export class Router {
  /**
   * The node last seen leading each range (it answered, or a replica's hint named it): asked first, so an
   * operation is not sent to a follower only to be told where to go. A hint, never trusted: a node that
   * no longer leads answers NOT_LEADER and the usual walk over the replicas follows.
   */
  private readonly leaderHints = new Map<number, number>();

  constructor(private readonly o: RouterOptions) {}

  /**
   * Runs `run` on the range that holds `key` by this node's table; when the
   * range answers that the key is not its own (it split, or the table is
   * stale) or the range is gone, the table is refreshed and the key routed
   * again, until the deadline. `stale` reads refresh from this node's own
   * replicas only: they need no quorum, so they never wait on the meta range.
   */
  async routed<T>(key: Uint8Array, deadline: Deadline, o: { stale: boolean }, run: (range: RangeDescriptor) => Promise<T>): Promise<T> {
    return this.routedBy({ kind: 'key', key }, deadline, o, run);
  }

  /**
   * As routed, for the range holding the keys just below `end` (null: the
   * last range, which runs to the end of the key space): where a reverse
   * scan goes next.
   */
  async routedBelow<T>(end: Uint8Array | null, deadline: Deadline, o: { stale: boolean }, run: (range: RangeDescriptor) => Promise<T>): Promise<T> {
    return this.routedBy({ kind: 'below', end }, deadline, o, run);
  }

  private async routedBy<T>(target: RouteTarget, deadline: Deadline, o: { stale: boolean }, run: (range: RangeDescriptor) => Promise<T>): Promise<T> {
    const what = describeTarget(target);
    for (let attempt = 0; ; attempt++) {
      this.o.checkOpen();
      const range = locateTarget(this.o.ranges, target);
      try {
        if (range === undefined) throw new StaleRouteError(`no known range holds ${what}`);
        return await run(range);
      } catch (err) {
        // KEY_OUT_OF_RANGE: a replica (here or forwarded) says the key is not its range's any more.
        // RANGE_MERGING: its range is frozen for a merge: once merged, the key is its left neighbour's.
        const code = (err as { code?: string }).code;
        if (!(err instanceof StaleRouteError) && code !== 'KEY_OUT_OF_RANGE' && code !== 'RANGE_MERGING') throw err;
        // A split applied here (the usual case: every node holds most ranges) is in this node's own
        // replicas: routed again at once, with no meta read and no pause, if they name another range.
        const miss: RouteMiss = { target, failed: range };
        await this.o.refresh(deadline, { kind: 'none' });
        if (missAnswered(this.o.ranges, miss)) continue;
        // Then the meta range: the target's range looked up by key (one index read, one descriptor), routed
        // again at once if it names another range; the same one means meta is behind, worth a pause.
        if (!o.stale) {
          await this.o.refresh(deadline, { kind: 'miss', miss });
          if (missAnswered(this.o.ranges, miss)) continue;
        }
        await this.o.calls.pause(deadline, retryDelayMs(attempt));
        if (deadline.expired) {
          throw new KvError('UNAVAILABLE', `no range reachable from node ${this.o.host.nodeId} holds ${what} (${(err as Error).message})`, { retryAfterMs: RETRY_AFTER_MS });
        }
      }
    }
  }

  /**
   * Runs `op` where its range is led — here, or forwarded to the node the
   * replicas name as leader — in rounds until the deadline (askRound), the
   * rounds backing off from RETRY_DELAY_MS_MIN to RETRY_DELAY_MS_MAX. When
   * nobody asked holds a replica that knows a leader (the range moved, or
   * every replica this table names is down: then nobody was asked), the
   * table is refreshed once; the meta range never refreshes (its descriptor
   * lives in it, and every live peer is asked anyway), so reading meta
   * cannot recurse into reading meta. A write whose replica did not answer
   * is not retried: it may have been applied (TIMEOUT). Stale reads go to
   * executeStale. The steps and their order are RetryState's; takeStep does
   * each, nextRetryState decides the next.
   */
  async execute(op: RangeOp, deadline: Deadline): Promise<RangeOpResult> {
    if ((op.kind === 'get' || op.kind === 'scan') && op.consistency === 'stale') return this.executeStale(op, deadline);
    const context = { rangeId: op.rangeId, nodeId: this.o.host.nodeId };
    let state: RetryState = { step: 'locate', round: 0, refreshed: op.rangeId === META_RANGE_ID };
    for (;;) {
      switch (state.step) {
        case 'answered':
          return state.result;
        case 'failed':
          throw state.error;
        default:
          state = nextRetryState(state, await this.takeStep(state, op, deadline), context);
      }
    }
  }

  /** Runs `op` on one node's replica: here, or forwarded; given up at the deadline. */
  runOn(target: number, op: RangeOp, deadline: Deadline): Promise<RangeOpResult> {
    const host = this.o.host;
    return this.o.calls.run(deadline, `range ${op.rangeId} on node ${target}`, async () =>
      target === host.nodeId ? this.o.runHere(op) : decodeRangeOpResult(op, await host.forward(target, encodeRangeOp(op))),
    );
  }

  /** This node and every peer the liveness tracker calls up. */
  liveNodes(): Set<number> {
    const host = this.o.host;
    return new Set([host.nodeId, ...host.livePeers()]);
  }

  /** The node last seen leading `rangeId` (it answered, or a replica named it); undefined if none is known. */
  lastSeenLeader(rangeId: number): number | undefined {
    return this.leaderHints.get(rangeId);
  }

  /** Does what one step of execute's retry says and reports what it found (nextRetryState takes it from there). */
  private async takeStep(state: ActiveRetryState, op: RangeOp, deadline: Deadline): Promise<RetryEvent> {
    switch (state.step) {
      case 'locate':
        this.o.checkOpen();
        // A range made since this node last read the meta range (a split elsewhere): the placement
        // driver names ranges by id, not by key, so nothing else would make this node look it up.
        return this.o.ranges.get(op.rangeId) === undefined && !this.o.host.hasShard(groupId(op.rangeId)) ? { kind: 'rangeUnknown' } : { kind: 'rangeKnown' };
      case 'ask': {
        const outcome = await this.askRound(op, deadline);
        return outcome.answered ? { kind: 'answered', result: outcome.result } : { kind: 'unanswered', unanswered: outcome };
      }
      case 'refresh':
        // The range's own descriptor, read by id: what the op needs, not every range's.
        await this.o.refresh(deadline, { kind: 'range', rangeId: op.rangeId });
        return { kind: 'refreshed' };
      case 'backOff':
        await this.o.calls.pause(deadline, retryDelayMs(state.round));
        return { kind: 'waited', expired: deadline.expired };
      default:
        return unreachable(state);
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
    let unanswered: Unanswered = {
      someoneHolds: false,
      failure: home.length === 0 ? `its replicas, on nodes ${(this.o.ranges.get(op.rangeId)?.replicas ?? []).join(', ')}, are down` : 'nobody asked',
    };
    for (let target = queue.shift(); target !== undefined; target = queue.shift()) {
      if (asked.has(target)) continue;
      asked.add(target);
      try {
        const result = await this.runOn(target, op, deadline);
        this.leaderHints.set(op.rangeId, target);
        return { answered: true, result };
      } catch (err) {
        const refusal = this.retryableFailure(op, target, err);
        const hint = refusal.code === 'NOT_LEADER' ? (refusal.leaderHint ?? 0) : 0;
        if (hint !== 0) this.leaderHints.set(op.rangeId, hint);
        else this.leaderHints.delete(op.rangeId);
        unanswered = withRefusal(unanswered, { target, code: refusal.code, hint });
        if (hint !== 0 && !asked.has(hint) && live.has(hint)) queue.unshift(hint);
      }
    }
    return { answered: false, ...unanswered };
  }

  /**
   * A stale read: this node's replica answers at once if it has one — no
   * leader, no quorum, no meta read. Otherwise (or if that replica no longer
   * holds the key: it split, or it is an empty replica being added) each live
   * node the table names as a replica is asked once, within the deadline.
   */
  private async executeStale(op: Extract<RangeOp, { kind: 'get' | 'scan' }>, deadline: Deadline): Promise<RangeOpResult> {
    const host = this.o.host;
    const live = this.liveNodes();
    const replicas = this.o.ranges.get(op.rangeId)?.replicas ?? [];
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

  /**
   * What one failed attempt means: thrown at once when another try cannot
   * help (as the KvError the caller gets; KEY_OUT_OF_RANGE as it is, for
   * routed), else returned with its code for the next try.
   */
  private retryableFailure(op: RangeOp, target: number, err: unknown): { code: string; leaderHint?: number } {
    const e = err as { code?: string; leaderHint?: number; message?: string };
    const isWrite = op.kind === 'put' || op.kind === 'delete' || op.kind === 'atomicBatch' || op.kind === 'deleteRange' || op.kind === 'split' || op.kind === 'membership';
    if (err instanceof DeadlineExceededError) {
      if (isWrite && err.handedOver) throw new KvError('TIMEOUT', `range ${op.rangeId}: node ${target} did not answer the ${op.kind} by its deadline; the write's outcome is unknown`, { retryAfterMs: RETRY_AFTER_MS });
      throw err;
    }
    if (e.code === 'REQUEST_TIMEOUT' && isWrite) {
      throw new KvError('TIMEOUT', `range ${op.rangeId}: node ${target} did not answer the ${op.kind} in time; the write's outcome is unknown`, { retryAfterMs: RETRY_AFTER_MS });
    }
    if (e.code === 'OUTCOME_UNKNOWN') {
      throw new KvError('TIMEOUT', `range ${op.rangeId}: node ${target} stopped waiting for the ${op.kind} with its entry in the log (${e.message}); the write's outcome is unknown`, { retryAfterMs: RETRY_AFTER_MS });
    }
    if (e.code === 'HOST_CLOSED' || e.code === 'CORE_CRASHED') throw closedOr(err);
    if (e.code === 'COMMAND_INVALID') throw new KvError('INVALID_ARGUMENT', e.message ?? 'invalid command');
    if (e.code === undefined || !RETRYABLE_CODES.has(e.code)) throw err;
    return e as { code: string; leaderHint?: number };
  }

  /**
   * Where to run an operation on a range: the local replica first (but not
   * alone: an empty one, being added, knows no leader), then the range's
   * replicas on live nodes. The meta range moves like any other, and its own
   * descriptor lives in it: so every live peer is asked too (a replica
   * answers with a leader hint, anyone else with SHARD_NOT_FOUND).
   */
  private homeOf(rangeId: number, live: ReadonlySet<number>): number[] {
    const host = this.o.host;
    const replicas = (this.o.ranges.get(rangeId)?.replicas ?? []).filter((n) => n !== host.nodeId && live.has(n));
    const others = rangeId === META_RANGE_ID ? [...new Set([...replicas, ...[...live].filter((n) => n !== host.nodeId)])] : replicas;
    return host.hasShard(groupId(rangeId)) ? [host.nodeId, ...others] : others;
  }

  /**
   * Where the range is most likely led: what this node's replica last heard, else the last node seen
   * leading it — if that node is this one or a live peer. Undefined: start with homeOf's order.
   */
  private likelyLeader(rangeId: number, live: ReadonlySet<number>): number | undefined {
    const leader = this.o.host.leaderOf(groupId(rangeId)) || this.leaderHints.get(rangeId);
    return leader !== undefined && leader !== 0 && live.has(leader) ? leader : undefined;
  }
}

/** Why one round over a range's replicas got no answer (askRound). */
interface Unanswered {
  /**
   * Some node asked holds a replica that did not just say it knows no leader:
   * the range lives there, so waiting may help where a table refresh would not.
   */
  readonly someoneHolds: boolean;
  /** The last refusal ("node 3: NOT_LEADER"), or why nobody was asked. */
  readonly failure: string;
  /** The last refusal for want of disk space this round, if any. */
  readonly diskFull?: string;
}

/** One round of asking a range's replicas (askRound): the answer, or why nobody gave one. */
type RoundOutcome = { readonly answered: true; readonly result: RangeOpResult } | ({ readonly answered: false } & Unanswered);

/** The round's tally after `target` refused with `code` (`hint`: the leader it named, 0 for none). */
function withRefusal(tally: Unanswered, refusal: { target: number; code: string; hint: number }): Unanswered {
  const failure = `node ${refusal.target}: ${refusal.code}`;
  // No replica there (SHARD_NOT_FOUND), or one that knows no leader: nothing there to wait for.
  const holds = refusal.code !== 'SHARD_NOT_FOUND' && !(refusal.code === 'NOT_LEADER' && refusal.hint === 0);
  const diskFull = refusal.code === 'DISK_FULL' ? failure : tally.diskFull;
  return { someoneHolds: tally.someoneHolds || holds, failure, ...(diskFull === undefined ? {} : { diskFull }) };
}

/**
 * Where execute's retry of one op stands. `round` counts the returns to
 * `locate` (after a refresh or a back-off) and sets the next back-off;
 * `refreshed` says the one table refresh a request may make is spent — spent
 * from the start for the meta range, whose ops must never refresh (a refresh
 * reads the meta range).
 */
type RetryState =
  /** Is the range known here at all (in the table, or a replica on this node)? */
  | { readonly step: 'locate'; readonly round: number; readonly refreshed: boolean }
  /** One round over the range's replicas (askRound). */
  | { readonly step: 'ask'; readonly round: number; readonly refreshed: boolean }
  /** Refresh the table from the meta range, once, then locate again. */
  | { readonly step: 'refresh'; readonly round: number }
  /** Pause before the next round, or give up at the deadline with why the last round failed. */
  | { readonly step: 'backOff'; readonly round: number; readonly refreshed: boolean; readonly unanswered: Unanswered }
  | { readonly step: 'answered'; readonly result: RangeOpResult }
  | { readonly step: 'failed'; readonly error: Error };

type ActiveRetryState = Exclude<RetryState, { step: 'answered' | 'failed' }>;

/** What a step found (takeStep), the input of nextRetryState. */
type RetryEvent =
  | { readonly kind: 'rangeKnown' }
  | { readonly kind: 'rangeUnknown' }
  | { readonly kind: 'answered'; readonly result: RangeOpResult }
  | { readonly kind: 'unanswered'; readonly unanswered: Unanswered }
  | { readonly kind: 'refreshed' }
  | { readonly kind: 'waited'; readonly expired: boolean };

/** Every transition of execute's retry: where `state` goes on what its step found. */
function nextRetryState(state: ActiveRetryState, event: RetryEvent, context: { rangeId: number; nodeId: number }): RetryState {
  switch (state.step) {
    case 'locate':
      if (event.kind === 'rangeKnown') return { step: 'ask', round: state.round, refreshed: state.refreshed };
      if (event.kind === 'rangeUnknown') {
        return state.refreshed ? { step: 'failed', error: new StaleRouteError(`range ${context.rangeId} has no known replica`) } : { step: 'refresh', round: state.round };
      }
      break;
    case 'ask':
      if (event.kind === 'answered') return { step: 'answered', result: event.result };
      if (event.kind === 'unanswered') {
        // Nobody asked holds a replica that knows a leader: the table may be what is wrong.
        if (!event.unanswered.someoneHolds && !state.refreshed) return { step: 'refresh', round: state.round };
        return { step: 'backOff', round: state.round, refreshed: state.refreshed, unanswered: event.unanswered };
      }
      break;
    case 'refresh':
      if (event.kind === 'refreshed') return { step: 'locate', round: state.round + 1, refreshed: true };
      break;
    case 'backOff':
      if (event.kind === 'waited') return event.expired ? { step: 'failed', error: gaveUp(state.unanswered, context) } : { step: 'locate', round: state.round + 1, refreshed: state.refreshed };
      break;
    default:
      return unreachable(state);
  }
  throw new AssertionError(`retry step ${state.step} cannot take event ${event.kind} (range ${context.rangeId})`);
}

/** The error of an op whose rounds found no leader by the deadline. */
function gaveUp(unanswered: Unanswered, context: { rangeId: number; nodeId: number }): KvError {
  // The range's leader is on a full disk and no other replica took over yet: say so, it is not a quorum problem.
  if (unanswered.diskFull !== undefined) {
    return new KvError('DISK_FULL', `range ${context.rangeId} is led on a node whose disk is full (${unanswered.diskFull}); nothing was written`, { retryAfterMs: RETRY_AFTER_MS });
  }
  return new KvError('UNAVAILABLE', `range ${context.rangeId} has no leader reachable from node ${context.nodeId} (${unanswered.failure}); nothing was written`, { retryAfterMs: RETRY_AFTER_MS });
}

/** The pause before retry `attempt` (0-based): doubling from RETRY_DELAY_MS_MIN, capped at RETRY_DELAY_MS_MAX. */
function retryDelayMs(attempt: number): number {
  return Math.min(RETRY_DELAY_MS_MAX, RETRY_DELAY_MS_MIN * 2 ** Math.min(attempt, 16));
}

function unreachable(state: never): never {
  throw new AssertionError(`unknown retry step ${JSON.stringify(state)}`);
}
