// flotilla: the package's main entry — embed the engine (`open`), run a node (`FlotillaNode`), serve HTTP (`createHttpServer`).
export { open, type OpenOptions, type EmbeddedStore, type BatchOp, type BatchResult } from './embed.js';
export { KvError, SCAN_LIMIT_MAX, type KvStore, type KvErrorCode, type VersionedValue, type ScanOptions, type ScanPage } from './kv/store.js';
export { FlotillaNode, INITIAL_RANGE_COUNT_DEFAULT, type NodeOptions } from './node.js';
export { createHttpServer, type HttpServer, type HttpServerOptions } from './http/app.js';
export { readyUrl } from './ready-line.js';
