/**
 * MemoryNetwork: a deterministic in-memory network whose endpoints implement
 * `Transport`, for tests and the simulator.
 *
 * Nothing moves by itself. No timers, no microtask scheduling of deliveries:
 * the test drives the network with `deliver()` and `advance(ticks)`, and
 * every random choice (drop, duplicate, delay, reorder) comes from the
 * injected `rng`, so a seed replays a run exactly.
 *
 * Model, in the order a batch meets it:
 * 1. send(): the batch is copied (the caller may reuse its buffer). A send
 *    the link refuses (cut, isolated, peer closed, not started or removed,
 *    in-flight bound reached) is dropped, counted in the sender's
 *    `batchesDropped`, and reported via `onUnreachable` (see below); send
 *    returns false for it (a TCP link in backoff refuses the same way).
 *    Otherwise the link's faults apply: drop (counted in `batchesDropped`,
 *    not reported, as a lossy wire is invisible to the sender), delay
 *    (uniform in [delayTicksMin, delayTicksMax]) and duplicate (the copy
 *    draws its own delay).
 * 2. In flight: each batch is due at `nowTicks + delay`. A clogged link
 *    holds its batches (nothing is lost) until unclogged. Cutting a link,
 *    isolating or closing an endpoint loses what is in flight on the
 *    affected links (counted in the sender's `batchesDropped`).
 * 3. deliver(): due batches leave in (due tick, send order); a link with a
 *    reorder window lets any of the next `reorderWindowCount` due batches
 *    on that link overtake the oldest.
 *
 * onUnreachable is reported once per outage of a directed link: the first
 * refused send (or snapshot open) to a peer queues one report; later
 * refusals stay silent until the link is seen healthy again (a send to that
 * peer is accepted, or the link is healed / the node rejoins). Reports are
 * queued like deliveries, so handlers never run inside send().
 *
 * Snapshot streams are reliable and ordered (like the TCP connection they
 * stand for): no drop, duplicate or reorder. Their opening travels as a
 * delivery (it is delayed and clogged like a batch); their chunks then move
 * by credit: the sender starts with `snapshotWindowChunkCount` credits and
 * gets one back per chunk the receiver consumes. Cutting either direction
 * between the two endpoints, isolating or closing either breaks the stream.
 */
import { SnapshotStreamError } from '../errors.js';
import type {
  PeerId,
  SnapshotReceiver,
  SnapshotSender,
  Transport,
  TransportHandlers,
  TransportStats,
} from '../types.js';
import { zeroTransportStats } from '../types.js';
import { BATCH_BYTES_MAX } from '../frame.js';
import { assert, unreachable } from '@flotilla/core';

// ---------------------------------------------------------------------------
// Limits

/** Probabilities are compared against `rng.intBelow(PROBABILITY_SCALE)`: a resolution of one in a million is finer than any test needs. */
const PROBABILITY_SCALE = 1_000_000;

/**
 * Chunks a snapshot sender may have unconsumed by default. Small on purpose
 * so tests exercise the blocked-writer path without writing much.
 */
export const SNAPSHOT_WINDOW_CHUNK_COUNT_DEFAULT = 4;

/**
 * Batches in flight on one directed link, like a TCP send queue's bound. A
 * test that reaches it has forgotten to call deliver() or has a message storm.
 */
export const LINK_IN_FLIGHT_BATCH_COUNT_MAX_DEFAULT = 10_000;

/** Deliveries in one deliver() call: beyond this, handlers are ping-ponging forever. */
const DELIVER_COUNT_MAX = 1_000_000;

/** Writes a snapshot sender may have waiting for credit. Callers should await each write; this only catches a runaway loop. */
const SNAPSHOT_WRITES_PENDING_COUNT_MAX = 64;

/** Bounds on fault settings, so a typo (ms for ticks) fails at configuration time. */
const DELAY_TICKS_MAX = 1_000_000;
const REORDER_WINDOW_COUNT_MAX = 1_024;

assert(SNAPSHOT_WINDOW_CHUNK_COUNT_DEFAULT >= 1, 'snapshot window must admit at least one chunk');
assert(LINK_IN_FLIGHT_BATCH_COUNT_MAX_DEFAULT >= 1, 'links must admit at least one batch');
assert(
  REORDER_WINDOW_COUNT_MAX < LINK_IN_FLIGHT_BATCH_COUNT_MAX_DEFAULT,
  'a reorder window larger than what a link holds means nothing',
);

/** A bad node id is the caller's bug, not network input. */
function assertPeerId(id: PeerId, what: string): void {
  assert(Number.isSafeInteger(id) && id > 0, () => `${what} must be a positive integer, got ${id}`);
}

// ---------------------------------------------------------------------------
// Errors

/**
 * Streams end abnormally with the same SnapshotStreamError as over TCP:
 * SNAPSHOT_CONNECTION_LOST (link cut, endpoint closed, receiver stopped
 * reading; retryable) or SNAPSHOT_ABORTED (the sender gave up).
 */
