// Replica consistency checks, the collecting side (ARCHITECTURE.md, "Replica consistency checks";
// the replicas' side is shards/src/kv/consistency.ts): propose a checksum entry on the range's
// leader, collect every replica's digest as of that entry, and on a mismatch name the replicas that
// agree with each other and the first key where each outlier differs. Run on demand (POST
// /ranges/:id/consistency-check) and periodically for the ranges a node leads (ConsistencyDuty).
import { SYSTEM_CLOCK, every, groupId, sleep, type Clock, type Timer } from '@flotilla/core';
import { firstDifferentBlock, firstDifferentKey, type BlockDetail, type ChecksumAnswer, type ChecksumBlockAnswer, type Host, type KvResult, type ShardStatus, type ShellLogger } from '@flotilla/shards';
import type { HostKvStore } from './kv/host-store.js';
import { Deadline, KvError } from './kv/store.js';

/**
 * Budget of one check, from the proposal to the last block detail. A
 * replica hashes one chunk per tick (4,096 keys or 1 MiB), so a 64 MiB range
 * takes about 64 ticks, 6.4 s at the default tick; a minute leaves room for
 * a replica that applies the entry late or hashes behind other checks.
 */
export const CONSISTENCY_CHECK_BUDGET_MS_DEFAULT = 60_000;
/** Pause before asking a replica again that has not applied or not finished hashing: about one tick. */
const PENDING_RETRY_MS = 100;
/** Budget of one question to one replica: a replica that does not answer is asked again until the check's budget runs out. */
const ASK_BUDGET_MS = 5_000;
/** Default interval between two periodic checks of one range (CockroachDB's consistency queue runs about daily; ours is cheap enough for more). */
export const CONSISTENCY_CHECK_INTERVAL_MS_DEFAULT = 10 * 60_000;
/**
 * How often the periodic duty looks for a range due: a node starts at most
 * one check per poll and never two at once, so it keeps up with at most
 * interval / poll ranges led (600 at the defaults).
 */
const DUTY_POLL_MS_MAX = 1_000;
/** Checksum ids: a per-node counter under the node id, so two nodes' checks of one range never share an id. */
const CHECKSUM_ID_NODE_FACTOR = 2 ** 32;

const hex = (b: Uint8Array | null): string | null => (b === null ? null : Buffer.from(b).toString('hex'));

/** One replica in a check's report. */
export interface ReplicaVerdict {
  readonly nodeId: number;
  /** agrees: with the largest group of equal digests (the leader's on a tie); differs: not; skipped: no digest (see reason). */
  readonly status: 'agrees' | 'differs' | 'skipped';
  /** Hex SHA-256 of the replica's range as of the check's index; null when skipped. */
  readonly checksum: string | null;
  readonly keyCount: number | null;
  /** differs: the first key (hex) whose presence or contents differ from `comparedWith`'s; null if it could not be found (see reason). */
  readonly firstDifferingKey?: string | null;
  readonly comparedWith?: number;
  readonly reason?: string;
}

/** What a check answers (POST /ranges/:id/consistency-check; shards/README.md documents the shape). */
export interface ConsistencyReport {
  readonly rangeId: number;
  readonly checksumId: number;
  /** The checksum entry's index: every digest is of the range's data exactly as of it. */
  readonly index: number;
  readonly keyEncoding: 'hex';
  readonly start: string;
  readonly end: string | null;
  readonly epoch: number;
  /** False when some replica's digest differs from the others'. Skipped replicas do not make it false. */
  readonly ok: boolean;
  readonly replicas: readonly ReplicaVerdict[];
  /** The smallest of the differing replicas' first differing keys (hex); null when ok or not found. */
  readonly firstDifferingKey: string | null;
}

export interface ConsistencyStats {
  /** Checks that ran to a verdict (ok or not). */
  readonly checks: number;
  /** Checks that found replicas disagreeing. */
  readonly mismatches: number;
  /** Checks that could not run (no leader, no answer in budget, the store closing). */
  readonly checksFailed: number;
}

