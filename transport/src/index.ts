export * from './types.js';
export * from './memory-network.js';
