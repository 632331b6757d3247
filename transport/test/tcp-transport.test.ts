import { createHash } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { FRAME_BYTES_MAX, FRAME_KIND_CODES, FRAME_VERSION, FrameDecoder, encodeFrame, type Frame } from '../src/frame.js';
import { SNAPSHOT_WINDOW_CHUNKS } from '../src/tcp-snapshot.js';
import { SEND_QUEUE_BYTES_MAX_DEFAULT, TcpTransport, type TcpTransportOptions } from '../src/tcp-transport.js';
import type { PeerId, SnapshotReceiver } from '../src/types.js';

const WAIT_MS_MAX = 10_000;
/** The cluster every node of these tests is in, unless a test says otherwise. */
const CLUSTER = '0123456789abcdef0123456789abcdef';
const OTHER_CLUSTER = 'fedcba9876543210fedcba9876543210';

/** Polls `condition` every 5 ms; fails the test after WAIT_MS_MAX. */
async function waitFor(condition: () => boolean, what: string, timeoutMs = WAIT_MS_MAX): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Node {
  readonly transport: TcpTransport;
  readonly received: { from: PeerId; text: string }[];
  readonly unreachable: PeerId[];
  readonly snapshots: SnapshotReceiver[];
  /** Batches handed back by onDropped: accepted, then dropped unsent. */
  readonly dropped: { to: PeerId; batch: Uint8Array }[];
  readonly address: string;
}

const opened: TcpTransport[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((t) => t.close()));
});

async function startNode(nodeId: PeerId, options: Partial<TcpTransportOptions> = {}): Promise<Node> {
  const transport = new TcpTransport({ nodeId, clusterId: CLUSTER, host: '127.0.0.1', port: 0, reconnectDelayMsMin: 10, reconnectDelayMsMax: 100, unreachableReportIntervalMs: 50, ...options });
  opened.push(transport);
  const node: Node = { transport, received: [], unreachable: [], snapshots: [], dropped: [], address: '' };
  await transport.start({
    onBatch: (from, batch) => node.received.push({ from, text: Buffer.from(batch).toString('utf8') }),
    onUnreachable: (to) => node.unreachable.push(to),
    onSnapshot: (stream) => node.snapshots.push(stream),
    onDropped: (to, batches) => node.dropped.push(...batches.map((batch) => ({ to, batch }))),
  });
  const { port } = transport.address();
  return { ...node, address: `127.0.0.1:${port}` };
}

function connectAll(nodes: readonly Node[]): void {
  for (const a of nodes) for (const b of nodes) if (a !== b) a.transport.setPeer(b.transport.nodeId, b.address);
}

const text = (s: string) => Buffer.from(s, 'utf8');

