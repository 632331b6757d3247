import { FlotillaError, ProposalDroppedError } from '@flotilla/core';

/**
 * Expected failures of requests that enter through the Host. Each has a
 * stable `code` and says whether retrying can help; they cross the thread
 * boundary as `WireError` and are rebuilt on the Host side (`fromWire`).
 * A leaf: the KV commands, a replica's lifecycle and the Host all fail with
 * these, and each layer may import it without importing the one above.
 * The store's own failures (a data directory, a corrupt record) are
 * storage/errors.ts.
 */

/** The one wire form of an expected failure (see toWire). */
export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  /** NOT_LEADER: the node the replica believes leads the group (0 when unknown). */
  readonly leaderHint?: number;
}

/** A command the store cannot hold; the proposer's fault (a 4xx), never retryable. */
export class InvalidCommandError extends FlotillaError {
  readonly code = 'COMMAND_INVALID';
  readonly retryable = false;
  constructor(readonly reason: string) {
    super(`invalid command: ${reason}`);
  }
}

/** This replica is not the leader of the shard; `leaderHint` is the node it believes leads (0: unknown). */
export class NotLeaderError extends FlotillaError {
  readonly code = 'NOT_LEADER';
  readonly retryable = true;
  constructor(
    readonly shardId: number,
    readonly nodeId: number,
    readonly leaderHint: number,
  ) {
    super(`shard ${shardId} on node ${nodeId} is not the leader (leader hint ${leaderHint === 0 ? 'unknown' : `node ${leaderHint}`})`);
  }
}

export class ShardNotFoundError extends FlotillaError {
  readonly code = 'SHARD_NOT_FOUND';
  readonly retryable = false;
  constructor(
    readonly shardId: number,
    readonly nodeId: number,
  ) {
    super(`shard ${shardId} has no replica on node ${nodeId}`);
  }
}

export class ShardExistsError extends FlotillaError {
  readonly code = 'SHARD_EXISTS';
  readonly retryable = false;
  constructor(
    readonly shardId: number,
    readonly nodeId: number,
  ) {
    super(`shard ${shardId} already has a replica on node ${nodeId}`);
  }
}

/**
 * The shard's replica here is being destroyed (it applied its own removal, or a merge took it in): a
 * replica asked for now would be found present and then lost. Retry once the removal is done.
 */
export class ShardRemovingError extends FlotillaError {
  readonly code = 'SHARD_REMOVING';
  readonly retryable = true;
  constructor(
    readonly shardId: number,
    readonly nodeId: number,
  ) {
    super(`shard ${shardId} on node ${nodeId} is being removed; ask again once it is gone`);
  }
}

/** A key outside the shard's range: the caller routed to the wrong shard (stale routing). */
export class KeyOutOfRangeError extends FlotillaError {
  readonly code = 'KEY_OUT_OF_RANGE';
  readonly retryable = false;
  constructor(message: string) {
    super(message);
  }
}

/**
 * The range is frozen for a merge into its left neighbour: it serves
 * nothing until the merge is done, then its keys belong to that neighbour.
 * Retry after re-routing.
 */
export class RangeMergingError extends FlotillaError {
  readonly code = 'RANGE_MERGING';
  readonly retryable = true;
  constructor(message: string) {
    super(message);
  }
}

/** A change planned against an epoch the range has moved past (a split or another membership change came first). */
export class EpochMismatchError extends FlotillaError {
  readonly code = 'EPOCH_MISMATCH';
  readonly retryable = false;
  constructor(message: string) {
    super(message);
  }
}

/** No answer within the request's deadline; the outcome of a write is unknown. */
export class RequestTimeoutError extends FlotillaError {
  readonly code = 'REQUEST_TIMEOUT';
  readonly retryable = true;
  constructor(detail: string) {
    super(`request timed out: ${detail}`);
  }
}

