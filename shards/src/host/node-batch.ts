import { assert, type GroupId } from '@flotilla/core';
import { BATCH_BYTES_MAX } from '@flotilla/transport';
import { Packr } from 'msgpackr';
import { BatchDecodeError } from './message-codec.js';
import type { LeaseSegment } from './node-leases.js';

/**
 * The wire form of one frame between two nodes. A frame's payload is a
 * sequence of *segments* (concatenated msgpack values, one per worker core
 * that had traffic for that peer in the loop turn): the sending Host joins
 * its cores' segments without decoding them, and the receiving Host decodes
 * only this outer layer to route each part to the core that owns the shard.
 * Raft message bodies stay opaque bytes until the owning core decodes them.
 *
 * Heartbeats and their responses do not travel as Raft messages: every
 * group's heartbeat between two nodes is a tuple in one flat number list,
 * the node-level heartbeat (CockroachDB's coalesced heartbeats), expanded into
 * per-group messages on receipt. From and to are the two nodes (a replica's
 * id is its node's id).
 *
 * An empty payload is a liveness ping: it says only "this node is up".
 */

export const SEGMENT_FORMAT = 1;

/**
 * Largest segment a core or the RPC outbox hands the Host's flush. The Host
 * joins segments into frames of at most BATCH_BYTES_MAX without splitting
 * one, so a segment must fit a frame with room to spare; a quarter of a frame
 * keeps frames well filled while no segment ever needs a frame of its own.
 */
export const SEGMENT_BYTES_MAX = 4 * 1024 * 1024;
assert(SEGMENT_BYTES_MAX * 2 <= BATCH_BYTES_MAX, 'a frame must hold at least two full segments');
/** Overhead of one request or response in an RPC segment over its payload: id, status, bytes header. */
const RPC_ITEM_OVERHEAD_BYTES = 24;

/** Heartbeat tuple: shard, term, commit, round, quiesce (0 or 1). */
export const HEARTBEAT_TUPLE_LENGTH = 5;
/** Heartbeat response tuple: shard, term, round. */
export const HEARTBEAT_RESPONSE_TUPLE_LENGTH = 3;

export interface Segment {
  /** Flat heartbeat tuples (HEARTBEAT_TUPLE_LENGTH numbers each). */
  readonly heartbeats: number[];
  /** Flat heartbeat response tuples (HEARTBEAT_RESPONSE_TUPLE_LENGTH numbers each). */
  readonly heartbeatResponses: number[];
  /** Flat pairs: shard id, then that shard's messages encoded with `encodeBatch`. */
  readonly sections: (number | Uint8Array)[];
  /** Shards whose replica on the receiver should stop quiescing (a follower woke and wants its leader). */
  readonly wakes: number[];
  /**
   * Flat pairs (shard, term): shards whose replica on the sender does not
   * lead (term 0: it has none), answering a follower's wake. A follower that
   * takes the sender for its leader forgets it (node leases: its promise to
   * the sender's node would hold the group leaderless).
   */
  readonly notLeading: number[];
}

