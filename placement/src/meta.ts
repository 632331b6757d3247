import { assert, FlotillaError, hostPortProblem } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { compareKeys, type RangeDescriptor } from './range.js';

/*
 * The meta range: the Raft group holding the cluster's metadata (range
 * descriptors, node records, id allocators) as ordinary versioned KV pairs
 * in the reserved system part of the key space. This module fixes that key
 * layout and the records' wire form; it does no I/O.
 *
 * Key space:
 *   [∅, 00 01)          system keys, all owned by the meta range
 *     00 00 'a' <name>  id allocators (a counter)
 *     00 00 'c' <name>  settings (the placement driver's)
 *     00 00 'e' 01 <end>  range end index: the range ending at <end> → [range id, epoch]
 *     00 00 'e' 02        the same for the range running to the end of the key space
 *     00 00 'n' <id>    node records, id 4-byte big-endian
 *     00 00 'r' <id>    range descriptors, id 4-byte big-endian
 *   [00 01, ∞)          user keys
 *
 * Descriptors are keyed by id: one range's record has one key, whatever its
 * bounds do. The end index (CockroachDB's meta2 is keyed the same way) finds
 * the range holding a key k with one bounded read: the first entry past
 * rangeEndKeyAfter(k) names the first range ending after k. It is a hint,
 * never trusted alone: what it names is read by id and used only if it
 * agrees (server/src/kv/meta-client.ts says why that is enough).
 *
 * The key constants are shared Uint8Arrays: never mutate them.
 */

export const META_RANGE_ID = 1;

/** The smallest user key; everything below it is reserved (the empty key, 0x00, and every key starting 0x00 0x00). */
export const USER_KEY_MIN = Uint8Array.of(0x00, 0x01);
export const SYSTEM_PREFIX = Uint8Array.of(0x00, 0x00);
export const META_RANGE_START = new Uint8Array(0);
export const META_RANGE_END = USER_KEY_MIN;

/** Ids below these are handed out statically: the meta range (1) and the pre-split ranges (2..), and the static members' node ids. */
export const FIRST_ALLOCATED_RANGE_ID = 1024;
export const FIRST_ALLOCATED_NODE_ID = 1024;

/** Largest id a key holds: range and node ids are keyed as 4 bytes big-endian, so keys sort by id. */
export const KEYED_ID_MAX = 0xffff_ffff;

const FAMILY_ALLOCATOR = 0x61; // 'a'
const FAMILY_SETTINGS = 0x63; // 'c'
const FAMILY_RANGE_END = 0x65; // 'e'
const FAMILY_NODE = 0x6e; // 'n'
const FAMILY_RANGE = 0x72; // 'r'

export function isSystemKey(key: Uint8Array): boolean {
  return compareKeys(key, USER_KEY_MIN) < 0;
}

export interface KeySpan {
  readonly start: Uint8Array;
  /** Exclusive. */
  readonly end: Uint8Array;
}

/** Scan bounds of every range descriptor key (and nothing else). */
export const RANGE_KEYS: KeySpan = familySpan(FAMILY_RANGE);
/** Scan bounds of every node record key (and nothing else). */
export const NODE_KEYS: KeySpan = familySpan(FAMILY_NODE);
/** Scan bounds of every range end index key (and nothing else). */
export const RANGE_END_KEYS: KeySpan = familySpan(FAMILY_RANGE_END);

/** After the family byte of a range end key: a finite end follows; this tag sorts below the one of the end of the key space. */
const RANGE_END_FINITE = 0x01;
/** The range running to the end of the key space: the tag alone, which sorts after every finite end's key. */
const RANGE_END_INFINITE = 0x02;
/** Bytes a range end key adds to the end it indexes: the system prefix, the family and the tag. */
export const RANGE_END_KEY_OVERHEAD_BYTES = SYSTEM_PREFIX.length + 2;

export const RANGE_ID_ALLOCATOR_KEY = systemKey(FAMILY_ALLOCATOR, Buffer.from('range', 'latin1'));
export const NODE_ID_ALLOCATOR_KEY = systemKey(FAMILY_ALLOCATOR, Buffer.from('node', 'latin1'));
export const PLACEMENT_SETTINGS_KEY = systemKey(FAMILY_SETTINGS, Buffer.from('placement', 'latin1'));

export function rangeKey(rangeId: number): Uint8Array {
  return systemKey(FAMILY_RANGE, keyedId(rangeId, 'range'));
}

export function nodeKey(nodeId: number): Uint8Array {
  return systemKey(FAMILY_NODE, keyedId(nodeId, 'node'));
}