/**
 * The transport refused the frame carrying a forwarded request (no connection
 * to the peer right now, or its send queue is full): the request never left
 * this node, so it did not run, and a write may be tried again.
 */
export class PeerUnreachableError extends FlotillaError {
  readonly code = 'PEER_UNREACHABLE';
  readonly retryable = true;
  constructor(detail: string) {
    super(`request not sent: ${detail}`);
  }
}

/**
 * A write whose entry was in the leader's log when the leader stopped
 * waiting for it (its replica was removed, or its core closed): the entry
 * may still commit under another leader, so its outcome is unknown, as
 * after REQUEST_TIMEOUT. Never retried blindly.
 */
export class OutcomeUnknownError extends FlotillaError {
  readonly code = 'OUTCOME_UNKNOWN';
  readonly retryable = true;
  constructor(detail: string) {
    super(`outcome unknown: ${detail}`);
  }
}

/** Too many requests are waiting on this node already (Host's PENDING_*_MAX): retry after a moment. */
export class OverloadedError extends FlotillaError {
  readonly code = 'OVERLOADED';
  readonly retryable = true;
  constructor(message: string) {
    super(message);
  }
}

/**
 * The node's disk is full: it takes no writes (and serves no linearizable
 * reads) until space returns, while other replicas of the range go on.
 * Retryable: the range's leadership moves off a node that cannot persist.
 */
export class DiskFullError extends FlotillaError {
  readonly code = 'DISK_FULL';
  readonly retryable = true;
  constructor(message: string) {
    super(message);
  }
}

export class HostClosedError extends FlotillaError {
  readonly code = 'HOST_CLOSED';
  readonly retryable = false;
  constructor(nodeId: number) {
    super(`host of node ${nodeId} is closed`);
  }
}

/** A worker core died; the node stops (its groups recover from disk on restart). */
export class CoreCrashedError extends FlotillaError {
  readonly code = 'CORE_CRASHED';
  readonly retryable = false;
  constructor(detail: string) {
    super(`worker core crashed: ${detail}`);
  }
}

/**
 * An expected failure that another thread or node answered with, under a
 * code this side has no class of its own for: the code, message, retry
 * advice and leader hint are the sender's.
 */
export class RemoteError extends FlotillaError {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    readonly leaderHint = 0,
  ) {
    super(message);
  }
}

/**
 * The one wire form of an expected failure, between a core and the Host and
 * between nodes. Anything that is not a FlotillaError has no stable code: a
 * bug, which the caller logs and does not send.
 */
export function toWire(err: unknown): WireError | undefined {
  if (!(err instanceof FlotillaError)) return undefined;
  const leaderHint = (err as { leaderHint?: unknown }).leaderHint;
  return { code: err.code, message: err.message, retryable: err.retryable, ...(typeof leaderHint === 'number' ? { leaderHint } : {}) };
}

/** Rebuilds a typed error from its wire form; `shardId` and `nodeId` name the request's target. */
export function fromWire(e: WireError, target: { shardId: number; nodeId: number }): FlotillaError {
  switch (e.code) {
    case 'NOT_LEADER':
      return new NotLeaderError(target.shardId, target.nodeId, e.leaderHint ?? 0);
    case 'SHARD_NOT_FOUND':
      return new ShardNotFoundError(target.shardId, target.nodeId);
    case 'SHARD_EXISTS':
      return new ShardExistsError(target.shardId, target.nodeId);
    case 'KEY_OUT_OF_RANGE':
      return new KeyOutOfRangeError(e.message);
    case 'RANGE_MERGING':
      return new RangeMergingError(e.message);
    case 'PROPOSAL_DROPPED':
      return new ProposalDroppedError(e.message.replace(/^proposal dropped: /, ''));
    case 'COMMAND_INVALID':
      return new InvalidCommandError(e.message.replace(/^invalid command: /, ''));
    default:
      return new RemoteError(e.code, e.message, e.retryable, e.leaderHint);
  }
}
