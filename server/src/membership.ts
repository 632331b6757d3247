import { existsSync, readFileSync } from 'node:fs';
import { SYSTEM_CLOCK, assert, every, hostPortProblem, type Clock, type Timer } from '@flotilla/core';
import { join } from 'node:path';
import { META_RANGE_END, META_RANGE_ID, META_RANGE_START, type RangeDescriptor } from '@flotilla/placement';
import { DataDirError, writeFileDurably, type ShellLogger } from '@flotilla/shards';
import { isClusterId, type ClusterId } from '@flotilla/transport';
import { CLUSTER_FILE, writeClusterIdentity, type ClusterIdentity } from './cluster-identity.js';
import type { PlacementService } from './placement-service.js';
import type { HostKvStore } from './kv/host-store.js';

/**
 * How a node that joined a running cluster finds it again: the members it
 * was told of and where the meta range lives. Written once, when the join
 * succeeds; a restart reads it instead of joining again. Everything else
 * (ranges, later members) is read from the meta range.
 */
export interface Membership {
  readonly nodes: readonly { readonly nodeId: number; readonly address: string }[];
  readonly meta: { readonly epoch: number; readonly replicas: readonly number[] };
}

export const MEMBERSHIP_FILE = 'cluster.json';

/**
 * The membership this node recorded when it joined, or undefined if it never
 * joined. A file that exists but is empty, not JSON or not a membership
 * record is DATA_DIR_DAMAGED (DataDirError naming it): starting without it
 * would mean not knowing the cluster, so the node refuses and says what to do.
 */
export function readMembership(dir: string): Membership | undefined {
  const path = join(dir, MEMBERSHIP_FILE);
  if (!existsSync(path)) return undefined;
  const damaged = (detail: string) =>
    new DataDirError(
      'DATA_DIR_DAMAGED',
      path,
      `${detail}; it records the cluster this node joined (its members and where the meta range lives) and the node cannot start without it. Restore it from a backup (nothing was changed)`,
    );
  const text = readFileSync(path, 'utf8');
  if (text.trim().length === 0) throw damaged(`is empty (${Buffer.byteLength(text)} bytes)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw damaged(`is not valid JSON (${(err as Error).message})`);
  }
  return checkMembership(parsed, (detail) => damaged(`is not a cluster membership record (${detail})`));
}

/** Records the membership durably (durable-file.ts: a crash leaves the old file or the new one, never an empty one). */
export function writeMembership(dir: string, m: Membership): void {
  writeFileDurably({ dir, name: MEMBERSHIP_FILE, data: `${JSON.stringify(m, null, 2)}\n` });
}

/** The meta range as a joined node first knows it; the rest of the table comes from there. */
export function metaDescriptorOf(m: Membership): RangeDescriptor {
  return { rangeId: META_RANGE_ID, start: META_RANGE_START, end: META_RANGE_END, epoch: m.meta.epoch, replicas: m.meta.replicas };
}

/**
 * The membership a node that joined starts with, and its cluster id. It
 * reads cluster.json, or joins through `join` (a member's HTTP URL) when
 * there is none yet: the first start of a joining node, or a node whose
 * first join was cut short after it recorded CLUSTER. A damaged cluster.json
 * is refused (readMembership) unless `join` is given and CLUSTER is
 * recorded: then the node joins again. That is safe because cluster.json
 * holds only where to find the cluster (members' addresses, the meta range's
 * replicas at join time) — the node's replicas and the cluster's records
 * live in LMDB and the meta range, which a join does not touch; recording a
 * node in the meta range again changes nothing but its addresses (one at
 * another address is refused); and the member's answer must carry the
 * recorded cluster id, so it is the same cluster, and the answer replaces
 * the file durably.
 */
export async function joinedMembership(o: {
  dir: string;
  join: string | undefined;
  self: { nodeId: number; address: string; httpAddress: string | null };
  recorded: ClusterIdentity | undefined;
  log: ShellLogger;
}): Promise<{ membership: Membership; clusterId: ClusterId }> {
  let membership: Membership | undefined;
  try {
    membership = readMembership(o.dir);
  } catch (err) {
    if (!(o.join !== undefined && o.recorded !== undefined && (err as { code?: string }).code === 'DATA_DIR_DAMAGED')) throw err;
    o.log.warn({ err, via: o.join, clusterId: o.recorded.clusterId }, 'cluster.json is damaged; joining again through the member given (its cluster id must be the one recorded)');
  }
  if (membership !== undefined) {
    // A joined node always records CLUSTER before cluster.json; without it, the directory predates cluster ids (node.ts records the legacy id).
    assert(o.recorded !== undefined, () => `${join(o.dir, MEMBERSHIP_FILE)} exists without ${join(o.dir, CLUSTER_FILE)}: the caller records the cluster id first`);
    return { membership, clusterId: o.recorded.clusterId };
  }
  if (o.join === undefined) {
    throw new DataDirError(
      'DATA_DIR_DAMAGED',
      join(o.dir, MEMBERSHIP_FILE),
      `is missing although ${CLUSTER_FILE} records that this node joined cluster ${o.recorded?.clusterId}; start it with --join <HTTP URL of any member> to fetch it again (the member's cluster id is checked against the recorded one) (nothing was changed)`,
    );
  }
  const answer = await joinThrough(o.join, o.self);
  if (o.recorded !== undefined && answer.clusterId !== o.recorded.clusterId) {
    throw new DataDirError(
      'DATA_DIR_CLUSTER_MISMATCH',
      join(o.dir, CLUSTER_FILE),
      `records cluster ${o.recorded.clusterId}, but ${o.join} answered for cluster ${answer.clusterId}; refusing to take this node's replicas into another cluster (nothing was changed)`,
    );
  }
  // CLUSTER first: a crash before cluster.json leaves a node that knows it joined and asks for --join again.
  if (o.recorded === undefined) writeClusterIdentity(o.dir, { clusterId: answer.clusterId, origin: 'join' });
  writeMembership(o.dir, answer.membership);
  o.log.info({ via: o.join, members: answer.membership.nodes.length, clusterId: answer.clusterId }, o.recorded === undefined ? 'joined the cluster' : 'joined the cluster again');
  return answer;
}

