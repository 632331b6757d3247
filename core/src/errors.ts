/**
 * The base of every expected failure in every Flotilla package: a stable
 * `code` and whether retrying can help. Branch on `code`, never on text.
 * It lives in core, the package everything else imports, so one
 * `instanceof FlotillaError` test covers Raft, storage, host, transport and
 * KV errors alike; `name` is the subclass's, for logs.
 */
export abstract class FlotillaError extends Error {
  abstract readonly code: string;
  abstract readonly retryable: boolean;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The requested index precedes the first available entry: it was compacted into a snapshot. */
export class CompactedError extends FlotillaError {
  readonly code = 'LOG_COMPACTED';
  readonly retryable = false;
  constructor(readonly index: number, readonly firstIndex: number) {
    super(`log index ${index} is compacted (first available index ${firstIndex})`);
  }
}

/** The requested index is past the last entry. */
export class UnavailableError extends FlotillaError {
  readonly code = 'LOG_UNAVAILABLE';
  readonly retryable = false;
  constructor(readonly index: number, readonly lastIndex: number) {
    super(`log index ${index} is unavailable (last index ${lastIndex})`);
  }
}

/** Storage is building a snapshot; the leader retries on a later heartbeat. */
export class SnapshotTemporarilyUnavailableError extends FlotillaError {
  readonly code = 'SNAPSHOT_TEMPORARILY_UNAVAILABLE';
  readonly retryable = true;
  constructor() {
    super('snapshot is temporarily unavailable');
  }
}

/** A snapshot older than the one storage already holds. */
export class SnapshotOutOfDateError extends FlotillaError {
  readonly code = 'SNAPSHOT_OUT_OF_DATE';
  readonly retryable = false;
  constructor(readonly index: number, readonly currentIndex: number) {
    super(`snapshot at index ${index} is older than the current snapshot at ${currentIndex}`);
  }
}

/** A proposal the group will not accept right now (no leader, transfer in progress, over the uncommitted cap, pending conf change). */
export class ProposalDroppedError extends FlotillaError {
  readonly code = 'PROPOSAL_DROPPED';
  readonly retryable = true;
  constructor(readonly reason: string) {
    super(`proposal dropped: ${reason}`);
  }
}

/** A message that makes no sense for this replica (unknown sender role, local type from the network). */
export class InvalidMessageError extends FlotillaError {
  readonly code = 'INVALID_MESSAGE';
  readonly retryable = false;
  constructor(detail: string) {
    super(`invalid message: ${detail}`);
  }
}

/** A configuration change that cannot be applied to the current configuration. */
export class InvalidConfChangeError extends FlotillaError {
  readonly code = 'INVALID_CONF_CHANGE';
  readonly retryable = false;
  constructor(detail: string) {
    super(`invalid configuration change: ${detail}`);
  }
}

export class StepPeerNotFoundError extends FlotillaError {
  readonly code = 'PEER_NOT_FOUND';
  readonly retryable = false;
  constructor(readonly peer: number) {
    super(`message from/to unknown peer ${peer}`);
  }
}

/** Persisted state that contradicts itself (e.g. a commit index past the last entry): refuse to start on it. */
export class CorruptStateError extends FlotillaError {
  readonly code = 'CORRUPT_STATE';
  readonly retryable = false;
  constructor(detail: string) {
    super(`corrupt persisted state: ${detail}`);
  }
}
