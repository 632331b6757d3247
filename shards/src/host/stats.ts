/** Counters the Host keeps itself (transport and cores keep their own). */
export interface HostStats {
  /** Frames whose batch failed to decode (dropped whole, logged). */
  framesDropped: number;
  /** Liveness pings sent (empty frames). */
  pingsSent: number;
  /** Node lease segments sent (node-leases.ts): every LEASE_INTERVAL_TICKS to every peer, renewing leases and proving liveness. */
  leaseSegmentsSent: number;
  /** Messages posted to cores (one per core per loop turn at most). */
  corePosts: number;
  requestsTimedOut: number;
  /** Forwarded-request answers nobody waited for (late, or not from the node asked). */
  rpcResponsesDropped: number;
  /** Forwarded requests that arrived again (a network that duplicates): answered once, not run twice. */
  rpcRequestsDuplicate: number;
  /** Outbound segments dropped over a peer's per-turn bound (host.ts PEER_TURN_BYTES_MAX), and their bytes. */
  segmentsDropped: number;
  segmentBytesDropped: number;
  /** Largest number of bytes queued for one peer in one turn (a gauge of the high-water mark). */
  peerTurnBytesMax: number;
  /** Requests refused because PENDING_REQUESTS_MAX (pending-requests.ts) or PENDING_FORWARDS_MAX (rpc.ts) were already waiting. */
  requestsRefused: number;
  /** Linearizable reads served on the Host's thread under the node lease, without their core (local-reads.ts). */
  localReads: number;
}
