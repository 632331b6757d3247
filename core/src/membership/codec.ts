import { InvalidConfChangeError } from '../errors.js';
import type { ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, NodeId } from '../types.js';

// Conf changes are rare and small; JSON keeps the core free of codec dependencies
// and the bytes readable in a log dump.
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

const CHANGE_TYPES: ReadonlySet<string> = new Set<ConfChangeType>(['addNode', 'removeNode', 'addLearner']);
const TRANSITIONS: ReadonlySet<string> = new Set<ConfChangeTransition>(['auto', 'implicit', 'explicit']);

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(
    JSON.stringify({
      c: cc.changes.map((ch) => [ch.type, ch.nodeId]),
      t: cc.transition,
      x: cc.context === undefined ? undefined : Array.from(cc.context),
    }),
  );
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(data));
  } catch (err) {
    throw new InvalidConfChangeError(`undecodable conf change (${data.byteLength} bytes): ${String(err)}`);
  }
  if (typeof raw !== 'object' || raw === null) throw new InvalidConfChangeError('conf change is not an object');
  const { c, t, x } = raw as { c?: unknown; t?: unknown; x?: unknown };
  if (!Array.isArray(c)) throw new InvalidConfChangeError('conf change has no change list');
  if (typeof t !== 'string' || !TRANSITIONS.has(t)) throw new InvalidConfChangeError(`unknown transition ${String(t)}`);
  const changes: ConfChangeSingle[] = c.map((item: unknown) => {
    if (!Array.isArray(item) || item.length !== 2) throw new InvalidConfChangeError('malformed change');
    const [type, id] = item as [unknown, unknown];
    if (typeof type !== 'string' || !CHANGE_TYPES.has(type)) throw new InvalidConfChangeError(`unknown change type ${String(type)}`);
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw new InvalidConfChangeError(`bad node id ${String(id)}`);
    return { type: type as ConfChangeType, nodeId: id as NodeId };
  });
  const cc: ConfChange = { changes, transition: t as ConfChangeTransition };
  if (x !== undefined) {
    // Integers only: Uint8Array.from would silently truncate 1.5 to 1.
    if (!Array.isArray(x) || !x.every((b) => Number.isInteger(b) && b >= 0 && b < 256)) {
      throw new InvalidConfChangeError('malformed context');
    }
    return { ...cc, context: Uint8Array.from(x as number[]) };
  }
  return cc;
}

/**
 * Whether applying `cc` goes through a joint configuration, and if so whether
 * it is left automatically (thesis §4.3; etcd-raft's ConfChangeV2.EnterJoint).
 */
export function enterJoint(cc: ConfChange): { joint: boolean; autoLeave: boolean } {
  if (cc.transition !== 'auto' || cc.changes.length > 1) {
    return { joint: true, autoLeave: cc.transition !== 'explicit' };
  }
  return { joint: false, autoLeave: false };
}
