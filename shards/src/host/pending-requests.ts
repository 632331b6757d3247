import { OverloadedError, RequestTimeoutError, fromWire } from '../errors.js';
import type { CoreReply } from './core-protocol.js';
import type { RequestIds } from './rpc.js';
import type { HostStats } from './stats.js';

/**
 * Requests waiting for a core's answer. Every one has a deadline
 * (requestTimeoutTicks), so this bounds what a burst of clients can pin
 * between two deadlines; past it a request fails at once with OVERLOADED
 * (retryable). PENDING_FORWARDS_MAX (rpc.ts) is the forwarded requests' side.
 */
export const PENDING_REQUESTS_MAX = 65_536;

interface PendingRequest {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly deadlineTick: number;
  readonly shardId: number;
}

/** The Host's requests to its cores that wait for a reply: bounded, each with a deadline, each answered at most once. */
export class PendingRequests {
  private readonly pending = new Map<number, PendingRequest>();

  constructor(
    private readonly o: {
      readonly nodeId: number;
      readonly requestTimeoutTicks: number;
      readonly ids: RequestIds;
      /** The Host's counters these requests add to (the same object as Host.stats). */
      readonly stats: Pick<HostStats, 'requestsRefused' | 'requestsTimedOut'>;
    },
  ) {}

  get size(): number {
    return this.pending.size;
  }

  /** Waits for the reply to a request `send` posts with the id given it; refused with OVERLOADED when PENDING_REQUESTS_MAX wait. */
  open<T>(shardId: number, nowTick: number, send: (id: number) => void): Promise<T> {
    const { o } = this;
    if (this.pending.size >= PENDING_REQUESTS_MAX) {
      o.stats.requestsRefused++;
      return Promise.reject(new OverloadedError(`node ${o.nodeId} has ${this.pending.size} requests waiting for its cores`));
    }
    const id = o.ids.take();
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, deadlineTick: nowTick + o.requestTimeoutTicks, shardId });
      send(id);
    });
  }

  /** A core's reply: settles its request, unless that timed out already. */
  settle(r: CoreReply): void {
    const p = this.pending.get(r.id);
    if (p === undefined) return; // timed out already
    this.pending.delete(r.id);
    if (r.ok) p.resolve(r.value);
    else p.reject(fromWire(r.error, { shardId: p.shardId, nodeId: this.o.nodeId }));
  }

  /** Fails requests past their deadline with REQUEST_TIMEOUT (their outcome is unknown). */
  expire(nowTick: number): void {
    for (const [id, p] of this.pending) {
      if (p.deadlineTick > nowTick) continue;
      this.pending.delete(id);
      this.o.stats.requestsTimedOut++;
      p.reject(new RequestTimeoutError(`no answer from shard ${p.shardId} on node ${this.o.nodeId} within ${this.o.requestTimeoutTicks} ticks`));
    }
  }

  /** Fails every request still waiting (the Host closes or a core crashed). */
  rejectAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
