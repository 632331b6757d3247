/**
 * `@flotilla/server/testing`: test doubles, kept out of the main entry so an
 * embedder cannot mistake a store without replication or durability for the
 * engine (`open` is the embedded store).
 */
export * from './memory-store.js';
