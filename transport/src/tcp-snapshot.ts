/**
 * Snapshot streams over TCP: one connection per stream, so chunks never sit
 * in front of batches. Credit-based flow control: the receiver grants
 * `windowChunks` chunks when the stream opens and one more each time its
 * consumer takes a chunk, so at most `windowChunks` chunks are ever in flight
 * or buffered on the receiver.
 *
 *   sender                         receiver
 *   hello, snapshot-open     →
 *                            ←     snapshot-credit(window)
 *   snapshot-chunk × credit  →
 *                            ←     snapshot-credit(1) per consumed chunk
 *   snapshot-end             →
 *                            ←     snapshot-done (after the consumer saw the end)
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { assert } from '@flotilla/core';
import { SnapshotStreamError } from './errors.js';
import { ABORT_REASON_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MAX, encodeFrame, FrameDecoder, FrameError, type Frame } from './frame.js';
import type { PeerId, SnapshotReceiver, SnapshotSender } from './types.js';

/**
 * Chunks granted when a stream opens. 4 × 1 MiB chunks keeps a LAN link busy
 * (a 1 MiB chunk takes ~1 ms at 10 Gb/s, longer than a credit's round trip)
 * while bounding receiver memory per stream to 4 MiB.
 */
export const SNAPSHOT_WINDOW_CHUNKS = 4;

/** What a stream needs from its transport. */
export interface SnapshotStreamContext {
  readonly log: Logger;
  /** A frame from the network was bad: count it, log it, close its connection. */
  rejectFrame(socket: Socket, err: FrameError, peerId: PeerId | undefined): void;
}

/** Truncates `reason` to ABORT_REASON_BYTES_MAX UTF-8 bytes without splitting a character. */
function clampReason(reason: string): string {
  if (Buffer.byteLength(reason, 'utf8') <= ABORT_REASON_BYTES_MAX) return reason;
  let clamped = reason.slice(0, ABORT_REASON_BYTES_MAX);
  while (Buffer.byteLength(clamped, 'utf8') > ABORT_REASON_BYTES_MAX) clamped = clamped.slice(0, -1);
  return clamped;
}

interface PendingWrite {
  readonly chunk: Uint8Array;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * The sending half. Created by TcpTransport.openSnapshot with a socket that is
 * connecting; writes queue until the receiver grants credit.
 */
export class TcpSnapshotSender implements SnapshotSender {
  private credit = 0;
  private connected = false;
  private readonly pending: PendingWrite[] = [];
  private endRequested = false;
  private endWritten = false;
  private endWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  /** Set once the stream is over, successfully (null failure) or not. */
  private finished = false;
  private failure: SnapshotStreamError | null = null;
  private readonly decoder = new FrameDecoder();

  constructor(
    readonly to: PeerId,
    readonly streamId: number,
    private readonly socket: Socket | null,
    private readonly context: SnapshotStreamContext,
    /** Frames written first once connected (hello, snapshot-open). */
    openingBytes: Buffer,
    /** Set when the stream cannot start (no address, transport closed). */
    initialFailure: SnapshotStreamError | null,
    private readonly onFinished: (sender: TcpSnapshotSender) => void,
  ) {
    if (initialFailure !== null) {
      this.finished = true;
      this.failure = initialFailure;
      return;
    }
    assert(socket !== null, 'a snapshot sender without a failure needs a socket');
    socket.on('connect', () => {
      this.connected = true;
      socket.write(openingBytes);
      this.pump();
    });
    socket.on('data', (data: Buffer) => this.onData(data));
    socket.on('error', (err) => this.context.log.debug({ err, to, streamId }, 'snapshot connection error'));
    socket.on('close', () => {
      this.fail(new SnapshotStreamError('SNAPSHOT_CONNECTION_LOST', `snapshot stream ${streamId} to node ${to}: connection closed before snapshot-done`));
    });
  }

