// flotilla: the package's main entry — embed the engine (`open`), run a node (`FlotillaNode`), serve HTTP (`createHttpServer`).
export {
  open,
  AbortError,
  type OpenOptions,
  type EmbeddedStore,
  type Bytes,
  type Encoding,
  type Decoded,
  type CallOptions,
  type ReadOptions,
  type GetOptions,
  type WriteOptions,
  type RangeOptions,
  type IterateOptions,
  type ClearOptions,
  type ScanOptions as EmbeddedScanOptions,
  type ScanPage as EmbeddedScanPage,
  type Entry,
  type Item,
  type BatchOp,
} from './embed.js';
export { ATOMIC_BATCH_BYTES_MAX, ATOMIC_BATCH_OPS_MAX, KEY_BYTES_MAX, VALUE_BYTES_MAX } from '@flotilla/shards';
export {
  KvError,
  KV_ERROR_CODES,
  SCAN_LIMIT_MAX,
  type KvStore,
  type KvErrorCode,
  type KvErrorDetails,
  type VersionedValue,
  type PutResult,
  type BatchWrite,
  type BatchOutcome,
  type ClearResult,
  type ScanOptions,
  type ScanPage,
} from './kv/store.js';
export { FlotillaNode, INITIAL_RANGE_COUNT_DEFAULT, type NodeOptions } from './node.js';
export { createHttpServer, type HttpServer, type HttpServerOptions } from './http/app.js';
export { readyUrl } from './ready-line.js';
export type { MetricFamily } from './metrics/index.js';
