// An in-process cluster of Hosts over the deterministic MemoryNetwork, with
// inline cores and a manual tick: the test owns time and delivery.
import { SeededRng, groupId, type GroupId, type Message } from '@flotilla/core';
import type { Transport } from '@flotilla/transport';
import { MemoryNetwork } from '@flotilla/transport/testing';
import { Packr } from 'msgpackr';
import { pino } from 'pino';
import type { KvCommand, KvResult } from '../../src/kv/command.js';
import { Host } from '../../src/host/host.js';
import { decodeBatch, encodeBatch } from '../../src/host/message-codec.js';
import { HEARTBEAT_RESPONSE_TUPLE_LENGTH, HEARTBEAT_TUPLE_LENGTH, SEGMENT_FORMAT } from '../../src/host/node-batch.js';
import type { HostOptions } from '../../src/host/options.js';
import type { ShardStatus } from '../../src/host/core-protocol.js';
import type { ShellLogger } from '../../src/shell-logger.js';
import { tempDir } from './fixtures.js';

/** How long settle() waits for the cluster to go quiet: LMDB syncs take milliseconds each, a settle needs a few dozen. */
const SETTLE_DURATION_MS_MAX = 30_000;

export const silentLogger = (): ShellLogger => pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;

/** Ticks a request may take before the harness gives up: above the Host's request timeout, which always answers. */
const REQUEST_TICKS_MAX = 200;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface HostClusterOptions {
  readonly nodeCount: number;
  readonly coreCount: number;
  readonly seed: number;
  readonly host?: Partial<HostOptions>;
  /** Options of one node's Host, over `host` (e.g. a clock of its own). */
  readonly hostFor?: (nodeId: number) => Partial<HostOptions>;
  /** Wraps each node's network endpoint (tests that watch what a Host sends). */
  readonly transportFor?: (nodeId: number, endpoint: Transport) => Transport;
  /** A node's data directory (default: a fresh temporary one). */
  readonly dirFor?: (nodeId: number) => string | undefined;
}

export class HostCluster {
  readonly network: MemoryNetwork;
  readonly hosts = new Map<number, Host>();
  readonly dirs = new Map<number, string>();
  /** What stopped a host (a core's assertion, a storage error): the next settle fails with it at once. */
  readonly fatal: string[] = [];
  private constructor(
    readonly options: HostClusterOptions,
  ) {
    this.network = new MemoryNetwork({ rng: new SeededRng(options.seed), verify: true });
  }

  static async start(options: HostClusterOptions): Promise<HostCluster> {
    const c = new HostCluster(options);
    for (let id = 1; id <= options.nodeCount; id++) c.dirs.set(id, options.dirFor?.(id) ?? tempDir());
    for (let id = 1; id <= options.nodeCount; id++) await c.startNode(id);
    return c;
  }

  get nodeIds(): number[] {
    return [...this.dirs.keys()];
  }

  async startNode(id: number): Promise<Host> {
    let started: Host | undefined;
    const host = await Host.start({
      nodeId: id,
      dir: this.dirs.get(id)!,
      transport: this.options.transportFor?.(id, this.network.endpoint(id)) ?? this.network.endpoint(id),
      coreCount: this.options.coreCount,
      coreMode: 'inline',
      ticker: { kind: 'manual' },
      seed: this.options.seed * 31 + id,
      logger: silentLogger(),
      onFatal: (err) => {
        this.fatal.push(`node ${id}: ${err.message}`);
        void started?.close();
      },
      ...this.options.host,
      ...this.options.hostFor?.(id),
    });
    started = host;
    for (const peer of this.nodeIds) if (peer !== id) host.setPeer(peer, `memory:${peer}`);
    this.hosts.set(id, host);
    return host;
  }

  async stopNode(id: number): Promise<void> {
    const host = this.hosts.get(id)!;
    this.hosts.delete(id);
    await host.close();
  }

  host(id: number): Host {
    const h = this.hosts.get(id);
    if (h === undefined) throw new Error(`node ${id} is not running`);
    return h;
  }