function streamBroken(from: PeerId, to: PeerId, detail: string): SnapshotStreamError {
  return new SnapshotStreamError('SNAPSHOT_CONNECTION_LOST', `snapshot stream from node ${from} to node ${to} broke: ${detail}`);
}

function streamAborted(from: PeerId, to: PeerId, reason: string): SnapshotStreamError {
  return new SnapshotStreamError('SNAPSHOT_ABORTED', `snapshot stream from node ${from} to node ${to} was aborted: ${reason}`);
}

// ---------------------------------------------------------------------------
// Public configuration

/** The randomness the network draws on; `SeededRng` from core fits. */
export interface MemoryNetworkRng {
  /** Uniform integer in [0, bound). */
  intBelow(bound: number): number;
}

export interface LinkFaults {
  /** Chance in [0, 1] that a batch is lost on the way. */
  readonly dropProbability: number;
  /** Chance in [0, 1] that a batch arrives twice; the copy draws its own delay. */
  readonly duplicateProbability: number;
  /** How many due batches on the link, besides the oldest, may be delivered in its place (0 keeps the link FIFO). */
  readonly reorderWindowCount: number;
  /** Ticks in flight, uniform in [delayTicksMin, delayTicksMax]; equal values give a fixed delay. */
  readonly delayTicksMin: number;
  readonly delayTicksMax: number;
}

export const NO_LINK_FAULTS: LinkFaults = Object.freeze({
  dropProbability: 0,
  duplicateProbability: 0,
  reorderWindowCount: 0,
  delayTicksMin: 0,
  delayTicksMax: 0,
});

export interface MemoryNetworkOptions {
  readonly rng: MemoryNetworkRng;
  /** Initial credit of a snapshot stream (chunks). */
  readonly snapshotWindowChunkCount?: number;
  /** Bound on batches in flight per directed link; a send beyond it is dropped and reported unreachable. */
  readonly linkInFlightBatchCountMax?: number;
  /** Check the queue's invariants (O(n)) after every mutation. Turn on in tests. */
  readonly verify?: boolean;
}

// ---------------------------------------------------------------------------
// Internals

interface BatchDelivery {
  readonly kind: 'batch';
  readonly seq: number;
  readonly dueTick: number;
  readonly from: PeerId;
  readonly to: PeerId;
  /** A private copy: never shared with the sender or another delivery. */
  readonly bytes: Uint8Array;
}

interface SnapshotOpenDelivery {
  readonly kind: 'snapshotOpen';
  readonly seq: number;
  readonly dueTick: number;
  readonly from: PeerId;
  readonly to: PeerId;
  readonly stream: MemorySnapshotStream;
}

/** A report to endpoint `from` that it could not reach `to`. Local: no link, never clogged. */
interface UnreachableNotice {
  readonly kind: 'unreachable';
  readonly seq: number;
  readonly dueTick: number;
  readonly from: PeerId;
  readonly to: PeerId;
}

type Delivery = BatchDelivery | SnapshotOpenDelivery | UnreachableNotice;

function linkKey(from: PeerId, to: PeerId): string {
  return `${from}>${to}`;
}

function isBetween(item: { from: PeerId; to: PeerId }, a: PeerId, b: PeerId): boolean {
  return (item.from === a && item.to === b) || (item.from === b && item.to === a);
}

function validateFaults(faults: LinkFaults, where: string): void {
  for (const name of ['dropProbability', 'duplicateProbability'] as const) {
    const p = faults[name];
    assert(p >= 0 && p <= 1, () => `${name} ${p} is outside [0, 1] (${where})`);
  }
  const window = faults.reorderWindowCount;
  assert(
    Number.isInteger(window) && window >= 0 && window <= REORDER_WINDOW_COUNT_MAX,
    () => `reorderWindowCount ${window} must be an integer in [0, ${REORDER_WINDOW_COUNT_MAX}] (${where})`,
  );
  for (const name of ['delayTicksMin', 'delayTicksMax'] as const) {
    const ticks = faults[name];
    assert(
      Number.isInteger(ticks) && ticks >= 0 && ticks <= DELAY_TICKS_MAX,
      () => `${name} ${ticks} must be an integer in [0, ${DELAY_TICKS_MAX}] (${where})`,
    );
  }
  assert(
    faults.delayTicksMin <= faults.delayTicksMax,
    () => `delayTicksMin ${faults.delayTicksMin} exceeds delayTicksMax ${faults.delayTicksMax} (${where})`,
  );
}

// ---------------------------------------------------------------------------
// Snapshot streams

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

interface PendingWrite extends Waiter<void> {
  readonly chunk: Uint8Array;
}

/**
 * open → ending (end() called) → completed (receiver consumed everything);
 * open | ending → failed (abort, break). completed and failed are final.
 */
type StreamPhase = 'open' | 'ending' | 'completed' | 'failed';

