import { describe, expect, it } from 'vitest';
import {
  BATCH_BYTES_MAX,
  SnapshotStreamError,
  type PeerId,
  type SnapshotReceiver,
  type Transport,
  type TransportHandlers,
} from '../src/index.js';
import { MemoryNetwork, type LinkFaults, type MemoryNetworkRng } from '../src/testing/index.js';

/** mulberry32: a tiny seeded PRNG, so transport tests need nothing from core. */
class TestRng implements MemoryNetworkRng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  intBelow(bound: number): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const unit = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return Math.floor(unit * bound);
  }
}

interface Received {
  readonly from: PeerId;
  readonly to: PeerId;
  readonly value: number;
}

/** A running endpoint that records what reaches it. */
interface Node {
  readonly transport: Transport;
  readonly unreachable: PeerId[];
  readonly snapshots: SnapshotReceiver[];
}

interface Harness {
  readonly net: MemoryNetwork;
  readonly nodes: Map<PeerId, Node>;
  /** Every batch delivered, in delivery order, across all nodes. */
  readonly log: Received[];
  node(id: PeerId): Node;
  /** Sends a one-byte batch carrying `value`. */
  send(from: PeerId, to: PeerId, value: number): void;
}

async function harness(options: { seed?: number; nodeIds?: PeerId[]; snapshotWindowChunkCount?: number; linkInFlightBatchCountMax?: number } = {}): Promise<Harness> {
  const net = new MemoryNetwork({
    rng: new TestRng(options.seed ?? 1),
    verify: true,
    ...(options.snapshotWindowChunkCount === undefined ? {} : { snapshotWindowChunkCount: options.snapshotWindowChunkCount }),
    ...(options.linkInFlightBatchCountMax === undefined ? {} : { linkInFlightBatchCountMax: options.linkInFlightBatchCountMax }),
  });
  const nodes = new Map<PeerId, Node>();
  const log: Received[] = [];
  for (const id of options.nodeIds ?? [1, 2, 3]) {
    const transport = net.endpoint(id);
    const node: Node = { transport, unreachable: [], snapshots: [] };
    await transport.start(recordingHandlers(id, node, log));
    nodes.set(id, node);
  }
  return {
    net,
    nodes,
    log,
    node: (id) => nodes.get(id)!,
    send: (from, to, value) => nodes.get(from)!.transport.send(to, Uint8Array.of(value)),
  };
}

function recordingHandlers(id: PeerId, node: Node, log: Received[]): TransportHandlers {
  return {
    onBatch: (from, batch) => log.push({ from, to: id, value: batch[0]! }),
    onUnreachable: (to) => node.unreachable.push(to),
    onSnapshot: (stream) => node.snapshots.push(stream),
  };
}

function values(log: readonly Received[]): number[] {
  return log.map((r) => r.value);
}

/** Lets resolved promises run their continuations; no timers involved in the network itself. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** Tracks whether a promise settled, without leaving a rejection unhandled. */
function track<T>(promise: Promise<T>): { state: 'pending' | 'resolved' | 'rejected'; error: unknown } {
  const tracked: { state: 'pending' | 'resolved' | 'rejected'; error: unknown } = { state: 'pending', error: undefined };
  promise.then(
    () => {
      tracked.state = 'resolved';
    },
    (error: unknown) => {
      tracked.state = 'rejected';
      tracked.error = error;
    },
  );
  return tracked;
}

/** Sends 0..count-1 from 1 to 2 under `faults`, delivering as time passes; returns the delivery sequence. */
async function runFaulty(seed: number, faults: Partial<LinkFaults>, count = 40): Promise<number[]> {
  const h = await harness({ seed, nodeIds: [1, 2] });
  h.net.setFaults(faults);
  for (let value = 0; value < count; value++) h.send(1, 2, value);
  for (let tick = 0; tick <= 20; tick++) {
    h.net.deliver();
    h.net.advance(1);
  }
  expect(h.net.pendingCount()).toBe(0);
  return values(h.log);
}

function range(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i);
}

