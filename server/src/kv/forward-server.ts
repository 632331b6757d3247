import { decodeRangeOp, encodeRangeOpResult, type RangeOp, type RangeOpResult } from './range-ops.js';

export interface ForwardServerOptions {
  /** Runs an op on this node's replica (runLocally, with the placement handler of the moment). */
  readonly runHere: (op: RangeOp) => Promise<RangeOpResult>;
  /** Whether this node knows `nodeId`'s transport address (Host.hasPeer). */
  readonly knowsPeer: (nodeId: number) => boolean;
  /** Learns `nodeId`'s address from its record in the meta range (HostKvStore.learnPeer). */
  readonly learnPeer: (nodeId: number) => Promise<void>;
}

/**
 * Serves the range ops other nodes forward here (the Host's request
 * handler; Router.runOn is the sending side): decodes each, runs it on the
 * local replica, and encodes the answer. A failure goes back as its error's
 * code (the Host's forwarding carries it): NOT_LEADER with the replica's
 * hint if leadership moved, which the sender follows; RANGE_OP_MALFORMED
 * for a request that does not decode.
 */
export class ForwardServer {
  constructor(private readonly o: ForwardServerOptions) {}

  /** The answer to one request `from` a peer. */
  async answer(from: number, payload: Uint8Array): Promise<Uint8Array> {
    const result = encodeRangeOpResult(await this.o.runHere(decodeRangeOp(payload)));
    // A node that joined since this one last read the members: learn its address, or the answer cannot reach it.
    if (!this.o.knowsPeer(from)) await this.o.learnPeer(from).catch(() => undefined);
    return result;
  }
}