  write(chunk: Uint8Array): Promise<void> {
    assert(chunk.byteLength <= SNAPSHOT_CHUNK_BYTES_MAX, () => `snapshot chunk of ${chunk.byteLength} bytes exceeds SNAPSHOT_CHUNK_BYTES_MAX ${SNAPSHOT_CHUNK_BYTES_MAX}`);
    assert(!this.endRequested, () => `write after end on snapshot stream ${this.streamId} to node ${this.to}`);
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.push({ chunk, resolve, reject });
      this.pump();
    });
  }

  end(): Promise<void> {
    assert(!this.endRequested, () => `end called twice on snapshot stream ${this.streamId} to node ${this.to}`);
    this.endRequested = true;
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.endWaiters.push({ resolve, reject });
      this.pump();
    });
  }

  abort(reason: string): void {
    if (this.finished) return;
    const socket = this.socket;
    if (socket !== null && this.connected) {
      socket.end(encodeFrame({ kind: 'snapshot-abort', streamId: this.streamId, reason: clampReason(reason) }));
    }
    this.fail(new SnapshotStreamError('SNAPSHOT_ABORTED', `snapshot stream ${this.streamId} to node ${this.to} aborted locally: ${reason}`), { destroy: !this.connected });
  }

  /** Closes the stream because the transport is closing. */
  closeForShutdown(): void {
    this.fail(new SnapshotStreamError('TRANSPORT_CLOSED', `snapshot stream ${this.streamId} to node ${this.to}: transport closed`));
  }

  /** Sends as many queued chunks as credit allows, then the end marker once everything is out. */
  private pump(): void {
    const socket = this.socket;
    if (this.finished || socket === null || !this.connected) return;
    while (this.credit > 0 && this.pending.length > 0) {
      const write = this.pending.shift()!;
      this.credit -= 1;
      socket.write(encodeFrame({ kind: 'snapshot-chunk', streamId: this.streamId, chunk: write.chunk }));
      write.resolve();
    }
    if (this.endRequested && !this.endWritten && this.pending.length === 0) {
      this.endWritten = true;
      socket.write(encodeFrame({ kind: 'snapshot-end', streamId: this.streamId }));
    }
  }

  private onData(data: Buffer): void {
    if (this.finished) return;
    try {
      this.decoder.push(data, (frame) => this.onFrame(frame));
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.context.rejectFrame(this.socket!, err, this.to);
      this.fail(new SnapshotStreamError('SNAPSHOT_CONNECTION_LOST', `snapshot stream ${this.streamId} to node ${this.to}: receiver sent a bad frame (${err.code})`));
    }
  }

  private onFrame(frame: Frame): void {
    if (this.finished) return;
    switch (frame.kind) {
      case 'snapshot-credit':
        this.expectStream(frame.streamId, frame.kind);
        this.credit += frame.chunkCount;
        this.pump();
        return;
      case 'snapshot-done':
        this.expectStream(frame.streamId, frame.kind);
        if (!this.endWritten) throw new FrameError('FRAME_UNEXPECTED', `snapshot-done for stream ${this.streamId} before snapshot-end was sent`);
        this.succeed();
        return;
      case 'snapshot-abort':
        this.expectStream(frame.streamId, frame.kind);
        this.fail(new SnapshotStreamError('SNAPSHOT_ABORTED', `snapshot stream ${this.streamId} to node ${this.to} aborted by receiver: ${frame.reason}`));
        return;
      default:
        throw new FrameError('FRAME_UNEXPECTED', `${frame.kind} frame on the sending side of snapshot stream ${this.streamId}`);
    }
  }

  private expectStream(streamId: number, kind: Frame['kind']): void {
    if (streamId !== this.streamId) throw new FrameError('FRAME_UNEXPECTED', `${kind} frame for stream ${streamId} on stream ${this.streamId}`);
  }

  private succeed(): void {
    this.finished = true;
    this.socket?.end();
    for (const waiter of this.endWaiters) waiter.resolve();
    this.endWaiters = [];
    this.onFinished(this);
  }

  private fail(err: SnapshotStreamError, options: { destroy: boolean } = { destroy: true }): void {
    if (this.finished) return;
    this.finished = true;
    this.failure = err;
    for (const write of this.pending.splice(0)) write.reject(err);
    for (const waiter of this.endWaiters) waiter.reject(err);
    this.endWaiters = [];
    if (options.destroy) this.socket?.destroy();
    this.onFinished(this);
  }
}

/**
 * The receiving half, created by an inbound connection on snapshot-open. The
 * connection feeds it frames; its consumer pulls chunks through `chunks`.
 */
export class TcpSnapshotReceiver implements SnapshotReceiver {
  readonly chunks: AsyncIterable<Uint8Array>;
  private readonly buffered: Uint8Array[] = [];
  /** Chunks the sender may still send: grants minus chunks received. */
  private creditOutstanding = 0;
  private ended = false;
  private doneSent = false;
  private failure: SnapshotStreamError | null = null;
  private iterated = false;
  private waiter: { resolve: (result: IteratorResult<Uint8Array>) => void; reject: (err: Error) => void } | null = null;

