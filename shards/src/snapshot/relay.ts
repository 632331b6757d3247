import { assert, sleep, type Clock } from '@flotilla/core';
import type { SnapshotReceiver, SnapshotSender, Transport } from '@flotilla/transport';
import type { CoreEvent, CoreOutEvent } from '../host/core-protocol.js';
import type { ShellLogger } from '../shell-logger.js';
import { SNAPSHOT_CHUNK_BYTES_MAX } from '../storage/codec.js';
import { SnapshotFlowControl, type SnapshotFlowDecision, type SnapshotFlowSettings } from './flow-control.js';
import { ByteRateLimiter } from './rate-limit.js';
import { decodeSnapshotStreamHeader } from './stream-header.js';

/** Snapshot bandwidth a node sends by default: half a 1 Gbit/s link, well under a disk's write rate (TiKV's default is 100 MB/s). */
export const SNAPSHOT_BYTES_PER_SEC_DEFAULT = 64 * 1024 * 1024;
/**
 * The flow control's floor (each way): a 64 MiB range still moves in 16 s
 * on a node whose foreground latency never recovers, so a move always
 * finishes; lowered to the ceiling when that is configured lower.
 */
export const SNAPSHOT_BYTES_PER_SEC_MIN = 4 * 1024 * 1024;
/**
 * Received snapshot bytes are paced against a ceiling of this many times
 * the send ceiling: the placement driver sends at most 2 snapshots onto a
 * node at once, each from a sender at most at its ceiling. Only flow
 * control's decreases make the receiving side bind.
 */
const RECEIVE_CEILING_SENDERS = 2;
/**
 * How often the flow control looks at foreground latency: several chunks
 * and, under a client load, tens of writes per interval. An interval closes
 * on the first Host tick this long after it opened (every third tick, 300
 * ms, at the default 100 ms tick).
 */
export const SNAPSHOT_FLOW_INTERVAL_MS = 250;
/** Bytes the limiter lets through at once after an idle spell: an eighth of a second at the rate, at least one chunk (a burst of a whole second would outrun a decrease). */
const BURST_SECONDS = 0.125;
assert(SNAPSHOT_BYTES_PER_SEC_MIN <= SNAPSHOT_BYTES_PER_SEC_DEFAULT, 'the flow control floor must not exceed the default ceiling');
assert(SNAPSHOT_CHUNK_BYTES_MAX <= SNAPSHOT_BYTES_PER_SEC_MIN, 'at the floor, a chunk must still go out at least once a second');

/** The flow control's tuning for a ceiling (ARCHITECTURE.md, "Snapshot flow control (issue 19)", says why these numbers). */
export function snapshotFlowSettings(bytesPerSecMax: number): SnapshotFlowSettings {
  return {
    bytesPerSecMax,
    bytesPerSecMin: Math.min(SNAPSHOT_BYTES_PER_SEC_MIN, bytesPerSecMax),
    intervalMs: SNAPSHOT_FLOW_INTERVAL_MS,
    // From the floor back to the ceiling in 32 intervals (8 s) of good latency.
    increaseBytesPerSec: bytesPerSecMax / 32,
    decreaseFactor: 0.5,
    decreaseAboveRatio: 1.5,
    increaseBelowRatio: 1.2,
    latencyQuantile: 0.9,
    samplesPerIntervalMin: 20,
  };
}

function burstBytesOf(bytesPerSec: number): number {
  return Math.max(SNAPSHOT_CHUNK_BYTES_MAX, bytesPerSec * BURST_SECONDS);
}

/** One direction's pacing: a token bucket, and the flow control that moves its rate (none: a fixed rate). */
interface Pacing {
  readonly limiter: ByteRateLimiter;
  readonly flow: SnapshotFlowControl | undefined;
}

/** The core events that belong to a snapshot stream. */
export type SnapshotOutEvent = Extract<CoreOutEvent, { kind: 'snapshotOpen' | 'snapshotChunk' | 'snapshotEnd' | 'snapshotAbort' | 'snapshotChunkAck' }>;