describe('MemoryNetwork batches', () => {
  it('delivers in send order across links without faults, only when driven', async () => {
    const h = await harness();
    h.send(1, 2, 10);
    h.send(3, 2, 11);
    h.send(1, 3, 12);
    h.send(2, 1, 13);
    expect(h.log).toEqual([]);
    expect(h.net.pendingCount()).toBe(4);
    expect(h.net.deliver()).toBe(4);
    expect(h.log).toEqual([
      { from: 1, to: 2, value: 10 },
      { from: 3, to: 2, value: 11 },
      { from: 1, to: 3, value: 12 },
      { from: 2, to: 1, value: 13 },
    ]);
    expect(h.net.pendingCount()).toBe(0);
  });

  it('deliver(maxCount) delivers at most that many, and replies sent by handlers in the same call', async () => {
    const net = new MemoryNetwork({ rng: new TestRng(1), verify: true });
    const seen: string[] = [];
    const a = net.endpoint(1);
    const b = net.endpoint(2);
    await a.start({ onBatch: (from, batch) => seen.push(`1<-${from}:${batch[0]}`) });
    await b.start({
      onBatch: (from, batch) => {
        seen.push(`2<-${from}:${batch[0]}`);
        b.send(from, Uint8Array.of(batch[0]! + 100));
      },
    });
    a.send(2, Uint8Array.of(1));
    a.send(2, Uint8Array.of(2));
    expect(net.deliver(1)).toBe(1);
    expect(seen).toEqual(['2<-1:1']);
    expect(net.deliver()).toBe(3);
    expect(seen).toEqual(['2<-1:1', '2<-1:2', '1<-2:101', '1<-2:102']);
  });

  it('copies a batch on send, so the sender may reuse its buffer', async () => {
    const h = await harness();
    const buffer = Uint8Array.of(7);
    h.node(1).transport.send(2, buffer);
    buffer[0] = 99;
    h.net.deliver();
    expect(values(h.log)).toEqual([7]);
  });

  it('drops batches with the configured probability, counting them as dropped', async () => {
    const h = await harness({ seed: 7, nodeIds: [1, 2] });
    h.net.setFaults({ dropProbability: 0.5 });
    for (let value = 0; value < 100; value++) h.send(1, 2, value);
    h.net.deliver();
    const received = values(h.log);
    expect(received.length).toBeGreaterThan(20);
    expect(received.length).toBeLessThan(80);
    // Order survives: drops only remove.
    expect(received).toEqual([...received].sort((x, y) => x - y));
    const stats = h.node(1).transport.stats();
    expect(stats.batchesSent).toBe(received.length);
    expect(stats.batchesDropped).toBe(100 - received.length);
    expect(h.node(2).transport.stats().batchesReceived).toBe(received.length);
    // A lossy wire is invisible to the sender.
    h.net.deliver();
    expect(h.node(1).unreachable).toEqual([]);
  });

  it('duplicates batches with the configured probability', async () => {
    const received = await runFaulty(3, { duplicateProbability: 0.5 });
    expect(received.length).toBeGreaterThan(45);
    expect(new Set(received)).toEqual(new Set(range(40)));
    expect(received).toEqual([...received].sort((x, y) => x - y));
  });

  it('reorders due batches on a link only within the window', async () => {
    const windowCount = 3;
    const received = await runFaulty(5, { reorderWindowCount: windowCount });
    expect([...received].sort((x, y) => x - y)).toEqual(range(40));
    expect(received).not.toEqual(range(40));
    // The k-th delivery picks among the first window+1 undelivered batches.
    received.forEach((value, k) => expect(value).toBeLessThanOrEqual(k + windowCount));
  });

  it('holds a batch for a fixed delay in ticks', async () => {
    const h = await harness({ nodeIds: [1, 2] });
    h.net.setFaults({ delayTicksMin: 3, delayTicksMax: 3 });
    h.send(1, 2, 1);
    h.net.advance(2);
    expect(h.net.deliver()).toBe(0);
    expect(h.net.pendingCount()).toBe(1);
    h.net.advance(1);
    expect(h.net.deliver()).toBe(1);
    expect(values(h.log)).toEqual([1]);
  });

  it('spreads batches over a random delay range, which reorders them by due tick', async () => {
    const h = await harness({ seed: 11, nodeIds: [1, 2] });
    h.net.setFaults({ delayTicksMin: 1, delayTicksMax: 5 });
    for (let value = 0; value < 30; value++) h.send(1, 2, value);
    expect(h.net.deliver()).toBe(0);
    const deliveredPerTick: number[] = [];
    for (let tick = 1; tick <= 5; tick++) {
      h.net.advance(1);
      deliveredPerTick.push(h.net.deliver());
    }
    expect(deliveredPerTick.reduce((x, y) => x + y, 0)).toBe(30);
    expect(deliveredPerTick.filter((count) => count > 0).length).toBeGreaterThan(2);
    expect(values(h.log)).not.toEqual(range(30));
  });

  it('replays the same delivery sequence for a seed and a different one for another seed', async () => {
    const faults: Partial<LinkFaults> = {
      dropProbability: 0.2,
      duplicateProbability: 0.2,
      reorderWindowCount: 2,
      delayTicksMin: 0,
      delayTicksMax: 3,
    };
    const first = await runFaulty(42, faults);
    const again = await runFaulty(42, faults);
    const other = await runFaulty(43, faults);
    expect(again).toEqual(first);
    expect(other).not.toEqual(first);
  });

  it('applies per-link faults over the global ones, and clears them', async () => {
    const h = await harness();
    h.net.setLinkFaults(1, 2, { dropProbability: 1 });
    h.send(1, 2, 1);
    h.send(1, 3, 2);
    h.send(2, 1, 3);
    h.net.deliver();
    expect(values(h.log)).toEqual([2, 3]);
    h.net.clearLinkFaults(1, 2);
    h.send(1, 2, 4);
    h.net.deliver();
    expect(values(h.log)).toEqual([2, 3, 4]);
  });

  it('rejects nonsensical fault settings at configuration time', async () => {
    const h = await harness();
    expect(() => h.net.setFaults({ dropProbability: 1.5 })).toThrow(/dropProbability 1.5/);
    expect(() => h.net.setFaults({ delayTicksMin: 4, delayTicksMax: 2 })).toThrow(/delayTicksMin 4 exceeds delayTicksMax 2/);
    expect(() => h.net.setLinkFaults(1, 2, { reorderWindowCount: 0.5 })).toThrow(/reorderWindowCount/);
  });
});

