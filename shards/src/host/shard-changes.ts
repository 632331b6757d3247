// What a core tells the Host of its replicas: each one's status and, where it
// leads, its range report, for only the replicas that changed since the Host
// last asked. The Host's copy (shard-view.ts) then costs a node's duties work
// in proportion to what changed, not to how many replicas it holds.
import { NONE, type NodeId } from '@flotilla/core';
import type { RangeReport } from '@flotilla/placement';
import type { KvStateMachine } from '../kv/state-machine.js';
import type { ShardStatus } from './core-protocol.js';
import type { Group } from './group.js';
import { rangeReportOf } from './range-reports.js';

/** One replica as it is now: its status, and its range report while it leads (null otherwise). */
export interface ShardChange {
  readonly status: ShardStatus;
  readonly report: RangeReport | null;
}

/** A core's answer to 'changes': replicas changed and ids removed since the last answer; with `full`, every replica (asked for, or the core lost count). */
export interface CoreChanges {
  readonly changed: readonly ShardChange[];
  readonly removed: readonly number[];
  readonly full: boolean;
}

/** Removed ids a core remembers for the Host at most: a Host that never asks (a bare Host, no node duties) must not make it grow for ever. */
const REMOVED_REMEMBERED_MAX = 65_536;

export function statusOf(g: Group): ShardStatus {
  // A replica whose Raft node is not built yet is a dormant follower of its stored state: answered from the
  // store, so listing a core's replicas builds none of them.
  const s = g.loaded ? g.raw.status() : undefined;
  const stored = s === undefined ? g.storage.initialState() : undefined;
  const config = s?.config ?? stored!.confState;
  return {
    shardId: g.id,
    role: s?.softState.role ?? 'follower',
    leader: s?.softState.leader ?? NONE,
    term: (s ?? stored!).hardState.term,
    commit: (s ?? stored!).hardState.commit,
    applied: s?.applied ?? g.storage.applied,
    lastIndex: s?.lastIndex ?? g.storage.lastIndex(),
    firstIndex: g.storage.firstIndex(),
    quiesced: g.quiesced,
    voters: [...config.voters],
    learners: [...config.learners],
    start: g.bounds.start,
    end: g.bounds.end,
    epoch: g.bounds.epoch,
    ...(g.frozen === undefined ? {} : { frozen: g.frozen }),
  };
}

/**
 * The core's record of which replicas changed. Everything that can change a
 * status or a report goes through the core loop's touched set (a message
 * stepped, a tick, a round, a creation, a quiesce) or is a request addressed
 * to the shard (a write counted, a lease read counted): both mark here. A
 * quiesced replica nobody addresses is never visited.
 */
export class ShardChangeTracker {
  private readonly changed = new Set<Group>();
  private readonly removed = new Set<number>();
  /** Removed ids were dropped (REMOVED_REMEMBERED_MAX): the next answer is every replica. */
  private lost = false;

  mark(g: Group): void {
    this.changed.add(g);
  }

  /** The replica left this core (destroyed). */
  forget(g: Group): void {
    this.changed.delete(g);
    this.removed.add(g.id);
    if (this.removed.size > REMOVED_REMEMBERED_MAX) {
      this.removed.clear();
      this.lost = true;
    }
  }

  /** What changed since the last take (every live replica with `full`), and starts over. */
  take(groups: ReadonlyMap<number, Group>, sm: Pick<KvStateMachine, 'scan'>, o: { self: NodeId; splitKeyMinBytes: number; full: boolean }): CoreChanges {
    const full = o.full || this.lost;
    const changed: ShardChange[] = [];
    const removed = full ? [] : [...this.removed];
    for (const g of full ? groups.values() : this.changed) {
      if (g.removed) removed.push(g.id);
      else changed.push({ status: statusOf(g), report: g.isLeader ? rangeReportOf(g, sm, o) : null });
    }
    this.changed.clear();
    this.removed.clear();
    this.lost = false;
    return { changed, removed, full };
  }
}