class MemorySnapshotStream {
  private phase: StreamPhase = 'open';
  /** onSnapshot has been called; until then chunks wait within the window. */
  private delivered = false;
  /** Invariant: creditCount + buffered.length === windowChunkCount. */
  private creditCount: number;
  private readonly buffered: Uint8Array[] = [];
  /** Non-empty only while creditCount is 0. */
  private readonly writesPending: PendingWrite[] = [];
  private endWaiter: Waiter<void> | undefined;
  private readerWaiter: Waiter<IteratorResult<Uint8Array>> | undefined;
  private failure: SnapshotStreamError | undefined;
  private iteratorTaken = false;
  readonly sender: SnapshotSender;
  readonly receiver: SnapshotReceiver;

  constructor(
    readonly from: PeerId,
    readonly to: PeerId,
    header: Uint8Array,
    private readonly windowChunkCount: number,
    private readonly onFinished: (stream: MemorySnapshotStream) => void,
  ) {
    this.creditCount = windowChunkCount;
    this.sender = {
      write: (chunk) => this.write(chunk),
      end: () => this.end(),
      abort: (reason) => this.abort(reason),
    };
    const headerCopy = header.slice();
    this.receiver = {
      from,
      header: headerCopy,
      chunks: { [Symbol.asyncIterator]: () => this.iterator() },
    };
  }

  get isFinished(): boolean {
    return this.phase === 'completed' || this.phase === 'failed';
  }

  markDelivered(): void {
    assert(!this.delivered, () => `snapshot stream ${this.from}→${this.to} delivered twice`);
    this.delivered = true;
    this.completeIfDrained();
  }

  breakWith(detail: string): void {
    this.fail(streamBroken(this.from, this.to, detail));
  }

  checkInvariants(): void {
    assert(
      this.creditCount + this.buffered.length === this.windowChunkCount,
      () => `snapshot stream ${this.from}→${this.to}: credit ${this.creditCount} + buffered ${this.buffered.length} != window ${this.windowChunkCount}`,
    );
    assert(this.writesPending.length === 0 || this.creditCount === 0, 'writes wait only without credit');
  }

  private write(chunk: Uint8Array): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    assert(this.phase === 'open', () => `write after end on snapshot stream ${this.from}→${this.to}`);
    const copy = chunk.slice();
    if (this.writesPending.length === 0 && this.creditCount > 0) {
      this.accept(copy);
      return Promise.resolve();
    }
    assert(
      this.writesPending.length < SNAPSHOT_WRITES_PENDING_COUNT_MAX,
      () => `snapshot stream ${this.from}→${this.to} has ${this.writesPending.length} writes waiting for credit (max ${SNAPSHOT_WRITES_PENDING_COUNT_MAX}): await each write`,
    );
    return new Promise((resolve, reject) => this.writesPending.push({ chunk: copy, resolve, reject }));
  }

  private end(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    assert(this.phase === 'open', () => `end called twice on snapshot stream ${this.from}→${this.to}`);
    this.phase = 'ending';
    const ended = new Promise<void>((resolve, reject) => {
      this.endWaiter = { resolve, reject };
    });
    this.completeIfDrained();
    return ended;
  }

  private abort(reason: string): void {
    this.fail(streamAborted(this.from, this.to, reason));
  }

  /** Takes one unit of credit; a waiting reader consumes the chunk at once and so returns it. */
  private accept(chunk: Uint8Array): void {
    assert(this.creditCount > 0, 'accepted a chunk without credit');
    this.creditCount--;
    const reader = this.readerWaiter;
    if (reader !== undefined) {
      this.readerWaiter = undefined;
      this.creditCount++;
      reader.resolve({ value: chunk, done: false });
    } else {
      this.buffered.push(chunk);
    }
  }

  /** Admits waiting writes while there is credit, then checks for completion. */
  private pump(): void {
    while (this.writesPending.length > 0 && this.creditCount > 0) {
      const write = this.writesPending.shift()!;
      this.accept(write.chunk);
      write.resolve();
    }
    this.completeIfDrained();
  }

  private completeIfDrained(): void {
    if (this.phase !== 'ending') return;
    if (!this.delivered || this.buffered.length > 0 || this.writesPending.length > 0) return;
    this.phase = 'completed';
    this.endWaiter?.resolve();
    this.endWaiter = undefined;
    this.readerWaiter?.resolve({ value: undefined, done: true });
    this.readerWaiter = undefined;
    this.onFinished(this);
  }

  private fail(error: SnapshotStreamError): void {
    if (this.isFinished) return;
    this.phase = 'failed';
    this.failure = error;
    // Chunks the receiver had not consumed are gone with the connection.
    this.creditCount += this.buffered.length;
    this.buffered.length = 0;
    for (const write of this.writesPending.splice(0)) write.reject(error);
    this.endWaiter?.reject(error);
    this.endWaiter = undefined;
    this.readerWaiter?.reject(error);
    this.readerWaiter = undefined;
    this.onFinished(this);
  }

  private iterator(): AsyncIterator<Uint8Array> {
    assert(!this.iteratorTaken, () => `snapshot stream ${this.from}→${this.to} chunks iterated twice`);
    this.iteratorTaken = true;
    return {
      next: () => this.next(),
      // The receiver stopped reading (break out of for-await): the sender must not wait forever.
      return: () => {
        this.breakWith('receiver stopped reading');
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private next(): Promise<IteratorResult<Uint8Array>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    assert(this.readerWaiter === undefined, () => `concurrent next() on snapshot stream ${this.from}→${this.to}`);
    const chunk = this.buffered.shift();
    if (chunk !== undefined) {
      this.creditCount++;
      this.pump();
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.phase === 'completed') return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.readerWaiter = { resolve, reject };
    });
  }
}

