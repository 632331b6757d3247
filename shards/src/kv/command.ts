import { Packr } from 'msgpackr';
import { CorruptRecordError } from '../storage/errors.js';

/**
 * A write to a range, as carried in a Raft entry. `ifVersion` makes it
 * conditional: 0 means "the key must not exist", n > 0 means "the key's
 * current version must be n"; absent means unconditional.
 */
export type KvCommand =
  | { readonly op: 'put'; readonly key: Uint8Array; readonly value: Uint8Array; readonly ifVersion?: number }
  | { readonly op: 'delete'; readonly key: Uint8Array; readonly ifVersion?: number };

/** The outcome of applying one command, reported to whoever proposed it. */
export type KvResult =
  | { readonly ok: true; readonly version: number }
  | { readonly ok: false; readonly code: 'VERSION_MISMATCH'; readonly currentVersion: number };

// Wire form: [opcode, key, value|null, ifVersion|-1]. Plain arrays: no field names per entry.
const OP_PUT = 1;
const OP_DELETE = 2;
const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeCommand(c: KvCommand): Uint8Array {
  return packr.pack(c.op === 'put' ? [OP_PUT, c.key, c.value, c.ifVersion ?? -1] : [OP_DELETE, c.key, null, c.ifVersion ?? -1]);
}

export function decodeCommand(index: number, data: Uint8Array): KvCommand {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (err) {
    throw new CorruptRecordError(`entry ${index}: undecodable command (${(err as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length !== 4) throw new CorruptRecordError(`entry ${index}: command is not a 4-tuple`);
  const [op, key, value, ifVersion] = raw as unknown[];
  if (!(key instanceof Uint8Array)) throw new CorruptRecordError(`entry ${index}: command key is not bytes`);
  if (typeof ifVersion !== 'number' || !Number.isSafeInteger(ifVersion) || ifVersion < -1) {
    throw new CorruptRecordError(`entry ${index}: command ifVersion ${String(ifVersion)}`);
  }
  const condition = ifVersion === -1 ? {} : { ifVersion };
  if (op === OP_PUT) {
    if (!(value instanceof Uint8Array)) throw new CorruptRecordError(`entry ${index}: put without a byte value`);
    return { op: 'put', key, value, ...condition };
  }
  if (op === OP_DELETE) return { op: 'delete', key, ...condition };
  throw new CorruptRecordError(`entry ${index}: unknown opcode ${String(op)}`);
}
