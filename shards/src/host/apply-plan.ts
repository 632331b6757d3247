import { assert, decodeConfChange, type ConfState, type Entry, type GroupId, type LogIndex, type NodeId, type Ready } from '@flotilla/core';
import { isChecksumCommand } from '../kv/command.js';
import type { ReplicaChecksums } from '../kv/consistency.js';
import { describeRange, type ShardRange } from '../kv/range.js';
import { isBatchResult, type ApplyBatch, type ApplyOutcome, type ApplyResults, type EntryResult } from '../kv/state-machine.js';
import { addsBack, isMember, type ReplicaLifecycle } from '../replica/lifecycle.js';
import type { ShellLogger } from '../shell-logger.js';
import type { CoreStats } from './core-protocol.js';
import type { CoreOutputBuffer } from './core-output.js';
import { entryBytes } from './disk-guard.js';
import type { Group } from './group.js';

/** A group in this round, with its Ready. */
export interface GroupReady {
  readonly g: Group;
  readonly rd: Ready;
}

/** One apply transaction of a round (see ApplyPlan.segments): a piece of some groups' committed entries, and the checksum entries it ends at. */
export interface ApplySegment {
  readonly pieces: (Omit<ApplyBatch, 'shardId' | 'range'> & { readonly g: Group })[];
  readonly checksums: { readonly g: Group; readonly index: LogIndex }[];
}

/** What the apply plan needs of its core. */
export interface ApplyPlanPort {
  readonly self: NodeId;
  readonly stats: CoreStats;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'event'>;
  readonly groups: ReadonlyMap<GroupId, Group>;
  readonly checksums: Pick<ReplicaChecksums, 'capture'>;
  /** A replica whose applied configuration drops this node, or that a merge took in, is destroyed after the round's commit. */
  readonly replicas: Pick<ReplicaLifecycle, 'noteRemovedByApply' | 'noteMergedAway'>;
  /** A shard a split created here joins the core (the apply wrote its store data), not ticking yet. */
  addGroup(shardId: GroupId, bounds: ShardRange): Group;
  /** The new replica ticks; with `campaignSoon` it campaigns within a tick or so (Quiescence.campaignSoon). */
  start(g: Group, options: { campaignSoon: boolean }): void;
}

/**
 * How a round applies its groups' committed entries: cut into transactions
 * (segments), and what each commit changed besides data — group sizes and
 * ranges, shards a split created, consistency checks to capture. The round
 * (ShardCore) stages, writes and commits each segment; this only plans and
 * keeps the books, and never waits.
 */
export class ApplyPlan {
  constructor(private readonly port: ApplyPlanPort) {}

  /**
   * The round's committed entries as apply transactions: one, unless a
   * checksum entry is among them. A checksum entry ends its transaction (the
   * entries after it, in any group, go in the next), so a snapshot taken
   * right after that commit holds the range exactly as of the checksum's
   * index on every replica — wherever each replica's Readys happened to cut
   * the log. Checksums are rare (one per range per check interval), so the
   * extra transaction and sync almost never happen. Raft takes each conf
   * change here, as it is planned for apply; a configuration without this
   * node marks the replica for removal after the commit, unless its log
   * past these entries adds the node back (lifecycle.ts addsBack).
   */
  segments(items: readonly GroupReady[]): ApplySegment[] {
    const { self, stats, replicas } = this.port;
    const segments: ApplySegment[] = [{ pieces: [], checksums: [] }];
    for (const { g, rd } of items) {
      if (rd.committedEntries.length === 0) continue;
      let confAt: Map<LogIndex, ConfState> | undefined;
      let confState: ConfState | undefined;
      for (const e of rd.committedEntries) {
        if (e.type !== 'confChange') continue;
        confState = g.raw.applyConfChange(decodeConfChange(e.data));
        (confAt ??= new Map()).set(e.index, confState);
      }
      if (confState !== undefined && !isMember(confState, self)) {
        const { log } = g.raw.raft;
        if (!addsBack(log.slice(rd.committedEntries.at(-1)!.index + 1, log.lastIndex() + 1, Number.MAX_SAFE_INTEGER), self)) replicas.noteRemovedByApply(g);
      }
      stats.entriesApplied += rd.committedEntries.length;
      let from = 0;
      let segment = 0;
      const cut = (to: number, checksum: boolean) => {
        const entries = rd.committedEntries.slice(from, to);
        if (segments[segment] === undefined) segments[segment] = { pieces: [], checksums: [] };
        segments[segment]!.pieces.push({ g, entries, confState: lastConfIn(entries, confAt), confAt });
        if (checksum) segments[segment]!.checksums.push({ g, index: entries[entries.length - 1]!.index });
        from = to;
        segment++;
      };
      for (let i = 0; i < rd.committedEntries.length; i++) {
        const e = rd.committedEntries[i]!;
        if (e.type === 'normal' && isChecksumCommand(e.data)) cut(i + 1, true);
      }
      if (from < rd.committedEntries.length) cut(rd.committedEntries.length, false);
    }
    return segments;
  }

  /**
   * A segment's transaction committed (with `outcome` if it applied
   * anything): its results join the round's, and its checksum entries are
   * captured. Nothing has written to the store since that commit, so each
   * check's snapshot holds the data exactly as of its entry.
   */
  onCommitted(segment: ApplySegment, outcome: ApplyOutcome | undefined, results: ApplyResults): void {
    if (outcome !== undefined) {
      mergeResults(results, outcome.results);
      this.afterApply(outcome);
    }
    for (const { g, index } of segment.checksums) this.captureChecksum(g, index, results.get(g.id)?.get(index));
  }

