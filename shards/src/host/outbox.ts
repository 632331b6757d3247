import type { GroupId, Message, NodeId } from '@flotilla/core';
import { encodeBatch, type Envelope } from './message-codec.js';
import { encodeSegment, type Segment } from './node-batch.js';

/** What one core has gathered for one destination node since its last flush. */
class Destination {
  readonly heartbeats: number[] = [];
  readonly heartbeatResponses: number[] = [];
  readonly wakes: number[] = [];
  readonly messages = new Map<GroupId, Envelope[]>();

  isEmpty(): boolean {
    return this.heartbeats.length === 0 && this.heartbeatResponses.length === 0 && this.wakes.length === 0 && this.messages.size === 0;
  }

  encode(): Uint8Array {
    const sections: (number | Uint8Array)[] = [];
    for (const [shardId, envelopes] of this.messages) sections.push(shardId, encodeBatch(envelopes));
    const segment: Segment = { heartbeats: this.heartbeats, heartbeatResponses: this.heartbeatResponses, sections, wakes: this.wakes };
    return encodeSegment(segment);
  }
}

/**
 * Outbound Raft traffic of one core, coalesced per destination node until
 * the core flushes (once before and once after each group commit). Heartbeats
 * and heartbeat responses become tuples of the node-level heartbeat; other
 * messages are grouped by shard (see node-batch.ts).
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

  add(shardId: GroupId, m: Message, options: { quiesce: boolean }): void {
    const d = this.to(m.to);
    if (m.type === 'heartbeat') {
      d.heartbeats.push(shardId, m.term, m.commit, m.round, options.quiesce ? 1 : 0);
    } else if (m.type === 'heartbeatResponse') {
      d.heartbeatResponses.push(shardId, m.term, m.round);
    } else {
      let list = d.messages.get(shardId);
      if (list === undefined) {
        list = [];
        d.messages.set(shardId, list);
      }
      list.push({ shardId, message: m });
    }
  }

  /** Asks `node`'s replica of `shardId` to stop quiescing. */
  wake(node: NodeId, shardId: GroupId): void {
    this.to(node).wakes.push(shardId);
  }

  isEmpty(): boolean {
    return this.destinations.size === 0;
  }

  /** Encodes one segment per destination and empties the outbox. */
  take(): [to: number, segment: Uint8Array][] {
    const out: [number, Uint8Array][] = [];
    for (const [node, d] of this.destinations) if (!d.isEmpty()) out.push([node, d.encode()]);
    this.destinations = new Map();
    return out;
  }
}
