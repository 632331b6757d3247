import type { Entry, NodeId } from '@flotilla/core';
import { DiskFullError } from '../errors.js';
import type { ShellLogger } from '../shell-logger.js';
import { freeBytes, isOutOfSpace } from '../storage/disk-space.js';
import type { ShardWrite } from '../storage/node-store.js';
import type { CoreStats } from './core-protocol.js';
import type { CoreOutputBuffer } from './core-output.js';
import type { Group } from './group.js';

/** How often (ticks) the core looks at the free space of its store's file system: once a second at the default tick. */
const DISK_CHECK_TICKS = 10;
/** A group commit that failed on a full disk is retried this often (ticks) until space returns. */
const DISK_FULL_RETRY_TICKS = 10;
/**
 * Free bytes a store write never takes the file system below (see
 * spaceShortfall): room for LMDB's copy-on-write pages beyond our estimate
 * of a write, and for the file to grow by its own increments.
 */
const DISK_FLOOR_BYTES = 8 * 1024 * 1024;
/** Per-entry bytes over its payload in the log and in the data (keys, term, type, b-tree cells). */
const ENTRY_STORED_OVERHEAD_BYTES = 64;

/** Estimated bytes `entries` take once stored (the measure of spaceShortfall). */
export function entryBytes(entries: readonly Entry[]): number {
  let bytes = 0;
  for (const e of entries) bytes += e.data.byteLength + ENTRY_STORED_OVERHEAD_BYTES;
  return bytes;
}

export function writeBytes(writes: readonly ShardWrite[]): number {
  let bytes = 0;
  for (const w of writes) bytes += entryBytes(w.entries) + ENTRY_STORED_OVERHEAD_BYTES;
  return bytes;
}

/** What the guard needs of its core. */
export interface DiskGuardPort {
  /** The store's directory: its file system is the one watched. */
  readonly dir: string;
  /** See ShardCoreOptions.diskReserveBytes. */
  readonly reserveBytes: number;
  readonly self: NodeId;
  readonly stats: CoreStats;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'event' | 'flush'>;
  /** The groups that tick; those led here hand their lead off when space runs low. */
  readonly active: ReadonlySet<Group>;
  readonly downPeers: ReadonlySet<NodeId>;
  /** The group may have a Ready now. */
  touch(g: Group): void;
}

/**
 * The core's disk-space guard. Below the reserve it refuses new writes
 * (DISK_FULL) and hands its leads off while Raft goes on; when a write the
 * round cannot go on without fails (or would fail) for want of space, the
 * disk is full: the round waits here, retried every DISK_FULL_RETRY_TICKS,
 * and the core steps no Raft traffic and ticks no group meanwhile.
 */
export class DiskGuard {
  /**
   * Set while a group commit fails for want of space (see untilWritten):
   * the round waits, the core steps no Raft traffic and ticks no group (it
   * cannot persist a vote, an entry or a term), and refuses writes and
   * linearizable reads; stale reads are served. Cleared by the first commit
   * that succeeds.
   */
  private full: { sinceTick: number; err: string } | undefined;
  /** Free space below reserveBytes at the last check: writes are refused, Raft goes on. */
  private low = false;
  private retryWaiters: (() => void)[] = [];
  /** The core is closing while a round waited for space: the round gives up its Ready. */
  private abandoning = false;
  /** The core's tick count as of its last tick (the clock of `full`). */
  private tickCount = 0;

  constructor(private readonly port: DiskGuardPort) {}

  /** The disk is full: the core steps no Raft traffic and ticks no group. */
  get isFull(): boolean {
    return this.full !== undefined;
  }

  /** A round waits for space: it waits for ticks, not for work in progress. */
  get isWaiting(): boolean {
    return this.retryWaiters.length > 0;
  }

  get isAbandoning(): boolean {
    return this.abandoning;
  }

  /** Looks at the free space every DISK_CHECK_TICKS; while full, lets a waiting write retry every DISK_FULL_RETRY_TICKS. */
  onTick(tickCount: number): void {
    this.tickCount = tickCount;
    if (tickCount % DISK_CHECK_TICKS === 0) this.check();
    if (this.full !== undefined && (tickCount - this.full.sinceTick) % DISK_FULL_RETRY_TICKS === 0) for (const w of this.retryWaiters.splice(0)) w();
  }

  /** The core is closing: a round waiting for space gives up its Ready, as a crash would (the durable log replays it). */
  onClose(): void {
    if (this.full === undefined) return;
    this.abandoning = true;
    for (const w of this.retryWaiters.splice(0)) w();
  }

