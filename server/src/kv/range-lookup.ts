import { assert } from '@flotilla/core';
import {
  META_RANGE_ID,
  RANGE_END_KEYS,
  RANGE_END_KEY_OVERHEAD_BYTES,
  MetaRecordError,
  decodeRangeDescriptor,
  decodeRangeEndEntry,
  decodeRangeEndKey,
  rangeEndKey,
  rangeEndKeyAfter,
  rangeKey,
  type RangeDescriptor,
  type RangeTable,
} from '@flotilla/placement';
import { KEY_BYTES_MAX } from '@flotilla/shards';
import type { HostCalls } from './host-calls.js';
import type { RangeOp, RangeOpResult } from './range-ops.js';
import { compareTargets, holdsTarget, missAnswered, sameRoute, type RouteMiss, type RouteTarget } from './route-target.js';
import type { Deadline, VersionedValue } from './store.js';

/*
 * Finding the range of a key in the meta range: one bounded read of the range
 * end index (placement/src/meta.ts), then one read of the descriptor it names,
 * instead of a scan of every descriptor (about 5 MB at 100,000 ranges).
 *
 * Why a lookup never routes worse than that scan. The index is a hint: what a
 * lookup hands the router is a descriptor read by its id, the very record the
 * scan reads, and only one that holds the target and agrees with the entry
 * that led to it (same range, same epoch, ending where the entry sits).
 * The writers (MetaClient.recordDescriptor) keep two rules:
 *   (W1) an entry is written only in the atomic batch that writes its range's
 *        descriptor at that epoch, or while that descriptor is recorded at
 *        that epoch, and never by a leader whose range has a newer
 *        descriptor recorded; so every descriptor D recorded has an entry at
 *        D.end with an epoch at least D's (there is no crash between the two
 *        writes: one batch is one Raft entry on the meta range). Entries
 *        only move to higher epochs, except that
 *   (W2) in the same batch, entries strictly inside D's span with a lower
 *        epoch than D are deleted (only a merge leaves any).
 * Each batch is conditional on the versions it read, so a recording races
 * others as if it happened at once. Epochs grow along any key's history (a
 * split gives both halves one more than the parent, a membership change one
 * more, a merge one past both ranges). Say a lookup of k takes D, found at
 * the first entry past k, which sits at D.end, and a fresher D* is recorded
 * that also holds k; by (W1) the entry at D*.end has an epoch ≥ D*'s > D's,
 * so D*.end is not D.end (that entry names D's epoch) nor below it (D.end is
 * the first entry past k): D* reaches past D.end.
 *   Splits only: ranges shrink along k's history, so D*.end ≤ D.end: no such
 *   D*, whoever recorded what, stale leaders included.
 *   With merges, if every recording is of its range's current descriptor: D*
 *   was recorded after D (it came later), and its batch, whose end entry it
 *   held (a range ending there at a higher epoch would be later still, yet
 *   recorded earlier), deleted the entry at D.end (W2, lower epoch); only a
 *   recording of D could write it again, and D was no longer current: no
 *   such D*.
 * Concurrent splits, merges and recordings make one of a lookup's two reads
 * newer than the other, which the agreement check refuses, or give what the
 * scan would have given at the first read. server/test/range-lookup.test.ts
 * checks all of it against a naive oracle over random histories.
 *
 * What this does not cover: a data dir from before the index (descriptors
 * without entries, filled in by their leaders' next recording), a range
 * whose bounds are too long to index (INDEXED_KEY_BYTES_MAX), more entries
 * inside a merged range than one recording deletes, and a stale leader
 * recording, after a merge, a descriptor whose end the merge covered (it
 * writes that entry again). Each ends in a lookup that disagrees, so the
 * full scan answers; or, at worst, in a descriptor the scan would overrule,
 * whose range then refuses the key (every replica checks the range of each
 * key it serves: KEY_OUT_OF_RANGE) — and a lookup that answers the very
 * route that just failed falls back to the full scan too. It costs a scan
 * and a refused request, never a read from the wrong range, and never a loop.
 */

/**
 * Longest range bound the index holds: the end key adds its overhead, and a
 * scan bound one byte more (rangeEndKeyAfter), which must stay within a key.
 * A range with a longer bound gets no entry, and a key longer than this is
 * found by the full scan.
 */
export const INDEXED_KEY_BYTES_MAX = KEY_BYTES_MAX - RANGE_END_KEY_OVERHEAD_BYTES - 1;
/**
 * Lookups one round makes at most (each one index read and one descriptor
 * read, one after the other). A round with misses in more ranges than this
 * — a node that lost track of much of the table — reads every descriptor
 * instead: by then the scan costs less than the round trips.
 */
const LOOKUPS_PER_ROUND_MAX = 8;

assert(INDEXED_KEY_BYTES_MAX > 1_024, 'the index must hold bounds as long as any key a client is likely to split at');

export interface RangeLookupsOptions {
  /** The routing table a lookup's result goes into. */
  readonly ranges: RangeTable;
  readonly calls: HostCalls;
  /** Runs one op on the meta range's leader (Router.execute). */
  readonly run: (op: RangeOp, deadline: Deadline) => Promise<RangeOpResult>;
  /** Reads every descriptor into the table (MetaClient's shared, rate-limited read): the fallback. Never rejects. */
  readonly readAll: (deadline: Deadline) => Promise<void>;
}

/** One routing miss waiting for a round: answered when its round ends, or by its deadline. */
interface Waiting {
  readonly miss: RouteMiss;
  readonly deadline: Deadline;
  readonly answered: () => void;
}