describe('TcpTransport batches', () => {
  it('delivers batches between three nodes, both ways, in order', async () => {
    const nodes = [await startNode(1), await startNode(2), await startNode(3)];
    connectAll(nodes);
    const COUNT = 200;
    for (let i = 0; i < COUNT; i++) {
      for (const a of nodes) for (const b of nodes) if (a !== b) a.transport.send(b.transport.nodeId, text(`${a.transport.nodeId}->${b.transport.nodeId}#${i}`));
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => nodes.every((n) => n.received.length === 2 * COUNT), 'all batches');
    expect(nodes.map((n) => n.dropped.length), 'nothing delivered is handed back as dropped').toEqual([0, 0, 0]);
    for (const b of nodes) {
      for (const a of nodes) {
        if (a === b) continue;
        const fromA = b.received.filter((r) => r.from === a.transport.nodeId).map((r) => r.text);
        expect(fromA).toEqual(Array.from({ length: COUNT }, (_, i) => `${a.transport.nodeId}->${b.transport.nodeId}#${i}`));
      }
    }
    const stats = nodes[0]!.transport.stats();
    expect(stats.batchesSent).toBe(2 * COUNT);
    expect(stats.batchesReceived).toBe(2 * COUNT);
    expect(stats.batchesDropped).toBe(0);
    expect(stats.framesRejected).toBe(0);
  });

  it('writes the batches of one loop turn to a peer with one socket write', async () => {
    const a = await startNode(1);
    // A raw peer that records every chunk it reads.
    const dataChunks: Buffer[] = [];
    let readCount = 0;
    const peerSockets: Socket[] = [];
    const server = createServer((socket) => {
      peerSockets.push(socket);
      socket.on('data', (chunk: Buffer) => {
        readCount++;
        dataChunks.push(chunk);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      a.transport.setPeer(2, `127.0.0.1:${(server.address() as { port: number }).port}`);
      a.transport.send(2, text('warm-up'));
      const frames: Frame[] = [];
      const decoder = new FrameDecoder();
      const decoded = () => {
        for (const chunk of dataChunks.splice(0)) decoder.push(chunk, (f) => frames.push(f));
        return frames.length;
      };
      await waitFor(() => decoded() === 2, 'hello and warm-up');
      const readsBefore = readCount;
      for (let i = 0; i < 100; i++) a.transport.send(2, text(`n${i}`));
      // Wait for the 100 frames themselves: every byte of them has been read, so a second write would show as a second read.
      await waitFor(() => decoded() === 102, 'the 100 batches');
      expect(readCount - readsBefore, 'socket reads that carried the 100 batches').toBe(1);
      expect(frames.slice(2).map((f) => (f.kind === 'batch' ? Buffer.from(f.batch).toString() : f.kind))).toEqual(
        Array.from({ length: 100 }, (_, i) => `n${i}`),
      );
    } finally {
      await a.transport.close();
      for (const socket of peerSockets) socket.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('flush() writes what send() queued at once, in one write per peer, instead of on a later turn', async () => {
    const [a, b] = [await startNode(1), await startNode(2)];
    connectAll([a, b]);
    a.transport.send(2, text('warm-up'));
    await waitFor(() => b.received.length === 1, 'the warm-up batch');
    const sentBefore = a.transport.stats().batchesSent;
    a.transport.send(2, text('x'));
    a.transport.send(2, text('y'));
    // Queued for the transport's own flush on a later turn...
    expect(a.transport.stats().batchesSent).toBe(sentBefore);
    a.transport.flush();
    // ...written now by flush(), in order.
    expect(a.transport.stats().batchesSent).toBe(sentBefore + 2);
    await waitFor(() => b.received.length === 3, 'both batches');
    expect(b.received.slice(1).map((r) => r.text)).toEqual(['x', 'y']);
    // Nothing is written twice when the transport's own flush comes round.
    await new Promise((r) => setImmediate(r));
    expect(a.transport.stats().batchesSent).toBe(sentBefore + 2);
  });

  it('reconnects after the peer restarts on the same port and resumes delivery', async () => {
    const a = await startNode(1);
    let b = await startNode(2);
    connectAll([a, b]);
    a.transport.send(2, text('before'));
    await waitFor(() => b.received.length === 1, 'batch before restart');

    const port = b.transport.address().port;
    await b.transport.close();
    b = await startNode(2, { port });
    b.transport.setPeer(1, a.address);

    // Batches sent while b is down or a is backing off are dropped; keep sending until one gets through.
    let i = 0;
    await waitFor(() => {
      a.transport.send(2, text(`after#${i++}`));
      return b.received.length > 0;
    }, 'delivery after restart');
    expect(b.received[0]!.text).toMatch(/^after#/);
    expect(a.transport.stats().reconnects).toBeGreaterThanOrEqual(1);
    // And the restarted node reaches a over its own new connection.
    b.transport.send(1, text('hello again'));
    await waitFor(() => a.received.some((r) => r.text === 'hello again'), 'reverse direction after restart');
  });

  it('drops, counts and reports (rate-limited) batches to a dead peer', async () => {
    const a = await startNode(1, { unreachableReportIntervalMs: 60_000 });
    // A port that was just free: nothing listens on it.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    a.transport.setPeer(9, `127.0.0.1:${deadPort}`);

    // Queued while connecting (send cannot know yet), then dropped with the refused connection: handed back.
    const queued = Array.from({ length: 5 }, (_, i) => text(`lost#${i}`));
    for (const batch of queued) expect(a.transport.send(9, batch)).toBe(true);
    await waitFor(() => a.transport.stats().batchesDropped === 5, 'queued batches dropped on refused connection');
    await waitFor(() => a.dropped.length === 5, 'dropped batches handed back');
    expect(a.dropped.every((d, i) => d.to === 9 && d.batch === queued[i])).toBe(true);
    // Backing off: refused at once, and send says so (the caller knows these never left).
    for (let i = 0; i < 5; i++) expect(a.transport.send(9, text(`lost-again#${i}`))).toBe(false);
    await waitFor(() => a.transport.stats().batchesDropped === 10, 'batches dropped while backing off');
    expect(a.transport.send(42, text('nobody'))).toBe(false);
    await waitFor(() => a.unreachable.includes(42), 'unknown peer reported');
    expect(a.transport.stats().batchesDropped).toBe(11);
    expect(a.unreachable.filter((p) => p === 9)).toEqual([9]);
    expect(a.transport.stats().batchesSent).toBe(0);
    // Those refused at once were never accepted: send said so, and they are not handed back again.
    expect(a.dropped).toHaveLength(5);
  });

  it('drops batches over the send queue bound', async () => {
    const sendQueueBytesMax = SEND_QUEUE_BYTES_MAX_DEFAULT;
    const [a, b] = [await startNode(1, { sendQueueBytesMax }), await startNode(2)];
    connectAll([a, b]);
    const big = new Uint8Array(FRAME_BYTES_MAX - 2);
    expect(a.transport.send(2, big)).toBe(true);
    expect(a.transport.send(2, big)).toBe(true);
    expect(a.transport.send(2, big)).toBe(false); // over the bound within one turn
    await waitFor(() => a.unreachable.includes(2), 'queue overflow reported');
    expect(a.transport.stats().batchesDropped).toBe(1);
    await waitFor(() => b.received.length === 2, 'the two that fit');
  });

  it('drops, counts and reports a batch over the frame limit instead of failing the sender', async () => {
    const [a, b] = [await startNode(1), await startNode(2)];
    connectAll([a, b]);
    expect(a.transport.send(2, new Uint8Array(FRAME_BYTES_MAX))).toBe(false);
    expect(a.transport.send(2, text('after'))).toBe(true);
    await waitFor(() => b.received.length === 1, 'the batch after the oversized one');
    expect(a.transport.stats()).toMatchObject({ batchesDropped: 1, batchesOversized: 1 });
    expect(a.unreachable).toContain(2);
  });
});

describe('TcpTransport snapshots', () => {
  it('streams a 5 MiB snapshot with flow control while batches keep flowing', async () => {
    const [a, b] = [await startNode(1), await startNode(2)];
    connectAll([a, b]);
    const CHUNK_BYTES = 64 * 1024;
    const CHUNK_COUNT = (5 * 1024 * 1024) / CHUNK_BYTES;
    const chunks = Array.from({ length: CHUNK_COUNT }, (_, i) => Buffer.alloc(CHUNK_BYTES, i & 0xff));
    const expectedHash = createHash('sha256');
    for (const c of chunks) expectedHash.update(c);

    const sender = a.transport.openSnapshot(2, text('header-v1'));
    let chunksConsumed = 0;
    let windowExceeded = false;
    let snapshotDone = false;
    /** Chunks taken from the stream when each batch arrived. */
    const consumedAtBatch: number[] = [];
    // After each chunk the consumer waits for a permit to take the next: batches must arrive while it
    // holds the stream (its sender out of credit), an order the test fixes instead of a slow consumer's timing.
    let permits = 0;
    let permitGiven: (() => void) | undefined;
    const permit = async (): Promise<void> => {
      while (permits === 0) await new Promise<void>((r) => (permitGiven = r));
      permits--;
    };
    const givePermits = (count: number): void => {
      permits += count;
      permitGiven?.();
      permitGiven = undefined;
    };

    const sending = (async () => {
      let written = 0;
      for (const c of chunks) {
        await sender.write(c);
        written += 1;
        if (written - chunksConsumed > SNAPSHOT_WINDOW_CHUNKS) windowExceeded = true;
      }
      await sender.end();
    })();

    await waitFor(() => b.snapshots.length === 1, 'snapshot opened');
    const stream = b.snapshots[0]!;
    expect(stream.from).toBe(1);
    expect(Buffer.from(stream.header).toString()).toBe('header-v1');

    const receiving = (async () => {
      const hash = createHash('sha256');
      let byteCount = 0;
      for await (const chunk of stream.chunks) {
        chunksConsumed += 1;
        hash.update(chunk);
        byteCount += chunk.byteLength;
        await permit();
      }
      snapshotDone = true;
      return { digest: hash.digest('hex'), byteCount };
    })();

    // Heartbeat-like batches while the snapshot streams: each must arrive while the consumer is held,
    // then the consumer may take a few chunks, so batches and chunks interleave but the stream never ends first.
    const batchCount = 20;
    const chunksPerBatch = Math.floor(CHUNK_COUNT / (2 * batchCount));
    await waitFor(() => chunksConsumed === 1, 'the first chunk taken');
    for (let i = 0; i < batchCount; i++) {
      a.transport.send(2, text(`hb#${i}`));
      await waitFor(() => b.received.length === i + 1, `batch ${i} while the snapshot is held at chunk ${chunksConsumed} of ${CHUNK_COUNT}`);
      expect(snapshotDone, `snapshot finished before batch ${i}`).toBe(false);
      consumedAtBatch.push(chunksConsumed);
      givePermits(chunksPerBatch);
      await waitFor(() => chunksConsumed === 1 + (i + 1) * chunksPerBatch, `${chunksPerBatch} more chunks taken after batch ${i}`);
    }
    givePermits(CHUNK_COUNT);

    const [result] = await Promise.all([receiving, sending]);
    expect(result.byteCount).toBe(5 * 1024 * 1024);
    expect(result.digest).toBe(expectedHash.digest('hex'));
    expect(windowExceeded).toBe(false);
    expect(chunksConsumed).toBe(CHUNK_COUNT);
    // Every batch arrived while the snapshot was mid-stream: chunks never sat in front of them.
    expect(consumedAtBatch).toEqual(Array.from({ length: batchCount }, (_, i) => 1 + i * chunksPerBatch));
    expect(b.received.map((r) => r.text)).toEqual(Array.from({ length: batchCount }, (_, i) => `hb#${i}`));
  });

  it('abort on the sender makes the receiver iterator throw', async () => {
    const [a, b] = [await startNode(1), await startNode(2)];
    connectAll([a, b]);
    const sender = a.transport.openSnapshot(2, text('h'));
    await sender.write(Buffer.alloc(10, 1));
    await waitFor(() => b.snapshots.length === 1, 'snapshot opened');
    const consumed: number[] = [];
    const receiving = (async () => {
      for await (const chunk of b.snapshots[0]!.chunks) consumed.push(chunk.byteLength);
    })();
    await waitFor(() => consumed.length === 1, 'first chunk consumed');
    sender.abort('leader changed');
    await expect(receiving).rejects.toMatchObject({ code: 'SNAPSHOT_ABORTED' });
    await expect(sender.write(Buffer.alloc(1))).rejects.toMatchObject({ code: 'SNAPSHOT_ABORTED' });
  });

  it('a receiver that closes mid-stream rejects the sender', async () => {
    const [a, b] = [await startNode(1), await startNode(2)];
    connectAll([a, b]);
    const sender = a.transport.openSnapshot(2, text('h'));
    await waitFor(() => b.snapshots.length === 1, 'snapshot opened');
    await b.transport.close();
    const writes = (async () => {
      for (let i = 0; i < 100; i++) await sender.write(Buffer.alloc(1024));
    })();
    await expect(writes).rejects.toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST' });
    await expect(b.snapshots[0]!.chunks[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'TRANSPORT_CLOSED' });
  });

  it('a snapshot to an unknown peer fails at once', async () => {
    const a = await startNode(1);
    const sender = a.transport.openSnapshot(5, text('h'));
    await expect(sender.write(Buffer.alloc(1))).rejects.toMatchObject({ code: 'SNAPSHOT_PEER_UNKNOWN' });
  });
});

/** Opens a raw socket to `port`, writes `bytes` (then ends it if asked) and resolves when the transport closes it. */
async function rawExchange(port: number, bytes: Buffer, options: { end: boolean }): Promise<void> {
  const socket: Socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('transport did not close the raw connection in time'));
    }, WAIT_MS_MAX);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('connect', () => {
      if (options.end) socket.end(bytes);
      else socket.write(bytes);
    });
  });
}

function rawFrame(options: { version?: number; kind: number; payload?: number[]; length?: number }): Buffer {
  const payload = Buffer.from(options.payload ?? []);
  const header = Buffer.alloc(6);
  header.writeUInt32BE(options.length ?? payload.length + 2, 0);
  header[4] = options.version ?? FRAME_VERSION;
  header[5] = options.kind;
  return Buffer.concat([header, payload]);
}

const hello9 = encodeFrame({ kind: 'hello', nodeId: 9, clusterId: CLUSTER });
/** Makes node 9, whose hello the raw sockets send, a member of `node`'s cluster (an address it never dials). */
const admit9 = (node: Node) => node.transport.setPeer(9, '127.0.0.1:9');
const goodBatch = encodeFrame({ kind: 'batch', batch: text('ok') });

describe('TcpTransport on bad frames from a raw socket', () => {
  const BAD: readonly [string, Buffer, { end: boolean }][] = [
    ['garbage bytes', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), { end: false }],
    ['a truncated frame then close', Buffer.concat([hello9, goodBatch.subarray(0, goodBatch.length - 1)]), { end: true }],
    ['an oversized length prefix', Buffer.concat([hello9, Buffer.from([0x7f, 0xff, 0xff, 0xff])]), { end: false }],
    ['an unknown version', Buffer.concat([hello9, rawFrame({ version: FRAME_VERSION + 1, kind: FRAME_KIND_CODES.batch, payload: [1] })]), { end: false }],
    ['an unknown kind', Buffer.concat([hello9, rawFrame({ kind: 200, payload: [1] })]), { end: false }],
    ['a batch before hello', goodBatch, { end: false }],
    ['a second hello', Buffer.concat([hello9, hello9]), { end: false }],
    ['a snapshot chunk on a batch connection', Buffer.concat([hello9, goodBatch, encodeFrame({ kind: 'snapshot-chunk', streamId: 1, chunk: text('x') })]), { end: false }],
    ['a snapshot chunk beyond granted credit', Buffer.concat([hello9, encodeFrame({ kind: 'snapshot-open', streamId: 1, header: text('h') }), ...Array.from({ length: SNAPSHOT_WINDOW_CHUNKS + 1 }, () => encodeFrame({ kind: 'snapshot-chunk', streamId: 1, chunk: text('x') }))]), { end: false }],
  ];

  it.each(BAD)('%s: connection dropped, counted, node keeps serving', async (_name, bytes, options) => {
    const [a, b] = [await startNode(1), await startNode(2)];
    connectAll([a, b]);
    admit9(b);
    const port = b.transport.address().port;
    await rawExchange(port, bytes, options);
    await waitFor(() => b.transport.stats().framesRejected === 1, 'frame rejected');
    // The well-behaved peer is still served.
    a.transport.send(2, text('still here'));
    await waitFor(() => b.received.some((r) => r.text === 'still here'), 'batch from the good peer');
    expect(b.transport.stats().framesRejected).toBe(1);
  });

  it('logs one warn line with the error code for a rejected frame', async () => {
    const lines: { level: number; msg: string; code?: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const b = await startNode(2, { logger });
    admit9(b);
    await rawExchange(b.transport.address().port, Buffer.concat([hello9, rawFrame({ version: 7, kind: 2 })]), { end: false });
    await waitFor(() => lines.length === 1, 'warn line');
    expect(lines[0]).toMatchObject({ level: 40, msg: 'frame rejected, connection closed', code: 'FRAME_VERSION_UNKNOWN', peerId: 9 });
  });

  it('closes a connection that never says hello', async () => {
    const b = await startNode(2, { helloTimeoutMs: 50 });
    await rawExchange(b.transport.address().port, Buffer.alloc(0), { end: false });
    expect(b.transport.stats().framesRejected).toBe(0);
  });
});

describe('TcpTransport lifecycle', () => {
  it('close() releases the port and every socket', async () => {
    const [a, b] = [await startNode(1), await startNode(2)];
    connectAll([a, b]);
    a.transport.send(2, text('x'));
    b.transport.send(1, text('y'));
    await waitFor(() => a.received.length === 1 && b.received.length === 1, 'exchange');
    const port = b.transport.address().port;
    await Promise.all([a.transport.close(), b.transport.close()]);
    // The port is free again.
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise<void>((r) => server.close(() => r()));
    a.transport.send(2, text('after close'));
    expect(a.transport.stats().batchesDropped).toBe(1);
  });
});

/** The stats fields that count refused hellos, for one expect. */
const refusals = (n: Node) => {
  const { hellosRefusedCluster, hellosRefusedNotMember, hellosRefusedVersion, framesRejected } = n.transport.stats();
  return { hellosRefusedCluster, hellosRefusedNotMember, hellosRefusedVersion, framesRejected };
};

describe('TcpTransport hello: only members of our cluster', () => {
  it('delivers batches and snapshots between members of one cluster', async () => {
    const [a, b] = [await startNode(1), await startNode(2)];
    connectAll([a, b]);
    a.transport.send(2, text('in'));
    await waitFor(() => b.received.length === 1, 'batch');
    a.transport.openSnapshot(2, text('h'));
    await waitFor(() => b.snapshots.length === 1, 'snapshot');
    expect(refusals(b)).toEqual({ hellosRefusedCluster: 0, hellosRefusedNotMember: 0, hellosRefusedVersion: 0, framesRejected: 0 });
  });

  it('refuses a node of another cluster: no batch or snapshot delivered, each connection counted', async () => {
    const b = await startNode(2);
    const foreign = await startNode(1, { clusterId: OTHER_CLUSTER });
    connectAll([foreign, b]);
    // The foreign node keeps reconnecting (its backoff restarts with each accepted TCP connect); every hello is refused.
    for (let i = 0; i < 3; i++) foreign.transport.send(2, text(`foreign#${i}`));
    await waitFor(() => b.transport.stats().hellosRefusedCluster >= 3, 'three refused connections');
    const snapshot = foreign.transport.openSnapshot(2, text('h'));
    await expect(snapshot.end()).rejects.toMatchObject({ code: 'SNAPSHOT_CONNECTION_LOST' });
    expect(b.received).toEqual([]);
    expect(b.snapshots).toEqual([]);
    expect(b.transport.stats().batchesReceived).toBe(0);
    // Both ways: b's hellos to the foreign node are refused there too.
    b.transport.send(1, text('to foreign'));
    await waitFor(() => foreign.transport.stats().hellosRefusedCluster >= 1, 'refused by the foreign node');
    expect(foreign.received).toEqual([]);
  });

  it('refuses a stranger of our cluster (no address known for it) and a node claiming our own id', async () => {
    const b = await startNode(2);
    const stranger = await startNode(9);
    stranger.transport.setPeer(2, b.address);
    stranger.transport.send(2, text('stranger'));
    await waitFor(() => b.transport.stats().hellosRefusedNotMember >= 1, 'stranger refused');
    // Same cluster id, same node id as the receiver: a second node configured with one id.
    const twin = await startNode(2);
    twin.transport.setPeer(3, b.address);
    twin.transport.send(3, text('twin'));
    await waitFor(() => b.transport.stats().hellosRefusedNotMember >= 2, 'twin refused');
    expect(b.received).toEqual([]);
    // Once b knows the stranger (the Host adds a joined member), its next connection is accepted.
    b.transport.setPeer(9, stranger.address);
    await waitFor(() => {
      stranger.transport.send(2, text('member now'));
      return b.received.some((r) => r.text === 'member now' && r.from === 9);
    }, 'delivery after setPeer');
  });

  it('consults the isMember option instead of the peer table when given', async () => {
    const members = new Set<number>();
    const b = await startNode(2, { isMember: (id) => members.has(id) });
    const a = await startNode(1);
    a.transport.setPeer(2, b.address);
    a.transport.send(2, text('x'));
    await waitFor(() => b.transport.stats().hellosRefusedNotMember >= 1, 'refused while not a member');
    members.add(1);
    await waitFor(() => {
      a.transport.send(2, text('y'));
      return b.received.length > 0;
    }, 'delivery once a member');
  });

  it('refuses the old hello (frame version 1) as a node of an earlier release, counted apart from bad frames', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const b = await startNode(2, { logger });
    admit9(b);
    const oldHello = rawFrame({ version: 1, kind: FRAME_KIND_CODES.hello, payload: [0, 0, 0, 9] });
    await rawExchange(b.transport.address().port, Buffer.concat([oldHello, rawFrame({ version: 1, kind: FRAME_KIND_CODES.batch, payload: [1] })]), { end: false });
    expect(refusals(b)).toEqual({ hellosRefusedCluster: 0, hellosRefusedNotMember: 0, hellosRefusedVersion: 1, framesRejected: 0 });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'hello refused, connection closed', reason: 'version', detail: expect.stringMatching(/version 1, expected 2: the sender runs an earlier release/) });
  });

  it('drops frames that arrived together with a refused hello', async () => {
    const b = await startNode(2);
    admit9(b);
    const foreignHello = encodeFrame({ kind: 'hello', nodeId: 9, clusterId: OTHER_CLUSTER });
    await rawExchange(b.transport.address().port, Buffer.concat([foreignHello, goodBatch, goodBatch]), { end: false });
    expect(b.received).toEqual([]);
    expect(refusals(b)).toEqual({ hellosRefusedCluster: 1, hellosRefusedNotMember: 0, hellosRefusedVersion: 0, framesRejected: 0 });
  });

  it('logs a refusal at warn at most once per reason per interval, with the count refused since', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    let nowMs = 0;
    const b = await startNode(2, { logger, nowMs: () => nowMs, helloRefusedWarnIntervalMs: 1_000 });
    const foreignHello = encodeFrame({ kind: 'hello', nodeId: 9, clusterId: OTHER_CLUSTER });
    const strangerHello = encodeFrame({ kind: 'hello', nodeId: 7, clusterId: CLUSTER });
    for (let i = 0; i < 5; i++) await rawExchange(b.transport.address().port, foreignHello, { end: false });
    await rawExchange(b.transport.address().port, strangerHello, { end: false });
    expect(lines.map((l) => l['reason'])).toEqual(['cluster', 'not-member']);
    expect(lines[0]).toMatchObject({ peerId: 9, peerClusterId: OTHER_CLUSTER, clusterId: CLUSTER, refusedSinceLastWarning: 0 });
    nowMs = 1_000;
    await rawExchange(b.transport.address().port, foreignHello, { end: false });
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ reason: 'cluster', refusedSinceLastWarning: 4 });
    expect(b.transport.stats().hellosRefusedCluster).toBe(6);
  });

  it('refuses every hello until it knows its cluster id, and dials nobody before then', async () => {
    const b = await startNode(2, { clusterId: undefined as unknown as string });
    expect(b.transport.clusterId).toBeUndefined();
    await rawExchange(b.transport.address().port, hello9, { end: false });
    expect(b.transport.stats().hellosRefusedCluster).toBe(1);
    expect(() => b.transport.setPeer(1, '127.0.0.1:1')).toThrow(/no cluster id/);
    b.transport.setClusterId(CLUSTER);
    expect(() => b.transport.setClusterId(OTHER_CLUSTER)).toThrow(/cannot move it/);
    const a = await startNode(1);
    connectAll([a, b]);
    a.transport.send(2, text('now'));
    await waitFor(() => b.received.length === 1, 'delivery once the id is known');
  });
});