  /**
   * What applying changed besides data: ranges that moved (a split's left
   * half, a conf change's epoch) and shards a split created here, which join
   * this core at once. The replica that led the split campaigns for the right
   * half right away (TiKV does the same): the others are applying the same
   * split about now, and an election timeout would leave the new range
   * without a leader for nothing.
   */
  private afterApply(outcome: ApplyOutcome): void {
    const { groups, out, log } = this.port;
    for (const [shardId, delta] of outcome.sizes) {
      const sizes = groups.get(shardId)?.sizes;
      if (sizes === undefined) continue;
      sizes.keyCount += delta.keyCount;
      sizes.sizeBytes += delta.sizeBytes;
    }
    for (const [shardId, frozen] of outcome.frozen) {
      const g = groups.get(shardId);
      if (g === undefined) continue;
      g.frozen = frozen;
      log.info({ rangeId: shardId, targetRangeId: frozen.targetShardId, freezeIndex: frozen.index, epoch: frozen.epoch }, 'range frozen for a merge');
    }
    for (const shardId of outcome.unfrozen) {
      const g = groups.get(shardId);
      if (g === undefined) continue;
      g.frozen = undefined;
      log.info({ rangeId: shardId }, 'merge rolled back: the range serves again');
    }
    for (const { target, source } of outcome.merged) {
      const t = groups.get(target);
      const s = groups.get(source);
      if (s === undefined) continue;
      // The source's keys are the target's now: so are their counts.
      if (t?.sizes !== undefined) {
        if (s.sizes === undefined) t.sizes = undefined;
        else {
          t.sizes.keyCount += s.sizes.keyCount;
          t.sizes.sizeBytes += s.sizes.sizeBytes;
        }
      }
      this.port.replicas.noteMergedAway(s);
      log.info({ rangeId: target, sourceRangeId: source }, 'range merged in');
    }
    for (const [shardId, range] of outcome.ranges) {
      const g = groups.get(shardId);
      if (g === undefined) continue;
      // A split moved part of the data (and of the load) away: count again when next asked.
      if (Buffer.compare(g.bounds.start, range.start) !== 0 || !sameEnd(g.bounds.end, range.end)) g.resetLoad();
      g.bounds = range;
    }
    for (const c of outcome.created) {
      const g = this.port.addGroup(c.shardId, c.range);
      if (!isMember(g.raw.raft.tracker.confState(), this.port.self)) {
        // The split's configuration does not name this node: its replica of the parent applied the
        // split while catching up from before its removal to its re-adding. The right half never had
        // it (TiKV skips creating such a peer), and its placement driver would not collect it (same
        // epoch as the range): it goes, data and all, as a replica that applied its own removal does.
        out.event({ kind: 'shardCreated', shardId: c.shardId, parent: c.parent });
        this.port.replicas.noteRemovedByApply(g);
        log.info({ rangeId: c.shardId, parent: c.parent }, 'range a split created without this node is removed');
        continue;
      }
      // The parent's leader's replica of the right half campaigns, but not in this round: a follower that
      // has not applied the split yet has no replica to vote with, drops the request, and the right half
      // then waits out an election timeout (split bench: p99 1.6 s while splitting, against 0.07-0.26 s
      // campaigning on the next tick). Followers apply the split from the commit index the leader's next
      // message carries.
      this.port.start(g, { campaignSoon: groups.get(c.parent)?.isLeader === true });
      out.event({ kind: 'shardCreated', shardId: c.shardId, parent: c.parent });
      log.info({ rangeId: c.shardId, parent: c.parent, range: describeRange(c.range), epoch: c.range.epoch }, 'range created by a split');
    }
  }

  /** A checksum entry applied and committed: this replica snapshots its range now and hashes it over the next ticks. */
  private captureChecksum(g: Group, index: LogIndex, result: EntryResult | undefined): void {
    assert(result !== undefined, () => `shard ${g.id}: checksum entry ${index} applied without a result`);
    assert(!isBatchResult(result), () => `shard ${g.id}: checksum entry ${index} applied as a batch`);
    // A malformed id was refused alike on every replica: nothing to hash.
    if (!result.ok || !('checksum' in result)) return;
    const c = result.checksum;
    this.port.checksums.capture(g.id, { id: c.id, index, bounds: { start: c.start, end: c.end } });
    this.port.log.debug({ rangeId: g.id, checksumId: c.id, index }, 'checksum captured');
  }
}

/** A segment's batches for the state machine, with each group's range as it is now (after the segments before it). */
export function segmentBatches(segment: ApplySegment): ApplyBatch[] {
  return segment.pieces.map((p) => ({ ...p, shardId: p.g.id, range: p.g.bounds, frozen: p.g.frozen ?? null }));
}

/** Estimated bytes a segment's entries take once applied (the disk guard's measure). */
export function segmentBytes(segment: ApplySegment): number {
  return segment.pieces.reduce((sum, p) => sum + entryBytes(p.entries), 0);
}

function sameEnd(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a === null || b === null ? a === b : Buffer.compare(a, b) === 0;
}

/** Adds one transaction's apply results to the round's. */
function mergeResults(results: ApplyResults, more: ApplyResults): void {
  for (const [shardId, shardResults] of more) {
    const merged = results.get(shardId);
    if (merged === undefined) results.set(shardId, shardResults);
    else for (const [index, result] of shardResults) merged.set(index, result);
  }
}

/** The configuration after the last conf change among `entries`, if any. */
function lastConfIn(entries: readonly Entry[], confAt: ReadonlyMap<LogIndex, ConfState> | undefined): ConfState | undefined {
  if (confAt === undefined) return undefined;
  for (let i = entries.length - 1; i >= 0; i--) {
    const conf = confAt.get(entries[i]!.index);
    if (conf !== undefined) return conf;
  }
  return undefined;
}
