import { DEFAULTS, assert, type Clock } from '@flotilla/core';
import type { Transport } from '@flotilla/transport';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from '../kv/command.js';
import { CHECKSUM_CHUNK_KEY_COUNT_DEFAULT, CHECKSUM_HOLD_TICKS_DEFAULT } from '../kv/consistency.js';
import type { ShellLogger } from '../shell-logger.js';
import type { StoreIo, TailLimits } from '../storage/node-store.js';
import type { CoreSettingsBase, LogFormat } from './core-channel.js';
import type { GroupRaftOptions } from './group.js';
import { SEGMENT_BYTES_MAX } from './node-batch.js';
import { PROCESS_LEASE_CLOCKS, leaseMsOf, type LeaseClocks } from './node-leases.js';

/** 100 ms ticks with the core's 10-tick election timeout: elections after 1–2 s of silence (etcd's defaults). */
export const TICK_INTERVAL_MS_DEFAULT = 100;
/** A liveness ping to every peer we sent nothing else to for this many ticks. */
export const LIVENESS_INTERVAL_TICKS_DEFAULT = 2;
/** A peer silent this long is down: one election timeout, when its followers would have noticed by themselves. */
export const LIVENESS_TIMEOUT_TICKS_DEFAULT = DEFAULTS.electionTimeoutTicks;
/** 5 s at the default tick: a request not answered by then is failed with REQUEST_TIMEOUT (outcome unknown). */
export const REQUEST_TIMEOUT_TICKS_DEFAULT = 50;
/** Groups per core woken per tick after a peer is declared down: 1,000 groups wake within a second or two, never at once. */
export const WAKE_COUNT_PER_TICK_MAX_DEFAULT = 64;
/** etcd's default snapshot trigger is 10,000 entries and it keeps 5,000 for slow followers; we keep fewer (entries are in the cache too). */
export const COMPACTION_TRIGGER_ENTRIES_DEFAULT = 10_000;
export const COMPACTION_KEEP_ENTRIES_DEFAULT = 1_000;
/**
 * Free bytes below which a node refuses client writes (ShardCore's
 * diskReserveBytes): room for Raft's own writes — hard states, the entries
 * its peers' leaders replicate, a compaction — after writes stop, a few
 * seconds of replication at disk speed.
 */
export const DISK_RESERVE_BYTES_DEFAULT = 16 * 1024 * 1024;
/** Upper bound of one Raft entry's encoded bytes: the largest KV command (key, value, framing) with room to spare. */
const ENTRY_BYTES_MAX = KEY_BYTES_MAX + VALUE_BYTES_MAX + 1024;
assert(LIVENESS_INTERVAL_TICKS_DEFAULT * 2 < LIVENESS_TIMEOUT_TICKS_DEFAULT, 'a peer must be able to miss a liveness ping without being declared down');

/** Placement's default split size (SCHEDULER_CONFIG_DEFAULTS.splitSizeBytes): where a range report starts to carry a size split key. */
export const SPLIT_KEY_MIN_BYTES_DEFAULT = 64 * 1024 * 1024;

/** How much faster than a leader's clock a peer's may run and still give it leases (node-leases.ts): a lease is the promise shortened by this. */
export const LEASE_DRIFT_MAX = 0.25;
/** Ticks between the lease segments a node sends each peer: well inside a lease, so one lost segment does not end it. */
export const LEASE_INTERVAL_TICKS = 2;

/** Which snapshot rates adapt to foreground latency (HostOptions.snapshotFlowControl). */
export type SnapshotFlowMode = 'send' | 'both' | 'off';