// ---------------------------------------------------------------------------
// Endpoints

/** Per-peer view of the sender's "connection", for connectionsOpened / reconnects. */
type LinkState = 'open' | 'broken';

class MemoryEndpoint implements Transport {
  handlers: TransportHandlers | undefined;
  closed = false;
  readonly counters = zeroTransportStats();
  /** Peers forgotten by removePeer: sends to them drop as "peer unknown" until setPeer. */
  readonly removedPeers = new Set<PeerId>();
  /** Peers already reported unreachable in the current outage. */
  readonly unreachableReported = new Set<PeerId>();
  readonly linkStates = new Map<PeerId, LinkState>();

  constructor(
    private readonly fabric: Fabric,
    readonly nodeId: PeerId,
  ) {}

  get isReceiving(): boolean {
    return this.handlers !== undefined && !this.closed;
  }

  start(handlers: TransportHandlers): Promise<void> {
    assert(!this.closed, () => `node ${this.nodeId}: start after close`);
    assert(this.handlers === undefined, () => `node ${this.nodeId}: start called twice`);
    this.handlers = handlers;
    return Promise.resolve();
  }

  send(to: PeerId, batch: Uint8Array): boolean {
    return this.fabric.send(this, to, batch);
  }

  openSnapshot(to: PeerId, header: Uint8Array): SnapshotSender {
    return this.fabric.openSnapshot(this, to, header);
  }

  setPeer(id: PeerId, _address: string): void {
    assertPeerId(id, 'peer id');
    this.removedPeers.delete(id);
  }

  removePeer(id: PeerId): void {
    assertPeerId(id, 'peer id');
    this.removedPeers.add(id);
    this.fabric.forgetPeer(this, id);
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  close(): Promise<void> {
    if (!this.closed) this.fabric.close(this);
    return Promise.resolve();
  }
}

/** The network's state and mechanics; `MemoryNetwork` is the face tests see. */
class Fabric {
  nowTicks = 0;
  private seqNext = 0;
  /** Sorted by (dueTick, seq). */
  private readonly queue: Delivery[] = [];
  private readonly inFlightBatchCounts = new Map<string, number>();
  readonly endpoints = new Map<PeerId, MemoryEndpoint>();
  private globalFaults: LinkFaults = NO_LINK_FAULTS;
  private readonly linkFaults = new Map<string, Partial<LinkFaults>>();
  private readonly cutLinks = new Set<string>();
  private readonly cloggedLinks = new Set<string>();
  private readonly isolatedNodes = new Set<PeerId>();
  private readonly streams = new Set<MemorySnapshotStream>();
  private delivering = false;

  constructor(
    private readonly rng: MemoryNetworkRng,
    private readonly snapshotWindowChunkCount: number,
    private readonly linkInFlightBatchCountMax: number,
    private readonly verify: boolean,
  ) {}

  // --- configuration ---

  setFaults(faults: Partial<LinkFaults>): void {
    const merged = { ...this.globalFaults, ...faults };
    validateFaults(merged, 'global faults');
    for (const [key, override] of this.linkFaults) validateFaults({ ...merged, ...override }, `link ${key}`);
    this.globalFaults = merged;
  }

  setLinkFaults(from: PeerId, to: PeerId, faults: Partial<LinkFaults>): void {
    assertPeerId(from, 'from');
    assertPeerId(to, 'to');
    validateFaults({ ...this.globalFaults, ...faults }, `link ${linkKey(from, to)}`);
    this.linkFaults.set(linkKey(from, to), { ...faults });
  }

  clearLinkFaults(from: PeerId, to: PeerId): void {
    this.linkFaults.delete(linkKey(from, to));
  }

  faultsOf(from: PeerId, to: PeerId): LinkFaults {
    const override = this.linkFaults.get(linkKey(from, to));
    return override === undefined ? this.globalFaults : { ...this.globalFaults, ...override };
  }

  // --- endpoints ---

  endpoint(id: PeerId): MemoryEndpoint {
    assertPeerId(id, 'node id');
    const existing = this.endpoints.get(id);
    if (existing !== undefined && !existing.closed) return existing;
    const created = new MemoryEndpoint(this, id);
    this.endpoints.set(id, created);
    return created;
  }

  close(endpoint: MemoryEndpoint): void {
    const id = endpoint.nodeId;
    assert(this.endpoints.get(id) === endpoint, () => `node ${id}: closing an endpoint that was replaced`);
    // Discard first: losses count on senders, including the closing endpoint itself.
    this.discardInFlight((item) => (item.kind === 'unreachable' ? item.from === id : item.from === id || item.to === id));
    this.breakStreams((stream) => stream.from === id || stream.to === id, `node ${id} closed`);
    this.markLinksBroken((from, to) => from === id || to === id);
    endpoint.closed = true;
    this.check();
  }

