import type { BatchOutcome, BatchWrite, ClearOptions, ClearResult, KvStore, PutResult, ScanOptions, ScanPage, VersionedValue } from '../../src/kv/store.js';
import { MemoryKvStore } from '../../src/testing/memory-store.js';

export type StoreOperation = 'get' | 'put' | 'delete' | 'scan' | 'clear' | 'batch';

/**
 * A MemoryKvStore behind a hook, for what a well-behaved store never does on
 * cue: `before` runs ahead of every call (throw to fail it, await to hold it
 * in flight), and `events` records calls and their completion in order.
 */
export class ScriptedStore implements KvStore {
  before: (operation: StoreOperation) => void | Promise<void> = () => {};
  readonly events: string[] = [];
  readonly scanLimits: number[] = [];

  constructor(readonly inner: MemoryKvStore = new MemoryKvStore()) {}

  async get(key: Uint8Array): Promise<VersionedValue | undefined> {
    return this.run('get', () => this.inner.get(key));
  }

  async put(key: Uint8Array, value: Uint8Array, options: { ifVersion?: number; contentType?: string } = {}): Promise<PutResult> {
    return this.run('put', () => this.inner.put(key, value, options));
  }

  async delete(key: Uint8Array, options: { ifVersion?: number } = {}): Promise<void> {
    return this.run('delete', () => this.inner.delete(key, options));
  }

  async scan(options: ScanOptions): Promise<ScanPage> {
    this.scanLimits.push(options.limit);
    return this.run('scan', () => this.inner.scan(options));
  }

  async clear(options: ClearOptions): Promise<ClearResult> {
    return this.run('clear', () => this.inner.clear(options));
  }

  async batch(ops: readonly BatchWrite[]): Promise<BatchOutcome> {
    return this.run('batch', () => this.inner.batch(ops));
  }

  async close(): Promise<void> {
    this.events.push('close');
    await this.inner.close();
  }

  private async run<T>(operation: StoreOperation, call: () => Promise<T>): Promise<T> {
    this.events.push(operation);
    await this.before(operation);
    const result = await call();
    this.events.push(`${operation} done`);
    return result;
  }
}
