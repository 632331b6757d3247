import type { NodeId } from '@flotilla/core';
import type { CoreStats } from '../host/core-protocol.js';
import type { CoreOutputBuffer } from '../host/core-output.js';
import type { Group } from '../host/group.js';
import type { ShellLogger } from '../shell-logger.js';
import type { NodeStore } from '../storage/node-store.js';
import { readSnapshot } from './reader.js';
import { encodeSnapshotStreamHeader } from './stream-header.js';

/** What the sending side needs of its core. */
export interface OutgoingSnapshotsPort {
  readonly store: NodeStore;
  readonly self: NodeId;
  /** Stream ids are `coreIndex + coreCount * n`: distinct across the cores of a node. */
  readonly coreIndex: number;
  readonly coreCount: number;
  readonly stats: CoreStats;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'event'>;
  /** Raft was told how a stream to a follower ended: the group may have a Ready, and the loop must look. */
  onReported(g: Group): void;
}

interface OutgoingStream {
  readonly group: Group;
  readonly to: NodeId;
  readonly chunks: Generator<Uint8Array, unknown>;
  ended: boolean;
}

/**
 * The core's side of the snapshots it sends. Snapshot data streams on its
 * own connection, a chunk per credit from the Host; Raft sees only its
 * metadata, and hears how the stream ended (reportSnapshot).
 */
export class OutgoingSnapshots {
  private readonly streams = new Map<number, OutgoingStream>();
  private streamSeq = 0;

  constructor(private readonly port: OutgoingSnapshotsPort) {}

  /** Raft asked to send `to` a snapshot of `g` (a snapshot message): opens a stream, unless one runs. */
  start(g: Group, to: NodeId, term: number): void {
    if (g.snapshotsOut.has(to)) return; // already streaming; Raft resends only after we report
    const { coreIndex, coreCount, store, stats, log, out } = this.port;
    const streamId = coreIndex + coreCount * ++this.streamSeq;
    const chunks = readSnapshot(store, g.id);
    g.setSnapshotOut(to, streamId);
    this.streams.set(streamId, { group: g, to, chunks, ended: false });
    stats.snapshotsSent++;
    log.info({ rangeId: g.id, to, streamId }, 'streaming snapshot');
    out.event({ kind: 'snapshotOpen', streamId, to, header: encodeSnapshotStreamHeader({ shardId: g.id, from: this.port.self, term }) });
    this.onCredit(streamId);
  }

  /** The Host wrote the stream's last chunk: the next one, or the stream's end. */
  onCredit(streamId: number): void {
    const s = this.streams.get(streamId);
    if (s === undefined || s.ended) return;
    const next = s.chunks.next();
    if (next.done === true) {
      s.ended = true;
      this.port.out.event({ kind: 'snapshotEnd', streamId });
    } else {
      this.port.out.event({ kind: 'snapshotChunk', streamId, bytes: next.value });
    }
  }

  onDone(streamId: number, ok: boolean): void {
    const s = this.streams.get(streamId);
    if (s === undefined) return;
    this.end(streamId, ok ? { ok: true } : { ok: false, reason: 'stream failed' });
  }

  /** Aborts every stream of a group being destroyed. */
  endAll(g: Group, reason: string): void {
    for (const [streamId, s] of this.streams) if (s.group === g) this.end(streamId, { ok: false, reason });
  }

  /** The core is closing: every stream's read transaction is released, nothing is reported. */
  close(): void {
    for (const streamId of [...this.streams.keys()]) {
      const s = this.streams.get(streamId)!;
      this.streams.delete(streamId);
      s.chunks.return(undefined);
    }
  }

  private end(streamId: number, outcome: { ok: true } | { ok: false; reason: string }): void {
    const s = this.streams.get(streamId)!;
    this.streams.delete(streamId);
    s.chunks.return(undefined); // releases the read transaction
    s.group.deleteSnapshotOut(s.to);
    if (!outcome.ok && !s.ended) this.port.out.event({ kind: 'snapshotAbort', streamId, reason: outcome.reason });
    if (s.group.removed) return;
    this.port.log.info({ rangeId: s.group.id, to: s.to, streamId, ok: outcome.ok }, 'snapshot stream ended');
    if (s.group.raw.raft.tracker.progress.has(s.to)) {
      s.group.raw.reportSnapshot(s.to, outcome.ok ? 'finished' : 'failed');
      this.port.onReported(s.group);
    }
  }
}
