import { ProposalDroppedError, assert, type GroupId, type Message, type NodeId, type Ready } from '@flotilla/core';
import { coversSpan, describeRange, isInitialized, overlaps, type ShardRange } from '../kv/range.js';
import type { CoreStats } from '../host/core-protocol.js';
import type { CoreOutputBuffer } from '../host/core-output.js';
import type { DiskGuard } from '../host/disk-guard.js';
import type { Group } from '../host/group.js';
import type { ShellLogger } from '../shell-logger.js';
import type { NodeStore } from '../storage/node-store.js';
import { SnapshotInstaller } from './installer.js';

/**
 * Whether a snapshot of `by` takes over `r`, another replica's range in the
 * same store: it covers all of `r` at a higher epoch. Ranges only grow by a
 * merge, and a merge commits only once the range it takes in is frozen, so
 * that replica is of a range merged into the snapshot's, only behind: its
 * data is in the snapshot, and it will never serve again.
 */
function superseded(r: ShardRange, by: ShardRange): boolean {
  return isInitialized(r) && isInitialized(by) && r.epoch < by.epoch && coversSpan(by, r.start, r.end);
}

/** A snapshot that would overlap another replica's range in this core's store (see checkRange). */
class SnapshotOverlapError extends Error {
  readonly code = 'SNAPSHOT_OVERLAP';
}

/** What the receiving side needs of its core. */
export interface IncomingSnapshotsPort {
  readonly store: NodeStore;
  readonly self: NodeId;
  readonly stats: CoreStats;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'event' | 'fail'>;
  /** Every replica of this core's store: a snapshot's range must not overlap another's. */
  readonly groups: ReadonlyMap<GroupId, Group>;
  readonly disk: Pick<DiskGuard, 'spaceShortfall'>;
  /** Runs a store write in the core's loop, between rounds. */
  schedule(task: () => Promise<void>): void;
  /** Lets a quiesced group tick again (its leader is not asked to). */
  wake(g: Group): void;
  /** Steps a message into the group as network input (refused, not asserted, when Raft rejects it). */
  step(g: Group, m: Message): void;
  /** A replica whose range an installed snapshot took over (see superseded): it applies nothing more and is destroyed after the round, its data kept. */
  supersede(g: Group): void;
}

/**
 * The core's side of the snapshots it receives: a stream is staged chunk by
 * chunk (SnapshotInstaller), offered to Raft as a snapshot message once
 * complete, and installed by the round that handles the Ready in which Raft
 * accepted it.
 */
export class IncomingSnapshots {
  /** The group each incoming stream stages into (the group's `incoming` names the stream it still takes). */
  private readonly streams = new Map<number, Group>();

  constructor(private readonly port: IncomingSnapshotsPort) {}

  onIncoming(streamId: number, shardId: GroupId, from: NodeId, term: number): void {
    const { groups, self, out } = this.port;
    const g = groups.get(shardId);
    if (g === undefined || g.removed) {
      out.event({ kind: 'snapshotChunkAck', streamId, error: `shard ${shardId} is not on node ${self}` });
      return;
    }
    // A snapshot accepted by Raft but not installed yet (the next round installs it) owns the shard's
    // staging area: a second transfer staging now would clear it under that install. Refused; the
    // leader retries once this replica answers. (Only here: while a stream is incoming, none is
    // accepted — accepting one ends it, and a newer stream replaces it before its end is handled.)
    if (g.accepted !== undefined) {
      out.event({ kind: 'snapshotChunkAck', streamId, error: `shard ${shardId} on node ${self} is installing a snapshot` });
      return;
    }
    // A newer transfer replaces an older one (the leader retried).
    if (g.incoming !== undefined) this.streams.delete(g.incoming.streamId);
    g.incoming = { streamId, installer: new SnapshotInstaller(this.port.store, shardId), from, term };
    this.streams.set(streamId, g);
    this.port.wake(g);
  }

  onChunk(streamId: number, bytes: Uint8Array): void {
    const g = this.streams.get(streamId);
    if (g === undefined || g.incoming?.streamId !== streamId) {
      this.port.out.event({ kind: 'snapshotChunkAck', streamId, error: 'no such snapshot stream' });
      return;
    }
    const incoming = g.incoming;
    this.port.schedule(async () => {
      try {
        const shortfall = this.port.disk.spaceShortfall(2 * bytes.byteLength);
        if (shortfall !== undefined) throw shortfall;
        await incoming.installer.addChunk(bytes);
        this.checkRange(g, incoming.installer);
        this.port.out.event({ kind: 'snapshotChunkAck', streamId });
      } catch (err) {
        this.port.log.warn({ rangeId: g.id, streamId, err }, 'snapshot chunk refused');
        this.drop(g, streamId);
        this.port.out.event({ kind: 'snapshotChunkAck', streamId, error: (err as Error).message });
        // Unless a newer transfer took over (it stages under the same shard).
        if (g.incoming === undefined) await incoming.installer.clear();
      }
    });
  }