  forgetPeer(endpoint: MemoryEndpoint, peer: PeerId): void {
    const id = endpoint.nodeId;
    this.breakStreams((stream) => isBetween(stream, id, peer), `node ${id} removed peer ${peer}`);
    this.markLinksBroken((from, to) => from === id && to === peer);
    this.check();
  }

  // --- sending ---

  send(sender: MemoryEndpoint, to: PeerId, batch: Uint8Array): boolean {
    assertPeerId(to, 'destination');
    const from = sender.nodeId;
    // As TcpTransport: a batch over the frame limit is a caller's bug, dropped and counted.
    if (batch.byteLength > BATCH_BYTES_MAX) {
      sender.counters.batchesDropped++;
      sender.counters.batchesOversized++;
      return false;
    }
    if (sender.closed) {
      // No handlers run after close; the drop is still counted.
      sender.counters.batchesDropped++;
      return false;
    }
    const refusal = this.refusalOf(sender, to, { needsReturnPath: false });
    if (refusal !== undefined) {
      this.refuse(sender, to);
      return false;
    }
    const faults = this.faultsOf(from, to);
    // A lossy wire is invisible to the sender: accepted, then lost.
    if (this.chance(faults.dropProbability)) {
      sender.counters.batchesDropped++;
      return true;
    }
    const key = linkKey(from, to);
    if (this.inFlightBatchCount(key) >= this.linkInFlightBatchCountMax) {
      this.refuse(sender, to);
      return false;
    }
    const bytes = batch.slice();
    this.enqueue({ kind: 'batch', seq: this.seqNext++, dueTick: this.nowTicks + this.drawDelayTicks(faults), from, to, bytes });
    sender.counters.batchesSent++;
    sender.counters.bytesSent += bytes.length;
    sender.unreachableReported.delete(to);
    this.noteLinkUsed(sender, to);
    if (this.chance(faults.duplicateProbability) && this.inFlightBatchCount(key) < this.linkInFlightBatchCountMax) {
      const dueTick = this.nowTicks + this.drawDelayTicks(faults);
      this.enqueue({ kind: 'batch', seq: this.seqNext++, dueTick, from, to, bytes: bytes.slice() });
    }
    this.check();
    return true;
  }

  openSnapshot(sender: MemoryEndpoint, to: PeerId, header: Uint8Array): SnapshotSender {
    assertPeerId(to, 'destination');
    const from = sender.nodeId;
    const stream = new MemorySnapshotStream(from, to, header, this.snapshotWindowChunkCount, (s) => this.onStreamFinished(s));
    if (sender.closed) {
      stream.breakWith(`node ${from} is closed`);
      return stream.sender;
    }
    // Credit flows back from receiver to sender, so the stream needs both directions.
    const refusal = this.refusalOf(sender, to, { needsReturnPath: true });
    if (refusal !== undefined) {
      this.reportUnreachable(sender, to);
      stream.breakWith(refusal);
      return stream.sender;
    }
    this.streams.add(stream);
    const dueTick = this.nowTicks + this.drawDelayTicks(this.faultsOf(from, to));
    this.enqueue({ kind: 'snapshotOpen', seq: this.seqNext++, dueTick, from, to, stream });
    this.check();
    return stream.sender;
  }

  private refusalOf(sender: MemoryEndpoint, to: PeerId, options: { needsReturnPath: boolean }): string | undefined {
    const from = sender.nodeId;
    if (sender.removedPeers.has(to)) return `node ${from} does not know peer ${to}`;
    const receiver = this.endpoints.get(to);
    if (receiver === undefined || !receiver.isReceiving) return `node ${to} is not running`;
    if (!this.isLinkUp(from, to)) return `link ${from}→${to} is down`;
    if (options.needsReturnPath && !this.isLinkUp(to, from)) return `link ${to}→${from} is down`;
    return undefined;
  }

  private refuse(sender: MemoryEndpoint, to: PeerId): void {
    sender.counters.batchesDropped++;
    this.reportUnreachable(sender, to);
    this.check();
  }

  private reportUnreachable(sender: MemoryEndpoint, to: PeerId): void {
    if (sender.unreachableReported.has(to)) return;
    sender.unreachableReported.add(to);
    this.enqueue({ kind: 'unreachable', seq: this.seqNext++, dueTick: this.nowTicks, from: sender.nodeId, to });
  }

  private noteLinkUsed(sender: MemoryEndpoint, to: PeerId): void {
    const state = sender.linkStates.get(to);
    if (state === 'open') return;
    sender.counters.connectionsOpened++;
    if (state === 'broken') sender.counters.reconnects++;
    sender.linkStates.set(to, 'open');
  }

