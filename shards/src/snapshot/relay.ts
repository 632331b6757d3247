import { sleep, type Clock } from '@flotilla/core';
import type { SnapshotReceiver, SnapshotSender, Transport } from '@flotilla/transport';
import type { CoreEvent, CoreOutEvent } from '../host/core-protocol.js';
import type { ShellLogger } from '../shell-logger.js';
import { ByteRateLimiter } from './rate-limit.js';
import { decodeSnapshotStreamHeader } from './stream-header.js';

/** Snapshot bandwidth a node sends by default: half a 1 Gbit/s link, well under a disk's write rate (TiKV's default is 100 MB/s). */
export const SNAPSHOT_BYTES_PER_SEC_DEFAULT = 64 * 1024 * 1024;

/** The core events that belong to a snapshot stream. */
export type SnapshotOutEvent = Extract<CoreOutEvent, { kind: 'snapshotOpen' | 'snapshotChunk' | 'snapshotEnd' | 'snapshotAbort' | 'snapshotChunkAck' }>;

/** What the relay needs of the Host: the transport's streams, the way to a core, and whether the Host closed. */
export interface SnapshotRelayPort {
  readonly log: ShellLogger;
  /** What the rate limit measures time with. */
  readonly clock: Clock;
  /** Snapshot bytes this node sends per second, over all streams (default SNAPSHOT_BYTES_PER_SEC_DEFAULT). */
  readonly bytesPerSecMax: number | undefined;
  readonly transport: Pick<Transport, 'openSnapshot'>;
  /** The core that owns a shard (incoming streams go there). */
  coreOf(shardId: number): number;
  /** Queues an event for a core's next post. */
  postEvent(core: number, e: CoreEvent): void;
  isClosed(): boolean;
}

/**
 * The Host's side of snapshot streams: it relays them between the cores and
 * the transport. Outgoing: a core opens a stream and hands it chunks one at
 * a time; each goes out once the node's snapshot rate limit allows, and the
 * core hears (snapshotCredit) when to send the next. Incoming: the transport's
 * chunks go to the owning core one at a time, the next pulled once the core
 * acknowledged it staged the last.
 */
export class SnapshotRelay {
  /** Outgoing streams by the id their core gave them. */
  private readonly senders = new Map<number, SnapshotSender>();
  /** Incoming streams waiting for their core to stage a chunk: resolves with the core's error, if any. */
  private readonly chunkAcks = new Map<number, (error: string | undefined) => void>();
  private nextIncomingStreamId = 1;
  private readonly limiter: ByteRateLimiter;

  constructor(private readonly port: SnapshotRelayPort) {
    const bytesPerSec = port.bytesPerSecMax ?? SNAPSHOT_BYTES_PER_SEC_DEFAULT;
    this.limiter = new ByteRateLimiter({
      bytesPerSec,
      burstBytes: bytesPerSec,
      nowMs: () => port.clock.nowMs(),
      sleep: (ms) => sleep(port.clock, ms),
    });
  }

  onCoreEvent(coreIndex: number, e: SnapshotOutEvent): void {
    switch (e.kind) {
      case 'snapshotOpen':
        this.senders.set(e.streamId, this.port.transport.openSnapshot(e.to, e.header));
        return;
      case 'snapshotChunk': {
        const sender = this.senders.get(e.streamId);
        if (sender === undefined) return;
        // The node's snapshot bandwidth bound applies before each chunk leaves (a stream aborted meanwhile fails its write).
        this.limiter
          .take(e.bytes.byteLength)
          .then(() => sender.write(e.bytes))
          .then(
            () => this.port.postEvent(coreIndex, { kind: 'snapshotCredit', streamId: e.streamId }),
            (err: unknown) => this.onSendFailed(coreIndex, e.streamId, err),
          );
        return;
      }
      case 'snapshotEnd': {
        const sender = this.senders.get(e.streamId);
        if (sender === undefined) return;
        sender.end().then(
          () => {
            this.senders.delete(e.streamId);
            this.port.postEvent(coreIndex, { kind: 'snapshotDone', streamId: e.streamId, ok: true });
          },
          (err: unknown) => this.onSendFailed(coreIndex, e.streamId, err),
        );
        return;
      }
      case 'snapshotAbort':
        this.senders.get(e.streamId)?.abort(e.reason);
        this.senders.delete(e.streamId);
        return;
      case 'snapshotChunkAck':
        this.chunkAcks.get(e.streamId)?.(e.error);
        return;
      default: {
        const never: never = e;
        throw new Error(`unknown snapshot event ${JSON.stringify(never)}`);
      }
    }
  }

  /** An incoming snapshot: chunks go to the owning core one at a time, the next pulled once it is staged. */
  async onSnapshot(stream: SnapshotReceiver): Promise<void> {
    const { port } = this;
    const header = decodeSnapshotStreamHeader(stream.header);
    const iterator = stream.chunks[Symbol.asyncIterator]();
    if (header === undefined || header.from !== stream.from || port.isClosed()) {
      port.log.warn({ peer: stream.from }, 'snapshot stream refused: malformed header');
      await iterator.return?.();
      return;
    }
    const core = port.coreOf(header.shardId);
    const streamId = this.nextIncomingStreamId++;
    port.postEvent(core, { kind: 'snapshotIncoming', streamId, shardId: header.shardId, from: header.from, term: header.term });
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done === true) break;
        const acked = new Promise<string | undefined>((resolve) => this.chunkAcks.set(streamId, resolve));
        port.postEvent(core, { kind: 'snapshotChunk', streamId, bytes: next.value });
        const error = await acked;
        if (error !== undefined) {
          port.log.warn({ peer: stream.from, rangeId: header.shardId, error }, 'snapshot stream abandoned');
          await iterator.return?.();
          port.postEvent(core, { kind: 'snapshotEnd', streamId, ok: false });
          return;
        }
      }
      port.postEvent(core, { kind: 'snapshotEnd', streamId, ok: true });
    } catch (err) {
      port.log.warn({ peer: stream.from, rangeId: header.shardId, err }, 'snapshot stream broke');
      port.postEvent(core, { kind: 'snapshotEnd', streamId, ok: false });
    } finally {
      this.chunkAcks.delete(streamId);
    }
  }

  /** Aborts every outgoing stream (the Host closes). */
  close(): void {
    for (const s of this.senders.values()) s.abort('host closing');
    this.senders.clear();
  }

  private onSendFailed(coreIndex: number, streamId: number, err: unknown): void {
    if (!this.senders.delete(streamId)) return;
    this.port.log.warn({ streamId, err }, 'snapshot stream failed');
    this.port.postEvent(coreIndex, { kind: 'snapshotDone', streamId, ok: false });
  }
}
