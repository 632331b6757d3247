import { randomInt } from 'node:crypto';
import { Packr } from 'msgpackr';
import { OverloadedError, PeerUnreachableError, RemoteError, RequestTimeoutError, toWire } from '../errors.js';
import type { ShellLogger } from '../shell-logger.js';
import { encodeRpcSegments, type RpcSegment } from './node-batch.js';
import type { HostStats } from './stats.js';

/**
 * Requests forwarded to other nodes waiting for their answers. Every one has
 * a deadline (requestTimeoutTicks), so this bounds what a burst of clients
 * can pin between two deadlines; past it a forward fails at once with
 * OVERLOADED (retryable). PENDING_REQUESTS_MAX (pending-requests.ts) is the
 * cores' side.
 */
export const PENDING_FORWARDS_MAX = 16_384;
/** Forwarded request ids remembered per peer (see serveForwarded): beyond the requests one peer can have outstanding. */
const SERVED_FORWARDS_PER_PEER_MAX = 4 * PENDING_FORWARDS_MAX;
/** Random start of a Host's request ids: 2^40, leaving 2^13 ids a second for 30 years before ids pass 2^53. */
const REQUEST_ID_BASE_MAX = 2 ** 40;

/**
 * Ids of requests a Host sends (to its cores and forwarded to peers), from
 * one counter. Forwarded ones start at a random point per start, so a peer's
 * record of ids it served (servedForwards) never mistakes a restarted
 * sender's request for one it already ran. The seed fixes it (simulation).
 */
export class RequestIds {
  private next: number;

  constructor(seed: number | undefined) {
    this.next = 1 + (seed === undefined ? randomInt(REQUEST_ID_BASE_MAX) : (Math.imul(seed, 0x9e3779b1) >>> 0) * 64);
  }

  take(): number {
    return this.next++;
  }
}

/** What a request handler answers a forwarded request with. */
export type RequestHandler = (from: number, payload: Uint8Array) => Promise<Uint8Array>;

/** What NodeRpc needs of the Host: its clock in ticks, its stats, and a way to make a peer's frame go out this turn. */
export interface NodeRpcPort {
  readonly nodeId: number;
  readonly log: ShellLogger;
  readonly requestTimeoutTicks: number;
  readonly ids: RequestIds;
  /** The Host's counters these requests add to (the same object as Host.stats). */
  readonly stats: Pick<HostStats, 'requestsRefused' | 'requestsTimedOut' | 'rpcResponsesDropped' | 'rpcRequestsDuplicate'>;
  nowTick(): number;
  /** Whether the Host closed: answers finished after that are not sent. */
  isClosed(): boolean;
  /** Makes `to` get a frame this turn; flush collects what waits for it with `takeSegments`. */
  wakePeer(to: number): void;
}

interface PendingForward {
  readonly resolve: (v: Uint8Array) => void;
  readonly reject: (e: Error) => void;
  readonly deadlineTick: number;
  readonly to: number;
}

/**
 * Requests between Hosts (forwarding to the node that leads a range). They
 * travel in the frames Raft traffic uses, as RPC segments, so they are
 * coalesced per loop turn like it. Each side: forwarded requests waiting for
 * an answer (bounded, with a deadline), and per peer the ids of requests
 * served recently, so a request runs at most once.
 */
export class NodeRpc {
  private readonly outbound = new Map<number, RpcSegment>();
  private readonly pending = new Map<number, PendingForward>();
  private handler: RequestHandler | undefined;
  /** Per peer, ids of forwarded requests run recently, with the tick each arrived: insertion-ordered, pruned by age and count. */
  private readonly served = new Map<number, Map<number, number>>();

