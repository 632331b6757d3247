// One thread of a LoadPool (pool.ts): piscina calls the default export with each task. A `run` task
// opens its own connections to the target from the spec, runs its share of the clients over the run's
// window, closes them, and answers with its part (histogram encoded); a `ready` task only proves the
// thread is up (pool.ts explains the barrier).
import { threadId } from 'node:worker_threads';
import { unreachable } from '@flotilla/core';
import { encodePart, runShare, type EncodedPart, type RunShare } from './runner.js';
import { openTarget, type TargetSpec } from './targets.js';

export type PoolTask =
  | { readonly kind: 'ready'; readonly arrived: Int32Array; readonly threadCount: number; readonly timeoutMs: number }
  | { readonly kind: 'run'; readonly spec: TargetSpec; readonly share: RunShare };

export type PoolAnswer = { readonly kind: 'ready'; readonly threadId: number } | { readonly kind: 'run'; readonly threadId: number; readonly part: EncodedPart };

/** How often a `ready` task looks whether every thread has arrived. */
const READY_POLL_MS = 2;

export default async function poolTask(task: PoolTask): Promise<PoolAnswer> {
  switch (task.kind) {
    case 'ready':
      return onReady(task);
    case 'run':
      return onRun(task);
    default:
      return unreachable(task, 'pool task');
  }
}

async function onReady(task: Extract<PoolTask, { kind: 'ready' }>): Promise<PoolAnswer> {
  Atomics.add(task.arrived, 0, 1);
  // Held until every thread holds one, so no thread can take two (piscina gives a task to a free thread).
  const deadlineMs = performance.now() + task.timeoutMs;
  while (Atomics.load(task.arrived, 0) < task.threadCount) {
    if (performance.now() > deadlineMs) throw new Error(`${Atomics.load(task.arrived, 0)} of ${task.threadCount} load threads started within ${task.timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  return { kind: 'ready', threadId };
}

async function onRun(task: Extract<PoolTask, { kind: 'run' }>): Promise<PoolAnswer> {
  const target = await openTarget(task.spec);
  try {
    const part = await runShare(target, task.share);
    try {
      return { kind: 'run', threadId, part: encodePart(part) };
    } finally {
      part.histogram.destroy();
    }
  } finally {
    await target.close();
  }
}