  /**
   * A write the round cannot go on without (its group commit, a snapshot
   * install), retried while it fails for want of space: a failed LMDB
   * transaction leaves the store and its in-memory mirror as they were, and
   * both writes are made to be repeated (the staged apply writes the same
   * again; the installer keeps its staged chunks). Any other storage error is
   * the node's end, as before. False: the core is closing and the Ready is
   * abandoned, as a crash would (the durable log replays it).
   */
  async untilWritten(write: () => Promise<void>, bytesEstimate: number): Promise<boolean> {
    for (;;) {
      const shortfall = this.spaceShortfall(bytesEstimate);
      if (shortfall !== undefined) {
        this.onFull(shortfall);
      } else {
        try {
          await write();
          if (this.full !== undefined) this.onSpaceBack();
          return true;
        } catch (err) {
          if (!isOutOfSpace(err, this.port.dir)) throw err;
          this.onFull(err as Error);
        }
      }
      await new Promise<void>((resolve) => this.retryWaiters.push(resolve));
      if (this.abandoning) return false;
    }
  }

  /**
   * Whether a write of about `bytes` would take the file system below
   * DISK_FLOOR_BYTES: then it is not attempted, and the core waits as for a
   * full disk. LMDB's own out-of-space path is to be avoided, not only
   * survived: lmdb-js 3.5.6 formats that error with sprintf into a 100-byte
   * malloc'd buffer (mdb.c, mdb_page_flush), which its positions and buffer
   * sizes can overrun, corrupting the heap. The failed-write path in
   * untilWritten stays for space taken by someone else between this check
   * and the write.
   */
  spaceShortfall(bytes: number): Error | undefined {
    const free = freeBytes(this.port.dir);
    if (free === undefined || free >= DISK_FLOOR_BYTES + bytes) return undefined;
    return new DiskFullError(`${free} B free on ${this.port.dir}, under the floor of ${DISK_FLOOR_BYTES} B plus ~${bytes} B this write needs`);
  }

  /** Why a write is refused now (the disk is full, or below the reserve), or undefined. */
  refusal(): DiskFullError | undefined {
    if (this.full === undefined && !this.low) return undefined;
    const free = freeBytes(this.port.dir);
    const what = this.full !== undefined ? 'is full' : `has ${free ?? '?'} B free, below the reserve of ${this.port.reserveBytes} B`;
    return new DiskFullError(`the disk of node ${this.port.self} (${this.port.dir}) ${what}; writes are refused until space returns`);
  }

  private onFull(err: Error): void {
    const { stats, log, out, dir } = this.port;
    stats.diskFullCommits++;
    if (this.full !== undefined) return;
    this.full = { sinceTick: this.tickCount, err: err.message };
    const free = freeBytes(dir);
    log.error({ dir, freeBytes: free, err }, 'disk full: writes refused until space returns; this node steps no Raft traffic meanwhile');
    out.event({ kind: 'disk', full: true, low: true, freeBytes: free ?? 0 });
    out.flush();
  }

  private onSpaceBack(): void {
    const { dir } = this.port;
    const free = freeBytes(dir);
    this.port.log.warn({ dir, freeBytes: free, fullTicks: this.tickCount - this.full!.sinceTick }, 'disk space returned: group commits succeed again');
    this.full = undefined;
    this.low = free !== undefined && free < this.port.reserveBytes;
    this.port.out.event({ kind: 'disk', full: false, low: this.low, freeBytes: free ?? 0 });
    // Every group may have missed ticks and traffic: let them all look at their state again.
    for (const g of this.port.active) this.port.touch(g);
  }

  /**
   * Once every DISK_CHECK_TICKS: below the reserve, writes are refused before
   * the disk is actually full, and the groups led here hand their lead to
   * their most caught-up follower, so the range takes writes elsewhere.
   */
  private check(): void {
    if (this.full !== undefined) return;
    const { dir, reserveBytes, log } = this.port;
    const free = freeBytes(dir);
    if (free === undefined) return;
    const low = free < reserveBytes;
    if (low) this.leadOff();
    if (low === this.low) return;
    this.low = low;
    if (low) log.warn({ dir, freeBytes: free, reserveBytes }, 'disk space below the reserve: writes refused');
    else log.info({ dir, freeBytes: free }, 'disk space above the reserve again: writes accepted');
    this.port.out.event({ kind: 'disk', full: false, low, freeBytes: free });
  }

  private leadOff(): void {
    const { active, self, downPeers } = this.port;
    for (const g of active) {
      if (!g.isLeader) continue;
      const raft = g.raw.raft;
      let best: NodeId | undefined;
      let bestMatch = -1;
      for (const voter of raft.tracker.confState().voters) {
        const match = raft.tracker.progress.get(voter)?.match ?? -1;
        if (voter !== self && !downPeers.has(voter) && match > bestMatch) {
          best = voter;
          bestMatch = match;
        }
      }
      if (best === undefined) continue;
      g.raw.transferLeader(best);
      this.port.touch(g);
      this.port.log.info({ rangeId: g.id, to: best }, 'leadership handed off: this node is low on disk space');
    }
  }
}