/** What the relay needs of the Host: the transport's streams, the way to a core, and whether the Host closed. */
export interface SnapshotRelayPort {
  readonly log: ShellLogger;
  /** What the rate limit measures time with. */
  readonly clock: Clock;
  /** Snapshot bytes this node sends per second, over all streams (default SNAPSHOT_BYTES_PER_SEC_DEFAULT). */
  readonly bytesPerSecMax: number | undefined;
  /** Which snapshot rates adapt to foreground latency (default `send`; HostOptions.snapshotFlowControl). */
  readonly flowControl: 'send' | 'both' | 'off' | undefined;
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
  /** What this node sends. */
  private readonly sending: Pacing;
  /** What this node stages (undefined without flow control: received chunks are not paced). */
  private readonly receiving: Pacing | undefined;

  constructor(private readonly port: SnapshotRelayPort) {
    const bytesPerSecMax = port.bytesPerSecMax ?? SNAPSHOT_BYTES_PER_SEC_DEFAULT;
    const flowControl = port.flowControl ?? 'send';
    const pacing = (ceiling: number, adaptive: boolean): Pacing => ({
      limiter: new ByteRateLimiter({
        bytesPerSec: ceiling,
        // Without flow control, the fixed bucket's burst stays what it was: a second at the rate.
        burstBytes: adaptive ? burstBytesOf(ceiling) : ceiling,
        nowMs: () => port.clock.nowMs(),
        sleep: (ms) => sleep(port.clock, ms),
      }),
      flow: adaptive ? new SnapshotFlowControl(snapshotFlowSettings(ceiling), port.clock.nowMs()) : undefined,
    });
    this.sending = pacing(bytesPerSecMax, flowControl !== 'off');
    this.receiving = flowControl === 'both' ? pacing(RECEIVE_CEILING_SENDERS * bytesPerSecMax, true) : undefined;
  }

  /** The current snapshot rates, each way (metrics; receive undefined when received chunks are not paced). */
  get bytesPerSec(): { send: number; receive: number | undefined } {
    return { send: this.sending.flow?.bytesPerSec ?? this.port.bytesPerSecMax ?? SNAPSHOT_BYTES_PER_SEC_DEFAULT, receive: this.receiving?.flow?.bytesPerSec };
  }

  /** A client write this node proposed took `latencyMs` (from the Host's request to its core's answer): the foreground latency snapshots yield to. */
  observeForeground(latencyMs: number): void {
    this.sending.flow?.observeForeground(latencyMs);
    this.receiving?.flow?.observeForeground(latencyMs);
  }

  /** The Host's tick: each flow control closes its interval when due and the limiters take its rate. */
  onTick(): void {
    const nowMs = this.port.clock.nowMs();
    this.adjust('send', this.sending, nowMs);
    if (this.receiving !== undefined) this.adjust('receive', this.receiving, nowMs);
  }

  private adjust(direction: 'send' | 'receive', pacing: Pacing, nowMs: number): void {
    const decision: SnapshotFlowDecision | undefined = pacing.flow?.onTick(nowMs);
    if (decision === undefined || decision.action === 'hold') return;
    pacing.limiter.setRate(decision.bytesPerSec, burstBytesOf(decision.bytesPerSec));
    this.port.log.debug({ direction, action: decision.action, bytesPerSec: Math.round(decision.bytesPerSec), signalMs: decision.signalMs, baselineMs: decision.baselineMs, sentBytes: decision.sentBytes }, 'snapshot rate changed');
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
        const { limiter, flow } = this.sending;
        limiter
          .take(e.bytes.byteLength)
          .then(() => {
            flow?.onSent(e.bytes.byteLength);
            return sender.write(e.bytes);
          })
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
        // Staging competes with the receiving core's Raft rounds: paced like sending, the sender waits for credit meanwhile.
        if (this.receiving !== undefined) {
          await this.receiving.limiter.take(next.value.byteLength);
          this.receiving.flow?.onSent(next.value.byteLength);
        }
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