/** Asks a member (its HTTP address) to record this node in the meta range; answers the membership to start with and the cluster's id. */
export async function joinThrough(url: string, self: { nodeId: number; address: string; httpAddress: string | null }): Promise<{ membership: Membership; clusterId: ClusterId }> {
  const base = url.replace(/\/+$/, '');
  let response: Response;
  try {
    response = await fetch(`${base}/cluster/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(self), signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new Error(`cannot join through ${base}: ${(err as Error).message}`);
  }
  const text = await response.text();
  if (!response.ok) throw new Error(`joining through ${base} failed: ${response.status} ${text}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`the join answer of ${base} is not JSON (${(err as Error).message})`);
  }
  const clusterId = (parsed as { clusterId?: unknown } | null)?.clusterId;
  if (!isClusterId(clusterId)) throw new Error(`the join answer of ${base} carries no cluster id (got ${JSON.stringify(clusterId)}): the member runs an earlier release`);
  return { membership: checkMembership(parsed, (detail) => new Error(`the join answer of ${base} is not a cluster membership record (${detail})`)), clusterId };
}

/** Validates a membership record; `bad(detail)` makes the error thrown for one that is not. */
function checkMembership(raw: unknown, bad: (detail: string) => Error): Membership {
  const positive = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('expected a JSON object');
  const m = raw as Partial<Membership>;
  if (!Array.isArray(m.nodes)) throw bad('"nodes" is not an array');
  for (const n of m.nodes as unknown[]) {
    const node = n as { nodeId?: unknown; address?: unknown } | null;
    if (node === null || typeof node !== 'object' || !positive(node.nodeId) || typeof node.address !== 'string' || hostPortProblem(node.address) !== undefined) {
      throw bad(`node ${JSON.stringify(n)} is not {"nodeId": positive integer, "address": "HOST:PORT"}`);
    }
  }
  const meta = m.meta as { epoch?: unknown; replicas?: unknown } | null | undefined;
  if (meta === null || typeof meta !== 'object' || !positive(meta.epoch)) throw bad('"meta" lacks a positive integer epoch');
  if (!Array.isArray(meta.replicas) || meta.replicas.length === 0 || !meta.replicas.every(positive)) throw bad('"meta.replicas" is not a non-empty list of node ids');
  return { nodes: m.nodes.map((n) => ({ nodeId: n.nodeId, address: n.address })), meta: { epoch: meta.epoch as number, replicas: [...(meta.replicas as number[])] } };
}

/**
 * The other members' transport addresses as this node last read them from
 * the meta range, so that a restart can reach them before it can read the
 * meta range again. Without it a node knows only its --peers (or the members
 * of its join, in cluster.json): a founder that started alone and was
 * joined by others, restarted, knew none of them and refused their hellos
 * (not members) while they could not elect without it — and after a
 * restart of every node no one knew anyone. Only a hint: the meta range
 * stays the record (addresses never change there, and a decommissioned node
 * is left out), so a damaged file is ignored with a warning.
 */
export const PEERS_FILE = 'peers.json';

export interface KnownPeer {
  readonly nodeId: number;
  readonly address: string;
}