/** The index key of the range ending at `end` (null: the range running to the end of the key space). Keys sort as the ends do, null last. */
export function rangeEndKey(end: Uint8Array | null): Uint8Array {
  if (end === null) return systemKey(FAMILY_RANGE_END, Uint8Array.of(RANGE_END_INFINITE));
  const suffix = new Uint8Array(1 + end.length);
  suffix[0] = RANGE_END_FINITE;
  suffix.set(end, 1);
  return systemKey(FAMILY_RANGE_END, suffix);
}

/**
 * The smallest index key of a range ending after `key` (rangeEndKey of
 * `key` followed by a zero byte, the next key in byte order): a forward
 * scan from it meets first the index entry of the range that holds `key`,
 * if the index is current.
 */
export function rangeEndKeyAfter(key: Uint8Array): Uint8Array {
  const endKey = rangeEndKey(key);
  const after = new Uint8Array(endKey.length + 1);
  after.set(endKey, 0);
  return after;
}

/** The range end an index key names (null: the end of the key space); MetaRecordError if `key` is no range end key. */
export function decodeRangeEndKey(key: Uint8Array): Uint8Array | null {
  const familyAt = SYSTEM_PREFIX.length;
  if (key.length < familyAt + 2 || compareKeys(key.subarray(0, familyAt), SYSTEM_PREFIX) !== 0 || key[familyAt] !== FAMILY_RANGE_END) {
    throw new MetaRecordError(`range end key ${show(key)} is not in the range end family`);
  }
  const tag = key[familyAt + 1];
  if (tag === RANGE_END_INFINITE && key.length === familyAt + 2) return null;
  if (tag === RANGE_END_FINITE && key.length > familyAt + 2) return key.slice(familyAt + 2);
  throw new MetaRecordError(`range end key ${show(key)} has neither a finite end nor the end of the key space`);
}

function systemKey(family: number, suffix: Uint8Array): Uint8Array {
  const key = new Uint8Array(SYSTEM_PREFIX.length + 1 + suffix.length);
  key.set(SYSTEM_PREFIX, 0);
  key[SYSTEM_PREFIX.length] = family;
  key.set(suffix, SYSTEM_PREFIX.length + 1);
  return key;
}

function familySpan(family: number): KeySpan {
  return { start: systemKey(family, new Uint8Array(0)), end: systemKey(family + 1, new Uint8Array(0)) };
}

function keyedId(id: number, what: string): Uint8Array {
  assert(isKeyedId(id), () => `${what} id ${id} is not an integer in [1, ${KEYED_ID_MAX}]`);
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, id);
  return bytes;
}

function isKeyedId(id: unknown): id is number {
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 1 && id <= KEYED_ID_MAX;
}

// The layout's invariants, checked once at load: every family lies below the user keys, and the families are disjoint.
assert(compareKeys(SYSTEM_PREFIX, USER_KEY_MIN) < 0, 'the system prefix sorts below the user keys');
assert(compareKeys(META_RANGE_START, META_RANGE_END) < 0, 'the meta range is not empty');
for (const span of [RANGE_KEYS, NODE_KEYS, RANGE_END_KEYS]) {
  assert(compareKeys(span.start, span.end) < 0, 'a key family span is not empty');
  assert(isSystemKey(span.start) && compareKeys(span.end, USER_KEY_MIN) <= 0, 'a key family lies in the system keys');
}
assert(compareKeys(NODE_KEYS.end, RANGE_KEYS.start) <= 0, 'node keys sort below range keys');
assert(compareKeys(RANGE_END_KEYS.end, NODE_KEYS.start) <= 0, 'range end keys sort below node keys');
for (const key of [RANGE_ID_ALLOCATOR_KEY, NODE_ID_ALLOCATOR_KEY, PLACEMENT_SETTINGS_KEY]) {
  assert(isSystemKey(key) && compareKeys(key, RANGE_END_KEYS.start) < 0, 'allocator and settings keys sort below range end keys');
}
// The end of the key space sorts after every finite end (whose keys start with the lower tag) and inside the family.
assert(compareKeys(rangeEndKey(USER_KEY_MIN), rangeEndKey(null)) < 0 && compareKeys(rangeEndKey(Uint8Array.of(0xff, 0xff)), rangeEndKey(null)) < 0, 'the end of the key space sorts last');
assert(compareKeys(rangeEndKey(null), RANGE_END_KEYS.end) < 0 && compareKeys(RANGE_END_KEYS.start, rangeEndKey(new Uint8Array(0))) < 0, 'range end keys lie in their family');
assert(META_RANGE_ID < FIRST_ALLOCATED_RANGE_ID, 'the meta range id is a static id');

/** A stored meta record that does not decode: corruption or a writer's bug. Not retryable. */
export class MetaRecordError extends FlotillaError {
  readonly code = 'META_RECORD_MALFORMED';
  readonly retryable = false;
  constructor(detail: string) {
    super(`malformed meta record: ${detail}`);
  }
}

