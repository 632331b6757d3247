/**
 * The embedding API: Flotilla in this process, as a library (`open`).
 *
 * Keys and values go in as bytes (any Uint8Array, Buffer included) or as
 * strings, which are stored as their UTF-8 bytes: `'a'` and
 * `Uint8Array.of(0x61)` are the same key. They come back in one form,
 * chosen per store at `open` and per call by `keyEncoding` /
 * `valueEncoding`: `'binary'` (the default) as plain Uint8Arrays — never
 * Buffers, from every call alike — or `'utf8'` as strings. This follows
 * classic-level's per-store encodings with per-call overrides, minus the
 * encodings (JSON, msgpack) that would decide for the caller how a value
 * is serialised.
 *
 * @packageDocumentation
 */
import { Host, type Consistency, type ShellLogger } from '@flotilla/shards';
import { NoNetworkTransport } from '@flotilla/transport';
import { pino } from 'pino';
import { EmbeddedKvStore } from './embedded/embedded-store.js';
import { HostKvStore } from './kv/host-store.js';
import { FlotillaNode, bootstrapRanges } from './node.js';
import type { BatchOutcome, ClearResult, PutResult } from './kv/store.js';
import type { MetricFamily } from './metrics/index.js';

/** The node id of an embedded single-node store. */
const EMBEDDED_NODE_ID = 1;

/**
 * A key or a value as the embedding API takes it: bytes, or a string
 * (stored as its UTF-8 bytes). Anything else is a TypeError.
 */
export type Bytes = Uint8Array | string;

/** How keys or values come back: 'binary' as plain Uint8Arrays, 'utf8' as strings. */
export type Encoding = 'binary' | 'utf8';

/**
 * What an encoding gives back: a string for 'utf8', a Uint8Array for
 * 'binary'. Bytes that are not UTF-8 read as 'utf8' become U+FFFD, as with
 * TextDecoder; read them as 'binary' to get them exactly.
 */
export type Decoded<E extends Encoding> = E extends 'utf8' ? string : Uint8Array;

/** How to open a store (`open`). */
export interface OpenOptions<K extends Encoding = 'binary', V extends Encoding = 'binary'> {
  /** The data directory (created if missing; refused if foreign or damaged). */
  readonly dir: string;
  /** Worker cores; fixed once the directory exists. Default 1 (one range needs one core). */
  readonly coreCount?: number;
  /** pino logger; default: warnings and errors to stderr. */
  readonly logger?: ShellLogger;
  /** How keys come back from iteration, unless a call says otherwise; default 'binary'. */
  readonly keyEncoding?: K;
  /** How values come back from reads, unless a call says otherwise; default 'binary'. */
  readonly valueEncoding?: V;
  /**
   * Run as one member of a cluster instead of alone: this process is node
   * `nodeId`, its transport listens on `listen`, and it is either a static
   * member (`peers`: every other member's transport address, the same set
   * on every member) or joins a running cluster (`join`: any member's HTTP URL).
   */
  readonly cluster?: {
    /** This member's node id: a positive integer, unique in the cluster and fixed for the directory. */
    readonly nodeId: number;
    /** Where this member's transport listens for the other members. */
    readonly listen: {
      /** The interface to bind: an IP address or a host name; 0.0.0.0 listens on every interface (then `advertise` is required). */
      readonly host: string;
      /** The TCP port; 0 binds a free one, which the member then advertises (unless `advertise` names another). */
      readonly port: number;
    };
    /** The transport address the other members dial ("host:port"); default `listen`, required when it is 0.0.0.0 (NodeOptions.advertise). */
    readonly advertise?: string;
    /** A static member's peers: node id → transport address (`host:port`). */
    readonly peers?: Readonly<Record<number, string>>;
    /** Join a running cluster through this member's HTTP URL instead. */
    readonly join?: string;
    /** A static member's cluster token (the same on every member; NodeOptions.clusterToken). */
    readonly clusterToken?: string;
    /** User ranges a static cluster starts with (NodeOptions.initialRangeCount). */
    readonly initialRangeCount?: number;
    /** Raft tick; default the node's (TICK_INTERVAL_MS_DEFAULT). */
    readonly tickIntervalMs?: number;
  };
}

/**
 * What every call takes. `signal` aborts the call: its promise rejects at
 * once with an AbortError (its `cause` is the signal's reason), and the
 * store stops retrying. A write already handed to its range's leader may
 * still apply after the abort: its outcome is unknown, as after a TIMEOUT.
 */
