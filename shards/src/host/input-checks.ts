// Checks on input from outside the core (a client's read, a peer's message)
// that the codecs cannot make: bad input is refused and counted by the
// caller, never left to reach an assertion or LMDB.
import type { Message } from '@flotilla/core';
import { KEY_BYTES_MAX } from '../kv/command.js';
import type { ReadOp } from './core-protocol.js';

/** Why LMDB could not serve this read, or undefined. A scan may start one byte past the longest key (a cursor after it). */
export function invalidReadOp(op: ReadOp): string | undefined {
  if (op.op === 'get') {
    if (op.key.byteLength === 0) return 'key is empty';
    if (op.key.byteLength > KEY_BYTES_MAX) return `key of ${op.key.byteLength} B exceeds ${KEY_BYTES_MAX} B`;
    return undefined;
  }
  if (op.start.byteLength > KEY_BYTES_MAX + 1) return `scan start of ${op.start.byteLength} B exceeds ${KEY_BYTES_MAX + 1} B`;
  if (op.end !== null && op.end.byteLength > KEY_BYTES_MAX) return `scan end of ${op.end.byteLength} B exceeds ${KEY_BYTES_MAX} B`;
  if (!Number.isSafeInteger(op.limit) || op.limit < 1) return `scan limit ${op.limit} is not a positive integer`;
  return undefined;
}

/**
 * What the codec cannot check and Raft would assert on (an assertion is for our
 * own bugs, never for bytes from the network). undefined when acceptable.
 */
export function invalidNetworkMessage(m: Message): string | undefined {
  switch (m.type) {
    // Snapshot data travels on its own stream (snapshotIncoming); a snapshot message in a batch is not ours.
    case 'snapshot':
      return 'snapshot message outside a snapshot stream';
    // We never forward proposals or reads (proposalForwarding is off): a forwarded entry would bypass validateCommand.
    case 'propose':
    case 'readIndex':
      return `${m.type} is never forwarded between nodes`;
    case 'append': {
      if (m.logTerm > m.term) return `previous entry term ${m.logTerm} above message term ${m.term}`;
      for (let i = 0; i < m.entries.length; i++) {
        const e = m.entries[i]!;
        if (e.index !== m.index + 1 + i) return `entry ${i} has index ${e.index}, expected ${m.index + 1 + i}`;
        if (e.term > m.term) return `entry ${e.index} has term ${e.term} above message term ${m.term}`;
        if (e.term < (i === 0 ? m.logTerm : m.entries[i - 1]!.term)) return `entry ${e.index} term ${e.term} goes back`;
      }
      return undefined;
    }
    default:
      return undefined;
  }
}
