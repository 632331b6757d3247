/**
 * A data directory the node must not start on. Never retryable: an operator
 * has to look. The message names the path, what was found and what was expected.
 */
export class DataDirError extends Error {
  readonly retryable = false;
  constructor(
    readonly code: 'DATA_DIR_FOREIGN' | 'DATA_DIR_VERSION' | 'DATA_DIR_NODE_MISMATCH' | 'DATA_DIR_CORES_MISMATCH' | 'DATA_DIR_DAMAGED',
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
    this.name = 'DataDirError';
  }
}

/** Stored bytes that do not decode as what they must be: the store is damaged. */
export class CorruptRecordError extends Error {
  readonly code = 'CORRUPT_RECORD';
  readonly retryable = false;
  constructor(detail: string) {
    super(`corrupt record: ${detail}`);
    this.name = 'CorruptRecordError';
  }
}