  onEnd(streamId: number, ok: boolean): void {
    const g = this.streams.get(streamId);
    if (g === undefined || g.incoming?.streamId !== streamId) return;
    const incoming = g.incoming;
    this.port.schedule(async () => {
      if (g.incoming !== incoming) return;
      const header = incoming.installer.stagedHeader;
      if (!ok || !incoming.installer.isComplete || header === undefined) {
        this.drop(g, streamId);
        await incoming.installer.clear();
        return;
      }
      this.streams.delete(streamId);
      g.incoming = undefined;
      try {
        this.checkRange(g, incoming.installer);
      } catch (err) {
        this.port.log.warn({ rangeId: g.id, streamId, err }, 'snapshot refused');
        await incoming.installer.clear();
        return;
      }
      this.port.step(g, {
        type: 'snapshot',
        from: incoming.from,
        to: this.port.self,
        term: incoming.term,
        snapshot: { metadata: { index: header.index, term: header.term, confState: header.confState }, data: new Uint8Array(0) },
      });
      if (g.raw.raft.log.unstable.snapshot?.metadata.index === header.index) {
        g.accepted = incoming.installer;
      } else {
        await incoming.installer.clear();
      }
    });
  }

  /** The group is being destroyed: its incoming stream, if any, is no longer routed to it. */
  forget(g: Group): void {
    if (g.incoming !== undefined) this.streams.delete(g.incoming.streamId);
  }

  /**
   * Installs the staged snapshot Raft restored in `rd` (the round calls this
   * before its group commit). Proposals its entries replaced fail.
   */
  async install(g: Group, rd: Ready): Promise<void> {
    const installer = g.accepted;
    const snapshot = rd.snapshot!;
    assert(installer !== undefined, () => `shard ${g.id}: Raft restored snapshot ${snapshot.metadata.index} that was never staged`);
    assert(installer.stagedHeader?.index === snapshot.metadata.index, () => `shard ${g.id}: staged snapshot ${installer.stagedHeader?.index} is not Raft's ${snapshot.metadata.index}`);
    const header = await installer.install(rd.hardState ?? g.raw.raft.hardState());
    g.accepted = undefined;
    g.bounds = { start: header.bounds.start, end: header.bounds.end, epoch: header.epoch };
    g.frozen = header.frozen;
    g.resetLoad();
    for (const other of this.port.groups.values()) {
      if (other === g || other.removed || !superseded(other.bounds, g.bounds)) continue;
      this.port.supersede(other);
      this.port.log.info({ rangeId: other.id, byRangeId: g.id, epoch: other.bounds.epoch, byEpoch: g.bounds.epoch }, 'replica superseded by a snapshot of the range that merged it in');
    }
    // Whatever waited on entries the snapshot replaced was decided elsewhere; its outcome is unknown here.
    for (const [index, p] of g.proposals) {
      if (index <= header.index) {
        for (const id of p.requestIds) this.port.out.fail(id, new ProposalDroppedError(`entry ${index} of shard ${g.id} was superseded by snapshot ${header.index}`));
        g.deleteProposal(index);
      }
    }
    this.port.stats.snapshotsInstalled++;
    this.port.log.info({ rangeId: g.id, snapshotIndex: header.index, snapshotTerm: header.term }, 'snapshot installed');
  }

  /**
   * Ranges in one store are disjoint: user data is keyed by user key alone.
   * A snapshot whose range overlaps another replica's here is refused (the
   * leader retries later): that replica has not applied a split the
   * snapshot's shard came from, and installing now would let its older
   * entries overwrite the snapshot's data. It fits once that replica
   * applies the split or installs a snapshot of its own past it (TiKV's
   * snapshot overlap check).
   */
  private checkRange(g: Group, installer: SnapshotInstaller): void {
    const h = installer.stagedHeader;
    if (h === undefined) return;
    const range: ShardRange = { start: h.bounds.start, end: h.bounds.end, epoch: h.epoch };
    for (const other of this.port.groups.values()) {
      if (other === g || other.removed) continue;
      const pending = other.accepted?.stagedHeader;
      const claimed = [other.bounds, ...(pending === undefined ? [] : [{ start: pending.bounds.start, end: pending.bounds.end, epoch: pending.epoch }])];
      for (const r of claimed) {
        // A replica the snapshot's range merged in (see superseded) gives way when it installs.
        if (r === other.bounds && superseded(r, range)) continue;
        if (overlaps(r, range)) {
          throw new SnapshotOverlapError(
            `snapshot ${h.index} of shard ${g.id} covers ${describeRange(range)} (epoch ${range.epoch}), overlapping shard ${other.id}'s ${describeRange(r)} (epoch ${r.epoch}) on node ${this.port.self}; retried once that shard catches up`,
          );
        }
      }
    }
  }

  private drop(g: Group, streamId: number): void {
    this.streams.delete(streamId);
    if (g.incoming?.streamId === streamId) g.incoming = undefined;
  }
}
