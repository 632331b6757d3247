import { assert, type Entry, type GroupId, type Message, type NodeId } from '@flotilla/core';
import { BATCH_BYTES_MAX } from '@flotilla/transport';
import { encodeBatch, type Envelope } from './message-codec.js';
import { HEARTBEAT_RESPONSE_TUPLE_LENGTH, HEARTBEAT_TUPLE_LENGTH, SEGMENT_BYTES_MAX, encodeSegment, type Segment } from './node-batch.js';

/**
 * Shard messages encoded together as one section: small enough that a
 * catch-up burst of one shard splits into several sections (and segments),
 * large enough that a section holds many ordinary appends.
 */
const SECTION_BYTES_TARGET = 1024 * 1024;
/**
 * Append bytes one core sends one peer between two flushes, over all its
 * shards. A peer that comes back after a cut makes every shard's leader
 * fill its inflight window at once (up to `inflightBytesMax` each); past
 * this bound appends are dropped and their followers fall back to probing
 * (Raft resends from the follower's match), so catch-up proceeds a bounded
 * burst at a time instead of one unbounded frame. Two frames' worth is what
 * the transport queues per peer.
 */
export const PEER_APPEND_BYTES_PER_FLUSH_MAX = 2 * SEGMENT_BYTES_MAX;
/** An msgpack number takes at most 9 bytes: what a heartbeat tuple is budgeted at. */
const NUMBER_BYTES_MAX = 9;
/** Message header and field overhead over its entries' payloads (type, ids, term, index, commit, array headers). */
const MESSAGE_OVERHEAD_BYTES = 64;
/** Per-entry overhead: index, term, type and the array header around them. */
const ENTRY_OVERHEAD_BYTES = 32;
/** Section pair overhead in a segment: the shard id and the bytes header. */
const SECTION_OVERHEAD_BYTES = 16;
/** Segment overhead: the format number and five list headers. */
const SEGMENT_OVERHEAD_BYTES = 32;

assert(SECTION_BYTES_TARGET < SEGMENT_BYTES_MAX, 'a section target must leave room in a segment');

/** Upper estimate of a message's encoded bytes (payloads plus fixed overheads). */
export function messageBytesEstimate(m: Message): number {
  if (m.type !== 'append') return MESSAGE_OVERHEAD_BYTES;
  return MESSAGE_OVERHEAD_BYTES + entriesBytes(m.entries);
}

function entriesBytes(entries: readonly Entry[]): number {
  let bytes = 0;
  for (const e of entries) bytes += e.data.byteLength + ENTRY_OVERHEAD_BYTES;
  return bytes;
}

/** What one core has gathered for one destination node since its last flush. */
class Destination {
  readonly heartbeats: number[] = [];
  readonly heartbeatResponses: number[] = [];
  readonly wakes: number[] = [];
  readonly notLeading: number[] = [];
  readonly messages = new Map<GroupId, Envelope[]>();
  /** Estimated bytes of the append messages queued (the per-flush budget's measure). */
  appendBytes = 0;

  isEmpty(): boolean {
    return this.heartbeats.length === 0 && this.heartbeatResponses.length === 0 && this.wakes.length === 0 && this.notLeading.length === 0 && this.messages.size === 0;
  }

  /**
   * Segments of at most SEGMENT_BYTES_MAX each: node-level heartbeats first
   * (they keep leaders' leases and followers' patience, so they never wait
   * behind a catch-up burst), then shard sections in arrival order.
   */
  encode(): Uint8Array[] {
    const segments: Uint8Array[] = [];
    let current = emptySegment();
    let bytes = SEGMENT_OVERHEAD_BYTES;
    const room = (needed: number): void => {
      if (bytes + needed <= SEGMENT_BYTES_MAX || isEmptySegment(current)) return;
      segments.push(encodeChecked(current));
      current = emptySegment();
      bytes = SEGMENT_OVERHEAD_BYTES;
    };
    const tuples = (list: readonly number[], length: number, target: (s: Segment) => number[]): void => {
      for (let i = 0; i < list.length; i += length) {
        room(length * NUMBER_BYTES_MAX);
        for (let j = 0; j < length; j++) target(current).push(list[i + j]!);
        bytes += length * NUMBER_BYTES_MAX;
      }
    };
    tuples(this.heartbeats, HEARTBEAT_TUPLE_LENGTH, (s) => s.heartbeats);
    tuples(this.heartbeatResponses, HEARTBEAT_RESPONSE_TUPLE_LENGTH, (s) => s.heartbeatResponses);
    tuples(this.wakes, 1, (s) => s.wakes);
    tuples(this.notLeading, 2, (s) => s.notLeading);
    for (const [shardId, envelopes] of this.messages) {
      for (const chunk of sectionsOf(envelopes)) {
        const body = encodeBatch(chunk);
        room(body.byteLength + SECTION_OVERHEAD_BYTES);
        current.sections.push(shardId, body);
        bytes += body.byteLength + SECTION_OVERHEAD_BYTES;
      }
    }
    if (!isEmptySegment(current)) segments.push(encodeChecked(current));
    return segments;
  }
}

