import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ShellLogger } from '../shell-logger.js';
import { NodeStore, type StoreIo, type TailLimits } from '../storage/node-store.js';
import { decodeTransferred, encodeForTransfer, type CoreInput, type CoreOutput } from './core-protocol.js';
import type { LeaseClocks } from './node-leases.js';
import { ShardCore, type ShardCoreOptions } from './shard-core.js';

/**
 * How the Host talks to one worker core. Both implementations carry the
 * same encoded messages, so the inline one (deterministic tests) exercises
 * the codec the worker one depends on.
 */
export interface CoreChannel {
  post(input: CoreInput): void;
  /** Resolves once the core has finished its work and closed its store. */
  close(): Promise<void>;
  /** Forcibly stops the core (tests of a dead core; never in normal operation). */
  terminate(): Promise<void>;
}

export interface CoreChannelHandlers {
  onOutput(output: CoreOutput): void;
  /** The core died: the node must stop. */
  onFatal(err: Error): void;
}

/** Settings a worker core receives (serializable; the worker opens its own store). */
export type CoreSettings = Omit<ShardCoreOptions, 'store' | 'logger' | 'emit' | 'onFatal'> & { readonly storeDir: string; readonly logLevel: string; readonly logFormat: LogFormat };

/** How a worker core writes its log lines: JSON, or pino-pretty's lines as the main thread does (HostOptions.logFormat). */
export type LogFormat = 'json' | 'pretty';

/** Settings every core of a node shares (options.ts `coreSettingsOf`); each core adds its index and its store. */
export type CoreSettingsBase = Omit<ShardCoreOptions, 'store' | 'logger' | 'emit' | 'onFatal' | 'coreIndex'>;

/** Control messages between the Host and a worker (data crosses as bare transferred ArrayBuffers). */
export type WorkerControl =
  | { readonly type: 'ready' }
  | { readonly type: 'startFailed'; readonly code: string | undefined; readonly message: string }
  | { readonly type: 'close' }
  | { readonly type: 'closed' };

/** A core on its own worker thread: its groups' Raft state lives there and never migrates. */
export class WorkerCoreChannel implements CoreChannel {
  private closing = false;
  private exited = false;
  private closedResolve: (() => void) | undefined;

  private constructor(private readonly worker: Worker) {}

  static start(options: { workerPath: string | URL; settings: CoreSettings; handlers: CoreChannelHandlers }): Promise<WorkerCoreChannel> {
    const worker = new Worker(options.workerPath, { workerData: options.settings });
    const channel = new WorkerCoreChannel(worker);
    return new Promise((resolve, reject) => {
      let started = false;
      worker.on('message', (m: ArrayBuffer | WorkerControl) => {
        if (m instanceof ArrayBuffer) return options.handlers.onOutput(decodeTransferred<CoreOutput>(m));
        switch (m.type) {
          case 'ready':
            started = true;
            return resolve(channel);
          case 'startFailed': {
            const err = new Error(m.message) as Error & { code?: string };
            if (m.code !== undefined) err.code = m.code;
            void worker.terminate();
            return reject(err);
          }
          case 'closed':
            channel.closedResolve?.();
            return;
        }
      });
      worker.on('error', (err) => {
        if (!started) return reject(err);
        options.handlers.onFatal(err);
      });
      worker.on('exit', (code) => {
        channel.exited = true;
        if (!started) return reject(new Error(`worker core ${options.settings.coreIndex} exited with code ${code} while starting`));
        if (!channel.closing) options.handlers.onFatal(new Error(`worker core ${options.settings.coreIndex} exited with code ${code}`));
        channel.closedResolve?.();
      });
    });
  }

  post(input: CoreInput): void {
    const buffer = encodeForTransfer(input);
    this.worker.postMessage(buffer, [buffer]);
  }

  async close(): Promise<void> {
    if (this.closing || this.exited) return;
    this.closing = true;
    const closed = new Promise<void>((resolve) => (this.closedResolve = resolve));
    this.worker.postMessage({ type: 'close' } satisfies WorkerControl);
    await closed;
    await this.worker.terminate();
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
    this.exited = true;
  }
}

