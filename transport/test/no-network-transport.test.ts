import { describe, expect, it } from 'vitest';
import { AssertionError } from '@flotilla/core';
import { BATCH_BYTES_MAX, NoNetworkTransport, SnapshotStreamError, zeroTransportStats, type PeerId } from '../src/index.js';

/** A started transport that records what its handlers see. */
async function started(nodeId: PeerId = 1): Promise<{ transport: NoNetworkTransport; unreachable: PeerId[]; batches: number; snapshots: number }> {
  const transport = new NoNetworkTransport({ nodeId });
  const seen = { transport, unreachable: [] as PeerId[], batches: 0, snapshots: 0 };
  await transport.start({
    onBatch: () => seen.batches++,
    onUnreachable: (to) => seen.unreachable.push(to),
    onSnapshot: () => seen.snapshots++,
  });
  return seen;
}

/** Runs queued microtasks (unreachable reports are queued as one). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe('NoNetworkTransport', () => {
  it('starts with zero stats and never delivers anything', async () => {
    const t = await started();
    expect(t.transport.nodeId).toBe(1);
    expect(t.transport.stats()).toEqual(zeroTransportStats());
    await settle();
    expect(t.batches).toBe(0);
    expect(t.snapshots).toBe(0);
  });

  it('drops and counts every batch to a peer, reporting the peer unreachable', async () => {
    const t = await started();
    t.transport.send(2, Uint8Array.of(1, 2, 3));
    t.transport.send(3, new Uint8Array(0));
    expect(t.transport.stats()).toMatchObject({ batchesDropped: 2, batchesSent: 0, bytesSent: 0, batchesOversized: 0 });
    await settle();
    expect(t.unreachable).toEqual([2, 3]);
  });

  it('a peer learned with setPeer is no more reachable than any other', async () => {
    const t = await started();
    t.transport.setPeer(2, '127.0.0.1:7002');
    t.transport.send(2, Uint8Array.of(1));
    expect(t.transport.stats().batchesDropped).toBe(1);
    await settle();
    expect(t.unreachable).toEqual([2]);
  });

  it('reports never inside send(), and once per peer however many sends a turn makes', async () => {
    const t = await started();
    for (let i = 0; i < 5; i++) t.transport.send(2, Uint8Array.of(i));
    t.transport.send(3, Uint8Array.of(0));
    expect(t.unreachable).toEqual([]);
    await settle();
    expect(t.unreachable).toEqual([2, 3]);
    t.transport.send(2, Uint8Array.of(9));
    await settle();
    expect(t.unreachable).toEqual([2, 3, 2]);
    expect(t.transport.stats().batchesDropped).toBe(7);
  });

  it('counts a batch over BATCH_BYTES_MAX as oversized as well as dropped', async () => {
    const t = await started();
    t.transport.send(2, new Uint8Array(BATCH_BYTES_MAX + 1));
    t.transport.send(2, new Uint8Array(BATCH_BYTES_MAX));
    expect(t.transport.stats()).toMatchObject({ batchesDropped: 2, batchesOversized: 1 });
  });

  it('fails a snapshot stream with SNAPSHOT_PEER_UNKNOWN (not retryable)', async () => {
    const t = await started();
    const sender = t.transport.openSnapshot(2, Uint8Array.of(7));
    const write = sender.write(Uint8Array.of(1)).then(
      () => undefined,
      (err: unknown) => err,
    );
    const end = sender.end().then(
      () => undefined,
      (err: unknown) => err,
    );
    for (const err of [await write, await end]) {
      expect(err).toBeInstanceOf(SnapshotStreamError);
      expect((err as SnapshotStreamError).code).toBe('SNAPSHOT_PEER_UNKNOWN');
      expect((err as SnapshotStreamError).retryable).toBe(false);
    }
    expect(() => sender.abort('giving up')).not.toThrow();
  });

  it('after close: sends are still counted, nothing is reported, snapshots fail with TRANSPORT_CLOSED', async () => {
    const t = await started();
    t.transport.send(2, Uint8Array.of(1)); // its report is queued, then close() cancels it
    await t.transport.close();
    t.transport.send(2, Uint8Array.of(2));
    await settle();
    expect(t.unreachable).toEqual([]);
    expect(t.transport.stats().batchesDropped).toBe(2);
    const err = await t.transport.openSnapshot(2, Uint8Array.of(7)).write(Uint8Array.of(1)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as SnapshotStreamError).code).toBe('TRANSPORT_CLOSED');
    await t.transport.close();
  });

  it('removePeer cancels a queued report', async () => {
    const t = await started();
    t.transport.send(2, Uint8Array.of(1));
    t.transport.send(3, Uint8Array.of(1));
    t.transport.removePeer(2);
    await settle();
    expect(t.unreachable).toEqual([3]);
  });

  it('without an onUnreachable handler, drops are only counted', async () => {
    const transport = new NoNetworkTransport({ nodeId: 1 });
    await transport.start({ onBatch: () => {} });
    transport.send(2, Uint8Array.of(1));
    await settle();
    expect(transport.stats().batchesDropped).toBe(1);
  });

  it.each([
    ['a node id that is not a positive integer', () => new NoNetworkTransport({ nodeId: 0 })],
    ['itself as a peer', () => new NoNetworkTransport({ nodeId: 1 }).setPeer(1, '127.0.0.1:7001')],
    ['a peer id that is not a positive integer', () => new NoNetworkTransport({ nodeId: 1 }).send(-1, Uint8Array.of(1))],
  ])('asserts on %s', (_what, call) => {
    expect(call).toThrow(AssertionError);
  });

  it('asserts on a second start and on a start after close', async () => {
    const t = await started();
    await expect(t.transport.start({ onBatch: () => {} })).rejects.toThrow(AssertionError);
    const closed = new NoNetworkTransport({ nodeId: 1 });
    await closed.close();
    await expect(closed.start({ onBatch: () => {} })).rejects.toThrow(AssertionError);
  });
});