  constructor(
    readonly from: PeerId,
    readonly streamId: number,
    readonly header: Uint8Array,
    private readonly socket: Socket,
    private readonly windowChunks: number,
    private readonly onFinished: (receiver: TcpSnapshotReceiver) => void,
  ) {
    assert(windowChunks > 0, () => `snapshot window ${windowChunks} must be positive`);
    this.chunks = { [Symbol.asyncIterator]: () => this.iterator() };
    this.grant(windowChunks);
  }

  /** True once snapshot-done went out or the stream failed. */
  get finished(): boolean {
    return this.doneSent || this.failure !== null;
  }

  /** A frame of this stream arrived. Throws FrameError for a protocol violation (the connection rejects it). */
  onFrame(frame: Frame): void {
    switch (frame.kind) {
      case 'snapshot-chunk':
        this.expectStream(frame.streamId, frame.kind);
        if (this.ended) throw new FrameError('FRAME_UNEXPECTED', `snapshot-chunk after snapshot-end on stream ${this.streamId}`);
        if (this.creditOutstanding === 0) throw new FrameError('FRAME_UNEXPECTED', `snapshot-chunk beyond granted credit on stream ${this.streamId}`);
        this.creditOutstanding -= 1;
        this.buffered.push(frame.chunk);
        assert(this.buffered.length <= this.windowChunks, () => `receiver buffers ${this.buffered.length} chunks, window is ${this.windowChunks}`);
        this.wake();
        return;
      case 'snapshot-end':
        this.expectStream(frame.streamId, frame.kind);
        if (this.ended) throw new FrameError('FRAME_UNEXPECTED', `second snapshot-end on stream ${this.streamId}`);
        this.ended = true;
        this.wake();
        return;
      case 'snapshot-abort':
        this.expectStream(frame.streamId, frame.kind);
        this.fail(new SnapshotStreamError('SNAPSHOT_ABORTED', `snapshot stream ${this.streamId} from node ${this.from} aborted by sender: ${frame.reason}`));
        this.socket.end();
        return;
      default:
        throw new FrameError('FRAME_UNEXPECTED', `${frame.kind} frame on snapshot stream ${this.streamId}`);
    }
  }

  /** The connection broke or the transport is closing; the consumer's iterator throws `err`. */
  fail(err: SnapshotStreamError): void {
    if (this.finished) return;
    this.failure = err;
    this.buffered.length = 0;
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.reject(err);
    this.onFinished(this);
  }

  private expectStream(streamId: number, kind: Frame['kind']): void {
    if (streamId !== this.streamId) throw new FrameError('FRAME_UNEXPECTED', `${kind} frame for stream ${streamId} on stream ${this.streamId}`);
  }

  private grant(chunkCount: number): void {
    this.creditOutstanding += chunkCount;
    if (this.socket.destroyed) return;
    this.socket.write(encodeFrame({ kind: 'snapshot-credit', streamId: this.streamId, chunkCount }));
  }

  private wake(): void {
    const waiter = this.waiter;
    if (waiter === null) return;
    this.waiter = null;
    this.next().then(waiter.resolve, waiter.reject);
  }

  private next(): Promise<IteratorResult<Uint8Array>> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const chunk = this.buffered.shift();
    if (chunk !== undefined) {
      if (!this.ended) this.grant(1);
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.ended) {
      if (!this.doneSent) {
        this.doneSent = true;
        this.socket.end(encodeFrame({ kind: 'snapshot-done', streamId: this.streamId }));
        this.onFinished(this);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    assert(this.waiter === null, () => `concurrent next() on snapshot stream ${this.streamId}: chunks has one consumer`);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private iterator(): AsyncIterator<Uint8Array> {
    assert(!this.iterated, () => `snapshot stream ${this.streamId} from node ${this.from} iterated twice`);
    this.iterated = true;
    return {
      next: () => this.next(),
      // The consumer stopped early (break or throw): the stream is abandoned; the sender sees the connection drop.
      return: () => {
        if (!this.finished) {
          this.fail(new SnapshotStreamError('SNAPSHOT_ABORTED', `snapshot stream ${this.streamId} from node ${this.from} abandoned by its consumer`));
          this.socket.destroy();
        }
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