export interface CallOptions {
  /** Aborts the call when it fires; one already aborted rejects the call before it starts. */
  readonly signal?: AbortSignal;
}

/** Options of the reads. */
export interface ReadOptions extends CallOptions {
  /**
   * 'linearizable' (default): through the range's leader, reflecting every
   * write acknowledged before the call. 'stale': this node's replica as it
   * is, with no leader or quorum needed; possibly behind.
   */
  readonly consistency?: Consistency;
}

/** Options of `get` and `getMany`. */
export interface GetOptions<V extends Encoding> extends ReadOptions {
  /** How the value comes back; default the store's. */
  readonly valueEncoding?: V;
}

/** Options of `put` and `delete`. */
export interface WriteOptions extends CallOptions {
  /**
   * Write only if the key is at this version: 0 means "only if the key
   * does not exist", n > 0 "only if its version is n". Otherwise the call
   * rejects with a KvError PRECONDITION_FAILED whose `details.currentVersion`
   * is the key's version (0: absent), and nothing is written.
   */
  readonly ifVersion?: number;
}

/**
 * A span of keys: [start, end) in byte order, narrowed to the keys that
 * begin with `prefix` if given. Absent bounds: from the first key, to the
 * last.
 */
export interface RangeOptions {
  /** The first key, inclusive. */
  readonly start?: Bytes;
  /** The key to stop before, exclusive. */
  readonly end?: Bytes;
  /** Only keys that begin with these bytes (with start and end: the keys that satisfy all three). */
  readonly prefix?: Bytes;
}

/** Options of `iterate`, `keys` and `values`. */
export interface IterateOptions<K extends Encoding, V extends Encoding> extends ReadOptions, RangeOptions {
  /** From the last key of the span down. */
  readonly reverse?: boolean;
  /** Items at most; default all. */
  readonly limit?: number;
  /** Items fetched per round trip (one read per range a page crosses); default 256, at most SCAN_LIMIT_MAX. */
  readonly pageLimit?: number;
  /** How keys come back; default the store's. */
  readonly keyEncoding?: K;
  /** How values come back; default the store's. */
  readonly valueEncoding?: V;
}

/** Options of `clear`: the span to delete (RangeOptions) and a signal. */
export interface ClearOptions extends CallOptions, RangeOptions {}

/** Options of `scan`, the paged read whose cursor outlives the process. */
export interface ScanOptions extends ReadOptions {
  /** The first key, inclusive. */
  readonly start?: Bytes;
  /** The key to stop before, exclusive. */
  readonly end?: Bytes;
  /** Items in this page at most, in [1, SCAN_LIMIT_MAX]. */
  readonly limit: number;
  /** The `cursor` of the previous page, unchanged; it replaces `start` (`end` when reverse). */
  readonly cursor?: string;
  /** From the last key of [start, end) down; the cursor then continues downwards. */
  readonly reverse?: boolean;
}

/** A page of `scan`: always binary (keys and values as Uint8Arrays). */
export interface ScanPage {
  /**
   * The page's keys with their values and versions, in key order
   * (descending when `reverse`): at most `limit`, and exactly `limit`
   * whenever a `cursor` follows. The last page may hold none.
   */
  readonly items: readonly Item<Uint8Array, Uint8Array>[];
  /** Absent on the last page; otherwise pass it back to get the next one. */
  readonly cursor?: string;
}

/**
 * A value and its version. The version is the Raft log index of the write
 * that produced the value (see `EmbeddedStore`): it grows with every write
 * of the key, though not by one.
 */
export interface Entry<V> {
  /** The value, as the encoding asked for gives it. */
  readonly value: V;
  /** The Raft log index of the write that produced the value. */
  readonly version: number;
}

/** A key, its value and its version, as iteration yields them. */
export interface Item<K, V> extends Entry<V> {
  /** The key, as the encoding asked for gives it. */
  readonly key: K;
}

