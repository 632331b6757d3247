/**
 * Transport over node:net. One outbound connection per peer carries our
 * batches to it (the ordered pair self→peer); connections peers open to us are
 * only read from. Every connection starts with a hello frame naming the
 * sender and its cluster; a hello from another cluster, from a node that is
 * not a member or of another frame version is refused (counted, logged at
 * warn rate-limited, the connection closed) before anything it sends is
 * delivered. Snapshots get a connection each (tcp-snapshot.ts).
 *
 * Batches handed to send() in one event-loop turn leave in one socket write
 * (one frame per send(), all frames in one Buffer). Putting everything for one
 * node into one batch is the caller's job.
 */
import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { SeededRng, assert, formatHostPort, hostPortProblem, parseHostPort, type HostPort, type Rng } from '@flotilla/core';
import { SnapshotStreamError } from './errors.js';
import {
  BATCH_BYTES_MAX,
  FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FRAME_LENGTH_BYTES,
  FrameDecoder,
  FrameError,
  encodeFrame,
  encodeFrames,
  isClusterId,
  type ClusterId,
  type Frame,
  type HelloFrame,
} from './frame.js';
import { SNAPSHOT_WINDOW_CHUNKS, TcpSnapshotReceiver, TcpSnapshotSender, type SnapshotStreamContext } from './tcp-snapshot.js';
import { zeroTransportStats, type MutableTransportStats, type PeerId, type SnapshotSender, type Transport, type TransportHandlers, type TransportStats } from './types.js';

/**
 * Bytes queued per peer (ours plus the socket's unflushed buffer). Two full
 * frames: a connected peer always takes the largest legal batch, and a peer
 * that stops reading costs at most this much memory before we drop.
 */
export const SEND_QUEUE_BYTES_MAX_DEFAULT = 2 * (FRAME_LENGTH_BYTES + FRAME_BYTES_MAX);
/** First reconnect delay: long enough not to spin on a refused port, short next to a 1 s election timeout. */
export const RECONNECT_DELAY_MS_MIN_DEFAULT = 50;
/** Reconnect delays double up to this: a dead node costs one connect attempt per ~5 s. */
export const RECONNECT_DELAY_MS_MAX_DEFAULT = 5_000;
/** onUnreachable(peer) at most once per interval per peer: Raft only needs to know, not to count. */
export const UNREACHABLE_REPORT_INTERVAL_MS_DEFAULT = 1_000;
/** A connect that neither succeeds nor fails within this is abandoned (black-holed address). */
export const CONNECT_TIMEOUT_MS_DEFAULT = 5_000;
/** An inbound connection that sends no hello within this is closed (bounds idle half-open sockets). */
export const HELLO_TIMEOUT_MS_DEFAULT = 5_000;
/**
 * One warn line per refusal reason per interval: a refused peer reconnects
 * every ~50 ms (its backoff restarts on every successful connect), so each
 * refusal logged would be twenty lines a second. The counters count them all.
 */
export const HELLO_REFUSED_WARN_INTERVAL_MS_DEFAULT = 10_000;

assert(SEND_QUEUE_BYTES_MAX_DEFAULT >= FRAME_HEADER_BYTES + BATCH_BYTES_MAX, 'an empty send queue must take the largest legal batch');
assert(RECONNECT_DELAY_MS_MIN_DEFAULT <= RECONNECT_DELAY_MS_MAX_DEFAULT, 'reconnect delay min must not exceed max');

export interface TcpTransportOptions {
  readonly nodeId: PeerId;
  /**
   * The cluster this node belongs to: sent in every hello, and a hello must
   * carry it to be accepted. May be given later with setClusterId (a node
   * learns it when it joins), but before the first setPeer: no connection is
   * opened and every hello is refused until it is known.
   */
  readonly clusterId?: ClusterId;
  /**
   * Whether a node id that says hello is a current member. Default: a peer
   * given an address with setPeer (the Host's peers). Our own id is never one.
   */
  readonly isMember?: (id: PeerId) => boolean;
  /** Address to listen on; tests use 127.0.0.1. */
  readonly host: string;
  /** Port to listen on; 0 picks a free one (see address()). */
  readonly port: number;
  /** Root logger; the transport logs through a child. Default: a silent pino. */
  readonly logger?: Logger;
  /** Reconnect jitter. Default: a generator seeded with `seed`. */
  readonly rng?: Rng;
  /** Seed for the default jitter generator. Default: nodeId (so nodes spread their retries). */
  readonly seed?: number;
  /** Clock for rate-limiting onUnreachable. Default: performance.now. */
  readonly nowMs?: () => number;
  readonly sendQueueBytesMax?: number;
  readonly reconnectDelayMsMin?: number;
  readonly reconnectDelayMsMax?: number;
  readonly unreachableReportIntervalMs?: number;
  readonly connectTimeoutMs?: number;
  readonly helloTimeoutMs?: number;
  readonly helloRefusedWarnIntervalMs?: number;
  /** Snapshot chunks the receiver grants up front. Default SNAPSHOT_WINDOW_CHUNKS. */
  readonly snapshotWindowChunks?: number;
}