describe('MemoryNetwork partitions', () => {
  it('cuts one direction: a→b is lost and reported once, b→a still flows; heal restores it', async () => {
    const h = await harness();
    h.net.cut(1, 2);
    h.send(1, 2, 1);
    h.send(1, 2, 2);
    h.send(2, 1, 3);
    h.net.deliver();
    expect(values(h.log)).toEqual([3]);
    expect(h.node(1).unreachable).toEqual([2]);
    expect(h.node(1).transport.stats().batchesDropped).toBe(2);

    h.net.heal(1, 2);
    h.send(1, 2, 4);
    h.net.deliver();
    expect(values(h.log)).toEqual([3, 4]);

    // A new cut is a new outage: reported again.
    h.net.cut(1, 2);
    h.send(1, 2, 5);
    h.net.deliver();
    expect(h.node(1).unreachable).toEqual([2, 2]);
  });

  it('loses batches in flight on a link when it is cut', async () => {
    const h = await harness();
    h.send(1, 2, 1);
    h.send(2, 1, 2);
    expect(h.net.pendingCount()).toBe(2);
    h.net.cut(1, 2);
    expect(h.net.pendingCount()).toBe(1);
    h.net.deliver();
    expect(values(h.log)).toEqual([2]);
    expect(h.node(1).transport.stats()).toMatchObject({ batchesSent: 1, batchesDropped: 1 });
  });

  it('partitions sides both ways and heals all', async () => {
    const h = await harness();
    h.net.partition([1], [2, 3]);
    h.send(1, 2, 1);
    h.send(2, 1, 2);
    h.send(3, 1, 3);
    h.send(2, 3, 4);
    h.net.deliver();
    expect(values(h.log)).toEqual([4]);
    expect(h.node(1).unreachable).toEqual([2]);
    expect(h.node(2).unreachable).toEqual([1]);
    expect(h.node(3).unreachable).toEqual([1]);
    h.net.healAll();
    h.send(1, 2, 5);
    h.send(3, 1, 6);
    h.net.deliver();
    expect(values(h.log)).toEqual([4, 5, 6]);
  });

  it('isolates a node from everyone, then lets it rejoin', async () => {
    const h = await harness();
    h.send(2, 1, 1);
    h.net.isolate(1);
    expect(h.net.pendingCount()).toBe(0);
    h.send(1, 2, 2);
    h.send(3, 1, 3);
    h.send(2, 3, 4);
    h.net.deliver();
    expect(values(h.log)).toEqual([4]);
    expect(h.net.isLinkUp(1, 2)).toBe(false);
    expect(h.net.isLinkUp(3, 1)).toBe(false);
    h.net.rejoin(1);
    h.send(1, 2, 5);
    h.send(3, 1, 6);
    h.net.deliver();
    expect(values(h.log)).toEqual([4, 5, 6]);
  });

  it('clog holds batches without losing them; unclog releases them in order', async () => {
    const h = await harness();
    h.net.clog(1, 2);
    h.send(1, 2, 1);
    h.send(1, 3, 2);
    h.send(1, 2, 3);
    h.net.deliver();
    expect(values(h.log)).toEqual([2]);
    expect(h.net.pendingCount()).toBe(2);
    h.net.unclog(1, 2);
    h.net.deliver();
    expect(values(h.log)).toEqual([2, 1, 3]);
    expect(h.node(1).unreachable).toEqual([]);
  });

  it('drops and reports a send beyond the link in-flight bound', async () => {
    const h = await harness({ linkInFlightBatchCountMax: 2 });
    h.net.clog(1, 2);
    for (let value = 0; value < 4; value++) h.send(1, 2, value);
    h.net.deliver();
    expect(h.node(1).unreachable).toEqual([2]);
    expect(h.node(1).transport.stats()).toMatchObject({ batchesSent: 2, batchesDropped: 2 });
    h.net.unclog(1, 2);
    h.net.deliver();
    expect(values(h.log)).toEqual([0, 1]);
  });

  it('close stops deliveries both ways; a new endpoint for the id starts afresh', async () => {
    const h = await harness();
    h.send(1, 2, 1);
    h.send(2, 1, 2);
    h.send(2, 3, 3);
    await h.node(2).transport.close();
    h.send(1, 2, 4);
    h.node(2).transport.send(3, Uint8Array.of(5));
    h.net.deliver();
    expect(values(h.log)).toEqual([]);
    expect(h.node(1).unreachable).toEqual([2]);
    expect(h.node(1).transport.stats().batchesDropped).toBe(2);
    expect(h.node(2).transport.stats().batchesDropped).toBe(3);

    const restarted = h.net.endpoint(2);
    expect(restarted).not.toBe(h.node(2).transport);
    const node: Node = { transport: restarted, unreachable: [], snapshots: [] };
    await restarted.start(recordingHandlers(2, node, h.log));
    h.send(1, 2, 6);
    h.net.deliver();
    expect(values(h.log)).toEqual([6]);
  });

  it('drops sends to a removed peer until setPeer learns it again', async () => {
    const h = await harness();
    const transport = h.node(1).transport;
    transport.removePeer(2);
    h.send(1, 2, 1);
    transport.setPeer(2, 'ignored');
    h.send(1, 2, 2);
    h.net.deliver();
    expect(values(h.log)).toEqual([2]);
    expect(transport.stats().batchesDropped).toBe(1);
  });

  it('drops and counts a batch over the frame limit, as the TCP transport does', async () => {
    const h = await harness();
    const a = h.node(1).transport;
    a.send(2, new Uint8Array(BATCH_BYTES_MAX + 1));
    h.net.deliver();
    expect(a.stats()).toMatchObject({ batchesSent: 0, batchesDropped: 1, batchesOversized: 1 });
  });

  it('counts batches, bytes, drops and connections per endpoint', async () => {
    const h = await harness();
    const a = h.node(1).transport;
    a.send(2, new Uint8Array(10));
    a.send(2, new Uint8Array(5));
    a.send(3, new Uint8Array(1));
    h.net.deliver();
    expect(a.stats()).toEqual({
      batchesSent: 3,
      batchesReceived: 0,
      bytesSent: 16,
      bytesReceived: 0,
      batchesDropped: 0,
      batchesOversized: 0,
      framesRejected: 0,
      hellosRefusedCluster: 0,
      hellosRefusedNotMember: 0,
      hellosRefusedVersion: 0,
      connectionsOpened: 2,
      reconnects: 0,
    });
    expect(h.node(2).transport.stats()).toMatchObject({ batchesReceived: 2, bytesReceived: 15 });

    h.net.cut(1, 2);
    a.send(2, new Uint8Array(3));
    h.net.heal(1, 2);
    a.send(2, new Uint8Array(3));
    h.net.deliver();
    expect(a.stats()).toMatchObject({ batchesSent: 4, bytesSent: 19, batchesDropped: 1, connectionsOpened: 3, reconnects: 1 });
  });
});