export interface HostOptions {
  readonly nodeId: number;
  /** The node's data directory (one LMDB environment per core under it). */
  readonly dir: string;
  /** Started by the Host; closed by `close()`. */
  readonly transport: Transport;
  /** Worker cores; fixed per data directory. Default: available parallelism. */
  readonly coreCount?: number;
  /** `worker` (default): one thread per core. `inline`: cores on this thread, for deterministic tests. */
  readonly coreMode?: 'worker' | 'inline';
  /** `manual`: the caller calls `tick()` (tests with a virtual clock). Default: a timer every TICK_INTERVAL_MS_DEFAULT. */
  readonly ticker?: { readonly kind: 'timer'; readonly intervalMs: number } | { readonly kind: 'manual' };
  readonly raft?: Partial<GroupRaftOptions>;
  readonly quiesce?: boolean;
  /**
   * Node leases (node-leases.ts; default on): a range's leader answers a
   * linearizable read at once, without a heartbeat round, while its voters'
   * nodes have promised its node not to elect anyone else — also when the
   * range is quiesced. Off: every linearizable read confirms leadership
   * with a heartbeat round (ReadIndex).
   */
  readonly nodeLeases?: boolean;
  /**
   * With node leases: a linearizable read of a range this node leads is
   * served on the Host's thread from its core's store, without the hop to
   * the core (local-reads.ts). Default on; off: every read goes to its core.
   */
  readonly localReads?: boolean;
  readonly livenessIntervalTicks?: number;
  readonly livenessTimeoutTicks?: number;
  readonly requestTimeoutTicks?: number;
  readonly wakeCountPerTickMax?: number;
  readonly compactionTriggerEntries?: number;
  readonly compactionKeepEntries?: number;
  /** Snapshot bytes this node sends per second, over all streams (default SNAPSHOT_BYTES_PER_SEC_DEFAULT, snapshot/relay.ts). */
  readonly snapshotBytesPerSecMax?: number;
  /**
   * Snapshot flow control (snapshot/flow-control.ts): the rate snapshots are
   * sent at (`send`, the default), and with `both` also the rate received
   * ones are staged at, fall when this node's client writes slow down and
   * climb back to snapshotBytesPerSecMax when they recover. `off`: a fixed
   * send rate, received chunks staged as they come. Receive pacing is not
   * the default: it halved the rebalance bench's MB/s (19.5-25 against
   * 44-48 MB/s sending only) for a p99 gain within run-to-run noise.
   */
  readonly snapshotFlowControl?: SnapshotFlowMode;
  /** Free disk bytes below which client writes are refused (default DISK_RESERVE_BYTES_DEFAULT). */
  readonly diskReserveBytes?: number;
  /** Range reports (shardChanges) carry a size split key for ranges of at least this many bytes (default SPLIT_KEY_MIN_BYTES_DEFAULT): placement's split size. */
  readonly splitKeyMinBytes?: number;
  /** Keys a consistency check hashes per core per tick (default CHECKSUM_CHUNK_KEY_COUNT_DEFAULT). */
  readonly checksumChunkKeyCount?: number;
  /** Ticks a finished consistency check keeps its snapshot for block details (default CHECKSUM_HOLD_TICKS_DEFAULT). */
  readonly checksumHoldTicks?: number;
  readonly seed?: number;
  readonly logger: ShellLogger & { level?: string };
  /**
   * How worker cores write their lines (each thread has its own root
   * logger, at the level of `logger`): match the main thread's. Default json.
   */
  readonly logFormat?: LogFormat;
  /** A worker core died. Default: log it and close the Host; a node process should exit. */
  readonly onFatal?: (err: Error) => void;
  /** Where the built worker entry lives (default: next to this module in dist/). */
  readonly workerPath?: string | URL;
  /** How inline cores' stores reach the disk (NodeStore's StoreIo; default durable). Worker cores are always durable. */
  readonly storeIo?: StoreIo;
  /** Log tail limits of inline cores' stores (NodeStore's `tail`; default its own): the simulation checkpoints often. */
  readonly storeTail?: TailLimits;
  /** What the snapshot rate limit and log rate limits measure time with (default SYSTEM_CLOCK). */
  readonly clock?: Clock;
}