  /** Delivers and waits until no host, core or link has anything left to do now. */
  async settle(): Promise<void> {
    let quietRounds = 0;
    const deadlineMs = performance.now() + SETTLE_DURATION_MS_MAX;
    while (performance.now() < deadlineMs) {
      if (this.fatal.length > 0) throw new Error(`a host stopped on a fatal error: ${this.fatal.join('; ')}`);
      await nextTurn();
      const delivered = this.network.deliver();
      const busy = [...this.hosts.values()].some((h) => h.isBusy);
      quietRounds = delivered === 0 && !busy ? quietRounds + 1 : 0;
      // Two quiet turns: LMDB completions and queued microtasks have surfaced.
      if (quietRounds >= 2) return;
      // A core waiting on an LMDB sync: give the I/O time instead of spinning.
      if (busy && delivered === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    throw new Error(`cluster did not settle within ${SETTLE_DURATION_MS_MAX} ms`);
  }

  async tick(count = 1): Promise<void> {
    for (let i = 0; i < count; i++) {
      this.network.advance(1);
      for (const h of this.hosts.values()) h.tick();
      await this.settle();
    }
  }

  /** Ticks until `done` holds, at most `ticksMax` ticks; throws naming `what` otherwise. */
  async tickUntil(what: string, done: () => Promise<boolean> | boolean, ticksMax: number): Promise<number> {
    for (let t = 0; t <= ticksMax; t++) {
      if (await done()) return t;
      await this.tick();
    }
    throw new Error(`${what}: not reached within ${ticksMax} ticks`);
  }

  async createShards(shardIds: readonly number[], options: { voters?: number[] } = {}): Promise<void> {
    const voters = options.voters ?? this.nodeIds;
    await Promise.all(
      voters.flatMap((node) => shardIds.map((shardId) => this.host(node).createShard({ shardId: groupId(shardId), voters, bounds: shardBounds(shardId) }))),
    );
  }

  async statuses(): Promise<Map<number, ShardStatus[]>> {
    const out = new Map<number, ShardStatus[]>();
    for (const [id, h] of this.hosts) out.set(id, await h.shards());
    return out;
  }

  /** Leader per shard when every running replica agrees on it and it is one of them; undefined otherwise. */
  async agreedLeaders(shardIds: readonly number[]): Promise<Map<number, number> | undefined> {
    const statuses = await this.statuses();
    const leaders = new Map<number, number>();
    for (const shardId of shardIds) {
      let leader: number | undefined;
      for (const [node, list] of statuses) {
        const s = list.find((x) => x.shardId === shardId);
        if (s === undefined) continue;
        if (s.role === 'leader' && s.leader !== node) return undefined;
        if (leader === undefined) leader = s.leader;
        if (s.leader !== leader || leader === 0) return undefined;
      }
      if (leader === undefined || !this.hosts.has(leader)) return undefined;
      leaders.set(shardId, leader);
    }
    return leaders;
  }

  /** Proposes through whichever node leads the shard, following hints; ticks between tries. */
  async write(shardId: number, command: KvCommand, triesMax = 50): Promise<KvResult> {
    let target = this.nodeIds.find((id) => this.hosts.has(id))!;
    for (let attempt = 0; attempt < triesMax; attempt++) {
      const host = this.hosts.get(target);
      if (host !== undefined) {
        const outcome = host.propose(groupId(shardId) as GroupId, command).then(
          (value) => ({ ok: true as const, value }),
          (err: unknown) => ({ ok: false as const, err }),
        );
        let o: Awaited<typeof outcome> | undefined;
        void outcome.then((x) => (o = x));
        await this.settle();
        // A stale leader (e.g. on the minority side) answers only when its request times out: keep time moving.
        for (let t = 0; o === undefined && t < REQUEST_TICKS_MAX; t++) await this.tick();
        if (o === undefined) throw new Error(`write to shard ${shardId} on node ${target} got no answer within ${REQUEST_TICKS_MAX} ticks`);
        if (o.ok) return o.value;
        {
          const err = o.err;
          const e = err as { code?: string; leaderHint?: number };
          // A node without the shard, or without the lead, sends us on; anything else is the test's answer.
          if (e.code !== 'NOT_LEADER' && e.code !== 'PROPOSAL_DROPPED' && e.code !== 'SHARD_NOT_FOUND' && e.code !== 'DISK_FULL') throw err;
          if (e.code === 'NOT_LEADER' && e.leaderHint !== undefined && e.leaderHint !== 0 && this.hosts.has(e.leaderHint)) {
            target = e.leaderHint;
            continue;
          }
        }
      }
      const live = this.nodeIds.filter((id) => this.hosts.has(id));
      target = live[(live.indexOf(target) + 1) % live.length]!;
      await this.tick();
    }
    throw new Error(`write to shard ${shardId} failed after ${triesMax} tries`);
  }

  async close(): Promise<void> {
    for (const h of this.hosts.values()) await h.close();
    this.hosts.clear();
  }
}

/**
 * `endpoint` with its sends going through `send` (which may pass them on, count or drop them); the rest as is.
 * A send that returns nothing counts as accepted (a batch `send` drops is lost on the wire, unseen by the sender).
 */
export function withSend(endpoint: Transport, send: (to: number, batch: Uint8Array) => boolean | undefined | void): Transport {
  return {
    nodeId: endpoint.nodeId,
    start: (handlers) => endpoint.start(handlers),
    send: (to, batch) => send(to, batch) ?? true,
    openSnapshot: (to, header) => endpoint.openSnapshot(to, header),
    setPeer: (id, address) => endpoint.setPeer(id, address),
    removePeer: (id) => endpoint.removePeer(id),
    stats: () => endpoint.stats(),
    close: () => endpoint.close(),
  };
}

/** Ranges on one node are disjoint: shard n owns the keys "s<n>/…" (zero-padded), see shardKey. */
export function shardBounds(shardId: number): { start: Uint8Array; end: Uint8Array } {
  const prefix = `s${String(shardId).padStart(6, '0')}`;
  return { start: key(`${prefix}/`), end: key(`${prefix}0`) };
}

export const shardKey = (shardId: number, name: string): Uint8Array => key(`s${String(shardId).padStart(6, '0')}/${name}`);

export const key = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

const framePackr = new Packr({ useRecords: false, moreTypes: false });

/**
 * A frame (node-batch.ts) with all of one shard's Raft traffic taken out —
 * its heartbeats, responses, wakes, and its messages unless `rewrite`
 * returns one to send instead — and the rest as it was, in order: cuts one
 * range off a node while its other ranges talk.
 */
export function withoutShard(frame: Uint8Array, shardId: number, rewrite: (m: Message) => Message | undefined = () => undefined): Uint8Array {
  if (frame.byteLength === 0) return frame;
  const tuples = (flat: number[], size: number): number[] => flat.filter((_, i) => flat[i - (i % size)] !== shardId);
  const pairs = (flat: unknown[]): unknown[] => flat.filter((_, i) => flat[i - (i % 2)] !== shardId);
  const sectionsOf = (flat: unknown[]): unknown[] => {
    const out: unknown[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      if (flat[i] !== shardId) {
        out.push(flat[i], flat[i + 1]);
        continue;
      }
      const kept = decodeBatch(flat[i + 1] as Uint8Array).flatMap((e) => {
        const m = rewrite(e.message);
        return m === undefined ? [] : [{ shardId: e.shardId, message: m }];
      });
      if (kept.length > 0) out.push(flat[i], encodeBatch(kept));
    }
    return out;
  };
  const parts = (framePackr.unpackMultiple(frame) as unknown[]).map((v) => {
    if (!Array.isArray(v) || v[0] !== SEGMENT_FORMAT) return framePackr.pack(v);
    const [format, heartbeats, responses, sections, wakes, notLeading] = v as [number, number[], number[], unknown[], number[], number[]];
    return framePackr.pack([
      format,
      tuples(heartbeats, HEARTBEAT_TUPLE_LENGTH),
      tuples(responses, HEARTBEAT_RESPONSE_TUPLE_LENGTH),
      sectionsOf(sections),
      wakes.filter((w) => w !== shardId),
      pairs(notLeading),
    ]);
  });
  return Buffer.concat(parts);
}