function emptySegment(): Segment {
  return { heartbeats: [], heartbeatResponses: [], sections: [], wakes: [], notLeading: [] };
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeSegment(s: Segment): Uint8Array {
  return packr.pack([SEGMENT_FORMAT, s.heartbeats, s.heartbeatResponses, s.sections, s.wakes, s.notLeading]);
}

/**
 * Requests between Hosts (not Raft traffic): a KV request forwarded to the
 * node that leads its range, and the answers. They ride in the same frames
 * as Raft traffic, as their own segment kind, so they are coalesced the same way.
 */
export const RPC_SEGMENT_FORMAT = 2;

export interface RpcSegment {
  /** Flat pairs: request id, payload. */
  readonly requests: (number | Uint8Array)[];
  /** Flat triples: request id, 1 if it succeeded else 0, payload (the answer, or an encoded error). */
  readonly responses: (number | Uint8Array)[];
}

export function encodeRpcSegment(s: RpcSegment): Uint8Array {
  return packr.pack([RPC_SEGMENT_FORMAT, s.requests, s.responses]);
}

/**
 * Encodes an RPC outbox as segments of at most SEGMENT_BYTES_MAX each (one
 * larger item goes alone: forwarded payloads are bounded by the KV limits,
 * well under a frame), each with the ids of the requests it carries.
 */
export function encodeRpcSegments(s: RpcSegment): { segment: Uint8Array; requestIds: number[] }[] {
  const out: { segment: Uint8Array; requestIds: number[] }[] = [];
  let current: { requests: (number | Uint8Array)[]; responses: (number | Uint8Array)[] } = { requests: [], responses: [] };
  let requestIds: number[] = [];
  let bytes = 0;
  const add = (payload: Uint8Array, put: (c: typeof current) => void): void => {
    const itemBytes = payload.byteLength + RPC_ITEM_OVERHEAD_BYTES;
    if (bytes > 0 && bytes + itemBytes > SEGMENT_BYTES_MAX) {
      out.push({ segment: encodeRpcSegment(current), requestIds });
      current = { requests: [], responses: [] };
      requestIds = [];
      bytes = 0;
    }
    put(current);
    bytes += itemBytes;
  };
  for (let i = 0; i < s.requests.length; i += 2) {
    add(s.requests[i + 1] as Uint8Array, (c) => c.requests.push(s.requests[i]!, s.requests[i + 1]!));
    requestIds.push(s.requests[i] as number);
  }
  for (let i = 0; i < s.responses.length; i += 3) add(s.responses[i + 2] as Uint8Array, (c) => c.responses.push(s.responses[i]!, s.responses[i + 1]!, s.responses[i + 2]!));
  if (bytes > 0) out.push({ segment: encodeRpcSegment(current), requestIds });
  return out;
}

/**
 * Joins segments into as few frames as BATCH_BYTES_MAX allows (a segment is
 * never split: cores and the RPC outbox build them at most SEGMENT_BYTES_MAX,
 * and the Host's queueOutbound refuses anything larger than a frame).
 */
export function joinSegments(segments: readonly Uint8Array[]): JoinedFrame[] {
  if (segments.length === 1) return [{ frame: segments[0]!, parts: segments }];
  const frames: JoinedFrame[] = [];
  let group: Uint8Array[] = [];
  let bytes = 0;
  for (const s of segments) {
    if (group.length > 0 && bytes + s.byteLength > BATCH_BYTES_MAX) {
      frames.push({ frame: group.length === 1 ? group[0]! : Buffer.concat(group), parts: group });
      group = [];
      bytes = 0;
    }
    group.push(s);
    bytes += s.byteLength;
  }
  if (group.length > 0) frames.push({ frame: group.length === 1 ? group[0]! : Buffer.concat(group), parts: group });
  return frames;
}

/** One frame joinSegments made, and the segments in it (a refused frame's requests were never sent). */
export interface JoinedFrame {
  readonly frame: Uint8Array;
  readonly parts: readonly Uint8Array[];
}

/** A node lease exchange (node-leases.ts): one per frame at most, renewing leases both ways. */
export const LEASE_SEGMENT_FORMAT = 3;

export function encodeLeaseSegment(l: LeaseSegment): Uint8Array {
  return packr.pack([LEASE_SEGMENT_FORMAT, l.inc, l.seq, l.ackInc, l.ackSeq, l.promised ? 1 : 0, l.monoMs, l.wallMs]);
}

export interface DecodedFrame {
  readonly segments: Segment[];
  readonly rpcs: RpcSegment[];
  readonly leases: LeaseSegment[];
}

/**
 * Decodes a frame payload into its segments, validating the outer layer
 * completely (so whatever reaches a core is well-formed at this level).
 * Throws BatchDecodeError on anything malformed; the caller drops the whole
 * frame and counts it. Shard messages inside sections are validated by the
 * core that decodes them.
 */
export function decodeFrame(bytes: Uint8Array): DecodedFrame {
  const frame: DecodedFrame = { segments: [], rpcs: [], leases: [] };
  if (bytes.byteLength === 0) return frame;
  let values: unknown[];
  try {
    values = packr.unpackMultiple(bytes) as unknown[];
  } catch (err) {
    throw new BatchDecodeError(`undecodable frame (${(err as Error).message})`);
  }
  values.forEach((v, i) => {
    if (Array.isArray(v) && v[0] === RPC_SEGMENT_FORMAT) frame.rpcs.push(decodeRpcSegment(v, i));
    else if (Array.isArray(v) && v[0] === LEASE_SEGMENT_FORMAT) frame.leases.push(decodeLeaseSegment(v, i));
    else frame.segments.push(decodeSegment(v, i));
  });
  return frame;
}

function decodeRpcSegment(raw: unknown[], position: number): RpcSegment {
  const fail = (what: string): never => {
    throw new BatchDecodeError(`rpc segment ${position}: ${what}`);
  };
  if (raw.length !== 3) return fail('not a 3-tuple');
  const [, requests, responses] = raw;
  if (!Array.isArray(requests) || requests.length % 2 !== 0) return fail('requests are not a list of pairs');
  for (let i = 0; i < requests.length; i += 2) {
    if (!isId(requests[i])) fail(`request ${i / 2} id ${String(requests[i])}`);
    if (!(requests[i + 1] instanceof Uint8Array)) fail(`request ${i / 2} payload is not bytes`);
  }
  if (!Array.isArray(responses) || responses.length % 3 !== 0) return fail('responses are not a list of triples');
  for (let i = 0; i < responses.length; i += 3) {
    if (!isId(responses[i])) fail(`response ${i / 3} id ${String(responses[i])}`);
    if (responses[i + 1] !== 0 && responses[i + 1] !== 1) fail(`response ${i / 3} status ${String(responses[i + 1])}`);
    if (!(responses[i + 2] instanceof Uint8Array)) fail(`response ${i / 3} payload is not bytes`);
  }
  return { requests: requests as (number | Uint8Array)[], responses: responses as (number | Uint8Array)[] };
}

function decodeLeaseSegment(raw: unknown[], position: number): LeaseSegment {
  const fail = (what: string): never => {
    throw new BatchDecodeError(`lease segment ${position}: ${what}`);
  };
  if (raw.length !== 8) return fail('not an 8-tuple');
  const [, inc, seq, ackInc, ackSeq, promised, monoMs, wallMs] = raw;
  const count = (v: unknown, name: string): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(`${name} ${String(v)}`));
  const ms = (v: unknown, name: string): number => (typeof v === 'number' && Number.isFinite(v) ? v : fail(`${name} ${String(v)}`));
  if (!isId(inc)) fail(`incarnation ${String(inc)}`);
  if (!isId(seq)) fail(`seq ${String(seq)}`);
  if (promised !== 0 && promised !== 1) fail(`promised flag ${String(promised)}`);
  return { inc: inc as number, seq: seq as number, ackInc: count(ackInc, 'acknowledged incarnation'), ackSeq: count(ackSeq, 'acknowledged seq'), promised: promised === 1, monoMs: ms(monoMs, 'monotonic ms'), wallMs: ms(wallMs, 'wall ms') };
}