interface ResolvedOptions {
  readonly sendQueueBytesMax: number;
  readonly reconnectDelayMsMin: number;
  readonly reconnectDelayMsMax: number;
  readonly unreachableReportIntervalMs: number;
  readonly connectTimeoutMs: number;
  readonly helloTimeoutMs: number;
  readonly helloRefusedWarnIntervalMs: number;
  readonly snapshotWindowChunks: number;
}



/** A peer's transport address, parsed: its host bare (an IPv6 one without brackets). */
export type PeerAddress = HostPort;

/** Parses HOST:PORT (core's address.ts). Addresses come from our own configuration, validated where they were given, so a bad one is a bug. */
export function parsePeerAddress(address: string): PeerAddress {
  const problem = hostPortProblem(address);
  assert(problem === undefined, () => `peer address: ${problem}`);
  return parseHostPort(address);
}

/** What a peer link needs from its transport. */
interface LinkContext {
  readonly nodeId: PeerId;
  /** Our cluster id for the hello; known before any peer is added (asserted). */
  clusterId(): ClusterId;
  readonly log: Logger;
  readonly options: ResolvedOptions;
  readonly rng: Rng;
  readonly counters: MutableTransportStats;
  trackSocket(socket: Socket): void;
  scheduleFlush(): void;
  reportUnreachable(peer: PeerId): void;
  /** Hands batches dropped from the queue, never written, back to the sender (TransportHandlers.onDropped). */
  reportDropped(peer: PeerId, batches: readonly Uint8Array[]): void;
  rejectFrame(socket: Socket, err: FrameError, peerId: PeerId | undefined): void;
}

type LinkState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'closed';

/**
 * Our outbound connection to one peer: a bounded queue of batches, the socket,
 * and the reconnect schedule. Connects on the first send, then stays
 * connected (reconnecting with backoff) until removed or closed.
 *
 * Queued batches survive only while a connection is being established: a
 * failed attempt or a broken connection drops them (counted, reported), and
 * while waiting out a backoff new batches are dropped at once. Raft resends
 * what matters, and stale appends are worse than none.
 */
