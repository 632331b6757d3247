/** Expected failures carry a stable `code` and say whether retrying can help. Branch on `code`, never on text. */
export abstract class RaftError extends Error {
  abstract readonly code: string;
  abstract readonly retryable: boolean;
}

/** The requested index precedes the first available entry: it was compacted into a snapshot. */
export class CompactedError extends RaftError {
  readonly code = 'LOG_COMPACTED';
  readonly retryable = false;
  constructor(readonly index: number, readonly firstIndex: number) {
    super(`log index ${index} is compacted (first available index ${firstIndex})`);
    this.name = 'CompactedError';
  }
}

/** The requested index is past the last entry. */
export class UnavailableError extends RaftError {
  readonly code = 'LOG_UNAVAILABLE';
  readonly retryable = false;
  constructor(readonly index: number, readonly lastIndex: number) {
    super(`log index ${index} is unavailable (last index ${lastIndex})`);
    this.name = 'UnavailableError';
  }
}

/** Storage is building a snapshot; the leader retries on a later heartbeat. */
export class SnapshotTemporarilyUnavailableError extends RaftError {
  readonly code = 'SNAPSHOT_TEMPORARILY_UNAVAILABLE';
  readonly retryable = true;
  constructor() {
    super('snapshot is temporarily unavailable');
    this.name = 'SnapshotTemporarilyUnavailableError';
  }
}

/** A snapshot older than the one storage already holds. */
export class SnapshotOutOfDateError extends RaftError {
  readonly code = 'SNAPSHOT_OUT_OF_DATE';
  readonly retryable = false;
  constructor(readonly index: number, readonly currentIndex: number) {
    super(`snapshot at index ${index} is older than the current snapshot at ${currentIndex}`);
    this.name = 'SnapshotOutOfDateError';
  }
}

/** A proposal the group will not accept right now (no leader, transfer in progress, over the uncommitted cap, pending conf change). */
export class ProposalDroppedError extends RaftError {
  readonly code = 'PROPOSAL_DROPPED';
  readonly retryable = true;
  constructor(readonly reason: string) {
    super(`proposal dropped: ${reason}`);
    this.name = 'ProposalDroppedError';
  }
}

/** A message that makes no sense for this replica (unknown sender role, local type from the network). */
export class InvalidMessageError extends RaftError {
  readonly code = 'INVALID_MESSAGE';
  readonly retryable = false;
  constructor(detail: string) {
    super(`invalid message: ${detail}`);
    this.name = 'InvalidMessageError';
  }
}

/** A configuration change that cannot be applied to the current configuration. */
export class InvalidConfChangeError extends RaftError {
  readonly code = 'INVALID_CONF_CHANGE';
  readonly retryable = false;
  constructor(detail: string) {
    super(`invalid configuration change: ${detail}`);
    this.name = 'InvalidConfChangeError';
  }
}

export class StepPeerNotFoundError extends RaftError {
  readonly code = 'PEER_NOT_FOUND';
  readonly retryable = false;
  constructor(readonly peer: number) {
    super(`message from/to unknown peer ${peer}`);
    this.name = 'StepPeerNotFoundError';
  }
}

/** Persisted state that contradicts itself (e.g. a commit index past the last entry): refuse to start on it. */
export class CorruptStateError extends RaftError {
  readonly code = 'CORRUPT_STATE';
  readonly retryable = false;
  constructor(detail: string) {
    super(`corrupt persisted state: ${detail}`);
    this.name = 'CorruptStateError';
  }
}
