// Worker thread of the storage bench's env-layout comparison (storage-bench.ts):
// one worker core's storage loop. It opens a NodeStore on its own directory
// (one LMDB env per worker: NodeStore's log tail belongs to one NodeStore per
// environment), creates its shards, warms up, reports ready, and on `go`
// persists group commits for its shards only.
// Node 20 runs workers from built JavaScript only: this is dist/storage-worker.js.
import { once } from 'node:events';
import { parentPort, workerData } from 'node:worker_threads';
import { groupId } from '@flotilla/core';
import { NodeStore } from '@flotilla/shards';
import { BENCH_CONF_STATE, CommitPlanner, latencySummary, payloadPool, persistLoop, type EnvMainMessage, type EnvWorkerMessage, type EnvWorkerTask } from './storage-workload.js';

async function main(port: NonNullable<typeof parentPort>, task: EnvWorkerTask): Promise<void> {
  const post = (m: EnvWorkerMessage) => port.postMessage(m);
  const store = await NodeStore.open({ dir: task.dir, nodeId: task.nodeId });
  try {
    const shardIds = task.shardIds.map(groupId);
    // Created in one event turn, so lmdb-js commits them together rather than one fsync per shard.
    await Promise.all(shardIds.map((id) => store.createShard(id, { confState: BENCH_CONF_STATE })));
    const planner = new CommitPlanner({ shardIds, entriesPerCommit: task.entriesPerCommit, pool: payloadPool({ payloadBytes: task.payloadBytes, seed: task.seed }) });
    await persistLoop(store, planner, task.warmup);
    const go = once(port, 'message') as Promise<[EnvMainMessage]>;
    post({ type: 'ready' });
    const [message] = await go;
    if (message.type !== 'go') throw new Error(`storage worker expected "go", got ${JSON.stringify(message)}`);
    const result = await persistLoop(store, planner, task.run);
    post({
      type: 'done',
      commitCount: result.commitCount,
      entryCount: result.entryCount,
      elapsedMs: result.elapsedMs,
      latency: latencySummary(result.latenciesMs),
      expected: planner.expected(),
    });
  } finally {
    await store.close();
  }
}

if (parentPort === null) throw new Error('storage-worker.js runs as a worker thread of storage-bench.js');
await main(parentPort, workerData as EnvWorkerTask);