/** A cluster member as the meta range records it. */
export interface NodeRecord {
  readonly nodeId: number;
  /** HOST:PORT of its transport (core's address.ts; an IPv6 host in brackets: [::1]:7101). */
  readonly address: string;
  /** HOST:PORT of its HTTP API, null when it serves none. */
  readonly httpAddress: string | null;
  /** Set by the operator: `decommissioning` has its replicas moved off; the node records only its addresses. */
  readonly state: NodeAdminState;
}

export type NodeAdminState = 'up' | 'decommissioning' | 'decommissioned';
const NODE_ADMIN_STATES: readonly string[] = ['up', 'decommissioning', 'decommissioned'] satisfies readonly NodeAdminState[];

/** What an operator sets for the placement driver; kept in the meta range so a new driver (a new meta leader) has it. */
export interface PlacementSettings {
  readonly paused: boolean;
  readonly replicationFactor: number;
}

/** Replicas per range, at most: 7 voters already take four failures. */
export const REPLICATION_FACTOR_MAX = 7;

export function encodePlacementSettings(s: PlacementSettings): Uint8Array {
  assert(Number.isSafeInteger(s.replicationFactor) && s.replicationFactor >= 1 && s.replicationFactor <= REPLICATION_FACTOR_MAX, () => `replication factor ${s.replicationFactor}`);
  return packr.pack([s.paused, s.replicationFactor]);
}

export function decodePlacementSettings(bytes: Uint8Array): PlacementSettings {
  const [paused, replicationFactor] = unpackTuple(bytes, 'placement settings', 2);
  if (typeof paused !== 'boolean') throw new MetaRecordError(`placement settings: paused ${show(paused)} is not a boolean`);
  if (typeof replicationFactor !== 'number' || !Number.isSafeInteger(replicationFactor) || replicationFactor < 1 || replicationFactor > REPLICATION_FACTOR_MAX) {
    throw new MetaRecordError(`placement settings: replication factor ${show(replicationFactor)} is not an integer in [1, ${REPLICATION_FACTOR_MAX}]`);
  }
  return { paused, replicationFactor };
}

const packr = new Packr({ useRecords: false, moreTypes: false });

// Wire forms, plain tuples (no field names per record):
//   range descriptor  [rangeId, start, end|null, epoch, replicas]
//   range end entry   [rangeId, epoch]
//   node record       [nodeId, address, httpAddress|null, state]
//   counter           n
// Each codec checks its record before encoding (a failure is our bug: assert) and after decoding (corruption: MetaRecordError).

export function encodeRangeDescriptor(d: RangeDescriptor): Uint8Array {
  const tuple: unknown[] = [d.rangeId, d.start, d.end, d.epoch, d.replicas];
  const problem = rangeDescriptorProblem(tuple);
  assert(problem === undefined, () => `range descriptor ${d.rangeId}: ${problem}`);
  return packr.pack(tuple);
}

export function decodeRangeDescriptor(bytes: Uint8Array): RangeDescriptor {
  const tuple = unpackTuple(bytes, 'range descriptor', 5);
  const problem = rangeDescriptorProblem(tuple);
  if (problem !== undefined) throw new MetaRecordError(`range descriptor: ${problem}`);
  const [rangeId, start, end, epoch, replicas] = tuple as [number, Uint8Array, Uint8Array | null, number, number[]];
  return { rangeId, start, end, epoch, replicas };
}

/** What is wrong with a range descriptor tuple, or undefined when it is well-formed. */
function rangeDescriptorProblem(tuple: readonly unknown[]): string | undefined {
  const [rangeId, start, end, epoch, replicas] = tuple;
  if (!isKeyedId(rangeId)) return `range id ${show(rangeId)} is not an integer in [1, ${KEYED_ID_MAX}]`;
  if (!(start instanceof Uint8Array)) return `range ${rangeId}: start ${show(start)} is not bytes`;
  if (end !== null && !(end instanceof Uint8Array)) return `range ${rangeId}: end ${show(end)} is neither bytes nor null`;
  if (end !== null && compareKeys(start, end) >= 0) {
    return `range ${rangeId}: start ${hex(start)} does not precede end ${hex(end)}`;
  }
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1) return `range ${rangeId}: epoch ${show(epoch)} is not a positive integer`;
  if (!Array.isArray(replicas)) return `range ${rangeId}: replicas ${show(replicas)} is not an array`;
  const seen = new Set<number>();
  for (const nodeId of replicas as unknown[]) {
    if (!isKeyedId(nodeId)) return `range ${rangeId}: replica node id ${show(nodeId)} is not an integer in [1, ${KEYED_ID_MAX}]`;
    if (seen.has(nodeId)) return `range ${rangeId}: replica node id ${nodeId} appears twice`;
    seen.add(nodeId);
  }
  return undefined;
}