  constructor(private readonly port: NodeRpcPort) {}

  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Sends `payload` to `to`'s request handler and resolves with its answer.
   * Fails with RequestTimeoutError after requestTimeoutTicks (the peer is
   * down, or lost the request), or with the handler's error.
   */
  forward(to: number, payload: Uint8Array): Promise<Uint8Array> {
    const { port } = this;
    if (this.pending.size >= PENDING_FORWARDS_MAX) {
      port.stats.requestsRefused++;
      return Promise.reject(new OverloadedError(`node ${port.nodeId} has ${this.pending.size} forwarded requests waiting for answers`));
    }
    const id = port.ids.take();
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadlineTick: port.nowTick() + port.requestTimeoutTicks, to });
      this.outbox(to).requests.push(id, payload);
      port.wakePeer(to);
    });
  }

  /** Serves requests other nodes `forward` to this one (the KV service sets it). */
  setRequestHandler(handler: RequestHandler): void {
    this.handler = handler;
  }

  onSegment(from: number, rpc: RpcSegment): void {
    for (let i = 0; i < rpc.requests.length; i += 2) this.serveForwarded(from, rpc.requests[i] as number, rpc.requests[i + 1] as Uint8Array);
    for (let i = 0; i < rpc.responses.length; i += 3) {
      const id = rpc.responses[i] as number;
      const p = this.pending.get(id);
      // Unknown: timed out already, or a response we never asked for (counted, not trusted).
      if (p === undefined || p.to !== from) {
        this.port.stats.rpcResponsesDropped++;
        continue;
      }
      this.pending.delete(id);
      const payload = rpc.responses[i + 2] as Uint8Array;
      if (rpc.responses[i + 1] === 1) p.resolve(payload);
      else p.reject(decodeRpcError(payload));
    }
  }

  /** Forgets served ids past their use and fails forwards past their deadline. */
  onTick(nowTick: number): void {
    const { port } = this;
    // A duplicate arrives within the sender's timeout of the original, or never matters (the sender gave up).
    for (const served of this.served.values()) {
      for (const [id, tick] of served) {
        if (tick + 2 * port.requestTimeoutTicks > nowTick) break;
        served.delete(id);
      }
    }
    for (const [id, p] of this.pending) {
      if (p.deadlineTick > nowTick) continue;
      this.pending.delete(id);
      port.stats.requestsTimedOut++;
      p.reject(new RequestTimeoutError(`no answer from node ${p.to} to a request forwarded by node ${port.nodeId} within ${port.requestTimeoutTicks} ticks`));
    }
  }

  /**
   * Hands every peer's waiting requests and answers over as segments (at most SEGMENT_BYTES_MAX each), each with the
   * ids of the requests in it (for notSent), and forgets them.
   */
  takeSegments(send: (to: number, segment: Uint8Array, requestIds: readonly number[]) => void): void {
    for (const [to, box] of this.outbound) for (const { segment, requestIds } of encodeRpcSegments(box)) send(to, segment, requestIds);
    this.outbound.clear();
  }

  /**
   * Fails at once, as PEER_UNREACHABLE, forwards whose segment never left this node (the transport refused its frame):
   * they did not run, so the caller may try again rather than wait out the deadline for an unknown outcome.
   */
  notSent(to: number, requestIds: readonly number[]): void {
    for (const id of requestIds) {
      const p = this.pending.get(id);
      if (p === undefined) continue;
      this.pending.delete(id);
      p.reject(new PeerUnreachableError(`no connection from node ${this.port.nodeId} to node ${to} took the request`));
    }
  }

  forgetPeer(id: number): void {
    this.served.delete(id);
  }

  /** Fails every forward still waiting (the Host closes or a core crashed). */
  rejectAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private outbox(to: number): RpcSegment {
    let box = this.outbound.get(to);
    if (box === undefined) {
      box = { requests: [], responses: [] };
      this.outbound.set(to, box);
    }
    return box;
  }

  private serveForwarded(from: number, id: number, payload: Uint8Array): void {
    const { port } = this;
    // At most once: TCP never delivers a batch twice, but a request must not run twice whatever carries it.
    let served = this.served.get(from);
    if (served === undefined) this.served.set(from, (served = new Map()));
    if (served.has(id)) {
      port.stats.rpcRequestsDuplicate++;
      return;
    }
    served.set(id, port.nowTick());
    if (served.size > SERVED_FORWARDS_PER_PEER_MAX) served.delete(served.keys().next().value!);
    const handler = this.handler;
    const answer = (ok: boolean, bytes: Uint8Array) => {
      if (port.isClosed()) return;
      this.outbox(from).responses.push(id, ok ? 1 : 0, bytes);
      port.wakePeer(from);
    };
    if (handler === undefined) {
      answer(false, encodeRpcError(new RemoteError('NO_HANDLER', `node ${port.nodeId} serves no forwarded requests`, true)));
      return;
    }
    handler(from, payload).then(
      (bytes) => answer(true, bytes),
      (err: unknown) => {
        if (toWire(err) === undefined) port.log.error({ err, peer: from }, 'forwarded request failed unexpectedly');
        answer(false, encodeRpcError(err));
      },
    );
  }
}

const rpcErrorPackr = new Packr({ useRecords: false, moreTypes: false });

/** A failed forwarded request's answer: the error's wire form (toWire); one without a stable code is INTERNAL, its detail stays in this node's log. */
function encodeRpcError(err: unknown): Uint8Array {
  const e = toWire(err) ?? { code: 'INTERNAL', message: 'internal error', retryable: false };
  return rpcErrorPackr.pack([e.code, e.message, e.retryable, e.leaderHint ?? 0]);
}

/** The error a peer answered a forwarded request with (RPC_MALFORMED if its answer does not decode). */
function decodeRpcError(bytes: Uint8Array): RemoteError {
  try {
    const raw = rpcErrorPackr.unpack(bytes) as unknown;
    if (Array.isArray(raw) && raw.length === 4 && typeof raw[0] === 'string' && typeof raw[1] === 'string' && typeof raw[2] === 'boolean' && Number.isSafeInteger(raw[3]) && (raw[3] as number) >= 0) {
      return new RemoteError(raw[0], raw[1], raw[2], raw[3] as number);
    }
  } catch {
    // fall through: a malformed error answer is itself the error
  }
  return new RemoteError('RPC_MALFORMED', 'the peer answered with a malformed error', false);
}
