/**
 * `@flotilla/transport/testing`: test doubles, kept out of the main entry so
 * production code (the server, the embedded store) cannot reach a network
 * that only moves when a test drives it.
 */
export * from './memory-network.js';