  private markLinksBroken(affects: (from: PeerId, to: PeerId) => boolean): void {
    for (const endpoint of this.endpoints.values()) {
      for (const [peer, state] of endpoint.linkStates) {
        if (state === 'open' && affects(endpoint.nodeId, peer)) endpoint.linkStates.set(peer, 'broken');
      }
    }
  }

  private chance(probability: number): boolean {
    if (probability <= 0) return false;
    return this.rng.intBelow(PROBABILITY_SCALE) < probability * PROBABILITY_SCALE;
  }

  private drawDelayTicks(faults: LinkFaults): number {
    const spread = faults.delayTicksMax - faults.delayTicksMin;
    assert(spread >= 0, () => `delay range [${faults.delayTicksMin}, ${faults.delayTicksMax}] is empty`);
    return faults.delayTicksMin + (spread === 0 ? 0 : this.rng.intBelow(spread + 1));
  }

  // --- faults on links ---

  isLinkUp(from: PeerId, to: PeerId): boolean {
    return !this.isolatedNodes.has(from) && !this.isolatedNodes.has(to) && !this.cutLinks.has(linkKey(from, to));
  }

  cut(from: PeerId, to: PeerId): void {
    assertPeerId(from, 'from');
    assertPeerId(to, 'to');
    this.cutLinks.add(linkKey(from, to));
    this.discardInFlight((item) => item.kind !== 'unreachable' && item.from === from && item.to === to);
    this.breakStreams((stream) => isBetween(stream, from, to), `link ${from}→${to} was cut`);
    this.markLinksBroken((f, t) => f === from && t === to);
    this.check();
  }

  heal(from: PeerId, to: PeerId): void {
    this.cutLinks.delete(linkKey(from, to));
    this.endpoints.get(from)?.unreachableReported.delete(to);
  }

  isolate(id: PeerId): void {
    assertPeerId(id, 'node id');
    this.isolatedNodes.add(id);
    this.discardInFlight((item) => item.kind !== 'unreachable' && (item.from === id || item.to === id));
    this.breakStreams((stream) => stream.from === id || stream.to === id, `node ${id} was isolated`);
    this.markLinksBroken((from, to) => from === id || to === id);
    this.check();
  }

  rejoin(id: PeerId): void {
    this.isolatedNodes.delete(id);
    for (const endpoint of this.endpoints.values()) {
      if (endpoint.nodeId === id) endpoint.unreachableReported.clear();
      else endpoint.unreachableReported.delete(id);
    }
  }

  healAll(): void {
    this.cutLinks.clear();
    this.isolatedNodes.clear();
    for (const endpoint of this.endpoints.values()) endpoint.unreachableReported.clear();
  }

  clog(from: PeerId, to: PeerId): void {
    assertPeerId(from, 'from');
    assertPeerId(to, 'to');
    this.cloggedLinks.add(linkKey(from, to));
  }

  unclog(from: PeerId, to: PeerId): void {
    this.cloggedLinks.delete(linkKey(from, to));
  }

  // --- the queue ---

  pendingCount(): number {
    return this.queue.length;
  }

  advance(ticks: number): void {
    assert(Number.isInteger(ticks) && ticks >= 0, () => `advance by ${ticks} ticks: must be a non-negative integer`);
    this.nowTicks += ticks;
  }

  deliver(maxCount: number): number {
    assert(maxCount >= 0, () => `deliver maxCount ${maxCount} is negative`);
    assert(!this.delivering, 'deliver() called from inside a handler');
    this.delivering = true;
    let deliveredCount = 0;
    try {
      while (deliveredCount < maxCount) {
        const index = this.nextIndex();
        if (index === undefined) break;
        const item = this.takeAt(index);
        this.dispatch(item);
        deliveredCount++;
        assert(deliveredCount <= DELIVER_COUNT_MAX, () => `deliver() exceeded ${DELIVER_COUNT_MAX} deliveries: handlers never go quiet`);
      }
    } finally {
      this.delivering = false;
    }
    this.check();
    return deliveredCount;
  }

  /** The first due item on an unclogged link; for a batch on a reordering link, one of the next due batches on that link. */
  private nextIndex(): number | undefined {
    let first: number | undefined;
    for (let i = 0; i < this.queue.length; i++) {
      const item = this.queue[i]!;
      if (item.dueTick > this.nowTicks) return undefined;
      if (item.kind !== 'unreachable' && this.cloggedLinks.has(linkKey(item.from, item.to))) continue;
      first = i;
      break;
    }
    if (first === undefined) return undefined;
    const oldest = this.queue[first]!;
    if (oldest.kind !== 'batch') return first;
    const windowCount = this.faultsOf(oldest.from, oldest.to).reorderWindowCount;
    if (windowCount === 0) return first;
    const candidates = [first];
    for (let i = first + 1; i < this.queue.length && candidates.length <= windowCount; i++) {
      const item = this.queue[i]!;
      if (item.dueTick > this.nowTicks) break;
      if (item.kind === 'batch' && item.from === oldest.from && item.to === oldest.to) candidates.push(i);
    }
    return candidates.length === 1 ? first : candidates[this.rng.intBelow(candidates.length)]!;
  }

