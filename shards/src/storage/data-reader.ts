import { join } from 'node:path';
import { open, type Database, type DatabaseOptions, type RootDatabase } from 'lmdb';
import { STORE_FILE } from './data-dir.js';
import { SUB_DATABASE_COUNT_MAX } from './node-store.js';

/**
 * A core's store opened a second time, on the Host's thread, to read its
 * user data (host/local-reads.ts). lmdb-js keeps one LMDB environment per
 * path for the whole process, so this shares the core's environment rather
 * than opening the file again (LMDB forbids two environments on one file in
 * one process: closing either would drop the other's locks). Nothing here
 * writes.
 */
export class StoreDataReader {
  private closed = false;

  private constructor(
    private readonly env: RootDatabase,
    readonly data: Database<unknown, Buffer>,
  ) {}

  /** Opens the store the core of `coreDir` has open; undefined when it is not there (the core reads instead). */
  static open(coreDir: string): StoreDataReader | undefined {
    const env = open({ path: join(coreDir, STORE_FILE), maxDbs: SUB_DATABASE_COUNT_MAX });
    // `create` is an lmdb-js option its typings lack; with create: false a missing database comes back undefined.
    const data = env.openDB({ name: 'data', keyEncoding: 'binary', create: false } as DatabaseOptions & { name: string }) as Database<unknown, Buffer> | undefined;
    if (data === undefined) {
      void env.close();
      return undefined;
    }
    return new StoreDataReader(env, data);
  }

  /** Ends the read transaction lmdb-js keeps for the rest of the event-loop turn: the next read sees every commit so far. */
  renew(): void {
    if (!this.closed) this.data.resetReadTxn();
  }

  /** Releases this thread's hold on the environment (the core's stays open). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.env.close();
  }
}