class PeerLink {
  private state: LinkState = 'idle';
  private socket: Socket | null = null;
  private queue: Uint8Array[] = [];
  /** Encoded bytes of `queue` (frame headers included). */
  private queuedBytes = 0;
  /** Consecutive failed or broken connections; drives the backoff. */
  private failureCount = 0;
  private wasConnected = false;
  private backoffTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly peerId: PeerId,
    readonly address: PeerAddress,
    private readonly context: LinkContext,
  ) {}

  /** Queues `batch`; false if it must be dropped (disconnected or over the bound). */
  enqueue(batch: Uint8Array): boolean {
    if (this.state === 'closed' || this.state === 'backoff') return false;
    if (this.state === 'idle') this.connect();
    const frameBytes = FRAME_HEADER_BYTES + batch.byteLength;
    const socketBytes = this.socket?.writableLength ?? 0;
    if (this.queuedBytes + socketBytes + frameBytes > this.context.options.sendQueueBytesMax) return false;
    this.queue.push(batch);
    this.queuedBytes += frameBytes;
    return true;
  }

  /** Writes every queued batch in one socket write. */
  flush(): void {
    if (this.state !== 'connected' || this.queue.length === 0) return;
    const socket = this.socket;
    assert(socket !== null, () => `link to node ${this.peerId} is connected without a socket`);
    const frames: Frame[] = this.queue.map((batch) => ({ kind: 'batch', batch }));
    const bytes = encodeFrames(frames);
    assert(bytes.length === this.queuedBytes, () => `encoded ${bytes.length} bytes for node ${this.peerId}, queue held ${this.queuedBytes}`);
    socket.write(bytes);
    this.context.counters.batchesSent += frames.length;
    this.context.counters.bytesSent += this.queuedBytes - frames.length * FRAME_HEADER_BYTES;
    this.queue = [];
    this.queuedBytes = 0;
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.backoffTimer !== null) clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    this.dropQueue();
    this.socket?.destroy();
    this.socket = null;
  }

  private connect(): void {
    assert(this.state === 'idle' || this.state === 'backoff', () => `connect to node ${this.peerId} in state ${this.state}`);
    this.state = 'connecting';
    const { log, options } = this.context;
    const socket = connect({ host: this.address.host, port: this.address.port });
    this.socket = socket;
    this.context.trackSocket(socket);
    socket.setNoDelay(true);
    socket.setTimeout(options.connectTimeoutMs, () => socket.destroy(new Error(`connect to ${formatHostPort(this.address)} timed out after ${options.connectTimeoutMs} ms`)));
    socket.on('connect', () => {
      socket.setTimeout(0);
      socket.setKeepAlive(true, options.connectTimeoutMs);
      this.state = 'connected';
      this.context.counters.connectionsOpened += 1;
      if (this.wasConnected || this.failureCount > 0) this.context.counters.reconnects += 1;
      this.wasConnected = true;
      this.failureCount = 0;
      log.info({ peerId: this.peerId }, 'peer connected');
      socket.write(encodeFrame({ kind: 'hello', nodeId: this.context.nodeId, clusterId: this.context.clusterId() }));
      this.context.scheduleFlush();
    });
    // Peers never write on our outbound connection; anything they send is a protocol violation.
    socket.on('data', () => {
      this.context.rejectFrame(socket, new FrameError('FRAME_UNEXPECTED', `node ${this.peerId} wrote on our outbound batch connection`), this.peerId);
    });
    socket.on('error', (err) => log.debug({ err, peerId: this.peerId }, 'peer connection error'));
    socket.on('close', () => this.onClose(socket));
  }

  private onClose(socket: Socket): void {
    if (this.socket !== socket) return;
    this.socket = null;
    if (this.state === 'closed') return;
    if (this.state === 'connected') this.context.log.info({ peerId: this.peerId }, 'peer connection lost');
    this.failureCount += 1;
    const dropped = this.dropQueue();
    if (dropped > 0 || this.state === 'connected') this.context.reportUnreachable(this.peerId);
    this.state = 'backoff';
    const delayMs = this.backoffDelayMs();
    this.context.log.debug({ peerId: this.peerId, delayMs, failureCount: this.failureCount }, 'reconnect scheduled');
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = null;
      if (this.state === 'backoff') this.connect();
    }, delayMs);
  }

  /** Exponential backoff with "equal jitter": half the delay fixed, half random, so peers spread out. */
  private backoffDelayMs(): number {
    const { reconnectDelayMsMin, reconnectDelayMsMax } = this.context.options;
    const exponent = Math.min(this.failureCount - 1, 30);
    const ceilingMs = Math.min(reconnectDelayMsMax, reconnectDelayMsMin * 2 ** exponent);
    const halfMs = Math.floor(ceilingMs / 2);
    return ceilingMs - halfMs + this.context.rng.intBelow(halfMs + 1);
  }

  private dropQueue(): number {
    const dropped = this.queue.length;
    this.context.counters.batchesDropped += dropped;
    if (dropped > 0) this.context.reportDropped(this.peerId, this.queue);
    this.queue = [];
    this.queuedBytes = 0;
    return dropped;
  }
}

type InboundPhase =
  | { readonly name: 'awaiting-hello' }
  | { readonly name: 'identified'; readonly from: PeerId }
  | { readonly name: 'batches'; readonly from: PeerId }
  | { readonly name: 'snapshot'; readonly from: PeerId; readonly receiver: TcpSnapshotReceiver };

/** Why a hello was refused: the stats counter it goes to, and what the log line says. */
interface HelloRefusal {
  readonly reason: 'cluster' | 'not-member' | 'version';
  readonly detail: string;
  /** A refusal expected in normal operation (our cluster id not known yet): logged at debug, not warn. */
  readonly expected?: boolean;
}