const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

function decodeSegment(raw: unknown, position: number): Segment {
  const fail = (what: string): never => {
    throw new BatchDecodeError(`segment ${position}: ${what}`);
  };
  if (!Array.isArray(raw) || raw.length !== 6) return fail('not a 6-tuple');
  if (raw[0] !== SEGMENT_FORMAT) return fail(`format ${String(raw[0])}; expected ${SEGMENT_FORMAT}`);
  const heartbeats = counts(raw[1], 'heartbeats', fail);
  if (heartbeats.length % HEARTBEAT_TUPLE_LENGTH !== 0) fail(`heartbeats hold ${heartbeats.length} numbers, not a multiple of ${HEARTBEAT_TUPLE_LENGTH}`);
  for (let i = 0; i < heartbeats.length; i += HEARTBEAT_TUPLE_LENGTH) {
    if (heartbeats[i] === 0) fail(`heartbeat ${i / HEARTBEAT_TUPLE_LENGTH} has shard 0`);
    if (heartbeats[i + 4]! > 1) fail(`heartbeat ${i / HEARTBEAT_TUPLE_LENGTH} quiesce flag ${heartbeats[i + 4]}`);
  }
  const heartbeatResponses = counts(raw[2], 'heartbeat responses', fail);
  if (heartbeatResponses.length % HEARTBEAT_RESPONSE_TUPLE_LENGTH !== 0) {
    fail(`heartbeat responses hold ${heartbeatResponses.length} numbers, not a multiple of ${HEARTBEAT_RESPONSE_TUPLE_LENGTH}`);
  }
  for (let i = 0; i < heartbeatResponses.length; i += HEARTBEAT_RESPONSE_TUPLE_LENGTH) {
    if (heartbeatResponses[i] === 0) fail(`heartbeat response ${i / HEARTBEAT_RESPONSE_TUPLE_LENGTH} has shard 0`);
  }
  const sections = raw[3];
  if (!Array.isArray(sections) || sections.length % 2 !== 0) return fail('sections are not a list of pairs');
  for (let i = 0; i < sections.length; i += 2) {
    const shard = sections[i];
    if (typeof shard !== 'number' || !Number.isSafeInteger(shard) || shard <= 0) fail(`section ${i / 2} shard ${String(shard)}`);
    if (!(sections[i + 1] instanceof Uint8Array)) fail(`section ${i / 2} body is not bytes`);
  }
  const wakes = counts(raw[4], 'wakes', fail);
  if (wakes.includes(0)) fail('wake for shard 0');
  const notLeading = counts(raw[5], 'not-leading pairs', fail);
  if (notLeading.length % 2 !== 0) fail(`not-leading pairs hold ${notLeading.length} numbers, not a multiple of 2`);
  for (let i = 0; i < notLeading.length; i += 2) if (notLeading[i] === 0) fail('not-leading pair for shard 0');
  return { heartbeats, heartbeatResponses, sections: sections as (number | Uint8Array)[], wakes, notLeading };
}