/** Consecutive runs of envelopes whose estimated bytes stay within SECTION_BYTES_TARGET (a single larger message goes alone). */
function* sectionsOf(envelopes: readonly Envelope[]): Generator<Envelope[]> {
  let chunk: Envelope[] = [];
  let bytes = 0;
  for (const e of envelopes) {
    const b = messageBytesEstimate(e.message);
    if (chunk.length > 0 && bytes + b > SECTION_BYTES_TARGET) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(e);
    bytes += b;
  }
  if (chunk.length > 0) yield chunk;
}

function emptySegment(): { heartbeats: number[]; heartbeatResponses: number[]; sections: (number | Uint8Array)[]; wakes: number[]; notLeading: number[] } {
  return { heartbeats: [], heartbeatResponses: [], sections: [], wakes: [], notLeading: [] };
}

function isEmptySegment(s: Segment): boolean {
  return s.heartbeats.length === 0 && s.heartbeatResponses.length === 0 && s.sections.length === 0 && s.wakes.length === 0 && s.notLeading.length === 0;
}

function encodeChecked(s: Segment): Uint8Array {
  const bytes = encodeSegment(s);
  // The estimates above are upper bounds, and no single message outgrows a segment (checked where the
  // Raft limits are set: Host.start), so only a bug in them can break this.
  assert(bytes.byteLength <= BATCH_BYTES_MAX, () => `segment of ${bytes.byteLength} B exceeds the batch limit ${BATCH_BYTES_MAX}`);
  return bytes;
}

/**
 * Outbound Raft traffic of one core, coalesced per destination node until
 * the core flushes (once before and once after each group commit). Heartbeats
 * and heartbeat responses become tuples of the node-level heartbeat; other
 * messages are grouped by shard (see node-batch.ts). Appends to one peer are
 * bounded per flush (PEER_APPEND_BYTES_PER_FLUSH_MAX); every other message is
 * small and always taken.
 */
export class Outbox {
  private destinations = new Map<NodeId, Destination>();

  private to(node: NodeId): Destination {
    let d = this.destinations.get(node);
    if (d === undefined) {
      d = new Destination();
      this.destinations.set(node, d);
    }
    return d;
  }

  /**
   * Queues `m`; false when it is an append over this flush's budget for its
   * peer: the caller drops it and reports the peer unreachable for the shard,
   * which makes Raft probe and resend from what the follower has. The first
   * append to a peer in a flush is always taken, so every flush makes progress.
   */
  add(shardId: GroupId, m: Message, options: { quiesce: boolean }): boolean {
    const d = this.to(m.to);
    if (m.type === 'heartbeat') {
      d.heartbeats.push(shardId, m.term, m.commit, m.round, options.quiesce ? 1 : 0);
      return true;
    }
    if (m.type === 'heartbeatResponse') {
      d.heartbeatResponses.push(shardId, m.term, m.round);
      return true;
    }
    if (m.type === 'append') {
      const bytes = messageBytesEstimate(m);
      if (d.appendBytes > 0 && d.appendBytes + bytes > PEER_APPEND_BYTES_PER_FLUSH_MAX) return false;
      d.appendBytes += bytes;
    }
    let list = d.messages.get(shardId);
    if (list === undefined) {
      list = [];
      d.messages.set(shardId, list);
    }
    list.push({ shardId, message: m });
    return true;
  }

  /** Asks `node`'s replica of `shardId` to stop quiescing. */
  wake(node: NodeId, shardId: GroupId): void {
    this.to(node).wakes.push(shardId);
  }

  /** Tells `node` our replica of `shardId` does not lead at `term` (0: we hold none), answering its wake: its follower may forget us as leader. */
  notLeading(node: NodeId, shardId: GroupId, term: number): void {
    this.to(node).notLeading.push(shardId, term);
  }

  isEmpty(): boolean {
    return this.destinations.size === 0;
  }

  /** Encodes each destination's traffic into segments of at most SEGMENT_BYTES_MAX and empties the outbox. */
  take(): [to: number, segment: Uint8Array][] {
    const out: [number, Uint8Array][] = [];
    for (const [node, d] of this.destinations) if (!d.isEmpty()) for (const segment of d.encode()) out.push([node, segment]);
    this.destinations = new Map();
    return out;
  }
}
