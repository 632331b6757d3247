import { compareKeys } from '@flotilla/placement';
import type {
  BatchOp,
  Bytes,
  CallOptions,
  ClearOptions,
  Decoded,
  EmbeddedStore,
  Encoding,
  Entry,
  GetOptions,
  IterateOptions,
  Item,
  RangeOptions,
  ScanOptions,
  ScanPage,
  WriteOptions,
} from '../embed.js';
import type { HostKvStore } from '../kv/host-store.js';
import { NodeMetrics, type MetricFamily } from '../metrics/index.js';
import { KvError, type BatchOutcome, type BatchWrite, type ClearResult, type Deadline, type PutResult, type VersionedValue } from '../kv/store.js';
import {
  abortable,
  checkBoolean,
  checkConsistency,
  checkCount,
  checkEncoding,
  checkIfVersion,
  checkSignal,
  fromBytes,
  optionsOf,
  prefixEnd,
  toBytes,
  toBytesOrUndefined,
} from './arguments.js';

/** Items per page when iterating: one page is one read per range it crosses. */
const ITERATE_PAGE_LIMIT_DEFAULT = 256;
/**
 * Reads getMany keeps in flight at once: enough to fill the cores' group
 * commits (a Host turn takes whatever arrived), few enough that 100,000
 * keys do not become 100,000 pending requests at once.
 */
const GET_MANY_IN_FLIGHT_MAX = 64;

/**
 * The embedding API over a KvStore (EmbeddedStore's contract): converts
 * the caller's arguments to bytes (TypeError for anything else), decodes
 * what comes back by the encodings asked for, and ties each call to its
 * signal and to one deadline.
 */
export class EmbeddedKvStore<K extends Encoding, V extends Encoding> implements EmbeddedStore<K, V> {
  private nodeMetrics: NodeMetrics | undefined;
  constructor(
    private readonly store: HostKvStore,
    private readonly encodings: { readonly keyEncoding: K; readonly valueEncoding: V },
  ) {}

  async get<E extends Encoding = V>(key: Bytes, options?: GetOptions<E>): Promise<Entry<Decoded<E>> | undefined> {
    const o = optionsOf(options, 'get');
    const keyBytes = toBytes(key, 'get: key');
    const read = this.readOptions(o, 'get');
    const encoding = checkEncoding(o.valueEncoding, 'get: valueEncoding') ?? this.encodings.valueEncoding;
    const found = await this.call('get', read.signal, (deadline) => this.store.get(keyBytes, { deadline, ...read.consistency }));
    return found === undefined ? undefined : entryOf<Decoded<E>>(found, encoding);
  }

  async getMany<E extends Encoding = V>(keys: readonly Bytes[], options?: GetOptions<E>): Promise<(Entry<Decoded<E>> | undefined)[]> {
    const o = optionsOf(options, 'getMany');
    if (!Array.isArray(keys)) throw new TypeError(`getMany: keys must be an array, got ${keys === null ? 'null' : typeof keys}`);
    const keyBytes = keys.map((k, i) => toBytes(k, `getMany: key ${i}`));
    const read = this.readOptions(o, 'getMany');
    const encoding = checkEncoding(o.valueEncoding, 'getMany: valueEncoding') ?? this.encodings.valueEncoding;
    return this.call('getMany', read.signal, async (deadline) => {
      const found: (VersionedValue | undefined)[] = [];
      for (let from = 0; from < keyBytes.length; from += GET_MANY_IN_FLIGHT_MAX) {
        const chunk = keyBytes.slice(from, from + GET_MANY_IN_FLIGHT_MAX);
        found.push(...(await Promise.all(chunk.map((k) => this.store.get(k, { deadline, ...read.consistency })))));
      }
      return found.map((v) => (v === undefined ? undefined : entryOf<Decoded<E>>(v, encoding)));
    });
  }

  async put(key: Bytes, value: Bytes, options?: WriteOptions): Promise<PutResult> {
    const o = optionsOf(options, 'put');
    const keyBytes = toBytes(key, 'put: key');
    const valueBytes = toBytes(value, 'put: value');
    const ifVersion = checkIfVersion(o.ifVersion, 'put');
    return this.call('put', checkSignal(o.signal, 'put'), (deadline) => this.store.put(keyBytes, valueBytes, { deadline, ...(ifVersion === undefined ? {} : { ifVersion }) }));
  }

  async delete(key: Bytes, options?: WriteOptions): Promise<void> {
    const o = optionsOf(options, 'delete');
    const keyBytes = toBytes(key, 'delete: key');
    const ifVersion = checkIfVersion(o.ifVersion, 'delete');
    return this.call('delete', checkSignal(o.signal, 'delete'), (deadline) => this.store.delete(keyBytes, { deadline, ...(ifVersion === undefined ? {} : { ifVersion }) }));
  }