/** What an inbound connection needs from its transport. */
interface InboundContext {
  /** Undefined if the hello may pass; otherwise why not. */
  checkHello(hello: HelloFrame): HelloRefusal | undefined;
  refuseHello(socket: Socket, refusal: HelloRefusal, claimed: { nodeId?: PeerId; clusterId?: ClusterId }): void;
  readonly log: Logger;
  readonly counters: MutableTransportStats;
  readonly options: ResolvedOptions;
  readonly handlers: TransportHandlers;
  rejectFrame(socket: Socket, err: FrameError, peerId: PeerId | undefined): void;
  trackReceiver(receiver: TcpSnapshotReceiver): void;
  untrackReceiver(receiver: TcpSnapshotReceiver): void;
}

/**
 * A connection a peer opened to us: hello, then either batches or one
 * snapshot stream. Anything else is rejected and closes the connection.
 */
class InboundConnection {
  private phase: InboundPhase = { name: 'awaiting-hello' };
  private readonly decoder = new FrameDecoder();
  private rejected = false;

  constructor(
    private readonly socket: Socket,
    private readonly context: InboundContext,
  ) {
    socket.setNoDelay(true);
    socket.setTimeout(context.options.helloTimeoutMs, () => {
      if (this.phase.name !== 'awaiting-hello') return;
      context.log.debug({ remoteAddress: socket.remoteAddress, helloTimeoutMs: context.options.helloTimeoutMs }, 'no hello in time, connection closed');
      socket.destroy();
    });
    socket.on('data', (data: Buffer) => this.onData(data));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => context.log.debug({ err, peerId: this.peerId() }, 'inbound connection error'));
    socket.on('close', () => this.onClose());
  }

  private peerId(): PeerId | undefined {
    return this.phase.name === 'awaiting-hello' ? undefined : this.phase.from;
  }

  private onData(data: Buffer): void {
    if (this.rejected) return;
    try {
      this.decoder.push(data, (frame) => this.onFrame(frame));
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      if (err.code === 'FRAME_VERSION_UNKNOWN' && this.phase.name === 'awaiting-hello') {
        // The first frame is of another version: a node of another release, refused as such.
        this.rejected = true;
        this.context.refuseHello(this.socket, { reason: 'version', detail: err.message }, {});
        return;
      }
      this.reject(err);
    }
  }

  private onEnd(): void {
    if (this.rejected) return;
    try {
      this.decoder.finish();
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.reject(err);
    }
  }

  private onClose(): void {
    if (this.phase.name !== 'snapshot') return;
    const { receiver, from } = this.phase;
    receiver.fail(new SnapshotStreamError('SNAPSHOT_CONNECTION_LOST', `snapshot stream ${receiver.streamId} from node ${from}: connection closed before the end`));
  }

  private reject(err: FrameError): void {
    this.rejected = true;
    this.context.rejectFrame(this.socket, err, this.peerId());
  }

  private onFrame(frame: Frame): void {
    if (this.rejected) return;
    switch (this.phase.name) {
      case 'awaiting-hello':
        return this.onFrameAwaitingHello(frame);
      case 'identified':
        return this.onFrameIdentified(frame, this.phase.from);
      case 'batches':
        return this.onFrameBatches(frame, this.phase.from);
      case 'snapshot':
        return this.phase.receiver.onFrame(frame);
    }
  }

  private onFrameAwaitingHello(frame: Frame): void {
    if (frame.kind !== 'hello') throw new FrameError('FRAME_UNEXPECTED', `${frame.kind} frame before hello`);
    const refusal = this.context.checkHello(frame);
    if (refusal !== undefined) {
      // Set before the socket closes: frames that arrived with the hello are dropped unread.
      this.rejected = true;
      this.context.refuseHello(this.socket, refusal, { nodeId: frame.nodeId, clusterId: frame.clusterId });
      return;
    }
    this.socket.setTimeout(0);
    this.phase = { name: 'identified', from: frame.nodeId };
  }

  private onFrameIdentified(frame: Frame, from: PeerId): void {
    switch (frame.kind) {
      case 'batch':
        this.phase = { name: 'batches', from };
        return this.onFrameBatches(frame, from);
      case 'snapshot-open':
        return this.onSnapshotOpen(frame.streamId, frame.header, from);
      default:
        throw new FrameError('FRAME_UNEXPECTED', `${frame.kind} frame after hello (expected batch or snapshot-open) from node ${from}`);
    }
  }

  private onFrameBatches(frame: Frame, from: PeerId): void {
    if (frame.kind !== 'batch') throw new FrameError('FRAME_UNEXPECTED', `${frame.kind} frame on a batch connection from node ${from}`);
    this.context.counters.batchesReceived += 1;
    this.context.counters.bytesReceived += frame.batch.byteLength;
    this.context.handlers.onBatch(from, frame.batch);
  }

  private onSnapshotOpen(streamId: number, header: Uint8Array, from: PeerId): void {
    const onSnapshot = this.context.handlers.onSnapshot;
    if (onSnapshot === undefined) {
      this.context.log.warn({ peerId: from, streamId }, 'snapshot refused: no onSnapshot handler');
      this.socket.end(encodeFrame({ kind: 'snapshot-abort', streamId, reason: 'receiver does not accept snapshots' }));
      this.rejected = true;
      return;
    }
    const receiver = new TcpSnapshotReceiver(from, streamId, header, this.socket, this.context.options.snapshotWindowChunks, (r) =>
      this.context.untrackReceiver(r),
    );
    this.phase = { name: 'snapshot', from, receiver };
    this.context.trackReceiver(receiver);
    this.context.log.info({ peerId: from, streamId, headerBytes: header.byteLength }, 'snapshot stream opened');
    onSnapshot(receiver);
  }
}

