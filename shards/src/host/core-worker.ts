// Entry point of a worker core thread: opens this core's LMDB environment,
// runs a ShardCore, and exchanges transferred buffers with the Host.
import { parentPort, workerData } from 'node:worker_threads';
import { pino, type DestinationStream } from 'pino';
import { prettyLogDestination } from '../pretty-log.js';
import type { ShellLogger } from '../shell-logger.js';
import { NodeStore } from '../storage/node-store.js';
import { decodeTransferred, encodeForTransfer, type CoreInput } from './core-protocol.js';
import type { CoreSettings, WorkerControl } from './core-channel.js';
import { ShardCore } from './shard-core.js';

const settings = workerData as CoreSettings;
const port = parentPort!;
// One root logger per worker, to stderr like the Host's and in its format. The root binds the node, once
// (ShardCore's children then add only the component and the core: childLogger).
const logger = pino({ level: settings.logLevel, base: { pid: process.pid, nodeId: settings.nodeId } }, logDestination(settings.logFormat)) as unknown as ShellLogger;

/** Synchronous either way, as the main thread's (server/src/logging.ts): the last line a dying worker writes is not lost. */
function logDestination(format: CoreSettings['logFormat']): DestinationStream {
  if (format === 'json') return pino.destination({ dest: 2, sync: true });
  return prettyLogDestination(2);
}

async function main(): Promise<void> {
  let store: NodeStore;
  try {
    store = await NodeStore.open({ dir: settings.storeDir, nodeId: settings.nodeId });
  } catch (err) {
    const e = err as Error & { code?: string };
    port.postMessage({ type: 'startFailed', code: e.code, message: e.message } satisfies WorkerControl);
    return;
  }
  const core = new ShardCore({
    ...settings,
    store,
    logger,
    emit: (output) => {
      const buffer = encodeForTransfer(output);
      port.postMessage(buffer, [buffer]);
    },
    onFatal: (err) => {
      logger.error({ err, core: settings.coreIndex }, 'worker core failed');
      // Rethrown outside any promise so the thread dies and the Host sees it (never a silently dead thread).
      setImmediate(() => {
        throw err;
      });
    },
  });
  port.on('message', (m: ArrayBuffer | WorkerControl) => {
    if (m instanceof ArrayBuffer) return core.onInput(decodeTransferred<CoreInput>(m));
    if (m.type === 'close') {
      void core.close().then(() => port.postMessage({ type: 'closed' } satisfies WorkerControl));
    }
  });
  port.postMessage({ type: 'ready' } satisfies WorkerControl);
}

void main();