/** Refuses options that cannot work together: RangeError for the caller's mistakes, an assertion for the lease rule. */
export function checkHostOptions(options: HostOptions): void {
  const raft = options.raft ?? {};
  // An append carries entries up to appendBytesMax plus one more (Raft always sends at least one):
  // that must fit one segment, or a follower could never be caught up past that entry.
  const appendBytesMax = raft.appendBytesMax ?? DEFAULTS.appendBytesMax;
  if (appendBytesMax + ENTRY_BYTES_MAX > SEGMENT_BYTES_MAX) {
    throw new RangeError(`raft appendBytesMax ${appendBytesMax} plus the largest entry (${ENTRY_BYTES_MAX} B) exceeds a segment (${SEGMENT_BYTES_MAX} B)`);
  }
  if (options.storeIo?.kind === 'simulated' && options.coreMode !== 'inline') throw new RangeError('simulated store I/O needs inline cores (coreMode "inline")');
  if (options.nodeLeases !== false && leaseSettingsOf(options).leaseMs <= 0) {
    throw new RangeError(`node leases: a ${leaseSettingsOf(options).promiseTicks}-tick election timeout leaves no lease at ${tickMsOf(options)} ms per tick; lengthen it or set nodeLeases: false`);
  }
  if (options.nodeLeases !== false && raft.checkQuorum === false) throw new RangeError('node leases need checkQuorum: a leader that lost its quorum must step down');
  const quiesce = options.quiesce ?? true;
  // Leases assume every replica ticks in step with real time; a quiesced group does not tick.
  assert(!(quiesce && raft.readMode === 'lease'), 'lease reads need groups that always tick: set quiesce: false to use readMode "lease"');
}

/** Milliseconds per tick: the timer's interval, or the default a manual ticker stands for. */
export function tickMsOf(options: HostOptions): number {
  return options.ticker?.kind === 'timer' ? options.ticker.intervalMs : TICK_INTERVAL_MS_DEFAULT;
}

/** How long a promise lasts (the election timeout) and the lease it gives (node-leases.ts leaseMsOf). */
export function leaseSettingsOf(options: HostOptions): { leaseMs: number; promiseTicks: number } {
  const promiseTicks = options.raft?.electionTimeoutTicks ?? DEFAULTS.electionTimeoutTicks;
  return { promiseTicks, leaseMs: leaseMsOf({ promiseTicks, tickMs: tickMsOf(options), driftMax: LEASE_DRIFT_MAX }) };
}

/**
 * The clocks node leases are checked against, the same on the Host's thread
 * and in its cores: the injected clock for inline cores (a simulation's
 * virtual time), else the process's clocks (a worker's performance.now()
 * has its own origin).
 */
export function leaseClocksOf(options: HostOptions, clock: Clock): LeaseClocks {
  if (options.coreMode !== 'inline') return PROCESS_LEASE_CLOCKS;
  return { monoMs: () => clock.nowMs(), wallMs: () => clock.nowMs() };
}

/** What every core of a node is started with, from the Host's options and their defaults. */
export function coreSettingsOf(options: HostOptions, coreCount: number, clockSteps: SharedArrayBuffer): CoreSettingsBase {
  return {
    nodeId: options.nodeId,
    coreCount,
    raft: options.raft ?? {},
    quiesce: options.quiesce ?? true,
    wakeCountPerTickMax: options.wakeCountPerTickMax ?? WAKE_COUNT_PER_TICK_MAX_DEFAULT,
    compactionTriggerEntries: options.compactionTriggerEntries ?? COMPACTION_TRIGGER_ENTRIES_DEFAULT,
    compactionKeepEntries: options.compactionKeepEntries ?? COMPACTION_KEEP_ENTRIES_DEFAULT,
    diskReserveBytes: options.diskReserveBytes ?? DISK_RESERVE_BYTES_DEFAULT,
    checksumChunkKeyCount: options.checksumChunkKeyCount ?? CHECKSUM_CHUNK_KEY_COUNT_DEFAULT,
    checksumHoldTicks: options.checksumHoldTicks ?? CHECKSUM_HOLD_TICKS_DEFAULT,
    seed: options.seed ?? options.nodeId,
    ...(options.nodeLeases === false ? {} : { nodeLeases: { ...leaseSettingsOf(options), clockSteps } }),
  };
}
