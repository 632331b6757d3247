// What the dashboard's tables show, from the node's JSON (no DOM):
//
//   /cluster    this node's own view, answered without any quorum: the
//               members, whether it hears each, their HTTP addresses, and
//               the ranges it holds a replica of with the leader it knows.
//   /placement  the placement driver's view, from wherever the meta range
//               is led (needs it led): each node's state, disk and load,
//               each range's size and load, the operators in flight.
//
// Either may be missing (a node that stopped answering, a meta range with
// no quorum); the tables then show what the other one says.
import { keyText, nodeBaseUrl } from './format.js';

/**
 * @typedef {{ nodeId: number, http: string | null, state: string | null, heard: string | null,
 *   replicaCount: number | null, leaderCount: number | null, usedBytes: number | null, availableBytes: number | null,
 *   writesPerSec: number | null, readsPerSec: number | null, silentMs: number | null }} NodeRow
 * @typedef {{ rangeId: number, start: string | null, end: string | null, replicas: number[], learners: number[],
 *   leader: number, epoch: number | null, sizeBytes: number | null, keyCount: number | null,
 *   writesPerSec: number | null, readsPerSec: number | null }} RangeRow
 */

/** @param {unknown} v */
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
/** @param {unknown} v */
const ids = (v) => (Array.isArray(v) ? v.filter((x) => Number.isSafeInteger(x)) : []);
/** @param {unknown} v @returns {any[]} */
const list = (v) => (Array.isArray(v) ? v.filter((x) => x !== null && typeof x === 'object') : []);
/** @param {unknown} v */
const hexOrNull = (v) => (typeof v === 'string' ? v : null);

/**
 * One row per node either view knows, in node id order.
 * @param {any} cluster /cluster's JSON, or undefined
 * @param {any} placement /placement's JSON, or undefined
 * @returns {NodeRow[]}
 */
export function nodeRows(cluster, placement) {
  /** @type {Map<number, NodeRow>} */
  const rows = new Map();
  const row = (/** @type {number} */ nodeId) => {
    let r = rows.get(nodeId);
    if (r === undefined) {
      r = { nodeId, http: null, state: null, heard: null, replicaCount: null, leaderCount: null, usedBytes: null, availableBytes: null, writesPerSec: null, readsPerSec: null, silentMs: null };
      rows.set(nodeId, r);
    }
    return r;
  };
  for (const n of list(cluster?.nodes)) {
    if (!Number.isSafeInteger(n.nodeId)) continue;
    const r = row(n.nodeId);
    r.http = nodeBaseUrl(n.http);
    r.heard = typeof n.state === 'string' ? n.state : null;
  }
  for (const n of list(placement?.nodes)) {
    if (!Number.isSafeInteger(n.nodeId)) continue;
    const r = row(n.nodeId);
    r.state = typeof n.state === 'string' ? n.state : null;
    r.replicaCount = num(n.replicaCount);
    r.leaderCount = num(n.leaderCount);
    r.silentMs = num(n.silentMs);
    // A node this driver never heard from (silentMs null) has no disk figures, only the zeros it starts with.
    r.usedBytes = r.silentMs === null ? null : num(n.usedBytes);
    r.availableBytes = r.silentMs === null ? null : num(n.availableBytes);
    r.writesPerSec = num(n.writesPerSec);
    r.readsPerSec = num(n.readsPerSec);
  }
  return [...rows.values()].sort((a, b) => a.nodeId - b.nodeId);
}

/**
 * One row per range, in range id order: as the driver last heard of it from
 * its leader (size and load), else as this node's replica knows it.
 * @param {any} cluster
 * @param {any} placement
 * @returns {RangeRow[]}
 */
export function rangeRows(cluster, placement) {
  /** @type {Map<number, RangeRow>} */
  const rows = new Map();
  for (const r of list(cluster?.ranges)) {
    if (!Number.isSafeInteger(r.rangeId)) continue;
    rows.set(r.rangeId, {
      rangeId: r.rangeId,
      start: hexOrNull(r.start),
      end: hexOrNull(r.end),
      replicas: ids(r.replicas),
      learners: ids(r.learners),
      leader: num(r.leader) ?? 0,
      epoch: num(r.epoch),
      sizeBytes: null,
      keyCount: null,
      writesPerSec: null,
      readsPerSec: null,
    });
  }
  for (const r of list(placement?.ranges)) {
    if (!Number.isSafeInteger(r.rangeId)) continue;
    const local = rows.get(r.rangeId);
    // The newer of the two descriptions by epoch (a split or a membership change moves it on); the
    // driver's report carries size and load either way.
    const driverNewer = local === undefined || (num(r.epoch) ?? 0) >= (local.epoch ?? 0);
    rows.set(r.rangeId, {
      rangeId: r.rangeId,
      start: driverNewer ? hexOrNull(r.start) : /** @type {RangeRow} */ (local).start,
      end: driverNewer ? hexOrNull(r.end) : /** @type {RangeRow} */ (local).end,
      replicas: driverNewer ? ids(r.replicas) : /** @type {RangeRow} */ (local).replicas,
      learners: driverNewer ? ids(r.learners) : /** @type {RangeRow} */ (local).learners,
      leader: (driverNewer ? num(r.leader) : local?.leader) ?? 0,
      epoch: driverNewer ? num(r.epoch) : (local?.epoch ?? null),
      sizeBytes: num(r.sizeBytes),
      keyCount: num(r.keyCount),
      writesPerSec: num(r.writesPerSec),
      readsPerSec: num(r.readsPerSec),
    });
  }
  return [...rows.values()].sort((a, b) => a.rangeId - b.rangeId);
}

/**
 * An operator in flight as a phrase: what it does to which nodes.
 * @param {any} op one of /placement's operators
 * @returns {string}
 */
export function describeOperator(op) {
  const n = (/** @type {unknown} */ v) => (Number.isSafeInteger(v) ? String(v) : '?');
  switch (op?.kind) {
    case 'moveReplica':
      return `move replica ${n(op.from)} → ${n(op.to)}`;
    case 'addReplica':
      return `add replica on ${n(op.node)}`;
    case 'removeReplica':
      return `remove replica on ${n(op.node)}`;
    case 'transferLeader':
      return `move lead ${n(op.from)} → ${n(op.to)}`;
    case 'split':
      return `split at ${keyText(hexOrNull(op.key) ?? '', 'start').text}`;
    case 'leaveJoint':
      return 'leave a joint configuration';
    default:
      return typeof op?.kind === 'string' ? op.kind : '?';
  }
}

/**
 * The other nodes to move to when this one stops answering, best first:
 * those this node last heard, then the rest; only those with an HTTP
 * address.
 * @param {NodeRow[]} rows
 * @param {number | null} selfId
 * @returns {{ nodeId: number, url: string }[]}
 */
export function switchCandidates(rows, selfId) {
  const others = rows.filter((r) => r.nodeId !== selfId && r.http !== null && r.state !== 'decommissioned');
  const rank = (/** @type {NodeRow} */ r) => (r.heard === 'up' ? 0 : r.state === 'up' ? 1 : 2);
  return others
    .slice()
    .sort((a, b) => rank(a) - rank(b) || a.nodeId - b.nodeId)
    .map((r) => ({ nodeId: r.nodeId, url: /** @type {string} */ (r.http) }));
}
