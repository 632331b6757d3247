/**
 * A TCP fault proxy between cluster nodes, no root needed. Each node gets
 * one listening proxy and advertises its address (`flotilla start
 * --advertise`), so every connection a peer opens to it passes through the
 * proxy. The first frame on every connection is a hello naming the sender;
 * the proxy reads it with the transport's own FrameDecoder, so it knows the
 * directed link (sender → node) and applies that link's fault to the bytes
 * that follow. Bytes the node sends back on the same connection (snapshot
 * credits) belong to the opposite link.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { FRAME_BYTES_MAX, FRAME_LENGTH_BYTES, FrameDecoder, encodedFrameBytes, type Frame } from '@flotilla/transport';
import { LINK_OK, type LinkFault } from './link.js';

/**
 * Bytes a relay direction holds (delayed or throttled) before it stops
 * reading its source: TCP back-pressure then reaches the sender, as a slow
 * link would. Two full frames, the transport's own per-peer queue bound.
 */
const PIPE_QUEUE_BYTES_MAX = 2 * FRAME_BYTES_MAX;
/** Bytes buffered while waiting for a connection's hello; past it the sender is unknown and the link is taken as healthy. */
const HELLO_BUFFER_BYTES_MAX = 64 * 1024;
/** How often lossy links roll the dice for each connection. */
const RESET_CHECK_INTERVAL_MS = 250;

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Per directed link, since the network started. */
export interface LinkStats {
  connections: number;
  bytesForwarded: number;
  bytesDiscarded: number;
  resets: number;
  corruptFrames: number;
}

export interface FaultNetworkOptions {
  /** Per node id: where its transport really listens. */
  readonly targets: ReadonlyMap<number, Endpoint>;
  /** Per node id: the port its proxy listens on (absent: any free port). */
  readonly ports?: ReadonlyMap<number, number>;
  readonly host?: string;
  /** Uniform in [0, 1): decides which connections a lossy link resets. */
  readonly random: () => number;
}

/** A relay's direction: bytes from `from` to `to` on one connection. */
class Pipe {
  private readonly queue: { chunk: Buffer; dueAtMs: number }[] = [];
  private queuedBytes = 0;
  private lastDueAtMs = 0;
  private nextSendAtMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingForDrain = false;
  /** Bytes were discarded: the stream is no longer whole, the connection must be reset before traffic resumes. */
  poisoned = false;

