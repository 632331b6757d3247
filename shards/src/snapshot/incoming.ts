import { assert, type GroupId, type Message, type NodeId, type Ready } from '@flotilla/core';
import { OutcomeUnknownError } from '../errors.js';
import { describeRange, type ShardRange } from '../kv/range.js';
import type { CoreStats } from '../host/core-protocol.js';
import type { CoreOutputBuffer } from '../host/core-output.js';
import type { DiskGuard } from '../host/disk-guard.js';
import type { Group } from '../host/group.js';
import type { ShellLogger } from '../shell-logger.js';
import type { RangeBounds } from '../storage/codec.js';
import { boundsOutside, describeBounds, type NodeStore } from '../storage/node-store.js';
import { SnapshotOverlapError, describeClaim, overlappingClaim, staleUnder, type CoreClaims } from './claims.js';
import { SnapshotInstaller } from './installer.js';

/** What the receiving side needs of its core. */
export interface IncomingSnapshotsPort {
  readonly store: NodeStore;
  readonly self: NodeId;
  readonly stats: CoreStats;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'event' | 'fail'>;
  /** Every replica of this core's store. */
  readonly groups: ReadonlyMap<GroupId, Group>;
  /** What the replicas of this store own or claim: the overlap check of every chunk and the spared keys of every clear. */
  readonly claims: CoreClaims;
  readonly disk: Pick<DiskGuard, 'spaceShortfall'>;
  /** Runs a store write in the core's loop, between rounds. */
  schedule(task: () => Promise<void>): void;
  /** Lets a quiesced group tick again (its leader is not asked to). */
  wake(g: Group): void;
  /** Steps a message into the group as network input (refused, not asserted, when Raft rejects it). */
  step(g: Group, m: Message): void;
  /**
   * A replica an installed snapshot took over (claims.ts staleUnder): it applies nothing more and is destroyed
   * after the round, its data in the snapshot's range kept (it is the snapshot's now) and its keys in `outside` deleted.
   */
  supersede(g: Group, outside: readonly RangeBounds[]): void;
}

