import { decodeCommand, isCommitMergeCommand, isRangeCommand, type CommitMergeCommand } from '../kv/command.js';
import { commitMergeRefusal, sourceCaughtUp } from '../kv/merge.js';
import type { GroupId, LogIndex, Ready } from '@flotilla/core';
import type { ShellLogger } from '../shell-logger.js';
import type { NodeStore } from '../storage/node-store.js';
import type { CoreStats } from './core-protocol.js';
import type { Group } from './group.js';

/** What the gate needs of its core. */
export interface MergeGatePort {
  readonly groups: ReadonlyMap<GroupId, Group>;
  readonly store: Pick<NodeStore, 'shardState'>;
  readonly log: ShellLogger;
  readonly stats: Pick<CoreStats, 'mergesHeld'>;
  /** The group gets a round soon (a held target applies again; a source catches up). */
  touch(g: Group): void;
  /** A quiesced group ticks again: a source behind its freeze must hear its leader. */
  wake(g: Group): void;
}

/**
 * Where a merge waits on this node (kv/merge.ts): a target's replica
 * applies a commitMerge only once this node's replica of the source has
 * applied its freeze. Before a round applies a group's committed entries,
 * the gate looks for a commitMerge among them and holds the group's apply
 * at it (RawNode.holdApply) while the source is behind; after each round it
 * lets the held targets whose source caught up go on.
 *
 * Whether a commitMerge is refused anyway (a stale epoch, other voters) is
 * judged from the target's state just before the entry, as applying it
 * will be: only a merge that would apply is held, so a refused one never
 * waits on a source that may be gone. That state is the group's present
 * one only when nothing before the entry in this Ready changes the range
 * or its members; otherwise the gate cuts the Ready there and looks again
 * next round, once those entries applied.
 */
export class MergeGate {
  /** Targets held, by their source's shard id. */
  private readonly held = new Map<GroupId, { readonly target: Group; readonly command: CommitMergeCommand; readonly index: LogIndex }>();
  /** Targets cut short this round, to go on in the next one. */
  private readonly cut: Group[] = [];

  constructor(private readonly port: MergeGatePort) {}

  /** The part of `rd` to apply now: all of it, or its committed entries up to a commitMerge that must wait. */
  check(g: Group, rd: Ready): Ready {
    const entries = rd.committedEntries;
    let shapeChanged = false;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.type === 'confChange') {
        shapeChanged = true;
        continue;
      }
      if (!isCommitMergeCommand(e.data)) {
        if (isRangeCommand(e.data)) shapeChanged = true;
        continue;
      }
      if (shapeChanged) {
        this.cut.push(g);
        return g.raw.holdApply(e.index);
      }
      shapeChanged = true;
      const c = decodeCommand(e.index, e.data) as CommitMergeCommand;
      if (commitMergeRefusal(c, g.id, g.bounds, this.port.store.shardState(g.id).confState, g.frozen) !== undefined) continue;
      if (this.sourceReady(g, c)) continue;
      this.held.set(c.sourceShardId as GroupId, { target: g, command: c, index: e.index });
      this.port.stats.mergesHeld++;
      const source = this.port.groups.get(c.sourceShardId as GroupId);
      if (source !== undefined && !source.removed) {
        // The merge is the proof that the source committed its freeze: a replica that holds the freeze in
        // its log but never heard it committed (its peers took their replicas in already, or a power loss
        // rolled its commit back) applies up to it from its own log, as TiKV's CatchUpLogs.
        source.raw.commitKnown(c.freezeIndex, c.freezeTerm);
        this.port.wake(source);
        this.port.touch(source);
      }
      this.port.log.info(
        { rangeId: g.id, sourceRangeId: c.sourceShardId, freezeIndex: c.freezeIndex, sourceApplied: source?.storage.applied, sourceHere: source !== undefined },
        'merge waits for the source range to catch up here',
      );
      return g.raw.holdApply(e.index);
    }
    return rd;
  }

  /** After a round advanced its groups: targets cut short or whose source caught up apply again. */
  afterRound(): void {
    for (const g of this.cut.splice(0)) this.resume(g);
    if (this.held.size === 0) return;
    for (const [sourceId, h] of this.held) {
      // A snapshot that passed the merge released it (RaftLog.restore); a removed target waits for nothing.
      if (h.target.removed || h.target.raw.applyHeldAt !== h.index) {
        this.held.delete(sourceId);
        continue;
      }
      if (!this.sourceReady(h.target, h.command)) continue;
      this.held.delete(sourceId);
      this.port.log.info({ rangeId: h.target.id, sourceRangeId: sourceId }, 'merge goes on: the source range caught up here');
      this.resume(h.target);
    }
  }

  /** Targets held now (tests, stats). */
  get heldCount(): number {
    return this.held.size;
  }

  private sourceReady(target: Group, c: CommitMergeCommand): boolean {
    const source = this.port.groups.get(c.sourceShardId as GroupId);
    if (source === undefined || source.removed) return false;
    return sourceCaughtUp(c, target.id, target.bounds.end, { range: source.bounds, frozen: source.frozen, applied: source.storage.applied });
  }

  private resume(g: Group): void {
    if (g.removed) return;
    g.raw.resumeApply();
    this.port.touch(g);
  }
}
