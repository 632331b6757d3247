// The fault proxy between real TcpTransports on loopback: it names each connection's sender from its
// hello and applies that directed link's fault — cut (blackhole, refuse), corrupt, delay, throttle,
// random connection resets — and traffic resumes once the link heals.
import { TcpTransport, type PeerId } from '@flotilla/transport';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultNetwork } from '../src/faults/proxy.js';
import { LINK_OK, type LinkFault } from '../src/faults/link.js';
import { SeededRng } from '@flotilla/core';

const CLUSTER = '00112233445566778899aabbccddeeff';
const WAIT_MS_MAX = 10_000;

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + WAIT_MS_MAX;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${WAIT_MS_MAX} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Node {
  readonly id: number;
  readonly transport: TcpTransport;
  readonly received: { from: PeerId; text: string; atMs: number }[];
  readonly unreachable: PeerId[];
}

interface Cluster {
  readonly nodes: Node[];
  readonly network: FaultNetwork;
  send(from: number, to: number, text: string): void;
  /** Texts node `to` received from `from`, in order. */
  texts(from: number, to: number): string[];
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** Three transports; every peer address is the peer's proxy. */
async function cluster(): Promise<Cluster> {
  const nodes: Node[] = [];
  for (const id of [1, 2, 3]) {
    const transport = new TcpTransport({ nodeId: id, clusterId: CLUSTER, host: '127.0.0.1', port: 0, reconnectDelayMsMin: 10, reconnectDelayMsMax: 50, unreachableReportIntervalMs: 20 });
    const node: Node = { id, transport, received: [], unreachable: [] };
    await transport.start({
      onBatch: (from, batch) => node.received.push({ from, text: Buffer.from(batch).toString('utf8'), atMs: performance.now() }),
      onUnreachable: (to) => node.unreachable.push(to),
    });
    closers.push(() => transport.close());
    nodes.push(node);
  }
  const rng = new SeededRng(7);
  const network = await FaultNetwork.start({
    targets: new Map(nodes.map((n) => [n.id, { host: '127.0.0.1', port: n.transport.address().port }])),
    random: () => rng.nextFloat(),
  });
  closers.push(() => network.close());
  for (const a of nodes) for (const b of nodes) if (a !== b) a.transport.setPeer(b.id, network.addressOf(b.id));
  return {
    nodes,
    network,
    send: (from, to, text) => nodes[from - 1]!.transport.send(to, Buffer.from(text)),
    texts: (from, to) => nodes[to - 1]!.received.filter((r) => r.from === from).map((r) => r.text),
  };
}

const fault = (f: Partial<LinkFault>): LinkFault => ({ ...LINK_OK, ...f });

describe('fault proxy between transports', () => {
  it('relays batches both ways in order and names each connection by the sender in its hello', async () => {
    const c = await cluster();
    for (let i = 0; i < 50; i++) for (const [a, b] of [[1, 2], [2, 1], [3, 2]] as const) c.send(a, b, `${a}>${b}#${i}`);
    await waitFor(() => c.texts(1, 2).length === 50 && c.texts(2, 1).length === 50 && c.texts(3, 2).length === 50, 'every batch');
    expect(c.texts(3, 2)).toEqual(Array.from({ length: 50 }, (_, i) => `3>2#${i}`));
    expect(c.network.stats().get('1>2')!.connections).toBeGreaterThanOrEqual(1);
    expect(c.network.stats().get('3>2')!.bytesForwarded).toBeGreaterThan(0);
    expect(c.network.stats().has('0>2')).toBe(false); // every connection said hello
  });

  it('blackholes one direction only, then resumes after healing (the cut connection is reset)', async () => {
    const c = await cluster();
    c.send(1, 2, 'before');
    await waitFor(() => c.texts(1, 2).length === 1, 'the first batch');
    c.network.setLink(1, 2, fault({ cut: 'blackhole' }));
    c.send(1, 2, 'lost');
    c.send(2, 1, 'still flows');
    await waitFor(() => c.network.statsOf(1, 2).bytesDiscarded > 0 && c.texts(2, 1).length === 1, 'a discarded batch and the other direction');
    expect(c.texts(1, 2)).toEqual(['before']);
    c.network.setLink(1, 2, LINK_OK);
    expect(c.network.statsOf(1, 2).resets).toBe(1);
    for (let i = 0; i < 200 && !c.texts(1, 2).includes('after'); i++) {
      c.send(1, 2, 'after'); // sends until a new connection carries one (the transport drops while it reconnects)
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(c.texts(1, 2)).toContain('after');
    expect(c.texts(1, 2)).not.toContain('lost');
  });

  it('refuses a link: the sender sees its peer unreachable, other links are untouched', async () => {
    const c = await cluster();
    c.network.setLink(1, 3, fault({ cut: 'refuse' }));
    // Until both are seen (each is asynchronous, and a loaded machine may see one long before the other).
    for (let i = 0; i < 250 && (!c.nodes[0]!.unreachable.includes(3) || c.texts(2, 3).length === 0); i++) {
      c.send(1, 3, 'refused');
      c.send(2, 3, `ok${i}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(c.nodes[0]!.unreachable).toContain(3);
    expect(c.texts(1, 3)).toEqual([]);
    expect(c.texts(2, 3).length).toBeGreaterThan(0);
    expect(c.network.statsOf(1, 3).resets).toBeGreaterThan(0);
  });

  it('corrupts frames at a boundary: the receiver refuses that connection, stays up, and takes clean ones after healing', async () => {
    const c = await cluster();
    c.network.setLink(1, 3, fault({ cut: 'corrupt' }));
    for (let i = 0; i < 100 && c.nodes[2]!.transport.stats().framesRejected === 0; i++) {
      c.send(1, 3, 'garbled');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(c.nodes[2]!.transport.stats().framesRejected).toBeGreaterThan(0);
    expect(c.network.statsOf(1, 3).corruptFrames).toBeGreaterThan(0);
    c.send(2, 3, 'from 2');
    await waitFor(() => c.texts(2, 3).length === 1, 'node 3 still serving node 2');
    c.network.setLink(1, 3, LINK_OK);
    for (let i = 0; i < 200 && !c.texts(1, 3).includes('clean'); i++) {
      c.send(1, 3, 'clean');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(c.texts(1, 3)).toContain('clean');
  });

  it('delays a link: nothing arrives before the delay, order is kept', async () => {
    const c = await cluster();
    c.send(2, 3, 'warm');
    await waitFor(() => c.texts(2, 3).length === 1, 'a connection');
    c.network.setLink(2, 3, fault({ delayMs: 150 }));
    const sentAt = performance.now();
    for (let i = 0; i < 5; i++) c.send(2, 3, `d${i}`);
    await waitFor(() => c.texts(2, 3).length === 6, 'the delayed batches');
    expect(c.texts(2, 3)).toEqual(['warm', 'd0', 'd1', 'd2', 'd3', 'd4']);
    const first = c.nodes[2]!.received.find((r) => r.text === 'd0')!;
    expect(first.atMs - sentAt).toBeGreaterThanOrEqual(150);
  });

  it('throttles a link to its byte rate', async () => {
    const c = await cluster();
    c.send(2, 1, 'warm');
    await waitFor(() => c.texts(2, 1).length === 1, 'a connection');
    const bytesPerSec = 1024 * 1024;
    c.network.setLink(2, 1, fault({ bytesPerSecMax: bytesPerSec }));
    const sentAt = performance.now();
    const big = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 16; i++) c.send(2, 1, big); // 1 MiB
    await waitFor(() => c.texts(2, 1).length === 17, 'the throttled batches');
    // The first chunk goes at once; the rest waits for the rate (a lower bound, whatever the machine's speed).
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual(500);
  });

  it('resets connections of a lossy link at random; traffic gets through between resets', async () => {
    const c = await cluster();
    c.network.setLink(3, 1, fault({ resetChancePerSec: 20 }));
    for (let i = 0; i < 300 && (c.network.statsOf(3, 1).resets < 3 || c.texts(3, 1).length < 3); i++) {
      c.send(3, 1, `l${i}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(c.network.statsOf(3, 1).resets).toBeGreaterThanOrEqual(3);
    expect(c.texts(3, 1).length).toBeGreaterThanOrEqual(3);
  });
});