/** A core on the Host's own thread: deterministic tests; also what one-core embedding could use. */
export class InlineCoreChannel implements CoreChannel {
  private readonly core: ShardCore;
  private dead = false;

  constructor(options: { settings: Omit<ShardCoreOptions, 'emit' | 'logger' | 'onFatal'>; logger: ShellLogger; handlers: CoreChannelHandlers }) {
    const handlers = options.handlers;
    this.core = new ShardCore({
      ...options.settings,
      logger: options.logger,
      emit: (output) => {
        const buffer = encodeForTransfer(output);
        queueMicrotask(() => {
          if (!this.dead) handlers.onOutput(decodeTransferred<CoreOutput>(buffer));
        });
      },
      onFatal: (err) => {
        this.dead = true;
        queueMicrotask(() => handlers.onFatal(err instanceof Error ? err : new Error(String(err))));
      },
    });
  }

  post(input: CoreInput): void {
    const buffer = encodeForTransfer(input);
    queueMicrotask(() => {
      if (!this.dead) this.core.onInput(decodeTransferred<CoreInput>(buffer));
    });
  }

  /** Whether the core has work in progress (tests wait for every core to go idle). */
  get isBusy(): boolean {
    return this.core.isBusy;
  }

  idle(): Promise<void> {
    return this.core.idle();
  }

  async close(): Promise<void> {
    if (this.dead) return;
    this.dead = true;
    await this.core.close();
  }

  async terminate(): Promise<void> {
    this.dead = true;
    await this.core.close();
  }
}

/**
 * Starts a node's cores, one per directory of `coreDirs`, pushing each into
 * `into` as it starts so the caller can close those that did if another
 * fails. Inline cores open their stores here, one after another; worker
 * cores start together, each opening its own store.
 */
export async function startCoreChannels(
  into: CoreChannel[],
  o: {
    readonly mode: 'worker' | 'inline';
    readonly settings: CoreSettingsBase;
    readonly coreDirs: readonly string[];
    readonly logger: ShellLogger & { level?: string };
    readonly logFormat: LogFormat;
    readonly storeIo: StoreIo | undefined;
    readonly storeTail: TailLimits | undefined;
    readonly workerPath: string | URL | undefined;
    /** For inline cores: the Host's lease clocks (workers read the process's, as their Host does). */
    readonly leaseClocks: LeaseClocks;
    /** Per core, where it publishes shards for the Host's local reads (local-reads.ts); undefined: none. */
    readonly localReads: readonly SharedArrayBuffer[] | undefined;
    readonly handlers: (coreIndex: number) => CoreChannelHandlers;
  },
): Promise<void> {
  if (o.mode === 'inline') {
    for (let i = 0; i < o.coreDirs.length; i++) {
      const store = await NodeStore.open({ dir: o.coreDirs[i]!, nodeId: o.settings.nodeId, ...(o.storeIo === undefined ? {} : { io: o.storeIo }), ...(o.storeTail === undefined ? {} : { tail: o.storeTail }) });
      const localReads = o.localReads?.[i];
      into.push(new InlineCoreChannel({ settings: { ...o.settings, coreIndex: i, store, leaseClocks: o.leaseClocks, ...(localReads === undefined ? {} : { localReads }) }, logger: o.logger, handlers: o.handlers(i) }));
    }
    return;
  }
  const workerPath = o.workerPath ?? defaultWorkerPath();
  const started = await Promise.allSettled(
    o.coreDirs.map((storeDir, i) => {
      const localReads = o.localReads?.[i];
      const settings: CoreSettings = { ...o.settings, coreIndex: i, storeDir, logLevel: o.logger.level ?? 'info', logFormat: o.logFormat, ...(localReads === undefined ? {} : { localReads }) };
      return WorkerCoreChannel.start({ workerPath, settings, handlers: o.handlers(i) });
    }),
  );
  for (const s of started) if (s.status === 'fulfilled') into.push(s.value);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
}

/** dist/host/core-worker.js, also when this module runs from src/ under a test runner. */
function defaultWorkerPath(): string {
  const here = fileURLToPath(import.meta.url);
  const dir = join(here, '..');
  if (here.endsWith('.ts')) return join(dir, '..', '..', 'dist', 'host', 'core-worker.js');
  return join(dir, 'core-worker.js');
}
