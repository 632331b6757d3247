import { Host, type ShellLogger } from '@flotilla/shards';
import { NoNetworkTransport } from '@flotilla/transport';
import { pino } from 'pino';
import { HostKvStore } from './kv/host-store.js';
import { FlotillaNode, bootstrapRanges } from './node.js';
import type { KvStore } from './kv/store.js';

/** The node id of an embedded single-node store. */
const EMBEDDED_NODE_ID = 1;

export interface OpenOptions {
  /** The data directory (created if missing; refused if foreign or damaged). */
  readonly dir: string;
  /** Worker cores; fixed once the directory exists. Default 1 (one range needs one core). */
  readonly coreCount?: number;
  /** pino logger; default: warnings and errors to stderr. */
  readonly logger?: ShellLogger;
  /**
   * Run as one member of a cluster instead of alone: this process is node
   * `nodeId`, its transport listens on `listen`, and it is either a static
   * member (`peers`: every other member's transport address, the same set
   * on every member) or joins a running cluster (`join`: any member's HTTP URL).
   */
  readonly cluster?: {
    readonly nodeId: number;
    readonly listen: { readonly host: string; readonly port: number };
    readonly peers?: Readonly<Record<number, string>>;
    readonly join?: string;
    /** A static member's cluster token (the same on every member; NodeOptions.clusterToken). */
    readonly clusterToken?: string;
    readonly initialRangeCount?: number;
    /** Raft tick; default the node's (TICK_INTERVAL_MS_DEFAULT). */
    readonly tickIntervalMs?: number;
  };
}

/** One write of a `batch`. */
export type BatchOp =
  | { readonly op: 'put'; readonly key: Uint8Array; readonly value: Uint8Array; readonly ifVersion?: number }
  | { readonly op: 'delete'; readonly key: Uint8Array; readonly ifVersion?: number };

/** What `batch` reports per op, in order: its new version (0 for a delete), or the error it failed with. */
export type BatchResult = { readonly ok: true; readonly version: number } | { readonly ok: false; readonly error: Error };

/** The embedded store: the KvStore contract plus conveniences for in-process use. */
export interface EmbeddedStore extends KvStore {
  /** Every key in [start, end) in order, fetched page by page (`pageLimit` keys at a time). */
  iterate(options?: { start?: Uint8Array; end?: Uint8Array; pageLimit?: number; consistency?: 'linearizable' | 'stale' }): AsyncIterableIterator<{ key: Uint8Array; value: Uint8Array; version: number }>;
  /**
   * Runs many writes at once (they share group commits) and reports each.
   * Each write is atomic and durable on its own; the batch is NOT one
   * transaction: a failure of one leaves the others applied.
   */
  batch(ops: readonly BatchOp[]): Promise<BatchResult[]>;
}

/** Keys per page when iterating: one page is one read per range it crosses. */
const ITERATE_PAGE_LIMIT_DEFAULT = 256;

/**
 * Opens Flotilla in this process as a single-node store: the same engine
 * (Host, worker cores, Raft, LMDB) as a cluster node, with one replica of
 * each range. Reopening the directory recovers everything acknowledged.
 */
export async function open(options: OpenOptions): Promise<EmbeddedStore> {
  const logger = options.logger ?? (pino({ level: 'warn' }, pino.destination(2)) as unknown as ShellLogger);
  const c = options.cluster;
  if (c !== undefined) {
    const node = await FlotillaNode.start({
      nodeId: c.nodeId,
      dir: options.dir,
      listen: c.listen,
      peers: c.peers ?? {},
      logger,
      coreCount: options.coreCount ?? 1,
      ...(c.join === undefined ? {} : { join: c.join }),
      ...(c.clusterToken === undefined ? {} : { clusterToken: c.clusterToken }),
      ...(c.initialRangeCount === undefined ? {} : { initialRangeCount: c.initialRangeCount }),
      ...(c.tickIntervalMs === undefined ? {} : { tickIntervalMs: c.tickIntervalMs }),
    });
    return embedded(node.store);
  }
  // Alone, the node is every range's only voter and sends nothing; anything that would need a peer is dropped and counted.
  const transport = new NoNetworkTransport({ nodeId: EMBEDDED_NODE_ID });
  const host = await Host.start({ nodeId: EMBEDDED_NODE_ID, dir: options.dir, transport, coreCount: options.coreCount ?? 1, logger });
  try {
    const ranges = await bootstrapRanges(host, [EMBEDDED_NODE_ID], 1);
    return embedded(new HostKvStore({ host, ranges, onClose: () => host.close() }));
  } catch (err) {
    await host.close();
    throw err;
  }
}

export type { KvStore, VersionedValue, ScanOptions, ScanPage, KvErrorCode } from './kv/store.js';
export { KvError, SCAN_LIMIT_MAX } from './kv/store.js';

function embedded(store: KvStore): EmbeddedStore {
  return Object.assign(store, {
    async *iterate(o: Parameters<EmbeddedStore['iterate']>[0] = {}) {
      let cursor: string | undefined;
      do {
        const page = await store.scan({
          limit: o.pageLimit ?? ITERATE_PAGE_LIMIT_DEFAULT,
          ...(cursor === undefined ? (o.start === undefined ? {} : { start: o.start }) : { cursor }),
          ...(o.end === undefined ? {} : { end: o.end }),
          ...(o.consistency === undefined ? {} : { consistency: o.consistency }),
        });
        yield* page.items;
        cursor = page.cursor;
      } while (cursor !== undefined);
    },
    async batch(ops: readonly BatchOp[]): Promise<BatchResult[]> {
      return Promise.all(
        ops.map(async (o): Promise<BatchResult> => {
          try {
            const condition = o.ifVersion === undefined ? {} : { ifVersion: o.ifVersion };
            if (o.op === 'put') return { ok: true, version: (await store.put(o.key, o.value, condition)).version };
            await store.delete(o.key, condition);
            return { ok: true, version: 0 };
          } catch (err) {
            return { ok: false, error: err as Error };
          }
        }),
      );
    },
  });
}