type Done = Extract<ChecksumAnswer, { state: 'done' }>;

/** Runs consistency checks of ranges from this node (any node: the proposal goes to the range's leader). */
export class ConsistencyChecker {
  private nextChecksum = 0;
  private checks = 0;
  private mismatches = 0;
  private checksFailed = 0;
  private readonly budgetMs: number;
  private readonly nowMs: () => number;
  private readonly clock: Clock;

  constructor(
    private readonly o: {
      host: Host;
      store: HostKvStore;
      log: ShellLogger;
      /** Budget of one check (CONSISTENCY_CHECK_BUDGET_MS_DEFAULT). */
      budgetMs?: number;
      /** SYSTEM_CLOCK otherwise. */
      clock?: Clock;
    },
  ) {
    this.budgetMs = o.budgetMs ?? CONSISTENCY_CHECK_BUDGET_MS_DEFAULT;
    this.clock = o.clock ?? SYSTEM_CLOCK;
    this.nowMs = () => this.clock.nowMs();
  }

  get stats(): ConsistencyStats {
    return { checks: this.checks, mismatches: this.mismatches, checksFailed: this.checksFailed };
  }

  /**
   * Checks one range: its leader proposes a checksum entry, every replica
   * (as of that entry's configuration) is asked for its digest until it has
   * one, and outliers are compared with the majority block by block, then
   * key by key. Throws NOT_FOUND for a range this node does not know of, and
   * UNAVAILABLE when no leader took the proposal within the budget.
   */
  async check(rangeId: number): Promise<ConsistencyReport> {
    const { host, store } = this.o;
    if (store.knownRange(rangeId) === undefined && !host.hasShard(groupId(rangeId))) {
      throw new KvError('NOT_FOUND', `range ${rangeId} is not known to node ${host.nodeId}`);
    }
    const deadline = Deadline.after(this.budgetMs, this.nowMs);
    const checksumId = (host.nodeId % 2 ** 20) * CHECKSUM_ID_NODE_FACTOR + (this.nextChecksum++ % CHECKSUM_ID_NODE_FACTOR) + 1;
    try {
      const proposed = (await store.runOnRange({ kind: 'checksum', rangeId, checksumId }, { deadline })) as KvResult;
      if (!proposed.ok || !('checksum' in proposed)) throw new KvError('UNAVAILABLE', `range ${rangeId}: the checksum entry was refused (${JSON.stringify(proposed)})`);
      const applied = proposed.checksum;
      const answers = await this.collect(rangeId, { index: applied.index, checksumId }, applied.replicas, deadline);
      const report = await this.judge(rangeId, { index: applied.index, checksumId }, answers, deadline);
      this.checks++;
      const result: ConsistencyReport = { rangeId, checksumId, index: applied.index, keyEncoding: 'hex', start: hex(applied.start)!, end: hex(applied.end), epoch: applied.epoch, ...report };
      if (!result.ok) this.onMismatch(result);
      // Periodic, per range led: at debug (a mismatch is an error line, and both are counted in /metrics).
      else this.o.log.debug({ rangeId, index: result.index, checksumId, replicas: result.replicas.map((r) => `${r.nodeId}:${r.status}`) }, 'consistency check passed');
      return result;
    } catch (err) {
      this.checksFailed++;
      throw err;
    }
  }