/** One write of a `batch`: a put or a delete, told apart by `op`. */
export type BatchOp =
  | {
      /** Sets `key` to `value`, as `put` does. */
      readonly op: 'put';
      /** The key to set (a string is its UTF-8 bytes). */
      readonly key: Bytes;
      /** The value to store (a string is its UTF-8 bytes). */
      readonly value: Bytes;
      /**
       * Write only if the key is at this version (0: absent), as for `put`;
       * checked against the key as the ops before this one in the batch
       * left it (after a delete op of the same key: 0).
       */
      readonly ifVersion?: number;
    }
  | {
      /** Deletes `key`, as `delete` does; an absent key is no failure. */
      readonly op: 'delete';
      /** The key to delete (a string is its UTF-8 bytes). */
      readonly key: Bytes;
      /** Delete only if the key is at this version (0: absent), checked as for a put op. */
      readonly ifVersion?: number;
    };

/**
 * An open store: Flotilla in this process. Every method returns a promise
 * and takes `{ signal }` (CallOptions). Expected failures reject with a
 * KvError (branch on its `code`: KV_ERROR_CODES); arguments of the wrong
 * type (a number as a key, say) with a TypeError; an aborted call with an
 * AbortError.
 *
 * Versions: every key has one, the Raft log index of the entry that wrote
 * its current value (or, when the key moved to a range with a younger log,
 * its previous version + 1). So a version grows with every write of the
 * key, but not by one — the range's other writes and Raft's own entries
 * take indexes too, and a first put may answer 7. Compare versions of the
 * same key and pass them back as `ifVersion`; never count on their spacing.
 *
 * Ranges: the key space is split into ranges, each its own Raft group (one
 * range alone, unless the store runs in a cluster or splits). `batch` is
 * atomic only within one range; `clear` is atomic per range.
 *
 * @typeParam K - How keys come back by default (OpenOptions.keyEncoding).
 * @typeParam V - How values come back by default (OpenOptions.valueEncoding).
 */