  private dispatch(item: Delivery): void {
    switch (item.kind) {
      case 'batch':
        return this.dispatchBatch(item);
      case 'snapshotOpen':
        return this.dispatchSnapshotOpen(item);
      case 'unreachable':
        return this.dispatchUnreachable(item);
      default:
        return unreachable(item, 'delivery kind');
    }
  }

  private receiverOf(item: BatchDelivery | SnapshotOpenDelivery): MemoryEndpoint & { handlers: TransportHandlers } {
    // Cuts, isolation and close discard what is in flight, so nothing due can be on a dead link.
    assert(this.isLinkUp(item.from, item.to), () => `delivery on down link ${item.from}→${item.to}`);
    const receiver = this.endpoints.get(item.to);
    assert(receiver !== undefined && receiver.isReceiving, () => `delivery to node ${item.to}, which is not running`);
    return receiver as MemoryEndpoint & { handlers: TransportHandlers };
  }

  private dispatchBatch(item: BatchDelivery): void {
    const receiver = this.receiverOf(item);
    receiver.counters.batchesReceived++;
    receiver.counters.bytesReceived += item.bytes.length;
    receiver.handlers.onBatch(item.from, item.bytes);
  }

  private dispatchSnapshotOpen(item: SnapshotOpenDelivery): void {
    const receiver = this.receiverOf(item);
    assert(!item.stream.isFinished, 'a finished stream left its open in the queue');
    const onSnapshot = receiver.handlers.onSnapshot;
    if (onSnapshot === undefined) {
      item.stream.breakWith(`node ${item.to} does not accept snapshots`);
      return;
    }
    item.stream.markDelivered();
    onSnapshot.call(receiver.handlers, item.stream.receiver);
  }

  private dispatchUnreachable(item: UnreachableNotice): void {
    const endpoint = this.endpoints.get(item.from);
    // Close discards notices for the closing endpoint; a never-started one has nobody to tell.
    if (endpoint === undefined || !endpoint.isReceiving) return;
    endpoint.handlers!.onUnreachable?.(item.to);
  }