export class TcpTransport implements Transport {
  readonly nodeId: PeerId;
  private readonly log: Logger;
  private oversizedLoggedAtMs = 0;
  private readonly options: ResolvedOptions;
  private readonly listenHost: string;
  private readonly listenPort: number;
  private readonly rng: Rng;
  private readonly nowMs: () => number;
  private readonly counters = zeroTransportStats();
  private readonly links = new Map<PeerId, PeerLink>();
  /** Every socket we opened or accepted, with a promise for its 'close' event. */
  private readonly sockets = new Map<Socket, Promise<void>>();
  private readonly senders = new Set<TcpSnapshotSender>();
  private readonly receivers = new Set<TcpSnapshotReceiver>();
  private readonly lastUnreachableReportMs = new Map<PeerId, number>();
  private clusterIdValue: ClusterId | undefined;
  private readonly isMember: (id: PeerId) => boolean;
  /** Per refusal reason: when it was last logged at warn, and how many were refused since. */
  private readonly helloRefusedWarnings = new Map<HelloRefusal['reason'], { lastWarnMs: number; refusedSince: number }>();
  private handlers: TransportHandlers | null = null;
  private server: Server | null = null;
  private flushImmediate: NodeJS.Immediate | null = null;
  private nextStreamId = 1;
  private closed = false;

  constructor(options: TcpTransportOptions) {
    assert(Number.isInteger(options.nodeId) && options.nodeId > 0, () => `node id ${options.nodeId} must be a positive integer`);
    this.nodeId = options.nodeId;
    this.listenHost = options.host;
    this.listenPort = options.port;
    const parent = options.logger ?? pino({ level: 'silent' });
    // A node's root logger names the node already: a key bound twice is written twice in every line.
    const bound: Record<string, unknown> = typeof parent.bindings === 'function' ? parent.bindings() : {};
    this.log = parent.child('nodeId' in bound ? { component: 'transport' } : { component: 'transport', nodeId: options.nodeId });
    this.rng = options.rng ?? new SeededRng(options.seed ?? options.nodeId);
    this.nowMs = options.nowMs ?? (() => performance.now());
    if (options.clusterId !== undefined) this.setClusterId(options.clusterId);
    this.isMember = options.isMember ?? ((id) => this.links.has(id));
    this.options = {
      sendQueueBytesMax: options.sendQueueBytesMax ?? SEND_QUEUE_BYTES_MAX_DEFAULT,
      reconnectDelayMsMin: options.reconnectDelayMsMin ?? RECONNECT_DELAY_MS_MIN_DEFAULT,
      reconnectDelayMsMax: options.reconnectDelayMsMax ?? RECONNECT_DELAY_MS_MAX_DEFAULT,
      unreachableReportIntervalMs: options.unreachableReportIntervalMs ?? UNREACHABLE_REPORT_INTERVAL_MS_DEFAULT,
      connectTimeoutMs: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT,
      helloTimeoutMs: options.helloTimeoutMs ?? HELLO_TIMEOUT_MS_DEFAULT,
      helloRefusedWarnIntervalMs: options.helloRefusedWarnIntervalMs ?? HELLO_REFUSED_WARN_INTERVAL_MS_DEFAULT,
      snapshotWindowChunks: options.snapshotWindowChunks ?? SNAPSHOT_WINDOW_CHUNKS,
    };
    const o = this.options;
    assert(o.sendQueueBytesMax >= FRAME_HEADER_BYTES + BATCH_BYTES_MAX, () => `sendQueueBytesMax ${o.sendQueueBytesMax} must fit the largest batch frame (${FRAME_HEADER_BYTES + BATCH_BYTES_MAX} bytes)`);
    assert(o.reconnectDelayMsMin > 0, () => `reconnectDelayMsMin ${o.reconnectDelayMsMin} must be positive`);
    assert(o.reconnectDelayMsMin <= o.reconnectDelayMsMax, () => `reconnectDelayMsMin ${o.reconnectDelayMsMin} exceeds reconnectDelayMsMax ${o.reconnectDelayMsMax}`);
    assert(o.snapshotWindowChunks > 0, () => `snapshotWindowChunks ${o.snapshotWindowChunks} must be positive`);
  }