/** The value of a range end key: the range recorded as ending there, and the epoch of its descriptor that said so. */
export interface RangeEndEntry {
  readonly rangeId: number;
  readonly epoch: number;
}

export function encodeRangeEndEntry(e: RangeEndEntry): Uint8Array {
  const tuple: unknown[] = [e.rangeId, e.epoch];
  const problem = rangeEndEntryProblem(tuple);
  assert(problem === undefined, () => `range end entry of range ${e.rangeId}: ${problem}`);
  return packr.pack(tuple);
}

export function decodeRangeEndEntry(bytes: Uint8Array): RangeEndEntry {
  const tuple = unpackTuple(bytes, 'range end entry', 2);
  const problem = rangeEndEntryProblem(tuple);
  if (problem !== undefined) throw new MetaRecordError(`range end entry: ${problem}`);
  const [rangeId, epoch] = tuple as [number, number];
  return { rangeId, epoch };
}

function rangeEndEntryProblem(tuple: readonly unknown[]): string | undefined {
  const [rangeId, epoch] = tuple;
  if (!isKeyedId(rangeId)) return `range id ${show(rangeId)} is not an integer in [1, ${KEYED_ID_MAX}]`;
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1) return `range ${rangeId}: epoch ${show(epoch)} is not a positive integer`;
  return undefined;
}

export function encodeNodeRecord(n: NodeRecord): Uint8Array {
  const tuple: unknown[] = [n.nodeId, n.address, n.httpAddress, n.state];
  const problem = nodeRecordProblem(tuple);
  assert(problem === undefined, () => `node record ${n.nodeId}: ${problem}`);
  return packr.pack(tuple);
}

export function decodeNodeRecord(bytes: Uint8Array): NodeRecord {
  const tuple = unpackTuple(bytes, 'node record', 4);
  const problem = nodeRecordProblem(tuple);
  if (problem !== undefined) throw new MetaRecordError(`node record: ${problem}`);
  const [nodeId, address, httpAddress, state] = tuple as [number, string, string | null, NodeRecord['state']];
  return { nodeId, address, httpAddress, state };
}

function nodeRecordProblem(tuple: readonly unknown[]): string | undefined {
  const [nodeId, address, httpAddress, state] = tuple;
  if (!isKeyedId(nodeId)) return `node id ${show(nodeId)} is not an integer in [1, ${KEYED_ID_MAX}]`;
  const addressProblem = hostPortProblemOf(address);
  if (addressProblem !== undefined) return `node ${nodeId}: address ${addressProblem}`;
  const httpProblem = httpAddress === null ? undefined : hostPortProblemOf(httpAddress);
  if (httpProblem !== undefined) return `node ${nodeId}: http address ${httpProblem} (null or HOST:PORT)`;
  if (typeof state !== 'string' || !NODE_ADMIN_STATES.includes(state)) return `node ${nodeId}: state ${show(state)} is not one of ${NODE_ADMIN_STATES.join(', ')}`;
  return undefined;
}

/** Why `address` is not HOST:PORT (core's address.ts: an IPv6 host in brackets), naming it; undefined if it is. */
function hostPortProblemOf(address: unknown): string | undefined {
  return typeof address === 'string' ? hostPortProblem(address) : `${show(address)} is not text`;
}

export function encodeCounter(n: number): Uint8Array {
  assert(isCounter(n), () => `counter ${n} is not a positive integer`);
  return packr.pack(n);
}

export function decodeCounter(bytes: Uint8Array): number {
  const n = unpack(bytes, 'counter');
  if (!isCounter(n)) throw new MetaRecordError(`counter ${show(n)} is not a positive integer`);
  return n;
}

function isCounter(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 1;
}

function unpackTuple(bytes: Uint8Array, what: string, arity: number): unknown[] {
  const raw = unpack(bytes, what);
  if (!Array.isArray(raw) || raw.length !== arity) throw new MetaRecordError(`${what} is not a ${arity}-tuple`);
  return raw as unknown[];
}

function unpack(bytes: Uint8Array, what: string): unknown {
  try {
    return packr.unpack(bytes) as unknown;
  } catch (err) {
    throw new MetaRecordError(`undecodable ${what} (${(err as Error).message})`);
  }
}

/** How much of a bad value an error message quotes: enough to recognise it, not a record's worth. */
const SHOWN_CHARS_MAX = 64;

/** A bad value for an error message: short, and never the whole of a large one. */
function show(value: unknown): string {
  if (value instanceof Uint8Array) return `0x${hex(value)}`;
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > SHOWN_CHARS_MAX ? `${text.slice(0, SHOWN_CHARS_MAX)}…` : text;
}

function hex(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  return text.length > SHOWN_CHARS_MAX ? `${text.slice(0, SHOWN_CHARS_MAX)}…` : text;
}