  /** Every replica's answer: done, or why it was skipped (down, no replica, no result, no answer in budget). */
  private async collect(rangeId: number, q: { index: number; checksumId: number }, replicas: readonly number[], deadline: Deadline): Promise<Map<number, Done | { skipped: string }>> {
    const answers = new Map<number, Done | { skipped: string }>();
    await Promise.all(
      replicas.map(async (nodeId) => {
        let last = 'not asked';
        for (;;) {
          if (nodeId !== this.o.host.nodeId && !this.o.host.livePeers().includes(nodeId)) return answers.set(nodeId, { skipped: `node ${nodeId} is down` });
          if (deadline.expired) return answers.set(nodeId, { skipped: `no result by the check's deadline (${last})` });
          try {
            const a = await this.askResult(nodeId, { rangeId, ...q, withBlocks: false }, deadline);
            if (a.state === 'done') return answers.set(nodeId, a);
            if (a.state === 'missing') return answers.set(nodeId, { skipped: a.reason });
            last = a.hashing ? 'hashing' : `applied ${a.applied} of ${q.index}`;
          } catch (err) {
            const code = (err as { code?: string }).code;
            if (code === 'SHARD_NOT_FOUND') return answers.set(nodeId, { skipped: `node ${nodeId} holds no replica of range ${rangeId}` });
            if (code === 'CLOSED' || code === 'HOST_CLOSED') throw err;
            last = `${code ?? 'error'}: ${(err as Error).message}`;
          }
          await sleep(this.clock, Math.min(PENDING_RETRY_MS, deadline.remainingMs()));
        }
      }),
    );
    return answers;
  }

  /**
   * Groups the digests; the largest group (the leader's on a tie, then the
   * lowest node id's) is the reference, and every replica outside it gets
   * its first differing key against a reference replica.
   */
  private async judge(
    rangeId: number,
    q: { index: number; checksumId: number },
    answers: Map<number, Done | { skipped: string }>,
    deadline: Deadline,
  ): Promise<Pick<ConsistencyReport, 'ok' | 'replicas' | 'firstDifferingKey'>> {
    const groups = new Map<string, number[]>();
    for (const [nodeId, a] of [...answers].sort(([x], [y]) => x - y)) {
      if ('skipped' in a) continue;
      const digest = hex(a.digest)!;
      groups.set(digest, [...(groups.get(digest) ?? []), nodeId]);
    }
    const leader = this.o.host.leaderOf(groupId(rangeId)) ?? 0;
    const ranked = [...groups].sort(([, a], [, b]) => b.length - a.length || Number(b.includes(leader)) - Number(a.includes(leader)) || a[0]! - b[0]!);
    const reference = ranked[0];
    const replicas: ReplicaVerdict[] = [];
    let firstDifferingKey: string | null = null;
    for (const [nodeId, a] of [...answers].sort(([x], [y]) => x - y)) {
      if ('skipped' in a) {
        replicas.push({ nodeId, status: 'skipped', checksum: null, keyCount: null, reason: a.skipped });
        continue;
      }
      const digest = hex(a.digest)!;
      if (reference === undefined || digest === reference[0]) {
        replicas.push({ nodeId, status: 'agrees', checksum: digest, keyCount: a.keyCount });
        continue;
      }
      const comparedWith = reference[1].includes(leader) ? leader : reference[1][0]!;
      const found = await this.firstDifference(rangeId, q, nodeId, comparedWith, deadline);
      replicas.push({ nodeId, status: 'differs', checksum: digest, keyCount: a.keyCount, comparedWith, ...found });
      if (found.firstDifferingKey !== null && (firstDifferingKey === null || Buffer.compare(Buffer.from(found.firstDifferingKey, 'hex'), Buffer.from(firstDifferingKey, 'hex')) < 0)) {
        firstDifferingKey = found.firstDifferingKey;
      }
    }
    return { ok: ranked.length <= 1, replicas, firstDifferingKey };
  }

