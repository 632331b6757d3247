// The line `flotilla start` prints on stdout once it serves: {"ready":true,"http":URL,...}. Whoever starts
// node processes (`flotilla dev`, the tests, the benchmarks) waits for it with readyUrl.
import type { ChildProcess } from 'node:child_process';

/** The ready line itself, one JSON object; readyUrl reads `ready` and `http`, the rest is for people and tools. */
export function readyLine(o: { nodeId: number; http: string; transport: string }): string {
  return JSON.stringify({ ready: true, nodeId: o.nodeId, http: o.http, transport: o.transport });
}

/**
 * Resolves with the HTTP URL of `child`'s ready line (its stdout must be a pipe). Every other stdout line
 * goes to `onOtherLine`. Rejects if the child exits first, or prints no ready line within `timeoutMs`.
 */
export function readyUrl(child: ChildProcess, o: { name: string; timeoutMs: number; onOtherLine?: (line: string) => void }): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${o.name} did not start within ${o.timeoutMs} ms`)), o.timeoutMs);
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let msg: { ready?: unknown; http?: unknown } | undefined;
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          // not JSON: a log line
        }
        if (msg?.ready === true && typeof msg.http === 'string') {
          clearTimeout(timer);
          resolve(msg.http);
        } else o.onOtherLine?.(line);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${o.name} exited (${signal ?? `code ${code}`}) before it was ready`));
    });
  });
}
