import { FlotillaError } from '@flotilla/core';

export type SnapshotStreamErrorCode =
  /** The other side abandoned the stream (abort frame) or the local caller aborted it. */
  | 'SNAPSHOT_ABORTED'
  /** The stream's connection broke, failed to connect, or misbehaved before the stream finished. */
  | 'SNAPSHOT_CONNECTION_LOST'
  /** openSnapshot() to a peer with no known address. */
  | 'SNAPSHOT_PEER_UNKNOWN'
  /** The transport was closed while the stream was open. */
  | 'TRANSPORT_CLOSED';

const RETRYABLE: Record<SnapshotStreamErrorCode, boolean> = {
  SNAPSHOT_ABORTED: false,
  SNAPSHOT_CONNECTION_LOST: true,
  SNAPSHOT_PEER_UNKNOWN: false,
  TRANSPORT_CLOSED: false,
};

/** Why a snapshot stream ended before snapshot-done. Retryable means: open a new stream later. */
export class SnapshotStreamError extends FlotillaError {
  readonly retryable: boolean;
  constructor(
    readonly code: SnapshotStreamErrorCode,
    message: string,
  ) {
    super(message);
    this.retryable = RETRYABLE[code];
  }
}