describe('MemoryNetwork snapshot streams', () => {
  async function collect(stream: SnapshotReceiver): Promise<number[]> {
    const chunks: number[] = [];
    for await (const chunk of stream.chunks) chunks.push(chunk[0]!);
    return chunks;
  }

  it('opens on delivery and streams chunks in order with the header', async () => {
    const h = await harness({ nodeIds: [1, 2] });
    const sender = h.node(1).transport.openSnapshot(2, Uint8Array.of(42));
    expect(h.node(2).snapshots).toEqual([]);
    h.net.deliver();
    const [stream] = h.node(2).snapshots;
    expect(stream!.from).toBe(1);
    expect(stream!.header).toEqual(Uint8Array.of(42));
    const received = collect(stream!);
    for (let value = 0; value < 10; value++) await sender.write(Uint8Array.of(value));
    await sender.end();
    expect(await received).toEqual(range(10));
  });

  it('blocks the writer once the window is full until the reader consumes, and end waits for consumption', async () => {
    const h = await harness({ nodeIds: [1, 2], snapshotWindowChunkCount: 2 });
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    const first = track(sender.write(Uint8Array.of(1)));
    const second = track(sender.write(Uint8Array.of(2)));
    const third = track(sender.write(Uint8Array.of(3)));
    await settle();
    expect([first.state, second.state, third.state]).toEqual(['resolved', 'resolved', 'pending']);

    h.net.deliver();
    const iterator = h.node(2).snapshots[0]!.chunks[Symbol.asyncIterator]();
    await settle();
    expect(third.state).toBe('pending'); // delivery alone grants nothing: consumption does

    expect((await iterator.next()).value).toEqual(Uint8Array.of(1));
    await settle();
    expect(third.state).toBe('resolved');

    const ended = track(sender.end());
    await settle();
    expect(ended.state).toBe('pending');
    expect((await iterator.next()).value).toEqual(Uint8Array.of(2));
    expect((await iterator.next()).value).toEqual(Uint8Array.of(3));
    await settle();
    expect(ended.state).toBe('resolved');
    expect((await iterator.next()).done).toBe(true);
  });

  it('copies chunks on write', async () => {
    const h = await harness({ nodeIds: [1, 2] });
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    const buffer = Uint8Array.of(1);
    await sender.write(buffer);
    buffer[0] = 2;
    await sender.write(buffer);
    const ended = sender.end();
    h.net.deliver();
    expect(await collect(h.node(2).snapshots[0]!)).toEqual([1, 2]);
    await ended;
  });

  it('abort makes the receiver iterator throw ABORTED', async () => {
    const h = await harness({ nodeIds: [1, 2] });
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    h.net.deliver();
    await sender.write(Uint8Array.of(1));
    sender.abort('leader stepped down');
    const error = await collect(h.node(2).snapshots[0]!).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SnapshotStreamError);
    expect((error as SnapshotStreamError).code).toBe('SNAPSHOT_ABORTED');
    expect((error as SnapshotStreamError).message).toMatch(/leader stepped down/);
    await expect(sender.write(Uint8Array.of(2))).rejects.toMatchObject({ code: 'SNAPSHOT_ABORTED' });
  });

  it('a partition breaks the stream: the pending write rejects and the reader throws BROKEN', async () => {
    const h = await harness({ nodeIds: [1, 2], snapshotWindowChunkCount: 1 });
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    h.net.deliver();
    await sender.write(Uint8Array.of(1));
    const blocked = track(sender.write(Uint8Array.of(2)));
    const iterator = h.node(2).snapshots[0]!.chunks[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toEqual(Uint8Array.of(1));
    await settle();
    expect(blocked.state).toBe('resolved');
    const blockedAgain = track(sender.write(Uint8Array.of(3)));
    // Cutting only the return direction breaks it too: credit can no longer flow back.
    h.net.cut(2, 1);
    await settle();
    expect(blockedAgain.state).toBe('rejected');
    expect(blockedAgain.error).toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST', retryable: true });
    await expect(iterator.next()).rejects.toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST' });
    await expect(sender.end()).rejects.toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST' });
  });

  it('a partition before the open is delivered breaks the stream and the receiver never sees it', async () => {
    const h = await harness({ nodeIds: [1, 2] });
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    h.net.isolate(2);
    expect(h.net.pendingCount()).toBe(0);
    await expect(sender.write(Uint8Array.of(1))).rejects.toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST' });
    h.net.deliver();
    expect(h.node(2).snapshots).toEqual([]);
  });

  it('opening toward an unreachable peer yields a broken stream and reports it', async () => {
    const h = await harness({ nodeIds: [1, 2] });
    h.net.cut(2, 1);
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    await expect(sender.write(Uint8Array.of(1))).rejects.toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST' });
    h.net.deliver();
    expect(h.node(1).unreachable).toEqual([2]);
  });

  it('a receiver that stops reading breaks the stream for the sender', async () => {
    const h = await harness({ nodeIds: [1, 2], snapshotWindowChunkCount: 1 });
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    h.net.deliver();
    await sender.write(Uint8Array.of(1));
    const blocked = track(sender.write(Uint8Array.of(2)));
    for await (const _chunk of h.node(2).snapshots[0]!.chunks) break;
    await settle();
    // The first consumed chunk admitted the second write, then the receiver left.
    expect(blocked.state).toBe('resolved');
    await expect(sender.write(Uint8Array.of(3))).rejects.toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST' });
  });

  it('closing the receiver breaks its incoming streams', async () => {
    const h = await harness({ nodeIds: [1, 2], snapshotWindowChunkCount: 1 });
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    h.net.deliver();
    await sender.write(Uint8Array.of(1));
    const blocked = track(sender.write(Uint8Array.of(2)));
    await h.node(2).transport.close();
    await settle();
    expect(blocked.state).toBe('rejected');
    expect(blocked.error).toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST' });
  });

  it('snapshot streams do not hold back batches', async () => {
    const h = await harness({ nodeIds: [1, 2], snapshotWindowChunkCount: 1 });
    const sender = h.node(1).transport.openSnapshot(2, new Uint8Array(0));
    await sender.write(Uint8Array.of(1));
    const blocked = track(sender.write(Uint8Array.of(2)));
    h.send(1, 2, 9);
    h.net.deliver();
    expect(values(h.log)).toEqual([9]);
    expect(blocked.state).toBe('pending');
    sender.abort('test over');
    await settle();
    expect(blocked.state).toBe('rejected');
  });
});
