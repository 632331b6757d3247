// A `flotilla start` process for tests: spawned with the given flags, resolved once it prints its ready
// line (its HTTP URL), logs on the test's stderr. The caller kills it by its child's pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readyUrl } from '../../src/ready-line.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');

export interface NodeProcess {
  readonly id: number;
  readonly url: string;
  readonly child: ChildProcess;
}

/**
 * Runs `flotilla start --id ID <flags>`; fails if it exits or stays silent for `readyTimeoutMs`. A child
 * that never became ready is killed here (by its pid) before the error is thrown: the caller never got
 * it, so nobody else would, and it would outlive the test holding its ports.
 */
export async function startNodeProcess(id: number, flags: readonly string[], readyTimeoutMs = 30_000): Promise<NodeProcess> {
  const child = spawn(process.execPath, [CLI, 'start', '--id', String(id), ...flags], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    return { id, url: await readyUrl(child, { name: `node ${id}`, timeoutMs: readyTimeoutMs }), child };
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw err;
  }
}

/** After SIGKILL the exit event follows within milliseconds; this long means something is wrong. */
const EXIT_TIMEOUT_MS = 10_000;

/** SIGKILLs the node (if still running) and resolves once it has exited: its ports and data directory are free again. */
export async function killNodeProcess(node: NodeProcess): Promise<void> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return;
  let timer: NodeJS.Timeout | undefined;
  const exited = new Promise<void>((resolve, reject) => {
    node.child.once('exit', () => resolve());
    timer = setTimeout(() => reject(new Error(`node ${node.id} (pid ${node.child.pid}) did not exit within ${EXIT_TIMEOUT_MS} ms of SIGKILL`)), EXIT_TIMEOUT_MS);
  });
  node.child.kill('SIGKILL');
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