  constructor(
    private readonly source: Socket,
    private readonly target: Socket,
    private readonly fault: () => LinkFault,
    private readonly stats: () => LinkStats,
  ) {
    target.on('drain', () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }

  /** `discard`: the relay decided these bytes must not arrive (a cut link). */
  push(chunk: Buffer, discard: boolean): void {
    if (discard) {
      this.poisoned = true;
      this.stats().bytesDiscarded += chunk.length;
      return;
    }
    const now = performance.now();
    this.lastDueAtMs = Math.max(this.lastDueAtMs, now + this.fault().delayMs);
    this.queue.push({ chunk, dueAtMs: this.lastDueAtMs });
    this.queuedBytes += chunk.length;
    if (this.queuedBytes > PIPE_QUEUE_BYTES_MAX) this.source.pause();
    this.pump();
  }

  private pump(): void {
    if (this.timer !== undefined || this.waitingForDrain) return;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const now = performance.now();
      const waitMs = Math.max(head.dueAtMs, this.nextSendAtMs) - now;
      if (waitMs > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, Math.ceil(waitMs));
        return;
      }
      this.queue.shift();
      this.queuedBytes -= head.chunk.length;
      const rate = this.fault().bytesPerSecMax;
      if (rate !== null) this.nextSendAtMs = Math.max(now, this.nextSendAtMs) + (head.chunk.length * 1000) / rate;
      this.stats().bytesForwarded += head.chunk.length;
      if (this.queuedBytes <= PIPE_QUEUE_BYTES_MAX / 2) this.source.resume();
      if (!this.target.write(head.chunk)) {
        this.waitingForDrain = true;
        return;
      }
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

/** One connection through the proxy: the sender's socket, the socket to the node, a pipe each way. */
class Relay {
  /** Sender's node id from its hello; 0 until then, or if it never sent one. */
  from = 0;
  private forward: Pipe | undefined;
  private backward: Pipe | undefined;
  private readonly helloChunks: Buffer[] = [];
  private helloBytes = 0;
  private decoder: FrameDecoder | undefined = new FrameDecoder();
  private closed = false;

  constructor(
    private readonly net: FaultNetwork,
    readonly to: number,
    private readonly client: Socket,
    private readonly upstream: Socket,
  ) {
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const end = () => this.close();
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
    client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    upstream.on('data', (chunk: Buffer) => {
      // Bytes from the node back to the sender: the opposite link. Only a healthy one delivers them.
      if (this.backward === undefined) return;
      this.backward.push(chunk, this.net.link(this.to, this.from).cut !== 'none');
    });
  }

  get poisoned(): boolean {
    return (this.forward?.poisoned ?? false) || (this.backward?.poisoned ?? false);
  }

  private onClientData(chunk: Buffer): void {
    if (this.forward !== undefined) {
      this.forward.push(chunk, this.net.link(this.from, this.to).cut !== 'none');
      return;
    }
    this.helloChunks.push(chunk);
    this.helloBytes += chunk.length;
    let hello: Frame | undefined;
    try {
      this.decoder!.push(chunk, (frame) => {
        hello ??= frame;
      });
    } catch {
      // Not a well-formed stream: relay it as from an unknown sender; the node refuses it itself.
      hello = undefined;
      this.decoder = undefined;
    }
    if (hello === undefined && this.decoder !== undefined && this.helloBytes < HELLO_BUFFER_BYTES_MAX) return;
    this.decoder = undefined;
    this.start(hello?.kind === 'hello' ? hello : undefined);
  }

  /** The hello arrived (or never will): pick the link, then relay what was buffered under its fault. */
  private start(hello: (Frame & { kind: 'hello' }) | undefined): void {
    this.from = hello?.nodeId ?? 0;
    const stats = this.net.statsOf(this.from, this.to);
    stats.connections++;
    this.forward = new Pipe(this.client, this.upstream, () => this.net.link(this.from, this.to), () => this.net.statsOf(this.from, this.to));
    this.backward = new Pipe(this.upstream, this.client, () => this.net.link(this.to, this.from), () => this.net.statsOf(this.to, this.from));
    const buffered = Buffer.concat(this.helloChunks);
    this.helloChunks.length = 0;
    const fault = this.net.link(this.from, this.to);
    if (fault.cut === 'refuse') {
      this.reset();
      return;
    }
    if (fault.cut === 'corrupt' && hello !== undefined) {
      // The hello, then a frame header whose length no receiver accepts, at a frame boundary.
      const helloBytes = encodedFrameBytes(hello);
      const bad = Buffer.alloc(FRAME_LENGTH_BYTES + 2);
      bad.writeUInt32BE(FRAME_BYTES_MAX + 1, 0);
      this.forward.push(buffered.subarray(0, helloBytes), false);
      this.forward.push(bad, false);
      stats.corruptFrames++;
      // Whatever the sender writes next is lost with the connection the receiver is about to close.
      this.forward.poisoned = true;
      return;
    }
    this.forward.push(buffered, fault.cut !== 'none');
  }

  /** Ends both sockets at once (RST where the platform allows), as a broken connection. */
  reset(): void {
    if (this.closed) return;
    this.net.statsOf(this.from, this.to).resets++;
    for (const socket of [this.client, this.upstream]) {
      try {
        socket.resetAndDestroy();
      } catch {
        socket.destroy(); // not connected yet: nothing to reset
      }
    }
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.forward?.stop();
    this.backward?.stop();
    this.client.destroy();
    this.upstream.destroy();
    this.net.forget(this);
  }
}

/**
 * The proxies of a whole cluster and the fault of every directed link
 * between its nodes (all healthy at start).
 */
export class FaultNetwork {
  private readonly servers = new Map<number, Server>();
  private readonly addresses = new Map<number, Endpoint>();
  private readonly targets: Map<number, Endpoint>;
  private readonly links = new Map<string, LinkFault>();
  private readonly linkStats = new Map<string, LinkStats>();
  private readonly relays = new Set<Relay>();
  private readonly resetTimer: NodeJS.Timeout;

  private constructor(private readonly options: FaultNetworkOptions) {
    this.targets = new Map(options.targets);
    this.resetTimer = setInterval(() => this.rollResets(), RESET_CHECK_INTERVAL_MS);
    this.resetTimer.unref();
  }

  static async start(options: FaultNetworkOptions): Promise<FaultNetwork> {
    const network = new FaultNetwork(options);
    try {
      for (const nodeId of options.targets.keys()) await network.listen(nodeId);
    } catch (err) {
      await network.close();
      throw err;
    }
    return network;
  }

  private async listen(nodeId: number): Promise<void> {
    const host = this.options.host ?? '127.0.0.1';
    const server = createServer((client) => {
      const target = this.targets.get(nodeId)!;
      const upstream = connect({ host: target.host, port: target.port });
      this.relays.add(new Relay(this, nodeId, client, upstream));
    });
    this.servers.set(nodeId, server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: this.options.ports?.get(nodeId) ?? 0 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error(`proxy for node ${nodeId} has no TCP address`);
    this.addresses.set(nodeId, { host, port: address.port });
  }

  /** "host:port" of `nodeId`'s proxy: what the node advertises and its peers dial. */
  addressOf(nodeId: number): string {
    const a = this.addresses.get(nodeId);
    if (a === undefined) throw new RangeError(`no proxy for node ${nodeId}`);
    return `${a.host}:${a.port}`;
  }

  link(from: number, to: number): LinkFault {
    return this.links.get(`${from}>${to}`) ?? LINK_OK;
  }

  /**
   * Sets the fault of the directed link `from` → `to`. Connections carrying
   * that direction are reset when the link starts refusing or corrupting,
   * and when bytes were discarded on them and the link no longer discards.
   */
  setLink(from: number, to: number, fault: LinkFault): void {
    this.links.set(`${from}>${to}`, fault);
    for (const relay of [...this.relays]) {
      const forward = relay.from === from && relay.to === to;
      const backward = relay.from === to && relay.to === from;
      if (!forward && !backward) continue;
      if (forward && (fault.cut === 'refuse' || fault.cut === 'corrupt')) relay.reset();
      else if (relay.poisoned && this.link(relay.from, relay.to).cut === 'none' && this.link(relay.to, relay.from).cut === 'none') relay.reset();
    }
  }

  /** Every link healthy again. */
  healAll(): void {
    for (const key of [...this.links.keys()]) {
      const [from, to] = key.split('>').map(Number) as [number, number];
      this.setLink(from, to, LINK_OK);
    }
  }

  statsOf(from: number, to: number): LinkStats {
    const key = `${from}>${to}`;
    let s = this.linkStats.get(key);
    if (s === undefined) this.linkStats.set(key, (s = { connections: 0, bytesForwarded: 0, bytesDiscarded: 0, resets: 0, corruptFrames: 0 }));
    return s;
  }

  /** Per directed link "from>to" (0: a sender that sent no hello). */
  stats(): ReadonlyMap<string, Readonly<LinkStats>> {
    return this.linkStats;
  }

  /** @internal A relay closed. */
  forget(relay: Relay): void {
    this.relays.delete(relay);
  }

  private rollResets(): void {
    for (const relay of [...this.relays]) {
      const chance = this.link(relay.from, relay.to).resetChancePerSec;
      if (chance > 0 && this.options.random() < (chance * RESET_CHECK_INTERVAL_MS) / 1000) relay.reset();
    }
  }

  async close(): Promise<void> {
    clearInterval(this.resetTimer);
    for (const relay of [...this.relays]) relay.close();
    await Promise.all([...this.servers.values()].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.servers.clear();
  }
}