  async batch(ops: readonly BatchOp[], options?: CallOptions): Promise<BatchOutcome> {
    const o = optionsOf(options, 'batch');
    if (!Array.isArray(ops)) throw new TypeError(`batch: ops must be an array, got ${ops === null ? 'null' : typeof ops}`);
    const writes = ops.map((op, i) => batchWriteOf(op, `batch: op ${i}`));
    return this.call('batch', checkSignal(o.signal, 'batch'), (deadline) => this.store.batch(writes, { deadline }));
  }

  async clear(options?: ClearOptions): Promise<ClearResult> {
    const o = optionsOf(options, 'clear');
    const span = spanOf(o, 'clear');
    const signal = checkSignal(o.signal, 'clear');
    if (span === undefined) return { deletedCount: 0, ranges: [] };
    const result = await this.call('clear', signal, (deadline) => this.store.clear({ ...span, deadline }));
    return {
      deletedCount: result.deletedCount,
      ranges: result.ranges.map((r) => ({ ...r, start: fromBytes(r.start, 'binary') as Uint8Array, end: r.end === null ? null : (fromBytes(r.end, 'binary') as Uint8Array) })),
    };
  }

  iterate<KE extends Encoding = K, VE extends Encoding = V>(options?: IterateOptions<KE, VE>): AsyncIterableIterator<Item<Decoded<KE>, Decoded<VE>>> {
    // Arguments are checked here, when iterate is called, not at the first next().
    const plan = this.iterationOf(options, 'iterate');
    return this.items<Decoded<KE>, Decoded<VE>>(plan);
  }

  keys<KE extends Encoding = K>(options?: IterateOptions<KE, V>): AsyncIterableIterator<Decoded<KE>> {
    return mapIterator(this.items<Decoded<KE>, unknown>(this.iterationOf(options, 'keys')), (item) => item.key);
  }

  values<VE extends Encoding = V>(options?: IterateOptions<K, VE>): AsyncIterableIterator<Decoded<VE>> {
    return mapIterator(this.items<unknown, Decoded<VE>>(this.iterationOf(options, 'values')), (item) => item.value);
  }

  async scan(options: ScanOptions): Promise<ScanPage> {
    const o = optionsOf(options, 'scan');
    const read = this.readOptions(o, 'scan');
    const start = toBytesOrUndefined(o.start, 'scan: start');
    const end = toBytesOrUndefined(o.end, 'scan: end');
    const reverse = checkBoolean(o.reverse, 'scan: reverse');
    if (o.cursor !== undefined && typeof o.cursor !== 'string') throw new TypeError('scan: cursor must be a string (the previous page\'s cursor)');
    if (typeof o.limit !== 'number') throw new TypeError('scan: limit must be a number');
    const page = await this.call('scan', read.signal, (deadline) =>
      this.store.scan({
        limit: o.limit!,
        deadline,
        ...read.consistency,
        ...(start === undefined ? {} : { start }),
        ...(end === undefined ? {} : { end }),
        ...(o.cursor === undefined ? {} : { cursor: o.cursor }),
        ...(reverse === true ? { reverse } : {}),
      }),
    );
    const items = page.items.map((i) => ({ key: fromBytes(i.key, 'binary') as Uint8Array, value: fromBytes(i.value, 'binary') as Uint8Array, version: i.version }));
    return page.cursor === undefined ? { items } : { items, cursor: page.cursor };
  }

  metrics(): Promise<MetricFamily[]> {
    // Made at the first call: an embedder who never asks starts no process metrics.
    this.nodeMetrics ??= new NodeMetrics({ host: this.store.host, store: this.store });
    return this.nodeMetrics.values();
  }