  /** The first key where `nodeId`'s data differs from `reference`'s: their first differing block, then that block key by key. */
  private async firstDifference(
    rangeId: number,
    q: { index: number; checksumId: number },
    nodeId: number,
    reference: number,
    deadline: Deadline,
  ): Promise<{ firstDifferingKey: string | null; reason?: string }> {
    try {
      const blocks = async (n: number): Promise<Uint8Array> => {
        const a = await this.askResult(n, { rangeId, ...q, withBlocks: true }, deadline);
        if (a.state !== 'done' || !(a.blockDigests instanceof Uint8Array)) throw new Error(`node ${n} has no block digests (${a.state === 'missing' ? a.reason : a.state})`);
        return a.blockDigests;
      };
      const [mine, theirs] = await Promise.all([blocks(nodeId), blocks(reference)]);
      const block = firstDifferentBlock(mine, theirs);
      if (block === undefined) return { firstDifferingKey: null, reason: 'every block agrees: the digests differ in the range bounds' };
      const detail = async (n: number): Promise<BlockDetail> => {
        const a = (await this.o.store.runOnNode(n, { kind: 'checksumBlock', rangeId, ...q, block }, { deadline: deadline.within(ASK_BUDGET_MS) })) as ChecksumBlockAnswer;
        if (a.state === 'missing') throw new Error(`node ${n}, block ${block}: ${a.reason}`);
        if (!Array.isArray(a.keys) || !(a.digests instanceof Uint8Array) || !a.keys.every((k) => k instanceof Uint8Array)) throw new Error(`node ${n}, block ${block}: malformed detail`);
        return a;
      };
      const [mineDetail, theirsDetail] = await Promise.all([detail(nodeId), detail(reference)]);
      const key = firstDifferentKey(mineDetail, theirsDetail);
      return key === undefined ? { firstDifferingKey: null, reason: `block ${block} differs but its keys agree` } : { firstDifferingKey: hex(key) };
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'CLOSED' || code === 'HOST_CLOSED') throw err;
      return { firstDifferingKey: null, reason: `the first differing key could not be found: ${(err as Error).message}` };
    }
  }

  /** One replica's result, within ASK_BUDGET_MS and the check's deadline. */
  private async askResult(nodeId: number, q: { rangeId: number; index: number; checksumId: number; withBlocks: boolean }, deadline: Deadline): Promise<ChecksumAnswer> {
    const answer = (await this.o.store.runOnNode(nodeId, { kind: 'checksumResult', ...q }, { deadline: deadline.within(ASK_BUDGET_MS) })) as ChecksumAnswer;
    if (answer.state === 'done' && (!(answer.digest instanceof Uint8Array) || typeof answer.keyCount !== 'number')) throw new Error(`node ${nodeId} answered a malformed checksum result`);
    return answer;
  }

  private onMismatch(report: ConsistencyReport): void {
    this.mismatches++;
    const groups = new Map<string, number[]>();
    for (const r of report.replicas) if (r.checksum !== null) groups.set(r.checksum, [...(groups.get(r.checksum) ?? []), r.nodeId]);
    this.o.log.error(
      {
        rangeId: report.rangeId,
        index: report.index,
        checksumId: report.checksumId,
        // Which replicas agree with which: each group shares one digest.
        groups: [...groups].map(([checksum, nodes]) => ({ checksum, nodes })),
        differing: report.replicas.filter((r) => r.status === 'differs').map((r) => ({ nodeId: r.nodeId, comparedWith: r.comparedWith, firstDifferingKey: r.firstDifferingKey, reason: r.reason })),
        skipped: report.replicas.filter((r) => r.status === 'skipped').map((r) => r.nodeId),
        firstDifferingKey: report.firstDifferingKey,
      },
      'replicas of a range disagree',
    );
  }
}

/**
 * Checks the ranges this node leads in the background, off the request
 * path: each at most once per `intervalMs` (the first check of a range
 * comes at a point of the first interval drawn from its id, so a node's
 * ranges do not all come due together), one check at a time per node, at
 * most one started per poll. A check that fails (no quorum, the range moved)
 * is logged and tried again an interval later. Results live in the
 * checker's log and counters; nothing is stored (a restart starts over).
 */
