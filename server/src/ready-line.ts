// The line `flotilla start` prints on stdout once it serves: {"ready":true,"http":URL,...}. Whoever starts
// node processes (`flotilla dev`, the tests, the benchmarks) waits for it with readyUrl (or readyLineOf).
import type { ChildProcess } from 'node:child_process';

/**
 * What the ready line says. `http` and `transport` are the advertised addresses — where others reach the
 * node, never a wildcard —; `listen` is what it bound (0.0.0.0:8101, say); `pid` the node's process (a
 * wrapper such as `ip netns exec` or a shell may stand between it and whoever started it).
 */
export interface ReadyLine {
  readonly ready: true;
  readonly nodeId: number;
  readonly pid: number;
  readonly http: string;
  readonly transport: string;
  readonly listen: { readonly http: string; readonly transport: string };
}

/** The ready line itself, one JSON object; readyUrl reads `ready` and `http`, the rest is for people and tools. */
export function readyLine(o: Omit<ReadyLine, 'ready'>): string {
  const line: ReadyLine = { ready: true, nodeId: o.nodeId, pid: o.pid, http: o.http, transport: o.transport, listen: o.listen };
  return JSON.stringify(line);
}

/**
 * Resolves with the HTTP URL of `child`'s ready line (its stdout must be a pipe). Every other stdout line
 * goes to `onOtherLine`. Rejects if the child exits first, or prints no ready line within `timeoutMs`.
 */
export async function readyUrl(child: ChildProcess, o: { name: string; timeoutMs: number; onOtherLine?: (line: string) => void }): Promise<string> {
  return (await readyLineOf(child, o)).http;
}

/**
 * Resolves with `child`'s ready line as printed: only `ready` and `http` are checked (readyUrl's contract);
 * the other fields are there when the node is of this release. Rejects as readyUrl does.
 */
export function readyLineOf(child: ChildProcess, o: { name: string; timeoutMs: number; onOtherLine?: (line: string) => void }): Promise<Partial<ReadyLine> & { ready: true; http: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${o.name} did not start within ${o.timeoutMs} ms`)), o.timeoutMs);
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let msg: Partial<ReadyLine> | undefined;
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          // not JSON: a log line
        }
        if (msg?.ready === true && typeof msg.http === 'string') {
          clearTimeout(timer);
          resolve(msg as Partial<ReadyLine> & { ready: true; http: string });
        } else o.onOtherLine?.(line);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${o.name} exited (${signal ?? `code ${code}`}) before it was ready`));
    });
  });
}