  private enqueue(item: Delivery): void {
    // Upper bound on dueTick: seq grows, so the new item goes after everything due no later.
    let low = 0;
    let high = this.queue.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.queue[middle]!.dueTick <= item.dueTick) low = middle + 1;
      else high = middle;
    }
    this.queue.splice(low, 0, item);
    if (item.kind === 'batch') {
      const key = linkKey(item.from, item.to);
      this.inFlightBatchCounts.set(key, this.inFlightBatchCount(key) + 1);
    }
  }

  private takeAt(index: number): Delivery {
    const [item] = this.queue.splice(index, 1);
    assert(item !== undefined, () => `no delivery at index ${index}`);
    if (item.kind === 'batch') {
      const key = linkKey(item.from, item.to);
      const count = this.inFlightBatchCount(key);
      assert(count > 0, () => `in-flight count of link ${key} underflows`);
      if (count === 1) this.inFlightBatchCounts.delete(key);
      else this.inFlightBatchCounts.set(key, count - 1);
    }
    return item;
  }

  private inFlightBatchCount(key: string): number {
    return this.inFlightBatchCounts.get(key) ?? 0;
  }

  /** Removes matching items; lost batches count on their sender, lost opens break their stream. */
  private discardInFlight(matches: (item: Delivery) => boolean): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const item = this.queue[i]!;
      if (!matches(item)) continue;
      this.takeAt(i);
      if (item.kind === 'batch') {
        const sender = this.endpoints.get(item.from);
        if (sender !== undefined) sender.counters.batchesDropped++;
      } else if (item.kind === 'snapshotOpen') {
        item.stream.breakWith(`lost in flight on link ${item.from}→${item.to}`);
      }
    }
  }

  private breakStreams(matches: (stream: MemorySnapshotStream) => boolean, detail: string): void {
    for (const stream of [...this.streams]) {
      if (matches(stream)) stream.breakWith(detail);
    }
  }

  private onStreamFinished(stream: MemorySnapshotStream): void {
    this.streams.delete(stream);
    const index = this.queue.findIndex((item) => item.kind === 'snapshotOpen' && item.stream === stream);
    if (index >= 0) this.takeAt(index);
  }

  /** O(n) invariant checks, on when `verify` is set. */
  private check(): void {
    if (!this.verify) return;
    const counts = new Map<string, number>();
    for (let i = 0; i < this.queue.length; i++) {
      const item = this.queue[i]!;
      if (i > 0) {
        const previous = this.queue[i - 1]!;
        assert(
          previous.dueTick < item.dueTick || (previous.dueTick === item.dueTick && previous.seq < item.seq),
          () => `queue out of order at ${i}: (${previous.dueTick}, ${previous.seq}) before (${item.dueTick}, ${item.seq})`,
        );
      }
      if (item.kind === 'unreachable') continue;
      assert(this.isLinkUp(item.from, item.to), () => `item ${item.seq} in flight on down link ${item.from}→${item.to}`);
      if (item.kind === 'batch') {
        const key = linkKey(item.from, item.to);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    assert(counts.size === this.inFlightBatchCounts.size, 'in-flight link counts disagree with the queue');
    for (const [key, count] of counts) {
      assert(this.inFlightBatchCounts.get(key) === count, () => `link ${key}: counted ${this.inFlightBatchCounts.get(key)}, queue holds ${count}`);
      assert(count <= this.linkInFlightBatchCountMax, () => `link ${key} holds ${count} batches`);
    }
    for (const stream of this.streams) {
      assert(!stream.isFinished, 'a finished stream is still registered');
      stream.checkInvariants();
      assert(this.isLinkUp(stream.from, stream.to) && this.isLinkUp(stream.to, stream.from), 'a live stream spans a down link');
    }
  }
}

// ---------------------------------------------------------------------------
// The network tests see

/**
 * A deterministic in-memory network. Endpoints implement `Transport`; the
 * test drives delivery and time and sets faults per directed link or
 * globally. All methods are synchronous and never touch a timer.
 */
export class MemoryNetwork {
  private readonly fabric: Fabric;

  constructor(options: MemoryNetworkOptions) {
    const windowChunkCount = options.snapshotWindowChunkCount ?? SNAPSHOT_WINDOW_CHUNK_COUNT_DEFAULT;
    const inFlightMax = options.linkInFlightBatchCountMax ?? LINK_IN_FLIGHT_BATCH_COUNT_MAX_DEFAULT;
    assert(Number.isInteger(windowChunkCount) && windowChunkCount >= 1, () => `snapshotWindowChunkCount ${windowChunkCount} must be a positive integer`);
    assert(Number.isInteger(inFlightMax) && inFlightMax >= 1, () => `linkInFlightBatchCountMax ${inFlightMax} must be a positive integer`);
    this.fabric = new Fabric(options.rng, windowChunkCount, inFlightMax, options.verify ?? false);
  }

  /** The endpoint for `id`: the running one if any, else a fresh one (a restart after close()). */
  endpoint(id: PeerId): Transport {
    return this.fabric.endpoint(id);
  }

  /** Virtual time, in ticks. */
  get nowTicks(): number {
    return this.fabric.nowTicks;
  }

  /** Moves the clock forward; delivers nothing by itself. */
  advance(ticks: number): void {
    this.fabric.advance(ticks);
  }

  /**
   * Delivers due items (batches, snapshot opens, unreachable reports) one at
   * a time, including ones that handlers send meanwhile, until none is due
   * or `maxCount` were delivered. Returns how many were delivered.
   */
  deliver(maxCount = Number.POSITIVE_INFINITY): number {
    return this.fabric.deliver(maxCount);
  }

  /** Items waiting, due or not, including those held on clogged links. */
  pendingCount(): number {
    return this.fabric.pendingCount();
  }

  /** Merges into the faults every link has unless overridden. */
  setFaults(faults: Partial<LinkFaults>): void {
    this.fabric.setFaults(faults);
  }

  /** Overrides some faults on the directed link `from`→`to`; the rest follow the global faults. */
  setLinkFaults(from: PeerId, to: PeerId, faults: Partial<LinkFaults>): void {
    this.fabric.setLinkFaults(from, to, faults);
  }

  clearLinkFaults(from: PeerId, to: PeerId): void {
    this.fabric.clearLinkFaults(from, to);
  }

  /** Cuts `from`→`to` only: its in-flight batches are lost, snapshot streams between the two break. */
  cut(from: PeerId, to: PeerId): void {
    this.fabric.cut(from, to);
  }

  /** Cuts both directions between every node of `sideA` and every node of `sideB`. */
  partition(sideA: PeerId | readonly PeerId[], sideB: PeerId | readonly PeerId[]): void {
    const as = typeof sideA === 'number' ? [sideA] : sideA;
    const bs = typeof sideB === 'number' ? [sideB] : sideB;
    for (const a of as) {
      for (const b of bs) {
        this.fabric.cut(a, b);
        this.fabric.cut(b, a);
      }
    }
  }

  /** Restores `from`→`to` (one direction) if it was cut. */
  heal(from: PeerId, to: PeerId): void {
    this.fabric.heal(from, to);
  }

  /** Restores every cut link and every isolated node. Clogs stay. */
  healAll(): void {
    this.fabric.healAll();
  }

  /** Cuts every link to and from `id` (including links to endpoints created later) until rejoin() or healAll(). */
  isolate(id: PeerId): void {
    this.fabric.isolate(id);
  }

  rejoin(id: PeerId): void {
    this.fabric.rejoin(id);
  }

  isLinkUp(from: PeerId, to: PeerId): boolean {
    return this.fabric.isLinkUp(from, to);
  }

  /**
   * Holds batches (and snapshot opens) on `from`→`to` without losing them: a
   * stalled connection. Sends still succeed. unclog() releases them in order.
   */
  clog(from: PeerId, to: PeerId): void {
    this.fabric.clog(from, to);
  }

  unclog(from: PeerId, to: PeerId): void {
    this.fabric.unclog(from, to);
  }
}