/**
 * The core's side of the snapshots it receives: a stream is received chunk
 * by chunk (SnapshotInstaller: staged, or straight into the data for a
 * replica that owns no keys yet), offered to Raft as a snapshot message once
 * complete, and installed by the round that handles the Ready in which Raft
 * accepted it. A stream that ends otherwise (refused, broken, replaced, its
 * replica removed) has what it received cleared.
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
    // staging area and receiving marker: a second transfer's first chunk would clear them under that install. Refused; the
    // leader retries once this replica answers. (Only here: while a stream is incoming, none is
    // accepted — accepting one ends it, and a newer stream replaces it before its end is handled.)
    if (g.accepted !== undefined) {
      out.event({ kind: 'snapshotChunkAck', streamId, error: `shard ${shardId} on node ${self} is installing a snapshot` });
      return;
    }
    // A newer transfer replaces an older one (the leader retried).
    if (g.incoming !== undefined) this.streams.delete(g.incoming.streamId);
    g.incoming = { streamId, installer: new SnapshotInstaller(this.port.store, shardId, { claims: this.port.claims }), from, term };
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
      // Replaced by a newer transfer, or the replica is going: this stream writes nothing more (whatever it
      // wrote, the newer transfer's first chunk or forget's clear deletes).
      if (g.incoming !== incoming || g.removed) {
        this.port.out.event({ kind: 'snapshotChunkAck', streamId, error: `snapshot stream ${streamId} of shard ${g.id} on node ${this.port.self} was replaced or its replica removed` });
        return;
      }
      try {
        const shortfall = this.port.disk.spaceShortfall(2 * bytes.byteLength);
        if (shortfall !== undefined) throw shortfall;
        // The overlap check runs inside the chunk's write transaction (installer.ts).
        await incoming.installer.addChunk(bytes);
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
      const refusal = this.overlapOf(g, incoming.installer);
      if (refusal !== undefined) {
        this.port.log.warn({ rangeId: g.id, streamId, err: refusal }, 'snapshot refused');
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

  /**
   * The group is being destroyed: its incoming stream, if any, is no longer
   * routed to it, and what it received straight into the data is cleared
   * next (destroyShard leaves it: which keys may go depends on the other
   * replicas' claims). Until then its marker still claims the keys.
   */
  forget(g: Group): void {
    if (g.incoming !== undefined) this.streams.delete(g.incoming.streamId);
    g.incoming = undefined;
    g.accepted = undefined;
    if (!this.port.store.receiving().has(g.id)) return;
    const installer = new SnapshotInstaller(this.port.store, g.id, { claims: this.port.claims });
    // A task, so it runs after the destroy that called this; a creation of the same shard queues after it.
    this.port.schedule(() => installer.clear());
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
    const startMs = performance.now();
    const header = await installer.install(rd.hardState ?? g.raw.raft.hardState());
    const durationMs = performance.now() - startMs;
    g.accepted = undefined;
    g.bounds = { start: header.bounds.start, end: header.bounds.end, epoch: header.epoch };
    g.frozen = header.frozen;
    g.resetLoad();
    const stale: Group[] = [];
    this.port.claims.forEachOwner(g.bounds, (other) => {
      if (other !== g && !other.removed && staleUnder(g.bounds, other.bounds)) stale.push(other);
    });
    const staleIds = new Set(stale.map((other) => other.id));
    for (const other of stale) {
      // Its keys past the snapshot's range, but for what another replica here (the snapshot's included) owns
      // or is receiving: the ranges they moved to since catch up here by snapshot, if this node holds them.
      const keep: RangeBounds[] = [];
      this.port.claims.forEachOther(other.id, other.bounds, (claim) => {
        if (!staleIds.has(claim.shardId)) keep.push(claim.bounds);
      });
      const outside = boundsOutside(other.bounds, keep);
      this.port.supersede(other, outside);
      this.port.log.info(
        { rangeId: other.id, byRangeId: g.id, epoch: other.bounds.epoch, byEpoch: g.bounds.epoch, ...(outside.length === 0 ? {} : { deleted: outside.map(describeBounds) }) },
        outside.length === 0 ? 'replica superseded by a snapshot of the range that merged it in' : 'stale replica superseded by a snapshot of a range that merged part of it in; its keys outside that range deleted',
      );
    }
    // Whatever waited on entries the snapshot replaced was decided elsewhere; its outcome is unknown here.
    for (const [index, p] of g.proposals) {
      if (index <= header.index) {
        // Not PROPOSAL_DROPPED: the entry may be in the snapshot, applied, and a retry would run it twice.
        for (const id of p.requestIds) this.port.out.fail(id, new OutcomeUnknownError(`entry ${index} of shard ${g.id} was superseded by snapshot ${header.index}`));
        g.deleteProposal(index);
      }
    }
    this.port.stats.snapshotsInstalled++;
    this.port.log.info({ rangeId: g.id, snapshotIndex: header.index, snapshotTerm: header.term, receiveMode: installer.receiveMode, durationMs: Math.round(durationMs * 10) / 10 }, 'snapshot installed');
  }

  /** Why the snapshot `installer` received may not be offered to Raft now (claims.ts), or undefined. */
  private overlapOf(g: Group, installer: SnapshotInstaller): SnapshotOverlapError | undefined {
    const h = installer.stagedHeader;
    const mode = installer.receiveMode;
    if (h === undefined || mode === undefined) return undefined;
    const range: ShardRange = { start: h.bounds.start, end: h.bounds.end, epoch: h.epoch };
    const claim = overlappingClaim(this.port.claims, g.id, range, mode);
    if (claim === undefined) return undefined;
    return new SnapshotOverlapError(
      `snapshot ${h.index} of shard ${g.id} covers ${describeRange(range)} (epoch ${range.epoch}), overlapping ${describeClaim(claim)} on node ${this.port.self}; retried once that shard catches up`,
    );
  }

  private drop(g: Group, streamId: number): void {
    this.streams.delete(streamId);
    if (g.incoming?.streamId === streamId) g.incoming = undefined;
  }
}