export class ConsistencyDuty {
  private readonly timer: Timer;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Per range led: when it is next due (on the clock's time). */
  private readonly dueAtMs = new Map<number, number>();
  /** Where the last poll left off in the node's view of its replicas (Host.shardChanges). */
  private cursor = 0;
  /** No range led here is due before this (a lower bound: a range forgotten since may have set it). */
  private earliestDueMs = Number.POSITIVE_INFINITY;
  private readonly clock: Clock;

  constructor(
    private readonly o: {
      host: Host;
      checker: ConsistencyChecker;
      log: ShellLogger;
      /** Least time between two checks of one range; must be positive. */
      intervalMs: number;
      /** SYSTEM_CLOCK otherwise. */
      clock?: Clock;
    },
  ) {
    if (!Number.isSafeInteger(o.intervalMs) || o.intervalMs < 1) throw new RangeError(`consistency check interval ${o.intervalMs} ms is not a positive integer`);
    this.clock = o.clock ?? SYSTEM_CLOCK;
    this.timer = every(this.clock, Math.min(DUTY_POLL_MS_MAX, o.intervalMs), () => this.poll());
  }

  private poll(): void {
    if (this.running !== undefined || this.stopped) return;
    this.running = this.once()
      .catch((err: unknown) => this.o.log.debug({ err }, 'consistency duty failed; retrying on the next poll'))
      .finally(() => (this.running = undefined));
  }

  /** Runs the most overdue check, if one is due. */
  async once(): Promise<void> {
    // The ranges led here follow the node's view of its replicas: only those changed since the last poll are read.
    const changes = await this.o.host.shardChanges(this.cursor);
    this.cursor = changes.cursor;
    const now = this.clock.nowMs();
    const led = (s: ShardStatus) => s.role === 'leader' && s.epoch > 0;
    if (changes.full) {
      const ledNow = new Set(changes.changed.filter((c) => led(c.status)).map((c) => c.status.shardId));
      for (const rangeId of this.dueAtMs.keys()) if (!ledNow.has(rangeId)) this.dueAtMs.delete(rangeId);
    }
    for (const rangeId of changes.removed) this.dueAtMs.delete(rangeId);
    for (const { status } of changes.changed) {
      if (!led(status)) this.dueAtMs.delete(status.shardId);
      else if (!this.dueAtMs.has(status.shardId)) this.due(status.shardId, now + staggerMs(status.shardId, this.o.intervalMs));
    }
    // Nothing due before the earliest time any range comes due: a poll looks at every range led here only then.
    if (now < this.earliestDueMs) return;
    let next: number | undefined;
    this.earliestDueMs = Number.POSITIVE_INFINITY;
    for (const [rangeId, dueAtMs] of this.dueAtMs) {
      // Counting the one checked now too: the next poll scans once more, and finds the true earliest then.
      this.earliestDueMs = Math.min(this.earliestDueMs, dueAtMs);
      if (dueAtMs <= now && (next === undefined || dueAtMs < this.dueAtMs.get(next)!)) next = rangeId;
    }
    if (next === undefined || this.stopped) return;
    this.due(next, now + this.o.intervalMs);
    try {
      await this.o.checker.check(next);
    } catch (err) {
      this.o.log.warn({ rangeId: next, err }, 'periodic consistency check could not run; retried next interval');
    }
  }

  private due(rangeId: number, atMs: number): void {
    this.dueAtMs.set(rangeId, atMs);
    this.earliestDueMs = Math.min(this.earliestDueMs, atMs);
  }

  /** Stops the timer; a check in flight fails on its own once the store closes (and is only logged). */
  stop(): void {
    this.stopped = true;
    this.timer.cancel();
  }
}

/** Where in the first interval a range's first check falls: spread by a multiplicative hash of its id. */
function staggerMs(rangeId: number, intervalMs: number): number {
  return (Math.imul(rangeId, 0x9e3779b1) >>> 0) % intervalMs;
}
