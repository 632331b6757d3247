export * from './types.js';
export * from './frame.js';
export * from './errors.js';
export { SNAPSHOT_WINDOW_CHUNKS } from './tcp-snapshot.js';
export * from './tcp-transport.js';
export * from './no-network-transport.js';
