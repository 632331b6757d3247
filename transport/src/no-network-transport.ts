/**
 * NoNetworkTransport: the transport of a node that runs alone (the embedded
 * store). No listener, no sockets, no peers; nothing ever arrives.
 *
 * A lone node's ranges have itself as their only voter, so Raft sends
 * nothing and this transport normally sees no traffic at all. Sends to a
 * peer are still possible: a data directory whose ranges name other voters
 * (one copied from a cluster member) makes Raft send to them, and the Host
 * pings any peer it was told about. `Transport.send` must not throw for
 * network reasons, and a peer this node has no way to reach is exactly
 * that, so each such batch is dropped, counted in `batchesDropped`, and the
 * peer reported via `onUnreachable`, as TcpTransport does for a peer without
 * an address. Raft then treats the peer as down; a range that needs it for a
 * quorum stays unavailable instead of taking the process down.
 *
 * `setPeer` is accepted for the same reason (the KV layer learns the
 * addresses of the members a copied directory records) and changes nothing:
 * an address does not make a peer reachable without a network.
 */
import { assert } from '@flotilla/core';
import { SnapshotStreamError } from './errors.js';
import { BATCH_BYTES_MAX } from './frame.js';
import type { PeerId, SnapshotSender, Transport, TransportHandlers, TransportStats } from './types.js';
import { zeroTransportStats } from './types.js';

export interface NoNetworkTransportOptions {
  readonly nodeId: PeerId;
}

export class NoNetworkTransport implements Transport {
  readonly nodeId: PeerId;
  private readonly counters = zeroTransportStats();
  private handlers: TransportHandlers | null = null;
  private closed = false;
  /**
   * Peers with an unreachable report queued for the next microtask. Reports
   * never run inside send() (the contract of every transport), and one per
   * peer per turn bounds them however often the Host sends in that turn.
   */
  private readonly unreachablePending = new Set<PeerId>();

  constructor(options: NoNetworkTransportOptions) {
    assertPeerId(options.nodeId, 'nodeId');
    this.nodeId = options.nodeId;
  }

  async start(handlers: TransportHandlers): Promise<void> {
    assert(this.handlers === null, () => `transport ${this.nodeId} started twice`);
    assert(!this.closed, () => `transport ${this.nodeId} started after close`);
    this.handlers = handlers;
  }

  send(to: PeerId, batch: Uint8Array): boolean {
    assertPeerId(to, 'peer id');
    this.counters.batchesDropped += 1;
    // Counted apart like TcpTransport does: a batch over the frame limit is the caller's bug, whatever the network.
    if (batch.byteLength > BATCH_BYTES_MAX) this.counters.batchesOversized += 1;
    this.reportUnreachable(to);
    return false;
  }

  openSnapshot(to: PeerId, _header: Uint8Array): SnapshotSender {
    assertPeerId(to, 'peer id');
    const failure = this.closed
      ? new SnapshotStreamError('TRANSPORT_CLOSED', `snapshot stream to node ${to}: transport of node ${this.nodeId} closed`)
      : new SnapshotStreamError('SNAPSHOT_PEER_UNKNOWN', `snapshot stream to node ${to}: node ${this.nodeId} has no network`);
    return {
      write: () => Promise.reject(failure),
      end: () => Promise.reject(failure),
      // Nothing was opened, so there is nothing to abandon.
      abort: () => {},
    };
  }

  setPeer(id: PeerId, _address: string): void {
    assertPeerId(id, 'peer id');
    assert(id !== this.nodeId, () => `node ${id} cannot be its own peer`);
  }

  removePeer(id: PeerId): void {
    this.unreachablePending.delete(id);
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unreachablePending.clear();
  }

  private reportUnreachable(peer: PeerId): void {
    if (this.closed || this.handlers?.onUnreachable === undefined) return;
    if (this.unreachablePending.size === 0) queueMicrotask(() => this.flushUnreachable());
    this.unreachablePending.add(peer);
  }

  private flushUnreachable(): void {
    const handlers = this.handlers;
    const peers = [...this.unreachablePending];
    this.unreachablePending.clear();
    if (this.closed || handlers === null) return;
    for (const peer of peers) handlers.onUnreachable?.(peer);
  }
}

/** A bad node id is the caller's bug, not network input. */
function assertPeerId(id: PeerId, what: string): void {
  assert(Number.isSafeInteger(id) && id > 0, () => `${what} must be a positive integer, got ${id}`);
}
