import { FlotillaError } from '@flotilla/core';

export type DataDirErrorCode =
  | 'DATA_DIR_FOREIGN'
  | 'DATA_DIR_VERSION'
  | 'DATA_DIR_NODE_MISMATCH'
  | 'DATA_DIR_CORES_MISMATCH'
  | 'DATA_DIR_DAMAGED'
  /** Another process, or another open in this one, holds the directory's lock. */
  | 'DATA_DIR_LOCKED'
  /** The node's recorded cluster id differs from the cluster it is asked to join. */
  | 'DATA_DIR_CLUSTER_MISMATCH';

/**
 * A data directory the node must not start on. Never retryable: an operator
 * has to look. The message names the path, what was found and what was expected.
 */
export class DataDirError extends FlotillaError {
  readonly retryable = false;
  constructor(
    readonly code: DataDirErrorCode,
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

/** The directory is in use: its lock is held. `holderPid` is what the holder recorded (undefined: not yet written). */
export class DataDirLockedError extends DataDirError {
  constructor(
    dir: string,
    lockPath: string,
    readonly holderPid: number | undefined,
  ) {
    const holder =
      holderPid === undefined ? 'another process (its pid is not recorded yet)' : holderPid === process.pid ? `this process (pid ${holderPid}), which opened it already` : `process ${holderPid}`;
    super(
      'DATA_DIR_LOCKED',
      dir,
      `is in use by ${holder}, which holds the lock on ${lockPath}; one process per data directory: stop that process (or close the store it opened) first (nothing was changed)`,
    );
  }
}

/** Stored bytes that do not decode as what they must be: the store is damaged. */
export class CorruptRecordError extends FlotillaError {
  readonly code = 'CORRUPT_RECORD';
  readonly retryable = false;
  constructor(detail: string) {
    super(`corrupt record: ${detail}`);
  }
}