/** The peers PEERS_FILE remembers (none if there is no such file, or one that does not parse: it is only a hint). */
export function readKnownPeers(dir: string, log: ShellLogger): KnownPeer[] {
  const path = join(dir, PEERS_FILE);
  if (!existsSync(path)) return [];
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as { peers?: unknown };
    if (!Array.isArray(parsed.peers)) throw new Error('"peers" is not an array');
    return parsed.peers.map((p: unknown) => {
      const peer = p as Partial<KnownPeer> | null;
      if (peer === null || typeof peer !== 'object' || !Number.isSafeInteger(peer.nodeId) || (peer.nodeId as number) < 1 || typeof peer.address !== 'string' || hostPortProblem(peer.address) !== undefined) {
        throw new Error(`${JSON.stringify(p)} is not {"nodeId": positive integer, "address": "HOST:PORT"}`);
      }
      return { nodeId: peer.nodeId as number, address: peer.address };
    });
  } catch (err) {
    log.warn({ err, path }, 'the remembered peers file is damaged; ignored (the meta range has the members, and the node rewrites it once it reads them)');
    return [];
  }
}

/** The file's text for `peers` (sorted, so the same members always give the same text). */
function knownPeersText(peers: readonly KnownPeer[]): string {
  const sorted = [...peers].sort((a, b) => a.nodeId - b.nodeId).map(({ nodeId, address }) => ({ nodeId, address }));
  return `${JSON.stringify({ peers: sorted }, null, 2)}\n`;
}

/**
 * A node's background duty to the meta range, on a timer, one run at a time:
 * record itself (once it succeeds), learn the other members' addresses
 * (a node that joined later must be reachable to answer what it forwards),
 * and record the descriptors of the ranges it leads. A run that fails (no
 * meta leader yet, shutting down) is retried on the next tick and logged at
 * debug: meta converges, nothing waits on it. Cost: one linearizable scan of
 * the meta range per tick keeps that one group from quiescing (a watch on
 * the node records would let it sleep).
 */
/** Consecutive failed duty ticks between warnings. */
const DUTY_FAILURES_WARN_EVERY = 10;

export class MetaDuties {
  private readonly timer: Timer;
  private running: Promise<void> | undefined;
  private stopped = false;
  private selfRecorded = false;
  private failuresInARow = 0;

  constructor(
    private readonly o: {
      store: HostKvStore;
      log: ShellLogger;
      self: { nodeId: number; address: string; httpAddress: string | null };
      intervalMs: number;
      /** Heartbeats to the placement driver, and the driver itself where the meta range is led. */
      placement?: PlacementService;
      /** SYSTEM_CLOCK otherwise. */
      clock?: Clock;
      /** Where PEERS_FILE is kept up to date with the members read (absent: not kept). */
      dir?: string;
    },
  ) {
    this.timer = every(o.clock ?? SYSTEM_CLOCK, o.intervalMs, () => this.run());
    if (o.dir !== undefined && existsSync(join(o.dir, PEERS_FILE))) this.peersWritten = readFileSync(join(o.dir, PEERS_FILE), 'utf8');
  }

  /** The text PEERS_FILE holds; rewritten only when the members read differ (a rare fsync, never one per tick). */
  private peersWritten: string | undefined;

  private rememberPeers(nodes: readonly { nodeId: number; address: string; state: string }[]): void {
    if (this.o.dir === undefined) return;
    const text = knownPeersText(nodes.filter((n) => n.nodeId !== this.o.self.nodeId && n.state !== 'decommissioned'));
    if (text === this.peersWritten) return;
    writeFileDurably({ dir: this.o.dir, name: PEERS_FILE, data: text });
    this.peersWritten = text;
  }

  private run(): void {
    if (this.running !== undefined || this.stopped) return;
    this.running = this.once()
      .then(() => {
        this.failuresInARow = 0;
      })
      .catch((err: unknown) => {
        // One failure is the meta range electing; many in a row is worth an operator's look.
        this.failuresInARow++;
        if (this.failuresInARow % DUTY_FAILURES_WARN_EVERY === 0) this.o.log.warn({ err, failuresInARow: this.failuresInARow }, 'meta range duties keep failing');
        else this.o.log.debug({ err }, 'meta range duties failed; retrying on the next tick');
      })
      .finally(() => (this.running = undefined));
  }

  private async once(): Promise<void> {
    const { store, self } = this.o;
    if (!this.selfRecorded) {
      await store.recordNode({ ...self, state: 'up' });
      this.selfRecorded = true;
      this.o.log.info({ address: self.address }, 'node recorded in the meta range');
    }
    // Each duty on its own: one failing (a meta write timing out) must not starve the heartbeat.
    // One read of the node records serves both duties that need them.
    const nodes = store.metaNodes();
    const results = await Promise.allSettled([
      store.learnPeers(nodes),
      nodes.then((read) => this.rememberPeers(read)),
      store.reportDescriptors().then((written) => {
        // At debug: ranges change (leaders, splits, moves) all the time in a busy cluster, each change a write here.
        if (written > 0) this.o.log.debug({ written }, 'range descriptors recorded in the meta range');
      }),
      this.o.placement?.tick(nodes),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** Stops the timer; a run in flight fails on its own once the Host closes (and is only logged). */
  stop(): void {
    this.stopped = true;
    this.timer.cancel();
  }
}
