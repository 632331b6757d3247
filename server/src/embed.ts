import { groupId } from '@flotilla/core';
import { RangeTable } from '@flotilla/placement';
import { Host, type ShellLogger } from '@flotilla/shards';
import { MemoryNetwork } from '@flotilla/transport';
import { SeededRng } from '@flotilla/core';
import { pino } from 'pino';
import { HostKvStore } from './kv/host-store.js';
import type { KvStore } from './kv/store.js';

/** The node id of an embedded single-node store. */
const EMBEDDED_NODE_ID = 1;
/** The range every key lives in until ranges split. */
const FIRST_RANGE_ID = 1;

export interface OpenOptions {
  /** The data directory (created if missing; refused if foreign or damaged). */
  readonly dir: string;
  /** Worker cores; fixed once the directory exists. Default 1 (one range needs one core). */
  readonly coreCount?: number;
  /** pino logger; default: warnings and errors to stderr. */
  readonly logger?: ShellLogger;
}

/**
 * Opens Flotilla in this process as a single-node store: the same engine
 * (Host, worker cores, Raft, LMDB) as a cluster node, with one replica of
 * each range. Reopening the directory recovers everything acknowledged.
 */
export async function open(options: OpenOptions): Promise<KvStore> {
  const logger = options.logger ?? (pino({ level: 'warn' }, pino.destination(2)) as unknown as ShellLogger);
  // No peers: an in-process network endpoint satisfies the Host's transport and never carries anything.
  const network = new MemoryNetwork({ rng: new SeededRng(EMBEDDED_NODE_ID) });
  const host = await Host.start({ nodeId: EMBEDDED_NODE_ID, dir: options.dir, transport: network.endpoint(EMBEDDED_NODE_ID), coreCount: options.coreCount ?? 1, logger });
  try {
    let shards = await host.shards();
    if (shards.length === 0) {
      await host.createShard({ shardId: groupId(FIRST_RANGE_ID), voters: [EMBEDDED_NODE_ID], bounds: { start: new Uint8Array(0), end: null } });
      shards = await host.shards();
    }
    const ranges = new RangeTable(shards.map((s) => ({ rangeId: s.shardId, start: s.start, end: s.end, epoch: 1, replicas: s.voters })));
    return new HostKvStore({ host, ranges, onClose: () => host.close() });
  } catch (err) {
    await host.close();
    throw err;
  }
}

export type { KvStore, VersionedValue, ScanOptions, ScanPage, KvErrorCode } from './kv/store.js';
export { KvError, SCAN_LIMIT_MAX } from './kv/store.js';
