/**
 * What the rest of Flotilla needs from a network: move opaque batches of
 * bytes between nodes, and stream snapshots beside them. Transport knows
 * node ids and bytes, never Raft; the shards layer encodes message batches.
 *
 * Implementations: `TcpTransport` (one connection per ordered node pair,
 * length-prefixed versioned frames), `NoNetworkTransport` (a node that runs
 * alone: every send is a counted drop) and, for tests only
 * (`@flotilla/transport/testing`), `MemoryNetwork` endpoints (seeded faults).
 */

/** A node's identity in the cluster (positive integer). */
export type PeerId = number;

export interface TransportStats {
  /** Batches handed to send() that left (or were queued to leave) per peer. */
  readonly batchesSent: number;
  readonly batchesReceived: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Batches dropped: peer unknown or unreachable, send queue over its bound. */
  readonly batchesDropped: number;
  /** Of those, batches over BATCH_BYTES_MAX: a caller's bug, dropped (and logged) rather than taking the node down. */
  readonly batchesOversized: number;
  /** Frames rejected as malformed, oversized or of an unknown version (each closed its connection). */
  readonly framesRejected: number;
  /**
   * Inbound connections refused at their hello (each closed, nothing from it
   * delivered): a hello from another cluster, or before this node knows its
   * own cluster id.
   */
  readonly hellosRefusedCluster: number;
  /** Refused at hello: a node id that is not a member (no address known for it) or is our own. */
  readonly hellosRefusedNotMember: number;
  /** Refused at the first frame: another frame version (a node of an earlier release). Not also in framesRejected. */
  readonly hellosRefusedVersion: number;
  readonly connectionsOpened: number;
  readonly reconnects: number;
}

/** Counters as kept by an implementation while running. */
export type MutableTransportStats = { -readonly [K in keyof TransportStats]: TransportStats[K] };

export function zeroTransportStats(): MutableTransportStats {
  return { batchesSent: 0, batchesReceived: 0, bytesSent: 0, bytesReceived: 0, batchesDropped: 0, batchesOversized: 0, framesRejected: 0, hellosRefusedCluster: 0, hellosRefusedNotMember: 0, hellosRefusedVersion: 0, connectionsOpened: 0, reconnects: 0 };
}

/** Sends a snapshot as an ordered stream of chunks with flow control. */
export interface SnapshotSender {
  /** Resolves when the receiver has room for more (credit-based flow control); rejects if the stream broke. */
  write(chunk: Uint8Array): Promise<void>;
  /** Marks the end; resolves when the receiver acknowledged the last chunk. */
  end(): Promise<void>;
  /** Abandons the stream; the receiver's iterator throws. */
  abort(reason: string): void;
}

/** An incoming snapshot: the sender's header, then chunks in order. */
export interface SnapshotReceiver {
  readonly from: PeerId;
  readonly header: Uint8Array;
  /** Chunks in order; throws if the sender aborted or the connection broke. Consuming a chunk grants the sender credit. */
  readonly chunks: AsyncIterable<Uint8Array>;
}

export interface TransportHandlers {
  /** A batch arrived from `from`. Called synchronously from the socket's data path; must not throw. */
  onBatch(from: PeerId, batch: Uint8Array): void;
  /** A send to `to` could not be delivered (connection down, queue full); the Raft layer reports it unreachable. */
  onUnreachable?(to: PeerId): void;
  /**
   * Batches `send` accepted (returned true) that were then dropped before any byte of them left this process (their
   * connection failed while they waited in its queue), the same objects `send` was given; a microtask later, never
   * from inside `send`. A batch written to a socket that then broke is never reported: it may have arrived.
   */
  onDropped?(to: PeerId, batches: readonly Uint8Array[]): void;
  /** A peer opened a snapshot stream. */
  onSnapshot?(stream: SnapshotReceiver): void;
}

export interface Transport {
  readonly nodeId: PeerId;
  /** Starts delivering inbound traffic to `handlers` (call once, before traffic is expected). */
  start(handlers: TransportHandlers): Promise<void>;
  /**
   * Queues one batch for `to`. Never blocks or throws for network reasons: failures are counted and reported via onUnreachable.
   * False: dropped here, never sent (no connection to the peer now, its queue full, the transport closed). True says nothing
   * of delivery: a queued batch may still be lost with its connection.
   */
  send(to: PeerId, batch: Uint8Array): boolean;
  /**
   * Writes what `send` queued now rather than on a later turn: a caller that
   * gathered a turn's traffic itself (the Host's flush) saves the event-loop
   * iteration the transport's own coalescing would wait. Optional: without
   * it, queued batches go out on the transport's own schedule.
   */
  flush?(): void;
  /** Opens a snapshot stream to `to`, separate from batches so a large snapshot never delays them. */
  openSnapshot(to: PeerId, header: Uint8Array): SnapshotSender;
  /** Learns or updates a peer's address (TCP: "host:port"; memory: ignored). */
  setPeer(id: PeerId, address: string): void;
  removePeer(id: PeerId): void;
  stats(): TransportStats;
  /** Closes every connection and stops listening; pending sends are dropped. */
  close(): Promise<void>;
}
