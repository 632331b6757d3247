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

/** Runs `flotilla start --id ID <flags>`; fails if it exits or stays silent for `readyTimeoutMs`. */
export async function startNodeProcess(id: number, flags: readonly string[], readyTimeoutMs = 30_000): Promise<NodeProcess> {
  const child = spawn(process.execPath, [CLI, 'start', '--id', String(id), ...flags], { stdio: ['ignore', 'pipe', 'inherit'] });
  return { id, url: await readyUrl(child, { name: `node ${id}`, timeoutMs: readyTimeoutMs }), child };
}