/**
 * Looks routing misses up in the meta range's end index, in rounds: one
 * round at a time, every miss that arrives meanwhile waiting for the next.
 * A round first drops the misses the table now answers (the round before
 * found their range: concurrent misses in one range share one lookup), then
 * looks the rest up in key order, each lookup's descriptor going into the
 * table before the next miss is checked. A lookup that finds no agreeing
 * descriptor, or the route that just failed, ends the round with one full
 * read of the descriptors.
 */
export class RangeLookups {
  private readonly queued: Waiting[] = [];
  private roundsRunning = false;
  private started = 0;
  private fellBack = 0;

  constructor(private readonly o: RangeLookupsOptions) {}

  /** Index reads started so far (each followed by at most one descriptor read). */
  get lookupsStarted(): number {
    return this.started;
  }

  /** Rounds that ended in a full read of the descriptors. */
  get fallbacks(): number {
    return this.fellBack;
  }

  /** Finds the range of `miss`'s target into the table, waiting no longer than `deadline`. Never rejects. */
  lookUp(miss: RouteMiss, deadline: Deadline): Promise<void> {
    let answered!: () => void;
    const done = new Promise<void>((resolve) => (answered = resolve));
    this.queued.push({ miss, deadline, answered });
    if (!this.roundsRunning) void this.runRounds();
    return this.o.calls.waitAtMost(deadline, done);
  }

  /** Runs rounds while misses wait; never rejects. The flag is cleared in the same turn the queue is found empty. */
  private async runRounds(): Promise<void> {
    this.roundsRunning = true;
    try {
      while (this.queued.length > 0) {
        // Bounded by the callers' concurrency: each request has at most one miss waiting.
        const round = this.queued.splice(0, this.queued.length);
        try {
          await this.runRound(round.filter((w) => !w.deadline.expired));
        } catch {
          // A round that fails (the meta range electing, the store closing) leaves the table as it was: each request retries.
        } finally {
          for (const w of round) w.answered();
        }
      }
    } finally {
      this.roundsRunning = false;
    }
  }

  private async runRound(round: readonly Waiting[]): Promise<void> {
    if (round.length === 0) return;
    // The round serves all of them: it runs as long as the most patient may wait.
    const deadline = round.reduce((a, b) => (b.deadline.remainingMs() > a.deadline.remainingMs() ? b : a)).deadline;
    const misses = round.map((w) => w.miss).sort((a, b) => compareTargets(a.target, b.target));
    let lookups = 0;
    for (const miss of misses) {
      if (missAnswered(this.o.ranges, miss)) continue;
      if (lookups === LOOKUPS_PER_ROUND_MAX) return this.fallBack(deadline);
      lookups++;
      const found = await this.lookUpOne(miss.target, deadline);
      // No agreeing entry, or the route that just failed (see the top of this file): the full read decides.
      if (found === undefined || sameRoute(found, miss.failed)) return this.fallBack(deadline);
      // Refused only for a fresher overlapping descriptor the table holds: the meta range is behind it, and the request waits.
      this.o.ranges.upsert(found);
    }
  }

  /**
   * The descriptor the index names for `target`, if it agrees with its
   * entry and holds the target; undefined otherwise (no entry, a stale or
   * malformed one, a bound too long to index). Reads are linearizable.
   */
  private async lookUpOne(target: RouteTarget, deadline: Deadline): Promise<RangeDescriptor | undefined> {
    const start = indexScanStart(target);
    if (start === undefined) return undefined;
    this.started++;
    const page = (await this.o.run({ kind: 'scan', rangeId: META_RANGE_ID, start, end: RANGE_END_KEYS.end, limit: 1, consistency: 'linearizable' }, deadline)) as { key: Uint8Array; value: Uint8Array }[];
    const first = page[0];
    if (first === undefined) return undefined;
    try {
      const end = decodeRangeEndKey(first.key);
      const entry = decodeRangeEndEntry(first.value);
      const stored = (await this.o.run({ kind: 'get', rangeId: META_RANGE_ID, key: rangeKey(entry.rangeId), consistency: 'linearizable' }, deadline)) as VersionedValue | undefined;
      if (stored === undefined) return undefined;
      const d = decodeRangeDescriptor(stored.value);
      const agrees = d.rangeId === entry.rangeId && d.epoch === entry.epoch && sameEnd(d.end, end) && holdsTarget(d, target);
      return agrees ? d : undefined;
    } catch (err) {
      // A malformed index entry is a hint lost, not a reason to fail the request: the full read does without it.
      if (err instanceof MetaRecordError) return undefined;
      throw err;
    }
  }

  private async fallBack(deadline: Deadline): Promise<void> {
    this.fellBack++;
    await this.o.readAll(deadline);
  }
}

/**
 * Where the index scan for `target` starts: the first entry at or past it
 * names the first range ending after the key (rangeEndKeyAfter), or at or
 * after the end (below: that range holds the keys just below it).
 * Undefined when the bound is too long for an index key.
 */
function indexScanStart(target: RouteTarget): Uint8Array | undefined {
  if (target.kind === 'key') return target.key.byteLength > INDEXED_KEY_BYTES_MAX ? undefined : rangeEndKeyAfter(target.key);
  if (target.end === null) return rangeEndKey(null);
  return target.end.byteLength > INDEXED_KEY_BYTES_MAX ? undefined : rangeEndKey(target.end);
}

function sameEnd(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a === null || b === null ? a === b : Buffer.compare(a, b) === 0;
}

/** Is `d`'s bounds short enough for the index (it gets an entry, and its span's entries can be scanned)? */
export function isIndexable(d: Pick<RangeDescriptor, 'start' | 'end'>): boolean {
  return d.start.byteLength <= INDEXED_KEY_BYTES_MAX && (d.end === null || d.end.byteLength <= INDEXED_KEY_BYTES_MAX);
}