  async start(handlers: TransportHandlers): Promise<void> {
    assert(this.handlers === null, `transport ${this.nodeId} started twice`);
    assert(!this.closed, `transport ${this.nodeId} started after close`);
    this.handlers = handlers;
    const server = createServer((socket) => this.onConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.listenHost, port: this.listenPort }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'server error'));
    this.log.info({ address: this.address() }, 'listening');
  }

  /**
   * Sets the cluster id (see TcpTransportOptions.clusterId); once set it
   * never changes. Call before the first setPeer.
   */
  setClusterId(id: ClusterId): void {
    assert(isClusterId(id), () => `cluster id ${JSON.stringify(id)} is not a cluster id (lowercase hex of 16 bytes)`);
    assert(this.clusterIdValue === undefined || this.clusterIdValue === id, () => `transport ${this.nodeId} is in cluster ${this.clusterIdValue}; cannot move it to ${id}`);
    this.clusterIdValue = id;
  }

  /** The cluster id hellos carry and must match, once known. */
  get clusterId(): ClusterId | undefined {
    return this.clusterIdValue;
  }

  /** The bound listen address (after start). */
  address(): PeerAddress {
    const info = this.server?.address() as AddressInfo | null | undefined;
    assert(info != null && typeof info === 'object', () => `transport ${this.nodeId} is not listening`);
    return { host: info.address, port: info.port };
  }

  send(to: PeerId, batch: Uint8Array): boolean {
    // The caller splits its batches (the Host does, node-batch.ts); one that is too large anyway is
    // dropped like any batch the link cannot take — Raft resends — never an assertion that stops a
    // healthy node because of what a peer's lag made it send.
    if (batch.byteLength > BATCH_BYTES_MAX) {
      this.counters.batchesDropped += 1;
      this.counters.batchesOversized += 1;
      if (this.counters.batchesOversized === 1 || this.nowMs() - this.oversizedLoggedAtMs >= this.options.unreachableReportIntervalMs) {
        this.oversizedLoggedAtMs = this.nowMs();
        this.log.error({ peerId: to, batchBytes: batch.byteLength, batchBytesMax: BATCH_BYTES_MAX, oversizedCount: this.counters.batchesOversized }, 'batch over the frame limit dropped');
      }
      this.reportUnreachable(to);
      return false;
    }
    if (this.closed) {
      this.counters.batchesDropped += 1;
      return false;
    }
    const link = this.links.get(to);
    if (link === undefined || !link.enqueue(batch)) {
      this.counters.batchesDropped += 1;
      this.reportUnreachable(to);
      return false;
    }
    this.scheduleFlush();
    return true;
  }

  openSnapshot(to: PeerId, header: Uint8Array): SnapshotSender {
    const streamId = this.nextStreamId++;
    const link = this.links.get(to);
    let failure: SnapshotStreamError | null = null;
    if (this.closed) failure = new SnapshotStreamError('TRANSPORT_CLOSED', `snapshot stream ${streamId} to node ${to}: transport closed`);
    else if (link === undefined) failure = new SnapshotStreamError('SNAPSHOT_PEER_UNKNOWN', `snapshot stream ${streamId} to node ${to}: no address for node ${to}`);
    let socket: Socket | null = null;
    let openingBytes: Buffer = Buffer.alloc(0);
    if (failure === null && link !== undefined) {
      openingBytes = encodeFrames([
        { kind: 'hello', nodeId: this.nodeId, clusterId: this.knownClusterId() },
        { kind: 'snapshot-open', streamId, header },
      ]);
      socket = connect({ host: link.address.host, port: link.address.port });
      this.trackSocket(socket);
      socket.setNoDelay(true);
      const connectTimeoutMs = this.options.connectTimeoutMs;
      const connecting = socket;
      connecting.setTimeout(connectTimeoutMs, () => connecting.destroy(new Error(`snapshot connect timed out after ${connectTimeoutMs} ms`)));
      connecting.once('connect', () => connecting.setTimeout(0));
    }
    const sender = new TcpSnapshotSender(to, streamId, socket, this.snapshotContext(), openingBytes, failure, (s) => this.senders.delete(s));
    if (failure === null) this.senders.add(sender);
    return sender;
  }

  setPeer(id: PeerId, address: string): void {
    assert(Number.isInteger(id) && id > 0, () => `peer id ${id} must be a positive integer`);
    assert(id !== this.nodeId, () => `node ${id} cannot be its own peer`);
    this.knownClusterId();
    const parsed = parsePeerAddress(address);
    const existing = this.links.get(id);
    if (existing !== undefined && existing.address.host === parsed.host && existing.address.port === parsed.port) return;
    existing?.close();
    this.links.set(id, new PeerLink(id, parsed, this.linkContext()));
  }

  removePeer(id: PeerId): void {
    this.links.get(id)?.close();
    this.links.delete(id);
    this.lastUnreachableReportMs.delete(id);
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.flushImmediate !== null) clearImmediate(this.flushImmediate);
    this.flushImmediate = null;
    for (const link of this.links.values()) link.close();
    for (const sender of [...this.senders]) sender.closeForShutdown();
    for (const receiver of [...this.receivers]) receiver.fail(new SnapshotStreamError('TRANSPORT_CLOSED', `snapshot stream ${receiver.streamId} from node ${receiver.from}: transport closed`));
    const server = this.server;
    const serverClosed =
      server === null ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets.keys()) socket.destroy();
    await Promise.all([serverClosed, ...this.sockets.values()]);
    this.log.info('transport closed');
  }

  private onConnection(socket: Socket): void {
    if (this.closed || this.handlers === null) {
      socket.destroy();
      return;
    }
    this.trackSocket(socket);
    this.counters.connectionsOpened += 1;
    new InboundConnection(socket, {
      checkHello: (hello) => this.checkHello(hello),
      refuseHello: (s, refusal, claimed) => this.refuseHello(s, refusal, claimed),
      log: this.log,
      counters: this.counters,
      options: this.options,
      handlers: this.handlers,
      rejectFrame: (s, err, peerId) => this.rejectFrame(s, err, peerId),
      trackReceiver: (r) => this.receivers.add(r),
      untrackReceiver: (r) => this.receivers.delete(r),
    });
  }

  private trackSocket(socket: Socket): void {
    this.sockets.set(
      socket,
      new Promise<void>((resolve) =>
        socket.once('close', () => {
          this.sockets.delete(socket);
          resolve();
        }),
      ),
    );
  }

  /** The hello's cluster id first (the most telling reason for a node that is not ours), then its node id. */
  private checkHello(hello: HelloFrame): HelloRefusal | undefined {
    const ours = this.clusterIdValue;
    if (ours === undefined) return { reason: 'cluster', detail: `node ${hello.nodeId} said hello before this node knew its cluster id (it is joining)`, expected: true };
    if (hello.clusterId !== ours) return { reason: 'cluster', detail: `node ${hello.nodeId} is in cluster ${hello.clusterId}, this node in cluster ${ours}` };
    if (hello.nodeId === this.nodeId) return { reason: 'not-member', detail: `a peer claims this node's own id ${hello.nodeId} (two nodes configured with one id?)` };
    if (!this.isMember(hello.nodeId)) return { reason: 'not-member', detail: `node ${hello.nodeId} is not a member this node knows (no address for it)` };
    return undefined;
  }

  /** A hello we do not accept: count it, log it (warn, at most once per reason per interval), close the connection. */
  private refuseHello(socket: Socket, refusal: HelloRefusal, claimed: { nodeId?: PeerId; clusterId?: ClusterId }): void {
    switch (refusal.reason) {
      case 'cluster':
        this.counters.hellosRefusedCluster += 1;
        break;
      case 'not-member':
        this.counters.hellosRefusedNotMember += 1;
        break;
      case 'version':
        this.counters.hellosRefusedVersion += 1;
        break;
    }
    socket.destroy();
    const fields = { reason: refusal.reason, detail: refusal.detail, peerId: claimed.nodeId, peerClusterId: claimed.clusterId, clusterId: this.clusterIdValue, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
    const warning = this.helloRefusedWarnings.get(refusal.reason);
    const nowMs = this.nowMs();
    if (refusal.expected === true || (warning !== undefined && nowMs - warning.lastWarnMs < this.options.helloRefusedWarnIntervalMs)) {
      if (warning !== undefined) warning.refusedSince += 1;
      this.log.debug(fields, 'hello refused, connection closed');
      return;
    }
    this.log.warn({ ...fields, refusedSinceLastWarning: warning?.refusedSince ?? 0 }, 'hello refused, connection closed');
    this.helloRefusedWarnings.set(refusal.reason, { lastWarnMs: nowMs, refusedSince: 0 });
  }

  /** Our cluster id, which must be known before we connect anywhere (a hello without it would be refused). */
  private knownClusterId(): ClusterId {
    const id = this.clusterIdValue;
    assert(id !== undefined, () => `transport ${this.nodeId} has no cluster id: set one (option or setClusterId) before adding peers`);
    return id;
  }

  /** Bad network input: count it, log it, close that connection. Never an assertion. */
  private rejectFrame(socket: Socket, err: FrameError, peerId: PeerId | undefined): void {
    this.counters.framesRejected += 1;
    this.log.warn({ err, code: err.code, peerId, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }, 'frame rejected, connection closed');
    socket.destroy();
  }

  /** Writes every link's queued batches now, one socket write per peer (Transport.flush). */
  flush(): void {
    if (this.flushImmediate !== null) {
      clearImmediate(this.flushImmediate);
      this.flushImmediate = null;
    }
    for (const link of this.links.values()) link.flush();
  }

  private scheduleFlush(): void {
    if (this.flushImmediate !== null || this.closed) return;
    // setImmediate runs after this turn's I/O callbacks, so every send() of the turn shares one write per peer.
    this.flushImmediate = setImmediate(() => {
      this.flushImmediate = null;
      for (const link of this.links.values()) link.flush();
    });
  }

  /** Rate-limited per peer, and never called synchronously from inside send(). */
  private reportUnreachable(peer: PeerId): void {
    const onUnreachable = this.handlers?.onUnreachable;
    if (onUnreachable === undefined || this.closed) return;
    const nowMs = this.nowMs();
    const lastMs = this.lastUnreachableReportMs.get(peer);
    if (lastMs !== undefined && nowMs - lastMs < this.options.unreachableReportIntervalMs) return;
    this.lastUnreachableReportMs.set(peer, nowMs);
    queueMicrotask(() => {
      if (!this.closed) onUnreachable.call(this.handlers, peer);
    });
  }

  private reportDropped(peer: PeerId, batches: readonly Uint8Array[]): void {
    const onDropped = this.handlers?.onDropped;
    if (onDropped === undefined) return;
    // Also after close: the sender learns what never left, so nothing waits out a deadline for it.
    queueMicrotask(() => onDropped.call(this.handlers, peer, batches));
  }

  private linkContext(): LinkContext {
    return {
      nodeId: this.nodeId,
      clusterId: () => this.knownClusterId(),
      log: this.log,
      options: this.options,
      rng: this.rng,
      counters: this.counters,
      trackSocket: (socket) => this.trackSocket(socket),
      scheduleFlush: () => this.scheduleFlush(),
      reportUnreachable: (peer) => this.reportUnreachable(peer),
      reportDropped: (peer, batches) => this.reportDropped(peer, batches),
      rejectFrame: (socket, err, peerId) => this.rejectFrame(socket, err, peerId),
    };
  }

  private snapshotContext(): SnapshotStreamContext {
    return { log: this.log, rejectFrame: (socket, err, peerId) => this.rejectFrame(socket, err, peerId) };
  }
}