export interface EmbeddedStore<K extends Encoding = 'binary', V extends Encoding = 'binary'> extends AsyncDisposable {
  /** The key's value and version, or undefined if it does not exist. */
  get<E extends Encoding = V>(key: Bytes, options?: GetOptions<E>): Promise<Entry<Decoded<E>> | undefined>;
  /**
   * Each key's value and version (undefined where absent), in the order of
   * `keys`. Each key is read on its own (linearizably, unless stale): not
   * one snapshot across keys.
   */
  getMany<E extends Encoding = V>(keys: readonly Bytes[], options?: GetOptions<E>): Promise<(Entry<Decoded<E>> | undefined)[]>;
  /**
   * Sets the key's value; answers its new version and whether the put
   * created the key. Durable on a quorum of the range's replicas when it
   * resolves.
   */
  put(key: Bytes, value: Bytes, options?: WriteOptions): Promise<PutResult>;
  /** Deletes the key; deleting an absent key succeeds (unless `ifVersion` says otherwise). */
  delete(key: Bytes, options?: WriteOptions): Promise<void>;
  /**
   * Runs puts and deletes as one atomic write: one Raft entry, applied all
   * or none. If any op's `ifVersion` fails, nothing is written and the call
   * rejects with PRECONDITION_FAILED (`details.opIndex` names the op). Every
   * key must lie in one range; otherwise the call rejects with
   * BATCH_SPANS_RANGES, naming the ranges (`details.rangeIds`), and nothing
   * is written. Answers each op's new version in order (0 for a delete).
   * At most ATOMIC_BATCH_OPS_MAX ops of ATOMIC_BATCH_BYTES_MAX bytes together.
   */
  batch(ops: readonly BatchOp[], options?: CallOptions): Promise<BatchOutcome>;
  /**
   * Deletes every key of the span (all keys if no bounds are given):
   * atomic per range — each range's part applies whole or not at all — but
   * not across ranges; a failure part way leaves the earlier ranges
   * cleared, and calling again finishes the job. Answers the keys deleted,
   * in total and per range.
   */
  clear(options?: ClearOptions): Promise<ClearResult>;
  /**
   * Every item of the span in key order (`reverse`: from the last down),
   * fetched a page at a time. Each page is read consistently within each
   * range it crosses; the iteration as a whole is no snapshot: a write
   * between pages is seen if it lands after the current position.
   */
  iterate<KE extends Encoding = K, VE extends Encoding = V>(options?: IterateOptions<KE, VE>): AsyncIterableIterator<Item<Decoded<KE>, Decoded<VE>>>;
  /** The keys `iterate` would yield. */
  keys<KE extends Encoding = K>(options?: IterateOptions<KE, V>): AsyncIterableIterator<Decoded<KE>>;
  /** The values `iterate` would yield. */
  values<VE extends Encoding = V>(options?: IterateOptions<K, VE>): AsyncIterableIterator<Decoded<VE>>;
  /**
   * One page of keys in [start, end), binary, with a cursor for the next:
   * the read to use when the position must outlive the process (the
   * cursor is a string). `iterate` is the convenient form.
   */
  scan(options: ScanOptions): Promise<ScanPage>;
  /**
   * This node's metrics as structured values: the numbers a server node
   * shows at `/metrics` (ARCHITECTURE.md, "Metrics and logs"), read now.
   * The process metrics start with the first call.
   */
  metrics(): Promise<MetricFamily[]>;
  /** Closes the store (and the node under it); later calls reject with CLOSED. Idempotent. */
  close(): Promise<void>;
  /** `close()`, for `await using store = await open(…)`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens Flotilla in this process: the same engine (Host, worker cores,
 * Raft, LMDB) as a cluster node. Alone (the default) it is a single-node
 * store, one replica of each range; with `cluster` it is one member of a
 * cluster. Reopening the directory recovers everything acknowledged.
 *
 * @example
 * ```ts
 * await using db = await open({ dir: './data', valueEncoding: 'utf8' });
 * const { version } = await db.put('user/1', 'Ada');
 * await db.put('user/1', 'Ada L.', { ifVersion: version });
 * for await (const { key, value } of db.iterate({ prefix: 'user/' })) console.log(key, value);
 * ```
 */
export async function open<K extends Encoding = 'binary', V extends Encoding = 'binary'>(options: OpenOptions<K, V>): Promise<EmbeddedStore<K, V>> {
  const encodings = { keyEncoding: options.keyEncoding ?? 'binary', valueEncoding: options.valueEncoding ?? 'binary' };
  for (const [name, encoding] of Object.entries(encodings)) {
    if (encoding !== 'binary' && encoding !== 'utf8') throw new TypeError(`open: ${name} must be 'binary' or 'utf8', got ${JSON.stringify(encoding)}`);
  }
  const store = await openKvStore(options);
  return new EmbeddedKvStore(store, encodings as { keyEncoding: K; valueEncoding: V });
}

/**
 * The KvStore `open` wraps: a node's when in a cluster, else one over a
 * Host of its own. For the HTTP server and tests, which speak KvStore.
 *
 * @internal
 */
export async function openKvStore(options: OpenOptions<Encoding, Encoding>): Promise<HostKvStore> {
  const logger = options.logger ?? (pino({ level: 'warn' }, pino.destination(2)) as unknown as ShellLogger);
  const c = options.cluster;
  if (c !== undefined) {
    const node = await FlotillaNode.start({
      nodeId: c.nodeId,
      dir: options.dir,
      listen: c.listen,
      ...(c.advertise === undefined ? {} : { advertise: c.advertise }),
      peers: c.peers ?? {},
      logger,
      coreCount: options.coreCount ?? 1,
      ...(c.join === undefined ? {} : { join: c.join }),
      ...(c.clusterToken === undefined ? {} : { clusterToken: c.clusterToken }),
      ...(c.initialRangeCount === undefined ? {} : { initialRangeCount: c.initialRangeCount }),
      ...(c.tickIntervalMs === undefined ? {} : { tickIntervalMs: c.tickIntervalMs }),
    });
    return node.store;
  }
  // Alone, the node is every range's only voter and sends nothing; anything that would need a peer is dropped and counted.
  const transport = new NoNetworkTransport({ nodeId: EMBEDDED_NODE_ID });
  const host = await Host.start({ nodeId: EMBEDDED_NODE_ID, dir: options.dir, transport, coreCount: options.coreCount ?? 1, logger });
  try {
    const ranges = await bootstrapRanges(host, [EMBEDDED_NODE_ID], 1);
    return new HostKvStore({ host, ranges, onClose: () => host.close() });
  } catch (err) {
    await host.close();
    throw err;
  }
}

export { AbortError } from './embedded/arguments.js';
export type { MetricFamily } from './metrics/index.js';
export type { Consistency } from '@flotilla/shards';
export { KvError, SCAN_LIMIT_MAX, KV_ERROR_CODES, type KvErrorCode, type KvErrorDetails, type PutResult, type BatchOutcome, type ClearResult } from './kv/store.js';
export { ATOMIC_BATCH_BYTES_MAX, ATOMIC_BATCH_OPS_MAX, KEY_BYTES_MAX, VALUE_BYTES_MAX } from '@flotilla/shards';