function counts(v: unknown, name: string, fail: (what: string) => never): number[] {
  if (!Array.isArray(v)) return fail(`${name} are not a list`);
  for (const n of v) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) fail(`${name} hold ${String(n)}, not a non-negative integer`);
  }
  return v as number[];
}

/** Splits a segment's parts by the core that owns each shard. */
export function splitSegment(s: Segment, coreOf: (shard: GroupId) => number, coreCount: number): (Segment | undefined)[] {
  if (coreCount === 1) return [s];
  const parts: (Segment | undefined)[] = new Array(coreCount).fill(undefined);
  const part = (shard: number): Segment => (parts[coreOf(shard as GroupId)] ??= emptySegment());
  for (let i = 0; i < s.heartbeats.length; i += HEARTBEAT_TUPLE_LENGTH) {
    part(s.heartbeats[i]!).heartbeats.push(...s.heartbeats.slice(i, i + HEARTBEAT_TUPLE_LENGTH));
  }
  for (let i = 0; i < s.heartbeatResponses.length; i += HEARTBEAT_RESPONSE_TUPLE_LENGTH) {
    part(s.heartbeatResponses[i]!).heartbeatResponses.push(...s.heartbeatResponses.slice(i, i + HEARTBEAT_RESPONSE_TUPLE_LENGTH));
  }
  for (let i = 0; i < s.sections.length; i += 2) part(s.sections[i] as number).sections.push(s.sections[i]!, s.sections[i + 1]!);
  for (const shard of s.wakes) part(shard).wakes.push(shard);
  for (let i = 0; i < s.notLeading.length; i += 2) part(s.notLeading[i]!).notLeading.push(s.notLeading[i]!, s.notLeading[i + 1]!);
  return parts;
}