  close(): Promise<void> {
    return this.store.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Runs one call under a fresh deadline of the store's budget, ended early by `signal`. */
  private call<T>(what: string, signal: AbortSignal | undefined, work: (deadline: Deadline) => Promise<T>): Promise<T> {
    const deadline = signal === undefined ? this.store.deadline() : this.store.deadline().withSignal(signal);
    return abortable(signal, what, () => work(deadline));
  }

  private readOptions(o: { readonly signal?: unknown; readonly consistency?: unknown }, what: string): { signal: AbortSignal | undefined; consistency: { consistency?: 'linearizable' | 'stale' } } {
    const consistency = checkConsistency(o.consistency, what);
    return { signal: checkSignal(o.signal, what), consistency: consistency === undefined ? {} : { consistency } };
  }

  private iterationOf(options: IterateOptions<Encoding, Encoding> | undefined, what: string): Iteration {
    const o = optionsOf(options, what);
    const read = this.readOptions(o, what);
    return {
      what,
      span: spanOf(o, what),
      reverse: checkBoolean(o.reverse, `${what}: reverse`) ?? false,
      limit: checkCount(o.limit, `${what}: limit`) ?? Number.POSITIVE_INFINITY,
      pageLimit: checkCount(o.pageLimit, `${what}: pageLimit`) ?? ITERATE_PAGE_LIMIT_DEFAULT,
      keyEncoding: checkEncoding(o.keyEncoding, `${what}: keyEncoding`) ?? this.encodings.keyEncoding,
      valueEncoding: checkEncoding(o.valueEncoding, `${what}: valueEncoding`) ?? this.encodings.valueEncoding,
      signal: read.signal,
      consistency: read.consistency,
    };
  }

  /** The items of an iteration, a page (one scan) at a time; each page waits for the signal too. */
  private async *items<KT, VT>(plan: Iteration): AsyncGenerator<Item<KT, VT>, void, undefined> {
    if (plan.span === undefined) return;
    let remaining = plan.limit;
    let cursor: string | undefined;
    while (remaining > 0) {
      const limit = Math.min(plan.pageLimit, remaining);
      const page = await this.call(plan.what, plan.signal, (deadline) =>
        this.store.scan({ limit, deadline, ...plan.consistency, ...plan.span, ...(cursor === undefined ? {} : { cursor }), ...(plan.reverse ? { reverse: true } : {}) }),
      );
      for (const item of page.items) {
        yield { key: fromBytes(item.key, plan.keyEncoding) as KT, value: fromBytes(item.value, plan.valueEncoding) as VT, version: item.version };
      }
      remaining -= page.items.length;
      cursor = page.cursor;
      if (cursor === undefined) return;
    }
  }
}

/** An iteration's checked arguments. `span` undefined: no key can match (a prefix outside the bounds). */
interface Iteration {
  readonly what: string;
  readonly span: Span | undefined;
  readonly reverse: boolean;
  readonly limit: number;
  readonly pageLimit: number;
  readonly keyEncoding: Encoding;
  readonly valueEncoding: Encoding;
  readonly signal: AbortSignal | undefined;
  readonly consistency: { consistency?: 'linearizable' | 'stale' };
}

interface Span {
  readonly start?: Uint8Array;
  readonly end?: Uint8Array;
}

/**
 * [start, end) narrowed to `prefix`'s keys, as store bounds; undefined when
 * that leaves no key. A start after the end is the caller's mistake
 * (INVALID_ARGUMENT, as the store says it), not an empty span.
 */
function spanOf(o: RangeOptions, what: string): Span | undefined {
  let start = toBytesOrUndefined(o.start, `${what}: start`);
  let end = toBytesOrUndefined(o.end, `${what}: end`);
  if (start !== undefined && end !== undefined && compareKeys(start, end) > 0) throw new KvError('INVALID_ARGUMENT', `${what}: start is after end`);
  const prefix = toBytesOrUndefined(o.prefix, `${what}: prefix`);
  if (prefix !== undefined && prefix.byteLength > 0) {
    if (start === undefined || compareKeys(start, prefix) < 0) start = prefix;
    const afterPrefix = prefixEnd(prefix);
    if (afterPrefix !== undefined && (end === undefined || compareKeys(afterPrefix, end) < 0)) end = afterPrefix;
  }
  if (start !== undefined && end !== undefined && compareKeys(start, end) >= 0) return undefined;
  return { ...(start === undefined ? {} : { start }), ...(end === undefined ? {} : { end }) };
}

function batchWriteOf(op: BatchOp, what: string): BatchWrite {
  if (op === null || typeof op !== 'object') throw new TypeError(`${what} must be an object { op: 'put' | 'delete', key, … }, got ${op === null ? 'null' : typeof op}`);
  const ifVersion = checkIfVersion(op.ifVersion, what);
  const condition = ifVersion === undefined ? {} : { ifVersion };
  switch (op.op) {
    case 'put':
      return { op: 'put', key: toBytes(op.key, `${what}: key`), value: toBytes(op.value, `${what}: value`), ...condition };
    case 'delete':
      return { op: 'delete', key: toBytes(op.key, `${what}: key`), ...condition };
    default:
      throw new TypeError(`${what}: op must be 'put' or 'delete', got ${JSON.stringify((op as { op?: unknown }).op) ?? 'undefined'}`);
  }
}

function entryOf<T>(found: VersionedValue, encoding: Encoding): Entry<T> {
  return { value: fromBytes(found.value, encoding) as T, version: found.version };
}

/** `source`'s items through `map`, as an iterator whose return() ends `source` too. */
function mapIterator<T, U>(source: AsyncGenerator<T, void, undefined>, map: (item: T) => U): AsyncIterableIterator<U> {
  return (async function* () {
    for await (const item of source) yield map(item);
  })();
}
